//! The autoencoder family on the embedded digits and iris (seconds each): every model learns,
//! reloads to the same figures, draws its pictures, and refuses what it cannot read.
//!
//! Bars, set before the runs: a plain, convolutional or sparse autoencoder halves the squared
//! error of the training mean image; a VAE's negative ELBO is below the mean image's Bernoulli
//! NLL (a model that does not beat per-pixel means has learnt nothing); the codes' 1-NN
//! accuracy is above 0.8 (chance is 0.1); the denoising autoencoder raises PSNR by 3 dB at
//! sigma 0.3 on the 8x8 digits (the 5 dB bar is for Fashion-MNIST, docs/autoencoder.md);
//! the sparse code's mean L1 is under half the plain one's; one-class AUROC above 0.8 for digit
//! 0 and above 0.9 for setosa in iris.

use std::sync::{Mutex, MutexGuard};

use strata_run::{AutoencoderRun, Generate, RunConfig, evaluate, generate, predict_file, train};

/// burn seeds one generator per backend for the whole process: runs take turns.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn quiet(model: &str, dataset: &str) -> RunConfig {
    let mut c = RunConfig::defaults_for(model, dataset);
    c.fit.progress = false;
    c
}

fn get(v: &serde_json::Value, path: &str) -> f64 {
    let mut at = v;
    for k in path.split('/') {
        at = &at[k];
    }
    at.as_f64().unwrap_or_else(|| panic!("no {path} in {v}"))
}

/// A PNG's width and height.
fn png_size(path: &std::path::Path) -> (u32, u32) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (img.width(), img.height())
}

#[test]
fn an_autoencoder_halves_the_mean_images_error_codes_well_and_reloads_to_the_same_figures() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let r = train(&quiet("ae", "digits"), dir.path()).unwrap();
    let m = &r.metrics;
    assert!(
        get(m, "test/mse") < 0.5 * get(m, "test/baseline_mse"),
        "{}",
        r.summary
    );
    assert!(get(m, "test/nll_nats") < get(m, "test/baseline_nll_nats"));
    assert!(get(m, "test/knn/accuracy") > 0.8, "{}", r.summary);
    assert!(get(m, "test/knn/pca_accuracy") > 0.8, "{}", r.summary);
    let ev = evaluate(dir.path(), None, None).unwrap();
    assert_eq!(ev.metrics["test"]["mse"], m["test"]["mse"]);
    assert_eq!(ev.metrics["test"]["knn"], m["test"]["knn"]);
    // Ten test images over their reconstructions, each 8 pixels at scale 7 and a border.
    assert_eq!(
        png_size(&dir.path().join("reconstructions.png")),
        (10 * 57 + 1, 2 * 57 + 1)
    );
    assert_eq!(png_size(&dir.path().join("latent.png")), (480, 480));
    assert!(!dir.path().join("samples.png").exists());
    // A plain autoencoder has no prior to sample from.
    let e = generate(dir.path(), None, &Generate::default()).unwrap_err();
    assert!(e.to_string().contains("no prior to sample from"), "{e}");

    // Codes and anomaly scores of new rows, through the library and a file.
    let run = AutoencoderRun::open(dir.path(), None).unwrap();
    let rows = strata_data::digits().features[..3 * 64].to_vec();
    let codes = run.encode(rows.clone(), None).unwrap();
    assert_eq!(codes.len(), 3 * 16);
    let csv = dir.path().join("rows.csv");
    let text: Vec<String> = rows
        .chunks(64)
        .map(|r| r.iter().map(f32::to_string).collect::<Vec<_>>().join(","))
        .collect();
    std::fs::write(&csv, text.join("\n")).unwrap();
    assert_eq!(run.encode_file(&csv, None).unwrap().values, codes);
    let p = predict_file(dir.path(), None, &csv, None).unwrap();
    let scores = run.scores(rows, None).unwrap();
    assert_eq!(p, strata_run::Predictions::Scores(scores.clone()));
    assert!(scores.iter().all(|s| s.is_finite() && *s > 0.0));
    assert!(run.encode(vec![2.0; 64], None).is_err());
    assert!(run.encode(vec![0.5; 63], None).is_err());
    assert!(run.encode(vec![0.5; 64], Some("3")).is_err());
}

#[test]
fn a_vae_beats_the_mean_image_its_iw_bound_is_tighter_and_it_samples() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let r = train(&quiet("vae", "digits"), dir.path()).unwrap();
    let m = &r.metrics;
    let elbo = get(m, "test/neg_elbo_nats");
    assert!(
        elbo > 0.0 && elbo < get(m, "test/baseline_nll_nats"),
        "{}",
        r.summary
    );
    assert!(get(m, "test/iw_bound/iw_nats") <= get(m, "test/iw_bound/neg_elbo_nats"));
    assert!(get(m, "test/active_units") >= 1.0, "{}", r.summary);
    let ev = evaluate(dir.path(), None, None).unwrap();
    assert_eq!(
        ev.metrics["test"]["neg_elbo_nats"],
        m["test"]["neg_elbo_nats"]
    );
    assert_eq!(ev.metrics["test"]["iw_bound"], m["test"]["iw_bound"]);
    for name in ["samples.png", "interpolation.png", "latent.png"] {
        assert!(dir.path().join(name).exists(), "{name}");
    }
    // Ten interpolated images between the two ends.
    assert_eq!(
        png_size(&dir.path().join("interpolation.png")).0,
        12 * 57 + 1
    );
    let out = dir.path().join("g.npy");
    let request = Generate {
        samples: 5,
        out: Some(out.clone()),
        ..Generate::default()
    };
    let said = generate(dir.path(), None, &request).unwrap();
    assert!(said.contains("5 samples"), "{said}");
    let (shape, values) = strata_data::read_npy_f32(&out).unwrap();
    assert_eq!(shape, [5, 64]);
    assert!(values.iter().all(|v| (0.0..=1.0).contains(v)));
    // The same seed, the same samples.
    let run = AutoencoderRun::open(dir.path(), None).unwrap();
    assert_eq!(run.sample(5, None, 42).unwrap(), values);
    assert!(run.sample(0, None, 42).is_err());
}

#[test]
fn convolutional_models_learn_on_the_digits() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let r = train(&quiet("conv-ae", "digits"), dir.path()).unwrap();
    let m = &r.metrics;
    assert!(
        get(m, "test/mse") < 0.5 * get(m, "test/baseline_mse"),
        "{}",
        r.summary
    );
    let dir = tempfile::tempdir().unwrap();
    let r = train(&quiet("conv-vae", "digits"), dir.path()).unwrap();
    let m = &r.metrics;
    assert!(
        get(m, "test/neg_elbo_nats") < get(m, "test/baseline_nll_nats"),
        "{}",
        r.summary
    );
}

#[test]
fn a_denoising_autoencoder_raises_psnr_and_a_sparse_one_shrinks_its_code() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let r = train(&quiet("dae", "digits"), dir.path()).unwrap();
    let d = &r.metrics["test"]["denoising"];
    assert_eq!(d["noise"], "gaussian:0.3");
    assert!(
        get(d, "psnr_denoised_db") > get(d, "psnr_noisy_db") + 3.0,
        "{}",
        r.summary
    );
    // Clean, noisy and denoised rows.
    assert_eq!(
        png_size(&dir.path().join("reconstructions.png")).1,
        3 * 57 + 1
    );

    let plain = train(&quiet("ae", "digits"), tempfile::tempdir().unwrap().path()).unwrap();
    let sparse = train(
        &quiet("sparse-ae", "digits"),
        tempfile::tempdir().unwrap().path(),
    )
    .unwrap();
    let (p, s) = (
        get(&plain.metrics, "test/code_l1"),
        get(&sparse.metrics, "test/code_l1"),
    );
    assert!(s < 0.5 * p, "sparse {s} against plain {p}");
    assert!(get(&sparse.metrics, "test/mse") < 0.5 * get(&sparse.metrics, "test/baseline_mse"));
}

#[test]
fn a_conditional_vae_generates_each_class() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let r = train(&quiet("cvae", "digits"), dir.path()).unwrap();
    let m = &r.metrics;
    assert!(
        get(m, "test/neg_elbo_nats") < get(m, "test/baseline_nll_nats"),
        "{}",
        r.summary
    );
    // samples.png: one column per class, 8 rows.
    assert_eq!(
        png_size(&dir.path().join("samples.png")),
        (10 * 57 + 1, 8 * 57 + 1)
    );
    let run = AutoencoderRun::open(dir.path(), None).unwrap();
    let threes = run.sample(4, Some("3"), 1).unwrap();
    let sevens = run.sample(4, Some("7"), 1).unwrap();
    assert_eq!(threes.len(), 4 * 64);
    assert_ne!(threes, sevens, "the class changes the samples");
    let e = run.sample(4, Some("eleven"), 1).unwrap_err().to_string();
    assert!(e.contains("is not one of"), "{e}");
    let e = run.encode(vec![0.5; 64], None).unwrap_err().to_string();
    assert!(e.contains("needs --class"), "{e}");
    assert_eq!(run.encode(vec![0.5; 64], Some("3")).unwrap().len(), 16);
}

#[test]
fn one_class_runs_detect_the_other_classes_on_images_and_tables() {
    let _turn = one_at_a_time();
    let mut c = quiet("ae", "digits");
    c.autoencoder.normal_class = Some("0".into());
    let r = train(&c, tempfile::tempdir().unwrap().path()).unwrap();
    let a = &r.metrics["test"]["anomaly"];
    assert!(get(a, "auroc") > 0.8, "{}", r.summary);
    assert!((0.0..=1.0).contains(&get(a, "pca_auroc")));
    assert!((0.0..=1.0).contains(&get(a, "nll_auroc")));
    assert!(get(a, "n_anomalous") > 5.0 * get(a, "n_normal"));
    assert!(r.metrics["test"].get("knn").is_none());

    // Iris: standardised measurements, a Gaussian likelihood; setosa is the normal class.
    let mut c = quiet("ae", "iris");
    c.network.hidden = vec![8, 2];
    c.autoencoder.normal_class = Some("setosa".into());
    let r = train(&c, tempfile::tempdir().unwrap().path()).unwrap();
    assert_eq!(r.metrics["test"]["likelihood"], "gaussian");
    assert!(
        get(&r.metrics["test"]["anomaly"], "auroc") > 0.9,
        "{}",
        r.summary
    );
}

#[test]
fn bad_settings_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let with = |model: &str, f: &dyn Fn(&mut RunConfig)| {
        let mut c = quiet(model, "digits");
        f(&mut c);
        c
    };
    for (config, expect) in [
        (quiet("vae", "airline"), "reconstructs images or rows"),
        (quiet("ae", "shakespeare"), "is text"),
        (quiet("conv-ae", "iris"), "needs images"),
        (
            with("ae", &|c| c.network.hidden = vec![32, 0]),
            "d_latent must be >= 1",
        ),
        (
            with("vae", &|c| c.network.hidden = vec![]),
            "needs its code size",
        ),
        (
            with("ae", &|c| {
                c.autoencoder.normal_class = Some("eleven".into())
            }),
            "--normal-class `eleven` is not a class of digits",
        ),
        (
            with("cvae", &|c| c.autoencoder.normal_class = Some("1".into())),
            "nothing to condition on",
        ),
        (
            with("conv-ae", &|c| c.resize = Some([6, 6])),
            "cannot halve a 6x6 image 2 times",
        ),
        (with("vae", &|c| c.autoencoder.beta = -1.0), "beta must be"),
        (
            with("sparse-ae", &|c| c.autoencoder.sparsity = f64::NAN),
            "sparsity must be",
        ),
    ] {
        let e = train(&config, &out).unwrap_err().to_string();
        assert!(e.contains(expect), "{}: {e}", config.model);
        assert!(!out.exists());
    }
}
