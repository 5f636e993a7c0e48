//! Transfer learning through the `strata` binary: fine-tuning from a run (frozen backbone,
//! new head, thawing later), `strata predict` with foreign weights, torchvision's full-size
//! ResNet-18 and VGG-11-BN against PyTorch (when it is installed), and the errors.

mod common;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_clean_failure, json, stderr, strata};

/// The float32 tensors of a safetensors file, by name.
fn safetensors(path: &Path) -> BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut out = BTreeMap::new();
    for (k, v) in header.as_object().unwrap() {
        if k == "__metadata__" {
            continue;
        }
        assert_eq!(v["dtype"], "F32", "{k}");
        let (a, b) = (
            v["data_offsets"][0].as_u64().unwrap() as usize,
            v["data_offsets"][1].as_u64().unwrap() as usize,
        );
        let values = data[a..b]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        out.insert(k.clone(), values);
    }
    out
}

fn train(args: &[&str]) {
    let o = strata(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
}

/// A ResNet-20 trained on the digits for two epochs: the pretrained model.
fn pretrain(dir: &Path) -> PathBuf {
    let out = dir.join("pre");
    train(&[
        "train",
        "--model",
        "resnet20",
        "--epochs",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    out
}

#[test]
fn fine_tuning_from_a_run_freezes_the_backbone_replaces_the_head_and_thaws_it() {
    let dir = tempfile::tempdir().unwrap();
    let pre = pretrain(dir.path());
    let tune = |name: &str, extra: &[&str]| -> PathBuf {
        let out = dir.path().join(name);
        let mut args = vec![
            "train",
            "--model",
            "resnet20",
            "--epochs",
            "2",
            "--train-fraction",
            "0.2",
            "--init-from-run",
            pre.to_str().unwrap(),
            "--new-head",
            "--freeze",
            "backbone",
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ];
        args.extend_from_slice(extra);
        train(&args);
        out
    };
    let p = safetensors(&pre.join("model.safetensors"));

    // Frozen throughout: every backbone tensor, batch-norm running statistics included, is
    // the pretrained one; the head is new and trained.
    let frozen = tune("frozen", &[]);
    let f = safetensors(&frozen.join("model.safetensors"));
    assert_eq!(f.len(), p.len());
    for (k, v) in &p {
        if k.starts_with("ResNet.resnet.fc.") {
            assert_ne!(&f[k], v, "{k} should be a new, trained head");
        } else {
            assert_eq!(&f[k], v, "{k} should be frozen");
        }
    }
    let init = json(&frozen.join("init.json"));
    assert_eq!(init["loaded"].as_array().unwrap().len(), p.len() - 2);
    let skipped: Vec<&str> = init["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        skipped,
        ["ResNet.resnet.fc.bias", "ResNet.resnet.fc.weight"]
    );
    let config = std::fs::read_to_string(frozen.join("config.toml")).unwrap();
    assert!(config.contains("[transfer]") && config.contains("freeze = \"backbone\""));
    // 20% of the 1168 training digits, stratified.
    let m = json(&frozen.join("metrics.json"));
    assert!(m["test"]["accuracy"].as_f64().unwrap() > 0.5, "{m}");

    // Thawed at epoch 2, with a tenth of the head's rate: the backbone moves.
    let thawed = tune(
        "thawed",
        &["--unfreeze-at-epoch", "2", "--backbone-lr-factor", "0.1"],
    );
    let t = safetensors(&thawed.join("model.safetensors"));
    let key = "ResNet.resnet.layer1.0.conv1.weight";
    assert_ne!(t[key], p[key]);
    // Its first epoch, still frozen, is the frozen run's first epoch.
    let first = |run: &Path| {
        std::fs::read_to_string(run.join("history.csv"))
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .to_string()
    };
    let (a, b) = (first(&frozen), first(&thawed));
    assert_eq!(a.split(',').nth(2), b.split(',').nth(2), "{a} / {b}");
}

#[test]
fn a_run_still_going_lends_its_best_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let pre = dir.path().join("going");
    // Paused after its first epoch: checkpoints, no model.safetensors yet.
    train(&[
        "train",
        "--model",
        "resnet20",
        "--epochs",
        "3",
        "--pause-after",
        "1",
        "--out",
        pre.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(!pre.join("model.safetensors").exists());
    let out = dir.path().join("tuned");
    train(&[
        "train",
        "--model",
        "resnet20",
        "--epochs",
        "1",
        "--init-from-run",
        pre.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let init = json(&out.join("init.json"));
    assert!(
        init["source"].as_str().unwrap().ends_with("best.bpk"),
        "{init}"
    );
    // The same task: the head fits and loads too.
    assert!(init["skipped"].as_array().unwrap().is_empty(), "{init}");
    assert!(
        init["loaded"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == "ResNet.resnet.fc.weight")
    );
}

#[test]
fn transfer_settings_that_cannot_work_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let out_s = out.to_str().unwrap();
    let base = |extra: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = ["train", "--epochs", "1", "--out", out_s]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let fails = |extra: &[&'static str], expect: &str| {
        let args = base(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_clean_failure(&refs, expect);
    };
    let cases: [(&[&'static str], &str); 10] = [
        (
            &["--model", "cnn", "--freeze", "backbone"],
            "need a model with a backbone and a head",
        ),
        (
            &["--model", "resnet20", "--freeze", "4"],
            "cannot freeze 4 stages: this model has 3",
        ),
        (
            &["--model", "resnet20", "--freeze", "most"],
            "freeze `most`",
        ),
        (
            &["--model", "resnet20", "--unfreeze-at-epoch", "3"],
            "--unfreeze-at-epoch needs something frozen",
        ),
        (
            &["--model", "mlp", "--init-from", "w.pt"],
            "--init-from reads torchvision's ResNet and VGG weights",
        ),
        (
            &["--model", "resnet20", "--init-from", "/nonexistent/w.pt"],
            "no such file",
        ),
        (
            &["--model", "resnet20", "--init-from-run", "/nonexistent"],
            "not a Strata run to start from",
        ),
        (&["--model", "vgg11"], "needs at least 32x32 pixels"),
        (
            &["--resize", "0x8"],
            "--resize `0x8`: each side must be in 1..=",
        ),
        (
            &["--train-fraction", "1.5"],
            "train fraction must be in (0, 1]",
        ),
    ];
    for (extra, expect) in cases {
        fails(extra, expect);
    }
    assert!(!out.exists(), "nothing is written for refused settings");

    // Weights of another architecture: a CNN run into a ResNet names the keys.
    let cnn = dir.path().join("cnn");
    train(&[
        "train",
        "--epochs",
        "1",
        "--out",
        cnn.to_str().unwrap(),
        "--quiet",
    ]);
    let o = strata(&[
        "train",
        "--model",
        "resnet20",
        "--epochs",
        "1",
        "--init-from-run",
        cnn.to_str().unwrap(),
        "--out",
        out_s,
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("missing from the file (105): ResNet.resnet.bn1.bias"),
        "{e}"
    );
    assert!(e.contains("Cnn.classifier.weight"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}

/// Writes `rows` images of `[c, h, w]` as a float32 `.npy` batch.
fn write_npy(path: &Path, shape: [usize; 4], values: &[f32]) {
    std::fs::write(path, strata::data::npy_f32_bytes(&shape, values).unwrap()).unwrap();
}

/// The logits of a `strata predict --weights` CSV.
fn read_logits(path: &Path) -> Vec<Vec<f32>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("row,logit_0,logit_1"), "{header}");
    lines
        .map(|l| l.split(',').skip(1).map(|v| v.parse().unwrap()).collect())
        .collect()
}

#[test]
fn predict_with_foreign_weights_gives_the_models_logits() {
    use burn::module::Module;
    use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
    use burn::tensor::{Device, Tensor, TensorData};
    use strata::arch::ResNetConfig;

    let dir = tempfile::tempdir().unwrap();
    let pre = pretrain(dir.path());
    // The run's ResNet, exported in PyTorch's layout (torchvision names, linear [out, in]).
    let d = Device::flex();
    let mut net = ResNetConfig::by_name("resnet20", 1, 10)
        .unwrap()
        .init(&d)
        .unwrap();
    let mut store = SafetensorsStore::from_file(pre.join("model.safetensors"))
        .with_key_remapping(r"^ResNet\.resnet\.", "");
    let r = net.load_from(&mut store).unwrap();
    assert!(r.missing.is_empty() && r.errors.is_empty(), "{r:?}");
    let torch = dir.path().join("resnet20.safetensors");
    let mut out = SafetensorsStore::from_file(&torch).with_to_adapter(BurnToPyTorchAdapter);
    net.save_into(&mut out).unwrap();

    // Five digits, NCHW.
    let digits = strata::data::digits();
    let x: Vec<f32> = (0..5).flat_map(|i| digits.row(i * 100).to_vec()).collect();
    let npy = dir.path().join("x.npy");
    write_npy(&npy, [5, 1, 8, 8], &x);
    let csv = dir.path().join("logits.csv");
    let o = strata(&[
        "predict",
        "--model",
        "resnet20",
        "--weights",
        torch.to_str().unwrap(),
        "--num-classes",
        "10",
        "--in-channels",
        "1",
        "--input",
        npy.to_str().unwrap(),
        "--output",
        csv.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = read_logits(&csv);
    let want: Vec<f32> = net
        .valid()
        .forward(Tensor::from_data(TensorData::new(x, [5, 1, 8, 8]), &d))
        .into_data()
        .iter::<f32>()
        .collect();
    assert_eq!(got.len(), 5);
    assert_eq!(
        got.concat().len(),
        want.len(),
        "one logit per class per image"
    );
    for (g, w) in got.concat().iter().zip(&want) {
        assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{g} vs {w}");
    }

    // Bad input: another head size, another architecture, channels, shape, a bad file.
    let run = |extra: &[&str]| {
        let mut args = vec![
            "predict",
            "--weights",
            torch.to_str().unwrap(),
            "--input",
            npy.to_str().unwrap(),
            "--output",
            csv.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let fails = |extra: &[&str], expect: &str| {
        let args = run(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_clean_failure(&refs, expect);
    };
    fails(
        &["--model", "resnet20", "--in-channels", "1"],
        "does not fit resnet20 with 1000 classes: not loaded: fc.bias",
    );
    fails(
        &[
            "--model",
            "resnet32",
            "--in-channels",
            "1",
            "--num-classes",
            "10",
        ],
        "missing from the file (60): layer1.3.bn1.bias",
    );
    fails(
        &["--model", "resnet20", "--num-classes", "10"],
        "1 channels, but the model reads 3",
    );
    fails(
        &["--model", "mlp", "--in-channels", "1"],
        "--weights loads torchvision's layout",
    );
    std::fs::write(&npy, b"not numpy").unwrap();
    fails(
        &["--model", "resnet20", "--in-channels", "1"],
        "not a .npy file",
    );
    // Headers that crashed the hand-written reader: a broken shape, a shape whose size
    // overflows, a shape that disagrees with the data.
    for (shape, data, expect) in [
        (")", 0, "unreadable .npy header"),
        ("(4294967296, 4294967296, 4294967296)", 4, "is too large"),
        (
            "(1, 1, 8, 8)",
            100,
            "needs 256 bytes of data, the file has 100",
        ),
    ] {
        let mut h = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        b.extend(std::iter::repeat_n(0u8, data));
        std::fs::write(&npy, b).unwrap();
        fails(&["--model", "resnet20", "--in-channels", "1"], expect);
    }
    write_npy(&npy, [1, 1, 8, 8], &[0.0; 64][..]);
    let cut = dir.path().join("cut.safetensors");
    let bytes = std::fs::read(&torch).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    assert_clean_failure(
        &[
            "predict",
            "--model",
            "resnet20",
            "--weights",
            cut.to_str().unwrap(),
            "--in-channels",
            "1",
            "--num-classes",
            "10",
            "--input",
            npy.to_str().unwrap(),
        ],
        "weights ",
    );
}

/// A Python with PyTorch and torchvision (`STRATA_PYTHON` or `python3`), if there is one.
fn torchvision_python() -> Option<String> {
    let python = std::env::var("STRATA_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import torch, torchvision, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(python)
}

#[test]
fn torchvision_resnet18_and_vgg11_bn_give_pytorchs_logits() {
    let Some(python) = torchvision_python() else {
        // Required only with STRATA_REQUIRE=torchvision: CI has no PyTorch.
        return strata::tensor::require::unmet(
            "torchvision",
            "no Python with torch and torchvision (set STRATA_PYTHON): the full-size torchvision parity check did not run",
        );
    };
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/torchvision_reference.py"
    );
    let o = Command::new(&python)
        .args([script, dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for name in ["resnet18", "vgg11_bn"] {
        let csv = dir.path().join(format!("{name}.csv"));
        let o = strata(&[
            "predict",
            "--model",
            name,
            "--weights",
            dir.path().join(format!("{name}.pt")).to_str().unwrap(),
            "--input",
            dir.path().join("x.npy").to_str().unwrap(),
            "--output",
            csv.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let got = read_logits(&csv);
        let (shape, want) =
            strata::data::read_npy_f32(&dir.path().join(format!("{name}_logits.npy"))).unwrap();
        assert_eq!(shape, [2, 1000]);
        // Measured: 2.8e-6 (ResNet-18, logits up to 3.4), 6.7e-7 (VGG-11-BN).
        let worst = strata::tensor::compare::check_close(name, &got.concat(), &want, 1e-4)
            .unwrap_or_else(|e| panic!("{e}"));
        eprintln!("{name}: largest logit difference from torchvision {worst:.2e}");
    }
}
