//! Sanity checks of gradient explanations (Adebayo et al. 2018, "Sanity checks for saliency
//! maps"): a saliency map that explains the model must change when the model's weights are
//! randomised, and when the labels it was trained on were. Measured as the mean Spearman rank
//! correlation of `|gradient|` maps over 30 test digits; the bar (below 0.5 for both) was set
//! before the first run.

use std::path::Path;

use burn::tensor::{Tensor, TensorData};
use strata_data::{Targets, digits};
use strata_run::{Run, RunConfig, network_config, train};
use strata_tensor::convert::to_vec;
use strata_train::saliency;

/// The digits CNN, 10 epochs, on `dataset`.
fn train_cnn(dataset: &str, dir: &Path) -> Run {
    let mut c = RunConfig::defaults_for("cnn", dataset);
    c.fit.epochs = 10;
    c.fit.early_stopping = None;
    c.fit.progress = false;
    if dataset != "digits" {
        c.image_shape = Some([1, 8, 8]);
    }
    let result = train(&c, dir).unwrap();
    assert!(result.finished);
    Run::open(dir).unwrap()
}

/// The saliency maps of `forward` for the first 30 digits' target classes.
fn maps(forward: &dyn Fn(Tensor<2>) -> Tensor<2>, run: &Run) -> Vec<Vec<f32>> {
    let data = digits();
    let mut rows = data.features[..30 * 64].to_vec();
    if let Some(s) = &run.preprocess.standardizer {
        s.transform_rows(&mut rows).unwrap();
    }
    let x = Tensor::<2>::from_data(TensorData::new(rows, [30, 64]), &run.device);
    let labels = data.labels().unwrap()[..30].to_vec();
    let s = to_vec(saliency(&forward, x, &labels).unwrap());
    s.chunks(64).map(<[f32]>::to_vec).collect()
}

/// Spearman's rank correlation (ties take their mean rank).
fn spearman(a: &[f32], b: &[f32]) -> f64 {
    fn ranks(v: &[f32]) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        let mut i = 0;
        while i < idx.len() {
            let mut j = i;
            while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
                j += 1;
            }
            for &k in &idx[i..=j] {
                r[k] = (i + j) as f64 / 2.0;
            }
            i = j + 1;
        }
        r
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt().max(f64::MIN_POSITIVE)
}

fn mean_correlation(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| spearman(x, y)).sum::<f64>() / a.len() as f64
}

#[test]
fn saliency_passes_the_sanity_checks() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_cnn("digits", &dir.path().join("trained"));
    let model = burn::module::Module::valid(&run.model);
    let trained = maps(&|x| model.forward_flat(x), &run);
    // The same map twice correlates perfectly: the measure can see agreement.
    assert!((mean_correlation(&trained, &trained) - 1.0).abs() < 1e-9);

    // Weights randomised: the same architecture, freshly initialised.
    let n_out = run.preprocess.class_names.as_ref().unwrap().len();
    let net = network_config(&run.config, &run.preprocess, n_out).unwrap();
    let random = burn::module::Module::valid(&net.init(&run.device).unwrap());
    let randomised = maps(&|x| random.forward_flat(x), &run);
    let weights = mean_correlation(&trained, &randomised);

    // Labels randomised: the digits with their labels shuffled (a fixed permutation), trained
    // alike.
    let data = digits();
    let Targets::Classes { labels, names } = &data.targets else {
        unreachable!()
    };
    let mut shuffled = labels.clone();
    let n = shuffled.len();
    for i in (1..n).rev() {
        shuffled.swap(i, (i * 7919 + 13) % (i + 1));
    }
    let csv = dir.path().join("shuffled.csv");
    let mut text = String::new();
    for (row, label) in data.features.chunks(64).zip(&shuffled) {
        let cells: Vec<String> = row.iter().map(f32::to_string).collect();
        text.push_str(&format!("{},{}\n", cells.join(","), names[*label]));
    }
    std::fs::write(&csv, text).unwrap();
    let spec = format!("csv:{}", csv.display());
    let noise = train_cnn(&spec, &dir.path().join("shuffled"));
    let noise_model = burn::module::Module::valid(&noise.model);
    let memorised = maps(&|x| noise_model.forward_flat(x), &noise);
    let labels_corr = mean_correlation(&trained, &memorised);

    println!("mean Spearman: weights randomised {weights:.3}, labels randomised {labels_corr:.3}");
    assert!(weights < 0.5, "weights randomised: {weights}");
    assert!(labels_corr < 0.5, "labels randomised: {labels_corr}");
}
