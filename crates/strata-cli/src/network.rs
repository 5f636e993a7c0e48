//! Building the network a run names from its hyper-parameters and the data's sizes, and
//! saving / loading its weights as safetensors.

use std::path::Path;

use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use strata::arch::{CnnConfig, MlpConfig, Network, NetworkConfig};

use crate::data_source::Preprocess;
use crate::error::{Error, Result};
use crate::run_config::RunConfig;

/// The architecture config for `config` on data described by `pre` with `n_out` outputs.
///
/// # Errors
/// A CNN asked for on non-image data, or invalid sizes.
pub fn network_config(config: &RunConfig, pre: &Preprocess, n_out: usize) -> Result<NetworkConfig> {
    let n = &config.network;
    let net = match config.model.as_str() {
        "mlp" => NetworkConfig::Mlp(
            MlpConfig::new(pre.n_features, n_out)
                .with_d_hidden(n.hidden.clone())
                .with_activation(n.activation)
                .with_dropout(n.dropout)
                .with_batch_norm(n.batch_norm),
        ),
        "cnn" => {
            let [c, h, w] = pre.image_shape.ok_or_else(|| {
                Error::Usage(format!(
                    "model cnn needs image data (digits, fashion-mnist); `{}` is tabular: use --model mlp",
                    config.dataset
                ))
            })?;
            NetworkConfig::Cnn(
                CnnConfig::new(c, h, w, n_out)
                    .with_channels(n.channels.clone())
                    .with_kernel_size(n.kernel_size)
                    .with_pooling(n.pooling)
                    .with_d_hidden(n.d_hidden)
                    .with_activation(n.activation)
                    .with_dropout(n.dropout)
                    .with_batch_norm(n.batch_norm),
            )
        }
        other => {
            return Err(Error::Usage(format!(
                "unknown model `{other}`: expected mlp or cnn"
            )));
        }
    };
    net.validate()?;
    Ok(net)
}

/// Writes the weights as safetensors (PyTorch-style dotted names).
///
/// # Errors
/// I/O or serialisation errors.
pub fn save_safetensors(model: &Network, path: &Path) -> Result<()> {
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
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    let mut model = net.init(device)?;
    let mut store = SafetensorsStore::from_file(path)
        .validate(true)
        .allow_partial(false);
    let result = model.load_from(&mut store).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        message: format!("cannot read weights: {e}"),
    })?;
    if !result.errors.is_empty() || !result.missing.is_empty() {
        let missing: Vec<&str> = result.missing.iter().map(|(k, _)| k.as_str()).collect();
        return Err(Error::Config {
            path: path.to_path_buf(),
            message: format!(
                "weights do not fit this {} model: missing {:?}, errors {:?}",
                net.name(),
                missing,
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
