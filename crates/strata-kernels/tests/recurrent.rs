//! The recurrent kernel op on flex across training steps: a later step reuses an earlier
//! step's workspace (kept, not zeroed) and must give the same bits as the first; a token input
//! reads the table's rows in place.

use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use strata_kernels::{RecurrentCell, RecurrentInput, RecurrentSpec};
use strata_tensor::convert::to_vec;

/// One training step's outputs and gradients (table, `w_hh`, bias) for an LSTM over tokens.
fn step(device: &Device, table: &Tensor<2>, w_hh: &Tensor<2>, bias: &Tensor<1>) -> Vec<Vec<f32>> {
    let (batch, time, hidden) = (3, 9, 5);
    let ids: Vec<i64> = (0..batch * time)
        .map(|i| ((i * 5 + i / 4) % 7) as i64)
        .collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, time]), device);
    let [table, w_hh, bias] =
        [table.clone(), w_hh.clone(), bias.clone().reshape([1, 20])].map(|t| t.require_grad());
    let spec = RecurrentSpec {
        cell: RecurrentCell::Lstm,
        reverse: false,
        projected: true,
    };
    let input = RecurrentInput::Rows {
        table: table.clone(),
        tokens,
    };
    let h0 = Tensor::<2>::zeros([batch, hidden], device);
    let b = bias.clone().reshape([20]);
    let out = strata_kernels::recurrent(
        spec,
        input,
        None,
        w_hh.clone(),
        Some(b),
        None,
        h0.clone(),
        Some(h0),
        None,
    )
    .expect("flex runs the kernel");
    let loss = (out.output.clone() * out.output.clone()).sum() + out.cell.expect("a cell").sum();
    let grads = loss.backward();
    let grad = |t: &Tensor<2>| to_vec(t.grad(&grads).expect("a gradient"));
    vec![to_vec(out.output), grad(&table), grad(&w_hh), grad(&bias)]
}

#[test]
fn a_reused_workspace_gives_the_same_bits() {
    let device = Device::flex().autodiff();
    let table = Tensor::<2>::random([7, 20], Distribution::Normal(0.0, 0.5), &device);
    let w_hh = Tensor::<2>::random([20, 5], Distribution::Normal(0.0, 0.5), &device);
    let bias = Tensor::<1>::random([20], Distribution::Normal(0.0, 0.5), &device);
    let first = step(&device, &table, &w_hh, &bias);
    for k in 0..3 {
        let again = step(&device, &table, &w_hh, &bias);
        for (i, (a, b)) in first.iter().zip(&again).enumerate() {
            let same =
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "step {k}, result {i} differs");
        }
    }
}
