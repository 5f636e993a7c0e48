//! A transformer encoder that classifies a sequence of tokens, with three ways of making the
//! tokens from a flat input row:
//! - [`TokenInput::Tokens`]: token ids (0 is padding, masked out of attention), an embedding
//!   per id, as a BERT-style sequence classifier;
//! - [`TokenInput::Patches`]: an image cut into `patch_size x patch_size` patches, each
//!   projected linearly (a strided convolution), as the Vision Transformer (Dosovitskiy et al.
//!   2021);
//! - [`TokenInput::Features`]: one token per tabular feature, `x_j * w_j + b_j` for a numeric
//!   feature and an embedding per category for a categorical one, as FT-Transformer
//!   (Gorishniy et al. 2021).
//!
//! A learned class token is put first; its output, normalised, goes through a linear head.
//! Token and patch inputs get position codes; features do not need them, since every feature
//! has its own weights.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use strata_arch::{TokenInput, TransformerClassifierConfig};
//! let device = Device::flex();
//! let vit = TransformerClassifierConfig::new(
//!     TokenInput::Patches { in_channels: 1, height: 8, width: 8, patch_size: 2 },
//!     10,
//! )
//! .with_d_model(16)
//! .with_n_heads(2)
//! .with_d_ff(32)
//! .init(&device)?;
//! let logits = vit.forward_flat(Tensor::<2>::zeros([3, 64], &device));
//! assert_eq!(logits.dims(), [3, 10]);
//! # Ok::<(), strata_arch::Error>(())
//! ```

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::attention::MhaInput;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::transformer::{TransformerEncoder, TransformerEncoderConfig};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig,
    Linear, LinearConfig,
};
use burn::tensor::{Bool, Device, Tensor};
use serde::{Deserialize, Serialize};
use strata_kernels::conv2d_layer;
use strata_layers::{ActivationKind, Positional, Positions, PositionsConfig};

use crate::error::{Error, check_dropout, check_size};

/// Checks the sizes every transformer shares.
pub(crate) fn check_transformer(
    d_model: usize,
    n_heads: usize,
    n_layers: usize,
    d_ff: usize,
    dropout: f64,
) -> crate::Result<()> {
    for (name, v) in [
        ("d_model", d_model),
        ("n_heads", n_heads),
        ("n_layers", n_layers),
        ("d_ff", d_ff),
    ] {
        check_size(name, v)?;
    }
    if !d_model.is_multiple_of(n_heads) {
        return Err(Error::Invalid(format!(
            "{n_heads} heads do not divide the model width {d_model}"
        )));
    }
    check_dropout(dropout)
}

/// The shape of a stack of transformer layers.
pub(crate) struct Stack {
    pub d_model: usize,
    pub d_ff: usize,
    pub n_heads: usize,
    pub n_layers: usize,
    pub dropout: f64,
    pub norm_first: bool,
    pub activation: ActivationKind,
}

/// The epsilon of every layer norm in Strata's transformers (burn's default). burn keeps a
/// `LayerNorm`'s epsilon private, so the layers are built with this one and Strata's kernels
/// (`strata_kernels::transformer_encoder`, `layer_norm_layer`) are called with it.
pub const LAYER_NORM_EPS: f64 = 1e-5;

/// burn's encoder stack.
pub(crate) fn encoder_stack(s: &Stack, device: &Device) -> TransformerEncoder {
    TransformerEncoderConfig::new(s.d_model, s.d_ff, s.n_heads, s.n_layers)
        .with_dropout(s.dropout)
        .with_layer_norm_eps(LAYER_NORM_EPS)
        .with_norm_first(s.norm_first)
        .with_activation(s.activation.config())
        .init(device)
}

/// Each layer's attention weights `[batch, heads, time, time]` for input `x`, under the given
/// masks, for inspection.
pub(crate) fn encoder_attention(
    encoder: &TransformerEncoder,
    mut x: Tensor<3>,
    mask_pad: Option<Tensor<2, Bool>>,
    mask_attn: Option<Tensor<3, Bool>>,
) -> Vec<Tensor<4>> {
    let mut weights = Vec::with_capacity(encoder.layers.len());
    for layer in &encoder.layers {
        // The attention sub-layer's input: normalised first in pre-norm layers (burn's
        // `norm_2` sits before attention there).
        let attn_in = if layer.norm_first {
            layer.norm_2.forward(x.clone())
        } else {
            x.clone()
        };
        let mut input = MhaInput::self_attn(attn_in);
        if let Some(m) = &mask_pad {
            input = input.mask_pad(m.clone());
        }
        if let Some(m) = &mask_attn {
            input = input.mask_attn(m.clone());
        }
        weights.push(layer.mha.forward(input).weights);
        x = layer.forward(x, mask_pad.clone(), mask_attn.clone());
    }
    weights
}

/// How a flat input row becomes tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenInput {
    /// A row of `context` token ids below `vocab_size`; id 0 is padding.
    Tokens {
        /// Token ids, padding (0) included.
        vocab_size: usize,
        /// Tokens per row.
        context: usize,
    },
    /// A row-major `C x H x W` image cut into square patches.
    Patches {
        /// Image channels.
        in_channels: usize,
        /// Image height.
        height: usize,
        /// Image width.
        width: usize,
        /// Patch side; must divide the height and the width.
        patch_size: usize,
    },
    /// `n_numeric` numeric features (standardised), then one category index per categorical
    /// feature, each below its cardinality.
    Features {
        /// Numeric features, first in the row.
        n_numeric: usize,
        /// Categories of each categorical feature, in row order after the numeric ones.
        cardinalities: Vec<usize>,
    },
}

impl TokenInput {
    /// Values per input row.
    pub fn d_input(&self) -> usize {
        match self {
            TokenInput::Tokens { context, .. } => *context,
            TokenInput::Patches {
                in_channels,
                height,
                width,
                ..
            } => in_channels * height * width,
            TokenInput::Features {
                n_numeric,
                cardinalities,
            } => n_numeric + cardinalities.len(),
        }
    }

    /// Tokens per row, before the class token.
    pub fn n_tokens(&self) -> usize {
        match self {
            TokenInput::Tokens { context, .. } => *context,
            TokenInput::Patches {
                height,
                width,
                patch_size,
                ..
            } => (height / patch_size) * (width / patch_size),
            TokenInput::Features {
                n_numeric,
                cardinalities,
            } => n_numeric + cardinalities.len(),
        }
    }

    /// The model name users give this kind of input: `transformer`, `vit` or
    /// `tab-transformer`.
    pub fn model_name(&self) -> &'static str {
        match self {
            TokenInput::Tokens { .. } => "transformer",
            TokenInput::Patches { .. } => "vit",
            TokenInput::Features { .. } => "tab-transformer",
        }
    }

    fn validate(&self) -> crate::Result<()> {
        match self {
            TokenInput::Tokens {
                vocab_size,
                context,
            } => {
                check_size("vocab_size", *vocab_size)?;
                check_size("context", *context)
            }
            TokenInput::Patches {
                in_channels,
                height,
                width,
                patch_size,
            } => {
                for (name, v) in [
                    ("in_channels", *in_channels),
                    ("height", *height),
                    ("width", *width),
                    ("patch_size", *patch_size),
                ] {
                    check_size(name, v)?;
                }
                if !height.is_multiple_of(*patch_size) || !width.is_multiple_of(*patch_size) {
                    return Err(Error::Invalid(format!(
                        "patch size {patch_size} does not divide the {height}x{width} image"
                    )));
                }
                Ok(())
            }
            TokenInput::Features {
                n_numeric,
                cardinalities,
            } => {
                if n_numeric + cardinalities.len() == 0 {
                    return Err(Error::Invalid("a table needs at least one feature".into()));
                }
                if let Some(k) = cardinalities.iter().position(|&c| c == 0) {
                    return Err(Error::Invalid(format!(
                        "categorical feature {k} has no categories"
                    )));
                }
                Ok(())
            }
        }
    }
}

/// Configuration of a [`TransformerClassifier`].
#[derive(Config, Debug)]
pub struct TransformerClassifierConfig {
    /// How rows become tokens.
    pub input: TokenInput,
    /// Classes.
    pub n_classes: usize,
    /// Model width, default 64.
    #[config(default = 64)]
    pub d_model: usize,
    /// Attention heads, default 4; must divide `d_model`.
    #[config(default = 4)]
    pub n_heads: usize,
    /// Layers, default 3.
    #[config(default = 3)]
    pub n_layers: usize,
    /// Feed-forward width, default 128.
    #[config(default = 128)]
    pub d_ff: usize,
    /// Dropout in the layers and on the tokens, default 0.1.
    #[config(default = 0.1)]
    pub dropout: f64,
    /// Pre-norm (default) or post-norm layers.
    #[config(default = true)]
    pub norm_first: bool,
    /// Activation of the feed-forward layers, default GELU.
    #[config(default = "ActivationKind::Gelu")]
    pub activation: ActivationKind,
    /// Position codes of token and patch inputs: learned (default) or sinusoidal.
    #[config(default = "Positional::Learned")]
    pub positional: Positional,
}

/// A transformer encoder classifier over tokens, image patches or tabular features.
#[derive(Module, Debug)]
pub struct TransformerClassifier {
    /// Token embeddings (token input).
    pub embedding: Option<Embedding>,
    /// Patch projection, a `patch_size`-strided convolution (image input).
    pub patch_embedding: Option<Conv2d>,
    /// Per-feature weights `[n_numeric, d_model]` of numeric features (tabular input).
    pub numeric_weight: Option<Param<Tensor<2>>>,
    /// Per-feature biases `[n_numeric, d_model]` of numeric features (tabular input).
    pub numeric_bias: Option<Param<Tensor<2>>>,
    /// One embedding row per category of every categorical feature (tabular input).
    pub categories: Option<Embedding>,
    /// The class token `[1, 1, d_model]`.
    pub cls_token: Param<Tensor<3>>,
    /// Position codes (token and patch inputs).
    pub positions: Option<Positions>,
    /// Dropout on the tokens.
    pub dropout: Dropout,
    /// The encoder layers.
    pub encoder: TransformerEncoder,
    /// Norm of the class token's output.
    pub norm: LayerNorm,
    /// Class logits.
    pub head: Linear,
    /// How rows become tokens.
    #[module(skip)]
    pub input: TokenInput,
}

impl TransformerClassifierConfig {
    /// Checks sizes, heads, dropout and the input description.
    ///
    /// # Errors
    /// A zero size, heads that do not divide the width, a dropout outside `[0, 1)`, a patch
    /// size that does not divide the image.
    pub fn validate(&self) -> crate::Result<()> {
        check_size("n_classes", self.n_classes)?;
        self.input.validate()?;
        check_transformer(
            self.d_model,
            self.n_heads,
            self.n_layers,
            self.d_ff,
            self.dropout,
        )
    }

    /// Builds the model.
    ///
    /// # Errors
    /// As [`validate`](Self::validate).
    pub fn init(&self, device: &Device) -> crate::Result<TransformerClassifier> {
        self.validate()?;
        let d = self.d_model;
        let small = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        let (mut embedding, mut patch_embedding, mut positions) = (None, None, None);
        let (mut numeric_weight, mut numeric_bias, mut categories) = (None, None, None);
        match &self.input {
            TokenInput::Tokens {
                vocab_size,
                context,
            } => {
                embedding = Some(EmbeddingConfig::new(*vocab_size, d).init(device));
                positions = Some(context + 1);
            }
            TokenInput::Patches {
                in_channels,
                patch_size,
                ..
            } => {
                let p = *patch_size;
                patch_embedding = Some(
                    Conv2dConfig::new([*in_channels, d], [p, p])
                        .with_stride([p, p])
                        .init(device),
                );
                positions = Some(self.input.n_tokens() + 1);
            }
            TokenInput::Features {
                n_numeric,
                cardinalities,
            } => {
                if *n_numeric > 0 {
                    // FT-Transformer's initialisation: uniform in +-1/sqrt(d).
                    let bound = 1.0 / (d as f64).sqrt();
                    let uniform = Initializer::Uniform {
                        min: -bound,
                        max: bound,
                    };
                    numeric_weight = Some(uniform.init([*n_numeric, d], device));
                    numeric_bias = Some(uniform.init([*n_numeric, d], device));
                }
                let total: usize = cardinalities.iter().sum();
                if total > 0 {
                    categories = Some(EmbeddingConfig::new(total, d).init(device));
                }
            }
        }
        Ok(TransformerClassifier {
            embedding,
            patch_embedding,
            numeric_weight,
            numeric_bias,
            categories,
            cls_token: small.init([1, 1, d], device),
            positions: positions.map(|n| {
                PositionsConfig::new(n, d)
                    .with_kind(self.positional)
                    .init(device)
            }),
            dropout: DropoutConfig::new(self.dropout).init(),
            encoder: encoder_stack(
                &Stack {
                    d_model: d,
                    d_ff: self.d_ff,
                    n_heads: self.n_heads,
                    n_layers: self.n_layers,
                    dropout: self.dropout,
                    norm_first: self.norm_first,
                    activation: self.activation,
                },
                device,
            ),
            norm: LayerNormConfig::new(d)
                .with_epsilon(LAYER_NORM_EPS)
                .init(device),
            head: LinearConfig::new(d, self.n_classes).init(device),
            input: self.input.clone(),
        })
    }
}

impl TransformerClassifier {
    /// The tokens of a batch of rows, and the padding mask of token input.
    fn tokenize(&self, rows: Tensor<2>) -> (Tensor<3>, Option<Tensor<2, Bool>>) {
        let [batch, n] = rows.dims();
        let device = rows.device();
        match &self.input {
            TokenInput::Tokens { .. } => {
                let embedding = self.embedding.as_ref().expect("token input has embeddings");
                // The class token is never padding.
                let with_cls =
                    Tensor::cat(vec![Tensor::ones([batch, 1], &device), rows.clone()], 1);
                let mask = with_cls.equal_elem(0.0);
                (embedding.forward(rows.int()), Some(mask))
            }
            TokenInput::Patches {
                in_channels,
                height,
                width,
                ..
            } => {
                let conv = self
                    .patch_embedding
                    .as_ref()
                    .expect("image input has patches");
                let images = rows.reshape([batch, *in_channels, *height, *width]);
                let p = conv2d_layer(conv, images); // [batch, d, h / patch, w / patch]
                let [_, d, ph, pw] = p.dims();
                (p.reshape([batch, d, ph * pw]).swap_dims(1, 2), None)
            }
            TokenInput::Features {
                n_numeric,
                cardinalities,
            } => {
                let mut parts = Vec::with_capacity(2);
                if let (Some(w), Some(b)) = (&self.numeric_weight, &self.numeric_bias) {
                    let x = rows.clone().narrow(1, 0, *n_numeric).unsqueeze_dim::<3>(2);
                    let [k, d] = w.dims();
                    let w = w.val().unsqueeze_dim::<3>(0).expand([batch, k, d]);
                    let b = b.val().unsqueeze_dim::<3>(0).expand([batch, k, d]);
                    parts.push(x.expand([batch, k, d]) * w + b);
                }
                if let Some(emb) = &self.categories {
                    let offsets: Vec<f32> = cardinalities
                        .iter()
                        .scan(0usize, |acc, &c| {
                            let o = *acc;
                            *acc += c;
                            Some(o as f32)
                        })
                        .collect();
                    let k = offsets.len();
                    let offsets = Tensor::<1>::from_floats(offsets.as_slice(), &device)
                        .unsqueeze_dim::<2>(0)
                        .expand([batch, k]);
                    let ids = rows.narrow(1, *n_numeric, n - n_numeric) + offsets;
                    parts.push(emb.forward(ids.int()));
                }
                (Tensor::cat(parts, 1), None)
            }
        }
    }

    /// The encoder's input for a batch of rows: class token, tokens, positions, dropout.
    fn embed(&self, rows: Tensor<2>) -> (Tensor<3>, Option<Tensor<2, Bool>>) {
        let (tokens, mask) = self.tokenize(rows);
        let [batch, _, d] = tokens.dims();
        let x = Tensor::cat(vec![self.cls_token.val().expand([batch, 1, d]), tokens], 1);
        let x = match &self.positions {
            Some(p) => p.forward(x),
            None => x,
        };
        (strata_kernels::dropout_layer(&self.dropout, x), mask)
    }

    /// Class logits for flat input rows.
    ///
    /// # Shapes
    /// - `rows`: `[batch, d_input]` ([`TokenInput::d_input`]): token ids as floats, a
    ///   flattened `C x H x W` image, or numeric features then category indices
    /// - returns `[batch, n_classes]`
    ///
    /// # Panics
    /// When the row length does not match the input description. Token ids and category
    /// indices must be in range (the data loaders check them).
    pub fn forward_flat(&self, rows: Tensor<2>) -> Tensor<2> {
        let (x, mask) = self.embed(rows);
        let y = strata_kernels::transformer_encoder(&self.encoder, x, mask, None, LAYER_NORM_EPS);
        let [batch, _, d] = y.dims();
        let cls = y.narrow(1, 0, 1).reshape([batch, d]);
        let cls = strata_kernels::layer_norm_layer(&self.norm, cls, LAYER_NORM_EPS);
        strata_kernels::linear_layer(&self.head, cls)
    }

    /// Each layer's attention weights `[batch, n_heads, 1 + n_tokens, 1 + n_tokens]` (position
    /// 0 is the class token), for inspection: row 0 shows which tokens or patches the
    /// classification draws on. Padding tokens get zero weight.
    ///
    /// # Panics
    /// As [`forward_flat`](Self::forward_flat).
    pub fn attention_weights(&self, rows: Tensor<2>) -> Vec<Tensor<4>> {
        let (x, mask) = self.embed(rows);
        encoder_attention(&self.encoder, x, mask, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;
    use proptest::prelude::*;

    fn model(input: TokenInput) -> TransformerClassifier {
        TransformerClassifierConfig::new(input, 3)
            .with_d_model(16)
            .with_n_heads(2)
            .with_n_layers(2)
            .with_d_ff(32)
            .with_dropout(0.0)
            .init(&Device::flex())
            .unwrap()
    }

    fn rows(v: Vec<f32>, n: usize) -> Tensor<2> {
        let d = v.len() / n;
        Tensor::from_data(TensorData::new(v, [n, d]), &Device::flex())
    }

    #[test]
    fn every_input_kind_gives_logits() {
        let tok = model(TokenInput::Tokens {
            vocab_size: 5,
            context: 6,
        });
        assert_eq!(tok.forward_flat(rows(vec![1.0; 12], 2)).dims(), [2, 3]);
        let vit = model(TokenInput::Patches {
            in_channels: 2,
            height: 4,
            width: 6,
            patch_size: 2,
        });
        assert_eq!(vit.forward_flat(rows(vec![0.5; 96], 2)).dims(), [2, 3]);
        let w = vit.attention_weights(rows(vec![0.5; 96], 2));
        assert_eq!(w[0].dims(), [2, 2, 7, 7]);
        let tab = model(TokenInput::Features {
            n_numeric: 2,
            cardinalities: vec![3, 4],
        });
        let y = tab.forward_flat(rows(vec![0.1, -1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 0.0], 2));
        assert_eq!(y.dims(), [2, 3]);
        let numeric_only = model(TokenInput::Features {
            n_numeric: 3,
            cardinalities: vec![],
        });
        assert_eq!(
            numeric_only.forward_flat(rows(vec![1.0; 3], 1)).dims(),
            [1, 3]
        );
    }

    #[test]
    fn bad_configs_are_errors() {
        let d = Device::flex();
        let vit = |p| {
            TransformerClassifierConfig::new(
                TokenInput::Patches {
                    in_channels: 1,
                    height: 28,
                    width: 28,
                    patch_size: p,
                },
                10,
            )
        };
        let e = vit(5).init(&d).unwrap_err().to_string();
        assert!(
            e.contains("patch size 5 does not divide the 28x28 image"),
            "{e}"
        );
        let e = vit(7).with_d_model(30).init(&d).unwrap_err().to_string();
        assert!(
            e.contains("4 heads do not divide the model width 30"),
            "{e}"
        );
        let e = TransformerClassifierConfig::new(
            TokenInput::Features {
                n_numeric: 1,
                cardinalities: vec![2, 0],
            },
            2,
        )
        .init(&d)
        .unwrap_err()
        .to_string();
        assert!(e.contains("categorical feature 1 has no categories"), "{e}");
        assert!(vit(7).with_dropout(1.0).init(&d).is_err());
    }

    #[test]
    fn the_class_token_ignores_padding() {
        let m = model(TokenInput::Tokens {
            vocab_size: 6,
            context: 5,
        });
        let w = m.attention_weights(rows(vec![3.0, 1.0, 0.0, 0.0, 0.0], 1));
        for layer in w {
            // Columns 3.. (tokens 2..) are padding: no weight.
            let pad = layer.narrow(3, 3, 3).abs().max().into_scalar::<f32>();
            assert!(pad < 1e-7, "{pad}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// Padding is masked: whatever the padding token's embedding is, a padded row's
        /// logits stay the same, and so do those of a row beside it in the batch.
        #[test]
        fn padding_changes_nothing(tokens in proptest::collection::vec(1u8..6, 1..8), shift in -3.0f32..3.0) {
            let m = model(TokenInput::Tokens { vocab_size: 6, context: 8 });
            let mut a: Vec<f32> = tokens.iter().map(|&t| t as f32).collect();
            a.resize(8, 0.0);
            let batch = rows([a.clone(), vec![5.0; 8]].concat(), 2);
            let before = m.forward_flat(batch.clone());
            let mut moved = m.clone();
            let emb = moved.embedding.as_mut().unwrap();
            let w = emb.weight.val();
            let [v, d] = w.dims();
            let pad_row = w.clone().narrow(0, 0, 1) + shift;
            emb.weight = Param::from_tensor(Tensor::cat(vec![pad_row, w.narrow(0, 1, v - 1)], 0));
            assert_eq!(emb.weight.dims(), [v, d]);
            let after = moved.forward_flat(batch);
            let diff = (before - after).abs().max().into_scalar::<f32>();
            prop_assert!(diff < 1e-5, "{}", diff);
        }

        /// Tabular rows: permuting the samples of a batch permutes the logits.
        #[test]
        fn samples_are_independent(seed in 0u64..1000) {
            let m = model(TokenInput::Features { n_numeric: 2, cardinalities: vec![3] });
            let s = seed as f32;
            let a = vec![s / 500.0 - 1.0, 0.5, 2.0, -0.3, s / 1000.0, 0.0];
            let b = vec![-0.3, s / 1000.0, 0.0, s / 500.0 - 1.0, 0.5, 2.0];
            let ya = m.forward_flat(rows(a, 2));
            let yb = m.forward_flat(rows(b, 2));
            let diff = (ya.narrow(0, 0, 1) - yb.narrow(0, 1, 1)).abs().max().into_scalar::<f32>();
            prop_assert!(diff < 1e-5, "{}", diff);
        }
    }
}
