//! # strata-optim
//!
//! Optimizer, learning-rate schedule and gradient-clipping configs for Strata. One serde
//! [`OptimizerConfig`] builds burn's SGD (momentum, Nesterov), Adam, AdamW or RMSprop with
//! weight decay and clipping by value or norm; [`ScheduleConfig`] gives constant, step and
//! cosine schedules with linear warm-up, and reduce-on-plateau, which burn lacks.
//!
//! ```
//! use strata_optim::{OptimizerConfig, OptimizerKind, ScheduleConfig, Clipping};
//! let config = OptimizerConfig {
//!     kind: OptimizerKind::by_name("sgd")?,
//!     lr: 0.1,
//!     weight_decay: 5e-4,
//!     clip: Some(Clipping::Norm(1.0)),
//! };
//! let _optimizer = config.build()?;
//! let schedule = ScheduleConfig::by_name("cosine")?.start(config.lr, 20)?;
//! assert_eq!(schedule.lr(0), 0.1);
//! assert!(schedule.lr(19) < 0.01);
//! # Ok::<(), strata_optim::Error>(())
//! ```

mod error;
pub mod fused;
mod optimizer;
mod schedule;

pub use burn::optim::ModuleOptimizer;
pub use error::{Error, Result};
pub use fused::{FusedAdam, FusedAdamW, FusedSgd, FusedSgdState};
pub use optimizer::{Clipping, OptimizerConfig, OptimizerKind};
pub use schedule::{PlateauState, Schedule, ScheduleConfig, ScheduleKind};
