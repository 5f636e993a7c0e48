//! Autoencoders against PyTorch and scikit-learn values in `tests/fixtures/autoencoder.json`,
//! made by `tests/fixtures/gen_autoencoder.py`: the transposed convolution of the `Upsample`
//! block forward and backward, the ELBO's terms, one Adam step of a small dense VAE with the
//! same weights and noise (loss, every gradient, every weight after the step), and AUROC and
//! average precision with tied scores. Tolerances: 1e-5 on forward values, 1e-4 on gradients
//! and updated weights.

use burn::module::Param;
use burn::nn::Linear;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use serde_json::Value;
use strata::arch::{Autoencoder, AutoencoderConfig};
use strata::layers::UpsampleConfig;
use strata::loss::{bernoulli_nll, gaussian_kl, gaussian_log_density, gaussian_nll};
use strata::optim::{OptimizerConfig, OptimizerKind};
use strata::tensor::convert::{scalar, to_vec};
use strata_tests::{close_to_json, fixture_json, flat, json_to_tensor};

fn fixture() -> Value {
    fixture_json("autoencoder")
}

fn tensor<const D: usize>(v: &Value, d: &Device) -> Tensor<D> {
    json_to_tensor(v, d)
}

#[test]
fn the_transposed_convolution_matches_pytorch_forward_and_backward() {
    let f = &fixture()["conv_transpose"];
    let d = Device::flex().autodiff();
    let mut up = UpsampleConfig::new(3, 2).with_activation(None).init(&d);
    up.conv.weight = Param::from_tensor(tensor::<4>(&f["weight"], &d));
    up.conv.bias = Some(Param::from_tensor(tensor::<1>(&f["bias"], &d)));
    let x = tensor::<4>(&f["input"], &d).require_grad();
    let y = up.forward(x.clone());
    assert_eq!(y.dims(), [2, 2, 8, 10]);
    close_to_json("output", flat(y.clone()), &f["output"], 1e-5);
    let grads = (y * tensor::<4>(&f["upstream"], &d)).sum().backward();
    close_to_json(
        "grad input",
        flat(x.grad(&grads).unwrap()),
        &f["grad_input"],
        1e-4,
    );
    let gw = up.conv.weight.grad(&grads).unwrap();
    close_to_json("grad weight", flat(gw), &f["grad_weight"], 1e-4);
    let gb = up.conv.bias.as_ref().unwrap().grad(&grads).unwrap();
    close_to_json("grad bias", flat(gb), &f["grad_bias"], 1e-4);
}

#[test]
fn the_elbo_terms_match_pytorch() {
    let f = &fixture()["elbo"];
    let d = Device::flex();
    let (logits, target) = (tensor::<2>(&f["logits"], &d), tensor::<2>(&f["target"], &d));
    let (mean, log_var) = (tensor::<2>(&f["mean"], &d), tensor::<2>(&f["log_var"], &d));
    let close = |name: &str, got: f32| {
        let want = f[name].as_f64().unwrap() as f32;
        strata_tests::assert_close(name, &[got], &[want], 1e-5 * want.abs().max(1.0));
    };
    close(
        "bernoulli_nll",
        scalar(bernoulli_nll(logits.clone(), target.clone())),
    );
    close(
        "gaussian_kl",
        scalar(gaussian_kl(mean.clone(), log_var.clone())),
    );
    close("gaussian_nll", scalar(gaussian_nll(logits, target)));
    let ld = gaussian_log_density(tensor::<2>(&f["z"], &d), mean, log_var);
    close_to_json("log density", to_vec(ld), &f["log_density"], 1e-5);
}

/// A PyTorch `nn.Linear`'s weight `[out, in]` and bias into burn's `[in, out]` layout.
fn set_linear(l: &mut Linear, weights: &Value, name: &str, d: &Device) {
    l.weight = Param::from_tensor(tensor::<2>(&weights[format!("{name}.weight")], d).transpose());
    l.bias = Some(Param::from_tensor(tensor::<1>(
        &weights[format!("{name}.bias")],
        d,
    )));
}

/// The model's four linear maps, by PyTorch name.
fn linears(m: &Autoencoder) -> [(&'static str, &Linear); 4] {
    [
        ("enc0", &m.encoder.hidden[0].linear),
        ("enc1", &m.encoder.output),
        ("dec0", &m.decoder.hidden[0].linear),
        ("dec1", &m.decoder.output),
    ]
}

#[test]
fn one_adam_step_of_a_vae_matches_pytorch() {
    let f = &fixture()["vae_step"];
    let d = Device::flex().autodiff();
    let mut m = AutoencoderConfig::new(6)
        .with_d_latent(2)
        .with_d_hidden(vec![5])
        .with_variational(true)
        .init(&d)
        .unwrap();
    let w = &f["weights"];
    set_linear(&mut m.encoder.hidden[0].linear, w, "enc0", &d);
    set_linear(&mut m.encoder.output, w, "enc1", &d);
    set_linear(&mut m.decoder.hidden[0].linear, w, "dec0", &d);
    set_linear(&mut m.decoder.output, w, "dec1", &d);
    let x = tensor::<2>(&f["input"], &d);
    let eps = tensor::<2>(&f["eps"], &d);
    let (mean, log_var) = m.encode(x.clone(), None);
    let z = mean.clone() + (log_var.clone() * 0.5).exp() * eps;
    let loss = bernoulli_nll(m.decode(z, None), x) + gaussian_kl(mean, log_var);
    let want = f["loss"].as_f64().unwrap() as f32;
    strata_tests::assert_close("loss", &[scalar(loss.clone())], &[want], 1e-5);
    let grads = loss.backward();
    for (name, l) in linears(&m) {
        let gw = l.weight.grad(&grads).unwrap().transpose();
        close_to_json(
            &format!("{name}.weight grad"),
            flat(gw),
            &f["grads"][format!("{name}.weight")],
            1e-4,
        );
        let gb = l.bias.as_ref().unwrap().grad(&grads).unwrap();
        close_to_json(
            &format!("{name}.bias grad"),
            flat(gb),
            &f["grads"][format!("{name}.bias")],
            1e-4,
        );
    }
    // The step, with the optimizer the runner builds (PyTorch's Adam defaults).
    let config = OptimizerConfig {
        kind: OptimizerKind::Adam {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        },
        ..OptimizerConfig::default()
    };
    let grads = GradientsParams::from_grads(grads, &m);
    let m = config.build().unwrap().step(1e-3, m, grads);
    for (name, l) in linears(&m) {
        let after = &f["after"];
        close_to_json(
            &format!("{name}.weight"),
            flat(l.weight.val().transpose()),
            &after[format!("{name}.weight")],
            1e-4,
        );
        close_to_json(
            &format!("{name}.bias"),
            flat(l.bias.as_ref().unwrap().val()),
            &after[format!("{name}.bias")],
            1e-4,
        );
    }
}

#[test]
fn ranking_metrics_match_scikit_learn() {
    let f = &fixture()["ranking"];
    let positive: Vec<bool> = serde_json::from_value(f["positive"].clone()).unwrap();
    let scores: Vec<f64> = serde_json::from_value(f["scores"].clone()).unwrap();
    let auc = strata::metrics::roc_auc(&positive, &scores).unwrap();
    let ap = strata::metrics::average_precision(&positive, &scores).unwrap();
    assert!(
        (auc - f["roc_auc"].as_f64().unwrap()).abs() < 1e-12,
        "{auc}"
    );
    assert!(
        (ap - f["average_precision"].as_f64().unwrap()).abs() < 1e-12,
        "{ap}"
    );
}
