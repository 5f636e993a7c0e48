//! One serde config that builds SGD, Adam, AdamW or RMSprop with weight decay and gradient
//! clipping (burn's RMSprop; SGD, Adam and AdamW fused, see [`crate::fused`]).

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{ModuleOptimizer, RmsPropConfig};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fused::{FusedAdam, FusedAdamW, FusedSgd};

/// The optimizer algorithm and its own hyper-parameters. Defaults follow PyTorch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Stochastic gradient descent, optionally with (Nesterov) momentum.
    Sgd {
        /// Momentum factor (0 = plain SGD).
        #[serde(default)]
        momentum: f64,
        /// Dampening of the momentum (PyTorch default 0).
        #[serde(default)]
        dampening: f64,
        /// Nesterov momentum.
        #[serde(default)]
        nesterov: bool,
    },
    /// Adam (L2 weight decay added to the gradient).
    Adam {
        /// First-moment decay, default 0.9.
        #[serde(default = "beta1")]
        beta1: f32,
        /// Second-moment decay, default 0.999.
        #[serde(default = "beta2")]
        beta2: f32,
        /// Numerical epsilon, default 1e-8.
        #[serde(default = "eps")]
        epsilon: f32,
    },
    /// AdamW (decoupled weight decay).
    AdamW {
        /// First-moment decay, default 0.9.
        #[serde(default = "beta1")]
        beta1: f32,
        /// Second-moment decay, default 0.999.
        #[serde(default = "beta2")]
        beta2: f32,
        /// Numerical epsilon, default 1e-8.
        #[serde(default = "eps")]
        epsilon: f32,
    },
    /// RMSprop.
    RmsProp {
        /// Smoothing constant, default 0.99.
        #[serde(default = "alpha")]
        alpha: f32,
        /// Momentum, default 0.
        #[serde(default)]
        momentum: f32,
        /// Numerical epsilon, default 1e-8.
        #[serde(default = "eps")]
        epsilon: f32,
        /// Centered RMSprop.
        #[serde(default)]
        centered: bool,
    },
}

fn beta1() -> f32 {
    0.9
}
fn beta2() -> f32 {
    0.999
}
fn eps() -> f32 {
    1e-8
}
fn alpha() -> f32 {
    0.99
}

impl OptimizerKind {
    /// The optimizer with PyTorch's defaults, by name (`sgd`, `adam`, `adamw`, `rmsprop`).
    ///
    /// # Errors
    /// [`Error::UnknownOptimizer`] for any other name.
    pub fn by_name(name: &str) -> Result<Self> {
        Ok(match name.trim().to_ascii_lowercase().as_str() {
            "sgd" => OptimizerKind::Sgd {
                momentum: 0.9,
                dampening: 0.0,
                nesterov: false,
            },
            "adam" => OptimizerKind::Adam {
                beta1: beta1(),
                beta2: beta2(),
                epsilon: eps(),
            },
            "adamw" => OptimizerKind::AdamW {
                beta1: beta1(),
                beta2: beta2(),
                epsilon: eps(),
            },
            "rmsprop" => OptimizerKind::RmsProp {
                alpha: alpha(),
                momentum: 0.0,
                epsilon: eps(),
                centered: false,
            },
            other => return Err(Error::UnknownOptimizer(other.to_string())),
        })
    }

    /// The lower-case name.
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerKind::Sgd { .. } => "sgd",
            OptimizerKind::Adam { .. } => "adam",
            OptimizerKind::AdamW { .. } => "adamw",
            OptimizerKind::RmsProp { .. } => "rmsprop",
        }
    }
}

/// Gradient clipping, applied by burn to each parameter's gradient tensor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Clipping {
    /// Clamp every gradient element to `[-v, v]`.
    Value(f32),
    /// Rescale each parameter's gradient to an L2 norm of at most `v`.
    Norm(f32),
}

/// Everything needed to build an optimizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizerConfig {
    /// The algorithm.
    #[serde(flatten)]
    pub kind: OptimizerKind,
    /// The base learning rate (schedules scale it), default 1e-3.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Weight decay (L2 penalty; decoupled for AdamW), default 0.
    #[serde(default)]
    pub weight_decay: f32,
    /// Optional gradient clipping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip: Option<Clipping>,
}

fn default_lr() -> f64 {
    1e-3
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::by_name("adam").expect("adam exists"),
            lr: default_lr(),
            weight_decay: 0.0,
            clip: None,
        }
    }
}

fn positive(name: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(Error::Invalid(format!("{name} must be > 0, got {v}")))
    }
}

fn unit(name: &str, v: f64) -> Result<()> {
    if (0.0..1.0).contains(&v) {
        Ok(())
    } else {
        Err(Error::Invalid(format!("{name} must be in [0, 1), got {v}")))
    }
}

impl OptimizerConfig {
    /// Checks every hyper-parameter.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first value out of range.
    pub fn validate(&self) -> Result<()> {
        positive("learning rate", self.lr)?;
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::Invalid(format!(
                "weight decay must be >= 0, got {}",
                self.weight_decay
            )));
        }
        match self.clip {
            Some(Clipping::Value(v)) | Some(Clipping::Norm(v)) => positive("clip", v as f64)?,
            None => {}
        }
        match &self.kind {
            OptimizerKind::Sgd {
                momentum,
                dampening,
                nesterov,
            } => {
                unit("momentum", *momentum)?;
                unit("dampening", *dampening)?;
                if *nesterov && (*momentum == 0.0 || *dampening != 0.0) {
                    return Err(Error::Invalid(
                        "Nesterov momentum requires momentum > 0 and dampening = 0".into(),
                    ));
                }
            }
            OptimizerKind::Adam {
                beta1,
                beta2,
                epsilon,
            }
            | OptimizerKind::AdamW {
                beta1,
                beta2,
                epsilon,
            } => {
                unit("beta1", *beta1 as f64)?;
                unit("beta2", *beta2 as f64)?;
                positive("epsilon", *epsilon as f64)?;
            }
            OptimizerKind::RmsProp {
                alpha,
                momentum,
                epsilon,
                ..
            } => {
                unit("alpha", *alpha as f64)?;
                unit("momentum", *momentum as f64)?;
                positive("epsilon", *epsilon as f64)?;
            }
        }
        Ok(())
    }

    /// Builds the optimizer: burn's SGD and RMSprop, Strata's fused Adam and AdamW (burn's
    /// arithmetic and state types, one pass per parameter on flex).
    ///
    /// # Errors
    /// As [`validate`](Self::validate).
    pub fn build(&self) -> Result<ModuleOptimizer> {
        self.validate()?;
        let decay = (self.weight_decay > 0.0).then(|| WeightDecayConfig::new(self.weight_decay));
        let clip = self.clip.map(|c| match c {
            Clipping::Value(v) => GradientClippingConfig::Value(v),
            Clipping::Norm(v) => GradientClippingConfig::Norm(v),
        });
        Ok(match &self.kind {
            OptimizerKind::Sgd {
                momentum,
                dampening,
                nesterov,
            } => {
                let mut sgd = FusedSgd::new(self.weight_decay);
                if *momentum > 0.0 {
                    sgd = sgd.with_momentum(*momentum, *dampening, *nesterov);
                }
                clipped(sgd.into(), clip)
            }
            // SGD, Adam and AdamW step in one fused pass per parameter on flex (crate::fused).
            OptimizerKind::Adam {
                beta1,
                beta2,
                epsilon,
            } => clipped(
                FusedAdam::new(*beta1, *beta2, *epsilon, self.weight_decay).into(),
                clip,
            ),
            OptimizerKind::AdamW {
                beta1,
                beta2,
                epsilon,
            } => clipped(
                FusedAdamW::new(*beta1, *beta2, *epsilon, self.weight_decay).into(),
                clip,
            ),
            OptimizerKind::RmsProp {
                alpha,
                momentum,
                epsilon,
                centered,
            } => RmsPropConfig::new()
                .with_alpha(*alpha)
                .with_momentum(*momentum)
                .with_epsilon(*epsilon)
                .with_centered(*centered)
                .with_weight_decay(decay)
                .with_grad_clipping(clip)
                .init(),
        })
    }
}

/// `optimizer` with gradient clipping, when asked for.
fn clipped(optimizer: ModuleOptimizer, clip: Option<GradientClippingConfig>) -> ModuleOptimizer {
    match clip {
        Some(clip) => optimizer.with_grad_clipping(clip.init()),
        None => optimizer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::tensor::{Device, Tensor};
    use strata_tensor::convert::to_vec;

    #[test]
    fn names_and_validation() {
        for n in ["sgd", "adam", "adamw", "rmsprop"] {
            let c = OptimizerConfig {
                kind: OptimizerKind::by_name(n).unwrap(),
                ..Default::default()
            };
            assert_eq!(c.kind.name(), n);
            assert!(c.build().is_ok());
        }
        assert!(matches!(
            OptimizerKind::by_name("lbfgs2"),
            Err(Error::UnknownOptimizer(_))
        ));
        let bad = OptimizerConfig {
            lr: 0.0,
            ..Default::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("learning rate")
        );
        let bad = OptimizerConfig {
            kind: OptimizerKind::Sgd {
                momentum: 0.0,
                dampening: 0.0,
                nesterov: true,
            },
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let bad = OptimizerConfig {
            clip: Some(Clipping::Norm(-1.0)),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn toml_round_trip() {
        let c = OptimizerConfig {
            kind: OptimizerKind::by_name("sgd").unwrap(),
            lr: 0.1,
            weight_decay: 5e-4,
            clip: Some(Clipping::Norm(1.0)),
        };
        let json = serde_json::to_string(&c).unwrap();
        let back: OptimizerConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }

    /// One SGD step on `y = w x` with loss `sum(y)`: w <- w - lr * x.
    /// PyTorch: w = torch.tensor([[2.]], requires_grad=True); (w * 3.).sum().backward();
    /// torch.optim.SGD([w], lr=0.1).step() -> w = 1.7
    #[test]
    fn sgd_step_matches_pytorch() {
        let device = Device::flex().autodiff();
        let mut layer: Linear = LinearConfig::new(1, 1).with_bias(false).init(&device);
        layer = layer.map(&mut SetWeight(2.0));
        let c = OptimizerConfig {
            kind: OptimizerKind::Sgd {
                momentum: 0.0,
                dampening: 0.0,
                nesterov: false,
            },
            lr: 0.1,
            weight_decay: 0.0,
            clip: None,
        };
        let mut optim = c.build().unwrap();
        let x = Tensor::<2>::from_floats([[3.0]], &device);
        let loss = layer.forward(x).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &layer);
        let layer = optim.step(0.1, layer, grads);
        let w = to_vec(layer.weight.val());
        assert!((w[0] - 1.7).abs() < 1e-6, "{w:?}");
    }

    struct SetWeight(f32);
    impl burn::module::ModuleMapper for SetWeight {
        fn map_float<const D: usize>(
            &mut self,
            param: burn::module::Param<Tensor<D>>,
        ) -> burn::module::Param<Tensor<D>> {
            param.map(|t| t.zeros_like().add_scalar(self.0).require_grad())
        }
    }
}
