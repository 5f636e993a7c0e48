//! burn's transformer pieces through the kernels of [`crate::transformer`]: dropout, layer
//! norm, GELU, the attention weights and cross-entropy as functions, and burn's own
//! `Dropout`, `LayerNorm`, `TransformerEncoderLayer` and `TransformerEncoder` modules run
//! through them (their parameters and records unchanged). On a device without the kernels
//! (ndarray, wgpu, `STRATA_KERNELS=burn`) each is burn's own op or module forward.

use burn::backend::Dispatch;
use burn::nn::activation::Activation;
use burn::nn::attention::MultiHeadAttention;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::transformer::{
    PositionWiseFeedForward, TransformerDecoder, TransformerDecoderInput, TransformerDecoderLayer,
    TransformerEncoder, TransformerEncoderInput, TransformerEncoderLayer,
};
use burn::nn::{Dropout, LayerNorm};
use burn::tensor::{Bool, Device, Distribution, Int, Tensor, TensorData};

use crate::ops::{AttentionSpec, KernelOps, SelfAttentionSpec};
use crate::runs_kernels;

/// A seed for a dropout mask, drawn from `device`'s random stream (so a seeded run repeats
/// its masks).
fn draw_seed(device: &Device) -> u64 {
    let draws = Tensor::<1>::random([3], Distribution::Default, device);
    draws
        .into_data()
        .iter::<f32>()
        .fold(0u64, |seed, u| (seed << 21) ^ (u * 2_097_152.0) as u64)
}

/// Dropout with probability `prob` in `[0, 1)` (inverted: what is kept is scaled by `1 / (1 -
/// prob)`), always applied. On flex the mask is a hash of a seed drawn from the device's
/// random stream and each element's index ([`crate::transformer::DropoutMask`]), and the
/// backward pass recomputes it; elsewhere it is burn's Bernoulli mask.
///
/// # Panics
/// When `prob` is outside `[0, 1)`.
pub fn dropout<const D: usize>(x: Tensor<D>, prob: f64) -> Tensor<D> {
    assert!(
        (0.0..1.0).contains(&prob),
        "dropout probability {prob} is outside [0, 1)"
    );
    let device = x.device();
    if prob == 0.0 {
        return x;
    }
    if runs_kernels(&device) {
        let seed = draw_seed(&device);
        if let Some(y) =
            <Dispatch as KernelOps>::kernel_dropout(x.clone().into_dispatch(), prob, seed)
        {
            return Tensor::from_dispatch(y);
        }
    }
    let keep = 1.0 - prob;
    let mask = x.random_like(Distribution::Bernoulli(keep));
    (x * mask) * (1.0 / keep)
}

/// burn's `Dropout` layer's forward pass through [`dropout`]: applied only while the layer
/// trains on an autodiff device, as the layer's own `forward`.
pub fn dropout_layer<const D: usize>(layer: &Dropout, x: Tensor<D>) -> Tensor<D> {
    if !drops(layer, &x.device()) {
        return x;
    }
    dropout(x, layer.prob)
}

/// Whether [`dropout_layer`] drops anything on `device`: a nonzero probability, in training
/// mode, on an autodiff device. Where it does not, a caller may fuse across it.
pub fn drops(layer: &Dropout, device: &Device) -> bool {
    layer.training.is_enabled() && device.is_autodiff() && layer.prob != 0.0
}

/// Layer norm over the last dimension, as `burn::tensor::module::layer_norm`: `(x - mean) /
/// sqrt(var + epsilon) * gamma + beta` with the biased variance. On flex one pass forward and
/// one backward.
///
/// # Panics
/// As burn's op: when `gamma` (or `beta`) does not have the last dimension's length.
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Option<Tensor<1>>,
    epsilon: f64,
) -> Tensor<D> {
    if runs_kernels(&x.device()) {
        let beta_or_zeros = beta.clone().unwrap_or_else(|| gamma.zeros_like());
        let out = <Dispatch as KernelOps>::kernel_layer_norm(
            x.clone().into_dispatch(),
            gamma.clone().into_dispatch(),
            beta_or_zeros.into_dispatch(),
            epsilon,
        );
        if let Some((y, _, _)) = out {
            return Tensor::from_dispatch(y);
        }
    }
    burn::tensor::module::layer_norm(x, gamma, beta, epsilon)
}

/// burn's `LayerNorm` layer's forward pass through [`layer_norm`]. burn keeps the layer's
/// epsilon private, so the caller passes the one it configured (burn's default is 1e-5).
pub fn layer_norm_layer<const D: usize>(
    layer: &LayerNorm,
    x: Tensor<D>,
    epsilon: f64,
) -> Tensor<D> {
    layer_norm(
        x,
        layer.gamma.val(),
        layer.beta.as_ref().map(|b| b.val()),
        epsilon,
    )
}

/// The exact GELU, `x Phi(x)`, as `burn::tensor::activation::gelu`; on flex one vectorised
/// pass forward and one backward.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if runs_kernels(&x.device())
        && let Some(y) = <Dispatch as KernelOps>::kernel_gelu(x.clone().into_dispatch())
    {
        return Tensor::from_dispatch(y);
    }
    burn::tensor::activation::gelu(x)
}

/// `gelu(x + bias)`, `bias` `[C]` added along the last dimension of `x` `[.., C]`: the bias of
/// a linear layer fused with the exact GELU after it. On flex one pass forward and one backward
/// (the bias's gradient summed in the same pass); elsewhere burn's ops.
pub fn bias_gelu<const D: usize>(x: Tensor<D>, bias: Tensor<1>) -> Tensor<D> {
    if runs_kernels(&x.device())
        && let Some(y) = <Dispatch as KernelOps>::kernel_bias_gelu(
            x.clone().into_dispatch(),
            bias.clone().into_dispatch(),
        )
    {
        return Tensor::from_dispatch(y);
    }
    burn::tensor::activation::gelu(x + bias.unsqueeze())
}

/// What the attention kernels take besides their tensors: the weights' settings (with a
/// dropout seed drawn from `device`'s stream when `prob > 0`), whether a mask is given, and
/// the mask as floats (a placeholder the kernel does not read when there is none).
fn weights_spec(
    hidden: Option<Tensor<3, Bool>>,
    scale: f32,
    fill: f32,
    prob: f64,
    device: &Device,
) -> (AttentionSpec, bool, Tensor<3>) {
    let seed = if prob > 0.0 { draw_seed(device) } else { 0 };
    let spec = AttentionSpec {
        scale,
        fill,
        prob,
        seed,
    };
    let masked = hidden.is_some();
    let mask = match hidden {
        Some(h) => h.float(),
        None => Tensor::<3>::zeros([1, 1, 1], device),
    };
    (spec, masked, mask)
}

/// Attention weights from scores `[batch, heads, queries, keys]`: `softmax(scores * scale)`
/// over the keys, with the positions where `hidden` `[batch, queries, keys]` is true set to
/// `fill` first (burn's `min_float`), then dropout with probability `prob` (0: none). On flex
/// one pass forward and one backward; elsewhere burn's ops, as burn's `MultiHeadAttention`
/// composes them.
pub fn attention_weights(
    scores: Tensor<4>,
    hidden: Option<Tensor<3, Bool>>,
    scale: f32,
    fill: f32,
    prob: f64,
) -> Tensor<4> {
    let device = scores.device();
    if runs_kernels(&device) {
        let (spec, masked, mask) = weights_spec(hidden.clone(), scale, fill, prob, &device);
        let out = <Dispatch as KernelOps>::kernel_attention_weights(
            scores.clone().into_dispatch(),
            mask.into_dispatch(),
            masked,
            spec,
        );
        if let Some((w, _)) = out {
            return Tensor::from_dispatch(w);
        }
    }
    let mut s = scores.mul_scalar(scale);
    if let Some(h) = hidden {
        let [b, q, k] = h.dims();
        s = s.mask_fill(h.reshape([b, 1, q, k]), fill);
    }
    let w = burn::tensor::activation::softmax(s, 3);
    if prob > 0.0 { dropout(w, prob) } else { w }
}

/// The mean softmax cross-entropy of `logits` `[N, classes]` against class indices `targets`
/// `[N]`, as burn's `CrossEntropyLoss` with its defaults: a `[1]` tensor. On flex one pass
/// forward and one backward.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let device = logits.device();
    if runs_kernels(&device) {
        let out = <Dispatch as KernelOps>::kernel_cross_entropy(
            logits.clone().into_dispatch(),
            targets.clone().float().into_dispatch(),
        );
        if let Some((loss, _)) = out {
            return Tensor::from_dispatch(loss);
        }
    }
    CrossEntropyLossConfig::new()
        .init(&device)
        .forward(logits, targets)
}

/// Where keys are hidden from queries, `[batch, queries, keys]`: the padding mask `[batch,
/// keys]` (true at padding) or'ed with the attention mask.
fn hidden_positions(
    mask_pad: Option<Tensor<2, Bool>>,
    mask_attn: Option<Tensor<3, Bool>>,
    queries: usize,
) -> Option<Tensor<3, Bool>> {
    let pad = mask_pad.map(|m| {
        let [b, k] = m.dims();
        m.reshape([b, 1, k]).repeat_dim(1, queries)
    });
    match (pad, mask_attn) {
        (Some(p), Some(a)) => Some(p.bool_or(a)),
        (p, a) => p.or(a),
    }
}

/// Multi-head attention from the projections `q` `[batch, queries, d_model]`, `k` and `v`
/// `[batch, keys, d_model]` (heads side by side in each row, `d_model / heads` wide): per head
/// `softmax(scale * q k^T)` with the positions where `hidden` `[batch, queries, keys]` is true
/// set to `fill` first, then dropout with probability `prob`, times `v`; the heads' contexts
/// side by side again, `[batch, queries, d_model]`, before any output projection. On flex one
/// kernel reads and writes the heads in place (strided matrix products, no transposed copies,
/// blocks of queries: [`crate::transformer::self_attention`]) forward and backward; elsewhere
/// burn's ops.
///
/// # Panics
/// When `heads` does not divide `d_model`, or the shapes disagree.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    hidden: Option<Tensor<3, Bool>>,
    heads: usize,
    scale: f32,
    fill: f32,
    prob: f64,
) -> Tensor<3> {
    let [batch, queries, d_model] = q.dims();
    assert!(
        heads > 0 && d_model.is_multiple_of(heads),
        "{heads} heads do not divide a width of {d_model}"
    );
    let [kb, keys, kd] = k.dims();
    assert!(
        kb == batch && kd == d_model && v.dims() == [batch, keys, d_model],
        "attention: queries {:?}, keys {:?}, values {:?}",
        q.dims(),
        k.dims(),
        v.dims()
    );
    let device = q.device();
    if runs_kernels(&device) {
        let (weights, masked, mask) = weights_spec(hidden.clone(), scale, fill, prob, &device);
        let spec = SelfAttentionSpec { heads, weights };
        let out = <Dispatch as KernelOps>::kernel_self_attention(
            q.clone().into_dispatch(),
            k.clone().into_dispatch(),
            v.clone().into_dispatch(),
            mask.into_dispatch(),
            masked,
            spec,
        );
        if let Some(ctx) = out {
            return Tensor::from_dispatch(ctx);
        }
    }
    let d_head = d_model / heads;
    let split = |t: Tensor<3>| {
        let time = t.dims()[1];
        t.reshape([batch, time, heads, d_head]).swap_dims(1, 2)
    };
    let scores = split(q).matmul(split(k).transpose());
    let weights = attention_weights(scores, hidden, scale, fill, prob);
    weights
        .matmul(split(v))
        .swap_dims(1, 2)
        .reshape([batch, queries, d_model])
}

/// Self-attention of burn's `MultiHeadAttention` over `x` `[batch, time, d_model]` through
/// [`attention`].
fn self_attention(
    mha: &MultiHeadAttention,
    x: Tensor<3>,
    hidden: Option<Tensor<3, Bool>>,
) -> Tensor<3> {
    let q = crate::linear_layer(&mha.query, x.clone());
    let k = crate::linear_layer(&mha.key, x.clone());
    let v = crate::linear_layer(&mha.value, x);
    attend(mha, q, k, v, hidden)
}

/// burn's `MultiHeadAttention` from its projections through [`attention`], then its output
/// projection; its dropout on the weights while training under autodiff.
fn attend(
    mha: &MultiHeadAttention,
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    hidden: Option<Tensor<3, Bool>>,
) -> Tensor<3> {
    let training = mha.dropout.training.is_enabled() && q.device().is_autodiff();
    let prob = if training { mha.dropout.prob } else { 0.0 };
    let scale = 1.0 / (mha.d_k as f32).sqrt();
    let fill = mha.min_float as f32;
    let context = attention(q, k, v, hidden, mha.n_heads, scale, fill, prob);
    crate::linear_layer(&mha.output, context)
}

/// burn's position-wise feed-forward block, the inner layer's bias and the GELU through
/// [`bias_gelu`].
fn feed_forward(pwff: &PositionWiseFeedForward, x: Tensor<3>) -> Tensor<3> {
    let inner = &pwff.linear_inner;
    let x = match (&pwff.activation, &inner.bias) {
        (Activation::Gelu(g), Some(bias)) if !g.approximate => {
            let x = burn::tensor::module::linear(x, inner.weight.val(), None);
            bias_gelu(x, bias.val())
        }
        (Activation::Gelu(g), None) if !g.approximate => gelu(crate::linear_layer(inner, x)),
        (other, _) => other.forward(crate::linear_layer(inner, x)),
    };
    let x = dropout_layer(&pwff.dropout, x);
    crate::linear_layer(&pwff.linear_outer, x)
}

/// One layer as burn's `TransformerEncoderLayer::forward`, pre- or post-norm, with `hidden`
/// the combined mask.
fn encoder_layer(
    layer: &TransformerEncoderLayer,
    x: Tensor<3>,
    hidden: Option<Tensor<3, Bool>>,
    epsilon: f64,
) -> Tensor<3> {
    let block = Sublayer::new(layer.norm_first, &layer.dropout, epsilon);
    let x = block.run(x, &layer.norm_2, &layer.norm_1, |x| {
        self_attention(&layer.mha, x, hidden)
    });
    block.run(x, &layer.norm_1, &layer.norm_2, |x| {
        feed_forward(&layer.pwff, x)
    })
}

/// How burn's transformer layers wrap each sub-layer `f` (attention, feed-forward): pre-norm,
/// `x + dropout(f(before(x)))`; post-norm, `after(x + dropout(f(x)))`.
struct Sublayer<'a> {
    norm_first: bool,
    dropout: &'a Dropout,
    epsilon: f64,
}

impl<'a> Sublayer<'a> {
    fn new(norm_first: bool, dropout: &'a Dropout, epsilon: f64) -> Self {
        Self {
            norm_first,
            dropout,
            epsilon,
        }
    }

    fn run(
        &self,
        x: Tensor<3>,
        before: &LayerNorm,
        after: &LayerNorm,
        f: impl FnOnce(Tensor<3>) -> Tensor<3>,
    ) -> Tensor<3> {
        if self.norm_first {
            let residual = f(layer_norm_layer(before, x.clone(), self.epsilon));
            x + dropout_layer(self.dropout, residual)
        } else {
            let residual = f(x.clone());
            layer_norm_layer(
                after,
                x + dropout_layer(self.dropout, residual),
                self.epsilon,
            )
        }
    }
}

/// burn's `TransformerEncoderLayer::forward` through the kernels: `x` `[batch, time,
/// d_model]`, `mask_pad` `[batch, time]` (true at padding), `mask_attn` `[batch, time, time]`
/// (true where a key is hidden), `epsilon` the layer norms' (burn keeps it private; its
/// default is 1e-5). Elsewhere than flex, and for quiet-softmax attention, the layer's own
/// forward.
pub fn transformer_encoder_layer(
    layer: &TransformerEncoderLayer,
    x: Tensor<3>,
    mask_pad: Option<Tensor<2, Bool>>,
    mask_attn: Option<Tensor<3, Bool>>,
    epsilon: f64,
) -> Tensor<3> {
    if !runs_kernels(&x.device()) || layer.mha.quiet_softmax {
        return layer.forward(x, mask_pad, mask_attn);
    }
    let hidden = hidden_positions(mask_pad, mask_attn, x.dims()[1]);
    encoder_layer(layer, x, hidden, epsilon)
}

/// burn's `TransformerEncoder::forward` through [`transformer_encoder_layer`]: the masks are
/// combined once for all layers.
///
/// ```
/// use burn::nn::attention::generate_autoregressive_mask;
/// use burn::nn::transformer::{TransformerEncoderConfig, TransformerEncoderInput};
/// use burn::tensor::{Device, Distribution, Tensor};
///
/// let device = Device::flex();
/// let encoder = TransformerEncoderConfig::new(16, 32, 2, 2).with_dropout(0.0).init(&device);
/// let x = Tensor::<3>::random([2, 5, 16], Distribution::Default, &device);
/// let mask = generate_autoregressive_mask(2, 5, &device);
/// let ours = strata_kernels::transformer_encoder(&encoder, x.clone(), None, Some(mask.clone()), 1e-5);
/// let burns = encoder.forward(TransformerEncoderInput::new(x).mask_attn(mask));
/// assert!(ours.sub(burns).abs().max().into_scalar::<f32>() < 1e-5);
/// ```
pub fn transformer_encoder(
    encoder: &TransformerEncoder,
    x: Tensor<3>,
    mask_pad: Option<Tensor<2, Bool>>,
    mask_attn: Option<Tensor<3, Bool>>,
    epsilon: f64,
) -> Tensor<3> {
    let quiet = encoder.layers.iter().any(|l| l.mha.quiet_softmax);
    if !runs_kernels(&x.device()) || quiet {
        let mut input = TransformerEncoderInput::new(x);
        if let Some(m) = mask_pad {
            input = input.mask_pad(m);
        }
        if let Some(m) = mask_attn {
            input = input.mask_attn(m);
        }
        return encoder.forward(input);
    }
    let hidden = hidden_positions(mask_pad, mask_attn, x.dims()[1]);
    encoder.layers.iter().fold(x, |x, layer| {
        encoder_layer(layer, x, hidden.clone(), epsilon)
    })
}

/// The keys and values a causal (autoregressive) [`TransformerEncoder`] has computed so far,
/// one pair `[batch, positions, d_model]` per layer: what [`transformer_encoder_step`] reads and
/// extends. Empty at first.
#[derive(Debug, Clone, Default)]
pub struct KeyValueCache {
    layers: Vec<(Tensor<3>, Tensor<3>)>,
}

impl KeyValueCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Positions cached.
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |(k, _)| k.dims()[1])
    }

    /// Whether no position is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every position (to start a new sequence, or slide a window).
    pub fn clear(&mut self) {
        self.layers.clear();
    }
}

/// Where `new` queries following `past` cached positions may not look: key `j` is hidden from
/// query `i` when `j > past + i` (`None` for one query, which sees everything).
fn causal_after(batch: usize, past: usize, new: usize, device: &Device) -> Option<Tensor<3, Bool>> {
    (new > 1).then(|| {
        let keys = past + new;
        let row: Vec<bool> = (0..new)
            .flat_map(|i| (0..keys).map(move |j| j > past + i))
            .collect();
        let all: Vec<bool> = (0..batch).flat_map(|_| row.iter().copied()).collect();
        Tensor::from_data(TensorData::new(all, [batch, new, keys]), device)
    })
}

/// One layer of [`transformer_encoder_step`]: the new positions' outputs and the layer's keys
/// and values including theirs.
fn encoder_layer_step(
    layer: &TransformerEncoderLayer,
    x: Tensor<3>,
    cached: Option<(Tensor<3>, Tensor<3>)>,
    epsilon: f64,
) -> (Tensor<3>, (Tensor<3>, Tensor<3>)) {
    let [batch, new, _] = x.dims();
    let device = x.device();
    let mut kept = None;
    let block = Sublayer::new(layer.norm_first, &layer.dropout, epsilon);
    let x = block.run(x, &layer.norm_2, &layer.norm_1, |x| {
        let mha = &layer.mha;
        let q = crate::linear_layer(&mha.query, x.clone());
        let (k, v) = (
            crate::linear_layer(&mha.key, x.clone()),
            crate::linear_layer(&mha.value, x),
        );
        let (k, v, past) = match cached {
            Some((ck, cv)) => {
                let past = ck.dims()[1];
                let joined = |a, b| Tensor::cat(vec![a, b], 1);
                (joined(ck, k), joined(cv, v), past)
            }
            None => (k, v, 0),
        };
        let hidden = causal_after(batch, past, new, &device);
        kept = Some((k.clone(), v.clone()));
        attend(mha, q, k, v, hidden)
    });
    let x = block.run(x, &layer.norm_1, &layer.norm_2, |x| {
        feed_forward(&layer.pwff, x)
    });
    (x, kept.expect("the attention ran"))
}

/// The next positions of a causal encoder, for generation: `x` `[batch, new, d_model]` holds
/// the inputs of positions `cache.len()..cache.len() + new`; each attends to every cached
/// position and to the new ones up to itself. Returns their outputs `[batch, new, d_model]`
/// and appends their keys and values to `cache`. The outputs are the last `new` positions of
/// [`transformer_encoder`] over the whole sequence with the causal mask, within rounding.
///
/// Each new position costs its own projections, layer norms and feed-forward layers and one
/// row of attention over the positions so far; burn's
/// `TransformerEncoder::forward_autoregressive_inference` recomputes the attention of every
/// position at every step and copies every layer's outputs. Dropout runs as in
/// [`transformer_encoder`] (off in evaluation and without autodiff). On flex through the
/// kernels (layer norm, GELU, attention); elsewhere burn's ops.
///
/// ```
/// use burn::nn::attention::generate_autoregressive_mask;
/// use burn::nn::transformer::TransformerEncoderConfig;
/// use burn::tensor::{Device, Distribution, Tensor};
/// use strata_kernels::KeyValueCache;
///
/// let device = Device::flex();
/// let encoder = TransformerEncoderConfig::new(16, 32, 2, 2).with_dropout(0.0).init(&device);
/// let x = Tensor::<3>::random([1, 6, 16], Distribution::Default, &device);
/// let whole = strata_kernels::transformer_encoder(
///     &encoder, x.clone(), None, Some(generate_autoregressive_mask(1, 6, &device)), 1e-5,
/// );
/// let mut cache = KeyValueCache::new();
/// let prompt = strata_kernels::transformer_encoder_step(&encoder, x.clone().narrow(1, 0, 5), &mut cache, 1e-5);
/// let last = strata_kernels::transformer_encoder_step(&encoder, x.narrow(1, 5, 1), &mut cache, 1e-5);
/// assert_eq!(cache.len(), 6);
/// let gap = whole.narrow(1, 5, 1).sub(last).abs().max().into_scalar::<f32>();
/// assert!(gap < 1e-5);
/// # let _ = prompt;
/// ```
///
/// # Panics
/// When a layer uses quiet softmax (not supported here), or `x`'s batch or width disagree with
/// the cache's or the encoder's.
pub fn transformer_encoder_step(
    encoder: &TransformerEncoder,
    x: Tensor<3>,
    cache: &mut KeyValueCache,
    epsilon: f64,
) -> Tensor<3> {
    assert!(
        encoder.layers.iter().all(|l| !l.mha.quiet_softmax),
        "transformer_encoder_step: quiet softmax is not supported"
    );
    let mut cached = std::mem::take(&mut cache.layers).into_iter();
    let mut layers = Vec::with_capacity(encoder.layers.len());
    let mut x = x;
    for layer in &encoder.layers {
        let (y, kv) = encoder_layer_step(layer, x, cached.next(), epsilon);
        layers.push(kv);
        x = y;
    }
    cache.layers = layers;
    x
}

/// The masks of a [`transformer_decoder`] call, as burn's `TransformerDecoderInput` takes them:
/// padding `[batch, positions]` (true at padding) and attention masks `[batch, queries, keys]`
/// (true where a key is hidden), for the target's self-attention and for the cross-attention
/// over the memory.
#[derive(Debug, Clone, Default)]
pub struct DecoderMasks {
    /// The target's padding.
    pub target_pad: Option<Tensor<2, Bool>>,
    /// The target's self-attention mask (usually causal).
    pub target_attn: Option<Tensor<3, Bool>>,
    /// The memory's padding.
    pub memory_pad: Option<Tensor<2, Bool>>,
    /// The cross-attention mask.
    pub memory_attn: Option<Tensor<3, Bool>>,
}

/// One layer as burn's `TransformerDecoderLayer::forward`, with the masks combined.
fn decoder_layer(
    layer: &TransformerDecoderLayer,
    x: Tensor<3>,
    memory: &Tensor<3>,
    (target_hidden, memory_hidden): (&Option<Tensor<3, Bool>>, &Option<Tensor<3, Bool>>),
    epsilon: f64,
) -> Tensor<3> {
    let block = Sublayer::new(layer.norm_first, &layer.dropout, epsilon);
    let x = block.run(x, &layer.norm_3, &layer.norm_1, |x| {
        self_attention(&layer.self_attn, x, target_hidden.clone())
    });
    let x = block.run(x, &layer.norm_1, &layer.norm_2, |x| {
        let mha = &layer.cross_attn;
        let (k, v) = (
            crate::linear_layer(&mha.key, memory.clone()),
            crate::linear_layer(&mha.value, memory.clone()),
        );
        let q = crate::linear_layer(&mha.query, x);
        attend(mha, q, k, v, memory_hidden.clone())
    });
    block.run(x, &layer.norm_2, &layer.norm_3, |x| {
        feed_forward(&layer.pwff, x)
    })
}

/// burn's `TransformerDecoder::forward` through the kernels: `target` `[batch, target_len,
/// d_model]` attends to itself and then to `memory` `[batch, memory_len, d_model]` (the
/// encoder's output) in every layer, with `masks`; `epsilon` the layer norms' (burn's default
/// is 1e-5). The self- and cross-attention, layer norms, GELU and dropout run on the kernels on
/// flex; elsewhere, and for quiet-softmax attention, the module's own forward.
///
/// ```
/// use burn::nn::attention::generate_autoregressive_mask;
/// use burn::nn::transformer::{TransformerDecoderConfig, TransformerDecoderInput};
/// use burn::tensor::{Device, Distribution, Tensor};
/// use strata_kernels::DecoderMasks;
///
/// let device = Device::flex();
/// let decoder = TransformerDecoderConfig::new(16, 32, 2, 2).with_dropout(0.0).init(&device);
/// let target = Tensor::<3>::random([2, 5, 16], Distribution::Default, &device);
/// let memory = Tensor::<3>::random([2, 7, 16], Distribution::Default, &device);
/// let causal = generate_autoregressive_mask(2, 5, &device);
/// let masks = DecoderMasks { target_attn: Some(causal.clone()), ..DecoderMasks::default() };
/// let ours = strata_kernels::transformer_decoder(&decoder, target.clone(), memory.clone(), masks, 1e-5);
/// let burns = decoder.forward(TransformerDecoderInput::new(target, memory).target_mask_attn(causal));
/// assert!(ours.sub(burns).abs().max().into_scalar::<f32>() < 1e-5);
/// ```
pub fn transformer_decoder(
    decoder: &TransformerDecoder,
    target: Tensor<3>,
    memory: Tensor<3>,
    masks: DecoderMasks,
    epsilon: f64,
) -> Tensor<3> {
    let quiet = decoder
        .layers
        .iter()
        .any(|l| l.self_attn.quiet_softmax || l.cross_attn.quiet_softmax);
    if !runs_kernels(&target.device()) || quiet {
        let mut input = TransformerDecoderInput::new(target, memory);
        if let Some(m) = masks.target_pad {
            input = input.target_mask_pad(m);
        }
        if let Some(m) = masks.target_attn {
            input = input.target_mask_attn(m);
        }
        if let Some(m) = masks.memory_pad {
            input = input.memory_mask_pad(m);
        }
        if let Some(m) = masks.memory_attn {
            input = input.memory_mask_attn(m);
        }
        return decoder.forward(input);
    }
    let queries = target.dims()[1];
    let target_hidden = hidden_positions(masks.target_pad, masks.target_attn, queries);
    let memory_hidden = hidden_positions(masks.memory_pad, masks.memory_attn, queries);
    decoder.layers.iter().fold(target, |x, layer| {
        decoder_layer(layer, x, &memory, (&target_hidden, &memory_hidden), epsilon)
    })
}
