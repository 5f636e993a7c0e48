//! Training several optimizers in turn on one model: a GAN's discriminator and generator, an
//! adversarial debiaser's predictor and adversary, a student beside its teacher.
//!
//! The model `M` is one burn module holding every player's parameters (for a GAN, a struct
//! with the generator and the discriminator). Each player has its own optimizer and schedule
//! ([`Run::per_player`](crate::Run::per_player)); on each batch the players named by
//! [`Players::turns`] step in order: the player's loss, the gradients of its own parameters
//! ([`Players::gradients`]), its optimizer's step, and [`Players::after_step`] (a WGAN clips
//! its critic's weights there). [`fit_players`] runs this with everything
//! [`fit`](crate::fit) has: epochs, schedules, checkpoints of the model and of every optimizer
//! written atomically, exact resume, time budget, divergence error, a progress bar with each
//! player's loss, and the history (each player's mean loss per epoch in
//! [`EpochRecord::losses`](crate::EpochRecord::losses)).
//! [`fit_objective`](crate::fit_objective) is this loop with one player.
//!
//! ```
//! use burn::module::Module;
//! use burn::nn::{Linear, LinearConfig};
//! use burn::optim::GradientsParams;
//! use burn::tensor::{Device, Tensor};
//! use strata_train::{FitConfig, OptimizerConfig, Players, Run, ScheduleConfig, fit_players};
//!
//! /// Two one-number "players": `a` moves towards 1, `b` towards `a`'s value.
//! #[derive(Module, Debug)]
//! struct Pair { a: Linear, b: Linear }
//!
//! struct Chase;
//! impl Players<Pair> for Chase {
//!     fn names(&self) -> Vec<String> { vec!["a".into(), "b".into()] }
//!     fn n_train(&self) -> usize { 4 }
//!     fn player_loss(&self, m: &Pair, player: usize, _: &[usize]) -> strata_train::Result<Tensor<1>> {
//!         let (a, b) = (m.a.weight.val().sum(), m.b.weight.val().sum());
//!         Ok(match player {
//!             0 => (a - 1.0).powf_scalar(2.0),
//!             _ => (b - a.detach()).powf_scalar(2.0),
//!         })
//!     }
//!     fn gradients(&self, m: &Pair, player: usize, grads: burn::tensor::Gradients) -> GradientsParams {
//!         match player {
//!             0 => GradientsParams::from_grads(grads, &m.a),
//!             _ => GradientsParams::from_grads(grads, &m.b),
//!         }
//!     }
//!     fn validate(&self, m: &Pair) -> strata_train::Result<(f64, f64)> {
//!         Ok((0.0, 0.0))
//!     }
//!     fn metric_name(&self) -> &str { "none" }
//!     fn lower_metric_is_better(&self) -> bool { true }
//! }
//!
//! let device = Device::flex().autodiff();
//! let pair = Pair { a: LinearConfig::new(1, 1).init(&device), b: LinearConfig::new(1, 1).init(&device) };
//! let sgd = OptimizerConfig {
//!     kind: strata_optim::OptimizerKind::by_name("sgd")?,
//!     lr: 0.1,
//!     ..Default::default()
//! };
//! let constant = ScheduleConfig::by_name("constant")?;
//! let config = FitConfig { epochs: 100, batch_size: 1, progress: false, ..Default::default() };
//! let both = [(sgd.clone(), constant.clone()), (sgd.clone(), constant.clone())];
//! let run = Run { per_player: &both, ..Run::new(&sgd, &constant, &config, device) };
//! let out = fit_players(pair, &Chase, &run)?;
//! let b: f32 = out.model.b.weight.val().into_scalar();
//! assert!((b - 1.0).abs() < 1e-3, "b chased a to 1: {b}");
//! assert_eq!(out.history[0].losses.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::Gradients;
use burn::tensor::Tensor;
use strata_data::epoch_order;
use strata_tensor::convert::scalar;
use strata_tensor::derive_seed;

use crate::config::Monitor;
use crate::distributed::{Collective, all_reduce_gradients, any, checksum, root_value, shard};
use crate::error::{Error, Result};
use crate::history::EpochRecord;
use crate::objective::{Objective, Run};
use crate::progress::Console;
use crate::runner::{
    EpochEnd, FitOutcome, Start, check_finite, end_epoch, finish, over_budget, start,
};
use crate::transfer::Tuner;

/// What [`fit_players`] trains: one model whose parameters belong to several players, each
/// with its own optimizer, stepping in turn.
pub trait Players<M> {
    /// The players' names, one per optimizer, in the order of
    /// [`Run::per_player`](crate::Run::per_player) (`discriminator`, `generator`); they name
    /// the loss columns of the history and the progress bar.
    fn names(&self) -> Vec<String>;

    /// Number of training examples.
    fn n_train(&self) -> usize;

    /// The order of the training examples in epoch `epoch` (0-based): shuffled from
    /// `(seed, epoch)` alone by default, so a resumed run repeats an uninterrupted one.
    ///
    /// # Errors
    /// When the order cannot be made.
    fn epoch_order(&self, seed: u64, epoch: usize) -> Result<Vec<usize>> {
        Ok(epoch_order(self.n_train(), seed, epoch))
    }

    /// Called before each epoch's first batch with its 0-based index.
    fn begin_epoch(&self, _epoch: usize) {}

    /// The players that step on batch `batch` (0-based, counted from the run's first epoch),
    /// in order: by default each player once. A WGAN steps its critic on every batch and its
    /// generator on every fifth.
    fn turns(&self, _batch: usize) -> Vec<usize> {
        (0..self.names().len()).collect()
    }

    /// The mean loss of `player`'s step on the training examples `indices`.
    ///
    /// # Errors
    /// When it cannot be computed.
    fn player_loss(&self, model: &M, player: usize, indices: &[usize]) -> Result<Tensor<1>>;

    /// The gradients of `player`'s own parameters from `grads` (the backward pass of its
    /// loss): by default those of the whole model.
    fn gradients(&self, model: &M, _player: usize, grads: Gradients) -> GradientsParams
    where
        M: Module,
    {
        GradientsParams::from_grads(grads, model)
    }

    /// Called after each of `player`'s optimizer steps (a WGAN clips its critic's weights).
    fn after_step(&self, model: M, _player: usize) -> M {
        model
    }

    /// The validation loss and metric of `model` (in evaluation mode).
    ///
    /// # Errors
    /// When they cannot be computed.
    fn validate(&self, model: &M) -> Result<(f64, f64)>;

    /// The validation loss and metric of `model` in a data-parallel run, the same on every
    /// rank ([`Objective::validate_shared`]): by default [`validate`](Self::validate) on
    /// every rank.
    ///
    /// # Errors
    /// When they cannot be computed.
    fn validate_shared(&self, model: &M, _collective: &dyn Collective) -> Result<(f64, f64)> {
        self.validate(model)
    }

    /// Figures tracked after validation besides the metric ([`Objective::tracked`]); none by
    /// default.
    ///
    /// # Errors
    /// When they cannot be computed.
    fn tracked(&self, _model: &M) -> Result<Vec<(String, f64)>> {
        Ok(Vec::new())
    }

    /// Warnings about the epoch just validated (a GAN's collapsing sample diversity), shown
    /// even when the progress is not.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// The metric's short name for the progress lines.
    fn metric_name(&self) -> &str;

    /// Whether a lower metric is better.
    fn lower_metric_is_better(&self) -> bool;
}

/// An [`Objective`] as a game of one player.
pub(crate) struct Single<'a, O: ?Sized>(pub &'a O);

impl<M, O: Objective<M> + ?Sized> Players<M> for Single<'_, O> {
    fn names(&self) -> Vec<String> {
        vec!["model".into()]
    }
    fn n_train(&self) -> usize {
        self.0.n_train()
    }
    fn epoch_order(&self, seed: u64, epoch: usize) -> Result<Vec<usize>> {
        self.0.epoch_order(seed, epoch)
    }
    fn begin_epoch(&self, epoch: usize) {
        self.0.begin_epoch(epoch);
    }
    fn turns(&self, _batch: usize) -> Vec<usize> {
        vec![0]
    }
    fn player_loss(&self, model: &M, _: usize, indices: &[usize]) -> Result<Tensor<1>> {
        self.0.batch_loss(model, indices)
    }
    fn validate(&self, model: &M) -> Result<(f64, f64)> {
        self.0.validate(model)
    }
    fn validate_shared(&self, model: &M, collective: &dyn Collective) -> Result<(f64, f64)> {
        self.0.validate_shared(model, collective)
    }
    fn tracked(&self, model: &M) -> Result<Vec<(String, f64)>> {
        self.0.tracked(model)
    }
    fn metric_name(&self) -> &str {
        self.0.metric_name()
    }
    fn lower_metric_is_better(&self) -> bool {
        self.0.lower_metric_is_better()
    }
}

/// Trains `model`'s players in turn on `players`: mini-batches of its training examples, each
/// player's steps on each batch, validation after each epoch, and the rest of
/// [`fit`](crate::fit)'s machinery. Player `p` uses `run.per_player[p]` (its optimizer and
/// schedule), or `run.optimizer` and `run.schedule` when `per_player` is empty. The history's
/// `train_loss` is the first player's mean loss; `losses` has every player's.
///
/// # Errors
/// Invalid settings (a `per_player` of another length than the players), the objective's
/// errors, I/O errors while checkpointing, and [`Error::Diverged`] when a player's loss
/// becomes NaN or infinite.
pub fn fit_players<M, P>(model: M, players: &P, run: &Run<'_>) -> Result<FitOutcome<M>>
where
    M: Module,
    P: Players<M> + ?Sized,
{
    let config = run.config;
    config.validate()?;
    let names = players.names();
    if names.is_empty() {
        return Err(Error::Invalid("a run needs at least one player".into()));
    }
    if !run.per_player.is_empty() && run.per_player.len() != names.len() {
        return Err(Error::Invalid(format!(
            "{} players ({}) but settings for {}",
            names.len(),
            names.join(", "),
            run.per_player.len()
        )));
    }
    let n_train = players.n_train();
    if n_train == 0 {
        return Err(Error::Invalid(
            "training needs training examples, got none".into(),
        ));
    }
    let device = run.device.clone();
    let console = Console::default();
    let collective = run.collective;
    let root = collective.is_none_or(|c| c.is_root());
    let ranks = collective.map_or(1, |c| c.size());
    // Rank 0 alone reports.
    let progress = if root {
        run.progress_or(&console)
    } else {
        &crate::progress::Silent
    };
    let Start {
        mut model,
        mut optims,
        mut state,
        checkpointer,
        resumed_from,
    } = start(model, run, names.len(), progress)?;
    if let Some(c) = collective {
        // Parameters are initialised lazily, from the device's generator at their first use:
        // on every rank from the seed one process would use, before the ranks' seeds part.
        device.seed(epoch_seed(config.seed, state.epochs_done));
        same_weights(&model, c)?;
        progress.note(&format!(
            "data-parallel over {}: global batch {} ({} per rank)",
            c.describe(),
            config.batch_size * ranks,
            config.batch_size
        ));
    }
    // Rank 0 alone writes checkpoints (every rank reads them when resuming).
    let writer = checkpointer.as_ref().filter(|_| root);
    let mut tuner = Tuner::new(run.fine_tune, &model)?;
    let monitor = config
        .early_stopping
        .as_ref()
        .map(|e| e.monitor)
        .unwrap_or_default();
    let lower = match monitor {
        Monitor::ValidLoss => true,
        Monitor::ValidMetric => players.lower_metric_is_better(),
    };
    let global_batch = config.batch_size * ranks;
    let n_batches = n_train.div_ceil(global_batch);
    let mut epochs_this_call = 0usize;
    let several = names.len() > 1;

    while !state.finished && state.epochs_done < config.epochs {
        if let Some(p) = run.pause_after
            && epochs_this_call >= p
        {
            break;
        }
        let epoch = state.epochs_done; // 0-based index of the epoch about to run
        let started = Instant::now();
        let lrs: Vec<f64> = (0..names.len()).map(|p| state.lr(p, epoch)).collect();
        model = tuner.begin_epoch(model, epoch);
        let seed = epoch_seed(config.seed, epoch);
        device.seed(match collective {
            // Each rank draws its own dropout masks and noise.
            Some(c) if c.rank() > 0 => derive_seed(seed, c.rank() as u64),
            _ => seed,
        });
        let order = players.epoch_order(config.seed, epoch)?;
        players.begin_epoch(epoch);
        progress.epoch_started(epoch + 1, config.epochs, n_batches);
        // Per player: the sum of its losses weighted by batch size, and the examples seen.
        let mut sums = vec![(0.0f64, 0usize); names.len()];
        let mut cut_short = false;
        for (b, global) in order.chunks(global_batch).enumerate() {
            // Every rank must agree to stop, or the others would wait for it.
            if any(
                collective,
                over_budget(config, state.train_seconds, started),
            ) {
                cut_short = true;
                break;
            }
            let chunk = shard(global, collective.map_or(0, |c| c.rank()), ranks);
            for p in players.turns(epoch * n_batches + b) {
                let Some(optim) = optims.get_mut(p) else {
                    return Err(Error::Invalid(format!(
                        "turn of player {p}, but there are {} players",
                        names.len()
                    )));
                };
                // This rank's mean loss and gradients (none for an empty share), then, in a
                // data-parallel run, the global batch's.
                let (value, grads) = if chunk.is_empty() {
                    (0.0, GradientsParams::new())
                } else {
                    let loss = players.player_loss(&model, p, chunk)?;
                    let value = scalar(loss.clone());
                    (value, players.gradients(&model, p, loss.backward()))
                };
                let (value, grads, examples) = match collective {
                    None => (value, grads, chunk.len()),
                    Some(c) => {
                        let r = all_reduce_gradients(&model, grads, value, chunk.len(), c);
                        (r.loss, r.grads, r.examples)
                    }
                };
                check_finite(value, epoch, b, &state, checkpointer.is_some(), progress)?;
                model = optim.step(tuner.lr(lrs[p]), model, grads);
                model = players.after_step(model, p);
                sums[p].0 += value as f64 * examples as f64;
                sums[p].1 += examples;
            }
            let means = means(&names, &sums);
            progress.step_done(b, means.first().map_or(0.0, |m| m.1));
            if several {
                progress.step_losses(b, &means);
            }
        }

        let evaluated = model.valid();
        let (valid_loss, metric) = match collective {
            Some(c) => players.validate_shared(&evaluated, c)?,
            None => players.validate(&evaluated)?,
        };
        let tracked = players.tracked(&evaluated)?;
        drop(evaluated);
        for w in players.warnings() {
            progress.warning(&w);
        }
        // Rank 0's clock decides the time budget for all.
        let seconds = root_value(collective, started.elapsed().as_secs_f64());
        epochs_this_call += 1;
        let losses = means(&names, &sums);
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: losses.first().map_or(0.0, |m| m.1),
            valid_loss,
            valid_metric: metric,
            lr: lrs[0],
            seconds,
            losses: if several { losses } else { Vec::new() },
            tracked,
        };
        end_epoch(
            &mut state,
            record,
            &EpochEnd {
                config,
                monitor,
                lower,
                cut_short,
                metric_name: players.metric_name(),
                checkpointer: writer,
                progress,
            },
            &model,
            &optims,
        )?;
    }

    finish(model, state, config, writer, resumed_from)
}

/// The device's seed for epoch `epoch` (0-based) of a run seeded with `seed`.
fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    derive_seed(seed, 1_000_000 + epoch as u64)
}

/// [`Error::Invalid`] unless every rank of `collective` starts from the same weights.
fn same_weights<M: Module>(model: &M, collective: &dyn Collective) -> Result<()> {
    let mine = checksum(model);
    let mut all = [mine[0], mine[1], 1.0];
    collective.sum_f64(&mut all);
    let n = all[2];
    let differ = (0..2).any(|i| (all[i] - n * mine[i]).abs() > 1e-9 * all[i].abs().max(1.0));
    if any(Some(collective), differ) {
        return Err(Error::Invalid(
            "the ranks start from different weights: give every rank the same seed, settings and checkpoint".into(),
        ));
    }
    Ok(())
}

/// Each player's mean loss so far (0 for a player that has not stepped).
fn means(names: &[String], sums: &[(f64, usize)]) -> Vec<(String, f64)> {
    names
        .iter()
        .zip(sums)
        .map(|(n, &(s, k))| (n.clone(), s / k.max(1) as f64))
        .collect()
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::{Device, Distribution};
    use strata_optim::{OptimizerConfig, ScheduleConfig};
    use strata_tensor::convert::to_vec;

    use super::*;
    use crate::FitConfig;

    /// A toy game: `a` regresses noisy targets, `b` chases `a`'s output.
    #[derive(Module, Debug)]
    struct Pair {
        a: Linear,
        b: Linear,
    }

    struct Chase {
        /// b steps on every `every`-th batch; never when `None`.
        every: Option<usize>,
        clip: f32,
    }

    impl Players<Pair> for Chase {
        fn names(&self) -> Vec<String> {
            vec!["a".into(), "b".into()]
        }
        fn n_train(&self) -> usize {
            12
        }
        fn turns(&self, batch: usize) -> Vec<usize> {
            if self.every.is_some_and(|e| batch.is_multiple_of(e)) {
                vec![0, 1]
            } else {
                vec![0]
            }
        }
        fn player_loss(&self, m: &Pair, player: usize, idx: &[usize]) -> Result<Tensor<1>> {
            let device = m.a.weight.val().device();
            // Noise from the device's generator: a resumed run must draw the same.
            let x = Tensor::<2>::random([idx.len(), 3], Distribution::Normal(0.0, 1.0), &device);
            let target = x.clone().sum_dim(1);
            let a = m.a.forward(x.clone());
            Ok(match player {
                0 => (a - target).powf_scalar(2.0).mean(),
                _ => (m.b.forward(x) - a).powf_scalar(2.0).mean(),
            })
        }
        fn gradients(&self, m: &Pair, player: usize, grads: Gradients) -> GradientsParams {
            match player {
                0 => GradientsParams::from_grads(grads, &m.a),
                _ => GradientsParams::from_grads(grads, &m.b),
            }
        }
        fn after_step(&self, m: Pair, player: usize) -> Pair {
            if player == 1 {
                let mut m = m;
                m.b.weight =
                    m.b.weight
                        .map(|w| w.clamp(-self.clip, self.clip).detach().require_grad());
                m
            } else {
                m
            }
        }
        fn validate(&self, _: &Pair) -> Result<(f64, f64)> {
            Ok((0.0, 0.0))
        }
        fn metric_name(&self) -> &str {
            "none"
        }
        fn lower_metric_is_better(&self) -> bool {
            true
        }
    }

    fn pair(device: &Device) -> Pair {
        strata_tensor::seed_device(device, 11);
        Pair {
            a: LinearConfig::new(3, 1).init(device),
            b: LinearConfig::new(3, 1).init(device),
        }
    }

    fn weights(m: &Pair) -> (Vec<f32>, Vec<f32>) {
        (to_vec(m.a.weight.val()), to_vec(m.b.weight.val()))
    }

    fn settings() -> Vec<(OptimizerConfig, ScheduleConfig)> {
        let adam = OptimizerConfig {
            lr: 0.05,
            kind: strata_optim::OptimizerKind::by_name("adam").unwrap(),
            ..Default::default()
        };
        let sgd = OptimizerConfig {
            lr: 0.1,
            kind: strata_optim::OptimizerKind::by_name("sgd").unwrap(),
            ..Default::default()
        };
        vec![
            (adam, ScheduleConfig::by_name("cosine").unwrap()),
            (sgd, ScheduleConfig::by_name("constant").unwrap()),
        ]
    }

    #[test]
    fn each_player_moves_only_its_own_weights_on_its_turns() {
        let _serial = crate::serial();
        let device = Device::flex().autodiff();
        let config = FitConfig {
            epochs: 1,
            batch_size: 4,
            progress: false,
            ..Default::default()
        };
        let per = settings();
        let (opt, sch) = &per[0];
        let start = pair(&device);
        let before = weights(&start);
        // b never gets a turn: its weights stay; a's move.
        let never = Chase {
            every: None,
            clip: 10.0,
        };
        let run = Run {
            per_player: &per,
            ..Run::new(opt, sch, &config, device.clone())
        };
        let out = fit_players(start, &never, &run).unwrap();
        let after = weights(&out.model);
        assert_ne!(after.0, before.0);
        assert_eq!(after.1, before.1);
        // b's only mean is of the batches it stepped on: none here.
        assert_eq!(out.history[0].losses[1], ("b".to_string(), 0.0));
        // With turns, b moves and its clipping holds.
        let clipped = Chase {
            every: Some(1),
            clip: 0.01,
        };
        let out = fit_players(pair(&device), &clipped, &run).unwrap();
        assert!(weights(&out.model).1.iter().all(|w| w.abs() <= 0.01));
    }

    #[test]
    fn a_paused_two_player_run_resumes_bit_identically() {
        let _serial = crate::serial();
        let device = Device::flex().autodiff();
        // Final weights in both runs (the checkpointed one would restore its best epoch).
        let config = FitConfig {
            epochs: 4,
            batch_size: 4,
            progress: false,
            restore_best: false,
            ..Default::default()
        };
        let per = settings();
        let (opt, sch) = &per[0];
        let game = Chase {
            every: Some(2),
            clip: 0.5,
        };
        let whole = fit_players(
            pair(&device),
            &game,
            &Run {
                per_player: &per,
                ..Run::new(opt, sch, &config, device.clone())
            },
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let first = fit_players(
            pair(&device),
            &game,
            &Run {
                per_player: &per,
                checkpoint_dir: Some(dir.path()),
                pause_after: Some(2),
                ..Run::new(opt, sch, &config, device.clone())
            },
        )
        .unwrap();
        assert!(!first.finished);
        let files: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        for f in ["model-2.bpk", "optim-2.bpk", "optim1-2.bpk", "state.json"] {
            assert!(files.contains(&f.to_string()), "{f} missing from {files:?}");
        }
        assert!(!files.iter().any(|f| f.ends_with("-1.bpk")), "{files:?}");
        // Another number of players cannot resume this checkpoint.
        let one = [per[0].clone()];
        struct Solo;
        impl Players<Pair> for Solo {
            fn names(&self) -> Vec<String> {
                vec!["a".into()]
            }
            fn n_train(&self) -> usize {
                12
            }
            fn player_loss(&self, m: &Pair, _: usize, _: &[usize]) -> Result<Tensor<1>> {
                Ok(m.a.weight.val().sum())
            }
            fn validate(&self, _: &Pair) -> Result<(f64, f64)> {
                Ok((0.0, 0.0))
            }
            fn metric_name(&self) -> &str {
                "none"
            }
            fn lower_metric_is_better(&self) -> bool {
                true
            }
        }
        let refused = fit_players(
            pair(&device),
            &Solo,
            &Run {
                per_player: &one,
                checkpoint_dir: Some(dir.path()),
                resume: true,
                ..Run::new(opt, sch, &config, device.clone())
            },
        );
        assert!(
            matches!(&refused, Err(Error::Checkpoint { message, .. }) if message.contains("2 optimizers")),
            "{:?}",
            refused.map(|o| o.epochs_run)
        );
        let rest = fit_players(
            pair(&device),
            &game,
            &Run {
                per_player: &per,
                checkpoint_dir: Some(dir.path()),
                resume: true,
                ..Run::new(opt, sch, &config, device.clone())
            },
        )
        .unwrap();
        assert_eq!(rest.resumed_from, Some(2));
        assert_eq!(weights(&rest.model), weights(&whole.model));
        let losses = |o: &FitOutcome<Pair>| -> Vec<Vec<(String, f64)>> {
            o.history.iter().map(|r| r.losses.clone()).collect()
        };
        assert_eq!(losses(&rest), losses(&whole));
    }

    #[test]
    fn settings_for_another_number_of_players_are_refused() {
        let _serial = crate::serial();
        let device = Device::flex().autodiff();
        let config = FitConfig {
            epochs: 1,
            progress: false,
            ..Default::default()
        };
        let per = settings();
        let three = [per[0].clone(), per[1].clone(), per[1].clone()];
        let run = Run {
            per_player: &three,
            ..Run::new(&per[0].0, &per[0].1, &config, device.clone())
        };
        let err = fit_players(
            pair(&device),
            &Chase {
                every: Some(1),
                clip: 1.0,
            },
            &run,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("2 players (a, b) but settings for 3"),
            "{err}"
        );
    }
}
