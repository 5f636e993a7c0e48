//! Smaller models: knowledge distillation (`--distill-from`), magnitude and channel pruning
//! and int8 weights (`strata compress`) on digits, their settings and bad input as one line with exit
//! code 1.

mod common;
use common::{assert_clean_failure, json, stderr, strata};

/// Trains `strata train ARGS --quiet --out OUT` and returns `metrics.json`.
fn train(out: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let o = strata(&[args, &["--quiet", "--out", out.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    json(&out.join("metrics.json"))
}

#[test]
fn distilling_and_pruning_a_digits_cnn() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = dir.path().join("teacher");
    let t = teacher.to_str().unwrap();
    train(
        &teacher,
        &[
            "train",
            "--model",
            "cnn",
            "--dataset",
            "digits",
            "--epochs",
            "10",
        ],
    );
    // The student (an MLP on standardised rows) learns from the teacher's outputs only
    // (weight 1): the teacher (a CNN on unstandardised pixels) must see each batch as its own
    // run would, or its targets are noise. Bar set before the first run: 0.85 (a plain MLP
    // of this size reaches 0.95 on the test split).
    let student = dir.path().join("student");
    let m = train(
        &student,
        &[
            "train",
            "--model",
            "mlp",
            "--dataset",
            "digits",
            "--hidden",
            "64",
            "--distill-from",
            t,
            "--distill-weight",
            "1",
            "--temperature",
            "1",
        ],
    );
    let accuracy = m["test"]["accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.85, "student's test accuracy {accuracy}");
    let config = std::fs::read_to_string(student.join("config.toml")).unwrap();
    assert!(config.contains("[distill]"), "{config}");
    assert!(config.contains("temperature = 1.0"), "{config}");

    // Bad teachers and settings: one line, exit code 1, nothing written.
    let iris = dir.path().join("iris");
    train(
        &iris,
        &[
            "train",
            "--model",
            "mlp",
            "--dataset",
            "iris",
            "--epochs",
            "2",
        ],
    );
    let out = dir.path().join("bad");
    let o = out.to_str().unwrap();
    let base = ["train", "--model", "mlp", "--dataset", "digits", "--out", o];
    assert_clean_failure(
        &[&base[..], &["--distill-from", iris.to_str().unwrap()]].concat(),
        "the teacher predicts 3 classes, digits has 10",
    );
    assert_clean_failure(
        &[&base[..], &["--distill-from", dir.path().to_str().unwrap()]].concat(),
        "not a run directory",
    );
    assert_clean_failure(
        &[&base[..], &["--distill-from", t, "--temperature", "0"]].concat(),
        "--temperature must be a finite number > 0",
    );
    assert_clean_failure(
        &[&base[..], &["--distill-from", t, "--distill-weight", "1.5"]].concat(),
        "--distill-weight must be in [0, 1]",
    );
    assert_clean_failure(
        &[&base[..], &["--temperature", "4"]].concat(),
        "give --distill-from RUN",
    );
    assert_clean_failure(
        &[
            &base[..],
            &["--distill-from", t, "--adversarial", "fgsm:eps=0.1"],
        ]
        .concat(),
        "choose one",
    );
    assert!(!out.exists(), "nothing written for a refused run");

    // Pruning the teacher to 80% zeros with 2 epochs of fine-tuning: a run of its own that
    // evaluate loads, most weights at zero, accuracy kept (bar set before the first run: 0.9).
    let pruned = dir.path().join("pruned");
    let p = pruned.to_str().unwrap();
    let o = strata(&[
        "compress",
        "--run",
        t,
        "--prune",
        "0.8",
        "--fine-tune",
        "2",
        "--quiet",
        "--out",
        p,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = json(&pruned.join("metrics.json"));
    let c = &m["compression"];
    let (pruned_weights, covered) = (
        c["pruning"]["weights_pruned"].as_u64().unwrap(),
        c["pruning"]["weights_covered"].as_u64().unwrap(),
    );
    assert!(
        (pruned_weights as f64 / covered as f64 - 0.8).abs() < 0.01,
        "{pruned_weights} of {covered}"
    );
    assert!(
        c["zero_parameters"].as_u64().unwrap() >= pruned_weights,
        "{c}"
    );
    let accuracy = m["test"]["accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.9, "pruned test accuracy {accuracy}");
    let o = strata(&["evaluate", "--run", p]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = json(&pruned.join("evaluation.json"));
    assert_eq!(e["test"]["accuracy"], m["test"]["accuracy"]);

    // The curve: one row per sparsity, accuracy falling to chance by 99% zeros.
    let curve = dir.path().join("curve");
    let o = strata(&[
        "compress",
        "--run",
        t,
        "--curve",
        "0.99,0.5",
        "--out",
        curve.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(curve.join("sparsity.csv")).unwrap();
    let rows: Vec<Vec<f64>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert_eq!((rows[0][0], rows[1][0]), (0.5, 0.99), "{csv}");
    assert!(rows[0][1] > 0.9 && rows[1][1] < 0.3, "{csv}");
    assert!(
        std::fs::read(curve.join("sparsity.png"))
            .unwrap()
            .starts_with(b"\x89PNG")
    );

    // Int8 weights on disk, one scale per output channel: a quarter of the size, the same
    // accuracy within a point (bars set before the first run), loaded back by evaluate.
    let int8 = dir.path().join("int8");
    let q = int8.to_str().unwrap();
    let o = strata(&[
        "compress",
        "--run",
        t,
        "--quantize",
        "int8",
        "--per-channel",
        "--out",
        q,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!int8.join("model.safetensors").exists());
    let m = json(&int8.join("metrics.json"));
    let c = &m["compression"];
    let (size, original) = (
        c["size_bytes"].as_u64().unwrap(),
        c["original_size_bytes"].as_u64().unwrap(),
    );
    assert!(size * 10 < original * 3, "{size} bytes vs {original}");
    assert_eq!(c["quantization"]["granularity"], "per-channel");
    let (after, before) = (
        m["test"]["accuracy"].as_f64().unwrap(),
        c["original_test"]["accuracy"].as_f64().unwrap(),
    );
    assert!(
        (after - before).abs() <= 0.01,
        "int8 {after} vs f32 {before}"
    );
    evaluate_agrees(&int8, &m);

    // Static quantisation: every int8 layer's input scale calibrated on 4 training batches and
    // stored with the weights; accuracy within a point of f32 (bar set before the first run).
    let calibrated = dir.path().join("int8-static");
    let q = calibrated.to_str().unwrap();
    let m = int8_static(t, &calibrated, 4, 0.01);
    let quantization = &m["compression"]["quantization"];
    assert_eq!(quantization["calibration_batches"], 4);
    let scales = quantization["input_scales"].as_object().unwrap();
    let names: Vec<&str> = scales.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "classifier",
            "features.0.conv",
            "features.1.conv",
            "hidden.linear"
        ]
    );
    assert!(
        scales.values().all(|s| s.as_f64().unwrap() > 0.0),
        "{scales:?}"
    );
    // predict loads the int8 run as any other: three digits (pixels scaled to [0, 1] as the
    // embedded set's) get their labels, the f32 run's classes and probabilities within 0.05.
    let input = dir.path().join("digits.csv");
    let digits = [
        "0,0,5,13,9,1,0,0,0,0,13,15,10,15,5,0,0,3,15,2,0,11,8,0,0,4,12,0,0,8,8,0,0,5,8,0,0,9,8,0,0,4,11,0,1,12,7,0,0,2,14,5,10,12,0,0,0,0,6,13,10,0,0,0",
        "0,0,0,12,13,5,0,0,0,0,0,11,16,9,0,0,0,0,3,15,16,6,0,0,0,7,15,16,16,2,0,0,0,0,1,16,16,3,0,0,0,0,1,16,16,6,0,0,0,0,1,16,16,6,0,0,0,0,0,11,16,10,0,0",
        "0,0,0,4,15,12,0,0,0,0,3,16,15,14,0,0,0,0,8,13,8,16,0,0,0,0,1,6,15,11,0,0,0,1,8,13,15,1,0,0,0,9,16,16,5,0,0,0,0,3,13,16,16,11,5,0,0,0,0,3,11,16,9,0",
    ];
    let scaled: Vec<String> = digits
        .iter()
        .map(|row| {
            let pixels: Vec<String> = row
                .split(',')
                .map(|v| (v.parse::<f64>().unwrap() / 16.0).to_string())
                .collect();
            pixels.join(",") + "\n"
        })
        .collect();
    std::fs::write(&input, scaled.concat()).unwrap();
    let predict = |run: &str| -> Vec<Vec<String>> {
        let o = strata(&[
            "predict",
            "--run",
            run,
            "--input",
            input.to_str().unwrap(),
            "--output",
            "-",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .skip(1)
            .map(|l| l.split(',').map(String::from).collect())
            .collect()
    };
    let (float_rows, int8_rows) = (predict(t), predict(q));
    assert_eq!(float_rows.len(), 3);
    let classes: Vec<&str> = int8_rows.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(classes, ["0", "1", "2"]);
    for (f, i) in float_rows.iter().zip(&int8_rows) {
        assert_eq!(f[1], i[1], "classes: {f:?} vs {i:?}");
        for (a, b) in f[2..].iter().zip(&i[2..]) {
            let (a, b): (f64, f64) = (a.parse().unwrap(), b.parse().unwrap());
            assert!((a - b).abs() < 0.05, "{f:?} vs {i:?}");
        }
    }

    // Structured pruning: half of each block's channels removed, the layers rebuilt smaller
    // (fewer than half the parameters), 3 epochs of fine-tuning (bar set before the first
    // run: 0.9), loaded back by evaluate.
    let slim = dir.path().join("slim");
    let s = slim.to_str().unwrap();
    let o = strata(&[
        "compress",
        "--run",
        t,
        "--prune-channels",
        "0.5",
        "--fine-tune",
        "3",
        "--quiet",
        "--out",
        s,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = json(&slim.join("metrics.json"));
    let c = &m["compression"]["channels"];
    let (params, was) = (
        c["parameters"].as_u64().unwrap(),
        c["original_parameters"].as_u64().unwrap(),
    );
    assert!(2 * params < was, "{params} parameters vs {was}");
    assert_eq!(m["parameters"].as_u64(), Some(params));
    let accuracy = m["test"]["accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.9, "slimmed test accuracy {accuracy}");
    let config = std::fs::read_to_string(slim.join("config.toml")).unwrap();
    assert!(
        config.contains("channels = [\n    16,\n    32,\n]"),
        "{config}"
    );
    let o = strata(&["evaluate", "--run", s]);
    assert!(o.status.success(), "{}", stderr(&o));

    let bad = dir.path().join("bad-prune");
    let b = bad.to_str().unwrap();
    for (args, why) in [
        (vec!["--prune", "1"], "a sparsity must be in [0, 1)"),
        (vec!["--prune", "-0.1"], "a sparsity must be in [0, 1)"),
        (vec!["--curve", "0.5,1.5"], "a sparsity must be in [0, 1)"),
        (vec![], "nothing to do"),
        (
            vec!["--quantize", "int4"],
            "--quantize supports int8, got `int4`",
        ),
        (
            vec!["--quantize", "int8", "--calibrate", "0"],
            "--calibrate needs at least one batch",
        ),
        (
            vec!["--prune", "0.5", "--calibrate", "2"],
            "--calibrate goes with --quantize int8",
        ),
    ] {
        assert_clean_failure(
            &[&["compress", "--run", t, "--out", b][..], &args].concat(),
            why,
        );
    }
    assert!(!bad.exists(), "nothing written for refused settings");
    assert_clean_failure(
        &["compress", "--run", t, "--prune", "0.5", "--out", t],
        "is the run itself",
    );
    assert_clean_failure(
        &["compress", "--run", b, "--prune", "0.5", "--out", p],
        "not a run directory",
    );
}

/// `strata compress --run RUN --prune-channels 0.5 --fine-tune EPOCHS --out OUT`: its metrics
/// and the widths it recorded (`compression.channels.inner`).
fn prune_channels(run: &str, out: &str, epochs: &str) -> (serde_json::Value, Vec<u64>) {
    let o = strata(&[
        "compress",
        "--run",
        run,
        "--prune-channels",
        "0.5",
        "--fine-tune",
        epochs,
        "--quiet",
        "--out",
        out,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = json(&std::path::Path::new(out).join("metrics.json"));
    let inner = m["compression"]["channels"]["inner"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    (m, inner)
}

/// `strata compress --quantize int8 --per-channel --calibrate BATCHES` of `run` into `out`: the
/// test accuracy within `bar` of the f32 run's, and `evaluate` agreeing; returns the int8
/// run's metrics.
fn int8_static(run: &str, out: &std::path::Path, batches: usize, bar: f64) -> serde_json::Value {
    let batches = batches.to_string();
    let o = strata(&[
        "compress",
        "--run",
        run,
        "--quantize",
        "int8",
        "--per-channel",
        "--calibrate",
        &batches,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = json(&out.join("metrics.json"));
    let (after, before) = (
        m["test"]["accuracy"].as_f64().unwrap(),
        m["compression"]["original_test"]["accuracy"]
            .as_f64()
            .unwrap(),
    );
    assert!(
        (after - before).abs() <= bar,
        "static int8 {after} vs f32 {before}"
    );
    evaluate_agrees(out, &m);
    m
}

/// The names of the layers whose input scales an int8 run's `metrics` hold.
fn calibrated_layers(metrics: &serde_json::Value) -> Vec<String> {
    metrics["compression"]["quantization"]["input_scales"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// `strata evaluate` loads the run in `dir` and scores it as its `metrics` say.
fn evaluate_agrees(dir: &std::path::Path, metrics: &serde_json::Value) {
    let o = strata(&["evaluate", "--run", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        json(&dir.join("evaluation.json"))["test"]["accuracy"],
        metrics["test"]["accuracy"]
    );
}

/// Channel pruning inside a ResNet's residual blocks: half of each block's first-convolution
/// channels removed (the blocks' outputs stay, tied by the residual sums), the run's config
/// records the widths, fine-tuning recovers (bar set before the first run: 0.9 on the test
/// split), and `evaluate` loads the smaller run.
#[test]
fn pruning_the_channels_inside_a_resnets_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("resnet");
    let r = run.to_str().unwrap();
    train(
        &run,
        &[
            "train",
            "--model",
            "resnet20",
            "--dataset",
            "digits",
            "--epochs",
            "5",
        ],
    );
    let slim = dir.path().join("slim");
    let s = slim.to_str().unwrap();
    let (m, inner) = prune_channels(r, s, "3");
    let c = &m["compression"]["channels"];
    let (params, was) = (
        c["parameters"].as_u64().unwrap(),
        c["original_parameters"].as_u64().unwrap(),
    );
    // Each block's two convolutions lose half their weights; the stem, the projections and
    // the head stay.
    assert!(10 * params < 6 * was, "{params} parameters vs {was}");
    assert_eq!(inner, vec![8, 8, 8, 16, 16, 16, 32, 32, 32]);
    let accuracy = m["test"]["accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.9, "pruned ResNet's test accuracy {accuracy}");
    let config = std::fs::read_to_string(slim.join("config.toml")).unwrap();
    assert!(config.contains("inner = ["), "{config}");
    evaluate_agrees(&slim, &m);
    // Int8, static: every convolution (batch norm folded in) and the head calibrated on 2
    // batches, named as in the weights file; the test accuracy within a point of f32 (bar set
    // before the first run).
    let scales = calibrated_layers(&int8_static(r, &dir.path().join("int8"), 2, 0.01));
    assert_eq!(scales.len(), 1 + 9 * 2 + 2 + 1, "{scales:?}");
    for name in [
        "resnet.conv1",
        "resnet.layer1.0.conv1",
        "resnet.layer1.0.conv2",
        "resnet.layer2.0.downsample.0",
        "resnet.layer3.2.conv2",
        "resnet.fc",
    ] {
        assert!(scales.contains(&name.to_string()), "{name}: {scales:?}");
    }
    // A share outside [0, 1): one clear line, nothing written.
    let bad = dir.path().join("bad");
    assert_clean_failure(
        &[
            "compress",
            "--run",
            r,
            "--prune-channels",
            "1.5",
            "--out",
            bad.to_str().unwrap(),
        ],
        "--prune-channels must be in [0, 1)",
    );
    assert!(!bad.exists());
}

/// Channel pruning of a VGG: half of every convolution's channels removed, the next
/// convolution and the classifier (which reads each channel's pooled block) shrunk with them,
/// the widths in the run's config, and `evaluate` loads the smaller run. The short training of
/// `deep_cnn.rs`'s VGG test (bar 0.5 there) and the same bar after 2 fine-tuning epochs.
#[test]
fn pruning_a_vggs_channels() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("vgg");
    let r = run.to_str().unwrap();
    train(
        &run,
        &[
            "train",
            "--model",
            "vgg11_bn",
            "--resize",
            "32",
            "--hidden",
            "64",
            "--epochs",
            "3",
            "--train-fraction",
            "0.3",
        ],
    );
    let slim = dir.path().join("slim");
    let s = slim.to_str().unwrap();
    let (m, inner) = prune_channels(r, s, "2");
    let c = &m["compression"]["channels"];
    assert_eq!(inner, vec![32, 64, 128, 128, 256, 256, 256, 256]);
    // Every convolution keeps a quarter of its weights (half its inputs, half its outputs).
    let (params, was) = (
        c["parameters"].as_u64().unwrap(),
        c["original_parameters"].as_u64().unwrap(),
    );
    assert!(10 * params < 3 * was, "{params} parameters vs {was}");
    let accuracy = m["test"]["accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.5, "pruned VGG's test accuracy {accuracy}");
    evaluate_agrees(&slim, &m);
    // Int8, static: 8 convolutions with their batch norms and ReLUs folded in, 3 linear layers;
    // the test accuracy within two points of f32 (bar set before the first run).
    let scales = calibrated_layers(&int8_static(r, &dir.path().join("int8"), 2, 0.02));
    assert_eq!(scales.len(), 8 + 3, "{scales:?}");
    assert!(
        scales.contains(&"vgg.features.0.conv".to_string()),
        "{scales:?}"
    );
    assert!(
        scales.contains(&"vgg.classifier.6".to_string()),
        "{scales:?}"
    );
    // Widths that do not fit the architecture (8 convolutions): one clear line.
    let config = std::fs::read_to_string(slim.join("config.toml")).unwrap();
    let start = config.find("inner = [").expect("widths in the config");
    let end = start + config[start..].find(']').unwrap() + 1;
    let bad = format!("{}inner = [32, 64]{}", &config[..start], &config[end..]);
    std::fs::write(slim.join("config.toml"), bad).unwrap();
    assert_clean_failure(
        &["evaluate", "--run", s],
        "vgg11_bn has 8 convolutions: network.inner needs 8 widths above 0",
    );
}
