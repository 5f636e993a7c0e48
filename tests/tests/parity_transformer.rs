//! burn's attention and transformer encoder and decoder layers, loaded from PyTorch
//! `state_dict`s with `strata::layers::load_mha` / `load_encoder_layer` /
//! `load_decoder_layer`, against PyTorch.
//!
//! `tests/fixtures/gen_transformer.py` saves `nn.MultiheadAttention(8, 2, batch_first=True)`
//! (run as self-attention with a key padding mask and a causal `attn_mask`,
//! `average_attn_weights=False`) and `nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0,
//! batch_first=True)` in post-norm/ReLU and pre-norm/GELU form (run with
//! `src_key_padding_mask`), and `nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0,
//! batch_first=True)` in both forms (run with a causal `tgt_mask`, `tgt_key_padding_mask` and
//! `memory_key_padding_mask` over a longer memory), with their outputs and the gradients of
//! `(out * R).sum()`.
//! Outputs must agree within 1e-5 (attention weights too), gradients within 1e-4.

use burn::nn::activation::ActivationConfig;
use burn::nn::attention::{MhaInput, MultiHeadAttentionConfig, generate_autoregressive_mask};
use burn::nn::transformer::{
    TransformerDecoderConfig, TransformerDecoderInput, TransformerEncoderConfig,
};
use burn::tensor::{Bool, Device, Gradients, Tensor, TensorData};
use serde_json::Value;
use strata::layers::{StateDict, load_decoder_layer, load_encoder_layer, load_mha};
use strata::tensor::convert::to_vec;
use strata_tests::close_to_json as close_to;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/transformer.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn state_dict(case: &str) -> StateDict {
    StateDict::read(format!(
        "{}/fixtures/transformer/{case}.pt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn flat(v: &Value) -> (Vec<f32>, Vec<usize>) {
    strata_tests::json_tensor(v)
}

fn tensor3(v: &Value, d: &Device) -> Tensor<3> {
    let (data, shape) = flat(v);
    Tensor::from_data(TensorData::new(data, shape), d)
}

fn pad_mask(v: &Value, d: &Device) -> Tensor<2, Bool> {
    let (data, shape) = flat(v);
    let t: Tensor<2> = Tensor::from_data(TensorData::new(data, shape), d);
    t.greater_elem(0.5)
}

/// The gradient of a burn `[in, out]` weight as PyTorch's `[out, in]`, flattened.
fn grad_out_in(w: &burn::module::Param<Tensor<2>>, grads: &Gradients) -> Vec<f32> {
    to_vec(w.val().grad(grads).unwrap().transpose())
}

/// A layer case's device (autodiff flex), norm placement and activation.
fn layer_case(f: &Value) -> (Device, bool, ActivationConfig) {
    let activation = match f["activation"].as_str().unwrap() {
        "relu" => ActivationConfig::Relu,
        _ => ActivationConfig::Gelu,
    };
    (
        Device::flex().autodiff(),
        f["norm_first"].as_bool().unwrap(),
        activation,
    )
}

#[test]
fn multihead_attention_matches_pytorch() {
    let f = &fixture()["mha"];
    let device = Device::flex().autodiff();
    let mha = MultiHeadAttentionConfig::new(8, 2)
        .with_dropout(0.0)
        .init(&device);
    let mut sd = state_dict("mha");
    let mha = load_mha(mha, &mut sd, "", &device).unwrap();
    sd.finish().unwrap();
    let x = tensor3(&f["x"], &device).require_grad();
    let [b, t, _] = x.dims();
    let causal: Tensor<2, Bool> = Tensor::<2>::ones([t, t], &device).triu(1).greater_elem(0.5);
    let causal = causal.unsqueeze_dim::<3>(0).expand([b, t, t]);
    let out = mha.forward(
        MhaInput::self_attn(x.clone())
            .mask_pad(pad_mask(&f["pad"], &device))
            .mask_attn(causal),
    );
    close_to(
        "mha output",
        to_vec(out.context.clone()),
        &f["output"],
        1e-5,
    );
    close_to("mha weights", to_vec(out.weights), &f["weights"], 1e-5);
    let grads = (out.context * tensor3(&f["r"], &device)).sum().backward();
    close_to(
        "mha grad x",
        to_vec(x.grad(&grads).unwrap()),
        &f["grad_x"],
        1e-4,
    );
    let g = &f["grad_params"];
    let in_proj: Vec<f32> = [&mha.query, &mha.key, &mha.value]
        .iter()
        .flat_map(|l| grad_out_in(&l.weight, &grads))
        .collect();
    close_to("grad in_proj_weight", in_proj, &g["in_proj_weight"], 1e-4);
    let in_bias: Vec<f32> = [&mha.query, &mha.key, &mha.value]
        .iter()
        .flat_map(|l| to_vec(l.bias.as_ref().unwrap().val().grad(&grads).unwrap()))
        .collect();
    close_to("grad in_proj_bias", in_bias, &g["in_proj_bias"], 1e-4);
    close_to(
        "grad out_proj.weight",
        grad_out_in(&mha.output.weight, &grads),
        &g["out_proj.weight"],
        1e-4,
    );
}

#[test]
fn encoder_layers_match_pytorch_post_and_pre_norm() {
    let all = fixture();
    // burn's layer forward, then the same layer through Strata's kernels (flex).
    let cases = ["encoder_post_relu", "encoder_pre_gelu"];
    for (case, kernels) in cases.iter().flat_map(|c| [(*c, false), (*c, true)]) {
        let f = &all[case];
        let (device, norm_first, activation) = layer_case(f);
        let mut encoder = TransformerEncoderConfig::new(8, 16, 2, 1)
            .with_dropout(0.0)
            .with_norm_first(norm_first)
            .with_activation(activation)
            .init(&device);
        let mut sd = state_dict(case);
        let layer = load_encoder_layer(encoder.layers.remove(0), &mut sd, "", &device).unwrap();
        sd.finish().unwrap();
        let x = tensor3(&f["x"], &device).require_grad();
        let pad = Some(pad_mask(&f["pad"], &device));
        let y = if kernels {
            strata::kernels::transformer_encoder_layer(&layer, x.clone(), pad, None, 1e-5)
        } else {
            layer.forward(x.clone(), pad, None)
        };
        let case = if kernels {
            format!("{case} (kernels)")
        } else {
            case.to_string()
        };
        close_to(
            &format!("{case} output"),
            to_vec(y.clone()),
            &f["output"],
            1e-5,
        );
        let grads = (y * tensor3(&f["r"], &device)).sum().backward();
        close_to(
            &format!("{case} grad x"),
            to_vec(x.grad(&grads).unwrap()),
            &f["grad_x"],
            1e-4,
        );
        let g = &f["grad_params"];
        let (n1, n2) = if norm_first {
            (&layer.norm_2, &layer.norm_1)
        } else {
            (&layer.norm_1, &layer.norm_2)
        };
        for (name, got) in [
            (
                "linear1.weight",
                grad_out_in(&layer.pwff.linear_inner.weight, &grads),
            ),
            (
                "linear2.weight",
                grad_out_in(&layer.pwff.linear_outer.weight, &grads),
            ),
            ("norm1.weight", to_vec(n1.gamma.val().grad(&grads).unwrap())),
            ("norm2.weight", to_vec(n2.gamma.val().grad(&grads).unwrap())),
            (
                "self_attn.out_proj.weight",
                grad_out_in(&layer.mha.output.weight, &grads),
            ),
        ] {
            close_to(&format!("{case} grad {name}"), got, &g[name], 1e-4);
        }
    }
}

#[test]
fn decoder_layers_match_pytorch_post_and_pre_norm() {
    let all = fixture();
    for case in ["decoder_post_relu", "decoder_pre_gelu"] {
        let f = &all[case];
        let (device, norm_first, activation) = layer_case(f);
        let mut decoder = TransformerDecoderConfig::new(8, 16, 2, 1)
            .with_dropout(0.0)
            .with_norm_first(norm_first)
            .with_activation(activation)
            .init(&device);
        let mut sd = state_dict(case);
        let layer = load_decoder_layer(decoder.layers.remove(0), &mut sd, "", &device).unwrap();
        sd.finish().unwrap();
        decoder.layers.insert(0, layer);
        let x = tensor3(&f["x"], &device).require_grad();
        let memory = tensor3(&f["memory"], &device).require_grad();
        let [b, t, _] = x.dims();
        let y = decoder.forward(
            TransformerDecoderInput::new(x.clone(), memory.clone())
                .target_mask_attn(generate_autoregressive_mask(b, t, &device))
                .target_mask_pad(pad_mask(&f["pad"], &device))
                .memory_mask_pad(pad_mask(&f["memory_pad"], &device)),
        );
        close_to(
            &format!("{case} output"),
            to_vec(y.clone()),
            &f["output"],
            1e-5,
        );
        let grads = (y * tensor3(&f["r"], &device)).sum().backward();
        close_to(
            &format!("{case} grad x"),
            to_vec(x.grad(&grads).unwrap()),
            &f["grad_x"],
            1e-4,
        );
        close_to(
            &format!("{case} grad memory"),
            to_vec(memory.grad(&grads).unwrap()),
            &f["grad_memory"],
            1e-4,
        );
        let layer = &decoder.layers[0];
        let (n1, n2, n3) = if norm_first {
            (&layer.norm_3, &layer.norm_1, &layer.norm_2)
        } else {
            (&layer.norm_1, &layer.norm_2, &layer.norm_3)
        };
        let g = &f["grad_params"];
        for (name, got) in [
            (
                "linear1.weight",
                grad_out_in(&layer.pwff.linear_inner.weight, &grads),
            ),
            (
                "linear2.bias",
                to_vec(
                    layer
                        .pwff
                        .linear_outer
                        .bias
                        .as_ref()
                        .unwrap()
                        .val()
                        .grad(&grads)
                        .unwrap(),
                ),
            ),
            ("norm1.weight", to_vec(n1.gamma.val().grad(&grads).unwrap())),
            ("norm2.weight", to_vec(n2.gamma.val().grad(&grads).unwrap())),
            (
                "norm3.bias",
                to_vec(n3.beta.as_ref().unwrap().val().grad(&grads).unwrap()),
            ),
            (
                "self_attn.out_proj.weight",
                grad_out_in(&layer.self_attn.output.weight, &grads),
            ),
            (
                "multihead_attn.out_proj.weight",
                grad_out_in(&layer.cross_attn.output.weight, &grads),
            ),
        ] {
            close_to(&format!("{case} grad {name}"), got, &g[name], 1e-4);
        }
        // The cross-attention's key projection is the part of `multihead_attn.in_proj_weight`
        // after the query's rows.
        let key = grad_out_in(&layer.cross_attn.key.weight, &grads);
        let want = &flat(&g["multihead_attn.in_proj_weight"]).0[64..128];
        strata_tests::assert_close(
            &format!("{case} grad cross-attention key"),
            &key,
            want,
            1e-4,
        );
    }
}

#[test]
fn a_state_dict_of_another_shape_is_refused() {
    let device = Device::flex();
    let mha = MultiHeadAttentionConfig::new(16, 2).init(&device);
    let mut sd = state_dict("mha");
    let e = load_mha(mha, &mut sd, "", &device).unwrap_err().to_string();
    assert!(e.contains("in_proj_weight") && e.contains("[24, 8]"), "{e}");
    let mut sd = state_dict("encoder_post_relu");
    let mha = MultiHeadAttentionConfig::new(8, 2).init(&device);
    load_mha(mha, &mut sd, "self_attn", &device).unwrap();
    let unused = sd.finish().unwrap_err().to_string();
    assert!(unused.contains("linear1.weight"), "{unused}");
}
