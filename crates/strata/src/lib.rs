//! # strata
//!
//! A deep-learning toolkit on [burn](https://burn.dev): standard architectures, trained,
//! evaluated and shipped, on CPU (flex, ndarray) and GPU (wgpu) with the same code.
//!
//! This crate re-exports the workspace's crates under one name:
//!
//! | module | crate | what |
//! |---|---|---|
//! | [`tensor`] | `strata-tensor` | backends, devices, seeding |
//! | [`kernels`] | `strata-kernels` | Strata's own CPU kernels (convolution, batch norm, Adam) |
//! | [`layers`] | `strata-layers` | building blocks burn lacks |
//! | [`arch`] | `strata-arch` | complete architectures |
//! | [`loss`] | `strata-loss` | losses and the custom-loss trait |
//! | [`optim`] | `strata-optim` | optimizers, schedules, clipping |
//! | [`data`] | `strata-data` | data sets, splits, k-fold, batchers |
//! | [`metrics`] | `strata-metrics` | classification and regression metrics |
//! | [`train`] | `strata-train` | the training runner |
//! | [`run`] | `strata-run` | runs: configs, the family registry, train / evaluate / predict |
//!
//! ```
//! use strata::arch::CnnConfig;
//! use strata::data::digits;
//! use strata::tensor::Backend;
//! let device = Backend::Flex.usable_device()?;
//! let data = digits();
//! let [c, h, w] = data.image_shape.unwrap();
//! let cnn = CnnConfig::new(c, h, w, 10).init(&device)?;
//! let batch = strata::data::Batcher::new(device).batch(&data, &[0, 1]);
//! assert_eq!(cnn.forward_flat(batch.inputs).dims(), [2, 10]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use burn;
pub use strata_arch as arch;
pub use strata_data as data;
pub use strata_kernels as kernels;
pub use strata_layers as layers;
pub use strata_loss as loss;
pub use strata_metrics as metrics;
pub use strata_optim as optim;
pub use strata_run as run;
pub use strata_tensor as tensor;
pub use strata_train as train;

/// The Rust examples of the README and of `docs/*.md`, compiled and run as doctests, so a
/// guide's example cannot drift from the API.
#[cfg(doctest)]
pub mod guides {
    #[doc = include_str!("../../../README.md")]
    pub struct Readme;
    #[doc = include_str!("../../../docs/mlp.md")]
    pub struct Mlp;
    #[doc = include_str!("../../../docs/cnn.md")]
    pub struct Cnn;
    #[doc = include_str!("../../../docs/recurrent.md")]
    pub struct Recurrent;
    #[doc = include_str!("../../../docs/transformer.md")]
    pub struct Transformer;
    #[doc = include_str!("../../../docs/deep-cnn.md")]
    pub struct DeepCnn;
    #[doc = include_str!("../../../docs/architecture.md")]
    pub struct Architecture;
    #[doc = include_str!("../../../docs/performance.md")]
    pub struct Performance;
    #[doc = include_str!("../../../docs/results.md")]
    pub struct Results;
    #[doc = include_str!("../../../docs/transfer.md")]
    pub struct Transfer;
    #[doc = include_str!("../../../docs/autoencoder.md")]
    pub struct Autoencoder;
    #[doc = include_str!("../../../docs/gnn.md")]
    pub struct Gnn;
    #[doc = include_str!("../../../docs/gan.md")]
    pub struct Gan;
    #[doc = include_str!("../../../docs/capsules.md")]
    pub struct Capsules;
    #[doc = include_str!("../../../docs/robustness.md")]
    pub struct Robustness;
    #[doc = include_str!("../../../docs/fairness.md")]
    pub struct Fairness;
    #[doc = include_str!("../../../docs/compression.md")]
    pub struct Compression;
    /// Its example needs MPI: compiled and run in builds with the `mpi` feature (CI's).
    #[cfg(feature = "mpi")]
    #[doc = include_str!("../../../docs/distributed.md")]
    pub struct Distributed;
}
