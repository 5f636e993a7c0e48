//! Capsule layers (Sabour, Frosst and Hinton 2017, "Dynamic routing between capsules"):
//! [`squash`], [`PrimaryCaps`] (a convolution whose channels are read as capsules), and a
//! [`CapsuleLayer`] whose every input capsule `i` predicts every output capsule `j` through
//! its own matrix `W_ij`, the predictions combined by routing-by-agreement ([`route`]).
//!
//! Routing (the paper's Procedure 1), for each example: logits `b_ij = 0`; then `r` times:
//! `c_i = softmax(b_i)` over the parents `j`; `s_j = sum_i c_ij u_hat_ij`; `v_j = squash(s_j)`;
//! and, except after the last pass, `b_ij += u_hat_ij . v_j`. Gradients flow through every
//! pass (nothing is detached), as the procedure is written.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use strata_layers::{CapsuleLayerConfig, PrimaryCapsConfig};
//! let device = Device::flex();
//! // 16 channels of 12x12 maps -> 4 capsule types of 8 dimensions on a 4x4 grid (9x9, stride 2).
//! let primary = PrimaryCapsConfig::new(16, 4, 8).init(&device);
//! let u = primary.forward(Tensor::<4>::ones([2, 16, 12, 12], &device));
//! assert_eq!(u.dims(), [2, 4 * 2 * 2, 8]);
//! let classes = CapsuleLayerConfig::new(16, 8, 10, 16).with_routing(3).init(&device);
//! let routed = classes.forward(u);
//! assert_eq!(routed.capsules.dims(), [2, 10, 16]);
//! // Coupling coefficients sum to 1 over the parents.
//! let sums = strata_tensor::convert::to_vec(routed.coupling.sum_dim(2));
//! assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5));
//! ```

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use strata_kernels::conv2d_layer;

/// The constant under the square root in [`squash`]: `|s|` is computed as
/// `sqrt(|s|^2 + SQUASH_EPS)`, so that a zero vector squashes to zero with finite gradients.
pub const SQUASH_EPS: f32 = 1e-8;

/// The capsule non-linearity `v = |s|^2 / (1 + |s|^2) * s / |s|` along `dim`: it keeps the
/// direction of `s` and maps its length into `[0, 1)`. See [`SQUASH_EPS`].
///
/// # Shapes
/// - `s`: any shape; `dim` holds the capsules' components
/// - returns the shape of `s`
pub fn squash<const D: usize>(s: Tensor<D>, dim: usize) -> Tensor<D> {
    let sq = s.clone().powi_scalar(2).sum_dim(dim);
    let scale = sq.clone() / (sq.clone() + 1.0) / (sq + SQUASH_EPS).sqrt();
    s * scale
}

/// The lengths of capsules along their last dimension (the class scores of a capsule network).
///
/// # Shapes
/// - `capsules`: `[batch, n_capsules, d_capsule]`
/// - returns `[batch, n_capsules]`
pub fn capsule_lengths(capsules: Tensor<3>) -> Tensor<2> {
    let [b, n, _] = capsules.dims();
    (capsules.powi_scalar(2).sum_dim(2) + SQUASH_EPS)
        .sqrt()
        .reshape([b, n])
}

/// Output capsules of routing and how the inputs were coupled to them.
#[derive(Debug, Clone)]
pub struct Routed {
    /// The output capsules `v_j`: `[batch, n_out, d_out]`.
    pub capsules: Tensor<3>,
    /// The coupling coefficients `c_ij` of the last pass: `[batch, n_in, n_out]`, each row
    /// summing to 1 over the parents.
    pub coupling: Tensor<3>,
}

/// Routing-by-agreement over predictions `u_hat` (see the module page) with `iterations`
/// passes; one pass is uniform coupling (`c_ij = 1 / n_out`).
///
/// # Shapes
/// - `u_hat`: `[batch, n_in, n_out, d_out]`
/// - returns capsules `[batch, n_out, d_out]` and coupling `[batch, n_in, n_out]`
///
/// # Panics
/// When `iterations` is 0 (configs refuse it before).
pub fn route(u_hat: Tensor<4>, iterations: usize) -> Routed {
    assert!(iterations >= 1, "routing needs at least one iteration");
    let [b, n_in, n_out, d] = u_hat.dims();
    let mut logits = Tensor::<3>::zeros([b, n_in, n_out], &u_hat.device());
    let mut pass = 1;
    loop {
        let coupling = softmax(logits.clone(), 2);
        let s = (coupling.clone().unsqueeze_dim::<4>(3) * u_hat.clone())
            .sum_dim(1)
            .reshape([b, n_out, d]);
        let capsules = squash(s, 2);
        if pass == iterations {
            return Routed { capsules, coupling };
        }
        let agreement = (u_hat.clone() * capsules.unsqueeze_dim::<4>(1))
            .sum_dim(3)
            .reshape([b, n_in, n_out]);
        logits = logits + agreement;
        pass += 1;
    }
}

/// Configuration of [`PrimaryCaps`]: a `kernel_size` convolution (no padding) of
/// `n_types * d_capsule` channels, read as `n_types` capsule types of `d_capsule` dimensions
/// at every position of its output grid, then squashed.
#[derive(Config, Debug)]
pub struct PrimaryCapsConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Capsule types (the paper's 32).
    pub n_types: usize,
    /// Dimensions of a capsule (the paper's 8).
    pub d_capsule: usize,
    /// Square kernel side, default 9.
    #[config(default = 9)]
    pub kernel_size: usize,
    /// Stride, default 2.
    #[config(default = 2)]
    pub stride: usize,
}

impl PrimaryCapsConfig {
    /// The side of the output grid for an input side of `side`, `None` when the kernel does
    /// not fit.
    pub fn output_side(&self, side: usize) -> Option<usize> {
        (side >= self.kernel_size && self.stride > 0)
            .then(|| (side - self.kernel_size) / self.stride + 1)
    }

    /// Builds the layer (burn's default convolution initialisation).
    pub fn init(&self, device: &Device) -> PrimaryCaps {
        PrimaryCaps {
            conv: Conv2dConfig::new(
                [self.in_channels, self.n_types * self.d_capsule],
                [self.kernel_size, self.kernel_size],
            )
            .with_stride([self.stride, self.stride])
            .with_padding(PaddingConfig2d::Valid)
            .init(device),
            n_types: self.n_types,
            d_capsule: self.d_capsule,
        }
    }
}

/// Primary capsules: see [`PrimaryCapsConfig`].
#[derive(Module, Debug)]
pub struct PrimaryCaps {
    /// The convolution; its output channel `t * d_capsule + k` is component `k` of type `t`.
    pub conv: Conv2d,
    /// Capsule types.
    #[module(skip)]
    pub n_types: usize,
    /// Dimensions of a capsule.
    #[module(skip)]
    pub d_capsule: usize,
}

impl PrimaryCaps {
    /// The squashed capsules, ordered by type, then row, then column of the grid.
    ///
    /// # Shapes
    /// - `input`: `[batch, in_channels, height, width]`
    /// - returns `[batch, n_types * grid_h * grid_w, d_capsule]`
    pub fn forward(&self, input: Tensor<4>) -> Tensor<3> {
        let x = conv2d_layer(&self.conv, input);
        let [b, _, h, w] = x.dims();
        let x: Tensor<5> = x.reshape([b, self.n_types, self.d_capsule, h, w]);
        let x = x
            .permute([0, 1, 3, 4, 2])
            .reshape([b, self.n_types * h * w, self.d_capsule]);
        squash(x, 2)
    }
}

/// Configuration of a [`CapsuleLayer`].
#[derive(Config, Debug)]
pub struct CapsuleLayerConfig {
    /// Input capsules.
    pub n_in: usize,
    /// Dimensions of an input capsule.
    pub d_in: usize,
    /// Output capsules (one per class in a capsule network).
    pub n_out: usize,
    /// Dimensions of an output capsule.
    pub d_out: usize,
    /// Routing iterations, default 3 (the paper's).
    #[config(default = 3)]
    pub routing: usize,
    /// Standard deviation of the normal initialisation of `W`, default 0.01.
    #[config(default = 0.01)]
    pub init_std: f64,
}

impl CapsuleLayerConfig {
    /// Builds the layer.
    ///
    /// # Panics
    /// When `routing` is 0 or a size is 0 (validate user input before; see
    /// [`CapsuleLayerConfig::check`]).
    pub fn init(&self, device: &Device) -> CapsuleLayer {
        if let Err(e) = self.check() {
            panic!("{e}");
        }
        CapsuleLayer {
            weight: Initializer::Normal {
                mean: 0.0,
                std: self.init_std,
            }
            .init([self.n_in, self.n_out, self.d_out, self.d_in], device),
            routing: self.routing,
        }
    }

    /// Checks the sizes and the routing iterations.
    ///
    /// # Errors
    /// A message naming the first invalid value.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.routing == 0 {
            return Err("routing needs at least 1 iteration, got 0".into());
        }
        for (name, v) in [
            ("n_in", self.n_in),
            ("d_in", self.d_in),
            ("n_out", self.n_out),
            ("d_out", self.d_out),
        ] {
            if v == 0 {
                return Err(format!("capsule layer: {name} must be >= 1"));
            }
        }
        if !(self.init_std.is_finite() && self.init_std > 0.0) {
            return Err(format!(
                "capsule layer: init_std must be positive, got {}",
                self.init_std
            ));
        }
        Ok(())
    }
}

/// A fully connected capsule layer with routing-by-agreement.
#[derive(Module, Debug)]
pub struct CapsuleLayer {
    /// The transforms `W_ij`: `[n_in, n_out, d_out, d_in]`.
    pub weight: Param<Tensor<4>>,
    /// Routing iterations.
    #[module(skip)]
    pub routing: usize,
}

impl CapsuleLayer {
    /// The predictions `u_hat_ij = W_ij u_i`.
    ///
    /// # Shapes
    /// - `input`: `[batch, n_in, d_in]`
    /// - returns `[batch, n_in, n_out, d_out]`
    pub fn predictions(&self, input: Tensor<3>) -> Tensor<4> {
        let [n_in, n_out, d_out, d_in] = self.weight.dims();
        let b = input.dims()[0];
        let w = self
            .weight
            .val()
            .permute([0, 3, 1, 2])
            .reshape([n_in, d_in, n_out * d_out]);
        input
            .swap_dims(0, 1)
            .matmul(w)
            .reshape([n_in, b, n_out, d_out])
            .swap_dims(0, 1)
    }

    /// Routes the input capsules to the output capsules.
    ///
    /// # Shapes
    /// - `input`: `[batch, n_in, d_in]`
    /// - returns capsules `[batch, n_out, d_out]` and coupling `[batch, n_in, n_out]`
    pub fn forward(&self, input: Tensor<3>) -> Routed {
        route(self.predictions(input), self.routing)
    }

    /// Floats held by the routing of a batch of `batch` (predictions, and per pass the
    /// weighted predictions and the agreements that autodiff keeps).
    pub fn routing_floats(&self, batch: usize) -> usize {
        let [n_in, n_out, d_out, _] = self.weight.dims();
        batch * n_in * n_out * d_out * (1 + 2 * self.routing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        strata_tensor::convert::to_vec(t)
    }

    fn tensor<const D: usize>(v: &[f32], shape: [usize; D]) -> Tensor<D> {
        Tensor::<1>::from_floats(v, &Device::flex()).reshape(shape)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn squash_keeps_direction_and_bounds_the_norm(
            v in proptest::collection::vec(-50.0f32..50.0, 1..24),
        ) {
            let d = v.len();
            let out = values(squash(tensor(&v, [1, d]), 1));
            let n_in = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            let n_out = out.iter().map(|x| x * x).sum::<f32>().sqrt();
            prop_assert!((0.0..1.0).contains(&n_out), "norm {n_out}");
            let expected = n_in * n_in / (1.0 + n_in * n_in);
            prop_assert!((n_out - expected).abs() < 1e-4, "{n_out} vs {expected}");
            if n_in > 1e-3 {
                // Same direction: the cosine is 1.
                let dot: f32 = v.iter().zip(&out).map(|(a, b)| a * b).sum();
                prop_assert!((dot / (n_in * n_out) - 1.0).abs() < 1e-4);
            }
        }

        #[test]
        fn coupling_sums_to_one_over_parents(
            seed in 0u64..1000,
            n_in in 1usize..12,
            n_out in 1usize..6,
            routing in 1usize..5,
        ) {
            let device = Device::flex();
            device.seed(seed);
            let u_hat = Tensor::<4>::random(
                [2, n_in, n_out, 3],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &device,
            );
            let routed = route(u_hat, routing);
            for s in values(routed.coupling.sum_dim(2)) {
                prop_assert!((s - 1.0).abs() < 1e-5, "sum {s}");
            }
            for len in values(capsule_lengths(routed.capsules)) {
                prop_assert!((0.0..1.0).contains(&len));
            }
        }

        #[test]
        fn shapes_for_any_input_size(
            side in 9usize..30,
            channels in 1usize..4,
            n_types in 1usize..4,
            d in 1usize..5,
        ) {
            let device = Device::flex();
            let c = PrimaryCapsConfig::new(channels, n_types, d);
            let g = c.output_side(side).unwrap();
            let u = c.init(&device).forward(Tensor::<4>::ones([2, channels, side, side + 1], &device));
            let g2 = c.output_side(side + 1).unwrap();
            prop_assert_eq!(u.dims(), [2, n_types * g * g2, d]);
            let layer = CapsuleLayerConfig::new(n_types * g * g2, d, 3, 5).init(&device);
            prop_assert_eq!(layer.forward(u).capsules.dims(), [2, 3, 5]);
        }
    }

    #[test]
    fn one_iteration_is_uniform_coupling() {
        let device = Device::flex();
        device.seed(3);
        let u_hat = Tensor::<4>::random(
            [3, 7, 4, 5],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let routed = route(u_hat.clone(), 1);
        for c in values(routed.coupling) {
            assert!((c - 0.25).abs() < 1e-6);
        }
        let uniform = squash(u_hat.sum_dim(1).reshape([3, 4, 5]) / 4.0, 2);
        for (a, b) in values(routed.capsules).iter().zip(values(uniform)) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn predictions_apply_each_pair_s_matrix() {
        let device = Device::flex();
        let layer = CapsuleLayerConfig::new(2, 3, 2, 2).init(&device);
        let w = values(layer.weight.val());
        let u = [1.0, 2.0, 3.0, -1.0, 0.5, 0.0];
        let got = values(layer.predictions(tensor(&u, [1, 2, 3])));
        for i in 0..2 {
            for j in 0..2 {
                for o in 0..2 {
                    let want: f32 = (0..3)
                        .map(|k| w[((i * 2 + j) * 2 + o) * 3 + k] * u[i * 3 + k])
                        .sum();
                    let at = (i * 2 + j) * 2 + o;
                    assert!((got[at] - want).abs() < 1e-6);
                }
            }
        }
    }

    #[test]
    fn zero_routing_is_refused_by_check() {
        let c = CapsuleLayerConfig::new(4, 8, 10, 16).with_routing(0);
        assert!(c.check().unwrap_err().contains("routing"));
    }
}
