//! The capsule network on the embedded digits (seconds each): it learns, writes its pictures,
//! predicts capsule lengths, trains without its decoder, and refuses what it cannot build.
//!
//! Bars, set before the runs: the default recipe reaches 0.98 test accuracy on the digits
//! (issue 17's bar); one routing pass without the decoder, 10 epochs, at least 0.8 (chance
//! 0.1).

use std::sync::{Mutex, MutexGuard};

use strata_data::Augment;
use strata_run::{CapsSize, Predictions, RunConfig, evaluate_perturbed, predict_file, train};

/// burn seeds one generator per backend for the whole process: runs take turns.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn quiet(dataset: &str) -> RunConfig {
    let mut c = RunConfig::defaults_for("capsnet", dataset);
    c.fit.progress = false;
    c
}

fn accuracy(m: &serde_json::Value) -> f64 {
    m["test"]["accuracy"].as_f64().expect("a test accuracy")
}

#[test]
fn capsnet_learns_the_digits_draws_and_predicts_lengths() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let r = train(&quiet("digits"), dir.path()).unwrap();
    assert!(accuracy(&r.metrics) >= 0.98, "{}", r.summary);
    assert_eq!(
        r.metrics["pictures"],
        serde_json::json!(["reconstructions.png", "perturbations.png"])
    );
    for f in [
        "reconstructions.png",
        "perturbations.png",
        "model.safetensors",
    ] {
        assert!(dir.path().join(f).exists(), "{f} missing");
    }
    // 16 dimensions x 11 steps of 8x8 images at scale 7, one-pixel borders.
    let grid = image::open(dir.path().join("perturbations.png")).unwrap();
    assert_eq!((grid.width(), grid.height()), (11 * 56 + 12, 16 * 56 + 17));

    // Predictions are the class capsules' lengths: in [0, 1), the longest is the class.
    let csv = dir.path().join("rows.csv");
    let rows: Vec<String> = (0..3)
        .map(|i| {
            (0..64)
                .map(|p| format!("{}", ((i * 7 + p) % 17) as f32 / 16.0))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    std::fs::write(&csv, rows.join("\n")).unwrap();
    let p = predict_file(dir.path(), None, &csv, None).unwrap();
    let Predictions::Lengths { names, lengths } = &p else {
        panic!("capsule lengths, got {p:?}")
    };
    assert_eq!((names.len(), lengths.len()), (10, 30));
    assert!(
        lengths.iter().all(|l| (0.0..1.0).contains(l)),
        "{lengths:?}"
    );
    assert!(p.to_csv().starts_with("row,class,length_0,length_1,"));
    assert_eq!(p.classes().len(), 3);

    // Evaluating the finished run gives its test accuracy again.
    let ev = strata_run::evaluate(dir.path(), None, None).unwrap();
    assert!(
        (ev.metrics["test"]["accuracy"].as_f64().unwrap() - accuracy(&r.metrics)).abs() < 1e-9,
        "{}",
        ev.metrics
    );
    assert_eq!(ev.metrics["parameters"], r.metrics["parameters"]);

    // Rotated and shifted test images: the same seed gives the same figure, another seed
    // other images, and the transform is recorded.
    let perturb = Augment::parse("affine:30:0.1").unwrap();
    let test_accuracy = |seed| {
        let ev = evaluate_perturbed(dir.path(), None, None, &perturb, seed).unwrap();
        assert_eq!(ev.metrics["seed"], seed);
        assert_eq!(ev.metrics["perturbation"]["steps"][0]["kind"], "affine");
        ev.metrics["test"]["accuracy"].as_f64().unwrap()
    };
    let (a, b, c) = (test_accuracy(1), test_accuracy(1), test_accuracy(2));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a < accuracy(&r.metrics), "{a}");
    let mixup = Augment::parse("mixup:0.2").unwrap();
    let e = evaluate_perturbed(dir.path(), None, None, &mixup, 0).unwrap_err();
    assert!(e.to_string().contains("mixup"), "{e}");
}

#[test]
fn capsnet_trains_on_the_margin_alone_with_one_routing_pass() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut c = quiet("digits");
    c.capsnet.routing = 1;
    c.capsnet.reconstruction = 0.0;
    c.fit.epochs = 10;
    let r = train(&c, dir.path()).unwrap();
    assert!(accuracy(&r.metrics) >= 0.8, "{}", r.summary);
    // No decoder term: no pictures of an untrained decoder.
    assert!(r.metrics.get("pictures").is_none());
    assert!(!dir.path().join("reconstructions.png").exists());
}

#[test]
fn capsnet_refuses_what_it_cannot_build() {
    let dir = tempfile::tempdir().unwrap();
    let err = |c: &RunConfig| train(c, dir.path()).unwrap_err().to_string();

    let mut c = quiet("digits");
    c.capsnet.size = CapsSize::Paper;
    let e = err(&c);
    assert!(
        e.contains("8x8 images, too small for CapsNet's 9x9 convolutions")
            && e.contains("17x17")
            && e.contains("--capsnet-size small"),
        "{e}"
    );

    let mut c = quiet("digits");
    c.capsnet.routing = 0;
    assert!(err(&c).contains("at least 1 iteration"), "{}", err(&c));

    let mut c = quiet("digits");
    c.capsnet.reconstruction = f64::NAN;
    assert!(err(&c).contains("--reconstruction"), "{}", err(&c));

    let e = err(&quiet("iris"));
    assert!(e.contains("needs image data"), "{e}");

    let mut c = quiet("digits");
    c.loss = strata_loss::LossConfig::default();
    assert!(err(&c).contains("margin loss"), "{}", err(&c));

    let mut c = quiet("digits");
    c.augment = strata_data::Augment::parse("mixup:0.2").unwrap();
    assert!(err(&c).contains("mixup"), "{}", err(&c));
}
