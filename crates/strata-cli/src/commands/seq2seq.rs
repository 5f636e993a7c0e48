//! Sequence-to-sequence runs on a built-in transduction task (reverse, sort or copy random
//! symbol sequences): teacher-forced training through `fit_objective`, validation by greedy
//! exact match, and test exact match by greedy and by beam-search decoding.

use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;
use serde_json::json;
use strata::arch::seq2seq::N_SPECIAL;
use strata::arch::{BeamSearch, Seq2Seq, Seq2SeqConfig};
use strata::data::{Pair, TransductionConfig, TransductionTask};
use strata::tensor::convert::scalar;
use strata::tensor::seed_device;
use strata::train::{Objective, Run, fit_objective};

use crate::args::TrainArgs;
use crate::commands::train::{run_summary, write_history, write_metrics};
use crate::error::{Error, Result};
use crate::network::{load_weights, save_safetensors, transformer_width};
use crate::run_config::RunConfig;

/// Training, validation and test examples drawn for a run.
pub const SIZES: [usize; 3] = [20_000, 1_000, 2_000];
/// Beam width of the test's beam-search decoding.
pub const BEAM_SIZE: usize = 4;
/// Examples per batch when decoding or validating.
const EVAL_BATCH: usize = 250;

/// The built-in task a data-set name stands for, if it is one.
pub fn task_of(dataset: &str) -> Option<TransductionTask> {
    TransductionTask::by_name(dataset).ok()
}

/// Symbols as model tokens: the reserved ids come first.
fn tokens(s: &[usize]) -> Vec<usize> {
    s.iter().map(|&x| x + N_SPECIAL).collect()
}

/// Model tokens back to symbols (a reserved id, which a trained model does not emit inside a
/// sequence, maps to `usize::MAX` and so never matches).
fn symbols(t: &[usize]) -> Vec<usize> {
    t.iter()
        .map(|&x| x.checked_sub(N_SPECIAL).unwrap_or(usize::MAX))
        .collect()
}

/// The model a run asks for: width `--hidden`, `--heads`, `--layers` encoder and decoder
/// layers each, feed-forward 4x the width.
///
/// # Errors
/// Invalid sizes.
pub fn seq2seq_config(config: &RunConfig, task: &TransductionConfig) -> Result<Seq2SeqConfig> {
    let n = &config.network;
    let d_model = transformer_width(config)?;
    let c = Seq2SeqConfig::new(task.n_symbols + N_SPECIAL, task.max_len + 1)
        .with_d_model(d_model)
        .with_n_heads(n.heads)
        .with_n_encoder_layers(n.layers)
        .with_n_decoder_layers(n.layers)
        .with_d_ff(4 * d_model)
        .with_dropout(n.dropout)
        .with_activation(n.activation)
        .with_positional(n.positional);
    c.validate()?;
    Ok(c)
}

/// Examples as `(source tokens, target tokens)`.
struct Examples {
    sources: Vec<Vec<usize>>,
    targets: Vec<Vec<usize>>,
}

impl Examples {
    fn new(pairs: &[Pair]) -> Self {
        Self {
            sources: pairs.iter().map(|p| tokens(&p.0)).collect(),
            targets: pairs.iter().map(|p| tokens(&p.1)).collect(),
        }
    }

    fn pick(&self, indices: &[usize]) -> (Vec<Vec<usize>>, Vec<Vec<usize>>) {
        (
            indices.iter().map(|&i| self.sources[i].clone()).collect(),
            indices.iter().map(|&i| self.targets[i].clone()).collect(),
        )
    }
}

/// Mean teacher-forced loss and greedy exact match of `model` on `data`.
fn score(model: &Seq2Seq, data: &Examples, max_len: usize, device: &Device) -> Result<(f64, f64)> {
    let n = data.sources.len();
    let (mut loss, mut exact) = (0.0f64, 0usize);
    let all: Vec<usize> = (0..n).collect();
    for chunk in all.chunks(EVAL_BATCH) {
        let (src, tgt) = data.pick(chunk);
        loss += scalar(model.loss(&src, &tgt, device)?) as f64 * chunk.len() as f64;
        let out = model.greedy(&src, max_len, device)?;
        exact += out.iter().zip(&tgt).filter(|(a, b)| a == b).count();
    }
    Ok((loss / n as f64, exact as f64 / n as f64))
}

/// The run's objective: teacher-forced loss on the training pairs; greedy exact match on the
/// validation pairs.
struct Transduce<'a> {
    train: &'a Examples,
    valid: &'a Examples,
    max_len: usize,
    device: Device,
    plain: Device,
}

impl Objective<Seq2Seq> for Transduce<'_> {
    fn n_train(&self) -> usize {
        self.train.sources.len()
    }

    fn batch_loss(
        &self,
        model: &Seq2Seq,
        indices: &[usize],
    ) -> strata::train::Result<burn::tensor::Tensor<1>> {
        let (src, tgt) = self.train.pick(indices);
        model
            .loss(&src, &tgt, &self.device)
            .map_err(|e| strata::train::Error::Objective(e.to_string()))
    }

    fn validate(&self, model: &Seq2Seq) -> strata::train::Result<(f64, f64)> {
        score(model, self.valid, self.max_len, &self.plain)
            .map_err(|e| strata::train::Error::Objective(e.to_string()))
    }

    fn metric_name(&self) -> &str {
        "exact"
    }

    fn lower_metric_is_better(&self) -> bool {
        false
    }
}

/// Trains a sequence-to-sequence model on the task and writes the run directory.
///
/// # Errors
/// Invalid settings, training and I/O failures.
pub fn train(
    config: &RunConfig,
    task: TransductionTask,
    device: &Device,
    out: &Path,
    args: &TrainArgs,
) -> Result<()> {
    if config.model != "seq2seq" {
        return Err(Error::Usage(format!(
            "`{}` is a sequence transduction task: train it with --model seq2seq, not {}",
            config.dataset, config.model
        )));
    }
    let spec = TransductionConfig::new(task);
    let net = seq2seq_config(config, &spec)?;
    let [train, valid, test] = spec.splits(SIZES, config.fit.seed)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    strata::train::write_atomic(&out.join("config.toml"), config.to_toml().as_bytes())?;
    if config.fit.progress {
        eprintln!(
            "seq2seq on {}: {} symbols, lengths {}..={}, {} train / {} valid / {} test (sources distinct), {} on {}",
            task.name(),
            spec.n_symbols,
            spec.min_len,
            spec.max_len,
            train.len(),
            valid.len(),
            test.len(),
            config.optimizer.kind.name(),
            config.backend
        );
    }
    let (train, valid, test) = (
        Examples::new(&train),
        Examples::new(&valid),
        Examples::new(&test),
    );
    let ad = device.clone().autodiff();
    seed_device(&ad, config.fit.seed);
    let model = net.init(&ad)?;
    let max_len = spec.max_len + 1;
    let objective = Transduce {
        train: &train,
        valid: &valid,
        max_len,
        device: ad.clone(),
        plain: device.clone(),
    };
    let ckpt = out.join("checkpoints");
    let outcome = fit_objective(
        model,
        &objective,
        &Run {
            optimizer: &config.optimizer,
            schedule: &config.schedule,
            config: &config.fit,
            device: ad,
            checkpoint_dir: Some(&ckpt),
            resume: args.resume,
            pause_after: args.pause_after,
            fine_tune: None,
        },
    )?;
    if !write_history(config, out, "exact_match", &outcome)? {
        return Ok(());
    }
    let model = outcome.model.valid();
    save_safetensors(&model, &out.join("model.safetensors"))?;
    let (test_loss, exact) = score(&model, &test, max_len, device)?;
    let beam = BeamSearch {
        beam_size: BEAM_SIZE,
        max_len,
        length_penalty: 0.0,
    };
    let mut beam_exact = 0usize;
    for (s, t) in test.sources.iter().zip(&test.targets) {
        beam_exact += usize::from(model.beam_search(s, &beam, device)?.tokens == *t);
    }
    let beam_exact = beam_exact as f64 / test.sources.len() as f64;
    let (valid_loss, valid_exact) = score(&model, &valid, max_len, device)?;
    let mut metrics = run_summary(config, &outcome);
    metrics["task"] = json!({
        "name": task.name(),
        "n_symbols": spec.n_symbols,
        "min_len": spec.min_len,
        "max_len": spec.max_len,
        "sizes": SIZES,
    });
    metrics["test"] = json!({
        "exact_match": exact,
        "exact_match_beam": beam_exact,
        "beam_size": BEAM_SIZE,
        "loss": test_loss,
        "n": test.sources.len(),
    });
    metrics["valid"] = json!({"exact_match": valid_exact, "loss": valid_loss});
    write_metrics(out, &metrics)?;
    println!(
        "test exact match {exact:.4} greedy, {beam_exact:.4} beam {BEAM_SIZE}  (seq2seq on {}, {}, {} epochs, {:.1} s)",
        task.name(),
        config.backend,
        outcome.epochs_run,
        outcome.train_seconds
    );
    println!("run written to {}", out.display());
    Ok(())
}

/// A finished seq2seq run loaded back: its task and model.
fn load(
    dir: &Path,
    backend: Option<&str>,
) -> Result<(RunConfig, TransductionConfig, Seq2Seq, Device)> {
    let config = crate::commands::evaluate::load_run_config(dir, backend)?;
    let task = task_of(&config.dataset).ok_or_else(|| {
        Error::Usage(format!(
            "{} is a {} run on {}, not a seq2seq run",
            dir.display(),
            config.model,
            config.dataset
        ))
    })?;
    let spec = TransductionConfig::new(task);
    let device = config.backend.usable_device()?;
    let model = seq2seq_config(&config, &spec)?.init(&device)?;
    let model = load_weights(model, &config.model, &dir.join("model.safetensors"))?;
    Ok((config, spec, model, device))
}

/// `strata evaluate` of a seq2seq run: greedy exact match and loss on its test examples
/// (drawn again from the run's seed).
///
/// # Errors
/// A run that is not a finished seq2seq run.
pub fn evaluate(dir: &Path, backend: Option<&str>) -> Result<()> {
    let (config, spec, model, device) = load(dir, backend)?;
    let [_, _, test] = spec.splits(SIZES, config.fit.seed)?;
    let (loss, exact) = score(&model, &Examples::new(&test), spec.max_len + 1, &device)?;
    println!(
        "test exact match {exact:.4} (greedy), loss {loss:.4}  ({} examples of {})",
        test.len(),
        spec.task.name()
    );
    Ok(())
}

/// Loads a sequence-to-sequence run and decodes `source` (symbols) with beam search of width
/// `beam_size` (1: greedy).
///
/// # Errors
/// A run that is not a finished seq2seq run, or symbols outside the task's.
pub fn transduce(
    dir: &Path,
    backend: Option<&str>,
    source: &[usize],
    beam_size: usize,
) -> Result<Vec<usize>> {
    let (_, spec, model, device) = load(dir, backend)?;
    if source.len() > spec.max_len {
        return Err(Error::Usage(format!(
            "a source of {} symbols is longer than the task's longest, {}",
            source.len(),
            spec.max_len
        )));
    }
    if let Some(&bad) = source.iter().find(|&&s| s >= spec.n_symbols) {
        return Err(Error::Usage(format!(
            "symbol {bad} is outside the task's symbols 0..{}",
            spec.n_symbols
        )));
    }
    let beam = BeamSearch {
        beam_size,
        max_len: spec.max_len + 1,
        length_penalty: 0.0,
    };
    let h = model.beam_search(&tokens(source), &beam, &device)?;
    Ok(symbols(&h.tokens))
}
