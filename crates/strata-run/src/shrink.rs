//! Structured pruning (Li et al. 2017): whole convolution channels of a CNN or a VGG, hidden
//! units of an MLP, or the channels inside a ResNet's residual blocks, with the smallest L1
//! norm of their incoming weights removed, and the layers rebuilt smaller. The network's config
//! shrinks with them (`channels`, `hidden`, `inner`), so the result is a plain run of a
//! smaller model: less to store and less to compute.
//!
//! Works on the weights as saved (safetensors), by the parameter names of Strata's CNN
//! (`Cnn.features.I.conv`, `.norm`, then `Cnn.hidden.linear` or `Cnn.classifier`), MLP
//! (`Mlp.hidden.I.linear`, `.norm`, then `Mlp.output`), VGG (`Vgg.vgg.features.I.conv`, the
//! batch norm at `I + 1`, then the next convolution or `Vgg.vgg.classifier.0`) and ResNet
//! (`ResNet.resnet.layerS.J`'s `conv1` and `bn1`, then its `conv2`). A ResNet block's output
//! channels stay: the residual connections add them to the next block's, so they are tied
//! across a whole stage. Its first convolution's outputs are read by its second convolution
//! alone, as in Li et al.'s ResNets.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors};

use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::quantize::{Owned, bytes_of, f32s};

/// A float tensor: its shape and values.
#[derive(Debug, Clone, PartialEq)]
struct Values {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Values {
    /// The entries whose index along `axis` is in `keep` (in that order).
    fn select(&self, axis: usize, keep: &[usize]) -> Self {
        let outer: usize = self.shape[..axis].iter().product();
        let len = self.shape[axis];
        let inner: usize = self.shape[axis + 1..].iter().product();
        let mut data = Vec::with_capacity(outer * keep.len() * inner);
        for o in 0..outer {
            for &k in keep {
                let start = (o * len + k) * inner;
                data.extend_from_slice(&self.data[start..start + inner]);
            }
        }
        let mut shape = self.shape.clone();
        shape[axis] = keep.len();
        Self { shape, data }
    }

    /// The L1 norm of each slice along `axis`.
    fn norms(&self, axis: usize) -> Vec<f32> {
        let len = self.shape[axis];
        let inner: usize = self.shape[axis + 1..].iter().product();
        let mut n = vec![0f32; len];
        for (i, v) in self.data.iter().enumerate() {
            n[(i / inner) % len] += v.abs();
        }
        n
    }
}

/// The indices (ascending) of the `1 - fraction` share of `norms` with the largest values, at
/// least one.
fn keep_largest(norms: &[f32], fraction: f64) -> Vec<usize> {
    let n = norms.len();
    let kept = ((n as f64 * (1.0 - fraction)).round() as usize).clamp(1, n);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| norms[b].total_cmp(&norms[a]).then(a.cmp(&b)));
    let mut keep = order[..kept].to_vec();
    keep.sort_unstable();
    keep
}

/// The weights in `src` with the share `fraction` of each convolution's channels (CNN, VGG),
/// each hidden layer's units (MLP) or each residual block's inner channels (ResNet) removed, as
/// safetensors bytes, and `config` with the widths that remain.
///
/// # Errors
/// A model other than `cnn`, `mlp`, a VGG or a ResNet, a fraction outside `[0, 1)`, weights that are
/// not the model's (a missing or misshapen tensor).
pub(crate) fn shrink(
    src: &Path,
    config: &RunConfig,
    fraction: f64,
) -> Result<(Vec<u8>, RunConfig)> {
    if !(0.0..1.0).contains(&fraction) {
        return Err(Error::Usage(format!(
            "--prune-channels must be in [0, 1) (the share of channels removed), got {fraction}"
        )));
    }
    let bytes = std::fs::read(src).map_err(|e| Error::io(src, e))?;
    let bad = |why: String| Error::Config {
        path: src.to_path_buf(),
        message: format!("cannot shrink these weights: {why}"),
    };
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut t: HashMap<String, Values> = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(bad(format!("{name} is {:?}, not f32", view.dtype())));
        }
        t.insert(
            name,
            Values {
                shape: view.shape().to_vec(),
                data: f32s(view.data()),
            },
        );
    }
    let get = |t: &HashMap<String, Values>, k: &str| {
        t.get(k)
            .cloned()
            .ok_or_else(|| bad(format!("no tensor `{k}`")))
    };
    let mut config = config.clone();
    let model = config.model.clone();
    let resnet = strata_arch::RESNETS.contains(&model.as_str());
    let vgg = strata_arch::VGGS.contains(&model.as_str());
    // Each layer: its weight, the axis of its outputs, and the prefixes of the tensors with one
    // entry per output (bias, batch norm).
    let layers: Vec<(String, usize, Vec<String>)> = match model.as_str() {
        _ if resnet => resnet_blocks(&t)
            .into_iter()
            .map(|block| {
                (
                    format!("{block}.conv1.weight"),
                    0,
                    vec![format!("{block}.bn1")],
                )
            })
            .collect(),
        _ if vgg => vgg_convs(&t)
            .into_iter()
            .map(|i| {
                (
                    format!("{VGG}.{i}.conv.weight"),
                    0,
                    vec![format!("{VGG}.{i}.conv"), format!("{VGG}.{}.norm", i + 1)],
                )
            })
            .collect(),
        "cnn" => (0..config.network.channels.len())
            .map(|i| {
                (
                    format!("Cnn.features.{i}.conv.weight"),
                    0,
                    vec![format!("Cnn.features.{i}")],
                )
            })
            .collect(),
        "mlp" => (0..config.network.hidden.len())
            .map(|i| {
                (
                    format!("Mlp.hidden.{i}.linear.weight"),
                    1,
                    vec![format!("Mlp.hidden.{i}")],
                )
            })
            .collect(),
        other => {
            return Err(Error::Usage(format!(
                "--prune-channels removes the channels of a cnn or a vgg, the hidden units of an mlp or the inner channels of a resnet's blocks; this is a {other} run"
            )));
        }
    };
    if (resnet || vgg) && layers.is_empty() {
        return Err(bad(format!(
            "no {}",
            if resnet {
                "residual block (`ResNet.resnet.layerS.J.conv1.weight`)"
            } else {
                "convolution (`Vgg.vgg.features.I.conv.weight`)"
            }
        )));
    }
    if resnet || vgg {
        config.network.inner = vec![0; layers.len()];
    }
    let next_after = |i: usize| -> (String, usize) {
        match model.as_str() {
            // A block's first convolution is read by its second alone.
            _ if resnet => (layers[i].0.replace(".conv1.", ".conv2."), 1),
            _ if vgg && i + 1 < layers.len() => (layers[i + 1].0.clone(), 1),
            // The classifier reads the pooled map flattened, channel by channel.
            _ if vgg => ("Vgg.vgg.classifier.0.weight".into(), 0),
            "cnn" if i + 1 < layers.len() => (layers[i + 1].0.clone(), 1),
            "cnn" if config.network.d_hidden > 0 => ("Cnn.hidden.linear.weight".into(), 0),
            "cnn" => ("Cnn.classifier.weight".into(), 0),
            _ if i + 1 < layers.len() => (layers[i + 1].0.clone(), 0),
            _ => ("Mlp.output.weight".into(), 0),
        }
    };
    for (i, (weight, out_axis, prefixes)) in layers.iter().enumerate() {
        let w = get(&t, weight)?;
        if w.shape.len() <= *out_axis {
            return Err(bad(format!("{weight} has shape {:?}", w.shape)));
        }
        let width = w.shape[*out_axis];
        let keep = keep_largest(&w.norms(*out_axis), fraction);
        t.insert(weight.clone(), w.select(*out_axis, &keep));
        let per_output: Vec<String> = t
            .keys()
            .filter(|k| {
                prefixes.iter().any(|p| k.starts_with(&format!("{p}.")))
                    && *k != weight
                    && t[*k].shape.len() == 1
                    && t[*k].shape[0] == width
            })
            .cloned()
            .collect();
        for k in per_output {
            let v = t[&k].select(0, &keep);
            t.insert(k, v);
        }
        // The next layer reads the kept outputs only: for a flattened feature map, each kept
        // channel's block of positions.
        let (next, in_axis) = next_after(i);
        let n = get(&t, &next)?;
        if n.shape.len() <= in_axis {
            return Err(bad(format!("{next} has shape {:?}", n.shape)));
        }
        let rows = n.shape[in_axis];
        let per = rows / width.max(1);
        if per == 0 || per * width != rows {
            return Err(bad(format!(
                "{next} reads {rows} inputs, not a multiple of {weight}'s {width} outputs"
            )));
        }
        let inputs: Vec<usize> = keep.iter().flat_map(|&c| c * per..(c + 1) * per).collect();
        t.insert(next, n.select(in_axis, &inputs));
        match model.as_str() {
            _ if resnet || vgg => config.network.inner[i] = keep.len(),
            "cnn" => config.network.channels[i] = keep.len(),
            _ => config.network.hidden[i] = keep.len(),
        }
    }
    let owned: Vec<(String, Owned)> = t
        .into_iter()
        .map(|(name, v)| {
            let data = bytes_of(&v.data);
            (
                name,
                Owned {
                    dtype: Dtype::F32,
                    shape: v.shape,
                    data,
                },
            )
        })
        .collect();
    let data = safetensors::serialize(
        owned.iter().map(|(n, o)| (n.as_str(), o)),
        header.metadata().clone(),
    )
    .map_err(|e| bad(e.to_string()))?;
    Ok((data, config))
}

/// Where a VGG's convolutions and batch norms sit.
const VGG: &str = "Vgg.vgg.features";

/// The positions of a VGG's convolutions in `features`, ascending.
fn vgg_convs(t: &HashMap<String, Values>) -> Vec<usize> {
    let mut slots: Vec<usize> = t
        .keys()
        .filter_map(|k| {
            k.strip_prefix(&format!("{VGG}."))?
                .strip_suffix(".conv.weight")?
                .parse()
                .ok()
        })
        .collect();
    slots.sort_unstable();
    slots
}

/// The residual blocks among the tensors, `ResNet.resnet.layerS.J`, stage by stage and block
/// by block (the order of `ResNetConfig::inner`).
fn resnet_blocks(t: &HashMap<String, Values>) -> Vec<String> {
    let mut blocks = Vec::new();
    for stage in 1..=4 {
        for j in 0.. {
            let block = format!("ResNet.resnet.layer{stage}.{j}");
            if !t.contains_key(&format!("{block}.conv1.weight")) {
                break;
            }
            blocks.push(block);
        }
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, Tensor};

    /// A hidden unit whose incoming weights and bias are zero outputs relu(0) = 0: removing it
    /// (the smallest norm) must leave the MLP's outputs unchanged, so the next layer has to
    /// lose exactly that unit's row.
    #[test]
    fn removing_a_dead_unit_leaves_the_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("m.safetensors");
        // 3 inputs, hidden [4] (unit 2 dead), 2 outputs; burn's [inputs, outputs] layout.
        let w1: Vec<f32> = (0..12)
            .map(|i| {
                if i % 4 == 2 {
                    0.0
                } else {
                    (i as f32 * 0.37).sin()
                }
            })
            .collect();
        let b1 = vec![0.1, -0.2, 0.0, 0.3];
        let w2: Vec<f32> = (0..8).map(|i| (i as f32 * 0.91).cos()).collect();
        let b2 = vec![0.05, -0.05];
        let t = |shape: Vec<usize>, data: &Vec<f32>| Owned {
            dtype: Dtype::F32,
            shape,
            data: bytes_of(data),
        };
        let tensors = [
            ("Mlp.hidden.0.linear.weight", t(vec![3, 4], &w1)),
            ("Mlp.hidden.0.linear.bias", t(vec![4], &b1)),
            ("Mlp.output.weight", t(vec![4, 2], &w2)),
            ("Mlp.output.bias", t(vec![2], &b2)),
        ];
        let bytes = safetensors::serialize(tensors.iter().map(|(n, v)| (*n, v)), None).unwrap();
        std::fs::write(&src, bytes).unwrap();
        let mut config = RunConfig::defaults_for("mlp", "iris");
        config.network.hidden = vec![4];
        let (out, smaller) = shrink(&src, &config, 0.25).unwrap();
        assert_eq!(smaller.network.hidden, vec![3]);
        let st = SafeTensors::deserialize(&out).unwrap();
        let read = |k: &str| -> (Vec<usize>, Vec<f32>) {
            let v = st.tensor(k).unwrap();
            (v.shape().to_vec(), f32s(v.data()))
        };
        let forward = |w1: &[f32], b1: &[f32], w2: &[f32], h: usize, x: &[f32]| -> Vec<f32> {
            let hidden: Vec<f32> = (0..h)
                .map(|j| (b1[j] + (0..3).map(|i| x[i] * w1[i * h + j]).sum::<f32>()).max(0.0))
                .collect();
            (0..2)
                .map(|k| b2[k] + (0..h).map(|j| hidden[j] * w2[j * 2 + k]).sum::<f32>())
                .collect()
        };
        let (s1, nw1) = read("Mlp.hidden.0.linear.weight");
        let (_, nb1) = read("Mlp.hidden.0.linear.bias");
        let (s2, nw2) = read("Mlp.output.weight");
        assert_eq!((s1, s2), (vec![3, 3], vec![3, 2]));
        for x in [[1.0, -2.0, 0.5], [0.3, 0.3, 0.3], [-1.0, 2.0, 4.0]] {
            let (a, b) = (
                forward(&w1, &b1, &w2, 4, &x),
                forward(&nw1, &nb1, &nw2, 3, &x),
            );
            assert!(
                a.iter().zip(&b).all(|(a, b)| (a - b).abs() < 1e-6),
                "{a:?} vs {b:?}"
            );
        }
        let e = shrink(&src, &config, 1.0).unwrap_err().to_string();
        assert!(e.contains("must be in [0, 1)"), "{e}");
        config.model = "lstm".into();
        assert!(shrink(&src, &config, 0.5).is_err());
    }

    /// The two networks (8x8 one-channel images, 3 classes) give the same outputs within 1e-5
    /// on four random images.
    fn same_outputs(full: &strata_arch::Network, pruned: &strata_arch::Network, device: &Device) {
        let x = Tensor::<2>::random([4, 64], Distribution::Normal(0.0, 1.0), device);
        let (a, b) = (
            strata_tensor::convert::to_vec(full.forward_flat(x.clone())),
            strata_tensor::convert::to_vec(pruned.forward_flat(x)),
        );
        assert_eq!(a.len(), 12);
        strata_tensor::compare::check_close("outputs", &b, &a, 1e-5).unwrap();
    }

    /// Sets to zero, in the safetensors file at `path`, the channels (first axis) that
    /// `dead(name, channels)` lists for each tensor; returns how many tensors it changed.
    fn zero_channels(path: &Path, dead: impl Fn(&str, usize) -> Vec<usize>) -> usize {
        let bytes = std::fs::read(path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut changed = 0;
        let owned: Vec<(String, Owned)> = st
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                let (shape, mut data) = (view.shape().to_vec(), f32s(view.data()));
                let per = data.len() / shape[0];
                let channels = dead(&name, shape[0]);
                for &c in &channels {
                    data[c * per..(c + 1) * per].fill(0.0);
                }
                changed += usize::from(!channels.is_empty());
                let data = bytes_of(&data);
                let dtype = Dtype::F32;
                (name, Owned { dtype, shape, data })
            })
            .collect();
        let bytes =
            safetensors::serialize(owned.iter().map(|(n, o)| (n.as_str(), o)), None).unwrap();
        std::fs::write(path, bytes).unwrap();
        changed
    }

    /// A ResNet-20 whose blocks each have dead first-convolution channels (zero weights: bn1
    /// then gives 0 from its initial statistics, relu keeps it): removing exactly those (1, 2
    /// and 4 of 16, 32 and 64) must leave the network's outputs, so each block's second
    /// convolution has to lose exactly the matching inputs, and the config the matching width.
    #[test]
    fn removing_dead_resnet_channels_leaves_the_outputs() {
        use strata_arch::{NetworkConfig, ResNetConfig};
        let device = Device::flex();
        let net = |inner: Vec<usize>| NetworkConfig::ResNet {
            resnet: ResNetConfig::by_name("resnet20", 1, 3)
                .unwrap()
                .with_inner(inner),
            name: "resnet20".into(),
            height: 8,
            width: 8,
        };
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("model.safetensors");
        let model = net(Vec::new()).init(&device).unwrap();
        crate::run_dir::save_safetensors(&model, &src).unwrap();
        // Kill the last `width / 16` channels of every block's first convolution.
        let killed = zero_channels(&src, |name, out| {
            if name.ends_with(".conv1.weight") && name.contains(".layer") {
                (out - out / 16..out).collect()
            } else {
                Vec::new()
            }
        });
        assert_eq!(killed, 9, "ResNet-20 has 9 blocks");
        let config = RunConfig::defaults_for("resnet20", "digits");
        let (out, smaller) = shrink(&src, &config, 1.0 / 16.0).unwrap();
        assert_eq!(
            smaller.network.inner,
            vec![15, 15, 15, 30, 30, 30, 60, 60, 60]
        );
        let slim = dir.path().join("slim.safetensors");
        std::fs::write(&slim, out).unwrap();
        let full = crate::run_dir::load_safetensors(&net(Vec::new()), &src, &device).unwrap();
        let pruned =
            crate::run_dir::load_safetensors(&net(smaller.network.inner.clone()), &slim, &device)
                .unwrap();
        same_outputs(&full, &pruned, &device);
        // A block's output channels are not pruned: the residual sums tie them.
        let st = SafeTensors::deserialize(std::fs::read(&slim).unwrap().as_slice())
            .map(|s| {
                s.tensor("ResNet.resnet.layer3.2.conv2.weight")
                    .unwrap()
                    .shape()
                    .to_vec()
            })
            .unwrap();
        assert_eq!(st, vec![64, 60, 3, 3]);
    }

    /// A small VGG with batch norm whose convolutions have dead channels (zero weights and
    /// bias: batch norm's initial statistics keep them at 0, ReLU too): removing them must
    /// leave the outputs, so the next convolution and the classifier (which reads each channel's
    /// 2x2 pooled block) have to lose exactly the matching inputs.
    #[test]
    fn removing_dead_vgg_channels_leaves_the_outputs() {
        use strata_arch::{NetworkConfig, VggConfig};
        let device = Device::flex();
        let net = |widths: [usize; 2]| NetworkConfig::Vgg {
            vgg: VggConfig::new(1, 3, vec![widths[0], 0, widths[1], 0])
                .with_batch_norm(true)
                .with_pool_size(2)
                .with_d_hidden(8),
            name: "vgg11_bn".into(),
            height: 8,
            width: 8,
        };
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("model.safetensors");
        let model = net([4, 8]).init(&device).unwrap();
        crate::run_dir::save_safetensors(&model, &src).unwrap();
        // Channel 1 of the first convolution, channels 0 and 5 of the second.
        let killed = zero_channels(&src, |name, _| match name {
            "Vgg.vgg.features.0.conv.weight" | "Vgg.vgg.features.0.conv.bias" => vec![1],
            "Vgg.vgg.features.4.conv.weight" | "Vgg.vgg.features.4.conv.bias" => vec![0, 5],
            _ => Vec::new(),
        });
        assert_eq!(killed, 4, "two weights and two biases");
        let config = RunConfig::defaults_for("vgg11_bn", "digits");
        let (out, smaller) = shrink(&src, &config, 0.25).unwrap();
        assert_eq!(smaller.network.inner, vec![3, 6]);
        let slim = dir.path().join("slim.safetensors");
        std::fs::write(&slim, &out).unwrap();
        let shapes = SafeTensors::deserialize(&out).unwrap();
        let shape = |k: &str| shapes.tensor(k).unwrap().shape().to_vec();
        assert_eq!(shape("Vgg.vgg.features.4.conv.weight"), vec![6, 3, 3, 3]);
        assert_eq!(shape("Vgg.vgg.features.5.norm.running_var"), vec![6]);
        assert_eq!(shape("Vgg.vgg.classifier.0.weight"), vec![24, 8]);
        let full = crate::run_dir::load_safetensors(&net([4, 8]), &src, &device).unwrap();
        let pruned = crate::run_dir::load_safetensors(&net([3, 6]), &slim, &device).unwrap();
        same_outputs(&full, &pruned, &device);
    }

    #[test]
    fn selecting_along_an_axis() {
        let v = Values {
            shape: vec![2, 3, 2],
            data: (0..12).map(|i| i as f32).collect(),
        };
        let s = v.select(1, &[0, 2]);
        assert_eq!(s.shape, vec![2, 2, 2]);
        assert_eq!(s.data, vec![0., 1., 4., 5., 6., 7., 10., 11.]);
        assert_eq!(v.norms(0), vec![15.0, 51.0]);
        assert_eq!(keep_largest(&[3.0, 1.0, 2.0, 5.0], 0.5), vec![0, 3]);
        assert_eq!(keep_largest(&[3.0, 1.0], 0.99), vec![0]);
    }
}
