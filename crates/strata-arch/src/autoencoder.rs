//! Autoencoders, dense or convolutional, plain or variational, optionally class-conditioned:
//! one [`Autoencoder`] for `ae`, `conv-ae`, `dae`, `sparse-ae`, `vae`, `conv-vae` and `cvae`
//! (denoising and sparsity are training choices, not architecture).
//!
//! - The encoder: [`Downsample`] blocks (3x3 convolutions of stride 2) when
//!   [`channels`](AutoencoderConfig::channels) is not empty, then an [`Mlp`] to the code (to its
//!   mean and log-variance when variational), with the one-hot class appended to its input when
//!   conditional.
//! - The decoder mirrors it: an [`Mlp`] from the code (and class) back to the flattened
//!   feature map, then [`Upsample`] blocks (transposed convolutions of stride 2) to the pixels'
//!   logits (Bernoulli) or means (Gaussian).
//!
//! The losses are `strata_loss`'s ELBO terms, in nats per example.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use strata_arch::AutoencoderConfig;
//! let d = Device::flex();
//! // A convolutional VAE on 1x28x28 images: 28 -> 14 -> 7, a 2-unit code.
//! let vae = AutoencoderConfig::new(784)
//!     .with_image_shape(Some([1, 28, 28]))
//!     .with_channels(vec![8, 16])
//!     .with_d_hidden(vec![])
//!     .with_d_latent(2)
//!     .with_variational(true)
//!     .init(&d)?;
//! let x = Tensor::<2>::zeros([5, 784], &d);
//! let (mean, log_var) = vae.encode(x.clone(), None);
//! assert_eq!((mean.dims(), log_var.dims()), ([5, 2], [5, 2]));
//! assert_eq!(vae.reconstruct(x, None).dims(), [5, 784]);
//! # Ok::<(), strata_arch::Error>(())
//! ```

use burn::config::Config;
use burn::module::Module;
use burn::nn::activation::Activation;
use burn::tensor::{Device, Distribution, Tensor};
use serde::{Deserialize, Serialize};
use strata_layers::{ActivationKind, Downsample, DownsampleConfig, Upsample, UpsampleConfig};

use crate::error::{Error, check_size};
use crate::mlp::{Mlp, MlpConfig};

/// How the decoder's outputs score the input: what [`Autoencoder::reconstruct`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Likelihood {
    /// Independent Bernoulli pixels: the decoder gives logits (images with values in `[0, 1]`).
    #[default]
    Bernoulli,
    /// Independent unit-variance Gaussians: the decoder gives means (standardised data).
    Gaussian,
}

/// Configuration of an [`Autoencoder`].
#[derive(Config, Debug)]
pub struct AutoencoderConfig {
    /// Input features (pixels, `channels * height * width` for images).
    pub d_input: usize,
    /// Code (latent) size, default 30 (Hinton and Salakhutdinov's).
    #[config(default = 30)]
    pub d_latent: usize,
    /// Dense hidden widths between the (flattened) features and the code; the decoder mirrors
    /// them. Default `[256, 128]`.
    #[config(default = "vec![256, 128]")]
    pub d_hidden: Vec<usize>,
    /// Output channels of each stride-2 convolution (empty, the default: a dense
    /// autoencoder). Needs [`image_shape`](Self::image_shape), with sides divisible by
    /// `2^channels.len()`.
    #[config(default = "Vec::new()")]
    pub channels: Vec<usize>,
    /// `[channels, height, width]` of the images (needed by a convolutional autoencoder).
    #[config(default = "None")]
    pub image_shape: Option<[usize; 3]>,
    /// Hidden activation, default ReLU.
    #[config(default = "ActivationKind::Relu")]
    pub activation: ActivationKind,
    /// A variational autoencoder (Gaussian code) rather than a plain one, default false.
    #[config(default = false)]
    pub variational: bool,
    /// Classes the encoder and decoder are conditioned on (one-hot; 0, the default: none).
    #[config(default = 0)]
    pub n_classes: usize,
    /// What the decoder's outputs are, default Bernoulli logits.
    #[config(default = "Likelihood::Bernoulli")]
    pub likelihood: Likelihood,
}

/// An encoder to the code (its mean and log-variance when variational) and a decoder back to
/// the input's logits or means.
#[derive(Module, Debug)]
pub struct Autoencoder {
    /// Stride-2 convolutions (none for a dense autoencoder).
    pub down: Vec<Downsample>,
    /// Flattened features (and class) to code (`2 * d_latent` outputs when variational: mean,
    /// then log-variance).
    pub encoder: Mlp,
    /// Code (and class) to the flattened feature map (to the outputs when dense).
    pub decoder: Mlp,
    /// The activation between the decoder's MLP and its first transposed convolution.
    pub bridge: Activation,
    /// Stride-2 transposed convolutions (none for a dense autoencoder).
    pub up: Vec<Upsample>,
    /// Whether the code is Gaussian.
    pub variational: bool,
    /// Code size.
    pub d_latent: usize,
    /// Conditioning classes (0: none).
    pub n_classes: usize,
    /// `[channels, height, width]` of the input, and of the smallest feature map (all zero
    /// when dense).
    pub shapes: [usize; 6],
    /// Whether the outputs are Bernoulli logits (else Gaussian means).
    pub bernoulli: bool,
}

impl AutoencoderConfig {
    /// Checks the sizes, and that the convolutions can halve the image.
    ///
    /// # Errors
    /// A zero size, a convolutional autoencoder without an image shape or whose image sides are
    /// not divisible by `2^stages`, an image shape that disagrees with `d_input`.
    pub fn validate(&self) -> crate::Result<()> {
        self.smallest_map().map(|_| ())
    }

    /// The `[channels, height, width]` after the convolutions (None when dense).
    fn smallest_map(&self) -> crate::Result<Option<[usize; 3]>> {
        check_size("d_input", self.d_input)?;
        check_size("d_latent", self.d_latent)?;
        for (i, &h) in self.d_hidden.iter().enumerate() {
            check_size(&format!("d_hidden[{i}]"), h)?;
        }
        for (i, &c) in self.channels.iter().enumerate() {
            check_size(&format!("channels[{i}]"), c)?;
        }
        if self.channels.is_empty() {
            return Ok(None);
        }
        let Some([c, h, w]) = self.image_shape else {
            return Err(Error::Invalid(
                "a convolutional autoencoder needs the image shape".into(),
            ));
        };
        if c.checked_mul(h).and_then(|x| x.checked_mul(w)) != Some(self.d_input) {
            return Err(Error::Invalid(format!(
                "image shape {c}x{h}x{w} does not have {} values",
                self.d_input
            )));
        }
        let stages = self.channels.len();
        let factor = 1usize.checked_shl(stages as u32).filter(|f| *f <= h.max(w));
        match factor {
            Some(f) if h % f == 0 && w % f == 0 => {
                Ok(Some([*self.channels.last().unwrap_or(&c), h / f, w / f]))
            }
            _ => Err(Error::Invalid(format!(
                "{stages} stride-2 convolutions cannot halve a {h}x{w} image {stages} times \
                 (both sides must be divisible by 2^{stages}); use fewer channels or resize the images"
            ))),
        }
    }

    /// Builds the autoencoder on `device`.
    ///
    /// # Errors
    /// As [`validate`](Self::validate).
    pub fn init(&self, device: &Device) -> crate::Result<Autoencoder> {
        let map = self.smallest_map()?;
        let code = if self.variational {
            2 * self.d_latent
        } else {
            self.d_latent
        };
        let flat = map.map_or(self.d_input, |[c, h, w]| c * h * w);
        let encoder = MlpConfig::new(flat + self.n_classes, code)
            .with_d_hidden(self.d_hidden.clone())
            .with_activation(self.activation)
            .init(device)?;
        let decoder = MlpConfig::new(self.d_latent + self.n_classes, flat)
            .with_d_hidden(self.d_hidden.iter().rev().copied().collect())
            .with_activation(self.activation)
            .init(device)?;
        let (mut down, mut up) = (Vec::new(), Vec::new());
        let mut shapes = [0; 6];
        if let (Some(image), Some(smallest)) = (self.image_shape, map) {
            let mut c_in = image[0];
            for &c in &self.channels {
                down.push(
                    DownsampleConfig::new(c_in, c)
                        .with_activation(self.activation)
                        .init(device),
                );
                c_in = c;
            }
            let outs: Vec<usize> = self.channels.iter().rev().skip(1).copied().collect();
            for (i, &c) in self.channels.iter().rev().enumerate() {
                let (c_out, act) = match outs.get(i) {
                    Some(&o) => (o, Some(self.activation)),
                    None => (image[0], None),
                };
                up.push(
                    UpsampleConfig::new(c, c_out)
                        .with_activation(act)
                        .init(device),
                );
            }
            shapes = [
                image[0],
                image[1],
                image[2],
                smallest[0],
                smallest[1],
                smallest[2],
            ];
        }
        Ok(Autoencoder {
            down,
            encoder,
            decoder,
            bridge: self.activation.init(device),
            up,
            variational: self.variational,
            d_latent: self.d_latent,
            n_classes: self.n_classes,
            shapes,
            bernoulli: self.likelihood == Likelihood::Bernoulli,
        })
    }
}

/// `x` with the one-hot `condition` appended along the features.
///
/// # Panics
/// A conditional model called without a condition.
fn conditioned(x: Tensor<2>, n_classes: usize, condition: Option<Tensor<2>>) -> Tensor<2> {
    match (n_classes, condition) {
        (0, _) => x,
        (_, Some(c)) => Tensor::cat(vec![x, c], 1),
        (n, None) => panic!("a conditional autoencoder ({n} classes) needs the one-hot classes"),
    }
}

impl Autoencoder {
    /// The likelihood the decoder's outputs parameterise.
    pub fn likelihood(&self) -> Likelihood {
        if self.bernoulli {
            Likelihood::Bernoulli
        } else {
            Likelihood::Gaussian
        }
    }

    /// The code of each input: `(code, zeros)` for a plain autoencoder, `(mean, log_var)` of
    /// the Gaussian posterior for a variational one. `condition` is the one-hot class of each
    /// input, needed by a conditional model and ignored by others.
    ///
    /// # Shapes
    /// - input: `[batch, d_input]`; condition: `[batch, n_classes]`
    /// - outputs: `[batch, d_latent]` each
    ///
    /// # Panics
    /// A conditional model without `condition`; inputs of the wrong width.
    pub fn encode(&self, input: Tensor<2>, condition: Option<Tensor<2>>) -> (Tensor<2>, Tensor<2>) {
        let [b, _] = input.dims();
        let mut x = input;
        if !self.down.is_empty() {
            let [c, h, w, ..] = self.shapes;
            let mut map = x.reshape([b, c, h, w]);
            for block in &self.down {
                map = block.forward(map);
            }
            x = map.flatten(1, 3);
        }
        let h = self
            .encoder
            .forward(conditioned(x, self.n_classes, condition));
        if self.variational {
            let mean = h.clone().slice([0..b, 0..self.d_latent]);
            let log_var = h.slice([0..b, self.d_latent..2 * self.d_latent]);
            (mean, log_var)
        } else {
            let zeros = h.zeros_like();
            (h, zeros)
        }
    }

    /// The decoder's outputs (Bernoulli logits or Gaussian means) of codes.
    ///
    /// # Shapes
    /// - code: `[batch, d_latent]`; condition: `[batch, n_classes]`
    /// - output: `[batch, d_input]`
    ///
    /// # Panics
    /// As [`encode`](Self::encode).
    pub fn decode(&self, code: Tensor<2>, condition: Option<Tensor<2>>) -> Tensor<2> {
        let x = self
            .decoder
            .forward(conditioned(code, self.n_classes, condition));
        if self.up.is_empty() {
            return x;
        }
        let [b, _] = x.dims();
        let [c, h, w, mc, mh, mw] = self.shapes;
        let mut map = self.bridge.forward(x).reshape([b, mc, mh, mw]);
        for block in &self.up {
            map = block.forward(map);
        }
        map.reshape([b, c * h * w])
    }

    /// The training pass: the decoder's outputs for a code drawn from the posterior (`mean +
    /// exp(lv / 2) eps`, eps from the device's seeded generator; the code itself for a plain
    /// autoencoder), with the posterior's mean and log-variance.
    ///
    /// # Shapes
    /// - input: `[batch, d_input]`; condition: `[batch, n_classes]`
    /// - outputs: `[batch, d_input]`, mean and log-variance `[batch, d_latent]`
    ///
    /// # Panics
    /// As [`encode`](Self::encode).
    pub fn forward(
        &self,
        input: Tensor<2>,
        condition: Option<Tensor<2>>,
    ) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
        let (mean, log_var) = self.encode(input, condition.clone());
        let code = if self.variational {
            self.sample_code(mean.clone(), log_var.clone())
        } else {
            mean.clone()
        };
        (self.decode(code, condition), mean, log_var)
    }

    /// A code drawn from `N(mean, exp(log_var))` with the device's seeded generator.
    pub fn sample_code(&self, mean: Tensor<2>, log_var: Tensor<2>) -> Tensor<2> {
        let eps = Tensor::random(mean.dims(), Distribution::Normal(0.0, 1.0), &mean.device());
        mean + (log_var * 0.5).exp() * eps
    }

    /// The expected input under the decoder's outputs: pixel probabilities (Bernoulli) or the
    /// means (Gaussian).
    pub fn expected(&self, outputs: Tensor<2>) -> Tensor<2> {
        if self.bernoulli {
            burn::tensor::activation::sigmoid(outputs)
        } else {
            outputs
        }
    }

    /// The reconstruction from the posterior mean: pixel probabilities, or means.
    ///
    /// # Shapes
    /// - input, output: `[batch, d_input]`; condition: `[batch, n_classes]`
    ///
    /// # Panics
    /// As [`encode`](Self::encode).
    pub fn reconstruct(&self, input: Tensor<2>, condition: Option<Tensor<2>>) -> Tensor<2> {
        let (mean, _) = self.encode(input, condition.clone());
        self.expected(self.decode(mean, condition))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_latent_size_of_zero_is_an_error() {
        let e = AutoencoderConfig::new(64)
            .with_d_latent(0)
            .init(&Device::flex())
            .unwrap_err();
        assert!(e.to_string().contains("d_latent"), "{e}");
    }

    #[test]
    fn an_image_the_convolutions_cannot_halve_is_an_error() {
        let e = AutoencoderConfig::new(6 * 6)
            .with_image_shape(Some([1, 6, 6]))
            .with_channels(vec![4, 4])
            .init(&Device::flex())
            .unwrap_err();
        assert!(
            e.to_string().contains("cannot halve a 6x6 image 2 times"),
            "{e}"
        );
        let e = AutoencoderConfig::new(64)
            .with_channels(vec![4])
            .init(&Device::flex())
            .unwrap_err();
        assert!(e.to_string().contains("image shape"), "{e}");
        let e = AutoencoderConfig::new(60)
            .with_image_shape(Some([1, 8, 8]))
            .with_channels(vec![4])
            .init(&Device::flex())
            .unwrap_err();
        assert!(e.to_string().contains("does not have 60 values"), "{e}");
        // More stages than the image has halvings: 2^4 > 8.
        let e = AutoencoderConfig::new(64)
            .with_image_shape(Some([1, 8, 8]))
            .with_channels(vec![2; 70])
            .init(&Device::flex())
            .unwrap_err();
        assert!(e.to_string().contains("cannot halve"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        /// Encode and decode keep the shapes for any sizes, either kind, dense or not,
        /// conditional or not.
        #[test]
        fn shapes(batch in 1usize..4, c in 1usize..3, half_h in 1usize..5, half_w in 1usize..5,
                  stages in 0usize..3, latent in 1usize..6,
                  hidden in prop::collection::vec(1usize..12, 0..3), variational in any::<bool>(),
                  n_classes in 0usize..3) {
            let d = Device::flex();
            let (h, w) = (half_h << stages.max(1), half_w << stages.max(1));
            let m = AutoencoderConfig::new(c * h * w)
                .with_image_shape(Some([c, h, w]))
                .with_channels(vec![3; stages])
                .with_d_latent(latent)
                .with_d_hidden(hidden)
                .with_variational(variational)
                .with_n_classes(n_classes)
                .init(&d)
                .unwrap();
            let x = Tensor::<2>::ones([batch, c * h * w], &d);
            let y = (n_classes > 0).then(|| Tensor::<2>::ones([batch, n_classes], &d));
            let (out, mean, log_var) = m.forward(x.clone(), y.clone());
            prop_assert_eq!(out.dims(), [batch, c * h * w]);
            prop_assert_eq!(mean.dims(), [batch, latent]);
            prop_assert_eq!(log_var.dims(), [batch, latent]);
            prop_assert_eq!(m.reconstruct(x, y).dims(), [batch, c * h * w]);
        }
    }
}
