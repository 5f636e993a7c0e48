//! Training-step benchmarks: ms per step (forward, backward, Adam update) for the MLP
//! (784-256-128-10) and the LeNet-style CNN (28x28, channels 32-64, head 128) at batch 64, and
//! for character language models with one LSTM or GRU layer (vocabulary 84, embedding 64,
//! hidden 256) on batches of 32 sequences of 50 steps, and for the transformer LM (context
//! 128, width 128, 4 heads, 2 layers) on batches of 32, and ResNet-20 / ResNet-18 on 32 images
//! of 3x32x32, and the convolutional VAE (28x28, channels 32-64, a 30-unit code) at batch 64,
//! on each backend, and a full-batch training epoch of GCN (1433-16-7) and GAT (8 heads of 8,
//! one output head) on Cora (`gcn-cora`, `gat-cora`; PyTorch Geometric's in
//! `pytorch/train_step.py`), and inference rows (`mlp-infer-1`, `cnn-infer-64`,
//! `resnet18-infer-64`, ...: ms per forward pass without autodiff at that batch size; PyTorch
//! under `torch.inference_mode()`), and generation rows (`lstm-generate`, `gru-generate`,
//! `transformer-generate`: ms per character generated greedily at batch 1 after a
//! 20-character prompt, the recurrent state or the transformer's key-value cache carried).
//! `pytorch/train_step.py` measures the same models in PyTorch; `cargo xtask bench` runs both
//! in the same session and prints the ratio.
//!
//! Output: one JSON object per line, `{"model", "backend", "ms_per_step", "steps"}`.
//! Usage: `strata-bench [--backends flex,ndarray,wgpu] [--models mlp,cnn] [--steps N]`.

use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use strata::arch::{
    Autoencoder, AutoencoderConfig, CellKind, CharLm, CharLmConfig, CnnConfig, MlpConfig, Network,
    NetworkConfig, RecurrentConfig, ResNetConfig, TransformerLm, TransformerLmConfig,
};
use strata::kernels::cross_entropy;
use strata::loss::{LossConfig, bernoulli_nll, gaussian_kl};
use strata::optim::OptimizerConfig;
use strata::tensor::{Backend, TargetBatch};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The model and its batch size.
fn network(model: &str) -> (NetworkConfig, usize) {
    match model {
        "mlp" => (
            NetworkConfig::Mlp(MlpConfig::new(784, 10).with_d_hidden(vec![256, 128])),
            64,
        ),
        "resnet20" | "resnet18" => (
            NetworkConfig::ResNet {
                resnet: ResNetConfig::by_name(model, 3, 10).expect("a ResNet name"),
                name: model.into(),
                height: 32,
                width: 32,
            },
            32,
        ),
        // ResNet-20 with half the channels inside each block removed (`strata compress
        // --prune-channels 0.5`).
        "resnet20-slim" => (
            NetworkConfig::ResNet {
                resnet: ResNetConfig::by_name("resnet20", 3, 10)
                    .expect("a ResNet name")
                    .with_inner(vec![8, 8, 8, 16, 16, 16, 32, 32, 32]),
                name: "resnet20".into(),
                height: 32,
                width: 32,
            },
            32,
        ),
        // The CNN with half its channels removed (`strata compress --prune-channels 0.5`).
        "cnn-slim" => (
            NetworkConfig::Cnn(CnnConfig::new(1, 28, 28, 10).with_channels(vec![16, 32])),
            64,
        ),
        // The distilled student of docs/compression.md: 4 and 8 channels, 32 hidden units.
        "cnn-student" => (
            NetworkConfig::Cnn(
                CnnConfig::new(1, 28, 28, 10)
                    .with_channels(vec![4, 8])
                    .with_d_hidden(32),
            ),
            64,
        ),
        _ => (NetworkConfig::Cnn(CnnConfig::new(1, 28, 28, 10)), 64),
    }
}

/// Mean ms per training step after `warmup` untimed steps.
fn bench(model: &str, device: &Device, steps: usize, warmup: usize) -> f64 {
    let ad = device.clone().autodiff();
    ad.seed(0);
    let (config, batch) = network(model);
    let net: Network = config.init(&ad).expect("valid config");
    let mut optim = OptimizerConfig::default().build().expect("adam");
    let loss = LossConfig::default().init(&ad).expect("ce");
    let x = Tensor::<2>::random([batch, config.d_input()], Distribution::Default, &ad);
    let labels: Vec<i64> = (0..batch as i64).map(|i| i % 10).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &ad);
    let targets = TargetBatch::Classes(y);
    let step = |net: Network| -> Network {
        let out = net.forward_flat(x.clone());
        let l = loss.forward(out, &targets).expect("loss");
        // Reading the loss back synchronises the device, as a training loop does.
        let _ = l.clone().into_data();
        let grads = GradientsParams::from_grads(l.backward(), &net);
        optim.step(1e-3, net, grads)
    };
    time_steps(net, device, steps, warmup, step)
}

/// `(model, batch)` of an inference row's name (`cnn-infer-64`), else `None`.
fn inference_name(name: &str) -> Option<(&str, usize)> {
    let (model, batch) = name.rsplit_once("-infer-")?;
    Some((model, batch.parse().ok()?))
}

/// Steps for an inference row: ten times as many at batch 1, a tenth (at least 3) for a
/// ResNet at a larger batch (as `pytorch/train_step.py`).
fn inference_steps(model: &str, batch: usize, steps: usize) -> usize {
    if batch == 1 {
        steps * 10
    } else if model.starts_with("resnet") {
        (steps / 10).max(3)
    } else {
        steps
    }
}

/// Mean ms per inference forward pass (no autodiff, so batch norm uses its running
/// statistics and dropout is off) of `model` on a batch of `batch`, the output read back.
fn bench_inference(model: &str, batch: usize, device: &Device, steps: usize, warmup: usize) -> f64 {
    device.seed(0);
    // `mlp-int8`, `cnn-int8`, `resnet20-int8`: the linear layers (and convolutions) in int8
    // with a scale per output channel, as a run from `strata compress --quantize int8
    // --per-channel` loads; `-int8-static`: their input scales calibrated on 4 batches of 64
    // (`--calibrate 4`).
    let (model, calibrated) = match model.strip_suffix("-static") {
        Some(m) => (m, true),
        None => (model, false),
    };
    let (name, int8) = match model.strip_suffix("-int8") {
        Some(name) => (name, true),
        None => (model, false),
    };
    let (config, _) = network(name);
    let mut net: Network = config.init(device).expect("valid config");
    if int8 {
        assert!(net.quantize_int8(true), "{name} has no int8 layers");
    }
    if calibrated {
        for (_, input) in net.int8_inputs_mut() {
            input.observe();
        }
        for _ in 0..4 {
            let x = Tensor::<2>::random([64, config.d_input()], Distribution::Default, device);
            let _ = net.forward_flat(x).into_data();
        }
        for (_, input) in net.int8_inputs_mut() {
            input.calibrate();
        }
    }
    let x = Tensor::<2>::random([batch, config.d_input()], Distribution::Default, device);
    time_steps(net, device, steps, warmup, |net| {
        let _ = net.forward_flat(x.clone()).sum().into_data();
        net
    })
}

/// Mean ms per call of `step` after `warmup` untimed calls, the device synchronised around
/// the timed ones.
fn time_steps<M>(
    mut model: M,
    device: &Device,
    steps: usize,
    warmup: usize,
    mut step: impl FnMut(M) -> M,
) -> f64 {
    for _ in 0..warmup {
        model = step(model);
    }
    let _ = device.sync();
    let start = Instant::now();
    for _ in 0..steps {
        model = step(model);
    }
    let _ = device.sync();
    start.elapsed().as_secs_f64() * 1000.0 / steps as f64
}

/// A fixed batch of `batch x time` token ids and their next-token targets (flattened).
fn token_batch(
    batch: usize,
    time: usize,
    vocab: usize,
    device: &Device,
) -> (Tensor<2, Int>, Tensor<1, Int>) {
    let ids = |offset: i64| -> Vec<i64> {
        (0..(batch * time) as i64)
            .map(|i| (i * 7 + offset) % vocab as i64)
            .collect()
    };
    (
        Tensor::from_data(TensorData::new(ids(0), [batch, time]), device),
        Tensor::from_data(TensorData::new(ids(1), [batch * time]), device),
    )
}

/// Mean ms per training step of a character LM: batch 32, 50 steps, vocabulary 84.
fn bench_lm(cell: CellKind, device: &Device, steps: usize, warmup: usize) -> f64 {
    let (batch, time, vocab) = (32, 50, 84);
    let ad = device.clone().autodiff();
    ad.seed(0);
    let lm: CharLm = CharLmConfig::new(vocab, RecurrentConfig::new(cell, 64, 256))
        .init(&ad)
        .expect("valid config");
    let mut optim = OptimizerConfig::default().build().expect("adam");
    let (x, y) = token_batch(batch, time, vocab, &ad);
    let step = |lm: CharLm| -> CharLm {
        let (logits, _) = lm.forward(x.clone(), None);
        let l = cross_entropy(logits.reshape([batch * time, vocab]), y.clone());
        let _ = l.clone().into_data();
        let grads = GradientsParams::from_grads(l.backward(), &lm);
        optim.step(1e-3, lm, grads)
    };
    time_steps(lm, device, steps, warmup, step)
}

/// Characters each generation row makes after its prompt.
const GENERATED: usize = 100;

/// The prompt of the generation rows (20 characters) and their greedy sampling of
/// [`GENERATED`] characters.
fn generation_setup() -> (Vec<usize>, strata::arch::Sampling) {
    let prompt: Vec<usize> = (0..20).map(|i| (i * 7) % 84).collect();
    let sampling = strata::arch::Sampling {
        length: GENERATED,
        temperature: 0.0,
        top_k: None,
        seed: 0,
    };
    (prompt, sampling)
}

/// Mean ms per generated character of `model` over `calls` calls of `generate(model, prompt,
/// sampling)` after `warmup` untimed ones.
fn ms_per_character<M>(
    model: M,
    device: &Device,
    calls: usize,
    warmup: usize,
    generate: impl Fn(&M, &[usize], &strata::arch::Sampling) -> Vec<usize>,
) -> f64 {
    let (prompt, sampling) = generation_setup();
    let per_call = time_steps(model, device, calls, warmup, |model| {
        assert_eq!(generate(&model, &prompt, &sampling).len(), GENERATED);
        model
    });
    per_call / GENERATED as f64
}

/// Mean ms per generated character of an untrained character LM (`lstm-generate`,
/// `gru-generate`: the benchmark's LSTM or GRU model) at batch 1: a 20-character prompt, then
/// greedy generation carrying the recurrent state, as `strata generate` does; the time of each
/// call over [`GENERATED`].
fn bench_generate(cell: CellKind, device: &Device, calls: usize, warmup: usize) -> f64 {
    device.seed(0);
    let lm: CharLm = CharLmConfig::new(84, RecurrentConfig::new(cell, 64, 256))
        .init(device)
        .expect("valid config");
    ms_per_character(lm, device, calls, warmup, |lm, prompt, sampling| {
        lm.generate(prompt, sampling, device).expect("valid prompt")
    })
}

/// Mean ms per generated character of the benchmark's transformer LM (`transformer-generate`,
/// untrained, evaluation mode) at batch 1: a 20-character prompt, then greedy generation with
/// the key-value cache (each new character computes its own position only), as
/// `strata generate` does; the time of each call over [`GENERATED`] (the 120 positions fit the
/// 128-character context, so the window never slides).
fn bench_transformer_generate(device: &Device, calls: usize, warmup: usize) -> f64 {
    device.seed(0);
    let lm: TransformerLm = TransformerLmConfig::new(84, 128)
        .init(device)
        .expect("valid config");
    ms_per_character(lm, device, calls, warmup, |lm, prompt, sampling| {
        lm.generate(prompt, sampling, true, device)
            .expect("valid prompt")
    })
}

/// Mean ms per training step of the transformer LM: batch 32, context 128, width 128, 4 heads,
/// 2 layers, feed-forward 512, vocabulary 84, dropout 0.1.
fn bench_transformer(device: &Device, steps: usize, warmup: usize) -> f64 {
    let (batch, time, vocab) = (32, 128, 84);
    let ad = device.clone().autodiff();
    ad.seed(0);
    let lm: TransformerLm = TransformerLmConfig::new(vocab, time)
        .init(&ad)
        .expect("valid config");
    let mut optim = OptimizerConfig::default().build().expect("adam");
    let (x, y) = token_batch(batch, time, vocab, &ad);
    let step = |lm: TransformerLm| -> TransformerLm {
        let logits = lm.forward(x.clone());
        let l = cross_entropy(logits.reshape([batch * time, vocab]), y.clone());
        let _ = l.clone().into_data();
        let grads = GradientsParams::from_grads(l.backward(), &lm);
        optim.step(1e-3, lm, grads)
    };
    time_steps(lm, device, steps, warmup, step)
}

/// Mean ms per training step of the convolutional VAE of `strata train --model conv-vae
/// --dataset fashion-mnist`: 1x28x28 images, stride-2 convolutions of 32 and 64 channels, a
/// 30-unit Gaussian code, transposed convolutions back; batch 64, loss the negative ELBO
/// (Bernoulli pixels) with one posterior sample.
fn bench_conv_vae(device: &Device, steps: usize, warmup: usize) -> f64 {
    let ad = device.clone().autodiff();
    ad.seed(0);
    let vae: Autoencoder = AutoencoderConfig::new(784)
        .with_image_shape(Some([1, 28, 28]))
        .with_channels(vec![32, 64])
        .with_d_hidden(vec![])
        .with_d_latent(30)
        .with_variational(true)
        .init(&ad)
        .expect("valid config");
    let mut optim = OptimizerConfig::default().build().expect("adam");
    let x = Tensor::<2>::random([64, 784], Distribution::Default, &ad);
    let step = |vae: Autoencoder| -> Autoencoder {
        let (logits, mean, log_var) = vae.forward(x.clone(), None);
        let l = bernoulli_nll(logits, x.clone()) + gaussian_kl(mean, log_var);
        let _ = l.clone().into_data();
        let grads = GradientsParams::from_grads(l.backward(), &vae);
        optim.step(1e-3, vae, grads)
    };
    time_steps(vae, device, steps, warmup, step)
}

/// Mean ms per alternating training step of `strata train --model dcgan --dataset
/// fashion-mnist`'s GAN (28x28, width 64, noise 100, batch 64): a discriminator step on real
/// and generated images, then a generator step, each with its own Adam(2e-4, beta1 0.5), BCE
/// losses, through `fit_players`' per-player gradients.
fn bench_dcgan(device: &Device, steps: usize, warmup: usize) -> f64 {
    use burn::tensor::Distribution as D;
    use strata::arch::{Gan, GanConfig};
    use strata::loss::AdversarialLoss;
    use strata::optim::OptimizerKind;
    let ad = device.clone().autodiff();
    ad.seed(0);
    let gan: Gan = GanConfig::new(784)
        .with_image_shape(Some([1, 28, 28]))
        .init(&ad)
        .expect("valid config");
    let adam = || {
        OptimizerConfig {
            kind: OptimizerKind::Adam {
                beta1: 0.5,
                beta2: 0.999,
                epsilon: 1e-8,
            },
            lr: 2e-4,
            ..OptimizerConfig::default()
        }
        .build()
        .expect("adam")
    };
    let (mut opt_d, mut opt_g) = (adam(), adam());
    let x = Tensor::<2>::random([64, 784], D::Uniform(-1.0, 1.0), &ad);
    let step = |gan: Gan| -> Gan {
        let z = Tensor::<2>::random([64, 100], D::Normal(0.0, 1.0), &ad);
        let l = gan.discriminator_loss(AdversarialLoss::Bce, x.clone(), None, z.clone(), None);
        let _ = l.clone().into_data();
        let grads = GradientsParams::from_grads(l.backward(), &gan.discriminator);
        let gan = opt_d.step(2e-4, gan, grads);
        let l = gan.generator_loss(AdversarialLoss::Bce, z, None);
        let _ = l.clone().into_data();
        let grads = GradientsParams::from_grads(l.backward(), &gan.generator);
        opt_g.step(2e-4, gan, grads)
    };
    time_steps(gan, device, steps, warmup, step)
}

/// Mean ms per training step of `strata train --model capsnet --dataset fashion-mnist`'s
/// network (the CPU-sized CapsNet on 1x28x28: 64 9x9 filters, 16 types of 8-D primary
/// capsules, 10 class capsules of 16-D, 3 routing passes, the 512-1024-784 decoder) at batch
/// 64: margin loss plus 0.0005 times the summed squared reconstruction error, Adam at 1e-3.
fn bench_capsnet(device: &Device, steps: usize, warmup: usize) -> f64 {
    use strata::arch::{CapsNet, CapsNetConfig};
    let ad = device.clone().autodiff();
    ad.seed(0);
    let net: CapsNet = CapsNetConfig::small(1, 28, 28, 10)
        .init(&ad)
        .expect("valid config");
    let mut optim = OptimizerConfig::default().build().expect("adam");
    let x = Tensor::<4>::random(
        [64, 1, 28, 28],
        burn::tensor::Distribution::Uniform(0.0, 1.0),
        &ad,
    );
    let y: Vec<i64> = (0..64).map(|i| i % 10).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(y, [64]), &ad);
    let step = |net: CapsNet| -> CapsNet {
        let l = net.loss(x.clone(), y.clone()).total;
        let _ = l.clone().into_data();
        let grads = GradientsParams::from_grads(l.backward(), &net);
        optim.step(1e-3, net, grads)
    };
    time_steps(net, device, steps, warmup, step)
}

/// Mean ms per full-batch training epoch (forward on the whole graph, cross-entropy on the 140
/// training nodes, backward, Adam at 0.01 with weight decay 5e-4) of `strata train --model
/// gcn|gat --dataset cora`'s network: row-normalised features, dropout 0.5 (GCN) or 0.6 on
/// features and attention (GAT).
fn bench_gnn(model: &str, device: &Device, steps: usize, warmup: usize) -> f64 {
    use strata::arch::{Gnn, GnnConfig, GnnKind};
    use strata::layers::Edges;
    let ad = device.clone().autodiff();
    ad.seed(0);
    let cora = strata::data::cora();
    let (n, f) = (cora.n_nodes, cora.n_features);
    let mut x = cora.features.clone();
    strata::data::normalize_rows(&mut x, f);
    let x = Tensor::<2>::from_data(TensorData::new(x, [n, f]), &ad);
    let edges = Edges::new(n, &cora.source, &cora.target, None, &ad).expect("Cora's edges");
    let train = cora.split.as_ref().expect("Planetoid split").train.clone();
    let labels = cora.labels.as_ref().expect("labels");
    let y: Vec<i64> = train.iter().map(|&i| labels[i] as i64).collect();
    let idx: Vec<i64> = train.iter().map(|&i| i as i64).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(y, [train.len()]), &ad);
    let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [train.len()]), &ad);
    let config = if model == "gat-cora" {
        GnnConfig::new(f, 7)
            .with_kind(GnnKind::Gat)
            .with_d_hidden(8)
            .with_n_heads(8)
            .with_dropout(0.6)
            .with_attention_dropout(0.6)
    } else {
        GnnConfig::new(f, 7)
    };
    let net: Gnn = config.init(&ad).expect("valid config");
    let mut optim = OptimizerConfig {
        weight_decay: 5e-4,
        ..OptimizerConfig::default()
    }
    .build()
    .expect("adam");
    let ce = CrossEntropyLossConfig::new().init(&ad);
    let step = |net: Gnn| -> Gnn {
        let logits = net.forward(x.clone(), &edges).select(0, idx.clone());
        let l = ce.forward(logits, y.clone());
        let _ = l.clone().into_data();
        let grads = GradientsParams::from_grads(l.backward(), &net);
        optim.step(1e-2, net, grads)
    };
    time_steps(net, device, steps, warmup, step)
}

fn main() {
    // As the `strata` command line does; the PyTorch scripts set the same (allocator.py).
    strata::kernels::keep_freed_memory();
    // Anything but the three flags (`--help` included) prints the usage instead of benchmarking.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let known = ["--backends", "--models", "--steps"];
    let flags_ok = args
        .chunks(2)
        .all(|pair| pair.len() == 2 && known.contains(&pair[0].as_str()));
    if !flags_ok {
        eprintln!(
            "usage: strata-bench [--backends flex,ndarray,wgpu] [--models mlp,cnn,...] [--steps N]"
        );
        std::process::exit(2);
    }
    let backends = arg("--backends").unwrap_or_else(|| "flex,ndarray".into());
    let models = arg("--models").unwrap_or_else(|| {
        "mlp,cnn,lstm,gru,transformer,resnet20,resnet18,conv-vae,gcn-cora,gat-cora,dcgan,capsnet,\
         lstm-generate,gru-generate,transformer-generate"
            .into()
    });
    let steps: usize = arg("--steps").and_then(|s| s.parse().ok()).unwrap_or(30);
    // As the command line does: the kernels driven from one of rayon's threads.
    strata::kernels::drive(move || run(&backends, &models, steps));
}

/// Every model of `models` on every backend of `backends`, one JSON line each.
fn run(backends: &str, models: &str, steps: usize) {
    for b in backends.split(',') {
        let backend: Backend = match b.parse() {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        };
        if let Err(e) = backend.check_usable() {
            eprintln!("skipping {backend}: {e}");
            continue;
        }
        for model in models.split(',') {
            if let Some((name, batch)) = inference_name(model) {
                let n = inference_steps(name, batch, steps);
                let ms = bench_inference(name, batch, &backend.device(), n, 3);
                println!(
                    "{{\"model\":\"{model}\",\"backend\":\"{backend}\",\"ms_per_step\":{ms:.3},\"steps\":{n}}}"
                );
                continue;
            }
            let n = steps.clamp(1, 5);
            let generated = match model {
                "lstm-generate" => Some(bench_generate(CellKind::Lstm, &backend.device(), n, 1)),
                "gru-generate" => Some(bench_generate(CellKind::Gru, &backend.device(), n, 1)),
                "transformer-generate" => Some(bench_transformer_generate(&backend.device(), n, 1)),
                _ => None,
            };
            if let Some(ms) = generated {
                println!(
                    "{{\"model\":\"{model}\",\"backend\":\"{backend}\",\"ms_per_step\":{ms:.3},\"steps\":{n}}}"
                );
                continue;
            }
            let recurrent = match model {
                "lstm" => Some(CellKind::Lstm),
                "gru" => Some(CellKind::Gru),
                _ => None,
            };
            // ndarray's convolution backward takes over a second a step, and a recurrent step
            // runs 50 time steps: fewer steps there.
            let resnet = model.starts_with("resnet");
            let slow =
                recurrent.is_some() || model == "transformer" || resnet || model == "capsnet";
            let convolutional =
                model == "cnn" || model == "conv-vae" || model == "dcgan" || model == "capsnet";
            let n = if backend == Backend::Ndarray && resnet {
                steps.min(2)
            } else if (backend == Backend::Ndarray && convolutional) || slow {
                steps.min(10)
            } else {
                steps
            };
            let ms = match recurrent {
                Some(cell) => bench_lm(cell, &backend.device(), n, 2),
                None if model == "transformer" => bench_transformer(&backend.device(), n, 2),
                None if model == "conv-vae" => bench_conv_vae(&backend.device(), n, 3),
                None if model == "dcgan" => bench_dcgan(&backend.device(), n, 3),
                None if model == "capsnet" => bench_capsnet(&backend.device(), n, 2),
                None if model.ends_with("-cora") => bench_gnn(model, &backend.device(), n, 3),
                None if resnet => bench(model, &backend.device(), n, 1),
                None => bench(model, &backend.device(), n, 3),
            };
            println!(
                "{{\"model\":\"{model}\",\"backend\":\"{backend}\",\"ms_per_step\":{ms:.3},\"steps\":{n}}}"
            );
        }
    }
}
