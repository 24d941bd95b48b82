//! A metric of each member of a snapshot set, and of the ensemble of the first 1, 2, ...
//! members.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{DrawResult, Style, colour, draw_legend, fractions, tight_range};

/// The picture of an `eval` of a snapshot set, in the units shown.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotsPlot {
    /// The title.
    pub title: String,
    /// The label of the y axis, with its unit.
    pub y_label: String,
    /// The value of each member, in order.
    pub members: Vec<f64>,
    /// The value of the ensemble of the first 1, 2, ... members, for metrics ensembles have.
    pub running: Option<Vec<f64>>,
}

/// Draws `p` onto `root`.
pub fn draw<DB>(root: &DrawingArea<DB, Shift>, p: &SnapshotsPlot, style: &Style) -> DrawResult
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let n = p.members.len();
    let running = p.running.as_deref().unwrap_or(&[]);
    let (y0, y1) = tight_range(p.members.iter().chain(running).copied());
    let x = (0.5, n as f64 + 0.5);
    let mut chart = ChartBuilder::on(root)
        .caption(&p.title, style.title())
        .margin(style.px(16.0))
        .x_label_area_size(style.px(52.0))
        .y_label_area_size(style.px(72.0))
        .build_cartesian_2d(x.0..x.1, y0..y1)?;
    // Members are counted: ticks only at whole numbers.
    let whole = |v: &f64| {
        if (v - v.round()).abs() < 1e-9 && *v >= 1.0 {
            format!("{}", v.round() as i64)
        } else {
            String::new()
        }
    };
    let fmt = |v: &f64| super::number(*v);
    super::mesh(&mut chart, style)
        .x_desc("members")
        .y_desc(&p.y_label)
        .x_labels(n.clamp(2, 12))
        .x_label_formatter(&whole)
        .y_label_formatter(&fmt)
        .draw()?;

    let at = |v: &[f64]| -> Vec<(f64, f64)> {
        v.iter()
            .enumerate()
            .map(|(i, &y)| ((i + 1) as f64, y))
            .collect()
    };
    let members = at(&p.members);
    let blue = colour(0);
    let r = style.marker();
    chart.draw_series(LineSeries::new(
        members.iter().copied(),
        blue.mix(0.35).stroke_width(1),
    ))?;
    chart
        .draw_series(members.iter().map(|&c| Circle::new(c, r, blue.filled())))?
        .label("member")
        .legend(move |(x, y)| Circle::new((x + 13, y), r, blue.filled()));
    let mut labels = vec!["member"];
    let running = at(running);
    if !running.is_empty() {
        let red = colour(1);
        let width = style.px(3.0);
        chart
            .draw_series(LineSeries::new(
                running.iter().copied(),
                red.stroke_width(width),
            ))?
            .label("running ensemble")
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (26, 0)], red.stroke_width(width))
                    + Rectangle::new([(10, -3), (16, 3)], red.filled())
            });
        chart.draw_series(running.iter().map(|&(cx, cy)| {
            EmptyElement::at((cx, cy)) + Rectangle::new([(-3, -3), (3, 3)], red.filled())
        }))?;
        labels.push("running ensemble");
    }
    let points = [
        fractions(&members, x, (y0, y1), true),
        fractions(&running, x, (y0, y1), true),
    ]
    .concat();
    draw_legend(&mut chart, style, &labels, &points)?;
    Ok(())
}
