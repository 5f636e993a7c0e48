//! The GAN family on the embedded digits and the ring of 8 Gaussians (seconds each): every
//! GAN trains, is measured, samples by class, resumes bit-identically and refuses what it
//! cannot read.
//!
//! Bars, set before the runs (the digits are 8x8 and the runs short; docs/gan.md has the long
//! Fashion-MNIST runs): in the evaluator's features, the DCGAN's and SN-GAN's FID is below half
//! the untrained generator's, the WGAN's (clipped critics learn slowly) below the untrained
//! one's; the conditional DCGAN's GAN-test accuracy is at least 0.6 (chance 0.1); the dense GAN
//! covers at least 6 of the ring's 8 modes in its CI run (8 of 8 in the long run).

use std::sync::{Mutex, MutexGuard, OnceLock};

use strata_run::{GanRun, Generate, RunConfig, generate, train, train_with};

/// burn seeds one generator per backend for the whole process: runs take turns.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// One evaluating classifier (a CNN on the digits) shared by the digit runs.
fn evaluator() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut c = RunConfig::defaults_for("cnn", "digits");
        c.fit.progress = false;
        train(&c, dir.path()).unwrap();
        dir
    })
    .path()
}

fn quiet(model: &str, dataset: &str, epochs: usize) -> RunConfig {
    let mut c = RunConfig::defaults_for(model, dataset);
    c.fit.progress = false;
    c.fit.epochs = epochs;
    if dataset == "digits" {
        c.gan.evaluator = Some(evaluator().to_path_buf());
    }
    c
}

fn get(v: &serde_json::Value, path: &str) -> f64 {
    let mut at = v;
    for k in path.split('/') {
        at = &at[k];
    }
    at.as_f64().unwrap_or_else(|| panic!("no {path} in {v}"))
}

#[test]
fn a_dcgan_learns_the_digits_and_keeps_a_grid_per_epoch() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let r = train(&quiet("dcgan", "digits", 30), dir.path()).unwrap();
    let m = &r.metrics;
    let fid = get(m, "test/fid");
    assert!(fid < 0.5 * get(m, "test/untrained/fid"), "{}", r.summary);
    assert!(get(m, "test/real_floor/fid") < fid, "{}", r.summary);
    for k in [
        "kid",
        "precision",
        "recall",
        "real_floor/kid",
        "untrained/kid",
    ] {
        assert!(
            get(m, &format!("test/{k}")).is_finite(),
            "{k}: {}",
            r.summary
        );
    }
    assert_eq!(m["test"]["features"]["model"], "cnn");
    for f in [
        "samples.png",
        "samples/epoch-001.png",
        "samples/epoch-030.png",
        "history.csv",
    ] {
        assert!(dir.path().join(f).exists(), "{f} missing");
    }
    let history = std::fs::read_to_string(dir.path().join("history.csv")).unwrap();
    assert!(
        history
            .lines()
            .next()
            .unwrap()
            .ends_with("loss_discriminator,loss_generator")
    );
    // Sampling again from the finished run: a grid, or rows of 64 pixels in [0, 1].
    let run = GanRun::open(dir.path(), None).unwrap();
    let rows = run.sample(5, None, 3).unwrap();
    assert_eq!(rows.len(), 5 * 64);
    assert!(rows.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(
        run.sample(5, Some("3"), 3).is_err(),
        "an unconditional GAN takes no class"
    );
    assert!(run.sample(0, None, 3).is_err());
}

#[test]
fn a_conditional_dcgan_draws_the_class_asked_for() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let r = train(&quiet("cgan", "digits", 40), dir.path()).unwrap();
    let m = &r.metrics;
    assert!(get(m, "test/gan_test_accuracy") >= 0.6, "{}", r.summary);
    assert!(
        get(m, "test/gan_train_accuracy").is_finite(),
        "{}",
        r.summary
    );
    let out = dir.path().join("sevens.npy");
    let request = Generate {
        samples: 6,
        class: Some("7".into()),
        out: Some(out.clone()),
        ..Generate::default()
    };
    generate(dir.path(), None, &request).unwrap();
    let (shape, _) = strata_data::read_npy_f32(&out).unwrap();
    assert_eq!(shape, vec![6, 64]);
    let bad = Generate {
        class: Some("eleven".into()),
        ..request
    };
    let err = generate(dir.path(), None, &bad).unwrap_err().to_string();
    assert!(err.contains("not one of"), "{err}");
}

#[test]
fn a_wgan_and_an_sngan_learn_the_digits() {
    let _turn = one_at_a_time();
    for (model, factor) in [("wgan", 1.0), ("sngan", 0.5)] {
        let dir = tempfile::tempdir().unwrap();
        let r = train(&quiet(model, "digits", 30), dir.path()).unwrap();
        let m = &r.metrics;
        assert!(
            get(m, "test/fid") < factor * get(m, "test/untrained/fid"),
            "{model}: {}",
            r.summary
        );
        assert_eq!(m["game"]["n_critic"], if model == "wgan" { 5 } else { 1 });
    }
}

#[test]
fn a_dense_gan_covers_the_rings_modes() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let r = train(&quiet("gan", "ring8", 150), dir.path()).unwrap();
    let m = &r.metrics;
    assert!(get(m, "test/modes_covered") >= 6.0, "{}", r.summary);
    assert_eq!(m["test"]["features"]["kind"], "raw coordinates");
    assert!(dir.path().join("samples.png").exists());
}

#[test]
fn a_paused_gan_resumes_bit_identically() {
    let _turn = one_at_a_time();
    let c = quiet("gan", "ring8", 4);
    let whole = tempfile::tempdir().unwrap();
    train(&c, whole.path()).unwrap();
    let parts = tempfile::tempdir().unwrap();
    let first = train_with(
        &c,
        parts.path(),
        &strata_run::TrainOptions {
            pause_after: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!first.finished);
    for f in ["optim-2.bpk", "optim1-2.bpk", "model-2.bpk"] {
        assert!(parts.path().join("checkpoints").join(f).exists(), "{f}");
    }
    train_with(
        &c,
        parts.path(),
        &strata_run::TrainOptions {
            resume: true,
            ..Default::default()
        },
    )
    .unwrap();
    let history = |d: &std::path::Path| std::fs::read_to_string(d.join("history.csv")).unwrap();
    let (a, b) = (history(whole.path()), history(parts.path()));
    let losses = |h: &str| -> Vec<String> {
        // Every column but the wall seconds.
        h.lines()
            .map(|l| {
                let mut c: Vec<&str> = l.split(',').collect();
                c.remove(5);
                c.join(",")
            })
            .collect()
    };
    assert_eq!(losses(&a), losses(&b));
    // The finished players, weight for weight: the same samples and the same scores.
    let (w, p) = (
        GanRun::open(whole.path(), None).unwrap(),
        GanRun::open(parts.path(), None).unwrap(),
    );
    let (sw, sp) = (
        w.sample(64, None, 5).unwrap(),
        p.sample(64, None, 5).unwrap(),
    );
    assert_eq!(sw, sp, "samples differ");
    let x =
        burn::tensor::Tensor::<2>::from_data(burn::tensor::TensorData::new(sw, [64, 2]), &w.device);
    let scores = |r: &GanRun| strata_tensor::convert::to_vec(r.model.discriminate(x.clone(), None));
    assert_eq!(scores(&w), scores(&p), "scores differ");
}

#[test]
fn gans_refuse_what_they_cannot_read() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let err = train(&quiet("dcgan", "iris", 1), dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs images"), "{err}");
    let err = train(&quiet("gan", "airline", 1), dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not such data"), "{err}");
    let mut c = quiet("wgan", "digits", 1);
    c.gan.n_critic = Some(0);
    assert!(c.validate().unwrap_err().to_string().contains("n_critic"));
    let mut c = quiet("dcgan", "digits", 1);
    c.network.channels.clear();
    assert!(c.validate().unwrap_err().to_string().contains("--channels"));
}
