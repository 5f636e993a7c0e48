//! Character language-model runs: a vocabulary of the text, a contiguous split, training by
//! truncated back-propagation through time, and test loss in nats and bits per character.

use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;
use serde_json::json;
use strata::arch::{CharLm, RecurrentState};
use strata::data::{CharVocab, TextSplit, contiguous_split};
use strata::tensor::seed_device;
use strata::train::{EVAL_CHUNK, EVAL_STREAMS, Tbptt, evaluate_tokens, fit_tbptt};

use crate::args::TrainArgs;
use crate::commands::train::{run_summary, write_history, write_metrics};
use crate::data_source::Preprocess;
use crate::error::{Error, Result};
use crate::network::{char_lm_config, load_weights, save_safetensors};
use crate::run_config::{RunConfig, is_recurrent};

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

/// The model's forward pass as the trainer takes it.
pub fn lm_forward(
    m: &CharLm,
    x: burn::tensor::Tensor<2, burn::tensor::Int>,
    s: Option<RecurrentState>,
) -> (burn::tensor::Tensor<3>, RecurrentState) {
    m.forward(x, s)
}

/// Mean test loss (nats per character) of `model` on `tokens`.
///
/// # Errors
/// Too little text.
pub fn eval_nats(model: &CharLm, tokens: &[usize], device: &Device) -> Result<f64> {
    Ok(evaluate_tokens(
        model,
        &lm_forward,
        tokens,
        EVAL_STREAMS,
        EVAL_CHUNK,
        device,
    )?)
}

/// Trains a character language model and writes the run directory.
///
/// # Errors
/// Invalid settings, training and I/O failures.
pub fn train(
    config: &RunConfig,
    text: &str,
    device: &Device,
    out: &Path,
    args: &TrainArgs,
) -> Result<()> {
    if !is_recurrent(&config.model) {
        return Err(Error::Usage(format!(
            "`{}` is text: train a character language model with --model rnn, lstm or gru, not {}",
            config.dataset, config.model
        )));
    }
    if config.network.seq_len == 0 {
        return Err(Error::Usage(
            "a language model needs --seq-len >= 1 (steps of back-propagation)".into(),
        ));
    }
    let (vocab, split) = split_text(text)?;
    let lm_config = char_lm_config(config, vocab.len())?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    strata::train::write_atomic(&out.join("config.toml"), config.to_toml().as_bytes())?;
    let preprocess = Preprocess {
        n_features: config.network.seq_len,
        image_shape: None,
        class_names: None,
        standardizer: None,
        series: None,
        vocab: Some(vocab.clone()),
    };
    preprocess.save(out)?;
    if config.fit.progress {
        eprintln!(
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
        );
    }
    let ad = device.clone().autodiff();
    seed_device(&ad, config.fit.seed);
    let model = lm_config.init(&ad)?;
    let outcome = fit_tbptt(
        model,
        &split.train,
        &split.valid,
        &Tbptt {
            forward: lm_forward,
            detach: RecurrentState::detach,
            optimizer: &config.optimizer,
            schedule: &config.schedule,
            config: &config.fit,
            seq_len: config.network.seq_len,
            steps_per_epoch: config.steps_per_epoch,
            device: ad,
            checkpoint_dir: Some(&out.join("checkpoints")),
            resume: args.resume,
            pause_after: args.pause_after,
        },
    )?;
    if !write_history(config, out, "bits_per_char", &outcome)? {
        return Ok(());
    }
    let model = outcome.model.valid();
    save_safetensors(&model, &out.join("model.safetensors"))?;
    let test = eval_nats(&model, &split.test, device)?;
    let valid = eval_nats(&model, &split.valid, device)?;
    let ln2 = std::f64::consts::LN_2;
    let mut metrics = run_summary(config, &outcome);
    metrics["vocab_size"] = json!(vocab.len());
    metrics["test"] =
        json!({"loss_nats": test, "bits_per_char": test / ln2, "n_chars": split.test.len()});
    metrics["valid"] =
        json!({"loss_nats": valid, "bits_per_char": valid / ln2, "n_chars": split.valid.len()});
    write_metrics(out, &metrics)?;
    println!(
        "test loss {test:.4} nats/char ({:.4} bits/char) — {} on {}, {}, {} epochs, {:.1} s",
        test / ln2,
        config.model,
        config.dataset,
        config.backend,
        outcome.epochs_run,
        outcome.train_seconds
    );
    println!("run written to {}", out.display());
    Ok(())
}

/// A language-model run loaded back.
pub struct LoadedLm {
    /// The run's config.
    pub config: RunConfig,
    /// Its vocabulary.
    pub vocab: CharVocab,
    /// The model in evaluation mode.
    pub model: CharLm,
    /// Its device.
    pub device: Device,
}

/// Loads a language-model run directory.
///
/// # Errors
/// A directory that is not a finished language-model run.
pub fn load_lm(dir: &Path, backend: Option<&str>) -> Result<LoadedLm> {
    let config = crate::commands::evaluate::load_run_config(dir, backend)?;
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
    let weights = dir.join("model.safetensors");
    if !weights.exists() {
        return Err(Error::Usage(format!(
            "{} has no model.safetensors: the run did not finish (resume it with --resume)",
            dir.display()
        )));
    }
    let model = char_lm_config(&config, vocab.len())?.init(&device)?;
    let model = load_weights(model, &config.model, &weights)?;
    Ok(LoadedLm {
        config,
        vocab,
        model,
        device,
    })
}
