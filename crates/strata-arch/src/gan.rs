//! Generative adversarial networks: a generator that maps noise `z ~ N(0, I)` (and, when
//! conditional, a class) to an example, and a discriminator (a WGAN's critic) that scores
//! examples, real high and generated low.
//!
//! - **DCGAN** (Radford et al. 2016), for images whose sides halve cleanly: the generator
//!   projects `z` to `[C, h, w]` (a linear layer, batch norm, ReLU), then doubles the side with
//!   4x4 transposed convolutions of stride 2 (batch norm and ReLU between, tanh at the end);
//!   the discriminator halves it with 4x4 convolutions of stride 2 and LeakyReLU 0.2 (batch norm
//!   except after the input), then a linear score. Channels double as the side halves, from
//!   `width` at the largest side. Weights start from `N(0, 0.02)`, batch-norm scales from
//!   `N(1, 0.02)`. The number of halvings is as many as keep both sides even and at least 4
//!   (28 x 28: two, to 7 x 7; 64 x 64: four, to 4 x 4).
//! - **Dense** players for rows of features and 2-D points: ReLU layers in the generator
//!   (linear or tanh output), LeakyReLU 0.2 layers in the discriminator.
//! - **Conditional**: the generator reads `z` beside a learned embedding of the class; the
//!   discriminator adds the projection term `<embed(y), h>` to its score (Miyato and Koyama
//!   2018), `h` its last features.
//! - **Spectral normalisation** of every discriminator layer (SN-GAN), which then has no batch
//!   norm; **weight clipping** of the critic ([`Gan::clip_discriminator`], WGAN).
//!
//! Examples are rows of `d_data` values in `[-1, 1]` for a tanh generator (images scaled
//! from `[0, 1]` by the caller).
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use strata_arch::GanConfig;
//! use strata_loss::AdversarialLoss;
//! let device = Device::flex().autodiff();
//! let gan = GanConfig::new(784).with_image_shape(Some([1, 28, 28])).with_width(16).init(&device)?;
//! let z = Tensor::<2>::random([4, 100], Distribution::Normal(0.0, 1.0), &device);
//! let images = gan.generate(z.clone(), None);
//! assert_eq!(images.dims(), [4, 784]);
//! let real = Tensor::<2>::zeros([4, 784], &device);
//! let d_loss = gan.discriminator_loss(AdversarialLoss::Bce, real, None, z.clone(), None);
//! let g_loss = gan.generator_loss(AdversarialLoss::Bce, z, None);
//! assert!(d_loss.into_scalar::<f32>().is_finite() && g_loss.into_scalar::<f32>().is_finite());
//! # Ok::<(), strata_arch::Error>(())
//! ```

use burn::config::Config;
use burn::module::{Module, ModuleMapper, Param};
use burn::nn::conv::{ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig};
use burn::tensor::activation::{leaky_relu, relu, tanh};
use burn::tensor::{Device, Distribution, Int, Tensor};
use strata_layers::{
    BatchNorm2d, BatchNorm2dConfig, SnConv2d, SnConv2dConfig, SnLinear, SnLinearConfig,
};
use strata_loss::AdversarialLoss;

use crate::error::{Error, check_size};

/// Radford et al.'s initialisation: `N(0, 0.02)`.
fn dcgan_init() -> Initializer {
    Initializer::Normal {
        mean: 0.0,
        std: 0.02,
    }
}

/// Configuration of a [`Gan`].
#[derive(Config, Debug)]
pub struct GanConfig {
    /// Values per example (pixels, or columns).
    pub d_data: usize,
    /// `[channels, height, width]` of image examples: convolutional players (DCGAN); `None`:
    /// dense players. Default `None`.
    #[config(default = "None")]
    pub image_shape: Option<[usize; 3]>,
    /// Size of the noise, default 100.
    #[config(default = 100)]
    pub d_noise: usize,
    /// Classes to condition on, default 0 (unconditional).
    #[config(default = 0)]
    pub n_classes: usize,
    /// Size of the generator's class embedding, default 32.
    #[config(default = 32)]
    pub d_embed: usize,
    /// DCGAN channels at the largest side, default 64 (Radford et al.'s 128 for 64 x 64).
    #[config(default = 64)]
    pub width: usize,
    /// Hidden widths of the dense players, default `[128, 128]`.
    #[config(default = "vec![128, 128]")]
    pub d_hidden: Vec<usize>,
    /// Spectral normalisation of every discriminator layer (and no batch norm there), default
    /// off.
    #[config(default = false)]
    pub spectral_norm: bool,
    /// PacGAN's packing (Lin et al. 2018): the dense discriminator scores `pack` examples at
    /// once, concatenated, which penalises a generator that drops modes; default 1 (none).
    /// Dense, unconditional GANs only.
    #[config(default = 1)]
    pub pack: usize,
    /// Batch norm in the DCGAN discriminator (not after its input), default on.
    #[config(default = true)]
    pub batch_norm: bool,
    /// A tanh on the generator's output (examples in `[-1, 1]`), default on; off for
    /// standardised rows and points.
    #[config(default = true)]
    pub tanh_output: bool,
}

/// One generator stage: `ConvTranspose2d(4, stride 2, padding 1) -> BatchNorm -> ReLU`.
#[derive(Module, Debug)]
pub struct UpStage {
    /// Doubles the side.
    pub conv: ConvTranspose2d,
    /// Normalises its channels.
    pub bn: BatchNorm2d,
}

/// One discriminator stage: `Conv2d(4, stride 2, padding 1) -> [BatchNorm] -> LeakyReLU 0.2`.
#[derive(Module, Debug)]
pub struct DownStage {
    /// Halves the side.
    pub conv: SnConv2d,
    /// Normalises its channels, when asked and not spectrally normalised.
    pub bn: Option<BatchNorm2d>,
}

/// DCGAN's generator.
#[derive(Module, Debug)]
pub struct ConvGenerator {
    /// The class embedding read beside the noise, when conditional.
    pub embed: Option<Embedding>,
    /// Noise (and class embedding) to `[C, h, w]`.
    pub project: Linear,
    /// Batch norm of the projection.
    pub project_bn: BatchNorm2d,
    /// Doubling stages but the last.
    pub ups: Vec<UpStage>,
    /// The last doubling, to the image's channels (tanh follows).
    pub out: ConvTranspose2d,
    /// `[C, h, w]` of the projection.
    pub base: [usize; 3],
}

/// DCGAN's discriminator.
#[derive(Module, Debug)]
pub struct ConvDiscriminator {
    /// The class embedding of the projection term, when conditional.
    pub project: Option<Embedding>,
    /// Halving stages.
    pub downs: Vec<DownStage>,
    /// Features to the score.
    pub out: SnLinear,
}

/// A dense generator.
#[derive(Module, Debug)]
pub struct DenseGenerator {
    /// The class embedding read beside the noise, when conditional.
    pub embed: Option<Embedding>,
    /// Hidden layers (ReLU after each).
    pub hidden: Vec<Linear>,
    /// To the example.
    pub out: Linear,
}

/// A dense discriminator.
#[derive(Module, Debug)]
pub struct DenseDiscriminator {
    /// The class embedding of the projection term, when conditional.
    pub project: Option<Embedding>,
    /// Hidden layers (LeakyReLU 0.2 after each).
    pub hidden: Vec<SnLinear>,
    /// Features to the score.
    pub out: SnLinear,
}

/// A GAN's generator.
// One per model, never in a collection: the size difference costs nothing, and burn's
// `Module` derive does not take a boxed variant.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Generator {
    /// Transposed convolutions (DCGAN).
    Conv(ConvGenerator),
    /// Dense layers.
    Dense(DenseGenerator),
}

/// A GAN's discriminator (critic).
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Discriminator {
    /// Strided convolutions (DCGAN).
    Conv(ConvDiscriminator),
    /// Dense layers.
    Dense(DenseDiscriminator),
}

/// A generator and a discriminator, one module so that one checkpoint holds both (their
/// optimizers step their own parameters: see `strata_train::fit_players`).
#[derive(Module, Debug)]
pub struct Gan {
    /// The generator.
    pub generator: Generator,
    /// The discriminator.
    pub discriminator: Discriminator,
    /// Size of the noise.
    pub d_noise: usize,
    /// Classes (0: unconditional).
    pub n_classes: usize,
    /// Values per example.
    pub d_data: usize,
    /// Whether the generator ends with tanh.
    pub tanh_output: bool,
    /// Examples the discriminator scores at once (PacGAN).
    pub pack: usize,
    /// `[channels, height, width]` of image examples.
    pub image_shape: Option<[usize; 3]>,
}

impl GanConfig {
    /// The number of halvings of a DCGAN for images of `height` x `width`: as many as keep
    /// both sides even and at least 4, at most 4.
    pub fn stages(height: usize, width: usize) -> usize {
        let (mut h, mut w, mut n) = (height, width, 0);
        while n < 4 && h.is_multiple_of(2) && w.is_multiple_of(2) && h / 2 >= 4 && w / 2 >= 4 {
            h /= 2;
            w /= 2;
            n += 1;
        }
        n
    }

    /// Checks the sizes.
    ///
    /// # Errors
    /// A zero size, an image shape that does not multiply to `d_data`, an image whose sides do
    /// not halve at least once, a dense GAN without hidden layers.
    pub fn validate(&self) -> crate::Result<()> {
        check_size("d_data", self.d_data)?;
        check_size("d_noise", self.d_noise)?;
        match self.image_shape {
            Some([c, h, w]) => {
                check_size("width", self.width)?;
                if c * h * w != self.d_data {
                    return Err(Error::Invalid(format!(
                        "image shape {c}x{h}x{w} is {} values, not d_data = {}",
                        c * h * w,
                        self.d_data
                    )));
                }
                if Self::stages(h, w) == 0 {
                    return Err(Error::Invalid(format!(
                        "a DCGAN halves the image's sides to no less than 4: {h}x{w} does not halve cleanly (use a dense GAN)"
                    )));
                }
            }
            None => {
                if self.d_hidden.is_empty() {
                    return Err(Error::Invalid(
                        "a dense GAN needs hidden layers (d_hidden)".into(),
                    ));
                }
                for (i, &d) in self.d_hidden.iter().enumerate() {
                    check_size(&format!("d_hidden[{i}]"), d)?;
                }
            }
        }
        if self.n_classes > 0 {
            check_size("d_embed", self.d_embed)?;
        }
        check_size("pack", self.pack)?;
        if self.pack > 1 && (self.image_shape.is_some() || self.n_classes > 0) {
            return Err(Error::Invalid(
                "packing (pack > 1) is for dense, unconditional GANs".into(),
            ));
        }
        Ok(())
    }

    /// Builds the GAN on `device`.
    ///
    /// # Errors
    /// As [`validate`](Self::validate).
    pub fn init(&self, device: &Device) -> crate::Result<Gan> {
        self.validate()?;
        let d_cond = if self.n_classes > 0 { self.d_embed } else { 0 };
        let d_in = self.d_noise + d_cond;
        let (generator, discriminator, d_features) = match self.image_shape {
            Some(shape) => {
                let (g, d, f) = self.dcgan(shape, d_in, device);
                (Generator::Conv(g), Discriminator::Conv(d), f)
            }
            None => {
                let (g, d) = self.dense(d_in, device);
                let f = *self.d_hidden.last().unwrap_or(&1);
                (Generator::Dense(g), Discriminator::Dense(d), f)
            }
        };
        let conditional = self.n_classes > 0;
        let embed =
            conditional.then(|| EmbeddingConfig::new(self.n_classes, self.d_embed).init(device));
        let project = conditional.then(|| {
            EmbeddingConfig::new(self.n_classes, d_features)
                .with_initializer(dcgan_init())
                .init(device)
        });
        let (generator, discriminator) = match (generator, discriminator) {
            (Generator::Conv(g), Discriminator::Conv(d)) => (
                Generator::Conv(ConvGenerator { embed, ..g }),
                Discriminator::Conv(ConvDiscriminator { project, ..d }),
            ),
            (Generator::Dense(g), Discriminator::Dense(d)) => (
                Generator::Dense(DenseGenerator { embed, ..g }),
                Discriminator::Dense(DenseDiscriminator { project, ..d }),
            ),
            (g, d) => (g, d),
        };
        Ok(Gan {
            generator,
            discriminator,
            d_noise: self.d_noise,
            n_classes: self.n_classes,
            d_data: self.d_data,
            tanh_output: self.tanh_output,
            pack: self.pack,
            image_shape: self.image_shape,
        })
    }

    /// A batch norm with its scale drawn from `N(1, 0.02)`.
    fn bn(channels: usize, device: &Device) -> BatchNorm2d {
        let mut bn = BatchNorm2dConfig::new(channels).init(device);
        bn.weight = Param::from_tensor(Tensor::random(
            [channels],
            Distribution::Normal(1.0, 0.02),
            device,
        ));
        bn
    }

    /// DCGAN's players and the discriminator's feature size.
    fn dcgan(
        &self,
        [c, h, w]: [usize; 3],
        d_in: usize,
        device: &Device,
    ) -> (ConvGenerator, ConvDiscriminator, usize) {
        let n = Self::stages(h, w);
        let (bh, bw) = (h >> n, w >> n);
        // Channels at each side, from the largest: width, 2 width, ...
        let chans: Vec<usize> = (0..n).map(|i| self.width << i).collect();
        let top = chans[n - 1];
        let project = LinearConfig::new(d_in, top * bh * bw)
            .with_bias(false)
            .with_initializer(dcgan_init())
            .init(device);
        let up = |a: usize, b: usize| {
            ConvTranspose2dConfig::new([a, b], [4, 4])
                .with_stride([2, 2])
                .with_padding([1, 1])
                .with_bias(false)
                .with_initializer(dcgan_init())
                .init(device)
        };
        let ups = (1..n)
            .rev()
            .map(|i| UpStage {
                conv: up(chans[i], chans[i - 1]),
                bn: Self::bn(chans[i - 1], device),
            })
            .collect();
        let generator = ConvGenerator {
            embed: None,
            project,
            project_bn: Self::bn(top, device),
            ups,
            out: up(chans[0], c),
            base: [top, bh, bw],
        };
        let bn = self.batch_norm && !self.spectral_norm;
        let downs = (0..n)
            .map(|i| {
                let c_in = if i == 0 { c } else { chans[i - 1] };
                let with_bn = bn && i > 0;
                DownStage {
                    conv: SnConv2dConfig::new(c_in, chans[i], 4)
                        .with_stride(2)
                        .with_padding(1)
                        .with_bias(!with_bn)
                        .with_spectral_norm(self.spectral_norm)
                        .with_initializer(Some(dcgan_init()))
                        .init(device),
                    bn: with_bn.then(|| Self::bn(chans[i], device)),
                }
            })
            .collect();
        let features = top * bh * bw;
        let discriminator = ConvDiscriminator {
            project: None,
            downs,
            out: SnLinearConfig::new(features, 1)
                .with_spectral_norm(self.spectral_norm)
                .with_initializer(Some(dcgan_init()))
                .init(device),
        };
        (generator, discriminator, features)
    }

    /// The dense players.
    fn dense(&self, d_in: usize, device: &Device) -> (DenseGenerator, DenseDiscriminator) {
        let mut hidden = Vec::new();
        let mut prev = d_in;
        for &d in &self.d_hidden {
            hidden.push(LinearConfig::new(prev, d).init(device));
            prev = d;
        }
        let generator = DenseGenerator {
            embed: None,
            hidden,
            out: LinearConfig::new(prev, self.d_data).init(device),
        };
        let mut hidden = Vec::new();
        let mut prev = self.d_data * self.pack;
        for &d in &self.d_hidden {
            hidden.push(
                SnLinearConfig::new(prev, d)
                    .with_spectral_norm(self.spectral_norm)
                    .init(device),
            );
            prev = d;
        }
        let discriminator = DenseDiscriminator {
            project: None,
            hidden,
            out: SnLinearConfig::new(prev, 1)
                .with_spectral_norm(self.spectral_norm)
                .init(device),
        };
        (generator, discriminator)
    }
}

/// Clamps every float parameter to `[-c, c]` (a WGAN critic's weight clipping).
struct Clip(f32);

impl ModuleMapper for Clip {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let c = self.0;
        param.map(|t| {
            let grad = t.is_require_grad();
            t.clamp(-c, c).detach().set_require_grad(grad)
        })
    }
}

impl Gan {
    /// Generated examples from noise `z` (and classes, for a conditional GAN): rows in
    /// `[-1, 1]` with a tanh output.
    ///
    /// # Shapes
    /// - `z`: `[batch, d_noise]`, `classes`: `[batch]`
    /// - returns `[batch, d_data]`
    ///
    /// # Panics
    /// When `z` is not `d_noise` wide, or a conditional GAN gets no classes.
    pub fn generate(&self, z: Tensor<2>, classes: Option<Tensor<1, Int>>) -> Tensor<2> {
        let [batch, _] = z.dims();
        let embed = match &self.generator {
            Generator::Conv(g) => g.embed.as_ref(),
            Generator::Dense(g) => g.embed.as_ref(),
        };
        let input = match (embed, classes) {
            (Some(embed), Some(y)) => {
                let e = embed.forward(y.unsqueeze_dim(1));
                let [_, _, d] = e.dims();
                Tensor::cat(vec![z, e.reshape([batch, d])], 1)
            }
            (Some(_), None) => panic!("a conditional GAN generates a given class"),
            (None, _) => z,
        };
        let out = match &self.generator {
            Generator::Conv(g) => {
                let [c, h, w] = g.base;
                let x = g.project.forward(input).reshape([batch, c, h, w]);
                let mut x = relu(g.project_bn.forward(x));
                for stage in &g.ups {
                    x = relu(stage.bn.forward(stage.conv.forward(x)));
                }
                g.out.forward(x).reshape([batch, self.d_data])
            }
            Generator::Dense(g) => {
                let x = g.hidden.iter().fold(input, |x, l| relu(l.forward(x)));
                g.out.forward(x)
            }
        };
        if self.tanh_output { tanh(out) } else { out }
    }

    /// The discriminator's scores of examples (logits, or a critic's values); with packing,
    /// of each group of `pack` consecutive examples (a remainder is left out).
    ///
    /// # Shapes
    /// - `x`: `[batch, d_data]`, `classes`: `[batch]`
    /// - returns `[batch]` (`[batch / pack]` when packed)
    ///
    /// # Panics
    /// When `x` is not `d_data` wide, a conditional GAN gets no classes, or a packed batch has
    /// fewer than `pack` examples.
    pub fn discriminate(&self, x: Tensor<2>, classes: Option<Tensor<1, Int>>) -> Tensor<1> {
        let x = if self.pack > 1 {
            let [n, d] = x.dims();
            let groups = n / self.pack;
            assert!(
                groups > 0,
                "a packed discriminator needs {} examples",
                self.pack
            );
            x.slice([0..groups * self.pack, 0..d])
                .reshape([groups, d * self.pack])
        } else {
            x
        };
        let [batch, _] = x.dims();
        let h = match &self.discriminator {
            Discriminator::Conv(d) => {
                let [c, hh, ww] = self.image_shape.unwrap_or([1, 1, self.d_data]);
                let mut x = x.reshape([batch, c, hh, ww]);
                for stage in &d.downs {
                    x = stage.conv.forward(x);
                    if let Some(bn) = &stage.bn {
                        x = bn.forward(x);
                    }
                    x = leaky_relu(x, 0.2);
                }
                x.flatten::<2>(1, 3)
            }
            Discriminator::Dense(d) => d
                .hidden
                .iter()
                .fold(x, |x, l| leaky_relu(l.forward(x), 0.2)),
        };
        let (out, project) = match &self.discriminator {
            Discriminator::Conv(d) => (d.out.forward(h.clone()), d.project.as_ref()),
            Discriminator::Dense(d) => (d.out.forward(h.clone()), d.project.as_ref()),
        };
        let out = out.reshape([batch]);
        match (project, classes) {
            (Some(embed), Some(y)) => {
                let e = embed.forward(y.unsqueeze_dim(1));
                let [_, _, d] = e.dims();
                out + (e.reshape([batch, d]) * h).sum_dim(1).reshape([batch])
            }
            (Some(_), None) => panic!("a conditional GAN's discriminator needs the classes"),
            (None, _) => out,
        }
    }

    /// The discriminator's loss on a batch of `real` examples and the generator's samples
    /// from `z` (detached: only the discriminator learns from it).
    ///
    /// # Shapes
    /// - `real`: `[n, d_data]`, `z`: `[m, d_noise]`, classes `[n]` and `[m]`
    /// - returns `[1]`
    pub fn discriminator_loss(
        &self,
        loss: AdversarialLoss,
        real: Tensor<2>,
        real_classes: Option<Tensor<1, Int>>,
        z: Tensor<2>,
        fake_classes: Option<Tensor<1, Int>>,
    ) -> Tensor<1> {
        let fake = self.generate(z, fake_classes.clone()).detach();
        let real_scores = self.discriminate(real, real_classes);
        let fake_scores = self.discriminate(fake, fake_classes);
        loss.discriminator(real_scores, fake_scores)
    }

    /// The generator's loss on its samples from `z`.
    ///
    /// # Shapes
    /// - `z`: `[m, d_noise]`, `classes`: `[m]`
    /// - returns `[1]`
    pub fn generator_loss(
        &self,
        loss: AdversarialLoss,
        z: Tensor<2>,
        classes: Option<Tensor<1, Int>>,
    ) -> Tensor<1> {
        let fake = self.generate(z, classes.clone());
        loss.generator(self.discriminate(fake, classes))
    }

    /// The GAN with every discriminator parameter (its projection embedding too) clamped to
    /// `[-c, c]`: the weight clipping of a WGAN critic.
    pub fn clip_discriminator(mut self, c: f32) -> Self {
        self.discriminator = self.discriminator.map(&mut Clip(c));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_tensor::convert::to_vec;

    #[test]
    fn dcgan_halves_as_far_as_the_sides_allow() {
        assert_eq!(GanConfig::stages(28, 28), 2);
        assert_eq!(GanConfig::stages(64, 64), 4);
        assert_eq!(GanConfig::stages(32, 16), 2);
        assert_eq!(GanConfig::stages(8, 8), 1);
        assert_eq!(GanConfig::stages(7, 7), 0);
        let err = GanConfig::new(49)
            .with_image_shape(Some([1, 7, 7]))
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("does not halve"), "{err}");
        let err = GanConfig::new(50)
            .with_image_shape(Some([1, 7, 7]))
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("not d_data"), "{err}");
    }

    #[test]
    fn shapes_of_every_kind() {
        let device = Device::flex().autodiff();
        for (shape, d, classes, sn) in [
            (Some([1, 8, 8]), 64, 0, false),
            (Some([3, 16, 16]), 768, 4, true),
            (None, 2, 0, false),
            (None, 5, 3, true),
        ] {
            let gan = GanConfig::new(d)
                .with_image_shape(shape)
                .with_width(8)
                .with_d_noise(6)
                .with_n_classes(classes)
                .with_spectral_norm(sn)
                .init(&device)
                .unwrap();
            let z = Tensor::<2>::random([3, 6], Distribution::Normal(0.0, 1.0), &device);
            let y = (classes > 0).then(|| Tensor::<1, Int>::from_ints([0, 1, 2], &device));
            let x = gan.generate(z, y.clone());
            assert_eq!(x.dims(), [3, d]);
            assert!(to_vec(x.clone()).iter().all(|v| v.abs() <= 1.0));
            assert_eq!(gan.discriminate(x, y).dims(), [3]);
        }
    }

    #[test]
    fn clipping_bounds_the_critic_and_leaves_the_generator() {
        let device = Device::flex().autodiff();
        let gan = GanConfig::new(4)
            .with_d_hidden(vec![8])
            .with_n_classes(2)
            .init(&device)
            .unwrap();
        let before = match &gan.generator {
            Generator::Dense(g) => to_vec(g.out.weight.val()),
            Generator::Conv(_) => unreachable!(),
        };
        let gan = gan.clip_discriminator(0.01);
        let Discriminator::Dense(d) = &gan.discriminator else {
            unreachable!()
        };
        assert!(
            to_vec(d.hidden[0].linear.weight.val())
                .iter()
                .all(|w| w.abs() <= 0.01)
        );
        let Generator::Dense(g) = &gan.generator else {
            unreachable!()
        };
        assert_eq!(to_vec(g.out.weight.val()), before);
        assert!(d.hidden[0].linear.weight.val().is_require_grad());
    }
}
