//! The kernels as a burn backend extension: flex runs Strata's own code, the other backends
//! burn's composed ops, and autodiff records Strata's backward pass.
//!
//! ndarray is deprecated in burn 0.22 but still one of its backends (and Strata's); the
//! extension macro names it, so this module allows the deprecation.
#![allow(deprecated)]

use burn::backend::NdArray;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::{ConvOptions, MaxPoolOptions, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::{DType, FloatDType, IntDType, Scalar, Shape, TensorData};

use crate::adam::{self, AdamStep};
use crate::batch_norm;
use crate::conv::{self, ConvGeometry};
use crate::pool::{self, PoolGeometry};
use crate::recurrent::{self, RecurrentSpec};
use crate::sgd::{self, SgdStep};
use crate::transformer::{self, AttentionGeometry, DropoutMask};

/// The settings of [`KernelOps::kernel_attention_weights`]: the scores' scale, the score of a
/// masked position, and the dropout on the weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionSpec {
    /// The scores' factor before the softmax (`1 / sqrt(d_k)`).
    pub scale: f32,
    /// The score a masked position gets (burn's `min_float`).
    pub fill: f32,
    /// Dropout probability on the weights (0: none).
    pub prob: f64,
    /// The dropout mask's seed.
    pub seed: u64,
}

/// The settings of [`KernelOps::kernel_self_attention`]: the heads, and the weights' settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelfAttentionSpec {
    /// Heads (they divide the model width).
    pub heads: usize,
    /// Scale, mask fill and dropout of the weights.
    pub weights: AttentionSpec,
}

impl AttentionSpec {
    fn dropout(&self) -> Option<DropoutMask> {
        (self.prob > 0.0).then(|| DropoutMask::new(self.prob, self.seed))
    }
}

/// Which input of a convolution a gradient is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvInput {
    /// The input images.
    X,
    /// The kernel weights.
    Weight,
}

/// Operations Strata computes with its own kernels where the backend is flex.
///
/// Every method's default body is burn's own op, so a backend without a kernel of ours
/// (ndarray, wgpu) computes the same thing the way burn does.
#[backend_extension(Flex, NdArray, Cube: cfg(feature = "wgpu"), Autodiff)]
pub trait KernelOps: Backend {
    /// A 2-D convolution without bias: `x` `[N, C, H, W]`, `weight` `[O, C / groups, kh, kw]`.
    fn kernel_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, None, options)
    }

    /// A gradient of [`KernelOps::kernel_conv2d`]: for `x` or for `weight`, given the output's
    /// gradient.
    fn kernel_conv2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
        wrt: ConvInput,
    ) -> FloatTensor<Self> {
        burn_conv2d_backward::<Self>(x, weight, output_grad, options, wrt)
    }

    /// Batch normalisation in training over `x` `[N, C, ...]`, then a ReLU when `relu`: the
    /// output, the batch mean and the biased batch variance (both `[C]`).
    fn kernel_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        burn_batch_norm_train::<Self>(x, gamma, beta, epsilon, relu)
    }

    /// Batch normalisation with given statistics (inference: the running mean and variance).
    fn kernel_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        Self::batch_norm(x, gamma, beta, mean, variance, epsilon)
    }

    /// The gradients of [`KernelOps::kernel_batch_norm_train`] for `x`, `gamma` and `beta`
    /// (`beta` is read only when `relu`, to find where the ReLU passed the gradient).
    #[allow(clippy::too_many_arguments)]
    fn kernel_batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        burn_batch_norm_train_backward::<Self>(
            x,
            gamma,
            beta,
            mean,
            variance,
            output_grad,
            epsilon,
            relu,
        )
    }

    /// 2-D max pooling (symmetric padding, floor mode) of `x` `[N, C, H, W]`.
    fn kernel_max_pool2d(x: FloatTensor<Self>, options: MaxPoolOptions<2>) -> FloatTensor<Self> {
        let [padding, _] = padding_sides(&options);
        Self::max_pool2d(
            x,
            options.kernel_size,
            options.stride,
            padding,
            options.dilation,
            false,
        )
    }

    /// [`KernelOps::kernel_max_pool2d`] and where each maximum is, as a float tensor of the
    /// output's shape (the backend's own encoding, read only by
    /// [`KernelOps::kernel_max_pool2d_backward`]).
    fn kernel_max_pool2d_indexed(
        x: FloatTensor<Self>,
        options: MaxPoolOptions<2>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        burn_max_pool2d_indexed::<Self>(x, options)
    }

    /// The input's gradient of max pooling, given the forward pass's indices.
    fn kernel_max_pool2d_backward(
        x: FloatTensor<Self>,
        indices: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: MaxPoolOptions<2>,
    ) -> FloatTensor<Self> {
        burn_max_pool2d_backward::<Self>(x, indices, output_grad, options)
    }

    /// One Adam or AdamW step ([`crate::adam`]): the new parameter and moments.
    fn kernel_adam_step(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        composed_adam::<Self>(param, grad, moment_1, moment_2, step)
    }

    /// One SGD step without momentum ([`crate::sgd`]): the new parameter.
    fn kernel_sgd_step(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        step: SgdStep,
    ) -> FloatTensor<Self> {
        composed_sgd::<Self>(param, grad, None, step).0
    }

    /// One SGD step with momentum ([`crate::sgd`]): the new parameter and velocity.
    fn kernel_sgd_momentum_step(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        velocity: FloatTensor<Self>,
        step: SgdStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (param, velocity) = composed_sgd::<Self>(param, grad, Some(velocity), step);
        (param, velocity.expect("a velocity in, a velocity out"))
    }

    /// One direction of a recurrent layer over a whole sequence ([`crate::recurrent`]): `x`
    /// `[B, T, I]`, `w_ih` `[G, I]`, `w_hh` `[G, H]`, `b_ih` and `b_hh` `[G]`, `h0` and `c0`
    /// `[B, H]`, `mask` `[B, T]` (read only when `masked`). With `spec.projected`, `x` is
    /// instead a table of input products `[rows, G]` whose rows `tokens` (`[B, T]`, row
    /// indices as floats; read only then) pick, and `w_ih` is `[G, 0]`. Returns the packed
    /// output, flat
    /// (the outputs `[B, T, H]`, then the final hidden state `[B, H]` and, for the LSTM, the
    /// final cell), or `None` where this backend has no such kernel (the caller then composes
    /// burn's ops).
    #[allow(clippy::too_many_arguments)]
    fn kernel_recurrent(
        x: FloatTensor<Self>,
        tokens: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        b_ih: FloatTensor<Self>,
        b_hh: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        masked: bool,
        spec: RecurrentSpec,
    ) -> Option<FloatTensor<Self>> {
        let _ = (
            x, tokens, w_ih, w_hh, b_ih, b_hh, h0, c0, mask, masked, spec,
        );
        None
    }

    /// [`KernelOps::kernel_recurrent`] that also returns the workspace its backward pass reads.
    #[allow(clippy::too_many_arguments)]
    fn kernel_recurrent_train(
        x: FloatTensor<Self>,
        tokens: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        b_ih: FloatTensor<Self>,
        b_hh: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        masked: bool,
        spec: RecurrentSpec,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        let _ = (
            x, tokens, w_ih, w_hh, b_ih, b_hh, h0, c0, mask, masked, spec,
        );
        None
    }

    /// The gradients of [`KernelOps::kernel_recurrent_train`]'s packed output for `x` (the
    /// table's, when `spec.projected`), `w_ih`, `w_hh`, `b_ih`, `b_hh`, `h0` and `c0`, from its
    /// workspace. Only called after `kernel_recurrent_train` returned a result on this backend.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn kernel_recurrent_backward(
        x: FloatTensor<Self>,
        tokens: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        b_ih: FloatTensor<Self>,
        b_hh: FloatTensor<Self>,
        workspace: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        masked: bool,
        output_grad: FloatTensor<Self>,
        spec: RecurrentSpec,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    ) {
        let _ = (
            x,
            tokens,
            w_ih,
            w_hh,
            b_ih,
            b_hh,
            workspace,
            mask,
            masked,
            output_grad,
            spec,
        );
        unreachable!("no recurrent kernel on this backend, so no recurrent backward pass")
    }

    /// Dropout of `x` by [`DropoutMask::new(prob, seed)`](DropoutMask::new) (also its own
    /// backward pass, applied to the output's gradient); `None` where this backend has no such
    /// kernel.
    fn kernel_dropout(x: FloatTensor<Self>, prob: f64, seed: u64) -> Option<FloatTensor<Self>> {
        let _ = (x, prob, seed);
        None
    }

    /// Layer norm over the last dimension of `x`: the output and, per row, the mean and the
    /// reciprocal standard deviation; `None` where this backend has no such kernel.
    #[allow(clippy::type_complexity)]
    fn kernel_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>)> {
        let _ = (x, gamma, beta, epsilon);
        None
    }

    /// The gradients of [`KernelOps::kernel_layer_norm`] for `x`, `gamma` and `beta`. Only
    /// called after `kernel_layer_norm` returned a result on this backend.
    fn kernel_layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        rstd: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let _ = (x, gamma, mean, rstd, output_grad);
        unreachable!("no layer-norm kernel on this backend, so no layer-norm backward pass")
    }

    /// The exact GELU; `None` where this backend has no such kernel.
    fn kernel_gelu(x: FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        let _ = x;
        None
    }

    /// The gradient of [`KernelOps::kernel_gelu`] for `x`.
    fn kernel_gelu_backward(
        x: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::gelu_backward(x, output_grad)
    }

    /// `gelu(x + bias)`, `bias` `[C]` added along the last dimension of `x` `[.., C]`; `None`
    /// where this backend has no such kernel.
    fn kernel_bias_gelu(
        x: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> Option<FloatTensor<Self>> {
        let _ = (x, bias);
        None
    }

    /// The gradients of [`KernelOps::kernel_bias_gelu`] for `x` and `bias`. Only called after
    /// `kernel_bias_gelu` returned a result on this backend.
    fn kernel_bias_gelu_backward(
        x: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let _ = (x, bias, output_grad);
        unreachable!("no bias-GELU kernel on this backend, so no backward pass")
    }

    /// Attention weights from scores `[B, heads, Tq, Tk]` ([`crate::transformer`]): scaled,
    /// masked where `hidden` `[B, Tq, Tk]` is nonzero (read only when `masked`), softmax over
    /// the keys, then dropout. Returns the weights and the probabilities before dropout;
    /// `None` where this backend has no such kernel.
    fn kernel_attention_weights(
        scores: FloatTensor<Self>,
        hidden: FloatTensor<Self>,
        masked: bool,
        spec: AttentionSpec,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        let _ = (scores, hidden, masked, spec);
        None
    }

    /// The scores' gradient of [`KernelOps::kernel_attention_weights`], from its probabilities.
    /// Only called after `kernel_attention_weights` returned a result on this backend.
    fn kernel_attention_weights_backward(
        probabilities: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        hidden: FloatTensor<Self>,
        masked: bool,
        spec: AttentionSpec,
    ) -> FloatTensor<Self> {
        let _ = (probabilities, output_grad, hidden, masked, spec);
        unreachable!("no attention kernel on this backend, so no attention backward pass")
    }

    /// Attention from the projections `q` `[B, Tq, heads * d_head]`, `k` and `v` `[B, Tk,
    /// heads * d_head]` ([`crate::transformer::self_attention`]), masked where `hidden` `[B, Tq,
    /// Tk]` is nonzero (read only when `masked`): the context `[B, Tq, heads * d_head]`, before
    /// the output projection; `None` where this backend has no such kernel.
    fn kernel_self_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        hidden: FloatTensor<Self>,
        masked: bool,
        spec: SelfAttentionSpec,
    ) -> Option<FloatTensor<Self>> {
        let _ = (q, k, v, hidden, masked, spec);
        None
    }

    /// [`KernelOps::kernel_self_attention`] that also returns each score row's maximum and
    /// inverse sum of exponentials, `[B, heads, T, 2]`, from which the backward pass recomputes
    /// the probabilities.
    fn kernel_self_attention_train(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        hidden: FloatTensor<Self>,
        masked: bool,
        spec: SelfAttentionSpec,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        let _ = (q, k, v, hidden, masked, spec);
        None
    }

    /// The gradients of [`KernelOps::kernel_self_attention_train`] for `q`, `k` and `v`. Only
    /// called after `kernel_self_attention_train` returned a result on this backend.
    #[allow(clippy::too_many_arguments)]
    fn kernel_self_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        hidden: FloatTensor<Self>,
        masked: bool,
        output_grad: FloatTensor<Self>,
        spec: SelfAttentionSpec,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let _ = (q, k, v, stats, hidden, masked, output_grad, spec);
        unreachable!("no self-attention kernel on this backend, so no backward pass")
    }

    /// The mean softmax cross-entropy of `logits` `[N, C]` against `targets` `[N]` (class
    /// indices as floats), as a `[1]` tensor, and each row's logsumexp; `None` where this
    /// backend has no such kernel or a target is not a class index.
    fn kernel_cross_entropy(
        logits: FloatTensor<Self>,
        targets: FloatTensor<Self>,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        let _ = (logits, targets);
        None
    }

    /// The logits' gradient of [`KernelOps::kernel_cross_entropy`], given the loss's gradient
    /// (`[1]`). Only called after `kernel_cross_entropy` returned a result on this backend.
    fn kernel_cross_entropy_backward(
        logits: FloatTensor<Self>,
        targets: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let _ = (logits, targets, lse, output_grad);
        unreachable!("no cross-entropy kernel on this backend, so no cross-entropy backward pass")
    }

    /// A linear layer as burn's `linear`: `x` `[.., d_in]` times `weight` `[d_in, d_out]` plus
    /// `bias` `[d_out]` (module [`linear`](mod@crate::linear)); `None` where this backend has no
    /// such kernel.
    fn kernel_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> Option<FloatTensor<Self>> {
        let _ = (x, weight, bias);
        None
    }

    /// The input's gradient of [`KernelOps::kernel_linear`], shaped as `x`. Only called after
    /// `kernel_linear` returned a result on this backend.
    fn kernel_linear_input_grad(
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        x: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let _ = (weight, output_grad, x);
        unreachable!("no linear kernel on this backend, so no linear backward pass")
    }

    /// The weight's and the bias's gradients of [`KernelOps::kernel_linear`]. Only called after
    /// `kernel_linear` returned a result on this backend.
    fn kernel_linear_param_grads(
        x: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let _ = (x, output_grad);
        unreachable!("no linear kernel on this backend, so no linear backward pass")
    }
}

impl KernelOps for NdArray {}

#[cfg(feature = "wgpu")]
impl KernelOps for burn::backend::Cube {}

/// The options' padding at the beginning and at the end of each dimension (the kernels'
/// wrapper calls them only when the two agree).
fn padding_sides(options: &MaxPoolOptions<2>) -> [[usize; 2]; 2] {
    let begin = options.padding.map(|(b, _)| b);
    let end = options.padding.map(|(_, e)| e);
    [begin, end]
}

fn pool_geometry(x: &FlexTensor, options: &MaxPoolOptions<2>) -> Option<PoolGeometry> {
    let shape = x.shape();
    let [begin, end] = padding_sides(options);
    if x.dtype() != DType::F32 || shape.num_dims() != 4 || begin != end || options.ceil_mode {
        return None;
    }
    // Indices travel as f32: exact below 2^24 per plane.
    if shape[2] * shape[3] >= 1 << 24 {
        return None;
    }
    Some(PoolGeometry {
        planes: shape[0] * shape[1],
        input: [shape[2], shape[3]],
        kernel: options.kernel_size,
        stride: options.stride,
        padding: begin,
        dilation: options.dilation,
    })
}

/// The output shape `[N, C, Ho, Wo]` of pooling `x` with `g`.
fn pooled_shape(x: &FlexTensor, g: &PoolGeometry) -> Shape {
    let (s, [ho, wo]) = (x.shape(), g.output());
    Shape::new([s[0], s[1], ho, wo])
}

/// burn's convolution gradient for `x` or the weight.
fn burn_conv2d_backward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: ConvOptions<2>,
    wrt: ConvInput,
) -> FloatTensor<B> {
    match wrt {
        ConvInput::X => B::conv2d_x_backward(x, weight, output_grad, options),
        ConvInput::Weight => B::conv2d_weight_backward(x, weight, output_grad, options),
    }
}

/// burn's batch norm in training, then burn's ReLU when `relu`: the output, the batch mean
/// and the biased batch variance.
pub(crate) fn burn_batch_norm_train<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f64,
    relu: bool,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let out = B::batch_norm_train(x, gamma, beta, epsilon);
    let y = if relu {
        B::relu(out.output)
    } else {
        out.output
    };
    (y, out.mean, out.variance)
}

/// The gradients of [`burn_batch_norm_train`] by burn's ops.
#[allow(clippy::too_many_arguments)]
fn burn_batch_norm_train_backward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    mean: FloatTensor<B>,
    variance: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    epsilon: f64,
    relu: bool,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let output_grad = if relu {
        // The forward pass's own op again, so the mask is the one it applied.
        let y = B::batch_norm_train(x.clone(), gamma.clone(), beta, epsilon).output;
        B::relu_backward(y, output_grad)
    } else {
        output_grad
    };
    let grads = B::batch_norm_train_backward(x, gamma, mean, variance, epsilon, output_grad);
    (grads.x_grad, grads.gamma_grad, grads.beta_grad)
}

/// burn's max pooling with indices, the indices as f32 (the encoding the kernels' backward
/// pass reads back).
fn burn_max_pool2d_indexed<B: Backend>(
    x: FloatTensor<B>,
    options: MaxPoolOptions<2>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let [padding, _] = padding_sides(&options);
    let out = B::max_pool2d_with_indices(
        x,
        options.kernel_size,
        options.stride,
        padding,
        options.dilation,
        options.ceil_mode,
        IntDType::I32,
    );
    (out.output, B::int_into_float(out.indices, FloatDType::F32))
}

/// burn's max pooling backward pass from [`burn_max_pool2d_indexed`]'s indices.
fn burn_max_pool2d_backward<B: Backend>(
    x: FloatTensor<B>,
    indices: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: MaxPoolOptions<2>,
) -> FloatTensor<B> {
    let [padding, _] = padding_sides(&options);
    let indices = B::float_into_int(indices, IntDType::I32);
    B::max_pool2d_with_indices_backward(
        x,
        options.kernel_size,
        options.stride,
        padding,
        options.dilation,
        options.ceil_mode,
        output_grad,
        indices,
    )
    .x_grad
}

/// burn's composed ops for one Adam step (the backends without a kernel of ours).
pub(crate) fn composed_adam<B: Backend>(
    param: FloatTensor<B>,
    grad: FloatTensor<B>,
    moment_1: FloatTensor<B>,
    moment_2: FloatTensor<B>,
    step: AdamStep,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let scalar = |v: f64| Scalar::Float(v);
    let (c, e) = step.corrections();
    let (b1, b2) = (step.beta_1 as f64, step.beta_2 as f64);
    let grad = if !step.decoupled && step.weight_decay != 0.0 {
        let decay = B::float_mul_scalar(param.clone(), scalar(step.weight_decay as f64));
        B::float_add(grad, decay)
    } else {
        grad
    };
    let m = B::float_add(
        B::float_mul_scalar(moment_1, scalar(b1)),
        B::float_mul_scalar(grad.clone(), scalar(1.0 - b1)),
    );
    let v = B::float_add(
        B::float_mul_scalar(moment_2, scalar(b2)),
        B::float_mul_scalar(B::float_mul(grad.clone(), grad), scalar(1.0 - b2)),
    );
    let update = B::float_div(
        B::float_mul_scalar(m.clone(), scalar(c as f64)),
        B::float_add_scalar(B::float_sqrt(v.clone()), scalar(e as f64)),
    );
    let param = if step.decoupled && step.weight_decay != 0.0 {
        B::float_mul_scalar(param, scalar(1.0 - step.lr * step.weight_decay as f64))
    } else {
        param
    };
    let param = B::float_sub(param, B::float_mul_scalar(update, scalar(step.lr)));
    (param, m, v)
}

/// burn's composed ops for one SGD step, as burn's `Sgd` makes it: the new parameter and, when
/// a velocity comes in, the new velocity.
pub(crate) fn composed_sgd<B: Backend>(
    param: FloatTensor<B>,
    grad: FloatTensor<B>,
    velocity: Option<FloatTensor<B>>,
    step: SgdStep,
) -> (FloatTensor<B>, Option<FloatTensor<B>>) {
    let scalar = |v: f64| Scalar::Float(v);
    let grad = if step.weight_decay != 0.0 {
        let decay = B::float_mul_scalar(param.clone(), scalar(step.weight_decay as f64));
        B::float_add(decay, grad)
    } else {
        grad
    };
    let (update, velocity) = match velocity {
        Some(v) => {
            let v = if step.first {
                grad.clone()
            } else {
                B::float_add(
                    B::float_mul_scalar(grad.clone(), scalar(1.0 - step.dampening)),
                    B::float_mul_scalar(v, scalar(step.momentum as f64)),
                )
            };
            let update = if step.nesterov {
                B::float_add(
                    B::float_mul_scalar(v.clone(), scalar(step.momentum as f64)),
                    grad,
                )
            } else {
                v.clone()
            };
            (update, Some(v))
        }
        None => (grad, None),
    };
    let param = B::float_sub(param, B::float_mul_scalar(update, scalar(step.lr)));
    (param, velocity)
}

/// The geometry of a convolution of `x` by `weight`, when both are f32 (the kernels' type).
fn geometry(x: &FlexTensor, weight: &FlexTensor, options: &ConvOptions<2>) -> Option<ConvGeometry> {
    if x.dtype() != DType::F32 || weight.dtype() != DType::F32 {
        return None;
    }
    let xs = x.shape();
    let ws = weight.shape();
    if xs.num_dims() != 4 || ws.num_dims() != 4 {
        return None;
    }
    Some(ConvGeometry {
        batch: xs[0],
        channels_in: xs[1],
        input: [xs[2], xs[3]],
        channels_out: ws[0],
        kernel: [ws[2], ws[3]],
        stride: options.stride,
        padding: options.padding,
        dilation: options.dilation,
        groups: options.groups,
    })
}

/// The tensor's elements in row-major order, copied only when its layout needs it.
fn contiguous(tensor: FlexTensor) -> FlexTensor {
    if tensor.as_slice::<f32>().is_some() {
        tensor
    } else {
        tensor.to_contiguous()
    }
}

/// A tensor whose storage is exactly its elements in order (a view is copied out), so that
/// `storage_mut` writes this tensor's elements and, copying on write, no other tensor's.
fn owned(tensor: FlexTensor) -> FlexTensor {
    let whole = tensor
        .as_slice::<f32>()
        .is_some_and(|view| view.len() == tensor.storage::<f32>().len());
    if whole {
        // `storage_mut` copies the buffer first if another tensor shares it.
        tensor
    } else {
        FlexTensor::from_data(tensor.into_data())
    }
}

fn slice(tensor: &FlexTensor) -> &[f32] {
    tensor
        .as_slice::<f32>()
        .expect("a contiguous f32 tensor (made so by `contiguous`)")
}

/// A contiguous f32 tensor of `shape` holding `values`.
fn shaped(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

impl KernelOps for Flex {
    fn kernel_conv2d(x: FlexTensor, weight: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
        let Some(g) = geometry(&x, &weight, &options) else {
            return Self::conv2d(x, weight, None, options);
        };
        let (x, weight) = (contiguous(x), contiguous(weight));
        let [ho, wo] = g.output();
        let out = conv::forward(slice(&x), slice(&weight), &g);
        shaped(out, Shape::new([g.batch, g.channels_out, ho, wo]))
    }

    fn kernel_conv2d_backward(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
        wrt: ConvInput,
    ) -> FlexTensor {
        let Some(g) = geometry(&x, &weight, &options) else {
            return burn_conv2d_backward::<Self>(x, weight, output_grad, options, wrt);
        };
        let dy = contiguous(output_grad);
        match wrt {
            ConvInput::X => {
                let weight = contiguous(weight);
                let dx = conv::backward_input(slice(&weight), slice(&dy), &g);
                shaped(
                    dx,
                    Shape::new([g.batch, g.channels_in, g.input[0], g.input[1]]),
                )
            }
            ConvInput::Weight => {
                let x = contiguous(x);
                shaped(
                    conv::backward_weight(slice(&x), slice(&dy), &g),
                    weight.shape(),
                )
            }
        }
    }

    fn kernel_batch_norm_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
        relu: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let Some(p) = planes(&x, &[&gamma, &beta]) else {
            return burn_batch_norm_train::<Self>(x, gamma, beta, epsilon, relu);
        };
        let shape = x.shape();
        let (x, gamma, beta) = (contiguous(x), contiguous(gamma), contiguous(beta));
        let (y, mean, var) =
            batch_norm::forward(slice(&x), slice(&gamma), slice(&beta), p, epsilon, relu);
        let y = shaped(y, shape);
        (y, vector(mean), vector(var))
    }

    fn kernel_max_pool2d(x: FlexTensor, options: MaxPoolOptions<2>) -> FlexTensor {
        let Some(g) = pool_geometry(&x, &options) else {
            return burn_max_pool2d_indexed::<Self>(x, options).0;
        };
        let shape = pooled_shape(&x, &g);
        let x = contiguous(x);
        shaped(pool::values(slice(&x), &g), shape)
    }

    fn kernel_max_pool2d_indexed(
        x: FlexTensor,
        options: MaxPoolOptions<2>,
    ) -> (FlexTensor, FlexTensor) {
        let Some(g) = pool_geometry(&x, &options) else {
            return burn_max_pool2d_indexed::<Self>(x, options);
        };
        let shape = pooled_shape(&x, &g);
        let x = contiguous(x);
        let (y, idx) = pool::forward(slice(&x), &g);
        (shaped(y, shape.clone()), shaped(idx, shape))
    }

    fn kernel_max_pool2d_backward(
        x: FlexTensor,
        indices: FlexTensor,
        output_grad: FlexTensor,
        options: MaxPoolOptions<2>,
    ) -> FlexTensor {
        let Some(g) = pool_geometry(&x, &options) else {
            return burn_max_pool2d_backward::<Self>(x, indices, output_grad, options);
        };
        let (idx, dy) = (contiguous(indices), contiguous(output_grad));
        shaped(pool::backward(slice(&dy), slice(&idx), &g), x.shape())
    }

    fn kernel_adam_step(
        param: FlexTensor,
        grad: FlexTensor,
        moment_1: FlexTensor,
        moment_2: FlexTensor,
        step: AdamStep,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let same = [&grad, &moment_1, &moment_2]
            .iter()
            .all(|t| t.dtype() == DType::F32 && t.shape() == param.shape());
        if param.dtype() != DType::F32 || !same {
            return composed_adam::<Self>(param, grad, moment_1, moment_2, step);
        }
        let grad = contiguous(grad);
        // In place where this step holds the only reference, else one copy.
        let [mut param, mut m, mut v] = [param, moment_1, moment_2].map(owned);
        adam::step(
            param.storage_mut::<f32>(),
            slice(&grad),
            m.storage_mut::<f32>(),
            v.storage_mut::<f32>(),
            &step,
        );
        (param, m, v)
    }

    fn kernel_batch_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        variance: FlexTensor,
        epsilon: f64,
    ) -> FlexTensor {
        let Some(p) = planes(&x, &[&gamma, &beta, &mean, &variance]) else {
            return Self::batch_norm(x, gamma, beta, mean, variance, epsilon);
        };
        let shape = x.shape();
        let [gamma, beta, mean, variance] = [gamma, beta, mean, variance].map(contiguous);
        // In place where this op holds the only reference to the input, else one copy.
        let mut y = owned(x);
        batch_norm::inference(
            y.storage_mut::<f32>(),
            slice(&gamma),
            slice(&beta),
            slice(&mean),
            slice(&variance),
            p,
            epsilon,
        );
        debug_assert_eq!(y.shape(), shape);
        y
    }

    fn kernel_sgd_step(param: FlexTensor, grad: FlexTensor, step: SgdStep) -> FlexTensor {
        if param.dtype() != DType::F32
            || grad.dtype() != DType::F32
            || grad.shape() != param.shape()
        {
            return composed_sgd::<Self>(param, grad, None, step).0;
        }
        let grad = contiguous(grad);
        let mut param = owned(param);
        sgd::step(param.storage_mut::<f32>(), slice(&grad), &step);
        param
    }

    fn kernel_sgd_momentum_step(
        param: FlexTensor,
        grad: FlexTensor,
        velocity: FlexTensor,
        step: SgdStep,
    ) -> (FlexTensor, FlexTensor) {
        let same = [&grad, &velocity]
            .iter()
            .all(|t| t.dtype() == DType::F32 && t.shape() == param.shape());
        if param.dtype() != DType::F32 || !same {
            let (param, velocity) = composed_sgd::<Self>(param, grad, Some(velocity), step);
            return (param, velocity.expect("a velocity in, a velocity out"));
        }
        let grad = contiguous(grad);
        let [mut param, mut velocity] = [param, velocity].map(owned);
        sgd::step_with_momentum(
            param.storage_mut::<f32>(),
            slice(&grad),
            velocity.storage_mut::<f32>(),
            &step,
        );
        (param, velocity)
    }

    fn kernel_batch_norm_train_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        variance: FlexTensor,
        output_grad: FlexTensor,
        epsilon: f64,
        relu: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let fits = planes(&x, &[&gamma, &beta, &mean, &variance])
            .filter(|_| output_grad.dtype() == DType::F32 && output_grad.shape() == x.shape());
        let Some(p) = fits else {
            return burn_batch_norm_train_backward::<Self>(
                x,
                gamma,
                beta,
                mean,
                variance,
                output_grad,
                epsilon,
                relu,
            );
        };
        let shape = x.shape();
        let [x, gamma, beta, mean, variance, dy] =
            [x, gamma, beta, mean, variance, output_grad].map(contiguous);
        let (dx, dgamma, dbeta) = batch_norm::backward(
            slice(&x),
            slice(&gamma),
            slice(&mean),
            slice(&variance),
            slice(&dy),
            p,
            epsilon,
            relu.then(|| slice(&beta)),
        );
        let dx = shaped(dx, shape);
        (dx, vector(dgamma), vector(dbeta))
    }

    fn kernel_recurrent(
        x: FlexTensor,
        tokens: FlexTensor,
        w_ih: FlexTensor,
        w_hh: FlexTensor,
        b_ih: FlexTensor,
        b_hh: FlexTensor,
        h0: FlexTensor,
        c0: FlexTensor,
        mask: FlexTensor,
        masked: bool,
        spec: RecurrentSpec,
    ) -> Option<FlexTensor> {
        let inputs = [x, w_ih, w_hh, b_ih, b_hh, h0, c0];
        flex_recurrent(
            inputs,
            spec.projected.then_some(tokens),
            masked.then_some(mask),
            spec,
            false,
        )
        .map(|(packed, _)| packed)
    }

    fn kernel_recurrent_train(
        x: FlexTensor,
        tokens: FlexTensor,
        w_ih: FlexTensor,
        w_hh: FlexTensor,
        b_ih: FlexTensor,
        b_hh: FlexTensor,
        h0: FlexTensor,
        c0: FlexTensor,
        mask: FlexTensor,
        masked: bool,
        spec: RecurrentSpec,
    ) -> Option<(FlexTensor, FlexTensor)> {
        let inputs = [x, w_ih, w_hh, b_ih, b_hh, h0, c0];
        let (packed, workspace) = flex_recurrent(
            inputs,
            spec.projected.then_some(tokens),
            masked.then_some(mask),
            spec,
            true,
        )?;
        Some((packed, workspace?))
    }

    fn kernel_recurrent_backward(
        x: FlexTensor,
        tokens: FlexTensor,
        w_ih: FlexTensor,
        w_hh: FlexTensor,
        b_ih: FlexTensor,
        b_hh: FlexTensor,
        workspace: FlexTensor,
        mask: FlexTensor,
        masked: bool,
        output_grad: FlexTensor,
        spec: RecurrentSpec,
    ) -> (
        FlexTensor,
        FlexTensor,
        FlexTensor,
        FlexTensor,
        FlexTensor,
        FlexTensor,
        FlexTensor,
    ) {
        let tokens = spec.projected.then_some(tokens);
        let weights = [&w_ih, &w_hh, &b_ih, &b_hh];
        let g = recurrent_geometry(&x, tokens.as_ref(), weights, masked.then_some(&mask), spec)
            .expect("the shapes the forward pass ran with");
        let tokens = tokens.map(|t| {
            token_rows(&contiguous(t), x.shape()[0]).expect("the tokens the forward pass ran with")
        });
        let shapes = [
            x.shape(),
            w_ih.shape(),
            w_hh.shape(),
            b_ih.shape(),
            b_hh.shape(),
        ];
        let [x, w_ih, w_hh, b_ih, b_hh, workspace, output_grad] =
            [x, w_ih, w_hh, b_ih, b_hh, workspace, output_grad].map(contiguous);
        let mask = masked.then(|| contiguous(mask));
        let weights = recurrent::Weights {
            w_ih: slice(&w_ih),
            w_hh: slice(&w_hh),
            b_ih: slice(&b_ih),
            b_hh: slice(&b_hh),
        };
        let input = recurrent_input(&x, tokens.as_deref());
        let grads = recurrent::backward(
            &g,
            input,
            &weights,
            slice(&workspace),
            mask.as_ref().map(slice),
            slice(&output_grad),
        );
        let [sx, sih, shh, sbi, sbh] = shapes;
        let state = || Shape::new([g.batch, g.d_hidden]);
        (
            shaped(grads.x, sx),
            shaped(grads.w_ih, sih),
            shaped(grads.w_hh, shh),
            shaped(grads.b_ih, sbi),
            shaped(grads.b_hh, sbh),
            shaped(grads.h0, state()),
            shaped(grads.c0, state()),
        )
    }

    fn kernel_dropout(x: FlexTensor, prob: f64, seed: u64) -> Option<FlexTensor> {
        if x.dtype() != DType::F32 || !(0.0..1.0).contains(&prob) {
            return None;
        }
        let shape = x.shape();
        let x = contiguous(x);
        let y = transformer::dropout(slice(&x), &DropoutMask::new(prob, seed));
        Some(shaped(y, shape))
    }

    fn kernel_layer_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
    ) -> Option<(FlexTensor, FlexTensor, FlexTensor)> {
        let shape = x.shape();
        let d = *shape.last()?;
        let fits = [&x, &gamma, &beta].iter().all(|t| t.dtype() == DType::F32)
            && d > 0
            && gamma.shape() == Shape::new([d])
            && beta.shape() == Shape::new([d]);
        if !fits {
            return None;
        }
        let [x, gamma, beta] = [x, gamma, beta].map(contiguous);
        let (y, stats) =
            transformer::layer_norm_forward(slice(&x), slice(&gamma), slice(&beta), epsilon);
        Some((shaped(y, shape), vector(stats.mean), vector(stats.rstd)))
    }

    fn kernel_layer_norm_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        mean: FlexTensor,
        rstd: FlexTensor,
        output_grad: FlexTensor,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let shape = x.shape();
        let [x, gamma, mean, rstd, dy] = [x, gamma, mean, rstd, output_grad].map(contiguous);
        let stats = transformer::RowStats {
            mean: slice(&mean).to_vec(),
            rstd: slice(&rstd).to_vec(),
        };
        let (dx, dgamma, dbeta) =
            transformer::layer_norm_backward(slice(&x), slice(&gamma), &stats, slice(&dy));
        (shaped(dx, shape), vector(dgamma), vector(dbeta))
    }

    fn kernel_gelu(x: FlexTensor) -> Option<FlexTensor> {
        if x.dtype() != DType::F32 {
            return None;
        }
        let shape = x.shape();
        let x = contiguous(x);
        Some(shaped(transformer::gelu(slice(&x)), shape))
    }

    fn kernel_gelu_backward(x: FlexTensor, output_grad: FlexTensor) -> FlexTensor {
        let shape = x.shape();
        let [x, dy] = [x, output_grad].map(contiguous);
        shaped(transformer::gelu_backward(slice(&x), slice(&dy)), shape)
    }

    fn kernel_bias_gelu(x: FlexTensor, bias: FlexTensor) -> Option<FlexTensor> {
        let (shape, bs) = (x.shape(), bias.shape());
        let fits = x.dtype() == DType::F32
            && bias.dtype() == DType::F32
            && bs.num_dims() == 1
            && shape.num_dims() >= 1
            && bs[0] > 0
            && shape[shape.num_dims() - 1] == bs[0];
        if !fits {
            return None;
        }
        let [x, bias] = [x, bias].map(contiguous);
        Some(shaped(
            transformer::bias_gelu(slice(&x), slice(&bias)),
            shape,
        ))
    }

    fn kernel_bias_gelu_backward(
        x: FlexTensor,
        bias: FlexTensor,
        output_grad: FlexTensor,
    ) -> (FlexTensor, FlexTensor) {
        let shape = x.shape();
        let [x, bias, dy] = [x, bias, output_grad].map(contiguous);
        let (dx, dbias) = transformer::bias_gelu_backward(slice(&x), slice(&bias), slice(&dy));
        (shaped(dx, shape), vector(dbias))
    }

    fn kernel_linear(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> Option<FlexTensor> {
        let (shape, ws, bs) = (x.shape(), weight.shape(), bias.shape());
        let fits = [&x, &weight, &bias].iter().all(|t| t.dtype() == DType::F32)
            && ws.num_dims() == 2
            && bs.num_dims() == 1
            && shape.num_dims() >= 1
            && ws[0] > 0
            && ws[1] > 0
            && shape[shape.num_dims() - 1] == ws[0]
            && bs[0] == ws[1];
        if !fits {
            return None;
        }
        let mut out = shape.clone();
        let last = out.num_dims() - 1;
        out[last] = ws[1];
        let [x, weight, bias] = [x, weight, bias].map(contiguous);
        Some(shaped(
            crate::linear::forward(slice(&x), slice(&weight), slice(&bias)),
            out,
        ))
    }

    fn kernel_linear_input_grad(
        weight: FlexTensor,
        output_grad: FlexTensor,
        x: FlexTensor,
    ) -> FlexTensor {
        let d_out = weight.shape()[1];
        let [weight, dy] = [weight, output_grad].map(contiguous);
        shaped(
            crate::linear::input_grad(slice(&weight), slice(&dy), d_out),
            x.shape(),
        )
    }

    fn kernel_linear_param_grads(
        x: FlexTensor,
        output_grad: FlexTensor,
    ) -> (FlexTensor, FlexTensor) {
        let (d_in, d_out) = (x.shape()[x.shape().num_dims() - 1], {
            let s = output_grad.shape();
            s[s.num_dims() - 1]
        });
        let [x, dy] = [x, output_grad].map(contiguous);
        let (dw, db) = crate::linear::param_grads(slice(&x), slice(&dy), d_in, d_out);
        (shaped(dw, Shape::new([d_in, d_out])), vector(db))
    }

    fn kernel_attention_weights(
        scores: FlexTensor,
        hidden: FlexTensor,
        masked: bool,
        spec: AttentionSpec,
    ) -> Option<(FlexTensor, FlexTensor)> {
        let g = attention_geometry(&scores, masked.then_some(&hidden), &spec)?;
        let shape = scores.shape();
        let scores = contiguous(scores);
        let hidden = masked.then(|| contiguous(hidden));
        let dropout = spec.dropout();
        let (w, p) = transformer::attention_weights(
            slice(&scores),
            hidden.as_ref().map(slice),
            &g,
            dropout.as_ref(),
        );
        let w = shaped(w, shape.clone());
        // Without dropout the probabilities are the weights.
        let p = if dropout.is_some() {
            shaped(p, shape)
        } else {
            w.clone()
        };
        Some((w, p))
    }

    fn kernel_attention_weights_backward(
        probabilities: FlexTensor,
        output_grad: FlexTensor,
        hidden: FlexTensor,
        masked: bool,
        spec: AttentionSpec,
    ) -> FlexTensor {
        let g = attention_geometry(&probabilities, masked.then_some(&hidden), &spec)
            .expect("the forward pass's shapes");
        let shape = probabilities.shape();
        let [p, dw] = [probabilities, output_grad].map(contiguous);
        let hidden = masked.then(|| contiguous(hidden));
        let ds = transformer::attention_weights_backward(
            slice(&p),
            slice(&dw),
            hidden.as_ref().map(slice),
            &g,
            spec.dropout().as_ref(),
        );
        shaped(ds, shape)
    }

    fn kernel_self_attention(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        hidden: FlexTensor,
        masked: bool,
        spec: SelfAttentionSpec,
    ) -> Option<FlexTensor> {
        flex_self_attention([q, k, v], hidden, masked, spec, false).map(|(ctx, _)| ctx)
    }

    fn kernel_self_attention_train(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        hidden: FlexTensor,
        masked: bool,
        spec: SelfAttentionSpec,
    ) -> Option<(FlexTensor, FlexTensor)> {
        let (ctx, stats) = flex_self_attention([q, k, v], hidden, masked, spec, true)?;
        Some((ctx, stats.expect("kept")))
    }

    fn kernel_self_attention_backward(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        stats: FlexTensor,
        hidden: FlexTensor,
        masked: bool,
        output_grad: FlexTensor,
        spec: SelfAttentionSpec,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let g = self_attention_geometry(&q, &k, &v, masked.then_some(&hidden), &spec)
            .expect("the forward pass's shapes");
        let (shape, key_shape) = (q.shape(), k.shape());
        let dropout = spec.weights.dropout();
        let [q, k, v, stats, dctx] = [q, k, v, stats, output_grad].map(contiguous);
        let hidden = masked.then(|| contiguous(hidden));
        let (dq, dk, dv) = transformer::self_attention_backward(
            slice(&q),
            slice(&k),
            slice(&v),
            hidden.as_ref().map(slice),
            &g,
            dropout.as_ref(),
            slice(&stats),
            slice(&dctx),
        );
        (
            shaped(dq, shape),
            shaped(dk, key_shape.clone()),
            shaped(dv, key_shape),
        )
    }

    fn kernel_cross_entropy(
        logits: FlexTensor,
        targets: FlexTensor,
    ) -> Option<(FlexTensor, FlexTensor)> {
        let (ls, ts) = (logits.shape(), targets.shape());
        let fits = logits.dtype() == DType::F32
            && targets.dtype() == DType::F32
            && ls.num_dims() == 2
            && ts.num_dims() == 1
            && ts[0] == ls[0]
            && ls[0] > 0
            && ls[1] > 0;
        if !fits {
            return None;
        }
        let [logits, targets] = [logits, targets].map(contiguous);
        let (loss, lse) = transformer::cross_entropy(slice(&logits), slice(&targets), ls[1])?;
        let mean = loss.iter().map(|&v| v as f64).sum::<f64>() / loss.len() as f64;
        Some((vector(vec![mean as f32]), vector(lse)))
    }

    fn kernel_cross_entropy_backward(
        logits: FlexTensor,
        targets: FlexTensor,
        lse: FlexTensor,
        output_grad: FlexTensor,
    ) -> FlexTensor {
        let shape = logits.shape();
        let [logits, targets, lse, grad] = [logits, targets, lse, output_grad].map(contiguous);
        let grad = slice(&grad)[0];
        let dx =
            transformer::cross_entropy_backward(slice(&logits), slice(&targets), slice(&lse), grad);
        shaped(dx, shape)
    }
}

/// Self-attention on flex: the context and, when `keep`, the score rows' statistics `[B,
/// heads, T, 2]`; `None` when the shapes or types do not fit.
fn flex_self_attention(
    qkv: [FlexTensor; 3],
    hidden: FlexTensor,
    masked: bool,
    spec: SelfAttentionSpec,
    keep: bool,
) -> Option<(FlexTensor, Option<FlexTensor>)> {
    let [q, k, v] = &qkv;
    let g = self_attention_geometry(q, k, v, masked.then_some(&hidden), &spec)?;
    let shape = q.shape();
    let [q, k, v] = qkv.map(contiguous);
    let hidden = masked.then(|| contiguous(hidden));
    let dropout = spec.weights.dropout();
    let (ctx, stats) = transformer::self_attention(
        slice(&q),
        slice(&k),
        slice(&v),
        hidden.as_ref().map(slice),
        &g,
        dropout.as_ref(),
        keep,
    );
    let stats = stats.map(|s| shaped(s, Shape::new([g.batch, g.heads, g.queries, 2])));
    Some((shaped(ctx, shape), stats))
}

/// The sizes of a self-attention over `q`, `k`, `v` `[B, T, D]` with `D` a multiple of the
/// heads, and its mask `[B, T, T]`, when all are f32 and agree.
fn self_attention_geometry(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    hidden: Option<&FlexTensor>,
    spec: &SelfAttentionSpec,
) -> Option<transformer::SelfAttention> {
    let (s, ks) = (q.shape(), k.shape());
    let f32s = [q, k, v].iter().all(|t| t.dtype() == DType::F32);
    if !f32s || s.num_dims() != 3 || ks.num_dims() != 3 || v.shape() != ks {
        return None;
    }
    let (b, tq, tk, d) = (s[0], s[1], ks[1], s[2]);
    let fits = ks[0] == b
        && ks[2] == d
        && spec.heads > 0
        && d > 0
        && tq > 0
        && tk > 0
        && d.is_multiple_of(spec.heads)
        && (0.0..1.0).contains(&spec.weights.prob)
        && hidden.is_none_or(|h| h.dtype() == DType::F32 && h.shape() == Shape::new([b, tq, tk]));
    fits.then_some(transformer::SelfAttention {
        batch: b,
        queries: tq,
        keys: tk,
        heads: spec.heads,
        d_head: d / spec.heads,
        scale: spec.weights.scale,
        fill: spec.weights.fill,
    })
}

/// The layout of attention scores `[B, heads, Tq, Tk]` and their mask `[B, Tq, Tk]`, when both
/// are f32 and agree.
fn attention_geometry(
    scores: &FlexTensor,
    hidden: Option<&FlexTensor>,
    spec: &AttentionSpec,
) -> Option<AttentionGeometry> {
    let s = scores.shape();
    if scores.dtype() != DType::F32 || s.num_dims() != 4 || s[3] == 0 {
        return None;
    }
    let fits = hidden
        .is_none_or(|h| h.dtype() == DType::F32 && h.shape() == Shape::new([s[0], s[2], s[3]]));
    (fits && (0.0..1.0).contains(&spec.prob)).then_some(AttentionGeometry {
        batch: s[0],
        heads: s[1],
        queries: s[2],
        keys: s[3],
        scale: spec.scale,
        fill: spec.fill,
    })
}

/// A recurrent direction on flex (`inputs`: `x`, `w_ih`, `w_hh`, `b_ih`, `b_hh`, `h0`, `c0`;
/// with `tokens`, `x` is a table of input products): the packed output and, when `keep`
/// (training), the workspace its backward pass reads; `None` when the shapes or types do not
/// fit the kernel, or a token is not a row of the table.
fn flex_recurrent(
    inputs: [FlexTensor; 7],
    tokens: Option<FlexTensor>,
    mask: Option<FlexTensor>,
    spec: RecurrentSpec,
    keep: bool,
) -> Option<(FlexTensor, Option<FlexTensor>)> {
    let [x, w_ih, w_hh, b_ih, b_hh, h0, c0] = &inputs;
    let weights = [w_ih, w_hh, b_ih, b_hh];
    let g = recurrent_geometry(x, tokens.as_ref(), weights, mask.as_ref(), spec)?;
    let state = Shape::new([g.batch, g.d_hidden]);
    let states_fit = [h0, c0]
        .iter()
        .all(|t| t.dtype() == DType::F32 && t.shape() == state);
    if !states_fit {
        return None;
    }
    let tokens = match tokens {
        Some(t) => Some(token_rows(&contiguous(t), x.shape()[0])?),
        None => None,
    };
    let [x, w_ih, w_hh, b_ih, b_hh, h0, c0] = inputs.map(contiguous);
    let mask = mask.map(contiguous);
    let weights = recurrent::Weights {
        w_ih: slice(&w_ih),
        w_hh: slice(&w_hh),
        b_ih: slice(&b_ih),
        b_hh: slice(&b_hh),
    };
    let input = recurrent_input(&x, tokens.as_deref());
    let (h0, c0, mask) = (slice(&h0), slice(&c0), mask.as_ref().map(slice));
    let (packed, workspace) = if keep {
        let mut workspace = take_workspace(Shape::new([g.batch, g.time, g.width()]));
        let ws = workspace.storage_mut::<f32>();
        let packed = recurrent::forward(&g, input, &weights, h0, c0, mask, ws);
        keep_workspace(&workspace);
        (packed, Some(workspace))
    } else {
        (recurrent::infer(&g, input, &weights, h0, c0, mask), None)
    };
    let packed = shaped(packed, Shape::new([g.packed_len()]));
    Some((packed, workspace))
}

/// Recurrent workspaces kept after use: a training step makes the same ones again, and a kept
/// one that nothing else holds any more (its step's backward pass is done) is written over
/// instead of allocating and zeroing megabytes (11 MiB a step in the character LSTM's
/// benchmark). The forward pass writes every element, so the old contents are never read.
static WORKSPACES: std::sync::Mutex<Vec<FlexTensor>> = std::sync::Mutex::new(Vec::new());

/// Kept workspaces at most (the oldest goes first).
const KEEP_WORKSPACES: usize = 8;

/// Bytes of kept workspaces that nothing else holds, at most (the oldest goes first): memory
/// the process keeps for its next step rather than gives back.
const KEEP_FREE_BYTES: usize = 256 << 20;

/// A contiguous f32 tensor of `shape` that only the caller holds, for a recurrent run's
/// workspace (contents unspecified: the run writes every element before reading it): a kept
/// one of that shape that nothing else holds any more, else a new one.
fn take_workspace(shape: Shape) -> FlexTensor {
    let mut kept = WORKSPACES.lock().unwrap_or_else(|e| e.into_inner());
    let free = kept
        .iter()
        .position(|t| t.is_unique() && t.shape() == shape && t.dtype() == DType::F32);
    match free {
        Some(i) => kept.remove(i),
        None => shaped(crate::memory::zeroed(shape.num_elements()), shape),
    }
}

/// Keeps a handle on a written workspace, for [`take_workspace`] to hand out again once the
/// run's other holders (its backward pass) have let it go.
fn keep_workspace(workspace: &FlexTensor) {
    let mut kept = WORKSPACES.lock().unwrap_or_else(|e| e.into_inner());
    kept.push(workspace.clone());
    let free_bytes = |kept: &[FlexTensor]| -> usize {
        kept.iter()
            .filter(|t| t.is_unique())
            .map(|t| t.shape().num_elements() * size_of::<f32>())
            .sum()
    };
    while kept.len() > KEEP_WORKSPACES || free_bytes(&kept) > KEEP_FREE_BYTES {
        // The oldest free one, else the oldest.
        let oldest = kept.iter().position(FlexTensor::is_unique).unwrap_or(0);
        kept.remove(oldest);
    }
}

/// A contiguous `x` as the recurrent kernel's input: table rows picked by `tokens`, or
/// features.
fn recurrent_input<'a>(x: &'a FlexTensor, tokens: Option<&'a [usize]>) -> recurrent::Input<'a> {
    match tokens {
        Some(tokens) => recurrent::Input::Rows {
            table: slice(x),
            tokens,
        },
        None => recurrent::Input::Features(slice(x)),
    }
}

/// Row indices given as floats (`[B, T]`), when each is a whole number below `rows`.
fn token_rows(tokens: &FlexTensor, rows: usize) -> Option<Vec<usize>> {
    if tokens.dtype() != DType::F32 {
        return None;
    }
    slice(tokens)
        .iter()
        .map(|&v| (v >= 0.0 && v.fract() == 0.0 && (v as usize) < rows).then_some(v as usize))
        .collect()
}

/// The sizes of a recurrent run when its tensors are f32 and their shapes agree (the layer
/// composes burn's ops otherwise, which reports the mismatch as it does): `x` is `[B, T, I]`,
/// or with `tokens` (`[B, T]`) a table `[rows, G]`; `weights` are `w_ih`, `w_hh`, `b_ih`,
/// `b_hh`. The states are checked by the caller.
fn recurrent_geometry(
    x: &FlexTensor,
    tokens: Option<&FlexTensor>,
    weights: [&FlexTensor; 4],
    mask: Option<&FlexTensor>,
    spec: RecurrentSpec,
) -> Option<recurrent::Geometry> {
    let [w_ih, w_hh, b_ih, b_hh] = weights;
    let f32s = [x, w_ih, w_hh, b_ih, b_hh]
        .into_iter()
        .chain(tokens)
        .chain(mask);
    if f32s.into_iter().any(|t| t.dtype() != DType::F32) {
        return None;
    }
    let (xs, wi, wh) = (x.shape(), w_ih.shape(), w_hh.shape());
    if wi.num_dims() != 2 || wh.num_dims() != 2 {
        return None;
    }
    let (batch, time, d_input) = match tokens {
        Some(t) if t.shape().num_dims() == 2 && xs.num_dims() == 2 => {
            (t.shape()[0], t.shape()[1], xs[1])
        }
        None if xs.num_dims() == 3 => (xs[0], xs[1], xs[2]),
        _ => return None,
    };
    let g = recurrent::Geometry {
        cell: spec.cell,
        batch,
        time,
        d_input,
        d_hidden: wh[1],
        reverse: spec.reverse,
        projected: tokens.is_some(),
    };
    let gates = g.gates();
    let w_ih_cols = if g.projected { 0 } else { g.d_input };
    let fits = wi.dims::<2>() == [gates, w_ih_cols]
        && (!g.projected || g.d_input == gates)
        && wh.dims::<2>() == [gates, g.d_hidden]
        && b_ih.shape() == Shape::new([gates])
        && b_hh.shape() == Shape::new([gates])
        && mask.is_none_or(|m| m.shape() == Shape::new([g.batch, g.time]))
        && g.batch > 0
        && g.time > 0
        && g.d_hidden > 0;
    fits.then_some(g)
}

/// The `[N, C, rest]` layout of a batch-norm input, when it and the per-channel tensors are
/// f32.
fn planes(x: &FlexTensor, per_channel: &[&FlexTensor]) -> Option<batch_norm::Planes> {
    let shape = x.shape();
    if x.dtype() != DType::F32
        || shape.num_dims() < 2
        || per_channel
            .iter()
            .any(|t| t.dtype() != DType::F32 || t.shape().num_elements() != shape[1])
    {
        return None;
    }
    Some(batch_norm::Planes {
        batch: shape[0],
        channels: shape[1],
        plane: (2..shape.num_dims()).map(|d| shape[d]).product(),
    })
}

fn vector(values: Vec<f32>) -> FlexTensor {
    let n = values.len();
    FlexTensor::from_data(TensorData::new(values, Shape::new([n])))
}

/// The convolution's node in the autodiff graph: its backward pass calls the backend's
/// kernels for the input and weight gradients.
#[derive(Debug)]
struct Conv2dNode;

impl<B: Backend + KernelOps> Backward<B, 2> for Conv2dNode {
    type State = (NodeId, NodeId, ConvOptions<2>);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state, options) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight_state);
        for (node, wrt) in [(node_x, ConvInput::X), (node_weight, ConvInput::Weight)] {
            if let Some(node) = node {
                let g = B::kernel_conv2d_backward(
                    x.clone(),
                    weight.clone(),
                    grad.clone(),
                    options.clone(),
                    wrt,
                );
                grads.register::<B>(node.id, g);
            }
        }
    }
}

/// Batch norm's node (with or without the ReLU after it).
#[derive(Debug)]
struct BatchNormNode;

/// What batch norm's node keeps: the checkpointed input, gamma and beta, the batch statistics,
/// epsilon and whether a ReLU followed.
type BatchNormState<B> = (
    NodeId,
    NodeId,
    NodeId,
    FloatTensor<B>,
    FloatTensor<B>,
    f64,
    bool,
);

impl<B: Backend + KernelOps> Backward<B, 3> for BatchNormNode {
    type State = BatchNormState<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, gamma_state, beta_state, mean, variance, epsilon, relu) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let gamma = checkpointer.retrieve_node_output::<FloatTensor<B>>(gamma_state);
        let beta = checkpointer.retrieve_node_output::<FloatTensor<B>>(beta_state);
        let (dx, dgamma, dbeta) = B::kernel_batch_norm_train_backward(
            x, gamma, beta, mean, variance, grad, epsilon, relu,
        );
        for (node, g) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

/// Max pooling's node: the input is checkpointed, the indices kept.
#[derive(Debug)]
struct MaxPoolNode;

impl<B: Backend + KernelOps> Backward<B, 1> for MaxPoolNode {
    type State = (NodeId, FloatTensor<B>, MaxPoolOptions<2>);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, indices, options) = ops.state;
        if let Some(node) = node_x {
            let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
            let dx = B::kernel_max_pool2d_backward(x, indices, grad, options);
            grads.register::<B>(node.id, dx);
        }
    }
}

/// A recurrent direction's node: it keeps the inputs its backward pass reads, the workspace
/// and the mask.
#[derive(Debug)]
struct RecurrentNode;

/// What the recurrent node keeps: `x`, `w_ih`, `w_hh`, `b_ih`, `b_hh`, the workspace and the
/// mask, the tokens (read when `x` is a table), whether the mask is read, and the spec.
type RecurrentState<B> = ([FloatTensor<B>; 7], FloatTensor<B>, bool, RecurrentSpec);

impl<B: Backend + KernelOps> Backward<B, 7> for RecurrentNode {
    type State = RecurrentState<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 7>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let ([x, w_ih, w_hh, b_ih, b_hh, workspace, mask], tokens, masked, spec) = ops.state;
        let (dx, dw_ih, dw_hh, db_ih, db_hh, dh0, dc0) = B::kernel_recurrent_backward(
            x, tokens, w_ih, w_hh, b_ih, b_hh, workspace, mask, masked, grad, spec,
        );
        let all = [dx, dw_ih, dw_hh, db_ih, db_hh, dh0, dc0];
        for (node, g) in ops.parents.into_iter().zip(all) {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

/// Dropout's node: the mask is recomputed from its seed.
#[derive(Debug)]
struct DropoutNode;

impl<B: Backend + KernelOps> Backward<B, 1> for DropoutNode {
    type State = (f64, u64);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (prob, seed) = ops.state;
        if let Some(node) = node_x {
            let dx = B::kernel_dropout(grad, prob, seed)
                .expect("the backend that ran the forward pass runs the same mask");
            grads.register::<B>(node.id, dx);
        }
    }
}

/// Layer norm's node: it keeps `x`, `gamma` and the rows' statistics.
#[derive(Debug)]
struct LayerNormNode;

impl<B: Backend + KernelOps> Backward<B, 3> for LayerNormNode {
    type State = [FloatTensor<B>; 4];

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let [x, gamma, mean, rstd] = ops.state;
        let (dx, dgamma, dbeta) = B::kernel_layer_norm_backward(x, gamma, mean, rstd, grad);
        for (node, g) in ops.parents.into_iter().zip([dx, dgamma, dbeta]) {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

/// A linear layer's node: it keeps the input and the weight.
#[derive(Debug)]
struct LinearNode;

impl<B: Backend + KernelOps> Backward<B, 3> for LinearNode {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight) = ops.state;
        if node_weight.is_some() || node_bias.is_some() {
            let (dw, db) = B::kernel_linear_param_grads(x.clone(), grad.clone());
            if let Some(node) = node_weight {
                grads.register::<B>(node.id, dw);
            }
            if let Some(node) = node_bias {
                grads.register::<B>(node.id, db);
            }
        }
        // The first layer's input needs no gradient: its product is skipped.
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::kernel_linear_input_grad(weight, grad, x));
        }
    }
}

/// GELU's node: it keeps the input.
#[derive(Debug)]
struct GeluNode;

impl<B: Backend + KernelOps> Backward<B, 1> for GeluNode {
    type State = FloatTensor<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::kernel_gelu_backward(ops.state, grad));
        }
    }
}

/// Bias-GELU's node: it keeps the input and the bias.
#[derive(Debug)]
struct BiasGeluNode;

impl<B: Backend + KernelOps> Backward<B, 2> for BiasGeluNode {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_bias] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, bias) = ops.state;
        let (dx, dbias) = B::kernel_bias_gelu_backward(x, bias, grad);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_bias {
            grads.register::<B>(node.id, dbias);
        }
    }
}

/// The attention weights' node: it keeps the probabilities before dropout and the mask.
#[derive(Debug)]
struct AttentionNode;

impl<B: Backend + KernelOps> Backward<B, 1> for AttentionNode {
    type State = (FloatTensor<B>, FloatTensor<B>, bool, AttentionSpec);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_scores] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (p, hidden, masked, spec) = ops.state;
        if let Some(node) = node_scores {
            let ds = B::kernel_attention_weights_backward(p, grad, hidden, masked, spec);
            grads.register::<B>(node.id, ds);
        }
    }
}

/// Self-attention's node: it keeps `q`, `k`, `v`, the score rows' statistics and the mask.
#[derive(Debug)]
struct SelfAttentionNode;

/// What the self-attention node keeps: `q`, `k`, `v`, the score rows' statistics and the
/// mask; whether the mask is read; the spec.
type SelfAttentionState<B> = ([FloatTensor<B>; 5], bool, SelfAttentionSpec);

impl<B: Backend + KernelOps> Backward<B, 3> for SelfAttentionNode {
    type State = SelfAttentionState<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let ([q, k, v, stats, hidden], masked, spec) = ops.state;
        let (dq, dk, dv) =
            B::kernel_self_attention_backward(q, k, v, stats, hidden, masked, grad, spec);
        for (node, g) in ops.parents.into_iter().zip([dq, dk, dv]) {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

/// Cross-entropy's node (the logits' gradient; targets take none): it keeps the logits, the
/// targets and the rows' logsumexp.
#[derive(Debug)]
struct CrossEntropyNode;

impl<B: Backend + KernelOps> Backward<B, 1> for CrossEntropyNode {
    type State = [FloatTensor<B>; 3];

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_logits] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let [logits, targets, lse] = ops.state;
        if let Some(node) = node_logits {
            let dx = B::kernel_cross_entropy_backward(logits, targets, lse, grad);
            grads.register::<B>(node.id, dx);
        }
    }
}

impl<B: Backend + KernelOps, C: CheckpointStrategy> KernelOps for Autodiff<B, C> {
    fn kernel_dropout(x: FloatTensor<Self>, prob: f64, seed: u64) -> Option<FloatTensor<Self>> {
        let prep = DropoutNode
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful();
        let x = x.into_primitive();
        match prep {
            OpsKind::Tracked(prep) => {
                Some(prep.finish((prob, seed), B::kernel_dropout(x, prob, seed)?))
            }
            OpsKind::UnTracked(prep) => Some(prep.finish(B::kernel_dropout(x, prob, seed)?)),
        }
    }

    fn kernel_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>)> {
        let prep = LayerNormNode
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let [x, gamma, beta] = [x, gamma, beta].map(|t| t.into_primitive());
        match prep {
            OpsKind::Tracked(prep) => {
                let (y, mean, rstd) =
                    B::kernel_layer_norm(x.clone(), gamma.clone(), beta, epsilon)?;
                let state = [x, gamma, mean.clone(), rstd.clone()];
                Some((
                    prep.finish(state, y),
                    Self::from_inner(mean),
                    Self::from_inner(rstd),
                ))
            }
            OpsKind::UnTracked(prep) => {
                let (y, mean, rstd) = B::kernel_layer_norm(x, gamma, beta, epsilon)?;
                Some((
                    prep.finish(y),
                    Self::from_inner(mean),
                    Self::from_inner(rstd),
                ))
            }
        }
    }

    fn kernel_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> Option<FloatTensor<Self>> {
        let prep = LinearNode
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful();
        let [x, weight, bias] = [x, weight, bias].map(|t| t.into_primitive());
        match prep {
            OpsKind::Tracked(prep) => {
                let y = B::kernel_linear(x.clone(), weight.clone(), bias)?;
                Some(prep.finish((x, weight), y))
            }
            OpsKind::UnTracked(prep) => Some(prep.finish(B::kernel_linear(x, weight, bias)?)),
        }
    }

    fn kernel_bias_gelu(
        x: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> Option<FloatTensor<Self>> {
        let prep = BiasGeluNode
            .prepare::<C>([x.node(), bias.node()])
            .compute_bound()
            .stateful();
        let [x, bias] = [x, bias].map(|t| t.into_primitive());
        match prep {
            OpsKind::Tracked(prep) => {
                let y = B::kernel_bias_gelu(x.clone(), bias.clone())?;
                Some(prep.finish((x, bias), y))
            }
            OpsKind::UnTracked(prep) => Some(prep.finish(B::kernel_bias_gelu(x, bias)?)),
        }
    }

    fn kernel_gelu(x: FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        let prep = GeluNode.prepare::<C>([x.node()]).compute_bound().stateful();
        let x = x.into_primitive();
        match prep {
            OpsKind::Tracked(prep) => {
                let y = B::kernel_gelu(x.clone())?;
                Some(prep.finish(x, y))
            }
            OpsKind::UnTracked(prep) => Some(prep.finish(B::kernel_gelu(x)?)),
        }
    }

    fn kernel_attention_weights(
        scores: FloatTensor<Self>,
        hidden: FloatTensor<Self>,
        masked: bool,
        spec: AttentionSpec,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        let prep = AttentionNode
            .prepare::<C>([scores.node()])
            .compute_bound()
            .stateful();
        let [scores, hidden] = [scores, hidden].map(|t| t.into_primitive());
        let (w, p) = B::kernel_attention_weights(scores, hidden.clone(), masked, spec)?;
        match prep {
            OpsKind::Tracked(prep) => {
                let state = (p.clone(), hidden, masked, spec);
                Some((prep.finish(state, w), Self::from_inner(p)))
            }
            OpsKind::UnTracked(prep) => Some((prep.finish(w), Self::from_inner(p))),
        }
    }

    fn kernel_self_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        hidden: FloatTensor<Self>,
        masked: bool,
        spec: SelfAttentionSpec,
    ) -> Option<FloatTensor<Self>> {
        let prep = SelfAttentionNode
            .prepare::<C>([q.node(), k.node(), v.node()])
            .compute_bound()
            .stateful();
        let [q, k, v, hidden] = [q, k, v, hidden].map(|t| t.into_primitive());
        match prep {
            OpsKind::Tracked(prep) => {
                let (ctx, stats) = B::kernel_self_attention_train(
                    q.clone(),
                    k.clone(),
                    v.clone(),
                    hidden.clone(),
                    masked,
                    spec,
                )?;
                let state = ([q, k, v, stats, hidden], masked, spec);
                Some(prep.finish(state, ctx))
            }
            OpsKind::UnTracked(prep) => {
                Some(prep.finish(B::kernel_self_attention(q, k, v, hidden, masked, spec)?))
            }
        }
    }

    fn kernel_cross_entropy(
        logits: FloatTensor<Self>,
        targets: FloatTensor<Self>,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        let prep = CrossEntropyNode
            .prepare::<C>([logits.node()])
            .compute_bound()
            .stateful();
        let [logits, targets] = [logits, targets].map(|t| t.into_primitive());
        let (loss, lse) = B::kernel_cross_entropy(logits.clone(), targets.clone())?;
        match prep {
            OpsKind::Tracked(prep) => {
                let state = [logits, targets, lse.clone()];
                Some((prep.finish(state, loss), Self::from_inner(lse)))
            }
            OpsKind::UnTracked(prep) => Some((prep.finish(loss), Self::from_inner(lse))),
        }
    }

    fn kernel_max_pool2d(x: FloatTensor<Self>, options: MaxPoolOptions<2>) -> FloatTensor<Self> {
        match MaxPoolNode
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let (y, indices) =
                    B::kernel_max_pool2d_indexed(x.into_primitive(), options.clone());
                prep.finish((x_state, indices, options), y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::kernel_max_pool2d(x.into_primitive(), options))
            }
        }
    }

    fn kernel_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let prep = BatchNormNode
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        match prep {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let beta_state = prep.checkpoint(&beta);
                let (y, mean, var) = B::kernel_batch_norm_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                    relu,
                );
                let state = (
                    x_state,
                    gamma_state,
                    beta_state,
                    mean.clone(),
                    var.clone(),
                    epsilon,
                    relu,
                );
                let y = prep.finish(state, y);
                (y, Self::from_inner(mean), Self::from_inner(var))
            }
            OpsKind::UnTracked(prep) => {
                let (y, mean, var) = B::kernel_batch_norm_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                    relu,
                );
                (
                    prep.finish(y),
                    Self::from_inner(mean),
                    Self::from_inner(var),
                )
            }
        }
    }

    fn kernel_recurrent(
        x: FloatTensor<Self>,
        tokens: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        b_ih: FloatTensor<Self>,
        b_hh: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        masked: bool,
        spec: RecurrentSpec,
    ) -> Option<FloatTensor<Self>> {
        let tokens = tokens.into_primitive();
        let prep = RecurrentNode
            .prepare::<C>([
                x.node(),
                w_ih.node(),
                w_hh.node(),
                b_ih.node(),
                b_hh.node(),
                h0.node(),
                c0.node(),
            ])
            .compute_bound()
            .stateful();
        let [x, w_ih, w_hh, b_ih, b_hh, h0, c0, mask] =
            [x, w_ih, w_hh, b_ih, b_hh, h0, c0, mask].map(|t| t.into_primitive());
        match prep {
            OpsKind::Tracked(prep) => {
                let (packed, workspace) = B::kernel_recurrent_train(
                    x.clone(),
                    tokens.clone(),
                    w_ih.clone(),
                    w_hh.clone(),
                    b_ih.clone(),
                    b_hh.clone(),
                    h0,
                    c0,
                    mask.clone(),
                    masked,
                    spec,
                )?;
                let tensors = [x, w_ih, w_hh, b_ih, b_hh, workspace, mask];
                Some(prep.finish((tensors, tokens, masked, spec), packed))
            }
            OpsKind::UnTracked(prep) => Some(prep.finish(B::kernel_recurrent(
                x, tokens, w_ih, w_hh, b_ih, b_hh, h0, c0, mask, masked, spec,
            )?)),
        }
    }

    fn kernel_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        match Conv2dNode
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let out =
                    B::kernel_conv2d(x.into_primitive(), weight.into_primitive(), options.clone());
                prep.finish((x_state, weight_state, options), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::kernel_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                options,
            )),
        }
    }
}
