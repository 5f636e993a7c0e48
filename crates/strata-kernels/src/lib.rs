//! Strata's own CPU kernels for burn's flex backend, each with a hand-written backward pass.
//!
//! burn composes some ops out of others on the CPU: a convolution's weight gradient is a
//! convolution with the batch and channels swapped, its input gradient a transposed
//! convolution, and the forward pass unfolds one image at a time. The kernels here do the
//! same arithmetic as a few large matrix products instead (see [`conv`]). They are a burn
//! *backend extension* ([`KernelOps`]): on a flex device Strata's code runs, on ndarray and
//! wgpu burn's own ops do, so model code calls one function everywhere and gets the same
//! result within float rounding.
//!
//! ```
//! use burn::backend::ops::{ConvOptions, MaxPoolOptions};
//! use burn::tensor::{Device, Distribution, Tensor};
//!
//! let device = Device::flex();
//! let x = Tensor::<4>::random([2, 3, 8, 8], Distribution::Default, &device);
//! let weight = Tensor::<4>::random([4, 3, 3, 3], Distribution::Default, &device);
//! let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
//! let ours = strata_kernels::conv2d(x.clone(), weight.clone(), None, options.clone());
//! let burns = burn::tensor::module::conv2d(x, weight, None, options);
//! assert_eq!(ours.dims(), [2, 4, 8, 8]);
//! assert!(ours.sub(burns).abs().max().into_scalar::<f32>() < 1e-5);
//! ```
//!
//! Set `STRATA_KERNELS=burn` to route every call to burn's ops instead (to compare the two in
//! one build); [`enabled`] says which is in use.

pub mod adam;
pub mod batch_norm;
pub mod conv;
mod encoder;
pub mod gemm;
pub mod int8;
pub mod linear;
pub mod math;
mod memory;
mod ops;
pub mod pool;
mod quantized;
pub mod recurrent;
pub mod sgd;
pub mod transformer;

use std::sync::OnceLock;

use burn::backend::Dispatch;
use burn::backend::ops::{ConvOptions, MaxPoolOptions};
use burn::nn::BatchNorm;
use burn::nn::Linear;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::tensor::{Device, Int, Tensor};

pub use adam::AdamStep;
pub use encoder::{
    DecoderMasks, KeyValueCache, attention, attention_weights, bias_gelu, cross_entropy, dropout,
    dropout_layer, drops, gelu, layer_norm, layer_norm_layer, transformer_decoder,
    transformer_encoder, transformer_encoder_layer, transformer_encoder_step,
};
pub use gemm::drive;
pub use memory::keep_freed_memory;
pub use ops::{AttentionSpec, ConvInput, KernelOps, SelfAttentionSpec};
pub use quantized::{
    BatchNormStats, Int8Input, QuantizedConv2d, QuantizedLinear, linear_or_int8, runs_int8,
};
pub use recurrent::{RecurrentCell, RecurrentSpec};
pub use sgd::SgdStep;

/// Whether Strata's kernels are in use: true unless the environment variable `STRATA_KERNELS`
/// is `burn` (read once).
pub fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("STRATA_KERNELS").map_or(true, |v| v != "burn"))
}

/// Whether `device` runs Strata's kernels: a flex device (with or without autodiff) while
/// [`enabled`]. Where it does not, the ops above are burn's and [`recurrent`] returns `None`.
pub fn runs_kernels(device: &Device) -> bool {
    let inner = device.clone().without_autodiff();
    enabled() && matches!(inner.as_dispatch(), burn::backend::DispatchDevice::Flex(_))
}

/// A 2-D convolution, as `burn::tensor::module::conv2d`: `x` `[N, C, H, W]`, `weight`
/// `[O, C / groups, kh, kw]`, optional `bias` `[O]`. On flex it runs Strata's kernels forward
/// and backward.
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    if !enabled() {
        return burn::tensor::module::conv2d(x, weight, bias, options);
    }
    let out =
        <Dispatch as KernelOps>::kernel_conv2d(x.into_dispatch(), weight.into_dispatch(), options);
    let out = Tensor::<4>::from_dispatch(out);
    match bias {
        Some(bias) => {
            let channels = bias.dims()[0];
            out + bias.reshape([1, channels, 1, 1])
        }
        None => out,
    }
}

/// A linear layer, as `burn::tensor::module::linear`: `x` `[.., d_in]` times `weight`
/// `[d_in, d_out]` plus `bias` `[d_out]`. On flex, with a bias, one product forward and two
/// products and a column sum backward (module [`linear`](mod@crate::linear)), with no
/// intermediate tensor; elsewhere burn's op.
///
/// ```
/// use burn::tensor::{Device, Distribution, Tensor};
///
/// let device = Device::flex();
/// let x = Tensor::<3>::random([2, 5, 8], Distribution::Default, &device);
/// let weight = Tensor::<2>::random([8, 3], Distribution::Default, &device);
/// let bias = Tensor::<1>::random([3], Distribution::Default, &device);
/// let ours = strata_kernels::linear(x.clone(), weight.clone(), Some(bias.clone()));
/// let burns = burn::tensor::module::linear(x, weight, Some(bias));
/// assert_eq!(ours.dims(), [2, 5, 3]);
/// assert!(ours.sub(burns).abs().max().into_scalar::<f32>() < 1e-5);
/// ```
pub fn linear<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Tensor<D> {
    if let Some(b) = &bias
        && runs_kernels(&x.device())
        && let Some(y) = <Dispatch as KernelOps>::kernel_linear(
            x.clone().into_dispatch(),
            weight.clone().into_dispatch(),
            b.clone().into_dispatch(),
        )
    {
        return Tensor::from_dispatch(y);
    }
    burn::tensor::module::linear(x, weight, bias)
}

/// burn's `Linear` layer's forward pass through [`linear`](fn@linear).
pub fn linear_layer<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    linear(x, layer.weight.val(), layer.bias.as_ref().map(|b| b.val()))
}

/// burn's `Conv2d` layer's forward pass through [`conv2d`]: the same padding rules (explicit,
/// valid or same), stride, dilation and groups.
pub fn conv2d_layer(layer: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let padding = padding_pairs(&layer.padding, layer.kernel_size, layer.stride, &x);
    let options =
        ConvOptions::new_with_padding(layer.stride, padding, layer.dilation, layer.groups);
    conv2d(
        x,
        layer.weight.val(),
        layer.bias.as_ref().map(|bias| bias.val()),
        options,
    )
}

/// A burn layer's padding rule for input `x`, as `(begin, end)` per spatial dimension (what
/// burn's layers compute before calling their op).
fn padding_pairs(
    padding: &PaddingConfig2d,
    kernel: [usize; 2],
    stride: [usize; 2],
    x: &Tensor<4>,
) -> [(usize, usize); 2] {
    let [_, _, height, width] = x.dims();
    match *padding {
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
        PaddingConfig2d::Same => [
            same_padding(kernel[0], stride[0], height),
            same_padding(kernel[1], stride[1], width),
        ],
    }
}

/// burn's "same" padding (`burn_nn::PaddingConfig2d::Same`): the output has `ceil(size /
/// stride)` positions, the padding split with the odd one at the end (dilation not counted, as
/// burn does).
fn same_padding(kernel: usize, stride: usize, size: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = if out > 0 {
        ((out - 1) * stride + kernel).saturating_sub(size)
    } else {
        0
    };
    (total / 2, total - total / 2)
}

/// Batch normalisation in training, as `burn::tensor::module::batch_norm_train`: `x` `[N, C,
/// ...]`, `gamma` and `beta` `[C]`; returns the output, the batch mean and the biased batch
/// variance. On flex it runs Strata's fused kernels forward and backward.
pub fn batch_norm_train<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> (Tensor<D>, Tensor<1>, Tensor<1>) {
    batch_norm_train_then(x, gamma, beta, epsilon, false)
}

/// [`batch_norm_train`] followed by a ReLU on the output, fused into the same passes on flex
/// (forward and backward); the statistics are the batch norm's.
pub fn batch_norm_relu_train<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> (Tensor<D>, Tensor<1>, Tensor<1>) {
    batch_norm_train_then(x, gamma, beta, epsilon, true)
}

fn batch_norm_train_then<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
    relu: bool,
) -> (Tensor<D>, Tensor<1>, Tensor<1>) {
    let (x, gamma, beta) = (
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
    );
    let (y, mean, var) = if enabled() {
        <Dispatch as KernelOps>::kernel_batch_norm_train(x, gamma, beta, epsilon, relu)
    } else {
        ops::burn_batch_norm_train::<Dispatch>(x, gamma, beta, epsilon, relu)
    };
    (
        Tensor::from_dispatch(y),
        Tensor::from_dispatch(mean),
        Tensor::from_dispatch(var),
    )
}

/// Batch normalisation with given statistics (inference, on the running mean and variance), as
/// `burn::tensor::module::batch_norm`: `x` `[N, C, ...]`, the rest `[C]`. On flex it is one
/// pass; under autodiff it is burn's op, so gradients still flow.
///
/// # Panics
/// As burn's op: when a per-channel tensor's length is not the input's channel count.
pub fn batch_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    mean: Tensor<1>,
    variance: Tensor<1>,
    epsilon: f64,
) -> Tensor<D> {
    let channels = x.dims().get(1).copied();
    let fits = [&gamma, &beta, &mean, &variance]
        .iter()
        .all(|t| Some(t.dims()[0]) == channels);
    if !enabled() || !fits {
        return burn::tensor::module::batch_norm(x, gamma, beta, mean, variance, epsilon);
    }
    Tensor::from_dispatch(<Dispatch as KernelOps>::kernel_batch_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        mean.into_dispatch(),
        variance.into_dispatch(),
        epsilon,
    ))
}

/// burn's `BatchNorm` layer's forward pass through [`batch_norm_train`] and [`batch_norm`]:
/// batch statistics and burn's running update (the biased variance, the layer's momentum) on
/// an autodiff device while the layer trains, the running statistics otherwise, as the layer's
/// own `forward`.
///
/// # Panics
/// As the layer's `forward`: when the input's second dimension is not the layer's features.
pub fn batch_norm_layer<const D: usize>(layer: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    batch_norm_layer_then(layer, x, false)
}

/// [`batch_norm_layer`] followed by a ReLU, fused on flex in training.
///
/// # Panics
/// As [`batch_norm_layer`].
pub fn batch_norm_relu_layer<const D: usize>(layer: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    batch_norm_layer_then(layer, x, true)
}

fn batch_norm_layer_then<const D: usize>(layer: &BatchNorm, x: Tensor<D>, relu: bool) -> Tensor<D> {
    let [features] = layer.gamma.shape().dims();
    assert!(
        D >= 2 && x.dims()[1] == features,
        "batch norm over {features} features, got an input of shape {:?}",
        x.dims()
    );
    let device = x.device();
    if !(device.is_autodiff() && layer.training.is_enabled()) {
        let y = batch_norm(
            x,
            layer.gamma.val(),
            layer.beta.val(),
            layer.running_mean.value().to_device(&device),
            layer.running_var.value().to_device(&device),
            layer.epsilon,
        );
        return if relu {
            burn::tensor::activation::relu(y)
        } else {
            y
        };
    }
    let (y, mean, variance) =
        batch_norm_train_then(x, layer.gamma.val(), layer.beta.val(), layer.epsilon, relu);
    let m = layer.momentum;
    let blend = |running: Tensor<1>, batch: Tensor<1>| {
        running
            .to_device(&device)
            .mul_scalar(1.0 - m)
            .add(batch.detach().mul_scalar(m))
            .detach()
    };
    layer
        .running_mean
        .update(blend(layer.running_mean.value_sync(), mean));
    layer
        .running_var
        .update(blend(layer.running_var.value_sync(), variance));
    y
}

/// One Adam or AdamW step ([`AdamStep`]) for a parameter, its gradient and its two moments
/// (zeros before the first step): the new parameter and moments. On flex it is one pass,
/// in place where this call holds the only reference to a buffer.
pub fn adam_step<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moment_1: Tensor<D>,
    moment_2: Tensor<D>,
    step: AdamStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let (param, grad, moment_1, moment_2) = (
        param.into_dispatch(),
        grad.into_dispatch(),
        moment_1.into_dispatch(),
        moment_2.into_dispatch(),
    );
    let (p, m, v) = if enabled() {
        <Dispatch as KernelOps>::kernel_adam_step(param, grad, moment_1, moment_2, step)
    } else {
        ops::composed_adam::<Dispatch>(param, grad, moment_1, moment_2, step)
    };
    (
        Tensor::from_dispatch(p),
        Tensor::from_dispatch(m),
        Tensor::from_dispatch(v),
    )
}

/// One SGD step ([`SgdStep`]) for a parameter and its gradient, with the velocity when the
/// step has momentum (`None` without momentum; any tensor of the parameter's shape on the
/// first step, which sets it to the gradient): the new parameter and velocity. On flex it is
/// one pass, in place where this call holds the only reference to a buffer.
pub fn sgd_step<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    velocity: Option<Tensor<D>>,
    step: SgdStep,
) -> (Tensor<D>, Option<Tensor<D>>) {
    let (param, grad) = (param.into_dispatch(), grad.into_dispatch());
    let velocity = velocity.map(Tensor::into_dispatch);
    let (p, v) = match (enabled(), velocity) {
        (true, Some(v)) => {
            let (p, v) = <Dispatch as KernelOps>::kernel_sgd_momentum_step(param, grad, v, step);
            (p, Some(v))
        }
        (true, None) => (
            <Dispatch as KernelOps>::kernel_sgd_step(param, grad, step),
            None,
        ),
        (false, v) => ops::composed_sgd::<Dispatch>(param, grad, v, step),
    };
    (Tensor::from_dispatch(p), v.map(Tensor::from_dispatch))
}

/// 2-D max pooling, as `burn::tensor::module::max_pool2d`. On flex, with symmetric padding and
/// floor mode, it runs Strata's kernels forward and backward; otherwise burn's op.
pub fn max_pool2d(x: Tensor<4>, options: MaxPoolOptions<2>) -> Tensor<4> {
    let symmetric = options.padding.iter().all(|(b, e)| b == e);
    if !enabled() || !symmetric || options.ceil_mode {
        return burn::tensor::module::max_pool2d(x, options);
    }
    Tensor::from_dispatch(<Dispatch as KernelOps>::kernel_max_pool2d(
        x.into_dispatch(),
        options,
    ))
}

/// burn's `MaxPool2d` layer's forward pass through [`max_pool2d`].
pub fn max_pool2d_layer(layer: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let padding = padding_pairs(&layer.padding, layer.kernel_size, layer.stride, &x);
    let options = MaxPoolOptions {
        kernel_size: layer.kernel_size,
        stride: layer.stride,
        padding,
        dilation: layer.dilation,
        ceil_mode: layer.ceil_mode,
    };
    max_pool2d(x, options)
}

/// What [`recurrent`] returns: every step's output and the final state.
#[derive(Debug, Clone)]
pub struct RecurrentOutput {
    /// `[batch, time, d_hidden]`: `h_t m_t` at each step (zeros at padded steps).
    pub output: Tensor<3>,
    /// `[batch, d_hidden]`: the hidden state after the last real step.
    pub hidden: Tensor<2>,
    /// `[batch, d_hidden]`: the LSTM's cell after the last real step; `None` for other cells.
    pub cell: Option<Tensor<2>>,
}

/// What [`recurrent`] reads as each step's input.
// Made once per call and taken apart at once: the size of the larger variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum RecurrentInput {
    /// Features `[batch, time, d_input]`, multiplied by `w_ih`.
    Features(Tensor<3>),
    /// The input products `x W_ih^T` taken already (without the bias), as the rows of a table
    /// `[rows, gates * H]`, and the row each step reads, `tokens` `[batch, time]`: a caller
    /// that embeds tokens projects the embedding table once (`strata_layers::Recurrent` does)
    /// rather than multiplying every step's input. The kernel reads the rows in place, and
    /// its backward pass sums their gradients per row into the table's.
    Rows {
        /// `[rows, gates * H]`.
        table: Tensor<2>,
        /// `[batch, time]`, each below `rows`.
        tokens: Tensor<2, Int>,
    },
}

/// One direction of a recurrent layer over a whole sequence ([`recurrent`](mod@recurrent)),
/// in PyTorch's fused layout: `input` features `[batch, time, d_input]` (or table rows, see
/// [`RecurrentInput`]), `w_ih` `[gates * H, d_input]`,
/// `w_hh` `[gates * H, H]`, optional biases `[gates * H]`, `h0` (and the LSTM's `c0`)
/// `[batch, H]`, optional `mask` `[batch, time]` (1 for a real step, 0 for padding: the output
/// is zero there and the state carried unchanged). On flex one kernel runs the sequence
/// forward and backward; elsewhere, or when the shapes disagree, this returns `None` and the
/// caller composes burn's ops step by step (as `strata_layers::Recurrent` does).
///
/// `w_ih` is `None` for [`RecurrentInput::Rows`] and required for features; a token past the
/// table also gives `None`. `spec.projected` is set from `input`.
///
/// ```
/// use burn::tensor::{Device, Distribution, Tensor};
/// use strata_kernels::{RecurrentCell, RecurrentInput, RecurrentSpec};
/// let device = Device::flex();
/// let (batch, time, d_in, hidden) = (2, 5, 3, 4);
/// let x = Tensor::<3>::random([batch, time, d_in], Distribution::Default, &device);
/// let w_ih = Tensor::<2>::random([4 * hidden, d_in], Distribution::Default, &device);
/// let w_hh = Tensor::<2>::random([4 * hidden, hidden], Distribution::Default, &device);
/// let h0 = Tensor::<2>::zeros([batch, hidden], &device);
/// let spec = RecurrentSpec { cell: RecurrentCell::Lstm, reverse: false, projected: false };
/// let input = RecurrentInput::Features(x);
/// let out = strata_kernels::recurrent(
///     spec, input, Some(w_ih), w_hh, None, None, h0.clone(), Some(h0), None,
/// )
/// .expect("flex runs the kernel");
/// assert_eq!(out.output.dims(), [batch, time, hidden]);
/// assert!(out.cell.is_some());
/// ```
#[allow(clippy::too_many_arguments)]
pub fn recurrent(
    spec: RecurrentSpec,
    input: RecurrentInput,
    w_ih: Option<Tensor<2>>,
    w_hh: Tensor<2>,
    b_ih: Option<Tensor<1>>,
    b_hh: Option<Tensor<1>>,
    h0: Tensor<2>,
    c0: Option<Tensor<2>>,
    mask: Option<Tensor<2>>,
) -> Option<RecurrentOutput> {
    let device = h0.device();
    let projected = matches!(input, RecurrentInput::Rows { .. });
    if !runs_kernels(&device) || w_ih.is_some() == projected {
        return None;
    }
    let (x, tokens, [batch, time]) = match input {
        RecurrentInput::Features(x) => {
            let [batch, time, _] = x.dims();
            let unread = Tensor::<2>::zeros([0, 0], &device);
            (x.into_dispatch(), unread, [batch, time])
        }
        RecurrentInput::Rows { table, tokens } => {
            let dims = tokens.dims();
            (table.into_dispatch(), tokens.float(), dims)
        }
    };
    let spec = RecurrentSpec { projected, ..spec };
    let [gates, hidden] = w_hh.dims();
    let w_ih = w_ih.unwrap_or_else(|| Tensor::<2>::zeros([gates, 0], &device));
    let zeros = || Tensor::<1>::zeros([gates], &device);
    let b_ih = b_ih.unwrap_or_else(zeros);
    let b_hh = b_hh.unwrap_or_else(zeros);
    let c0 = c0.unwrap_or_else(|| Tensor::<2>::zeros([batch, hidden], &device));
    let masked = mask.is_some();
    let mask = mask.unwrap_or_else(|| Tensor::<2>::ones([batch, time], &device));
    let packed = <Dispatch as KernelOps>::kernel_recurrent(
        x,
        tokens.into_dispatch(),
        w_ih.into_dispatch(),
        w_hh.into_dispatch(),
        b_ih.into_dispatch(),
        b_hh.into_dispatch(),
        h0.into_dispatch(),
        c0.into_dispatch(),
        mask.into_dispatch(),
        masked,
        spec,
    )?;
    // Flat: the outputs `[batch, time, hidden]`, then the final hidden state and cell, each a
    // contiguous range (so that the outputs go on to the next layer without a copy).
    let packed = Tensor::<1>::from_dispatch(packed);
    let outputs = batch * time * hidden;
    let state = |k: usize| {
        let at = outputs + k * batch * hidden;
        packed
            .clone()
            .narrow(0, at, batch * hidden)
            .reshape([batch, hidden])
    };
    Some(RecurrentOutput {
        hidden: state(0),
        cell: (spec.cell == RecurrentCell::Lstm).then(|| state(1)),
        output: packed.narrow(0, 0, outputs).reshape([batch, time, hidden]),
    })
}
