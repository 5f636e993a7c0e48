//! Prediction and evaluation of a trained model on a data set.

use burn::module::Module;
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use strata_data::{Batcher, Dataset, Targets};
use strata_loss::Loss;
use strata_metrics::{ClassificationReport, RegressionReport};
use strata_tensor::convert::{matrix, scalar, to_vec};

use crate::distributed::{Collective, shard_range};
use crate::error::Result;

/// Metrics of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Report {
    /// Classification metrics.
    Classification(ClassificationReport),
    /// Regression metrics.
    Regression(RegressionReport),
}

impl Report {
    /// The metric early stopping and the history follow: accuracy, or RMSE for regression.
    pub fn headline(&self) -> f64 {
        match self {
            Report::Classification(r) => r.accuracy,
            Report::Regression(r) => r.rmse,
        }
    }
}

/// The result of [`evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Mean loss over the samples.
    pub loss: f64,
    /// Metrics.
    pub report: Report,
    /// Raw outputs, row-major `[n, n_outputs]`.
    pub outputs: Vec<f32>,
    /// Outputs per sample.
    pub n_outputs: usize,
}

/// The model's raw outputs for every sample of `data`, row-major `[n, n_outputs]`. `model`
/// should be in evaluation mode (`model.valid()`) and `device` a plain (non-autodiff) device.
pub fn predict<M, F>(
    model: &M,
    forward: &F,
    data: &Dataset,
    batch_size: usize,
    device: &Device,
) -> (Vec<f32>, usize)
where
    M: Module,
    F: Fn(&M, Tensor<2>) -> Tensor<2>,
{
    let batcher = Batcher::new(device.clone());
    let order: Vec<usize> = (0..data.len()).collect();
    let mut out = Vec::new();
    let mut k = 0;
    for batch in batcher.batches(data, &order, batch_size) {
        let y = forward(model, batch.inputs);
        k = y.dims()[1];
        out.extend(to_vec(y));
    }
    (out, k)
}

/// Class probabilities from raw outputs: softmax over each row, or for a single output the
/// sigmoid as `[1 - p, p]`.
pub fn probabilities(outputs: &[f32], n_outputs: usize, device: &Device) -> Vec<f32> {
    let n = outputs.len() / n_outputs.max(1);
    if n == 0 {
        return Vec::new();
    }
    let t = matrix(outputs.to_vec(), n, n_outputs, device);
    if n_outputs == 1 {
        let p = to_vec(sigmoid(t));
        p.iter().flat_map(|&p| [1.0 - p, p]).collect()
    } else {
        to_vec(softmax(t, 1))
    }
}

/// Evaluates `model` on `data`: mean loss and metrics.
///
/// # Errors
/// When the loss rejects the targets or the metrics get inconsistent input.
pub fn evaluate<M, F>(
    model: &M,
    forward: &F,
    loss: &dyn Loss,
    data: &Dataset,
    batch_size: usize,
    device: &Device,
) -> Result<Evaluation>
where
    M: Module,
    F: Fn(&M, Tensor<2>) -> Tensor<2>,
{
    evaluate_shared(model, forward, loss, data, batch_size, device, None)
}

/// [`evaluate`] in a data-parallel run: each rank of `collective` evaluates its share of
/// `data` ([`shard_range`](crate::shard_range)), and every rank gets the figures of the
/// whole, computed from every rank's outputs. With no `collective`, [`evaluate`].
///
/// # Errors
/// As [`evaluate`].
pub fn evaluate_shared<M, F>(
    model: &M,
    forward: &F,
    loss: &dyn Loss,
    data: &Dataset,
    batch_size: usize,
    device: &Device,
    collective: Option<&dyn Collective>,
) -> Result<Evaluation>
where
    M: Module,
    F: Fn(&M, Tensor<2>) -> Tensor<2>,
{
    let rows: Vec<usize> = match collective {
        Some(c) => shard_range(data.len(), c.rank(), c.size()).collect(),
        None => (0..data.len()).collect(),
    };
    let (outputs, k, total) =
        outputs_and_loss(model, forward, loss, data, &rows, batch_size, device)?;
    let Some(collective) = collective else {
        return finish(data, outputs, k, total, device);
    };
    // The loss sum, and the output width as seen by the ranks that had rows.
    let mut sums = [total, k as f64, f64::from(u8::from(!rows.is_empty()))];
    collective.sum_f64(&mut sums);
    let k = if sums[2] > 0.0 {
        (sums[1] / sums[2]).round() as usize
    } else {
        0
    };
    let outputs = collective.gather(&outputs);
    finish(data, outputs, k, sums[0], device)
}

/// The outputs of `model` for the rows `rows` of `data` (row-major), their width and the sum
/// of their losses.
fn outputs_and_loss<M, F>(
    model: &M,
    forward: &F,
    loss: &dyn Loss,
    data: &Dataset,
    rows: &[usize],
    batch_size: usize,
    device: &Device,
) -> Result<(Vec<f32>, usize, f64)>
where
    M: Module,
    F: Fn(&M, Tensor<2>) -> Tensor<2>,
{
    let batcher = Batcher::new(device.clone());
    let mut outputs = Vec::with_capacity(rows.len() * 10);
    let mut total = 0.0f64;
    let mut k = 0;
    for chunk in rows.chunks(batch_size.max(1)) {
        let batch = batcher.batch(data, chunk);
        let y = forward(model, batch.inputs);
        k = y.dims()[1];
        total += scalar(loss.forward(y.clone(), &batch.targets)?) as f64 * chunk.len() as f64;
        outputs.extend(to_vec(y));
    }
    Ok((outputs, k, total))
}

/// The evaluation of `data` from all its outputs (width `k`) and the sum of their losses.
fn finish(
    data: &Dataset,
    outputs: Vec<f32>,
    k: usize,
    total: f64,
    device: &Device,
) -> Result<Evaluation> {
    let report = match &data.targets {
        Targets::Classes { labels, names } => {
            let probs = probabilities(&outputs, k, device);
            Report::Classification(ClassificationReport::new(
                labels,
                &probs,
                names.len().max(k.max(2)),
            )?)
        }
        Targets::Values(v) => {
            let pred: Vec<f32> = outputs.chunks(k.max(1)).map(|r| r[0]).collect();
            Report::Regression(RegressionReport::new(v, &pred)?)
        }
    };
    Ok(Evaluation {
        loss: total / data.len().max(1) as f64,
        report,
        outputs,
        n_outputs: k,
    })
}
