//! Loading PyTorch `state_dict`s into burn's attention and transformer modules, where the two
//! layouts differ by more than names: PyTorch's `nn.MultiheadAttention` keeps the query, key
//! and value projections fused in one `in_proj_weight` `[3E, E]`, linear weights are
//! `[out, in]` (burn: `[in, out]`), and burn's `TransformerEncoderLayer` names its norms by
//! position in the residual path, which reorders them in pre-norm mode (encoder and decoder
//! layers). (Modules whose layout
//! matches PyTorch's, such as [`Recurrent`](crate::Recurrent), load with burn-store's
//! `PytorchStore` and a key remapping instead.)
//!
//! ```no_run
//! use burn::nn::transformer::TransformerEncoderConfig;
//! use burn::tensor::Device;
//! use strata_layers::{StateDict, load_encoder_layer};
//! let device = Device::flex();
//! let config = TransformerEncoderConfig::new(8, 16, 2, 1).with_dropout(0.0);
//! let mut encoder = config.init(&device);
//! // torch.save(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True).state_dict(), "layer.pt")
//! let mut sd = StateDict::read("layer.pt")?;
//! let layer = encoder.layers.remove(0);
//! encoder.layers.insert(0, load_encoder_layer(layer, &mut sd, "", &device)?);
//! sd.finish()?; // every tensor of the file was used
//! # Ok::<(), strata_layers::Error>(())
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Param;
use burn::nn::attention::MultiHeadAttention;
use burn::nn::transformer::{TransformerDecoderLayer, TransformerEncoderLayer};
use burn::nn::{LayerNorm, Linear};
use burn::store::pytorch_reader::{DType, PytorchReader};
use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{Error, Result};

/// The float tensors of a PyTorch checkpoint, by name, taken out one by one as they are
/// loaded so that [`finish`](Self::finish) can insist that none is left unused.
#[derive(Debug, Clone)]
pub struct StateDict {
    source: String,
    tensors: BTreeMap<String, (Vec<f32>, Vec<usize>)>,
}

impl StateDict {
    /// Reads a `.pt` / `.pth` file written by `torch.save(module.state_dict(), path)`.
    ///
    /// # Errors
    /// [`Error::Torch`] for an unreadable file or a tensor that is not float32.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let source = path.display().to_string();
        let fail = |message: String| Error::Torch {
            file: source.clone(),
            message,
        };
        let reader = PytorchReader::new(path).map_err(|e| fail(e.to_string()))?;
        let mut tensors = BTreeMap::new();
        for (name, t) in reader.into_tensors() {
            if t.dtype() != DType::F32 {
                return Err(fail(format!(
                    "tensor {name} is {:?}; save the state dict as float32",
                    t.dtype()
                )));
            }
            let shape = t.shape().to_vec();
            let bytes = t.read().map_err(|e| fail(format!("tensor {name}: {e}")))?;
            let data: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            tensors.insert(name, (data, shape));
        }
        Ok(Self { source, tensors })
    }

    /// Takes tensor `key` out, checking its shape.
    ///
    /// # Errors
    /// [`Error::Torch`] when it is missing or of another shape.
    pub fn take(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (data, got) = self.tensors.remove(key).ok_or_else(|| Error::Torch {
            file: self.source.clone(),
            message: format!(
                "no tensor {key}; the file has {:?}",
                self.tensors.keys().collect::<Vec<_>>()
            ),
        })?;
        if got != shape {
            return Err(Error::Torch {
                file: self.source.clone(),
                message: format!("tensor {key} has shape {got:?}, the model expects {shape:?}"),
            });
        }
        Ok(data)
    }

    /// The names not taken yet.
    pub fn remaining(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }

    /// Checks that every tensor was used.
    ///
    /// # Errors
    /// [`Error::Torch`] naming the unused tensors (weights of a larger model).
    pub fn finish(&self) -> Result<()> {
        if self.tensors.is_empty() {
            Ok(())
        } else {
            Err(Error::Torch {
                file: self.source.clone(),
                message: format!("tensors the model has no place for: {:?}", self.remaining()),
            })
        }
    }
}

fn param1(data: Vec<f32>, n: usize, device: &Device) -> Param<Tensor<1>> {
    Param::from_tensor(Tensor::from_data(TensorData::new(data, [n]), device))
}

/// A PyTorch `[out, in]` weight as burn's `[in, out]`.
fn weight_in_out(data: Vec<f32>, out: usize, inp: usize, device: &Device) -> Param<Tensor<2>> {
    let t: Tensor<2> = Tensor::from_data(TensorData::new(data, [out, inp]), device);
    Param::from_tensor(t.transpose())
}

fn prefixed(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Loads `nn.Linear` weights stored under `prefix` (`weight`, `bias`).
///
/// # Errors
/// Missing tensors or other shapes.
pub fn load_linear(
    mut linear: Linear,
    sd: &mut StateDict,
    prefix: &str,
    device: &Device,
) -> Result<Linear> {
    let [d_in, d_out] = linear.weight.dims();
    let w = sd.take(&prefixed(prefix, "weight"), &[d_out, d_in])?;
    linear.weight = weight_in_out(w, d_out, d_in, device);
    if linear.bias.is_some() {
        let b = sd.take(&prefixed(prefix, "bias"), &[d_out])?;
        linear.bias = Some(param1(b, d_out, device));
    }
    Ok(linear)
}

/// Loads `nn.LayerNorm` weights stored under `prefix` (`weight` → gamma, `bias` → beta).
///
/// # Errors
/// Missing tensors or other shapes.
pub fn load_layer_norm(
    mut norm: LayerNorm,
    sd: &mut StateDict,
    prefix: &str,
    device: &Device,
) -> Result<LayerNorm> {
    let [d] = norm.gamma.dims();
    norm.gamma = param1(sd.take(&prefixed(prefix, "weight"), &[d])?, d, device);
    if norm.beta.is_some() {
        norm.beta = Some(param1(sd.take(&prefixed(prefix, "bias"), &[d])?, d, device));
    }
    Ok(norm)
}

/// Loads `nn.MultiheadAttention` weights stored under `prefix`: `in_proj_weight` `[3E, E]` and
/// `in_proj_bias` split into query, key and value, and `out_proj`.
///
/// # Errors
/// Missing tensors or other shapes (including separate `q_proj_weight`s, which PyTorch uses only
/// when key and value widths differ from the query's).
pub fn load_mha(
    mut mha: MultiHeadAttention,
    sd: &mut StateDict,
    prefix: &str,
    device: &Device,
) -> Result<MultiHeadAttention> {
    let e = mha.d_model;
    let w = sd.take(&prefixed(prefix, "in_proj_weight"), &[3 * e, e])?;
    let b = sd.take(&prefixed(prefix, "in_proj_bias"), &[3 * e])?;
    let part = |k: usize| {
        (
            w[k * e * e..(k + 1) * e * e].to_vec(),
            b[k * e..(k + 1) * e].to_vec(),
        )
    };
    for (k, linear) in [&mut mha.query, &mut mha.key, &mut mha.value]
        .into_iter()
        .enumerate()
    {
        let (wk, bk) = part(k);
        linear.weight = weight_in_out(wk, e, e, device);
        linear.bias = Some(param1(bk, e, device));
    }
    mha.output = load_linear(mha.output, sd, &prefixed(prefix, "out_proj"), device)?;
    Ok(mha)
}

/// Loads the two linear layers of a transformer layer's feed-forward block (`linear1`,
/// `linear2`).
fn load_feed_forward(
    mut pwff: burn::nn::transformer::PositionWiseFeedForward,
    sd: &mut StateDict,
    prefix: &str,
    device: &Device,
) -> Result<burn::nn::transformer::PositionWiseFeedForward> {
    pwff.linear_inner = load_linear(pwff.linear_inner, sd, &prefixed(prefix, "linear1"), device)?;
    pwff.linear_outer = load_linear(pwff.linear_outer, sd, &prefixed(prefix, "linear2"), device)?;
    Ok(pwff)
}

/// Loads an `nn.TransformerDecoderLayer` stored under `prefix` (`self_attn`,
/// `multihead_attn`, `linear1`, `linear2`, `norm1`..`norm3`). PyTorch numbers its norms by
/// sub-layer (self-attention, cross-attention, feed-forward); burn's `norm_1`..`norm_3` follow
/// the residual path, which in pre-norm layers puts `norm_3` before self-attention.
///
/// # Errors
/// Missing tensors or other shapes.
pub fn load_decoder_layer(
    mut layer: TransformerDecoderLayer,
    sd: &mut StateDict,
    prefix: &str,
    device: &Device,
) -> Result<TransformerDecoderLayer> {
    layer.self_attn = load_mha(layer.self_attn, sd, &prefixed(prefix, "self_attn"), device)?;
    layer.cross_attn = load_mha(
        layer.cross_attn,
        sd,
        &prefixed(prefix, "multihead_attn"),
        device,
    )?;
    layer.pwff = load_feed_forward(layer.pwff, sd, prefix, device)?;
    let [n1, n2, n3] = ["norm1", "norm2", "norm3"].map(|n| prefixed(prefix, n));
    let (self_norm, cross_norm, ff_norm) = if layer.norm_first {
        (&mut layer.norm_3, &mut layer.norm_1, &mut layer.norm_2)
    } else {
        (&mut layer.norm_1, &mut layer.norm_2, &mut layer.norm_3)
    };
    for (norm, key) in [(self_norm, n1), (cross_norm, n2), (ff_norm, n3)] {
        *norm = load_layer_norm(norm.clone(), sd, &key, device)?;
    }
    Ok(layer)
}

/// Loads an `nn.TransformerEncoderLayer` stored under `prefix` (`self_attn`, `linear1`,
/// `linear2`, `norm1`, `norm2`). PyTorch's `norm1` is the norm next to attention: burn's
/// `norm_1` in post-norm layers, `norm_2` in pre-norm ones (`norm_first`).
///
/// # Errors
/// Missing tensors or other shapes.
pub fn load_encoder_layer(
    mut layer: TransformerEncoderLayer,
    sd: &mut StateDict,
    prefix: &str,
    device: &Device,
) -> Result<TransformerEncoderLayer> {
    layer.mha = load_mha(layer.mha, sd, &prefixed(prefix, "self_attn"), device)?;
    layer.pwff = load_feed_forward(layer.pwff, sd, prefix, device)?;
    let (norm1, norm2) = (prefixed(prefix, "norm1"), prefixed(prefix, "norm2"));
    if layer.norm_first {
        layer.norm_2 = load_layer_norm(layer.norm_2, sd, &norm1, device)?;
        layer.norm_1 = load_layer_norm(layer.norm_1, sd, &norm2, device)?;
    } else {
        layer.norm_1 = load_layer_norm(layer.norm_1, sd, &norm1, device)?;
        layer.norm_2 = load_layer_norm(layer.norm_2, sd, &norm2, device)?;
    }
    Ok(layer)
}
