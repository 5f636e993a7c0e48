//! Dense autoencoders: the plain autoencoder (`ae`) and the variational one (`vae`: a Gaussian
//! encoder with the reparameterisation trick and a Bernoulli decoder, whose loss is the
//! negative ELBO of `strata_loss::bernoulli_nll` and `strata_loss::gaussian_kl`).
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use strata_arch::AutoencoderConfig;
//! let d = Device::flex();
//! let vae = AutoencoderConfig::new(64).with_d_latent(2).with_variational(true).init(&d)?;
//! let x = Tensor::<2>::zeros([5, 64], &d);
//! let (mean, log_var) = vae.encode(x.clone());
//! assert_eq!((mean.dims(), log_var.dims()), ([5, 2], [5, 2]));
//! assert_eq!(vae.reconstruct(x).dims(), [5, 64]);
//! # Ok::<(), strata_arch::Error>(())
//! ```

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use strata_layers::ActivationKind;

use crate::error::check_size;
use crate::mlp::{Mlp, MlpConfig};

/// Configuration of an [`Autoencoder`].
#[derive(Config, Debug)]
pub struct AutoencoderConfig {
    /// Input features (pixels).
    pub d_input: usize,
    /// Code (latent) size, default 30 (Hinton and Salakhutdinov's).
    #[config(default = 30)]
    pub d_latent: usize,
    /// Encoder hidden widths; the decoder mirrors them. Default `[256, 128]`.
    #[config(default = "vec![256, 128]")]
    pub d_hidden: Vec<usize>,
    /// Hidden activation, default ReLU.
    #[config(default = "ActivationKind::Relu")]
    pub activation: ActivationKind,
    /// A variational autoencoder (Gaussian code) rather than a plain one, default false.
    #[config(default = false)]
    pub variational: bool,
}

/// An encoder MLP to the code (its mean and log-variance when variational) and a decoder MLP
/// back to pixel logits.
#[derive(Module, Debug)]
pub struct Autoencoder {
    /// Input to code (`2 * d_latent` outputs when variational: mean, then log-variance).
    pub encoder: Mlp,
    /// Code to pixel logits.
    pub decoder: Mlp,
    /// Whether the code is Gaussian.
    pub variational: bool,
    /// Code size.
    pub d_latent: usize,
}

impl AutoencoderConfig {
    /// Checks the sizes.
    ///
    /// # Errors
    /// A zero size.
    pub fn validate(&self) -> crate::Result<()> {
        check_size("d_input", self.d_input)?;
        check_size("d_latent", self.d_latent)?;
        for (i, &h) in self.d_hidden.iter().enumerate() {
            check_size(&format!("d_hidden[{i}]"), h)?;
        }
        Ok(())
    }

    /// Builds the autoencoder on `device`.
    ///
    /// # Errors
    /// As [`validate`](Self::validate).
    pub fn init(&self, device: &Device) -> crate::Result<Autoencoder> {
        self.validate()?;
        let code = if self.variational {
            2 * self.d_latent
        } else {
            self.d_latent
        };
        let encoder = MlpConfig::new(self.d_input, code)
            .with_d_hidden(self.d_hidden.clone())
            .with_activation(self.activation)
            .init(device)?;
        let decoder = MlpConfig::new(self.d_latent, self.d_input)
            .with_d_hidden(self.d_hidden.iter().rev().copied().collect())
            .with_activation(self.activation)
            .init(device)?;
        Ok(Autoencoder {
            encoder,
            decoder,
            variational: self.variational,
            d_latent: self.d_latent,
        })
    }
}

impl Autoencoder {
    /// The code of each input: `(code, zeros)` for a plain autoencoder, `(mean, log_var)` of
    /// the Gaussian posterior for a variational one.
    ///
    /// # Shapes
    /// - input: `[batch, d_input]`
    /// - outputs: `[batch, d_latent]` each
    pub fn encode(&self, input: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let h = self.encoder.forward(input);
        if self.variational {
            let [b, _] = h.dims();
            let mean = h.clone().slice([0..b, 0..self.d_latent]);
            let log_var = h.slice([0..b, self.d_latent..2 * self.d_latent]);
            (mean, log_var)
        } else {
            let zeros = h.zeros_like();
            (h, zeros)
        }
    }

    /// Pixel logits of codes.
    ///
    /// # Shapes
    /// - input: `[batch, d_latent]`
    /// - output: `[batch, d_input]`
    pub fn decode(&self, code: Tensor<2>) -> Tensor<2> {
        self.decoder.forward(code)
    }

    /// The training pass: pixel logits of a code drawn from the posterior (`mean + exp(lv / 2)
    /// eps`, eps from the device's seeded generator; the code itself for a plain autoencoder),
    /// with the posterior's mean and log-variance.
    ///
    /// # Shapes
    /// - input: `[batch, d_input]`
    /// - outputs: logits `[batch, d_input]`, mean and log-variance `[batch, d_latent]`
    pub fn forward(&self, input: Tensor<2>) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
        let (mean, log_var) = self.encode(input);
        let code = if self.variational {
            let eps = Tensor::random(mean.dims(), Distribution::Normal(0.0, 1.0), &mean.device());
            mean.clone() + (log_var.clone() * 0.5).exp() * eps
        } else {
            mean.clone()
        };
        (self.decode(code), mean, log_var)
    }

    /// Pixel probabilities of the reconstruction from the posterior mean.
    ///
    /// # Shapes
    /// - input, output: `[batch, d_input]`
    pub fn reconstruct(&self, input: Tensor<2>) -> Tensor<2> {
        let (mean, _) = self.encode(input);
        burn::tensor::activation::sigmoid(self.decode(mean))
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        /// Encode and decode keep the shapes for any sizes, either kind.
        #[test]
        fn shapes(batch in 1usize..6, d_in in 1usize..40, latent in 1usize..8,
                  hidden in prop::collection::vec(1usize..16, 0..3), variational in any::<bool>()) {
            let d = Device::flex();
            let m = AutoencoderConfig::new(d_in)
                .with_d_latent(latent)
                .with_d_hidden(hidden)
                .with_variational(variational)
                .init(&d)
                .unwrap();
            let x = Tensor::<2>::ones([batch, d_in], &d);
            let (logits, mean, log_var) = m.forward(x.clone());
            prop_assert_eq!(logits.dims(), [batch, d_in]);
            prop_assert_eq!(mean.dims(), [batch, latent]);
            prop_assert_eq!(log_var.dims(), [batch, latent]);
            prop_assert_eq!(m.reconstruct(x).dims(), [batch, d_in]);
        }
    }
}
