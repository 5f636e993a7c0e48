//! Strata's recurrent layers against PyTorch's `nn.RNN`, `nn.LSTM` and `nn.GRU`.
//!
//! `tests/fixtures/gen_recurrent.py` builds each module (e.g.
//! `nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)`), saves its
//! `state_dict()` with `torch.save` to `fixtures/recurrent/<case>.pt`, runs it on a random input
//! and initial state (through `pack_padded_sequence` for the cases with lengths), and
//! back-propagates `(out * R).sum() + (h_n * S).sum() [+ (c_n * T).sum()]`. Here each `.pt` is
//! loaded with burn-store's `PytorchStore` and our key remapping only, and the outputs (1e-5)
//! and the gradients of input, initial state and every parameter (1e-4) are compared.

use burn::module::Param;
use burn::store::{ModuleSnapshot, PytorchStore};
use burn::tensor::{Device, Tensor, TensorData};
use serde_json::Value;
use strata::layers::{
    CellKind, Direction, Recurrent, RecurrentConfig, RecurrentState, length_mask,
    pytorch_key_remapping,
};
use strata::tensor::convert::to_vec;
use strata_tests::close_to_json as assert_close;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/recurrent.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn flat(v: &Value) -> (Vec<f32>, Vec<usize>) {
    strata_tests::json_tensor(v)
}

fn tensor3(v: &Value, d: &Device) -> Tensor<3> {
    let (data, shape) = flat(v);
    Tensor::from_data(TensorData::new(data, shape), d)
}

fn cell(name: &str) -> CellKind {
    match name {
        "lstm" => CellKind::Lstm,
        "gru" => CellKind::Gru,
        "rnn_tanh" => CellKind::RnnTanh,
        "rnn_relu" => CellKind::RnnRelu,
        other => panic!("unknown cell {other}"),
    }
}

fn load(case: &str, f: &Value, device: &Device) -> Recurrent {
    let config = RecurrentConfig::new(
        cell(f["cell"].as_str().unwrap()),
        f["d_input"].as_u64().unwrap() as usize,
        f["d_hidden"].as_u64().unwrap() as usize,
    )
    .with_n_layers(f["n_layers"].as_u64().unwrap() as usize)
    .with_bidirectional(f["bidirectional"].as_bool().unwrap());
    let mut model = config.init(device);
    let path = format!(
        "{}/fixtures/recurrent/{case}.pt",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut store = PytorchStore::from_file(path).allow_partial(false);
    for (from, to) in pytorch_key_remapping("", "") {
        store = store.with_key_remapping(from, to);
    }
    let result = model.load_from(&mut store).unwrap();
    assert!(
        result.errors.is_empty() && result.missing.is_empty() && result.unused.is_empty(),
        "{case}: {result:?}"
    );
    model
}

/// A weight and its bias under PyTorch's names: `(weight name, weight, bias, bias name)`.
type Named<'a> = (
    String,
    &'a Param<Tensor<2>>,
    Option<&'a Param<Tensor<1>>>,
    String,
);

/// PyTorch's parameter name of each of our parameters, with the parameter.
fn named(model: &Recurrent) -> Vec<Named<'_>> {
    let mut out = Vec::new();
    for (l, layer) in model.layers.iter().enumerate() {
        let dirs: Vec<(&Direction, &str)> = std::iter::once((&layer.forward, ""))
            .chain(layer.reverse.as_ref().map(|d| (d, "_reverse")))
            .collect();
        for (d, suffix) in dirs {
            out.push((
                format!("weight_ih_l{l}{suffix}"),
                &d.weight_ih,
                d.bias_ih.as_ref(),
                format!("bias_ih_l{l}{suffix}"),
            ));
            out.push((
                format!("weight_hh_l{l}{suffix}"),
                &d.weight_hh,
                d.bias_hh.as_ref(),
                format!("bias_hh_l{l}{suffix}"),
            ));
        }
    }
    out
}

#[test]
fn recurrent_layers_match_pytorch_outputs_and_gradients() {
    let fixtures = fixture();
    let device = Device::flex().autodiff();
    let cases = fixtures.as_object().unwrap();
    assert_eq!(cases.len(), 6);
    for (case, f) in cases {
        let model = load(case, f, &device);
        let x = tensor3(&f["x"], &device).require_grad();
        let h0 = tensor3(&f["h0"], &device).require_grad();
        let c0 = f.get("c0").map(|c| tensor3(c, &device).require_grad());
        let [batch, time, _] = x.dims();
        let mask = f["lengths"].as_array().map(|l| {
            let lengths: Vec<usize> = l.iter().map(|v| v.as_u64().unwrap() as usize).collect();
            assert_eq!(lengths.len(), batch);
            length_mask(&lengths, time, &device)
        });
        let state = RecurrentState {
            hidden: h0.clone(),
            cell: c0.clone(),
        };
        let (y, s) = model.forward(x.clone(), mask, Some(state));
        assert_close(
            &format!("{case} output"),
            to_vec(y.clone()),
            &f["output"],
            1e-5,
        );
        assert_close(
            &format!("{case} h_n"),
            to_vec(s.hidden.clone()),
            &f["h_n"],
            1e-5,
        );
        let mut objective = (y * tensor3(&f["r_output"], &device)).sum()
            + (s.hidden * tensor3(&f["r_h_n"], &device)).sum();
        if let Some(c_n) = s.cell {
            assert_close(&format!("{case} c_n"), to_vec(c_n.clone()), &f["c_n"], 1e-5);
            objective = objective + (c_n * tensor3(&f["r_c_n"], &device)).sum();
        }
        let grads = objective.backward();
        assert_close(
            &format!("{case} grad x"),
            to_vec(x.grad(&grads).unwrap()),
            &f["grad_x"],
            1e-4,
        );
        assert_close(
            &format!("{case} grad h0"),
            to_vec(h0.grad(&grads).unwrap()),
            &f["grad_h0"],
            1e-4,
        );
        if let Some(c0) = c0 {
            assert_close(
                &format!("{case} grad c0"),
                to_vec(c0.grad(&grads).unwrap()),
                &f["grad_c0"],
                1e-4,
            );
        }
        let want = &f["grad_params"];
        let mut checked = 0;
        for (w_name, w, b, b_name) in named(&model) {
            assert_close(
                &format!("{case} grad {w_name}"),
                to_vec(w.val().grad(&grads).unwrap()),
                &want[&w_name],
                1e-4,
            );
            let b = b.expect("fixtures have biases");
            assert_close(
                &format!("{case} grad {b_name}"),
                to_vec(b.val().grad(&grads).unwrap()),
                &want[&b_name],
                1e-4,
            );
            checked += 2;
        }
        assert_eq!(
            checked,
            want.as_object().unwrap().len(),
            "{case}: every parameter checked"
        );
    }
}

#[test]
fn a_state_dict_of_another_shape_is_refused() {
    // The 2-layer bidirectional LSTM's weights do not fit a 1-layer GRU.
    let device = Device::flex();
    let mut model = RecurrentConfig::new(CellKind::Gru, 3, 4).init(&device);
    let path = format!(
        "{}/fixtures/recurrent/lstm_2x_bi.pt",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut store = PytorchStore::from_file(path);
    for (from, to) in pytorch_key_remapping("", "") {
        store = store.with_key_remapping(from, to);
    }
    let refused = match model.load_from(&mut store) {
        Err(_) => true,
        Ok(r) => !r.errors.is_empty() || !r.unused.is_empty(),
    };
    assert!(refused);
}
