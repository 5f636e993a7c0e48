//! GANs against PyTorch, numpy and scipy values in `tests/fixtures/gan.json`, made by
//! `tests/fixtures/gen_gan.py`:
//!
//! - a DCGAN for 16x16 images (width 4, noise 8) with the same weights: both players' outputs
//!   in training and evaluation mode (1e-5), and one alternating step through
//!   `strata_train::fit_players` with an Adam(2e-4, betas (0.5, 0.999)) per player, the
//!   discriminator on `BCE(D(x), 1) + BCE(D(G(z).detach()), 0)` then the generator on
//!   `BCE(D(G(z)), 1)`: both losses and every parameter and batch-norm buffer after (1e-4);
//! - `torch.nn.utils.parametrizations.spectral_norm` on a Linear(6, 4) and a Conv2d(2, 3, 3,
//!   padding=1): outputs and power-iteration vectors over three training calls and one
//!   evaluation call (1e-5);
//! - the Frechet distance (scipy.linalg.sqrtm), KID's unbiased squared MMD and precision and
//!   recall (k = 3) on fixed feature arrays (1e-6 relative).

use std::cell::Cell;

use burn::module::{Module, Param, RunningState};
use burn::nn::Linear;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Gradients, Tensor};
use serde_json::Value;
use strata::arch::{Discriminator, Gan, GanConfig, Generator};
use strata::layers::{BatchNorm2d, SnConv2dConfig, SnLinearConfig};
use strata::loss::AdversarialLoss;
use strata::metrics::{frechet_distance, mmd2_polynomial, precision_recall};
use strata::optim::{OptimizerConfig, OptimizerKind, ScheduleConfig};
use strata::train::{FitConfig, Players, Run, fit_players};
use strata_tests::{close_to_json, fixture_json, flat, json_tensor, json_to_tensor};

fn t<const D: usize>(v: &Value, d: &Device) -> Tensor<D> {
    json_to_tensor(v, d)
}

fn set_bn(bn: &mut BatchNorm2d, s: &Value, name: &str, d: &Device) {
    bn.weight = Param::from_tensor(t(&s[format!("{name}.weight")], d));
    bn.bias = Param::from_tensor(t(&s[format!("{name}.bias")], d));
    bn.running_mean = RunningState::new(t(&s[format!("{name}.running_mean")], d));
    bn.running_var = RunningState::new(t(&s[format!("{name}.running_var")], d));
}

fn set_conv(c: &mut Conv2d, s: &Value, name: &str, d: &Device) {
    c.weight = Param::from_tensor(t(&s[format!("{name}.weight")], d));
    c.bias = s
        .get(format!("{name}.bias"))
        .map(|b| Param::from_tensor(t(b, d)));
}

fn set_convt(c: &mut ConvTranspose2d, s: &Value, name: &str, d: &Device) {
    c.weight = Param::from_tensor(t(&s[format!("{name}.weight")], d));
}

fn set_linear(l: &mut Linear, s: &Value, name: &str, d: &Device) {
    l.weight = Param::from_tensor(t::<2>(&s[format!("{name}.weight")], d).transpose());
    l.bias = s
        .get(format!("{name}.bias"))
        .map(|b| Param::from_tensor(t(b, d)));
}

/// The fixture's DCGAN with PyTorch's weights (`g_before`, `d_before`).
fn dcgan(f: &Value, d: &Device) -> Gan {
    let mut gan = GanConfig::new(256)
        .with_image_shape(Some([1, 16, 16]))
        .with_width(4)
        .with_d_noise(8)
        .init(d)
        .unwrap();
    let (gs, ds) = (&f["g_before"], &f["d_before"]);
    let Generator::Conv(g) = &mut gan.generator else {
        panic!("a DCGAN generator")
    };
    assert_eq!(g.ups.len(), 1);
    set_linear(&mut g.project, gs, "project", d);
    set_bn(&mut g.project_bn, gs, "project_bn", d);
    set_convt(&mut g.ups[0].conv, gs, "up", d);
    set_bn(&mut g.ups[0].bn, gs, "up_bn", d);
    set_convt(&mut g.out, gs, "out", d);
    let Discriminator::Conv(dd) = &mut gan.discriminator else {
        panic!("a DCGAN discriminator")
    };
    assert_eq!(dd.downs.len(), 2);
    assert!(dd.downs[0].bn.is_none() && dd.downs[0].conv.sn.is_none());
    set_conv(&mut dd.downs[0].conv.conv, ds, "conv0", d);
    set_conv(&mut dd.downs[1].conv.conv, ds, "conv1", d);
    set_bn(dd.downs[1].bn.as_mut().unwrap(), ds, "bn1", d);
    set_linear(&mut dd.out.linear, ds, "out", d);
    gan
}

/// Every parameter and buffer of the DCGAN under PyTorch's names.
fn named(gan: &Gan) -> Vec<(String, Vec<f32>)> {
    let mut out = Vec::new();
    let Generator::Conv(g) = &gan.generator else {
        unreachable!()
    };
    let bn = |out: &mut Vec<(String, Vec<f32>)>, b: &BatchNorm2d, n: &str| {
        out.push((format!("{n}.weight"), flat(b.weight.val())));
        out.push((format!("{n}.bias"), flat(b.bias.val())));
        out.push((
            format!("{n}.running_mean"),
            flat(b.running_mean.value_sync()),
        ));
        out.push((format!("{n}.running_var"), flat(b.running_var.value_sync())));
    };
    out.push((
        "g.project.weight".into(),
        flat(g.project.weight.val().transpose()),
    ));
    bn(&mut out, &g.project_bn, "g.project_bn");
    out.push(("g.up.weight".into(), flat(g.ups[0].conv.weight.val())));
    bn(&mut out, &g.ups[0].bn, "g.up_bn");
    out.push(("g.out.weight".into(), flat(g.out.weight.val())));
    let Discriminator::Conv(d) = &gan.discriminator else {
        unreachable!()
    };
    out.push((
        "d.conv0.weight".into(),
        flat(d.downs[0].conv.conv.weight.val()),
    ));
    out.push((
        "d.conv0.bias".into(),
        flat(d.downs[0].conv.conv.bias.as_ref().unwrap().val()),
    ));
    out.push((
        "d.conv1.weight".into(),
        flat(d.downs[1].conv.conv.weight.val()),
    ));
    bn(&mut out, d.downs[1].bn.as_ref().unwrap(), "d.bn1");
    out.push((
        "d.out.weight".into(),
        flat(d.out.linear.weight.val().transpose()),
    ));
    out.push((
        "d.out.bias".into(),
        flat(d.out.linear.bias.as_ref().unwrap().val()),
    ));
    out
}

#[test]
fn dcgan_players_match_pytorch_in_both_modes() {
    let f = &fixture_json("gan")["dcgan"];
    let d = Device::flex().autodiff();
    let (z, x) = (t::<2>(&f["z"], &d), t::<2>(&f["x"], &d));
    let eval = dcgan(f, &d).valid();
    let plain = Device::flex();
    close_to_json(
        "G eval",
        flat(eval.generate(t(&f["z"], &plain), None)),
        &f["g_eval"],
        1e-5,
    );
    close_to_json(
        "D eval",
        flat(eval.discriminate(t(&f["x"], &plain), None)),
        &f["d_eval"],
        1e-5,
    );
    let train = dcgan(f, &d);
    close_to_json(
        "G train",
        flat(train.generate(z, None)),
        &f["g_train"],
        1e-5,
    );
    close_to_json(
        "D train",
        flat(train.discriminate(x, None)),
        &f["d_train"],
        1e-5,
    );
}

/// One alternating step on fixed data and noise, losses recorded.
struct OneStep {
    x: Tensor<2>,
    z: Tensor<2>,
    losses: Cell<(f32, f32)>,
}

impl Players<Gan> for OneStep {
    fn names(&self) -> Vec<String> {
        vec!["discriminator".into(), "generator".into()]
    }
    fn n_train(&self) -> usize {
        self.x.dims()[0]
    }
    fn player_loss(&self, m: &Gan, player: usize, _: &[usize]) -> strata::train::Result<Tensor<1>> {
        let loss = match player {
            0 => m.discriminator_loss(
                AdversarialLoss::Bce,
                self.x.clone(),
                None,
                self.z.clone(),
                None,
            ),
            _ => m.generator_loss(AdversarialLoss::Bce, self.z.clone(), None),
        };
        let v = strata::tensor::convert::scalar(loss.clone());
        let (a, b) = self.losses.get();
        self.losses.set(if player == 0 { (v, b) } else { (a, v) });
        Ok(loss)
    }
    fn gradients(&self, m: &Gan, player: usize, grads: Gradients) -> GradientsParams {
        match player {
            0 => GradientsParams::from_grads(grads, &m.discriminator),
            _ => GradientsParams::from_grads(grads, &m.generator),
        }
    }
    fn validate(&self, _: &Gan) -> strata::train::Result<(f64, f64)> {
        Ok((0.0, 0.0))
    }
    fn metric_name(&self) -> &str {
        "none"
    }
    fn lower_metric_is_better(&self) -> bool {
        true
    }
}

#[test]
fn one_alternating_step_matches_pytorch() {
    let f = &fixture_json("gan")["dcgan"];
    let d = Device::flex().autodiff();
    let step = OneStep {
        x: t(&f["x"], &d),
        z: t(&f["z"], &d),
        losses: Cell::new((f32::NAN, f32::NAN)),
    };
    let adam = OptimizerConfig {
        kind: OptimizerKind::Adam {
            beta1: 0.5,
            beta2: 0.999,
            epsilon: 1e-8,
        },
        lr: 2e-4,
        ..OptimizerConfig::default()
    };
    let constant = ScheduleConfig::by_name("constant").unwrap();
    let config = FitConfig {
        epochs: 1,
        batch_size: 6,
        progress: false,
        restore_best: false,
        ..Default::default()
    };
    let out = fit_players(
        dcgan(f, &d),
        &step,
        &Run::new(&adam, &constant, &config, d.clone()),
    )
    .unwrap();
    let (dl, gl) = step.losses.get();
    strata_tests::assert_close(
        "d_loss",
        &[dl],
        &[f["d_loss"].as_f64().unwrap() as f32],
        1e-5,
    );
    strata_tests::assert_close(
        "g_loss",
        &[gl],
        &[f["g_loss"].as_f64().unwrap() as f32],
        1e-5,
    );
    for (name, got) in named(&out.model) {
        let (player, key) = name.split_at(2);
        let after = if player == "g." {
            &f["g_after"]
        } else {
            &f["d_after"]
        };
        close_to_json(&name, got, &after[key], 1e-4);
    }
}

#[test]
fn spectral_norm_matches_pytorchs_parametrization() {
    let f = &fixture_json("gan")["spectral_norm"];
    let d = Device::flex().autodiff();
    let check =
        |name: &str, forward: &dyn Fn(&Value, &Device) -> Vec<f32>, u: &dyn Fn() -> Vec<f32>| {
            for (i, s) in f[name]["steps"].as_array().unwrap().iter().enumerate() {
                close_to_json(
                    &format!("{name} step {i} output"),
                    forward(&s["input"], &d),
                    &s["output"],
                    1e-5,
                );
                close_to_json(&format!("{name} step {i} u"), u(), &s["u"], 1e-5);
            }
        };
    // Linear(6, 4).
    let lf = &f["linear"];
    let mut lin = SnLinearConfig::new(6, 4).init(&d);
    lin.linear.weight = Param::from_tensor(t::<2>(&lf["weight"], &d).transpose());
    lin.linear.bias = Some(Param::from_tensor(t(&lf["bias"], &d)));
    let sn = lin.sn.as_ref().unwrap();
    sn.u.update(t(&lf["u"], &d));
    sn.v.update(t(&lf["v"], &d));
    check("linear", &|x, d| flat(lin.forward(t(x, d))), &|| {
        flat(lin.sn.as_ref().unwrap().u.value_sync())
    });
    let e = &lf["eval"];
    let plain = Device::flex();
    close_to_json(
        "linear eval",
        flat(lin.valid().forward(t(&e["input"], &plain))),
        &e["output"],
        1e-5,
    );
    // Conv2d(2, 3, 3, padding=1).
    let cf = &f["conv"];
    let mut conv = SnConv2dConfig::new(2, 3, 3).with_padding(1).init(&d);
    conv.conv.weight = Param::from_tensor(t(&cf["weight"], &d));
    conv.conv.bias = Some(Param::from_tensor(t(&cf["bias"], &d)));
    let sn = conv.sn.as_ref().unwrap();
    sn.u.update(t(&cf["u"], &d));
    sn.v.update(t(&cf["v"], &d));
    check("conv", &|x, d| flat(conv.forward(t(x, d))), &|| {
        flat(conv.sn.as_ref().unwrap().u.value_sync())
    });
    let e = &cf["eval"];
    close_to_json(
        "conv eval",
        flat(conv.valid().forward(t(&e["input"], &plain))),
        &e["output"],
        1e-5,
    );
}

#[test]
fn generative_metrics_match_numpy_and_scipy() {
    let f = &fixture_json("gan")["metrics"];
    let dim = f["dim"].as_u64().unwrap() as usize;
    let (a, _) = json_tensor(&f["a"]);
    let (b, _) = json_tensor(&f["b"]);
    let close = |name: &str, got: f64| {
        let want = f[name].as_f64().unwrap();
        assert!(
            got.is_finite() && (got - want).abs() <= 1e-6 * want.abs().max(1.0),
            "{name}: {got} vs scipy/numpy {want}"
        );
    };
    close("fid", frechet_distance(&a, &b, dim).unwrap());
    close("mmd2", mmd2_polynomial(&a, &b, dim).unwrap());
    let (p, r) = precision_recall(&a, &b, dim, 3).unwrap();
    close("precision", p);
    close("recall", r);
}
