//! # strata-run
//!
//! Runs as a library: everything the `strata` command does, without it.
//!
//! - [`RunConfig`]: a run as data (data-set spec, model, network sizes, training, optimizer,
//!   schedule, loss, augmentation, transfer), serde and TOML, validated; each model family's
//!   recipe as its defaults ([`RunConfig::defaults_for`]).
//! - [`train`] / [`train_with`]: train, evaluate on the test split and write the run directory
//!   (`config.toml`, `preprocess.json`, `history.csv`, `curves.svg`, `model.safetensors`,
//!   `metrics.json`); resume, pause, and progress reports of your choosing ([`Progress`]).
//! - [`Run::open`]: a finished run back for inference ([`Run::predict`],
//!   [`Run::predict_file`]); [`evaluate`] on its test split or another data set;
//!   [`generate`] text or decodings; [`torch_logits`] of PyTorch weights without a run.
//! - [`FAMILIES`]: the model families, one module each, each saying its names, its data, its
//!   recipe, how to build it and (if not plain supervised learning) how it trains.
//!
//! Train, reload and predict:
//!
//! ```
//! use strata_run::{Run, RunConfig, train};
//!
//! let dir = tempfile::tempdir()?;
//! let mut config = RunConfig::defaults_for("mlp", "iris");
//! config.fit.epochs = 40;
//! config.fit.progress = false;
//! let result = train(&config, dir.path())?;
//! assert!(result.test_metric("accuracy").unwrap() > 0.8, "{}", result.summary);
//!
//! let run = Run::open(dir.path())?;
//! let predictions = run.predict(vec![5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3])?;
//! assert_eq!(predictions.classes(), ["setosa", "virginica"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod attack;
mod compress;
mod config;
mod data;
mod debias;
mod distill;
mod error;
mod evaluate;
mod explain;
mod fairness;
mod family;
mod forecast;
mod generate;
mod language;
pub mod pictures;
mod pipeline;
mod predict;
mod quantize;
pub mod run_dir;
mod shrink;
mod transfer;

pub use attack::{AttackRequest, Attacked, attack};
pub use compress::{Compress, Compressed, compress};
pub use config::{
    AutoencoderSpec, CapsSize, CapsSpec, Freeze, GanSpec, MAX_SIDE, NetworkSpec, RunConfig,
    TransferSpec,
};
pub use data::{Prepared, Preprocess, SeriesPrep, n_outputs, prepare, split_source};
pub use debias::Debias;
pub use distill::Distill;
pub use error::{Error, Result};
pub use evaluate::{
    Evaluated, Run, evaluate, evaluate_fairness, evaluate_perturbed, load_run_config,
};
pub use explain::{ExplainMethod, Explained, explain};
pub use family::{
    AutoencoderRun, Codes, FAMILIES, Family, GanRun, GnnRun, GraphMeta, IwBound, auto_patch,
    autoencoder_config, capsnet_config, cell_kind, family, gan_config, gnn_config, iw_bound,
    network_config, recurrent_config, transformer_width,
};
pub use forecast::{forecast_metrics, prepare_series};
pub use generate::{Generate, generate};
pub use language::{Lm, LmConfig, LoadedLm, load_lm, split_text};
pub use pipeline::{
    Context, Engine, RunResult, TrainOptions, check_devices, metrics_json, summary_line, train,
    train_default, train_with,
};
pub use predict::{Predictions, TorchWeights, predict_file, torch_logits};
pub use quantize::{Granularity, INT8_WEIGHTS, Int8Report, dequantize_file, quantize_file};
pub use strata_train::{Console, Progress, Silent};
pub use transfer::{check_transfer, fine_tune, init_weights, load_torch, run_weights};
