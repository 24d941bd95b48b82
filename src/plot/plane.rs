//! A metric over a plane of weight space, as filled contours on a logarithmic scale (as the
//! paper's Figure 1), with the networks that span the plane and the curve through them.
//!
//! The grid's values are interpolated bilinearly (of their logarithms) onto the pixels of the
//! chart, and each pixel takes the colour of its level: [`LEVELS`] levels spaced
//! geometrically between the smallest and the largest value, darker where two levels meet.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{DrawResult, Style};

/// The number of colour levels.
pub const LEVELS: usize = 20;

/// The smallest value shown, as a fraction of the largest: smaller values (a training error of
/// 0 at a trained network) take the lowest level.
pub const FLOOR: f64 = 1e-3;

/// A network that spans the plane (or a bend of its curve), in the plane's coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct Anchor {
    /// Its name: `start`, `bend`, `end`.
    pub label: String,
    /// Along `u`.
    pub x: f64,
    /// Along `v`.
    pub y: f64,
}

/// The picture of a `plane` report, in the units shown.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanePlot {
    /// The title.
    pub title: String,
    /// The label of the colour bar, with its unit.
    pub bar_label: String,
    /// The grid's coordinates along `u`, increasing.
    pub x: Vec<f64>,
    /// The grid's coordinates along `v`, increasing.
    pub y: Vec<f64>,
    /// The values: `grid[j][i]` at `(x[i], y[j])`.
    pub grid: Vec<Vec<f64>>,
    /// The networks that span the plane.
    pub anchors: Vec<Anchor>,
    /// The curve's projection, in order of t (may be empty).
    pub curve: Vec<(f64, f64)>,
}

/// The range the levels span: the largest value, and the smallest one not below
/// [`FLOOR`] times it (positive in every case, and wider than nothing).
pub fn bounds(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = super::extent(values).unwrap_or((1.0, 1.0));
    let hi = if hi > 0.0 { hi } else { 1.0 };
    let lo = lo.max(hi * FLOOR);
    if lo < hi { (lo, hi) } else { (hi / 2.0, hi) }
}

/// The `n + 1` edges of `n` levels spaced geometrically from `lo` to `hi` (both positive).
pub fn log_levels(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let ratio = hi / lo;
    (0..=n)
        .map(|k| lo * ratio.powf(k as f64 / n as f64))
        .collect()
}

/// The level (0 to `n - 1`) of a value whose natural logarithm is `log_v`, among `n` levels
/// spaced geometrically from `lo` to `hi`: below `lo` is level 0, above `hi` level `n - 1`.
pub fn level(log_v: f64, lo: f64, hi: f64, n: usize) -> usize {
    let f = (log_v - lo.ln()) / (hi.ln() - lo.ln());
    if f.is_nan() {
        return 0;
    }
    ((f * n as f64).floor().max(0.0) as usize).min(n - 1)
}

/// The value at `(px, py)` of a grid `values[j][i]` at `(xs[i], ys[j])` (coordinates
/// increasing), interpolated bilinearly between the four nodes around it; outside the grid,
/// that of the nearest point of its edge.
pub fn bilinear(xs: &[f64], ys: &[f64], values: &[Vec<f64>], px: f64, py: f64) -> f64 {
    /// The cell along one axis and where in it: `(k, s)` with the point between `c[k]` and
    /// `c[k + 1]`, a fraction `s` of the way.
    fn locate(c: &[f64], p: f64) -> (usize, f64) {
        if c.len() < 2 {
            return (0, 0.0);
        }
        let k = c.partition_point(|&v| v <= p).clamp(1, c.len() - 1) - 1;
        let s = ((p - c[k]) / (c[k + 1] - c[k])).clamp(0.0, 1.0);
        (k, s)
    }
    let (i, s) = locate(xs, px);
    let (j, r) = locate(ys, py);
    let at = |j: usize, i: usize| {
        let row = &values[j.min(values.len() - 1)];
        row[i.min(row.len() - 1)]
    };
    let bottom = (1.0 - s) * at(j, i) + s * at(j, i + 1);
    let top = (1.0 - s) * at(j + 1, i) + s * at(j + 1, i + 1);
    (1.0 - r) * bottom + r * top
}

/// Viridis at nine even steps: dark violet (low) through blue and green to yellow (high); its
/// lightness rises all the way.
const VIRIDIS: [(u8, u8, u8); 9] = [
    (68, 1, 84),
    (72, 36, 117),
    (59, 82, 139),
    (44, 114, 142),
    (33, 145, 140),
    (40, 174, 128),
    (94, 201, 98),
    (170, 220, 50),
    (253, 231, 37),
];

/// The colour of `f` in `[0, 1]` (clamped): linear between the steps of [`VIRIDIS`].
pub fn colour_map(f: f64) -> RGBColor {
    let f = if f.is_nan() { 0.0 } else { f.clamp(0.0, 1.0) };
    let scaled = f * (VIRIDIS.len() - 1) as f64;
    let k = (scaled.floor() as usize).min(VIRIDIS.len() - 2);
    let s = scaled - k as f64;
    let mix = |a: u8, b: u8| (f64::from(a) + s * (f64::from(b) - f64::from(a))).round() as u8;
    let (a, b) = (VIRIDIS[k], VIRIDIS[k + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// The colour of level `k` of `n`.
pub fn level_colour(k: usize, n: usize) -> RGBColor {
    colour_map((k as f64 + 0.5) / n as f64)
}

/// `c` darkened: where two levels meet.
fn darker(c: RGBColor) -> RGBColor {
    let d = |v: u8| (f64::from(v) * 0.55).round() as u8;
    RGBColor(d(c.0), d(c.1), d(c.2))
}

/// Draws `p` onto `root`: the chart on the left, the colour bar on the right.
pub fn draw<DB>(root: &DrawingArea<DB, Shift>, p: &PlanePlot, style: &Style) -> DrawResult
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let (lo, hi) = bounds(p.grid.iter().flatten().copied());
    let logs: Vec<Vec<f64>> = p
        .grid
        .iter()
        .map(|row| row.iter().map(|&v| v.max(lo).ln()).collect())
        .collect();
    let (x0, x1) = (p.x[0], p.x[p.x.len() - 1]);
    let (y0, y1) = (p.y[0], p.y[p.y.len() - 1]);

    let body = super::titled(root, &p.title, style)?;
    let (w, _) = body.dim_in_pixel();
    let (left, right) = body.split_horizontally(w.saturating_sub(style.px(130.0)));
    let mut chart = ChartBuilder::on(&left)
        .margin(style.px(16.0))
        .x_label_area_size(style.px(52.0))
        .y_label_area_size(style.px(72.0))
        .build_cartesian_2d(x0..x1, y0..y1)?;

    // The filled contours, a cell of `step` pixels at a time; runs of one colour along a row
    // are one rectangle (which keeps an SVG small).
    let area = chart.plotting_area().strip_coord_spec();
    let (aw, ah) = area.dim_in_pixel();
    let step = style.raster.max(1);
    let (cols, rows) = (aw.div_ceil(step) as usize, ah.div_ceil(step) as usize);
    let levels: Vec<Vec<usize>> = (0..rows)
        .map(|cy| {
            let py = y1 - ((cy as f64 + 0.5) * f64::from(step)) / f64::from(ah) * (y1 - y0);
            (0..cols)
                .map(|cx| {
                    let px = x0 + ((cx as f64 + 0.5) * f64::from(step)) / f64::from(aw) * (x1 - x0);
                    level(bilinear(&p.x, &p.y, &logs, px, py), lo, hi, LEVELS)
                })
                .collect()
        })
        .collect();
    for (cy, row) in levels.iter().enumerate() {
        let colour_at = |cx: usize| {
            let k = row[cx];
            let edge = row.get(cx + 1).is_some_and(|&r| r != k)
                || levels.get(cy + 1).is_some_and(|below| below[cx] != k);
            let c = level_colour(k, LEVELS);
            if edge { darker(c) } else { c }
        };
        let mut start = 0;
        while start < cols {
            let c = colour_at(start);
            let mut end = start + 1;
            while end < cols && colour_at(end) == c {
                end += 1;
            }
            let to = |v: usize, limit: u32| ((v as u32 * step).min(limit)) as i32;
            area.draw(&Rectangle::new(
                [(to(start, aw), to(cy, ah)), (to(end, aw), to(cy + 1, ah))],
                c.filled(),
            ))?;
            start = end;
        }
    }

    let fmt = |v: &f64| super::number(*v);
    super::mesh(&mut chart, style)
        .disable_mesh()
        .x_desc("u (weight-space distance)")
        .y_desc("v (weight-space distance)")
        .x_label_formatter(&fmt)
        .y_label_formatter(&fmt)
        .draw()?;

    // The curve's projection: white, edged in black so that it shows on every level.
    if p.curve.len() > 1 {
        chart.draw_series(LineSeries::new(
            p.curve.iter().copied(),
            BLACK.stroke_width(style.px(4.0)),
        ))?;
        chart.draw_series(LineSeries::new(
            p.curve.iter().copied(),
            WHITE.stroke_width(style.px(2.0)),
        ))?;
    }
    // The networks: white discs edged in black, named beside them.
    let r = style.px(6.0) as i32;
    let font = style.legend();
    for a in &p.anchors {
        chart.draw_series(std::iter::once(
            EmptyElement::at((a.x, a.y))
                + Circle::new((0, 0), r + 2, BLACK.filled())
                + Circle::new((0, 0), r, WHITE.filled()),
        ))?;
        if a.label.is_empty() {
            continue;
        }
        let (tw, th) = chart.plotting_area().estimate_text_size(&a.label, &font)?;
        let (tw, th) = (tw as i32, th as i32);
        let (px, py) = chart.backend_coord(&(a.x, a.y));
        let (xs, ys) = chart.plotting_area().get_pixel_range();
        // Beside the disc, on the side with room; below it when it is at the top.
        let pad = style.off(4.0);
        let dx = if px + r + 2 * pad + tw > xs.end && px - xs.start > tw + r + 2 * pad {
            -(r + 2 * pad + tw)
        } else {
            r + pad
        };
        let dy = if py - r - th - 2 * pad < ys.start {
            r + pad
        } else {
            -(r + th + pad)
        };
        chart.draw_series(std::iter::once(
            EmptyElement::at((a.x, a.y))
                + Rectangle::new(
                    [(dx - pad, dy - pad / 2), (dx + tw + pad, dy + th + pad)],
                    WHITE.mix(0.85).filled(),
                )
                + Text::new(a.label.clone(), (dx, dy), font.clone()),
        ))?;
    }

    draw_bar(&right, style, &p.bar_label, lo, hi)?;
    Ok(())
}

/// The colour bar: the levels from `lo` (bottom) to `hi`, every other edge labelled.
fn draw_bar<DB>(
    area: &DrawingArea<DB, Shift>,
    style: &Style,
    label: &str,
    lo: f64,
    hi: f64,
) -> DrawResult
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let edges = log_levels(lo, hi, LEVELS);
    let mut bar = ChartBuilder::on(area)
        .margin_top(style.px(16.0))
        // The same bottom as the chart's plotting area: its margin and x label area.
        .margin_bottom(style.px(68.0))
        .margin_left(style.px(6.0))
        .margin_right(style.px(6.0))
        .set_label_area_size(LabelAreaPosition::Right, style.px(78.0))
        .build_cartesian_2d(0.0..1.0, 0.0..LEVELS as f64)?;
    let name = |v: &f64| {
        let k = v.round() as usize;
        match edges.get(k) {
            Some(&e) if (v - v.round()).abs() < 1e-9 && k.is_multiple_of(2) => super::number(e),
            _ => String::new(),
        }
    };
    bar.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(LEVELS + 1)
        .y_label_formatter(&name)
        .y_desc(label)
        .label_style(style.tick())
        .axis_desc_style(style.label())
        .draw()?;
    bar.draw_series((0..LEVELS).map(|k| {
        Rectangle::new(
            [(0.0, k as f64), (1.0, (k + 1) as f64)],
            level_colour(k, LEVELS).filled(),
        )
    }))?;
    bar.draw_series(std::iter::once(Rectangle::new(
        [(0.0, 0.0), (1.0, LEVELS as f64)],
        BLACK.stroke_width(1),
    )))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_spaced_geometrically() {
        let e = log_levels(0.01, 100.0, 4);
        let expected = [0.01, 0.1, 1.0, 10.0, 100.0];
        assert_eq!(e.len(), expected.len());
        for (a, b) in e.iter().zip(expected) {
            assert!((a - b).abs() < 1e-12 * b.max(1.0), "{e:?}");
        }
        // Each ratio is the same.
        let e = log_levels(0.13, 0.55, LEVELS);
        let r = e[1] / e[0];
        assert!(e.windows(2).all(|w| (w[1] / w[0] - r).abs() < 1e-12));
    }

    #[test]
    fn values_fall_in_their_level_and_the_ends_are_clamped() {
        let (lo, hi) = (0.01, 100.0);
        assert_eq!(level(0.05f64.ln(), lo, hi, 4), 0);
        assert_eq!(level(0.5f64.ln(), lo, hi, 4), 1);
        assert_eq!(level(5.0f64.ln(), lo, hi, 4), 2);
        assert_eq!(level(50.0f64.ln(), lo, hi, 4), 3);
        assert_eq!(level(100.0f64.ln(), lo, hi, 4), 3);
        assert_eq!(level(1e9f64.ln(), lo, hi, 4), 3);
        assert_eq!(level(1e-9f64.ln(), lo, hi, 4), 0);
        assert_eq!(level(f64::NEG_INFINITY, lo, hi, 4), 0);
    }

    #[test]
    fn bounds_keep_a_positive_floor() {
        // A training error of 0 at the networks: the floor is a thousandth of the largest.
        assert_eq!(bounds([0.0, 0.2, 0.9]), (0.9 * FLOOR, 0.9));
        assert_eq!(bounds([0.1, 0.5]), (0.1, 0.5));
        // A constant grid still spans a range.
        let (lo, hi) = bounds([0.3, 0.3]);
        assert!(lo > 0.0 && lo < hi, "{lo} {hi}");
        let (lo, hi) = bounds([0.0, 0.0]);
        assert!(lo > 0.0 && lo < hi, "{lo} {hi}");
    }

    #[test]
    fn bilinear_interpolation_is_exact_on_nodes_and_planes() {
        let xs = [0.0, 1.0, 3.0];
        let ys = [-1.0, 2.0];
        // f(x, y) = 2x - y + 1 at the nodes: bilinear interpolation reproduces it exactly.
        let f = |x: f64, y: f64| 2.0 * x - y + 1.0;
        let grid: Vec<Vec<f64>> = ys
            .iter()
            .map(|&y| xs.iter().map(|&x| f(x, y)).collect())
            .collect();
        for &(x, y) in &[(0.0, -1.0), (3.0, 2.0), (0.5, 0.0), (2.2, 1.7), (1.0, 0.5)] {
            let v = bilinear(&xs, &ys, &grid, x, y);
            assert!((v - f(x, y)).abs() < 1e-12, "({x}, {y}): {v}");
        }
        // The middle of a cell is the mean of its corners, for any values.
        let grid = vec![vec![1.0, 5.0], vec![3.0, 11.0]];
        let v = bilinear(&[0.0, 1.0], &[0.0, 1.0], &grid, 0.5, 0.5);
        assert!((v - 5.0).abs() < 1e-12, "{v}");
        // Outside the grid: the nearest edge.
        assert_eq!(bilinear(&[0.0, 1.0], &[0.0, 1.0], &grid, -3.0, -3.0), 1.0);
        assert_eq!(bilinear(&[0.0, 1.0], &[0.0, 1.0], &grid, 4.0, 4.0), 11.0);
    }

    #[test]
    fn the_colour_map_grows_lighter_from_low_to_high() {
        let lightness = |c: RGBColor| {
            0.2126 * f64::from(c.0) + 0.7152 * f64::from(c.1) + 0.0722 * f64::from(c.2)
        };
        let steps: Vec<f64> = (0..=200)
            .map(|k| lightness(colour_map(f64::from(k) / 200.0)))
            .collect();
        assert!(
            steps.windows(2).all(|w| w[1] >= w[0]),
            "the lightness falls somewhere: {steps:?}"
        );
        assert!(steps[200] - steps[0] > 150.0);
        // Each level has a colour of its own.
        let colours: std::collections::HashSet<_> = (0..LEVELS)
            .map(|k| {
                let c = level_colour(k, LEVELS);
                (c.0, c.1, c.2)
            })
            .collect();
        assert_eq!(colours.len(), LEVELS);
        assert_eq!(colour_map(-1.0), colour_map(0.0));
        assert_eq!(colour_map(2.0), colour_map(1.0));
    }
}
