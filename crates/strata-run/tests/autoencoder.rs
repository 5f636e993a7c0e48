//! The autoencoder family on the embedded digits (seconds each): it learns, it reloads to the
//! same figures, and it refuses what it cannot read. Bars: the plain autoencoder halves the
//! squared error of the training mean image; the VAE's negative ELBO is below the mean image's
//! Bernoulli NLL (a VAE that does not beat per-pixel means has learnt nothing).

use std::sync::{Mutex, MutexGuard};

use strata_run::{RunConfig, evaluate, train};

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

fn metric(v: &serde_json::Value, k: &str) -> f64 {
    v["test"][k]
        .as_f64()
        .unwrap_or_else(|| panic!("no test {k} in {v}"))
}

#[test]
fn an_autoencoder_halves_the_mean_images_error_and_reloads_to_the_same_figures() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let r = train(&quiet("ae", "digits"), dir.path()).unwrap();
    let (mse, base) = (
        metric(&r.metrics, "mse"),
        metric(&r.metrics, "baseline_mse"),
    );
    assert!(mse.is_finite() && mse < 0.5 * base, "{}", r.summary);
    assert!(metric(&r.metrics, "bce_nats") < metric(&r.metrics, "baseline_bce_nats"));
    let ev = evaluate(dir.path(), None, None).unwrap();
    assert_eq!(ev.metrics["test"]["mse"], r.metrics["test"]["mse"]);
}

#[test]
fn a_vae_beats_the_mean_image_in_nats_and_its_elbo_repeats_on_evaluation() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let r = train(&quiet("vae", "digits"), dir.path()).unwrap();
    let elbo = metric(&r.metrics, "neg_elbo_nats");
    assert!(
        elbo.is_finite() && elbo < metric(&r.metrics, "baseline_bce_nats"),
        "{}",
        r.summary
    );
    // The negative ELBO bounds the reconstruction NLL from above only in expectation; the KL
    // term is positive.
    assert!(elbo > 0.0);
    let ev = evaluate(dir.path(), None, None).unwrap();
    assert_eq!(
        ev.metrics["test"]["neg_elbo_nats"],
        r.metrics["test"]["neg_elbo_nats"]
    );
}

#[test]
fn data_that_are_not_images_in_0_1_and_a_code_of_zero_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    for (config, expect) in [
        (
            quiet("ae", "iris"),
            "reconstructs images with values in [0, 1]",
        ),
        (quiet("vae", "airline"), "reconstructs images"),
        (quiet("ae", "shakespeare"), "is text"),
        (
            {
                let mut c = quiet("ae", "digits");
                c.network.hidden = vec![32, 0];
                c
            },
            "d_latent must be >= 1",
        ),
        (
            {
                let mut c = quiet("vae", "digits");
                c.network.hidden = vec![];
                c
            },
            "needs its code size",
        ),
    ] {
        let e = train(&config, &out).unwrap_err().to_string();
        assert!(e.contains(expect), "{}: {e}", config.model);
        assert!(!out.exists());
    }
}
