//! Data augmentation for image batches: random crop with padding, horizontal flip, small
//! rotations and shifts (affine), Gaussian noise, random erasing (cutout), each with its own
//! settings, composed in order and seeded; and mixup, which mixes pairs of samples and their
//! labels (the trainer applies it, since it changes the targets).
//!
//! Augmentation works on flat row-major `C x H x W` rows, as a [`Dataset`](crate::Dataset)
//! holds images, and is meant for the training split only (the trainer never applies it to
//! validation or test data). The same seed gives the same output.
//!
//! ```
//! use strata_data::{Augment, Augmentation};
//! let augment = Augment::new(vec![
//!     Augmentation::RandomCrop { padding: 2 },
//!     Augmentation::HorizontalFlip { p: 0.5 },
//! ]);
//! let mut rows = vec![0.5f32; 2 * 28 * 28];
//! augment.apply(&mut rows, [1, 28, 28], 7)?;
//! assert_eq!(rows.len(), 2 * 28 * 28);
//! # Ok::<(), strata_data::Error>(())
//! ```

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The largest crop padding accepted, in pixels: far beyond any image Strata trains on, and
/// small enough that no offset arithmetic can overflow.
pub const MAX_CROP_PADDING: usize = 4096;

/// The range of mixup's Beta(alpha, alpha) parameter accepted: the mixup paper uses 0.1 to
/// 0.4; below 0.01 both Gamma draws underflow to zero.
pub const MIXUP_ALPHA: std::ops::RangeInclusive<f64> = 0.01..=100.0;

/// One augmentation step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Augmentation {
    /// Pad each side with `padding` zeros, then crop back to the original size at a random
    /// offset (a random shift of up to `padding` pixels).
    RandomCrop {
        /// Pixels of padding on each side.
        padding: usize,
    },
    /// Mirror left-right with probability `p`.
    HorizontalFlip {
        /// Probability.
        p: f64,
    },
    /// Rotate by a uniform angle in `[-degrees, degrees]` and shift by up to `translate` of the
    /// size in each direction, bilinear, zeros outside.
    Affine {
        /// Largest rotation, in degrees.
        degrees: f32,
        /// Largest shift, as a fraction of the width and height.
        translate: f32,
    },
    /// Add Gaussian noise of standard deviation `std`.
    GaussianNoise {
        /// Standard deviation.
        std: f32,
    },
    /// With probability `p`, set a random rectangle covering a fraction of the image in
    /// `[min_area, max_area]` (aspect ratio between 0.3 and 3.3) to zero (cutout).
    RandomErasing {
        /// Probability.
        p: f64,
        /// Smallest fraction of the image erased.
        min_area: f32,
        /// Largest fraction of the image erased.
        max_area: f32,
    },
}

impl Augmentation {
    /// Parses a user's `--augment` item: `crop[:PAD]`, `flip[:P]`, `affine[:DEG[:SHIFT]]`,
    /// `noise[:STD]`, `erase[:P]` (defaults 4, 0.5, 10 and 0.1, 0.05, 0.5).
    ///
    /// # Errors
    /// [`Error::Invalid`] for an unknown name, a bad or missing number, too many numbers, or a
    /// value out of range (see [`validate`](Self::validate)).
    pub fn parse(spec: &str) -> Result<Self> {
        let mut parts = spec.trim().split(':');
        let name = parts.next().unwrap_or_default();
        let nums: Vec<f64> = parts
            .map(|p| match p.trim().parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(v),
                _ => Err(Error::Invalid(format!(
                    "augmentation `{spec}`: `{p}` is not a finite number"
                ))),
            })
            .collect::<Result<_>>()?;
        let most = match name {
            "crop" | "flip" | "noise" | "erase" => 1,
            "affine" => 2,
            other => {
                return Err(Error::Invalid(format!(
                    "unknown augmentation `{other}`: expected crop, flip, affine, noise, erase or mixup"
                )));
            }
        };
        if nums.len() > most {
            return Err(Error::Invalid(format!(
                "augmentation `{spec}`: {name} takes at most {most} number(s), got {}",
                nums.len()
            )));
        }
        let at = |i: usize, default: f64| nums.get(i).copied().unwrap_or(default);
        let a = match name {
            "crop" => {
                let p = at(0, 4.0);
                if p.fract() != 0.0 || !(0.0..=MAX_CROP_PADDING as f64).contains(&p) {
                    return Err(Error::Invalid(format!(
                        "augmentation `{spec}`: crop padding must be a whole number of pixels in 0..={MAX_CROP_PADDING}, got {p}"
                    )));
                }
                Self::RandomCrop {
                    padding: p as usize,
                }
            }
            "flip" => Self::HorizontalFlip { p: at(0, 0.5) },
            "affine" => Self::Affine {
                degrees: at(0, 10.0) as f32,
                translate: at(1, 0.1) as f32,
            },
            "noise" => Self::GaussianNoise {
                std: at(0, 0.05) as f32,
            },
            _ => Self::RandomErasing {
                p: at(0, 0.5),
                min_area: 0.02,
                max_area: 0.33,
            },
        };
        a.validate()?;
        Ok(a)
    }

    /// Checks the step's settings: a crop padding up to [`MAX_CROP_PADDING`], probabilities
    /// in `[0, 1]`, a rotation in `[0, 180]` degrees, a shift in `[0, 1)`, a finite noise
    /// `std >= 0`, erased areas with `0 < min <= max <= 1`. NaN is never in range.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the step.
    pub fn validate(&self) -> Result<()> {
        let prob = |p: f64| (0.0..=1.0).contains(&p);
        let ok = match *self {
            Self::RandomCrop { padding } => padding <= MAX_CROP_PADDING,
            Self::HorizontalFlip { p } => prob(p),
            Self::Affine { degrees, translate } => {
                (0.0..=180.0).contains(&degrees) && (0.0..1.0).contains(&translate)
            }
            Self::GaussianNoise { std } => std >= 0.0 && std.is_finite(),
            Self::RandomErasing {
                p,
                min_area,
                max_area,
            } => prob(p) && 0.0 < min_area && min_area <= max_area && max_area <= 1.0,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "augmentation {self:?} is out of range (crop padding <= {MAX_CROP_PADDING}, probabilities in [0, 1], degrees in [0, 180], translate in [0, 1), noise std >= 0, 0 < min_area <= max_area <= 1)"
            )))
        }
    }

    /// Applies the step to one `C x H x W` image in place.
    fn apply(&self, img: &mut [f32], [c, h, w]: [usize; 3], rng: &mut ChaCha8Rng) {
        match *self {
            Self::RandomCrop { padding } => {
                if padding == 0 {
                    return;
                }
                let p = padding as i64;
                let dy = rng.random_range(-p..=p);
                let dx = rng.random_range(-p..=p);
                shift(img, [c, h, w], dy, dx);
            }
            Self::HorizontalFlip { p } => {
                if rng.random_bool(p) {
                    for row in img.chunks_mut(w) {
                        row.reverse();
                    }
                }
            }
            Self::Affine { degrees, translate } => {
                let angle = rng.random_range(-degrees..=degrees).to_radians();
                let ty = rng.random_range(-translate..=translate) * h as f32;
                let tx = rng.random_range(-translate..=translate) * w as f32;
                if angle == 0.0 && ty == 0.0 && tx == 0.0 {
                    return;
                }
                affine(img, [c, h, w], angle, ty, tx);
            }
            Self::GaussianNoise { std } => {
                if std > 0.0 {
                    for v in img.iter_mut() {
                        *v += std * normal(rng);
                    }
                }
            }
            Self::RandomErasing {
                p,
                min_area,
                max_area,
            } => {
                if !rng.random_bool(p) {
                    return;
                }
                let area = rng.random_range(min_area..=max_area) * (h * w) as f32;
                let ratio = rng.random_range(0.3f32.ln()..=3.3f32.ln()).exp();
                let eh = ((area * ratio).sqrt().round() as usize).clamp(1, h);
                let ew = ((area / ratio).sqrt().round() as usize).clamp(1, w);
                let y0 = rng.random_range(0..=h - eh);
                let x0 = rng.random_range(0..=w - ew);
                for ch in 0..c {
                    for y in y0..y0 + eh {
                        let row = ch * h * w + y * w;
                        img[row + x0..row + x0 + ew].fill(0.0);
                    }
                }
            }
        }
    }
}

/// Moves the image content by `(dy, dx)` pixels, zeros where nothing comes in.
fn shift(img: &mut [f32], [c, h, w]: [usize; 3], dy: i64, dx: i64) {
    let src = img.to_vec();
    for ch in 0..c {
        for y in 0..h as i64 {
            for x in 0..w as i64 {
                let (sy, sx) = (y - dy, x - dx);
                let inside = (0..h as i64).contains(&sy) && (0..w as i64).contains(&sx);
                img[ch * h * w + (y as usize) * w + x as usize] = if inside {
                    src[ch * h * w + (sy as usize) * w + sx as usize]
                } else {
                    0.0
                };
            }
        }
    }
}

/// Rotates by `angle` (radians) about the centre and shifts by `(ty, tx)`, bilinear, zeros
/// outside.
fn affine(img: &mut [f32], [c, h, w]: [usize; 3], angle: f32, ty: f32, tx: f32) {
    let src = img.to_vec();
    let (cy, cx) = ((h as f32 - 1.0) / 2.0, (w as f32 - 1.0) / 2.0);
    let (sin, cos) = angle.sin_cos();
    for y in 0..h {
        for x in 0..w {
            // The source point that lands on (y, x): the inverse transform.
            let (yy, xx) = (y as f32 - cy - ty, x as f32 - cx - tx);
            let sy = cos * yy - sin * xx + cy;
            let sx = sin * yy + cos * xx + cx;
            for ch in 0..c {
                img[ch * h * w + y * w + x] = bilinear(&src, [c, h, w], ch, sy, sx);
            }
        }
    }
}

/// Channel `ch` of the image `src` at the real position `(sy, sx)`, bilinear, zeros outside.
fn bilinear(src: &[f32], [_, h, w]: [usize; 3], ch: usize, sy: f32, sx: f32) -> f32 {
    let at = |y: i64, x: i64| -> f32 {
        if (0..h as i64).contains(&y) && (0..w as i64).contains(&x) {
            src[ch * h * w + y as usize * w + x as usize]
        } else {
            0.0
        }
    };
    let (y0, x0) = (sy.floor() as i64, sx.floor() as i64);
    let (fy, fx) = (sy - y0 as f32, sx - x0 as f32);
    at(y0, x0) * (1.0 - fy) * (1.0 - fx)
        + at(y0, x0 + 1) * (1.0 - fy) * fx
        + at(y0 + 1, x0) * fy * (1.0 - fx)
        + at(y0 + 1, x0 + 1) * fy * fx
}

/// Resizes each image of `rows` (flat `[n, c*h*w]`) to `height x width`, bilinear with
/// PyTorch's `F.interpolate(mode="bilinear", align_corners=False)` convention: pixel centres
/// map onto pixel centres, and positions beyond the edge take the edge pixel.
pub fn resize_images(rows: &[f32], [c, h, w]: [usize; 3], [height, width]: [usize; 2]) -> Vec<f32> {
    let src_len = c * h * w;
    let mut out = Vec::with_capacity(rows.len() / src_len.max(1) * c * height * width);
    let coord = |dst: usize, n_dst: usize, n_src: usize| -> f32 {
        let s = (dst as f32 + 0.5) * n_src as f32 / n_dst as f32 - 0.5;
        s.clamp(0.0, (n_src - 1) as f32)
    };
    for img in rows.chunks_exact(src_len) {
        for ch in 0..c {
            for y in 0..height {
                let sy = coord(y, height, h);
                for x in 0..width {
                    out.push(bilinear(img, [c, h, w], ch, sy, coord(x, width, w)));
                }
            }
        }
    }
    out
}

/// A standard normal draw (Box-Muller).
pub(crate) fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// A Gamma(`shape`, 1) draw (Marsaglia and Tsang; boosted below shape 1).
fn gamma(shape: f64, rng: &mut ChaCha8Rng) -> f64 {
    if shape < 1.0 {
        let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
        return gamma(shape + 1.0, rng) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng) as f64;
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// The logarithm of a Gamma(`shape`, 1) draw. Below shape 1 the boost `G(shape + 1) *
/// U^(1/shape)` is taken in logs, where it cannot underflow to zero.
fn ln_gamma_draw(shape: f64, rng: &mut ChaCha8Rng) -> f64 {
    if shape < 1.0 {
        let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
        return gamma(shape + 1.0, rng).ln() + u.ln() / shape;
    }
    gamma(shape, rng).ln()
}

/// A Beta(`alpha`, `alpha`) draw: mixup's mixing weight, `a / (a + b)` for two Gamma draws,
/// computed as `1 / (1 + exp(ln b - ln a))` so that small alphas, whose Gamma draws underflow,
/// still give a weight in `[0, 1]`.
pub fn beta_symmetric(alpha: f64, seed: u64) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let a = ln_gamma_draw(alpha, &mut rng);
    let b = ln_gamma_draw(alpha, &mut rng);
    1.0 / (1.0 + (b - a).exp())
}

/// A composed, seeded augmentation pipeline, plus optional mixup.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Augment {
    /// Steps, applied in order to each image.
    #[serde(default)]
    pub steps: Vec<Augmentation>,
    /// Mixup's Beta(alpha, alpha) parameter; `None` is no mixup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mixup: Option<f64>,
}

impl Augment {
    /// A pipeline of `steps` without mixup.
    pub fn new(steps: Vec<Augmentation>) -> Self {
        Self { steps, mixup: None }
    }

    /// Parses `--augment crop:4,flip,mixup:0.2`.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an unknown item or a bad number.
    pub fn parse(spec: &str) -> Result<Self> {
        let mut out = Self::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "mixup" || item.starts_with("mixup:") {
                let alpha = match item.strip_prefix("mixup:") {
                    Some(a) => a.trim().parse::<f64>().map_err(|_| {
                        Error::Invalid(format!("augmentation `{item}`: `{a}` is not a number"))
                    })?,
                    None => 0.2,
                };
                out.mixup = Some(alpha);
            } else {
                out.steps.push(Augmentation::parse(item)?);
            }
        }
        out.validate()?;
        Ok(out)
    }

    /// Checks every step ([`Augmentation::validate`]) and mixup's alpha (in
    /// [`MIXUP_ALPHA`]): what a TOML config must pass as much as `--augment`.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first setting out of range.
    pub fn validate(&self) -> Result<()> {
        for step in &self.steps {
            step.validate()?;
        }
        if let Some(alpha) = self.mixup
            && !MIXUP_ALPHA.contains(&alpha)
        {
            return Err(Error::Invalid(format!(
                "mixup alpha must be in [{}, {}], got {alpha}",
                MIXUP_ALPHA.start(),
                MIXUP_ALPHA.end()
            )));
        }
        Ok(())
    }

    /// Whether nothing is done.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty() && self.mixup.is_none()
    }

    /// Applies the steps to `rows` (flat `C x H x W` images, one after another) in place; image
    /// `i` draws from a generator seeded by `(seed, i)`.
    ///
    /// # Errors
    /// [`Error::Mismatch`] when the rows are not whole images.
    pub fn apply(&self, rows: &mut [f32], shape: [usize; 3], seed: u64) -> Result<()> {
        let size: usize = shape.iter().product();
        if size == 0 || !rows.len().is_multiple_of(size) {
            return Err(Error::Mismatch(format!(
                "{} values are not whole images of {shape:?}",
                rows.len()
            )));
        }
        if self.steps.is_empty() {
            return Ok(());
        }
        for (i, img) in rows.chunks_mut(size).enumerate() {
            let mut rng =
                ChaCha8Rng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            for step in &self.steps {
                step.apply(img, shape, &mut rng);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::Rng;

    fn image(n: usize, shape: [usize; 3], seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n * shape.iter().product::<usize>())
            .map(|_| rng.random_range(0.0..1.0))
            .collect()
    }

    fn all_steps(p: f64) -> Vec<Augmentation> {
        vec![
            Augmentation::RandomCrop { padding: 2 },
            Augmentation::HorizontalFlip { p },
            Augmentation::Affine {
                degrees: 10.0,
                translate: 0.1,
            },
            Augmentation::GaussianNoise { std: 0.1 },
            Augmentation::RandomErasing {
                p,
                min_area: 0.05,
                max_area: 0.3,
            },
        ]
    }

    #[test]
    fn a_flip_mirrors_and_a_crop_shifts_with_zeros() {
        let shape = [1, 2, 3];
        let mut x = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        Augment::new(vec![Augmentation::HorizontalFlip { p: 1.0 }])
            .apply(&mut x, shape, 0)
            .unwrap();
        assert_eq!(x, vec![3.0, 2.0, 1.0, 6.0, 5.0, 4.0]);
        let mut y = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        shift(&mut y, shape, 0, 1);
        assert_eq!(y, vec![0.0, 1.0, 2.0, 0.0, 4.0, 5.0]);
        // A quarter turn of a 3x3 image moves the corners around.
        let mut z: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        affine(&mut z, [1, 3, 3], std::f32::consts::FRAC_PI_2, 0.0, 0.0);
        let z: Vec<i32> = z.iter().map(|v| v.round() as i32).collect();
        assert_eq!(z, vec![7, 4, 1, 8, 5, 2, 9, 6, 3]);
    }

    #[test]
    fn parsing_and_bad_settings() {
        let a = Augment::parse("crop:4, flip, affine:15:0.1, noise:0.05, erase:0.25, mixup:0.4")
            .unwrap();
        assert_eq!(a.steps.len(), 5);
        assert_eq!(a.mixup, Some(0.4));
        assert!(
            Augment::parse("rotate")
                .unwrap_err()
                .to_string()
                .contains("unknown augmentation")
        );
        assert!(Augment::parse("flip:2").is_err());
        assert!(
            Augment::parse("crop:x")
                .unwrap_err()
                .to_string()
                .contains("`x` is not a finite number")
        );
        assert!(Augment::parse("mixup:0").is_err());
        // What crashed or hung before: an offset overflow, NaN, out-of-range steps.
        for bad in [
            "crop:1e19",
            "crop:-1",
            "crop:1.5",
            "flip:nan",
            "mixup:nan",
            "mixupx",
            "affine:-5",
        ] {
            assert!(Augment::parse(bad).is_err(), "{bad}");
        }
        let nan_mixup = Augment {
            steps: vec![],
            mixup: Some(f64::NAN),
        };
        assert!(nan_mixup.validate().is_err());
        let mut odd = vec![0.0; 10];
        assert!(a.apply(&mut odd, [1, 3, 3], 0).is_err());
    }

    #[test]
    fn mixup_weights_follow_beta() {
        // Beta(0.4, 0.4) has mean 0.5 and variance 1 / (4 * (2 * 0.4 + 1)) = 0.1389.
        let draws: Vec<f64> = (0..4000).map(|s| beta_symmetric(0.4, s)).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        assert!((var - 0.1389).abs() < 0.01, "{var}");
        assert!(draws.iter().all(|d| (0.0..=1.0).contains(d)));
        // The smallest alpha accepted: Gamma draws that underflow in linear scale still give
        // weights in [0, 1], near 0 or 1 as Beta(0.01, 0.01) is.
        let tiny: Vec<f64> = (0..2000).map(|s| beta_symmetric(0.01, s)).collect();
        assert!(tiny.iter().all(|d| (0.0..=1.0).contains(d)), "{tiny:?}");
        let extreme = tiny
            .iter()
            .filter(|&&d| !(0.01..=0.99).contains(&d))
            .count();
        // About 4% of Beta(0.01, 0.01) lies in [0.01, 0.99]: some 1920 of 2000 outside.
        assert!(extreme > 1800, "{extreme} of 2000 near 0 or 1");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Shapes are kept, the same seed gives the same output, and with probability 0 (and
        /// no shift, rotation or noise) an image is unchanged.
        #[test]
        fn shapes_seeds_and_identity(n in 1usize..4, c in 1usize..3, h in 2usize..9, w in 2usize..9, seed in 0u64..1000) {
            let shape = [c, h, w];
            let x = image(n, shape, seed);
            let pipeline = Augment::new(all_steps(0.5));
            let (mut a, mut b) = (x.clone(), x.clone());
            pipeline.apply(&mut a, shape, seed).unwrap();
            pipeline.apply(&mut b, shape, seed).unwrap();
            prop_assert_eq!(a.len(), x.len());
            prop_assert_eq!(&a, &b);
            prop_assert!(a.iter().all(|v| v.is_finite()));
            let identity = Augment::new(vec![
                Augmentation::RandomCrop { padding: 0 },
                Augmentation::HorizontalFlip { p: 0.0 },
                Augmentation::Affine { degrees: 0.0, translate: 0.0 },
                Augmentation::GaussianNoise { std: 0.0 },
                Augmentation::RandomErasing { p: 0.0, min_area: 0.1, max_area: 0.2 },
            ]);
            let mut same = x.clone();
            identity.apply(&mut same, shape, seed).unwrap();
            prop_assert_eq!(same, x);
        }
    }
}
