//! Fine-tune a ResNet: start from pretrained weights, replace the head for the new classes,
//! freeze the backbone for the first epochs, then train everything with a smaller rate for the
//! backbone.
//!
//! With `--weights FILE` the start is a PyTorch file with torchvision's names (for example
//! `torch.save(torchvision.models.resnet18(weights="DEFAULT").state_dict(), "resnet18.pt")`),
//! for `--model` (default resnet18), fine-tuned on the digits resized to 32x32. Without it
//! (what CI runs: it has no PyTorch), the example first pretrains a ResNet-20 on the digits
//! for one epoch, writes its weights in PyTorch's layout (torchvision's names, linear weights
//! `[out, in]`, as `safetensors.torch.save_file` writes them) and starts from that file.
//!
//! ```text
//! cargo run --release --example fine_tune_resnet -- [--weights resnet18.pt --model resnet18] [--epochs N]
//! ```

use std::path::{Path, PathBuf};

use strata::arch::ResNetConfig;
use strata::burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
use strata::burn::tensor::Device;
use strata::run::{Freeze, RunConfig, train};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let epochs: usize = flag("--epochs").map_or(Ok(6), |v| v.parse())?;
    let out = PathBuf::from(flag("--out").unwrap_or_else(|| "runs/example-fine-tune".into()));

    let (model, weights) = match flag("--weights") {
        Some(weights) => (
            flag("--model").unwrap_or_else(|| "resnet18".into()),
            PathBuf::from(weights),
        ),
        None => ("resnet20".to_string(), pretrained_torch_file(&out)?),
    };
    let mut config = RunConfig::defaults_for(&model, "digits");
    config.resize = Some([32, 32]);
    config.transfer.init_from = Some(weights);
    // A new head, trained alone for the first half; then everything, the backbone at a tenth
    // of the rate; on a tenth of the training split.
    config.transfer.new_head = true;
    config.transfer.freeze = Some(Freeze::Backbone);
    config.transfer.unfreeze_at_epoch = Some(epochs / 2 + 1);
    config.transfer.backbone_lr_factor = 0.1;
    config.train_fraction = Some(0.1);
    config.fit.epochs = epochs;
    let result = train(&config, out.join("fine-tuned"))?;
    println!("fine-tuned: {}", result.summary);
    Ok(())
}

/// A ResNet-20 trained for one epoch on the digits (32x32), its weights written in PyTorch's
/// layout to `out/resnet20.safetensors`.
fn pretrained_torch_file(out: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let mut pre = RunConfig::defaults_for("resnet20", "digits");
    pre.resize = Some([32, 32]);
    pre.fit.epochs = 1;
    pre.fit.progress = false;
    let run = train(&pre, out.join("pretrained"))?;
    println!("pretrained: {}", run.summary);
    // The run's weights under Strata's names, into the bare ResNet, out in PyTorch's layout.
    let mut net = ResNetConfig::by_name("resnet20", 1, 10)?.init(&Device::flex())?;
    let mut store = SafetensorsStore::from_file(run.dir.join("model.safetensors"))
        .with_key_remapping(r"^ResNet\.resnet\.", "");
    net.load_from(&mut store)?;
    let file = out.join("resnet20.safetensors");
    let mut torch = SafetensorsStore::from_file(&file).with_to_adapter(BurnToPyTorchAdapter);
    net.save_into(&mut torch)?;
    Ok(file)
}

/// The value after `name` on the command line.
fn flag(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}
