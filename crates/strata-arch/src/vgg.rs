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
use strata_kernels::{
    Int8Input, QuantizedConv2d, QuantizedLinear, conv2d_layer, max_pool2d_layer, runs_int8,
};
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
                conv_int8: None,
            });
            if self.batch_norm {
                features.push(VggSlot {
                    conv: None,
                    norm: Some(BatchNorm2dConfig::new(c).init(device)),
                    pool: None,
                    conv_int8: None,
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
            classifier_int8: Vec::new(),
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
    /// The convolution's int8 copy with the batch norm and ReLU of the slots after it folded
    /// in, and how many slots it stands for ([`Vgg::quantize_int8`]); never saved.
    #[module(skip)]
    pub conv_int8: Option<(QuantizedConv2d, usize)>,
}

impl VggSlot {
    fn empty(pool: bool) -> Self {
        Self {
            conv: None,
            norm: None,
            pool: pool.then(|| MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init()),
            conv_int8: None,
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
    /// Int8 copies of the classifier's linear layers, by position; never saved.
    #[module(skip)]
    pub classifier_int8: Vec<Option<QuantizedLinear>>,
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
    fn slots(&self, mut x: Tensor<4>, range: std::ops::Range<usize>) -> Tensor<4> {
        let int8 = runs_int8(&x.device());
        let mut i = range.start;
        while i < range.end {
            let slot = &self.features[i];
            // An int8 convolution stands for its batch norm and ReLU too, when the range
            // holds them all.
            if let Some((q, spans)) = &slot.conv_int8
                && int8
                && i + spans <= range.end
            {
                x = q.forward(x);
                i += spans;
                continue;
            }
            x = match (&slot.conv, &slot.norm, &slot.pool) {
                (Some(c), _, _) => conv2d_layer(c, x),
                (_, Some(n), _) => n.forward(x),
                (_, _, Some(p)) => max_pool2d_layer(p, x),
                _ => relu(x),
            };
            i += 1;
        }
        x
    }

    /// Keeps int8 copies of the convolutions (each with the batch norm and ReLU after it
    /// folded in, one scale per kernel or per output channel) and of the classifier's linear
    /// layers, which inference on a device without autodiff then runs.
    pub fn quantize_int8(&mut self, per_output: bool) {
        let is_relu = |s: &VggSlot| s.conv.is_none() && s.norm.is_none() && s.pool.is_none();
        for i in 0..self.features.len() {
            let Some(conv) = &self.features[i].conv else {
                continue;
            };
            let mut next = i + 1;
            let norm = self.features.get(next).and_then(|s| s.norm.as_ref());
            if norm.is_some() {
                next += 1;
            }
            let relu = self.features.get(next).is_some_and(is_relu);
            let q =
                QuantizedConv2d::from_conv(conv, norm.map(BatchNorm2d::stats), relu, per_output);
            let spans = next - i + usize::from(relu);
            self.features[i].conv_int8 = q.map(|q| (q, spans));
        }
        self.classifier_int8 = self
            .classifier
            .iter()
            .map(|l| {
                l.as_ref()
                    .map(|l| QuantizedLinear::from_linear(l, per_output))
            })
            .collect();
    }

    /// The inputs of the int8 layers by name (`features.0.conv`, ..., `classifier.0`, ...), to
    /// observe and calibrate; empty before [`quantize_int8`](Self::quantize_int8).
    pub fn int8_inputs_mut(&mut self) -> Vec<(String, &mut Int8Input)> {
        let mut inputs = Vec::new();
        for (i, slot) in self.features.iter_mut().enumerate() {
            if let Some((q, _)) = &mut slot.conv_int8 {
                inputs.push((format!("features.{i}.conv"), q.input_mut()));
            }
        }
        for (i, q) in self.classifier_int8.iter_mut().enumerate() {
            if let Some(q) = q {
                inputs.push((format!("classifier.{i}"), q.input_mut()));
            }
        }
        inputs
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
                x = match self.classifier_int8.get(i) {
                    Some(Some(q)) if runs_int8(&x.device()) => q.forward(x),
                    _ => l.forward(x),
                };
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

    /// In int8 each convolution stands for its batch norm and ReLU: the logits stay close to
    /// the float network's, and splitting the network at any slot (Grad-CAM's
    /// `forward_to`/`forward_from`) gives the same logits as the whole, int8 or not.
    #[test]
    fn an_int8_vgg_is_close_to_the_float_one_and_splits_anywhere() {
        use burn::tensor::Distribution;
        let d = Device::flex();
        for batch_norm in [true, false] {
            let mut m = VggConfig::new(2, 5, vec![8, 0, 16, 16, 0])
                .with_batch_norm(batch_norm)
                .with_pool_size(2)
                .with_d_hidden(16)
                .init(&d)
                .unwrap();
            let x = Tensor::<4>::random([3, 2, 8, 8], Distribution::Normal(0.0, 1.0), &d);
            let float = m.forward(x.clone());
            m.quantize_int8(true);
            let names: Vec<String> = m.int8_inputs_mut().into_iter().map(|(n, _)| n).collect();
            let convs: Vec<usize> = (0..m.features.len())
                .filter(|&i| m.features[i].conv.is_some())
                .collect();
            let mut want: Vec<String> =
                convs.iter().map(|i| format!("features.{i}.conv")).collect();
            want.extend(["classifier.0", "classifier.3", "classifier.6"].map(String::from));
            assert_eq!(names, want);
            let spans = if batch_norm { 3 } else { 2 };
            for &i in &convs {
                assert_eq!(m.features[i].conv_int8.as_ref().map(|q| q.1), Some(spans));
            }
            let int8 = m.forward(x.clone());
            let scale = float.clone().abs().max().into_scalar::<f32>();
            let gap = float
                .clone()
                .sub(int8.clone())
                .abs()
                .max()
                .into_scalar::<f32>();
            // Five int8 layers in a row, each within about 1% (bar set before the first run).
            assert!(
                gap > 0.0 && gap < 0.1 * scale,
                "batch norm {batch_norm}: gap {gap}, logits up to {scale}"
            );
            for slot in 0..m.features.len() {
                let split = m.forward_from(m.forward_to(x.clone(), slot), slot);
                let apart = split.sub(int8.clone()).abs().max().into_scalar::<f32>();
                // Splitting inside a folded group runs those slots in f32: close, not equal.
                let folded = convs.iter().any(|&c| slot >= c && slot + 1 < c + spans);
                if folded {
                    assert!(apart < 0.1 * scale, "slot {slot}: {apart}");
                } else {
                    assert!(apart < 1e-5, "slot {slot}: {apart}");
                }
            }
        }
    }
}
