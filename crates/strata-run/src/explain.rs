//! Explanations of a finished classifier run's prediction for one input row ([`explain`]):
//! gradient saliency, SmoothGrad or integrated gradients of the chosen class's output with
//! respect to the raw features, Grad-CAM at a convolutional layer or a ViT's attention
//! rollout (upsampled to the image), as a heat map over the image (PNG) or, for rows of a table, a CSV of each column's
//! attribution and a bar chart. What `strata explain` runs.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Tensor, TensorData};
use image::{Rgb, RgbImage};
use serde_json::{Value, json};
use strata_arch::{Network, TokenInput};
use strata_data::Encoding;
use strata_tensor::convert::to_vec;
use strata_train::{
    attention_rollout, grad_cam, integrated_gradients, predicted_classes, saliency, smoothgrad,
};

use crate::attack::{standardised_model, standardiser};
use crate::error::{Error, Result};
use crate::evaluate::load_run;
use crate::pictures::{PALETTE, save_png};

/// The explanation method.
#[derive(Debug, Clone, PartialEq)]
pub enum ExplainMethod {
    /// `|d output / d input|`.
    Saliency,
    /// Saliency averaged over `samples` noisy copies (noise `sigma` times the data's range).
    SmoothGrad {
        /// Noisy copies.
        samples: usize,
        /// Noise standard deviation as a fraction of the input range.
        sigma: f64,
    },
    /// Integrated gradients from a baseline (black images; the training mean for rows), with
    /// `steps` Gauss-Legendre points.
    IntegratedGradients {
        /// Points on the path.
        steps: usize,
    },
    /// Grad-CAM at a convolutional layer (`None`: the last), with the paper's ReLU, upsampled
    /// bilinearly to the image.
    GradCam {
        /// The layer, one of the network's `conv_layers()`.
        layer: Option<String>,
    },
    /// Attention rollout of a ViT: the class token's rolled-out attention over the patches,
    /// upsampled bilinearly to the image. The same for every class.
    Rollout,
}

impl ExplainMethod {
    /// Reads `saliency`, `smoothgrad`, `ig`, `gradcam` or `rollout`, with their defaults
    /// (SmoothGrad: 50 samples, noise 0.15 of the range; integrated gradients: 50 steps;
    /// Grad-CAM: the last convolutional layer).
    ///
    /// # Errors
    /// Another name.
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name.trim() {
            "saliency" => Self::Saliency,
            "smoothgrad" => Self::SmoothGrad {
                samples: 50,
                sigma: 0.15,
            },
            "ig" | "integrated-gradients" => Self::IntegratedGradients { steps: 50 },
            "gradcam" | "grad-cam" => Self::GradCam { layer: None },
            "rollout" => Self::Rollout,
            other => {
                return Err(Error::Usage(format!(
                    "--method must be saliency, smoothgrad, ig, gradcam or rollout, got `{other}`"
                )));
            }
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Saliency => "saliency",
            Self::SmoothGrad { .. } => "smoothgrad",
            Self::IntegratedGradients { .. } => "integrated gradients",
            Self::GradCam { .. } => "Grad-CAM",
            Self::Rollout => "attention rollout",
        }
    }
}

/// What [`explain`] computed and wrote.
#[derive(Debug, Clone)]
pub struct Explained {
    /// One line: the row, the class explained, the method (and the completeness check).
    pub summary: String,
    /// The attribution of each raw feature, in the input's order.
    pub attributions: Vec<f32>,
    /// The class explained.
    pub class: usize,
    /// For integrated gradients, the completeness error relative to `f(x) - f(baseline)`.
    pub completeness_error: Option<f32>,
    /// Details as JSON.
    pub metrics: Value,
    /// The files written.
    pub written: Vec<PathBuf>,
}

/// Explains the finished classifier run in `dir`'s output for row `row` of the CSV `input`
/// (raw features, as `strata predict` reads them), for class `class` or the predicted one,
/// writing `out` (a PNG): a heat map of the attributions' magnitudes over the image, or for
/// rows a bar chart of each column's attribution (one-hot categories summed per column), with
/// the same numbers in `<out's stem>_attributions.csv` beside it.
///
/// ```no_run
/// use strata_run::{ExplainMethod, explain};
/// let e = explain("runs/cnn-digits", None, "digits.csv".as_ref(), 0, None,
///                 ExplainMethod::Saliency, "heat.png".as_ref())?;
/// println!("{}", e.summary);
/// # Ok::<(), strata_run::Error>(())
/// ```
///
/// # Errors
/// A directory that is not a finished classifier run, a model that reads categories as
/// indices (no gradient), an unreadable input, a row or class out of range, I/O errors.
#[allow(clippy::too_many_arguments)]
pub fn explain(
    dir: impl AsRef<Path>,
    backend: Option<&str>,
    input: &Path,
    row: usize,
    class: Option<usize>,
    method: ExplainMethod,
    out: &Path,
) -> Result<Explained> {
    let dir = dir.as_ref();
    if out == input {
        return Err(Error::Usage(format!(
            "--out {} would overwrite --input",
            out.display()
        )));
    }
    let run = load_run(dir, backend)?;
    let Some(names) = run.preprocess.class_names.clone() else {
        return Err(Error::Usage(format!(
            "{}: the {} run is not a classifier; explanations name a class",
            dir.display(),
            run.config.model
        )));
    };
    if run
        .preprocess
        .table
        .as_ref()
        .is_some_and(|t| t.encoding == Encoding::Indices)
    {
        return Err(Error::Usage(format!(
            "the {} model reads categories as indices, which have no gradient: explain a model that reads one-hot columns (mlp)",
            run.config.model
        )));
    }
    let rows = run.read_rows(input)?;
    let d = run.preprocess.n_features.max(1);
    let n = rows.len() / d;
    if row >= n {
        return Err(Error::Usage(format!(
            "--row {row} but {} has {n} rows",
            input.display()
        )));
    }
    let x_row = rows[row * d..(row + 1) * d].to_vec();
    let model = burn::module::Module::valid(&run.model);
    let forward = standardised_model(&model, &run.preprocess, &run.device);
    let x = Tensor::<2>::from_data(TensorData::new(x_row.clone(), [1, d]), &run.device);
    let outputs = forward(x.clone());
    let k = outputs.dims()[1];
    let predicted = predicted_classes(&to_vec(outputs), k)[0];
    let class = class.unwrap_or(predicted);
    if class >= k.max(2) || (k == 1 && class > 0) {
        return Err(Error::Usage(format!(
            "--class {class} but the model has {} classes",
            names.len()
        )));
    }
    let lo = x_row.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = x_row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let range = if run.preprocess.image_shape.is_some() {
        (hi - lo).max(1e-6) as f64
    } else {
        1.0
    };
    let target = [class];
    let mut completeness = None;
    let attributions = match &method {
        ExplainMethod::GradCam { layer } => {
            let Some(shape) = run.preprocess.image_shape else {
                return Err(Error::Usage(format!(
                    "Grad-CAM explains images; this {} run reads rows of features",
                    run.config.model
                )));
            };
            let layers = model.conv_layers();
            let layer = match layer {
                Some(l) => l.clone(),
                None => layers.last().cloned().ok_or_else(|| {
                    Error::Usage(format!(
                        "the {} model has no convolutional layers for Grad-CAM",
                        run.config.model
                    ))
                })?,
            };
            let (head, tail) = model
                .split_at(&layer)
                .map_err(|e| Error::Usage(format!("{}: {e}", run.config.model)))?;
            let standardise = standardiser(&run.preprocess, &run.device);
            let from_raw = |r: Tensor<2>| head(standardise(r));
            upsampled(grad_cam(&from_raw, &tail, x, &target, true)?, shape)
        }
        ExplainMethod::Rollout => {
            let (Network::Transformer(vit), Some(shape)) = (&model, run.preprocess.image_shape)
            else {
                return Err(Error::Usage(format!(
                    "attention rollout explains a ViT (a transformer on images); this is a {} run",
                    run.config.model
                )));
            };
            let TokenInput::Patches { patch_size, .. } = vit.input else {
                return Err(Error::Usage(format!(
                    "attention rollout explains a ViT; this {} run does not cut images into patches",
                    run.config.model
                )));
            };
            let (gh, gw) = (shape[1] / patch_size, shape[2] / patch_size);
            let standardise = standardiser(&run.preprocess, &run.device);
            let rolled = attention_rollout(&vit.attention_weights(standardise(x)))?;
            // The class token's row, over the patches (token 0 is the class token itself).
            let cls = rolled.narrow(1, 0, 1).narrow(2, 1, gh * gw);
            upsampled(cls.reshape([1, 1, gh, gw]), shape)
        }
        ExplainMethod::Saliency => to_vec(saliency(&forward, x, &target)?),
        ExplainMethod::SmoothGrad { samples, sigma } => to_vec(smoothgrad(
            &forward,
            x,
            &target,
            *samples,
            sigma * range,
            0,
        )?),
        ExplainMethod::IntegratedGradients { steps } => {
            let baseline = match (&run.preprocess.image_shape, &run.preprocess.standardizer) {
                (Some(_), _) | (None, None) => vec![lo.min(0.0); d],
                (None, Some(s)) => s.mean.clone(),
            };
            let baseline = Tensor::<2>::from_data(TensorData::new(baseline, [1, d]), &run.device);
            let ig = integrated_gradients(&forward, x, baseline, &target, *steps)?;
            completeness = Some(ig.relative_error());
            to_vec(ig.attributions)
        }
    };
    let mut written = Vec::new();
    let mut metrics = json!({
        "model": run.config.model,
        "input": input.display().to_string(),
        "row": row,
        "method": method.name(),
        "class": names.get(class).cloned().unwrap_or_default(),
        "predicted": names.get(predicted).cloned().unwrap_or_default(),
    });
    if let Some(e) = completeness {
        metrics["completeness_relative_error"] = json!(e);
    }
    match run.preprocess.image_shape {
        Some(shape) => {
            // Maps of where a layer looks (Grad-CAM, rollout) rarely reach zero: stretched
            // from their least value, as pytorch-grad-cam shows them.
            let stretch = matches!(
                method,
                ExplainMethod::GradCam { .. } | ExplainMethod::Rollout
            );
            save_png(&heat_map(&x_row, &attributions, shape, stretch)?, out)?;
            written.push(out.to_path_buf());
        }
        None => {
            let feature_names: Vec<String> = match &run.preprocess.table {
                Some(t) => t.feature_names(),
                None => (0..d).map(|j| format!("x{j}")).collect(),
            };
            let columns = per_column(&feature_names, &attributions);
            let mut csv = String::from("column,attribution\n");
            for (name, a) in &columns {
                let _ = writeln!(csv, "{name},{a:.6}");
            }
            let stem = out
                .file_stem()
                .map_or("heat".into(), |s| s.to_string_lossy());
            let csv_path = out.with_file_name(format!("{stem}_attributions.csv"));
            strata_train::write_atomic(&csv_path, csv.as_bytes())?;
            save_png(&bars(&columns)?, out)?;
            written.extend([out.to_path_buf(), csv_path]);
            metrics["columns"] = json!(columns);
        }
    }
    let check = completeness.map_or(String::new(), |e| {
        format!(
            "; attributions sum to f(x) - f(baseline) within {:.2}%",
            100.0 * e
        )
    });
    let of_class = match method {
        ExplainMethod::Rollout => ", the same for every class".to_string(),
        _ => format!(" of class {}", names.get(class).map_or("?", String::as_str)),
    };
    let summary = format!(
        "row {row} of {}: {}{of_class} (predicted {}){check}",
        input.display(),
        method.name(),
        names.get(predicted).map_or("?", String::as_str),
    );
    Ok(Explained {
        summary,
        attributions,
        class,
        completeness_error: completeness,
        metrics,
        written,
    })
}

/// A `[1, 1, h, w]` map resized to an image of `shape` (`[c, h, w]`) by bilinear interpolation
/// with half-pixel centres (Captum's `LayerAttribution.interpolate`, PyTorch's default), the
/// same map for every channel.
fn upsampled(map: Tensor<4>, shape: [usize; 3]) -> Vec<f32> {
    let up = to_vec(interpolate(
        map,
        InterpolateOptions::new(InterpolateMode::Bilinear)
            .with_align_corners(false)
            .with_output_size([shape[1], shape[2]]),
    ));
    (0..shape[0]).flat_map(|_| up.iter().copied()).collect()
}

/// Attributions summed per table column (one-hot `column=category` features added into their
/// column), largest magnitude first.
fn per_column(names: &[String], attributions: &[f32]) -> Vec<(String, f32)> {
    let mut columns: Vec<(String, f32)> = Vec::new();
    for (name, a) in names.iter().zip(attributions) {
        let column = name.split_once('=').map_or(name.as_str(), |(c, _)| c);
        match columns.iter_mut().find(|(c, _)| c == column) {
            Some((_, sum)) => *sum += a,
            None => columns.push((column.to_string(), *a)),
        }
    }
    columns.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    columns
}

/// The image in grey with the attributions' magnitude (summed over channels, scaled to the
/// largest, or from the least to the largest when `stretch`) over it in red, beside the heat
/// map alone; each pixel 8 screen pixels wide.
fn heat_map(
    image: &[f32],
    attributions: &[f32],
    shape: [usize; 3],
    stretch: bool,
) -> Result<RgbImage> {
    let [c, h, w] = shape;
    let plane = h * w;
    if image.len() != c * plane || attributions.len() != c * plane || plane == 0 {
        return Err(Error::Usage(format!(
            "{} values are not one {c}x{h}x{w} image",
            image.len()
        )));
    }
    let scale = (224 / h.max(w)).clamp(1, 16);
    let heat: Vec<f32> = (0..plane)
        .map(|p| (0..c).map(|ch| attributions[ch * plane + p].abs()).sum())
        .collect();
    let floor = if stretch {
        heat.iter().copied().fold(f32::INFINITY, f32::min)
    } else {
        0.0
    };
    let top = (heat.iter().copied().fold(0.0f32, f32::max) - floor).max(f32::MIN_POSITIVE);
    let grey: Vec<f32> = (0..plane)
        .map(|p| (0..c).map(|ch| image[ch * plane + p]).sum::<f32>() / c as f32)
        .collect();
    let (lo, hi) = grey
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let mut img = RgbImage::from_pixel(
        (2 * w * scale + 3) as u32,
        (h * scale + 2) as u32,
        Rgb([128, 128, 128]),
    );
    for y in 0..h * scale {
        for x in 0..w * scale {
            let p = (y / scale) * w + x / scale;
            let g = (grey[p] - lo) / span * 0.6;
            let t = (heat[p] - floor) / top;
            let blend =
                |base: f32, over: f32| ((base * (1.0 - t) + over * t) * 255.0).round() as u8;
            let over = Rgb([blend(g, 1.0), blend(g, 0.1), blend(g, 0.0)]);
            img.put_pixel((x + 1) as u32, (y + 1) as u32, over);
            let v = (t * 255.0).round() as u8;
            img.put_pixel(
                (w * scale + 2 + x) as u32,
                (y + 1) as u32,
                Rgb([v, v / 4, 0]),
            );
        }
    }
    Ok(img)
}

/// A horizontal bar per column, largest magnitude on top: positive attributions (towards the
/// class) to the right of the centre line in blue, negative to the left in orange.
fn bars(columns: &[(String, f32)]) -> Result<RgbImage> {
    if columns.is_empty() {
        return Err(Error::Usage("no columns to draw".into()));
    }
    let (width, bar, gap) = (480usize, 14usize, 4usize);
    let height = columns.len() * (bar + gap) + gap;
    let mut img = RgbImage::from_pixel(width as u32, height as u32, Rgb([255, 255, 255]));
    let top = columns
        .iter()
        .map(|(_, a)| a.abs())
        .fold(0.0f32, f32::max)
        .max(f32::MIN_POSITIVE);
    let mid = width / 2;
    for (i, (_, a)) in columns.iter().enumerate() {
        let len = ((a.abs() / top) * (mid - 10) as f32).round() as usize;
        let (x0, x1, colour) = if *a >= 0.0 {
            (mid, mid + len, PALETTE[0])
        } else {
            (mid - len, mid, PALETTE[1])
        };
        let y0 = gap + i * (bar + gap);
        for y in y0..y0 + bar {
            for x in x0..x1 {
                img.put_pixel(x as u32, y as u32, Rgb(colour));
            }
        }
    }
    for y in 0..height {
        img.put_pixel(mid as u32, y as u32, Rgb([128, 128, 128]));
    }
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_parse_by_name() {
        assert_eq!(
            ExplainMethod::parse("saliency").unwrap(),
            ExplainMethod::Saliency
        );
        assert_eq!(
            ExplainMethod::parse("gradcam").unwrap(),
            ExplainMethod::GradCam { layer: None }
        );
        assert_eq!(
            ExplainMethod::parse("rollout").unwrap(),
            ExplainMethod::Rollout
        );
        assert!(matches!(
            ExplainMethod::parse("ig").unwrap(),
            ExplainMethod::IntegratedGradients { steps: 50 }
        ));
        let e = ExplainMethod::parse("lime").unwrap_err().to_string();
        assert!(e.contains("`lime`") && e.contains("rollout"), "{e}");
    }

    proptest::proptest! {
        /// Any text gives a method or an error, never a panic.
        #[test]
        fn parsing_never_panics(text in ".{0,24}") {
            let _ = ExplainMethod::parse(&text);
        }
    }
}
