//! Robust accuracy against the size of the perturbation: one line per attack with its 95%
//! intervals, the worst case over the attacks, and the clean accuracy.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{DrawResult, Style, colour, draw_legend, fractions, number};

/// A value measured at one eps, with its 95% interval, in the units shown.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// The size of the perturbation.
    pub eps: f64,
    /// The value (robust accuracy).
    pub value: f64,
    /// The interval's lower end.
    pub lo: f64,
    /// The interval's upper end.
    pub hi: f64,
}

/// One attack's results, in order of eps.
#[derive(Debug, Clone, PartialEq)]
pub struct AttackSeries {
    /// The attack: `pgd`, `eot-pgd`, ...
    pub name: String,
    /// Its results.
    pub points: Vec<Measured>,
}

/// The picture of an `attack` report, in the units shown.
#[derive(Debug, Clone, PartialEq)]
pub struct AttackPlot {
    /// The title.
    pub title: String,
    /// The label of the x axis: `eps (L∞)`.
    pub x_label: String,
    /// The label of the y axis, with its unit.
    pub y_label: String,
    /// The accuracy on the clean inputs.
    pub clean: Option<f64>,
    /// Each attack's results.
    pub series: Vec<AttackSeries>,
    /// The worst case over the attacks, at each eps (when there are several attacks).
    pub worst: Option<Vec<Measured>>,
}

/// Draws `p` onto `root`.
pub fn draw<DB>(root: &DrawingArea<DB, Shift>, p: &AttackPlot, style: &Style) -> DrawResult
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let all: Vec<&Measured> = p
        .series
        .iter()
        .flat_map(|s| &s.points)
        .chain(p.worst.iter().flatten())
        .collect();
    let (e_lo, e_hi) = super::extent(all.iter().map(|m| m.eps)).unwrap_or((0.0, 1.0));
    let x = if e_hi > e_lo {
        (e_lo.min(0.0), e_hi + 0.05 * (e_hi - e_lo.min(0.0)))
    } else {
        (0.0, e_hi.max(1e-3) * 1.5)
    };
    let top = super::extent(
        all.iter()
            .map(|m| m.hi)
            .chain(p.clean)
            .chain(all.iter().map(|m| m.value)),
    )
    .map_or(100.0, |(_, hi)| hi);
    let y = (0.0, (top * 1.15).clamp(1.0, 100.0).max(top));
    let mut chart = ChartBuilder::on(root)
        .caption(&p.title, style.title())
        .margin(style.px(16.0))
        .x_label_area_size(style.px(52.0))
        .y_label_area_size(style.px(72.0))
        .build_cartesian_2d(x.0..x.1, y.0..y.1)?;
    let fmt = |v: &f64| number(*v);
    super::mesh(&mut chart, style)
        .x_desc(&p.x_label)
        .y_desc(&p.y_label)
        .x_label_formatter(&fmt)
        .y_label_formatter(&fmt)
        .draw()?;

    let mut labels: Vec<String> = Vec::new();
    let mut data: Vec<(f64, f64)> = Vec::new();
    if let Some(clean) = p.clean {
        let grey = RGBColor(110, 110, 110);
        let w = style.line();
        let (dash, gap) = (style.px(4.0), style.px(4.0));
        chart
            .draw_series(DashedLineSeries::new(
                [(x.0, clean), (x.1, clean)],
                dash,
                gap,
                grey.stroke_width(w),
            ))?
            .label(format!("clean ({}%)", number(clean)))
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (7, 0)], grey.stroke_width(w))
                    + PathElement::new(vec![(12, 0), (19, 0)], grey.stroke_width(w))
            });
        labels.push(format!("clean ({}%)", number(clean)));
        data.extend(fractions(&[(x.0, clean), (x.1, clean)], x, y, true));
    }
    // The worst case beneath the attacks, which it follows where one attack is the worst.
    if let Some(worst) = &p.worst {
        let w = style.px(5.0);
        let pts: Vec<(f64, f64)> = worst.iter().map(|m| (m.eps, m.value)).collect();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), BLACK.stroke_width(w)))?
            .label("worst case")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 26, y)], BLACK.stroke_width(w))
            });
        labels.push("worst case".to_string());
        data.extend(fractions(&pts, x, y, true));
    }
    // A light shift along eps per attack keeps the interval bars of one eps apart.
    let n = p.series.len() as f64;
    let shift = |k: usize| (k as f64 - (n - 1.0) / 2.0) * 0.006 * (x.1 - x.0);
    let cap = style.off(4.0);
    for (k, s) in p.series.iter().enumerate() {
        let c = colour(k);
        let width = style.line();
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .map(|m| (m.eps + shift(k), m.value))
            .collect();
        chart.draw_series(s.points.iter().map(|m| {
            let e = m.eps + shift(k);
            PathElement::new(vec![(e, m.lo), (e, m.hi)], c.mix(0.7).stroke_width(1))
        }))?;
        chart.draw_series(s.points.iter().flat_map(|m| {
            let e = m.eps + shift(k);
            [m.lo, m.hi].map(|v| {
                EmptyElement::at((e, v))
                    + PathElement::new(vec![(-cap, 0), (cap, 0)], c.mix(0.7).stroke_width(1))
            })
        }))?;
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(width)))?
            .label(&s.name)
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (26, 0)], c.stroke_width(width))
                    + Circle::new((13, 0), 4, c.filled())
            });
        chart.draw_series(
            pts.iter()
                .map(|&q| Circle::new(q, style.marker(), c.filled())),
        )?;
        labels.push(s.name.clone());
        data.extend(fractions(&pts, x, y, true));
        data.extend(
            s.points
                .iter()
                .flat_map(|m| fractions(&[(m.eps, m.lo), (m.eps, m.hi)], x, y, true)),
        );
    }
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    draw_legend(&mut chart, style, &labels, &data)?;
    Ok(())
}
