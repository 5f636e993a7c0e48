//! The run directory: what a run writes (`config.toml`, `preprocess.json`, `history.csv`,
//! `curves.svg`, `model.safetensors`, `metrics.json`, `test_predictions.csv`, `checkpoints/`)
//! and reading its weights back.

use std::path::Path;

use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use serde_json::{Value, json};
use strata_arch::{Network, NetworkConfig};
use strata_train::{FitOutcome, write_atomic, write_csv, write_curves_svg};

use crate::config::RunConfig;
use crate::error::{Error, Result};

/// Writes `history.csv` and `curves.svg`; returns whether the run finished (it has not when
/// paused).
///
/// # Errors
/// I/O errors.
pub fn write_history<M>(
    config: &RunConfig,
    out: &Path,
    metric_name: &str,
    outcome: &FitOutcome<M>,
) -> Result<bool> {
    write_csv(&out.join("history.csv"), metric_name, &outcome.history)?;
    write_curves_svg(
        &out.join("curves.svg"),
        &format!(
            "{} on {} ({})",
            config.model, config.dataset, config.backend
        ),
        metric_name,
        &outcome.history,
    )?;
    Ok(outcome.finished)
}

/// The head of a run's `metrics.json`: model, data set, backend and how training went; the
/// caller adds `test` and `valid`.
pub fn run_summary<M>(config: &RunConfig, outcome: &FitOutcome<M>) -> Value {
    json!({
        "model": config.model,
        "dataset": config.dataset,
        "backend": config.backend.name(),
        "epochs_run": outcome.epochs_run,
        "train_seconds": outcome.train_seconds,
        "stop_reason": outcome.stop_reason,
        "best_epoch": outcome.best.map(|(_, e)| e),
    })
}

/// How a run went, for its summary line: `{model} on {dataset}, {backend}, {n} epochs, {s} s`.
pub fn run_line<M>(config: &RunConfig, outcome: &FitOutcome<M>) -> String {
    format!(
        "{} on {}, {}, {} epochs, {:.1} s",
        config.model, config.dataset, config.backend, outcome.epochs_run, outcome.train_seconds
    )
}

/// The weights of the finished run in `dir`: `model.safetensors`, or the int8
/// `model.int8.safetensors` of a quantised run.
///
/// # Errors
/// A run that has not finished (neither file).
pub fn finished_weights(dir: &Path) -> Result<std::path::PathBuf> {
    let weights = dir.join("model.safetensors");
    let int8 = dir.join(crate::quantize::INT8_WEIGHTS);
    if weights.exists() {
        Ok(weights)
    } else if int8.exists() {
        Ok(int8)
    } else {
        Err(Error::Usage(format!(
            "{} has no model.safetensors: the run did not finish (resume it with --resume)",
            dir.display()
        )))
    }
}

/// Writes `metrics.json` atomically.
///
/// # Errors
/// I/O errors.
pub fn write_metrics(out: &Path, metrics: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(metrics).expect("serialisable");
    write_atomic(&out.join("metrics.json"), text.as_bytes())?;
    Ok(())
}

/// Writes `value` as pretty JSON to `path`, atomically.
///
/// # Errors
/// I/O errors.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("serialisable");
    write_atomic(path, text.as_bytes())?;
    Ok(())
}

/// Writes the weights as safetensors (PyTorch-style dotted names).
///
/// # Errors
/// I/O or serialisation errors.
pub fn save_safetensors<M: Module>(model: &M, path: &Path) -> Result<()> {
    let tmp = path.with_extension("safetensors.tmp");
    let mut store = SafetensorsStore::from_file(&tmp).overwrite(true);
    model.save_into(&mut store).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        message: format!("cannot write weights: {e}"),
    })?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Builds the network and loads its weights from a safetensors file, insisting that every
/// parameter is present with the right shape.
///
/// # Errors
/// A missing or corrupt file, or weights of another architecture.
pub fn load_safetensors(net: &NetworkConfig, path: &Path, device: &Device) -> Result<Network> {
    load_weights(net.init(device)?, net.name(), path)
}

/// Loads weights from a safetensors file into `model`, insisting that every parameter is
/// present with the right shape.
///
/// # Errors
/// A missing or corrupt file, or weights of another architecture.
pub fn load_weights<M: Module>(mut model: M, name: &str, path: &Path) -> Result<M> {
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    // Int8 weights (`strata compress --quantize int8`) are read back as f32.
    let store = if path
        .file_name()
        .is_some_and(|n| n == crate::quantize::INT8_WEIGHTS)
    {
        SafetensorsStore::from_bytes(Some(crate::quantize::dequantize_file(path)?))
    } else {
        SafetensorsStore::from_file(path)
    };
    let mut store = store.validate(true).allow_partial(false);
    let result = model.load_from(&mut store).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        message: format!("cannot read weights: {e}"),
    })?;
    if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
        let missing: Vec<&str> = result.missing.iter().map(|(k, _)| k.as_str()).collect();
        return Err(Error::Config {
            path: path.to_path_buf(),
            message: format!(
                "weights do not fit this {} model: missing {:?}, unexpected {:?}, errors {:?}",
                name,
                missing,
                result.unused,
                result
                    .errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
            ),
        });
    }
    Ok(model)
}
