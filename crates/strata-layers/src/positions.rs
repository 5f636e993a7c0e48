//! Position information added to a sequence of embeddings: a learned embedding per position
//! (GPT, BERT, ViT) or burn's fixed sinusoids (Vaswani et al.). One block for every
//! transformer in Strata, so that the choice is made the same way everywhere.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use strata_layers::{Positional, PositionsConfig};
//! let device = Device::flex();
//! let positions = PositionsConfig::new(16, 8).with_kind(Positional::Sinusoidal).init(&device);
//! let x = positions.forward(Tensor::<3>::zeros([2, 5, 8], &device));
//! assert_eq!(x.dims(), [2, 5, 8]);
//! ```

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, PositionalEncoding, PositionalEncodingConfig};
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

/// How positions are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Positional {
    /// A learned embedding per position (GPT, ViT).
    #[default]
    Learned,
    /// Fixed sinusoids (Vaswani et al.), burn's `PositionalEncoding`.
    Sinusoidal,
}

impl std::str::FromStr for Positional {
    type Err = String;

    /// `learned` or `sinusoidal`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "learned" => Ok(Self::Learned),
            "sinusoidal" => Ok(Self::Sinusoidal),
            other => Err(format!(
                "unknown positional encoding `{other}`: expected learned or sinusoidal"
            )),
        }
    }
}

/// Configuration of [`Positions`].
#[derive(Config, Debug)]
pub struct PositionsConfig {
    /// The most positions a sequence may have.
    pub max_len: usize,
    /// Embedding width.
    pub d_model: usize,
    /// Learned (default) or sinusoidal.
    #[config(default = "Positional::Learned")]
    pub kind: Positional,
}

/// Adds a position code to each step of a sequence of embeddings.
#[derive(Module, Debug)]
pub struct Positions {
    /// Learned position embeddings `[max_len, d_model]`, when positions are learned.
    pub learned: Option<Embedding>,
    /// Fixed sinusoids, when positions are not learned.
    pub sinusoids: Option<PositionalEncoding>,
}

impl PositionsConfig {
    /// Builds the block.
    pub fn init(&self, device: &Device) -> Positions {
        let learned = self.kind == Positional::Learned;
        Positions {
            learned: learned.then(|| EmbeddingConfig::new(self.max_len, self.d_model).init(device)),
            sinusoids: (!learned).then(|| {
                PositionalEncodingConfig::new(self.d_model)
                    .with_max_sequence_size(self.max_len)
                    .init(device)
            }),
        }
    }
}

impl Positions {
    /// `x` plus the code of each position, counting from `offset` (a step generated after
    /// `offset` cached ones has position `offset`).
    ///
    /// # Shapes
    /// - `x`: `[batch, time, d_model]`, `offset + time <= max_len`
    /// - returns the same shape
    ///
    /// # Panics
    /// When `offset + time` exceeds `max_len`; callers check lengths first.
    pub fn forward_from(&self, x: Tensor<3>, offset: usize) -> Tensor<3> {
        let [batch, time, d] = x.dims();
        let device = x.device();
        match (&self.learned, &self.sinusoids) {
            (Some(p), _) => {
                let pos = Tensor::<1, Int>::arange(offset as i64..(offset + time) as i64, &device)
                    .unsqueeze_dim::<2>(0)
                    .expand([batch, time]);
                x + p.forward(pos)
            }
            (None, Some(s)) => {
                let codes = s
                    .sinusoids
                    .clone()
                    .narrow(1, offset, time)
                    .expand([batch, time, d]);
                x + codes
            }
            (None, None) => x,
        }
    }

    /// `x` plus the code of each position from 0.
    ///
    /// # Shapes
    /// - `x`: `[batch, time, d_model]`, `time <= max_len`
    /// - returns the same shape
    ///
    /// # Panics
    /// When `time` exceeds `max_len`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.forward_from(x, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_continue_the_sequence() {
        let d = Device::flex();
        for kind in [Positional::Learned, Positional::Sinusoidal] {
            let p = PositionsConfig::new(10, 4).with_kind(kind).init(&d);
            let x = Tensor::<3>::zeros([1, 6, 4], &d);
            let whole = p.forward(x.clone());
            let tail = p.forward_from(x.narrow(1, 0, 2), 4);
            let diff = (whole.narrow(1, 4, 2) - tail)
                .abs()
                .max()
                .into_scalar::<f32>();
            assert!(diff < 1e-7, "{kind:?}: {diff}");
        }
    }
}
