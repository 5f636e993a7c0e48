//! Recurrent sequence models: a classifier (last state or masked mean of the outputs) and a
//! forecaster (one or several steps ahead, directly or recursively), both over a
//! [`Recurrent`] stack of RNN, LSTM or GRU layers.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use strata_layers::{Recurrent, RecurrentConfig, RecurrentState};

use crate::error::{Error, check_dropout, check_size};

/// How a classifier summarises the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SequencePooling {
    /// The last layer's final state (both directions' when bidirectional).
    #[default]
    Last,
    /// The mean of the last layer's outputs over the real (unmasked) steps.
    Mean,
}

impl std::str::FromStr for SequencePooling {
    type Err = String;

    /// `last` or `mean`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "last" => Ok(Self::Last),
            "mean" => Ok(Self::Mean),
            other => Err(format!(
                "unknown sequence pooling `{other}`: expected last or mean"
            )),
        }
    }
}

/// What the head predicts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "head")]
pub enum SequenceHead {
    /// Class logits.
    Classify {
        /// How the sequence is summarised.
        #[serde(default)]
        pooling: SequencePooling,
    },
    /// The next `d_output` values of input channel 0.
    Forecast {
        /// Predict the change from the last observed value rather than the value itself
        /// (helps on trending series, whose future leaves the training range).
        #[serde(default = "yes")]
        residual: bool,
    },
}

fn yes() -> bool {
    true
}

/// Configuration of a [`SequenceModel`].
#[derive(Config, Debug)]
pub struct SequenceModelConfig {
    /// The recurrent stack (cell, sizes, layers, direction, dropout between layers).
    pub rnn: RecurrentConfig,
    /// Time steps per sample; flat rows of `seq_len * rnn.d_input` features are read as
    /// `[seq_len, d_input]`.
    pub seq_len: usize,
    /// Classes, or the forecast horizon.
    pub d_output: usize,
    /// Classifier or forecaster.
    pub head: SequenceHead,
    /// Dropout before the head, default 0.
    #[config(default = 0.0)]
    pub dropout: f64,
}

/// A recurrent stack with a linear head: a sequence classifier or a forecaster.
#[derive(Module, Debug)]
pub struct SequenceModel {
    /// The recurrent layers.
    pub rnn: Recurrent,
    /// Dropout before the head.
    pub dropout: Dropout,
    /// The linear head.
    pub head: Linear,
    /// Steps per flat row.
    pub seq_len: usize,
    /// What the head predicts (not a parameter).
    #[module(skip)]
    pub kind: SequenceHead,
}

pub(crate) fn validate_rnn(c: &RecurrentConfig) -> crate::Result<()> {
    check_size("d_input", c.d_input)?;
    check_size("d_hidden", c.d_hidden)?;
    check_size("n_layers", c.n_layers)?;
    check_dropout(c.dropout)
}

impl SequenceModelConfig {
    /// Checks sizes and dropouts.
    ///
    /// # Errors
    /// A zero size or a dropout outside `[0, 1)`.
    pub fn validate(&self) -> crate::Result<()> {
        validate_rnn(&self.rnn)?;
        check_size("seq_len", self.seq_len)?;
        check_size("d_output", self.d_output)?;
        check_dropout(self.dropout)
    }

    /// Builds the model.
    ///
    /// # Errors
    /// As [`validate`](Self::validate).
    pub fn init(&self, device: &Device) -> crate::Result<SequenceModel> {
        self.validate()?;
        let rnn = self.rnn.init(device);
        let head = LinearConfig::new(rnn.d_output(), self.d_output).init(device);
        Ok(SequenceModel {
            rnn,
            dropout: DropoutConfig::new(self.dropout).init(),
            head,
            seq_len: self.seq_len,
            kind: self.head,
        })
    }
}

impl SequenceModel {
    /// Outputs for a batch of sequences.
    ///
    /// # Shapes
    /// - `x`: `[batch, time, d_input]`
    /// - `mask`: `[batch, time]`, 1 for real steps, 0 for padding after them (optional)
    /// - output: `[batch, d_output]` (class logits, or the next `d_output` values)
    ///
    /// # Panics
    /// When `x` does not have `d_input` features per step.
    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<2>>) -> Tensor<2> {
        let [batch, _, _] = x.dims();
        let d = self.rnn.d_output();
        let last_value = match self.kind {
            SequenceHead::Forecast { residual: true } => Some(last_observed(&x, mask.as_ref())),
            _ => None,
        };
        let (y, state) = self.rnn.forward(x, mask.clone(), None);
        let summary = match self.kind {
            SequenceHead::Classify {
                pooling: SequencePooling::Mean,
            } => match mask {
                Some(m) => {
                    let n = m.clone().sum_dim(1).clamp_min(1.0); // [batch, 1]
                    (y * m.unsqueeze_dim::<3>(2)).sum_dim(1).reshape([batch, d]) / n
                }
                None => y.mean_dim(1).reshape([batch, d]),
            },
            _ => self.final_state(state, batch),
        };
        let out = self
            .head
            .forward(strata_kernels::dropout_layer(&self.dropout, summary));
        match last_value {
            Some(v) => out + v,
            None => out,
        }
    }

    /// The last layer's final hidden state, directions concatenated: `[batch, d_hidden * dirs]`.
    fn final_state(&self, state: RecurrentState, batch: usize) -> Tensor<2> {
        let dirs = self.rnn.directions();
        let n = state.hidden.dims()[0];
        state
            .hidden
            .narrow(0, n - dirs, dirs)
            .swap_dims(0, 1)
            .reshape([batch, self.rnn.d_output()])
    }

    /// Outputs for flat rows of `seq_len * d_input` features.
    ///
    /// # Shapes
    /// - input: `[batch, seq_len * d_input]`
    /// - output: `[batch, d_output]`
    ///
    /// # Panics
    /// When the row length is not `seq_len * d_input`.
    pub fn forward_flat(&self, input: Tensor<2>) -> Tensor<2> {
        let [batch, features] = input.dims();
        let d_input = features / self.seq_len;
        self.forward(input.reshape([batch, self.seq_len, d_input]), None)
    }

    /// Forecasts `steps` values after `history` (one channel, already scaled) by feeding each
    /// one-step forecast back as the newest input (the recursive strategy). Uses the first
    /// output of the head.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the model is not a forecaster, takes more than one input channel,
    /// or `history` is shorter than `seq_len`.
    pub fn forecast(
        &self,
        history: &[f32],
        steps: usize,
        device: &Device,
    ) -> crate::Result<Vec<f32>> {
        if !matches!(self.kind, SequenceHead::Forecast { .. }) {
            return Err(Error::Invalid("forecast needs a forecasting model".into()));
        }
        if self.rnn.layers[0].forward.weight_ih.dims()[1] != 1 {
            return Err(Error::Invalid(
                "recursive forecasts need a single-channel model".into(),
            ));
        }
        if history.len() < self.seq_len {
            return Err(Error::Invalid(format!(
                "history of {} values is shorter than the {}-step window",
                history.len(),
                self.seq_len
            )));
        }
        let mut window: Vec<f32> = history[history.len() - self.seq_len..].to_vec();
        let mut out = Vec::with_capacity(steps);
        for _ in 0..steps {
            let x = Tensor::<3>::from_data(
                TensorData::new(window.clone(), [1, self.seq_len, 1]),
                device,
            );
            let y = self.forward(x, None).narrow(1, 0, 1).into_data();
            let next = y.iter::<f32>().next().unwrap_or(f32::NAN);
            out.push(next);
            window.remove(0);
            window.push(next);
        }
        Ok(out)
    }
}

/// Channel 0 at each sequence's last real step: `[batch, 1]`.
fn last_observed(x: &Tensor<3>, mask: Option<&Tensor<2>>) -> Tensor<2> {
    let [batch, time, _] = x.dims();
    let channel = x.clone().narrow(2, 0, 1).reshape([batch, time]);
    match mask {
        None => channel.narrow(1, time - 1, 1),
        Some(m) => {
            // One-hot of the last real step: mask[t] - mask[t + 1].
            let next = Tensor::cat(
                vec![
                    m.clone().narrow(1, 1, time - 1),
                    m.clone().narrow(1, 0, 1).zeros_like(),
                ],
                1,
            );
            (channel * (m.clone() - next)).sum_dim(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use proptest::prelude::*;
    use strata_layers::{CellKind, length_mask};

    fn model(cell: CellKind, head: SequenceHead, bi: bool) -> SequenceModel {
        SequenceModelConfig::new(
            RecurrentConfig::new(cell, 2, 6).with_bidirectional(bi),
            5,
            3,
            head,
        )
        .init(&Device::flex())
        .unwrap()
    }

    #[test]
    fn bad_configs_are_errors() {
        let d = Device::flex();
        let head = SequenceHead::Forecast { residual: true };
        let e = SequenceModelConfig::new(RecurrentConfig::new(CellKind::Lstm, 1, 0), 4, 1, head)
            .init(&d)
            .unwrap_err();
        assert!(e.to_string().contains("d_hidden"));
        assert!(
            SequenceModelConfig::new(RecurrentConfig::new(CellKind::Lstm, 1, 4), 0, 1, head)
                .init(&d)
                .is_err()
        );
        assert!(
            SequenceModelConfig::new(
                RecurrentConfig::new(CellKind::Gru, 1, 4).with_dropout(1.0),
                3,
                1,
                head
            )
            .init(&d)
            .is_err()
        );
    }

    #[test]
    fn the_residual_forecaster_starts_from_the_last_value() {
        let m = model(
            CellKind::Gru,
            SequenceHead::Forecast { residual: true },
            false,
        );
        let d = Device::flex();
        let x = Tensor::<3>::random([4, 5, 2], Distribution::Default, &d);
        let plain = SequenceModel {
            kind: SequenceHead::Forecast { residual: false },
            ..m.clone()
        };
        let diff = m.forward(x.clone(), None) - plain.forward(x.clone(), None);
        let last = x.narrow(1, 4, 1).narrow(2, 0, 1).reshape([4, 1]);
        let err = (diff - last).abs().max().into_scalar::<f32>();
        assert!(err < 1e-6);
    }

    #[test]
    fn recursive_forecasts_and_their_errors() {
        let m = SequenceModelConfig::new(
            RecurrentConfig::new(CellKind::Lstm, 1, 4),
            3,
            1,
            SequenceHead::Forecast { residual: true },
        )
        .init(&Device::flex())
        .unwrap();
        let d = Device::flex();
        let f = m.forecast(&[0.1, 0.2, 0.3, 0.4], 5, &d).unwrap();
        assert_eq!(f.len(), 5);
        assert!(f.iter().all(|v| v.is_finite()));
        assert!(m.forecast(&[0.1, 0.2], 5, &d).is_err());
        let c = model(
            CellKind::Lstm,
            SequenceHead::Classify {
                pooling: SequencePooling::Last,
            },
            false,
        );
        assert!(c.forecast(&[0.0; 10], 1, &d).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        /// Padding after the real steps changes neither the classifier's nor the forecaster's
        /// output, whatever the pooling or direction.
        #[test]
        fn padding_changes_no_prediction(
            mean in any::<bool>(), forecast in any::<bool>(), bi in any::<bool>(),
            lengths in prop::collection::vec(1usize..5, 1..4), pad in -9.0f32..9.0,
        ) {
            let head = if forecast {
                SequenceHead::Forecast { residual: true }
            } else {
                SequenceHead::Classify {
                    pooling: if mean { SequencePooling::Mean } else { SequencePooling::Last },
                }
            };
            let m = model(CellKind::Lstm, head, bi);
            let d = Device::flex();
            let time = 5;
            let x = Tensor::<3>::random([lengths.len(), time, 2], Distribution::Default, &d);
            let mask = length_mask(&lengths, time, &d);
            let m3 = mask.clone().unsqueeze_dim::<3>(2);
            let padded = x.clone() * m3.clone() + (m3.neg() + 1.0) * pad;
            let y = m.forward(padded, Some(mask));
            for (b, &len) in lengths.iter().enumerate() {
                let alone = m.forward(x.clone().narrow(0, b, 1).narrow(1, 0, len), None);
                let err = (y.clone().narrow(0, b, 1) - alone).abs().max().into_scalar::<f32>();
                prop_assert!(err < 1e-5, "sequence {} differs by {}", b, err);
            }
        }
    }
}
