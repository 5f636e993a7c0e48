//! What a runner trains on ([`Objective`]) and with what ([`Run`]).

use std::path::Path;

use burn::tensor::{Device, Tensor};
use strata_data::epoch_order;
use strata_optim::{OptimizerConfig, ScheduleConfig};

use crate::config::FitConfig;
use crate::distributed::Collective;
use crate::error::Result;
use crate::progress::{Console, Progress, Silent};
use crate::transfer::FineTune;

/// What a training run optimises, for models whose batches are not rows of a [`Dataset`](strata_data::Dataset)
/// with one target each (sequence-to-sequence models, autoencoders, ...): the loss of a batch
/// of training examples named by index, and the validation loss and metric of the model.
/// [`fit_objective`](crate::fit_objective) runs it with everything [`fit`](crate::fit) has: epochs, schedule, early stopping,
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

    /// The validation loss and metric of `model` in a data-parallel run, the same on every
    /// rank of `collective`: by default every rank validates on all of it
    /// ([`validate`](Self::validate)); an objective may give each rank a share and reduce.
    ///
    /// # Errors
    /// When they cannot be computed.
    fn validate_shared(&self, model: &M, _collective: &dyn Collective) -> Result<(f64, f64)> {
        self.validate(model)
    }

    /// Figures of `model` (in evaluation mode) tracked after each epoch's validation besides
    /// the metric, by name: they join the epoch's [`EpochRecord::tracked`](crate::EpochRecord)
    /// (a `valid_NAME` column of the history, the progress line) but no early stopping or
    /// checkpoint choice. None by default.
    ///
    /// # Errors
    /// When they cannot be computed.
    fn tracked(&self, _model: &M) -> Result<Vec<(String, f64)>> {
        Ok(Vec::new())
    }

    /// Called before each epoch's first batch with the epoch's 0-based index (objectives that
    /// draw random numbers per batch seed them from it, so a resumed run repeats).
    fn begin_epoch(&self, _epoch: usize) {}

    /// The metric's short name for the progress lines (`acc`, `rmse`, `exact`).
    fn metric_name(&self) -> &str;

    /// Whether a lower metric is better (an error), rather than a higher one (an accuracy).
    fn lower_metric_is_better(&self) -> bool;
}

/// What every runner ([`fit`](crate::fit), [`fit_objective`](crate::fit_objective), [`fit_tbptt`](crate::fit_tbptt)) needs
/// besides the model and its objective.
pub struct Run<'a> {
    /// Optimizer settings.
    pub optimizer: &'a OptimizerConfig,
    /// Learning-rate schedule.
    pub schedule: &'a ScheduleConfig,
    /// Run settings (for [`fit_objective`](crate::fit_objective), `sampling` is the objective's business; for
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
    /// Where progress goes; `None`: a [`Console`] when `config.progress` is set, else
    /// nothing.
    pub progress: Option<&'a dyn Progress>,
    /// The optimizer and schedule of each player of a [`fit_players`](crate::fit_players)
    /// run, in the order of its names; empty: every player uses `optimizer` and `schedule`.
    pub per_player: &'a [(OptimizerConfig, ScheduleConfig)],
    /// Data-parallel training: the ranks this process trains with ([`Collective`]); `None`
    /// trains alone. See [the module's notes](crate::Collective) for what is shared.
    pub collective: Option<&'a dyn Collective>,
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
            progress: None,
            per_player: &[],
            collective: None,
        }
    }

    /// The progress reports of this run: its own, else `console` when `config.progress` is
    /// set, else none.
    pub(crate) fn progress_or<'b>(&'b self, console: &'b Console) -> &'b dyn Progress {
        match self.progress {
            Some(p) => p,
            None if self.config.progress => console,
            None => &Silent,
        }
    }

    pub(crate) fn reborrow(&self) -> Run<'_> {
        Run {
            optimizer: self.optimizer,
            schedule: self.schedule,
            config: self.config,
            device: self.device.clone(),
            checkpoint_dir: self.checkpoint_dir,
            resume: self.resume,
            pause_after: self.pause_after,
            fine_tune: self.fine_tune,
            progress: self.progress,
            per_player: self.per_player,
            collective: self.collective,
        }
    }
}
