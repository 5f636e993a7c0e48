//! Int8 layers for inference on top of the [`int8`] kernels: [`QuantizedLinear`] and
//! [`QuantizedConv2d`], whose inputs are quantised as [`Int8Input`] says (dynamically, or
//! with a scale calibrated on batches run through the network).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};
use burn::tensor::{Device, Tensor, TensorData};

use crate::conv::ConvGeometry;
use crate::int8::{self, InputScale, QuantizedMatrix};
use crate::{enabled, linear_layer, padding_pairs};

/// Whether int8 layers run on `device`: no autodiff (int8 has no gradients, so training always
/// runs the float layers) and the kernels [`enabled`].
pub fn runs_int8(device: &Device) -> bool {
    enabled() && !device.is_autodiff()
}

/// How an int8 layer quantises its inputs, and what it has seen while observing: run a few
/// training batches through the network with [`observe`](Self::observe) on, then
/// [`calibrate`](Self::calibrate) to fix the scale to the largest input magnitude seen (static
/// quantisation). Clones of a layer share what they observe.
#[derive(Debug, Clone, Default)]
pub struct Int8Input {
    scale: InputScale,
    /// The largest finite input magnitude seen, as f32 bits (which order as the values for
    /// non-negative numbers), while observing.
    seen: Option<Arc<AtomicU32>>,
}

impl Int8Input {
    /// How inputs are scaled.
    pub fn scale(&self) -> InputScale {
        self.scale
    }

    /// Sets how inputs are scaled.
    ///
    /// # Panics
    /// A static scale that is not a positive finite number.
    pub fn set_scale(&mut self, scale: InputScale) {
        if let InputScale::Static(s) = scale {
            assert!(s.is_finite() && s > 0.0, "int8: a static scale of {s}");
        }
        self.scale = scale;
    }

    /// Starts recording the largest input magnitude of every forward pass, from nothing.
    pub fn observe(&mut self) {
        self.seen = Some(Arc::new(AtomicU32::new(0)));
    }

    /// The largest input magnitude recorded since [`observe`](Self::observe) (batches holding
    /// a NaN or an infinity are not counted); `None` when not observing.
    pub fn observed_peak(&self) -> Option<f32> {
        self.seen
            .as_ref()
            .map(|s| f32::from_bits(s.load(Ordering::Relaxed)))
    }

    /// Stops observing and fixes the scale to the peak seen ([`InputScale::calibrated`]:
    /// dynamic when nothing above zero was seen). Returns the scale.
    pub fn calibrate(&mut self) -> InputScale {
        let scale = InputScale::calibrated(self.observed_peak().unwrap_or(0.0));
        self.seen = None;
        self.scale = scale;
        scale
    }

    fn record(&self, x: &[f32]) {
        if let Some(seen) = &self.seen {
            let peak = int8::peak(x);
            if peak.is_finite() {
                seen.fetch_max(peak.to_bits(), Ordering::Relaxed);
            }
        }
    }
}

/// `x`'s values as f32 on the host.
fn host(data: &TensorData) -> &[f32] {
    data.as_slice::<f32>().expect("converted to f32")
}

/// A linear layer with int8 weights for inference ([`int8`]): the weights stay in int8, each
/// input row is quantised to int8 as it arrives (or with a calibrated scale, [`Int8Input`]), and the products run in integers (AVX-512
/// VNNI where the CPU has it). Against the float layer, each output moves by at most the two
/// roundings' worst case; see docs/compression.md.
///
/// ```
/// use burn::nn::LinearConfig;
/// use burn::tensor::{Device, Distribution, Tensor};
///
/// let device = Device::flex();
/// let layer = LinearConfig::new(64, 8).init(&device);
/// let int8 = strata_kernels::QuantizedLinear::from_linear(&layer, true);
/// // Inputs in [0, 1).
/// let x = Tensor::<2>::random([4, 64], Distribution::Default, &device);
/// let (float, quantised) = (layer.forward(x.clone()), int8.forward(x));
/// assert_eq!(quantised.dims(), [4, 8]);
/// // Each of the 64 products is off by at most about |x| |w| / 127 (half a step each).
/// let w_max = layer.weight.val().abs().max().into_scalar::<f32>();
/// let gap = float.sub(quantised).abs().max().into_scalar::<f32>();
/// assert!(gap <= 64.0 * w_max / 127.0 * 1.01);
/// ```
#[derive(Debug, Clone)]
pub struct QuantizedLinear {
    weight: Arc<QuantizedMatrix>,
    bias: Option<Vec<f32>>,
    input: Int8Input,
}

impl QuantizedLinear {
    /// From int8 weights and a float bias of `weight.d_out()` values.
    ///
    /// # Panics
    /// A bias of another length.
    pub fn new(weight: QuantizedMatrix, bias: Option<Vec<f32>>) -> Self {
        if let Some(b) = &bias {
            assert_eq!(b.len(), weight.d_out(), "int8 linear: bias length");
        }
        Self {
            weight: Arc::new(weight),
            bias,
            input: Int8Input::default(),
        }
    }

    /// burn's layer quantised: one scale for the weight matrix, or one per output
    /// (`per_output`); the bias stays in f32.
    pub fn from_linear(layer: &Linear, per_output: bool) -> Self {
        let [d_in, d_out] = layer.weight.dims();
        let w = layer.weight.val().into_data().convert::<f32>();
        let w = w.as_slice::<f32>().expect("converted to f32");
        let bias = layer.bias.as_ref().map(|b| {
            b.val()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("converted to f32")
        });
        Self::new(QuantizedMatrix::quantize(w, d_in, d_out, per_output), bias)
    }

    /// The int8 weights.
    pub fn weight(&self) -> &QuantizedMatrix {
        &self.weight
    }

    /// How its inputs are quantised.
    pub fn input(&self) -> &Int8Input {
        &self.input
    }

    /// How its inputs are quantised, to observe and calibrate.
    pub fn input_mut(&mut self) -> &mut Int8Input {
        &mut self.input
    }

    /// `x W + b` over the last dimension of `x`, computed on the host in int8 (on any device:
    /// `x` is read back and the result written to its device).
    ///
    /// # Panics
    /// When `x`'s last dimension is not the layer's input width.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let mut dims = x.dims();
        assert_eq!(dims[D - 1], self.weight.d_in(), "int8 linear: input width");
        let device = x.device();
        let data = x.into_data().convert::<f32>();
        self.input.record(host(&data));
        let y = int8::linear(
            host(&data),
            &self.weight,
            self.bias.as_deref(),
            self.input.scale,
        );
        dims[D - 1] = self.weight.d_out();
        Tensor::from_data(TensorData::new(y, dims), &device)
    }
}

/// `layer`'s forward pass, or its int8 copy's ([`QuantizedLinear`]) when there is one and
/// [`runs_int8`] on `x`'s device.
pub fn linear_or_int8<const D: usize>(
    layer: &Linear,
    int8: Option<&QuantizedLinear>,
    x: Tensor<D>,
) -> Tensor<D> {
    match int8 {
        Some(q) if runs_int8(&x.device()) => q.forward(x),
        _ => linear_layer(layer, x),
    }
}

/// A batch norm's inference statistics, per channel, to fold into the convolution before it
/// ([`QuantizedConv2d::from_conv`]): `y = γ (x - μ) / √(σ² + ε) + β`.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNormStats {
    /// Scale `γ`.
    pub gamma: Vec<f32>,
    /// Shift `β`.
    pub beta: Vec<f32>,
    /// Running mean `μ`.
    pub mean: Vec<f32>,
    /// Running variance `σ²`.
    pub var: Vec<f32>,
    /// `ε`, added to the variance.
    pub epsilon: f64,
}

impl BatchNormStats {
    /// The statistics of burn's batch norm.
    pub fn of(norm: &BatchNorm) -> Self {
        Self::from_tensors(
            [
                norm.gamma.val(),
                norm.beta.val(),
                norm.running_mean.value(),
                norm.running_var.value(),
            ],
            norm.epsilon,
        )
    }

    /// The statistics from `[γ, β, μ, σ²]` as tensors, read back to the host.
    pub fn from_tensors([gamma, beta, mean, var]: [Tensor<1>; 4], epsilon: f64) -> Self {
        Self {
            gamma: values(gamma),
            beta: values(beta),
            mean: values(mean),
            var: values(var),
            epsilon,
        }
    }
}

/// A vector's values on the host, as f32.
fn values(t: Tensor<1>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("converted to f32")
}

/// A 2-D convolution with int8 weights for inference ([`int8::conv2d`]), with the batch norm
/// that follows it folded into its per-channel scales and bias, and the ReLU after that fused
/// into its output pass. Each image is quantised with its own scale as it arrives (or with a
/// calibrated one, [`Int8Input`]).
///
/// ```
/// use burn::nn::PaddingConfig2d;
/// use burn::nn::conv::Conv2dConfig;
/// use burn::tensor::{Device, Distribution, Tensor};
///
/// let device = Device::flex();
/// let conv = Conv2dConfig::new([3, 8], [3, 3])
///     .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
///     .init(&device);
/// let int8 = strata_kernels::QuantizedConv2d::from_conv(&conv, None, false, true).unwrap();
/// let x = Tensor::<4>::random([2, 3, 8, 8], Distribution::Default, &device);
/// let (float, quantised) = (conv.forward(x.clone()), int8.forward(x));
/// assert_eq!(quantised.dims(), [2, 8, 8, 8]);
/// // 27 products, each off by at most about |x| |w| / 127.
/// let w_max = conv.weight.val().abs().max().into_scalar::<f32>();
/// let gap = float.sub(quantised).abs().max().into_scalar::<f32>();
/// assert!(gap <= 27.0 * w_max / 127.0 * 1.01);
/// ```
#[derive(Debug, Clone)]
pub struct QuantizedConv2d {
    weight: Arc<QuantizedMatrix>,
    bias: Option<Vec<f32>>,
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    padding: PaddingConfig2d,
    relu: bool,
    input: Int8Input,
}

impl QuantizedConv2d {
    /// burn's layer quantised (one scale for the kernel, or one per output channel), with
    /// `norm`'s inference statistics folded in (`γ / σ` into each channel's scale, the shift
    /// into the bias; the int8 values stay those of the kernel) and a ReLU after when `relu`.
    /// `None` for a grouped convolution.
    ///
    /// # Panics
    /// A batch norm over another number of channels.
    pub fn from_conv(
        conv: &Conv2d,
        norm: Option<BatchNormStats>,
        relu: bool,
        per_output: bool,
    ) -> Option<Self> {
        if conv.groups != 1 {
            return None;
        }
        let shape = conv.weight.dims();
        let w = conv.weight.val().into_data().convert::<f32>();
        let mut weight = QuantizedMatrix::quantize_conv(host(&w), shape, per_output);
        let mut bias = conv.bias.as_ref().map(|b| values(b.val()));
        if let Some(BatchNormStats {
            gamma,
            beta,
            mean,
            var,
            epsilon,
        }) = norm
        {
            assert!(
                [&gamma, &beta, &mean, &var]
                    .iter()
                    .all(|v| v.len() == shape[0]),
                "int8 conv: batch norm width"
            );
            let factors: Vec<f32> = gamma
                .iter()
                .zip(&var)
                .map(|(g, v)| (f64::from(*g) / (f64::from(*v) + epsilon).sqrt()) as f32)
                .collect();
            weight.scale_outputs(&factors);
            let b = bias.take().unwrap_or_else(|| vec![0.0; shape[0]]);
            bias = Some(
                (0..shape[0])
                    .map(|o| (b[o] - mean[o]) * factors[o] + beta[o])
                    .collect(),
            );
        }
        Some(Self {
            weight: Arc::new(weight),
            bias,
            kernel: conv.kernel_size,
            stride: conv.stride,
            dilation: conv.dilation,
            padding: conv.padding.clone(),
            relu,
            input: Int8Input::default(),
        })
    }

    /// The int8 kernel, as the matrix [`int8::conv2d`] multiplies by.
    pub fn weight(&self) -> &QuantizedMatrix {
        &self.weight
    }

    /// Whether a ReLU follows inside the layer.
    pub fn relu(&self) -> bool {
        self.relu
    }

    /// How its inputs are quantised.
    pub fn input(&self) -> &Int8Input {
        &self.input
    }

    /// How its inputs are quantised, to observe and calibrate.
    pub fn input_mut(&mut self) -> &mut Int8Input {
        &mut self.input
    }

    /// The layer on `x` (`[N, C, H, W]`), computed on the host in int8 (on any device: `x` is
    /// read back and the result written to its device).
    ///
    /// # Panics
    /// When `x` has another number of channels than the layer's input.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        let [kh, kw] = self.kernel;
        assert_eq!(
            c * kh * kw,
            self.weight.d_in(),
            "int8 conv: {c} input channels for a kernel of {}",
            self.weight.d_in() / (kh * kw)
        );
        let g = ConvGeometry {
            batch: n,
            channels_in: c,
            input: [h, w],
            channels_out: self.weight.d_out(),
            kernel: self.kernel,
            stride: self.stride,
            padding: padding_pairs(&self.padding, self.kernel, self.stride, &x),
            dilation: self.dilation,
            groups: 1,
        };
        let device = x.device();
        let data = x.into_data().convert::<f32>();
        self.input.record(host(&data));
        let y = int8::conv2d(
            host(&data),
            &self.weight,
            self.bias.as_deref(),
            &g,
            self.input.scale,
            self.relu,
        );
        let [ho, wo] = g.output();
        Tensor::from_data(TensorData::new(y, [n, g.channels_out, ho, wo]), &device)
    }
}
