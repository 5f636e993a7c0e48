//! Batch normalisation that behaves as PyTorch's `nn.BatchNorm2d`, running statistics
//! included, under PyTorch's parameter names (`weight`, `bias`, `running_mean`,
//! `running_var`).
//!
//! burn 0.22's `BatchNorm` normalises the same way, but it updates `running_var` with the
//! biased (population) batch variance, where PyTorch uses the unbiased one (`n / (n - 1)`
//! times larger, `n` values per channel). After training, the two give different evaluation
//! outputs, so a PyTorch checkpoint fine-tuned in burn would drift. This module normalises with
//! `strata_kernels::batch_norm_train` (burn's `batch_norm_train` off flex) and keeps the
//! running statistics PyTorch's way; evaluation goes through `strata_kernels::batch_norm`.
//!
//! Training mode (batch statistics, running update) is used on an autodiff device while the
//! weight takes gradients; otherwise (evaluation, or a frozen layer) the running statistics
//! normalise, as burn's `BatchNorm` does.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use strata_layers::BatchNorm2dConfig;
//! let device = Device::flex().autodiff();
//! let bn = BatchNorm2dConfig::new(3).init(&device);
//! let y = bn.forward(Tensor::<4>::ones([2, 3, 4, 4], &device));
//! assert_eq!(y.dims(), [2, 3, 4, 4]);
//! ```

use burn::config::Config;
use burn::module::{Module, Param, RunningState};
use burn::tensor::{Device, Tensor};

/// Configuration of a [`BatchNorm2d`] (PyTorch's defaults).
#[derive(Config, Debug)]
pub struct BatchNorm2dConfig {
    /// Channels.
    pub num_features: usize,
    /// Added to the variance, default 1e-5.
    #[config(default = 1e-5)]
    pub epsilon: f64,
    /// Weight of the new batch in the running statistics, default 0.1.
    #[config(default = 0.1)]
    pub momentum: f64,
}

/// Batch normalisation over channel 1, PyTorch's semantics and names.
#[derive(Module, Debug)]
pub struct BatchNorm2d {
    /// Scale `[channels]` (PyTorch `weight`).
    pub weight: Param<Tensor<1>>,
    /// Shift `[channels]` (PyTorch `bias`).
    pub bias: Param<Tensor<1>>,
    /// Running mean `[channels]`.
    pub running_mean: RunningState<Tensor<1>>,
    /// Running unbiased variance `[channels]`.
    pub running_var: RunningState<Tensor<1>>,
    /// Weight of the new batch in the running statistics.
    pub momentum: f64,
    /// Added to the variance.
    pub epsilon: f64,
}

impl BatchNorm2dConfig {
    /// Builds the layer: weight 1, bias 0, running mean 0, running variance 1.
    ///
    /// # Panics
    /// When `num_features` is 0, `epsilon` is not positive or `momentum` is outside `[0, 1]`.
    pub fn init(&self, device: &Device) -> BatchNorm2d {
        assert!(self.num_features > 0, "batch norm needs channels");
        assert!(self.epsilon > 0.0, "epsilon must be positive");
        assert!(
            (0.0..=1.0).contains(&self.momentum),
            "momentum must be in [0, 1]"
        );
        let n = self.num_features;
        BatchNorm2d {
            weight: Param::from_tensor(Tensor::ones([n], device)),
            bias: Param::from_tensor(Tensor::zeros([n], device)),
            running_mean: RunningState::new(Tensor::zeros([n], device)),
            running_var: RunningState::new(Tensor::ones([n], device)),
            momentum: self.momentum,
            epsilon: self.epsilon,
        }
    }
}

impl BatchNorm2d {
    /// Normalises each channel.
    ///
    /// # Shapes
    /// - `input`: `[batch, channels, ...]`
    /// - returns the same shape
    ///
    /// # Panics
    /// When the channel count differs from the layer's, or a training batch has a single
    /// value per channel (no variance, as PyTorch refuses too).
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        self.forward_then(input, false)
    }

    /// `relu(forward(input))`, the ReLU fused into the batch norm's passes in training on flex.
    ///
    /// # Panics
    /// As [`forward`](BatchNorm2d::forward).
    pub fn forward_relu<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        self.forward_then(input, true)
    }

    /// The inference statistics, to fold into the convolution before it (int8 inference,
    /// [`strata_kernels::QuantizedConv2d`]).
    pub fn stats(&self) -> strata_kernels::BatchNormStats {
        strata_kernels::BatchNormStats::from_tensors(
            [
                self.weight.val(),
                self.bias.val(),
                self.running_mean.value(),
                self.running_var.value(),
            ],
            self.epsilon,
        )
    }

    fn forward_then<const D: usize>(&self, input: Tensor<D>, relu: bool) -> Tensor<D> {
        let training = input.device().is_autodiff() && self.weight.val().is_require_grad();
        if !training {
            let device = input.device();
            let y = strata_kernels::batch_norm(
                input,
                self.weight.val(),
                self.bias.val(),
                self.running_mean.value().to_device(&device),
                self.running_var.value().to_device(&device),
                self.epsilon,
            );
            return if relu {
                burn::tensor::activation::relu(y)
            } else {
                y
            };
        }
        let dims = input.dims();
        let per_channel: usize = dims
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, d)| d)
            .product();
        assert!(
            per_channel > 1,
            "batch norm in training needs more than one value per channel, got {dims:?}"
        );
        let device = input.device();
        let train = if relu {
            strata_kernels::batch_norm_relu_train
        } else {
            strata_kernels::batch_norm_train
        };
        let (output, batch_mean, batch_var) =
            train(input, self.weight.val(), self.bias.val(), self.epsilon);
        let m = self.momentum;
        let unbiased = per_channel as f64 / (per_channel - 1) as f64;
        let mean =
            self.running_mean.value_sync().to_device(&device) * (1.0 - m) + batch_mean.detach() * m;
        let var = self.running_var.value_sync().to_device(&device) * (1.0 - m)
            + batch_var.detach() * (m * unbiased);
        self.running_mean.update(mean.detach());
        self.running_var.update(var.detach());
        output
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn training_updates_the_running_statistics_and_a_frozen_layer_does_not() {
        let ad = Device::flex().autodiff();
        let x = Tensor::<4>::random([4, 2, 3, 3], Distribution::Normal(1.0, 2.0), &ad);
        let bn = BatchNorm2dConfig::new(2).init(&ad);
        let y = bn.forward(x.clone());
        // Training mode: each channel of the output has mean 0 over the batch.
        let mean = y.clone().mean_dim(0).mean_dim(2).mean_dim(3);
        assert!(mean.abs().max().into_scalar::<f32>() < 1e-5);
        let moved = bn.running_mean.value_sync();
        assert!(
            moved.abs().max().into_scalar::<f32>() > 1e-3,
            "running mean updated"
        );

        // Frozen: the running statistics normalise and stay as they are.
        let frozen = bn.clone().no_grad();
        let before = frozen.running_var.value_sync();
        let z = frozen.forward(x.clone());
        let after = frozen.running_var.value_sync();
        let unchanged = (after - before).abs().max().into_scalar::<f32>();
        assert!(unchanged < 1e-12, "{unchanged}");
        let inference = bn.valid().forward(x.inner());
        let diff = (z.inner() - inference).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-6, "{diff}");
    }
}
