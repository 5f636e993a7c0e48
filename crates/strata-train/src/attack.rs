//! Adversarial examples for any differentiable classifier: the fast gradient sign method
//! (FGSM, Goodfellow et al. 2015) and projected gradient descent (PGD, Madry et al. 2018) in
//! L-infinity and L2 balls, untargeted or targeted, clipped to the data's valid range; and the
//! robust accuracy of a model under them ([`robust_accuracy`]).
//!
//! The attack works on the inputs the closure reads: give it the raw features and a closure
//! that standardises them before the model (as `strata_run` does), and epsilon is in the data's
//! own units (pixels in `[0, 1]`), the same as PyTorch attack code on unnormalised images.
//!
//! The model's parameters need no gradient: the closure may run a plain (evaluation-mode)
//! model; only the input is put on the autodiff device.
//!
//! ```
//! use burn::tensor::{Device, Tensor, TensorData};
//! use strata_train::{Attack, Bounds, perturb};
//! let device = Device::flex();
//! // A linear "classifier" of two classes on two features: class 1 when x0 > x1.
//! let w = Tensor::<2>::from_data(TensorData::new(vec![-1.0f32, 1.0, 1.0, -1.0], [2, 2]), &device);
//! let forward = |x: Tensor<2>| x.matmul(w.clone());
//! let x = Tensor::<2>::from_data(TensorData::new(vec![0.6f32, 0.4], [1, 2]), &device);
//! let adv = perturb(&forward, x, &[1], None, &Attack::fgsm(0.1), &Bounds::uniform(2, 0.0, 1.0))?;
//! let v: Vec<f32> = adv.into_data().to_vec().unwrap();
//! assert!((v[0] - 0.5).abs() < 1e-6 && (v[1] - 0.5).abs() < 1e-6);
//! # Ok::<(), strata_train::Error>(())
//! ```

use burn::tensor::activation::{log_sigmoid, log_softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use strata_data::{Batcher, Dataset, Targets};
use strata_tensor::convert::to_vec;

use crate::error::{Error, Result};

/// The attack's method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// One step of size epsilon along the gradient's sign (L-infinity) or direction (L2).
    Fgsm,
    /// `steps` steps of `step_size`, each projected back into the epsilon ball.
    Pgd,
}

/// The ball the perturbation stays in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// Every feature moves by at most epsilon.
    Inf,
    /// The perturbation's Euclidean length is at most epsilon.
    L2,
}

/// An attack's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attack {
    /// FGSM or PGD.
    pub method: Method,
    /// The ball: L-infinity or L2.
    pub norm: Norm,
    /// The ball's radius, in the units of the attacked inputs; at least 0.
    pub eps: f64,
    /// PGD's steps (FGSM takes one).
    pub steps: usize,
    /// PGD's step size; `None` for `2.5 eps / steps` (Madry et al.).
    pub step_size: Option<f64>,
    /// PGD's restarts from fresh random starts; an input counts as broken when any restart
    /// breaks it.
    pub restarts: usize,
    /// Start from a uniformly random point of the ball (PGD's default; FGSM with a random
    /// start is Wong et al.'s fast adversarial training).
    pub random_start: bool,
    /// Seed of the random starts.
    pub seed: u64,
}

impl Attack {
    /// FGSM of radius `eps` in L-infinity.
    pub fn fgsm(eps: f64) -> Self {
        Self {
            method: Method::Fgsm,
            norm: Norm::Inf,
            eps,
            steps: 1,
            step_size: None,
            restarts: 1,
            random_start: false,
            seed: 0,
        }
    }

    /// PGD of radius `eps` in L-infinity: 10 steps of `2.5 eps / 10`, a random start, one
    /// restart.
    pub fn pgd(eps: f64) -> Self {
        Self {
            method: Method::Pgd,
            steps: 10,
            random_start: true,
            ..Self::fgsm(eps)
        }
    }

    /// The step size: FGSM's is epsilon (1.25 epsilon from a random start, as Wong et al.),
    /// PGD's `step_size` or `2.5 eps / steps`.
    pub fn step(&self) -> f64 {
        match (self.method, self.step_size) {
            (_, Some(s)) => s,
            (Method::Fgsm, None) if self.random_start => 1.25 * self.eps,
            (Method::Fgsm, None) => self.eps,
            (Method::Pgd, None) => 2.5 * self.eps / self.steps.max(1) as f64,
        }
    }

    /// Reads an attack as `strata train --adversarial` writes it: `fgsm` or `pgd`, then
    /// optionally `:` and comma-separated `key=value` settings: `eps` (required), `steps`,
    /// `step` (the step size), `norm` (`inf` or `2`), `restarts`, `random_start` (`true` or
    /// `false`) and `seed`. E.g. `pgd:eps=0.1,steps=7`, or `fgsm:eps=0.1,random_start=true`
    /// (Wong et al.'s fast adversarial training).
    ///
    /// ```
    /// use strata_train::{Attack, AttackMethod};
    /// let a = Attack::parse("pgd:eps=0.1,steps=7")?;
    /// assert_eq!((a.method, a.eps, a.steps), (AttackMethod::Pgd, 0.1, 7));
    /// assert!(Attack::parse("pgd:steps=7").is_err()); // no epsilon
    /// # Ok::<(), strata_train::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Invalid`] for an unknown method or key, a value that does not parse, a missing
    /// epsilon, or settings [`validate`](Self::validate) refuses.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |why: String| Error::Invalid(format!("attack `{spec}`: {why}"));
        let (name, settings) = spec.trim().split_once(':').unwrap_or((spec.trim(), ""));
        let mut a = match name.trim() {
            "fgsm" => Self::fgsm(f64::NAN),
            "pgd" => Self::pgd(f64::NAN),
            other => {
                return Err(bad(format!(
                    "unknown method `{other}`: expected fgsm or pgd"
                )));
            }
        };
        for item in settings.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some((key, value)) = item.split_once('=') else {
                return Err(bad(format!("`{item}` is not key=value")));
            };
            let (key, value) = (key.trim(), value.trim());
            let number = || {
                value
                    .parse::<f64>()
                    .map_err(|_| bad(format!("{key}: `{value}` is not a number")))
            };
            let count = || {
                value
                    .parse::<usize>()
                    .map_err(|_| bad(format!("{key}: `{value}` is not a whole number")))
            };
            match key {
                "eps" => a.eps = number()?,
                "steps" => a.steps = count()?,
                "step" => a.step_size = Some(number()?),
                "restarts" => a.restarts = count()?,
                "seed" => {
                    a.seed = value
                        .parse()
                        .map_err(|_| bad(format!("seed: `{value}` is not a whole number")))?;
                }
                "norm" => {
                    a.norm = match value {
                        "inf" | "linf" => Norm::Inf,
                        "2" | "l2" => Norm::L2,
                        v => return Err(bad(format!("norm `{v}`: expected inf or 2"))),
                    };
                }
                "random_start" => {
                    a.random_start = value.parse().map_err(|_| {
                        bad(format!("random_start: `{value}` is not true or false"))
                    })?;
                }
                k => {
                    return Err(bad(format!(
                        "unknown setting `{k}`: expected eps, steps, step, norm, restarts, random_start or seed"
                    )));
                }
            }
        }
        if a.eps.is_nan() {
            return Err(bad("eps=E is required".into()));
        }
        a.validate().map_err(|e| bad(e.to_string()))?;
        Ok(a)
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a negative or non-finite epsilon or step size, zero PGD steps or
    /// zero restarts.
    pub fn validate(&self) -> Result<()> {
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(Error::Invalid(format!(
                "the attack's epsilon must be a finite number >= 0, got {}",
                self.eps
            )));
        }
        if let Some(s) = self.step_size
            && !(s.is_finite() && s > 0.0)
        {
            return Err(Error::Invalid(format!(
                "the attack's step size must be a finite number > 0, got {s}"
            )));
        }
        if self.method == Method::Pgd && self.steps == 0 {
            return Err(Error::Invalid("PGD needs at least 1 step".into()));
        }
        if self.restarts == 0 {
            return Err(Error::Invalid("an attack needs at least 1 restart".into()));
        }
        Ok(())
    }

    fn steps(&self) -> usize {
        match self.method {
            Method::Fgsm => 1,
            Method::Pgd => self.steps,
        }
    }
}

/// The valid range of every feature: adversarial inputs are clipped into it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    /// Each feature's least value.
    pub lower: Vec<f32>,
    /// Each feature's greatest value.
    pub upper: Vec<f32>,
}

impl Bounds {
    /// The same range `[lower, upper]` for `n` features (pixels: `[0, 1]`).
    pub fn uniform(n: usize, lower: f32, upper: f32) -> Self {
        Self {
            lower: vec![lower; n],
            upper: vec![upper; n],
        }
    }

    /// Each feature's range over the rows of `data` (tables, where no range is known a priori).
    pub fn observed(data: &Dataset) -> Self {
        let d = data.n_features;
        let mut b = Self::uniform(d, f32::INFINITY, f32::NEG_INFINITY);
        for i in 0..data.len() {
            for ((lo, hi), &v) in b.lower.iter_mut().zip(&mut b.upper).zip(data.row(i)) {
                *lo = lo.min(v);
                *hi = hi.max(v);
            }
        }
        b
    }

    /// The bounds as `[n, d]` tensors.
    fn tensors(&self, n: usize, device: &Device) -> (Tensor<2>, Tensor<2>) {
        let d = self.lower.len();
        let row = |v: &[f32]| {
            Tensor::<2>::from_data(TensorData::new(v.to_vec(), [1, d]), device).expand([n, d])
        };
        (row(&self.lower), row(&self.upper))
    }
}

/// The attacker's loss: cross entropy of `logits` (`[n, k]`, or one logit for two classes)
/// against `labels`, averaged.
fn loss(logits: Tensor<2>, labels: &[usize]) -> Tensor<1> {
    let [n, k] = logits.dims();
    let device = logits.device();
    if k == 1 {
        let y: Vec<f32> = labels.iter().map(|&l| l as f32).collect();
        let y = Tensor::<2>::from_data(TensorData::new(y, [n, 1]), &device);
        let ll = log_sigmoid(logits.clone()) * y.clone() + log_sigmoid(-logits) * (-y + 1.0);
        return -ll.mean();
    }
    let idx: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    let idx = Tensor::<2, Int>::from_data(TensorData::new(idx, [n, 1]), &device);
    -log_softmax(logits, 1).gather(1, idx).mean()
}

/// The gradient of the attacker's loss with respect to `x`.
fn input_gradient<F>(forward: &F, x: Tensor<2>, labels: &[usize]) -> Tensor<2>
where
    F: Fn(Tensor<2>) -> Tensor<2>,
{
    let x = x.inner().autodiff().require_grad();
    let grads = loss(forward(x.clone()), labels).backward();
    x.grad(&grads)
        .unwrap_or_else(|| x.clone().inner().zeros_like())
}

/// Rows scaled to unit L2 length (rows of zeros stay zero).
fn unit_rows(g: Tensor<2>) -> Tensor<2> {
    let norm = g.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    g / norm
}

/// `delta` projected into the ball of radius `eps`.
fn project(delta: Tensor<2>, norm: Norm, eps: f64) -> Tensor<2> {
    match norm {
        Norm::Inf => delta.clamp(-eps, eps),
        Norm::L2 => {
            let length = delta.clone().powi_scalar(2).sum_dim(1).sqrt();
            let scale = (length.clamp_min(1e-12).recip() * eps).clamp_max(1.0);
            delta * scale
        }
    }
}

/// A random start in the ball: uniform per feature in L-infinity; in L2 a uniformly random
/// direction at a radius uniform in `[0, eps]`.
fn random_start(n: usize, d: usize, attack: &Attack, rng: &mut StdRng) -> Vec<f32> {
    let eps = attack.eps as f32;
    match attack.norm {
        Norm::Inf => (0..n * d)
            .map(|_| rng.random_range(-1.0f32..=1.0) * eps)
            .collect(),
        Norm::L2 => {
            let mut v = Vec::with_capacity(n * d);
            for _ in 0..n {
                // Box-Muller normals give a uniformly random direction.
                let z: Vec<f32> = (0..d)
                    .map(|_| {
                        let (u1, u2): (f32, f32) =
                            (rng.random_range(f32::EPSILON..1.0), rng.random());
                        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
                    })
                    .collect();
                let len = z.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
                let r = rng.random_range(0.0f32..=1.0) * eps;
                v.extend(z.iter().map(|a| a / len * r));
            }
            v
        }
    }
}

/// Adversarial versions of the rows of `x` (`[n, d]`) against the classifier `forward` (raw
/// outputs `[n, k]`, or `[n, 1]` for a binary one): untargeted, they raise the loss of the
/// true `labels`; with `targets`, they lower the loss of those classes. Every result lies in
/// the epsilon ball around its row and inside `bounds`. With several restarts, each row keeps
/// the first restart that breaks it (misclassified, or classified as its target), else the
/// last.
///
/// # Errors
/// [`Error::Invalid`] for invalid settings, or labels, targets or bounds of the wrong length.
pub fn perturb<F>(
    forward: &F,
    x: Tensor<2>,
    labels: &[usize],
    targets: Option<&[usize]>,
    attack: &Attack,
    bounds: &Bounds,
) -> Result<Tensor<2>>
where
    F: Fn(Tensor<2>) -> Tensor<2>,
{
    attack.validate()?;
    let [n, d] = x.dims();
    check_lengths(n, d, labels, targets, bounds)?;
    let x = x.inner();
    let device = x.device();
    let mut rng = StdRng::seed_from_u64(attack.seed);
    let mut best: Option<(Tensor<2>, Vec<bool>)> = None;
    for _ in 0..attack.restarts {
        let start = attack
            .random_start
            .then(|| random_start(n, d, attack, &mut rng));
        let adv = perturb_from(forward, x.clone(), start, labels, targets, attack, bounds)?;
        let broken = broken(forward, adv.clone(), labels, targets);
        best = Some(match best {
            None => (adv, broken),
            Some((prev, prev_broken)) => {
                // Keep rows broken before; take the new attempt elsewhere.
                let keep: Vec<f32> = prev_broken
                    .iter()
                    .map(|&b| f32::from(u8::from(b)))
                    .collect();
                let keep = Tensor::<2>::from_data(TensorData::new(keep, [n, 1]), &device);
                let merged = prev * keep.clone() + adv * (-keep + 1.0);
                let all = prev_broken
                    .iter()
                    .zip(&broken)
                    .map(|(a, b)| *a || *b)
                    .collect();
                (merged, all)
            }
        });
        if best.as_ref().is_some_and(|(_, b)| b.iter().all(|&v| v)) {
            break;
        }
    }
    Ok(best.map(|(adv, _)| adv).unwrap_or(x))
}

/// [`perturb`] for one restart from a given start: `start` (row-major `[n, d]`, inside the
/// ball) is added to `x` before the first step, as PyTorch code that draws its own random
/// start does; `None` starts at `x`.
///
/// # Errors
/// As [`perturb`], and a start of the wrong length.
pub fn perturb_from<F>(
    forward: &F,
    x: Tensor<2>,
    start: Option<Vec<f32>>,
    labels: &[usize],
    targets: Option<&[usize]>,
    attack: &Attack,
    bounds: &Bounds,
) -> Result<Tensor<2>>
where
    F: Fn(Tensor<2>) -> Tensor<2>,
{
    attack.validate()?;
    let [n, d] = x.dims();
    check_lengths(n, d, labels, targets, bounds)?;
    let x = x.inner();
    let device = x.device();
    let (lower, upper) = bounds.tensors(n, &device);
    let clip = |t: Tensor<2>| t.max_pair(lower.clone()).min_pair(upper.clone());
    let start_is_x = start.is_none();
    let mut adv = match start {
        Some(s) if s.len() != n * d => {
            return Err(Error::Invalid(format!(
                "a random start of {} values for {n} rows of {d} features",
                s.len()
            )));
        }
        Some(s) => clip(x.clone() + Tensor::from_data(TensorData::new(s, [n, d]), &device)),
        None => x.clone(),
    };
    // Targeted attacks descend the loss of their targets; untargeted ones ascend the true
    // labels'.
    let (aim, sign) = match targets {
        Some(t) => (t, -1.0),
        None => (labels, 1.0),
    };
    let step = attack.step() * sign;
    // One step of epsilon from the input itself stays in the ball: FGSM without a random
    // start is `clip(x + eps sign(g))` exactly, as PyTorch code writes it.
    let stays_inside = attack.steps() == 1 && attack.step() <= attack.eps && start_is_x;
    for _ in 0..attack.steps() {
        let g = input_gradient(forward, adv.clone(), aim);
        let direction = match attack.norm {
            Norm::Inf => g.sign(),
            Norm::L2 => unit_rows(g),
        };
        let moved = adv + direction * step;
        adv = if stays_inside {
            clip(moved)
        } else {
            clip(x.clone() + project(moved - x.clone(), attack.norm, attack.eps))
        };
    }
    Ok(adv)
}

fn check_lengths(
    n: usize,
    d: usize,
    labels: &[usize],
    targets: Option<&[usize]>,
    bounds: &Bounds,
) -> Result<()> {
    if labels.len() != n || targets.is_some_and(|t| t.len() != n) {
        return Err(Error::Invalid(format!(
            "{n} rows need {n} labels (and targets), got {} (and {})",
            labels.len(),
            targets.map_or(0, <[usize]>::len)
        )));
    }
    if bounds.lower.len() != d || bounds.upper.len() != d {
        return Err(Error::Invalid(format!(
            "bounds of {} and {} features for rows of {d}",
            bounds.lower.len(),
            bounds.upper.len()
        )));
    }
    Ok(())
}

/// The class each row of raw outputs picks: the largest output, or for one output whether it
/// is positive.
pub fn predicted_classes(outputs: &[f32], k: usize) -> Vec<usize> {
    if k == 1 {
        return outputs.iter().map(|&z| usize::from(z > 0.0)).collect();
    }
    outputs
        .chunks(k.max(1))
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                    if v > bv { (i, v) } else { (bi, bv) }
                })
                .0
        })
        .collect()
}

/// Whether each row of `x` breaks the classifier: misclassified, or classified as its target.
fn broken<F>(forward: &F, x: Tensor<2>, labels: &[usize], targets: Option<&[usize]>) -> Vec<bool>
where
    F: Fn(Tensor<2>) -> Tensor<2>,
{
    let y = forward(x);
    let k = y.dims()[1];
    let pred = predicted_classes(&to_vec(y), k);
    match targets {
        Some(t) => pred.iter().zip(t).map(|(p, t)| p == t).collect(),
        None => pred.iter().zip(labels).map(|(p, l)| p != l).collect(),
    }
}

/// How a classifier fares against an attack on a data set ([`robust_accuracy`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Robustness {
    /// Accuracy on the clean inputs.
    pub clean_accuracy: f64,
    /// Accuracy on the adversarial inputs (untargeted attacks), or the share of inputs not
    /// moved to their target (targeted ones).
    pub robust_accuracy: f64,
    /// The adversarial inputs, row-major like the data set's features.
    pub adversarial: Vec<f32>,
    /// The class predicted for each clean input.
    pub clean_predictions: Vec<usize>,
    /// The class predicted for each adversarial input.
    pub adversarial_predictions: Vec<usize>,
}

/// Attacks every sample of `data` (labelled with classes) in batches of `batch_size` on
/// `device` (a plain one; the attack puts its inputs on the autodiff device itself), and
/// measures the classifier `forward`'s accuracy before and after. `targets`, when given, holds
/// one target class per sample.
///
/// # Errors
/// [`Error::Invalid`] for a data set without class labels, invalid settings or lengths.
pub fn robust_accuracy<F>(
    forward: &F,
    data: &Dataset,
    targets: Option<&[usize]>,
    attack: &Attack,
    bounds: &Bounds,
    batch_size: usize,
    device: &Device,
) -> Result<Robustness>
where
    F: Fn(Tensor<2>) -> Tensor<2>,
{
    attack.validate()?;
    let Targets::Classes { labels, .. } = &data.targets else {
        return Err(Error::Invalid(
            "an attack needs a classifier's data set (class labels), not values".into(),
        ));
    };
    if targets.is_some_and(|t| t.len() != data.len()) {
        return Err(Error::Invalid(format!(
            "{} targets for {} samples",
            targets.map_or(0, <[usize]>::len),
            data.len()
        )));
    }
    let batcher = Batcher::new(device.clone());
    let order: Vec<usize> = (0..data.len()).collect();
    let mut out = Robustness {
        clean_accuracy: 0.0,
        robust_accuracy: 0.0,
        adversarial: Vec::with_capacity(data.features.len()),
        clean_predictions: Vec::with_capacity(data.len()),
        adversarial_predictions: Vec::with_capacity(data.len()),
    };
    for (b, chunk) in order.chunks(batch_size.max(1)).enumerate() {
        let batch = batcher.batch(data, chunk);
        let y: Vec<usize> = chunk.iter().map(|&i| labels[i]).collect();
        let t = targets.map(|t| t[chunk[0]..chunk[0] + chunk.len()].to_vec());
        let x = batch.inputs;
        let clean = forward(x.clone());
        let k = clean.dims()[1];
        out.clean_predictions
            .extend(predicted_classes(&to_vec(clean), k));
        let seeded = Attack {
            seed: attack.seed.wrapping_add(b as u64),
            ..attack.clone()
        };
        let adv = perturb(forward, x, &y, t.as_deref(), &seeded, bounds)?;
        let z = forward(adv.clone());
        out.adversarial_predictions
            .extend(predicted_classes(&to_vec(z), k));
        out.adversarial.extend(to_vec(adv));
    }
    let n = data.len().max(1) as f64;
    let hits = |p: &[usize], want: &[usize]| p.iter().zip(want).filter(|(a, b)| a == b).count();
    out.clean_accuracy = hits(&out.clean_predictions, labels) as f64 / n;
    out.robust_accuracy = match targets {
        None => hits(&out.adversarial_predictions, labels) as f64 / n,
        Some(t) => 1.0 - hits(&out.adversarial_predictions, t) as f64 / n,
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use proptest::prelude::*;

    /// A linear classifier `x W + b` with `k` outputs on `d` features, random.
    fn linear(d: usize, k: usize, device: &Device) -> impl Fn(Tensor<2>) -> Tensor<2> + use<> {
        let w = Tensor::<2>::random([d, k], Distribution::Normal(0.0, 1.0), device);
        let b = Tensor::<2>::random([1, k], Distribution::Normal(0.0, 0.1), device);
        move |x: Tensor<2>| x.matmul(w.clone()) + b.clone()
    }

    fn rows(n: usize, d: usize, device: &Device) -> Tensor<2> {
        Tensor::<2>::random([n, d], Distribution::Uniform(0.0, 1.0), device)
    }

    fn loss_value<F: Fn(Tensor<2>) -> Tensor<2>>(f: &F, x: Tensor<2>, labels: &[usize]) -> f32 {
        to_vec(loss(f(x), labels))[0]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Whatever the settings, every adversarial row is finite, within epsilon of its row
        /// in the attack's norm, and inside the bounds.
        #[test]
        fn adversarial_rows_stay_in_the_ball_and_the_bounds(
            n in 1usize..5,
            d in 1usize..8,
            k in 1usize..4,
            eps in 0.0f64..0.6,
            pgd in any::<bool>(),
            l2 in any::<bool>(),
            targeted in any::<bool>(),
            restarts in 1usize..3,
            seed in any::<u64>(),
        ) {
            let device = Device::flex();
            // The device's generator is shared: no other test may draw meanwhile.
            let _serial = crate::serial();
            device.seed(seed);
            let f = linear(d, k, &device);
            let x = rows(n, d, &device);
            let classes = k.max(2);
            let labels: Vec<usize> = (0..n).map(|i| i % classes).collect();
            let targets: Vec<usize> = labels.iter().map(|l| (l + 1) % classes).collect();
            let attack = Attack {
                norm: if l2 { Norm::L2 } else { Norm::Inf },
                restarts,
                seed,
                ..if pgd { Attack::pgd(eps) } else { Attack::fgsm(eps) }
            };
            let bounds = Bounds::uniform(d, 0.0, 1.0);
            let t = targeted.then_some(&targets[..]);
            let adv = perturb(&f, x.clone(), &labels, t, &attack, &bounds).unwrap();
            let (a, x) = (to_vec(adv), to_vec(x));
            prop_assert_eq!(a.len(), n * d);
            for (ra, rx) in a.chunks(d).zip(x.chunks(d)) {
                prop_assert!(ra.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)));
                let diff = ra.iter().zip(rx).map(|(p, q)| p - q);
                let size = if l2 {
                    diff.map(|v| v * v).sum::<f32>().sqrt()
                } else {
                    diff.fold(0.0f32, |m, v| m.max(v.abs()))
                };
                prop_assert!(size <= eps as f32 * (1.0 + 1e-5) + 1e-6, "moved {} > {}", size, eps);
            }
        }

        /// A linear classifier's cross entropy is convex in its input, so a step along the
        /// gradient's sign or direction cannot lower it: FGSM raises the loss it attacks.
        #[test]
        fn fgsm_raises_a_convex_loss(
            n in 1usize..5,
            d in 1usize..8,
            k in 1usize..4,
            eps in 0.0f64..0.3,
            l2 in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let device = Device::flex();
            // The device's generator is shared: no other test may draw meanwhile.
            let _serial = crate::serial();
            device.seed(seed);
            let f = linear(d, k, &device);
            // Inside (0.3, 0.7), so a step of at most 0.3 is never clipped.
            let x = rows(n, d, &device) * 0.4 + 0.3;
            let labels: Vec<usize> = (0..n).map(|i| i % k.max(2)).collect();
            let attack = Attack {
                norm: if l2 { Norm::L2 } else { Norm::Inf },
                ..Attack::fgsm(eps)
            };
            let adv = perturb(&f, x.clone(), &labels, None, &attack, &Bounds::uniform(d, 0.0, 1.0))
                .unwrap();
            let (before, after) = (loss_value(&f, x, &labels), loss_value(&f, adv, &labels));
            prop_assert!(after >= before - 1e-5, "loss {} -> {}", before, after);
        }
    }

    /// Two classes split by `x0 > x1`, every row 0.05 from the boundary: an L-infinity ball of
    /// 0.1 crosses it, one of 0.01 does not; epsilon 0 changes nothing.
    fn margin_case(device: &Device) -> (impl Fn(Tensor<2>) -> Tensor<2> + use<>, Dataset) {
        let w = Tensor::<2>::from_data(
            TensorData::new(vec![-1.0f32, 1.0, 1.0, -1.0], [2, 2]),
            device,
        );
        let rows: Vec<f32> = (0..8)
            .flat_map(|i| {
                let c = 0.2 + 0.05 * i as f32;
                if i % 2 == 0 {
                    [c + 0.05, c]
                } else {
                    [c, c + 0.05]
                }
            })
            .collect();
        let labels = (0..8).map(|i| usize::from(i % 2 == 0)).collect();
        let names = vec!["a".into(), "b".into()];
        let data = Dataset::new("margin", rows, 2, Targets::Classes { labels, names }, None)
            .expect("a valid data set");
        (move |x: Tensor<2>| x.matmul(w.clone()), data)
    }

    #[test]
    fn robust_accuracy_falls_once_epsilon_crosses_the_margin() {
        let device = Device::flex();
        let (f, data) = margin_case(&device);
        let bounds = Bounds::uniform(2, 0.0, 1.0);
        let run = |attack: Attack| {
            robust_accuracy(&f, &data, None, &attack, &bounds, 3, &device).expect("attack runs")
        };
        for attack in [Attack::fgsm(0.0), Attack::pgd(0.0)] {
            let r = run(attack);
            assert_eq!(r.clean_accuracy, 1.0);
            assert_eq!(r.robust_accuracy, 1.0);
            assert_eq!(r.adversarial, data.features);
        }
        assert_eq!(run(Attack::fgsm(0.01)).robust_accuracy, 1.0);
        assert_eq!(run(Attack::fgsm(0.1)).robust_accuracy, 0.0);
        assert_eq!(run(Attack::pgd(0.1)).robust_accuracy, 0.0);
        let l2 = Attack {
            norm: Norm::L2,
            ..Attack::pgd(0.1)
        };
        // The boundary is 0.05 / sqrt(2) * 2 = 0.035 away in L2.
        assert_eq!(run(l2).robust_accuracy, 0.0);
        let r = run(Attack::fgsm(0.1));
        assert_eq!(r.clean_predictions.len(), 8);
        assert!(
            r.clean_predictions
                .iter()
                .zip(&r.adversarial_predictions)
                .all(|(a, b)| a != b)
        );
    }

    #[test]
    fn a_targeted_attack_reaches_its_target() {
        let device = Device::flex();
        let (f, data) = margin_case(&device);
        let Targets::Classes { labels, .. } = &data.targets else {
            unreachable!()
        };
        // Aimed at the other class: reached with room, not without.
        let targets: Vec<usize> = labels.iter().map(|l| 1 - l).collect();
        let bounds = Bounds::uniform(2, 0.0, 1.0);
        let r = robust_accuracy(
            &f,
            &data,
            Some(&targets),
            &Attack::pgd(0.1),
            &bounds,
            8,
            &device,
        )
        .unwrap();
        assert_eq!(r.adversarial_predictions, targets);
        assert_eq!(r.robust_accuracy, 0.0);
        let r = robust_accuracy(
            &f,
            &data,
            Some(&targets),
            &Attack::pgd(0.01),
            &bounds,
            8,
            &device,
        )
        .unwrap();
        assert_eq!(r.robust_accuracy, 1.0);
    }

    #[test]
    fn bad_settings_are_errors() {
        let _serial = crate::serial();
        let device = Device::flex();
        let (f, data) = margin_case(&device);
        let bounds = Bounds::uniform(2, 0.0, 1.0);
        let x = rows(2, 2, &device);
        let bad = [
            Attack::fgsm(-0.1),
            Attack::fgsm(f64::NAN),
            Attack::fgsm(f64::INFINITY),
            Attack {
                steps: 0,
                ..Attack::pgd(0.1)
            },
            Attack {
                restarts: 0,
                ..Attack::pgd(0.1)
            },
            Attack {
                step_size: Some(0.0),
                ..Attack::pgd(0.1)
            },
        ];
        for attack in bad {
            let e = perturb(&f, x.clone(), &[0, 1], None, &attack, &bounds).unwrap_err();
            assert!(matches!(e, Error::Invalid(_)), "{attack:?}: {e}");
        }
        let ok = Attack::fgsm(0.1);
        let wrong = [
            perturb(&f, x.clone(), &[0], None, &ok, &bounds),
            perturb(&f, x.clone(), &[0, 1], Some(&[1]), &ok, &bounds),
            perturb(
                &f,
                x.clone(),
                &[0, 1],
                None,
                &ok,
                &Bounds::uniform(3, 0.0, 1.0),
            ),
            perturb_from(
                &f,
                x.clone(),
                Some(vec![0.0; 3]),
                &[0, 1],
                None,
                &ok,
                &bounds,
            ),
        ];
        for r in wrong {
            assert!(matches!(r, Err(Error::Invalid(_))));
        }
        let values =
            Dataset::new("v", vec![0.5; 4], 2, Targets::Values(vec![0.0, 1.0]), None).unwrap();
        let e = robust_accuracy(&f, &values, None, &ok, &bounds, 2, &device).unwrap_err();
        assert!(e.to_string().contains("class labels"), "{e}");
        let e = robust_accuracy(&f, &data, Some(&[0]), &ok, &bounds, 2, &device).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)));
    }

    #[test]
    fn attacks_parse_and_bad_specs_are_errors() {
        let a = Attack::parse("pgd:eps=0.1,steps=7").unwrap();
        assert_eq!(
            a,
            Attack {
                steps: 7,
                ..Attack::pgd(0.1)
            }
        );
        let a = Attack::parse(" fgsm : eps = 0.03 , random_start = true, norm=2, seed=4").unwrap();
        assert_eq!(
            a,
            Attack {
                random_start: true,
                norm: Norm::L2,
                seed: 4,
                ..Attack::fgsm(0.03)
            }
        );
        assert_eq!(
            Attack::parse("pgd:eps=0.2,step=0.01,restarts=3")
                .unwrap()
                .step(),
            0.01
        );
        for (spec, why) in [
            ("cw:eps=0.1", "unknown method"),
            ("pgd", "eps=E is required"),
            ("pgd:eps", "not key=value"),
            ("pgd:eps=x", "not a number"),
            ("pgd:eps=-1", "epsilon"),
            ("pgd:eps=0.1,steps=0", "step"),
            ("pgd:eps=0.1,steps=1.5", "whole number"),
            ("pgd:eps=0.1,norm=1", "expected inf or 2"),
            ("pgd:eps=0.1,colour=red", "unknown setting"),
            ("pgd:eps=0.1,random_start=maybe", "true or false"),
        ] {
            let e = Attack::parse(spec).unwrap_err().to_string();
            assert!(e.contains(why), "{spec}: {e}");
        }
    }

    proptest! {
        /// The attack parser never panics, whatever it is given.
        #[test]
        fn parsing_never_panics(spec in ".{0,40}") {
            let _ = Attack::parse(&spec);
        }

        /// Nor on near-misses of valid specs.
        #[test]
        fn parsing_near_misses_never_panics(
            method in prop::sample::select(vec!["fgsm", "pgd", "", "PGD"]),
            items in prop::collection::vec(
                (prop::sample::select(vec!["eps", "steps", "step", "norm", "restarts",
                    "random_start", "seed", "x", ""]), "[-0-9.a-z=]{0,6}"),
                0..5,
            ),
        ) {
            let settings: Vec<String> = items.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = Attack::parse(&format!("{method}:{}", settings.join(",")));
        }
    }

    #[test]
    fn observed_bounds_span_each_feature() {
        let (_, data) = margin_case(&Device::flex());
        let b = Bounds::observed(&data);
        // Rows (0.25, 0.2), (0.25, 0.3), (0.35, 0.3), ..., (0.55, 0.5), (0.55, 0.6).
        let close = |a: &[f32], b: [f32; 2]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
        assert!(close(&b.lower, [0.25, 0.2]), "{:?}", b.lower);
        assert!(close(&b.upper, [0.55, 0.6]), "{:?}", b.upper);
    }
}
