//! Reports read into pictures: which metric, in which unit, and the numbers to draw.
//!
//! `eval`, `plane` and `fge` reports are the trainer's typed reports
//! ([`modeconn_jobs::Report`]); `attack` and `calibrate` reports are the CLI's own JSON,
//! read field by field. Every error says what is missing or wrong.

use modeconn_jobs::{
    EnsembleScores, EvalReport, Evaluation, FgeReport, PlaneReport, PointRow, Report, fge_lr,
};
use serde_json::Value;

use super::Picture;
use super::attack::{AttackPlot, AttackSeries, Measured};
use super::calibrate::{Bin, Panel, ReliabilityPlot};
use super::curve::CurvePlot;
use super::fge::FgePlot;
use super::plane::{Anchor, PlanePlot};
use super::snapshots::SnapshotsPlot;

/// The commands whose reports can be drawn.
pub const DRAWN: [&str; 5] = ["eval", "plane", "fge", "attack", "calibrate"];

/// How a metric's values are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A fraction shown in percent (errors, accuracies, ECE).
    Percent,
    /// A loss or NLL in nats, shown as it is.
    Nats,
}

/// One metric a report has: its name in the report, how a label says it, its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The field of the report (and the value of `--metric`).
    pub key: &'static str,
    /// What labels call it: `test error`.
    pub name: &'static str,
    /// Its unit.
    pub unit: Unit,
}

impl Metric {
    /// The label of an axis showing it: `test error (%)`, `train loss (nats)`.
    pub fn axis(&self) -> String {
        match self.unit {
            Unit::Percent => format!("{} (%)", self.name),
            Unit::Nats => format!("{} (nats)", self.name),
        }
    }

    /// A value of the report in the unit shown.
    pub fn show(&self, v: f64) -> f64 {
        match self.unit {
            Unit::Percent => 100.0 * v,
            Unit::Nats => v,
        }
    }
}

const fn metric(key: &'static str, name: &'static str, unit: Unit) -> Metric {
    Metric { key, name, unit }
}

/// The metrics of an evaluated point (`PointRow`), the default first.
const POINT_METRICS: [Metric; 5] = [
    metric("test_error", "test error", Unit::Percent),
    metric("train_loss", "train loss", Unit::Nats),
    metric("train_error", "train error", Unit::Percent),
    metric("test_nll", "test NLL", Unit::Nats),
    metric("test_ece", "test ECE", Unit::Percent),
];

/// The metrics of a plane's grids, the default first.
const PLANE_METRICS: [Metric; 5] = [
    metric("train_loss", "train loss", Unit::Nats),
    metric("train_nll", "train NLL", Unit::Nats),
    metric("train_error", "train error", Unit::Percent),
    metric("test_nll", "test NLL", Unit::Nats),
    metric("test_error", "test error", Unit::Percent),
];

/// The metrics of an FGE run's members, the default first.
const FGE_METRICS: [Metric; 2] = [
    metric("test_error", "test error", Unit::Percent),
    metric("test_nll", "test NLL", Unit::Nats),
];

/// The metric named `asked` among `known` (the first when none is asked), or an error that
/// lists those the report has.
fn choose(known: &[Metric], asked: Option<&str>, what: &str) -> anyhow::Result<Metric> {
    let Some(asked) = asked else {
        return Ok(known[0]);
    };
    known
        .iter()
        .find(|m| m.key == asked)
        .copied()
        .ok_or_else(|| {
            let names: Vec<&str> = known.iter().map(|m| m.key).collect();
            anyhow::anyhow!(
                "{what} has no metric `{asked}`; it has {}",
                names.join(", ")
            )
        })
}

/// The picture of a report, with `metric` (or the report's default), and what it shows, for
/// the message that names the file written. `what` names the report in errors (its path).
pub fn picture(
    report: &Value,
    metric: Option<&str>,
    what: &str,
) -> anyhow::Result<(Picture, String)> {
    let Some(command) = report.get("command").and_then(Value::as_str) else {
        anyhow::bail!(
            "{what} is not a report of modeconn: it has no \"command\" field (plot draws the \
             --json reports of {})",
            DRAWN.join(", ")
        );
    };
    match command {
        "attack" => attack(report, metric, what),
        "calibrate" => calibration(report, metric, what),
        "eval" | "plane" | "fge" => {
            let typed: Report = serde_json::from_value(report.clone())
                .map_err(|e| anyhow::anyhow!("{what} is not a valid {command} report: {e}"))?;
            match typed {
                Report::Eval(r) => eval(&r, metric, what),
                Report::Plane(r) => plane(&r, metric, what),
                Report::Fge(r) => fge(&r, metric, what),
                other => anyhow::bail!("{what}: a report of `{}`", other.command()),
            }
        }
        other => anyhow::bail!(
            "{what} is a report of `{other}`, which plot cannot draw; it draws the reports of {}",
            DRAWN.join(", ")
        ),
    }
}

/// The value of `metric` in a point's row.
fn of_point(row: &PointRow, metric: &Metric) -> f64 {
    let v = match metric.key {
        "train_loss" => row.train_loss,
        "train_error" => row.train_error,
        "test_nll" => row.test_nll,
        "test_ece" => row.test_ece,
        _ => row.test_error,
    };
    metric.show(v)
}

/// The value of `metric` for an ensemble, when ensembles have it (not the training metrics).
fn of_ensemble(e: &EnsembleScores, metric: &Metric) -> Option<f64> {
    let v = match metric.key {
        "test_nll" => e.test_nll,
        "test_error" => e.test_error,
        "test_ece" => e.test_ece,
        _ => return None,
    };
    Some(metric.show(v))
}

fn eval(r: &EvalReport, asked: Option<&str>, what: &str) -> anyhow::Result<(Picture, String)> {
    let metric = choose(&POINT_METRICS, asked, what)?;
    match &r.evaluation {
        Evaluation::Curve(c) => {
            let along = |rows: &[PointRow]| -> anyhow::Result<Vec<(f64, f64)>> {
                rows.iter()
                    .map(|p| {
                        p.t.map(|t| (t, of_point(p, &metric))).ok_or_else(|| {
                            anyhow::anyhow!("{what}: a point of the curve has no `t`")
                        })
                    })
                    .collect()
            };
            let curve = along(&c.curve.points)?;
            anyhow::ensure!(!curve.is_empty(), "{what}: the curve has no points");
            let segment = match &c.segment {
                Some(s) => Some(along(&s.points)?),
                None => None,
            };
            let ratio = match c.length_ratio {
                Some(q) => format!(", length ratio {q:.2}"),
                None => String::new(),
            };
            let plot = CurvePlot {
                title: format!("{} along the curve{ratio}", metric.name),
                y_label: metric.axis(),
                curve_label: format!("curve ({}, {} points)", c.basis.as_str(), c.control_points),
                curve,
                segment,
            };
            Ok((Picture::Curve(plot), format!("eval curve, {}", metric.name)))
        }
        Evaluation::Snapshots(s) => {
            anyhow::ensure!(!s.members.is_empty(), "{what}: the set has no members");
            let members = s.members.iter().map(|p| of_point(p, &metric)).collect();
            let running: Option<Vec<f64>> = s
                .running_ensemble
                .iter()
                .map(|e| of_ensemble(e, &metric))
                .collect();
            let running = running.filter(|r| !r.is_empty());
            let plot = SnapshotsPlot {
                title: if running.is_some() {
                    format!(
                        "{} of the members and of their running ensemble",
                        metric.name
                    )
                } else {
                    format!("{} of the members", metric.name)
                },
                y_label: metric.axis(),
                members,
                running,
            };
            Ok((
                Picture::Snapshots(plot),
                format!("eval snapshots, {}", metric.name),
            ))
        }
    }
}

fn plane(r: &PlaneReport, asked: Option<&str>, what: &str) -> anyhow::Result<(Picture, String)> {
    let metric = choose(&PLANE_METRICS, asked, what)?;
    let grid = match metric.key {
        "train_nll" => &r.train_nll,
        "train_error" => &r.train_error,
        "test_nll" => &r.test_nll,
        "test_error" => &r.test_error,
        _ => &r.train_loss,
    };
    let increasing = |v: &[f64]| v.len() >= 2 && v.windows(2).all(|w| w[0] < w[1]);
    anyhow::ensure!(
        increasing(&r.x) && increasing(&r.y),
        "{what}: the grid's x and y must each hold at least 2 increasing coordinates"
    );
    anyhow::ensure!(
        grid.len() == r.y.len() && grid.iter().all(|row| row.len() == r.x.len()),
        "{what}: {} is not a grid of {} rows (y) of {} values (x)",
        metric.key,
        r.y.len(),
        r.x.len()
    );
    anyhow::ensure!(
        grid.iter().flatten().all(|v| v.is_finite()),
        "{what}: {} holds values that are not finite",
        metric.key
    );
    let anchors = r
        .anchors
        .iter()
        .map(|a| Anchor {
            label: a.label.clone().unwrap_or_default(),
            x: a.x,
            y: a.y,
        })
        .collect();
    let plot = PlanePlot {
        title: if r.curve.is_empty() {
            format!("{} in the plane of the three networks", metric.name)
        } else {
            format!("{} in the plane of the curve", metric.name)
        },
        bar_label: metric.axis(),
        x: r.x.clone(),
        y: r.y.clone(),
        grid: grid
            .iter()
            .map(|row| row.iter().map(|&v| metric.show(v)).collect())
            .collect(),
        anchors,
        curve: r.curve.iter().map(|p| (p.x, p.y)).collect(),
    };
    Ok((Picture::Plane(plot), format!("plane, {}", metric.name)))
}

fn fge(r: &FgeReport, asked: Option<&str>, what: &str) -> anyhow::Result<(Picture, String)> {
    let metric = choose(&FGE_METRICS, asked, what)?;
    let Some(schedule) = &r.schedule else {
        anyhow::bail!(
            "{what} has no schedule (`schedule`: the learning rates and the snapshots' \
             iterations), which fge reports record since trainer ABI version 5; run fge again \
             to draw it"
        );
    };
    let n = schedule.snapshot_iterations.len();
    let (members, running) = match metric.key {
        "test_nll" => (&r.member_test_nll, &r.running_ensemble_test_nll),
        _ => (&r.member_test_accuracy, &r.running_ensemble_test_accuracy),
    };
    anyhow::ensure!(
        n > 0 && members.len() == n,
        "{what}: {} snapshot iterations for {} members",
        n,
        members.len()
    );
    anyhow::ensure!(
        running.is_empty() || running.len() == n,
        "{what}: the running ensemble has {} scores for {n} members",
        running.len()
    );
    let value = |v: f64| match metric.key {
        "test_nll" => v,
        _ => metric.show(1.0 - v),
    };
    let c = r.cycle_iterations.max(1);
    let last = schedule
        .iterations
        .max(
            schedule
                .snapshot_iterations
                .iter()
                .copied()
                .max()
                .unwrap_or(0),
        )
        .max(1);
    // The rate is linear between the ends and the middle of each cycle: those points draw it
    // exactly.
    let mut at: Vec<usize> = vec![1, last];
    let mut start = 0;
    while start < last {
        at.extend([start + 1, start + c / 2, start + c]);
        start += c;
    }
    at.retain(|&i| i >= 1 && i <= last);
    at.sort_unstable();
    at.dedup();
    let lr = at
        .iter()
        .map(|&i| (i as f64, fge_lr(schedule.lr1, schedule.lr2, i, c)))
        .collect();
    let snapshots: Vec<(f64, f64)> = schedule
        .snapshot_iterations
        .iter()
        .map(|&i| (i as f64, fge_lr(schedule.lr1, schedule.lr2, i, c)))
        .collect();
    let cycle = if schedule.iterations_per_epoch > 0 {
        let epochs = c as f64 / schedule.iterations_per_epoch as f64;
        format!("{} iterations ({} epochs)", c, super::number(epochs))
    } else {
        format!("{c} iterations")
    };
    let plot = FgePlot {
        title: format!("FGE, cycle {cycle}"),
        y_label: metric.axis(),
        iterations: last,
        lr,
        snapshots,
        members: members.iter().map(|&v| value(v)).collect(),
        running: running.iter().map(|&v| value(v)).collect(),
    };
    Ok((Picture::Fge(plot), format!("fge, {}", metric.name)))
}

/// A number at `key` of `v`, or an error naming the field.
fn num(v: &Value, key: &str, what: &str, place: &str) -> anyhow::Result<f64> {
    v.get(key)
        .and_then(Value::as_f64)
        .ok_or_else(|| anyhow::anyhow!("{what}: {place} has no number `{key}`"))
}

/// An `[lo, hi]` interval at `key` of `v`, when there is one.
fn interval(v: &Value, key: &str) -> Option<(f64, f64)> {
    let pair = v.get(key)?.as_array()?;
    match pair.as_slice() {
        [lo, hi] => Some((lo.as_f64()?, hi.as_f64()?)),
        _ => None,
    }
}

fn attack(report: &Value, asked: Option<&str>, what: &str) -> anyhow::Result<(Picture, String)> {
    let results = report
        .get("results")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow::anyhow!("{what}: the attack report has no `results` array"))?;
    anyhow::ensure!(
        !results.is_empty(),
        "{what}: the attack report has no results"
    );
    let mut known = vec![metric("accuracy", "robust accuracy", Unit::Percent)];
    if results
        .iter()
        .all(|r| r.get("majority_vote_accuracy").is_some())
    {
        known.push(metric(
            "majority_vote_accuracy",
            "robust accuracy of the majority vote",
            Unit::Percent,
        ));
    }
    let metric = choose(&known, asked, what)?;
    let interval_key = if metric.key == "accuracy" {
        "interval"
    } else {
        "majority_vote_interval"
    };
    let measured = |v: &Value, place: &str| -> anyhow::Result<Measured> {
        let value = num(v, metric.key, what, place)?;
        let (lo, hi) = interval(v, interval_key).unwrap_or((value, value));
        Ok(Measured {
            eps: num(v, "eps", what, place)?,
            value: metric.show(value),
            lo: metric.show(lo),
            hi: metric.show(hi),
        })
    };
    let mut series: Vec<AttackSeries> = Vec::new();
    for (i, r) in results.iter().enumerate() {
        let name = r
            .get("attack")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow::anyhow!("{what}: results[{i}] has no `attack`"))?;
        let m = measured(r, &format!("results[{i}]"))?;
        match series.iter_mut().find(|s| s.name == name) {
            Some(s) => s.points.push(m),
            None => series.push(AttackSeries {
                name: name.to_string(),
                points: vec![m],
            }),
        }
    }
    for s in &mut series {
        s.points.sort_by(|a, b| a.eps.total_cmp(&b.eps));
    }
    // The worst case is over every sample's first answer: it has no majority vote.
    let worst = match (
        metric.key,
        report.get("worst_case").and_then(Value::as_array),
    ) {
        ("accuracy", Some(rows)) if series.len() > 1 => {
            let mut points = rows
                .iter()
                .enumerate()
                .map(|(i, r)| measured(r, &format!("worst_case[{i}]")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            points.sort_by(|a, b| a.eps.total_cmp(&b.eps));
            Some(points)
        }
        _ => None,
    };
    let clean = report
        .get("clean")
        .and_then(|c| c.get(metric.key))
        .and_then(Value::as_f64)
        .map(|v| metric.show(v));
    let settings = report.get("settings");
    let text = |key: &str| {
        settings
            .and_then(|s| s.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let norm = text("norm").or_else(|| {
        results[0]
            .get("norm")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let x_label = match norm.as_deref() {
        Some("linf") => "eps (L∞)".to_string(),
        Some("l2") => "eps (L2)".to_string(),
        Some(other) => format!("eps ({other})"),
        None => "eps".to_string(),
    };
    let title = match text("mode") {
        Some(mode) => format!("{}, mode {mode}", metric.name),
        None => metric.name.to_string(),
    };
    let plot = AttackPlot {
        title,
        x_label,
        y_label: metric.axis(),
        clean,
        series,
        worst,
    };
    Ok((Picture::Attack(plot), format!("attack, {}", metric.name)))
}

fn calibration(
    report: &Value,
    asked: Option<&str>,
    what: &str,
) -> anyhow::Result<(Picture, String)> {
    // The "metric" of a calibration is the split whose reliability is drawn.
    let known = [
        metric("test", "test split", Unit::Percent),
        metric("held_out", "held-out samples", Unit::Percent),
    ];
    let split = choose(&known, asked, what)?;
    let part = report
        .get(split.key)
        .ok_or_else(|| anyhow::anyhow!("{what}: the calibrate report has no `{}`", split.key))?;
    let temperature = |when: &str| {
        report
            .get("temperature")
            .and_then(|t| t.get(when))
            .and_then(Value::as_f64)
            .ok_or_else(|| anyhow::anyhow!("{what}: the report has no temperature.{when}"))
    };
    let panel = |when: &str| -> anyhow::Result<Panel> {
        let place = format!("{}.{when}", split.key);
        let scores = part
            .get(when)
            .ok_or_else(|| anyhow::anyhow!("{what}: the report has no {place}"))?;
        let rows = scores
            .get("reliability")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{what}: {place} has no `reliability` bins (reports of calibrate record \
                     them since this version; run calibrate again to draw it)"
                )
            })?;
        let bins = rows
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let place = format!("{place}.reliability[{i}]");
                Ok(Bin {
                    lower: num(b, "lower", what, &place)?,
                    upper: num(b, "upper", what, &place)?,
                    count: num(b, "count", what, &place)? as u64,
                    confidence: num(b, "confidence", what, &place)?,
                    accuracy: num(b, "accuracy", what, &place)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Panel {
            caption: String::new(),
            temperature: temperature(when)?,
            ece: num(scores, "ece", what, &place)?,
            accuracy: num(scores, "accuracy", what, &place)?,
            bins,
        })
    };
    let (mut before, mut after) = (panel("before")?, panel("after")?);
    before.caption = format!(
        "before: T {:.2}, ECE {:.1}%",
        before.temperature,
        100.0 * before.ece
    );
    after.caption = format!(
        "after: T {:.2}, ECE {:.1}%",
        after.temperature,
        100.0 * after.ece
    );
    let mode = report.get("mode").and_then(Value::as_str).unwrap_or("?");
    let plot = ReliabilityPlot {
        title: format!(
            "{}, mode {mode}: T {:.2} → {:.2}, ECE {:.1}% → {:.1}%",
            split.name,
            before.temperature,
            after.temperature,
            100.0 * before.ece,
            100.0 * after.ece
        ),
        panels: [before, after],
    };
    Ok((
        Picture::Calibration(plot),
        format!("calibrate, reliability of the {}", split.name),
    ))
}
