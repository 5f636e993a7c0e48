//! What an autoencoder run measures: reconstruction error beside the training mean image and
//! PCA with as many components, the negative ELBO, the importance-weighted bound and the
//! active units of a VAE, the nearest-neighbour accuracy of the codes against PCA codes, the
//! AUROC and average precision of one-class anomaly scores against PCA's, and the PSNR of
//! denoising.

use burn::tensor::{Device, Tensor};
use serde_json::{Value, json};
use strata_arch::{Autoencoder, Likelihood};
use strata_data::{Corruption, Dataset, Pca};
use strata_loss::{gaussian_kl_rows, gaussian_log_density};
use strata_tensor::convert::to_vec;
use strata_tensor::seed_device;

use super::get;
use super::objective::{EVAL_NOISE_SEED, Weights, loss_rows, matrix, nll_rows, rows};
use super::run::AutoencoderRun;
use crate::error::Result;

/// Examples per batch when scoring.
const EVAL_BATCH: usize = 256;

/// One pass of a model over a data set (evaluation mode).
pub(crate) struct Pass {
    /// Mean loss at the run's weights, one posterior sample per example.
    pub loss: f64,
    /// Squared error per value of the reconstruction from the posterior mean.
    pub mse: f64,
    /// Mean negative log-likelihood of the input under that reconstruction (nats).
    pub nll: f64,
    /// Mean negative ELBO, one posterior sample per example (VAE; else NaN).
    pub neg_elbo: f64,
    /// Mean `sum |code|` per example.
    pub code_l1: f64,
    /// Each example's anomaly score: the squared error of its reconstruction from the
    /// posterior mean, summed over its values (the reconstruction error; PCA's score alike).
    pub scores: Vec<f64>,
    /// Each example's negative log-likelihood under that reconstruction, plus the KL term for
    /// a VAE: a likelihood score, which also grows with the image's own entropy (grey pixels).
    pub nll_scores: Vec<f64>,
    /// The posterior means, `[n, d_latent]`.
    pub codes: Vec<f32>,
    /// The reconstructions from the posterior mean (expected values), `[n, features]`.
    pub recon: Vec<f32>,
}

/// Runs `model` over `data` (inputs corrupted by `noise` at a fixed seed, when given).
pub(crate) fn pass(
    model: &Autoencoder,
    data: &Dataset,
    device: &Device,
    noise: Option<Corruption>,
    weights: Weights,
    n_classes: usize,
) -> Pass {
    let width = data.n_features;
    let all: Vec<usize> = (0..data.len()).collect();
    let (mut loss, mut se, mut nll, mut elbo, mut l1) = (0.0f64, 0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let (mut scores, mut nll_scores) = (Vec::new(), Vec::new());
    let (mut codes, mut recon) = (Vec::new(), Vec::new());
    for (b, chunk) in all.chunks(EVAL_BATCH).enumerate() {
        let (x, condition) = rows(data, chunk, n_classes, device);
        let input = match noise {
            Some(n) => {
                let mut noisy = x.clone();
                let clip = model.likelihood() == Likelihood::Bernoulli;
                n.apply(&mut noisy, width, EVAL_NOISE_SEED + b as u64, clip);
                noisy
            }
            None => x.clone(),
        };
        let x = matrix(x, width, device);
        let input = matrix(input, width, device);
        let (mean, log_var) = model.encode(input, condition.clone());
        let outputs = model.decode(mean.clone(), condition.clone());
        let nll_rows_mean = nll_rows(model.likelihood(), outputs.clone(), x.clone());
        let mut score = nll_rows_mean.clone();
        if model.variational {
            score = score + gaussian_kl_rows(mean.clone(), log_var.clone());
        }
        let expected = model.expected(outputs.clone());
        let row_se = (expected.clone() - x.clone())
            .powf_scalar(2.0)
            .sum_dim(1)
            .squeeze_dim::<1>(1);
        let row_se = to_vec(row_se);
        se += row_se.iter().map(|v| *v as f64).sum::<f64>();
        scores.extend(row_se.into_iter().map(f64::from));
        nll += to_vec(nll_rows_mean.sum())[0] as f64;
        l1 += to_vec(mean.clone().abs().sum())[0] as f64;
        nll_scores.extend(to_vec(score).into_iter().map(f64::from));
        codes.extend(to_vec(mean.clone().flatten::<1>(0, 1)));
        recon.extend(to_vec(expected.flatten::<1>(0, 1)));
        // A plain autoencoder's code is its mean: its outputs are those already decoded.
        let sampled = if model.variational {
            model.decode(model.sample_code(mean.clone(), log_var.clone()), condition)
        } else {
            outputs
        };
        let rows_loss = loss_rows(
            model,
            sampled.clone(),
            x.clone(),
            mean.clone(),
            log_var.clone(),
            weights,
        );
        loss += to_vec(rows_loss.sum())[0] as f64;
        if model.variational {
            let e = nll_rows(model.likelihood(), sampled, x) + gaussian_kl_rows(mean, log_var);
            elbo += to_vec(e.sum())[0] as f64;
        }
    }
    let n = data.len().max(1) as f64;
    Pass {
        loss: loss / n,
        mse: se / (n * width.max(1) as f64),
        nll: nll / n,
        neg_elbo: if model.variational {
            elbo / n
        } else {
            f64::NAN
        },
        code_l1: l1 / n,
        scores,
        nll_scores,
        codes,
        recon,
    }
}

/// The baseline every autoencoder must beat: each value predicted by its mean over the
/// training rows. Returns its squared error per value and its negative log-likelihood (nats
/// per example) on `data` under the run's likelihood.
fn mean_baseline(train: &Dataset, data: &Dataset, likelihood: Likelihood) -> (f64, f64) {
    let d = train.n_features.max(1);
    let mut mean = vec![0.0f64; d];
    for row in train.features.chunks(d) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += *v as f64;
        }
    }
    let n_train = (train.features.len() / d).max(1) as f64;
    mean.iter_mut().for_each(|m| *m /= n_train);
    let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
    let (mut se, mut nll) = (0.0f64, 0.0f64);
    for row in data.features.chunks(d) {
        for (&m, &v) in mean.iter().zip(row) {
            let v = v as f64;
            se += (m - v).powi(2);
            nll += match likelihood {
                Likelihood::Bernoulli => {
                    let p = m.clamp(1e-6, 1.0 - 1e-6);
                    -(v * p.ln() + (1.0 - v) * (1.0 - p).ln())
                }
                Likelihood::Gaussian => 0.5 * (m - v).powi(2) + half_log_2pi,
            };
        }
    }
    let n = (data.features.len() / d).max(1) as f64;
    (se / (n * d as f64), nll / n)
}

/// The share of `test` rows whose nearest `train` row (squared Euclidean distance between
/// codes of `d` values) has the same label.
pub(crate) fn nearest_neighbour_accuracy(
    train: (&[f32], &[usize]),
    test: (&[f32], &[usize]),
    d: usize,
    device: &Device,
) -> f64 {
    let (train_codes, train_labels) = train;
    let (test_codes, test_labels) = test;
    let n_train = train_labels.len();
    let reference = matrix(train_codes.to_vec(), d, device);
    let norms = reference
        .clone()
        .powf_scalar(2.0)
        .sum_dim(1)
        .reshape([1, n_train]);
    let reference = reference.transpose();
    let mut hits = 0usize;
    for (c, chunk) in test_codes.chunks(1024 * d).enumerate() {
        let q = matrix(chunk.to_vec(), d, device);
        // |q - r|^2 = |q|^2 - 2 q.r + |r|^2; |q|^2 does not change the nearest row.
        let dist = q.matmul(reference.clone()) * -2.0 + norms.clone();
        let nearest: Vec<i64> = dist
            .argmin(1)
            .into_data()
            .try_into_vec_as::<i64>()
            .unwrap_or_default();
        for (r, j) in nearest.iter().enumerate() {
            let i = c * 1024 + r;
            if train_labels.get(*j as usize) == test_labels.get(i) {
                hits += 1;
            }
        }
    }
    hits as f64 / test_labels.len().max(1) as f64
}

/// The importance-weighted bound of Burda et al. (2016) on a VAE's negative log-likelihood,
/// beside the ELBO from the same samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IwBound {
    /// Samples per example.
    pub k: usize,
    /// Examples.
    pub n: usize,
    /// `-mean_x log((1/k) sum_i w_i)`, `w = p(x|z) p(z) / q(z|x)`: nats per example, an
    /// upper bound on `-log p(x)` that tightens as `k` grows.
    pub iw_nats: f64,
    /// `-mean_x (1/k) sum_i log w_i`: the negative ELBO from the same samples (never below
    /// `iw_nats`).
    pub neg_elbo_nats: f64,
}

/// [`IwBound`] of `model` on the first `n` rows of `data` with `k` posterior samples each
/// (drawn from `device`'s seeded generator).
///
/// # Errors
/// A model that is not variational, or `k` or `n` zero.
pub fn iw_bound(
    model: &Autoencoder,
    data: &Dataset,
    k: usize,
    n: usize,
    device: &Device,
) -> Result<IwBound> {
    let n = n.min(data.len());
    if !model.variational || k == 0 || n == 0 {
        return Err(crate::error::Error::Usage(
            "the importance-weighted bound needs a VAE, k >= 1 samples and some examples".into(),
        ));
    }
    let n_classes = model.n_classes;
    let width = data.n_features;
    // Examples per batch such that a batch decodes at most 8192 codes.
    let per = (8192 / k).max(1);
    let (mut iw, mut elbo) = (0.0f64, 0.0f64);
    let all: Vec<usize> = (0..n).collect();
    for chunk in all.chunks(per) {
        let b = chunk.len();
        let (x, condition) = rows(data, chunk, n_classes, device);
        let x = matrix(x, width, device);
        let (mean, log_var) = model.encode(x.clone(), condition.clone());
        // Each example repeated k times, consecutively.
        let rep = |t: Tensor<2>| {
            let [_, c] = t.dims();
            t.unsqueeze_dim::<3>(1).repeat_dim(1, k).reshape([b * k, c])
        };
        let (mean, log_var, x) = (rep(mean), rep(log_var), rep(x));
        let z = model.sample_code(mean.clone(), log_var.clone());
        let outputs = model.decode(z.clone(), condition.map(rep));
        let log_w = -nll_rows(model.likelihood(), outputs, x)
            + gaussian_log_density(z.clone(), z.zeros_like(), z.zeros_like())
            - gaussian_log_density(z, mean, log_var);
        let log_w = log_w.reshape([b, k]);
        let elbo_rows = log_w.clone().mean_dim(1);
        let top = log_w.clone().max_dim(1);
        let lme = ((log_w - top.clone()).exp().mean_dim(1)).log() + top;
        iw -= to_vec(lme.sum())[0] as f64;
        elbo -= to_vec(elbo_rows.sum())[0] as f64;
    }
    Ok(IwBound {
        k,
        n,
        iw_nats: iw / n as f64,
        neg_elbo_nats: elbo / n as f64,
    })
}

/// Active units (Burda et al. 2016): code units whose posterior mean varies across the
/// examples with variance above 0.01.
fn active_units(codes: &[f32], d: usize) -> usize {
    let n = (codes.len() / d.max(1)).max(1) as f64;
    (0..d)
        .filter(|&u| {
            let m = codes
                .iter()
                .skip(u)
                .step_by(d)
                .map(|v| *v as f64)
                .sum::<f64>()
                / n;
            let var = codes
                .iter()
                .skip(u)
                .step_by(d)
                .map(|v| (*v as f64 - m).powi(2))
                .sum::<f64>()
                / n;
            var > 0.01
        })
        .count()
}

/// The mean over images of `10 log10(1 / mse)` (peak value 1), in dB.
fn psnr(a: &[f32], b: &[f32], width: usize) -> f64 {
    let per: Vec<f64> = a
        .chunks(width.max(1))
        .zip(b.chunks(width.max(1)))
        .map(|(x, y)| {
            let mse = x
                .iter()
                .zip(y)
                .map(|(p, q)| ((p - q) as f64).powi(2))
                .sum::<f64>()
                / width.max(1) as f64;
            10.0 * (1.0 / mse.max(1e-10)).log10()
        })
        .collect();
    per.iter().sum::<f64>() / per.len().max(1) as f64
}

/// Samples per example and examples of the importance-weighted bound a run reports.
pub(crate) const IW_SAMPLES: usize = 100;
/// See [`IW_SAMPLES`].
pub(crate) const IW_EXAMPLES: usize = 500;

/// The measurements of a finished run against its baselines.
pub(crate) struct Report<'a> {
    run: &'a AutoencoderRun,
    train: &'a Dataset,
    pca: &'a Pca,
    normal: Option<usize>,
}

impl<'a> Report<'a> {
    /// A report of `run` with its (preprocessed) training rows and PCA baseline; `normal` is
    /// the normal class of a one-class run.
    pub(crate) fn new(
        run: &'a AutoencoderRun,
        train: &'a Dataset,
        pca: &'a Pca,
        normal: Option<usize>,
    ) -> Self {
        Self {
            run,
            train,
            pca,
            normal,
        }
    }

    /// The metrics on `data` (preprocessed); `full` adds the nearest-neighbour accuracy, the
    /// anomaly detection scores, the importance-weighted bound, the active units and PSNR.
    pub(crate) fn metrics(&self, data: &Dataset, full: bool) -> Result<Value> {
        let (model, device, config) = (&self.run.model, &self.run.device, &self.run.config);
        let a = &config.autoencoder;
        let weights = Weights {
            beta: a.beta,
            sparsity: a.sparsity,
        };
        let likelihood = model.likelihood();
        // The passes draw posterior samples: seeded, so the figures repeat.
        seed_device(device, config.fit.seed);
        let p = pass(model, data, device, None, weights, model.n_classes);
        let (base_mse, base_nll) = mean_baseline(self.train, data, likelihood);
        let mut m = json!({
            "likelihood": match likelihood {
                Likelihood::Bernoulli => "bernoulli",
                Likelihood::Gaussian => "gaussian",
            },
            "mse": p.mse,
            "nll_nats": p.nll,
            "loss": p.loss,
            "code_l1": p.code_l1,
            "baseline_mse": base_mse,
            "baseline_nll_nats": base_nll,
            "baseline": "the training mean",
            "pca_mse": self.pca.reconstruction_mse(data)?,
            "pca_components": self.pca.k,
            "n_samples": data.len(),
        });
        if model.variational {
            m["neg_elbo_nats"] = json!(p.neg_elbo);
            m["active_units"] = json!(active_units(&p.codes, model.d_latent));
        }
        if !full {
            return Ok(m);
        }
        let labels = data.labels();
        if let (Some(k), Some(labels)) = (self.normal, labels) {
            let anomalous: Vec<bool> = labels.iter().map(|&l| l != k).collect();
            if anomalous.iter().any(|a| *a) && anomalous.iter().any(|a| !*a) {
                let pca_scores = self.pca.row_errors(data)?;
                m["anomaly"] = json!({
                    "normal_class": data.class_names().and_then(|n| n.get(k)).cloned().unwrap_or_else(|| k.to_string()),
                    "n_anomalous": anomalous.iter().filter(|a| **a).count(),
                    "n_normal": anomalous.iter().filter(|a| !**a).count(),
                    "auroc": strata_metrics::roc_auc(&anomalous, &p.scores)?,
                    "average_precision": strata_metrics::average_precision(&anomalous, &p.scores)?,
                    "pca_auroc": strata_metrics::roc_auc(&anomalous, &pca_scores)?,
                    "pca_average_precision": strata_metrics::average_precision(&anomalous, &pca_scores)?,
                    "nll_auroc": strata_metrics::roc_auc(&anomalous, &p.nll_scores)?,
                    "nll_average_precision": strata_metrics::average_precision(&anomalous, &p.nll_scores)?,
                });
            }
        }
        if let (None, Some(test_labels), Some(train_labels)) =
            (self.normal, labels, self.train.labels())
        {
            let d = model.d_latent;
            let train_pass = pass(model, self.train, device, None, weights, model.n_classes);
            let pca_d = self.pca.k;
            m["knn"] = json!({
                "neighbours": 1,
                "accuracy": nearest_neighbour_accuracy((&train_pass.codes, train_labels), (&p.codes, test_labels), d, device),
                "pca_accuracy": nearest_neighbour_accuracy(
                    (&self.pca.transform(self.train)?, train_labels),
                    (&self.pca.transform(data)?, test_labels),
                    pca_d,
                    device,
                ),
            });
        }
        if let Some(noise) = a.noise
            && likelihood == Likelihood::Bernoulli
        {
            let mut noisy = data.features.clone();
            let width = data.n_features;
            for (b, chunk) in noisy.chunks_mut(EVAL_BATCH * width).enumerate() {
                noise.apply(chunk, width, EVAL_NOISE_SEED + b as u64, true);
            }
            let denoised = pass(model, data, device, Some(noise), weights, model.n_classes);
            m["denoising"] = json!({
                "noise": noise.to_string(),
                "psnr_noisy_db": psnr(&noisy, &data.features, width),
                "psnr_denoised_db": psnr(&denoised.recon, &data.features, width),
                "mse_denoised": denoised.mse,
            });
        }
        if model.variational {
            seed_device(device, config.fit.seed);
            let iw = iw_bound(model, data, IW_SAMPLES, IW_EXAMPLES, device)?;
            m["iw_bound"] = json!({
                "k": iw.k,
                "n_samples": iw.n,
                "iw_nats": iw.iw_nats,
                "neg_elbo_nats": iw.neg_elbo_nats,
            });
        }
        Ok(m)
    }
}

/// One line of test metrics.
pub(crate) fn summary(m: &Value) -> String {
    let mut s = format!(
        "mse {:.5}  nll {:.2} nats",
        get(m, "mse"),
        get(m, "nll_nats")
    );
    if let Some(e) = m.get("neg_elbo_nats").and_then(Value::as_f64) {
        s += &format!("  -ELBO {e:.2} nats");
    }
    if let Some(iw) = m.get("iw_bound") {
        s += &format!("  IW-{} {:.2} nats", iw["k"], get(iw, "iw_nats"));
    }
    s += &format!(
        "  (PCA-{}: mse {:.5}; mean: mse {:.5}, nll {:.2})",
        m["pca_components"],
        get(m, "pca_mse"),
        get(m, "baseline_mse"),
        get(m, "baseline_nll_nats")
    );
    if let Some(k) = m.get("knn") {
        s += &format!(
            "  1-NN acc {:.4} (PCA {:.4})",
            get(k, "accuracy"),
            get(k, "pca_accuracy")
        );
    }
    if let Some(a) = m.get("anomaly") {
        s += &format!(
            "  AUROC {:.4} AP {:.4} (PCA {:.4}, {:.4})",
            get(a, "auroc"),
            get(a, "average_precision"),
            get(a, "pca_auroc"),
            get(a, "pca_average_precision")
        );
    }
    if let Some(d) = m.get("denoising") {
        s += &format!(
            "  PSNR {:.2} -> {:.2} dB",
            get(d, "psnr_noisy_db"),
            get(d, "psnr_denoised_db")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use strata_arch::AutoencoderConfig;
    use strata_data::Targets;

    #[test]
    fn the_nearest_neighbour_is_found() {
        let d = Device::flex();
        let train = [0.0f32, 0.0, 10.0, 10.0, -5.0, 3.0];
        let test = [9.0f32, 9.5, 0.1, -0.2, -4.0, 2.0, 8.0, 8.0];
        let acc = nearest_neighbour_accuracy((&train, &[0, 1, 2]), (&test, &[1, 0, 2, 0]), 2, &d);
        assert_eq!(acc, 0.75);
    }

    #[test]
    fn psnr_and_active_units() {
        // An error of 0.1 everywhere: 10 log10(1 / 0.01) = 20 dB.
        assert!((psnr(&[0.1; 8], &[0.0; 8], 4) - 20.0).abs() < 1e-5);
        // Unit 0 varies (variance 1), unit 1 barely (variance 0.0001).
        let codes = [1.0f32, 0.01, -1.0, -0.01, 1.0, 0.01, -1.0, -0.01];
        assert_eq!(active_units(&codes, 2), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(6))]
        /// The importance-weighted bound is never looser than the ELBO from the same samples,
        /// and with one sample they agree.
        #[test]
        fn the_iw_bound_is_tighter(seed in 0u64..1000, k in 2usize..20) {
            let d = Device::flex();
            seed_device(&d, seed);
            let model = AutoencoderConfig::new(6)
                .with_d_latent(2)
                .with_d_hidden(vec![5])
                .with_variational(true)
                .init(&d)
                .unwrap();
            let x: Vec<f32> = (0..24).map(|i| ((i * 7 + seed as usize) % 5) as f32 / 4.0).collect();
            let data = Dataset::new("x", x, 6, Targets::Values(vec![0.0; 4]), None).unwrap();
            let b = iw_bound(&model, &data, k, 4, &d).unwrap();
            prop_assert!(b.iw_nats.is_finite() && b.neg_elbo_nats.is_finite());
            prop_assert!(b.iw_nats <= b.neg_elbo_nats + 1e-4, "{b:?}");
            let one = iw_bound(&model, &data, 1, 4, &d).unwrap();
            prop_assert!((one.iw_nats - one.neg_elbo_nats).abs() < 1e-4, "{one:?}");
        }
    }
}
