//! `strata predict`: a run's predictions for a CSV of features ([`strata::run::predict_file`]:
//! classes, values, or an autoencoder's anomaly scores), or
//! PyTorch weights' logits for a batch of images ([`strata::run::torch_logits`]).

use std::fmt::Write as _;

use strata::run::{Error, Result, TorchWeights, predict_file, torch_logits};

use crate::args::PredictArgs;

/// Runs `strata predict`.
///
/// # Errors
/// A bad run directory or input file.
pub fn run(args: &PredictArgs) -> Result<()> {
    let Some(dir) = &args.run else {
        return predict_weights(args);
    };
    let predictions = predict_file(
        dir,
        args.backend.as_deref(),
        &args.input,
        args.class.as_deref(),
    )?;
    super::write_csv(
        args.output.as_deref(),
        &predictions.to_csv(),
        &format!("{} predictions", predictions.len()),
        &dir.join("predictions.csv"),
    )
}

/// `strata predict --model NAME --weights FILE --input x.npy`: torchvision-layout weights,
/// a float32 NCHW batch, one row of logits per image, in evaluation mode.
fn predict_weights(args: &PredictArgs) -> Result<()> {
    let (Some(model), Some(path)) = (&args.model, &args.weights) else {
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
    let weights = TorchWeights {
        model,
        path,
        num_classes: args.num_classes,
        in_channels: args.in_channels,
        backend: args.backend.as_deref(),
    };
    let input = args.input.display().to_string();
    let (logits, k) = torch_logits(&weights, &input, [n, c, h, w], values)?;
    let mut csv = String::new();
    let header: Vec<String> = (0..k).map(|j| format!("logit_{j}")).collect();
    let _ = writeln!(csv, "row,{}", header.join(","));
    for (i, row) in logits.chunks(k).enumerate() {
        // Rust prints the shortest decimal that reads back as the same f32.
        let cells: Vec<String> = row.iter().map(|v| format!("{v:?}")).collect();
        let _ = writeln!(csv, "{i},{}", cells.join(","));
    }
    super::write_csv(
        args.output.as_deref(),
        &csv,
        &format!("{n} predictions"),
        &args.input.with_file_name("logits.csv"),
    )
}
