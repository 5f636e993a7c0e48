//! LeNet-style convolutional network: convolutional stages, then a dense head.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use strata_layers::{
    ActivationKind, ConvBlock, ConvBlockConfig, DenseBlock, DenseBlockConfig, Pooling,
};

use crate::error::{Error, check_dropout, check_size};

/// Configuration of a [`Cnn`].
#[derive(Config, Debug)]
pub struct CnnConfig {
    /// Input channels (1 for grey images).
    pub in_channels: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Number of classes.
    pub n_classes: usize,
    /// Output channels of each convolutional stage, default `[32, 64]`.
    #[config(default = "vec![32, 64]")]
    pub channels: Vec<usize>,
    /// Square kernel size ("same" padding), default 3.
    #[config(default = 3)]
    pub kernel_size: usize,
    /// Pooling after each stage, default 2x2 max.
    #[config(default = "Pooling::Max")]
    pub pooling: Pooling,
    /// Width of the hidden dense layer, default 128 (0 = none).
    #[config(default = 128)]
    pub d_hidden: usize,
    /// Activation, default ReLU.
    #[config(default = "ActivationKind::Relu")]
    pub activation: ActivationKind,
    /// Dropout before the hidden and output layers, default 0.25.
    #[config(default = 0.25)]
    pub dropout: f64,
    /// Batch normalisation in each stage, default on.
    #[config(default = true)]
    pub batch_norm: bool,
}

/// A LeNet-style CNN.
#[derive(Module, Debug)]
pub struct Cnn {
    /// Convolutional stages.
    pub features: Vec<ConvBlock>,
    /// Dropout before the head.
    pub dropout: Dropout,
    /// Hidden dense layer, when `d_hidden > 0`.
    pub hidden: Option<DenseBlock>,
    /// Output layer (logits).
    pub classifier: Linear,
    /// An int8 copy of the output layer for inference ([`Cnn::quantize_int8`]); not saved.
    #[module(skip)]
    pub classifier_int8: Option<strata_kernels::QuantizedLinear>,
    /// `[channels, height, width]` of the input, for [`forward_flat`](Cnn::forward_flat).
    pub input_shape: [usize; 3],
}

impl CnnConfig {
    fn stage(&self, i: usize, in_channels: usize) -> ConvBlockConfig {
        ConvBlockConfig::new(in_channels, self.channels[i])
            .with_kernel_size(self.kernel_size)
            .with_activation(self.activation)
            .with_batch_norm(self.batch_norm)
            .with_pooling(self.pooling)
    }

    /// Checks sizes, and that pooling leaves at least one pixel.
    ///
    /// # Errors
    /// A zero size, a dropout outside `[0, 1)`, or too many pooling stages for the input.
    pub fn validate(&self) -> crate::Result<()> {
        check_size("in_channels", self.in_channels)?;
        check_size("height", self.height)?;
        check_size("width", self.width)?;
        check_size("n_classes", self.n_classes)?;
        check_size("kernel_size", self.kernel_size)?;
        if self.channels.is_empty() {
            return Err(Error::Invalid("channels needs at least one stage".into()));
        }
        for (i, &c) in self.channels.iter().enumerate() {
            check_size(&format!("channels[{i}]"), c)?;
        }
        check_dropout(self.dropout)?;
        let (h, w) = self.feature_size();
        if h == 0 || w == 0 {
            return Err(Error::Invalid(format!(
                "{} pooling stages shrink a {}x{} input to nothing",
                self.channels.len(),
                self.height,
                self.width
            )));
        }
        Ok(())
    }

    /// Height and width after the convolutional stages.
    pub fn feature_size(&self) -> (usize, usize) {
        let shrink =
            |s: usize| (0..self.channels.len()).fold(s, |s, i| self.stage(i, 1).output_size(s));
        (shrink(self.height), shrink(self.width))
    }

    /// Builds the network on `device`.
    ///
    /// # Errors
    /// As [`validate`](Self::validate).
    pub fn init(&self, device: &Device) -> crate::Result<Cnn> {
        self.validate()?;
        let mut c_in = self.in_channels;
        let mut features = Vec::new();
        for i in 0..self.channels.len() {
            features.push(self.stage(i, c_in).init(device));
            c_in = self.channels[i];
        }
        let (h, w) = self.feature_size();
        let flat = c_in * h * w;
        let (hidden, d_head) = if self.d_hidden > 0 {
            (
                Some(
                    DenseBlockConfig::new(flat, self.d_hidden)
                        .with_activation(self.activation)
                        .with_dropout(self.dropout)
                        .init(device),
                ),
                self.d_hidden,
            )
        } else {
            (None, flat)
        };
        Ok(Cnn {
            features,
            dropout: DropoutConfig::new(self.dropout).init(),
            hidden,
            classifier: LinearConfig::new(d_head, self.n_classes).init(device),
            classifier_int8: None,
            input_shape: [self.in_channels, self.height, self.width],
        })
    }
}

impl Cnn {
    /// Computes the class logits of a batch of images.
    ///
    /// # Shapes
    /// - input: `[batch, in_channels, height, width]`
    /// - output: `[batch, n_classes]`
    ///
    /// # Panics
    /// When the input's channel count or spatial size differs from the configuration.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        strata_kernels::linear_or_int8(
            &self.classifier,
            self.classifier_int8.as_ref(),
            self.embed(images),
        )
    }

    /// Keeps int8 copies of the convolutions (batch norms folded in) and of the dense layers
    /// (one scale per matrix, or per output channel), which inference then runs.
    pub fn quantize_int8(&mut self, per_output: bool) {
        for stage in &mut self.features {
            stage.quantize_int8(per_output);
        }
        if let Some(hidden) = &mut self.hidden {
            hidden.quantize_int8(per_output);
        }
        self.classifier_int8 = Some(strata_kernels::QuantizedLinear::from_linear(
            &self.classifier,
            per_output,
        ));
    }

    /// The inputs of the int8 layers ([`quantize_int8`](Self::quantize_int8)) by name
    /// (`features.0.conv`, `hidden.linear`, `classifier`), to observe and calibrate.
    pub fn int8_inputs_mut(&mut self) -> Vec<(String, &mut strata_kernels::Int8Input)> {
        let mut inputs = Vec::new();
        for (i, stage) in self.features.iter_mut().enumerate() {
            if let Some(q) = &mut stage.conv_int8 {
                inputs.push((format!("features.{i}.conv"), q.input_mut()));
            }
        }
        if let Some(q) = self.hidden.as_mut().and_then(|h| h.int8.as_mut()) {
            inputs.push(("hidden.linear".into(), q.input_mut()));
        }
        if let Some(q) = &mut self.classifier_int8 {
            inputs.push(("classifier".into(), q.input_mut()));
        }
        inputs
    }

    /// The features the output layer reads: the hidden dense layer's, or the flattened
    /// convolutional features when there is none.
    ///
    /// # Shapes
    /// - input: `[batch, in_channels, height, width]`
    /// - output: `[batch, d_hidden]` (or `[batch, channels * h * w]`)
    ///
    /// # Panics
    /// As [`forward`](Cnn::forward).
    pub fn embed(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self
            .features
            .iter()
            .fold(images, |x, stage| stage.forward(x));
        self.dense_features(x)
    }

    /// The activations after convolutional stage `stage` (`features.{stage}`, from 0), for
    /// Grad-CAM.
    ///
    /// # Shapes
    /// - input: `[batch, in_channels, height, width]`
    /// - output: `[batch, channels[stage], h, w]`
    ///
    /// # Panics
    /// As [`forward`](Cnn::forward), and for a stage past the last.
    pub fn forward_to(&self, images: Tensor<4>, stage: usize) -> Tensor<4> {
        self.features[..=stage]
            .iter()
            .fold(images, |x, s| s.forward(x))
    }

    /// The logits from the activations after stage `stage`: the rest of
    /// [`forward`](Cnn::forward).
    ///
    /// # Panics
    /// As [`forward_to`](Cnn::forward_to).
    pub fn forward_from(&self, activations: Tensor<4>, stage: usize) -> Tensor<2> {
        let x = self.features[stage + 1..]
            .iter()
            .fold(activations, |x, s| s.forward(x));
        strata_kernels::linear_or_int8(
            &self.classifier,
            self.classifier_int8.as_ref(),
            self.dense_features(x),
        )
    }

    /// The convolutional features flattened, through dropout and the hidden dense layer.
    fn dense_features(&self, x: Tensor<4>) -> Tensor<2> {
        let [batch, c, h, w] = x.dims();
        let mut x = strata_kernels::dropout_layer(&self.dropout, x.reshape([batch, c * h * w]));
        if let Some(hidden) = &self.hidden {
            x = hidden.forward(x);
        }
        x
    }

    /// As [`embed`](Cnn::embed), from flattened images.
    ///
    /// # Shapes
    /// - input: `[batch, in_channels * height * width]`
    /// - output: `[batch, d_hidden]`
    ///
    /// # Panics
    /// When the row length is not `in_channels * height * width`.
    pub fn features_flat(&self, input: Tensor<2>) -> Tensor<2> {
        let [batch, _] = input.dims();
        let [c, h, w] = self.input_shape;
        self.embed(input.reshape([batch, c, h, w]))
    }

    /// As [`forward`](Cnn::forward), from flattened images (row-major `C x H x W`).
    ///
    /// # Shapes
    /// - input: `[batch, in_channels * height * width]`
    /// - output: `[batch, n_classes]`
    ///
    /// # Panics
    /// When the row length is not `in_channels * height * width`.
    pub fn forward_flat(&self, input: Tensor<2>) -> Tensor<2> {
        let [batch, _] = input.dims();
        let [c, h, w] = self.input_shape;
        self.forward(input.reshape([batch, c, h, w]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lenet_shapes_on_digits_and_fashion_sizes() {
        let d = Device::flex();
        for side in [8, 28] {
            let m = CnnConfig::new(1, side, side, 10).init(&d).unwrap();
            assert_eq!(
                m.forward_flat(Tensor::<2>::zeros([3, side * side], &d))
                    .dims(),
                [3, 10]
            );
        }
    }

    #[test]
    fn too_much_pooling_is_an_error() {
        let e = CnnConfig::new(1, 8, 8, 10)
            .with_channels(vec![4, 4, 4, 4])
            .init(&Device::flex())
            .unwrap_err();
        assert!(e.to_string().contains("shrink"));
        assert!(CnnConfig::new(1, 8, 8, 0).init(&Device::flex()).is_err());
        assert!(
            CnnConfig::new(1, 8, 8, 3)
                .with_channels(vec![])
                .validate()
                .is_err()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        #[test]
        fn output_shape(batch in 1usize..4, c in 1usize..4, side in 4usize..17, k in 1usize..6,
                        n in 1usize..7, stages in 1usize..3, pool in prop::sample::select(vec![Pooling::Max, Pooling::Avg, Pooling::None])) {
            let d = Device::flex();
            let cfg = CnnConfig::new(c, side, side, n).with_kernel_size(k).with_pooling(pool)
                .with_channels(vec![3; stages]).with_d_hidden(8);
            let m = cfg.init(&d).unwrap();
            let y = m.forward(Tensor::<4>::ones([batch, c, side, side], &d));
            prop_assert_eq!(y.dims(), [batch, n]);
        }
    }
}
