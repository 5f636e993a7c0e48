//! Gradient explanations of any differentiable model's outputs, per input feature: gradient
//! saliency (Simonyan et al. 2014), SmoothGrad (Smilkov et al. 2017) and integrated gradients
//! (Sundararajan et al. 2017) with its completeness check; per location of a convolutional
//! layer, Grad-CAM (Selvaraju et al. 2017, [`grad_cam`]). As Captum computes them, on the
//! same conventions: the explained output is the model's raw output (a logit) for a chosen
//! class, saliency is the gradient's absolute value, integrated gradients integrate by
//! Gauss-Legendre quadrature. And for transformers, attention rollout (Abnar & Zuidema 2020,
//! [`attention_rollout`]) from the attention weights alone.
//!
//! As the attacks ([`crate::perturb`]), they take the model as a closure of the inputs to
//! explain (put the standardisation inside it to explain raw features) and need no gradient
//! of its parameters.
//!
//! ```
//! use burn::tensor::{Device, Tensor, TensorData};
//! use strata_train::integrated_gradients;
//! let device = Device::flex();
//! // f(x) = [x0 * x1, x0 + x1]: the attributions of output 0 sum to f(x) - f(0).
//! let forward = |x: Tensor<2>| {
//!     let (a, b) = (x.clone().narrow(1, 0, 1), x.narrow(1, 1, 1));
//!     Tensor::cat(vec![a.clone() * b.clone(), a + b], 1)
//! };
//! let x = Tensor::<2>::from_data(TensorData::new(vec![2.0f32, 3.0], [1, 2]), &device);
//! let ig = integrated_gradients(&forward, x.clone(), x.zeros_like(), &[0], 50)?;
//! assert!((ig.delta[0]).abs() < 1e-4); // sum of attributions minus (6 - 0)
//! # Ok::<(), strata_train::Error>(())
//! ```

use burn::tensor::{Distribution, Tensor, TensorData};
use strata_tensor::convert::to_vec;

use crate::error::{Error, Result};

/// The gradient of `sum_i forward(x)[i, target_i]` with respect to `x`: each row's gradient of
/// its own target output (rows are independent in evaluation mode).
fn target_gradient<F>(forward: &F, x: Tensor<2>, target: &[usize]) -> Result<Tensor<2>>
where
    F: Fn(Tensor<2>) -> Tensor<2>,
{
    let [n, _] = x.dims();
    let x = x.inner().autodiff().require_grad();
    let y = forward(x.clone());
    let [rows, k] = y.dims();
    if rows != n || target.len() != n {
        return Err(Error::Invalid(format!(
            "{n} rows need {n} targets and outputs, got {} targets and {rows} outputs",
            target.len()
        )));
    }
    if let Some(&bad) = target.iter().find(|&&t| t >= k) {
        return Err(Error::Invalid(format!(
            "target class {bad} but the model has {k} outputs"
        )));
    }
    let mut pick = vec![0.0f32; n * k];
    for (i, &t) in target.iter().enumerate() {
        pick[i * k + t] = 1.0;
    }
    let pick = Tensor::<2>::from_data(TensorData::new(pick, [n, k]), &x.device());
    let grads = (y * pick.inner()).sum().backward();
    Ok(x.grad(&grads)
        .unwrap_or_else(|| x.clone().inner().zeros_like()))
}

/// Gradient saliency: `|d forward(x)[target] / dx|` for each row of `x` (`[n, d]`), as Captum's
/// `Saliency(model).attribute(x, target)`.
///
/// # Errors
/// [`Error::Invalid`] for a target per row missing or outside the outputs.
pub fn saliency<F>(forward: &F, x: Tensor<2>, target: &[usize]) -> Result<Tensor<2>>
where
    F: Fn(Tensor<2>) -> Tensor<2>,
{
    Ok(target_gradient(forward, x, target)?.abs())
}

/// SmoothGrad: the mean saliency over `samples` copies of each row with Gaussian noise of
/// standard deviation `sigma` added (in the inputs' units; Smilkov et al. suggest 10-20% of the
/// input range), seeded by `seed` on the inputs' device.
///
/// # Errors
/// As [`saliency`], and zero samples or a negative or non-finite `sigma`.
pub fn smoothgrad<F>(
    forward: &F,
    x: Tensor<2>,
    target: &[usize],
    samples: usize,
    sigma: f64,
    seed: u64,
) -> Result<Tensor<2>>
where
    F: Fn(Tensor<2>) -> Tensor<2>,
{
    if samples == 0 || !(sigma.is_finite() && sigma >= 0.0) {
        return Err(Error::Invalid(format!(
            "SmoothGrad needs at least 1 sample and a noise level >= 0, got {samples} and {sigma}"
        )));
    }
    let x = x.inner();
    let device = x.device();
    device.seed(seed);
    let mut sum = x.zeros_like();
    for _ in 0..samples {
        let noise = x.random_like(Distribution::Normal(0.0, sigma));
        sum = sum + saliency(forward, x.clone() + noise, target)?;
    }
    Ok(sum / samples as f64)
}

/// What [`integrated_gradients`] returns.
#[derive(Debug, Clone)]
pub struct Integrated {
    /// The attributions, `[n, d]`: `(x - baseline)` times the path-averaged gradient.
    pub attributions: Tensor<2>,
    /// Per row, the completeness error: the attributions' sum minus `f(x) - f(baseline)`.
    pub delta: Vec<f32>,
    /// Per row, `f(x) - f(baseline)` for the target output.
    pub difference: Vec<f32>,
}

impl Integrated {
    /// The largest completeness error relative to `|f(x) - f(baseline)|` (how far the
    /// attributions are from summing to the change they explain); 0 where both are 0.
    pub fn relative_error(&self) -> f32 {
        self.delta
            .iter()
            .zip(&self.difference)
            .map(|(d, f)| {
                if *d == 0.0 {
                    0.0
                } else {
                    d.abs() / f.abs().max(f32::MIN_POSITIVE)
                }
            })
            .fold(0.0, f32::max)
    }
}

/// The `n` Gauss-Legendre nodes on `[0, 1]`, ascending, and their weights on `[-1, 1]` (summing
/// to 2: halve them for `[0, 1]`), as Captum's `gausslegendre`
/// approximation (numpy's `leggauss`, mapped from `[-1, 1]`), by Newton's method on the
/// Legendre polynomial.
pub fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut nodes = vec![0.0; n];
    let mut weights = vec![0.0; n];
    // P_n(z) and its derivative, by the three-term recurrence.
    let legendre = |z: f64| {
        let (mut p0, mut p1) = (1.0, z);
        for k in 2..=n {
            let p2 = ((2 * k - 1) as f64 * z * p1 - (k - 1) as f64 * p0) / k as f64;
            p0 = p1;
            p1 = p2;
        }
        let (p, pm1) = if n == 1 { (z, 1.0) } else { (p1, p0) };
        (p, n as f64 * (z * p - pm1) / (z * z - 1.0))
    };
    for i in 0..n {
        // Chebyshev's guess, then Newton on P_n.
        let mut z = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        for _ in 0..100 {
            let (p, dp) = legendre(z);
            let step = p / dp;
            z -= step;
            if step.abs() < 1e-16 {
                break;
            }
        }
        let (_, dp) = legendre(z);
        // Nodes ascending on [0, 1]; weights of [-1, 1], summing to 2.
        nodes[n - 1 - i] = 0.5 * (1.0 + z);
        weights[n - 1 - i] = 2.0 / ((1.0 - z * z) * dp * dp);
    }
    (nodes, weights)
}

/// Integrated gradients of `forward(x)[target]` for each row of `x` (`[n, d]`) from
/// `baseline` (the same shape; zeros or a blurred image are usual), with `steps` Gauss-Legendre
/// points on the straight path, as Captum's `IntegratedGradients(model).attribute(x,
/// baseline, target, n_steps=steps)`; with the completeness check of each row.
///
/// # Errors
/// As [`saliency`], zero steps, or a baseline of another shape.
pub fn integrated_gradients<F>(
    forward: &F,
    x: Tensor<2>,
    baseline: Tensor<2>,
    target: &[usize],
    steps: usize,
) -> Result<Integrated>
where
    F: Fn(Tensor<2>) -> Tensor<2>,
{
    if steps == 0 {
        return Err(Error::Invalid(
            "integrated gradients need at least 1 step".into(),
        ));
    }
    if x.dims() != baseline.dims() {
        return Err(Error::Invalid(format!(
            "a baseline of shape {:?} for inputs of {:?}",
            baseline.dims(),
            x.dims()
        )));
    }
    let (x, baseline) = (x.inner(), baseline.inner());
    let path = x.clone() - baseline.clone();
    let (alphas, weights) = gauss_legendre(steps);
    let mut total = x.zeros_like();
    for (a, w) in alphas.iter().zip(&weights) {
        let point = baseline.clone() + path.clone() * *a;
        total = total + target_gradient(forward, point, target)? * (0.5 * *w);
    }
    let attributions = path * total;
    let value = |t: Tensor<2>| -> Vec<f32> {
        let y = forward(t);
        let k = y.dims()[1];
        to_vec(y)
            .chunks(k)
            .zip(target)
            .map(|(row, &c)| row[c])
            .collect()
    };
    let difference: Vec<f32> = value(x)
        .iter()
        .zip(value(baseline))
        .map(|(a, b)| a - b)
        .collect();
    let sums = to_vec(attributions.clone().sum_dim(1));
    let delta = sums.iter().zip(&difference).map(|(s, f)| s - f).collect();
    Ok(Integrated {
        attributions,
        delta,
        difference,
    })
}

/// Grad-CAM (Selvaraju et al. 2017) of `forward(x)[target]` at a convolutional layer, the
/// model given in two parts: `head` maps the inputs (`[n, d]`) to the layer's activations `A`
/// (`[n, c, h, w]`), `tail` maps those to the outputs. Each channel's weight is its gradient's
/// spatial mean, `alpha_c = mean_hw d out / d A_c`; the map is `sum_c alpha_c A_c`, through a
/// ReLU when `relu` (the paper's choice), `[n, 1, h, w]` at the layer's resolution: Captum's
/// `LayerGradCam(model, layer).attribute(x, target, relu_attributions=relu)`.
///
/// # Errors
/// As [`saliency`].
pub fn grad_cam<H, T>(
    head: &H,
    tail: &T,
    x: Tensor<2>,
    target: &[usize],
    relu: bool,
) -> Result<Tensor<4>>
where
    H: Fn(Tensor<2>) -> Tensor<4>,
    T: Fn(Tensor<4>) -> Tensor<2>,
{
    let activations = head(x.inner()).inner();
    let [n, c, h, w] = activations.dims();
    let grad = target_gradient4(tail, activations.clone(), target)?;
    let alpha = grad
        .reshape([n, c, h * w])
        .mean_dim(2)
        .reshape([n, c, 1, 1]);
    let map = (activations * alpha.expand([n, c, h, w])).sum_dim(1);
    Ok(if relu { map.clamp_min(0.0) } else { map })
}

/// Attention rollout (Abnar & Zuidema 2020) of a transformer's attention weights, one
/// `[n, heads, t, t]` tensor per layer, first layer first: each layer's weights averaged over
/// the heads, the residual path added as `0.5 A + 0.5 I` (rows still sum to 1), and the layers
/// multiplied, `R = Â_L ... Â_1`. Row `i` of `R` (`[n, t, t]`) says how much of each input
/// token reaches token `i` at the top; a ViT's class-token row (0) over the patches is its
/// heat map. The same as jacobgil/vit-explain's `rollout` with mean head fusion and nothing
/// discarded. Not specific to a class.
///
/// # Errors
/// [`Error::Invalid`] for no layers, or layers of different shapes or non-square weights.
pub fn attention_rollout(weights: &[Tensor<4>]) -> Result<Tensor<3>> {
    let Some(first) = weights.first() else {
        return Err(Error::Invalid(
            "attention rollout needs at least one layer's weights".into(),
        ));
    };
    let [n, _, t, t2] = first.dims();
    if t != t2
        || weights
            .iter()
            .any(|w| w.dims()[0] != n || w.dims()[2..] != [t, t])
    {
        return Err(Error::Invalid(format!(
            "attention rollout needs square weights of one shape, got {:?}",
            weights.iter().map(Tensor::dims).collect::<Vec<_>>()
        )));
    }
    let eye = Tensor::<2>::eye(t, &first.device())
        .unsqueeze_dim::<3>(0)
        .expand([n, t, t]);
    let fused = |w: &Tensor<4>| {
        let [_, h, _, _] = w.dims();
        w.clone().sum_dim(1).reshape([n, t, t]) * (0.5 / h as f64) + eye.clone() * 0.5
    };
    Ok(weights[1..]
        .iter()
        .fold(fused(first), |r, w| fused(w).matmul(r)))
}

/// [`target_gradient`] for a model of `[n, c, h, w]` inputs.
fn target_gradient4<T>(tail: &T, a: Tensor<4>, target: &[usize]) -> Result<Tensor<4>>
where
    T: Fn(Tensor<4>) -> Tensor<2>,
{
    let [n, c, h, w] = a.dims();
    let flat = |t: Tensor<2>| tail(t.reshape([n, c, h, w]));
    Ok(target_gradient(&flat, a.reshape([n, c * h * w]), target)?.reshape([n, c, h, w]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn gauss_legendre_matches_known_rules() {
        // Two points on [-1, 1]: +-1/sqrt(3), weights 1 (here on [0, 1]: weights 2 * 0.5).
        let (x, w) = gauss_legendre(2);
        let r = 0.5 / 3f64.sqrt();
        assert!((x[0] - (0.5 - r)).abs() < 1e-14 && (x[1] - (0.5 + r)).abs() < 1e-14);
        assert!((w[0] - 1.0).abs() < 1e-14 && (w[1] - 1.0).abs() < 1e-14);
        // Weights sum to 2 (the length of [-1, 1]); 50 points integrate x^9 exactly.
        let (x, w) = gauss_legendre(50);
        assert!((w.iter().sum::<f64>() - 2.0).abs() < 1e-12);
        let integral: f64 = x.iter().zip(&w).map(|(a, b)| 0.5 * b * a.powi(9)).sum();
        assert!((integral - 0.1).abs() < 1e-12, "{integral}");
        assert!(x.windows(2).all(|p| p[0] < p[1]));
    }

    /// `f(x) = [sum_j c_j x_j^2, x_0]`: exact gradients `2 c_j x_j`, and integrated gradients
    /// from 0 of `c_j x_j^2` (the path gradient averages to `c_j x_j`).
    fn quadratic(c: Vec<f32>, device: &Device) -> impl Fn(Tensor<2>) -> Tensor<2> + use<> {
        let d = c.len();
        let c = Tensor::<2>::from_data(TensorData::new(c, [1, d]), device);
        move |x: Tensor<2>| {
            let [n, d] = x.dims();
            let q = (x.clone().powi_scalar(2) * c.clone().expand([n, d])).sum_dim(1);
            Tensor::cat(vec![q, x.narrow(1, 0, 1)], 1)
        }
    }

    #[test]
    fn saliency_and_integrated_gradients_of_a_quadratic() {
        let device = Device::flex();
        let f = quadratic(vec![1.0, -2.0, 0.5], &device);
        let x = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 2.0, -3.0, 0.5, 0.0, 4.0], [2, 3]),
            &device,
        );
        let s = to_vec(saliency(&f, x.clone(), &[0, 0]).unwrap());
        let want = [2.0, 8.0, 3.0, 1.0, 0.0, 4.0];
        for (a, b) in s.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{s:?}");
        }
        // Output 1 is x_0: its saliency is 1 on x_0 and 0 elsewhere.
        let s = to_vec(saliency(&f, x.clone(), &[1, 1]).unwrap());
        assert_eq!(s, vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
        let ig = integrated_gradients(&f, x.clone(), x.zeros_like(), &[0, 0], 8).unwrap();
        let a = to_vec(ig.attributions.clone());
        let want = [1.0, -8.0, 4.5, 0.25, 0.0, 8.0];
        for (p, q) in a.iter().zip(want) {
            assert!((p - q).abs() < 1e-4, "{a:?}");
        }
        assert!(ig.relative_error() < 1e-5, "{:?}", ig.delta);
        assert_eq!(ig.difference.len(), 2);
    }

    #[test]
    fn smoothgrad_without_noise_is_saliency_and_with_noise_averages() {
        // smoothgrad seeds the device's shared generator: no other test may draw meanwhile.
        let _serial = crate::serial();
        let device = Device::flex();
        let f = quadratic(vec![1.0, 1.0], &device);
        let x = Tensor::<2>::from_data(TensorData::new(vec![0.5f32, -1.0], [1, 2]), &device);
        let plain = to_vec(saliency(&f, x.clone(), &[0]).unwrap());
        let smooth = to_vec(smoothgrad(&f, x.clone(), &[0], 3, 0.0, 1).unwrap());
        assert_eq!(plain, smooth);
        // |2 (x + e)| averaged over many e ~ N(0, 0.1^2) stays near |2x| away from 0.
        let smooth = to_vec(smoothgrad(&f, x.clone(), &[0], 400, 0.1, 1).unwrap());
        assert!(
            (smooth[0] - 1.0).abs() < 0.05 && (smooth[1] - 2.0).abs() < 0.05,
            "{smooth:?}"
        );
        let a = smoothgrad(&f, x.clone(), &[0], 20, 0.3, 7).unwrap();
        let b = smoothgrad(&f, x.clone(), &[0], 20, 0.3, 7).unwrap();
        assert_eq!(to_vec(a), to_vec(b), "seeded");
    }

    /// With a tail that sums each channel's activations times `v_c` for output 0, the
    /// gradient is `v_c` everywhere: the map is `sum_c v_c A_c`.
    #[test]
    fn grad_cam_of_a_linear_tail() {
        let device = Device::flex();
        let head = |x: Tensor<2>| x.reshape([1, 2, 2, 2]);
        let v = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, -2.0], [1, 2]), &device);
        let tail = move |a: Tensor<4>| {
            let [n, c, _, _] = a.dims();
            let per = a.sum_dim(3).sum_dim(2).reshape([n, c]);
            let y0 = (per.clone() * v.clone().expand([n, c])).sum_dim(1);
            Tensor::cat(vec![y0, per.narrow(1, 0, 1)], 1)
        };
        let x = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 0.5, 0.5, 3.0, 0.0], [1, 8]),
            &device,
        );
        let raw = to_vec(grad_cam(&head, &tail, x.clone(), &[0], false).unwrap());
        assert_eq!(raw, vec![0.0, 1.0, -3.0, 4.0]);
        let map = to_vec(grad_cam(&head, &tail, x, &[0], true).unwrap());
        assert_eq!(map, vec![0.0, 1.0, 0.0, 4.0]);
    }

    #[test]
    fn bad_requests_are_errors() {
        let device = Device::flex();
        let f = quadratic(vec![1.0, 1.0], &device);
        let x = Tensor::<2>::from_data(TensorData::new(vec![0.5f32, -1.0], [1, 2]), &device);
        assert!(matches!(
            saliency(&f, x.clone(), &[2]),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            saliency(&f, x.clone(), &[0, 1]),
            Err(Error::Invalid(_))
        ));
        assert!(smoothgrad(&f, x.clone(), &[0], 0, 0.1, 0).is_err());
        assert!(smoothgrad(&f, x.clone(), &[0], 5, -0.1, 0).is_err());
        assert!(integrated_gradients(&f, x.clone(), x.zeros_like(), &[0], 0).is_err());
        let wrong = Tensor::<2>::zeros([1, 3], &device);
        assert!(integrated_gradients(&f, x, wrong, &[0], 10).is_err());
    }

    fn weights(v: Vec<f32>, shape: [usize; 4], device: &Device) -> Tensor<4> {
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    #[test]
    fn rollout_of_uniform_attention_has_a_closed_form() {
        // Two layers of uniform attention U (each entry 1/t), two heads: (U/2 + I/2)^2 =
        // 3U/4 + I/4, as U^2 = U.
        let device = Device::flex();
        let t = 4;
        let u = weights(vec![0.25; 2 * t * t], [1, 2, t, t], &device);
        let r = to_vec(attention_rollout(&[u.clone(), u]).unwrap());
        for i in 0..t {
            for j in 0..t {
                let want = 0.75 / t as f32 + if i == j { 0.25 } else { 0.0 };
                assert!(
                    (r[i * t + j] - want).abs() < 1e-6,
                    "{i},{j}: {}",
                    r[i * t + j]
                );
            }
        }
    }

    #[test]
    fn rollout_multiplies_later_layers_on_the_left() {
        // One head; A1 sends everything to token 0, A2 to token 1. R = Â2 Â1, not Â1 Â2.
        let device = Device::flex();
        let a1 = weights(vec![1.0, 0.0, 1.0, 0.0], [1, 1, 2, 2], &device);
        let a2 = weights(vec![0.0, 1.0, 0.0, 1.0], [1, 1, 2, 2], &device);
        let r = to_vec(attention_rollout(&[a1, a2]).unwrap());
        // Â1 = [[1, 0], [0.5, 0.5]], Â2 = [[0.5, 0.5], [0, 1]]; Â2 Â1 = [[0.75, 0.25], [0.5, 0.5]].
        let want = [0.75, 0.25, 0.5, 0.5];
        for (g, w) in r.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{r:?}");
        }
    }

    #[test]
    fn rollout_refuses_no_layers_and_mixed_shapes() {
        let device = Device::flex();
        assert!(attention_rollout(&[]).is_err());
        let a = Tensor::<4>::zeros([1, 2, 3, 3], &device);
        let b = Tensor::<4>::zeros([1, 2, 4, 4], &device);
        assert!(attention_rollout(&[a, b]).is_err());
        assert!(attention_rollout(&[Tensor::<4>::zeros([1, 2, 3, 4], &device)]).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Rolled-out attention of any softmax weights is a distribution per row.
        #[test]
        fn rollout_rows_are_distributions(
            layers in 1usize..4,
            heads in 1usize..3,
            t in 1usize..6,
            seed in 0u64..1000,
        ) {
            let device = Device::flex();
            let _serial = crate::serial();
            device.seed(seed);
            let ws: Vec<Tensor<4>> = (0..layers)
                .map(|_| {
                    let scores = Tensor::<4>::random([2, heads, t, t], Distribution::Normal(0.0, 2.0), &device);
                    burn::tensor::activation::softmax(scores, 3)
                })
                .collect();
            let r = to_vec(attention_rollout(&ws).unwrap());
            proptest::prop_assert_eq!(r.len(), 2 * t * t);
            for row in r.chunks(t) {
                proptest::prop_assert!(row.iter().all(|v| v.is_finite() && *v >= 0.0));
                let sum: f32 = row.iter().sum();
                proptest::prop_assert!((sum - 1.0).abs() < 1e-5, "{}", sum);
            }
        }
    }
}
