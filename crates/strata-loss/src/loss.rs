//! The [`Loss`] trait, burn's losses behind it, and the serde [`LossConfig`].

use burn::nn::loss::{BinaryCrossEntropyLossConfig, CrossEntropyLossConfig, MseLoss, Reduction};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use strata_tensor::TargetBatch;

use crate::error::{Error, Result};
use crate::focal::FocalLoss;

/// A training objective: maps model outputs and targets to a scalar loss.
///
/// Implement it to plug in your own loss:
///
/// ```
/// use burn::tensor::Tensor;
/// use strata_loss::{Loss, Result, Error};
/// use strata_tensor::TargetBatch;
///
/// /// Mean absolute error.
/// struct L1;
/// impl Loss for L1 {
///     fn name(&self) -> &str { "l1" }
///     fn forward(&self, outputs: Tensor<2>, targets: &TargetBatch) -> Result<Tensor<1>> {
///         match targets {
///             TargetBatch::Values(y) => Ok((outputs - y.clone()).abs().mean()),
///             TargetBatch::Classes(_) => Err(Error::WrongTargets { loss: "l1".into(), targets: "class" }),
///         }
///     }
/// }
/// let d = burn::tensor::Device::flex();
/// let out = Tensor::<2>::from_floats([[1.0], [3.0]], &d);
/// let y = TargetBatch::Values(Tensor::<2>::from_floats([[0.0], [1.0]], &d));
/// let l = L1.forward(out, &y)?;
/// assert_eq!(strata_tensor::convert::scalar(l), 1.5);
/// # Ok::<(), strata_loss::Error>(())
/// ```
pub trait Loss: Send + Sync {
    /// A short name for logs and configs.
    fn name(&self) -> &str;
    /// The mean loss over the batch, shape `[1]`.
    ///
    /// # Errors
    /// When the targets do not suit the loss, or shapes disagree.
    fn forward(&self, outputs: Tensor<2>, targets: &TargetBatch) -> Result<Tensor<1>>;
}

/// The built-in losses, as data (TOML / JSON / CLI).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LossConfig {
    /// Softmax cross-entropy over logits, with optional class weights and label smoothing.
    CrossEntropy {
        /// Per-class weights (PyTorch's `weight=`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        weights: Option<Vec<f32>>,
        /// Label smoothing in `[0, 1)` (PyTorch's `label_smoothing=`).
        #[serde(default)]
        smoothing: f32,
    },
    /// Mean squared error over real targets.
    Mse,
    /// Binary cross-entropy with logits: one output per sample, class 0/1 targets.
    Bce,
    /// Multi-class focal loss.
    Focal {
        /// Focusing parameter, default 2.
        #[serde(default = "default_gamma")]
        gamma: f32,
        /// Optional per-class weights.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        alpha: Option<Vec<f32>>,
    },
    /// The margin loss on class scores in `[0, 1]` (a capsule network's capsule lengths).
    Margin(crate::MarginLoss),
}

fn default_gamma() -> f32 {
    2.0
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig::CrossEntropy {
            weights: None,
            smoothing: 0.0,
        }
    }
}

impl LossConfig {
    /// Checks the hyper-parameters.
    ///
    /// # Errors
    /// Smoothing outside `[0, 1)`, negative gamma, negative or non-finite weights.
    pub fn validate(&self) -> Result<()> {
        let check_weights = |w: &Option<Vec<f32>>| match w {
            Some(w) if w.iter().any(|v| !v.is_finite() || *v < 0.0) => Err(Error::Invalid(
                format!("class weights must be finite and >= 0, got {w:?}"),
            )),
            _ => Ok(()),
        };
        match self {
            LossConfig::CrossEntropy { weights, smoothing } => {
                if !(0.0..1.0).contains(smoothing) {
                    return Err(Error::Invalid(format!(
                        "label smoothing must be in [0, 1), got {smoothing}"
                    )));
                }
                check_weights(weights)
            }
            LossConfig::Focal { gamma, alpha } => {
                if !(gamma.is_finite() && *gamma >= 0.0) {
                    return Err(Error::Invalid(format!(
                        "focal gamma must be >= 0, got {gamma}"
                    )));
                }
                check_weights(alpha)
            }
            LossConfig::Margin(m) => m.validate(),
            LossConfig::Mse | LossConfig::Bce => Ok(()),
        }
    }

    /// Builds the loss on `device` (class weights become tensors there).
    ///
    /// # Errors
    /// As [`validate`](Self::validate).
    pub fn init(&self, device: &Device) -> Result<Box<dyn Loss>> {
        self.validate()?;
        Ok(match self {
            LossConfig::CrossEntropy { weights, smoothing } => {
                let config = CrossEntropyLossConfig::new()
                    .with_weights(weights.clone())
                    .with_smoothing((*smoothing > 0.0).then_some(*smoothing));
                Box::new(CrossEntropy {
                    inner: config.init(device),
                    n_weights: weights.as_ref().map(Vec::len),
                    plain: weights.is_none() && *smoothing == 0.0,
                })
            }
            LossConfig::Mse => Box::new(Mse),
            LossConfig::Bce => Box::new(Bce {
                inner: BinaryCrossEntropyLossConfig::new()
                    .with_logits(true)
                    .init(device),
            }),
            LossConfig::Focal { gamma, alpha } => Box::new(Focal(FocalLoss {
                gamma: *gamma,
                alpha: alpha.clone(),
            })),
            LossConfig::Margin(m) => Box::new(Margin(*m)),
        })
    }
}

fn classes_of<'a>(
    loss: &str,
    targets: &'a TargetBatch,
) -> Result<&'a burn::tensor::Tensor<1, burn::tensor::Int>> {
    match targets {
        TargetBatch::Classes(t) => Ok(t),
        TargetBatch::Values(_) => Err(Error::WrongTargets {
            loss: loss.into(),
            targets: "real-valued",
        }),
    }
}

fn same_batch(outputs: &Tensor<2>, n: usize) -> Result<()> {
    if outputs.dims()[0] != n {
        return Err(Error::Shape {
            outputs: outputs.dims().to_vec(),
            targets: vec![n],
        });
    }
    Ok(())
}

struct CrossEntropy {
    inner: burn::nn::loss::CrossEntropyLoss,
    n_weights: Option<usize>,
    /// No class weights and no smoothing: Strata's fused kernel on flex.
    plain: bool,
}

impl Loss for CrossEntropy {
    fn name(&self) -> &str {
        "cross_entropy"
    }
    fn forward(&self, outputs: Tensor<2>, targets: &TargetBatch) -> Result<Tensor<1>> {
        let t = classes_of(self.name(), targets)?;
        same_batch(&outputs, t.dims()[0])?;
        if let Some(n) = self.n_weights
            && n != outputs.dims()[1]
        {
            return Err(Error::Invalid(format!(
                "{n} class weights for {} classes",
                outputs.dims()[1]
            )));
        }
        if self.plain {
            return Ok(strata_kernels::cross_entropy(outputs, t.clone()));
        }
        Ok(self.inner.forward(outputs, t.clone()))
    }
}

struct Mse;

impl Loss for Mse {
    fn name(&self) -> &str {
        "mse"
    }
    fn forward(&self, outputs: Tensor<2>, targets: &TargetBatch) -> Result<Tensor<1>> {
        match targets {
            TargetBatch::Values(y) => {
                if outputs.dims() != y.dims() {
                    return Err(Error::Shape {
                        outputs: outputs.dims().to_vec(),
                        targets: y.dims().to_vec(),
                    });
                }
                Ok(MseLoss::new().forward(outputs, y.clone(), Reduction::Mean))
            }
            TargetBatch::Classes(_) => Err(Error::WrongTargets {
                loss: "mse".into(),
                targets: "class",
            }),
        }
    }
}

struct Bce {
    inner: burn::nn::loss::BinaryCrossEntropyLoss,
}

impl Loss for Bce {
    fn name(&self) -> &str {
        "bce"
    }
    fn forward(&self, outputs: Tensor<2>, targets: &TargetBatch) -> Result<Tensor<1>> {
        let t = classes_of(self.name(), targets)?;
        let [n, k] = outputs.dims();
        same_batch(&outputs, t.dims()[0])?;
        if k != 1 {
            return Err(Error::Invalid(format!(
                "binary cross-entropy needs one output per sample, got {k}"
            )));
        }
        Ok(self.inner.forward(outputs.reshape([n]), t.clone()))
    }
}

struct Focal(FocalLoss);

impl Loss for Focal {
    fn name(&self) -> &str {
        "focal"
    }
    fn forward(&self, outputs: Tensor<2>, targets: &TargetBatch) -> Result<Tensor<1>> {
        let t = classes_of(self.name(), targets)?;
        same_batch(&outputs, t.dims()[0])?;
        Ok(self.0.forward(outputs, t.clone()))
    }
}

struct Margin(crate::MarginLoss);

impl Loss for Margin {
    fn name(&self) -> &str {
        "margin"
    }
    fn forward(&self, outputs: Tensor<2>, targets: &TargetBatch) -> Result<Tensor<1>> {
        let t = classes_of(self.name(), targets)?;
        same_batch(&outputs, t.dims()[0])?;
        Ok(self.0.forward(outputs, t.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_tensor::convert::{classes, scalar};

    fn logits(d: &Device) -> Tensor<2> {
        Tensor::<2>::from_floats([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 1.0]], d)
    }

    // PyTorch 2.x:
    // x = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 1.0]]); y = torch.tensor([0, 2, 1])
    // F.cross_entropy(x, y)                              -> 0.4831750
    // F.cross_entropy(x, y, weight=torch.tensor([1., 2., 3.]))   -> 0.4612234
    // F.cross_entropy(x, y, label_smoothing=0.1)         -> 0.5965084
    #[test]
    fn cross_entropy_matches_pytorch() {
        let d = Device::flex();
        let y = TargetBatch::Classes(classes(&[0, 2, 1], &d));
        let plain = LossConfig::default().init(&d).unwrap();
        assert!((scalar(plain.forward(logits(&d), &y).unwrap()) - 0.483_175).abs() < 1e-5);
        let w = LossConfig::CrossEntropy {
            weights: Some(vec![1.0, 2.0, 3.0]),
            smoothing: 0.0,
        }
        .init(&d)
        .unwrap();
        assert!((scalar(w.forward(logits(&d), &y).unwrap()) - 0.461_223_4).abs() < 1e-5);
        let s = LossConfig::CrossEntropy {
            weights: None,
            smoothing: 0.1,
        }
        .init(&d)
        .unwrap();
        assert!((scalar(s.forward(logits(&d), &y).unwrap()) - 0.596_508_4).abs() < 1e-5);
    }

    // torchvision.ops.sigmoid_focal_loss is binary; the multi-class focal loss is
    //   p_t = softmax(x)[y]; (-(1 - p_t)**2 * log(p_t)).mean()  -> 0.1668486 (gamma = 2)
    #[test]
    fn focal_reduces_to_cross_entropy_and_matches_reference() {
        let d = Device::flex();
        let y = TargetBatch::Classes(classes(&[0, 2, 1], &d));
        let f0 = LossConfig::Focal {
            gamma: 0.0,
            alpha: None,
        }
        .init(&d)
        .unwrap();
        assert!((scalar(f0.forward(logits(&d), &y).unwrap()) - 0.483_175).abs() < 1e-5);
        let f2 = LossConfig::Focal {
            gamma: 2.0,
            alpha: None,
        }
        .init(&d)
        .unwrap();
        assert!((scalar(f2.forward(logits(&d), &y).unwrap()) - 0.166_848_6).abs() < 1e-5);
    }

    // F.mse_loss(torch.tensor([[1.], [2.]]), torch.tensor([[0.], [4.]])) -> 2.5
    // F.binary_cross_entropy_with_logits(torch.tensor([0.5, -1.0]), torch.tensor([1., 0.])) -> 0.3936694
    #[test]
    fn mse_and_bce_match_pytorch() {
        let d = Device::flex();
        let mse = LossConfig::Mse.init(&d).unwrap();
        let out = Tensor::<2>::from_floats([[1.0], [2.0]], &d);
        let y = TargetBatch::Values(Tensor::<2>::from_floats([[0.0], [4.0]], &d));
        assert!((scalar(mse.forward(out, &y).unwrap()) - 2.5).abs() < 1e-6);
        let bce = LossConfig::Bce.init(&d).unwrap();
        let out = Tensor::<2>::from_floats([[0.5], [-1.0]], &d);
        let y = TargetBatch::Classes(classes(&[1, 0], &d));
        assert!((scalar(bce.forward(out, &y).unwrap()) - 0.393_669_4).abs() < 1e-5);
    }

    #[test]
    fn bad_configs_and_targets_are_errors() {
        let d = Device::flex();
        assert!(
            LossConfig::CrossEntropy {
                weights: None,
                smoothing: 1.0
            }
            .init(&d)
            .is_err()
        );
        assert!(
            LossConfig::Focal {
                gamma: -1.0,
                alpha: None
            }
            .init(&d)
            .is_err()
        );
        let ce = LossConfig::default().init(&d).unwrap();
        let y = TargetBatch::Values(Tensor::<2>::zeros([3, 1], &d));
        assert!(matches!(
            ce.forward(logits(&d), &y),
            Err(Error::WrongTargets { .. })
        ));
        let y = TargetBatch::Classes(classes(&[0, 1], &d));
        assert!(matches!(
            ce.forward(logits(&d), &y),
            Err(Error::Shape { .. })
        ));
    }
}
