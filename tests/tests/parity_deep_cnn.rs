//! Strata's ResNet, VGG and batch norm against PyTorch, on torchvision-layout weights.
//!
//! `tests/fixtures/gen_resnet.py` writes out torchvision's `BasicBlock`, `Bottleneck` and
//! `ResNet` layout (same module names), builds a CIFAR-stem net of two basic stages and an
//! ImageNet-stem net of one bottleneck stage, gives every `BatchNorm2d` random weight, bias and
//! running statistics, and saves `model.state_dict()`. Here each `.pt` loads by name through
//! burn-store's `PytorchStore` (only `num_batches_tracked` is left over), then:
//! - evaluation mode (`model.eval()(x)`): logits within 1e-4;
//! - training mode (`model.train()(x)`): logits within 1e-4, gradients of `(logits * R).sum()`
//!   with respect to x and the weights within 1e-4, and every running mean and variance after
//!   that one step within 1e-5 (PyTorch's momentum 0.1 and unbiased variance).

use burn::module::Module;
use burn::store::{ModuleSnapshot, PytorchStore};
use burn::tensor::{Device, Tensor, TensorData};
use serde_json::Value;
use strata::arch::{ResNet, ResNetConfig, Stem, VggConfig};
use strata::layers::BatchNorm2d;
use strata::tensor::convert::to_vec;
use strata_tests::close_to_json as close;
use strata_tests::{assert_complete, pytorch_resnet};

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/resnet.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn tensor4(v: &Value, d: &Device) -> Tensor<4> {
    let (data, shape) = strata_tests::json_tensor(v);
    Tensor::from_data(TensorData::new(data, shape), d)
}

/// Every batch norm of the model with its PyTorch name.
fn norms(m: &ResNet) -> Vec<(String, &BatchNorm2d)> {
    let mut out = vec![("bn1".to_string(), &m.bn1)];
    for (s, stage) in m.stages().iter().enumerate() {
        for (b, block) in stage.iter().enumerate() {
            let p = format!("layer{}.{b}", s + 1);
            out.push((format!("{p}.bn1"), &block.bn1));
            out.push((format!("{p}.bn2"), &block.bn2));
            if let Some(bn3) = &block.bn3 {
                out.push((format!("{p}.bn3"), bn3));
            }
            if let Some((_, bn)) = &block.downsample {
                out.push((format!("{p}.downsample.1"), bn));
            }
        }
    }
    out
}

#[test]
fn resnets_match_pytorch_in_evaluation_and_training() {
    let all = fixture();
    for case in ["cifar_basic", "imagenet_bottleneck"] {
        let f = &all[case];
        // Evaluation: running statistics.
        let plain = Device::flex();
        let model = pytorch_resnet(case, f, &plain);
        let y = model.forward(tensor4(&f["x"], &plain));
        close(
            &format!("{case} eval logits"),
            to_vec(y),
            &f["eval_logits"],
            1e-4,
        );

        // Training: batch statistics, gradients, running update.
        let ad = Device::flex().autodiff();
        let model = pytorch_resnet(case, f, &ad);
        let x = tensor4(&f["x"], &ad).require_grad();
        let y = model.forward(x.clone());
        close(
            &format!("{case} train logits"),
            to_vec(y.clone()),
            &f["train_logits"],
            1e-4,
        );
        let r: Tensor<2> = {
            let (data, shape) = strata_tests::json_tensor(&f["r"]);
            Tensor::from_data(TensorData::new(data, shape), &ad)
        };
        let grads = (y * r).sum().backward();
        close(
            &format!("{case} grad x"),
            to_vec(x.grad(&grads).unwrap()),
            &f["grad_x"],
            1e-4,
        );
        let g = &f["grad_params"];
        close(
            &format!("{case} grad conv1.weight"),
            to_vec(model.conv1.weight.val().grad(&grads).unwrap()),
            &g["conv1.weight"],
            1e-4,
        );
        close(
            &format!("{case} grad fc.weight"),
            to_vec(model.fc.weight.val().grad(&grads).unwrap().transpose()),
            &g["fc.weight"],
            1e-4,
        );
        for (name, bn) in norms(&model) {
            close(
                &format!("{case} grad {name}.weight"),
                to_vec(bn.weight.val().grad(&grads).unwrap()),
                &g[format!("{name}.weight")],
                1e-4,
            );
            let run = &f["running_after_train"];
            close(
                &format!("{case} {name}.running_mean"),
                to_vec(bn.running_mean.value_sync()),
                &run[format!("{name}.running_mean")],
                1e-5,
            );
            close(
                &format!("{case} {name}.running_var"),
                to_vec(bn.running_var.value_sync()),
                &run[format!("{name}.running_var")],
                1e-5,
            );
        }
        let last = model.stages()[f["blocks"].as_array().unwrap().len() - 1][0]
            .downsample
            .as_ref()
            .unwrap();
        let name = format!(
            "layer{}.0.downsample.0.weight",
            f["blocks"].as_array().unwrap().len()
        );
        close(
            &format!("{case} grad {name}"),
            to_vec(last.0.weight.val().grad(&grads).unwrap()),
            &g[name.as_str()],
            1e-4,
        );
        // Back in evaluation mode the updated running statistics are used: not the logits of
        // before the step.
        let after = model.valid().forward(tensor4(&f["x"], &plain));
        let before = strata_tests::json_tensor(&f["eval_logits"]).0;
        let moved = strata::tensor::compare::max_abs_diff(&to_vec(after), &before)
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert!(
            moved > 1e-4,
            "{case}: the running statistics did not change"
        );
    }
}

#[test]
fn weights_of_another_architecture_are_reported() {
    // The bottleneck net's weights into the basic one: the missing and the unexpected keys are
    // named, and shapes that differ are errors.
    let device = Device::flex();
    let mut model = ResNetConfig::new(2, 3, vec![1, 1], vec![8, 16])
        .with_stem(Stem::Cifar)
        .init(&device)
        .unwrap();
    let path = format!(
        "{}/fixtures/resnet/imagenet_bottleneck.pt",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut store = PytorchStore::from_file(path).allow_partial(true);
    let e = format!("{:?}", model.load_from(&mut store).unwrap_err());
    for want in [
        "layer2.0.conv1.weight",             // missing in the file
        "layer1.0.conv3.weight",             // in the file, no place in the model
        "Shape mismatch for 'conv1.weight'", // 7x7 there, 3x3 here
    ] {
        assert!(e.contains(want), "expected `{want}` in {e}");
    }
}

/// `tests/fixtures/gen_vgg.py`: torchvision's VGG layout (cfg [8, M, 16, M], batch norm,
/// pool 2, hidden 16, dropout 0 for a deterministic training pass), loaded with
/// `Vgg::pytorch_key_remapping`.
#[test]
fn vgg_matches_pytorch_in_evaluation_and_training() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/vgg.json");
    let all: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let f = &all["vgg_small_bn"];
    let load = |device: &Device| {
        let mut m = VggConfig::new(1, 4, vec![8, 0, 16, 0])
            .with_batch_norm(true)
            .with_pool_size(2)
            .with_d_hidden(16)
            .with_dropout(0.0)
            .init(device)
            .unwrap();
        let file = format!(
            "{}/fixtures/vgg/vgg_small_bn.pt",
            env!("CARGO_MANIFEST_DIR")
        );
        // torchvision's positions are kept: burn-store would renumber them contiguously.
        let mut store = PytorchStore::from_file(file)
            .allow_partial(false)
            .map_indices_contiguous(false);
        for (from, to) in m.pytorch_key_remapping() {
            store = store.with_key_remapping(&from, &to);
        }
        assert_complete("vgg_small_bn", &m.load_from(&mut store).unwrap());
        m
    };
    let plain = Device::flex();
    let y = load(&plain).forward(tensor4(&f["x"], &plain));
    close("vgg eval logits", to_vec(y), &f["eval_logits"], 1e-4);

    let ad = Device::flex().autodiff();
    let m = load(&ad);
    let x = tensor4(&f["x"], &ad).require_grad();
    let y = m.forward(x.clone());
    close(
        "vgg train logits",
        to_vec(y.clone()),
        &f["train_logits"],
        1e-4,
    );
    let (data, shape) = strata_tests::json_tensor(&f["r"]);
    let r: Tensor<2> = Tensor::from_data(TensorData::new(data, shape), &ad);
    let grads = (y * r).sum().backward();
    close(
        "vgg grad x",
        to_vec(x.grad(&grads).unwrap()),
        &f["grad_x"],
        1e-4,
    );
    let g = &f["grad_params"];
    let conv0 = m.features[0].conv.as_ref().unwrap();
    close(
        "vgg grad features.0.weight",
        to_vec(conv0.weight.val().grad(&grads).unwrap()),
        &g["features.0.weight"],
        1e-4,
    );
    let fc0 = m.classifier[0].as_ref().unwrap();
    close(
        "vgg grad classifier.0.weight",
        to_vec(fc0.weight.val().grad(&grads).unwrap().transpose()),
        &g["classifier.0.weight"],
        1e-4,
    );
    for i in [1, 5] {
        let bn = m.features[i].norm.as_ref().unwrap();
        let run = &f["running_after_train"];
        close(
            &format!("vgg features.{i}.running_var"),
            to_vec(bn.running_var.value_sync()),
            &run[format!("features.{i}.running_var")],
            1e-5,
        );
        close(
            &format!("vgg grad features.{i}.weight"),
            to_vec(bn.weight.val().grad(&grads).unwrap()),
            &g[format!("features.{i}.weight")],
            1e-4,
        );
    }
}
