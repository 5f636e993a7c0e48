//! Supervised learning on rows of a [`Dataset`]: batches with class-balanced sampling,
//! augmentation and mixup, validation by [`evaluate`]; the objective behind [`fit`].

use std::cell::Cell;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use strata_data::{
    Augment, BalancedSampler, Batcher, Dataset, Sampling, Task, beta_symmetric, epoch_order,
};
use strata_loss::Loss;
use strata_tensor::TargetBatch;
use strata_tensor::derive_seed;

use crate::distributed::Collective;
use crate::error::{Error, Result};
use crate::evaluate::evaluate_shared;
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

/// A training loss computed from the model, a batch's inputs and its targets (see
/// [`fit_with_loss`]).
type TrainLoss<'a, M> = &'a dyn Fn(&M, Tensor<2>, &TargetBatch) -> Result<Tensor<1>>;

/// Figures of the model in evaluation mode tracked after each epoch (see [`fit_tracked`]).
type Track<'a, M> = &'a dyn Fn(&M) -> Result<Vec<(String, f64)>>;

/// Supervised learning on rows of a [`Dataset`]: the objective behind [`fit`].
struct Supervised<'a, M, F> {
    train: &'a Dataset,
    valid: &'a Dataset,
    forward: &'a F,
    loss: &'a dyn Loss,
    /// In place of `loss(forward(inputs))` on training batches.
    train_loss: Option<TrainLoss<'a, M>>,
    /// Figures tracked after each epoch's validation.
    track: Option<Track<'a, M>>,
    batcher: Batcher,
    plain: Device,
    sampler: Option<BalancedSampler>,
    eval_batch: usize,
    augment: Option<&'a Augment>,
    seed: u64,
    /// The next batch's number: epoch * 10^7 + batch, for augmentation seeds.
    step: Cell<u64>,
}

impl<M, F> Supervised<'_, M, F>
where
    M: Module,
    F: Fn(&M, Tensor<2>) -> Tensor<2>,
{
    /// The validation loss and headline metric, shared among the ranks when given.
    fn validation(&self, model: &M, collective: Option<&dyn Collective>) -> Result<(f64, f64)> {
        let ev = evaluate_shared(
            model,
            self.forward,
            self.loss,
            self.valid,
            self.eval_batch,
            &self.plain,
            collective,
        )?;
        Ok((ev.loss, ev.report.headline()))
    }
}

impl<M, F> Objective<M> for Supervised<'_, M, F>
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
            if let Some(train_loss) = self.train_loss {
                return train_loss(model, batch.inputs, &batch.targets);
            }
            let outputs = (self.forward)(model, batch.inputs);
            return Ok(self.loss.forward(outputs, &batch.targets)?);
        };
        let step = self.step.get();
        self.step.set(step + 1);
        let seed = derive_seed(self.seed, 3_000_000_000 + step);
        let batch = self
            .batcher
            .batch_augmented(self.train, indices, augment, seed)?;
        if let Some(train_loss) = self.train_loss {
            // Mixup is refused with a loss of its own (fit_with_loss).
            return train_loss(model, batch.inputs, &batch.targets);
        }
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
        self.validation(model, None)
    }

    fn validate_shared(&self, model: &M, collective: &dyn Collective) -> Result<(f64, f64)> {
        self.validation(model, Some(collective))
    }

    fn tracked(&self, model: &M) -> Result<Vec<(String, f64)>> {
        self.track.map_or(Ok(Vec::new()), |t| t(model))
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
    fit_inner(model, train, valid, f, None, None)
}

/// [`fit`] with a training loss of the model's own: `train_loss(model, inputs, targets)`
/// replaces `f.loss(forward(inputs), targets)` on every training batch (augmented as `f`
/// says), for a model whose loss needs more than its outputs (a capsule network rebuilds its
/// input from the true class's capsule). Validation, and everything else, is `fit`'s, on
/// `f.forward` and `f.loss`.
///
/// # Errors
/// As [`fit`]; mixup in `f.augment` (it mixes two batches' targets, which `train_loss`
/// cannot see).
pub fn fit_with_loss<M, F, L>(
    model: M,
    train: &Dataset,
    valid: &Dataset,
    f: &Fit<'_, F>,
    train_loss: L,
) -> Result<FitOutcome<M>>
where
    M: Module,
    F: Fn(&M, Tensor<2>) -> Tensor<2>,
    L: Fn(&M, Tensor<2>, &TargetBatch) -> Result<Tensor<1>>,
{
    fit_tracked(model, train, valid, f, train_loss, |_: &M| Ok(Vec::new()))
}

/// [`fit_with_loss`], and after each epoch's validation the named figures of
/// `track(model in evaluation mode)` join the epoch's record
/// ([`EpochRecord::tracked`](crate::EpochRecord): a `valid_NAME` column of `history.csv` and
/// the progress line); they do not steer early stopping. `strata train --adversarial` tracks
/// the robust validation accuracy under its attack so.
///
/// # Errors
/// As [`fit_with_loss`], and `track`'s errors.
pub fn fit_tracked<M, F, L, T>(
    model: M,
    train: &Dataset,
    valid: &Dataset,
    f: &Fit<'_, F>,
    train_loss: L,
    track: T,
) -> Result<FitOutcome<M>>
where
    M: Module,
    F: Fn(&M, Tensor<2>) -> Tensor<2>,
    L: Fn(&M, Tensor<2>, &TargetBatch) -> Result<Tensor<1>>,
    T: Fn(&M) -> Result<Vec<(String, f64)>>,
{
    if f.augment.is_some_and(|a| a.mixup.is_some()) {
        return Err(Error::Invalid(
            "mixup mixes two batches' targets, which a loss of the model's own cannot see".into(),
        ));
    }
    fit_inner(model, train, valid, f, Some(&train_loss), Some(&track))
}

fn fit_inner<M, F>(
    model: M,
    train: &Dataset,
    valid: &Dataset,
    f: &Fit<'_, F>,
    train_loss: Option<TrainLoss<'_, M>>,
    track: Option<Track<'_, M>>,
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
        train_loss,
        track,
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

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use burn::tensor::Device;
    use strata_arch::{Mlp, MlpConfig};
    use strata_data::Targets;
    use strata_loss::LossConfig;
    use strata_optim::{OptimizerConfig, ScheduleConfig};
    use strata_tensor::convert::to_vec;

    use super::*;
    use crate::config::FitConfig;

    fn two_classes() -> Dataset {
        let features: Vec<f32> = (0..40).map(|i| ((i * 7) % 13) as f32 / 13.0).collect();
        let labels = features
            .chunks(2)
            .map(|r| usize::from(r[0] > r[1]))
            .collect();
        Dataset::new(
            "toy",
            features,
            2,
            Targets::Classes {
                labels,
                names: vec!["a".into(), "b".into()],
            },
            None,
        )
        .unwrap()
    }

    #[test]
    fn fit_with_loss_trains_on_its_own_loss_and_refuses_mixup() {
        let _serial = crate::serial();
        let device = Device::flex().autodiff();
        device.seed(1);
        let data = two_classes();
        let (optimizer, schedule) = (OptimizerConfig::default(), ScheduleConfig::default());
        let config = FitConfig {
            epochs: 2,
            batch_size: 8,
            progress: false,
            early_stopping: None,
            ..FitConfig::default()
        };
        let loss = LossConfig::default().init(&device).unwrap();
        let model: Mlp = MlpConfig::new(2, 2).init(&device).unwrap();
        let before = to_vec(model.output.weight.val());
        let fit = Fit {
            forward: |m: &Mlp, x| m.forward(x),
            loss: loss.as_ref(),
            augment: None,
            run: Run::new(&optimizer, &schedule, &config, device.clone()),
        };
        // A training loss that is zero with zero gradients leaves the weights as they were,
        // and is called on every batch with the batch's inputs and targets.
        let calls = Cell::new(0);
        let out = fit_with_loss(model, &data, &data, &fit, |m: &Mlp, x, y| {
            calls.set(calls.get() + 1);
            assert!(matches!(y, TargetBatch::Classes(_)));
            Ok(m.forward(x).sum() * 0.0)
        })
        .unwrap();
        assert_eq!(calls.get(), 2 * 3, "3 batches of 8 in each of 2 epochs");
        assert_eq!(to_vec(out.model.output.weight.val()), before);
        // Validation is still fit's: the loss of the outputs, and an accuracy.
        assert!(out.history[0].valid_loss > 0.0);

        // Tracked figures, of the model in evaluation mode, join each epoch's record.
        let model: Mlp = MlpConfig::new(2, 2).init(&device).unwrap();
        let out = fit_tracked(
            model,
            &data,
            &data,
            &fit,
            |m: &Mlp, x, _: &TargetBatch| Ok(m.forward(x).sum() * 0.0),
            |m: &Mlp| {
                assert!(!m.output.weight.val().device().is_autodiff());
                Ok(vec![("answer".to_string(), 42.0)])
            },
        )
        .unwrap();
        assert_eq!(out.history.len(), 2);
        for r in &out.history {
            assert_eq!(r.tracked, vec![("answer".to_string(), 42.0)]);
        }
        let model: Mlp = MlpConfig::new(2, 2).init(&device).unwrap();
        assert!(
            fit_with_loss(model, &data, &data, &fit, |m: &Mlp, x, _: &TargetBatch| Ok(
                m.forward(x).sum() * 0.0
            ),)
            .unwrap()
            .history
            .iter()
            .all(|r| r.tracked.is_empty())
        );

        let mixup = strata_data::Augment::parse("mixup:0.2").unwrap();
        let fit = Fit {
            augment: Some(&mixup),
            ..fit
        };
        let model: Mlp = MlpConfig::new(2, 2).init(&device).unwrap();
        let e = fit_with_loss(model, &data, &data, &fit, |m: &Mlp, x, _: &TargetBatch| {
            Ok(m.forward(x).sum())
        })
        .unwrap_err();
        assert!(e.to_string().contains("mixup"), "{e}");
    }
}
