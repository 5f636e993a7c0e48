//! Short learning runs on real data with accuracy bars, resume equivalence, early stopping and
//! divergence handling. (The long runs live in `cargo xtask accuracy`.)

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use strata::arch::{CnnConfig, Mlp, MlpConfig, Network, NetworkConfig};
use strata::data::{Dataset, Standardizer, digits, iris, stratified_split};
use strata::loss::{Loss, LossConfig};
use strata::optim::{OptimizerConfig, ScheduleConfig};
use strata::tensor::TargetBatch;
use strata::train::{
    EarlyStopping, Error, Fit, FitConfig, FitOutcome, Monitor, Report, Run, evaluate, fit,
};

/// burn seeds one random generator per backend for the whole process, so tests that depend
/// on the seed (weight init, dropout) must not draw from it concurrently: each takes this lock.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

struct Split {
    train: Dataset,
    valid: Dataset,
    test: Dataset,
}

fn split(data: Dataset, standardize: bool, seed: u64) -> Split {
    let s = stratified_split(&data.strata(), 0.15, 0.2, seed).unwrap();
    let (mut train, mut valid, mut test) = (
        data.subset(&s.train),
        data.subset(&s.valid),
        data.subset(&s.test),
    );
    if standardize {
        let st = Standardizer::fit(&train).unwrap();
        for d in [&mut train, &mut valid, &mut test] {
            st.transform(d).unwrap();
        }
    }
    Split { train, valid, test }
}

#[allow(clippy::too_many_arguments)]
fn run(
    net: &NetworkConfig,
    s: &Split,
    config: &FitConfig,
    optimizer: &OptimizerConfig,
    loss: &dyn Loss,
    dir: Option<&Path>,
    resume: bool,
    pause_after: Option<usize>,
) -> Result<FitOutcome<Network>, Error> {
    let device = Device::flex().autodiff();
    device.seed(config.seed);
    let model = net.init(&device).unwrap();
    fit(
        model,
        &s.train,
        &s.valid,
        &Fit {
            forward: |m: &Network, x| m.forward_flat(x),
            loss,
            augment: None,
            run: Run {
                optimizer,
                schedule: &ScheduleConfig::by_name("cosine").unwrap(),
                config,
                device,
                checkpoint_dir: dir,
                resume,
                pause_after,
                fine_tune: None,
                progress: None,
                per_player: &[],
                collective: None,
            },
        },
    )
}

fn test_accuracy(model: &Network, s: &Split) -> (f64, f64) {
    let d = Device::flex();
    let loss = LossConfig::default().init(&d).unwrap();
    let ev = evaluate(
        &model.valid(),
        &|m: &Network, x| m.forward_flat(x),
        loss.as_ref(),
        &s.test,
        256,
        &d,
    )
    .unwrap();
    match ev.report {
        Report::Classification(r) => (r.accuracy, ev.loss),
        Report::Regression(_) => unreachable!(),
    }
}

fn quiet(epochs: usize, batch_size: usize) -> FitConfig {
    FitConfig {
        epochs,
        batch_size,
        seed: 3,
        progress: false,
        ..Default::default()
    }
}

#[test]
fn mlp_learns_iris() {
    let _guard = serial();
    let s = split(iris(), true, 1);
    let net = NetworkConfig::Mlp(MlpConfig::new(4, 3).with_d_hidden(vec![32]));
    let opt = OptimizerConfig {
        lr: 0.01,
        ..Default::default()
    };
    let loss = LossConfig::default().init(&Device::flex()).unwrap();
    let out = run(
        &net,
        &s,
        &quiet(60, 16),
        &opt,
        loss.as_ref(),
        None,
        false,
        None,
    )
    .unwrap();
    let (acc, _) = test_accuracy(&out.model, &s);
    eprintln!("iris MLP test accuracy {acc:.4}");
    assert!(acc >= 0.9, "iris test accuracy {acc}");
}

#[test]
fn cnn_learns_digits_in_a_few_epochs() {
    let _guard = serial();
    let s = split(digits(), false, 2);
    let net = NetworkConfig::Cnn(CnnConfig::new(1, 8, 8, 10));
    let loss = LossConfig::default().init(&Device::flex()).unwrap();
    let out = run(
        &net,
        &s,
        &quiet(8, 32),
        &OptimizerConfig::default(),
        loss.as_ref(),
        None,
        false,
        None,
    )
    .unwrap();
    let (acc, _) = test_accuracy(&out.model, &s);
    eprintln!("digits CNN test accuracy after 8 epochs {acc:.4}");
    assert!(acc >= 0.95, "digits test accuracy {acc}");
    assert!(out.history.last().unwrap().train_loss < out.history[0].train_loss);
}

#[test]
fn resumed_run_matches_uninterrupted_run() {
    let _guard = serial();
    let s = split(digits(), false, 4);
    // Dropout and batch norm on, so the random generator and running statistics both matter.
    let net = NetworkConfig::Mlp(
        MlpConfig::new(64, 10)
            .with_d_hidden(vec![64])
            .with_dropout(0.3)
            .with_batch_norm(true),
    );
    let loss = LossConfig::default().init(&Device::flex()).unwrap();
    let config = quiet(6, 32);
    let opt = OptimizerConfig::default();
    let a = tempfile::tempdir().unwrap();
    let whole = run(
        &net,
        &s,
        &config,
        &opt,
        loss.as_ref(),
        Some(a.path()),
        false,
        None,
    )
    .unwrap();
    let b = tempfile::tempdir().unwrap();
    let first = run(
        &net,
        &s,
        &config,
        &opt,
        loss.as_ref(),
        Some(b.path()),
        false,
        Some(3),
    )
    .unwrap();
    assert!(!first.finished && first.epochs_run == 3);
    let resumed = run(
        &net,
        &s,
        &config,
        &opt,
        loss.as_ref(),
        Some(b.path()),
        true,
        None,
    )
    .unwrap();
    assert_eq!(resumed.resumed_from, Some(3));
    assert_eq!(resumed.epochs_run, 6);
    assert_eq!(whole.history.len(), 6);
    assert_eq!(
        resumed.history.len(),
        6,
        "the resumed history has every epoch"
    );
    for (x, y) in whole.history.iter().zip(&resumed.history) {
        assert_eq!(x.epoch, y.epoch);
        assert_eq!(x.train_loss, y.train_loss, "epoch {} train loss", x.epoch);
        assert_eq!(x.valid_loss, y.valid_loss, "epoch {} valid loss", x.epoch);
    }
    let (acc_a, loss_a) = test_accuracy(&whole.model, &s);
    let (acc_b, loss_b) = test_accuracy(&resumed.model, &s);
    assert_eq!(acc_a, acc_b);
    assert_eq!(loss_a, loss_b);
}

#[test]
fn early_stopping_stops_and_restores_best() {
    let _guard = serial();
    let s = split(iris(), true, 5);
    let net = NetworkConfig::Mlp(MlpConfig::new(4, 3).with_d_hidden(vec![8]));
    let loss = LossConfig::default().init(&Device::flex()).unwrap();
    let mut config = quiet(50, 16);
    // No change of the validation loss can beat min_delta = 10: only epoch 1 is ever "best".
    config.early_stopping = Some(EarlyStopping {
        monitor: Monitor::ValidLoss,
        patience: 2,
        min_delta: 10.0,
    });
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &net,
        &s,
        &config,
        &OptimizerConfig::default(),
        loss.as_ref(),
        Some(dir.path()),
        false,
        None,
    )
    .unwrap();
    assert_eq!(out.stop_reason, "early stopping");
    assert_eq!(out.epochs_run, 3);
    assert_eq!(out.best.unwrap().1, 1);
}

/// A user-defined loss (the plug-in trait) that turns NaN from the 3rd epoch on.
struct NanAfter {
    inner: Box<dyn Loss>,
    calls: std::sync::atomic::AtomicUsize,
    after: usize,
}

impl Loss for NanAfter {
    fn name(&self) -> &str {
        "nan-after"
    }
    fn forward(
        &self,
        outputs: Tensor<2>,
        targets: &TargetBatch,
    ) -> strata::loss::Result<Tensor<1>> {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let l = self.inner.forward(outputs, targets)?;
        Ok(if n >= self.after { l * f32::NAN } else { l })
    }
}

#[test]
fn divergence_is_an_error_and_keeps_the_last_good_checkpoint() {
    let _guard = serial();
    let s = split(iris(), true, 6);
    let net = NetworkConfig::Mlp(MlpConfig::new(4, 3).with_d_hidden(vec![8]));
    let d = Device::flex();
    // iris: 98 training rows, batch 16 -> 7 steps per epoch, plus 1 validation batch.
    let loss = NanAfter {
        inner: LossConfig::default().init(&d).unwrap(),
        calls: 0.into(),
        after: 16 + 2,
    };
    let dir = tempfile::tempdir().unwrap();
    let err = run(
        &net,
        &s,
        &quiet(10, 16),
        &OptimizerConfig::default(),
        &loss,
        Some(dir.path()),
        false,
        None,
    )
    .unwrap_err();
    match err {
        Error::Diverged {
            epoch, last_good, ..
        } => {
            assert_eq!(epoch, 3);
            assert_eq!(last_good, 2);
        }
        other => panic!("expected divergence, got {other}"),
    }
    assert!(err_message_mentions_checkpoint(dir.path()));
    // The kept checkpoint resumes.
    let fine = LossConfig::default().init(&d).unwrap();
    let out = run(
        &net,
        &s,
        &quiet(4, 16),
        &OptimizerConfig::default(),
        fine.as_ref(),
        Some(dir.path()),
        true,
        None,
    )
    .unwrap();
    assert_eq!(out.resumed_from, Some(2));
    assert_eq!(out.epochs_run, 4);
}

fn err_message_mentions_checkpoint(dir: &Path) -> bool {
    let state = std::fs::read_to_string(dir.join("state.json")).unwrap();
    state.contains("\"epochs_done\": 2")
        && dir.join("model-2.bpk").exists()
        && dir.join("optim-2.bpk").exists()
}

#[test]
fn custom_mlp_forward_closure_works() {
    let _guard = serial();
    // fit accepts any module and closure, not only strata's Network.
    let s = split(iris(), true, 7);
    let d = Device::flex().autodiff();
    d.seed(1);
    let model: Mlp = MlpConfig::new(4, 3)
        .with_d_hidden(vec![16])
        .init(&d)
        .unwrap();
    let loss = LossConfig::Focal {
        gamma: 2.0,
        alpha: None,
    }
    .init(&d)
    .unwrap();
    let out = fit(
        model,
        &s.train,
        &s.valid,
        &Fit {
            forward: |m: &Mlp, x| m.forward(x),
            loss: loss.as_ref(),
            augment: None,
            run: Run::new(
                &OptimizerConfig {
                    lr: 0.02,
                    ..Default::default()
                },
                &ScheduleConfig::default(),
                &quiet(40, 16),
                d,
            ),
        },
    )
    .unwrap();
    assert!(out.history.last().unwrap().valid_metric >= 0.85);
}
