//! A finished autoencoder run, back for use: codes, anomaly scores, reconstructions and (for a
//! VAE) samples of new rows; its pictures.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Distribution, Tensor};
use strata_arch::{Autoencoder, Likelihood};
use strata_data::{Dataset, Targets, read_feature_rows, read_npy_f32};
use strata_tensor::convert::to_vec;
use strata_tensor::seed_device;

use super::autoencoder_config;
use super::measure::{Pass, pass};
use super::objective::{EVAL_NOISE_SEED, Weights, matrix, one_hot};
use crate::config::RunConfig;
use crate::data::Preprocess;
use crate::error::{Error, Result};
use crate::pictures::{ImageGrid, Scatter, plane, save_png};
use crate::run_dir::{finished_weights, load_weights};

/// The codes of some rows: `width` values per row.
#[derive(Debug, Clone, PartialEq)]
pub struct Codes {
    /// Values per row (the code size).
    pub width: usize,
    /// The codes, row-major.
    pub values: Vec<f32>,
}

impl Codes {
    /// The CSV `strata encode` writes: `row,z0,z1,...`.
    pub fn to_csv(&self) -> String {
        use std::fmt::Write as _;
        let mut csv = String::new();
        let header: Vec<String> = (0..self.width).map(|j| format!("z{j}")).collect();
        let _ = writeln!(csv, "row,{}", header.join(","));
        for (i, row) in self.values.chunks(self.width.max(1)).enumerate() {
            let cells: Vec<String> = row.iter().map(|v| format!("{v:?}")).collect();
            let _ = writeln!(csv, "{i},{}", cells.join(","));
        }
        csv
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.values.len() / self.width.max(1)
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// A finished autoencoder run, loaded.
///
/// ```no_run
/// use strata_run::AutoencoderRun;
/// let run = AutoencoderRun::open("runs/ae-digits", None)?;
/// let rows = run.read_rows("new.csv")?;
/// let codes = run.encode(rows.clone(), None)?; // d_latent values per row
/// let scores = run.scores(rows, None)?; // anomaly scores: squared reconstruction errors
/// # Ok::<(), strata_run::Error>(())
/// ```
pub struct AutoencoderRun {
    /// The run directory.
    pub dir: PathBuf,
    /// The run's config.
    pub config: RunConfig,
    /// Its preprocessing.
    pub preprocess: Preprocess,
    /// The model, in evaluation mode.
    pub model: Autoencoder,
    /// The device it lives on.
    pub device: Device,
}

impl AutoencoderRun {
    /// Loads the finished autoencoder run in `dir` (on `backend`, or its own).
    ///
    /// # Errors
    /// A directory that is not a finished autoencoder run, weights that do not fit its config.
    pub fn open(dir: impl AsRef<Path>, backend: Option<&str>) -> Result<Self> {
        let dir = dir.as_ref();
        let (config, preprocess, device) =
            crate::family::open_family_run(dir, backend, &super::Autoencoders, "an autoencoder")?;
        let net = autoencoder_config(&config, &preprocess)?;
        let model = load_weights(net.init(&device)?, &config.model, &finished_weights(dir)?)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            preprocess,
            model,
            device,
        })
    }

    /// Reads rows of raw features from a CSV (as `strata predict` does: the label column, if
    /// present, is dropped) or a float32 `.npy` of `[n, ...]` whose trailing sizes multiply to
    /// the features.
    ///
    /// # Errors
    /// An unreadable file, rows of another width.
    pub fn read_rows(&self, path: impl AsRef<Path>) -> Result<Vec<f32>> {
        let path = path.as_ref();
        let width = self.preprocess.n_features;
        if path.extension().is_some_and(|e| e == "npy") {
            let (shape, values) = read_npy_f32(path)?;
            let row: usize = shape.iter().skip(1).product();
            if shape.is_empty() || row != width {
                return Err(Error::Usage(format!(
                    "{}: shape {shape:?} is not rows of {width} features",
                    path.display()
                )));
            }
            return Ok(values);
        }
        Ok(read_feature_rows(path, width, &self.config.label)?.0)
    }

    /// Raw rows, checked and preprocessed as in training.
    fn prepared(&self, mut features: Vec<f32>) -> Result<Vec<f32>> {
        let width = self.preprocess.n_features;
        if !features.len().is_multiple_of(width.max(1)) {
            return Err(Error::Usage(format!(
                "{} values are not rows of {width} features",
                features.len()
            )));
        }
        if let Some(s) = &self.preprocess.standardizer {
            s.transform_rows(&mut features)?;
        } else if features.iter().any(|v| !(0.0..=1.0).contains(v)) {
            return Err(Error::Usage(format!(
                "{}: the model reads values in [0, 1]; these rows have values outside",
                self.dir.display()
            )));
        }
        Ok(features)
    }

    /// The class index of rows given `class`: `Some` for a conditional model, which needs
    /// one; `None` for another, which takes none.
    fn class_of(&self, class: Option<&str>) -> Result<Option<usize>> {
        match (self.model.n_classes, class) {
            (0, None) => Ok(None),
            (0, Some(_)) => Err(Error::Usage(format!(
                "{}: --class needs a conditional model (cvae), not {}",
                self.dir.display(),
                self.config.model
            ))),
            (_, None) => Err(Error::Usage(format!(
                "{}: a conditional VAE needs --class (one of {})",
                self.dir.display(),
                self.class_names().join(", ")
            ))),
            (_, Some(c)) => Ok(Some(self.class_index(c)?)),
        }
    }

    /// The one-hot condition of `n` rows of class `class` (a conditional model), or none.
    fn condition(&self, class: Option<&str>, n: usize) -> Result<Option<Tensor<2>>> {
        Ok(self
            .class_of(class)?
            .map(|i| one_hot(&vec![i; n], self.model.n_classes, &self.device)))
    }

    /// The class names of the run (its indices when it has none).
    fn class_names(&self) -> Vec<String> {
        self.preprocess
            .class_names
            .clone()
            .unwrap_or_else(|| (0..self.model.n_classes).map(|i| i.to_string()).collect())
    }

    /// The index of a class given by name or index.
    fn class_index(&self, class: &str) -> Result<usize> {
        let names = self.class_names();
        let c = class.trim();
        super::find_class(&names, c).ok_or_else(|| {
            Error::Usage(format!(
                "class `{c}` is not one of {} (or an index 0..{})",
                names.join(", "),
                names.len()
            ))
        })
    }

    /// One pass over preprocessed rows (no labels: a conditional model gets `class`).
    fn pass_rows(&self, features: Vec<f32>, class: Option<&str>) -> Result<Pass> {
        let width = self.preprocess.n_features;
        let n = features.len() / width.max(1);
        let labels = match self.class_of(class)? {
            None => Targets::Values(vec![0.0; n]),
            Some(i) => Targets::Classes {
                labels: vec![i; n],
                names: self.class_names(),
            },
        };
        let data = Dataset::new("rows", features, width, labels, None)?;
        let a = &self.config.autoencoder;
        let weights = Weights {
            beta: a.beta,
            sparsity: a.sparsity,
        };
        seed_device(&self.device, self.config.fit.seed);
        Ok(pass(
            &self.model,
            &data,
            &self.device,
            None,
            weights,
            self.model.n_classes,
        ))
    }

    /// The codes of raw rows (the posterior means of a VAE): `d_latent` values per row.
    /// `class` is the class of every row, for a conditional model.
    ///
    /// # Errors
    /// Rows of another width or out of range, a missing or needless class.
    pub fn encode(&self, features: Vec<f32>, class: Option<&str>) -> Result<Vec<f32>> {
        let rows = self.prepared(features)?;
        Ok(self.pass_rows(rows, class)?.codes)
    }

    /// The codes of the rows of a file ([`read_rows`](Self::read_rows), then
    /// [`encode`](Self::encode)).
    ///
    /// # Errors
    /// As both.
    pub fn encode_file(&self, path: impl AsRef<Path>, class: Option<&str>) -> Result<Codes> {
        let rows = self.read_rows(path)?;
        Ok(Codes {
            width: self.model.d_latent,
            values: self.encode(rows, class)?,
        })
    }

    /// The anomaly score of each raw row: the squared error of its reconstruction from the
    /// posterior mean, summed over its values (in the model's units: pixels in `[0, 1]`, or
    /// standardised values); higher is more anomalous.
    ///
    /// # Errors
    /// As [`encode`](Self::encode).
    pub fn scores(&self, features: Vec<f32>, class: Option<&str>) -> Result<Vec<f64>> {
        let rows = self.prepared(features)?;
        Ok(self.pass_rows(rows, class)?.scores)
    }

    /// The reconstructions of raw rows (pixel probabilities, or standardised means).
    ///
    /// # Errors
    /// As [`encode`](Self::encode).
    pub fn reconstruct(&self, features: Vec<f32>, class: Option<&str>) -> Result<Vec<f32>> {
        let rows = self.prepared(features)?;
        Ok(self.pass_rows(rows, class)?.recon)
    }

    /// `n` samples of a VAE: codes from the prior `N(0, I)` (seeded by `seed`), decoded to
    /// pixel probabilities (or standardised means). A conditional VAE samples class `class`,
    /// or without one, class `i % classes` for sample `i`.
    ///
    /// # Errors
    /// A plain autoencoder (it has no prior to sample from), `n` of 0 or over 10,000, a class
    /// that is not one of the run's.
    pub fn sample(&self, n: usize, class: Option<&str>, seed: u64) -> Result<Vec<f32>> {
        if !self.model.variational {
            return Err(Error::Usage(format!(
                "{}: {} has no prior to sample from; train a vae, conv-vae or cvae",
                self.dir.display(),
                self.config.model
            )));
        }
        if !(1..=10_000).contains(&n) {
            return Err(Error::Usage(format!("samples must be 1 to 10000, got {n}")));
        }
        let k = self.model.n_classes;
        let condition = match (k, class) {
            (1.., None) => {
                let classes: Vec<usize> = (0..n).map(|i| i % k).collect();
                Some(one_hot(&classes, k, &self.device))
            }
            _ => self.condition(class, n)?,
        };
        seed_device(&self.device, seed);
        let z = Tensor::<2>::random(
            [n, self.model.d_latent],
            Distribution::Normal(0.0, 1.0),
            &self.device,
        );
        let out = self.model.expected(self.model.decode(z, condition));
        Ok(to_vec(out.flatten::<1>(0, 1)))
    }

    /// Writes [`sample`](Self::sample)s to `path`: a PNG grid (images of a Bernoulli model;
    /// a conditional VAE without a class puts one class in each column), or a float32 `.npy`
    /// of `[n, features]`. Returns the number written.
    ///
    /// # Errors
    /// As [`sample`](Self::sample); a PNG of rows that are not images; I/O errors.
    pub fn write_samples(
        &self,
        n: usize,
        class: Option<&str>,
        seed: u64,
        path: &Path,
    ) -> Result<usize> {
        let samples = self.sample(n, class, seed)?;
        if path.extension().is_some_and(|e| e == "npy") {
            let bytes = strata_data::npy_f32_bytes(&[n, self.preprocess.n_features], &samples)?;
            strata_train::write_atomic(path, &bytes)?;
            return Ok(n);
        }
        let shape = self.picture_shape().ok_or_else(|| {
            Error::Usage(format!(
                "{}: the samples are not images in [0, 1]; write them to a .npy",
                self.dir.display()
            ))
        })?;
        let cols = match (self.model.n_classes, class) {
            (k @ 1.., None) => k,
            _ => (n as f64).sqrt().ceil() as usize,
        };
        save_png(&ImageGrid::new(shape, cols).draw(&samples)?, path)?;
        Ok(n)
    }

    /// The image shape, when the run's rows are images drawn as pixel probabilities.
    fn picture_shape(&self) -> Option<[usize; 3]> {
        self.preprocess
            .image_shape
            .filter(|_| self.model.likelihood() == Likelihood::Bernoulli)
    }

    /// Draws the run's pictures from its (preprocessed) test rows into its directory:
    /// `reconstructions.png` (inputs, the noisy inputs of a denoising run, reconstructions),
    /// `latent.png` (the codes of up to 2,000 test rows, their first two principal components
    /// when the code is wider than 2, coloured by class), and for a VAE `samples.png` (64
    /// samples) and `interpolation.png` (decoded codes on the line between two test images of
    /// different classes). Returns the names written; none for rows that are not images.
    ///
    /// # Errors
    /// I/O errors.
    pub fn draw_pictures(&self, test: &Dataset) -> Result<Vec<String>> {
        let Some(shape) = self.picture_shape() else {
            return Ok(Vec::new());
        };
        if test.is_empty() {
            return Ok(Vec::new());
        }
        let mut written = Vec::new();
        let a = &self.config.autoencoder;
        let weights = Weights {
            beta: a.beta,
            sparsity: a.sparsity,
        };
        let k = self.model.n_classes;
        let first = test.subset(&(0..test.len().min(10)).collect::<Vec<_>>());
        let mut tiles = first.features.clone();
        if let Some(noise) = a.noise {
            let mut noisy = first.features.clone();
            noise.apply(&mut noisy, first.n_features, EVAL_NOISE_SEED, true);
            tiles.extend(noisy);
        }
        let p = pass(&self.model, &first, &self.device, a.noise, weights, k);
        tiles.extend(p.recon);
        let grid = ImageGrid::new(shape, first.len()).draw(&tiles)?;
        save_png(&grid, &self.dir.join("reconstructions.png"))?;
        written.push("reconstructions.png".to_string());

        let some = test.subset(&(0..test.len().min(2000)).collect::<Vec<_>>());
        let p = pass(&self.model, &some, &self.device, None, weights, k);
        let d = self.model.d_latent;
        let points = plane(p.codes, d)?;
        let classes = some
            .labels()
            .map_or_else(|| vec![0; some.len()], <[usize]>::to_vec);
        if points.iter().flatten().all(|v| v.is_finite()) {
            save_png(
                &Scatter::new(480).draw(&points, &classes)?,
                &self.dir.join("latent.png"),
            )?;
            written.push("latent.png".to_string());
        }

        if self.model.variational {
            let n = if k > 0 { 8 * k } else { 64 };
            let path = self.dir.join("samples.png");
            self.write_samples(n, None, self.config.fit.seed, &path)?;
            written.push("samples.png".to_string());
            // Test image 0 and the first test image of another class (else image 1).
            let labels = test.labels();
            let other = labels
                .and_then(|l| (1..l.len()).find(|&i| l[i] != l[0]))
                .unwrap_or(1.min(test.len() - 1));
            let ends = test.subset(&[0, other]);
            let p = pass(&self.model, &ends, &self.device, None, weights, k);
            let steps = 10;
            let mut codes = Vec::with_capacity(steps * d);
            for s in 0..steps {
                let t = s as f32 / (steps - 1) as f32;
                codes.extend((0..d).map(|u| (1.0 - t) * p.codes[u] + t * p.codes[d + u]));
            }
            // A conditional VAE interpolates within the first image's class.
            let condition = (k > 0).then(|| {
                let c = labels.map_or(0, |l| l[0]);
                one_hot(&vec![c; steps], k, &self.device)
            });
            let z = matrix(codes, d, &self.device);
            let out = self.model.expected(self.model.decode(z, condition));
            let mut strip = ends.features[..ends.n_features].to_vec();
            strip.extend(to_vec(out.flatten::<1>(0, 1)));
            strip.extend_from_slice(&ends.features[ends.n_features..]);
            let img = ImageGrid::new(shape, steps + 2).draw(&strip)?;
            save_png(&img, &self.dir.join("interpolation.png"))?;
            written.push("interpolation.png".to_string());
        }
        Ok(written)
    }
}
