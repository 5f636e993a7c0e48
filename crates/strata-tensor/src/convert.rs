//! Moving plain Rust buffers in and out of burn tensors.

use burn::tensor::{Device, Int, Tensor, TensorData};

/// A `[rows, cols]` float tensor from row-major data.
///
/// # Panics
/// When `data.len() != rows * cols` (a programming error, not user input).
pub fn matrix(data: Vec<f32>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    assert_eq!(
        data.len(),
        rows * cols,
        "matrix: {} values for {rows}x{cols}",
        data.len()
    );
    Tensor::from_data(TensorData::new(data, [rows, cols]), device)
}

/// A 1-D integer tensor of class indices.
pub fn classes(labels: &[usize], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

/// The values of a float tensor, row-major, as `f32`.
pub fn to_vec<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("a float tensor converts to f32")
}

/// The single value of a one-element float tensor.
pub fn scalar(tensor: Tensor<1>) -> f32 {
    to_vec(tensor)[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_round_trips() {
        let d = Device::flex();
        let v = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let m = matrix(v.clone(), 2, 3, &d);
        assert_eq!(m.dims(), [2, 3]);
        assert_eq!(to_vec(m), v);
        assert_eq!(classes(&[2, 0], &d).dims(), [2]);
    }
}
