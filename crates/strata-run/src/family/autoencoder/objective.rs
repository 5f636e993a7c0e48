//! The training objective of an autoencoder: the input's negative log-likelihood under the
//! decoder's outputs (from a corrupted input for a denoising run), plus the KL term of a VAE
//! weighted by beta and the warm-up, plus the L1 penalty of a sparse code; nats per example.

use std::cell::Cell;

use burn::tensor::{Device, Tensor, TensorData};
use strata_arch::{Autoencoder, Likelihood};
use strata_data::{Corruption, Dataset};
use strata_loss::{bernoulli_nll_rows, gaussian_kl_rows, gaussian_nll_rows};
use strata_tensor::derive_seed;
use strata_train::Objective;

use super::measure::{Pass, pass};
use crate::config::RunConfig;

/// The weights of the loss's terms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Weights {
    /// The KL term's weight (1 for the ELBO).
    pub beta: f64,
    /// The L1 weight on the code.
    pub sparsity: f64,
}

/// The input's negative log-likelihood per example under the decoder's `outputs`.
pub(crate) fn nll_rows(likelihood: Likelihood, outputs: Tensor<2>, target: Tensor<2>) -> Tensor<1> {
    match likelihood {
        Likelihood::Bernoulli => bernoulli_nll_rows(outputs, target),
        Likelihood::Gaussian => gaussian_nll_rows(outputs, target),
    }
}

/// The loss of each example: NLL, plus `beta` KL (variational), plus `sparsity` L1 of the code.
pub(crate) fn loss_rows(
    model: &Autoencoder,
    outputs: Tensor<2>,
    clean: Tensor<2>,
    mean: Tensor<2>,
    log_var: Tensor<2>,
    w: Weights,
) -> Tensor<1> {
    let mut loss = nll_rows(model.likelihood(), outputs, clean);
    if model.variational {
        loss = loss + gaussian_kl_rows(mean.clone(), log_var) * w.beta;
    }
    if w.sparsity > 0.0 {
        loss = loss + mean.abs().sum_dim(1).squeeze_dim(1) * w.sparsity;
    }
    loss
}

/// Rows `indices` of `data`, as a tensor, and their one-hot classes when `n_classes > 0`.
pub(crate) fn rows(
    data: &Dataset,
    indices: &[usize],
    n_classes: usize,
    device: &Device,
) -> (Vec<f32>, Option<Tensor<2>>) {
    let mut x = Vec::with_capacity(indices.len() * data.n_features);
    for &i in indices {
        x.extend_from_slice(data.row(i));
    }
    let condition = (n_classes > 0).then(|| {
        let labels = data.labels().unwrap_or(&[]);
        // A row without a label gets no class (a zero row).
        let classes: Vec<usize> = indices
            .iter()
            .map(|&i| labels.get(i).copied().unwrap_or(usize::MAX))
            .collect();
        one_hot(&classes, n_classes, device)
    });
    (x, condition)
}

/// One-hot rows of `classes` among `k` (a class of `k` or more gives a zero row).
pub(crate) fn one_hot(classes: &[usize], k: usize, device: &Device) -> Tensor<2> {
    let mut hot = vec![0.0f32; classes.len() * k];
    for (r, &c) in classes.iter().enumerate() {
        if c < k {
            hot[r * k + c] = 1.0;
        }
    }
    Tensor::from_data(TensorData::new(hot, [classes.len(), k]), device)
}

/// A `[rows, width]` tensor of `values`.
pub(crate) fn matrix(values: Vec<f32>, width: usize, device: &Device) -> Tensor<2> {
    let n = values.len() / width.max(1);
    Tensor::from_data(TensorData::new(values, [n, width]), device)
}

/// The stream of seeds of the training corruption, apart from augmentation's.
const NOISE_STREAM: u64 = 4_000_000_000;

/// The fixed seed of the validation and test corruption.
pub(crate) const EVAL_NOISE_SEED: u64 = 0x0DAE;

/// What [`fit_objective`](strata_train::fit_objective) trains an autoencoder on.
pub(crate) struct Reconstruct<'a> {
    train: &'a Dataset,
    valid: &'a Dataset,
    device: Device,
    plain: Device,
    weights: Weights,
    warmup: usize,
    noise: Option<Corruption>,
    seed: u64,
    n_classes: usize,
    epoch: Cell<usize>,
    step: Cell<u64>,
}

impl<'a> Reconstruct<'a> {
    /// The objective of `config` on `train`, validated on `valid`.
    pub(crate) fn new(
        train: &'a Dataset,
        valid: &'a Dataset,
        device: Device,
        plain: Device,
        config: &RunConfig,
        n_classes: usize,
    ) -> Self {
        let a = &config.autoencoder;
        Self {
            train,
            valid,
            device,
            plain,
            weights: Weights {
                beta: a.beta,
                sparsity: a.sparsity,
            },
            warmup: a.kl_warmup_epochs,
            noise: a.noise,
            seed: config.fit.seed,
            n_classes,
            epoch: Cell::new(0),
            step: Cell::new(0),
        }
    }

    /// The KL weight in the current epoch: beta, ramped up linearly over the warm-up.
    fn beta_now(&self) -> f64 {
        if self.warmup == 0 {
            return self.weights.beta;
        }
        let ramp = ((self.epoch.get() + 1) as f64 / self.warmup as f64).min(1.0);
        self.weights.beta * ramp
    }
}

impl Objective<Autoencoder> for Reconstruct<'_> {
    fn n_train(&self) -> usize {
        self.train.len()
    }

    fn begin_epoch(&self, epoch: usize) {
        self.epoch.set(epoch);
        self.step.set(0);
    }

    fn batch_loss(
        &self,
        model: &Autoencoder,
        indices: &[usize],
    ) -> strata_train::Result<Tensor<1>> {
        let width = self.train.n_features;
        let (clean, condition) = rows(self.train, indices, self.n_classes, &self.device);
        let input = match &self.noise {
            Some(noise) => {
                let step = self.step.get();
                self.step.set(step + 1);
                let stream = NOISE_STREAM + self.epoch.get() as u64 * 10_000_000 + step;
                let mut noisy = clean.clone();
                noise.apply(
                    &mut noisy,
                    width,
                    derive_seed(self.seed, stream),
                    model.likelihood() == Likelihood::Bernoulli,
                );
                noisy
            }
            None => clean.clone(),
        };
        let clean = matrix(clean, width, &self.device);
        let input = matrix(input, width, &self.device);
        let (outputs, mean, log_var) = model.forward(input, condition);
        let weights = Weights {
            beta: self.beta_now(),
            ..self.weights
        };
        Ok(loss_rows(model, outputs, clean, mean, log_var, weights).mean())
    }

    /// The validation loss at full weights (no warm-up; the noise at a fixed seed) and the
    /// reconstruction's squared error per value.
    fn validate(&self, model: &Autoencoder) -> strata_train::Result<(f64, f64)> {
        let p: Pass = pass(
            model,
            self.valid,
            &self.plain,
            self.noise,
            self.weights,
            self.n_classes,
        );
        Ok((p.loss, p.mse))
    }

    fn metric_name(&self) -> &str {
        "mse"
    }

    fn lower_metric_is_better(&self) -> bool {
        true
    }
}
