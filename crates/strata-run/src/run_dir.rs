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
    let mut model = load_weights(net.init(device)?, net.name(), path)?;
    // An int8 run of an MLP or a CNN computes its linear layers and convolutions in int8 at
    // inference, with the file's static input scales where it has them; on an autodiff device
    // (fine-tuning) the float weights train.
    if is_int8(path) && !device.is_autodiff() {
        let (granularity, scales) = crate::quantize::int8_layout(path)?;
        model.quantize_int8(granularity == crate::quantize::Granularity::PerChannel);
        let mut inputs = model.int8_inputs_mut();
        for (name, &s) in &scales {
            let input =
                inputs
                    .iter_mut()
                    .find(|(n, _)| n == name)
                    .ok_or_else(|| Error::Config {
                        path: path.to_path_buf(),
                        message: format!(
                            "an input scale for {name}, which this model does not have in int8"
                        ),
                    })?;
            input
                .1
                .set_scale(strata_kernels::int8::InputScale::Static(s));
        }
    }
    Ok(model)
}

/// Whether `path` is a run's int8 weights.
fn is_int8(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n == crate::quantize::INT8_WEIGHTS)
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
    let store = if is_int8(path) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tensor};
    use strata_arch::{MlpConfig, Network, NetworkConfig};

    /// An int8 MLP run loads with int8 copies of all its linear layers, holding the file's
    /// values, for inference only; its outputs stay within the two roundings of the float
    /// layers on the same (dequantised) weights.
    #[test]
    fn an_int8_mlp_infers_in_int8_with_the_files_values() {
        let dir = tempfile::tempdir().unwrap();
        let net = NetworkConfig::Mlp(MlpConfig::new(20, 3).with_d_hidden(vec![16]));
        let device = Device::flex();
        let float = dir.path().join("model.safetensors");
        save_safetensors(&net.init(&device).unwrap(), &float).unwrap();
        let int8 = dir.path().join(crate::quantize::INT8_WEIGHTS);
        crate::quantize::quantize_file(
            &float,
            &int8,
            crate::quantize::Granularity::PerChannel,
            &Default::default(),
        )
        .unwrap();
        let model = load_safetensors(&net, &int8, &device).unwrap();
        let Network::Mlp(m) = &model else {
            panic!("an MLP")
        };
        let q = m.output_int8.as_ref().expect("an int8 output layer");
        let hidden = m.hidden[0].int8.as_ref().expect("an int8 hidden layer");
        let values = |t: Tensor<2>| strata_tensor::convert::to_vec(t);
        assert_eq!(q.weight().dequantize(), values(m.output.weight.val()));
        assert_eq!(
            hidden.weight().dequantize(),
            values(m.hidden[0].linear.weight.val())
        );
        assert_eq!(q.weight().scales().len(), 3);
        // Inference runs them: not the float layers' outputs, but close.
        let x = Tensor::<2>::random([5, 20], Distribution::Normal(0.0, 1.0), &device);
        let y = values(model.forward_flat(x.clone()));
        let mut plain = model.clone();
        if let Network::Mlp(m) = &mut plain {
            m.output_int8 = None;
            m.hidden[0].int8 = None;
        }
        let exact = values(plain.forward_flat(x));
        assert_eq!(y.len(), 15);
        assert_ne!(y, exact);
        strata_tensor::compare::check_close("int8 outputs", &y, &exact, 0.05).unwrap();
        // On an autodiff device (fine-tuning) the float layers train.
        let ad = load_safetensors(&net, &int8, &device.clone().autodiff()).unwrap();
        let Network::Mlp(m) = &ad else {
            panic!("an MLP")
        };
        assert!(m.output_int8.is_none());
    }

    /// An int8 CNN run loads with int8 convolutions and linear layers; the static input scales
    /// in the file's metadata reach the layers they name, the others stay dynamic, and a scale
    /// for a layer the model lacks is refused.
    #[test]
    fn an_int8_cnn_loads_its_static_input_scales() {
        use strata_arch::CnnConfig;
        use strata_kernels::int8::InputScale;
        let dir = tempfile::tempdir().unwrap();
        let net = NetworkConfig::Cnn(CnnConfig::new(1, 8, 8, 3).with_channels(vec![4, 6]));
        let device = Device::flex();
        let float = dir.path().join("model.safetensors");
        save_safetensors(&net.init(&device).unwrap(), &float).unwrap();
        let int8 = dir.path().join(crate::quantize::INT8_WEIGHTS);
        let scales = [
            ("features.1.conv".to_string(), 0.02f32),
            ("classifier".into(), 0.5),
        ];
        let g = crate::quantize::Granularity::PerTensor;
        crate::quantize::quantize_file(&float, &int8, g, &scales.iter().cloned().collect())
            .unwrap();
        let mut model = load_safetensors(&net, &int8, &device).unwrap();
        let got: Vec<(String, InputScale)> = model
            .int8_inputs_mut()
            .into_iter()
            .map(|(n, i)| (n, i.scale()))
            .collect();
        assert_eq!(
            got,
            [
                ("features.0.conv".to_string(), InputScale::Dynamic),
                ("features.1.conv".into(), InputScale::Static(0.02)),
                ("hidden.linear".into(), InputScale::Dynamic),
                ("classifier".into(), InputScale::Static(0.5)),
            ]
        );
        let Network::Cnn(m) = &model else {
            panic!("a CNN")
        };
        let conv = m.features[0]
            .conv_int8
            .as_ref()
            .expect("an int8 convolution");
        assert_eq!((conv.weight().d_in(), conv.weight().d_out()), (9, 4));
        let x = Tensor::<2>::random([3, 64], Distribution::Default, &device);
        assert_eq!(model.forward_flat(x).dims(), [3, 3]);
        let wrong = [("features.7.conv".to_string(), 0.1f32)]
            .into_iter()
            .collect();
        crate::quantize::quantize_file(&float, &int8, g, &wrong).unwrap();
        let e = load_safetensors(&net, &int8, &device)
            .unwrap_err()
            .to_string();
        assert!(e.contains("features.7.conv"), "{e}");
    }
}
