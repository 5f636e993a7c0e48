//! One SGD step (weight decay, momentum with dampening, Nesterov) in a single pass over the
//! parameter, its gradient and the velocity (burn's `Sgd` makes two to six tensor passes).
//!
//! With `g` the gradient plus `weight_decay * p`: the velocity is `v = g` at the first step and
//! `v = (1 - dampening) g + momentum v` after; the update is `u = momentum v + g` with
//! Nesterov, else `u = v`; `p = p - lr u`. Without momentum `u = g`. burn's `Sgd` exactly, in
//! its order of operations.

use rayon::prelude::*;

use crate::math::simd;

/// The hyper-parameters of one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdStep {
    /// Learning rate.
    pub lr: f64,
    /// L2 penalty added to the gradient (0 for none).
    pub weight_decay: f32,
    /// Momentum (read only by the step with a velocity).
    pub momentum: f32,
    /// Dampening of the gradient in the velocity (read only by the step with a velocity).
    pub dampening: f64,
    /// Nesterov's update (read only by the step with a velocity).
    pub nesterov: bool,
    /// The first step: the velocity starts as the gradient (its old values are not read).
    pub first: bool,
}

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// The gradient with the L2 penalty, as burn's `WeightDecay` adds it.
#[inline(always)]
fn decayed(g: f32, p: f32, weight_decay: f32) -> f32 {
    if weight_decay == 0.0 {
        g
    } else {
        p * weight_decay + g
    }
}

/// Updates `param` from `grad` (no momentum).
///
/// # Panics
/// When the slices differ in length.
pub fn step(param: &mut [f32], grad: &[f32], s: &SgdStep) {
    assert_eq!(param.len(), grad.len(), "sgd: lengths differ");
    let lr = s.lr as f32;
    param
        .par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .for_each(|(p, g)| plain(p, g, s.weight_decay, lr));
}

simd! {
    /// One chunk of [`step`].
    fn plain(p: &mut [f32], g: &[f32], weight_decay: f32, lr: f32) {
        for (p, &g) in p.iter_mut().zip(g) {
            *p -= decayed(g, *p, weight_decay) * lr;
        }
    }
}

/// Updates `param` and the velocity from `grad` (with momentum).
///
/// # Panics
/// When the slices differ in length.
pub fn step_with_momentum(param: &mut [f32], grad: &[f32], velocity: &mut [f32], s: &SgdStep) {
    assert!(
        grad.len() == param.len() && velocity.len() == param.len(),
        "sgd: lengths differ"
    );
    param
        .par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .zip(velocity.par_chunks_mut(CHUNK))
        .for_each(|((p, g), v)| with_momentum(p, g, v, s));
}

simd! {
    /// One chunk of [`step_with_momentum`].
    fn with_momentum(p: &mut [f32], g: &[f32], v: &mut [f32], s: &SgdStep) {
        let lr = s.lr as f32;
        let keep = (1.0 - s.dampening) as f32;
        let momentum = s.momentum;
        for ((p, &g), v) in p.iter_mut().zip(g).zip(v.iter_mut()) {
            let g = decayed(g, *p, s.weight_decay);
            *v = if s.first { g } else { g * keep + *v * momentum };
            let u = if s.nesterov { *v * momentum + g } else { *v };
            *p -= u * lr;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hyper(first: bool, nesterov: bool) -> SgdStep {
        SgdStep {
            lr: 0.1,
            weight_decay: 0.5,
            momentum: 0.9,
            dampening: 0.1,
            nesterov,
            first,
        }
    }

    #[test]
    fn two_steps_by_hand() {
        // p = 1, g = 2, decay 0.5: g' = 2.5; v = 2.5; p = 1 - 0.25 = 0.75.
        let (mut p, mut v) = (vec![1.0f32], vec![f32::NAN]);
        step_with_momentum(&mut p, &[2.0], &mut v, &hyper(true, false));
        assert!((p[0] - 0.75).abs() < 1e-6 && (v[0] - 2.5).abs() < 1e-6);
        // g' = 2 + 0.375 = 2.375; v = 0.9 * 2.375 + 0.9 * 2.5 = 4.3875; p = 0.75 - 0.43875.
        step_with_momentum(&mut p, &[2.0], &mut v, &hyper(false, false));
        assert!((v[0] - 4.3875).abs() < 1e-5, "{}", v[0]);
        assert!((p[0] - 0.31125).abs() < 1e-5, "{}", p[0]);
        // Nesterov from the same start: u = 0.9 * 2.5 + 2.5 = 4.75; p = 1 - 0.475.
        let (mut p, mut v) = (vec![1.0f32], vec![0.0]);
        step_with_momentum(&mut p, &[2.0], &mut v, &hyper(true, true));
        assert!((p[0] - 0.525).abs() < 1e-6, "{}", p[0]);
        // Plain SGD: p = 1 - 0.1 * 2.5.
        let mut p = vec![1.0f32];
        step(&mut p, &[2.0], &hyper(true, false));
        assert!((p[0] - 0.75).abs() < 1e-6);
    }
}
