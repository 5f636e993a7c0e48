//! The encoder-decoder transformer on a built-in transduction task (reverse, sort or copy
//! random symbol sequences): its own objective (teacher-forced training through
//! `fit_objective`, validation by greedy exact match), test exact match by greedy and by
//! beam-search decoding, and generation by decoding a source.

use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;
use serde_json::json;
use strata_arch::seq2seq::N_SPECIAL;
use strata_arch::{ActivationKind, BeamSearch, NetworkConfig, Seq2Seq, Seq2SeqConfig};
use strata_data::{Pair, Source, TransductionConfig, TransductionTask};
use strata_tensor::convert::scalar;
use strata_tensor::seed_device;
use strata_train::{Objective, fit_objective};

use super::{Family, transformer_width};
use crate::config::RunConfig;
use crate::data::Preprocess;
use crate::error::{Error, Result};
use crate::evaluate::{Evaluated, load_run_config};
use crate::generate::Generate;
use crate::pipeline::{Context, RunResult};
use crate::run_dir::{
    load_weights, run_line, run_summary, save_safetensors, write_history, write_metrics,
};

/// `seq2seq`.
pub struct Seq2seq;

impl Family for Seq2seq {
    fn name(&self) -> &'static str {
        "seq2seq"
    }

    fn models(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "seq2seq",
            "encoder-decoder transformer, greedy and beam-search decoding; reverse, sort, copy",
        )]
    }

    fn has(&self, model: &str) -> bool {
        model == "seq2seq"
    }

    fn default_dataset(&self, _model: &str) -> &'static str {
        "reverse"
    }

    /// Width 64, 4 heads, 2 encoder and 2 decoder layers, feed-forward 4x the width, GELU;
    /// AdamW with a warm-up epoch and cosine decay; 8 epochs of 64.
    fn recipe(&self, _model: &str, _dataset: &str, c: &mut RunConfig) {
        c.network.activation = ActivationKind::Gelu;
        c.network.hidden = vec![64];
        c.network.layers = 2;
        c.transformer_training(0.001, 0.0);
        c.fit.batch_size = 64;
        c.fit.epochs = 8;
    }

    fn network(&self, config: &RunConfig, _: &Preprocess, _: usize) -> Result<NetworkConfig> {
        Err(Error::Usage(format!(
            "seq2seq trains on a transduction task (reverse, sort, copy), not `{}`",
            config.dataset
        )))
    }

    fn adversarial_training(&self) -> bool {
        false
    }

    fn train(&self, ctx: &Context<'_>, source: Source) -> Result<RunResult> {
        match source {
            Source::Transduction(task) => train(ctx, task),
            other => crate::pipeline::train_default(self, ctx, other),
        }
    }

    fn evaluate(
        &self,
        dir: &Path,
        backend: Option<&str>,
        _dataset: Option<&str>,
    ) -> Result<Evaluated> {
        evaluate(dir, backend)
    }

    /// Decodes the prompt's symbols (`3 1 4 1 5`) with beam search of the request's width.
    fn generate(&self, dir: &Path, backend: Option<&str>, request: &Generate) -> Result<String> {
        let prompt = request.prompt.as_deref().unwrap_or("");
        let source = prompt
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|t| !t.is_empty())
            .map(|t| {
                t.parse::<usize>().map_err(|_| {
                    Error::Usage(format!("--prompt: `{t}` is not a symbol (a number >= 0)"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if source.is_empty() {
            return Err(Error::Usage(
                "a seq2seq run needs --prompt with source symbols, e.g. \"3 1 4 1 5\"".into(),
            ));
        }
        let out = transduce(dir, backend, &source, request.beam)?;
        let text: Vec<String> = out.iter().map(ToString::to_string).collect();
        Ok(text.join(" "))
    }
}

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
    ) -> strata_train::Result<burn::tensor::Tensor<1>> {
        let (src, tgt) = self.train.pick(indices);
        model
            .loss(&src, &tgt, &self.device)
            .map_err(|e| strata_train::Error::Objective(e.to_string()))
    }

    fn validate(&self, model: &Seq2Seq) -> strata_train::Result<(f64, f64)> {
        score(model, self.valid, self.max_len, &self.plain)
            .map_err(|e| strata_train::Error::Objective(e.to_string()))
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
fn train(ctx: &Context<'_>, task: TransductionTask) -> Result<RunResult> {
    let (config, device, out) = (ctx.config, &ctx.device, ctx.out);
    let spec = TransductionConfig::new(task);
    let net = seq2seq_config(config, &spec)?;
    let [train, valid, test] = spec.splits(SIZES, config.fit.seed)?;
    ctx.open_run_dir(config, None)?;
    ctx.progress.note(&format!(
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
        ));
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
    let outcome = fit_objective(model, &objective, &ctx.run(ad, Some(&ckpt), None))?;
    if !write_history(config, out, "exact_match", &outcome)? {
        return Ok(RunResult::paused(out, outcome.epochs_run));
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
    let summary = format!(
        "test exact match {exact:.4} greedy, {beam_exact:.4} beam {BEAM_SIZE}  ({})",
        run_line(config, &outcome)
    );
    Ok(RunResult::finished(out, &outcome, metrics, summary))
}

/// A finished seq2seq run loaded back: its task and model.
fn load(
    dir: &Path,
    backend: Option<&str>,
) -> Result<(RunConfig, TransductionConfig, Seq2Seq, Device)> {
    let config = load_run_config(dir, backend)?;
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

/// The evaluation of a seq2seq run: greedy exact match and loss on its test examples (drawn
/// again from the run's seed).
///
/// # Errors
/// A run that is not a finished seq2seq run.
fn evaluate(dir: &Path, backend: Option<&str>) -> Result<Evaluated> {
    let (config, spec, model, device) = load(dir, backend)?;
    let [_, _, test] = spec.splits(SIZES, config.fit.seed)?;
    let (loss, exact) = score(&model, &Examples::new(&test), spec.max_len + 1, &device)?;
    Ok(Evaluated {
        summary: format!(
            "test exact match {exact:.4} (greedy), loss {loss:.4}  ({} examples of {})",
            test.len(),
            spec.task.name()
        ),
        metrics: json!({"exact_match": exact, "loss": loss, "n": test.len()}),
        written: None,
    })
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
