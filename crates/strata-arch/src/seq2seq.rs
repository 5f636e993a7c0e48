//! An encoder-decoder (sequence-to-sequence) transformer (Vaswani et al. 2017): burn's
//! `TransformerEncoder` reads the source, burn's `TransformerDecoder` writes the target one
//! token at a time, attending causally to what it has written and, through cross-attention,
//! to the whole source. Tokens are shared between source and target; ids [`PAD`], [`BOS`]
//! and [`EOS`] are reserved.
//!
//! Training is teacher-forced ([`Seq2Seq::loss`]: cross-entropy of each next target token,
//! padding ignored). Decoding is greedy ([`Seq2Seq::greedy`]) or by beam search
//! ([`Seq2Seq::beam_search`]).
//!
//! ```
//! use burn::tensor::Device;
//! use strata_arch::{BeamSearch, Seq2SeqConfig};
//! let device = Device::flex();
//! let model = Seq2SeqConfig::new(8, 10).with_d_model(16).with_n_heads(2).with_d_ff(32).init(&device)?;
//! let src = vec![vec![3, 4, 5], vec![6, 7]];
//! let greedy = model.greedy(&src, 6, &device)?;
//! let beam = model.beam_search(&src[0], &BeamSearch { beam_size: 3, max_len: 6, length_penalty: 0.0 }, &device)?;
//! assert!(greedy[0].len() <= 6 && beam.tokens.len() <= 6);
//! # Ok::<(), strata_arch::Error>(())
//! ```

use burn::config::Config;
use burn::module::Module;
use burn::nn::attention::{MhaInput, generate_autoregressive_mask};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::transformer::{
    TransformerDecoder, TransformerDecoderConfig, TransformerDecoderInput, TransformerEncoder,
};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use strata_layers::{ActivationKind, Positional, Positions, PositionsConfig};

use crate::error::{Error, check_size};
use crate::transformer::{LAYER_NORM_EPS, Stack, check_transformer, encoder_stack};

/// Padding (ignored by attention and by the loss).
pub const PAD: usize = 0;
/// Start of a target sequence: the decoder's first input.
pub const BOS: usize = 1;
/// End of a target sequence.
pub const EOS: usize = 2;
/// Ids below this are reserved; symbols start here.
pub const N_SPECIAL: usize = 3;

/// Configuration of a [`Seq2Seq`] model.
#[derive(Config, Debug)]
pub struct Seq2SeqConfig {
    /// Token ids, the reserved [`N_SPECIAL`] included.
    pub vocab_size: usize,
    /// Longest source, and longest target with its [`BOS`] or [`EOS`].
    pub max_len: usize,
    /// Model width, default 64.
    #[config(default = 64)]
    pub d_model: usize,
    /// Attention heads, default 4; must divide `d_model`.
    #[config(default = 4)]
    pub n_heads: usize,
    /// Encoder layers, default 2.
    #[config(default = 2)]
    pub n_encoder_layers: usize,
    /// Decoder layers, default 2.
    #[config(default = 2)]
    pub n_decoder_layers: usize,
    /// Feed-forward width, default 256.
    #[config(default = 256)]
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

/// An encoder-decoder transformer over a shared token vocabulary.
#[derive(Module, Debug)]
pub struct Seq2Seq {
    /// Token embeddings `[vocab_size, d_model]`, shared by source and target.
    pub embedding: Embedding,
    /// Position codes, shared by source and target.
    pub positions: Positions,
    /// Dropout on the embeddings.
    pub dropout: Dropout,
    /// The source encoder.
    pub encoder: TransformerEncoder,
    /// Final norm of the encoder output (pre-norm models).
    pub encoder_norm: Option<LayerNorm>,
    /// The target decoder.
    pub decoder: TransformerDecoder,
    /// Final norm of the decoder output (pre-norm models).
    pub decoder_norm: Option<LayerNorm>,
    /// Next-token logits.
    pub head: Linear,
    /// Longest source or target.
    pub max_len: usize,
}

/// Beam-search settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BeamSearch {
    /// Hypotheses kept at each step.
    pub beam_size: usize,
    /// Most tokens generated (the [`EOS`] included).
    pub max_len: usize,
    /// Finished hypotheses are ranked by `log p / len^length_penalty` (0: plain log
    /// probability; 1: per-token average).
    pub length_penalty: f32,
}

/// A decoded sequence and its log probability under the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    /// The tokens, without [`BOS`] and [`EOS`].
    pub tokens: Vec<usize>,
    /// Sum of the log probabilities of the tokens and of the [`EOS`] when it ended.
    pub log_prob: f32,
    /// Whether it ended with [`EOS`] (rather than running into `max_len`).
    pub finished: bool,
}

impl Seq2SeqConfig {
    /// Checks sizes, heads and dropout.
    ///
    /// # Errors
    /// A zero size, a vocabulary with no symbol beyond the reserved ids, heads that do not
    /// divide the width, a dropout outside `[0, 1)`.
    pub fn validate(&self) -> crate::Result<()> {
        if self.vocab_size <= N_SPECIAL {
            return Err(Error::Invalid(format!(
                "vocab_size must exceed the {N_SPECIAL} reserved ids (pad, bos, eos), got {}",
                self.vocab_size
            )));
        }
        check_size("max_len", self.max_len)?;
        check_size("n_decoder_layers", self.n_decoder_layers)?;
        check_transformer(
            self.d_model,
            self.n_heads,
            self.n_encoder_layers,
            self.d_ff,
            self.dropout,
        )
    }

    /// Builds the model.
    ///
    /// # Errors
    /// As [`validate`](Self::validate).
    pub fn init(&self, device: &Device) -> crate::Result<Seq2Seq> {
        self.validate()?;
        let d = self.d_model;
        let norm = || {
            self.norm_first.then(|| {
                LayerNormConfig::new(d)
                    .with_epsilon(LAYER_NORM_EPS)
                    .init(device)
            })
        };
        Ok(Seq2Seq {
            embedding: EmbeddingConfig::new(self.vocab_size, d).init(device),
            positions: PositionsConfig::new(self.max_len, d)
                .with_kind(self.positional)
                .init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            encoder: encoder_stack(
                &Stack {
                    d_model: d,
                    d_ff: self.d_ff,
                    n_heads: self.n_heads,
                    n_layers: self.n_encoder_layers,
                    dropout: self.dropout,
                    norm_first: self.norm_first,
                    activation: self.activation,
                },
                device,
            ),
            encoder_norm: norm(),
            decoder: TransformerDecoderConfig::new(
                d,
                self.d_ff,
                self.n_heads,
                self.n_decoder_layers,
            )
            .with_dropout(self.dropout)
            .with_norm_first(self.norm_first)
            .with_layer_norm_eps(LAYER_NORM_EPS)
            .with_activation(self.activation.config())
            .init(device),
            decoder_norm: norm(),
            head: LinearConfig::new(d, self.vocab_size).init(device),
            max_len: self.max_len,
        })
    }
}

/// Token rows padded with [`PAD`] to the longest, as a `[batch, time]` tensor.
fn padded(rows: &[Vec<usize>], device: &Device) -> Tensor<2, Int> {
    let t = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut v = Vec::with_capacity(rows.len() * t);
    for r in rows {
        v.extend(r.iter().map(|&x| x as i64));
        v.extend(std::iter::repeat_n(PAD as i64, t - r.len()));
    }
    Tensor::from_data(TensorData::new(v, [rows.len(), t]), device)
}

impl Seq2Seq {
    /// Token ids the model knows.
    pub fn vocab_size(&self) -> usize {
        self.embedding.weight.dims()[0]
    }

    /// Checks that each sequence is non-empty, fits `max_len` (counting `extra` reserved
    /// tokens) and holds symbols of the vocabulary only.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the sequence and what is wrong.
    pub fn check(&self, sequences: &[Vec<usize>], extra: usize) -> crate::Result<()> {
        let v = self.vocab_size();
        for (i, s) in sequences.iter().enumerate() {
            if s.is_empty() {
                return Err(Error::Invalid(format!("sequence {i} is empty")));
            }
            if s.len() + extra > self.max_len {
                return Err(Error::Invalid(format!(
                    "sequence {i} has {} tokens; the model takes at most {}",
                    s.len(),
                    self.max_len - extra
                )));
            }
            if let Some(&bad) = s.iter().find(|&&t| t < N_SPECIAL || t >= v) {
                return Err(Error::Invalid(format!(
                    "sequence {i} holds token {bad}; symbols are {N_SPECIAL}..{v}"
                )));
            }
        }
        Ok(())
    }

    fn embed(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let x = self.positions.forward(self.embedding.forward(tokens));
        strata_kernels::dropout_layer(&self.dropout, x)
    }

    /// The encoded source and its padding mask.
    ///
    /// # Shapes
    /// - `source`: `[batch, src_len]` token ids, [`PAD`] after the end
    /// - returns `[batch, src_len, d_model]` and `[batch, src_len]` (true at padding)
    pub fn encode(&self, source: Tensor<2, Int>) -> (Tensor<3>, Tensor<2, Bool>) {
        let mask = source.clone().equal_elem(PAD as i64);
        let x = self.embed(source);
        let memory = strata_kernels::transformer_encoder(
            &self.encoder,
            x,
            Some(mask.clone()),
            None,
            LAYER_NORM_EPS,
        );
        let memory = match &self.encoder_norm {
            Some(n) => strata_kernels::layer_norm_layer(n, memory, LAYER_NORM_EPS),
            None => memory,
        };
        (memory, mask)
    }

    /// Next-token logits at every target position, each seeing the target before it and the
    /// whole source.
    ///
    /// # Shapes
    /// - `memory`, `memory_mask`: from [`encode`](Self::encode)
    /// - `target`: `[batch, tgt_len]` decoder inputs ([`BOS`] first, [`PAD`] after the end)
    /// - returns `[batch, tgt_len, vocab_size]`
    pub fn decode(
        &self,
        memory: Tensor<3>,
        memory_mask: Tensor<2, Bool>,
        target: Tensor<2, Int>,
    ) -> Tensor<3> {
        let [batch, time] = target.dims();
        let device = target.device();
        let pad = target.clone().equal_elem(PAD as i64);
        let causal = generate_autoregressive_mask(batch, time, &device);
        let masks = strata_kernels::DecoderMasks {
            target_pad: Some(pad),
            target_attn: Some(causal),
            memory_pad: Some(memory_mask),
            memory_attn: None,
        };
        let y = strata_kernels::transformer_decoder(
            &self.decoder,
            self.embed(target),
            memory,
            masks,
            LAYER_NORM_EPS,
        );
        let y = match &self.decoder_norm {
            Some(n) => strata_kernels::layer_norm_layer(n, y, LAYER_NORM_EPS),
            None => y,
        };
        strata_kernels::linear_layer(&self.head, y)
    }

    /// Each decoder layer's cross-attention weights `[batch, n_heads, tgt_len, src_len]`, for
    /// inspection: row `i` is how target position `i` spreads its attention over the source
    /// (each row sums to 1; padded source positions get none). A model that reverses its
    /// source attends along the anti-diagonal.
    ///
    /// # Shapes
    /// - `source`: `[batch, src_len]`; `target`: `[batch, tgt_len]` decoder inputs
    pub fn cross_attention_weights(
        &self,
        source: Tensor<2, Int>,
        target: Tensor<2, Int>,
    ) -> Vec<Tensor<4>> {
        let (memory, memory_mask) = self.encode(source);
        let [batch, time] = target.dims();
        let device = target.device();
        let pad = target.clone().equal_elem(PAD as i64);
        let causal = generate_autoregressive_mask(batch, time, &device);
        let embedded = self.embed(target);
        let mut weights = Vec::with_capacity(self.decoder.layers.len());
        // burn's decoder input keeps its output private, so layer i's input comes from a
        // decoder made of the layers before it.
        let mut before = self.decoder.clone();
        for (i, layer) in self.decoder.layers.iter().enumerate() {
            before.layers = self.decoder.layers[..i].to_vec();
            let x = before.forward(
                TransformerDecoderInput::new(embedded.clone(), memory.clone())
                    .target_mask_attn(causal.clone())
                    .target_mask_pad(pad.clone())
                    .memory_mask_pad(memory_mask.clone()),
            );
            // The self-attention sub-layer as burn's layer computes it (pre-norm layers
            // normalise its input with `norm_3`), then the cross-attention's input:
            // `norm_1` of the residual sum in both pre- and post-norm layers.
            let self_in = if layer.norm_first {
                layer.norm_3.forward(x.clone())
            } else {
                x.clone()
            };
            let attended = layer.self_attn.forward(
                MhaInput::self_attn(self_in)
                    .mask_pad(pad.clone())
                    .mask_attn(causal.clone()),
            );
            let cross_in = layer.norm_1.forward(x + attended.context);
            let out = layer.cross_attn.forward(
                MhaInput::new(cross_in, memory.clone(), memory.clone())
                    .mask_pad(memory_mask.clone()),
            );
            weights.push(out.weights);
        }
        weights
    }

    /// Teacher-forced logits.
    ///
    /// # Shapes
    /// - `source`: `[batch, src_len]`; `target`: `[batch, tgt_len]` decoder inputs
    /// - returns `[batch, tgt_len, vocab_size]`
    pub fn forward(&self, source: Tensor<2, Int>, target: Tensor<2, Int>) -> Tensor<3> {
        let (memory, mask) = self.encode(source);
        self.decode(memory, mask, target)
    }

    /// The mean cross-entropy of each target token and of the [`EOS`] after it, given the
    /// source and the target before it (teacher forcing); padding is ignored.
    ///
    /// # Errors
    /// As [`check`](Self::check) (targets need room for [`BOS`]/[`EOS`]).
    pub fn loss(
        &self,
        sources: &[Vec<usize>],
        targets: &[Vec<usize>],
        device: &Device,
    ) -> crate::Result<Tensor<1>> {
        self.check(sources, 0)?;
        self.check(targets, 1)?;
        if sources.len() != targets.len() {
            return Err(Error::Invalid(format!(
                "{} sources but {} targets",
                sources.len(),
                targets.len()
            )));
        }
        let inputs: Vec<Vec<usize>> = targets
            .iter()
            .map(|t| std::iter::once(BOS).chain(t.iter().copied()).collect())
            .collect();
        let outputs: Vec<Vec<usize>> = targets
            .iter()
            .map(|t| t.iter().copied().chain(std::iter::once(EOS)).collect())
            .collect();
        let logits = self.forward(padded(sources, device), padded(&inputs, device));
        let [b, t, v] = logits.dims();
        let want = padded(&outputs, device).reshape([b * t]);
        let ce = CrossEntropyLossConfig::new()
            .with_pad_tokens(Some(vec![PAD]))
            .init(device);
        Ok(ce.forward(logits.reshape([b * t, v]), want))
    }

    /// The log probability of the next token after each prefix, `[batch, vocab]`.
    fn next_log_probs(
        &self,
        memory: Tensor<3>,
        mask: Tensor<2, Bool>,
        prefixes: &[Vec<usize>],
        device: &Device,
    ) -> Vec<Vec<f32>> {
        let logits = self.decode(memory, mask, padded(prefixes, device));
        let [b, _, v] = logits.dims();
        // Every prefix has the same length here, so the last position is each one's next token.
        let t = prefixes[0].len();
        let last = log_softmax(logits.narrow(1, t - 1, 1).reshape([b, v]), 1);
        last.into_data()
            .iter::<f32>()
            .collect::<Vec<_>>()
            .chunks(v)
            .map(<[f32]>::to_vec)
            .collect()
    }

    /// Decodes each source greedily (the most likely token at each step) for at most `max_len`
    /// tokens, the [`EOS`] included; the result excludes [`BOS`] and [`EOS`]. The sources are
    /// decoded together as one batch.
    ///
    /// # Errors
    /// As [`check`](Self::check), or a `max_len` the model cannot hold.
    pub fn greedy(
        &self,
        sources: &[Vec<usize>],
        max_len: usize,
        device: &Device,
    ) -> crate::Result<Vec<Vec<usize>>> {
        self.check(sources, 0)?;
        self.check_max_len(max_len)?;
        let (memory, mask) = self.encode(padded(sources, device));
        let n = sources.len();
        let mut prefixes: Vec<Vec<usize>> = vec![vec![BOS]; n];
        let mut done = vec![false; n];
        for _ in 0..max_len {
            if done.iter().all(|&d| d) {
                break;
            }
            let lp = self.next_log_probs(memory.clone(), mask.clone(), &prefixes, device);
            for (i, row) in lp.iter().enumerate() {
                // Finished rows are extended with padding, which nothing later attends to.
                let next = if done[i] { PAD } else { argmax(row) };
                done[i] |= next == EOS;
                prefixes[i].push(next);
            }
        }
        Ok(prefixes
            .into_iter()
            .map(|p| {
                p.into_iter()
                    .skip(1)
                    .take_while(|&t| t != EOS && t != PAD)
                    .collect()
            })
            .collect())
    }

    fn check_max_len(&self, max_len: usize) -> crate::Result<()> {
        if max_len == 0 || max_len > self.max_len {
            return Err(Error::Invalid(format!(
                "max_len must be in 1..={} (the model's length), got {max_len}",
                self.max_len
            )));
        }
        Ok(())
    }

    /// Decodes one source by beam search: at each step every kept hypothesis is extended by
    /// every token and the `beam_size` most likely prefixes are kept; a hypothesis that emits
    /// [`EOS`] is finished. Returns the best finished hypothesis by
    /// `log p / len^length_penalty` (or the best unfinished one when none finished within
    /// `max_len`). With `beam_size` 1 it is greedy decoding.
    ///
    /// # Errors
    /// As [`check`](Self::check), a zero beam size, or a `max_len` the model cannot hold.
    pub fn beam_search(
        &self,
        source: &[usize],
        settings: &BeamSearch,
        device: &Device,
    ) -> crate::Result<Hypothesis> {
        self.check(&[source.to_vec()], 0)?;
        self.check_max_len(settings.max_len)?;
        if settings.beam_size == 0 {
            return Err(Error::Invalid("beam size must be >= 1".into()));
        }
        let (memory, mask) = self.encode(padded(&[source.to_vec()], device));
        let [_, s, d] = memory.dims();
        let rank = |h: &Hypothesis| {
            let len = (h.tokens.len() + usize::from(h.finished)).max(1) as f32;
            h.log_prob / len.powf(settings.length_penalty)
        };
        let mut alive: Vec<(Vec<usize>, f32)> = vec![(vec![BOS], 0.0)];
        let mut finished: Vec<Hypothesis> = Vec::new();
        for _ in 0..settings.max_len {
            let k = alive.len();
            let prefixes: Vec<Vec<usize>> = alive.iter().map(|(p, _)| p.clone()).collect();
            let lp = self.next_log_probs(
                memory.clone().expand([k, s, d]),
                mask.clone().expand([k, s]),
                &prefixes,
                device,
            );
            let mut candidates: Vec<(usize, usize, f32)> = Vec::new();
            for (i, row) in lp.iter().enumerate() {
                for (tok, &l) in row.iter().enumerate().skip(EOS) {
                    candidates.push((i, tok, alive[i].1 + l));
                }
            }
            candidates.sort_by(|a, b| b.2.total_cmp(&a.2));
            let mut next = Vec::with_capacity(settings.beam_size);
            for (i, tok, score) in candidates.into_iter().take(settings.beam_size) {
                if tok == EOS {
                    finished.push(Hypothesis {
                        tokens: alive[i].0[1..].to_vec(),
                        log_prob: score,
                        finished: true,
                    });
                } else {
                    let mut p = alive[i].0.clone();
                    p.push(tok);
                    next.push((p, score));
                }
            }
            // Stop when no live hypothesis can still beat the best finished one (log
            // probabilities only fall as a hypothesis grows, so with no length bonus this is
            // exact).
            let best_done = finished.iter().map(&rank).fold(f32::NEG_INFINITY, f32::max);
            alive = next;
            if alive.is_empty()
                || (settings.length_penalty == 0.0
                    && alive.iter().all(|(_, score)| *score <= best_done))
            {
                break;
            }
        }
        let unfinished = alive.into_iter().map(|(p, score)| Hypothesis {
            tokens: p[1..].to_vec(),
            log_prob: score,
            finished: false,
        });
        let pool: Vec<Hypothesis> = if finished.is_empty() {
            unfinished.collect()
        } else {
            finished
        };
        Ok(pool
            .into_iter()
            .max_by(|a, b| rank(a).total_cmp(&rank(b)))
            .expect("beam search keeps at least one hypothesis"))
    }

    /// The log probability of `target` followed by [`EOS`] given `source` (teacher forcing,
    /// evaluation mode); what beam search ranks.
    ///
    /// # Errors
    /// As [`check`](Self::check).
    pub fn log_prob(
        &self,
        source: &[usize],
        target: &[usize],
        device: &Device,
    ) -> crate::Result<f32> {
        self.check(&[source.to_vec()], 0)?;
        if !target.is_empty() {
            self.check(&[target.to_vec()], 1)?;
        }
        let input: Vec<usize> = std::iter::once(BOS).chain(target.iter().copied()).collect();
        let logits = self.forward(padded(&[source.to_vec()], device), padded(&[input], device));
        let [_, t, v] = logits.dims();
        let lp: Vec<f32> = log_softmax(logits.reshape([t, v]), 1)
            .into_data()
            .iter::<f32>()
            .collect();
        Ok(target
            .iter()
            .copied()
            .chain(std::iter::once(EOS))
            .enumerate()
            .map(|(i, tok)| lp[i * v + tok])
            .sum())
    }
}

/// The most likely token that may follow a prefix: [`EOS`] or a symbol (never [`PAD`] or
/// [`BOS`]).
fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .skip(EOS)
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(EOS, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(norm_first: bool) -> Seq2Seq {
        let d = Device::flex();
        d.seed(3);
        Seq2SeqConfig::new(6, 8)
            .with_d_model(16)
            .with_n_heads(2)
            .with_d_ff(32)
            .with_dropout(0.0)
            .with_norm_first(norm_first)
            .init(&d)
            .unwrap()
    }

    #[test]
    fn bad_configs_and_inputs_are_errors() {
        let d = Device::flex();
        assert!(
            Seq2SeqConfig::new(3, 8)
                .init(&d)
                .unwrap_err()
                .to_string()
                .contains("reserved")
        );
        let e = Seq2SeqConfig::new(8, 8)
            .with_d_model(30)
            .init(&d)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("4 heads do not divide the model width 30"),
            "{e}"
        );
        let m = model(true);
        let e = m.greedy(&[vec![3; 9]], 4, &d).unwrap_err().to_string();
        assert!(e.contains("9 tokens") && e.contains("at most 8"), "{e}");
        assert!(
            m.greedy(&[vec![3, 6]], 4, &d)
                .unwrap_err()
                .to_string()
                .contains("token 6")
        );
        assert!(m.greedy(&[vec![]], 4, &d).is_err());
        assert!(m.greedy(&[vec![3]], 9, &d).is_err());
        let e = m
            .loss(&[vec![3]], &[vec![3; 8]], &d)
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 7"), "{e}");
        let beam = BeamSearch {
            beam_size: 0,
            max_len: 4,
            length_penalty: 0.0,
        };
        assert!(m.beam_search(&[3], &beam, &d).is_err());
    }

    #[test]
    fn the_decoder_sees_no_later_target_token() {
        let d = Device::flex();
        for nf in [true, false] {
            let m = model(nf);
            let src = padded(&[vec![3, 4, 5]], &d);
            let a = m.forward(src.clone(), padded(&[vec![BOS, 3, 4, 5]], &d));
            let b = m.forward(src, padded(&[vec![BOS, 3, 5, 3]], &d));
            let early = (a.clone().narrow(1, 0, 2) - b.clone().narrow(1, 0, 2))
                .abs()
                .max()
                .into_scalar::<f32>();
            assert!(early < 1e-6, "{early}");
            let late = (a.narrow(1, 2, 1) - b.narrow(1, 2, 1))
                .abs()
                .max()
                .into_scalar::<f32>();
            assert!(late > 1e-5);
        }
    }

    #[test]
    fn cross_attention_spreads_over_the_real_source_only() {
        let d = Device::flex();
        for nf in [true, false] {
            let m = model(nf);
            let w = m.cross_attention_weights(
                padded(&[vec![3, 4, 5, 3], vec![5, 4]], &d),
                padded(&[vec![BOS, 3, 4], vec![BOS, 5, 5]], &d),
            );
            assert_eq!(w.len(), 2);
            for layer in w {
                assert_eq!(layer.dims(), [2, 2, 3, 4]);
                let off = (layer.clone().sum_dim(3) - 1.0)
                    .abs()
                    .max()
                    .into_scalar::<f32>();
                assert!(off < 1e-5, "rows sum to 1, off by {off}");
                // The second source has 2 padding steps.
                let pad = layer
                    .narrow(0, 1, 1)
                    .narrow(3, 2, 2)
                    .abs()
                    .max()
                    .into_scalar::<f32>();
                assert!(pad < 1e-7, "{pad}");
            }
        }
    }

    #[test]
    fn source_padding_changes_nothing() {
        let d = Device::flex();
        let m = model(true);
        // The same source alone, and padded beside a longer one in a batch.
        let alone = m.forward(padded(&[vec![3, 4]], &d), padded(&[vec![BOS, 5]], &d));
        let batch = m.forward(
            padded(&[vec![3, 4], vec![5, 5, 5, 5, 5]], &d),
            padded(&[vec![BOS, 5], vec![BOS, 3]], &d),
        );
        let diff = (alone - batch.narrow(0, 0, 1))
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn beam_of_one_is_greedy_and_a_wide_beam_finds_the_best_sequence() {
        let d = Device::flex();
        let m = model(true);
        let src = vec![3, 5, 4];
        let max_len = 4;
        let greedy = m.greedy(std::slice::from_ref(&src), max_len, &d).unwrap();
        let one = BeamSearch {
            beam_size: 1,
            max_len,
            length_penalty: 0.0,
        };
        assert_eq!(m.beam_search(&src, &one, &d).unwrap().tokens, greedy[0]);
        // Every sequence of symbols 3..6 of length 0..=3 (then EOS): 1 + 3 + 9 + 27 = 40.
        let mut all: Vec<Vec<usize>> = vec![vec![]];
        let mut frontier: Vec<Vec<usize>> = vec![vec![]];
        for _ in 0..3 {
            frontier = frontier
                .iter()
                .flat_map(|p| (3..6).map(move |t| [p.clone(), vec![t]].concat()))
                .collect();
            all.extend(frontier.clone());
        }
        let best = all
            .iter()
            .map(|t| (m.log_prob(&src, t, &d).unwrap(), t.clone()))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .unwrap();
        // Wide enough never to prune (at most 3^4 * 4 candidates a step).
        let wide = BeamSearch {
            beam_size: 1000,
            max_len,
            length_penalty: 0.0,
        };
        let h = m.beam_search(&src, &wide, &d).unwrap();
        assert!(h.finished);
        assert_eq!(h.tokens, best.1);
        assert!(
            (h.log_prob - best.0).abs() < 1e-4,
            "{} vs {}",
            h.log_prob,
            best.0
        );
    }
}
