//! Text drawn into bitmaps with the embedded font.
//!
//! plotters lays text out with its `ab_glyph` support (the advances and kerning of the font
//! registered in [`super::fonts`]), but its drawing of 0.3.7 puts each glyph's outline where
//! the glyph's advance starts, dropping the side bearing: narrow glyphs (`.`, `i`, `l`) land
//! against their left neighbour. [`Typeset`] wraps a back end and draws text itself, every
//! glyph's outline at its own place on the baseline; everything else goes to the back end.

use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};
use plotters::prelude::*;
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind,
    text_anchor::{HPos, VPos},
};

/// A back end whose text is drawn with `font`.
pub struct Typeset<B> {
    inner: B,
    font: FontRef<'static>,
}

impl<B: DrawingBackend> Typeset<B> {
    /// `inner`, with its text drawn in `font` (the bytes of a TrueType or OpenType font).
    pub fn new(inner: B, font: &'static [u8]) -> anyhow::Result<Typeset<B>> {
        let font = FontRef::try_from_slice(font)?;
        Ok(Typeset { inner, font })
    }
}

impl<B: DrawingBackend> DrawingBackend for Typeset<B> {
    type ErrorType = B::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.inner.present()
    }

    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.inner.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.inner.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.inner.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.inner.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.inner.fill_polygon(vert, style)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.inner.blit_bitmap(pos, size, src)
    }

    /// As plotters' own drawing of text (the same box, anchors and rotations), with each glyph
    /// placed by its bounds.
    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let ((min_x, min_y), (max_x, max_y)) = style
            .layout_box(text)
            .map_err(|e| DrawingErrorKind::FontError(Box::new(e)))?;
        let (width, height) = (max_x - min_x, max_y - min_y);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -width,
            HPos::Center => -width / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -height / 2,
            VPos::Bottom => -height,
        };
        let transform = style.transform();
        let scale = PxScale::from(style.size() as f32);
        let scaled = self.font.as_scaled(scale);
        // The box is plotters' (its height a little under the font's): the baseline sits a
        // descent above its bottom.
        let baseline = height as f32 + scaled.descent();
        let mut caret = 0.0f32;
        let mut previous = None;
        let mut pixels = Vec::new();
        for c in text.chars() {
            let id = scaled.glyph_id(c);
            if let Some(p) = previous {
                caret += scaled.kern(p, id);
            }
            let glyph = id.with_scale_and_position(scale, point(caret, baseline));
            if let Some(outline) = self.font.outline_glyph(glyph) {
                let bounds = outline.px_bounds();
                let (left, top) = (bounds.min.x as i32, bounds.min.y as i32);
                outline.draw(|x, y, coverage| {
                    if coverage > 0.0 {
                        pixels.push((left + x as i32, top + y as i32, coverage.min(1.0)));
                    }
                });
            }
            caret += scaled.h_advance(id);
            previous = Some(id);
        }
        for (x, y, coverage) in pixels {
            let (x, y) = transform.transform(x + dx - min_x, y + dy - min_y);
            self.inner.draw_pixel(
                (pos.0 + x, pos.1 + y),
                BackendColor {
                    alpha: color.alpha * f64::from(coverage),
                    rgb: color.rgb,
                },
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plotters::style::FontStyle;

    /// The columns of `rgb` (`w` pixels wide) with any ink, as runs `[start, end)`.
    fn ink_runs(rgb: &[u8], w: usize) -> Vec<(usize, usize)> {
        let h = rgb.len() / 3 / w;
        let inked = |x: usize| (0..h).any(|y| rgb[3 * (y * w + x)] < 128);
        let mut runs = Vec::new();
        let mut x = 0;
        while x < w {
            if inked(x) {
                let start = x;
                while x < w && inked(x) {
                    x += 1;
                }
                runs.push((start, x));
            }
            x += 1;
        }
        runs
    }

    /// Draws `text` at 40 px into a white bitmap of 200 x 60, from (10, 10).
    fn draw(text: &str) -> Vec<u8> {
        plotters::style::register_font(super::super::FONT, FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("the font registers"));
        let (w, h) = (200u32, 60u32);
        let mut rgb = vec![255u8; (w * h * 3) as usize];
        {
            let backend = BitMapBackend::with_buffer(&mut rgb, (w, h));
            let root = Typeset::new(backend, FONT)
                .expect("the font loads")
                .into_drawing_area();
            let style = TextStyle::from((super::super::FONT, 40.0).into_font());
            root.draw(&Text::new(text.to_string(), (10, 10), style))
                .expect("the text draws");
            root.present().expect("present");
        }
        rgb
    }

    const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

    /// Every glyph lands at its own place: the ink of each glyph of `l.l` starts where its
    /// outline's bounds say, from the caret (plotters' own drawing of 0.3.7 puts it at the
    /// caret, without the side bearing, a few pixels off at this size).
    #[test]
    fn glyphs_keep_their_side_bearings() {
        let rgb = draw("l.l");
        let runs = ink_runs(&rgb, 200);
        assert_eq!(runs.len(), 3, "{runs:?}");
        let font = FontRef::try_from_slice(FONT).expect("the font");
        let scale = PxScale::from(40.0);
        let scaled = font.as_scaled(scale);
        let mut caret = 0.0f32;
        for (c, run) in "l.l".chars().zip(&runs) {
            let id = scaled.glyph_id(c);
            let glyph = id.with_scale_and_position(scale, point(caret, 30.0));
            let bounds = font.outline_glyph(glyph).expect("an outline").px_bounds();
            let expected = 10 + bounds.min.x as i32;
            assert!(
                (run.0 as i32 - expected).abs() <= 1,
                "`{c}` starts at {} instead of {expected}: {runs:?}",
                run.0
            );
            caret += scaled.h_advance(id);
        }
    }

    /// Text is drawn in the font embedded, whatever the machine has installed.
    #[test]
    fn text_is_inked() {
        let rgb = draw("Ag");
        let dark = rgb.chunks(3).filter(|p| p[0] < 128).count();
        assert!(dark > 100, "{dark} dark pixels");
    }
}
