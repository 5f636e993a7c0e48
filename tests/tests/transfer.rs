//! Transfer learning: PyTorch weights (torchvision's names, `tests/fixtures/gen_resnet.py`)
//! loaded into a ResNet whose head differs, what the load report says, the same weights from
//! safetensors, and the errors for weights that do not fit the backbone.

use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use serde_json::Value;
use strata::arch::{ResNet, ResNetConfig, Stem};
use strata::tensor::convert::to_vec;
use strata::train::{Error, Layout, LoadReport, Pretrained, load_pretrained};
use strata_tests::close_to_json as close;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The `cifar_basic` layout (2 input channels, stages of one basic block, 8 and 16 wide) with
/// `classes` outputs.
fn cifar(classes: usize, widths: [usize; 2]) -> ResNet {
    ResNetConfig::new(2, classes, vec![1, 1], widths.to_vec())
        .with_stem(Stem::Cifar)
        .init(&Device::flex())
        .unwrap()
}

fn load(model: ResNet, file: &str, new_head: bool) -> Result<(ResNet, LoadReport), Error> {
    let path = fixture(file);
    let head = ["fc".to_string()];
    load_pretrained(
        model,
        &Pretrained {
            path: &path,
            layout: Layout::Torch,
            head: &head,
            new_head,
            remap: &[],
        },
    )
}

fn cases() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("resnet.json")).unwrap()).unwrap()
}

fn eval_logits(m: &ResNet, f: &Value) -> Vec<f32> {
    let (data, shape) = strata_tests::json_tensor(&f["x"]);
    let d = Device::flex();
    to_vec(m.forward(Tensor::from_data(TensorData::new(data, shape), &d)))
}

#[test]
fn a_head_of_another_size_is_skipped_and_reported() {
    let model = cifar(7, [8, 16]);
    let fc_before = to_vec(model.fc.weight.val());
    let (m, report) = load(model, "resnet/cifar_basic.pt", false).unwrap();
    let skipped: Vec<&str> = report.skipped.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(skipped, ["fc.bias", "fc.weight"]);
    for s in &report.skipped {
        assert!(s.reason.contains("Shape mismatch"), "{s:?}");
    }
    // Every tensor of the model but the head's two loaded.
    let all = burn::store::ModuleSnapshot::collect(&m, None, None, false).len();
    assert_eq!(report.loaded.len(), all - 2);
    assert!(
        report
            .loaded
            .iter()
            .any(|k| k == "layer2.0.downsample.0.weight")
    );
    assert!(
        report
            .unused
            .iter()
            .all(|k| k.ends_with("num_batches_tracked") || k.starts_with("fc.")),
        "{:?}",
        report.unused
    );
    // The head kept its initial values.
    assert_eq!(to_vec(m.fc.weight.val()), fc_before);
    let text = report.to_string();
    assert!(text.contains("skipped fc.weight: Shape mismatch"), "{text}");
}

#[test]
fn a_matching_head_loads_and_gives_pytorchs_logits_unless_a_new_one_is_asked_for() {
    let f = &cases()["cifar_basic"];
    let (m, report) = load(cifar(3, [8, 16]), "resnet/cifar_basic.pt", false).unwrap();
    assert!(report.skipped.is_empty(), "{report}");
    close(
        "partially loaded eval logits",
        eval_logits(&m, f),
        &f["eval_logits"],
        1e-4,
    );

    let model = cifar(3, [8, 16]);
    let fc_before = to_vec(model.fc.weight.val());
    let (m, report) = load(model, "resnet/cifar_basic.pt", true).unwrap();
    assert_eq!(to_vec(m.fc.weight.val()), fc_before);
    assert_eq!(report.skipped.len(), 2);
    assert!(report.skipped[0].reason.contains("new head"));
    assert!(!report.loaded.iter().any(|k| k.starts_with("fc.")));
}

#[test]
fn the_same_weights_load_from_safetensors_in_pytorchs_layout() {
    let f = &cases()["cifar_basic"];
    let (m, report) = load(cifar(3, [8, 16]), "resnet/cifar_basic.safetensors", false).unwrap();
    assert!(report.skipped.is_empty(), "{report}");
    close(
        "safetensors eval logits",
        eval_logits(&m, f),
        &f["eval_logits"],
        1e-4,
    );
}

fn weights_error(model: ResNet, file: &str) -> String {
    match load(model, file, false) {
        Err(e @ Error::Weights { .. }) => e.to_string(),
        other => panic!("expected a weights error, got {:?}", other.map(|(_, r)| r)),
    }
}

#[test]
fn weights_that_do_not_fit_are_clear_errors() {
    // Another architecture: names missing, unused, and a stem of another shape.
    let e = weights_error(cifar(3, [8, 16]), "resnet/imagenet_bottleneck.pt");
    for want in [
        "missing from the file (",
        "layer2.0.conv1.weight",
        "in the file but not in the model (",
        "layer1.0.conv3.weight",
        "Shape mismatch for 'conv1.weight'",
    ] {
        assert!(e.contains(want), "expected `{want}` in {e}");
    }
    // The right names, one stage of another width: each mismatched key named.
    let e = weights_error(cifar(3, [8, 32]), "resnet/cifar_basic.pt");
    assert!(e.contains("layer2.0.conv1.weight"), "{e}");
    assert!(e.contains("layer2.0.bn2.running_var"), "{e}");
    assert!(!e.contains("missing from the file"), "{e}");

    // Truncated files.
    let dir = tempfile::tempdir().unwrap();
    for file in ["resnet/cifar_basic.pt", "resnet/cifar_basic.safetensors"] {
        let bytes = std::fs::read(fixture(file)).unwrap();
        let name = std::path::Path::new(file).file_name().unwrap();
        let cut = dir.path().join(name);
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let e = weights_error(cifar(3, [8, 16]), cut.to_str().unwrap());
        assert!(e.contains(cut.to_str().unwrap()), "{e}");
    }
    // No file, and a file of no known kind.
    let e = weights_error(cifar(3, [8, 16]), "resnet/absent.pt");
    assert!(e.contains("no such file"), "{e}");
    let e = weights_error(cifar(3, [8, 16]), "resnet.json");
    assert!(e.contains("cannot read `.json` files"), "{e}");
}

mod no_panic {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// A `.pt` (zip + pickle) or `.safetensors` (length + JSON header) file with bytes
        /// flipped (half the time within the first 256, where the headers are) and cut short
        /// gives weights or an `Err`, never a panic or a hang.
        #[test]
        fn damaged_weight_files_never_panic(
            safetensors in any::<bool>(),
            flips in prop::collection::vec(
                (any::<bool>(), any::<prop::sample::Index>(), any::<u8>()),
                1..6,
            ),
            cut in any::<prop::sample::Index>(),
        ) {
            let file = if safetensors {
                "resnet/cifar_basic.safetensors"
            } else {
                "resnet/cifar_basic.pt"
            };
            let mut bytes = std::fs::read(fixture(file)).unwrap();
            for (head, at, v) in &flips {
                let span = if *head { bytes.len().min(256) } else { bytes.len() };
                let i = at.index(span);
                bytes[i] ^= v | 1;
            }
            let keep = cut.index(bytes.len() + 1).max(bytes.len() * 3 / 4);
            bytes.truncate(keep);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(std::path::Path::new(file).file_name().unwrap());
            std::fs::write(&path, &bytes).unwrap();
            let done = strata::tensor::require::within(std::time::Duration::from_secs(30), move || {
                let head = ["fc".to_string()];
                let r = load_pretrained(
                    cifar(3, [8, 16]),
                    &Pretrained {
                        path: &path,
                        layout: Layout::Torch,
                        head: &head,
                        new_head: false,
                        remap: &[],
                    },
                );
                drop(dir);
                r.is_ok()
            });
            prop_assert!(done.is_some(), "{file}: no answer within 30 s");
        }
    }
}
