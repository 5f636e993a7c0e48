//! Global magnitude pruning (Han et al. 2015): the weights of smallest magnitude across every
//! weight matrix and convolution kernel of a model (parameters of two or more dimensions;
//! biases and normalisation scales are left) are set to zero, one threshold for the whole
//! model, so that layers with many small weights lose more of them.
//!
//! [`Masks::magnitude`] chooses the weights to keep, [`Masks::prune`] zeroes the rest. To
//! fine-tune a pruned model, train `masks.prune(model)` on the forward pass of
//! `masks.apply(model)`: the pruned weights then get no gradient and stay at zero (with SGD,
//! Adam or decoupled weight decay), and a last [`Masks::prune`] makes sure of it.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Tensor, TensorData};
use strata_tensor::convert::to_vec;

use crate::error::{Error, Result};

/// Which weights of each pruned parameter are kept, by parameter.
///
/// ```
/// use burn::nn::LinearConfig;
/// use burn::tensor::Device;
/// use strata_train::Masks;
/// let device = Device::flex();
/// let layer = LinearConfig::new(8, 4).init(&device);
/// let masks = Masks::magnitude(&layer, 0.75)?;
/// let pruned = masks.prune(layer);
/// assert_eq!(masks.kept(), 8);
/// assert_eq!(strata_train::zeros(&pruned), 24);
/// # Ok::<(), strata_train::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Masks {
    keep: HashMap<ParamId, Vec<bool>>,
}

impl Masks {
    /// The masks that keep the largest `1 - sparsity` share of `model`'s weights by magnitude
    /// (ties at the threshold pruned), over all its parameters of two or more dimensions.
    ///
    /// # Errors
    /// A sparsity outside `[0, 1)`, a model without weights of two or more dimensions, or a
    /// weight that is NaN.
    pub fn magnitude<M: Module>(model: &M, sparsity: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&sparsity) {
            return Err(Error::Invalid(format!(
                "sparsity must be in [0, 1), got {sparsity}"
            )));
        }
        let mut weights = Weights::default();
        model.visit(&mut weights);
        let n: usize = weights.values.iter().map(|(_, v)| v.len()).sum();
        if n == 0 {
            return Err(Error::Invalid(
                "the model has no weight matrices or kernels to prune".into(),
            ));
        }
        if weights
            .values
            .iter()
            .any(|(_, v)| v.iter().any(|w| w.is_nan()))
        {
            return Err(Error::Invalid(
                "a weight is NaN: nothing to prune by".into(),
            ));
        }
        let pruned = ((n as f64) * sparsity).round() as usize;
        let mut magnitudes: Vec<f32> = weights
            .values
            .iter()
            .flat_map(|(_, v)| v.iter().map(|w| w.abs()))
            .collect();
        // The threshold: the `pruned`-th smallest magnitude; weights at or below it go.
        let threshold = if pruned == 0 {
            f32::NEG_INFINITY
        } else {
            let (_, t, _) = magnitudes.select_nth_unstable_by(pruned - 1, f32::total_cmp);
            *t
        };
        let keep = weights
            .values
            .into_iter()
            .map(|(id, v)| (id, v.iter().map(|w| w.abs() > threshold).collect()))
            .collect();
        Ok(Self { keep })
    }

    /// `model` with its pruned weights set to zero, as a function of its weights: on an
    /// autodiff device, the forward pass of the result passes no gradient to the pruned
    /// weights. For the forward pass of a training step; [`prune`](Self::prune) for a model to
    /// train or keep.
    #[must_use]
    pub fn apply<M: Module>(&self, model: M) -> M {
        model.map(&mut Apply {
            masks: self,
            leaf: false,
        })
    }

    /// `model` with its pruned weights set to zero, each parameter a fresh leaf (trainable if
    /// it was).
    #[must_use]
    pub fn prune<M: Module>(&self, model: M) -> M {
        model.map(&mut Apply {
            masks: self,
            leaf: true,
        })
    }

    /// Weights kept over all pruned parameters.
    #[must_use]
    pub fn kept(&self) -> usize {
        self.keep.values().flatten().filter(|&&k| k).count()
    }

    /// Weights the masks cover (kept or not).
    #[must_use]
    pub fn covered(&self) -> usize {
        self.keep.values().map(Vec::len).sum()
    }
}

/// The number of parameter values of `model` that are exactly zero.
#[must_use]
pub fn zeros<M: Module>(model: &M) -> usize {
    let mut count = Zeros(0);
    model.visit(&mut count);
    count.0
}

#[derive(Default)]
struct Weights {
    values: Vec<(ParamId, Vec<f32>)>,
}

impl ModuleVisitor for Weights {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if D >= 2 {
            self.values.push((param.id, to_vec(param.val())));
        }
    }
}

struct Zeros(usize);

impl ModuleVisitor for Zeros {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0 += to_vec(param.val()).iter().filter(|&&w| w == 0.0).count();
    }
}

struct Apply<'a> {
    masks: &'a Masks,
    /// Detach the results from the weights' graph.
    leaf: bool,
}

impl ModuleMapper for Apply<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(keep) = self.masks.keep.get(&param.id) else {
            return param;
        };
        param.map(|t| {
            let (shape, device) = (t.shape(), t.device());
            let mask: Vec<f32> = keep.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
            let mask = Tensor::<D>::from_data(TensorData::new(mask, shape), &device);
            if self.leaf {
                let trainable = t.is_require_grad();
                let zeroed = (t * mask).detach();
                if trainable {
                    zeroed.require_grad()
                } else {
                    zeroed
                }
            } else {
                t * mask
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Device;

    use super::*;

    #[derive(Module, Debug)]
    struct Two {
        a: Linear,
        b: Linear,
    }

    fn two() -> Two {
        let device = Device::flex();
        Two {
            a: LinearConfig::new(6, 5).init(&device),
            b: LinearConfig::new(5, 3).init(&device),
        }
    }

    #[test]
    fn the_smallest_weights_go_across_layers() {
        let model = two();
        let n = 6 * 5 + 5 * 3;
        let masks = Masks::magnitude(&model, 0.6).unwrap();
        assert_eq!(masks.covered(), n);
        assert_eq!(masks.kept(), n - 27);
        let pruned = masks.prune(model.clone());
        // Every kept weight is at least as large as every pruned one, whichever layer.
        let all = |m: &Two| {
            let mut v = to_vec(m.a.weight.val());
            v.extend(to_vec(m.b.weight.val()));
            v
        };
        let (before, after) = (all(&model), all(&pruned));
        let kept_min = before
            .iter()
            .zip(&after)
            .filter(|(_, a)| **a != 0.0)
            .map(|(b, _)| b.abs())
            .fold(f32::INFINITY, f32::min);
        let pruned_max = before
            .iter()
            .zip(&after)
            .filter(|(_, a)| **a == 0.0)
            .map(|(b, _)| b.abs())
            .fold(0.0, f32::max);
        assert!(kept_min >= pruned_max, "{kept_min} < {pruned_max}");
        // The kept weights are unchanged, the biases untouched.
        for (b, a) in before.iter().zip(&after) {
            assert!(*a == 0.0 || a == b);
        }
        assert_eq!(
            to_vec(model.a.bias.as_ref().unwrap().val()),
            to_vec(pruned.a.bias.as_ref().unwrap().val())
        );
        assert_eq!(Masks::magnitude(&model, 0.0).unwrap().kept(), n);
    }

    #[test]
    fn bad_sparsities_are_refused() {
        let model = two();
        for s in [1.0, -0.1, f64::NAN, 2.0] {
            let e = Masks::magnitude(&model, s).unwrap_err().to_string();
            assert!(e.contains("sparsity must be in [0, 1)"), "{s}: {e}");
        }
    }

    #[test]
    fn masked_weights_get_no_gradient() {
        let device = Device::flex().autodiff();
        let layer = LinearConfig::new(4, 3).init(&device);
        let masks = Masks::magnitude(&layer, 0.5).unwrap();
        let x = Tensor::<2>::ones([2, 4], &device);
        let grads = masks.apply(layer.clone()).forward(x).sum().backward();
        let g = to_vec(layer.weight.grad(&grads).unwrap());
        let w = to_vec(masks.apply(layer.clone()).weight.val().inner());
        for (g, w) in g.iter().zip(&w) {
            assert!(*w != 0.0 || *g == 0.0, "a pruned weight got gradient {g}");
        }
        assert_eq!(g.iter().filter(|&&g| g != 0.0).count(), 6);

        // A pruned model trains step after step (its parameters are leaves), the pruned
        // weights at zero.
        let mut model = masks.prune(layer);
        for _ in 0..3 {
            let x = Tensor::<2>::ones([2, 4], &device);
            let grads = masks.apply(model.clone()).forward(x).sum().backward();
            let g = model.weight.grad(&grads).unwrap();
            model.weight = model
                .weight
                .map(|w| (w.inner() - g * 0.1).autodiff().require_grad());
        }
        let w = to_vec(model.weight.val().inner());
        assert_eq!(w.iter().filter(|&&w| w == 0.0).count(), 6, "{w:?}");
    }
}
