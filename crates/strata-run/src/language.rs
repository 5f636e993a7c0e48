//! Character language-model runs: a vocabulary of the text, a contiguous split, training by
//! truncated back-propagation through time, and test loss in nats and bits per character.

use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;
use serde_json::json;
use strata_arch::{
    CharLm, CharLmConfig, RecurrentState, Sampling, TransformerLm, TransformerLmConfig,
};
use strata_data::{CharVocab, TextSplit, contiguous_split};
use strata_tensor::seed_device;
use strata_train::{EVAL_CHUNK, EVAL_STREAMS, FitOutcome, Tbptt, evaluate_tokens, fit_tbptt};

use crate::config::RunConfig;
use crate::data::Preprocess;
use crate::error::{Error, Result};
use crate::evaluate::load_run_config;
use crate::family::{Family, family, not_text};
use crate::pipeline::{Context, RunResult};
use crate::run_dir::{
    finished_weights, load_weights, run_line, run_summary, save_safetensors, write_history,
    write_metrics,
};

/// Validation and test fractions of a text (contiguous, at its end).
pub const TEXT_VALID: f64 = 0.02;
/// See [`TEXT_VALID`].
pub const TEXT_TEST: f64 = 0.02;

/// The vocabulary and split of a text.
///
/// # Errors
/// A text too short to split.
pub fn split_text(text: &str) -> Result<(CharVocab, TextSplit)> {
    let vocab = CharVocab::from_text(text);
    let ids = vocab.encode(text)?;
    Ok((vocab, contiguous_split(&ids, TEXT_VALID, TEXT_TEST)?))
}

/// The config of a character language model of either family.
#[derive(Debug, Clone)]
pub enum LmConfig {
    /// Embedding, recurrent layers, linear head.
    Recurrent(CharLmConfig),
    /// Decoder-only transformer.
    Transformer(TransformerLmConfig),
}

/// A character language model of either family.
// Built once per run and never moved in a loop: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Lm {
    /// Embedding, recurrent layers, linear head.
    Recurrent(CharLm),
    /// Decoder-only transformer.
    Transformer(TransformerLm),
}

/// The recurrent model's forward pass as the trainer takes it.
pub fn lm_forward(
    m: &CharLm,
    x: burn::tensor::Tensor<2, burn::tensor::Int>,
    s: Option<RecurrentState>,
) -> (burn::tensor::Tensor<3>, RecurrentState) {
    m.forward(x, s)
}

/// The transformer's forward pass as the trainer takes it: no state crosses chunks.
pub fn transformer_forward(
    m: &TransformerLm,
    x: burn::tensor::Tensor<2, burn::tensor::Int>,
    _: Option<()>,
) -> (burn::tensor::Tensor<3>, ()) {
    (m.forward(x), ())
}

impl Lm {
    /// Mean loss (nats per character) on `tokens`: recurrent models read 128 streams in chunks
    /// of 256 with the state carried; transformers read chunks of their context, each on its
    /// own (the first characters of a chunk see little context, as in training).
    ///
    /// # Errors
    /// Too little text.
    pub fn eval_nats(&self, tokens: &[usize], device: &Device) -> Result<f64> {
        Ok(match self {
            Lm::Recurrent(m) => {
                evaluate_tokens(m, &lm_forward, tokens, EVAL_STREAMS, EVAL_CHUNK, device)?
            }
            Lm::Transformer(m) => evaluate_tokens(
                m,
                &transformer_forward,
                tokens,
                EVAL_STREAMS,
                m.context,
                device,
            )?,
        })
    }

    /// Generates text after `prompt` (the transformer reuses its key-value cache).
    ///
    /// # Errors
    /// Bad prompt indices or sampling settings.
    pub fn generate(
        &self,
        prompt: &[usize],
        sampling: &Sampling,
        device: &Device,
    ) -> Result<Vec<usize>> {
        Ok(match self {
            Lm::Recurrent(m) => m.generate(prompt, sampling, device)?,
            Lm::Transformer(m) => m.generate(prompt, sampling, true, device)?,
        })
    }
}

/// Trains `family`'s character language model on `text` and writes the run directory.
///
/// # Errors
/// A model that is not a language model, invalid settings, training and I/O failures.
pub(crate) fn train<F: Family + ?Sized>(
    family: &F,
    ctx: &Context<'_>,
    text: &str,
) -> Result<RunResult> {
    let (config, device, out) = (ctx.config, &ctx.device, ctx.out);
    if !family.reads_text(&config.model) {
        return Err(not_text(config));
    }
    if config.network.seq_len == 0 {
        return Err(Error::Usage(
            "a language model needs --seq-len >= 1 (steps of back-propagation, or the transformer's context)".into(),
        ));
    }
    let (vocab, split) = split_text(text)?;
    // Check the model's settings before writing anything.
    let lm_config = family.language_model(config, vocab.len())?;
    let preprocess = Preprocess {
        n_features: config.network.seq_len,
        image_shape: None,
        class_names: None,
        standardizer: None,
        series: None,
        vocab: Some(vocab.clone()),
        table: None,
    };
    ctx.open_run_dir(config, Some(&preprocess))?;
    ctx.progress.note(&format!(
            "language model {} on {}: {} characters ({} distinct), {} train / {} valid / {} test, {} streams x {} steps, {} on {}",
            config.model,
            config.dataset,
            text.chars().count(),
            vocab.len(),
            split.train.len(),
            split.valid.len(),
            split.test.len(),
            config.fit.batch_size,
            config.network.seq_len,
            config.optimizer.kind.name(),
            config.backend
        ));
    let ad = device.clone().autodiff();
    seed_device(&ad, config.fit.seed);
    let ckpt = out.join("checkpoints");
    let lm_run = LmRun {
        ctx,
        split: &split,
        device: ad.clone(),
        checkpoint_dir: &ckpt,
    };
    let (lm, outcome) = match lm_config {
        LmConfig::Transformer(c) => {
            let model = c.init(&ad)?;
            let context = model.context;
            let (model, o) = lm_run.fit(model, transformer_forward, |s: ()| s, context)?;
            (Lm::Transformer(model.valid()), o)
        }
        LmConfig::Recurrent(c) => {
            let model = c.init(&ad)?;
            let (model, o) = lm_run.fit(model, lm_forward, RecurrentState::detach, EVAL_CHUNK)?;
            (Lm::Recurrent(model.valid()), o)
        }
    };
    if !write_history(config, out, "bits_per_char", &outcome)? {
        return Ok(RunResult::paused(out, outcome.epochs_run));
    }
    match &lm {
        Lm::Recurrent(m) => save_safetensors(m, &out.join("model.safetensors"))?,
        Lm::Transformer(m) => save_safetensors(m, &out.join("model.safetensors"))?,
    }
    let test = lm.eval_nats(&split.test, device)?;
    let valid = lm.eval_nats(&split.valid, device)?;
    let ln2 = std::f64::consts::LN_2;
    let mut metrics = run_summary(config, &outcome);
    metrics["vocab_size"] = json!(vocab.len());
    metrics["test"] =
        json!({"loss_nats": test, "bits_per_char": test / ln2, "n_chars": split.test.len()});
    metrics["valid"] =
        json!({"loss_nats": valid, "bits_per_char": valid / ln2, "n_chars": split.valid.len()});
    write_metrics(out, &metrics)?;
    let summary = format!(
        "test loss {test:.4} nats/char ({:.4} bits/char) — {}",
        test / ln2,
        run_line(config, &outcome)
    );
    Ok(RunResult::finished(out, &outcome, metrics, summary))
}

/// What training a language model of either family needs besides the model.
struct LmRun<'a> {
    ctx: &'a Context<'a>,
    split: &'a TextSplit,
    device: Device,
    checkpoint_dir: &'a Path,
}

impl LmRun<'_> {
    /// Trains `model` by truncated back-propagation; returns it and the rest of the outcome.
    fn fit<M, S, F, D>(
        &self,
        model: M,
        forward: F,
        detach: D,
        eval_chunk: usize,
    ) -> Result<(M, FitOutcome<()>)>
    where
        M: burn::module::Module,
        F: Fn(
            &M,
            burn::tensor::Tensor<2, burn::tensor::Int>,
            Option<S>,
        ) -> (burn::tensor::Tensor<3>, S),
        D: Fn(S) -> S,
    {
        let c = self.ctx.config;
        let o = fit_tbptt(
            model,
            &self.split.train,
            &self.split.valid,
            &Tbptt {
                forward,
                detach,
                run: self
                    .ctx
                    .run(self.device.clone(), Some(self.checkpoint_dir), None),
                seq_len: c.network.seq_len,
                eval_chunk,
                steps_per_epoch: c.steps_per_epoch,
            },
        )?;
        Ok(o.split())
    }
}

/// A language-model run loaded back.
pub struct LoadedLm {
    /// The run's config.
    pub config: RunConfig,
    /// Its vocabulary.
    pub vocab: CharVocab,
    /// The model in evaluation mode.
    pub model: Lm,
    /// Its device.
    pub device: Device,
}

/// Loads a language-model run directory.
///
/// # Errors
/// A directory that is not a finished language-model run.
pub fn load_lm(dir: &Path, backend: Option<&str>) -> Result<LoadedLm> {
    let config = load_run_config(dir, backend)?;
    let pre = Preprocess::load(dir)?;
    let Some(vocab) = pre.vocab else {
        return Err(Error::Usage(format!(
            "{} is a {} run on {}, not a character language model: `generate` needs a run trained on text (e.g. --model lstm --dataset shakespeare)",
            dir.display(),
            config.model,
            config.dataset
        )));
    };
    let device = config.backend.usable_device()?;
    let weights = finished_weights(dir)?;
    let model = match family(&config.model)?.language_model(&config, vocab.len())? {
        LmConfig::Transformer(c) => {
            Lm::Transformer(load_weights(c.init(&device)?, &config.model, &weights)?)
        }
        LmConfig::Recurrent(c) => {
            Lm::Recurrent(load_weights(c.init(&device)?, &config.model, &weights)?)
        }
    };
    Ok(LoadedLm {
        config,
        vocab,
        model,
        device,
    })
}
