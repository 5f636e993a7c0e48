//! Supervised learning on rows of a [`Dataset`]: batches with class-balanced sampling,
//! augmentation and mixup, validation by [`evaluate`]; the objective behind [`fit`].

use std::cell::Cell;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use strata_data::{
    Augment, BalancedSampler, Batcher, Dataset, Sampling, Task, beta_symmetric, epoch_order,
};
use strata_loss::Loss;
use strata_tensor::derive_seed;

use crate::error::{Error, Result};
use crate::evaluate::evaluate;
use crate::objective::{Objective, Run};
use crate::runner::{FitOutcome, fit_objective};

/// Everything [`fit`] needs besides the model and the data.
pub struct Fit<'a, F> {
    /// Maps a batch of flat inputs to outputs.
    pub forward: F,
    /// The training loss.
    pub loss: &'a dyn Loss,
    /// Augmentation of the training batches (image steps, mixup); `None` for none. Never
    /// applied to validation data.
    pub augment: Option<&'a Augment>,
    /// Optimizer, schedule, settings, device, checkpoints.
    pub run: Run<'a>,
}

/// Supervised learning on rows of a [`Dataset`]: the objective behind [`fit`].
struct Supervised<'a, F> {
    train: &'a Dataset,
    valid: &'a Dataset,
    forward: &'a F,
    loss: &'a dyn Loss,
    batcher: Batcher,
    plain: Device,
    sampler: Option<BalancedSampler>,
    eval_batch: usize,
    augment: Option<&'a Augment>,
    seed: u64,
    /// The next batch's number: epoch * 10^7 + batch, for augmentation seeds.
    step: Cell<u64>,
}

impl<M, F> Objective<M> for Supervised<'_, F>
where
    M: Module,
    F: Fn(&M, Tensor<2>) -> Tensor<2>,
{
    fn n_train(&self) -> usize {
        self.train.len()
    }

    fn epoch_order(&self, seed: u64, epoch: usize) -> Result<Vec<usize>> {
        Ok(match &self.sampler {
            Some(s) => s.epoch(seed, epoch),
            None => epoch_order(self.train.len(), seed, epoch),
        })
    }

    fn begin_epoch(&self, epoch: usize) {
        self.step.set(epoch as u64 * 10_000_000);
    }

    fn batch_loss(&self, model: &M, indices: &[usize]) -> Result<Tensor<1>> {
        let Some(augment) = self.augment else {
            let batch = self.batcher.batch(self.train, indices);
            let outputs = (self.forward)(model, batch.inputs);
            return Ok(self.loss.forward(outputs, &batch.targets)?);
        };
        let step = self.step.get();
        self.step.set(step + 1);
        let seed = derive_seed(self.seed, 3_000_000_000 + step);
        let batch = self
            .batcher
            .batch_augmented(self.train, indices, augment, seed)?;
        let Some(alpha) = augment.mixup else {
            let outputs = (self.forward)(model, batch.inputs);
            return Ok(self.loss.forward(outputs, &batch.targets)?);
        };
        // Mixup: each sample mixed with a partner (the batch rotated by a seeded offset) by a
        // Beta(alpha, alpha) weight; the loss mixes the two targets' losses alike.
        let lam = beta_symmetric(alpha, seed);
        let offset = if indices.len() > 1 {
            1 + (seed as usize) % (indices.len() - 1)
        } else {
            0
        };
        let partners: Vec<usize> = (0..indices.len())
            .map(|i| indices[(i + offset) % indices.len()])
            .collect();
        let other =
            self.batcher
                .batch_augmented(self.train, &partners, augment, seed ^ 0x5DEE_CE66)?;
        let mixed = batch.inputs * lam + other.inputs * (1.0 - lam);
        let outputs = (self.forward)(model, mixed);
        let a = self.loss.forward(outputs.clone(), &batch.targets)?;
        let b = self.loss.forward(outputs, &other.targets)?;
        Ok(a * lam + b * (1.0 - lam))
    }

    fn validate(&self, model: &M) -> Result<(f64, f64)> {
        let ev = evaluate(
            model,
            self.forward,
            self.loss,
            self.valid,
            self.eval_batch,
            &self.plain,
        )?;
        Ok((ev.loss, ev.report.headline()))
    }

    fn metric_name(&self) -> &str {
        if self.train.task() == Task::Regression {
            "rmse"
        } else {
            "acc"
        }
    }

    fn lower_metric_is_better(&self) -> bool {
        self.train.task() == Task::Regression
    }
}

/// Trains `model` on `train`, validating on `valid` after each epoch.
///
/// Each epoch's data order and dropout masks are derived from `(seed, epoch)` alone, so a run
/// resumed from a checkpoint repeats the uninterrupted run on the same backend.
///
/// # Errors
/// Invalid settings, a loss that rejects the data, I/O errors while checkpointing, and
/// [`Error::Diverged`] when the loss becomes NaN or infinite.
pub fn fit<M, F>(
    model: M,
    train: &Dataset,
    valid: &Dataset,
    f: &Fit<'_, F>,
) -> Result<FitOutcome<M>>
where
    M: Module,
    F: Fn(&M, Tensor<2>) -> Tensor<2>,
{
    if train.is_empty() || valid.is_empty() {
        return Err(Error::Invalid(format!(
            "training needs non-empty train and validation sets (got {} and {})",
            train.len(),
            valid.len()
        )));
    }
    let run = &f.run;
    let sampler = match (run.config.sampling, train.labels()) {
        (Sampling::Balanced, Some(labels)) => Some(BalancedSampler::new(labels)?),
        (Sampling::Balanced, None) => {
            return Err(Error::Invalid(
                "balanced sampling needs class labels".into(),
            ));
        }
        _ => None,
    };
    let objective = Supervised {
        train,
        valid,
        forward: &f.forward,
        loss: f.loss,
        batcher: Batcher::new(run.device.clone()),
        plain: run.device.clone().without_autodiff(),
        sampler,
        eval_batch: run.config.batch_size.max(256),
        augment: f.augment.filter(|a| !a.is_empty()),
        seed: run.config.seed,
        step: Cell::new(0),
    };
    fit_objective(model, &objective, &run.reborrow())
}
