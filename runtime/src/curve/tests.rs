use super::*;

/// de Casteljau's algorithm on scalar control points: the reference for Bezier curves.
fn de_casteljau(points: &[f64], t: f64) -> f64 {
    let mut p = points.to_vec();
    for level in 1..p.len() {
        for i in 0..p.len() - level {
            p[i] = (1.0 - t) * p[i] + t * p[i + 1];
        }
    }
    p[0]
}

/// Piecewise-linear interpolation through points at t_k = k / (K-1): the reference for chains.
fn linear_interp(points: &[f64], t: f64) -> f64 {
    let n = (points.len() - 1) as f64;
    let x = t * n;
    let i = (x.floor() as usize).min(points.len() - 2);
    let f = x - i as f64;
    (1.0 - f) * points[i] + f * points[i + 1]
}

fn ts() -> Vec<f64> {
    let mut rng = SeededRng::new(11);
    let mut ts: Vec<f64> = (0..200).map(|_| rng.unit()).collect();
    ts.extend([0.0, 1.0, 0.5, 1.0 / 3.0, 0.25, 0.75]);
    ts
}

fn combine(c: &[f64], p: &[f64]) -> f64 {
    c.iter().zip(p).map(|(a, b)| a * b).sum()
}

#[test]
fn coefficients_are_a_partition_of_unity() {
    for basis in [Basis::Bezier, Basis::Polychain] {
        for k in 2..=7 {
            for t in ts() {
                let c = basis.coefficients(k, t).unwrap();
                assert_eq!(c.len(), k);
                assert!(c.iter().all(|&x| x >= 0.0), "{basis} K={k} t={t}: {c:?}");
                let sum: f64 = c.iter().sum();
                assert!((sum - 1.0).abs() < 1e-12, "{basis} K={k} t={t}: sum {sum}");
            }
        }
    }
}

#[test]
fn endpoints_are_exact() {
    for basis in [Basis::Bezier, Basis::Polychain] {
        for k in 2..=7 {
            let c0 = basis.coefficients(k, 0.0).unwrap();
            let c1 = basis.coefficients(k, 1.0).unwrap();
            let mut e0 = vec![0.0; k];
            e0[0] = 1.0;
            let mut e1 = vec![0.0; k];
            e1[k - 1] = 1.0;
            assert_eq!(c0, e0, "{basis} K={k}");
            assert_eq!(c1, e1, "{basis} K={k}");
        }
    }
}

#[test]
fn bezier_matches_de_casteljau() {
    let mut rng = SeededRng::new(3);
    for k in 2..=8 {
        let points: Vec<f64> = (0..k).map(|_| rng.unit() * 4.0 - 2.0).collect();
        for t in ts() {
            let c = Basis::Bezier.coefficients(k, t).unwrap();
            let got = combine(&c, &points);
            let want = de_casteljau(&points, t);
            assert!((got - want).abs() < 1e-12, "K={k} t={t}: {got} vs {want}");
        }
    }
}

#[test]
fn chain_matches_linear_interpolation() {
    let mut rng = SeededRng::new(4);
    for k in 2..=8 {
        let points: Vec<f64> = (0..k).map(|_| rng.unit() * 4.0 - 2.0).collect();
        for t in ts() {
            let c = Basis::Polychain.coefficients(k, t).unwrap();
            let got = combine(&c, &points);
            let want = linear_interp(&points, t);
            assert!((got - want).abs() < 1e-12, "K={k} t={t}: {got} vs {want}");
        }
        // The bends sit at t = j / (K-1).
        for (j, p) in points.iter().enumerate() {
            let c = Basis::Polychain
                .coefficients(k, j as f64 / (k - 1) as f64)
                .unwrap();
            assert!((combine(&c, &points) - p).abs() < 1e-12);
        }
    }
}

#[test]
fn derivatives_match_finite_differences() {
    let mut rng = SeededRng::new(5);
    for basis in [Basis::Bezier, Basis::Polychain] {
        for k in 2..=6 {
            let points: Vec<f64> = (0..k).map(|_| rng.unit()).collect();
            for t in ts() {
                let h = 1e-6;
                // Stay inside one chain segment so the difference quotient is exact there.
                let n = (k - 1) as f64;
                let seg = ((t * n).floor() / n).min((n - 1.0) / n);
                let (a, b) = if basis == Basis::Polychain {
                    (seg + 0.25 / n, seg + 0.25 / n + h)
                } else {
                    ((t - h).max(0.0), (t + h).min(1.0))
                };
                let fa = combine(&basis.coefficients(k, a).unwrap(), &points);
                let fb = combine(&basis.coefficients(k, b).unwrap(), &points);
                let at = if basis == Basis::Polychain { a } else { t };
                let d = combine(&basis.derivative_coefficients(k, at).unwrap(), &points);
                assert!(
                    ((fb - fa) / (b - a) - d).abs() < 1e-4,
                    "{basis} K={k} t={t}: {} vs {d}",
                    (fb - fa) / (b - a)
                );
                let sum: f64 = basis.derivative_coefficients(k, at).unwrap().iter().sum();
                assert!(sum.abs() < 1e-9);
            }
        }
    }
}

#[test]
fn bad_arguments_are_rejected() {
    assert!(matches!(
        Basis::Bezier.coefficients(3, 1.5),
        Err(Error::TOutOfRange { .. })
    ));
    assert!(matches!(
        Basis::Polychain.coefficients(3, -0.1),
        Err(Error::TOutOfRange { .. })
    ));
    assert!(Basis::Bezier.coefficients(3, f64::NAN).is_err());
    assert!(Basis::Bezier.coefficients(1, 0.5).is_err());
    assert!(matches!(
        "spline".parse::<Basis>(),
        Err(Error::UnknownBasis(_))
    ));
    assert_eq!("bezier".parse::<Basis>().unwrap(), Basis::Bezier);
    assert!(grid(1).is_err());
    assert_eq!(grid(3).unwrap(), vec![0.0, 0.5, 1.0]);
}

#[test]
fn hat_basis_interpolates_linearly() {
    let g = [0.0, 0.2, 0.5, 1.0];
    let values = [1.0, 3.0, -1.0, 2.0];
    for (i, &t) in g.iter().enumerate() {
        let c = hat_coefficients(&g, t).unwrap();
        assert!((combine(&c, &values) - values[i]).abs() < 1e-12);
    }
    let c = hat_coefficients(&g, 0.35).unwrap();
    assert!((combine(&c, &values) - 1.0).abs() < 1e-12);
    assert!((c.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    assert_eq!(hat_coefficients(&[0.0], 0.7).unwrap(), vec![1.0]);
    assert!(hat_coefficients(&g, 2.0).is_err());
}

/// Points in R^d as K slices, and the Gram matrix of them.
fn gram_of(points: &[Vec<f32>]) -> Gram {
    let mut g = Gram::zeros(points.len());
    let slices: Vec<&[f32]> = points.iter().map(|p| p.as_slice()).collect();
    g.accumulate(&slices).unwrap();
    g
}

fn eval(basis: Basis, points: &[Vec<f32>], t: f64) -> Vec<f64> {
    let c = basis.coefficients(points.len(), t).unwrap();
    (0..points[0].len())
        .map(|i| c.iter().zip(points).map(|(a, p)| a * f64::from(p[i])).sum())
        .collect()
}

fn polyline_length(basis: Basis, points: &[Vec<f32>], n: usize) -> f64 {
    let mut total = 0.0;
    let mut prev = eval(basis, points, 0.0);
    for i in 1..=n {
        let cur = eval(basis, points, i as f64 / n as f64);
        total += prev
            .iter()
            .zip(&cur)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            .sqrt();
        prev = cur;
    }
    total
}

#[test]
fn arc_length_matches_a_fine_polyline() {
    let mut rng = SeededRng::new(6);
    for basis in [Basis::Bezier, Basis::Polychain] {
        for k in 2..=5 {
            let points: Vec<Vec<f32>> = (0..k)
                .map(|_| (0..5).map(|_| rng.unit() as f32).collect())
                .collect();
            let arc = ArcLength::new(basis, &gram_of(&points));
            // 12,000 steps put a vertex on every bend of chains with up to 5 points.
            let reference = polyline_length(basis, &points, 12_000);
            assert!(
                (arc.total() - reference).abs() < 1e-6 * reference.max(1.0),
                "{basis} K={k}: {} vs {reference}",
                arc.total()
            );
            assert!(arc.ratio().unwrap() >= 1.0 - 1e-9);
        }
    }
}

#[test]
fn a_straight_curve_has_ratio_one() {
    // Bends on the segment: the ratio is 1 for both bases.
    let a = vec![0.0f32, 1.0, 2.0];
    let b = vec![3.0f32, -1.0, 4.0];
    let mid = |f: f32| a.iter().zip(&b).map(|(x, y)| x + f * (y - x)).collect();
    let points = vec![a.clone(), mid(1.0 / 3.0), mid(2.0 / 3.0), b.clone()];
    for basis in [Basis::Bezier, Basis::Polychain] {
        let arc = ArcLength::new(basis, &gram_of(&points));
        assert!((arc.ratio().unwrap() - 1.0).abs() < 1e-6, "{basis}");
        assert!((arc.segment() - 17f64.sqrt()).abs() < 1e-6);
    }
}

#[test]
fn uniform_in_arc_length_inverts_the_cumulative_length() {
    let points = vec![vec![0.0f32, 0.0], vec![4.0, 0.0], vec![4.0, 1.0]];
    let arc = ArcLength::new(Basis::Polychain, &gram_of(&points));
    assert!((arc.total() - 5.0).abs() < 1e-9);
    // 80% of the length lies on the first segment, which covers t in [0, 0.5].
    assert!((arc.t_at_fraction(0.8) - 0.5).abs() < 1e-9);
    assert!((arc.t_at_fraction(0.4) - 0.25).abs() < 1e-9);
    assert!((arc.t_at_fraction(0.9) - 0.75).abs() < 1e-9);
    assert_eq!(arc.t_at_fraction(0.0), 0.0);
    assert!((arc.t_at_fraction(1.0) - 1.0).abs() < 1e-12);
}

#[test]
fn seeded_draws_are_reproducible_and_uniform() {
    assert_eq!(uniform(5, 9), uniform(5, 9));
    assert_ne!(uniform(5, 9), uniform(5, 10));
    let mut rng = SeededRng::new(1);
    let mut counts = [0usize; 4];
    for _ in 0..40_000 {
        counts[rng.index(4)] += 1;
    }
    // Each count is Binomial(40000, 1/4): sd ≈ 87; 5 sd is far beyond chance.
    assert!(
        counts.iter().all(|&c| (c as i64 - 10_000).abs() < 435),
        "{counts:?}"
    );
    let idx = os_index(7).unwrap();
    assert!(idx < 7);
}

#[test]
fn keyed_index_depends_on_key_and_bytes() {
    let k1 = [1u8; 32];
    let k2 = [2u8; 32];
    assert_eq!(keyed_index(&k1, b"abc", 21), keyed_index(&k1, b"abc", 21));
    let differ = (0..64u8)
        .filter(|i| keyed_index(&k1, &[*i], 1000) != keyed_index(&k2, &[*i], 1000))
        .count();
    assert!(differ > 60, "keys barely change the index: {differ}/64");
    assert!((0..50u8).all(|i| keyed_index(&k1, &[i], 5) < 5));
}
