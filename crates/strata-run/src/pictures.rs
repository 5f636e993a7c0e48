//! PNG pictures of a run, drawn with the `image` crate: grids of images (inputs beside
//! reconstructions, samples, interpolations, adversarial examples), 2-D scatter plots coloured
//! by class, and line charts of an accuracy against a setting.
//!
//! ```
//! use strata_run::pictures::{ImageGrid, Scatter};
//! // Two rows of three 1x2x2 images, each pixel 3x3 screen pixels.
//! let images = vec![0.5f32; 6 * 4];
//! let grid = ImageGrid::new([1, 2, 2], 3).with_scale(3).draw(&images)?;
//! assert_eq!(grid.dimensions(), (3 * 2 * 3 + 4, 2 * 2 * 3 + 3));
//! let plot = Scatter::new(200).draw(&[[0.0, 1.0], [2.0, -1.0]], &[0, 1])?;
//! assert_eq!(plot.dimensions(), (200, 200));
//! # Ok::<(), strata_run::Error>(())
//! ```

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::error::{Error, Result};

/// Matplotlib's `tab10` colours: class `i` is drawn in colour `i % 10`.
pub const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// A grid of images (values in `[0, 1]`, clipped), `cols` to a row, each pixel drawn as a
/// `scale` x `scale` square, with a one-pixel grey border between images.
#[derive(Debug, Clone, Copy)]
pub struct ImageGrid {
    /// `[channels, height, width]` of each image (1 channel: grey; 3: RGB).
    pub shape: [usize; 3],
    /// Images per row.
    pub cols: usize,
    /// Screen pixels per image pixel.
    pub scale: usize,
}

impl ImageGrid {
    /// A grid of `cols` images to a row, at a scale that draws each image about 56 pixels
    /// high.
    pub fn new(shape: [usize; 3], cols: usize) -> Self {
        Self {
            shape,
            cols,
            scale: (56 / shape[1].max(1)).max(1),
        }
    }

    /// The same grid at another scale.
    pub fn with_scale(mut self, scale: usize) -> Self {
        self.scale = scale;
        self
    }

    /// Draws `images` (row-major `C x H x W` each, one after another).
    ///
    /// # Errors
    /// No images, values that are not whole images, a shape with other than 1 or 3 channels,
    /// zero columns or scale, or a picture over 16384 pixels a side.
    pub fn draw(&self, images: &[f32]) -> Result<RgbImage> {
        let [c, h, w] = self.shape;
        let size = c * h * w;
        if !(c == 1 || c == 3) || size == 0 || self.cols == 0 || self.scale == 0 {
            return Err(Error::Usage(format!(
                "cannot draw images of shape {c}x{h}x{w} in {} columns at scale {}",
                self.cols, self.scale
            )));
        }
        if images.is_empty() || !images.len().is_multiple_of(size) {
            return Err(Error::Usage(format!(
                "{} values are not whole {c}x{h}x{w} images",
                images.len()
            )));
        }
        let n = images.len() / size;
        let rows = n.div_ceil(self.cols);
        let cols = self.cols.min(n);
        let (tile_w, tile_h) = (w * self.scale + 1, h * self.scale + 1);
        let (width, height) = (cols * tile_w + 1, rows * tile_h + 1);
        if width > 16384 || height > 16384 {
            return Err(Error::Usage(format!(
                "a {width}x{height} picture is too large"
            )));
        }
        let mut img = RgbImage::from_pixel(width as u32, height as u32, Rgb([128, 128, 128]));
        let byte = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
        for (i, pixels) in images.chunks(size).enumerate() {
            let (x0, y0) = ((i % self.cols) * tile_w + 1, (i / self.cols) * tile_h + 1);
            for y in 0..h * self.scale {
                for x in 0..w * self.scale {
                    let at = (y / self.scale) * w + x / self.scale;
                    let rgb = if c == 1 {
                        [byte(pixels[at]); 3]
                    } else {
                        [
                            byte(pixels[at]),
                            byte(pixels[h * w + at]),
                            byte(pixels[2 * h * w + at]),
                        ]
                    };
                    img.put_pixel((x0 + x) as u32, (y0 + y) as u32, Rgb(rgb));
                }
            }
        }
        Ok(img)
    }
}

/// A square scatter plot of 2-D points, each a small disc in its class's [`PALETTE`] colour,
/// on white, inside a grey frame with a 5% margin; the axes are the data's own ranges.
#[derive(Debug, Clone, Copy)]
pub struct Scatter {
    /// Side in pixels.
    pub size: usize,
    /// Disc radius in pixels.
    pub radius: usize,
}

impl Scatter {
    /// A plot `size` pixels a side with discs of radius 2.
    pub fn new(size: usize) -> Self {
        Self { size, radius: 2 }
    }

    /// Draws `points`, point `i` in the colour of `classes[i]`.
    ///
    /// # Errors
    /// No points, as many classes as points not given, a non-finite coordinate, a side under
    /// 32 or over 16384 pixels.
    pub fn draw(&self, points: &[[f32; 2]], classes: &[usize]) -> Result<RgbImage> {
        if points.is_empty() || points.len() != classes.len() {
            return Err(Error::Usage(format!(
                "a scatter plot needs points and one class each, got {} points and {} classes",
                points.len(),
                classes.len()
            )));
        }
        if points.iter().flatten().any(|v| !v.is_finite()) {
            return Err(Error::Usage(
                "a scatter plot's coordinates must be finite".into(),
            ));
        }
        if !(32..=16384).contains(&self.size) {
            return Err(Error::Usage(format!(
                "a scatter plot's side must be 32 to 16384 pixels, got {}",
                self.size
            )));
        }
        let s = self.size;
        let mut img = RgbImage::from_pixel(s as u32, s as u32, Rgb([255, 255, 255]));
        let margin = s / 20;
        for i in margin..s - margin {
            for (x, y) in [
                (i, margin),
                (i, s - margin - 1),
                (margin, i),
                (s - margin - 1, i),
            ] {
                img.put_pixel(x as u32, y as u32, Rgb([160, 160, 160]));
            }
        }
        let range = |k: usize| {
            let lo = points.iter().map(|p| p[k]).fold(f32::INFINITY, f32::min);
            let hi = points
                .iter()
                .map(|p| p[k])
                .fold(f32::NEG_INFINITY, f32::max);
            (lo, (hi - lo).max(f32::EPSILON))
        };
        let ((x_lo, x_span), (y_lo, y_span)) = (range(0), range(1));
        let inner = (s - 2 * margin - 2 * self.radius - 3) as f32;
        let r = self.radius as i64;
        for (p, &class) in points.iter().zip(classes) {
            let cx = (margin + self.radius + 1) as i64 + ((p[0] - x_lo) / x_span * inner) as i64;
            let cy =
                (margin + self.radius + 1) as i64 + ((1.0 - (p[1] - y_lo) / y_span) * inner) as i64;
            for dy in -r..=r {
                for dx in -r..=r {
                    if dx * dx + dy * dy <= r * r {
                        img.put_pixel((cx + dx) as u32, (cy + dy) as u32, Rgb(PALETTE[class % 10]));
                    }
                }
            }
        }
        Ok(img)
    }
}

/// Rows of `width` values as points of a plane: as they are for one or two values (a single
/// value on the x axis), else their first two principal components.
///
/// # Errors
/// Fewer rows than PCA needs.
pub fn plane(values: Vec<f32>, width: usize) -> Result<Vec<[f32; 2]>> {
    Ok(match width {
        1 => values.iter().map(|v| [*v, 0.0]).collect(),
        2 => values.chunks(2).map(|c| [c[0], c[1]]).collect(),
        _ => {
            let n = values.len() / width.max(1);
            let rows = strata_data::Dataset::new(
                "points",
                values,
                width,
                strata_data::Targets::Values(vec![0.0; n]),
                None,
            )?;
            let two = strata_data::Pca::fit(&rows, 2)?.transform(&rows)?;
            two.chunks(2).map(|c| [c[0], c[1]]).collect()
        }
    })
}

/// A line chart of one series of `(x, y)` points with `y` in `[0, 1]` (an accuracy against
/// epsilon): on white, a title above, `y` ticks at every quarter and an `x` tick at every
/// point (as many as fit), labelled in font8x8's 8x8 bitmap glyphs, light grid lines through
/// the ticks, the points joined by straight lines and marked by discs, `x_label` below.
#[derive(Debug, Clone)]
pub struct LineChart {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// The line above the chart (ASCII; other characters are drawn as blanks).
    pub title: String,
    /// The line below the `x` ticks.
    pub x_label: String,
}

/// Side of a glyph of [`draw_text`], in pixels.
const GLYPH: i64 = 8;

/// `text` in font8x8's basic glyphs with its top-left corner at `(x, y)`; characters outside
/// ASCII are blanks. Pixels outside the image are skipped.
pub(crate) fn draw_text(img: &mut RgbImage, text: &str, x: i64, y: i64, colour: [u8; 3]) {
    let (w, h) = (i64::from(img.width()), i64::from(img.height()));
    for (k, ch) in text.chars().enumerate() {
        let glyph = font8x8::legacy::BASIC_LEGACY
            .get(ch as usize)
            .copied()
            .unwrap_or(font8x8::legacy::NOTHING_TO_DISPLAY);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits >> col & 1 == 1 {
                    let (px, py) = (x + k as i64 * GLYPH + col, y + row as i64);
                    if (0..w).contains(&px) && (0..h).contains(&py) {
                        img.put_pixel(px as u32, py as u32, Rgb(colour));
                    }
                }
            }
        }
    }
}

/// Width of `text` drawn by [`draw_text`], in pixels.
pub(crate) fn text_width(text: &str) -> i64 {
    text.chars().count() as i64 * GLYPH
}

/// `v` with at most 4 decimals and no trailing zeros: `0.075`, `0.1`, `2`.
fn tick(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

impl LineChart {
    /// Draws `points` (`x` increasing), `x` spanning the chart, `y` from 0 at the bottom to 1
    /// at the top (clipped).
    ///
    /// # Errors
    /// No points, a non-finite coordinate, `x` not increasing, or a chart under 160x120
    /// pixels or over 16384 a side.
    pub fn draw(&self, points: &[(f64, f64)]) -> Result<RgbImage> {
        let (w, h) = (self.width, self.height);
        if points.is_empty() || w < 160 || h < 120 || w > 16384 || h > 16384 {
            return Err(Error::Usage(format!(
                "cannot draw {} points on a {w}x{h} chart",
                points.len()
            )));
        }
        if points.iter().any(|(x, y)| !x.is_finite() || !y.is_finite())
            || points.windows(2).any(|p| p[1].0 <= p[0].0)
        {
            return Err(Error::Usage(
                "a line chart needs finite points with x increasing".into(),
            ));
        }
        let mut img = RgbImage::from_pixel(w as u32, h as u32, Rgb([255, 255, 255]));
        let ink = [40, 40, 40];
        // The plot's frame: room for the title above, the y ticks left, the x ticks and
        // label below; the points sit 8 pixels inside it.
        let (fl, fr) = (5 * GLYPH + 8, w as i64 - 12);
        let (ft, fb) = (2 * GLYPH + 12, h as i64 - 3 * GLYPH - 14);
        let (x0, x1) = (points[0].0, points[points.len() - 1].0);
        let span = if x1 > x0 { x1 - x0 } else { 1.0 };
        let px = |x: f64| (fl + 8) as f64 + (x - x0) / span * (fr - fl - 16) as f64;
        let py = |y: f64| (ft + 8) as f64 + (1.0 - y.clamp(0.0, 1.0)) * (fb - ft - 16) as f64;
        let put = |img: &mut RgbImage, x: f64, y: f64, c: [u8; 3]| {
            let (x, y) = (x.round() as i64, y.round() as i64);
            if (0..w as i64).contains(&x) && (0..h as i64).contains(&y) {
                img.put_pixel(x as u32, y as u32, Rgb(c));
            }
        };
        let grid = [225, 225, 225];
        for q in 0..=4 {
            let v = q as f64 / 4.0;
            let y = py(v);
            for x in fl..=fr {
                put(&mut img, x as f64, y, grid);
            }
            let label = tick(v);
            let y = y.round() as i64 - GLYPH / 2;
            draw_text(&mut img, &label, fl - 6 - text_width(&label), y, ink);
        }
        // An x tick at every point whose label clears the one before it.
        let mut free_from = i64::MIN;
        for &(x, _) in points {
            for y in ft..=fb {
                put(&mut img, px(x), y as f64, grid);
            }
            let label = tick(x);
            let start = px(x).round() as i64 - text_width(&label) / 2;
            if start >= free_from {
                draw_text(&mut img, &label, start, fb + 6, ink);
                free_from = start + text_width(&label) + GLYPH;
            }
        }
        let frame = [128, 128, 128];
        for x in fl..=fr {
            put(&mut img, x as f64, ft as f64, frame);
            put(&mut img, x as f64, fb as f64, frame);
        }
        for y in ft..=fb {
            put(&mut img, fl as f64, y as f64, frame);
            put(&mut img, fr as f64, y as f64, frame);
        }
        let centre = |text: &str| (fl + fr) / 2 - text_width(text) / 2;
        draw_text(&mut img, &self.title, centre(&self.title), 8, ink);
        draw_text(
            &mut img,
            &self.x_label,
            centre(&self.x_label),
            h as i64 - GLYPH - 8,
            ink,
        );
        let colour = PALETTE[0];
        for p in points.windows(2) {
            let (a, b) = ((px(p[0].0), py(p[0].1)), (px(p[1].0), py(p[1].1)));
            let steps = (b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil().max(1.0) as usize;
            for i in 0..=steps {
                let t = i as f64 / steps as f64;
                let (x, y) = (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1));
                for d in [-0.5, 0.0, 0.5] {
                    put(&mut img, x, y + d, colour);
                }
            }
        }
        for &(x, y) in points {
            let (cx, cy) = (px(x), py(y));
            for dy in -3..=3 {
                for dx in -3..=3 {
                    if dx * dx + dy * dy <= 9 {
                        put(&mut img, cx + dx as f64, cy + dy as f64, colour);
                    }
                }
            }
        }
        Ok(img)
    }
}

/// Writes `img` as a PNG at `path` (atomically: a temporary file, then a rename).
///
/// # Errors
/// I/O or encoding errors.
pub fn save_png(img: &RgbImage, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    strata_train::write_atomic(path, &bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_grid_puts_each_pixel_in_its_place() {
        // Two 1x1x2 images: [0, 1] and [1, 0], scale 1: the picture is 2 * (2 + 1) + 1 wide.
        let img = ImageGrid::new([1, 1, 2], 2)
            .with_scale(1)
            .draw(&[0.0, 1.0, 1.0, 0.0])
            .unwrap();
        assert_eq!(img.dimensions(), (7, 3));
        assert_eq!(img.get_pixel(1, 1).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(2, 1).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(4, 1).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(5, 1).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(3, 1).0, [128, 128, 128]);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(ImageGrid::new([1, 2, 2], 2).draw(&[0.0; 5]).is_err());
        assert!(ImageGrid::new([2, 2, 2], 2).draw(&[0.0; 8]).is_err());
        assert!(ImageGrid::new([1, 2, 2], 0).draw(&[0.0; 4]).is_err());
        assert!(Scatter::new(100).draw(&[[0.0, f32::NAN]], &[0]).is_err());
        assert!(Scatter::new(100).draw(&[[0.0, 0.0]], &[]).is_err());
        assert!(Scatter::new(8).draw(&[[0.0, 0.0]], &[0]).is_err());
    }

    #[test]
    fn a_png_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grid.png");
        let img = ImageGrid::new([1, 4, 4], 2).draw(&[0.25; 32]).unwrap();
        save_png(&img, &path).unwrap();
        let back = image::open(&path).unwrap().to_rgb8();
        assert_eq!(back, img);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Any finite points, in any number, draw inside the picture without a panic.
        #[test]
        fn scatter_never_panics(points in prop::collection::vec((-1e6f32..1e6, -1e6f32..1e6), 1..40),
                                size in 32usize..120) {
            let pts: Vec<[f32; 2]> = points.iter().map(|p| [p.0, p.1]).collect();
            let classes: Vec<usize> = (0..pts.len()).collect();
            let img = Scatter::new(size).draw(&pts, &classes).unwrap();
            prop_assert_eq!(img.dimensions(), (size as u32, size as u32));
        }
    }

    #[test]
    fn text_is_font8x8_s_glyphs() {
        let mut img = RgbImage::from_pixel(20, 10, Rgb([255, 255, 255]));
        draw_text(&mut img, "1é", 1, 1, [0, 0, 0]);
        let glyph = font8x8::legacy::BASIC_LEGACY['1' as usize];
        for y in 0..10u32 {
            for x in 0..20u32 {
                let inked = img.get_pixel(x, y).0 == [0, 0, 0];
                let want = (1..9).contains(&x)
                    && (1..9).contains(&y)
                    && glyph[(y - 1) as usize] >> (x - 1) & 1 == 1;
                assert_eq!(inked, want, "({x}, {y})");
            }
        }
        assert_eq!(text_width("0.25"), 32);
        assert_eq!(
            [tick(0.0), tick(0.075), tick(0.1), tick(2.0), tick(0.33333)],
            ["0", "0.075", "0.1", "2", "0.3333"]
        );
    }

    #[test]
    fn a_line_chart_has_its_title_ticks_and_points() {
        let chart = LineChart {
            width: 480,
            height: 320,
            title: "robust accuracy".into(),
            x_label: "epsilon".into(),
        };
        let img = chart.draw(&[(0.0, 0.9), (0.1, 0.5), (0.2, 0.1)]).unwrap();
        let inked = |x0: u32, x1: u32, y0: u32, y1: u32| {
            (y0..y1).any(|y| (x0..x1).any(|x| img.get_pixel(x, y).0 == [40, 40, 40]))
        };
        assert!(inked(0, 480, 0, 20), "the title");
        assert!(inked(0, 46, 20, 300), "the y ticks");
        assert!(inked(40, 480, 275, 300), "the x ticks");
        assert!(inked(0, 480, 300, 320), "the x label");
        // The first point's disc, 90% of the way up the plot.
        let colour = Rgb(PALETTE[0]);
        assert!(img.pixels().filter(|p| **p == colour).count() > 3 * 29);
        assert!(chart.draw(&[]).is_err());
        assert!(chart.draw(&[(0.1, 0.5), (0.0, 0.4)]).is_err());
        assert!(chart.draw(&[(0.0, f64::NAN)]).is_err());
        let small = LineChart {
            width: 100,
            ..chart
        };
        assert!(small.draw(&[(0.0, 0.5)]).is_err());
    }
}
