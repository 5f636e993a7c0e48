//! Fairness of a classifier run's test decisions by group (`--sensitive COL[,COL]`): for each
//! categorical column of a table, [`strata_metrics::group_fairness`] of the test split, as a
//! `fairness` block of `metrics.json`, `fairness_COL.csv` (a row per group) and
//! `fairness_COL.png` (each group's selection rate, true and false positive rates as bars).
//!
//! Reweighing (`--reweigh COL`, [`reweighed_loss`]) trains with each sample's cross-entropy
//! weighted by [`strata_metrics::reweighing`] of its group and class.
//!
//! The decisions are the predicted classes; the positive ("good") outcome is the second class
//! in sorted order (Adult's `>50K`), and its probability is the softmax of the outputs (the
//! sigmoid of a single output).

use std::fmt::Write as _;
use std::path::Path;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use image::{Rgb, RgbImage};
use serde_json::{Map, Value, json};
use strata_arch::Network;
use strata_data::{Dataset, TableSchema};
use strata_loss::LossConfig;
use strata_metrics::{Fairness, FairnessConstraint, GroupThresholds, group_fairness, reweighing};
use strata_tensor::TargetBatch;
use strata_tensor::convert::to_vec;
use strata_train::probabilities;

use crate::data::{Prepared, Preprocess};
use crate::error::{Error, Result};
use crate::pictures::{PALETTE, draw_text, save_png, text_width};

/// The table schema and the two classes a `--sensitive` (or `--reweigh`: `flag`) run needs,
/// checked before training:
/// a classifier of two classes on a table whose categorical columns include every one named,
/// each with at least two groups among `data`'s rows (encoded as `pre` says, standardised or
/// not).
///
/// # Errors
/// Data that are not a table, more or fewer than two classes, a column the table lacks or a
/// numeric one (the message lists the categorical columns), a column named twice, a column
/// whose rows hold one group.
pub(crate) fn check<'a>(
    flag: &str,
    columns: &[String],
    data: &Dataset,
    pre: &'a Preprocess,
) -> Result<&'a TableSchema> {
    let Some(schema) = &pre.table else {
        return Err(Error::Usage(format!(
            "{flag} names columns of a table (adult, table:PATH); `{}` is not one",
            data.name
        )));
    };
    let classes = schema.classes.len();
    if classes != 2 {
        return Err(Error::Usage(format!(
            "{flag} compares binary decisions; this table has {classes} classes"
        )));
    }
    for (i, c) in columns.iter().enumerate() {
        if columns[..i].contains(c) {
            return Err(Error::Usage(format!("{flag} names `{c}` twice")));
        }
        let (names, index) = schema
            .categories_of(&data.features, c)
            .map_err(|e| Error::Usage(format!("{flag}: {e}")))?;
        let mut seen = vec![false; names.len()];
        for &g in &index {
            seen[g] = true;
        }
        if let [only] = names
            .iter()
            .zip(&seen)
            .filter(|(_, s)| **s)
            .map(|(n, _)| n)
            .collect::<Vec<_>>()[..]
        {
            return Err(Error::Usage(format!(
                "{flag} {c}: every {} row of `{}` is in one group, `{only}`: fairness compares groups",
                data.len(),
                data.name
            )));
        }
    }
    Ok(schema)
}

/// The `fairness` block of `outputs` (the model's raw outputs on `test`, row-major) by each
/// of `columns`, their tables and charts written into `out`; `device` turns the outputs into
/// probabilities.
///
/// # Errors
/// As [`check`]; a column whose test rows hold a single group; I/O errors.
pub(crate) fn report(
    columns: &[String],
    test: &Dataset,
    pre: &Preprocess,
    outputs: &[f32],
    out: &Path,
    device: &Device,
) -> Result<Value> {
    let schema = check("--sensitive", columns, test, pre)?;
    let labels = test
        .labels()
        .ok_or_else(|| Error::Usage("--sensitive needs class labels".into()))?;
    let k = outputs.len() / test.len().max(1);
    if k == 0 || outputs.len() != k * test.len() {
        return Err(Error::Usage(format!(
            "{} outputs for {} test rows",
            outputs.len(),
            test.len()
        )));
    }
    let (scores, y_pred) = decisions(outputs, k, device);
    let y_true: Vec<bool> = labels.iter().map(|&l| l == 1).collect();
    let mut block = Map::new();
    for column in columns {
        // Category codes are not standardised: the test rows hold them as encoded.
        let (names, group) = schema.categories_of(&test.features, column)?;
        let f = group_fairness(&y_true, &y_pred, &group, &names, Some(&scores))
            .map_err(|e| Error::Usage(format!("--sensitive {column}: {e}")))?;
        let csv = out.join(format!("fairness_{column}.csv"));
        strata_train::write_atomic(&csv, table(&f).as_bytes())?;
        let png = out.join(format!("fairness_{column}.png"));
        save_png(&chart(column, &schema.classes[1], &f)?, &png)?;
        block.insert(
            column.clone(),
            serde_json::to_value(&f).map_err(|e| Error::Usage(e.to_string()))?,
        );
    }
    Ok(json!({
        "positive_class": schema.classes[1],
        "columns": block,
    }))
}

/// The positive class's probability (softmax over two outputs, sigmoid of one) and the
/// model's decision for each row of `outputs` (`k` per row).
pub(crate) fn decisions(outputs: &[f32], k: usize, device: &Device) -> (Vec<f64>, Vec<bool>) {
    let scores: Vec<f64> = probabilities(outputs, k, device)
        .chunks(2)
        .map(|p| f64::from(p[1]))
        .collect();
    let y_pred: Vec<bool> = match k {
        1 => scores.iter().map(|&p| p > 0.5).collect(),
        _ => strata_metrics::argmax_rows(outputs, k)
            .iter()
            .map(|&c| c == 1)
            .collect(),
    };
    (scores, y_pred)
}

/// Per-group thresholds for `constraint` on `column`'s groups, fitted on `fit` (the
/// validation rows and the model's outputs on them) and applied to `test` with decisions
/// drawn from `seed`: the `thresholds` block (the rules by group name, the accuracy and the
/// fairness figures of the new decisions), with `fairness_COL_thresholded.csv` and `.png`
/// written into `out`.
///
/// # Errors
/// A group of the fitting rows without both outcomes, or absent from them while the test
/// rows hold it; as [`report`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn thresholded(
    column: &str,
    constraint: FairnessConstraint,
    fit: (&Dataset, &[f32]),
    test: (&Dataset, &[f32]),
    pre: &Preprocess,
    seed: u64,
    out: &Path,
    device: &Device,
) -> Result<Value> {
    let columns = [column.to_string()];
    let schema = check("--sensitive", &columns, test.0, pre)?;
    let side = |(data, outputs): (&Dataset, &[f32])| -> Result<_> {
        let labels = data
            .labels()
            .ok_or_else(|| Error::Usage("--thresholds needs class labels".into()))?;
        let k = outputs.len() / data.len().max(1);
        let (scores, _) = decisions(outputs, k, device);
        let y: Vec<bool> = labels.iter().map(|&l| l == 1).collect();
        let (names, group) = schema.categories_of(&data.features, column)?;
        Ok((scores, y, names, group))
    };
    let (fit_scores, fit_y, names, fit_group) = side(fit)?;
    let (scores, y_true, _, group) = side(test)?;
    // A group absent from the validation split gets no rule: named if the test rows hold it.
    let mut in_fit = vec![false; names.len()];
    for &g in &fit_group {
        in_fit[g] = true;
    }
    if let Some(&g) = group.iter().find(|&&g| !in_fit[g]) {
        return Err(Error::Usage(format!(
            "--thresholds: the validation split has no `{}` row of {column} to fit its threshold on",
            names[g]
        )));
    }
    let rules = GroupThresholds::fit(&fit_y, &fit_scores, &fit_group, names.len(), constraint)
        .map_err(|e| {
            Error::Usage(format!(
                "--thresholds on {column}'s groups in the validation split ({} rows): {e}",
                fit.0.len()
            ))
        })?;
    let y_pred = rules.decide(&scores, &group, seed)?;
    let f = group_fairness(&y_true, &y_pred, &group, &names, None)
        .map_err(|e| Error::Usage(format!("--thresholds {column}: {e}")))?;
    strata_train::write_atomic(
        &out.join(format!("fairness_{column}_thresholded.csv")),
        table(&f).as_bytes(),
    )?;
    save_png(
        &chart(
            &format!("{column}, {} thresholds", constraint.name()),
            &schema.classes[1],
            &f,
        )?,
        &out.join(format!("fairness_{column}_thresholded.png")),
    )?;
    let by_group: Map<String, Value> = names
        .iter()
        .zip(&rules.rules)
        .map(|(n, r)| {
            Ok((
                n.clone(),
                serde_json::to_value(r).map_err(|e| Error::Usage(e.to_string()))?,
            ))
        })
        .collect::<Result<_>>()?;
    Ok(json!({
        "column": column,
        "constraint": constraint.name(),
        "fitted_on": format!("validation split ({} rows)", fit.0.len()),
        "seed": seed,
        "operating_point": { "x": rules.x, "y": rules.y },
        "rules": by_group,
        "accuracy": f.overall.accuracy,
        "fairness": f,
    }))
}

/// A row per group, then the overall figures.
fn table(f: &Fairness) -> String {
    let mut s = String::from(
        "group,count,accuracy,selection_rate,true_positive_rate,false_positive_rate,precision,calibration_error\n",
    );
    for g in f.groups.iter().chain([&f.overall]) {
        let _ = writeln!(
            s,
            "{},{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6}",
            g.group.replace(',', ";"),
            g.count,
            g.accuracy,
            g.selection_rate,
            g.true_positive_rate,
            g.false_positive_rate,
            g.precision,
            g.calibration_error.unwrap_or(f64::NAN)
        );
    }
    s
}

/// Each group's selection rate, true positive rate and false positive rate as three bars
/// (0 to 1), the group's name below, a legend and the column's gaps above.
fn chart(column: &str, positive: &str, f: &Fairness) -> Result<RgbImage> {
    let groups = &f.groups;
    let slot = 3 * 18 + 24;
    let (left, top, plot_h) = (48i64, 56i64, 200i64);
    let w = (left + slot * groups.len() as i64 + 16).max(420);
    let h = top + plot_h + 40;
    let mut img = RgbImage::from_pixel(w as u32, h as u32, Rgb([255, 255, 255]));
    let ink = [40, 40, 40];
    draw_text(
        &mut img,
        &format!("{column}: decisions for {positive} by group"),
        8,
        6,
        ink,
    );
    draw_text(
        &mut img,
        &format!(
            "parity gap {:.3}  odds gap {:.3}",
            f.demographic_parity_difference, f.equalized_odds_difference
        ),
        8,
        20,
        ink,
    );
    let legend = ["selection", "TPR", "FPR"];
    let mut x = 8;
    for (i, name) in legend.iter().enumerate() {
        fill(&mut img, x, 36, x + 8, 44, PALETTE[i]);
        draw_text(&mut img, name, x + 12, 36, ink);
        x += 12 + text_width(name) + 16;
    }
    let y_of = |v: f64| top + plot_h - (v.clamp(0.0, 1.0) * plot_h as f64).round() as i64;
    for q in 0..=4 {
        let v = q as f64 / 4.0;
        let y = y_of(v);
        fill(&mut img, left, y, w - 8, y, [225, 225, 225]);
        let label = match q {
            0 => "0".to_string(),
            4 => "1".to_string(),
            _ => format!("{v}"),
        };
        draw_text(&mut img, &label, left - 6 - text_width(&label), y - 4, ink);
    }
    for (i, g) in groups.iter().enumerate() {
        let x0 = left + 12 + slot * i as i64;
        for (b, v) in [
            g.selection_rate,
            g.true_positive_rate,
            g.false_positive_rate,
        ]
        .into_iter()
        .enumerate()
        {
            let x = x0 + 18 * b as i64;
            fill(&mut img, x, y_of(v), x + 14, top + plot_h, PALETTE[b]);
        }
        // The name, cut to the slot.
        let room = ((slot - 4) / 8) as usize;
        let name: String = g.group.chars().take(room).collect();
        draw_text(&mut img, &name, x0, top + plot_h + 8, ink);
    }
    Ok(img)
}

/// Fills the rectangle `[x0, x1] x [y0, y1]` (clipped to the image).
fn fill(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, colour: [u8; 3]) {
    let (w, h) = (i64::from(img.width()), i64::from(img.height()));
    for y in y0.max(0)..=y1.min(h - 1) {
        for x in x0.max(0)..=x1.min(w - 1) {
            img.put_pixel(x as u32, y as u32, Rgb(colour));
        }
    }
}

/// The table schema of a `--reweigh COLUMN` run, checked before training: the column as
/// [`check`] wants it, and plain cross-entropy.
///
/// # Errors
/// As [`check`]; a loss other than plain cross-entropy (no class weights, no label
/// smoothing), whose per-sample values reweighing cannot weigh.
pub(crate) fn check_reweigh<'a>(
    column: &str,
    prepared: &'a Prepared,
    loss: &LossConfig,
) -> Result<&'a TableSchema> {
    let schema = check(
        "--reweigh",
        std::slice::from_ref(&column.to_string()),
        &prepared.train,
        &prepared.preprocess,
    )?;
    if !matches!(loss, LossConfig::CrossEntropy { weights: None, smoothing } if *smoothing == 0.0) {
        return Err(Error::Usage(
            "--reweigh weighs plain cross-entropy: drop --class-weights, label smoothing or another loss".into(),
        ));
    }
    Ok(schema)
}

/// The training loss of `--reweigh COLUMN`: the mean over the batch of each sample's
/// cross-entropy times its reweighing weight, from its group (read back from its standardised
/// features) and its class; weights from the whole training split.
///
/// # Errors
/// As [`check`] for the column; a loss other than plain cross-entropy (no class weights, no
/// label smoothing), whose per-sample values this cannot weigh.
pub(crate) fn reweighed_loss<'a>(
    column: &'a str,
    prepared: &'a Prepared,
    loss: &LossConfig,
) -> Result<impl Fn(&Network, Tensor<2>, &TargetBatch) -> strata_train::Result<Tensor<1>> + 'a> {
    let train = &prepared.train;
    let schema = check_reweigh(column, prepared, loss)?;
    let labels = train
        .labels()
        .ok_or_else(|| Error::Usage("--reweigh needs class labels".into()))?;
    let (names, group) = schema.categories_of(&train.features, column)?;
    let w = reweighing(&group, labels, names.len(), schema.classes.len())?;
    // One weight per (group, class), looked up per batch row.
    let mut table = vec![0f32; names.len() * schema.classes.len()];
    for ((&g, &y), &v) in group.iter().zip(labels).zip(&w) {
        table[g * schema.classes.len() + y] = v as f32;
    }
    let k = schema.classes.len();
    Ok(move |m: &Network, x: Tensor<2>, targets: &TargetBatch| {
        let TargetBatch::Classes(y) = targets else {
            return Err(strata_train::Error::Invalid(
                "reweighing needs class labels".into(),
            ));
        };
        let n = x.dims()[0];
        let (_, g) = schema
            .categories_of(&to_vec(x.clone().inner()), column)
            .map_err(|e| strata_train::Error::Invalid(e.to_string()))?;
        let classes: Vec<i64> = y.clone().into_data().iter::<i64>().collect();
        let weights: Vec<f32> = g
            .iter()
            .zip(&classes)
            .map(|(&g, &c)| table[g * k + (c.max(0) as usize).min(k - 1)])
            .collect();
        let weights = Tensor::<2>::from_data(TensorData::new(weights, [n, 1]), &x.device());
        let log_p = log_softmax(m.forward_flat(x), 1);
        let nll = log_p.gather(1, y.clone().reshape([n, 1])).neg();
        Ok((nll * weights).mean())
    })
}
