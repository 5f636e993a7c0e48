//! Feed-forward network (multi-layer perceptron).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use strata_layers::{ActivationKind, DenseBlock, DenseBlockConfig};

use crate::error::{check_dropout, check_size};

/// Configuration of an [`Mlp`].
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Input features.
    pub d_input: usize,
    /// Outputs (classes, or 1 for regression).
    pub d_output: usize,
    /// Width of each hidden layer, default `[256, 128]`.
    #[config(default = "vec![256, 128]")]
    pub d_hidden: Vec<usize>,
    /// Hidden activation, default ReLU.
    #[config(default = "ActivationKind::Relu")]
    pub activation: ActivationKind,
    /// Dropout after each hidden layer, default 0.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Batch normalisation in each hidden layer, default off.
    #[config(default = false)]
    pub batch_norm: bool,
}

/// A multi-layer perceptron: hidden [`DenseBlock`]s and a linear output layer (logits).
#[derive(Module, Debug)]
pub struct Mlp {
    /// Hidden layers.
    pub hidden: Vec<DenseBlock>,
    /// Output layer.
    pub output: Linear,
    /// An int8 copy of the output layer for inference ([`Mlp::quantize_int8`]); not saved.
    #[module(skip)]
    pub output_int8: Option<strata_kernels::QuantizedLinear>,
}

impl MlpConfig {
    /// Checks sizes and dropout.
    ///
    /// # Errors
    /// A zero size or a dropout outside `[0, 1)`.
    pub fn validate(&self) -> crate::Result<()> {
        check_size("d_input", self.d_input)?;
        check_size("d_output", self.d_output)?;
        for (i, &h) in self.d_hidden.iter().enumerate() {
            check_size(&format!("d_hidden[{i}]"), h)?;
        }
        check_dropout(self.dropout)
    }

    /// Builds the network on `device`.
    ///
    /// # Errors
    /// As [`validate`](Self::validate).
    pub fn init(&self, device: &Device) -> crate::Result<Mlp> {
        self.validate()?;
        let mut d_in = self.d_input;
        let mut hidden = Vec::with_capacity(self.d_hidden.len());
        for &d_out in &self.d_hidden {
            hidden.push(
                DenseBlockConfig::new(d_in, d_out)
                    .with_activation(self.activation)
                    .with_dropout(self.dropout)
                    .with_batch_norm(self.batch_norm)
                    .init(device),
            );
            d_in = d_out;
        }
        Ok(Mlp {
            hidden,
            output: LinearConfig::new(d_in, self.d_output).init(device),
            output_int8: None,
        })
    }
}

impl Mlp {
    /// Computes the logits (or regression outputs).
    ///
    /// # Shapes
    /// - input: `[batch, d_input]`
    /// - output: `[batch, d_output]`
    ///
    /// # Panics
    /// When the input's last axis is not `d_input`.
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        let x = self.hidden.iter().fold(input, |x, block| block.forward(x));
        strata_kernels::linear_or_int8(&self.output, self.output_int8.as_ref(), x)
    }

    /// Keeps int8 copies of every linear layer (one scale per matrix, or per output), which
    /// inference then runs; training still runs the float layers.
    pub fn quantize_int8(&mut self, per_output: bool) {
        for block in &mut self.hidden {
            block.quantize_int8(per_output);
        }
        self.output_int8 = Some(strata_kernels::QuantizedLinear::from_linear(
            &self.output,
            per_output,
        ));
    }

    /// The inputs of the int8 layers ([`quantize_int8`](Self::quantize_int8)) by name
    /// (`hidden.0.linear`, ..., `output`), to observe and calibrate.
    pub fn int8_inputs_mut(&mut self) -> Vec<(String, &mut strata_kernels::Int8Input)> {
        let mut inputs = Vec::new();
        for (i, block) in self.hidden.iter_mut().enumerate() {
            if let Some(q) = &mut block.int8 {
                inputs.push((format!("hidden.{i}.linear"), q.input_mut()));
            }
        }
        if let Some(q) = &mut self.output_int8 {
            inputs.push(("output".into(), q.input_mut()));
        }
        inputs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn invalid_sizes_are_errors() {
        let d = Device::flex();
        assert!(MlpConfig::new(0, 3).init(&d).is_err());
        assert!(
            MlpConfig::new(4, 3)
                .with_d_hidden(vec![8, 0])
                .init(&d)
                .is_err()
        );
        let e = MlpConfig::new(4, 3).with_dropout(1.5).init(&d).unwrap_err();
        assert!(e.to_string().contains("dropout"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn output_shape(batch in 1usize..9, d_in in 1usize..20, d_out in 1usize..12,
                        hidden in prop::collection::vec(1usize..16, 0..3), bn in any::<bool>()) {
            let d = Device::flex();
            let m = MlpConfig::new(d_in, d_out).with_d_hidden(hidden).with_batch_norm(bn).init(&d).unwrap();
            let y = m.forward(Tensor::<2>::ones([batch, d_in], &d));
            prop_assert_eq!(y.dims(), [batch, d_out]);
        }
    }
}
