//! VGG (Simonyan and Zisserman 2015) in torchvision's layout: `features` (3x3 convolutions
//! with bias, optional batch norm, ReLU, 2x2 max pools), an adaptive average pool to 7x7, and
//! `classifier` (Linear 4096, ReLU, dropout, Linear 4096, ReLU, dropout, Linear).
//!
//! torchvision keeps `features` and `classifier` in `nn.Sequential`s, so its parameter names
//! are positions: `features.0.weight` (a convolution), `features.1.weight` (its batch norm in
//! the `_bn` variants), `classifier.0.weight`, `classifier.3.weight`, `classifier.6.weight`.
//! The classifier here is a vector of optional linear layers at those positions, so its names
//! are torchvision's exactly. Each slot of `features` holds an optional convolution and an
//! optional batch norm (`features.0.conv.weight`, `features.1.norm.weight`), because burn names
//! an enum's variant in the path. [`Vgg::pytorch_key_remapping`] maps torchvision's names onto
//! these for burn-store; load with `PytorchStore::from_file(f).map_indices_contiguous(false)`
//! so that burn-store keeps torchvision's positions rather than renumbering them.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use strata_arch::VggConfig;
//! let device = Device::flex();
//! let vgg = VggConfig::by_name("vgg11_bn", 3, 10)?.with_d_hidden(64).init(&device)?;
//! let logits = vgg.forward(Tensor::<4>::zeros([1, 3, 32, 32], &device));
//! assert_eq!(logits.dims(), [1, 10]);
//! # Ok::<(), strata_arch::Error>(())
//! ```

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use strata_kernels::{conv2d_layer, max_pool2d_layer};
use strata_layers::{BatchNorm2d, BatchNorm2dConfig};

use crate::error::{Error, check_dropout, check_size};
use crate::network::TransferParts;

/// The VGG names [`VggConfig::by_name`] knows (each also with `_bn`).
pub const VGGS: [&str; 8] = [
    "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
];

/// Configuration of a [`Vgg`].
#[derive(Config, Debug)]
pub struct VggConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Classes.
    pub n_classes: usize,
    /// Output channels of each 3x3 convolution, 0 for a 2x2 max pool (torchvision's `cfgs`
    /// with `M` as 0).
    pub layers: Vec<usize>,
    /// Batch norm after each convolution.
    #[config(default = false)]
    pub batch_norm: bool,
    /// Side of the adaptive average pool before the classifier, default 7.
    #[config(default = 7)]
    pub pool_size: usize,
    /// Width of the classifier's two hidden layers, default 4096.
    #[config(default = 4096)]
    pub d_hidden: usize,
    /// Dropout in the classifier, default 0.5.
    #[config(default = 0.5)]
    pub dropout: f64,
}

impl VggConfig {
    /// torchvision's VGG-11/13/16/19, with batch norm for the `_bn` names.
    ///
    /// # Errors
    /// [`Error::Invalid`] for another name.
    pub fn by_name(name: &str, in_channels: usize, n_classes: usize) -> crate::Result<Self> {
        let (base, bn) = match name.strip_suffix("_bn") {
            Some(b) => (b, true),
            None => (name, false),
        };
        let m = 0;
        let layers = match base {
            "vgg11" => vec![64, m, 128, m, 256, 256, m, 512, 512, m, 512, 512, m],
            "vgg13" => vec![
                64, 64, m, 128, 128, m, 256, 256, m, 512, 512, m, 512, 512, m,
            ],
            "vgg16" => vec![
                64, 64, m, 128, 128, m, 256, 256, 256, m, 512, 512, 512, m, 512, 512, 512, m,
            ],
            "vgg19" => vec![
                64, 64, m, 128, 128, m, 256, 256, 256, 256, m, 512, 512, 512, 512, m, 512, 512,
                512, 512, m,
            ],
            _ => {
                return Err(Error::Invalid(format!(
                    "unknown VGG `{name}`: expected one of {}",
                    VGGS.join(", ")
                )));
            }
        };
        Ok(Self::new(in_channels, n_classes, layers).with_batch_norm(bn))
    }

    /// Checks sizes.
    ///
    /// # Errors
    /// A zero size, no convolution, a dropout outside `[0, 1)`.
    pub fn validate(&self) -> crate::Result<()> {
        check_size("in_channels", self.in_channels)?;
        check_size("n_classes", self.n_classes)?;
        check_size("pool_size", self.pool_size)?;
        check_size("d_hidden", self.d_hidden)?;
        if !self.layers.iter().any(|&c| c > 0) {
            return Err(Error::Invalid(
                "a VGG needs at least one convolution".into(),
            ));
        }
        check_dropout(self.dropout)
    }

    /// Checks that an `h x w` image survives the max pools (each halves the size).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the smallest size that does.
    pub fn check_input(&self, h: usize, w: usize) -> crate::Result<()> {
        check_pools(self.layers.iter().filter(|&&c| c == 0).count(), h, w)
    }

    /// Builds the network.
    ///
    /// # Errors
    /// As [`validate`](Self::validate).
    pub fn init(&self, device: &Device) -> crate::Result<Vgg> {
        self.validate()?;
        let mut features = Vec::new();
        let mut channels = self.in_channels;
        for &c in &self.layers {
            if c == 0 {
                features.push(VggSlot::empty(true));
                continue;
            }
            features.push(VggSlot {
                conv: Some(
                    Conv2dConfig::new([channels, c], [3, 3])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .init(device),
                ),
                norm: None,
                pool: None,
            });
            if self.batch_norm {
                features.push(VggSlot {
                    conv: None,
                    norm: Some(BatchNorm2dConfig::new(c).init(device)),
                    pool: None,
                });
            }
            features.push(VggSlot::empty(false)); // ReLU
            channels = c;
        }
        let flat = channels * self.pool_size * self.pool_size;
        let h = self.d_hidden;
        let linear = |i, o| Some(LinearConfig::new(i, o).init(device));
        Ok(Vgg {
            features,
            avgpool: AdaptiveAvgPool2dConfig::new([self.pool_size, self.pool_size]).init(),
            classifier: vec![
                linear(flat, h),
                None,
                None,
                linear(h, h),
                None,
                None,
                linear(h, self.n_classes),
            ],
            dropout: DropoutConfig::new(self.dropout).init(),
        })
    }
}

/// One position of `features`: a convolution, a batch norm, a max pool, or a ReLU (empty).
#[derive(Module, Debug)]
pub struct VggSlot {
    /// A 3x3 convolution.
    pub conv: Option<Conv2d>,
    /// A batch norm.
    pub norm: Option<BatchNorm2d>,
    /// A 2x2 max pool.
    pub pool: Option<MaxPool2d>,
}

impl VggSlot {
    fn empty(pool: bool) -> Self {
        Self {
            conv: None,
            norm: None,
            pool: pool.then(|| MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init()),
        }
    }
}

/// A VGG network.
#[derive(Module, Debug)]
pub struct Vgg {
    /// The convolutional part, slot by slot at torchvision's positions.
    pub features: Vec<VggSlot>,
    /// Adaptive average pool to `pool_size x pool_size`.
    pub avgpool: AdaptiveAvgPool2d,
    /// The classifier: linear layers at positions 0, 3 and 6 (ReLU and dropout between).
    pub classifier: Vec<Option<Linear>>,
    /// The classifier's dropout.
    pub dropout: Dropout,
}

impl Vgg {
    /// `(torchvision name pattern, Strata name)` pairs for burn-store's key remapping: each
    /// `features.i.` becomes `features.i.conv.` or `features.i.norm.`.
    pub fn pytorch_key_remapping(&self) -> Vec<(String, String)> {
        self.features
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let part = match (&s.conv, &s.norm) {
                    (Some(_), _) => "conv",
                    (None, Some(_)) => "norm",
                    _ => return None,
                };
                Some((
                    format!(r"^features\.{i}\."),
                    format!("features.{i}.{part}."),
                ))
            })
            .collect()
    }

    /// The backbone: the pooled, flattened features.
    ///
    /// # Shapes
    /// - `x`: `[batch, in_channels, h, w]` with `h` and `w` at least `2^pools`
    /// - returns `[batch, channels * pool_size^2]`
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        self.pooled(self.slots(x, 0..self.features.len()))
    }

    /// The activations after slot `features.{slot}`, for Grad-CAM.
    ///
    /// # Shapes
    /// - `x`: `[batch, in_channels, h, w]`
    /// - returns the slot's output `[batch, c, h', w']`
    pub fn forward_to(&self, x: Tensor<4>, slot: usize) -> Tensor<4> {
        self.slots(x, 0..slot + 1)
    }

    /// The logits from the activations after slot `slot`: the rest of
    /// [`forward`](Self::forward).
    pub fn forward_from(&self, activations: Tensor<4>, slot: usize) -> Tensor<2> {
        let x = self.slots(activations, slot + 1..self.features.len());
        self.classify(self.pooled(x))
    }

    /// The slots `range` of the convolutional part.
    fn slots(&self, x: Tensor<4>, range: std::ops::Range<usize>) -> Tensor<4> {
        self.features[range]
            .iter()
            .fold(x, |x, slot| match (&slot.conv, &slot.norm, &slot.pool) {
                (Some(c), _, _) => conv2d_layer(c, x),
                (_, Some(n), _) => n.forward(x),
                (_, _, Some(p)) => max_pool2d_layer(p, x),
                _ => relu(x),
            })
    }

    /// Adaptive average pooling, flattened.
    fn pooled(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.avgpool.forward(x);
        let [b, c, h, w] = x.dims();
        x.reshape([b, c * h * w])
    }

    /// Class logits.
    ///
    /// # Shapes
    /// - `x`: `[batch, in_channels, h, w]` (see [`check_input`](Self::check_input))
    /// - returns `[batch, n_classes]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.classify(self.features(x))
    }

    /// The classifier over pooled features.
    fn classify(&self, mut x: Tensor<2>) -> Tensor<2> {
        let n = self.classifier.len();
        for (i, layer) in self.classifier.iter().enumerate() {
            if let Some(l) = layer {
                x = l.forward(x);
                if i + 1 < n {
                    x = strata_kernels::dropout_layer(&self.dropout, relu(x));
                }
            }
        }
        x
    }

    /// For transfer learning: one stage per block of convolutions (each ending in a max pool),
    /// then the classifier's two hidden layers as the last stage; the head is the last
    /// linear layer, `classifier.6`.
    pub fn transfer_parts(&self) -> TransferParts {
        let mut stages = vec![Vec::new()];
        for (i, slot) in self.features.iter().enumerate() {
            if slot.conv.is_some() || slot.norm.is_some() {
                stages
                    .last_mut()
                    .expect("a stage")
                    .push(format!("features.{i}"));
            }
            if slot.pool.is_some() && !stages.last().expect("a stage").is_empty() {
                stages.push(Vec::new());
            }
        }
        if stages.last().is_some_and(Vec::is_empty) {
            stages.pop();
        }
        let last = self.classifier.len() - 1;
        stages.push(
            (0..last)
                .filter(|&i| self.classifier[i].is_some())
                .map(|i| format!("classifier.{i}"))
                .collect(),
        );
        TransferParts {
            stages,
            head: vec![format!("classifier.{last}")],
        }
    }

    /// Checks that an `h x w` image survives the max pools (each halves the size).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the smallest size that does.
    pub fn check_input(&self, h: usize, w: usize) -> crate::Result<()> {
        check_pools(
            self.features.iter().filter(|s| s.pool.is_some()).count(),
            h,
            w,
        )
    }
}

/// An `h x w` image survives `pools` halvings.
fn check_pools(pools: usize, h: usize, w: usize) -> crate::Result<()> {
    let min = 1usize << pools;
    if h < min || w < min {
        return Err(Error::Invalid(format!(
            "this VGG halves the image {pools} times and needs at least {min}x{min} pixels, got {h}x{w}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_sizes_and_names() {
        let d = Device::flex();
        let m = VggConfig::by_name("vgg11_bn", 3, 1000)
            .unwrap()
            .init(&d)
            .unwrap();
        // torchvision's vgg11_bn: 132,868,840 parameters; burn also counts the running
        // statistics of its 2,752 batch-norm channels.
        assert_eq!(m.num_params(), 132_868_840 + 2 * 2752);
        let m16 = VggConfig::by_name("vgg16", 3, 1000)
            .unwrap()
            .init(&d)
            .unwrap();
        assert_eq!(m16.num_params(), 138_357_544);
        let remap = m.pytorch_key_remapping();
        assert_eq!(
            remap[0],
            (
                r"^features\.0\.".to_string(),
                "features.0.conv.".to_string()
            )
        );
        assert_eq!(
            remap[1],
            (
                r"^features\.1\.".to_string(),
                "features.1.norm.".to_string()
            )
        );
        // The layer after ReLU (2) and pool (3) is the next convolution, at 4, as torchvision's.
        assert_eq!(remap[2].1, "features.4.conv.");
        let e = m.check_input(28, 28).unwrap_err().to_string();
        assert!(e.contains("at least 32x32"), "{e}");
        assert!(m.check_input(32, 32).is_ok());
        assert!(VggConfig::by_name("vgg12", 3, 10).is_err());
    }

    #[test]
    fn a_small_vgg_gives_logits() {
        let d = Device::flex();
        let m = VggConfig::new(1, 4, vec![8, 0, 16, 0])
            .with_batch_norm(true)
            .with_pool_size(2)
            .with_d_hidden(16)
            .init(&d)
            .unwrap();
        assert_eq!(
            m.forward(Tensor::<4>::zeros([2, 1, 8, 8], &d)).dims(),
            [2, 4]
        );
    }
}
