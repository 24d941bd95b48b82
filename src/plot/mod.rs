//! Pictures of reports: what `modeconn plot` draws.
//!
//! [`read`] turns a report (the JSON that `eval`, `plane`, `fge`, `attack` or `calibrate`
//! writes) into a [`Picture`] of plain numbers in the units shown; each kind's module draws
//! its picture onto any plotters drawing area, and [`render`] picks the back end: an RGB
//! buffer encoded as PNG, or SVG text.
//!
//! Text is laid out with the DejaVu Sans embedded in the binary (`assets/fonts/`, registered
//! with plotters' `ab_glyph` font support), so a picture looks the same on a machine with no
//! fonts installed; nothing reads the system's fonts.

pub mod attack;
pub mod calibrate;
pub mod curve;
pub mod fge;
pub mod plane;
pub mod read;
pub mod snapshots;
pub mod text;

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

/// The embedded font: DejaVu Sans 2.37 (licence in `assets/fonts/LICENSE`).
const FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The family every text style names; [`fonts`] registers the embedded font under it.
pub const FONT: &str = "sans-serif";

/// What a drawing function returns: plotters' errors of any back end, as `anyhow` errors.
pub type DrawResult = anyhow::Result<()>;

/// Registers the embedded font with plotters, once per process.
fn fonts() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok()
    });
    anyhow::ensure!(ok, "the embedded font cannot be read");
    Ok(())
}

/// The file format of a picture, from the extension of the file it is written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A PNG image (8-bit RGB).
    Png,
    /// An SVG document (text as `<text>` elements).
    Svg,
}

impl Format {
    /// The format that `path`'s extension names (case-insensitive), or an error saying which
    /// extensions are known (naming the file as given to `flag`).
    pub fn of(path: &Path, flag: &str) -> anyhow::Result<Format> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("png") => Ok(Format::Png),
            Some("svg") => Ok(Format::Svg),
            _ => anyhow::bail!(
                "{flag} {}: the format follows the extension, which must be .png or .svg",
                path.display()
            ),
        }
    }
}

/// Sizes of text and lines, scaled with the picture (the sizes below are for 800 x 600 and
/// smaller pictures, so text stays readable however small the picture asked for).
///
/// A text style's size is plotters' nominal one: an SVG's `font-size` is it divided by 1.24,
/// a bitmap's em it divided by 1.16 (DejaVu Sans's ascent to descent over its em). The sizes
/// below make labels at least 14 px and tick labels at least 12 px in both.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    scale: f64,
    /// The side in pixels of the cells of a raster (a plane's contours): 1 for a bitmap, more
    /// for SVG, where every cell is an element.
    pub raster: u32,
}

impl Style {
    /// The style of a picture of `width` x `height` pixels.
    pub fn new(width: u32, height: u32) -> Style {
        let scale = (f64::from(width) / 800.0)
            .min(f64::from(height) / 600.0)
            .max(1.0);
        Style { scale, raster: 1 }
    }

    /// `base` pixels at this picture's scale.
    pub fn px(&self, base: f64) -> u32 {
        (base * self.scale).round() as u32
    }

    /// `base` pixels at this picture's scale, signed (for offsets).
    pub fn off(&self, base: f64) -> i32 {
        (base * self.scale).round() as i32
    }

    /// The title's text.
    pub fn title(&self) -> TextStyle<'static> {
        TextStyle::from((FONT, f64::from(self.px(22.0))).into_font())
    }

    /// An axis label's text, and a panel's caption.
    pub fn label(&self) -> TextStyle<'static> {
        TextStyle::from((FONT, f64::from(self.px(18.0))).into_font())
    }

    /// A tick label's text.
    pub fn tick(&self) -> TextStyle<'static> {
        TextStyle::from((FONT, f64::from(self.px(15.0))).into_font())
    }

    /// A legend entry's text.
    pub fn legend(&self) -> TextStyle<'static> {
        TextStyle::from((FONT, f64::from(self.px(17.5))).into_font())
    }

    /// The width of a data line.
    pub fn line(&self) -> u32 {
        self.px(2.0)
    }

    /// The radius of a data point's marker.
    pub fn marker(&self) -> u32 {
        self.px(4.0)
    }
}

/// Eight colours that stay apart from one another, for series.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// The colour of series `i`.
pub fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// A report drawn: one case per kind of picture, each plain numbers in the units shown.
#[derive(Debug, Clone, PartialEq)]
pub enum Picture {
    /// A metric along a curve and the segment (`eval` of a curve).
    Curve(curve::CurvePlot),
    /// A metric of each member and of the running ensemble (`eval` of a snapshot set).
    Snapshots(snapshots::SnapshotsPlot),
    /// A metric over a plane of weight space (`plane`).
    Plane(plane::PlanePlot),
    /// The learning rate and test error of an FGE run (`fge`).
    Fge(fge::FgePlot),
    /// Robust accuracy against eps (`attack`).
    Attack(attack::AttackPlot),
    /// A reliability diagram before and after calibration (`calibrate`).
    Calibration(calibrate::ReliabilityPlot),
}

impl Picture {
    /// The title drawn above the picture.
    pub fn title_mut(&mut self) -> &mut String {
        match self {
            Picture::Curve(p) => &mut p.title,
            Picture::Snapshots(p) => &mut p.title,
            Picture::Plane(p) => &mut p.title,
            Picture::Fge(p) => &mut p.title,
            Picture::Attack(p) => &mut p.title,
            Picture::Calibration(p) => &mut p.title,
        }
    }

    /// Draws the picture onto `root`, which it first fills with white.
    pub fn draw<DB>(&self, root: &DrawingArea<DB, Shift>, style: &Style) -> DrawResult
    where
        DB: DrawingBackend,
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        match self {
            Picture::Curve(p) => curve::draw(root, p, style),
            Picture::Snapshots(p) => snapshots::draw(root, p, style),
            Picture::Plane(p) => plane::draw(root, p, style),
            Picture::Fge(p) => fge::draw(root, p, style),
            Picture::Attack(p) => attack::draw(root, p, style),
            Picture::Calibration(p) => calibrate::draw(root, p, style),
        }
    }
}

/// The picture drawn at `width` x `height` pixels, as the bytes of a file of `format`.
pub fn render(
    picture: &Picture,
    format: Format,
    width: u32,
    height: u32,
) -> anyhow::Result<Vec<u8>> {
    fonts()?;
    let mut style = Style::new(width, height);
    match format {
        Format::Svg => {
            style.raster = 3;
            let mut text = String::new();
            {
                let root = SVGBackend::with_string(&mut text, (width, height)).into_drawing_area();
                picture.draw(&root, &style)?;
                root.present()?;
            }
            Ok(text.into_bytes())
        }
        Format::Png => {
            let mut rgb = vec![0u8; width as usize * height as usize * 3];
            {
                let backend = BitMapBackend::with_buffer(&mut rgb, (width, height));
                let root = text::Typeset::new(backend, FONT_BYTES)?.into_drawing_area();
                picture.draw(&root, &style)?;
                root.present()?;
            }
            let mut out = Vec::new();
            let mut encoder = png::Encoder::new(&mut out, width, height);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header()?;
            writer.write_image_data(&rgb)?;
            writer.finish()?;
            Ok(out)
        }
    }
}

/// A number for a label: at most three significant digits, no trailing zeros; powers of ten
/// for the very small and very large.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v == 0.0 {
        return "0".to_string();
    }
    let magnitude = v.abs().log10().floor();
    if !(-3.0..5.0).contains(&magnitude) {
        let text = format!("{v:.1e}");
        return text.replace(".0e", "e");
    }
    let decimals = (2.0 - magnitude).max(0.0) as usize;
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// The corner of a chart where a legend covers the fewest of `points`, each `(x, y)` as
/// fractions of the axes' ranges (0 at the left and the bottom): the legend takes about
/// `width` x `height` of the chart, as fractions too.
pub fn legend_corner(points: &[(f64, f64)], width: f64, height: f64) -> SeriesLabelPosition {
    let corners = [
        (SeriesLabelPosition::UpperRight, 1.0 - width, 1.0 - height),
        (SeriesLabelPosition::UpperLeft, 0.0, 1.0 - height),
        (SeriesLabelPosition::LowerRight, 1.0 - width, 0.0),
        (SeriesLabelPosition::LowerLeft, 0.0, 0.0),
    ];
    let covered = |x0: f64, y0: f64| {
        points
            .iter()
            .filter(|(x, y)| *x >= x0 && *x <= x0 + width && *y >= y0 && *y <= y0 + height)
            .count()
    };
    let mut best = (usize::MAX, SeriesLabelPosition::UpperRight);
    for (corner, x0, y0) in corners {
        let n = covered(x0, y0);
        if n < best.0 {
            best = (n, corner);
        }
    }
    best.1
}

/// Draws the legend of `chart`'s labelled series in the corner where it covers the fewest of
/// `data`, the points drawn as fractions of the axes' ranges (see [`legend_corner`]).
pub fn draw_legend<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    style: &Style,
    labels: &[&str],
    data: &[(f64, f64)],
) -> DrawResult
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    X: Ranged,
    Y: Ranged,
{
    let area = chart.plotting_area();
    let (aw, ah) = area.dim_in_pixel();
    let font = style.legend();
    let mut text_w = 0;
    for label in labels {
        text_w = text_w.max(area.estimate_text_size(label, &font)?.0);
    }
    let margin = style.px(8.0);
    let glyph = style.px(34.0);
    let w = f64::from(text_w + glyph + 2 * margin + style.px(10.0));
    let h = labels.len() as f64 * f64::from(style.px(17.5)) * 1.1 + f64::from(2 * margin + 10);
    let corner = legend_corner(data, w / f64::from(aw.max(1)), h / f64::from(ah.max(1)));
    chart
        .configure_series_labels()
        .position(corner)
        .margin(margin)
        .legend_area_size(glyph)
        .label_font(font)
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(150, 150, 150))
        .draw()?;
    Ok(())
}

/// `points` of a chart of `x` by `y` as fractions of the ranges, with points added along the
/// lines between them (so that a line, not only its ends, keeps the legend away).
pub fn fractions(
    points: &[(f64, f64)],
    x: (f64, f64),
    y: (f64, f64),
    lines: bool,
) -> Vec<(f64, f64)> {
    let f = |(px, py): (f64, f64)| ((px - x.0) / (x.1 - x.0), (py - y.0) / (y.1 - y.0));
    let mut out: Vec<(f64, f64)> = points.iter().map(|&p| f(p)).collect();
    if lines {
        for w in points.windows(2) {
            for k in 1..16 {
                let s = f64::from(k) / 16.0;
                out.push(f((
                    w[0].0 + s * (w[1].0 - w[0].0),
                    w[0].1 + s * (w[1].1 - w[0].1),
                )));
            }
        }
    }
    out
}

/// `(lo, hi)` widened by `fraction` of its span on both sides (by a little when it is empty).
pub fn padded(lo: f64, hi: f64, fraction: f64) -> (f64, f64) {
    let span = hi - lo;
    if span > 0.0 && span.is_finite() {
        (lo - fraction * span, hi + fraction * span)
    } else {
        let d = if lo.abs() > 0.0 { lo.abs() * 0.1 } else { 1.0 };
        (lo - d, hi + d)
    }
}

/// The smallest and largest of `values`, ignoring what is not finite.
pub fn extent(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// The y range for values that vary little against their size (members' errors): around
/// them, with room above for a legend, and not below 0 for values that are not.
pub fn tight_range(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    match extent(values) {
        None => (0.0, 1.0),
        Some((lo, hi)) => {
            let span = if hi > lo {
                hi - lo
            } else {
                hi.abs().max(1e-3) * 0.2
            };
            let bottom = lo - 0.2 * span;
            let bottom = if lo >= 0.0 { bottom.max(0.0) } else { bottom };
            (bottom, hi + 0.6 * span)
        }
    }
}

/// `root` below `title`, with room above it.
pub fn titled<DB>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    style: &Style,
) -> anyhow::Result<DrawingArea<DB, Shift>>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let top = style.px(10.0);
    Ok(root.margin(top, 0, 0, 0).titled(title, style.title())?)
}

/// The y range for values of a metric: from 0 for values that are all positive (errors,
/// losses), with room above for the legend.
pub fn value_range(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    match extent(values) {
        None => (0.0, 1.0),
        Some((lo, hi)) if lo >= 0.0 => {
            let hi = if hi > 0.0 { hi * 1.12 } else { 1.0 };
            (0.0, hi)
        }
        Some((lo, hi)) => padded(lo, hi, 0.08),
    }
}

/// A chart's grid with the axis text and grid lines every picture shares; the caller adds its
/// axis descriptions, formatters and tick counts, then draws it.
pub fn mesh<'a, 'b, DB, XT, YT, X, Y>(
    chart: &'b mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    style: &Style,
) -> plotters::chart::MeshStyle<'a, 'b, X, Y, DB>
where
    DB: DrawingBackend,
    X: plotters::coord::ranged1d::Ranged<ValueType = XT>
        + plotters::coord::ranged1d::ValueFormatter<XT>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = YT>
        + plotters::coord::ranged1d::ValueFormatter<YT>,
{
    let mut m = chart.configure_mesh();
    m.label_style(style.tick())
        .axis_desc_style(style.label())
        .bold_line_style(RGBColor(215, 215, 215))
        .light_line_style(RGBColor(240, 240, 240))
        .max_light_lines(4);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_three_significant_digits() {
        assert_eq!(number(0.0), "0");
        assert_eq!(number(1.0), "1");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(0.012345), "0.0123");
        assert_eq!(number(80.0), "80");
        assert_eq!(number(0.0005), "5e-4");
        assert_eq!(number(-2.5), "-2.5");
    }

    #[test]
    fn formats_follow_the_extension() {
        assert_eq!(
            Format::of(Path::new("a.png"), "--out").ok(),
            Some(Format::Png)
        );
        assert_eq!(
            Format::of(Path::new("a/b.SVG"), "--out").ok(),
            Some(Format::Svg)
        );
        let e = Format::of(Path::new("a.jpg"), "--out").expect_err("jpg is refused");
        assert!(e.to_string().contains(".png or .svg"), "{e}");
        assert!(Format::of(Path::new("a"), "--out").is_err());
    }

    #[test]
    fn the_legend_goes_where_the_data_is_not() {
        // Points along the top and the left: the lower right is free.
        let points: Vec<(f64, f64)> = (0..10)
            .flat_map(|i| {
                let f = f64::from(i) / 10.0;
                [(f, 0.95), (0.05, f)]
            })
            .collect();
        assert_eq!(
            legend_corner(&points, 0.3, 0.3),
            SeriesLabelPosition::LowerRight
        );
        assert_eq!(
            legend_corner(&[], 0.3, 0.3),
            SeriesLabelPosition::UpperRight
        );
    }
}
