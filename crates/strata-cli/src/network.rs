//! Building the network a run names from its hyper-parameters and the data's sizes, and
//! saving / loading its weights as safetensors.

use std::path::Path;

use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use strata::arch::{
    CellKind, CharLmConfig, CnnConfig, MlpConfig, Network, NetworkConfig, RecurrentConfig,
    ResNetConfig, SequenceHead, SequenceModelConfig, TokenInput, TransformerClassifierConfig,
    TransformerLmConfig, VggConfig,
};

use crate::data_source::Preprocess;
use crate::error::{Error, Result};
use crate::run_config::{RunConfig, is_recurrent, is_resnet, is_vgg};

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
        m if is_recurrent(m) => {
            let (seq_len, d_input) = sequence_shape(config, pre)?;
            let head = if pre.series.is_some() {
                SequenceHead::Forecast { residual: true }
            } else {
                SequenceHead::Classify {
                    pooling: n.sequence_pooling,
                }
            };
            NetworkConfig::Recurrent(
                SequenceModelConfig::new(recurrent_config(config, d_input)?, seq_len, n_out, head)
                    .with_dropout(n.dropout),
            )
        }
        "vit" => {
            let [c, h, w] = image_shape("vit", config, pre)?;
            let patch_size = match n.patch_size {
                0 => auto_patch(h, w),
                p => p,
            };
            transformer_classifier(
                config,
                TokenInput::Patches {
                    in_channels: c,
                    height: h,
                    width: w,
                    patch_size,
                },
                n_out,
            )?
        }
        "tab-transformer" => {
            let table = pre.table.as_ref().ok_or_else(|| {
                Error::Usage(format!(
                    "model tab-transformer needs a table with named columns (adult, table:PATH); `{}` is not one",
                    config.dataset
                ))
            })?;
            transformer_classifier(
                config,
                TokenInput::Features {
                    n_numeric: table.n_numeric(),
                    cardinalities: table.cardinalities(),
                },
                n_out,
            )?
        }
        m if is_resnet(m) => {
            let [c, h, w] = image_shape(m, config, pre)?;
            NetworkConfig::ResNet {
                resnet: ResNetConfig::by_name(m, c, n_out)?,
                name: m.to_string(),
                height: h,
                width: w,
            }
        }
        m if is_vgg(m) => {
            let [c, h, w] = image_shape(m, config, pre)?;
            let d_hidden = *n.hidden.first().ok_or_else(|| {
                Error::Usage("a VGG needs a classifier width (--hidden N)".into())
            })?;
            // torchvision's 7x7 pool suits 224-pixel images and its weights; on small images
            // it copies a 1x1 map 49 times into a classifier that then trains poorly.
            let pool_size = match n.pool_size {
                0 if h.min(w) >= 224 || config.transfer.init_from.is_some() => 7,
                0 => 1,
                p => p,
            };
            let vgg = VggConfig::by_name(m, c, n_out)?
                .with_d_hidden(d_hidden)
                .with_dropout(n.dropout)
                .with_pool_size(pool_size);
            if let Err(e) = vgg.check_input(h, w) {
                return Err(Error::Usage(format!(
                    "{e}: resize the images with --resize 32 (or larger)"
                )));
            }
            NetworkConfig::Vgg {
                vgg,
                name: m.to_string(),
                height: h,
                width: w,
            }
        }
        "seq2seq" => {
            return Err(Error::Usage(format!(
                "seq2seq trains on a transduction task (reverse, sort, copy), not `{}`",
                config.dataset
            )));
        }
        "transformer-lm" => {
            return Err(Error::Usage(format!(
                "transformer-lm is a language model: train it on text (shakespeare, text:PATH), not `{}`",
                config.dataset
            )));
        }
        other => {
            return Err(Error::Usage(format!(
                "unknown model `{other}`: expected mlp, cnn, rnn, rnn-relu, lstm, gru, transformer-lm, vit, tab-transformer, seq2seq, a resnet or a vgg"
            )));
        }
    };
    net.validate()?;
    Ok(net)
}

/// `[channels, height, width]` of image data, or an error saying that `model` needs images.
fn image_shape(model: &str, config: &RunConfig, pre: &Preprocess) -> Result<[usize; 3]> {
    pre.image_shape.ok_or_else(|| {
        Error::Usage(format!(
            "model {model} needs image data (digits, fashion-mnist, csv:PATH with --image-shape); `{}` is not images",
            config.dataset
        ))
    })
}

/// The largest patch side up to 4 that divides both image sides and still leaves at least 16
/// patches (4 for 28x28, 2 for 8x8), or 1.
pub fn auto_patch(height: usize, width: usize) -> usize {
    (1..=height.min(width).min(4))
        .rev()
        .find(|&p| {
            height.is_multiple_of(p) && width.is_multiple_of(p) && (height / p) * (width / p) >= 16
        })
        .unwrap_or(1)
}

/// A transformer classifier over `input`: width `--hidden`, `--heads`, `--layers`, feed-forward
/// twice the width.
fn transformer_classifier(
    config: &RunConfig,
    input: TokenInput,
    n_out: usize,
) -> Result<NetworkConfig> {
    let n = &config.network;
    let d_model = transformer_width(config)?;
    Ok(NetworkConfig::Transformer(
        TransformerClassifierConfig::new(input, n_out)
            .with_d_model(d_model)
            .with_n_heads(n.heads)
            .with_n_layers(n.layers)
            .with_d_ff(2 * d_model)
            .with_dropout(n.dropout)
            .with_activation(n.activation)
            .with_positional(n.positional),
    ))
}

/// A transformer's width: the first `--hidden` value.
///
/// # Errors
/// No `--hidden` value.
pub fn transformer_width(config: &RunConfig) -> Result<usize> {
    config
        .network
        .hidden
        .first()
        .copied()
        .ok_or_else(|| Error::Usage("a transformer needs a width (--hidden N)".into()))
}

/// The cell a recurrent model name stands for.
pub fn cell_kind(model: &str) -> Result<CellKind> {
    Ok(match model {
        "rnn" => CellKind::RnnTanh,
        "rnn-relu" => CellKind::RnnRelu,
        "lstm" => CellKind::Lstm,
        "gru" => CellKind::Gru,
        other => {
            return Err(Error::Usage(format!(
                "`{other}` is not a recurrent model (rnn, rnn-relu, lstm, gru)"
            )));
        }
    })
}

/// The recurrent stack a run asks for, reading `d_input` features per step.
///
/// # Errors
/// A model that is not recurrent, or no hidden size.
pub fn recurrent_config(config: &RunConfig, d_input: usize) -> Result<RecurrentConfig> {
    let n = &config.network;
    let d_hidden = *n
        .hidden
        .first()
        .ok_or_else(|| Error::Usage("a recurrent model needs a hidden size (--hidden N)".into()))?;
    Ok(
        RecurrentConfig::new(cell_kind(&config.model)?, d_input, d_hidden)
            .with_n_layers(n.layers)
            .with_bidirectional(n.bidirectional)
            .with_dropout(if n.layers > 1 { n.dropout } else { 0.0 }),
    )
}

/// Steps per sample and features per step of flat rows: a series window is one value per
/// step, an image one row per step, other rows `--seq-len` equal steps.
fn sequence_shape(config: &RunConfig, pre: &Preprocess) -> Result<(usize, usize)> {
    if let Some(s) = &pre.series {
        return Ok((s.window, 1));
    }
    if let Some([c, h, w]) = pre.image_shape {
        if c != 1 {
            return Err(Error::Usage(format!(
                "recurrent models read images row by row and need one channel, got {c}"
            )));
        }
        return Ok((h, w));
    }
    let steps = match config.network.seq_len {
        0 => pre.n_features,
        s => s,
    };
    if !pre.n_features.is_multiple_of(steps) {
        return Err(Error::Usage(format!(
            "--seq-len {steps} does not divide the {} features per sample",
            pre.n_features
        )));
    }
    Ok((steps, pre.n_features / steps))
}

/// The transformer language model a run asks for over a vocabulary of `vocab` characters:
/// width `--hidden`, `--heads`, `--layers`, context `--seq-len`, feed-forward 4x the width.
///
/// # Errors
/// Invalid sizes, heads that do not divide the width.
pub fn transformer_lm_config(config: &RunConfig, vocab: usize) -> Result<TransformerLmConfig> {
    let n = &config.network;
    let d_model = transformer_width(config)?;
    let c = TransformerLmConfig::new(vocab, n.seq_len)
        .with_d_model(d_model)
        .with_n_heads(n.heads)
        .with_n_layers(n.layers)
        .with_d_ff(4 * d_model)
        .with_dropout(n.dropout)
        .with_activation(n.activation)
        .with_positional(n.positional);
    c.validate()?;
    Ok(c)
}

/// The character language model a run asks for over a vocabulary of `vocab` characters.
///
/// # Errors
/// A model that is not recurrent, or invalid sizes.
pub fn char_lm_config(config: &RunConfig, vocab: usize) -> Result<CharLmConfig> {
    let c = CharLmConfig::new(vocab, recurrent_config(config, config.network.embed)?)
        .with_dropout(config.network.dropout);
    c.validate()?;
    Ok(c)
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
    let mut store = SafetensorsStore::from_file(path)
        .validate(true)
        .allow_partial(false);
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
    use super::auto_patch;

    #[test]
    fn patches_default_to_at_most_four_pixels_and_at_least_sixteen_patches() {
        assert_eq!(auto_patch(28, 28), 4); // 49 patches
        assert_eq!(auto_patch(8, 8), 2); // 16 patches
        assert_eq!(auto_patch(32, 32), 4);
        assert_eq!(auto_patch(6, 6), 1); // 2x2 would leave 9
        assert_eq!(auto_patch(12, 8), 2);
    }
}
