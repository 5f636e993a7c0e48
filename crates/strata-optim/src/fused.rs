//! SGD, Adam and AdamW as burn optimizers whose step is one fused pass on flex
//! (`strata_kernels::sgd_step`, `strata_kernels::adam_step`). Adam and AdamW keep burn's own
//! state types and SGD's state flattens to the names of burn's `SgdState`, so optimizer
//! states written with burn's `Sgd` / `Adam` / `AdamW` load here and the other way round.

use burn::optim::{
    AdamState, AdamWState, AdaptiveMomentumState, LearningRate, Optimizer, RecordState, StateSink,
    StateSource, join_path,
};
use burn::tensor::{Device, Tensor};
use strata_kernels::{AdamStep, SgdStep, adam_step, sgd_step};

/// The shared hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Hyper {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
}

impl Hyper {
    fn step<const D: usize>(
        &self,
        decoupled: bool,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdaptiveMomentumState<D>>,
    ) -> (Tensor<D>, AdaptiveMomentumState<D>) {
        let (time, m, v) = match state {
            Some(s) => (s.time + 1, s.moment_1, s.moment_2),
            None => (1, tensor.zeros_like(), tensor.zeros_like()),
        };
        let step = AdamStep {
            lr,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
            decoupled,
            time,
        };
        let (tensor, m, v) = adam_step(tensor, grad, m, v, step);
        (tensor, AdaptiveMomentumState::new(time, m, v))
    }
}

/// How a fused optimizer decays weights, and the burn state type it keeps.
pub trait Flavor: Clone + Send + Sync + std::fmt::Debug + 'static {
    /// AdamW's decoupled decay, or Adam's L2 penalty.
    const DECOUPLED: bool;
    /// burn's state for this optimizer.
    type State<const D: usize>: Clone + RecordState;
    /// The state around the moments.
    fn wrap<const D: usize>(momentum: AdaptiveMomentumState<D>) -> Self::State<D>;
    /// The moments out of the state.
    fn unwrap<const D: usize>(state: Self::State<D>) -> AdaptiveMomentumState<D>;
}

/// Adam's L2 penalty, with burn's `AdamState`.
#[derive(Clone, Debug)]
pub struct L2;

impl Flavor for L2 {
    const DECOUPLED: bool = false;
    type State<const D: usize> = AdamState<D>;
    fn wrap<const D: usize>(momentum: AdaptiveMomentumState<D>) -> AdamState<D> {
        AdamState::new(momentum)
    }
    fn unwrap<const D: usize>(state: AdamState<D>) -> AdaptiveMomentumState<D> {
        state.momentum
    }
}

/// AdamW's decoupled decay, with burn's `AdamWState`.
#[derive(Clone, Debug)]
pub struct Decoupled;

impl Flavor for Decoupled {
    const DECOUPLED: bool = true;
    type State<const D: usize> = AdamWState<D>;
    fn wrap<const D: usize>(momentum: AdaptiveMomentumState<D>) -> AdamWState<D> {
        AdamWState::new(momentum)
    }
    fn unwrap<const D: usize>(state: AdamWState<D>) -> AdaptiveMomentumState<D> {
        state.momentum
    }
}

/// Adam (`Fused<L2>`) or AdamW (`Fused<Decoupled>`) with a one-pass step.
#[derive(Clone, Debug)]
pub struct Fused<F: Flavor> {
    hyper: Hyper,
    flavor: std::marker::PhantomData<F>,
}

/// Adam with the L2 penalty added to the gradient (burn's `Adam`, AMSGrad off).
pub type FusedAdam = Fused<L2>;

/// AdamW: decoupled weight decay (burn's `AdamW`, AMSGrad and cautious decay off).
pub type FusedAdamW = Fused<Decoupled>;

impl<F: Flavor> Fused<F> {
    /// The optimizer with these decays, epsilon and weight decay (0 for none).
    pub fn new(beta_1: f32, beta_2: f32, epsilon: f32, weight_decay: f32) -> Self {
        Self {
            hyper: Hyper {
                beta_1,
                beta_2,
                epsilon,
                weight_decay,
            },
            flavor: std::marker::PhantomData,
        }
    }
}

impl<F: Flavor> Optimizer for Fused<F> {
    type State<const D: usize> = F::State<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let momentum = state.map(F::unwrap);
        let (tensor, momentum) = self.hyper.step(F::DECOUPLED, lr, tensor, grad, momentum);
        (tensor, Some(F::wrap(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        F::wrap(F::unwrap(state).to_device(device))
    }
}

/// SGD's momentum: factor, dampening and Nesterov's update.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Momentum {
    momentum: f32,
    dampening: f64,
    nesterov: bool,
}

/// SGD with optional weight decay and (Nesterov) momentum, stepping as burn's `Sgd` in one
/// pass per parameter on flex.
#[derive(Clone, Debug)]
pub struct FusedSgd {
    weight_decay: f32,
    momentum: Option<Momentum>,
}

impl FusedSgd {
    /// Plain SGD with this weight decay (L2 penalty, 0 for none).
    pub fn new(weight_decay: f32) -> Self {
        Self {
            weight_decay,
            momentum: None,
        }
    }

    /// With momentum (burn's `MomentumConfig`: the factor, the dampening of the gradient and
    /// Nesterov's update).
    pub fn with_momentum(mut self, momentum: f64, dampening: f64, nesterov: bool) -> Self {
        self.momentum = Some(Momentum {
            momentum: momentum as f32,
            dampening,
            nesterov,
        });
        self
    }
}

/// [`FusedSgd`]'s state: the velocity when the optimizer has momentum. It flattens to the
/// names of burn's `SgdState` (`momentum.velocity`).
#[derive(Clone, Debug)]
pub struct FusedSgdState<const D: usize> {
    /// The momentum buffer.
    pub velocity: Option<Tensor<D>>,
}

impl<const D: usize> RecordState for FusedSgdState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        if let Some(v) = &self.velocity {
            out.push_tensor(
                &join_path(prefix, "momentum"),
                "velocity",
                v.clone().into_data(),
            );
        }
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        let velocity = src
            .take_tensor(&join_path(prefix, "momentum"), "velocity")
            .map(|data| Tensor::from_data(data, device));
        Some(Self { velocity })
    }
}

impl Optimizer for FusedSgd {
    type State<const D: usize> = FusedSgdState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let m = self.momentum.unwrap_or(Momentum {
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
        });
        let old = state.and_then(|s| s.velocity);
        let first = old.is_none();
        // On the first step the velocity becomes the gradient: any buffer of its shape will do.
        let velocity = self.momentum.map(|_| old.unwrap_or_else(|| grad.clone()));
        let step = SgdStep {
            lr,
            weight_decay: self.weight_decay,
            momentum: m.momentum,
            dampening: m.dampening,
            nesterov: m.nesterov,
            first,
        };
        let (tensor, velocity) = sgd_step(tensor, grad, velocity, step);
        (tensor, Some(FusedSgdState { velocity }))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        FusedSgdState {
            velocity: state.velocity.map(|v| v.to_device(device)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::decay::WeightDecayConfig;
    use burn::optim::momentum::MomentumConfig;
    use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
    use burn::tensor::Distribution;
    use strata_tensor::compare::check_close;
    use strata_tensor::convert::to_vec;

    /// Ten steps of a linear layer under `ours` and under burn's optimizer from the same start:
    /// the weights agree within `tol` (relative to their size).
    fn agree(mut ours: ModuleOptimizer, mut burns: ModuleOptimizer, device: &Device, tol: f32) {
        let start: Linear = LinearConfig::new(6, 4).init(device);
        let (mut a, mut b) = (start.clone(), start);
        let x = Tensor::<2>::random([8, 6], Distribution::Default, device);
        for step in 0..10 {
            let lr = 0.01 * (1.0 + step as f64 * 0.1);
            let ga = GradientsParams::from_grads(
                a.forward(x.clone()).powi_scalar(2).sum().backward(),
                &a,
            );
            let gb = GradientsParams::from_grads(
                b.forward(x.clone()).powi_scalar(2).sum().backward(),
                &b,
            );
            a = ours.step(lr, a, ga);
            b = burns.step(lr, b, gb);
        }
        let (wa, wb) = (to_vec(a.weight.val()), to_vec(b.weight.val()));
        let scale = wb.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        check_close("weight", &wa, &wb, tol * scale).unwrap();
        let (ba, bb) = (to_vec(a.bias.unwrap().val()), to_vec(b.bias.unwrap().val()));
        check_close("bias", &ba, &bb, tol * scale).unwrap();
    }

    #[test]
    #[allow(deprecated)] // ndarray: still one of Strata's backends
    fn fused_adam_steps_as_burns_adam() {
        for device in [Device::flex().autodiff(), Device::ndarray().autodiff()] {
            agree(
                FusedAdam::new(0.9, 0.999, 1e-8, 0.01).into(),
                AdamConfig::new()
                    .with_epsilon(1e-8)
                    .with_weight_decay(Some(WeightDecayConfig::new(0.01)))
                    .init(),
                &device,
                0.0, // burn's order of operations: bit for bit
            );
        }
    }

    #[test]
    #[allow(deprecated)]
    fn fused_adamw_steps_as_burns_adamw() {
        for device in [Device::flex().autodiff(), Device::ndarray().autodiff()] {
            agree(
                FusedAdamW::new(0.8, 0.99, 1e-6, 0.05).into(),
                AdamWConfig::new()
                    .with_beta_1(0.8)
                    .with_beta_2(0.99)
                    .with_epsilon(1e-6)
                    .with_weight_decay(0.05)
                    .init(),
                &device,
                1e-5, // the bias corrections folded as Adam's, not as burn's AdamW
            );
        }
    }

    #[test]
    #[allow(deprecated)]
    fn fused_sgd_steps_as_burns_sgd() {
        for device in [Device::flex().autodiff(), Device::ndarray().autodiff()] {
            for (momentum, nesterov) in [(0.0, false), (0.9, false), (0.8, true)] {
                let mut ours = FusedSgd::new(0.01);
                let mut burns =
                    SgdConfig::new().with_weight_decay(Some(WeightDecayConfig::new(0.01)));
                if momentum > 0.0 {
                    ours = ours.with_momentum(momentum, 0.1, nesterov);
                    burns = burns.with_momentum(Some(
                        MomentumConfig::new()
                            .with_momentum(momentum)
                            .with_dampening(0.1)
                            .with_nesterov(nesterov),
                    ));
                }
                // burn's order of operations: bit for bit.
                agree(ours.into(), burns.init(), &device, 0.0);
            }
        }
    }

    /// The state flattens to burn's `SgdState` names, so either loads the other's.
    #[test]
    fn fused_sgd_state_has_burns_names() {
        use burn::optim::SgdState;
        use burn::optim::momentum::MomentumState;
        let device = Device::flex();
        let v = Tensor::<2>::from_floats([[1.0, 2.0], [3.0, 4.0]], &device);
        let ours = FusedSgdState {
            velocity: Some(v.clone()),
        };
        let burns = SgdState::new(Some(MomentumState::new(v)));
        let (mut a, mut b) = (StateSink::default(), StateSink::default());
        ours.state_flatten("layer.weight", &mut a);
        burns.state_flatten("layer.weight", &mut b);
        let names = |s: &StateSink| s.tensors.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&a), names(&b));
        assert_eq!(names(&a), ["layer.weight.momentum.velocity"]);
        let mut src = StateSource::default();
        for (name, data) in b.tensors {
            src.insert_tensor(name, data);
        }
        let back = FusedSgdState::<2>::state_unflatten("layer.weight", &mut src, &device).unwrap();
        assert_eq!(to_vec(back.velocity.unwrap()), [1.0, 2.0, 3.0, 4.0]);
    }
}
