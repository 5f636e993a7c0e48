//! `strata predict`: predictions for a CSV of features.

use std::fmt::Write as _;

use std::path::Path;

use burn::module::Module;
use strata::arch::{Network, NetworkConfig, ResNetConfig, VggConfig};
use strata::data::{Table, read_feature_rows};
use strata::tensor::Backend;
use strata::train::{predict, probabilities, write_atomic};

use crate::args::PredictArgs;
use crate::commands::evaluate::load_run;
use crate::error::{Error, Result};
use crate::run_config::{is_resnet, is_vgg};
use crate::transfer::load_torch;

/// Runs `strata predict`.
///
/// # Errors
/// A bad run directory or input file.
pub fn run(args: &PredictArgs) -> Result<()> {
    let Some(dir) = &args.run else {
        return predict_weights(args);
    };
    if let Ok(pre) = crate::data_source::Preprocess::load(dir)
        && pre.vocab.is_some()
    {
        return Err(Error::Usage(format!(
            "{} is a language model: use `strata generate --run {}`",
            dir.display(),
            dir.display()
        )));
    }
    let run = load_run(dir, args.backend.as_deref())?;
    let pre = &run.preprocess;
    let (mut features, n) = match &pre.table {
        // A table with categorical columns: encoded by the schema fitted in training, its
        // columns found by name (the label column may be absent).
        Some(schema) => {
            let table = Table::load(&args.input)?;
            let f = schema.encode_features(&table)?;
            (f, table.rows.len())
        }
        None => read_feature_rows(&args.input, pre.n_features, &run.config.label)?,
    };
    if let Some(s) = &pre.standardizer {
        s.transform_rows(&mut features)?;
    }
    // A forecaster reads rows of `window` raw values, oldest first, scaled as in training.
    if let Some(s) = &pre.series {
        for v in &mut features {
            *v = s.scaler.scale(*v);
        }
    }
    let (outputs, k) = forward_rows(
        &run.model,
        features,
        pre.n_features,
        pre.image_shape,
        256,
        &run.device,
    )?;
    let mut csv = String::new();
    match &pre.class_names {
        Some(names) => {
            // One probability per class; a single (BCE) score gives two.
            let width = if k == 1 { 2 } else { k };
            if names.len() != width {
                return Err(Error::Usage(format!(
                    "{}: preprocess.json lists {} class names but the model scores {width} classes; the run directory is inconsistent",
                    dir.display(),
                    names.len()
                )));
            }
            let probs = probabilities(&outputs, k, &run.device);
            let header: Vec<String> = names.iter().map(|c| format!("p_{c}")).collect();
            let _ = writeln!(csv, "row,class,{}", header.join(","));
            for (i, row) in probs.chunks(width).enumerate() {
                let best = strata::metrics::argmax_rows(row, width)[0];
                let cells: Vec<String> = row.iter().map(|p| format!("{p:.6}")).collect();
                let _ = writeln!(csv, "{i},{},{}", names[best], cells.join(","));
            }
        }
        None => {
            let _ = writeln!(csv, "row,prediction");
            for (i, v) in outputs.chunks(k.max(1)).enumerate() {
                let value = pre.series.as_ref().map_or(v[0], |s| s.scaler.unscale(v[0]));
                let _ = writeln!(csv, "{i},{value}");
            }
        }
    }
    write_output(args, &csv, n, &dir.join("predictions.csv"))
}

/// Writes `csv` where `--output` says (`-`: standard output), else to `default`.
fn write_output(args: &PredictArgs, csv: &str, n: usize, default: &Path) -> Result<()> {
    match args.output.as_deref() {
        Some(p) if p.as_os_str() == "-" => print!("{csv}"),
        other => {
            let path = other.unwrap_or(default);
            write_atomic(path, csv.as_bytes()).map_err(Error::Train)?;
            println!("{n} predictions written to {}", path.display());
        }
    }
    Ok(())
}

/// `strata predict --model NAME --weights FILE --input x.npy`: torchvision-layout weights,
/// a float32 NCHW batch, one row of logits per image, in evaluation mode.
fn predict_weights(args: &PredictArgs) -> Result<()> {
    let (Some(name), Some(weights)) = (&args.model, &args.weights) else {
        return Err(Error::Usage(
            "give --run DIR, or --model NAME with --weights FILE".into(),
        ));
    };
    let (shape, values) = strata::data::read_npy_f32(&args.input)?;
    let &[n, c, h, w] = shape.as_slice() else {
        return Err(Error::Usage(format!(
            "{}: expected a batch of images [N, C, H, W], got shape {shape:?}",
            args.input.display()
        )));
    };
    if c != args.in_channels {
        return Err(Error::Usage(format!(
            "{}: {c} channels, but the model reads {} (--in-channels)",
            args.input.display(),
            args.in_channels
        )));
    }
    let net = if is_resnet(name) {
        NetworkConfig::ResNet {
            resnet: ResNetConfig::by_name(name, c, args.num_classes)?,
            name: name.clone(),
            height: h,
            width: w,
        }
    } else if is_vgg(name) {
        NetworkConfig::Vgg {
            vgg: VggConfig::by_name(name, c, args.num_classes)?,
            name: name.clone(),
            height: h,
            width: w,
        }
    } else {
        return Err(Error::Usage(format!(
            "--weights loads torchvision's layout: --model resnet18/34/50/101, resnet20/32/56 or vgg11/13/16/19[_bn], not `{name}`"
        )));
    };
    net.validate()?;
    let backend: Backend = match &args.backend {
        Some(b) => b.parse()?,
        None => Backend::from_env()?.unwrap_or_default(),
    };
    let device = backend.usable_device()?;
    let (model, report) = load_torch(net.init(&device)?, weights, false)?;
    let extra: Vec<&String> = report
        .unused
        .iter()
        .filter(|k| !k.ends_with("num_batches_tracked"))
        .collect();
    if !report.skipped.is_empty() || !extra.is_empty() {
        let skipped: Vec<String> = report
            .skipped
            .iter()
            .map(|s| format!("{} ({})", s.key, s.reason))
            .collect();
        return Err(Error::Usage(format!(
            "{} does not fit {name} with {} classes: not loaded: {}; in the file but not in the model: {:?} (is --num-classes right?)",
            weights.display(),
            args.num_classes,
            skipped.join(", "),
            extra
        )));
    }
    let (logits, k) = forward_rows(
        &model.valid(),
        values,
        c * h * w,
        Some([c, h, w]),
        64,
        &device,
    )?;
    let mut csv = String::new();
    let header: Vec<String> = (0..k).map(|j| format!("logit_{j}")).collect();
    let _ = writeln!(csv, "row,{}", header.join(","));
    for (i, row) in logits.chunks(k).enumerate() {
        // Rust prints the shortest decimal that reads back as the same f32.
        let cells: Vec<String> = row.iter().map(|v| format!("{v:?}")).collect();
        let _ = writeln!(csv, "{i},{}", cells.join(","));
    }
    write_output(args, &csv, n, &args.input.with_file_name("logits.csv"))
}

/// The outputs of `model` on `rows` of `n_features` values each (images when `image_shape`
/// is given), `batch` rows at a time, flattened, and the number of outputs per row.
fn forward_rows(
    model: &Network,
    rows: Vec<f32>,
    n_features: usize,
    image_shape: Option<[usize; 3]>,
    batch: usize,
    device: &burn::tensor::Device,
) -> Result<(Vec<f32>, usize)> {
    let n = rows.len() / n_features.max(1);
    let data = strata::data::Dataset::new(
        "input",
        rows,
        n_features,
        strata::data::Targets::Values(vec![0.0; n]),
        image_shape,
    )?;
    Ok(predict(
        model,
        &|m: &Network, x| m.forward_flat(x),
        &data,
        batch,
        device,
    ))
}
