//! The margin loss of capsule networks (Sabour, Frosst and Hinton 2017, eq. 4).

use burn::tensor::{IndexingUpdateOp, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The margin loss on class scores in `[0, 1]` (a capsule network's capsule lengths): for each
/// example and class `k`,
/// `L_k = T_k max(0, m_plus - |v_k|)^2 + lambda (1 - T_k) max(0, |v_k| - m_minus)^2`
/// with `T_k = 1` for the true class; an example's loss is the **sum over classes**, the
/// batch's the **mean over examples**.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use strata_loss::MarginLoss;
/// use strata_tensor::convert::{classes, scalar};
/// let d = Device::flex();
/// let lengths = Tensor::<2>::from_floats([[0.95, 0.05], [0.5, 0.3]], &d);
/// // Example 1 is inside both margins; example 2: (0.9 - 0.3)^2 + 0.5 (0.5 - 0.1)^2 = 0.44.
/// let loss = MarginLoss::default().forward(lengths, classes(&[0, 1], &d));
/// assert!((scalar(loss) - 0.22).abs() < 1e-6);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MarginLoss {
    /// The true class's length should exceed this, default 0.9.
    #[serde(default = "default_m_plus")]
    pub m_plus: f32,
    /// Every other class's length should stay below this, default 0.1.
    #[serde(default = "default_m_minus")]
    pub m_minus: f32,
    /// Weight of the absent classes' term, default 0.5.
    #[serde(default = "default_lambda")]
    pub lambda: f32,
}

fn default_m_plus() -> f32 {
    0.9
}

fn default_m_minus() -> f32 {
    0.1
}

fn default_lambda() -> f32 {
    0.5
}

impl Default for MarginLoss {
    /// The paper's margins 0.9 and 0.1, lambda 0.5.
    fn default() -> Self {
        Self {
            m_plus: default_m_plus(),
            m_minus: default_m_minus(),
            lambda: default_lambda(),
        }
    }
}

impl MarginLoss {
    /// Checks the margins and the weight.
    ///
    /// # Errors
    /// Margins outside `[0, 1]` or not finite, `m_minus > m_plus`, a negative lambda.
    pub fn validate(&self) -> Result<()> {
        let unit = |v: f32| v.is_finite() && (0.0..=1.0).contains(&v);
        if !(unit(self.m_plus) && unit(self.m_minus) && self.m_minus <= self.m_plus) {
            return Err(Error::Invalid(format!(
                "margin loss needs 0 <= m_minus <= m_plus <= 1, got m_minus {} and m_plus {}",
                self.m_minus, self.m_plus
            )));
        }
        if !(self.lambda.is_finite() && self.lambda >= 0.0) {
            return Err(Error::Invalid(format!(
                "margin loss lambda must be >= 0, got {}",
                self.lambda
            )));
        }
        Ok(())
    }

    /// Each example's loss, summed over the classes.
    ///
    /// # Shapes
    /// - `lengths`: `[batch, n_classes]`
    /// - `targets`: `[batch]` class indices
    /// - returns `[batch]`
    pub fn per_example(&self, lengths: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
        let [b, k] = lengths.dims();
        let device = lengths.device();
        let present = Tensor::<2>::zeros([b, k], &device).scatter(
            1,
            targets.reshape([b, 1]),
            Tensor::<2>::ones([b, 1], &device),
            IndexingUpdateOp::Add,
        );
        let absent = present.ones_like() - present.clone();
        let below = (lengths.clone().neg() + self.m_plus)
            .clamp_min(0.0)
            .powi_scalar(2);
        let above = (lengths - self.m_minus).clamp_min(0.0).powi_scalar(2);
        (present * below + absent * above * self.lambda)
            .sum_dim(1)
            .reshape([b])
    }

    /// The batch's loss: the mean over examples of [`per_example`](Self::per_example).
    ///
    /// # Shapes
    /// - `lengths`: `[batch, n_classes]`
    /// - `targets`: `[batch]` class indices
    /// - returns `[1]`
    pub fn forward(&self, lengths: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
        self.per_example(lengths, targets).mean()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use strata_tensor::convert::{classes, scalar};

    // Direct numpy of eq. 4:
    // v = np.array([[0.2, 0.7, 0.05], [0.95, 0.15, 0.4]]); T = np.eye(3)[[1, 0]]
    // (T * np.maximum(0, .9 - v)**2 + .5 * (1 - T) * np.maximum(0, v - .1)**2).sum(1).mean()
    //   -> 0.045625
    #[test]
    fn matches_the_formula() {
        let d = Device::flex();
        let v = Tensor::<2>::from_floats([[0.2, 0.7, 0.05], [0.95, 0.15, 0.4]], &d);
        let l = MarginLoss::default().forward(v, classes(&[1, 0], &d));
        let l = scalar(l);
        assert!((l - 0.045_625).abs() < 1e-6, "{l}");
    }

    #[test]
    fn bad_margins_are_refused() {
        let m = MarginLoss {
            m_plus: 0.1,
            m_minus: 0.9,
            lambda: 0.5,
        };
        assert!(m.validate().unwrap_err().to_string().contains("m_minus"));
        let m = MarginLoss {
            lambda: f32::NAN,
            ..MarginLoss::default()
        };
        assert!(m.validate().is_err());
        assert!(MarginLoss::default().validate().is_ok());
    }
}
