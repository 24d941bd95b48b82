//! An FGE run, as the paper's Figure 3: the cyclical learning rate against the iteration with
//! the snapshots marked on it (top), and the test error of each member and of the ensemble of
//! the members so far at the iterations of their snapshots (bottom).

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{DrawResult, Style, colour, draw_legend, fractions, number, tight_range};

/// The picture of an `fge` report, in the units shown.
#[derive(Debug, Clone, PartialEq)]
pub struct FgePlot {
    /// The title.
    pub title: String,
    /// The label of the bottom panel's y axis, with its unit.
    pub y_label: String,
    /// The iterations of the run (the x axis's end).
    pub iterations: usize,
    /// `(iteration, rate)` through the schedule's corners, in order.
    pub lr: Vec<(f64, f64)>,
    /// `(iteration, rate)` where each member's snapshot was taken.
    pub snapshots: Vec<(f64, f64)>,
    /// Each member's value, in the order of `snapshots`.
    pub members: Vec<f64>,
    /// The running ensemble's value after each member (empty when the report has none).
    pub running: Vec<f64>,
}

/// Draws `p` onto `root`: the schedule above, the errors below.
pub fn draw<DB>(root: &DrawingArea<DB, Shift>, p: &FgePlot, style: &Style) -> DrawResult
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let body = super::titled(root, &p.title, style)?;
    let (_, h) = body.dim_in_pixel();
    let (top, bottom) = body.split_vertically(h * 42 / 100);
    let x = (0.0, p.iterations as f64 * 1.02);
    let y_area = style.px(84.0);
    let grey = RGBColor(215, 215, 215);
    let (dash, gap) = (style.px(5.0), style.px(5.0));
    let whole = |v: &f64| number(*v);

    // The schedule.
    let (_, lr_hi) = super::extent(p.lr.iter().map(|&(_, v)| v)).unwrap_or((0.0, 1.0));
    // Room above the peaks for the legend.
    let lr_range = (0.0, if lr_hi > 0.0 { lr_hi * 1.6 } else { 1.0 });
    let mut chart = ChartBuilder::on(&top)
        .margin(style.px(12.0))
        .margin_bottom(style.px(4.0))
        .x_label_area_size(style.px(30.0))
        .y_label_area_size(y_area)
        .build_cartesian_2d(x.0..x.1, lr_range.0..lr_range.1)?;
    super::mesh(&mut chart, style)
        .y_desc("learning rate")
        .x_label_formatter(&whole)
        .y_label_formatter(&whole)
        .y_labels(5)
        .bold_line_style(RGBColor(225, 225, 225))
        .light_line_style(RGBColor(244, 244, 244))
        .draw()?;
    for &(i, _) in &p.snapshots {
        chart.draw_series(DashedLineSeries::new(
            [(i, lr_range.0), (i, lr_range.1)],
            dash,
            gap,
            grey.stroke_width(1),
        ))?;
    }
    let blue = colour(0);
    let red = colour(1);
    let width = style.line();
    chart
        .draw_series(LineSeries::new(
            p.lr.iter().copied(),
            blue.stroke_width(width),
        ))?
        .label("learning rate")
        .legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 26, y)], blue.stroke_width(width))
        });
    let r = style.marker() + 1;
    chart
        .draw_series(p.snapshots.iter().map(|&c| Circle::new(c, r, red.filled())))?
        .label("snapshot")
        .legend(move |(x, y)| Circle::new((x + 13, y), r, red.filled()));
    let points = [
        fractions(&p.lr, x, lr_range, true),
        fractions(&p.snapshots, x, lr_range, false),
    ]
    .concat();
    draw_legend(&mut chart, style, &["learning rate", "snapshot"], &points)?;

    // The errors.
    let at = |v: &[f64]| -> Vec<(f64, f64)> {
        p.snapshots
            .iter()
            .zip(v)
            .map(|(&(i, _), &y)| (i, y))
            .collect()
    };
    let members = at(&p.members);
    let running = at(&p.running);
    let (y0, y1) = tight_range(p.members.iter().chain(&p.running).copied());
    let mut chart = ChartBuilder::on(&bottom)
        .margin(style.px(12.0))
        .margin_top(style.px(4.0))
        .x_label_area_size(style.px(52.0))
        .y_label_area_size(y_area)
        .build_cartesian_2d(x.0..x.1, y0..y1)?;
    super::mesh(&mut chart, style)
        .x_desc("iteration")
        .y_desc(&p.y_label)
        .x_label_formatter(&whole)
        .y_label_formatter(&whole)
        .bold_line_style(RGBColor(225, 225, 225))
        .light_line_style(RGBColor(244, 244, 244))
        .draw()?;
    for &(i, _) in &p.snapshots {
        chart.draw_series(DashedLineSeries::new(
            [(i, y0), (i, y1)],
            dash,
            gap,
            grey.stroke_width(1),
        ))?;
    }
    let mr = style.marker();
    chart
        .draw_series(members.iter().map(|&c| Circle::new(c, mr, blue.filled())))?
        .label("member")
        .legend(move |(x, y)| Circle::new((x + 13, y), mr, blue.filled()));
    let mut labels = vec!["member"];
    if !running.is_empty() {
        let w = style.px(3.0);
        chart
            .draw_series(LineSeries::new(
                running.iter().copied(),
                red.stroke_width(w),
            ))?
            .label("running ensemble")
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (26, 0)], red.stroke_width(w))
                    + Rectangle::new([(10, -3), (16, 3)], red.filled())
            });
        chart.draw_series(
            running
                .iter()
                .map(|&c| EmptyElement::at(c) + Rectangle::new([(-3, -3), (3, 3)], red.filled())),
        )?;
        labels.push("running ensemble");
    }
    let points = [
        fractions(&members, x, (y0, y1), false),
        fractions(&running, x, (y0, y1), true),
    ]
    .concat();
    draw_legend(&mut chart, style, &labels, &points)?;
    Ok(())
}
