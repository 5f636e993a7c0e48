//! Progress reports of a training run, as a trait the caller chooses: [`Console`] (a bar per
//! epoch and one line per epoch on standard error, what the `strata` command shows),
//! [`Silent`], or your own (a GUI, a log, a notebook).
//!
//! ```
//! use std::cell::Cell;
//! use strata_train::{EpochRecord, Progress};
//!
//! /// Counts epochs and keeps the best validation loss.
//! #[derive(Default)]
//! struct Tally { epochs: Cell<usize>, best: Cell<f64> }
//!
//! impl Progress for Tally {
//!     fn epoch_done(&self, record: &EpochRecord, _epochs: usize, _metric: &str, best: bool) {
//!         self.epochs.set(self.epochs.get() + 1);
//!         if best {
//!             self.best.set(record.valid_loss);
//!         }
//!     }
//! }
//! let tally = Tally::default();
//! let record = EpochRecord { epoch: 1, train_loss: 0.9, valid_loss: 0.7, valid_metric: 0.8, lr: 0.01, seconds: 1.0, losses: vec![], tracked: vec![] };
//! tally.epoch_done(&record, 10, "acc", true);
//! assert_eq!((tally.epochs.get(), tally.best.get()), (1, 0.7));
//! ```

use std::cell::RefCell;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::history::EpochRecord;

/// What a run tells about itself while it goes. Every method does nothing by default but
/// [`warning`](Progress::warning), which prints to standard error.
pub trait Progress {
    /// Epoch `epoch` (1-based) of `epochs` starts, with `steps` training steps.
    fn epoch_started(&self, _epoch: usize, _epochs: usize, _steps: usize) {}

    /// Step `step` (0-based) of the epoch is done; `mean_loss` is the epoch's mean training
    /// loss so far.
    fn step_done(&self, _step: usize, _mean_loss: f64) {}

    /// Step `step` (0-based) of a run of several players is done: each player's mean loss in
    /// the epoch so far, by name (after [`step_done`](Progress::step_done)).
    fn step_losses(&self, _step: usize, _losses: &[(String, f64)]) {}

    /// The epoch is done: its record, the number of epochs asked for, the validation metric's
    /// short name (`acc`, `rmse`, `bpc`, `exact`) and whether the epoch is the best so far.
    fn epoch_done(&self, _record: &EpochRecord, _epochs: usize, _metric: &str, _best: bool) {}

    /// The epoch under way ended with an error (a diverged loss).
    fn interrupted(&self) {}

    /// A line about the run: what trains on what, resuming, the fold under way.
    fn note(&self, _text: &str) {}

    /// Something to know even when the progress is not wanted (a data set read in a way the
    /// user may not expect).
    fn warning(&self, text: &str) {
        eprintln!("{text}");
    }
}

/// `discriminator 0.6931  generator 0.6931`.
fn players_line(losses: &[(String, f64)]) -> String {
    losses
        .iter()
        .map(|(n, v)| format!("{n} {v:.4}"))
        .collect::<Vec<_>>()
        .join("  ")
}

/// No reports (warnings still go to standard error).
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {}

/// A progress bar per epoch and one line per epoch on standard error.
#[derive(Debug, Default)]
pub struct Console {
    bar: RefCell<Option<ProgressBar>>,
}

impl Progress for Console {
    fn epoch_started(&self, epoch: usize, epochs: usize, steps: usize) {
        let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix} [{bar:30.cyan/blue}] {pos}/{len} {msg} ({elapsed}<{eta})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(format!("epoch {epoch}/{epochs}"));
        *self.bar.borrow_mut() = Some(bar);
    }

    fn step_done(&self, step: usize, mean_loss: f64) {
        if let Some(bar) = self.bar.borrow().as_ref() {
            bar.inc(1);
            if step.is_multiple_of(10) {
                bar.set_message(format!("loss {mean_loss:.4}"));
            }
        }
    }

    fn step_losses(&self, step: usize, losses: &[(String, f64)]) {
        if let Some(bar) = self.bar.borrow().as_ref()
            && step.is_multiple_of(10)
        {
            bar.set_message(players_line(losses));
        }
    }

    fn epoch_done(&self, record: &EpochRecord, epochs: usize, metric: &str, best: bool) {
        if let Some(bar) = self.bar.borrow_mut().take() {
            bar.finish_and_clear();
        }
        let train = if record.losses.is_empty() {
            format!("train loss {:.4}", record.train_loss)
        } else {
            players_line(&record.losses)
        };
        let tracked: String = record
            .tracked
            .iter()
            .map(|(name, v)| format!("  valid {} {v:.4}", name.replace('_', " ")))
            .collect();
        eprintln!(
            "epoch {:>3}/{}  {}  valid loss {:.4}  valid {} {:.4}{}  lr {:.2e}  {:.1}s{}",
            record.epoch,
            epochs,
            train,
            record.valid_loss,
            metric,
            record.valid_metric,
            tracked,
            record.lr,
            record.seconds,
            if best { "  *" } else { "" }
        );
    }

    fn interrupted(&self) {
        if let Some(bar) = self.bar.borrow_mut().take() {
            bar.abandon();
        }
    }

    fn note(&self, text: &str) {
        eprintln!("{text}");
    }
}
