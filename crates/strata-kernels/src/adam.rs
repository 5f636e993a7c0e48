//! One Adam / AdamW step in a single pass over the parameter, its gradient and the two moments
//! (burn's optimizer makes about twelve tensor passes per parameter).
//!
//! With `g` the gradient (plus `weight_decay * p` for Adam's L2 penalty), `t` the step number
//! from 1, `c = sqrt(1 - beta_2^t) / (1 - beta_1^t)` and `e = epsilon * sqrt(1 - beta_2^t)`:
//! `m = beta_1 m + (1 - beta_1) g`, `v = beta_2 v + (1 - beta_2) g^2`,
//! `p = p * (1 - lr * weight_decay if decoupled) - lr * c * m / (sqrt(v) + e)`: burn's `Adam`
//! and `AdamW` exactly (the bias corrections folded as burn's Adam folds them).

use rayon::prelude::*;

use crate::math::simd;

/// The hyper-parameters of one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta_1: f32,
    /// Second-moment decay.
    pub beta_2: f32,
    /// Added to the second moment's square root.
    pub epsilon: f32,
    /// Weight decay (0 for none).
    pub weight_decay: f32,
    /// AdamW's decoupled decay (`p *= 1 - lr * weight_decay`) instead of Adam's L2 penalty.
    pub decoupled: bool,
    /// The step number, from 1.
    pub time: usize,
}

impl AdamStep {
    /// `(c, e)`: the folded bias corrections.
    pub(crate) fn corrections(&self) -> (f32, f32) {
        let t = self.time.min(i32::MAX as usize) as i32;
        let bc2 = (1.0 - self.beta_2.powi(t)).sqrt();
        (bc2 / (1.0 - self.beta_1.powi(t)), self.epsilon * bc2)
    }
}

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// Updates `param`, `m` and `v` in place from `grad`.
///
/// # Panics
/// When the four slices differ in length.
pub fn step(param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32], s: &AdamStep) {
    assert!(
        grad.len() == param.len() && m.len() == param.len() && v.len() == param.len(),
        "adam: lengths differ"
    );
    let (c, e) = s.corrections();
    let lr = s.lr as f32;
    let (b1, b2) = (s.beta_1, s.beta_2);
    let (l2, decay) = if s.decoupled {
        (0.0, 1.0 - (s.lr * s.weight_decay as f64) as f32)
    } else {
        (s.weight_decay, 1.0)
    };
    param
        .par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
        .for_each(|((p, g), (m, v))| update(p, g, m, v, [l2, b1, b2, c, e, decay, lr]));
}

simd! {
    /// One chunk of [`step`], with `[l2, beta_1, beta_2, c, e, decay, lr]` its constants (no
    /// fused multiply-adds: Rust does not contract `a * b + c`, so the AVX2 copy rounds as the
    /// baseline one does).
    fn update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: [f32; 7]) {
        let [l2, b1, b2, c, e, decay, lr] = k;
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let g = g + l2 * *p;
            *m = *m * b1 + g * (1.0 - b1);
            // In burn's order of operations, so that the step is bit for bit burn's Adam.
            *v = b2 * *v + g * g * (1.0 - b2);
            *p = *p * decay - lr * (*m * c / (v.sqrt() + e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_step_moves_by_the_learning_rate() {
        // With m = v = 0, the first step is lr * g / (|g| + epsilon') = lr * sign(g), nearly.
        let mut p = vec![1.0f32, -2.0, 0.5];
        let g = [0.3f32, -4.0, 1e-3];
        let (mut m, mut v) = (vec![0.0; 3], vec![0.0; 3]);
        let s = AdamStep {
            lr: 0.01,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            time: 1,
        };
        step(&mut p, &g, &mut m, &mut v, &s);
        for (got, want) in p.iter().zip([0.99f32, -1.99, 0.49]) {
            assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        }
    }
}
