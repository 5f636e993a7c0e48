//! Forecasting runs: a series split by time, windows scaled with the training period's
//! statistics, a one-step-ahead model, and test metrics in the series' own units beside the
//! seasonal-naive baseline.

use burn::module::Module;
use burn::tensor::Device;
use serde_json::{Value, json};
use strata_arch::Network;
use strata_data::{Dataset, SeriesSource, Targets, TimeSplit};
use strata_metrics::RegressionReport;
use strata_train::predict;

use crate::config::RunConfig;
use crate::data::{Prepared, Preprocess, SeriesPrep};
use crate::error::{Error, Result};
use crate::family::{Family, network_config};
use crate::pipeline::supervised::{fit_loss_to_task, train_once};
use crate::pipeline::{Context, RunResult};
use crate::run_dir::{run_line, run_summary, save_safetensors, write_history, write_metrics};

/// The windows of a series run, preprocessed as the run's `preprocess.json` says.
///
/// # Errors
/// A window too long for the series, or a split that does not fit.
pub fn prepare_series(config: &RunConfig, src: &SeriesSource) -> Result<Prepared> {
    let series = &src.series;
    let window = match config.network.seq_len {
        0 => series.season + 1,
        w => w,
    };
    let split = TimeSplit::last(series.values.len(), src.valid, src.test)?;
    let scaler = series.scaler(&split)?;
    let w = series.windows(&split, window, &scaler)?;
    let preprocess = Preprocess {
        n_features: window,
        image_shape: None,
        class_names: None,
        standardizer: None,
        series: Some(SeriesPrep {
            split,
            scaler,
            window,
        }),
        vocab: None,
        table: None,
    };
    Ok(Prepared {
        train: w.train,
        valid: w.valid,
        test: w.test,
        preprocess,
    })
}

/// Test metrics of a forecaster in the series' units: RMSE, MAE and R² of the one-step-ahead
/// forecasts of each test step, and the seasonal-naive baseline's RMSE and MAE on the same
/// steps.
///
/// # Errors
/// A test period with no value one season back.
pub fn forecast_metrics(
    model: &Network,
    src: &SeriesSource,
    prep: &Prepared,
    device: &Device,
) -> Result<Value> {
    let s = prep
        .preprocess
        .series
        .as_ref()
        .ok_or_else(|| Error::Usage("not a forecasting run".into()))?;
    let metrics = |data: &Dataset, first_step: usize| -> Result<Value> {
        let (out, _) = predict(
            model,
            &|m: &Network, x| m.forward_flat(x),
            data,
            256,
            device,
        );
        let Targets::Values(y) = &data.targets else {
            return Err(Error::Usage("forecast targets are values".into()));
        };
        let truth: Vec<f32> = y.iter().map(|&v| s.scaler.unscale(v)).collect();
        let pred: Vec<f32> = out.iter().map(|&v| s.scaler.unscale(v)).collect();
        let steps: Vec<usize> = (first_step..first_step + truth.len()).collect();
        let naive = src.series.seasonal_naive(&steps)?;
        let r = RegressionReport::new(&truth, &pred)?;
        let b = RegressionReport::new(&truth, &naive)?;
        Ok(json!({
            "rmse": r.rmse,
            "mae": r.mae,
            "r2": r.r2,
            "baseline_rmse": b.rmse,
            "baseline_mae": b.mae,
            "baseline": format!("seasonal naive (value {} steps earlier)", src.series.season),
            "unit": src.series.unit,
            "n_samples": truth.len(),
            "period": [
                src.series.times[first_step].clone(),
                src.series.times[first_step + truth.len() - 1].clone(),
            ],
        }))
    };
    let first_test = s.split.valid_end.max(s.window);
    let first_valid = s.split.train_end.max(s.window);
    let mut test = metrics(&prep.test, first_test)?;
    if let Network::Recurrent(m) = model {
        test["multi_step"] = multi_step(m, src, s, device)?;
    }
    Ok(json!({
        "test": test,
        "valid": metrics(&prep.valid, first_valid)?,
    }))
}

/// The whole test period forecast at once from its start, each forecast fed back as input (the
/// recursive strategy), beside the multi-step seasonal-naive forecast from the same origin.
fn multi_step(
    m: &strata_arch::SequenceModel,
    src: &SeriesSource,
    s: &SeriesPrep,
    device: &Device,
) -> Result<Value> {
    let series = &src.series;
    let origin = s.split.valid_end;
    let horizon = series.values.len() - origin;
    let history: Vec<f32> = series.values[..origin]
        .iter()
        .map(|&v| s.scaler.scale(v))
        .collect();
    let pred: Vec<f32> = m
        .forecast(&history, horizon, device)?
        .into_iter()
        .map(|v| s.scaler.unscale(v))
        .collect();
    let truth = &series.values[origin..];
    let naive = series.seasonal_naive_from(origin, horizon)?;
    Ok(json!({
        "horizon": horizon,
        "rmse": RegressionReport::new(truth, &pred)?.rmse,
        "baseline_rmse": RegressionReport::new(truth, &naive)?.rmse,
    }))
}

/// Trains `family`'s forecaster on a series and writes the run directory.
///
/// # Errors
/// A model that does not forecast, invalid settings, data errors, training and I/O failures.
pub(crate) fn train<F: Family + ?Sized>(
    family: &F,
    ctx: &Context<'_>,
    src: &SeriesSource,
) -> Result<RunResult> {
    let (device, out) = (&ctx.device, ctx.out);
    let mut config = ctx.config.clone();
    // Fail before writing anything: a model that does not forecast (its family says why).
    family.check_series(&config)?;
    let prepared = prepare_series(&config, src)?;
    fit_loss_to_task(&mut config, &prepared.train)?;
    network_config(&config, &prepared.preprocess, 1)?;
    ctx.open_run_dir(&config, Some(&prepared.preprocess))?;
    let window = prepared.preprocess.n_features;
    ctx.progress.note(&format!(
        "forecasting {} with {} (window {window}): {} train / {} valid / {} test windows, {} on {}",
        config.dataset,
        config.model,
        prepared.train.len(),
        prepared.valid.len(),
        prepared.test.len(),
        config.optimizer.kind.name(),
        config.backend
    ));
    let (outcome, _) = train_once(
        ctx,
        &config,
        &prepared,
        &out.join("checkpoints"),
        ctx.resume,
    )?;
    if !write_history(&config, out, "rmse", &outcome)? {
        return Ok(RunResult::paused(out, outcome.epochs_run));
    }
    let model = outcome.model.valid();
    save_safetensors(&model, &out.join("model.safetensors"))?;
    let m = forecast_metrics(&model, src, &prepared, device)?;
    let test = &m["test"];
    let mut metrics = run_summary(&config, &outcome);
    metrics["window"] = json!(window);
    metrics["test"] = m["test"].clone();
    metrics["valid"] = m["valid"].clone();
    write_metrics(out, &metrics)?;
    let summary = format!(
        "test rmse {:.3}  mae {:.3}  r2 {:.4}  (seasonal naive rmse {:.3}) {} — {}",
        test["rmse"].as_f64().unwrap_or(f64::NAN),
        test["mae"].as_f64().unwrap_or(f64::NAN),
        test["r2"].as_f64().unwrap_or(f64::NAN),
        test["baseline_rmse"].as_f64().unwrap_or(f64::NAN),
        src.series.unit,
        run_line(&config, &outcome)
    );
    Ok(RunResult::finished(out, &outcome, metrics, summary))
}
