//! The model families, one module each, and their registry, [`FAMILIES`].
//!
//! A family says in one place which model names it answers to, which data it trains on, its
//! default recipe, how its network is built from a run's settings and the data's sizes, and
//! (when it is not plain supervised learning, forecasting or language modelling) its own
//! training, evaluation and generation. Nothing outside its module asks which family a model
//! belongs to by its name.
//!
//! ```
//! use strata_run::family;
//! let lstm = family("lstm")?;
//! assert_eq!(lstm.name(), "recurrent");
//! assert_eq!(lstm.default_dataset("lstm"), "airline");
//! assert!(family("resnet20")?.has_backbone());
//! assert!(family("no-such-model").is_err());
//! # Ok::<(), strata_run::Error>(())
//! ```
//!
//! Adding a family: see "Adding a family" in docs/architecture.md.

mod autoencoder;
mod capsnet;
mod cnn;
mod gan;
mod gnn;
mod mlp;
mod recurrent;
mod resnet;
mod seq2seq;
mod transformer;
mod vgg;

use std::path::Path;

use strata_arch::{Network, NetworkConfig};
use strata_data::{Encoding, Source};
use strata_train::FitOutcome;

use crate::config::RunConfig;
use crate::data::{Prepared, Preprocess};
use crate::error::{Error, Result};
use crate::generate::Generate;
use crate::language::LmConfig;
use crate::pipeline::{self, Context, RunResult};

pub use autoencoder::{AutoencoderRun, Codes, IwBound, autoencoder_config, iw_bound};
pub use capsnet::capsnet_config;
pub use gan::{GanRun, gan_config};
pub use gnn::{GnnRun, GraphMeta, gnn_config};
pub use recurrent::{cell_kind, recurrent_config};
pub use transformer::{auto_patch, transformer_width};

/// What every model family provides. Only [`name`](Family::name),
/// [`models`](Family::models), [`has`](Family::has) and [`network`](Family::network) have no
/// default.
pub trait Family: Sync {
    /// The family's name (`mlp`, `recurrent`, `resnet`, ...).
    fn name(&self) -> &'static str;

    /// Its models as `strata list` shows them: a name (or a pattern of names) and what it is.
    fn models(&self) -> &'static [(&'static str, &'static str)];

    /// Whether `model` is one of this family's.
    fn has(&self, model: &str) -> bool;

    /// The data set `model` trains on when none is named.
    fn default_dataset(&self, _model: &str) -> &'static str {
        "digits"
    }

    /// Turns the settings every model shares into this family's recipe for `model` on
    /// `dataset` (optimizer, schedule, sizes, epochs).
    fn recipe(&self, _model: &str, _dataset: &str, _config: &mut RunConfig) {}

    /// How the categorical columns of a table are given to `model`.
    fn encoding(&self, _model: &str) -> Encoding {
        Encoding::OneHot
    }

    /// Whether its models have a backbone and a head: they load torchvision's weights
    /// (`--init-from`) and can be frozen or tuned in parts.
    fn has_backbone(&self) -> bool {
        false
    }

    /// The network of `model` in torchvision's layout for its PyTorch weights, with no run
    /// behind it: `in_channels`, `n_classes`, images of `height` x `width`.
    ///
    /// # Errors
    /// A family that does not read torchvision's weights.
    fn torchvision_network(
        &self,
        model: &str,
        _in_channels: usize,
        _n_classes: usize,
        _image: [usize; 2],
    ) -> Result<NetworkConfig> {
        Err(Error::Usage(format!(
            "--weights loads torchvision's layout: --model resnet18/34/50/101, resnet20/32/56 or vgg11/13/16/19[_bn], not `{model}`"
        )))
    }

    /// Whether `model` is a character language model, trained on text.
    fn reads_text(&self, _model: &str) -> bool {
        false
    }

    /// Whether `config.model` forecasts series, checked before the series is windowed.
    ///
    /// # Errors
    /// A model that does not forecast, saying what to use.
    fn check_series(&self, _config: &RunConfig) -> Result<()> {
        Ok(())
    }

    /// What a run of these settings should tell its user before it starts (a data set read in
    /// a way they may not expect).
    fn warnings(&self, _config: &RunConfig) -> Vec<String> {
        Vec::new()
    }

    /// Whether its runs can train adversarially (`--adversarial`): those that train through
    /// the supervised pipeline on samples; families with training of their own say no.
    fn adversarial_training(&self) -> bool {
        true
    }

    /// Checks of a run's settings that are this family's own.
    ///
    /// # Errors
    /// The first invalid value.
    fn validate(&self, _config: &RunConfig) -> Result<()> {
        Ok(())
    }

    /// The network for rows of samples (classification, regression) or for windows of a
    /// series (when `pre.series` is set), with `n_out` outputs.
    ///
    /// # Errors
    /// Data this family does not read, or invalid sizes.
    fn network(&self, config: &RunConfig, pre: &Preprocess, n_out: usize) -> Result<NetworkConfig>;

    /// The character language model over a vocabulary of `vocab` characters.
    ///
    /// # Errors
    /// A family that does not model text, or invalid sizes.
    fn language_model(&self, config: &RunConfig, _vocab: usize) -> Result<LmConfig> {
        Err(not_text(config))
    }

    /// Trains a run on `source` and writes its directory: by default supervised learning on
    /// samples, forecasting on a series, a language model on text.
    ///
    /// # Errors
    /// Data the family does not train on, invalid settings, training and I/O failures.
    fn train(&self, ctx: &Context<'_>, source: Source) -> Result<RunResult> {
        pipeline::train_default(self, ctx, source)
    }

    /// Trains `model` in the supervised pipeline on `prepared`'s training split, validating
    /// on its validation split, as `run` says: by default [`strata_train::fit`] on the
    /// network's outputs with the run's loss and augmentation.
    ///
    /// # Errors
    /// Invalid settings, a loss that rejects the data, training and checkpoint failures.
    fn fit_samples(
        &self,
        model: Network,
        prepared: &Prepared,
        config: &RunConfig,
        run: strata_train::Run<'_>,
    ) -> Result<FitOutcome<Network>> {
        pipeline::supervised::fit_rows(model, prepared, config, run, None)
    }

    /// What a finished supervised run of this family writes besides its model and metrics
    /// (pictures) into `out`, and the entries it adds to `metrics.json`; by default nothing.
    ///
    /// # Errors
    /// I/O errors.
    fn finish_samples(
        &self,
        _model: &Network,
        _config: &RunConfig,
        _prepared: &Prepared,
        _out: &Path,
    ) -> Result<serde_json::Map<String, serde_json::Value>> {
        Ok(serde_json::Map::new())
    }

    /// Evaluates the finished run in `dir` on its test split, or on `dataset`.
    ///
    /// # Errors
    /// A directory that is not a finished run, data that does not fit the model.
    fn evaluate(
        &self,
        dir: &Path,
        backend: Option<&str>,
        dataset: Option<&str>,
    ) -> Result<crate::evaluate::Evaluated> {
        crate::evaluate::evaluate_default(dir, backend, dataset)
    }

    /// Generates from the finished run in `dir` (text from a language model).
    ///
    /// # Errors
    /// A run that does not generate, or a bad request.
    fn generate(&self, dir: &Path, backend: Option<&str>, request: &Generate) -> Result<String> {
        crate::generate::generate_text(dir, backend, request)
    }

    /// Predictions of the finished run in `dir` for the rows of `input` ([`crate::predict_file`]);
    /// by default [`Run::predict_file`](crate::Run::predict_file), which refuses a `class`.
    ///
    /// # Errors
    /// A directory that is not a finished run, an unreadable or malformed file.
    fn predict(
        &self,
        dir: &Path,
        backend: Option<&str>,
        input: &Path,
        class: Option<&str>,
    ) -> Result<crate::Predictions> {
        refuse_class(class)?;
        crate::Run::open_on(dir, backend)?.predict_file(input)
    }
}

/// The config, preprocessing and device of the finished run in `dir` (on `backend`, or its
/// own), checked to be one of `family`'s models (`what` names them in the error).
///
/// # Errors
/// A directory that is not a run, a run of another family, an unusable backend.
pub(crate) fn open_family_run(
    dir: &Path,
    backend: Option<&str>,
    family: &dyn Family,
    what: &str,
) -> Result<(RunConfig, crate::data::Preprocess, burn::tensor::Device)> {
    let config = crate::evaluate::load_run_config(dir, backend)?;
    if !family.has(&config.model) {
        return Err(Error::Usage(format!(
            "{}: model {} is not {what}",
            dir.display(),
            config.model
        )));
    }
    let preprocess = crate::data::Preprocess::load(dir)?;
    let device = config.backend.usable_device()?;
    Ok((config, preprocess, device))
}

/// Refuses `--class` (a conditional VAE's) for a run that has no classes to condition on.
///
/// # Errors
/// When a class is given.
pub(crate) fn refuse_class(class: Option<&str>) -> Result<()> {
    match class {
        Some(_) => Err(Error::Usage(
            "--class applies to a conditional VAE's or GAN's run".into(),
        )),
        None => Ok(()),
    }
}

/// The error of a family asked to model text.
pub(crate) fn not_text(config: &RunConfig) -> Error {
    Error::Usage(format!(
        "`{}` is text: train a character language model with --model rnn, lstm, gru or transformer-lm, not {}",
        config.dataset, config.model
    ))
}

/// Every family, in the order `strata list` shows them.
pub static FAMILIES: [&dyn Family; 11] = [
    &mlp::Mlp,
    &cnn::Cnn,
    &recurrent::Recurrent,
    &transformer::Transformer,
    &seq2seq::Seq2seq,
    &resnet::ResNet,
    &vgg::Vgg,
    &autoencoder::Autoencoders,
    &gnn::Gnns,
    &gan::Gans,
    &capsnet::Capsules,
];

/// The family of `model`.
///
/// # Errors
/// A name no family has.
pub fn family(model: &str) -> Result<&'static dyn Family> {
    FAMILIES
        .iter()
        .copied()
        .find(|f| f.has(model))
        .ok_or_else(|| {
            let names: Vec<&str> = FAMILIES
                .iter()
                .flat_map(|f| f.models())
                .map(|(name, _)| *name)
                .collect();
            Error::Usage(format!(
                "unknown model `{model}`: expected one of {} (see `strata list`)",
                names.join(", ")
            ))
        })
}

/// The network `config` asks for on data described by `pre`, with `n_out` outputs, validated.
///
/// # Errors
/// An unknown model, data its family does not read, invalid sizes.
pub fn network_config(config: &RunConfig, pre: &Preprocess, n_out: usize) -> Result<NetworkConfig> {
    let net = family(&config.model)?.network(config, pre, n_out)?;
    net.validate()?;
    Ok(net)
}

/// `[channels, height, width]` of image data, or an error saying that `model` needs images.
pub(crate) fn image_shape(model: &str, config: &RunConfig, pre: &Preprocess) -> Result<[usize; 3]> {
    pre.image_shape.ok_or_else(|| {
        Error::Usage(format!(
            "model {model} needs image data (digits, fashion-mnist, csv:PATH with --image-shape); `{}` is not images",
            config.dataset
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_model_name_has_exactly_one_family() {
        let names = [
            "mlp",
            "cnn",
            "rnn",
            "rnn-relu",
            "lstm",
            "gru",
            "transformer-lm",
            "vit",
            "tab-transformer",
            "seq2seq",
            "ae",
            "conv-ae",
            "dae",
            "sparse-ae",
            "vae",
            "conv-vae",
            "cvae",
            "gcn",
            "sage",
            "gat",
            "gin",
            "graph-mlp",
            "gan",
            "dcgan",
            "cgan",
            "wgan",
            "sngan",
            "capsnet",
        ];
        let all = names
            .iter()
            .copied()
            .chain(strata_arch::RESNETS)
            .chain(strata_arch::VGGS);
        for m in all {
            let owners = FAMILIES.iter().filter(|f| f.has(m)).count();
            assert_eq!(owners, 1, "{m} belongs to {owners} families");
        }
        assert!(family("cnn2").is_err());
        let listed: usize = FAMILIES.iter().map(|f| f.models().len()).sum();
        assert_eq!(listed, 30, "lines of `strata list`");
    }
}
