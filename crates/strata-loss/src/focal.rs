//! Focal loss (Lin et al., 2017) for multi-class classification.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// Multi-class focal loss, `FL = -alpha_t (1 - p_t)^gamma log p_t`, averaged over the batch.
///
/// With `gamma = 0` and no `alpha` it is the cross-entropy. Focal loss down-weights easy,
/// well-classified samples, which helps with class imbalance.
#[derive(Debug, Clone)]
pub struct FocalLoss {
    /// Focusing parameter (>= 0); 2 is the paper's default.
    pub gamma: f32,
    /// Optional per-class weights `alpha_c`.
    pub alpha: Option<Vec<f32>>,
}

impl FocalLoss {
    /// Computes the mean focal loss.
    ///
    /// # Shapes
    /// - `logits`: `[batch, n_classes]`
    /// - `targets`: `[batch]` class indices
    /// - output: `[1]`
    pub fn forward(&self, logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
        let [batch, n_classes] = logits.dims();
        let device = logits.device();
        let idx = targets.clone().reshape([batch, 1]);
        let log_p = log_softmax(logits, 1).gather(1, idx).reshape([batch]);
        let p = log_p.clone().exp();
        let modulator = (p.ones_like() - p).clamp_min(0.0).powf_scalar(self.gamma);
        let mut per_sample = modulator * log_p;
        if let Some(alpha) = &self.alpha {
            let a = Tensor::<1>::from_floats(&alpha[..n_classes.min(alpha.len())], &device);
            per_sample = per_sample * a.gather(0, targets);
        }
        per_sample.mean().neg()
    }
}
