//! # strata-loss
//!
//! Losses for Strata: burn's cross-entropy (class weights, label smoothing), MSE and binary
//! cross-entropy behind one [`Loss`] trait, plus the focal loss burn lacks. [`LossConfig`] is
//! the serde form used by configs and the CLI; implement [`Loss`] for your own. [`AdversarialLoss`]
//! holds the two players' losses of a GAN (BCE, Wasserstein, hinge); [`MarginLoss`] is a capsule
//! network's.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use strata_loss::LossConfig;
//! use strata_tensor::{TargetBatch, convert::classes};
//! let device = Device::flex();
//! let loss = LossConfig::Focal { gamma: 2.0, alpha: None }.init(&device)?;
//! let logits = Tensor::<2>::from_floats([[3.0, 0.0], [0.0, 3.0]], &device);
//! let value = loss.forward(logits, &TargetBatch::Classes(classes(&[0, 1], &device)))?;
//! assert!(strata_tensor::convert::scalar(value) < 0.01);
//! # Ok::<(), strata_loss::Error>(())
//! ```

mod adversarial;
mod elbo;
mod error;
mod focal;
mod loss;
mod margin;

pub use adversarial::AdversarialLoss;
pub use elbo::{
    bernoulli_nll, bernoulli_nll_rows, gaussian_kl, gaussian_kl_rows, gaussian_log_density,
    gaussian_nll, gaussian_nll_rows,
};
pub use error::{Error, Result};
pub use focal::FocalLoss;
pub use loss::{Loss, LossConfig};
pub use margin::MarginLoss;
