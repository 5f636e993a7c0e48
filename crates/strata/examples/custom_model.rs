//! A model of your own, trained with the lower-level `strata::train::fit`: a burn module with
//! a residual hidden layer, on the UCI digits, with Strata's split, standardisation, loss,
//! optimizer, schedule and evaluation.
//!
//! ```text
//! cargo run --release --example custom_model -- [--epochs N]
//! ```

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use strata::data::{Standardizer, digits, stratified_split};
use strata::loss::LossConfig;
use strata::optim::{OptimizerConfig, ScheduleConfig};
use strata::train::{Fit, FitConfig, Report, Run, evaluate, fit};

/// `x -> relu(W1 x) -> h + relu(W2 h) -> W3`.
#[derive(Module, Debug)]
struct ResidualMlp {
    input: Linear,
    hidden: Linear,
    output: Linear,
}

impl ResidualMlp {
    fn new(d_in: usize, d_hidden: usize, n_classes: usize, device: &Device) -> Self {
        Self {
            input: LinearConfig::new(d_in, d_hidden).init(device),
            hidden: LinearConfig::new(d_hidden, d_hidden).init(device),
            output: LinearConfig::new(d_hidden, n_classes).init(device),
        }
    }

    /// `[batch, d_in]` to `[batch, n_classes]` logits.
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let h = relu(self.input.forward(x));
        let h = h.clone() + relu(self.hidden.forward(h));
        self.output.forward(h)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let epochs: usize = flag("--epochs").map_or(Ok(30), |v| v.parse())?;

    let data = digits();
    let split = stratified_split(&data.strata(), 0.15, 0.2, 42)?;
    let (mut train, mut valid, mut test) = (
        data.subset(&split.train),
        data.subset(&split.valid),
        data.subset(&split.test),
    );
    let scaler = Standardizer::fit(&train)?;
    for set in [&mut train, &mut valid, &mut test] {
        scaler.transform(set)?;
    }

    let device = Device::flex().autodiff();
    device.seed(42);
    let model = ResidualMlp::new(train.n_features, 128, 10, &device);
    let loss = LossConfig::default().init(&device)?;
    let optimizer = OptimizerConfig {
        lr: 0.001,
        ..Default::default()
    };
    let schedule = ScheduleConfig::by_name("cosine")?;
    let config = FitConfig {
        epochs,
        batch_size: 32,
        ..Default::default()
    };
    let forward = |m: &ResidualMlp, x| m.forward(x);
    let outcome = fit(
        model,
        &train,
        &valid,
        &Fit {
            forward,
            loss: loss.as_ref(),
            augment: None,
            run: Run::new(&optimizer, &schedule, &config, device.clone()),
        },
    )?;

    let plain = Device::flex();
    let model = outcome.model.valid();
    let test_loss = LossConfig::default().init(&plain)?;
    let ev = evaluate(&model, &forward, test_loss.as_ref(), &test, 256, &plain)?;
    if let Report::Classification(r) = &ev.report {
        println!(
            "test accuracy {:.4}  macro F1 {:.4} ({} epochs)",
            r.accuracy, r.macro_f1, outcome.epochs_run
        );
    }
    Ok(())
}

/// The value after `name` on the command line.
fn flag(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}
