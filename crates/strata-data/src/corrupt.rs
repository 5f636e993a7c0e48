//! The corruption a denoising autoencoder learns to undo: Gaussian noise, masking noise or
//! salt-and-pepper noise applied to training inputs only (the clean input stays the target),
//! seeded like augmentation, so the same seed gives the same noise.
//!
//! ```
//! use strata_data::Corruption;
//! let noise = Corruption::parse("gaussian:0.3")?;
//! let mut rows = vec![0.5f32; 2 * 64];
//! noise.apply(&mut rows, 64, 7, true);
//! assert!(rows.iter().all(|v| (0.0..=1.0).contains(v)));
//! assert_ne!(rows, vec![0.5f32; 2 * 64]);
//! assert_eq!(noise.to_string(), "gaussian:0.3");
//! # Ok::<(), strata_data::Error>(())
//! ```

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::augment::normal;
use crate::error::{Error, Result};

/// A corruption of inputs, written `gaussian:STD`, `mask:FRACTION` or `salt-pepper:FRACTION`
/// (in configs too).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Corruption {
    /// Add `N(0, std^2)` to every value (then clip to `[0, 1]` for images).
    Gaussian {
        /// Standard deviation.
        std: f32,
    },
    /// Set each value to 0 with probability `fraction` (masking noise).
    Mask {
        /// Probability that a value is zeroed.
        fraction: f32,
    },
    /// Set each value with probability `fraction` to 0 or 1, each equally likely.
    SaltPepper {
        /// Probability that a value is replaced.
        fraction: f32,
    },
}

impl Corruption {
    /// Parses `gaussian[:STD]`, `mask[:FRACTION]` or `salt-pepper[:FRACTION]` (defaults 0.3,
    /// 0.25, 0.1).
    ///
    /// # Errors
    /// [`Error::Invalid`] for an unknown name, a number that is not finite, or a value out of
    /// range (see [`validate`](Self::validate)).
    pub fn parse(spec: &str) -> Result<Self> {
        let spec = spec.trim();
        let (name, number) = match spec.split_once(':') {
            Some((n, v)) => (n, Some(v)),
            None => (spec, None),
        };
        let value = |default: f32| -> Result<f32> {
            match number {
                None => Ok(default),
                Some(v) => match v.trim().parse::<f32>() {
                    Ok(x) if x.is_finite() => Ok(x),
                    _ => Err(Error::Invalid(format!(
                        "noise `{spec}`: `{v}` is not a finite number"
                    ))),
                },
            }
        };
        let c = match name.trim() {
            "gaussian" => Self::Gaussian { std: value(0.3)? },
            "mask" => Self::Mask {
                fraction: value(0.25)?,
            },
            "salt-pepper" => Self::SaltPepper {
                fraction: value(0.1)?,
            },
            other => {
                return Err(Error::Invalid(format!(
                    "unknown noise `{other}`: expected gaussian[:STD], mask[:FRACTION] or salt-pepper[:FRACTION]"
                )));
            }
        };
        c.validate()?;
        Ok(c)
    }

    /// Checks the level: a standard deviation in `[0, 10]`, a fraction in `[0, 1]`.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the corruption.
    pub fn validate(&self) -> Result<()> {
        let ok = match *self {
            Self::Gaussian { std } => (0.0..=10.0).contains(&std),
            Self::Mask { fraction } | Self::SaltPepper { fraction } => {
                (0.0..=1.0).contains(&fraction)
            }
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "noise `{self}` is out of range (a standard deviation in [0, 10], a fraction in [0, 1])"
            )))
        }
    }

    /// Corrupts `rows` (each of `width` values) in place; row `i` draws from a generator
    /// seeded by `(seed, i)`. `clip` keeps Gaussian-noised values in `[0, 1]` (images).
    pub fn apply(&self, rows: &mut [f32], width: usize, seed: u64, clip: bool) {
        for (i, row) in rows.chunks_mut(width.max(1)).enumerate() {
            let mut rng =
                ChaCha8Rng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            match *self {
                Self::Gaussian { std } => {
                    if std > 0.0 {
                        for v in row.iter_mut() {
                            *v += std * normal(&mut rng);
                            if clip {
                                *v = v.clamp(0.0, 1.0);
                            }
                        }
                    }
                }
                Self::Mask { fraction } => {
                    for v in row.iter_mut() {
                        if rng.random::<f32>() < fraction {
                            *v = 0.0;
                        }
                    }
                }
                Self::SaltPepper { fraction } => {
                    for v in row.iter_mut() {
                        if rng.random::<f32>() < fraction {
                            *v = if rng.random_bool(0.5) { 1.0 } else { 0.0 };
                        }
                    }
                }
            }
        }
    }
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Gaussian { std } => write!(f, "gaussian:{std}"),
            Self::Mask { fraction } => write!(f, "mask:{fraction}"),
            Self::SaltPepper { fraction } => write!(f, "salt-pepper:{fraction}"),
        }
    }
}

impl TryFrom<String> for Corruption {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}

impl From<Corruption> for String {
    fn from(c: Corruption) -> String {
        c.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Corruption keeps the length, repeats with the seed, and is the identity at level 0.
        #[test]
        fn shapes_seeds_and_identity(n in 1usize..4, width in 1usize..50, seed in 0u64..1000,
                                     level in 0.0f32..1.0, kind in 0usize..3) {
            let x: Vec<f32> = (0..n * width).map(|i| (i % 7) as f32 / 7.0).collect();
            let make = |l: f32| match kind {
                0 => Corruption::Gaussian { std: l },
                1 => Corruption::Mask { fraction: l },
                _ => Corruption::SaltPepper { fraction: l },
            };
            let (mut a, mut b) = (x.clone(), x.clone());
            make(level).apply(&mut a, width, seed, true);
            make(level).apply(&mut b, width, seed, true);
            prop_assert_eq!(a.len(), x.len());
            prop_assert_eq!(&a, &b);
            prop_assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
            let mut same = x.clone();
            make(0.0).apply(&mut same, width, seed, true);
            prop_assert_eq!(same, x);
        }

        /// Any text parses to a valid corruption or gives an error; never a panic.
        #[test]
        fn parse_never_panics(s in "\\PC{0,24}") {
            if let Ok(c) = Corruption::parse(&s) {
                prop_assert!(c.validate().is_ok());
                prop_assert_eq!(Corruption::parse(&c.to_string()).unwrap(), c);
            }
        }
    }

    #[test]
    fn the_noise_has_its_level() {
        let mut rows = vec![0.0f32; 20_000];
        Corruption::Gaussian { std: 0.3 }.apply(&mut rows, 100, 1, false);
        let var = rows.iter().map(|v| (v * v) as f64).sum::<f64>() / rows.len() as f64;
        assert!((var.sqrt() - 0.3).abs() < 0.01, "{}", var.sqrt());
        let mut rows = vec![0.5f32; 20_000];
        Corruption::Mask { fraction: 0.25 }.apply(&mut rows, 100, 1, true);
        let zeroed = rows.iter().filter(|v| **v == 0.0).count() as f64 / 20_000.0;
        assert!((zeroed - 0.25).abs() < 0.01, "{zeroed}");
        let mut rows = vec![0.5f32; 20_000];
        Corruption::SaltPepper { fraction: 0.1 }.apply(&mut rows, 100, 1, true);
        let ones = rows.iter().filter(|v| **v == 1.0).count() as f64 / 20_000.0;
        let zeros = rows.iter().filter(|v| **v == 0.0).count() as f64 / 20_000.0;
        assert!((ones - 0.05).abs() < 0.01 && (zeros - 0.05).abs() < 0.01);
    }

    #[test]
    fn bad_specs_are_errors() {
        for bad in [
            "gaussian:nan",
            "gaussian:-1",
            "mask:1.5",
            "salt-pepper:x",
            "blur",
            "",
        ] {
            assert!(Corruption::parse(bad).is_err(), "{bad}");
        }
    }
}
