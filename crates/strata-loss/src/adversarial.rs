//! The losses of a GAN's two players, from the discriminator's raw scores (logits, or a
//! critic's unbounded values):
//!
//! | kind | discriminator | generator |
//! |---|---|---|
//! | [`Bce`](AdversarialLoss::Bce) (Goodfellow et al. 2014, non-saturating) | `softplus(-D(x)) + softplus(D(G(z)))` | `softplus(-D(G(z)))` |
//! | [`Wasserstein`](AdversarialLoss::Wasserstein) (Arjovsky et al. 2017) | `D(G(z)) - D(x)` | `-D(G(z))` |
//! | [`Hinge`](AdversarialLoss::Hinge) (Miyato et al. 2018) | `relu(1 - D(x)) + relu(1 + D(G(z)))` | `-D(G(z))` |
//!
//! each a mean over the batch. `softplus(-s)` is `-log(sigmoid(s))`, so the BCE losses are
//! PyTorch's `BCEWithLogitsLoss` with targets 1 (real) and 0 (fake).
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use strata_loss::AdversarialLoss;
//! let d = Device::flex();
//! let real = Tensor::<1>::from_floats([0.0, 0.0], &d);
//! let fake = Tensor::<1>::from_floats([0.0, 0.0], &d);
//! // A discriminator that cannot tell: 2 ln 2 for it, ln 2 for the generator.
//! let dl: f32 = AdversarialLoss::Bce.discriminator(real, fake.clone()).into_scalar();
//! let gl: f32 = AdversarialLoss::Bce.generator(fake).into_scalar();
//! assert!((dl - 2.0 * 2f32.ln()).abs() < 1e-6 && (gl - 2f32.ln()).abs() < 1e-6);
//! ```

use burn::tensor::Tensor;
use burn::tensor::activation::{relu, softplus};
use serde::{Deserialize, Serialize};

/// Which game the two players play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdversarialLoss {
    /// Binary cross-entropy on logits, the generator's loss non-saturating (DCGAN).
    #[default]
    Bce,
    /// The Wasserstein critic's difference of means (WGAN).
    Wasserstein,
    /// The hinge loss (SN-GAN).
    Hinge,
}

impl AdversarialLoss {
    /// Its name: `bce`, `wasserstein`, `hinge`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bce => "bce",
            Self::Wasserstein => "wasserstein",
            Self::Hinge => "hinge",
        }
    }

    /// The discriminator's (critic's) loss from its scores of a batch of real examples and of
    /// a batch of generated ones (detached from the generator by the caller).
    ///
    /// # Shapes
    /// - `real`: `[n_real]`, `fake`: `[n_fake]`
    /// - returns `[1]`
    pub fn discriminator(self, real: Tensor<1>, fake: Tensor<1>) -> Tensor<1> {
        match self {
            Self::Bce => softplus(real.neg(), 1.0).mean() + softplus(fake, 1.0).mean(),
            Self::Wasserstein => fake.mean() - real.mean(),
            Self::Hinge => relu(real.neg() + 1.0).mean() + relu(fake + 1.0).mean(),
        }
    }

    /// The generator's loss from the discriminator's scores of its samples.
    ///
    /// # Shapes
    /// - `fake`: `[n_fake]`
    /// - returns `[1]`
    pub fn generator(self, fake: Tensor<1>) -> Tensor<1> {
        match self {
            Self::Bce => softplus(fake.neg(), 1.0).mean(),
            Self::Wasserstein | Self::Hinge => fake.mean().neg(),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;

    fn t(v: &[f32]) -> Tensor<1> {
        Tensor::from_floats(v, &Device::flex())
    }

    #[test]
    fn bce_matches_the_cross_entropy_of_sigmoids() {
        let (r, f) = ([2.0f32, -1.0, 0.5], [0.3f32, -2.0]);
        let sig = |x: f32| 1.0 / (1.0 + (-x).exp());
        let want_d = -r.iter().map(|&x| sig(x).ln()).sum::<f32>() / 3.0
            - f.iter().map(|&x| (1.0 - sig(x)).ln()).sum::<f32>() / 2.0;
        let want_g = -f.iter().map(|&x| sig(x).ln()).sum::<f32>() / 2.0;
        let d: f32 = AdversarialLoss::Bce
            .discriminator(t(&r), t(&f))
            .into_scalar();
        let g: f32 = AdversarialLoss::Bce.generator(t(&f)).into_scalar();
        assert!((d - want_d).abs() < 1e-5, "{d} vs {want_d}");
        assert!((g - want_g).abs() < 1e-5, "{g} vs {want_g}");
    }

    #[test]
    fn wasserstein_and_hinge_by_hand() {
        let (r, f) = (t(&[2.0, 0.0]), t(&[-0.5, 1.5]));
        let w: f32 = AdversarialLoss::Wasserstein
            .discriminator(r.clone(), f.clone())
            .into_scalar();
        assert!((w - (0.5 - 1.0)).abs() < 1e-6);
        // relu(1 - [2, 0]) = [0, 1], relu(1 + [-0.5, 1.5]) = [0.5, 2.5]
        let h: f32 = AdversarialLoss::Hinge
            .discriminator(r, f.clone())
            .into_scalar();
        assert!((h - (0.5 + 1.5)).abs() < 1e-6);
        let g: f32 = AdversarialLoss::Hinge.generator(f).into_scalar();
        assert!((g + 0.5).abs() < 1e-6);
    }
}
