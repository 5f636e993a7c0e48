//! A character-level language model: embedding, a [`Recurrent`] stack and a linear layer to
//! next-character logits, with sampling from a prompt (temperature, top-k).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use strata_layers::{Recurrent, RecurrentConfig, RecurrentState};

use crate::error::{Error, check_dropout, check_size};
use crate::recurrent::validate_rnn;

/// Configuration of a [`CharLm`].
#[derive(Config, Debug)]
pub struct CharLmConfig {
    /// Characters in the vocabulary.
    pub vocab_size: usize,
    /// The recurrent stack; its `d_input` is the embedding width.
    pub rnn: RecurrentConfig,
    /// Dropout on the embeddings and before the output layer, default 0.
    #[config(default = 0.0)]
    pub dropout: f64,
}

/// How [`CharLm::generate`] samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// Characters to generate after the prompt.
    pub length: usize,
    /// Divides the logits: below 1 is more conservative, above 1 more adventurous; 0 picks
    /// the most likely character (greedy).
    pub temperature: f64,
    /// Sample among the `k` most likely characters only (`None`: all).
    pub top_k: Option<usize>,
    /// Seed of the sampler.
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            length: 200,
            temperature: 0.8,
            top_k: None,
            seed: 42,
        }
    }
}

/// A character-level recurrent language model.
#[derive(Module, Debug)]
pub struct CharLm {
    /// Character embeddings `[vocab_size, d_input]`.
    pub embedding: Embedding,
    /// The recurrent layers.
    pub rnn: Recurrent,
    /// Dropout on embeddings and outputs.
    pub dropout: Dropout,
    /// Next-character logits.
    pub head: Linear,
}

impl CharLmConfig {
    /// Checks sizes and dropouts.
    ///
    /// # Errors
    /// A zero size or a dropout outside `[0, 1)`.
    pub fn validate(&self) -> crate::Result<()> {
        check_size("vocab_size", self.vocab_size)?;
        validate_rnn(&self.rnn)?;
        check_dropout(self.dropout)
    }

    /// Builds the model.
    ///
    /// # Errors
    /// As [`validate`](Self::validate).
    pub fn init(&self, device: &Device) -> crate::Result<CharLm> {
        self.validate()?;
        let rnn = self.rnn.init(device);
        Ok(CharLm {
            embedding: EmbeddingConfig::new(self.vocab_size, self.rnn.d_input).init(device),
            head: LinearConfig::new(rnn.d_output(), self.vocab_size).init(device),
            rnn,
            dropout: DropoutConfig::new(self.dropout).init(),
        })
    }
}

impl CharLm {
    /// Characters in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.embedding.weight.dims()[0]
    }

    /// Next-character logits at every position, and the state after the last one (carry it
    /// into the next chunk of the same streams for truncated back-propagation through time).
    ///
    /// # Shapes
    /// - `tokens`: `[batch, time]` character indices
    /// - `state`: `[n_layers * directions, batch, d_hidden]` (zeros when `None`)
    /// - returns logits `[batch, time, vocab_size]` and the final state
    ///
    /// # Panics
    /// When an index is outside the vocabulary (burn's embedding lookup); check text with the
    /// vocabulary first.
    pub fn forward(
        &self,
        tokens: Tensor<2, Int>,
        state: Option<RecurrentState>,
    ) -> (Tensor<3>, RecurrentState) {
        let [batch, time] = tokens.dims();
        let d_embed = self.embedding.weight.dims()[1];
        let device = tokens.device();
        if !strata_kernels::drops(&self.dropout, &device)
            && let Some((y, state)) = self.rnn.forward_tokens(
                tokens.clone(),
                self.embedding.weight.val(),
                None,
                state.clone(),
            )
        {
            // Whole-sequence kernels, the first layer's input products taken per vocabulary
            // entry (no dropout between the embedding and the stack to keep them apart).
            return (strata_kernels::linear_layer(&self.head, y), state);
        }
        if self.rnn.runs_fused(&device) {
            // Whole-sequence kernels: one embedded `[batch, time, _]` tensor.
            let x = strata_kernels::dropout_layer(&self.dropout, self.embedding.forward(tokens));
            let (y, state) = self.rnn.forward(x, None, state);
            return (
                strata_kernels::linear_layer(
                    &self.head,
                    strata_kernels::dropout_layer(&self.dropout, y),
                ),
                state,
            );
        }
        // Embedded step by step: slicing one embedded `[batch, time, _]` tensor per step
        // would make the backward pass quadratic in `time` (see `Recurrent::forward_steps`).
        let steps: Vec<Tensor<2>> = (0..time)
            .map(|t| {
                let e = self.embedding.forward(tokens.clone().narrow(1, t, 1));
                strata_kernels::dropout_layer(&self.dropout, e.reshape([batch, d_embed]))
            })
            .collect();
        let (ys, state) = self.rnn.forward_steps(steps, None, state);
        let ys: Vec<Tensor<3>> = ys.into_iter().map(|y| y.unsqueeze_dim(1)).collect();
        let y = Tensor::cat(ys, 1);
        (
            self.head
                .forward(strata_kernels::dropout_layer(&self.dropout, y)),
            state,
        )
    }

    /// Generates `sampling.length` characters after `prompt` (indices into the vocabulary).
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty prompt, an index outside the vocabulary, a negative or
    /// non-finite temperature, or `top_k = 0`.
    pub fn generate(
        &self,
        prompt: &[usize],
        sampling: &Sampling,
        device: &Device,
    ) -> crate::Result<Vec<usize>> {
        check_sampling(prompt, self.vocab_size(), sampling)?;
        let mut rng = ChaCha8Rng::seed_from_u64(sampling.seed);
        let tokens = |ids: &[usize]| {
            let v: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
            Tensor::<2, Int>::from_data(TensorData::new(v, [1, ids.len()]), device)
        };
        let (mut logits, mut state) = self.forward(tokens(prompt), None);
        let mut out = Vec::with_capacity(sampling.length);
        for _ in 0..sampling.length {
            let time = logits.dims()[1];
            let last: Vec<f32> = logits
                .narrow(1, time - 1, 1)
                .into_data()
                .iter::<f32>()
                .collect();
            let next = sample(&last, sampling, &mut rng);
            out.push(next);
            let (l, s) = self.forward(tokens(&[next]), Some(state));
            logits = l;
            state = s;
        }
        Ok(out)
    }
}

/// Checks a prompt against a vocabulary of `vocab` tokens, and the sampling settings.
///
/// # Errors
/// [`Error::Invalid`] for an empty prompt, an index outside the vocabulary, a negative or
/// non-finite temperature, or `top_k = 0`.
pub(crate) fn check_sampling(
    prompt: &[usize],
    vocab: usize,
    sampling: &Sampling,
) -> crate::Result<()> {
    if prompt.is_empty() {
        return Err(Error::Invalid("the prompt is empty".into()));
    }
    if let Some(&bad) = prompt.iter().find(|&&i| i >= vocab) {
        return Err(Error::Invalid(format!(
            "prompt index {bad} outside the vocabulary of {vocab}"
        )));
    }
    if !(sampling.temperature.is_finite() && sampling.temperature >= 0.0) {
        return Err(Error::Invalid(format!(
            "temperature must be >= 0, got {}",
            sampling.temperature
        )));
    }
    if sampling.top_k == Some(0) {
        return Err(Error::Invalid("top-k must be >= 1".into()));
    }
    Ok(())
}

/// Draws an index from `logits` with temperature and top-k.
pub(crate) fn sample(logits: &[f32], s: &Sampling, rng: &mut ChaCha8Rng) -> usize {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                if v > best.1 { (i, v) } else { best }
            })
            .0
    };
    if s.temperature == 0.0 {
        return argmax();
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    order.truncate(s.top_k.unwrap_or(logits.len()).min(logits.len()));
    let top = logits[order[0]] as f64;
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| ((logits[i] as f64 - top) / s.temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (&i, w) in order.iter().zip(&weights) {
        if u < *w {
            return i;
        }
        u -= w;
    }
    order[order.len() - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_layers::CellKind;

    fn lm() -> CharLm {
        CharLmConfig::new(
            7,
            RecurrentConfig::new(CellKind::Lstm, 4, 8).with_n_layers(2),
        )
        .init(&Device::flex())
        .unwrap()
    }

    #[test]
    fn shapes_and_state_carry() {
        let d = Device::flex();
        let m = lm();
        let t = Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 3, 4, 5], [2, 3]), &d);
        let (y, s) = m.forward(t.clone(), None);
        assert_eq!(y.dims(), [2, 3, 7]);
        // Two chunks with the state carried equal one pass over the whole sequence.
        let (y1, s1) = m.forward(t.clone().narrow(1, 0, 2), None);
        let (y2, s2) = m.forward(t.narrow(1, 2, 1), Some(s1));
        let whole = Tensor::cat(vec![y1, y2], 1);
        assert!((whole - y).abs().max().into_scalar::<f32>() < 1e-6);
        assert!((s.hidden - s2.hidden).abs().max().into_scalar::<f32>() < 1e-6);
    }

    #[test]
    fn generation_is_seeded_and_checked() {
        let d = Device::flex();
        let m = lm();
        let s = Sampling {
            length: 20,
            temperature: 1.0,
            top_k: Some(3),
            seed: 7,
        };
        let a = m.generate(&[1, 2], &s, &d).unwrap();
        assert_eq!(a.len(), 20);
        assert!(a.iter().all(|&i| i < 7));
        assert_eq!(a, m.generate(&[1, 2], &s, &d).unwrap());
        assert!(m.generate(&[], &s, &d).is_err());
        assert!(
            m.generate(&[9], &s, &d)
                .unwrap_err()
                .to_string()
                .contains("vocabulary")
        );
        let bad_k = Sampling {
            top_k: Some(0),
            ..s.clone()
        };
        assert!(m.generate(&[1], &bad_k, &d).is_err());
        let bad_t = Sampling {
            temperature: -1.0,
            ..s
        };
        assert!(m.generate(&[1], &bad_t, &d).is_err());
    }

    #[test]
    fn sampling_respects_top_k_and_greedy() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let logits = [0.0, 5.0, 4.9, -3.0];
        let greedy = Sampling {
            temperature: 0.0,
            ..Sampling::default()
        };
        assert_eq!(sample(&logits, &greedy, &mut rng), 1);
        let top2 = Sampling {
            temperature: 5.0,
            top_k: Some(2),
            ..Sampling::default()
        };
        let mut seen = [0usize; 4];
        for _ in 0..500 {
            seen[sample(&logits, &top2, &mut rng)] += 1;
        }
        assert_eq!(seen[0] + seen[3], 0);
        assert!(seen[1] > 150 && seen[2] > 150, "{seen:?}");
    }
}
