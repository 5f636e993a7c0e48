//! Knowledge distillation (Hinton, Vinyals & Dean 2015), `--distill-from RUN`: a student
//! classifier trains on the finished classifier run's (the teacher's) softened outputs beside
//! the true labels. Each batch's loss is
//! `weight · T² · KL(softmax(teacher / T) ‖ softmax(student / T)) + (1 − weight) · hard`,
//! `hard` the run's own loss on the labels; `T²` keeps the soft part's gradients at the hard
//! part's scale as `T` grows.
//!
//! The teacher sees each batch as its own run would: the student's standardisation is undone
//! and the teacher's applied, so the two may have standardised differently (or not at all).

use std::path::PathBuf;

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};
use strata_arch::Network;
use strata_data::Standardizer;
use strata_tensor::TargetBatch;
use strata_train::Loss;

use crate::data::Prepared;
use crate::error::{Error, Result};
use crate::evaluate::{Run, load_run};

/// Distillation's settings: `--distill-from RUN [--temperature T] [--distill-weight W]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distill {
    /// The teacher: a finished classifier run's directory.
    pub from: PathBuf,
    /// The softmax temperature `T` of both models' outputs in the soft part.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// The soft part's weight (the hard part's is `1 - weight`).
    #[serde(default = "default_weight")]
    pub weight: f64,
}

fn default_temperature() -> f64 {
    4.0
}

fn default_weight() -> f64 {
    0.9
}

impl Distill {
    /// Distillation from the run in `from` at temperature 4, the soft part weighing 0.9.
    #[must_use]
    pub fn new(from: impl Into<PathBuf>) -> Self {
        Self {
            from: from.into(),
            temperature: default_temperature(),
            weight: default_weight(),
        }
    }

    /// Checks the temperature and the weight.
    ///
    /// # Errors
    /// A temperature that is not a finite number above 0, a weight outside `[0, 1]`.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(Error::Usage(format!(
                "--temperature must be a finite number > 0, got {}",
                self.temperature
            )));
        }
        if !(0.0..=1.0).contains(&self.weight) {
            return Err(Error::Usage(format!(
                "--distill-weight must be in [0, 1], got {}",
                self.weight
            )));
        }
        Ok(())
    }
}

/// The teacher of `distill` loaded on `backend`, checked against the student's data: a
/// classifier of as many classes, reading as many features.
///
/// # Errors
/// A directory that is not a finished run, a teacher that is not a classifier, or one of
/// another number of classes or features.
pub(crate) fn teacher(distill: &Distill, prepared: &Prepared, backend: &str) -> Result<Run> {
    let dir = &distill.from;
    let run = load_run(dir, Some(backend))
        .map_err(|e| Error::Usage(format!("--distill-from {}: {e}", dir.display())))?;
    let Some(names) = &run.preprocess.class_names else {
        return Err(Error::Usage(format!(
            "--distill-from {}: the teacher is a regressor; distillation needs a classifier",
            dir.display()
        )));
    };
    let classes = prepared.train.class_names().map_or(0, <[String]>::len);
    if names.len() != classes {
        return Err(Error::Usage(format!(
            "--distill-from {}: the teacher predicts {} classes, {} has {classes}",
            dir.display(),
            names.len(),
            prepared.train.name
        )));
    }
    if run.preprocess.n_features != prepared.train.n_features {
        return Err(Error::Usage(format!(
            "--distill-from {}: the teacher reads {} features, {} has {}",
            dir.display(),
            run.preprocess.n_features,
            prepared.train.name,
            prepared.train.n_features
        )));
    }
    Ok(run)
}

/// The distillation loss of `distill` from `teacher`, with `hard` the run's loss on the labels.
pub(crate) fn distilled_loss<'a>(
    teacher: &'a Run,
    distill: &Distill,
    prepared: &Prepared,
    hard: &'a dyn Loss,
) -> impl Fn(&Network, Tensor<2>, &TargetBatch) -> strata_train::Result<Tensor<1>> + 'a {
    let d = prepared.train.n_features;
    // The teacher's inputs from the student's: x_t = x_s · a + b, per feature.
    let (a, b) = rescale(
        prepared.preprocess.standardizer.as_ref(),
        teacher.preprocess.standardizer.as_ref(),
        d,
    );
    // Built once, on the teacher's device; `None` when the two standardise alike.
    let rows = (a.iter().any(|&v| v != 1.0) || b.iter().any(|&v| v != 0.0)).then(|| {
        let row = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [1, d]), &teacher.device);
        (row(a), row(b))
    });
    let (t, w) = (distill.temperature, distill.weight);
    move |student: &Network, x: Tensor<2>, targets: &TargetBatch| {
        let [n, _] = x.dims();
        let plain = x.clone().inner();
        let xt = match &rows {
            Some((a, b)) => plain * a.clone().expand([n, d]) + b.clone().expand([n, d]),
            None => plain,
        };
        let soft_teacher = softmax(teacher.model.forward_flat(xt) / t, 1);
        let log_teacher = soft_teacher.clone().clamp_min(1e-12).log();
        let (soft_teacher, log_teacher) = (soft_teacher.autodiff(), log_teacher.autodiff());
        let out = student.forward_flat(x);
        let log_student = log_softmax(out.clone() / t, 1);
        let kl = (soft_teacher * (log_teacher - log_student)).sum() / n as f64;
        let soft = kl * (t * t);
        let hard = hard.forward(out, targets)?;
        Ok(soft * w + hard * (1.0 - w))
    }
}

/// The per-feature scale and shift that turn data standardised by `student` into data
/// standardised by `teacher` (`None`: not standardised).
fn rescale(
    student: Option<&Standardizer>,
    teacher: Option<&Standardizer>,
    d: usize,
) -> (Vec<f32>, Vec<f32>) {
    let identity = Standardizer::identity(d);
    let (s, t) = (student.unwrap_or(&identity), teacher.unwrap_or(&identity));
    let a = s.scale.iter().zip(&t.scale).map(|(s, t)| s / t).collect();
    let b = s
        .mean
        .iter()
        .zip(&t.mean)
        .zip(&t.scale)
        .map(|((ms, mt), st)| (ms - mt) / st)
        .collect();
    (a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescaling_maps_one_standardisation_onto_another() {
        let s = Standardizer {
            mean: vec![1.0, -2.0],
            scale: vec![2.0, 0.5],
        };
        let t = Standardizer {
            mean: vec![0.0, 3.0],
            scale: vec![4.0, 1.0],
        };
        let (a, b) = rescale(Some(&s), Some(&t), 2);
        for raw in [[0.0f32, 0.0], [3.0, -1.0], [-5.0, 7.5]] {
            for j in 0..2 {
                let xs = (raw[j] - s.mean[j]) / s.scale[j];
                let xt = (raw[j] - t.mean[j]) / t.scale[j];
                assert!((xs * a[j] + b[j] - xt).abs() < 1e-6);
            }
        }
        assert_eq!(rescale(None, None, 2), (vec![1.0; 2], vec![0.0; 2]));
    }

    /// The loss against its definition, computed on the host in f64: a teacher that reads
    /// raw iris rows, a student that reads standardised ones.
    #[test]
    fn the_loss_is_hintons_with_the_teacher_reading_its_own_inputs() {
        use burn::tensor::Device;
        use strata_data::{Encoding, Source, load_source};

        let mut config = crate::config::RunConfig::defaults_for("mlp", "iris");
        // No dropout: the check recomputes the student's outputs.
        config.network.dropout = 0.0;
        let source: Source = load_source("iris", &config.label, Encoding::OneHot).unwrap();
        let (train, valid, test, _) = crate::data::split_source(source, &config).unwrap();
        let prepared = crate::data::prepare(train, valid, test, &config).unwrap();
        let standardizer = prepared
            .preprocess
            .standardizer
            .clone()
            .expect("iris is standardised");
        let plain = Device::flex();
        let device = plain.clone().autodiff();
        let mut teacher_pre = prepared.preprocess.clone();
        teacher_pre.standardizer = None;
        let net = crate::family::network_config(&config, &teacher_pre, 3).unwrap();
        let teacher = Run {
            dir: PathBuf::from("teacher"),
            config: config.clone(),
            preprocess: teacher_pre,
            model: net.init(&plain).unwrap(),
            device: plain.clone(),
        };
        let student = net.init(&device).unwrap();
        let distill = Distill {
            temperature: 3.0,
            weight: 0.7,
            ..Distill::new("teacher")
        };
        let loss = strata_loss::LossConfig::CrossEntropy {
            weights: None,
            smoothing: 0.0,
        }
        .init(&device)
        .unwrap();
        let f = distilled_loss(&teacher, &distill, &prepared, loss.as_ref());
        let rows: Vec<usize> = (0..8).collect();
        let batch = strata_data::Batcher::new(device.clone()).batch(&prepared.train, &rows);
        let got = f64::from(
            f(&student, batch.inputs.clone(), &batch.targets)
                .unwrap()
                .into_scalar::<f32>(),
        );

        let d = prepared.train.n_features;
        let x = to_host(batch.inputs.clone().inner());
        let raw: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, v)| v * standardizer.scale[i % d] + standardizer.mean[i % d])
            .collect();
        let raw_t = Tensor::<2>::from_data(TensorData::new(raw, [8, d]), &plain);
        let t_logits = to_host(teacher.model.forward_flat(raw_t));
        let s_logits = to_host(student.forward_flat(batch.inputs).inner());
        let labels = prepared.train.labels().unwrap();
        let (t, w) = (3.0f64, 0.7f64);
        let log_softmax = |z: &[f32], scale: f64| -> Vec<f64> {
            let z: Vec<f64> = z.iter().map(|&v| f64::from(v) / scale).collect();
            let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            z.iter().map(|v| v - lse).collect()
        };
        let (mut kl, mut ce) = (0.0, 0.0);
        for i in 0..8 {
            let lt = log_softmax(&t_logits[3 * i..3 * i + 3], t);
            let ls = log_softmax(&s_logits[3 * i..3 * i + 3], t);
            kl += (0..3).map(|c| lt[c].exp() * (lt[c] - ls[c])).sum::<f64>();
            ce -= log_softmax(&s_logits[3 * i..3 * i + 3], 1.0)[labels[i]];
        }
        let want = w * t * t * kl / 8.0 + (1.0 - w) * ce / 8.0;
        assert!(
            (got - want).abs() < 1e-4 * want.abs().max(1.0),
            "{got} vs {want}"
        );
    }

    fn to_host(t: Tensor<2>) -> Vec<f32> {
        strata_tensor::convert::to_vec(t)
    }

    #[test]
    fn settings_are_checked() {
        assert!(Distill::new("r").validate().is_ok());
        for (t, w, why) in [
            (0.0, 0.5, "--temperature"),
            (f64::NAN, 0.5, "--temperature"),
            (4.0, 1.5, "--distill-weight"),
            (4.0, -0.1, "--distill-weight"),
        ] {
            let d = Distill {
                temperature: t,
                weight: w,
                ..Distill::new("r")
            };
            let e = d.validate().unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }
}
