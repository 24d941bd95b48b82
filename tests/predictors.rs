//! The two ways the end-to-end prediction cases (`predict.rs`) are run: through the command
//! line (`modeconn predict`, its JSON and `.npy` outputs) and through the C ABI (the functions
//! of `include/modeconn.h`, called from Rust on `libmodeconn`'s Rust build). Each backend takes
//! the same [`Query`] and answers the same [`Answer`], so one set of cases checks both against
//! the independent references.

use std::path::Path;

use ndarray::ArrayD;

use crate::util::*;

/// How a query chooses its members.
#[derive(Debug, Clone, PartialEq)]
pub enum Select {
    /// `--at`: these t values.
    At(Vec<f64>),
    /// `--grid M`.
    Grid(usize),
    /// `--uniform N --seed S`.
    Uniform { n: usize, seed: u64 },
    /// `--randomized --seed S`: one grid point of 21 per sample.
    Randomized { seed: u64 },
    /// `--members all`.
    AllMembers,
    /// `--members 2,0`.
    Members(Vec<usize>),
}

/// One prediction asked of a backend.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub bundle: &'a Path,
    /// `x.npy`, float32 `[batch, ...]`.
    pub input: &'a Path,
    pub select: Select,
    pub per_member: bool,
    /// MiB of static sessions (`--static-budget`); `None`: the backend's default.
    pub static_budget: Option<usize>,
    /// `cpu`, `cuda` or `auto`; `None`: the default (auto).
    pub device: Option<&'a str>,
    /// `y.npy`, int64 labels, for a backend that scores the prediction.
    pub labels: Option<&'a Path>,
}

impl<'a> Query<'a> {
    /// A query of `select` on `bundle` with everything else at its default.
    pub fn new(bundle: &'a Path, input: &'a Path, select: Select) -> Self {
        Query {
            bundle,
            input,
            select,
            per_member: false,
            static_budget: None,
            device: None,
            labels: None,
        }
    }
}

/// What a backend answers.
#[derive(Debug, Clone)]
pub struct Answer {
    /// `curve` or `snapshots`.
    pub kind: String,
    pub batch: usize,
    pub classes: usize,
    /// The execution provider, lower case (`cpu`, `cuda`).
    pub provider: String,
    /// The members used (t, or the index as a number); `None` in the per-sample modes, where
    /// the point is not reported by default.
    pub members: Option<Vec<f64>>,
    /// Mean probabilities `[batch, classes]`.
    pub probabilities: ArrayD<f32>,
    /// `[members, batch, classes]` when asked for.
    pub per_member: Option<ArrayD<f32>>,
    /// Members held in static sessions after the query.
    pub static_members: usize,
    /// Accuracy and NLL against the labels, from a backend that scores predictions.
    pub scores: Option<(f64, f64)>,
}

/// `modeconn predict` and its outputs.
pub mod cli {
    use super::*;

    pub fn predict(q: &Query<'_>) -> Answer {
        let tmp = tempdir();
        let (pm, out) = (tmp.path().join("pm.npy"), tmp.path().join("p.npy"));
        let mut args: Vec<String> = vec![
            "predict".into(),
            q.bundle.display().to_string(),
            "--input".into(),
            q.input.display().to_string(),
        ];
        match &q.select {
            Select::At(ts) => args.extend(["--at".into(), ts_arg(ts)]),
            Select::Grid(m) => args.extend(["--grid".into(), m.to_string()]),
            Select::Uniform { n, seed } => args.extend([
                "--uniform".into(),
                n.to_string(),
                "--seed".into(),
                seed.to_string(),
            ]),
            Select::Randomized { seed } => {
                args.extend(["--randomized".into(), "--seed".into(), seed.to_string()])
            }
            Select::AllMembers => args.extend(["--members".into(), "all".into()]),
            Select::Members(list) => {
                let list: Vec<String> = list.iter().map(usize::to_string).collect();
                args.extend(["--members".into(), list.join(",")]);
            }
        }
        if q.per_member {
            args.extend(["--per-member".into(), pm.display().to_string()]);
        }
        if let Some(b) = q.static_budget {
            args.extend(["--static-budget".into(), b.to_string()]);
        }
        if let Some(d) = q.device {
            args.extend(["--device".into(), d.into()]);
        }
        if let Some(y) = q.labels {
            args.extend(["--labels".into(), y.display().to_string()]);
        }
        args.extend(["--out".into(), out.display().to_string(), "--json".into()]);
        let argv: Vec<Arg<'_>> = args.iter().map(|a| a as Arg<'_>).collect();
        let json = modeconn(&argv).ok().json();
        let members = json.get("members").map(|m| {
            m.as_array()
                .unwrap_or_else(|| panic!("`members` is not an array: {json}"))
                .iter()
                .map(number)
                .collect()
        });
        let scores = q.labels.map(|_| {
            (
                number(field(&json, "accuracy")),
                number(field(&json, "nll")),
            )
        });
        Answer {
            kind: field(&json, "kind")
                .as_str()
                .unwrap_or_else(|| panic!("`kind` is not a string: {json}"))
                .to_string(),
            batch: number(field(&json, "batch")) as usize,
            classes: number(field(&json, "classes")) as usize,
            provider: field(&json, "provider")
                .as_str()
                .unwrap_or_else(|| panic!("`provider` is not a string: {json}"))
                .to_lowercase(),
            members,
            probabilities: read_f32(&out),
            per_member: q.per_member.then(|| read_f32(&pm)),
            static_members: number(field(&json, "static_members")) as usize,
            scores,
        }
    }
}

/// The C ABI, called from Rust exactly as a C program calls it.
pub mod c_abi {
    use std::ffi::{CStr, CString};
    use std::ptr;

    use modeconn_c::*;

    use super::*;

    /// Panics with the library's message unless `status` is OK.
    #[track_caller]
    fn ok(status: modeconn_status, what: &str) {
        if status != modeconn_status::OK {
            // SAFETY: the library returns static or thread-owned NUL-terminated strings.
            let (name, message) = unsafe {
                (
                    CStr::from_ptr(modeconn_status_name(status.number())).to_string_lossy(),
                    CStr::from_ptr(modeconn_last_error_message()).to_string_lossy(),
                )
            };
            panic!("{what}: {name}: {message}");
        }
    }

    /// The C sampling of a query, with the storage its pointers borrow.
    struct CSampling {
        raw: modeconn_sampling,
        _ts: Vec<f64>,
        _members: Vec<usize>,
    }

    fn sampling(select: &Select) -> CSampling {
        let mut raw = modeconn_sampling {
            mode: 0,
            seeded: 0,
            count: 0,
            seed: 0,
            ts: ptr::null(),
            ts_len: 0,
            members: ptr::null(),
            members_len: 0,
            key: ptr::null(),
            quantum: 0.0,
        };
        let (mut ts, mut members) = (Vec::new(), Vec::new());
        match select {
            Select::At(list) => {
                raw.mode = modeconn_sampling_mode::At as u32;
                ts = list.clone();
            }
            Select::Grid(m) => {
                raw.mode = modeconn_sampling_mode::Grid as u32;
                raw.count = *m;
            }
            Select::Uniform { n, seed } => {
                raw.mode = modeconn_sampling_mode::Uniform as u32;
                raw.count = *n;
                raw.seed = *seed;
            }
            Select::Randomized { seed } => {
                // The CLI's --randomized: a grid of 21 points, seeded for the test.
                raw.mode = modeconn_sampling_mode::Randomized as u32;
                raw.count = 21;
                raw.seeded = 1;
                raw.seed = *seed;
            }
            Select::AllMembers => raw.mode = modeconn_sampling_mode::AllMembers as u32,
            Select::Members(list) => {
                raw.mode = modeconn_sampling_mode::Members as u32;
                members = list.clone();
            }
        }
        raw.ts = ts.as_ptr();
        raw.ts_len = ts.len();
        raw.members = members.as_ptr();
        raw.members_len = members.len();
        CSampling {
            raw,
            _ts: ts,
            _members: members,
        }
    }

    fn device(name: Option<&str>) -> modeconn_device {
        match name {
            None | Some("auto") => modeconn_device::Auto,
            Some("cpu") => modeconn_device::Cpu,
            Some("cuda") => modeconn_device::Cuda,
            Some(other) => panic!("no device `{other}`"),
        }
    }

    pub fn predict(q: &Query<'_>) -> Answer {
        let x = read_f32(q.input);
        let x = x.as_standard_layout();
        let data = x.as_slice().expect("a standard-layout array is contiguous");
        let batch = x.shape()[0];
        let path = CString::new(q.bundle.display().to_string()).expect("a path without NUL");
        let s = sampling(&q.select);
        let mut rt = ptr::null_mut();
        let mut ens = ptr::null_mut();
        // SAFETY: every pointer handed over is valid for the call, as modeconn.h asks; every
        // handle is freed once, at the end.
        unsafe {
            ok(
                modeconn_runtime_new(ptr::null(), device(q.device) as u32, 0, 0, &mut rt),
                "modeconn_runtime_new",
            );
            let budget = q.static_budget.map_or(1usize << 30, |mib| mib << 20);
            ok(
                modeconn_ensemble_open_with(rt, path.as_ptr(), budget, 0, &mut ens),
                "modeconn_ensemble_open_with",
            );
            let mut sizes = modeconn_output_sizes::default();
            ok(
                modeconn_ensemble_output_sizes(ens, &s.raw, batch, &mut sizes),
                "modeconn_ensemble_output_sizes",
            );
            let per_sample = matches!(q.select, Select::Randomized { .. });
            let mut probabilities = vec![0.0f32; sizes.probabilities];
            let mut per_member = vec![0.0f32; if q.per_member { sizes.per_member } else { 0 }];
            let mut members = vec![
                modeconn_member {
                    kind: 0,
                    t: 0.0,
                    index: 0
                };
                sizes.members
            ];
            let input = modeconn_input {
                data: data.as_ptr(),
                len: data.len(),
                batch,
            };
            let outputs = modeconn_outputs {
                probabilities: probabilities.as_mut_ptr(),
                probabilities_len: probabilities.len(),
                per_member: if q.per_member {
                    per_member.as_mut_ptr()
                } else {
                    ptr::null_mut()
                },
                per_member_len: per_member.len(),
                // Like the CLI, the point of each sample is not asked for in per-sample modes.
                members: if per_sample {
                    ptr::null_mut()
                } else {
                    members.as_mut_ptr()
                },
                members_len: if per_sample { 0 } else { members.len() },
                entropy: ptr::null_mut(),
                entropy_len: 0,
                disagreement: ptr::null_mut(),
                disagreement_len: 0,
            };
            ok(
                modeconn_ensemble_predict(ens, &input, &s.raw, &outputs),
                "modeconn_ensemble_predict",
            );
            let mut kind = modeconn_kind::Curve;
            let mut classes = 0usize;
            let mut provider = modeconn_provider::Cpu;
            let mut statics = 0usize;
            ok(modeconn_ensemble_kind(ens, &mut kind), "kind");
            ok(modeconn_ensemble_classes(ens, &mut classes), "classes");
            ok(modeconn_ensemble_provider(ens, &mut provider), "provider");
            ok(
                modeconn_ensemble_static_members(ens, &mut statics),
                "static_members",
            );
            ok(modeconn_ensemble_free(ens), "modeconn_ensemble_free");
            ok(modeconn_runtime_free(rt), "modeconn_runtime_free");
            let members = (!per_sample).then(|| {
                members
                    .iter()
                    .map(|m| {
                        if m.kind == modeconn_member_kind::T as u32 {
                            m.t
                        } else {
                            m.index as f64
                        }
                    })
                    .collect()
            });
            let count = sizes.members;
            Answer {
                kind: match kind {
                    modeconn_kind::Curve => "curve",
                    modeconn_kind::Snapshots => "snapshots",
                }
                .into(),
                batch,
                classes,
                provider: match provider {
                    modeconn_provider::Cpu => "cpu",
                    modeconn_provider::Cuda => "cuda",
                }
                .into(),
                members,
                probabilities: ArrayD::from_shape_vec(vec![batch, classes], probabilities)
                    .expect("batch x classes"),
                per_member: q.per_member.then(|| {
                    ArrayD::from_shape_vec(vec![count, batch, classes], per_member)
                        .expect("members x batch x classes")
                }),
                static_members: statics,
                // Scoring against labels is the CLI's; the C API returns probabilities.
                scores: None,
            }
        }
    }
}
