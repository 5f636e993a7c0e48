//! Helpers shared by the layers' unit tests.

use burn::module::Module;
use burn::tensor::Tensor;

/// `layer`'s output on `x` under autodiff (the layer moved to `x`'s autodiff device, the input
/// marked for it: moving a tensor to an autodiff device keeps it plain), as a plain tensor.
pub(crate) fn autodiff_output<M: Module + Clone>(
    layer: &M,
    x: &Tensor<4>,
    forward: impl Fn(&M, Tensor<4>) -> Tensor<4>,
) -> Tensor<4> {
    let ad = x.device().autodiff();
    forward(
        &layer.clone().to_device(&ad),
        x.clone().to_device(&ad).autodiff(),
    )
    .inner()
}

/// The largest absolute difference of `a` and `b`.
pub(crate) fn max_gap(a: Tensor<4>, b: Tensor<4>) -> f32 {
    a.sub(b).abs().max().into_scalar::<f32>()
}
