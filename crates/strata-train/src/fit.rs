//! The training loop: epochs of mini-batch steps, validation, early stopping, checkpoints,
//! resume, a time budget, divergence detection and a progress bar.

use std::cell::Cell;
use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use strata_data::{
    Augment, BalancedSampler, Batcher, Dataset, Sampling, Task, beta_symmetric, epoch_order,
};
use strata_loss::Loss;
use strata_optim::{OptimizerConfig, ScheduleConfig};
use strata_tensor::convert::scalar;
use strata_tensor::derive_seed;

use crate::checkpoint::{Checkpointer, TrainState};
use crate::error::{Error, Result};
use crate::evaluate::evaluate;
use crate::history::EpochRecord;
use crate::transfer::{FineTune, Tuner};

/// What early stopping watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    /// Validation loss (lower is better).
    #[default]
    ValidLoss,
    /// Validation accuracy (higher is better), or RMSE for regression (lower is better).
    ValidMetric,
}

/// Early stopping: stop when the monitored value has not improved by `min_delta` for
/// `patience` epochs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// What to watch.
    #[serde(default)]
    pub monitor: Monitor,
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// Smallest change that counts as an improvement.
    #[serde(default)]
    pub min_delta: f64,
}

/// Settings of one training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitConfig {
    /// Number of epochs.
    pub epochs: usize,
    /// Samples per training step.
    pub batch_size: usize,
    /// Seed of weight initialisation, data order and dropout.
    pub seed: u64,
    /// Optional early stopping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStopping>,
    /// Shuffled or class-balanced epochs.
    #[serde(default)]
    pub sampling: Sampling,
    /// Stop cleanly after the epoch in which this many seconds of training have passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_seconds: Option<f64>,
    /// Return the weights of the best epoch (by the monitored value) rather than the last.
    #[serde(default = "yes")]
    pub restore_best: bool,
    /// Show a progress bar and one line per epoch on standard error.
    #[serde(default = "yes", skip_serializing)]
    pub progress: bool,
}

fn yes() -> bool {
    true
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 64,
            seed: 42,
            early_stopping: None,
            sampling: Sampling::Shuffle,
            max_seconds: None,
            restore_best: true,
            progress: true,
        }
    }
}

impl FitConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// Zero epochs or batch size, a non-positive time budget.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::Invalid("epochs must be >= 1, got 0".into()));
        }
        if self.batch_size == 0 {
            return Err(Error::Invalid("batch size must be >= 1, got 0".into()));
        }
        if let Some(s) = self.max_seconds
            && (s.is_nan() || s <= 0.0)
        {
            return Err(Error::Invalid(format!("max seconds must be > 0, got {s}")));
        }
        Ok(())
    }
}

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

/// The outcome of [`fit`].
#[derive(Debug)]
pub struct FitOutcome<M> {
    /// The trained model (best epoch's weights when `restore_best`).
    pub model: M,
    /// One record per epoch, over all sessions.
    pub history: Vec<EpochRecord>,
    /// Epochs run in total.
    pub epochs_run: usize,
    /// Training wall time in total.
    pub train_seconds: f64,
    /// The best epoch and its monitored value.
    pub best: Option<(f64, usize)>,
    /// Why training stopped (`completed`, `early stopping`, `time budget`, `paused`).
    pub stop_reason: String,
    /// The epoch this call resumed after, when it resumed.
    pub resumed_from: Option<usize>,
    /// Whether the run has finished (false when paused).
    pub finished: bool,
}

/// What a training run optimises, for models whose batches are not rows of a [`Dataset`]
/// with one target each (sequence-to-sequence models, autoencoders, ...): the loss of a batch
/// of training examples named by index, and the validation loss and metric of the model.
/// [`fit_objective`] runs it with everything [`fit`] has: epochs, schedule, early stopping,
/// best weights, checkpoints and resume, time budget, divergence check, progress bar.
pub trait Objective<M> {
    /// Number of training examples.
    fn n_train(&self) -> usize;

    /// The order of the training examples in epoch `epoch` (0-based): shuffled from
    /// `(seed, epoch)` alone by default, so a resumed run repeats an uninterrupted one.
    ///
    /// # Errors
    /// When the order cannot be made (an objective with its own sampler).
    fn epoch_order(&self, seed: u64, epoch: usize) -> Result<Vec<usize>> {
        Ok(epoch_order(self.n_train(), seed, epoch))
    }

    /// The mean loss of the training examples `indices` (on the autodiff device).
    ///
    /// # Errors
    /// When the loss cannot be computed.
    fn batch_loss(&self, model: &M, indices: &[usize]) -> Result<Tensor<1>>;

    /// The validation loss and metric of `model` (in evaluation mode).
    ///
    /// # Errors
    /// When they cannot be computed.
    fn validate(&self, model: &M) -> Result<(f64, f64)>;

    /// Called before each epoch's first batch with the epoch's 0-based index (objectives that
    /// draw random numbers per batch seed them from it, so a resumed run repeats).
    fn begin_epoch(&self, _epoch: usize) {}

    /// The metric's short name for the progress lines (`acc`, `rmse`, `exact`).
    fn metric_name(&self) -> &str;

    /// Whether a lower metric is better (an error), rather than a higher one (an accuracy).
    fn lower_metric_is_better(&self) -> bool;
}

/// What every runner ([`fit`], [`fit_objective`], [`fit_tbptt`](crate::fit_tbptt)) needs
/// besides the model and its objective.
pub struct Run<'a> {
    /// Optimizer settings.
    pub optimizer: &'a OptimizerConfig,
    /// Learning-rate schedule.
    pub schedule: &'a ScheduleConfig,
    /// Run settings (for [`fit_objective`], `sampling` is the objective's business; for
    /// [`fit_tbptt`](crate::fit_tbptt), `batch_size` is the number of parallel streams).
    pub config: &'a FitConfig,
    /// The autodiff device the model lives on.
    pub device: Device,
    /// Where checkpoints go; `None` keeps everything in memory (no resume).
    pub checkpoint_dir: Option<&'a Path>,
    /// Continue from the checkpoint in `checkpoint_dir` when there is one.
    pub resume: bool,
    /// Stop (as if interrupted) after this many epochs in this call; the checkpoint allows a
    /// later call with `resume` to go on. For running long jobs in sessions, and for tests.
    pub pause_after: Option<usize>,
    /// Fine-tuning: frozen parameters, when they thaw, the backbone's learning rate.
    pub fine_tune: Option<&'a FineTune>,
}

impl<'a> Run<'a> {
    /// A run kept in memory (no checkpoints, no resume, no pause).
    pub fn new(
        optimizer: &'a OptimizerConfig,
        schedule: &'a ScheduleConfig,
        config: &'a FitConfig,
        device: Device,
    ) -> Self {
        Self {
            optimizer,
            schedule,
            config,
            device,
            checkpoint_dir: None,
            resume: false,
            pause_after: None,
            fine_tune: None,
        }
    }

    fn reborrow(&self) -> Run<'_> {
        Run {
            optimizer: self.optimizer,
            schedule: self.schedule,
            config: self.config,
            device: self.device.clone(),
            checkpoint_dir: self.checkpoint_dir,
            resume: self.resume,
            pause_after: self.pause_after,
            fine_tune: self.fine_tune,
        }
    }
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

/// Trains `model` on an [`Objective`]: mini-batches of its training examples, validation
/// after each epoch, and the rest of [`fit`]'s machinery.
///
/// # Errors
/// Invalid settings, the objective's errors, I/O errors while checkpointing, and
/// [`Error::Diverged`] when the loss becomes NaN or infinite.
pub fn fit_objective<M, O>(model: M, objective: &O, run: &Run<'_>) -> Result<FitOutcome<M>>
where
    M: Module,
    O: Objective<M> + ?Sized,
{
    let config = run.config;
    config.validate()?;
    let n_train = objective.n_train();
    if n_train == 0 {
        return Err(Error::Invalid(
            "training needs training examples, got none".into(),
        ));
    }
    let device = run.device.clone();
    let Start {
        mut model,
        mut optim,
        mut state,
        checkpointer,
        resumed_from,
    } = start(model, run)?;
    let mut tuner = Tuner::new(run.fine_tune, &model)?;
    let monitor = config
        .early_stopping
        .as_ref()
        .map(|e| e.monitor)
        .unwrap_or_default();
    let lower = match monitor {
        Monitor::ValidLoss => true,
        Monitor::ValidMetric => objective.lower_metric_is_better(),
    };
    let n_batches = n_train.div_ceil(config.batch_size);
    let mut epochs_this_call = 0usize;

    while !state.finished && state.epochs_done < config.epochs {
        if let Some(p) = run.pause_after
            && epochs_this_call >= p
        {
            break;
        }
        let epoch = state.epochs_done; // 0-based index of the epoch about to run
        let started = Instant::now();
        let lr = state.schedule.lr(epoch);
        model = tuner.begin_epoch(model, epoch);
        device.seed(derive_seed(config.seed, 1_000_000 + epoch as u64));
        let order = objective.epoch_order(config.seed, epoch)?;
        objective.begin_epoch(epoch);
        let bar = progress_bar(config.progress, n_batches, epoch + 1, config.epochs);
        let mut loss_sum = 0.0f64;
        let mut seen = 0usize;
        let mut cut_short = false;
        for (b, chunk) in order.chunks(config.batch_size).enumerate() {
            if over_budget(config, state.train_seconds, started) {
                cut_short = true;
                break;
            }
            let loss = objective.batch_loss(&model, chunk)?;
            let value = scalar(loss.clone());
            check_finite(value, epoch, b, &state, checkpointer.is_some(), &bar)?;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(tuner.lr(lr), model, grads);
            loss_sum += value as f64 * chunk.len() as f64;
            seen += chunk.len();
            bar.inc(1);
            if b % 10 == 0 {
                bar.set_message(format!("loss {:.4}", loss_sum / seen as f64));
            }
        }
        bar.finish_and_clear();

        let (valid_loss, metric) = objective.validate(&model.valid())?;
        let seconds = started.elapsed().as_secs_f64();
        epochs_this_call += 1;
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: loss_sum / seen.max(1) as f64,
            valid_loss,
            valid_metric: metric,
            lr,
            seconds,
        };
        end_epoch(
            &mut state,
            record,
            &EpochEnd {
                config,
                monitor,
                lower,
                cut_short,
                metric_name: objective.metric_name(),
                checkpointer: checkpointer.as_ref(),
            },
            &model,
            &optim,
        )?;
    }

    finish(model, state, config, checkpointer.as_ref(), resumed_from)
}

/// A run's starting point: fresh, or the last checkpoint when resuming.
pub(crate) struct Start<M> {
    pub model: M,
    pub optim: ModuleOptimizer,
    pub state: TrainState,
    pub checkpointer: Option<Checkpointer>,
    pub resumed_from: Option<usize>,
}

/// Builds the optimizer and schedule, and resumes from the checkpoint in the run's
/// `checkpoint_dir` when asked to and one exists.
pub(crate) fn start<M: Module>(model: M, run: &Run<'_>) -> Result<Start<M>> {
    let (optimizer, config) = (run.optimizer, run.config);
    let optim: ModuleOptimizer = optimizer.build()?;
    let checkpointer = run.checkpoint_dir.map(Checkpointer::new);
    let state = TrainState {
        epochs_done: 0,
        history: Vec::new(),
        schedule: run.schedule.start(optimizer.lr, config.epochs)?,
        best: None,
        bad_epochs: 0,
        train_seconds: 0.0,
        finished: false,
        stop_reason: None,
    };
    if run.resume
        && let Some(ck) = &checkpointer
        && let Some(saved) = ck.load_state()?
    {
        let (model, optim) = ck.load(model, optim, &saved)?;
        if config.progress {
            eprintln!("resuming after epoch {}", saved.epochs_done);
        }
        return Ok(Start {
            model,
            optim,
            resumed_from: Some(saved.epochs_done),
            state: saved,
            checkpointer,
        });
    }
    Ok(Start {
        model,
        optim,
        state,
        checkpointer,
        resumed_from: None,
    })
}

/// The outcome of a run that stopped (finished or paused), best weights restored.
pub(crate) fn finish<M: Module>(
    model: M,
    state: TrainState,
    config: &FitConfig,
    checkpointer: Option<&Checkpointer>,
    resumed_from: Option<usize>,
) -> Result<FitOutcome<M>> {
    let model = restore_best(model, &state, config, checkpointer)?;
    Ok(FitOutcome {
        model,
        history: state.history,
        epochs_run: state.epochs_done,
        train_seconds: state.train_seconds,
        best: state.best,
        stop_reason: state.stop_reason.unwrap_or_else(|| "paused".into()),
        finished: state.finished,
        resumed_from,
    })
}

/// [`Error::Diverged`] (with the last checkpointed epoch) when the loss of batch `batch` (0-based)
/// of epoch `epoch` is NaN or infinite.
pub(crate) fn check_finite(
    value: f32,
    epoch: usize,
    batch: usize,
    state: &TrainState,
    checkpointing: bool,
    bar: &ProgressBar,
) -> Result<()> {
    if value.is_finite() {
        return Ok(());
    }
    bar.abandon();
    Err(Error::Diverged {
        epoch: epoch + 1,
        batch: batch + 1,
        loss: value,
        last_good: if checkpointing { state.epochs_done } else { 0 },
    })
}

/// Whether the time budget is spent, counting the epoch under way.
pub(crate) fn over_budget(config: &FitConfig, done: f64, started: Instant) -> bool {
    config
        .max_seconds
        .is_some_and(|budget| done + started.elapsed().as_secs_f64() >= budget)
}

/// What [`end_epoch`] needs besides the state and the model.
pub(crate) struct EpochEnd<'a> {
    pub config: &'a FitConfig,
    pub monitor: Monitor,
    pub lower: bool,
    /// The time budget ran out during the epoch.
    pub cut_short: bool,
    pub metric_name: &'a str,
    pub checkpointer: Option<&'a Checkpointer>,
}

/// Records an epoch: best value and best weights, the progress line, the stop decision
/// (early stopping, all epochs, time budget) and the checkpoint.
pub(crate) fn end_epoch<M: Module>(
    state: &mut TrainState,
    record: EpochRecord,
    e: &EpochEnd<'_>,
    model: &M,
    optim: &ModuleOptimizer,
) -> Result<()> {
    let config = e.config;
    state.train_seconds += record.seconds;
    state.epochs_done += 1;
    state.schedule.observe(record.valid_loss);
    let watched = match e.monitor {
        Monitor::ValidLoss => record.valid_loss,
        Monitor::ValidMetric => record.valid_metric,
    };
    let min_delta = config.early_stopping.as_ref().map_or(0.0, |x| x.min_delta);
    let improved = match state.best {
        None => true,
        Some((best, _)) if e.lower => watched < best - min_delta,
        Some((best, _)) => watched > best + min_delta,
    };
    if improved {
        state.best = Some((watched, record.epoch));
        state.bad_epochs = 0;
        if let Some(ck) = e.checkpointer {
            ck.save_best(model)?;
        }
    } else {
        state.bad_epochs += 1;
    }
    if config.progress {
        eprintln!(
            "epoch {:>3}/{}  train loss {:.4}  valid loss {:.4}  valid {} {:.4}  lr {:.2e}  {:.1}s{}",
            record.epoch,
            config.epochs,
            record.train_loss,
            record.valid_loss,
            e.metric_name,
            record.valid_metric,
            record.lr,
            record.seconds,
            if improved { "  *" } else { "" }
        );
    }
    state.history.push(record);

    if let Some(es) = &config.early_stopping
        && state.bad_epochs >= es.patience
    {
        state.finished = true;
        state.stop_reason = Some("early stopping".into());
    } else if state.epochs_done >= config.epochs {
        state.finished = true;
        state.stop_reason = Some("completed".into());
    } else if e.cut_short
        || config
            .max_seconds
            .is_some_and(|budget| state.train_seconds >= budget)
    {
        state.finished = true;
        state.stop_reason = Some("time budget".into());
    }
    if let Some(ck) = e.checkpointer {
        ck.save(model, optim, state)?;
    }
    Ok(())
}

/// Puts the best epoch's weights back when the run has finished and asks for them.
pub(crate) fn restore_best<M: Module>(
    model: M,
    state: &TrainState,
    config: &FitConfig,
    checkpointer: Option<&Checkpointer>,
) -> Result<M> {
    let best_epoch = state.best.map(|(_, e)| e);
    match checkpointer {
        Some(ck)
            if state.finished && config.restore_best && best_epoch != Some(state.epochs_done) =>
        {
            ck.load_best(model)
        }
        _ => Ok(model),
    }
}

pub(crate) fn progress_bar(show: bool, len: usize, epoch: usize, epochs: usize) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix} [{bar:30.cyan/blue}] {pos}/{len} {msg} ({elapsed}<{eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(format!("epoch {epoch}/{epochs}"));
    bar
}
