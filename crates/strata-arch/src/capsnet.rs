//! A capsule network (Sabour, Frosst and Hinton 2017, "Dynamic routing between capsules"): a
//! ReLU convolution, primary capsules, one capsule per class reached by routing-by-agreement,
//! and a dense decoder that rebuilds the image from the class capsules.
//!
//! The class capsules' lengths are the class scores. Training minimises, per example, the
//! margin loss summed over classes ([`MarginLoss`]) plus `reconstruction` (the paper's 0.0005)
//! times the **sum** over pixels of the squared error of the decoder's image, which is
//! rebuilt from the true class's capsule alone (the others masked to zero); a batch's loss is
//! the **mean** over its examples. At test time the decoder reads the predicted class's
//! capsule. Implementations differ here (a sum over the batch, or a mean over pixels with a
//! weight of `0.0005 * 784`), so compare losses with care.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use strata_arch::CapsNetConfig;
//! use strata_tensor::convert::classes;
//! let device = Device::flex();
//! // The CPU-sized network for 8x8 images (3x3 kernels), 10 classes.
//! let net = CapsNetConfig::small(1, 8, 8, 10).init(&device)?;
//! let images = Tensor::<4>::ones([2, 1, 8, 8], &device) * 0.5;
//! assert_eq!(net.forward(images.clone()).dims(), [2, 10]);
//! let loss = net.loss(images, classes(&[3, 7], &device));
//! assert!(loss.total.into_scalar::<f32>() > 0.0);
//! // The paper's 9x9 kernels do not fit an 8x8 image.
//! assert!(CapsNetConfig::new(1, 8, 8, 10).validate().is_err());
//! # Ok::<(), strata_arch::Error>(())
//! ```

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor};
use strata_kernels::conv2d_layer;
use strata_layers::{
    CapsuleLayer, CapsuleLayerConfig, PrimaryCaps, PrimaryCapsConfig, Routed, capsule_lengths,
};
use strata_loss::MarginLoss;

use crate::error::{Error, check_size};

/// Configuration of a [`CapsNet`]; [`CapsNetConfig::new`] is the paper's network (256 9x9
/// filters, 32 types of 8-D primary capsules, 16-D class capsules, 3 routing iterations, a
/// 512-1024 decoder), [`CapsNetConfig::small`] a CPU-sized one.
#[derive(Config, Debug)]
pub struct CapsNetConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Number of classes (class capsules).
    pub n_classes: usize,
    /// Filters of the first (ReLU) convolution, default 256.
    #[config(default = 256)]
    pub conv_channels: usize,
    /// Square kernel of both convolutions (no padding; the primary one has stride 2),
    /// default 9.
    #[config(default = 9)]
    pub kernel_size: usize,
    /// Primary capsule types, default 32.
    #[config(default = 32)]
    pub primary_types: usize,
    /// Dimensions of a primary capsule, default 8.
    #[config(default = 8)]
    pub primary_dim: usize,
    /// Dimensions of a class capsule, default 16.
    #[config(default = 16)]
    pub class_dim: usize,
    /// Routing iterations, default 3.
    #[config(default = 3)]
    pub routing: usize,
    /// Hidden widths of the reconstruction decoder, default `[512, 1024]`.
    #[config(default = "vec![512, 1024]")]
    pub decoder: Vec<usize>,
    /// Weight of the summed squared reconstruction error, default 0.0005 (0: no decoder term).
    #[config(default = 0.0005)]
    pub reconstruction: f64,
    /// The margin loss, default the paper's (0.9, 0.1, 0.5).
    #[config(default = "MarginLoss::default()")]
    pub margin: MarginLoss,
    /// Standard deviation of the normal initialisation of the routing transforms, default 0.01.
    #[config(default = 0.01)]
    pub init_std: f64,
}

impl CapsNetConfig {
    /// The CPU-sized network: 64 filters and 16 types of 8-D primary capsules (a quarter of
    /// the paper's first layer, an eighth of its primary layer), 9x9 kernels when the image
    /// has at least 20 pixels a side, else 3x3 (the 8x8 digits); 16-D class capsules, 3
    /// routing iterations, the 512-1024 decoder.
    pub fn small(in_channels: usize, height: usize, width: usize, n_classes: usize) -> Self {
        Self::new(in_channels, height, width, n_classes)
            .with_conv_channels(64)
            .with_primary_types(16)
            .with_kernel_size(if height.min(width) >= 20 { 9 } else { 3 })
    }

    fn primary(&self) -> PrimaryCapsConfig {
        PrimaryCapsConfig::new(self.conv_channels, self.primary_types, self.primary_dim)
            .with_kernel_size(self.kernel_size)
    }

    /// The primary capsules' grid `(height, width)`, `None` when the kernels do not fit.
    pub fn grid(&self) -> Option<(usize, usize)> {
        let k = self.kernel_size;
        let after_conv = |s: usize| (s >= k).then(|| s - k + 1);
        let p = self.primary();
        Some((
            p.output_side(after_conv(self.height)?)?,
            p.output_side(after_conv(self.width)?)?,
        ))
    }

    /// Number of primary capsules.
    pub fn n_primary(&self) -> usize {
        self.grid().map_or(0, |(h, w)| self.primary_types * h * w)
    }

    /// Checks sizes, the routing, the loss weights, and that the image fits the kernels.
    ///
    /// # Errors
    /// A zero size, zero routing iterations, a negative reconstruction weight, invalid
    /// margins, or an image smaller than `2 * kernel_size - 1` a side.
    pub fn validate(&self) -> crate::Result<()> {
        for (name, v) in [
            ("in_channels", self.in_channels),
            ("height", self.height),
            ("width", self.width),
            ("n_classes", self.n_classes),
            ("conv_channels", self.conv_channels),
            ("kernel_size", self.kernel_size),
            ("primary_types", self.primary_types),
            ("primary_dim", self.primary_dim),
            ("class_dim", self.class_dim),
        ] {
            check_size(name, v)?;
        }
        for (i, &d) in self.decoder.iter().enumerate() {
            check_size(&format!("decoder[{i}]"), d)?;
        }
        if self.routing == 0 {
            return Err(Error::Invalid(
                "routing needs at least 1 iteration, got 0".into(),
            ));
        }
        if !(self.reconstruction.is_finite() && self.reconstruction >= 0.0) {
            return Err(Error::Invalid(format!(
                "the reconstruction weight must be >= 0, got {}",
                self.reconstruction
            )));
        }
        self.margin
            .validate()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        if !(self.init_std.is_finite() && self.init_std > 0.0) {
            return Err(Error::Invalid(format!(
                "init_std must be positive, got {}",
                self.init_std
            )));
        }
        if self.grid().is_none() {
            let k = self.kernel_size;
            return Err(Error::Invalid(format!(
                "a {}x{} image is too small for CapsNet's {k}x{k} convolutions: they need at least {}x{}",
                self.height,
                self.width,
                2 * k - 1,
                2 * k - 1
            )));
        }
        Ok(())
    }

    /// Builds the network on `device`.
    ///
    /// # Errors
    /// As [`validate`](Self::validate).
    pub fn init(&self, device: &Device) -> crate::Result<CapsNet> {
        self.validate()?;
        let k = self.kernel_size;
        let mut decoder = Vec::new();
        let mut d_in = self.n_classes * self.class_dim;
        let pixels = self.in_channels * self.height * self.width;
        for &d in self.decoder.iter().chain(std::iter::once(&pixels)) {
            decoder.push(LinearConfig::new(d_in, d).init(device));
            d_in = d;
        }
        Ok(CapsNet {
            conv1: Conv2dConfig::new([self.in_channels, self.conv_channels], [k, k])
                .with_padding(PaddingConfig2d::Valid)
                .init(device),
            primary_caps: self.primary().init(device),
            class_caps: CapsuleLayerConfig::new(
                self.n_primary(),
                self.primary_dim,
                self.n_classes,
                self.class_dim,
            )
            .with_routing(self.routing)
            .with_init_std(self.init_std)
            .init(device),
            decoder,
            input_shape: [self.in_channels, self.height, self.width],
            reconstruction: self.reconstruction,
            margin: self.margin,
        })
    }
}

/// A capsule network: see the module page.
#[derive(Module, Debug)]
pub struct CapsNet {
    /// The first convolution (followed by a ReLU).
    pub conv1: Conv2d,
    /// The primary capsules.
    pub primary_caps: PrimaryCaps,
    /// The class capsules, routed from the primary ones.
    pub class_caps: CapsuleLayer,
    /// The decoder's dense layers (ReLU between them, a sigmoid at the end).
    pub decoder: Vec<Linear>,
    /// `[channels, height, width]` of an input.
    #[module(skip)]
    pub input_shape: [usize; 3],
    /// Weight of the reconstruction term.
    #[module(skip)]
    pub reconstruction: f64,
    /// The margin loss.
    #[module(skip)]
    pub margin: MarginLoss,
}

/// The terms of a batch's loss (each `[1]`), see the module page.
#[derive(Debug, Clone)]
pub struct CapsLoss {
    /// The margin loss: mean over examples of the sum over classes.
    pub margin: Tensor<1>,
    /// The weighted reconstruction term: `reconstruction` times the mean over examples of
    /// the summed squared error (zero when the weight is zero).
    pub reconstruction: Tensor<1>,
    /// Their sum.
    pub total: Tensor<1>,
}

impl CapsNet {
    /// The class capsules and the routing's coupling coefficients.
    ///
    /// # Shapes
    /// - `images`: `[batch, channels, height, width]`
    /// - returns capsules `[batch, n_classes, class_dim]`, coupling
    ///   `[batch, n_primary, n_classes]`
    pub fn capsules(&self, images: Tensor<4>) -> Routed {
        let x = relu(conv2d_layer(&self.conv1, images));
        self.class_caps.forward(self.primary_caps.forward(x))
    }

    /// The class scores: the class capsules' lengths, in `[0, 1)`.
    ///
    /// # Shapes
    /// - `images`: `[batch, channels, height, width]`
    /// - returns `[batch, n_classes]`
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        capsule_lengths(self.capsules(images).capsules)
    }

    /// [`forward`](Self::forward) on flat row-major rows.
    ///
    /// # Shapes
    /// - `rows`: `[batch, channels * height * width]`
    /// - returns `[batch, n_classes]`
    pub fn forward_flat(&self, rows: Tensor<2>) -> Tensor<2> {
        let [c, h, w] = self.input_shape;
        let b = rows.dims()[0];
        self.forward(rows.reshape([b, c, h, w]))
    }

    /// The decoder's image from the capsule of class `classes[i]` of each example (the
    /// others masked to zero), in `[0, 1]`.
    ///
    /// # Shapes
    /// - `capsules`: `[batch, n_classes, class_dim]`
    /// - `classes`: `[batch]`
    /// - returns `[batch, channels * height * width]`
    pub fn reconstruct(&self, capsules: Tensor<3>, classes: Tensor<1, Int>) -> Tensor<2> {
        let [b, k, d] = capsules.dims();
        let device = capsules.device();
        let mask = Tensor::<2>::zeros([b, k], &device).scatter(
            1,
            classes.reshape([b, 1]),
            Tensor::<2>::ones([b, 1], &device),
            IndexingUpdateOp::Add,
        );
        let mut x = (capsules * mask.unsqueeze_dim::<3>(2)).reshape([b, k * d]);
        let last = self.decoder.len() - 1;
        for (i, layer) in self.decoder.iter().enumerate() {
            x = layer.forward(x);
            x = if i == last { sigmoid(x) } else { relu(x) };
        }
        x
    }

    /// The predicted class of each example: the longest class capsule.
    ///
    /// # Shapes
    /// - `capsules`: `[batch, n_classes, class_dim]`
    /// - returns `[batch]`
    pub fn predicted(&self, capsules: Tensor<3>) -> Tensor<1, Int> {
        let b = capsules.dims()[0];
        capsule_lengths(capsules).argmax(1).reshape([b])
    }

    /// The training loss of a batch of images with their classes (see the module page).
    ///
    /// # Shapes
    /// - `images`: `[batch, channels, height, width]`, pixels in `[0, 1]`
    /// - `classes`: `[batch]`
    pub fn loss(&self, images: Tensor<4>, classes: Tensor<1, Int>) -> CapsLoss {
        let routed = self.capsules(images.clone());
        let margin = self
            .margin
            .forward(capsule_lengths(routed.capsules.clone()), classes.clone());
        let reconstruction = if self.reconstruction > 0.0 {
            let b = images.dims()[0];
            let target = images.reshape([b, self.input_shape.iter().product::<usize>()]);
            let error = (self.reconstruct(routed.capsules, classes) - target)
                .powi_scalar(2)
                .sum_dim(1)
                .mean();
            error * self.reconstruction
        } else {
            margin.zeros_like()
        };
        CapsLoss {
            total: margin.clone() + reconstruction.clone(),
            margin,
            reconstruction,
        }
    }

    /// Bytes of the routing's tensors for a batch of `batch` (32-bit floats; see
    /// [`CapsuleLayer::routing_floats`]): the memory a training step needs beyond the
    /// convolutions'.
    pub fn routing_bytes(&self, batch: usize) -> usize {
        4 * self.class_caps.routing_floats(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_tensor::convert::classes;

    #[test]
    fn the_paper_s_network_has_its_sizes() {
        let c = CapsNetConfig::new(1, 28, 28, 10);
        assert_eq!(c.grid(), Some((6, 6)));
        assert_eq!(c.n_primary(), 1152);
        let net = c.init(&Device::flex()).unwrap();
        // The paper's counts: 8.2M, and 6.8M without the decoder.
        assert_eq!(net.num_params(), 8_215_568);
        let decoder: usize = net.decoder.iter().map(|l| l.num_params()).sum();
        assert_eq!(net.num_params() - decoder, 6_804_224);
        // 1152 x 10 x 16 floats, 7 copies for 3 passes.
        assert_eq!(net.routing_bytes(1), 4 * 1152 * 160 * 7);
    }

    #[test]
    fn small_images_get_small_kernels_and_too_small_ones_an_error() {
        assert_eq!(CapsNetConfig::small(1, 8, 8, 10).grid(), Some((2, 2)));
        assert_eq!(CapsNetConfig::small(1, 28, 28, 10).n_primary(), 576);
        let e = CapsNetConfig::new(1, 16, 28, 10).validate().unwrap_err();
        assert!(e.to_string().contains("16x28 image is too small"), "{e}");
        assert!(e.to_string().contains("17x17"), "{e}");
        let e = CapsNetConfig::small(1, 4, 4, 10).validate().unwrap_err();
        assert!(e.to_string().contains("5x5"), "{e}");
        let e = CapsNetConfig::new(1, 28, 28, 10)
            .with_routing(0)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("routing"), "{e}");
        assert!(
            CapsNetConfig::new(1, 28, 28, 10)
                .with_reconstruction(-1.0)
                .validate()
                .is_err()
        );
    }

    #[test]
    fn the_decoder_reads_only_the_chosen_capsule() {
        let d = Device::flex();
        let net = CapsNetConfig::small(1, 8, 8, 3)
            .with_conv_channels(4)
            .with_primary_types(2)
            .init(&d)
            .unwrap();
        let caps =
            Tensor::<3>::random([2, 3, 16], burn::tensor::Distribution::Normal(0.0, 1.0), &d);
        let a = net.reconstruct(caps.clone(), classes(&[1, 2], &d));
        // Changing another class's capsule changes nothing.
        let other = caps
            .clone()
            .slice_assign([0..2, 0..1, 0..16], Tensor::<3>::ones([2, 1, 16], &d) * 5.0);
        let b = net.reconstruct(other, classes(&[1, 2], &d));
        let (a, b) = (
            strata_tensor::convert::to_vec(a),
            strata_tensor::convert::to_vec(b),
        );
        assert_eq!(a.len(), 2 * 64);
        assert_eq!(a, b);
        assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}
