//! Short recurrent learning runs on real data, through the library: LSTM forecasters beat the
//! seasonal-naive baseline on the airline and sunspot test periods, and a small character LSTM
//! trained by truncated back-propagation beats the best context-free predictor (the unigram
//! entropy of the training text). The long runs live in `cargo xtask accuracy`.

use burn::module::Module;
use burn::tensor::Device;
use strata::arch::{
    CellKind, CharLm, CharLmConfig, Network, NetworkConfig, RecurrentConfig, RecurrentState,
    SequenceHead, SequenceModelConfig,
};
use strata::data::{
    CharVocab, Series, Targets, TimeSplit, airline, contiguous_split, shakespeare, sunspots,
};
use strata::loss::LossConfig;
use strata::metrics::RegressionReport;
use strata::optim::{Clipping, OptimizerConfig, ScheduleConfig};
use strata::train::{EarlyStopping, Fit, FitConfig, Monitor, Run, Tbptt, fit, fit_tbptt, predict};

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Trains an LSTM forecaster and returns (test RMSE, seasonal-naive RMSE) in the series' units.
fn forecast(
    series: &Series,
    valid: usize,
    test: usize,
    window: usize,
    hidden: usize,
) -> (f64, f64) {
    let split = TimeSplit::last(series.values.len(), valid, test).unwrap();
    let scaler = series.scaler(&split).unwrap();
    let w = series.windows(&split, window, &scaler).unwrap();
    let device = Device::flex().autodiff();
    device.seed(7);
    let net = NetworkConfig::Recurrent(SequenceModelConfig::new(
        RecurrentConfig::new(CellKind::Lstm, 1, hidden),
        window,
        1,
        SequenceHead::Forecast { residual: true },
    ));
    let model = net.init(&device).unwrap();
    let loss = LossConfig::Mse.init(&device).unwrap();
    let optimizer = OptimizerConfig {
        lr: 0.005,
        clip: Some(Clipping::Norm(1.0)),
        ..Default::default()
    };
    let config = FitConfig {
        epochs: 300,
        batch_size: 16,
        seed: 7,
        early_stopping: Some(EarlyStopping {
            monitor: Monitor::ValidLoss,
            patience: 40,
            min_delta: 0.0,
        }),
        progress: false,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let out = fit(
        model,
        &w.train,
        &w.valid,
        &Fit {
            forward: |m: &Network, x| m.forward_flat(x),
            loss: loss.as_ref(),
            augment: None,
            run: Run {
                checkpoint_dir: Some(dir.path()),
                ..Run::new(
                    &optimizer,
                    &ScheduleConfig::default(),
                    &config,
                    device.clone(),
                )
            },
        },
    )
    .unwrap();
    let plain = Device::flex();
    let (pred, _) = predict(
        &out.model.valid(),
        &|m: &Network, x| m.forward_flat(x),
        &w.test,
        256,
        &plain,
    );
    let Targets::Values(y) = &w.test.targets else {
        unreachable!()
    };
    let truth: Vec<f32> = y.iter().map(|&v| scaler.unscale(v)).collect();
    let pred: Vec<f32> = pred.iter().map(|&v| scaler.unscale(v)).collect();
    let naive = series.seasonal_naive(&w.test_steps).unwrap();
    (
        RegressionReport::new(&truth, &pred).unwrap().rmse,
        RegressionReport::new(&truth, &naive).unwrap().rmse,
    )
}

#[test]
fn lstm_beats_seasonal_naive_on_airline_last_24_months() {
    let _g = serial();
    let (rmse, naive) = forecast(&airline(), 12, 24, 24, 64);
    eprintln!("airline: LSTM rmse {rmse:.2}, seasonal naive {naive:.2}");
    assert!(rmse < naive, "LSTM {rmse} vs seasonal naive {naive}");
}

#[test]
fn lstm_beats_seasonal_naive_on_sunspots_last_30_years() {
    let _g = serial();
    let (rmse, naive) = forecast(&sunspots(), 30, 30, 22, 32);
    eprintln!("sunspots: LSTM rmse {rmse:.2}, seasonal naive {naive:.2}");
    assert!(rmse < naive, "LSTM {rmse} vs seasonal naive {naive}");
}

/// Entropy in nats of the character frequencies of `tokens`.
fn unigram_entropy(tokens: &[usize], vocab: usize) -> f64 {
    let mut counts = vec![0usize; vocab];
    for &t in tokens {
        counts[t] += 1;
    }
    let n = tokens.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.ln()
        })
        .sum()
}

#[test]
fn a_char_lstm_learns_more_than_character_frequencies() {
    let _g = serial();
    let text: String = shakespeare().chars().take(400_000).collect();
    let vocab = CharVocab::from_text(&text);
    let ids = vocab.encode(&text).unwrap();
    let split = contiguous_split(&ids, 0.05, 0.05).unwrap();
    let h0 = unigram_entropy(&split.train, vocab.len());
    let device = Device::flex().autodiff();
    device.seed(3);
    let model = CharLmConfig::new(vocab.len(), RecurrentConfig::new(CellKind::Lstm, 32, 128))
        .init(&device)
        .unwrap();
    let optimizer = OptimizerConfig {
        lr: 0.005,
        clip: Some(Clipping::Norm(5.0)),
        ..Default::default()
    };
    let config = FitConfig {
        epochs: 3,
        batch_size: 32,
        seed: 3,
        progress: false,
        ..Default::default()
    };
    let out = fit_tbptt(
        model,
        &split.train,
        &split.valid,
        &Tbptt {
            forward: |m: &CharLm, x, s| m.forward(x, s),
            detach: RecurrentState::detach,
            run: Run::new(&optimizer, &ScheduleConfig::default(), &config, device),
            seq_len: 50,
            eval_chunk: strata::train::EVAL_CHUNK,
            steps_per_epoch: Some(60),
        },
    )
    .unwrap();
    let losses: Vec<f64> = out.history.iter().map(|r| r.valid_loss).collect();
    eprintln!("char LSTM valid nats per epoch {losses:?}; unigram entropy {h0:.3}");
    assert!(losses.windows(2).all(|w| w[1] < w[0]), "{losses:?}");
    // 180 steps: well below what character frequencies alone achieve.
    let last = *losses.last().unwrap();
    assert!(last < h0 - 0.4, "valid {last} vs unigram entropy {h0}");
}
