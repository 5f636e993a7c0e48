//! # strata-train
//!
//! The Strata training runner. [`fit`] trains any burn module with any [`Loss`] and optimizer:
//! validation each epoch, early stopping on a chosen metric, a progress bar, checkpoints
//! written atomically, resume from the last checkpoint (a resumed run repeats an uninterrupted
//! one on the same backend and seed), a time budget, and a clear error when the loss diverges.
//! [`fit_objective`] runs the same loop on any [`Objective`] (a batch loss and a validation
//! step: sequence-to-sequence models, autoencoders). [`fit_players`] trains several optimizers
//! in turn on one model (a GAN's discriminator and generator). [`fit_tbptt`] trains language models the
//! same way by truncated back-propagation through time. [`write_csv`] and [`write_curves_svg`] record the history.
//! [`load_pretrained`] and [`FineTune`] fine-tune pretrained weights (partial loading with a
//! report, frozen parts that thaw later, a smaller learning rate for the backbone).
//!
//! It knows no architecture: the model's forward pass is a closure.
//!
//! ```
//! use burn::tensor::Device;
//! use strata_arch::MlpConfig;
//! use strata_data::{iris, stratified_split, Standardizer};
//! use strata_loss::LossConfig;
//! use strata_optim::{OptimizerConfig, ScheduleConfig};
//! use strata_train::{fit, evaluate, Fit, FitConfig, Report, Run};
//!
//! let data = iris();
//! let split = stratified_split(&data.strata(), 0.2, 0.2, 7)?;
//! let (mut train, mut valid) = (data.subset(&split.train), data.subset(&split.valid));
//! let scaler = Standardizer::fit(&train)?;
//! scaler.transform(&mut train)?;
//! scaler.transform(&mut valid)?;
//!
//! let device = Device::flex().autodiff();
//! device.seed(7);
//! let model = MlpConfig::new(4, 3).with_d_hidden(vec![16]).init(&device)?;
//! let loss = LossConfig::default().init(&device)?;
//! let optimizer = OptimizerConfig { lr: 0.01, ..Default::default() };
//! let config = FitConfig { epochs: 30, batch_size: 16, progress: false, ..Default::default() };
//! let outcome = fit(model, &train, &valid, &Fit {
//!     forward: |m: &strata_arch::Mlp, x| m.forward(x),
//!     loss: loss.as_ref(),
//!     augment: None,
//!     run: Run::new(&optimizer, &ScheduleConfig::default(), &config, device.clone()),
//! })?;
//! assert_eq!(outcome.history.len(), 30);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Loss`]: strata_loss::Loss

mod atomic;
mod attack;
mod checkpoint;
mod config;
mod distributed;
mod error;
mod evaluate;
mod explain;
mod history;
mod objective;
mod players;
mod progress;
mod prune;
mod runner;
mod supervised;
mod tbptt;
mod transfer;

pub use atomic::{FAULT_ENV, write_atomic};
pub use attack::{
    Attack, Bounds, Method as AttackMethod, Norm, Robustness, perturb, perturb_from,
    predicted_classes, robust_accuracy,
};
pub use checkpoint::{Checkpointer, TrainState, load_model, save_model};
pub use config::{EarlyStopping, FitConfig, Monitor};
#[cfg(feature = "mpi")]
pub use distributed::Mpi;
pub use distributed::{Collective, Reduced, all_reduce_gradients, shard, shard_range};
pub use error::{Error, Result};
pub use evaluate::{Evaluation, Report, evaluate, evaluate_shared, predict, probabilities};
pub use explain::{
    Integrated, attention_rollout, gauss_legendre, grad_cam, integrated_gradients, saliency,
    smoothgrad,
};
pub use history::{EpochRecord, write_csv, write_curves_svg};
pub use objective::{Objective, Run};
pub use players::{Players, fit_players};
pub use progress::{Console, Progress, Silent};
pub use prune::{Masks, zeros};
pub use runner::{FitOutcome, fit_objective};
/// What [`Fit`] and [`Run`] take, from the crates that define them, so that a user of this
/// crate alone finds them here.
pub use strata_data::{Augment, Dataset};
pub use strata_loss::{Loss, LossConfig};
pub use strata_optim::{OptimizerConfig, ScheduleConfig};
pub use supervised::{Fit, fit, fit_tracked, fit_with_loss};
pub use tbptt::{EVAL_CHUNK, EVAL_STREAMS, Tbptt, evaluate_tokens, fit_tbptt};
pub use transfer::{FineTune, Layout, LoadReport, Pretrained, Skipped, load_pretrained};

/// Serialises the tests that seed the shared CPU device and draw from it.
#[cfg(test)]
pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}
