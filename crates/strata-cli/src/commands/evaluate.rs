//! `strata evaluate`: reload a run and compute its metrics.

use std::path::Path;

use serde_json::json;
use strata::arch::Network;
use strata::tensor::Backend;
use strata::train::{Evaluation, evaluate, write_atomic};

use crate::args::EvaluateArgs;
use crate::commands::forecast::{forecast_metrics, prepare_series};
use crate::commands::language::{load_lm, split_text};
use crate::commands::train::{metrics_json, summary_line};
use crate::data_source::load_series;
use crate::data_source::{Preprocess, Source, load_source, n_outputs, split_source};
use crate::error::{Error, Result};
use crate::network::{load_safetensors, network_config};
use crate::run_config::RunConfig;

/// A run directory loaded back: its config, preprocessing and model.
pub struct LoadedRun {
    /// The run's config.
    pub config: RunConfig,
    /// Its preprocessing.
    pub preprocess: Preprocess,
    /// The model in evaluation mode.
    pub model: Network,
    /// The device it lives on.
    pub device: burn::tensor::Device,
}

/// Reads a run directory's `config.toml`, with the backend overridden when one is given.
///
/// # Errors
/// A directory without `config.toml`, an unreadable config, an unknown backend.
pub fn load_run_config(dir: &Path, backend: Option<&str>) -> Result<RunConfig> {
    let config_path = dir.join("config.toml");
    if !config_path.exists() {
        return Err(Error::Usage(format!(
            "{} is not a run directory (no config.toml)",
            dir.display()
        )));
    }
    let mut config = RunConfig::load(&config_path)?;
    if let Some(b) = backend {
        config.backend = b.parse::<Backend>()?;
    }
    Ok(config)
}

/// Loads a run directory.
///
/// # Errors
/// A directory that is not a finished run, or weights that do not fit its config.
pub fn load_run(dir: &Path, backend: Option<&str>) -> Result<LoadedRun> {
    let config = load_run_config(dir, backend)?;
    let preprocess = Preprocess::load(dir)?;
    let task = match &preprocess.class_names {
        Some(names) => strata::data::Task::Classification(names.len()),
        None => strata::data::Task::Regression,
    };
    let net = network_config(&config, &preprocess, n_outputs(task, &config))?;
    let device = config.backend.usable_device()?;
    let weights = dir.join("model.safetensors");
    if !weights.exists() {
        return Err(Error::Usage(format!(
            "{} has no model.safetensors: the run did not finish (resume it with --resume)",
            dir.display()
        )));
    }
    let model = load_safetensors(&net, &weights, &device)?;
    Ok(LoadedRun {
        config,
        preprocess,
        model,
        device,
    })
}

/// Runs `strata evaluate`.
///
/// # Errors
/// As [`load_run`], and data errors.
pub fn run(args: &EvaluateArgs) -> Result<()> {
    let pre = Preprocess::load(&args.run).ok();
    if pre.as_ref().is_some_and(|p| p.vocab.is_some()) {
        return evaluate_lm(args);
    }
    if crate::commands::evaluate::load_run_config(&args.run, args.backend.as_deref())?.model
        == "seq2seq"
    {
        return crate::commands::seq2seq::evaluate(&args.run, args.backend.as_deref());
    }
    let run = load_run(&args.run, args.backend.as_deref())?;
    if run.preprocess.series.is_some() {
        return evaluate_forecaster(args, &run);
    }
    let config = &run.config;
    let (name, mut data) = match &args.dataset {
        None => {
            let source = load_source(&config.dataset, &config.label, &config.model)?;
            let (_, _, test, _) = split_source(source, config)?;
            (format!("{} (test split)", config.dataset), test)
        }
        Some(spec) if run.preprocess.table.is_some() && !spec.contains(':') && spec != "adult" => {
            return Err(Error::Usage(format!(
                "this {} model reads tables with the columns it was trained on: give --dataset table:PATH",
                config.model
            )));
        }
        Some(spec) if run.preprocess.table.is_some() && spec != "adult" => {
            // Encode with the training schema: an unseen category is an error, not a new code.
            let path = spec.split_once(':').map_or(spec.as_str(), |(_, p)| p);
            let schema = run.preprocess.table.as_ref().expect("checked above");
            (
                spec.clone(),
                schema.encode(&strata::data::Table::load(path)?)?,
            )
        }
        Some(spec) => match load_source(spec, &config.label, &config.model)? {
            Source::Single(d) => (spec.clone(), d),
            Source::TrainTest(_, test) => (format!("{spec} (test set)"), test),
            Source::Series(_) | Source::Text { .. } | Source::Transduction(_) => {
                return Err(Error::Usage(format!(
                    "{spec} is a series, a text or a transduction task; this {} model was trained on samples of {} features",
                    config.model, run.preprocess.n_features
                )));
            }
        },
    };
    if let (Some(names), Some(got)) = (&run.preprocess.class_names, data.class_names())
        && names.len() != got.len()
    {
        return Err(Error::Usage(format!(
            "the model predicts {} classes, {name} has {}",
            names.len(),
            got.len()
        )));
    }
    run.preprocess.apply(&mut data)?;
    let loss = config.loss.init(&run.device)?;
    let ev: Evaluation = evaluate(
        &run.model,
        &|m: &Network, x| m.forward_flat(x),
        loss.as_ref(),
        &data,
        256,
        &run.device,
    )?;
    println!("{name}: {}", summary_line(&ev));
    let out = json!({
        "model": config.model,
        "dataset": name,
        "backend": config.backend.name(),
        "test": metrics_json(&ev),
    });
    let path = args.run.join("evaluation.json");
    write_atomic(
        &path,
        serde_json::to_string_pretty(&out).expect("json").as_bytes(),
    )?;
    println!("written to {}", path.display());
    Ok(())
}

fn write_evaluation(dir: &Path, out: &serde_json::Value) -> Result<()> {
    let path = dir.join("evaluation.json");
    write_atomic(
        &path,
        serde_json::to_string_pretty(out).expect("json").as_bytes(),
    )?;
    println!("written to {}", path.display());
    Ok(())
}

/// Re-evaluates a forecasting run on its series' test period (or on another series).
fn evaluate_forecaster(args: &EvaluateArgs, run: &LoadedRun) -> Result<()> {
    let name = args.dataset.as_deref().unwrap_or(&run.config.dataset);
    let src = load_series(name)?;
    let prep = prepare_series(&run.config, &src)?;
    let m = forecast_metrics(&run.model, &src, &prep, &run.device)?;
    let t = &m["test"];
    println!(
        "{name} (test period): rmse {:.3}  mae {:.3}  r2 {:.4}  (seasonal naive rmse {:.3})",
        t["rmse"].as_f64().unwrap_or(f64::NAN),
        t["mae"].as_f64().unwrap_or(f64::NAN),
        t["r2"].as_f64().unwrap_or(f64::NAN),
        t["baseline_rmse"].as_f64().unwrap_or(f64::NAN),
    );
    write_evaluation(
        &args.run,
        &json!({
            "model": run.config.model,
            "dataset": name,
            "backend": run.config.backend.name(),
            "test": m["test"],
        }),
    )
}

/// Re-evaluates a language model on its text's test part (or another text's, read with the
/// model's vocabulary).
fn evaluate_lm(args: &EvaluateArgs) -> Result<()> {
    let lm = load_lm(&args.run, args.backend.as_deref())?;
    let name = args.dataset.as_deref().unwrap_or(&lm.config.dataset);
    let Source::Text { text, .. } = load_source(name, &lm.config.label, &lm.config.model)? else {
        return Err(Error::Usage(format!(
            "{name} is not a text: a language model is evaluated on text (shakespeare, text:PATH)"
        )));
    };
    let (vocab, split) = split_text(&text)?;
    let tokens = if vocab == lm.vocab {
        split.test
    } else {
        // Another text: all of it, in the model's vocabulary.
        lm.vocab.encode(&text)?
    };
    let nats = lm.model.eval_nats(&tokens, &lm.device)?;
    let bpc = nats / std::f64::consts::LN_2;
    println!("{name}: loss {nats:.4} nats/char ({bpc:.4} bits/char)");
    write_evaluation(
        &args.run,
        &json!({
            "model": lm.config.model,
            "dataset": name,
            "backend": lm.config.backend.name(),
            "test": {"loss_nats": nats, "bits_per_char": bpc, "n_chars": tokens.len()},
        }),
    )
}
