//! Spectral normalisation (Miyato et al. 2018): a layer's weight divided by an estimate of its
//! largest singular value, so that the layer is (about) 1-Lipschitz. The estimate comes from
//! power iteration on the weight as a matrix `[d_out, d_in]` (a convolution's kernel flattened
//! to `[out_channels, in_channels * k * k]`), with vectors `u` (`d_out`) and `v` (`d_in`) kept
//! between calls, as PyTorch's `torch.nn.utils.parametrizations.spectral_norm` does:
//!
//! - in training (an autodiff device, the weight taking gradients), each call first runs
//!   `n_power_iterations` steps `u = normalize(W v)`, `v = normalize(Wᵀ u)` without gradients
//!   and stores `u` and `v`;
//! - then `sigma = uᵀ W v`, with gradients through `W` only, and the weight used is `W / sigma`.
//!
//! [`SnLinear`] and [`SnConv2d`] wrap burn's `Linear` and `Conv2d` with an optional
//! normalisation; [`SpectralNorm::sigma`] (with [`trains`]) serves any other layer.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use strata_layers::SnLinearConfig;
//! let device = Device::flex().autodiff();
//! let layer = SnLinearConfig::new(6, 4).init(&device);
//! let y = layer.forward(Tensor::<2>::ones([2, 6], &device));
//! assert_eq!(y.dims(), [2, 4]);
//! // After a few training calls sigma is the largest singular value, so the normalised
//! // weight's is 1.
//! for _ in 0..30 {
//!     layer.forward(Tensor::<2>::ones([2, 6], &device));
//! }
//! let w = layer.normalized_weight();
//! let sigma: f32 = layer.sn.as_ref().unwrap().sigma(w.transpose(), false).into_scalar();
//! assert!((sigma - 1.0).abs() < 1e-3, "{sigma}");
//! ```

use burn::config::Config;
use burn::module::{Module, RunningState};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use strata_kernels::conv2d;

/// Configuration of a [`SpectralNorm`] for a weight of `d_out` x `d_in`.
#[derive(Config, Debug)]
pub struct SpectralNormConfig {
    /// Rows of the weight as a matrix (output units or channels).
    pub d_out: usize,
    /// Columns (input units, or input channels times the kernel's size).
    pub d_in: usize,
    /// Power-iteration steps per training call, default 1 (PyTorch's).
    #[config(default = 1)]
    pub n_power_iterations: usize,
    /// Floor of the norms when normalising, default 1e-12 (PyTorch's).
    #[config(default = 1e-12)]
    pub epsilon: f64,
}

/// The power-iteration state of one weight.
#[derive(Module, Debug)]
pub struct SpectralNorm {
    /// Left singular vector estimate `[d_out]` (PyTorch `_u`).
    pub u: RunningState<Tensor<1>>,
    /// Right singular vector estimate `[d_in]` (PyTorch `_v`).
    pub v: RunningState<Tensor<1>>,
    /// Power-iteration steps per training call.
    pub n_power_iterations: usize,
    /// Floor of the norms.
    pub epsilon: f64,
}

impl SpectralNormConfig {
    /// Builds the state: `u` and `v` drawn from `N(0, 1)` (the device's generator) and
    /// normalised. Call [`SpectralNorm::warm_up`] with the weight to start from PyTorch's 15
    /// initial steps.
    ///
    /// # Panics
    /// When a size is 0.
    pub fn init(&self, device: &Device) -> SpectralNorm {
        assert!(
            self.d_out > 0 && self.d_in > 0,
            "spectral norm needs a weight"
        );
        let draw = |n: usize| {
            let x = Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), device);
            normalize(x, self.epsilon)
        };
        SpectralNorm {
            u: RunningState::new(draw(self.d_out)),
            v: RunningState::new(draw(self.d_in)),
            n_power_iterations: self.n_power_iterations,
            epsilon: self.epsilon,
        }
    }
}

/// `x / max(|x|, eps)`.
fn normalize(x: Tensor<1>, eps: f64) -> Tensor<1> {
    let norm = x.clone().powf_scalar(2.0).sum().sqrt().clamp_min(eps);
    x / norm
}

impl SpectralNorm {
    /// Runs `steps` power-iteration steps on `weight` (`[d_out, d_in]`, no gradients) and
    /// stores `u` and `v`.
    pub fn warm_up(&self, weight: Tensor<2>, steps: usize) {
        let w = weight.detach();
        let device = w.device();
        let mut u = self.u.value_sync().to_device(&device);
        let mut v = self.v.value_sync().to_device(&device);
        for _ in 0..steps {
            u = normalize(matvec(w.clone(), v), self.epsilon);
            v = normalize(matvec(w.clone().transpose(), u.clone()), self.epsilon);
        }
        self.u.update(u.detach());
        self.v.update(v.detach());
        // Flush at once: burn's `RunningState` keeps an update pending until the next
        // `value_sync`, and records (checkpoints, `into_record`) read the flushed value only,
        // so a pending update would be lost in a save and win over a load.
        self.u.value_sync();
        self.v.value_sync();
    }

    /// The estimate of `weight`'s largest singular value, `uᵀ W v` (`[1]`), after this call's
    /// power iteration when `training` (see [`trains`]).
    ///
    /// # Shapes
    /// - `weight`: `[d_out, d_in]`
    /// - returns `[1]`
    ///
    /// # Panics
    /// When `weight` is not `d_out` x `d_in`.
    pub fn sigma(&self, weight: Tensor<2>, training: bool) -> Tensor<1> {
        if training {
            self.warm_up(weight.clone(), self.n_power_iterations);
        }
        let device = weight.device();
        let u = self.u.value_sync().to_device(&device);
        let v = self.v.value_sync().to_device(&device);
        (matvec(weight, v) * u).sum()
    }
}

/// Whether a layer whose parameter is `param` is training: on an autodiff device, the
/// parameter taking gradients (as [`BatchNorm2d`](crate::BatchNorm2d) decides).
pub fn trains<const D: usize>(param: &Tensor<D>) -> bool {
    param.device().is_autodiff() && param.is_require_grad()
}

/// `W x` for `W` `[m, n]` and `x` `[n]`.
fn matvec(w: Tensor<2>, x: Tensor<1>) -> Tensor<1> {
    let [m, _] = w.dims();
    w.matmul(x.unsqueeze_dim(1)).reshape([m])
}

/// Configuration of an [`SnLinear`].
#[derive(Config, Debug)]
pub struct SnLinearConfig {
    /// Input units.
    pub d_input: usize,
    /// Output units.
    pub d_output: usize,
    /// Spectral normalisation of the weight, default on.
    #[config(default = true)]
    pub spectral_norm: bool,
    /// With a bias, default on.
    #[config(default = true)]
    pub bias: bool,
    /// The weight's initialisation, default burn's.
    #[config(default = "None")]
    pub initializer: Option<Initializer>,
}

/// A linear layer whose weight is optionally spectrally normalised.
#[derive(Module, Debug)]
pub struct SnLinear {
    /// The layer (its weight is `[d_input, d_output]`, burn's layout; the normalisation treats
    /// its transpose, PyTorch's `[out, in]`).
    pub linear: Linear,
    /// The power iteration, when normalised.
    pub sn: Option<SpectralNorm>,
}

impl SnLinearConfig {
    /// Builds the layer (burn's default initialisation), and the normalisation warmed up by 15
    /// steps as PyTorch does.
    pub fn init(&self, device: &Device) -> SnLinear {
        let mut c = LinearConfig::new(self.d_input, self.d_output).with_bias(self.bias);
        if let Some(init) = &self.initializer {
            c = c.with_initializer(init.clone());
        }
        let linear = c.init(device);
        let sn = self.spectral_norm.then(|| {
            let sn = SpectralNormConfig::new(self.d_output, self.d_input).init(device);
            sn.warm_up(linear.weight.val().transpose(), 15);
            sn
        });
        SnLinear { linear, sn }
    }
}

impl SnLinear {
    /// The weight the layer applies (`[d_input, d_output]`), normalised when it is, after
    /// this call's power iteration in training.
    pub fn normalized_weight(&self) -> Tensor<2> {
        let w = self.linear.weight.val();
        match &self.sn {
            Some(sn) => {
                let sigma = sn.sigma(w.clone().transpose(), trains(&w));
                w / sigma.unsqueeze_dim(0)
            }
            None => w,
        }
    }

    /// Applies the layer.
    ///
    /// # Shapes
    /// - `input`: `[batch, d_input]`
    /// - returns `[batch, d_output]`
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        if self.sn.is_none() {
            return self.linear.forward(input);
        }
        let out = input.matmul(self.normalized_weight());
        match &self.linear.bias {
            Some(b) => out + b.val().unsqueeze_dim(0),
            None => out,
        }
    }
}

/// Configuration of an [`SnConv2d`]: a square kernel with explicit symmetric padding.
#[derive(Config, Debug)]
pub struct SnConv2dConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel side.
    pub kernel_size: usize,
    /// Stride, default 1.
    #[config(default = 1)]
    pub stride: usize,
    /// Zero padding on each side, default 0.
    #[config(default = 0)]
    pub padding: usize,
    /// Spectral normalisation of the kernel, default on.
    #[config(default = true)]
    pub spectral_norm: bool,
    /// With a bias, default on.
    #[config(default = true)]
    pub bias: bool,
    /// The kernel's initialisation, default burn's.
    #[config(default = "None")]
    pub initializer: Option<Initializer>,
}

/// A 2-D convolution whose kernel is optionally spectrally normalised.
#[derive(Module, Debug)]
pub struct SnConv2d {
    /// The convolution.
    pub conv: Conv2d,
    /// The power iteration, when normalised.
    pub sn: Option<SpectralNorm>,
    /// Zero padding on each side.
    pub padding: usize,
}

impl SnConv2dConfig {
    /// Builds the layer (burn's default initialisation), and the normalisation warmed up by 15
    /// steps as PyTorch does.
    pub fn init(&self, device: &Device) -> SnConv2d {
        let k = self.kernel_size;
        let mut c = Conv2dConfig::new([self.in_channels, self.out_channels], [k, k])
            .with_stride([self.stride, self.stride])
            .with_padding(PaddingConfig2d::Explicit(
                self.padding,
                self.padding,
                self.padding,
                self.padding,
            ))
            .with_bias(self.bias);
        if let Some(init) = &self.initializer {
            c = c.with_initializer(init.clone());
        }
        let conv = c.init(device);
        let sn = self.spectral_norm.then(|| {
            let sn =
                SpectralNormConfig::new(self.out_channels, self.in_channels * k * k).init(device);
            sn.warm_up(flat_kernel(conv.weight.val()), 15);
            sn
        });
        SnConv2d {
            conv,
            sn,
            padding: self.padding,
        }
    }
}

/// A kernel `[out, in, kh, kw]` as the matrix `[out, in * kh * kw]`.
fn flat_kernel(w: Tensor<4>) -> Tensor<2> {
    let [o, i, kh, kw] = w.dims();
    w.reshape([o, i * kh * kw])
}

impl SnConv2d {
    /// Applies the convolution.
    ///
    /// # Shapes
    /// - `input`: `[batch, in_channels, height, width]`
    /// - returns `[batch, out_channels, height', width']`
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let Some(sn) = &self.sn else {
            return strata_kernels::conv2d_layer(&self.conv, input);
        };
        let c = &self.conv;
        let w = c.weight.val();
        let sigma = sn.sigma(flat_kernel(w.clone()), trains(&w));
        let w = w / sigma.reshape([1, 1, 1, 1]);
        let p = self.padding;
        let options =
            ConvOptions::new_with_padding(c.stride, [(p, p), (p, p)], c.dilation, c.groups);
        conv2d(input, w, c.bias.as_ref().map(|b| b.val()), options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_iteration_finds_the_largest_singular_value() {
        let device = Device::flex();
        // Singular values 3 and 1: W = diag(3, 1) rotated.
        let w = Tensor::<2>::from_floats([[2.0, 1.0], [1.0, 2.0]], &device);
        let sn = SpectralNormConfig::new(2, 2).init(&device);
        sn.warm_up(w.clone(), 50);
        let s: f32 = sn.sigma(w, false).into_scalar();
        assert!((s - 3.0).abs() < 1e-4, "{s}");
    }

    #[test]
    fn evaluation_does_not_move_the_vectors_and_training_does() {
        use strata_tensor::convert::to_vec;
        let device = Device::flex().autodiff();
        let layer = SnConv2dConfig::new(2, 3, 3).with_padding(1).init(&device);
        let sn = layer.sn.as_ref().unwrap();
        // Start from a vector far from the singular one, so that one step moves it.
        sn.u.update(Tensor::from_floats([1.0, 0.0, 0.0], &device));
        let u0 = to_vec(sn.u.value_sync());
        let x = Tensor::<4>::ones([1, 2, 5, 5], &device);
        let eval = layer.valid();
        let y = eval.forward(x.clone().inner());
        assert_eq!(y.dims(), [1, 3, 5, 5]);
        assert_eq!(u0, to_vec(eval.sn.as_ref().unwrap().u.value_sync()));
        layer.forward(x);
        assert_ne!(u0, to_vec(layer.sn.as_ref().unwrap().u.value_sync()));
    }

    #[test]
    fn without_normalisation_the_layers_are_burns() {
        let device = Device::flex();
        let layer = SnLinearConfig::new(3, 2)
            .with_spectral_norm(false)
            .init(&device);
        let x = Tensor::<2>::ones([1, 3], &device);
        let a: Vec<f32> = strata_tensor::convert::to_vec(layer.forward(x.clone()));
        let b: Vec<f32> = strata_tensor::convert::to_vec(layer.linear.forward(x));
        assert_eq!(a, b);
    }
}
