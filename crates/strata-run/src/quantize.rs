//! Post-training int8 quantisation of a run's weights on disk (`strata compress --quantize
//! int8`): every float weight matrix and kernel (two or more dimensions) stored as symmetric
//! int8 values, `w ≈ q · scale` with `q` in `[-127, 127]` and `scale = max |w| / 127`, one
//! scale per tensor or per output channel (a convolution kernel's first dimension, a burn
//! linear weight's last), beside it as `NAME.int8_scale`. Biases and normalisation parameters
//! stay in f32. The file is safetensors (`model.int8.safetensors`, int8 tensors as `I8`);
//! loading a run dequantises it to f32. An MLP's linear layers and a CNN's convolutions and
//! linear layers then run in int8 at inference ([`strata_arch::Network::quantize_int8`], the
//! same int8 values); other architectures run the float kernels on the rounded weights. With
//! static quantisation (`--calibrate N`) the file's metadata also holds each int8 layer's
//! input scale (`strata.int8_input_scales`, JSON by layer name).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView, View};
use serde::Serialize;

use crate::error::{Error, Result};

/// The file name of a run's int8 weights.
pub const INT8_WEIGHTS: &str = "model.int8.safetensors";

/// Suffix of a quantised tensor's scales.
const SCALE: &str = ".int8_scale";

/// One scale per tensor, or per output channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Granularity {
    /// One scale for the whole tensor.
    PerTensor,
    /// One scale per output channel.
    PerChannel,
}

/// What [`quantize_file`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Int8Report {
    /// The scales' granularity.
    pub granularity: Granularity,
    /// Tensors stored as int8.
    pub tensors: usize,
    /// Values stored as int8.
    pub values: usize,
    /// The largest `|w - q · scale|` over them.
    pub max_abs_error: f32,
    /// Static quantisation: the training batches the input scales were calibrated on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration_batches: Option<usize>,
    /// Static quantisation: each int8 layer's input scale (`max |x| / 127` over the
    /// calibration batches), by layer name; empty for dynamic scales.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub input_scales: BTreeMap<String, f32>,
}

/// The metadata key of the static input scales.
const INPUT_SCALES: &str = "strata.int8_input_scales";

/// An owned tensor for [`safetensors::serialize`].
pub(crate) struct Owned {
    pub(crate) dtype: Dtype,
    pub(crate) shape: Vec<usize>,
    pub(crate) data: Vec<u8>,
}

impl View for &Owned {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn corrupt(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::Config {
        path: path.to_path_buf(),
        message: format!("cannot read weights: {why}"),
    }
}

/// Little-endian f32 bytes as values.
pub(crate) fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Values as little-endian f32 bytes.
pub(crate) fn bytes_of(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Which scale each value of a tensor of `shape` uses, and how many scales there are.
fn channel_of(shape: &[usize], granularity: Granularity) -> (usize, Box<dyn Fn(usize) -> usize>) {
    let n: usize = shape.iter().product();
    match (granularity, shape.len()) {
        (Granularity::PerTensor, _) => (1, Box::new(|_| 0)),
        // burn's linear weights are [inputs, outputs]: an output channel is a column.
        (Granularity::PerChannel, 2) => {
            let cols = shape[1];
            (cols, Box::new(move |i| i % cols))
        }
        // Kernels are [outputs, inputs, ...]: an output channel is a slice of the first axis.
        (Granularity::PerChannel, _) => {
            let per = n / shape[0].max(1);
            (shape[0], Box::new(move |i| i / per.max(1)))
        }
    }
}

/// Writes `src` (float safetensors, as a run saves them) to `dst` with its weight matrices and
/// kernels in int8, and `input_scales` (static quantisation: the input scale of each int8
/// layer by name, [`strata_arch::Network::int8_inputs_mut`]; empty for dynamic) in its
/// metadata.
///
/// # Errors
/// An unreadable or corrupt file, a weight that is not finite, an input scale that is not a
/// positive finite number, I/O errors.
pub fn quantize_file(
    src: &Path,
    dst: &Path,
    granularity: Granularity,
    input_scales: &BTreeMap<String, f32>,
) -> Result<Int8Report> {
    if let Some((name, s)) = input_scales
        .iter()
        .find(|(_, s)| !(s.is_finite() && **s > 0.0))
    {
        return Err(Error::Usage(format!(
            "input scale {s} for {name}: not positive"
        )));
    }
    let bytes = std::fs::read(src).map_err(|e| Error::io(src, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(src, e))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(src, e))?;
    let mut out: Vec<(String, Owned)> = Vec::new();
    let mut report = Int8Report {
        granularity,
        tensors: 0,
        values: 0,
        max_abs_error: 0.0,
        calibration_batches: None,
        input_scales: input_scales.clone(),
    };
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        if view.dtype() != Dtype::F32 || shape.len() < 2 {
            out.push((
                name,
                Owned {
                    dtype: view.dtype(),
                    shape,
                    data: view.data().to_vec(),
                },
            ));
            continue;
        }
        let w = f32s(view.data());
        if let Some(bad) = w.iter().find(|v| !v.is_finite()) {
            return Err(corrupt(
                src,
                format!("{name} holds {bad}: nothing to quantise"),
            ));
        }
        let (n_scales, channel) = channel_of(&shape, granularity);
        let (q, scales) = strata_kernels::int8::quantize_symmetric(&w, n_scales, &channel);
        for (i, (&v, &q)) in w.iter().zip(&q).enumerate() {
            let error = (v - f32::from(q) * scales[channel(i)]).abs();
            report.max_abs_error = report.max_abs_error.max(error);
        }
        let q: Vec<u8> = q.into_iter().map(|q| q as u8).collect();
        report.tensors += 1;
        report.values += w.len();
        out.push((
            format!("{name}{SCALE}"),
            Owned {
                dtype: Dtype::F32,
                shape: vec![n_scales],
                data: bytes_of(&scales),
            },
        ));
        out.push((
            name,
            Owned {
                dtype: Dtype::I8,
                shape,
                data: q,
            },
        ));
    }
    let mut info: HashMap<String, String> = header.metadata().clone().unwrap_or_default();
    info.insert("strata.quantization".into(), "int8".into());
    if !input_scales.is_empty() {
        let json = serde_json::to_string(input_scales).map_err(|e| corrupt(dst, e))?;
        info.insert(INPUT_SCALES.into(), json);
    }
    let data = safetensors::serialize(out.iter().map(|(n, t)| (n.as_str(), t)), Some(info))
        .map_err(|e| corrupt(dst, e))?;
    strata_train::write_atomic(dst, &data)?;
    Ok(report)
}

/// Whether an int8 file written by [`quantize_file`] has a scale per tensor or per output
/// channel (some tensor with more than one scale), and its static input scales by layer
/// name (empty for dynamic quantisation).
///
/// # Errors
/// An unreadable or corrupt file, input scales that are not positive numbers by name.
pub(crate) fn int8_layout(path: &Path) -> Result<(Granularity, BTreeMap<String, f32>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(path, e))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(path, e))?;
    let per_channel = st
        .tensors()
        .iter()
        .any(|(name, view)| name.ends_with(SCALE) && view.shape().iter().product::<usize>() > 1);
    let granularity = if per_channel {
        Granularity::PerChannel
    } else {
        Granularity::PerTensor
    };
    let scales: BTreeMap<String, f32> =
        match header.metadata().as_ref().and_then(|m| m.get(INPUT_SCALES)) {
            Some(json) => serde_json::from_str(json)
                .map_err(|e| corrupt(path, format!("{INPUT_SCALES}: {e}")))?,
            None => BTreeMap::new(),
        };
    if let Some((name, s)) = scales.iter().find(|(_, s)| !(s.is_finite() && **s > 0.0)) {
        return Err(corrupt(path, format!("input scale {s} for {name}")));
    }
    Ok((granularity, scales))
}

/// The float safetensors bytes of an int8 file written by [`quantize_file`]: each int8 tensor
/// times its scales.
///
/// # Errors
/// An unreadable or corrupt file: an int8 tensor without its scales, scales of the wrong
/// length.
pub fn dequantize_file(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(path, e))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(path, e))?;
    let views: HashMap<String, TensorView<'_>> = st.tensors().into_iter().collect();
    let mut out: Vec<(String, Owned)> = Vec::new();
    for (name, view) in &views {
        if name.ends_with(SCALE) {
            continue;
        }
        let shape = view.shape().to_vec();
        if view.dtype() != Dtype::I8 {
            out.push((
                name.clone(),
                Owned {
                    dtype: view.dtype(),
                    shape,
                    data: view.data().to_vec(),
                },
            ));
            continue;
        }
        let scales = views
            .get(&format!("{name}{SCALE}"))
            .filter(|s| s.dtype() == Dtype::F32)
            .map(|s| f32s(s.data()))
            .ok_or_else(|| corrupt(path, format!("{name} is int8 without its scales")))?;
        let granularity = if scales.len() == 1 {
            Granularity::PerTensor
        } else {
            Granularity::PerChannel
        };
        let (n_scales, channel) = channel_of(&shape, granularity);
        if n_scales != scales.len() {
            return Err(corrupt(
                path,
                format!("{name}: {} scales for {n_scales} channels", scales.len()),
            ));
        }
        let w: Vec<f32> = view
            .data()
            .iter()
            .enumerate()
            .map(|(i, &b)| f32::from(b as i8) * scales[channel(i)])
            .collect();
        out.push((
            name.clone(),
            Owned {
                dtype: Dtype::F32,
                shape,
                data: bytes_of(&w),
            },
        ));
    }
    let mut info = header.metadata().clone().unwrap_or_default();
    info.remove("strata.quantization");
    safetensors::serialize(out.iter().map(|(n, t)| (n.as_str(), t)), Some(info))
        .map_err(|e| corrupt(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
        let owned: Vec<(String, Owned)> = tensors
            .iter()
            .map(|(n, s, v)| {
                (
                    n.to_string(),
                    Owned {
                        dtype: Dtype::F32,
                        shape: s.clone(),
                        data: bytes_of(v),
                    },
                )
            })
            .collect();
        let data =
            safetensors::serialize(owned.iter().map(|(n, t)| (n.as_str(), t)), None).unwrap();
        std::fs::write(path, data).unwrap();
    }

    fn read(bytes: &[u8], name: &str) -> Vec<f32> {
        let st = SafeTensors::deserialize(bytes).unwrap();
        f32s(st.tensor(name).unwrap().data())
    }

    #[test]
    fn weights_round_trip_within_half_a_step_and_biases_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (
            dir.path().join("f.safetensors"),
            dir.path().join("q.safetensors"),
        );
        // A [3, 2] linear weight whose columns differ in scale by 100x, a bias, a kernel.
        let w = vec![0.5, 0.001, -1.0, 0.002, 0.25, -0.004];
        let bias = vec![0.123_456_7, -3.0];
        let kernel: Vec<f32> = (0..2 * 3 * 2 * 2)
            .map(|i| (i as f32 - 11.0) * 0.07)
            .collect();
        write(
            &src,
            &[
                ("fc.weight", vec![3, 2], w.clone()),
                ("fc.bias", vec![2], bias.clone()),
                ("conv.weight", vec![2, 3, 2, 2], kernel.clone()),
            ],
        );
        for g in [Granularity::PerTensor, Granularity::PerChannel] {
            let report = quantize_file(&src, &dst, g, &BTreeMap::new()).unwrap();
            assert_eq!((report.tensors, report.values), (2, 6 + 24));
            let back = dequantize_file(&dst).unwrap();
            assert_eq!(read(&back, "fc.bias"), bias);
            let got = read(&back, "fc.weight");
            for (i, (a, b)) in got.iter().zip(&w).enumerate() {
                // Half a step of the scale this value's channel uses.
                let step = match g {
                    Granularity::PerTensor => 1.0 / 127.0,
                    Granularity::PerChannel => [1.0, 0.004][i % 2] / 127.0,
                };
                assert!((a - b).abs() <= step / 2.0 + 1e-7, "{g:?} {i}: {a} vs {b}");
            }
            let got = read(&back, "conv.weight");
            assert!(
                got.iter()
                    .zip(&kernel)
                    .all(|(a, b)| (a - b).abs() <= 0.84 / 127.0 / 2.0 + 1e-6)
            );
            // Stored as one byte per weight.
            let st_bytes = std::fs::read(&dst).unwrap();
            let st = SafeTensors::deserialize(&st_bytes).unwrap();
            assert_eq!(st.tensor("fc.weight").unwrap().dtype(), Dtype::I8);
        }
        // Per channel keeps the small column that one scale per tensor flattens to zero.
        quantize_file(&src, &dst, Granularity::PerTensor, &BTreeMap::new()).unwrap();
        assert_eq!(read(&dequantize_file(&dst).unwrap(), "fc.weight")[1], 0.0);
        quantize_file(&src, &dst, Granularity::PerChannel, &BTreeMap::new()).unwrap();
        assert!((read(&dequantize_file(&dst).unwrap(), "fc.weight")[1] - 0.001).abs() < 1e-4);
    }

    #[test]
    fn a_weight_without_scales_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.safetensors");
        let t = Owned {
            dtype: Dtype::I8,
            shape: vec![2, 2],
            data: vec![1, 2, 3, 4],
        };
        let data = safetensors::serialize([("w", &t)], None).unwrap();
        std::fs::write(&path, data).unwrap();
        let e = dequantize_file(&path).unwrap_err().to_string();
        assert!(e.contains("without its scales"), "{e}");
        std::fs::write(&path, b"not safetensors").unwrap();
        assert!(dequantize_file(&path).is_err());
        assert!(
            quantize_file(
                &path,
                &dir.path().join("q"),
                Granularity::PerTensor,
                &BTreeMap::new()
            )
            .is_err()
        );
    }
}
