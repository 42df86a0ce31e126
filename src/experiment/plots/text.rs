//! Text in PNG plots, drawn glyph by glyph from the bundled DejaVu Sans with
//! ab_glyph, each glyph at its own bearing and on one shared baseline.
//!
//! plotters' bitmap text (its `ab_glyph` font module) draws every glyph at
//! the pen position rounded down, ignoring the glyph's left side bearing, and
//! places it vertically from its truncated bounding box: a period lands a
//! pixel high and flush against the digit before it, with a gap after
//! ("2· 21"), and digits with different bearings look mis-kerned
//! ("0.805 8"). [`GlyphText`] wraps a backend and replaces only its text
//! drawing; sizes and anchors are plotters' own (`layout_box`), so every
//! label stays where the layout put it. SVG output is untouched: the viewer
//! draws its text.

use ab_glyph::{point, Font, FontRef, ScaleFont};
use plotters::prelude::*;
use plotters_backend::{
    text_anchor::{HPos, VPos},
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind,
};

/// A drawing backend whose text is drawn by [`draw_glyphs`].
pub(crate) struct GlyphText<B> {
    inner: B,
    font: FontRef<'static>,
}

impl<B> GlyphText<B> {
    pub(crate) fn new(inner: B) -> Self {
        GlyphText {
            inner,
            // The bundled font parses (plots::register relies on it too).
            font: FontRef::try_from_slice(super::FONT).expect("the bundled DejaVu Sans parses"),
        }
    }
}

/// One glyph pixel: (x, y) relative to the top-left corner of the text's
/// layout box, and its coverage in 0..=1.
pub(crate) type GlyphPixel = (i32, i32, f32);

/// How a run of text sits: on the baseline, as a subscript or as a superscript.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Script {
    Normal,
    Sub,
    Super,
}

/// Splits plot text into runs: `_w`, `_emp`, `_max` (an underscore and the
/// letters and digits after it) become subscripts, `^opt` superscripts; the
/// markers themselves are not drawn. Other text is normal.
pub(crate) fn scripts(text: &str) -> Vec<(Script, String)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<(Script, String)> = Vec::new();
    // Letters and digits, and a decimal point between digits ("^1.82").
    let in_run = |i: usize| {
        chars[i].is_alphanumeric()
            || (chars[i] == '.'
                && i > 0
                && chars[i - 1].is_ascii_digit()
                && chars.get(i + 1).is_some_and(|c| c.is_ascii_digit()))
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let kind = match c {
            '_' => Script::Sub,
            '^' => Script::Super,
            _ => Script::Normal,
        };
        if kind == Script::Normal || !chars.get(i + 1).is_some_and(|n| n.is_alphanumeric()) {
            match out.last_mut() {
                Some((Script::Normal, s)) => s.push(c),
                _ => out.push((Script::Normal, c.to_string())),
            }
            i += 1;
            continue;
        }
        // A new run even right after another script run ("σ_w^opt").
        let mut run = String::new();
        i += 1;
        while i < chars.len() && in_run(i) {
            run.push(chars[i]);
            i += 1;
        }
        out.push((kind, run));
    }
    out
}

/// The text with its script markers removed ("σ_w" → "σw"), for backends
/// that draw text themselves (SVG).
pub(crate) fn plain(text: &str) -> String {
    scripts(text).into_iter().map(|(_, s)| s).collect()
}

/// Rasterizes `text` at `size` px (plotters' font size: ascent − descent)
/// into pixels relative to the top-left of plotters' layout box of width
/// Σ advances + kerning and height size/1.24. The pen advances by the
/// glyphs' fractional advances and kerning; each glyph is drawn at its own
/// bearing; the baseline lies where the capitals are centred in the box.
/// Sub- and superscripts ([`scripts`]) are drawn at 0.7 of the size,
/// lowered or raised.
pub(crate) fn draw_glyphs(font: &FontRef<'static>, size: f32, text: &str) -> Vec<GlyphPixel> {
    let scaled = font.as_scaled(size);
    let box_h = size / 1.24;
    let cap = font
        .outline_glyph(scaled.scaled_glyph('H'))
        .map(|g| {
            let b = g.px_bounds();
            b.max.y - b.min.y
        })
        .unwrap_or(0.63 * size);
    let baseline = (0.5 * (box_h + cap)).round();
    let mut out = Vec::new();
    let mut pen = 0f32;
    for (kind, run) in scripts(text) {
        let (sz, base) = match kind {
            Script::Normal => (size, baseline),
            Script::Sub => (0.7 * size, baseline + (0.2 * size).round()),
            Script::Super => (0.7 * size, baseline - (0.35 * size).round()),
        };
        let sc = font.as_scaled(sz);
        let mut prev = None;
        for c in run.chars() {
            let id = sc.glyph_id(c);
            if let Some(p) = prev {
                pen += sc.kern(p, id);
            }
            prev = Some(id);
            let glyph = id.with_scale_and_position(sz, point(pen, base));
            if let Some(g) = font.outline_glyph(glyph) {
                let b = g.px_bounds();
                g.draw(|x, y, cov| {
                    if cov > 0.0 {
                        out.push((b.min.x as i32 + x as i32, b.min.y as i32 + y as i32, cov));
                    }
                });
            }
            pen += sc.h_advance(id);
        }
    }
    out
}

/// A drawing backend that draws text through another backend's own text
/// (SVG) with the script markers removed ([`plain`]).
pub(crate) struct PlainText<B>(pub(crate) B);

/// The drawing calls other than text, passed to `self.$inner`.
macro_rules! delegate_shapes {
    ($($inner:tt)+) => {
    fn get_size(&self) -> (u32, u32) {
        self.$($inner)+.get_size()
    }
    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.$($inner)+.ensure_prepared()
    }
    fn present(&mut self) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.$($inner)+.present()
    }
    fn draw_pixel(
        &mut self,
        p: BackendCoord,
        c: BackendColor,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.$($inner)+.draw_pixel(p, c)
    }
    fn draw_line<S: BackendStyle>(
        &mut self,
        a: BackendCoord,
        b: BackendCoord,
        s: &S,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.$($inner)+.draw_line(a, b, s)
    }
    fn draw_rect<S: BackendStyle>(
        &mut self,
        a: BackendCoord,
        b: BackendCoord,
        s: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.$($inner)+.draw_rect(a, b, s, fill)
    }
    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        s: &S,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.$($inner)+.draw_path(path, s)
    }
    fn draw_circle<S: BackendStyle>(
        &mut self,
        c: BackendCoord,
        r: u32,
        s: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.$($inner)+.draw_circle(c, r, s, fill)
    }
    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        s: &S,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.$($inner)+.fill_polygon(vert, s)
    }
    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        (w, h): (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.$($inner)+.blit_bitmap(pos, (w, h), src)
    }
    };
}

impl<B: DrawingBackend> DrawingBackend for PlainText<B> {
    type ErrorType = B::ErrorType;
    delegate_shapes!(0);

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.0.draw_text(&plain(text), style, pos)
    }

    fn estimate_text_size<S: BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), DrawingErrorKind<B::ErrorType>> {
        self.0.estimate_text_size(&plain(text), style)
    }
}

impl<B: DrawingBackend> DrawingBackend for GlyphText<B> {
    type ErrorType = B::ErrorType;
    delegate_shapes!(inner);

    /// plotters' anchoring and rotation (as its default `draw_text`), with
    /// the glyphs from [`draw_glyphs`].
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
            .layout_box(&plain(text))
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
        let trans = style.transform();
        let (w, h) = self.inner.get_size();
        for (x, y, cov) in draw_glyphs(&self.font, style.size() as f32, text) {
            let (x, y) = trans.transform(x + dx, y + dy);
            let (x, y) = (pos.0 + x, pos.1 + y);
            if x >= 0 && x < w as i32 && y >= 0 && y < h as i32 {
                let c = BackendColor {
                    alpha: color.alpha * cov.min(1.0) as f64,
                    rgb: color.rgb,
                };
                self.inner.draw_pixel((x, y), c)?;
            }
        }
        Ok(())
    }

    fn estimate_text_size<S: BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), DrawingErrorKind<B::ErrorType>> {
        self.inner.estimate_text_size(&plain(text), style)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn font() -> FontRef<'static> {
        FontRef::try_from_slice(super::super::FONT).unwrap()
    }

    /// Ink rows and columns of a string's pixels (coverage ≥ ½).
    fn ink(px: &[GlyphPixel]) -> ((i32, i32), (i32, i32)) {
        let inked: Vec<_> = px.iter().filter(|p| p.2 >= 0.5).collect();
        let xs = inked.iter().map(|p| p.0);
        let ys = inked.iter().map(|p| p.1);
        (
            (xs.clone().min().unwrap(), xs.max().unwrap()),
            (ys.clone().min().unwrap(), ys.max().unwrap()),
        )
    }

    #[test]
    fn underscores_and_carets_become_scripts() {
        use Script::*;
        assert_eq!(
            scripts("σ_w^opt − 0.2, ξ_emp"),
            vec![
                (Normal, "σ".into()),
                (Sub, "w".into()),
                (Super, "opt".into()),
                (Normal, " − 0.2, ξ".into()),
                (Sub, "emp".into()),
            ]
        );
        // A lone marker is text: "a _ b", "x^", file-like "a_".
        assert_eq!(plain("a _ b"), "a _ b");
        assert_eq!(plain("x^"), "x^");
        assert_eq!(plain("σ_w = 1.59, σ_b = 0"), "σw = 1.59, σb = 0");
        // An exponent with its decimals; a sentence's full stop ends it.
        assert_eq!(
            scripts("(N + 1)^1.8239."),
            vec![
                (Normal, "(N + 1)".into()),
                (Super, "1.8239".into()),
                (Normal, ".".into())
            ]
        );
    }

    #[test]
    fn a_period_sits_on_the_digits_baseline() {
        // At 14 px the period of "2.21" must end on the same row as the digits'
        // bottom (both sit on the baseline; DejaVu's "2" and "." have no descent).
        // plotters' own placement put it a row or more higher ("2· 21").
        let f = font();
        let two = ink(&draw_glyphs(&f, 14.0, "2"));
        let dot = draw_glyphs(&f, 14.0, ".");
        let dot = ink(&dot);
        assert!(
            (dot.1 .1 - two.1 .1).abs() <= 0,
            "period bottom row {} vs digit bottom row {}",
            dot.1 .1,
            two.1 .1
        );
    }

    #[test]
    fn gaps_around_a_period_are_its_bearings() {
        // "2.2": the ink gap before the period and after it differ by at most 1 px
        // (DejaVu Sans centres the period in its advance: bearings 0.19 em and
        // 0.19 em), where plotters drew it flush against the "2" with the whole
        // spare advance after it.
        let f = font();
        let px = draw_glyphs(&f, 14.0, "2.2");
        let cols: std::collections::BTreeSet<i32> =
            px.iter().filter(|p| p.2 >= 0.5).map(|p| p.0).collect();
        let cols: Vec<i32> = cols.into_iter().collect();
        // Runs of inked columns: "2", ".", "2".
        let mut runs = vec![(cols[0], cols[0])];
        for &c in &cols[1..] {
            let last = runs.last_mut().unwrap();
            if c == last.1 + 1 {
                last.1 = c;
            } else {
                runs.push((c, c));
            }
        }
        assert_eq!(runs.len(), 3, "{runs:?}");
        let before = runs[1].0 - runs[0].1;
        let after = runs[2].0 - runs[1].1;
        assert!(
            (before - after).abs() <= 1,
            "gaps {before} and {after}: {runs:?}"
        );
    }
}
