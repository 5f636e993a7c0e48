//! A finished GAN run, back for use: samples of new rows (by class for a conditional GAN), as
//! a PNG grid or a `.npy`.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Distribution, Tensor};
use strata_arch::Gan;
use strata_tensor::convert::to_vec;
use strata_tensor::seed_device;

use super::gan_config;
use super::objective::class_tensor;
use crate::config::RunConfig;
use crate::data::Preprocess;
use crate::error::{Error, Result};
use crate::pictures::{ImageGrid, Scatter, save_png};
use crate::run_dir::{finished_weights, load_weights};

/// A finished GAN run, loaded.
///
/// ```no_run
/// use strata_run::GanRun;
/// let run = GanRun::open("runs/cgan-fashion", None)?;
/// let shirts = run.sample(16, Some("Shirt"), 7)?; // 16 rows of 784 pixels in [0, 1]
/// run.write_samples(64, None, 7, "grid.png".as_ref())?;
/// # Ok::<(), strata_run::Error>(())
/// ```
pub struct GanRun {
    /// The run directory.
    pub dir: PathBuf,
    /// The run's config.
    pub config: RunConfig,
    /// Its preprocessing.
    pub preprocess: Preprocess,
    /// The model, in evaluation mode.
    pub model: Gan,
    /// The device it lives on.
    pub device: Device,
}

impl GanRun {
    /// Loads the finished GAN run in `dir` (on `backend`, or its own).
    ///
    /// # Errors
    /// A directory that is not a finished GAN run, weights that do not fit its config.
    pub fn open(dir: impl AsRef<Path>, backend: Option<&str>) -> Result<Self> {
        let dir = dir.as_ref();
        let (config, preprocess, device) =
            crate::family::open_family_run(dir, backend, &super::Gans, "a GAN")?;
        let net = gan_config(&config, &preprocess)?;
        let model = load_weights(net.init(&device)?, &config.model, &finished_weights(dir)?)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            preprocess,
            model,
            device,
        })
    }

    /// The class names of the run (its indices when it has none).
    pub fn class_names(&self) -> Vec<String> {
        self.preprocess
            .class_names
            .clone()
            .unwrap_or_else(|| (0..self.model.n_classes).map(|i| i.to_string()).collect())
    }

    /// The classes of `n` samples: `class` for all (by name or index; a conditional GAN only),
    /// or, for a conditional GAN without one, class `i % classes` for sample `i`.
    fn classes(&self, n: usize, class: Option<&str>) -> Result<Option<Vec<usize>>> {
        let k = self.model.n_classes;
        match (k, class) {
            (0, None) => Ok(None),
            (0, Some(_)) => Err(Error::Usage(format!(
                "{}: --class needs a conditional GAN (cgan), not {}",
                self.dir.display(),
                self.config.model
            ))),
            (_, None) => Ok(Some((0..n).map(|i| i % k).collect())),
            (_, Some(c)) => {
                let names = self.class_names();
                let i = crate::family::autoencoder::find_class(&names, c).ok_or_else(|| {
                    Error::Usage(format!(
                        "class `{}` is not one of {} (or an index 0..{})",
                        c.trim(),
                        names.join(", "),
                        names.len()
                    ))
                })?;
                Ok(Some(vec![i; n]))
            }
        }
    }

    /// `n` samples with the given classes (`None`: unconditional), noise from `seed`, in the
    /// data's units: pixels in `[0, 1]` for images, the original units for standardised rows.
    ///
    /// # Errors
    /// Bad classes.
    pub(crate) fn sample_classes(
        &self,
        n: usize,
        classes: Option<&[usize]>,
        seed: u64,
    ) -> Result<Vec<f32>> {
        seed_device(&self.device, seed);
        let z = Tensor::<2>::random(
            [n, self.model.d_noise],
            Distribution::Normal(0.0, 1.0),
            &self.device,
        );
        let y = classes.map(|c| class_tensor(c, &self.device));
        // In batches, so that memory stays bounded for large n.
        let mut out = Vec::with_capacity(n * self.model.d_data);
        let step = 500;
        for start in (0..n).step_by(step) {
            let end = (start + step).min(n);
            let zb = z.clone().slice([start..end, 0..self.model.d_noise]);
            let yb = y.clone().map(|t| t.slice(start..end));
            out.extend(to_vec(self.model.generate(zb, yb)));
        }
        self.to_data_units(&mut out)?;
        Ok(out)
    }

    /// Generated rows back in the data's units.
    pub(crate) fn to_data_units(&self, rows: &mut [f32]) -> Result<()> {
        if self.preprocess.image_shape.is_some() && self.preprocess.standardizer.is_none() {
            for v in rows.iter_mut() {
                *v = ((*v + 1.0) / 2.0).clamp(0.0, 1.0);
            }
        } else if let Some(s) = &self.preprocess.standardizer {
            s.inverse_rows(rows)?;
        }
        Ok(())
    }

    /// `n` samples (1 to 10,000) from noise seeded by `seed`, in the data's units. A
    /// conditional GAN samples class `class`, or without one, class `i % classes` for sample
    /// `i`.
    ///
    /// # Errors
    /// `n` out of range, a class for an unconditional GAN, a class that is not the run's.
    pub fn sample(&self, n: usize, class: Option<&str>, seed: u64) -> Result<Vec<f32>> {
        if !(1..=10_000).contains(&n) {
            return Err(Error::Usage(format!("samples must be 1 to 10000, got {n}")));
        }
        let classes = self.classes(n, class)?;
        self.sample_classes(n, classes.as_deref(), seed)
    }

    /// Writes [`sample`](Self::sample)s to `path`: a PNG grid of images (a conditional GAN
    /// without a class puts one class in each column), a PNG scatter of 2-D points, or a
    /// float32 `.npy` of `[n, features]`. Returns the number written.
    ///
    /// # Errors
    /// As [`sample`](Self::sample); a PNG of rows that are neither images nor points; I/O
    /// errors.
    pub fn write_samples(
        &self,
        n: usize,
        class: Option<&str>,
        seed: u64,
        path: &Path,
    ) -> Result<usize> {
        let samples = self.sample(n, class, seed)?;
        let width = self.preprocess.n_features;
        if path.extension().is_some_and(|e| e == "npy") {
            let bytes = strata_data::npy_f32_bytes(&[n, width], &samples)?;
            strata_train::write_atomic(path, &bytes)?;
            return Ok(n);
        }
        let image = match self.preprocess.image_shape {
            Some(shape) if self.preprocess.standardizer.is_none() => {
                let cols = match (self.model.n_classes, class) {
                    (k @ 1.., None) => k,
                    _ => (n as f64).sqrt().ceil() as usize,
                };
                ImageGrid::new(shape, cols).draw(&samples)?
            }
            _ if width == 2 => {
                let points: Vec<[f32; 2]> = samples.chunks(2).map(|p| [p[0], p[1]]).collect();
                let classes = self.classes(n, class)?.unwrap_or_else(|| vec![0; n]);
                Scatter::new(480).draw(&points, &classes)?
            }
            _ => {
                return Err(Error::Usage(format!(
                    "{}: the samples are neither images nor 2-D points; write them to a .npy",
                    self.dir.display()
                )));
            }
        };
        save_png(&image, path)?;
        Ok(n)
    }
}
