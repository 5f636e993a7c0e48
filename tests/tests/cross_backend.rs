//! The same training step on every backend this build has gives the same loss.
//!
//! Weights are initialised once (flex, fixed seed), saved as a burn record and loaded on each
//! backend; one forward pass, backward pass and Adam step follow, then a second forward pass.
//! Both losses must agree across backends within 1e-4. A backend that cannot run here (wgpu
//! without a Vulkan driver) is a counted skip (`strata::tensor::require`); in CI, a failure.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::store::ModuleRecord;
use strata::arch::{
    CellKind, CnnConfig, MlpConfig, Network, NetworkConfig, RecurrentConfig, ResNetConfig,
    SequenceHead, SequenceModelConfig, SequencePooling, Stem, TokenInput,
    TransformerClassifierConfig,
};
use strata::data::{Batcher, digits};
use strata::loss::LossConfig;
use strata::optim::OptimizerConfig;
use strata::tensor::Backend;
use strata::tensor::convert::scalar;
use strata_tests::usable_backends;

fn losses(
    config: &NetworkConfig,
    record: &ModuleRecord,
    device: &burn::tensor::Device,
) -> (f32, f32) {
    let ad = device.clone().autodiff();
    let model: Network = config.init(&ad).unwrap().load_record(record.clone());
    let data = digits();
    let idx: Vec<usize> = (0..64).collect();
    let batch = Batcher::new(ad.clone()).batch(&data, &idx);
    let loss = LossConfig::default().init(&ad).unwrap();
    let mut optim = OptimizerConfig {
        lr: 1e-2,
        ..Default::default()
    }
    .build()
    .unwrap();
    let l1 = loss
        .forward(model.forward_flat(batch.inputs.clone()), &batch.targets)
        .unwrap();
    let v1 = scalar(l1.clone());
    let grads = GradientsParams::from_grads(l1.backward(), &model);
    let model = optim.step(1e-2, model, grads);
    let l2 = loss
        .forward(model.forward_flat(batch.inputs), &batch.targets)
        .unwrap();
    (v1, scalar(l2))
}

fn check(config: NetworkConfig) {
    let flex = Backend::Flex.device();
    flex.seed(11);
    let record = config.init(&flex).unwrap().into_record();
    let results: Vec<(Backend, (f32, f32))> = usable_backends()
        .into_iter()
        .map(|(b, d)| (b, losses(&config, &record, &d)))
        .collect();
    assert!(results.len() >= 2, "at least flex and ndarray run here");
    let (_, (ref1, ref2)) = results[0];
    for (b, (l1, l2)) in &results {
        eprintln!(
            "{} {b}: loss before {l1:.6}, after one Adam step {l2:.6}",
            config.name()
        );
        assert!(
            (l1 - ref1).abs() < 1e-4,
            "{b}: first loss {l1} vs flex {ref1}"
        );
        assert!(
            (l2 - ref2).abs() < 1e-4,
            "{b}: second loss {l2} vs flex {ref2}"
        );
    }
    assert!(ref2 < ref1, "the step lowers the loss");
}

#[test]
fn mlp_step_matches_across_backends() {
    check(NetworkConfig::Mlp(
        MlpConfig::new(64, 10).with_d_hidden(vec![32, 16]),
    ));
}

#[test]
fn cnn_step_matches_across_backends() {
    // Dropout off: the backends' random generators differ by design.
    check(NetworkConfig::Cnn(
        CnnConfig::new(1, 8, 8, 10)
            .with_channels(vec![8, 16])
            .with_d_hidden(32)
            .with_dropout(0.0),
    ));
}

#[test]
fn vision_transformer_step_matches_across_backends() {
    // Patch embedding (strided convolution), class token, learned positions, attention,
    // layer norm; dropout off.
    check(NetworkConfig::Transformer(
        TransformerClassifierConfig::new(
            TokenInput::Patches {
                in_channels: 1,
                height: 8,
                width: 8,
                patch_size: 2,
            },
            10,
        )
        .with_d_model(16)
        .with_n_heads(2)
        .with_n_layers(2)
        .with_d_ff(32)
        .with_dropout(0.0),
    ));
}

#[test]
fn resnet_step_matches_across_backends() {
    // Residual blocks with projection shortcuts and PyTorch-style batch norm in training mode
    // (batch statistics, running update).
    check(NetworkConfig::ResNet {
        resnet: ResNetConfig::new(1, 10, vec![1, 1], vec![4, 8]).with_stem(Stem::Cifar),
        name: "resnet".into(),
        height: 8,
        width: 8,
    });
}

#[test]
fn recurrent_step_matches_across_backends() {
    // A 2-layer bidirectional LSTM reading each 8x8 digit as 8 steps of 8 pixels, and a GRU.
    for cell in [CellKind::Lstm, CellKind::Gru] {
        check(NetworkConfig::Recurrent(SequenceModelConfig::new(
            RecurrentConfig::new(cell, 8, 16)
                .with_n_layers(2)
                .with_bidirectional(true),
            8,
            10,
            SequenceHead::Classify {
                pooling: SequencePooling::Mean,
            },
        )));
    }
}

/// One Adam step of a graph network on every backend: node classification on the karate club
/// (GCN, GraphSAGE with max aggregation, GAT) and graph classification of 16 MUTAG molecules
/// (GIN), dropout off. Scatter-add, the detached maximum and the segment softmax run on each.
#[test]
fn graph_network_step_matches_across_backends() {
    use strata::arch::{Gnn, GnnConfig, GnnKind};
    use strata::layers::{Aggregator, Edges, GraphIndex};
    use strata::tensor::convert::{classes, matrix};

    let karate = strata::data::karate();
    let molecules = strata::data::mutag().batch(&(0..16).collect::<Vec<_>>());
    let cases = [
        ("gcn", GnnConfig::new(34, 2), false),
        (
            "sage-max",
            GnnConfig::new(34, 2)
                .with_kind(GnnKind::Sage)
                .with_aggregator(Aggregator::Max),
            false,
        ),
        (
            "gat",
            GnnConfig::new(34, 2)
                .with_kind(GnnKind::Gat)
                .with_n_heads(4),
            false,
        ),
        (
            "gin",
            GnnConfig::new(7, 2)
                .with_kind(GnnKind::Gin)
                .with_graph_level(true),
            true,
        ),
    ];
    for (name, config, graph_level) in cases {
        let config = config.with_dropout(0.0).with_attention_dropout(0.0);
        let flex = Backend::Flex.device();
        flex.seed(5);
        let record = config.init(&flex).unwrap().into_record();
        let step = |device: &burn::tensor::Device| -> (f32, f32) {
            let ad = device.clone().autodiff();
            let model: Gnn = config.init(&ad).unwrap().load_record(record.clone());
            let g = if graph_level {
                &molecules.graph
            } else {
                &karate
            };
            let x = matrix(g.features.clone(), g.n_nodes, g.n_features, &ad);
            let edges = Edges::new(g.n_nodes, &g.source, &g.target, None, &ad).unwrap();
            let graphs = GraphIndex::new(&molecules.graph_index, 16, &ad).unwrap();
            let labels = if graph_level {
                molecules.labels.clone()
            } else {
                karate.labels.clone().unwrap()
            };
            let y = classes(&labels, &ad);
            let ce = burn::nn::loss::CrossEntropyLossConfig::new().init(&ad);
            let loss = |m: &Gnn| {
                let logits = if graph_level {
                    m.forward_graphs(x.clone(), &edges, &graphs)
                } else {
                    m.forward(x.clone(), &edges)
                };
                ce.forward(logits, y.clone())
            };
            let l1 = loss(&model);
            let v1 = scalar(l1.clone());
            let grads = GradientsParams::from_grads(l1.backward(), &model);
            let mut optim = OptimizerConfig {
                lr: 1e-2,
                ..Default::default()
            }
            .build()
            .unwrap();
            let model = optim.step(1e-2, model, grads);
            (v1, scalar(loss(&model)))
        };
        let results: Vec<(Backend, (f32, f32))> = usable_backends()
            .into_iter()
            .map(|(b, d)| (b, step(&d)))
            .collect();
        assert!(results.len() >= 2, "at least flex and ndarray run here");
        let (_, (ref1, ref2)) = results[0];
        for (b, (l1, l2)) in &results {
            eprintln!("{name} {b}: loss before {l1:.6}, after one Adam step {l2:.6}");
            assert!(
                (l1 - ref1).abs() < 1e-4,
                "{name} {b}: first loss {l1} vs flex {ref1}"
            );
            assert!(
                (l2 - ref2).abs() < 1e-4,
                "{name} {b}: second loss {l2} vs flex {ref2}"
            );
        }
        assert!(ref2 < ref1, "{name}: the step lowers the loss");
    }
}

#[test]
fn gan_steps_match_across_backends() {
    use burn::tensor::{Tensor, TensorData};
    use strata::arch::{Gan, GanConfig};
    use strata::loss::AdversarialLoss;

    // A DCGAN for 16x16 images (batch norm in both players), and a spectrally normalised one
    // (power iteration in the forward pass), both with the hinge and BCE games.
    let cases = [
        (
            "dcgan",
            GanConfig::new(256).with_image_shape(Some([1, 16, 16])),
            AdversarialLoss::Bce,
        ),
        (
            "sngan",
            GanConfig::new(256)
                .with_image_shape(Some([1, 16, 16]))
                .with_spectral_norm(true),
            AdversarialLoss::Hinge,
        ),
    ];
    let xs: Vec<f32> = (0..8 * 256)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let zs: Vec<f32> = (0..8 * 16)
        .map(|i| ((i * 13) % 29) as f32 / 7.0 - 2.0)
        .collect();
    for (name, config, game) in cases {
        let config = config.with_width(4).with_d_noise(16);
        let flex = Backend::Flex.device();
        flex.seed(5);
        let record = config.init(&flex).unwrap().into_record();
        let step = |device: &burn::tensor::Device| -> (f32, f32, f32) {
            let ad = device.clone().autodiff();
            let gan: Gan = config.init(&ad).unwrap().load_record(record.clone());
            let x = Tensor::<2>::from_data(TensorData::new(xs.clone(), [8, 256]), &ad);
            let z = Tensor::<2>::from_data(TensorData::new(zs.clone(), [8, 16]), &ad);
            let d1 = gan.discriminator_loss(game, x.clone(), None, z.clone(), None);
            let v1 = scalar(d1.clone());
            let grads = GradientsParams::from_grads(d1.backward(), &gan.discriminator);
            let mut optim = OptimizerConfig::default().build().unwrap();
            let gan = optim.step(1e-2, gan, grads);
            let d2 = scalar(gan.discriminator_loss(game, x, None, z.clone(), None));
            let g = scalar(gan.generator_loss(game, z, None));
            (v1, d2, g)
        };
        let results: Vec<(Backend, (f32, f32, f32))> = usable_backends()
            .into_iter()
            .map(|(b, d)| (b, step(&d)))
            .collect();
        assert!(results.len() >= 2, "at least flex and ndarray run here");
        let (_, reference) = results[0];
        for (b, got) in &results {
            eprintln!(
                "{name} {b}: d loss {:.6}, after a step {:.6}, g loss {:.6}",
                got.0, got.1, got.2
            );
            for (what, v, r) in [
                ("d loss", got.0, reference.0),
                ("d loss after a step", got.1, reference.1),
                ("g loss", got.2, reference.2),
            ] {
                assert!((v - r).abs() < 1e-4, "{name} {b}: {what} {v} vs flex {r}");
            }
        }
        assert!(
            reference.1 < reference.0,
            "{name}: the step lowers the loss"
        );
    }
}
