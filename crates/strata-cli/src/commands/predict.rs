//! `strata predict`: predictions for a CSV of features.

use std::fmt::Write as _;

use strata::arch::Network;
use strata::data::{Table, read_feature_rows};
use strata::train::{predict, probabilities, write_atomic};

use crate::args::PredictArgs;
use crate::commands::evaluate::load_run;
use crate::error::{Error, Result};

/// Runs `strata predict`.
///
/// # Errors
/// A bad run directory or input file.
pub fn run(args: &PredictArgs) -> Result<()> {
    if let Ok(pre) = crate::data_source::Preprocess::load(&args.run)
        && pre.vocab.is_some()
    {
        return Err(Error::Usage(format!(
            "{} is a language model: use `strata generate --run {}`",
            args.run.display(),
            args.run.display()
        )));
    }
    let run = load_run(&args.run, args.backend.as_deref())?;
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
    let data = strata::data::Dataset::new(
        "input",
        features,
        pre.n_features,
        strata::data::Targets::Values(vec![0.0; n]),
        pre.image_shape,
    )?;
    let (outputs, k) = predict(
        &run.model,
        &|m: &Network, x| m.forward_flat(x),
        &data,
        256,
        &run.device,
    );
    let mut csv = String::new();
    match &pre.class_names {
        Some(names) => {
            let probs = probabilities(&outputs, k, &run.device);
            let width = probs.len() / n;
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
    match args.output.as_deref() {
        Some(p) if p.as_os_str() == "-" => print!("{csv}"),
        other => {
            let path = other
                .map(|p| p.to_path_buf())
                .unwrap_or_else(|| args.run.join("predictions.csv"));
            write_atomic(&path, csv.as_bytes()).map_err(Error::Train)?;
            println!("{n} predictions written to {}", path.display());
        }
    }
    Ok(())
}
