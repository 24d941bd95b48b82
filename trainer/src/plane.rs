//! A plane of weight space (the paper's Figure 1): the Cartesian grid in the plane through
//! three weight vectors, each grid point scored on both splits with its batch-norm statistics
//! recomputed.
//!
//! Every point handled here is a linear combination of the *sources*: the control points of a
//! curve, or three networks. A point is its coefficient vector over them, and inner products
//! come from the sources' Gram matrix, so the basis, the coordinates of the curve and the L2
//! term are exact without writing any weights out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use modeconn_runtime::bundle::Kind as BundleKind;
use modeconn_runtime::curve::{self as rcurve, Basis};
use serde::{Deserialize, Serialize};
use tch::Kind;

use crate::arch::Params;
use crate::curve::{Points, point_at};
use crate::data::Data;
use crate::fit::{self, Pass};
use crate::job::{Event, Phase, PlaneJob, PlanePoint, PlaneReport};
use crate::model_io::{self, Loaded};
use crate::{Error, Result, bn, device};

/// The sources and what was read from them.
struct Sources {
    /// The network (architecture) every source shares.
    loaded: Loaded,
    /// The trained parameters of each source.
    points: Points,
    /// `gram[a][b] = <source a, source b>` over the trained parameters.
    gram: Vec<Vec<f64>>,
    /// The three spanning vectors, as indices of sources, with their labels.
    anchors: [(usize, String); 3],
    /// A curve's basis, when the sources are its control points.
    basis: Option<Basis>,
}

/// `<a, b>` under the Gram matrix.
fn dot(gram: &[Vec<f64>], a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .enumerate()
        .map(|(i, &ai)| ai * b.iter().zip(&gram[i]).map(|(bj, g)| bj * g).sum::<f64>())
        .sum()
}

/// Source `k` of `n`, as coefficients.
fn unit(n: usize, k: usize) -> Vec<f64> {
    (0..n).map(|i| f64::from(u8::from(i == k))).collect()
}

/// `a - b`, coefficient by coefficient.
fn sub(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

/// The Gram matrix of parameter maps, in double precision.
fn gram_of(points: &Points) -> Result<Vec<Vec<f64>>> {
    let _guard = tch::no_grad_guard();
    let n = points.len();
    let mut g = vec![vec![0.0; n]; n];
    for a in 0..n {
        for b in a..n {
            let mut sum = 0.0;
            for (name, ta) in &points[a] {
                let tb = points[b]
                    .get(name)
                    .ok_or_else(|| Error::Arch(format!("a point without `{name}`")))?;
                sum += ta
                    .f_to_kind(Kind::Double)?
                    .f_mul(&tb.f_to_kind(Kind::Double)?)?
                    .f_sum(Kind::Double)?
                    .f_double_value(&[])?;
            }
            g[a][b] = sum;
            g[b][a] = sum;
        }
    }
    Ok(g)
}

/// The orthonormal basis of the plane: `origin + x u + y v`, as coefficient vectors.
struct Frame {
    origin: Vec<f64>,
    u: Vec<f64>,
    v: Vec<f64>,
    u_norm: f64,
    v_norm: f64,
}

impl Frame {
    /// The frame of the anchors `w1`, `w2`, `w3` (indices of sources).
    fn new(gram: &[Vec<f64>], [w1, w2, w3]: [usize; 3], labels: [&str; 3]) -> Result<Frame> {
        let n = gram.len();
        let origin = unit(n, w1);
        let du = sub(&unit(n, w2), &origin);
        let u_norm = dot(gram, &du, &du).max(0.0).sqrt();
        let scale = dot(gram, &origin, &origin).max(1e-300).sqrt();
        if u_norm <= 1e-9 * scale {
            return Err(Error::Config(format!(
                "{} and {} are the same weights: they span no plane",
                labels[0], labels[1]
            )));
        }
        let u: Vec<f64> = du.iter().map(|c| c / u_norm).collect();
        let dv = sub(&unit(n, w3), &origin);
        let along = dot(gram, &u, &dv);
        let rest: Vec<f64> = dv.iter().zip(&u).map(|(d, e)| d - along * e).collect();
        let v_norm = dot(gram, &rest, &rest).max(0.0).sqrt();
        if v_norm <= 1e-6 * u_norm {
            return Err(Error::Config(format!(
                "{} lies on the line through {} and {}: the three span no plane",
                labels[2], labels[0], labels[1]
            )));
        }
        let v = rest.iter().map(|c| c / v_norm).collect();
        Ok(Frame {
            origin,
            u,
            v,
            u_norm,
            v_norm,
        })
    }

    /// The coordinates of a point (coefficients over the sources) and its distance from the
    /// plane.
    fn project(&self, gram: &[Vec<f64>], p: &[f64]) -> (f64, f64, f64) {
        let d = sub(p, &self.origin);
        let (x, y) = (dot(gram, &self.u, &d), dot(gram, &self.v, &d));
        let off = (dot(gram, &d, &d) - x * x - y * y).max(0.0).sqrt();
        (x, y, off)
    }

    /// The point at `(x, y)`, as coefficients over the sources.
    fn at(&self, x: f64, y: f64) -> Vec<f64> {
        self.origin
            .iter()
            .zip(self.u.iter().zip(&self.v))
            .map(|(o, (u, v))| o + x * u + y * v)
            .collect()
    }
}

/// Opens the sources of `job`: one curve bundle, or three bundles of one network each.
fn sources(job: &PlaneJob, device: tch::Device) -> Result<Sources> {
    match job.bundles.as_slice() {
        [curve] => {
            let loaded = model_io::load(curve)?;
            let meta = loaded.bundle.metadata();
            let basis = match (meta.kind, meta.basis) {
                (BundleKind::Curve, Some(b)) => b,
                _ => {
                    return Err(Error::Config(format!(
                        "{} is a snapshot set, not a curve: give one curve bundle, or three \
                         bundles of one network each",
                        curve.display()
                    )));
                }
            };
            let points = model_io::control_points(&loaded, device)?;
            let gram = gram_of(&points)?;
            let k = points.len();
            if k < 3 {
                return Err(Error::Config(format!(
                    "{} has no bend (2 control points): its points span a line, not a plane",
                    curve.display()
                )));
            }
            let last = k - 1;
            let bend = farthest_bend(&gram, last);
            let bend_label = if k == 3 {
                "bend".to_string()
            } else {
                format!("bend {bend}")
            };
            Ok(Sources {
                loaded,
                points,
                gram,
                anchors: [
                    (0, "start".into()),
                    (last, "end".into()),
                    (bend, bend_label),
                ],
                basis: Some(basis),
            })
        }
        [a, b, c] => {
            let mut points = Vec::with_capacity(3);
            let mut first: Option<Loaded> = None;
            for path in [a, b, c] {
                let loaded = model_io::load(path)?;
                let meta = loaded.bundle.metadata();
                if meta.kind == BundleKind::Curve || meta.points != 1 {
                    return Err(Error::Config(format!(
                        "{} is a {} of {} {}, not one network: give one curve bundle, or three \
                         bundles of one network each (`modeconn unpack` and `modeconn pack` \
                         write one)",
                        path.display(),
                        if meta.kind == BundleKind::Curve {
                            "curve"
                        } else {
                            "snapshot set"
                        },
                        meta.points,
                        if meta.kind == BundleKind::Curve {
                            "control points"
                        } else {
                            "members"
                        },
                    )));
                }
                let member = 0;
                if let Some(f) = &first {
                    same_network(f, &loaded, (&job.bundles[0], path))?;
                }
                let all = model_io::member(&loaded, member, device)?;
                let trained: Params = loaded
                    .net
                    .params
                    .iter()
                    .filter(|p| !p.kind.is_statistic())
                    .filter_map(|p| {
                        all.get(&p.name)
                            .map(|t| (p.name.clone(), t.shallow_clone()))
                    })
                    .collect();
                points.push(trained);
                if first.is_none() {
                    first = Some(loaded);
                }
            }
            let loaded = first.ok_or_else(|| Error::Config("no bundles".into()))?;
            let gram = gram_of(&points)?;
            let name = |p: &Path| {
                p.file_name()
                    .map_or_else(|| p.display().to_string(), |f| f.to_string_lossy().into())
            };
            Ok(Sources {
                loaded,
                points,
                gram,
                anchors: [(0, name(a)), (1, name(b)), (2, name(c))],
                basis: None,
            })
        }
        other => Err(Error::Config(format!(
            "a plane needs one curve bundle or three bundles of one network each; got {}",
            other.len()
        ))),
    }
}

/// The interior control point farthest from the line through the endpoints `0` and `last`.
fn farthest_bend(gram: &[Vec<f64>], last: usize) -> usize {
    let n = gram.len();
    let origin = unit(n, 0);
    let seg = sub(&unit(n, last), &origin);
    let seg2 = dot(gram, &seg, &seg).max(1e-300);
    let distance = |k: usize| {
        let d = sub(&unit(n, k), &origin);
        let along = dot(gram, &seg, &d);
        dot(gram, &d, &d) - along * along / seg2
    };
    (1..last)
        .max_by(|&a, &b| distance(a).total_cmp(&distance(b)))
        .unwrap_or(1)
}

/// Refuses networks of different parameters: their weights cannot be combined.
fn same_network(a: &Loaded, b: &Loaded, (pa, pb): (&Path, &Path)) -> Result<()> {
    let shapes = |l: &Loaded| -> BTreeMap<String, Vec<i64>> {
        l.net
            .params
            .iter()
            .map(|p| (p.name.clone(), p.shape.clone()))
            .collect()
    };
    let (sa, sb) = (shapes(a), shapes(b));
    if sa == sb {
        return Ok(());
    }
    let differs = sa
        .iter()
        .find(|(n, s)| sb.get(*n) != Some(s))
        .map(|(n, _)| n.clone())
        .or_else(|| sb.keys().find(|n| !sa.contains_key(*n)).cloned())
        .unwrap_or_default();
    Err(Error::Config(format!(
        "{} and {} are different networks (`{differs}` differs): a plane needs three networks \
         of one architecture",
        pa.display(),
        pb.display()
    )))
}

/// `n` evenly spaced values from `lo` to `hi`.
fn linspace(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| lo + (hi - lo) * i as f64 / (n - 1) as f64)
        .collect()
}

/// The grid's axis over `values`, reaching `margin` of their extent beyond them.
fn axis(values: impl Iterator<Item = f64>, margin: f64, n: usize) -> Vec<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let extent = hi - lo;
    linspace(lo - margin * extent, hi + margin * extent, n)
}

/// The scores of one grid point (the L2 term is added when the report is made).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Cell {
    i: usize,
    j: usize,
    train_nll: f64,
    train_error: f64,
    test_nll: f64,
    test_error: f64,
}

/// What `state` holds: the plane it belongs to, and the cells found so far.
#[derive(Serialize, Deserialize)]
struct State {
    plane: serde_json::Value,
    cells: Vec<Cell>,
}

/// What makes two runs the same plane: the bundles' contents, the data and the grid.
fn fingerprint(job: &PlaneJob) -> Result<serde_json::Value> {
    let digests = job
        .bundles
        .iter()
        .map(|b| modeconn_runtime::fs::sha256_file(b))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(serde_json::json!({
        "bundles": digests,
        "data": job.data,
        "held_out": job.held_out,
        "limit": job.limit,
        "seed": job.seed,
        "grid": job.grid,
        "margin": job.margin,
    }))
}

/// The cells of an earlier run of this plane, or none.
fn resumed(job: &PlaneJob, plane: &serde_json::Value) -> Result<Vec<Cell>> {
    let Some(path) = job.state.as_ref().filter(|_| job.resume) else {
        return Ok(Vec::new());
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(Error::Io {
                path: path.clone(),
                error,
            });
        }
    };
    let state: State = serde_json::from_str(&text).map_err(|e| {
        Error::Config(format!(
            "{}: not the state of a plane ({e}); remove it to start afresh",
            path.display()
        ))
    })?;
    if &state.plane != plane {
        let differs = [
            "bundles", "data", "held_out", "limit", "seed", "grid", "margin",
        ]
        .into_iter()
        .filter(|k| state.plane.get(k) != plane.get(k))
        .collect::<Vec<_>>()
        .join(", ");
        return Err(Error::Config(format!(
            "{} holds another plane (its {differs} differ); remove it, or resume with the \
             same bundles, data and grid",
            path.display()
        )));
    }
    let n = job.grid;
    if let Some(c) = state.cells.iter().find(|c| c.i >= n || c.j >= n) {
        return Err(Error::Config(format!(
            "{}: cell ({}, {}) lies outside the {n}x{n} grid",
            path.display(),
            c.i,
            c.j
        )));
    }
    Ok(state.cells)
}

/// Writes the state, atomically.
fn save(path: &Path, plane: &serde_json::Value, cells: &[Cell]) -> Result<()> {
    let state = State {
        plane: plane.clone(),
        cells: cells.to_vec(),
    };
    let text = serde_json::to_vec(&state)
        .map_err(|e| Error::Config(format!("cannot write the plane's state: {e}")))?;
    modeconn_runtime::write_file_atomic(path, &text)?;
    Ok(())
}

/// Scores the network at `coefficients` over the sources on both splits, its statistics
/// recomputed.
fn score(
    src: &Sources,
    coefficients: &[f64],
    data: &Data,
    job: &PlaneJob,
    device: tch::Device,
) -> Result<(fit::Scores, fit::Scores)> {
    let mut params = tch::no_grad(|| point_at(&src.points, coefficients))?;
    bn::recompute(&src.loaded.net, &mut params, data, job.batch_size, device)?;
    let net = &src.loaded.net;
    let train = Pass::train(data, job.batch_size, device).evaluate(net, &params)?;
    let test = Pass::test(data, job.batch_size, device).evaluate(net, &params)?;
    Ok((train, test))
}

/// Evaluates the plane of `job`.
pub fn plane(job: &PlaneJob, on_event: &mut dyn FnMut(&Event)) -> Result<PlaneReport> {
    if job.grid < 2 {
        return Err(Error::Config("`grid` must be at least 2".into()));
    }
    if job.curve_points < 2 {
        return Err(Error::Config("`curve_points` must be at least 2".into()));
    }
    if job.batch_size == 0 {
        return Err(Error::Config("`batch_size` must be at least 1".into()));
    }
    if !(job.margin.is_finite() && job.margin >= 0.0) {
        return Err(Error::Config(format!(
            "`margin` must be 0 or more, not {}",
            job.margin
        )));
    }
    if !(job.wd.is_finite() && job.wd >= 0.0) {
        return Err(Error::Config(format!(
            "`wd` must be 0 or more, not {}",
            job.wd
        )));
    }
    if job.resume && job.state.is_none() {
        return Err(Error::Config(
            "`resume` needs a `state` to resume from".into(),
        ));
    }
    let device = device::select(job.device)?;
    let plane_id = fingerprint(job)?;
    let mut cells = resumed(job, &plane_id)?;
    let src = sources(job, device)?;
    let data = fit::load_eval_data(&job.data, job.held_out, job.seed, job.limit)?;
    fit::check_fits(&data, &src.loaded.net, "the bundle's network")?;

    let gram = &src.gram;
    let [(w1, l1), (w2, l2), (w3, l3)] = &src.anchors;
    let frame = Frame::new(gram, [*w1, *w2, *w3], [l1, l2, l3])?;
    let n = src.points.len();
    let placed = |label: Option<String>, t: Option<f64>, c: &[f64]| {
        let (x, y, off_plane) = frame.project(gram, c);
        PlanePoint {
            label,
            t,
            x,
            y,
            off_plane,
        }
    };
    let mut anchors: Vec<PlanePoint> = src
        .anchors
        .iter()
        .map(|(k, label)| placed(Some(label.clone()), None, &unit(n, *k)))
        .collect();
    let mut curve = Vec::new();
    if let Some(basis) = src.basis {
        // The curve's other bends, projected.
        for k in (1..n - 1).filter(|k| src.anchors.iter().all(|(a, _)| a != k)) {
            anchors.push(placed(Some(format!("bend {k}")), None, &unit(n, k)));
        }
        for t in rcurve::grid(job.curve_points)? {
            curve.push(placed(None, Some(t), &basis.coefficients(n, t)?));
        }
    }
    let spread = anchors.iter().chain(&curve);
    let xs = axis(spread.clone().map(|p| p.x), job.margin, job.grid);
    let ys = axis(spread.map(|p| p.y), job.margin, job.grid);

    let total = job.grid * job.grid;
    let mut found: BTreeMap<(usize, usize), Cell> =
        cells.iter().map(|c| ((c.i, c.j), *c)).collect();
    let resumed_count = found.len();
    on_event(&Event::Begin {
        phase: Phase::Plane,
        total,
    });
    if resumed_count > 0 {
        on_event(&Event::Message {
            text: format!(
                "resuming the plane: {resumed_count} of {total} points from {}",
                job.state
                    .as_deref()
                    .map_or(PathBuf::new(), Path::to_path_buf)
                    .display()
            ),
        });
        on_event(&Event::Step {
            phase: Phase::Plane,
            done: resumed_count,
            total,
            loss: None,
            accuracy: None,
            lr: None,
        });
    }
    let mut last_save = Instant::now();
    let mut done = resumed_count;
    for (i, &x) in xs.iter().enumerate() {
        for (j, &y) in ys.iter().enumerate() {
            if found.contains_key(&(i, j)) {
                continue;
            }
            let (train, test) = score(&src, &frame.at(x, y), &data, job, device)?;
            let cell = Cell {
                i,
                j,
                train_nll: train.loss,
                train_error: 1.0 - train.accuracy,
                test_nll: test.loss,
                test_error: 1.0 - test.accuracy,
            };
            found.insert((i, j), cell);
            cells.push(cell);
            done += 1;
            if let Some(path) = &job.state
                && (last_save.elapsed() >= Duration::from_secs(2) || done == total)
            {
                save(path, &plane_id, &cells)?;
                last_save = Instant::now();
            }
            on_event(&Event::Step {
                phase: Phase::Plane,
                done,
                total,
                loss: Some(test.loss),
                accuracy: Some(test.accuracy),
                lr: None,
            });
        }
    }
    on_event(&Event::End {
        phase: Phase::Plane,
    });

    let grid = |f: &dyn Fn(&Cell, f64) -> f64| -> Vec<Vec<f64>> {
        ys.iter()
            .enumerate()
            .map(|(j, &y)| {
                xs.iter()
                    .enumerate()
                    .map(|(i, &x)| {
                        let c = &found[&(i, j)];
                        let w = frame.at(x, y);
                        f(c, 0.5 * job.wd * dot(gram, &w, &w))
                    })
                    .collect()
            })
            .collect()
    };
    Ok(PlaneReport {
        bundles: job.bundles.clone(),
        device: device::reported(device),
        u_norm: frame.u_norm,
        v_norm: frame.v_norm,
        wd: job.wd,
        train_loss: grid(&|c, l2| c.train_nll + l2),
        train_nll: grid(&|c, _| c.train_nll),
        train_error: grid(&|c, _| c.train_error),
        test_nll: grid(&|c, _| c.test_nll),
        test_error: grid(&|c, _| c.test_error),
        x: xs,
        y: ys,
        anchors,
        curve,
        resumed: resumed_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Gram matrix of explicit vectors.
    fn gram(vectors: &[Vec<f64>]) -> Vec<Vec<f64>> {
        vectors
            .iter()
            .map(|a| {
                vectors
                    .iter()
                    .map(|b| a.iter().zip(b).map(|(x, y)| x * y).sum())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_frame_places_the_three_points_as_the_reference_does() {
        // w1 = 0, w2 = (3, 0, 0), w3 = (1, 2, 0) + an offset that lies in the plane.
        let w = vec![
            vec![1.0, 1.0, 1.0],
            vec![4.0, 1.0, 1.0],
            vec![2.0, 3.0, 1.0],
        ];
        let g = gram(&w);
        let f = Frame::new(&g, [0, 1, 2], ["a", "b", "c"]).expect("a plane");
        assert!((f.u_norm - 3.0).abs() < 1e-12);
        assert!((f.v_norm - 2.0).abs() < 1e-12);
        let at = |k: usize| {
            let mut c = vec![0.0; 3];
            c[k] = 1.0;
            f.project(&g, &c)
        };
        let close = |(x, y, off): (f64, f64, f64), (ex, ey): (f64, f64)| {
            (x - ex).abs() < 1e-12 && (y - ey).abs() < 1e-12 && off < 1e-6
        };
        assert!(close(at(0), (0.0, 0.0)));
        assert!(close(at(1), (3.0, 0.0)));
        assert!(close(at(2), (1.0, 2.0)));
        // A point built at (x, y) projects back there, in the plane.
        let (x, y, off) = f.project(&g, &f.at(-0.5, 2.5));
        assert!((x + 0.5).abs() < 1e-12 && (y - 2.5).abs() < 1e-12 && off < 1e-6);
    }

    #[test]
    fn three_points_on_a_line_are_refused() {
        let w = vec![vec![0.0, 1.0], vec![1.0, 1.0], vec![2.0, 1.0]];
        let message = Frame::new(&gram(&w), [0, 1, 2], ["A", "B", "C"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("C lies on the line through A and B"),
            "{message}"
        );
        let same = vec![vec![1.0, 1.0], vec![1.0, 1.0], vec![2.0, 1.0]];
        let message = Frame::new(&gram(&same), [0, 1, 2], ["A", "B", "C"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("A and B are the same weights"),
            "{message}"
        );
    }

    #[test]
    fn the_farthest_bend_is_chosen() {
        // Endpoints on the x axis; bend 2 is farther from it than bend 1 and bend 3.
        let w = vec![
            vec![0.0, 0.0],
            vec![1.0, 1.0],
            vec![2.0, 3.0],
            vec![3.0, -2.0],
            vec![4.0, 0.0],
        ];
        assert_eq!(farthest_bend(&gram(&w), 4), 2);
    }

    #[test]
    fn the_axis_reaches_its_margin_beyond_the_points() {
        let a = axis([0.0, 10.0, 4.0].into_iter(), 0.2, 5);
        assert_eq!(a, vec![-2.0, 1.5, 5.0, 8.5, 12.0]);
    }
}
