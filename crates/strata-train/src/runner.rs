//! The training loop shared by every runner: epochs of mini-batch steps, validation, early
//! stopping, best weights, checkpoints and resume, a time budget, divergence detection and
//! progress reports.

use std::time::Instant;

use burn::module::Module;
use burn::optim::ModuleOptimizer;

use crate::checkpoint::{Checkpointer, TrainState};
use crate::config::{FitConfig, Monitor};
use crate::error::{Error, Result};
use crate::history::EpochRecord;
use crate::objective::{Objective, Run};
use crate::players::Single;
use crate::progress::Progress;

/// The outcome of [`fit`](crate::fit).
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

impl<M> FitOutcome<M> {
    /// The trained model, and the rest of the outcome without it.
    pub fn split(self) -> (M, FitOutcome<()>) {
        let FitOutcome {
            model,
            history,
            epochs_run,
            train_seconds,
            best,
            stop_reason,
            resumed_from,
            finished,
        } = self;
        (
            model,
            FitOutcome {
                model: (),
                history,
                epochs_run,
                train_seconds,
                best,
                stop_reason,
                resumed_from,
                finished,
            },
        )
    }

    /// The same outcome with its model turned into `f(model)` (a part of it, say).
    pub fn map<N>(self, f: impl FnOnce(M) -> N) -> FitOutcome<N> {
        let (model, rest) = self.split();
        FitOutcome {
            model: f(model),
            history: rest.history,
            epochs_run: rest.epochs_run,
            train_seconds: rest.train_seconds,
            best: rest.best,
            stop_reason: rest.stop_reason,
            resumed_from: rest.resumed_from,
            finished: rest.finished,
        }
    }
}

/// Trains `model` on an [`Objective`]: mini-batches of its training examples, validation
/// after each epoch, and the rest of [`fit`](crate::fit)'s machinery. It is
/// [`fit_players`](crate::fit_players) with one player.
///
/// # Errors
/// Invalid settings, the objective's errors, I/O errors while checkpointing, and
/// [`Error::Diverged`] when the loss becomes NaN or infinite.
pub fn fit_objective<M, O>(model: M, objective: &O, run: &Run<'_>) -> Result<FitOutcome<M>>
where
    M: Module,
    O: Objective<M> + ?Sized,
{
    crate::players::fit_players(model, &Single(objective), run)
}

/// A run's starting point: fresh, or the last checkpoint when resuming.
pub(crate) struct Start<M> {
    pub model: M,
    /// One optimizer per player.
    pub optims: Vec<ModuleOptimizer>,
    pub state: TrainState,
    pub checkpointer: Option<Checkpointer>,
    pub resumed_from: Option<usize>,
}

/// Builds the optimizers and schedules of `n_players` players, and resumes from the checkpoint
/// in the run's `checkpoint_dir` when asked to and one exists.
pub(crate) fn start<M: Module>(
    model: M,
    run: &Run<'_>,
    n_players: usize,
    progress: &dyn Progress,
) -> Result<Start<M>> {
    let config = run.config;
    let settings = |p: usize| match run.per_player.get(p) {
        Some((o, s)) => (o, s),
        None => (run.optimizer, run.schedule),
    };
    let mut optims = Vec::with_capacity(n_players);
    let mut schedules = Vec::with_capacity(n_players);
    for p in 0..n_players {
        let (optimizer, schedule) = settings(p);
        optims.push(optimizer.build()?);
        schedules.push(schedule.start(optimizer.lr, config.epochs)?);
    }
    let checkpointer = run.checkpoint_dir.map(Checkpointer::new);
    let mut schedules = schedules.into_iter();
    let first = schedules
        .next()
        .ok_or_else(|| Error::Invalid("a run needs at least one player".into()))?;
    let state = TrainState {
        epochs_done: 0,
        history: Vec::new(),
        schedule: first,
        other_schedules: schedules.collect(),
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
        let (model, optims) = ck.load(model, optims, &saved)?;
        progress.note(&format!("resuming after epoch {}", saved.epochs_done));
        return Ok(Start {
            model,
            optims,
            resumed_from: Some(saved.epochs_done),
            state: saved,
            checkpointer,
        });
    }
    Ok(Start {
        model,
        optims,
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
    progress: &dyn Progress,
) -> Result<()> {
    if value.is_finite() {
        return Ok(());
    }
    progress.interrupted();
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
    pub progress: &'a dyn Progress,
}

/// Records an epoch: best value and best weights, the progress line, the stop decision
/// (early stopping, all epochs, time budget) and the checkpoint.
pub(crate) fn end_epoch<M: Module>(
    state: &mut TrainState,
    record: EpochRecord,
    e: &EpochEnd<'_>,
    model: &M,
    optims: &[ModuleOptimizer],
) -> Result<()> {
    let config = e.config;
    state.train_seconds += record.seconds;
    state.epochs_done += 1;
    state.schedule.observe(record.valid_loss);
    for s in &mut state.other_schedules {
        s.observe(record.valid_loss);
    }
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
    e.progress
        .epoch_done(&record, config.epochs, e.metric_name, improved);
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
        ck.save(model, optims, state)?;
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

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use burn::tensor::{Device, Tensor, TensorData};
    use strata_arch::{Mlp, MlpConfig};
    use strata_optim::{OptimizerConfig, ScheduleConfig};
    use strata_tensor::convert::to_vec;

    use super::*;
    use crate::config::EarlyStopping;

    /// Regression of `y = x0 - x1` on 16 rows with scripted validation losses, so that what
    /// the loop decides (best epoch, early stop) is known in advance; records the output
    /// weights seen at each validation and can make one batch's loss NaN.
    struct Toy {
        x: Tensor<2>,
        y: Tensor<2>,
        valid_losses: Vec<f64>,
        nan_at: Option<(usize, usize)>,
        epoch: Cell<usize>,
        batch: Cell<usize>,
        seen: RefCell<Vec<Vec<f32>>>,
    }

    impl Toy {
        fn new(device: &Device, valid_losses: Vec<f64>) -> Self {
            let xs: Vec<f32> = (0..32).map(|i| ((i * 7) % 11) as f32 / 11.0).collect();
            let ys: Vec<f32> = xs.chunks(2).map(|r| r[0] - r[1]).collect();
            Self {
                x: Tensor::from_data(TensorData::new(xs, [16, 2]), device),
                y: Tensor::from_data(TensorData::new(ys, [16, 1]), device),
                valid_losses,
                nan_at: None,
                epoch: Cell::new(0),
                batch: Cell::new(0),
                seen: RefCell::new(Vec::new()),
            }
        }
    }

    impl Objective<Mlp> for Toy {
        fn n_train(&self) -> usize {
            16
        }

        fn begin_epoch(&self, epoch: usize) {
            self.epoch.set(epoch);
            self.batch.set(0);
        }

        fn batch_loss(&self, model: &Mlp, indices: &[usize]) -> Result<Tensor<1>> {
            let b = self.batch.get();
            self.batch.set(b + 1);
            let ids: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
            let ids = Tensor::<1, burn::tensor::Int>::from_data(
                TensorData::new(ids, [indices.len()]),
                &self.x.device(),
            );
            let out = model.forward(self.x.clone().select(0, ids.clone()));
            let loss = (out - self.y.clone().select(0, ids))
                .powf_scalar(2.0)
                .mean();
            Ok(match self.nan_at {
                Some(at) if at == (self.epoch.get(), b) => loss * f32::NAN,
                _ => loss,
            })
        }

        fn validate(&self, model: &Mlp) -> Result<(f64, f64)> {
            self.seen
                .borrow_mut()
                .push(to_vec(model.output.weight.val()));
            let e = self.epoch.get();
            let loss = self.valid_losses.get(e).copied().unwrap_or(1.0);
            Ok((loss, -loss))
        }

        fn metric_name(&self) -> &str {
            "neg"
        }

        fn lower_metric_is_better(&self) -> bool {
            false
        }
    }

    /// Counts what the loop reports.
    #[derive(Default)]
    struct Counts {
        started: Cell<usize>,
        steps: Cell<usize>,
        done: RefCell<Vec<(usize, bool)>>,
        interrupted: Cell<usize>,
    }

    impl Progress for Counts {
        fn epoch_started(&self, _: usize, _: usize, _: usize) {
            self.started.set(self.started.get() + 1);
        }
        fn step_done(&self, _: usize, _: f64) {
            self.steps.set(self.steps.get() + 1);
        }
        fn epoch_done(&self, record: &EpochRecord, _: usize, _: &str, best: bool) {
            self.done.borrow_mut().push((record.epoch, best));
        }
        fn interrupted(&self) {
            self.interrupted.set(self.interrupted.get() + 1);
        }
    }

    fn model(device: &Device) -> Mlp {
        strata_tensor::seed_device(device, 5);
        MlpConfig::new(2, 1)
            .with_d_hidden(vec![4])
            .init(device)
            .unwrap()
    }

    fn settings(epochs: usize, patience: Option<usize>) -> FitConfig {
        FitConfig {
            epochs,
            batch_size: 4,
            seed: 3,
            early_stopping: patience.map(|patience| EarlyStopping {
                monitor: Monitor::ValidLoss,
                patience,
                min_delta: 0.0,
            }),
            progress: false,
            ..Default::default()
        }
    }

    #[test]
    fn early_stopping_stops_after_patience_epochs_and_restores_the_best_weights() {
        let _serial = crate::serial();
        let device = Device::flex().autodiff();
        let dir = tempfile::tempdir().unwrap();
        let toy = Toy::new(&device, vec![1.0, 0.5, 0.6, 0.7, 0.4, 0.3]);
        let counts = Counts::default();
        let config = settings(6, Some(2));
        let optimizer = OptimizerConfig::default();
        let schedule = ScheduleConfig::default();
        let run = Run {
            checkpoint_dir: Some(dir.path()),
            progress: Some(&counts),
            ..Run::new(&optimizer, &schedule, &config, device.clone())
        };
        let out = fit_objective(model(&device), &toy, &run).unwrap();
        // Epoch 2 is best (0.5); epochs 3 and 4 do not improve: stop after epoch 4, even
        // though epoch 5 would have been better.
        assert_eq!(out.epochs_run, 4);
        assert_eq!(out.stop_reason, "early stopping");
        assert_eq!(out.best, Some((0.5, 2)));
        assert!(out.finished);
        assert_eq!(
            *counts.done.borrow(),
            [(1, true), (2, true), (3, false), (4, false)]
        );
        assert_eq!(counts.started.get(), 4);
        assert_eq!(
            counts.steps.get(),
            4 * 4,
            "16 rows in batches of 4, 4 epochs"
        );
        let seen = toy.seen.borrow();
        assert_ne!(seen[1], seen[3], "the weights moved after the best epoch");
        assert_eq!(to_vec(out.model.output.weight.val()), seen[1]);
    }

    #[test]
    fn a_nan_loss_is_an_error_naming_its_epoch_and_batch() {
        let _serial = crate::serial();
        let device = Device::flex().autodiff();
        let mut toy = Toy::new(&device, vec![]);
        toy.nan_at = Some((1, 2)); // the third batch of the second epoch
        let counts = Counts::default();
        let config = settings(5, None);
        let optimizer = OptimizerConfig::default();
        let schedule = ScheduleConfig::default();
        let run = Run {
            progress: Some(&counts),
            ..Run::new(&optimizer, &schedule, &config, device.clone())
        };
        match fit_objective(model(&device), &toy, &run) {
            Err(Error::Diverged {
                epoch,
                batch,
                loss,
                last_good,
            }) => {
                assert_eq!((epoch, batch, last_good), (2, 3, 0));
                assert!(loss.is_nan());
            }
            other => panic!(
                "expected a divergence, got {:?}",
                other.map(|o| o.epochs_run)
            ),
        }
        assert_eq!(counts.interrupted.get(), 1);
        assert_eq!(counts.done.borrow().len(), 1);
    }

    #[test]
    fn a_paused_then_resumed_run_repeats_the_uninterrupted_one() {
        let _serial = crate::serial();
        let device = Device::flex().autodiff();
        let config = settings(5, None);
        let optimizer = OptimizerConfig::default();
        let schedule = ScheduleConfig::by_name("cosine").unwrap();
        let losses = vec![0.9, 0.8, 0.7, 0.6, 0.5];

        let whole = fit_objective(
            model(&device),
            &Toy::new(&device, losses.clone()),
            &Run::new(&optimizer, &schedule, &config, device.clone()),
        )
        .unwrap();

        let dir = tempfile::tempdir().unwrap();
        let toy = Toy::new(&device, losses);
        let first = fit_objective(
            model(&device),
            &toy,
            &Run {
                checkpoint_dir: Some(dir.path()),
                pause_after: Some(2),
                ..Run::new(&optimizer, &schedule, &config, device.clone())
            },
        )
        .unwrap();
        assert!(!first.finished);
        assert_eq!(
            (first.epochs_run, first.stop_reason.as_str()),
            (2, "paused")
        );
        let rest = fit_objective(
            model(&device),
            &toy,
            &Run {
                checkpoint_dir: Some(dir.path()),
                resume: true,
                ..Run::new(&optimizer, &schedule, &config, device.clone())
            },
        )
        .unwrap();
        assert_eq!(rest.resumed_from, Some(2));
        assert!(rest.finished);
        let train =
            |o: &FitOutcome<Mlp>| -> Vec<f64> { o.history.iter().map(|r| r.train_loss).collect() };
        assert_eq!(train(&rest), train(&whole));
        assert_eq!(
            to_vec(rest.model.output.weight.val()),
            to_vec(whole.model.output.weight.val())
        );
    }

    #[test]
    fn a_time_budget_stops_the_run_cleanly() {
        let _serial = crate::serial();
        let device = Device::flex().autodiff();
        let mut config = settings(1000, None);
        config.max_seconds = Some(1e-9);
        let optimizer = OptimizerConfig::default();
        let out = fit_objective(
            model(&device),
            &Toy::new(&device, vec![]),
            &Run::new(
                &optimizer,
                &ScheduleConfig::default(),
                &config,
                device.clone(),
            ),
        )
        .unwrap();
        assert_eq!(out.stop_reason, "time budget");
        assert_eq!(out.epochs_run, 1);
        assert!(out.finished);
    }
}
