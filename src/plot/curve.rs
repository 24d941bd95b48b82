//! A metric along a curve, against t, beside the straight segment between its endpoints.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{DrawResult, Style, colour, draw_legend, fractions, value_range};

/// The picture of an `eval` of a curve, in the units shown.
#[derive(Debug, Clone, PartialEq)]
pub struct CurvePlot {
    /// The title.
    pub title: String,
    /// The label of the y axis, with its unit.
    pub y_label: String,
    /// The legend's name of the curve: `curve (bezier, 3 points)`.
    pub curve_label: String,
    /// `(t, value)` along the curve, in order of t.
    pub curve: Vec<(f64, f64)>,
    /// `(t, value)` along the segment, when it was evaluated.
    pub segment: Option<Vec<(f64, f64)>>,
}

/// Draws `p` onto `root`.
pub fn draw<DB>(root: &DrawingArea<DB, Shift>, p: &CurvePlot, style: &Style) -> DrawResult
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let segment = p.segment.as_deref().unwrap_or(&[]);
    let (y0, y1) = value_range(p.curve.iter().chain(segment).map(|&(_, v)| v));
    let x = (-0.03, 1.03);
    let mut chart = ChartBuilder::on(root)
        .caption(&p.title, style.title())
        .margin(style.px(16.0))
        .x_label_area_size(style.px(52.0))
        .y_label_area_size(style.px(72.0))
        .build_cartesian_2d(x.0..x.1, y0..y1)?;
    let fmt = |v: &f64| super::number(*v);
    super::mesh(&mut chart, style)
        .x_desc("t (position along the curve)")
        .y_desc(&p.y_label)
        .x_label_formatter(&fmt)
        .y_label_formatter(&fmt)
        .draw()?;

    let width = style.line();
    let (dash, gap) = (style.px(9.0), style.px(6.0));
    let mut labels = vec![p.curve_label.as_str()];
    if !segment.is_empty() {
        let red = colour(1);
        chart
            .draw_series(DashedLineSeries::new(
                segment.iter().copied(),
                dash,
                gap,
                red.stroke_width(width),
            ))?
            .label("segment")
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (dash as i32, 0)], red.stroke_width(width))
                    + PathElement::new(
                        vec![((dash + gap) as i32, 0), ((2 * dash + gap) as i32, 0)],
                        red.stroke_width(width),
                    )
            });
        chart.draw_series(
            segment
                .iter()
                .map(|&q| Circle::new(q, style.px(2.5), red.filled())),
        )?;
        labels.push("segment");
    }
    let blue = colour(0);
    chart
        .draw_series(LineSeries::new(
            p.curve.iter().copied(),
            blue.stroke_width(width),
        ))?
        .label(&p.curve_label)
        .legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 26, y)], blue.stroke_width(width))
        });
    chart.draw_series(
        p.curve
            .iter()
            .map(|&q| Circle::new(q, style.px(3.0), blue.filled())),
    )?;

    // The endpoints, the two trained networks the curve joins.
    let ends: Vec<(f64, f64)> = p
        .curve
        .iter()
        .copied()
        .filter(|&(t, _)| t == 0.0 || t == 1.0)
        .collect();
    if !ends.is_empty() {
        let r = style.px(7.0) as i32;
        let square = move |c: (f64, f64)| {
            EmptyElement::at(c)
                + Rectangle::new([(-r, -r), (r, r)], BLACK.filled())
                + Rectangle::new([(-r + 2, -r + 2), (r - 2, r - 2)], WHITE.filled())
        };
        chart
            .draw_series(ends.iter().map(|&c| square(c)))?
            .label("endpoints (t = 0, 1)")
            .legend(move |(x, y)| {
                EmptyElement::at((x + 13, y))
                    + Rectangle::new([(-r, -r), (r, r)], BLACK.filled())
                    + Rectangle::new([(-r + 2, -r + 2), (r - 2, r - 2)], WHITE.filled())
            });
        labels.push("endpoints (t = 0, 1)");
    }

    let points: Vec<(f64, f64)> = [
        fractions(&p.curve, x, (y0, y1), true),
        fractions(segment, x, (y0, y1), true),
    ]
    .concat();
    draw_legend(&mut chart, style, &labels, &points)?;
    Ok(())
}
