//! `strata-run` as a library user meets it: train, reopen, predict and evaluate without the
//! CLI; progress of one's own; pause and resume; configs written by earlier versions.

use std::cell::RefCell;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use strata_run::{
    FAMILIES, Predictions, Progress, Run, RunConfig, TrainOptions, evaluate, family, train,
    train_with,
};
use strata_train::EpochRecord;

/// burn seeds one generator per backend for the whole process: tests that train and compare
/// runs take turns.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Iris, a small MLP (docs/results.md's `mlp-iris` row: 32 units, Adam at 0.01), `epochs`
/// epochs without early stopping: a second or two.
fn iris(epochs: usize) -> RunConfig {
    let mut c = RunConfig::defaults_for("mlp", "iris");
    c.network.hidden = vec![32];
    c.optimizer.lr = 0.01;
    c.fit.epochs = epochs;
    c.fit.early_stopping = None;
    c.fit.progress = false;
    c
}

#[test]
fn train_reopen_predict_and_evaluate_without_the_cli() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let result = train(&iris(60), dir.path()).unwrap();
    assert!(result.finished);
    for file in [
        "config.toml",
        "preprocess.json",
        "history.csv",
        "curves.svg",
        "model.safetensors",
        "metrics.json",
        "test_predictions.csv",
    ] {
        assert!(dir.path().join(file).is_file(), "{file} missing");
    }
    let accuracy = result.test_metric("accuracy").unwrap();
    // Bar set before the run: iris with a 16-unit MLP is easy.
    assert!(accuracy > 0.85, "{}", result.summary);
    assert!(
        result.summary.starts_with("test accuracy"),
        "{}",
        result.summary
    );

    // Reopened, the run predicts what it predicted in training: evaluating on its test split
    // gives the same accuracy as metrics.json.
    let ev = evaluate(dir.path(), None, None).unwrap();
    assert_eq!(ev.metrics["test"]["accuracy"].as_f64(), Some(accuracy));
    assert_eq!(ev.written, Some(dir.path().join("evaluation.json")));

    let run = Run::open(dir.path()).unwrap();
    let p = run
        .predict(vec![5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3])
        .unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(p.classes(), ["setosa", "virginica"]);
    let Predictions::Classes { probabilities, .. } = &p else {
        panic!("a classifier gives classes")
    };
    for row in probabilities.chunks(3) {
        let sum: f32 = row.iter().sum();
        assert!(
            (sum - 1.0).abs() < 1e-5 && row.iter().all(|v| v.is_finite()),
            "{row:?}"
        );
    }
    assert!(
        p.to_csv()
            .starts_with("row,class,p_setosa,p_versicolor,p_virginica\n0,setosa,")
    );
    // Rows of the wrong width are an error, not a panic.
    assert!(run.predict(vec![1.0, 2.0, 3.0]).is_err());
}

/// Records what the runner reports.
#[derive(Default)]
struct Recorder {
    epochs: RefCell<Vec<usize>>,
    notes: RefCell<Vec<String>>,
}

impl Progress for Recorder {
    fn epoch_done(&self, record: &EpochRecord, _: usize, metric: &str, _: bool) {
        assert_eq!(metric, "acc");
        self.epochs.borrow_mut().push(record.epoch);
    }
    fn note(&self, text: &str) {
        self.notes.borrow_mut().push(text.to_string());
    }
}

#[test]
fn progress_goes_where_the_caller_says_and_a_paused_run_resumes() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let config = iris(6);
    let recorder = Recorder::default();
    let paused = train_with(
        &config,
        dir.path(),
        &TrainOptions {
            pause_after: Some(2),
            progress: Some(&recorder),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!paused.finished);
    assert_eq!(paused.epochs_run, 2);
    assert!(paused.metrics.is_null());
    assert_eq!(*recorder.epochs.borrow(), [1, 2]);
    assert!(
        recorder.notes.borrow()[0].starts_with("training mlp on iris"),
        "{:?}",
        recorder.notes.borrow()
    );

    let resumed = train_with(
        &config,
        dir.path(),
        &TrainOptions {
            resume: true,
            progress: Some(&recorder),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(resumed.finished);
    assert_eq!(*recorder.epochs.borrow(), [1, 2, 3, 4, 5, 6]);
    assert!(
        recorder
            .notes
            .borrow()
            .iter()
            .any(|n| n == "resuming after epoch 2")
    );

    // The same six epochs in one go give the same model.
    let whole = tempfile::tempdir().unwrap();
    let once = train(&config, whole.path()).unwrap();
    assert_eq!(once.metrics["test"], resumed.metrics["test"]);
}

#[test]
fn configs_written_by_an_earlier_version_still_load_and_validate() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut n = 0;
    for entry in std::fs::read_dir(&fixtures).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let c = RunConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            c.validate()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // Written back, it reads as the same config.
            assert_eq!(toml::from_str::<RunConfig>(&c.to_toml()).unwrap(), c);
            n += 1;
        }
    }
    assert_eq!(n, 4, "configs in {}", fixtures.display());
}

#[test]
fn every_model_name_has_a_family_with_a_recipe_that_validates() {
    for f in FAMILIES {
        for (pattern, _) in f.models() {
            // `resnet20|32|56|...` and `vgg11|13|16|19[_bn]` name several models.
            let first = pattern.split('|').next().unwrap().trim_end_matches("[_bn]");
            assert_eq!(family(first).unwrap().name(), f.name());
            let dataset = f.default_dataset(first);
            let c = RunConfig::defaults_for(first, dataset);
            c.validate()
                .unwrap_or_else(|e| panic!("{first} on {dataset}: {e}"));
        }
    }
}

#[test]
fn models_and_data_that_do_not_go_together_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    for (model, dataset, expect) in [
        ("cnn", "iris", "model cnn needs image data"),
        ("cnn", "airline", "model cnn needs images; forecast"),
        (
            "mlp",
            "shakespeare",
            "is text: train a character language model",
        ),
        ("lstm", "reverse", "train it with --model seq2seq"),
        ("seq2seq", "digits", "seq2seq trains on a transduction task"),
        (
            "transformer-lm",
            "digits",
            "transformer-lm is a language model",
        ),
        (
            "tab-transformer",
            "digits",
            "needs a table with named columns",
        ),
    ] {
        let mut c = RunConfig::defaults_for(model, dataset);
        c.fit.progress = false;
        let e = train(&c, &out).unwrap_err().to_string();
        assert!(e.contains(expect), "{model} on {dataset}: {e}");
        assert!(
            !out.exists(),
            "{model} on {dataset} wrote {}",
            out.display()
        );
    }
}
