//! A decoder-only (GPT-style) character language model: token and position embeddings, a
//! stack of causally masked self-attention layers (burn's `TransformerEncoder`, pre- or
//! post-norm), a final norm and a linear layer to next-character logits, with generation from
//! a prompt that reuses a key-value cache.

use burn::config::Config;
use burn::module::Module;
use burn::nn::attention::generate_autoregressive_mask;
use burn::nn::transformer::TransformerEncoder;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use strata_layers::{ActivationKind, Positional, Positions, PositionsConfig};

use crate::char_lm::{Sampling, check_sampling, sample};
use crate::error::{Error, check_size};
use crate::transformer::{
    LAYER_NORM_EPS, Stack, check_transformer, encoder_attention, encoder_stack,
};

/// Configuration of a [`TransformerLm`].
#[derive(Config, Debug)]
pub struct TransformerLmConfig {
    /// Characters in the vocabulary.
    pub vocab_size: usize,
    /// Longest sequence the model attends over.
    pub context: usize,
    /// Model width, default 128.
    #[config(default = 128)]
    pub d_model: usize,
    /// Attention heads, default 4; must divide `d_model`.
    #[config(default = 4)]
    pub n_heads: usize,
    /// Layers, default 2.
    #[config(default = 2)]
    pub n_layers: usize,
    /// Feed-forward width, default 4 x 128.
    #[config(default = 512)]
    pub d_ff: usize,
    /// Dropout, default 0.1.
    #[config(default = 0.1)]
    pub dropout: f64,
    /// Pre-norm (default) or post-norm layers.
    #[config(default = true)]
    pub norm_first: bool,
    /// Activation of the feed-forward layers, default GELU.
    #[config(default = "ActivationKind::Gelu")]
    pub activation: ActivationKind,
    /// Learned (default) or sinusoidal positions.
    #[config(default = "Positional::Learned")]
    pub positional: Positional,
}

/// A decoder-only transformer language model.
#[derive(Module, Debug)]
pub struct TransformerLm {
    /// Token embeddings `[vocab_size, d_model]`.
    pub embedding: Embedding,
    /// Learned or sinusoidal position codes.
    pub positions: Positions,
    /// Dropout on the embeddings.
    pub dropout: Dropout,
    /// The causally masked layers.
    pub encoder: TransformerEncoder,
    /// Final norm (pre-norm models).
    pub norm: Option<LayerNorm>,
    /// Next-character logits.
    pub head: Linear,
    /// Longest sequence.
    pub context: usize,
}

impl TransformerLmConfig {
    /// Checks sizes, heads and dropout.
    ///
    /// # Errors
    /// A zero size, heads that do not divide the width, a dropout outside `[0, 1)`.
    pub fn validate(&self) -> crate::Result<()> {
        check_size("vocab_size", self.vocab_size)?;
        check_size("context", self.context)?;
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
    pub fn init(&self, device: &Device) -> crate::Result<TransformerLm> {
        self.validate()?;
        Ok(TransformerLm {
            embedding: EmbeddingConfig::new(self.vocab_size, self.d_model).init(device),
            positions: PositionsConfig::new(self.context, self.d_model)
                .with_kind(self.positional)
                .init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            encoder: encoder_stack(
                &Stack {
                    d_model: self.d_model,
                    d_ff: self.d_ff,
                    n_heads: self.n_heads,
                    n_layers: self.n_layers,
                    dropout: self.dropout,
                    norm_first: self.norm_first,
                    activation: self.activation,
                },
                device,
            ),
            norm: self.norm_first.then(|| {
                LayerNormConfig::new(self.d_model)
                    .with_epsilon(LAYER_NORM_EPS)
                    .init(device)
            }),
            head: LinearConfig::new(self.d_model, self.vocab_size).init(device),
            context: self.context,
        })
    }
}

impl TransformerLm {
    /// Characters in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.embedding.weight.dims()[0]
    }

    /// Checks that `len` tokens fit the context.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming both lengths.
    pub fn check_len(&self, len: usize) -> crate::Result<()> {
        if len > self.context {
            return Err(Error::Invalid(format!(
                "a sequence of {len} tokens is longer than the model's context of {}",
                self.context
            )));
        }
        Ok(())
    }

    fn embed(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.embed_from(tokens, 0)
    }

    /// The embeddings of `tokens` at positions `offset..`.
    fn embed_from(&self, tokens: Tensor<2, Int>, offset: usize) -> Tensor<3> {
        let x = self
            .positions
            .forward_from(self.embedding.forward(tokens), offset);
        strata_kernels::dropout_layer(&self.dropout, x)
    }

    fn output(&self, y: Tensor<3>) -> Tensor<3> {
        let y = match &self.norm {
            Some(n) => strata_kernels::layer_norm_layer(n, y, LAYER_NORM_EPS),
            None => y,
        };
        strata_kernels::linear_layer(&self.head, y)
    }

    /// Next-character logits at every position, each attending to itself and the positions
    /// before it only.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, time]`, `time <= context`
    /// - returns `[batch, time, vocab_size]`
    ///
    /// # Panics
    /// When `time` exceeds the context (check with [`check_len`](Self::check_len)).
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let [batch, time] = tokens.dims();
        let device = tokens.device();
        let mask = generate_autoregressive_mask(batch, time, &device);
        let x = self.embed(tokens);
        let y =
            strata_kernels::transformer_encoder(&self.encoder, x, None, Some(mask), LAYER_NORM_EPS);
        self.output(y)
    }

    /// The attention weights of every layer for `tokens`, for inspection and plots: one
    /// `[batch, n_heads, time, time]` tensor per layer (row `i` is how position `i` spreads its
    /// attention over positions `0..=i`; each row sums to 1).
    ///
    /// # Panics
    /// When `time` exceeds the context.
    pub fn attention_weights(&self, tokens: Tensor<2, Int>) -> Vec<Tensor<4>> {
        let [batch, time] = tokens.dims();
        let device = tokens.device();
        let mask = generate_autoregressive_mask(batch, time, &device);
        encoder_attention(&self.encoder, self.embed(tokens), None, Some(mask))
    }

    /// The logits of the last position of `tokens`, computing only the positions `cache`
    /// does not hold yet ([`strata_kernels::transformer_encoder_step`]) when given.
    fn last_logits(
        &self,
        tokens: &[usize],
        cache: Option<&mut strata_kernels::KeyValueCache>,
        device: &Device,
    ) -> Vec<f32> {
        let past = cache.as_ref().map_or(0, |c| c.len());
        let v: Vec<i64> = tokens[past..].iter().map(|&i| i as i64).collect();
        let t = v.len();
        let x = Tensor::<2, Int>::from_data(TensorData::new(v, [1, t]), device);
        let logits = match cache {
            Some(cache) => {
                let x = self.embed_from(x, past);
                let y = strata_kernels::transformer_encoder_step(
                    &self.encoder,
                    x,
                    cache,
                    LAYER_NORM_EPS,
                );
                self.output(y)
            }
            None => self.forward(x),
        };
        logits
            .narrow(1, t - 1, 1)
            .into_data()
            .iter::<f32>()
            .collect()
    }

    /// Generates `sampling.length` characters after `prompt`. With `use_cache`, each new
    /// character computes only its own position (keys and values of the earlier ones are
    /// cached); without, every step recomputes the whole window. Both give the same text for
    /// the same seed. Past the context, the window slides (the cache restarts).
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty prompt, an index outside the vocabulary, bad sampling
    /// settings.
    pub fn generate(
        &self,
        prompt: &[usize],
        sampling: &Sampling,
        use_cache: bool,
        device: &Device,
    ) -> crate::Result<Vec<usize>> {
        check_sampling(prompt, self.vocab_size(), sampling)?;
        let mut rng = ChaCha8Rng::seed_from_u64(sampling.seed);
        let mut tokens: Vec<usize> = prompt.to_vec();
        let mut cache = use_cache.then(strata_kernels::KeyValueCache::new);
        let mut start = tokens.len().saturating_sub(self.context);
        let mut out = Vec::with_capacity(sampling.length);
        for _ in 0..sampling.length {
            if tokens.len() - start > self.context {
                // Slide the window; cached positions no longer line up.
                start = tokens.len() - self.context;
                cache = use_cache.then(strata_kernels::KeyValueCache::new);
            }
            let logits = self.last_logits(&tokens[start..], cache.as_mut(), device);
            let next = sample(&logits, sampling, &mut rng);
            out.push(next);
            tokens.push(next);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lm(norm_first: bool, positional: Positional) -> TransformerLm {
        TransformerLmConfig::new(11, 16)
            .with_d_model(16)
            .with_n_heads(2)
            .with_d_ff(32)
            .with_dropout(0.0)
            .with_norm_first(norm_first)
            .with_positional(positional)
            .init(&Device::flex())
            .unwrap()
    }

    #[test]
    fn bad_configs_are_errors() {
        let d = Device::flex();
        let e = TransformerLmConfig::new(10, 8)
            .with_d_model(30)
            .with_n_heads(4)
            .init(&d)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("4 heads do not divide the model width 30"),
            "{e}"
        );
        assert!(TransformerLmConfig::new(10, 0).init(&d).is_err());
        let m = lm(true, Positional::Learned);
        assert!(
            m.check_len(17)
                .unwrap_err()
                .to_string()
                .contains("context of 16")
        );
        assert!(m.check_len(16).is_ok());
    }

    #[test]
    fn a_position_sees_no_later_token() {
        let d = Device::flex();
        for (nf, pos) in [(true, Positional::Learned), (false, Positional::Sinusoidal)] {
            let m = lm(nf, pos);
            let a =
                Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 2, 3, 4, 5], [1, 5]), &d);
            let b =
                Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 2, 3, 9, 0], [1, 5]), &d);
            let (ya, yb) = (m.forward(a), m.forward(b));
            let early = (ya.clone().narrow(1, 0, 3) - yb.clone().narrow(1, 0, 3))
                .abs()
                .max()
                .into_scalar::<f32>();
            assert!(
                early < 1e-6,
                "changing tokens 3.. changed positions 0..3 by {early}"
            );
            let late = (ya.narrow(1, 3, 1) - yb.narrow(1, 3, 1))
                .abs()
                .max()
                .into_scalar::<f32>();
            assert!(late > 1e-4);
        }
    }

    #[test]
    fn attention_weights_are_causal_distributions() {
        let d = Device::flex();
        for (nf, pos) in [(true, Positional::Learned), (false, Positional::Sinusoidal)] {
            let m = lm(nf, pos);
            let t = Tensor::<2, Int>::from_data(
                TensorData::new(vec![1i64, 2, 3, 4, 5, 6, 7, 8], [2, 4]),
                &d,
            );
            let w = m.attention_weights(t);
            assert_eq!(w.len(), 2);
            for layer in w {
                assert_eq!(layer.dims(), [2, 2, 4, 4]);
                let sums = layer.clone().sum_dim(3);
                let off = (sums - 1.0).abs().max().into_scalar::<f32>();
                assert!(off < 1e-5, "rows sum to 1, off by {off}");
                // Nothing above the diagonal: no position attends to a later one.
                let future = layer.triu(1).abs().max().into_scalar::<f32>();
                assert!(future < 1e-6, "attention to the future {future}");
            }
        }
    }

    #[test]
    fn generation_with_and_without_the_cache_agree() {
        let d = Device::flex();
        for (nf, pos) in [(true, Positional::Learned), (false, Positional::Sinusoidal)] {
            let m = lm(nf, pos);
            let s = Sampling {
                length: 30, // past the context of 16: the window slides
                temperature: 1.0,
                top_k: Some(4),
                seed: 5,
            };
            let cached = m.generate(&[1, 2, 3], &s, true, &d).unwrap();
            let full = m.generate(&[1, 2, 3], &s, false, &d).unwrap();
            assert_eq!(cached, full);
            assert_eq!(cached.len(), 30);
            assert!(m.generate(&[12], &s, true, &d).is_err());
        }
    }
}
