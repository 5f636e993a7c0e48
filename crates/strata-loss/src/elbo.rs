//! The terms of a variational autoencoder's evidence lower bound, with their reductions stated
//! exactly: nats per example, summed over pixels (or features) and latent units, averaged over
//! the batch. (Averaging over pixels instead, while summing the KL, weights the KL hundreds of
//! times too strongly: blurry samples and collapsed posteriors.)
//!
//! ```
//! use burn::tensor::{Device, Tensor, TensorData};
//! use strata_loss::{bernoulli_nll, gaussian_kl};
//! let d = Device::flex();
//! let zeros = Tensor::<2>::from_data(TensorData::new(vec![0.0f32; 6], [2, 3]), &d);
//! // A standard normal posterior is the prior: KL 0.
//! let kl = gaussian_kl(zeros.clone(), zeros.clone()).into_scalar::<f32>();
//! assert!(kl.abs() < 1e-7);
//! // Logits 0 (p = 0.5) cost ln 2 nats per pixel: 3 ln 2 per example.
//! let nll = bernoulli_nll(zeros.clone(), zeros).into_scalar::<f32>();
//! assert!((nll - 3.0 * std::f32::consts::LN_2).abs() < 1e-6);
//! ```

use burn::tensor::Tensor;
use burn::tensor::activation::softplus;

/// The negative log-likelihood of `target` (values in `[0, 1]`) under independent Bernoulli
/// pixels with `logits`: `softplus(l) - x l`, summed over the features and averaged over the
/// batch (binary cross-entropy with logits, in nats per example).
///
/// # Shapes
/// - logits, target: `[batch, features]`
/// - output: `[1]`
pub fn bernoulli_nll(logits: Tensor<2>, target: Tensor<2>) -> Tensor<1> {
    bernoulli_nll_rows(logits, target).mean()
}

/// [`bernoulli_nll`] of each example, not averaged (anomaly scores, importance weights).
///
/// # Shapes
/// - logits, target: `[batch, features]`
/// - output: `[batch]`
pub fn bernoulli_nll_rows(logits: Tensor<2>, target: Tensor<2>) -> Tensor<1> {
    let per_pixel = softplus(logits.clone(), 1.0) - target * logits;
    per_pixel.sum_dim(1).squeeze_dim(1)
}

/// The negative log-likelihood of `target` under independent unit-variance Gaussians with
/// means `mean`: `0.5 (x - m)^2 + 0.5 ln(2 pi)` summed over the features and averaged over
/// the batch (nats per example; the likelihood of standardised tabular data).
///
/// # Shapes
/// - mean, target: `[batch, features]`
/// - output: `[1]`
pub fn gaussian_nll(mean: Tensor<2>, target: Tensor<2>) -> Tensor<1> {
    gaussian_nll_rows(mean, target).mean()
}

/// [`gaussian_nll`] of each example, not averaged.
///
/// # Shapes
/// - mean, target: `[batch, features]`
/// - output: `[batch]`
pub fn gaussian_nll_rows(mean: Tensor<2>, target: Tensor<2>) -> Tensor<1> {
    let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
    ((mean - target).powf_scalar(2.0) * 0.5 + half_log_2pi)
        .sum_dim(1)
        .squeeze_dim(1)
}

/// The log-density of `z` under the diagonal Gaussian `N(mean, exp(log_var))`, summed over the
/// units: `-0.5 (ln(2 pi) + lv + (z - m)^2 / exp(lv))` (with `mean` and `log_var` zero, the
/// standard normal prior). For importance-weighted bounds.
///
/// # Shapes
/// - z, mean, log_var: `[batch, latent]`
/// - output: `[batch]`
pub fn gaussian_log_density(z: Tensor<2>, mean: Tensor<2>, log_var: Tensor<2>) -> Tensor<1> {
    let log_2pi = (2.0 * std::f64::consts::PI).ln();
    let sq = (z - mean).powf_scalar(2.0) * (-log_var.clone()).exp();
    ((sq + log_var + log_2pi) * -0.5).sum_dim(1).squeeze_dim(1)
}

/// The KL divergence from the diagonal Gaussian `N(mean, exp(log_var))` to `N(0, I)`:
/// `0.5 (exp(lv) + m^2 - 1 - lv)`, summed over the latent units and averaged over the batch
/// (nats per example).
///
/// # Shapes
/// - mean, log_var: `[batch, latent]`
/// - output: `[1]`
pub fn gaussian_kl(mean: Tensor<2>, log_var: Tensor<2>) -> Tensor<1> {
    gaussian_kl_rows(mean, log_var).mean()
}

/// [`gaussian_kl`] of each example, not averaged.
///
/// # Shapes
/// - mean, log_var: `[batch, latent]`
/// - output: `[batch]`
pub fn gaussian_kl_rows(mean: Tensor<2>, log_var: Tensor<2>) -> Tensor<1> {
    let terms = log_var.clone().exp() + mean.powf_scalar(2.0) - log_var - 1.0;
    (terms * 0.5).sum_dim(1).squeeze_dim(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};
    use proptest::prelude::*;

    fn t(v: Vec<f32>, cols: usize) -> Tensor<2> {
        let rows = v.len() / cols;
        Tensor::from_data(TensorData::new(v, [rows, cols]), &Device::flex())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// KL(N(m, e^lv) || N(0, 1)) is zero at (0, 0) and positive anywhere else, and matches
        /// its closed form per unit.
        #[test]
        fn kl_is_positive_away_from_the_prior(m in -3.0f32..3.0, lv in -3.0f32..3.0) {
            let kl = gaussian_kl(t(vec![m, 0.0], 2), t(vec![lv, 0.0], 2)).into_scalar::<f32>();
            let want = 0.5 * (lv.exp() + m * m - 1.0 - lv);
            prop_assert!((kl - want).abs() <= 1e-5 * want.abs().max(1.0), "{kl} vs {want}");
            if m.abs() > 1e-3 || lv.abs() > 1e-3 {
                prop_assert!(kl > 0.0);
            }
        }

        /// The Bernoulli NLL equals the textbook `-(x ln p + (1 - x) ln(1 - p))`, and stays
        /// finite for large logits.
        #[test]
        fn bernoulli_nll_is_binary_cross_entropy(l in -30.0f32..30.0, x in 0.0f32..1.0) {
            let got = bernoulli_nll(t(vec![l], 1), t(vec![x], 1)).into_scalar::<f32>();
            let p = 1.0 / (1.0 + (-(l as f64)).exp());
            let want = -(x as f64 * p.ln() + (1.0 - x as f64) * (1.0 - p).ln());
            prop_assert!(got.is_finite());
            if want.is_finite() {
                prop_assert!((got as f64 - want).abs() <= 1e-4 * want.abs().max(1.0), "{got} vs {want}");
            }
        }
    }

    #[test]
    fn gaussian_terms_match_their_closed_forms() {
        // One example, two features: 0.5 (1^2 + 2^2) + ln(2 pi) = 2.5 + 1.837877.
        let nll = gaussian_nll(t(vec![1.0, 2.0], 2), t(vec![0.0, 0.0], 2)).into_scalar::<f32>();
        assert!((nll - (2.5 + 1.837_877)).abs() < 1e-5, "{nll}");
        // log N(z = 1; 0, e^0) = -0.5 (ln 2 pi + 1) = -1.418939 per unit.
        let ld = gaussian_log_density(t(vec![1.0], 1), t(vec![0.0], 1), t(vec![0.0], 1));
        let ld = ld.into_scalar::<f32>();
        assert!((ld + 1.418_939).abs() < 1e-5, "{ld}");
        // With variance e^2 and mean 1 at z = 3: -0.5 (ln 2 pi + 2 + 4 / e^2).
        let ld = gaussian_log_density(t(vec![3.0], 1), t(vec![1.0], 1), t(vec![2.0], 1));
        let want = -0.5 * (1.837_877 + 2.0 + 4.0 / 2.0f32.exp());
        assert!((ld.into_scalar::<f32>() - want).abs() < 1e-5);
    }

    #[test]
    fn rows_are_per_example() {
        let x = t(vec![0.0, 1.0, 1.0, 1.0], 2);
        let rows = bernoulli_nll_rows(t(vec![0.0; 4], 2), x.clone());
        assert_eq!(rows.dims(), [2]);
        let kl = gaussian_kl_rows(t(vec![1.0, 1.0, 3.0, 3.0], 2), t(vec![0.0; 4], 2));
        let kl = strata_tensor::convert::to_vec(kl);
        assert_eq!(kl, vec![1.0, 9.0]);
    }

    #[test]
    fn the_reductions_sum_over_units_and_average_over_the_batch() {
        // Two examples of two units: KL per example 2 * 0.5 * m^2 with m = 1 and m = 3.
        let kl =
            gaussian_kl(t(vec![1.0, 1.0, 3.0, 3.0], 2), t(vec![0.0; 4], 2)).into_scalar::<f32>();
        assert!((kl - (1.0 + 9.0) / 2.0).abs() < 1e-6, "{kl}");
    }
}
