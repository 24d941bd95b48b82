//! An evaluation for people and for spreadsheets: the per-point table of a curve and its
//! segment (or of a set's members and running ensemble), the summary in the layout of the
//! paper's Table 2 (min, int, mean, max of each metric; the length ratio), and the same rows as
//! CSV.

use std::fmt::Write as _;

use modeconn_jobs::{Along, EnsembleScores, EvalReport, Evaluation, PointRow, Stats};

/// One line of the per-point table: loss and NLL as they are, errors in percent.
fn point_line(out: &mut String, first: &str, p: &PointRow) {
    let _ = writeln!(
        out,
        "{first:>8} {:>11.4} {:>12.2} {:>9.4} {:>11.2} {:>9.4}",
        p.train_loss,
        100.0 * p.train_error,
        p.test_nll,
        100.0 * p.test_error,
        p.test_ece
    );
}

fn header(out: &mut String, first: &str) {
    let _ = writeln!(
        out,
        "{first:>8} {:>11} {:>12} {:>9} {:>11} {:>9}",
        "train loss", "train err %", "test nll", "test err %", "test ECE"
    );
}

fn along_table(out: &mut String, name: &str, along: &Along) {
    let _ = writeln!(out, "{name}:");
    header(out, "t");
    for p in &along.points {
        point_line(out, &format!("{:.3}", p.t.unwrap_or(f64::NAN)), p);
    }
    let _ = writeln!(
        out,
        "ensemble of its {} points: test nll {:.4}, test error {:.2}%, test ECE {:.4}",
        along.ensemble.members,
        along.ensemble.test_nll,
        100.0 * along.ensemble.test_error,
        along.ensemble.test_ece
    );
}

fn stats_row(out: &mut String, path: &str, metric: &str, s: &Stats, percent: bool) {
    let k = if percent { 100.0 } else { 1.0 };
    let _ = writeln!(
        out,
        "{path:<9} {metric:<13} {:>9.4} {:>9.4} {:>9.4} {:>9.4}",
        k * s.min,
        k * s.integral,
        k * s.mean,
        k * s.max
    );
}

fn summary_rows(out: &mut String, path: &str, along: &Along) {
    let s = &along.summary;
    stats_row(out, path, "train loss", &s.train_loss, false);
    stats_row(out, path, "train err %", &s.train_error, true);
    stats_row(out, path, "test nll", &s.test_nll, false);
    stats_row(out, path, "test err %", &s.test_error, true);
}

/// The text of an evaluation.
pub fn text(report: &EvalReport) -> String {
    let mut out = String::new();
    match &report.evaluation {
        Evaluation::Curve(c) => {
            let _ = writeln!(
                out,
                "{}: a {} curve of {} control points, on {}",
                report.bundle.display(),
                c.basis,
                c.control_points,
                report.device
            );
            along_table(&mut out, "curve", &c.curve);
            if let Some(seg) = &c.segment {
                out.push('\n');
                along_table(&mut out, "segment", seg);
            }
            out.push('\n');
            let _ = writeln!(
                out,
                "{:<9} {:<13} {:>9} {:>9} {:>9} {:>9}",
                "", "", "min", "int", "mean", "max"
            );
            summary_rows(&mut out, "curve", &c.curve);
            if let Some(seg) = &c.segment {
                summary_rows(&mut out, "segment", seg);
            }
            let ratio = c.length_ratio.map_or_else(
                || "undefined (the endpoints coincide)".to_string(),
                |r| format!("{r:.4}"),
            );
            let _ = writeln!(
                out,
                "length {:.4}, segment {:.4}, length ratio {ratio}",
                c.length, c.segment_length
            );
            out.push_str("(int: the length-weighted mean along the curve; errors in percent)\n");
        }
        Evaluation::Snapshots(s) => {
            let _ = writeln!(
                out,
                "{}: a snapshot set of {} members, on {}",
                report.bundle.display(),
                s.members.len(),
                report.device
            );
            let _ = writeln!(
                out,
                "{:>8} {:>11} {:>12} {:>9} {:>11} {:>13} {:>14}",
                "member",
                "train loss",
                "train err %",
                "test nll",
                "test err %",
                "ensemble nll",
                "ensemble err %"
            );
            for (p, e) in s.members.iter().zip(&s.running_ensemble) {
                let _ = writeln!(
                    out,
                    "{:>8} {:>11.4} {:>12.2} {:>9.4} {:>11.2} {:>13.4} {:>14.2}",
                    p.member.unwrap_or(0),
                    p.train_loss,
                    100.0 * p.train_error,
                    p.test_nll,
                    100.0 * p.test_error,
                    e.test_nll,
                    100.0 * e.test_error
                );
            }
            let _ = writeln!(
                out,
                "ensemble of {} members: test nll {:.4}, test error {:.2}%, test ECE {:.4} (the \
                 ensemble columns: members 0 to this one)",
                s.ensemble.members,
                s.ensemble.test_nll,
                100.0 * s.ensemble.test_error,
                s.ensemble.test_ece
            );
        }
    }
    out
}

/// The per-point rows as CSV: `path` is `curve`, `segment` or `member`; errors are fractions.
/// A snapshot set's rows carry the running ensemble's scores too.
pub fn csv(report: &EvalReport) -> String {
    let mut out = String::from(
        "path,t,member,train_loss,train_error,test_nll,test_error,test_ece,ensemble_test_nll,\
         ensemble_test_error,ensemble_test_ece\n",
    );
    let opt = |v: Option<String>| v.unwrap_or_default();
    let mut row = |path: &str, p: &PointRow, ensemble: Option<&EnsembleScores>| {
        let _ = writeln!(
            out,
            "{path},{},{},{},{},{},{},{},{},{},{}",
            opt(p.t.map(|t| t.to_string())),
            opt(p.member.map(|m| m.to_string())),
            p.train_loss,
            p.train_error,
            p.test_nll,
            p.test_error,
            p.test_ece,
            opt(ensemble.map(|e| e.test_nll.to_string())),
            opt(ensemble.map(|e| e.test_error.to_string())),
            opt(ensemble.map(|e| e.test_ece.to_string())),
        );
    };
    match &report.evaluation {
        Evaluation::Curve(c) => {
            for p in &c.curve.points {
                row("curve", p, None);
            }
            for p in c.segment.iter().flat_map(|s| &s.points) {
                row("segment", p, None);
            }
        }
        Evaluation::Snapshots(s) => {
            for (p, e) in s.members.iter().zip(&s.running_ensemble) {
                row("member", p, Some(e));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use modeconn_jobs::{Basis, CurveEvaluation, Device, Summary};

    fn point(t: f64, err: f64) -> PointRow {
        PointRow {
            t: Some(t),
            member: None,
            train_loss: 0.5,
            train_error: err,
            test_nll: 0.25,
            test_error: err,
            test_ece: 0.125,
        }
    }

    fn stats(v: f64) -> Stats {
        Stats {
            min: v,
            max: 2.0 * v,
            mean: 1.5 * v,
            integral: 1.4 * v,
        }
    }

    fn along(errors: &[f64]) -> Along {
        Along {
            points: errors
                .iter()
                .enumerate()
                .map(|(i, &e)| point(i as f64 / (errors.len() - 1) as f64, e))
                .collect(),
            summary: Summary {
                train_loss: stats(0.1),
                train_error: stats(0.02),
                test_nll: stats(0.2),
                test_error: stats(0.03),
            },
            ensemble: EnsembleScores {
                members: errors.len(),
                test_nll: 0.125,
                test_error: 0.01,
                test_ece: 0.0625,
            },
        }
    }

    fn report() -> EvalReport {
        EvalReport {
            bundle: "c.safetensors".into(),
            device: Device::Cpu,
            evaluation: Evaluation::Curve(CurveEvaluation {
                basis: Basis::Bezier,
                control_points: 3,
                length: 10.5,
                segment_length: 10.0,
                length_ratio: Some(1.05),
                curve: along(&[0.01, 0.02, 0.01]),
                segment: Some(along(&[0.01, 0.5, 0.01])),
            }),
        }
    }

    #[test]
    fn the_text_has_every_point_and_the_table_2_rows() {
        let text = text(&report());
        assert!(
            text.contains("a bezier curve of 3 control points, on cpu"),
            "{text}"
        );
        // Three points of the curve and three of the segment, errors in percent.
        assert_eq!(text.matches("   0.500      0.5000 ").count(), 2, "{text}");
        assert!(text.contains("test ECE 0.0625"), "{text}");
        assert!(text.contains("50.00"), "{text}");
        assert!(text.contains("min       int      mean       max"), "{text}");
        assert!(
            text.contains("segment   test err %       3.0000    4.2000    4.5000    6.0000"),
            "{text}"
        );
        assert!(text.contains("length ratio 1.0500"), "{text}");
    }

    #[test]
    fn the_csv_has_one_row_per_point() {
        let csv = csv(&report());
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 7);
        assert_eq!(lines[0].split(',').count(), 11);
        assert_eq!(lines[5], "segment,0.5,,0.5,0.5,0.25,0.5,0.125,,,");
    }
}
