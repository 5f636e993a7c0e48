//! Transformers of the supervised and language kinds: the Vision Transformer over image
//! patches, the FT-Transformer over table features, the decoder-only character language model.

use strata_arch::{
    ActivationKind, NetworkConfig, TokenInput, TransformerClassifierConfig, TransformerLmConfig,
};
use strata_data::Encoding;

use super::{Family, image_shape};
use crate::config::RunConfig;
use crate::data::Preprocess;
use crate::error::{Error, Result};
use crate::language::LmConfig;

/// `vit`, `tab-transformer`, `transformer-lm`.
pub struct Transformer;

impl Family for Transformer {
    fn name(&self) -> &'static str {
        "transformer"
    }

    fn models(&self) -> &'static [(&'static str, &'static str)] {
        &[
            (
                "transformer-lm",
                "decoder-only transformer character LM (GPT-style), key-value cache for generation",
            ),
            (
                "vit",
                "Vision Transformer: image patches, class token, encoder layers; needs image data",
            ),
            (
                "tab-transformer",
                "FT-Transformer for tables: a token per numeric feature and per category; adult, table:PATH",
            ),
        ]
    }

    fn has(&self, model: &str) -> bool {
        ["transformer-lm", "vit", "tab-transformer"].contains(&model)
    }

    fn default_dataset(&self, model: &str) -> &'static str {
        match model {
            "transformer-lm" => "shakespeare",
            "tab-transformer" => "adult",
            _ => "digits",
        }
    }

    /// Category indices: the FT-Transformer embeds each category.
    fn encoding(&self, _model: &str) -> Encoding {
        Encoding::Indices
    }

    fn reads_text(&self, model: &str) -> bool {
        model == "transformer-lm"
    }

    fn recipe(&self, model: &str, dataset: &str, c: &mut RunConfig) {
        // Transformers' feed-forward layers use GELU.
        c.network.activation = ActivationKind::Gelu;
        if model == "transformer-lm" {
            // GPT-style: width 128, 4 heads, 2 layers, context 128; AdamW with warm-up and
            // cosine decay, as transformer users expect.
            c.network.hidden = vec![128];
            c.network.layers = 2;
            c.network.seq_len = 128;
            c.fit.batch_size = 32;
            c.fit.epochs = 30;
            c.steps_per_epoch = Some(100);
            c.transformer_training(0.002, 0.0002);
            return;
        }
        // Width 64, 4 heads, 3 pre-norm layers, feed-forward 2x the width; AdamW with a
        // warm-up epoch and cosine decay.
        c.network.hidden = vec![64];
        c.network.layers = 3;
        c.transformer_training(0.001, 0.0);
        c.optimizer.weight_decay = 0.05;
        c.fit.batch_size = 128;
        c.fit.epochs = 10;
        if model == "tab-transformer" {
            c.fit.batch_size = 256;
            c.optimizer.weight_decay = 1e-5;
        } else {
            // The ViT underfits Fashion-MNIST in 10 epochs (training loss above validation
            // loss with dropout 0.1): no dropout; weight decay regularises.
            c.network.dropout = 0.0;
            if dataset == "digits" {
                // 1169 training images: smaller batches, more epochs.
                c.fit.batch_size = 32;
                c.fit.epochs = 30;
            }
        }
    }

    fn check_series(&self, config: &RunConfig) -> Result<()> {
        if config.model == "transformer-lm" {
            return Err(lm_not_text(config));
        }
        Ok(())
    }

    fn network(&self, config: &RunConfig, pre: &Preprocess, n_out: usize) -> Result<NetworkConfig> {
        let input = match config.model.as_str() {
            "vit" => {
                let [c, h, w] = image_shape("vit", config, pre)?;
                let patch_size = match config.network.patch_size {
                    0 => auto_patch(h, w),
                    p => p,
                };
                TokenInput::Patches {
                    in_channels: c,
                    height: h,
                    width: w,
                    patch_size,
                }
            }
            "tab-transformer" => {
                let table = pre.table.as_ref().ok_or_else(|| {
                    Error::Usage(format!(
                        "model tab-transformer needs a table with named columns (adult, table:PATH); `{}` is not one",
                        config.dataset
                    ))
                })?;
                TokenInput::Features {
                    n_numeric: table.n_numeric(),
                    cardinalities: table.cardinalities(),
                }
            }
            _ => return Err(lm_not_text(config)),
        };
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

    /// Width `--hidden`, `--heads`, `--layers`, context `--seq-len`, feed-forward 4x the width.
    fn language_model(&self, config: &RunConfig, vocab: usize) -> Result<LmConfig> {
        if config.model != "transformer-lm" {
            return Err(super::not_text(config));
        }
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
        Ok(LmConfig::Transformer(c))
    }
}

/// The error of the transformer language model asked to train on anything but text.
fn lm_not_text(config: &RunConfig) -> Error {
    Error::Usage(format!(
        "transformer-lm is a language model: train it on text (shakespeare, text:PATH), not `{}`",
        config.dataset
    ))
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
