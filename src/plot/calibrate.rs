//! A reliability diagram before and after calibration: each bin of confidence's accuracy as a
//! bar, its gap to the bin's mean confidence, and the diagonal of perfect calibration.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{DrawResult, Style, colour, draw_legend};

/// One bin of confidence: samples whose top probability is in `(lower, upper]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bin {
    /// The bin's lower end.
    pub lower: f64,
    /// Its upper end.
    pub upper: f64,
    /// The samples in it.
    pub count: u64,
    /// Their mean confidence (0 when the bin is empty).
    pub confidence: f64,
    /// Their accuracy (0 when the bin is empty).
    pub accuracy: f64,
}

/// One diagram: the bins at one temperature.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Its caption: `before: T 1.00, ECE 4.1%`.
    pub caption: String,
    /// The temperature.
    pub temperature: f64,
    /// The expected calibration error (a fraction).
    pub ece: f64,
    /// The accuracy (a fraction).
    pub accuracy: f64,
    /// The bins, in order of confidence.
    pub bins: Vec<Bin>,
}

/// The picture of a `calibrate` report: before and after, side by side.
#[derive(Debug, Clone, PartialEq)]
pub struct ReliabilityPlot {
    /// The title.
    pub title: String,
    /// Before and after.
    pub panels: [Panel; 2],
}

/// The labels of the legend.
const LABELS: [&str; 3] = ["accuracy", "gap to confidence", "perfect calibration"];

/// Draws `p` onto `root`.
pub fn draw<DB>(root: &DrawingArea<DB, Shift>, p: &ReliabilityPlot, style: &Style) -> DrawResult
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let body = super::titled(root, &p.title, style)?;
    let (w, _) = body.dim_in_pixel();
    let (left, right) = body.split_horizontally(w / 2);
    panel(&left, &p.panels[0], style, true)?;
    panel(&right, &p.panels[1], style, false)?;
    Ok(())
}

/// Draws one diagram onto `area`, with the legend when `legend`.
fn panel<DB>(area: &DrawingArea<DB, Shift>, p: &Panel, style: &Style, legend: bool) -> DrawResult
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let mut chart = ChartBuilder::on(area)
        .caption(&p.caption, style.label())
        .margin(style.px(12.0))
        .x_label_area_size(style.px(52.0))
        .y_label_area_size(style.px(62.0))
        .build_cartesian_2d(0.0..1.0, 0.0..1.0)?;
    super::mesh(&mut chart, style)
        .x_desc("confidence")
        .y_desc("accuracy")
        .x_labels(6)
        .y_labels(6)
        .bold_line_style(RGBColor(220, 220, 220))
        .light_line_style(RGBColor(243, 243, 243))
        .draw()?;
    let bar = colour(0);
    let gap = colour(1);
    let used: Vec<&Bin> = p.bins.iter().filter(|b| b.count > 0).collect();
    chart
        .draw_series(used.iter().map(|b| {
            Rectangle::new(
                [(b.lower, 0.0), (b.upper, b.accuracy)],
                bar.mix(0.85).filled(),
            )
        }))?
        .label(LABELS[0])
        .legend(move |(x, y)| {
            Rectangle::new([(x + 4, y - 6), (x + 24, y + 6)], bar.mix(0.85).filled())
        });
    chart.draw_series(used.iter().map(|b| {
        Rectangle::new(
            [(b.lower, 0.0), (b.upper, b.accuracy)],
            RGBColor(20, 60, 110).stroke_width(1),
        )
    }))?;
    chart
        .draw_series(used.iter().map(|b| {
            let (lo, hi) = (b.accuracy.min(b.confidence), b.accuracy.max(b.confidence));
            Rectangle::new([(b.lower, lo), (b.upper, hi)], gap.mix(0.35).filled())
        }))?
        .label(LABELS[1])
        .legend(move |(x, y)| {
            EmptyElement::at((x, y))
                + Rectangle::new([(4, -6), (24, 6)], gap.mix(0.35).filled())
                + Rectangle::new([(4, -6), (24, 6)], gap.stroke_width(1))
        });
    chart.draw_series(used.iter().map(|b| {
        let (lo, hi) = (b.accuracy.min(b.confidence), b.accuracy.max(b.confidence));
        Rectangle::new([(b.lower, lo), (b.upper, hi)], gap.stroke_width(1))
    }))?;
    let w = style.line();
    let (dash, space) = (style.px(6.0), style.px(5.0));
    chart
        .draw_series(DashedLineSeries::new(
            [(0.0, 0.0), (1.0, 1.0)],
            dash,
            space,
            BLACK.stroke_width(w),
        ))?
        .label(LABELS[2])
        .legend(move |(x, y)| {
            EmptyElement::at((x, y))
                + PathElement::new(vec![(0, 0), (8, 0)], BLACK.stroke_width(w))
                + PathElement::new(vec![(14, 0), (22, 0)], BLACK.stroke_width(w))
        });
    if legend {
        // What the bars, their gaps and the diagonal cover, as fractions of the chart.
        let mut data: Vec<(f64, f64)> = Vec::new();
        for b in &used {
            let top = b.accuracy.max(b.confidence);
            for i in 0..=4 {
                for j in 0..=8 {
                    let xf = b.lower + (b.upper - b.lower) * f64::from(i) / 4.0;
                    data.push((xf, top * f64::from(j) / 8.0));
                }
            }
        }
        data.extend((0..=40).map(|k| (f64::from(k) / 40.0, f64::from(k) / 40.0)));
        draw_legend(&mut chart, style, &LABELS, &data)?;
    }
    Ok(())
}
