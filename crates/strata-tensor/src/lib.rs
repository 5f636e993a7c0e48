//! # strata-tensor
//!
//! Backends, devices and seeding for Strata. A user picks a backend by name (`--backend`, or
//! the `STRATA_BACKEND` environment variable); this crate maps the name to a burn [`Device`],
//! says whether the backend can run on this machine, and seeds it.
//!
//! ```
//! use strata_tensor::{Backend, seed_device};
//! let backend: Backend = "flex".parse()?;
//! let device = backend.usable_device()?;
//! seed_device(&device, 42);
//! let training_device = device.clone().autodiff();
//! assert!(training_device.is_autodiff());
//! # Ok::<(), strata_tensor::Error>(())
//! ```
//!
//! [`Device`]: burn::tensor::Device

mod backend;
pub mod compare;
pub mod convert;
mod error;
pub mod require;
mod seed;
mod target;

pub use backend::{BACKEND_ENV, Backend, BackendStatus, backends, panic_message};
pub use error::{Error, Result};
pub use seed::{derive_seed, seed_device};
pub use target::TargetBatch;
