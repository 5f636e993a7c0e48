//! Adversarial robustness of a finished classifier run ([`attack`]): its accuracy on its test
//! split (or another data set) under an FGSM or PGD attack, a curve of that accuracy against
//! epsilon, and pictures of clean and adversarial examples. What `strata attack` runs.
//!
//! The attack moves the raw features, as loaded: pixels in `[0, 1]` for the built-in image
//! sets. The run's standardisation sits between them and the model, inside the attacked
//! function, so epsilon is in the data's own units and the adversarial inputs are valid data:
//! clipped to the range of the evaluated set's values (images: one range for every pixel;
//! tables: each column's own).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use serde_json::{Value, json};
use strata_arch::Network;
use strata_data::Dataset;
use strata_train::{Attack, AttackMethod, Bounds, Norm, Robustness, robust_accuracy};

use crate::data::Preprocess;
use crate::error::{Error, Result};
use crate::evaluate::{load_run, samples_to_evaluate};
use crate::pictures::{ImageGrid, LineChart, save_png};

/// What [`attack`] runs.
#[derive(Debug, Clone, PartialEq)]
pub struct AttackRequest {
    /// The attack at the headline epsilon.
    pub attack: Attack,
    /// The epsilons of the robustness curve; empty for `0, eps/4, eps/2, 3 eps/4, eps,
    /// 1.5 eps, 2 eps`.
    pub curve: Vec<f64>,
    /// A data set spec to attack instead of the run's test split.
    pub dataset: Option<String>,
    /// Attack only the first this many samples (the curve attacks them once per epsilon).
    pub limit: Option<usize>,
}

impl AttackRequest {
    /// `attack` on the run's whole test split, with the default curve.
    pub fn new(attack: Attack) -> Self {
        Self {
            attack,
            curve: Vec::new(),
            dataset: None,
            limit: None,
        }
    }

    /// The curve's epsilons, sorted, without repeats.
    fn epsilons(&self) -> Vec<f64> {
        let eps = self.attack.eps;
        let mut e = if self.curve.is_empty() {
            [0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0]
                .iter()
                // Rounded, so that 0.75 * 0.1 reads 0.075 in the CSV.
                .map(|f| (f * eps * 1e12).round() / 1e12)
                .collect()
        } else {
            self.curve.clone()
        };
        e.sort_by(f64::total_cmp);
        e.dedup();
        e
    }
}

/// What [`attack`] measured and wrote.
#[derive(Debug, Clone)]
pub struct Attacked {
    /// One line: clean and robust accuracy at the headline epsilon.
    pub summary: String,
    /// `attack.json`'s contents.
    pub metrics: Value,
    /// The files written.
    pub written: Vec<PathBuf>,
}

/// Attacks the finished classifier run in `dir` (on `backend`, or its own) and writes into
/// `dir/attack/`: `attack.json` (the settings, clean and robust accuracy, the curve),
/// `robustness.csv` and `robustness.png` (robust accuracy against epsilon) and, for images,
/// `adversarial.png` (clean examples in the top row, their adversarial versions below, each
/// framed green where the model is right and red where it is wrong).
///
/// ```no_run
/// use strata_run::{AttackRequest, attack};
/// use strata_train::Attack;
/// let done = attack("runs/cnn-digits", None, &AttackRequest::new(Attack::pgd(0.1)))?;
/// println!("{}", done.summary);
/// # Ok::<(), strata_run::Error>(())
/// ```
///
/// # Errors
/// A directory that is not a finished classifier run, invalid attack settings, data that do
/// not fit the model, I/O errors.
pub fn attack(
    dir: impl AsRef<Path>,
    backend: Option<&str>,
    request: &AttackRequest,
) -> Result<Attacked> {
    let dir = dir.as_ref();
    request.attack.validate().map_err(|e| match e {
        strata_train::Error::Invalid(m) => Error::Usage(m),
        e => e.into(),
    })?;
    if let Some(bad) = request
        .curve
        .iter()
        .find(|e| !(e.is_finite() && **e >= 0.0))
    {
        return Err(Error::Usage(format!(
            "every epsilon of the curve must be a finite number >= 0, got {bad}"
        )));
    }
    if request.limit == Some(0) {
        return Err(Error::Usage("--limit must be at least 1".into()));
    }
    let run = load_run(dir, backend)?;
    if run.preprocess.class_names.is_none() {
        return Err(Error::Usage(format!(
            "{}: the {} run is not a classifier; an attack needs class labels",
            dir.display(),
            run.config.model
        )));
    }
    let (name, mut data) = samples_to_evaluate(&run, request.dataset.as_deref())?;
    // Sized as the model reads them (resized images), not yet standardised.
    let mut shape_only = run.preprocess.clone();
    shape_only.standardizer = None;
    shape_only.apply(&mut data)?;
    if let Some(n) = request.limit
        && n < data.len()
    {
        data = data.subset(&(0..n).collect::<Vec<_>>());
    }
    let bounds = input_bounds(&data);
    let model = burn::module::Module::valid(&run.model);
    let forward = standardised_model(&model, &run.preprocess, &run.device);
    let batch = 128;
    let headline = robust_accuracy(
        &forward,
        &data,
        None,
        &request.attack,
        &bounds,
        batch,
        &run.device,
    )?;
    let mut curve = Vec::new();
    for eps in request.epsilons() {
        let r = if eps == request.attack.eps {
            headline.robust_accuracy
        } else {
            let at = Attack {
                eps,
                ..request.attack.clone()
            };
            robust_accuracy(&forward, &data, None, &at, &bounds, batch, &run.device)?
                .robust_accuracy
        };
        curve.push((eps, r));
    }
    let out = dir.join("attack");
    let mut written = Vec::new();
    let a = &request.attack;
    let metrics = json!({
        "model": run.config.model,
        "dataset": name,
        "samples": data.len(),
        "attack": a,
        "step_size": a.step(),
        "input_range": {"lower": bounds.lower.iter().copied().fold(f32::INFINITY, f32::min),
                        "upper": bounds.upper.iter().copied().fold(f32::NEG_INFINITY, f32::max)},
        "clean_accuracy": headline.clean_accuracy,
        "robust_accuracy": headline.robust_accuracy,
        "curve": curve.iter().map(|(e, r)| json!({"eps": e, "robust_accuracy": r})).collect::<Vec<_>>(),
    });
    let json_path = out.join("attack.json");
    let text = serde_json::to_string_pretty(&metrics).map_err(|e| Error::Usage(e.to_string()))?;
    strata_train::write_atomic(&json_path, text.as_bytes())?;
    written.push(json_path);
    let mut csv = String::from("eps,robust_accuracy\n");
    for (e, r) in &curve {
        let _ = writeln!(csv, "{e},{r:.6}");
    }
    let csv_path = out.join("robustness.csv");
    strata_train::write_atomic(&csv_path, csv.as_bytes())?;
    written.push(csv_path);
    if let Some(shape) = data.image_shape {
        let png = out.join("adversarial.png");
        save_png(&examples(&data, &headline, shape, 8)?, &png)?;
        written.push(png);
    }
    let norm = match a.norm {
        Norm::Inf => "L-inf",
        Norm::L2 => "L2",
    };
    let method = match a.method {
        AttackMethod::Fgsm => "FGSM".to_string(),
        AttackMethod::Pgd => format!("PGD-{}", a.steps),
    };
    if curve.len() >= 2 {
        let png = out.join("robustness.png");
        let chart = LineChart {
            width: 480,
            height: 320,
            title: format!("{}: robust accuracy, {method} {norm}", run.config.model),
            x_label: "epsilon".into(),
        };
        save_png(&chart.draw(&curve)?, &png)?;
        written.push(png);
    }
    let summary = format!(
        "{name}, {} samples: clean accuracy {:.4}, robust accuracy {:.4} under {method} {norm} eps {}",
        data.len(),
        headline.clean_accuracy,
        headline.robust_accuracy,
        a.eps
    );
    Ok(Attacked {
        summary,
        metrics,
        written,
    })
}

/// The valid range of raw inputs, from the data themselves: one range for every pixel of
/// images, each column's own for rows.
pub(crate) fn input_bounds(raw: &Dataset) -> Bounds {
    match raw.image_shape {
        Some(_) => {
            let lo = raw.features.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = raw
                .features
                .iter()
                .copied()
                .fold(f32::NEG_INFINITY, f32::max);
            Bounds::uniform(raw.n_features, lo, hi)
        }
        None => Bounds::observed(raw),
    }
}

/// `data` (standardised as `pre` says) back in the data's own units, where attacks move it.
///
/// # Errors
/// Data of another width than the standardisation's.
pub(crate) fn raw_units(data: &Dataset, pre: &Preprocess) -> Result<Dataset> {
    let mut raw = data.clone();
    if let Some(s) = &pre.standardizer {
        s.inverse_rows(&mut raw.features)?;
    }
    Ok(raw)
}

/// `model` (in evaluation mode) behind `pre`'s standardisation, as a function of raw feature
/// rows.
pub(crate) fn standardised_model<'a>(
    model: &'a Network,
    pre: &Preprocess,
    device: &Device,
) -> impl Fn(Tensor<2>) -> Tensor<2> + 'a {
    let standardise = standardiser(pre, device);
    move |x: Tensor<2>| model.forward_flat(standardise(x))
}

/// `pre`'s standardisation as a function of raw feature rows (the identity without one).
pub(crate) fn standardiser(
    pre: &Preprocess,
    device: &Device,
) -> impl Fn(Tensor<2>) -> Tensor<2> + use<> {
    let scale = pre.standardizer.as_ref().map(|s| {
        let d = s.mean.len();
        let row = |v: &[f32]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [1, d]), device);
        (row(&s.mean), row(&s.scale))
    });
    move |x: Tensor<2>| match &scale {
        Some((mean, sd)) => {
            let n = x.dims()[0];
            let d = mean.dims()[1];
            (x - mean.clone().expand([n, d])) / sd.clone().expand([n, d])
        }
        None => x,
    }
}

/// The `adversarial` block of a run trained adversarially: the attack, and the finished
/// model's clean and robust accuracy on the test split (`test`, standardised as `pre` says).
///
/// # Errors
/// Test data without class labels.
pub(crate) fn robust_metrics(
    model: &Network,
    pre: &Preprocess,
    test: &Dataset,
    attack: &Attack,
    device: &Device,
) -> Result<Value> {
    let raw = raw_units(test, pre)?;
    let model = burn::module::Module::valid(model);
    let forward = standardised_model(&model, pre, device);
    let r = robust_accuracy(
        &forward,
        &raw,
        None,
        attack,
        &input_bounds(&raw),
        128,
        device,
    )?;
    Ok(json!({
        "attack": attack,
        "test_clean_accuracy": r.clean_accuracy,
        "test_robust_accuracy": r.robust_accuracy,
    }))
}

/// The first `n` clean images over their adversarial versions, each framed green where the
/// model is right and red where it is wrong. Pixels are drawn over the data's range.
fn examples(
    data: &Dataset,
    r: &Robustness,
    shape: [usize; 3],
    n: usize,
) -> Result<image::RgbImage> {
    let n = n.min(data.len());
    let size = data.n_features;
    let lo = data.features.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = data
        .features
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let mut pixels: Vec<f32> = data.features[..n * size].to_vec();
    pixels.extend_from_slice(&r.adversarial[..n * size]);
    for p in &mut pixels {
        *p = (*p - lo) / span;
    }
    let grid = ImageGrid::new(shape, n);
    let mut img = grid.draw(&pixels)?;
    let strata_data::Targets::Classes { labels, .. } = &data.targets else {
        unreachable!("attacked data have classes")
    };
    let (tile_w, tile_h) = (shape[2] * grid.scale + 1, shape[1] * grid.scale + 1);
    for row in 0..2 {
        let predictions = if row == 0 {
            &r.clean_predictions
        } else {
            &r.adversarial_predictions
        };
        for i in 0..n {
            let colour = if predictions[i] == labels[i] {
                image::Rgb([44, 160, 44])
            } else {
                image::Rgb([214, 39, 40])
            };
            let (x0, y0) = (i * tile_w, row * tile_h);
            for x in x0..=x0 + tile_w {
                img.put_pixel(x as u32, y0 as u32, colour);
                img.put_pixel(x as u32, (y0 + tile_h) as u32, colour);
            }
            for y in y0..=y0 + tile_h {
                img.put_pixel(x0 as u32, y as u32, colour);
                img.put_pixel((x0 + tile_w) as u32, y as u32, colour);
            }
        }
    }
    Ok(img)
}
