//! The IDX format of MNIST and Fashion-MNIST (gzipped or not), and Fashion-MNIST from Debian's
//! `dataset-fashion-mnist` package.

use std::path::{Path, PathBuf};

use crate::csv_loader::read_maybe_gz;
use crate::dataset::{Dataset, Targets};
use crate::error::{Error, Result};

/// Where Debian's `dataset-fashion-mnist` package puts the files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The Fashion-MNIST class names, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// An IDX array of unsigned bytes: its dimensions and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// The dimensions, outermost first.
    pub dims: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<u8>,
}

/// Parses an IDX byte buffer of `u8` values (type code `0x08`).
///
/// # Errors
/// A bad magic number, an unsupported type, or a length that does not match the header.
pub fn parse_idx(bytes: &[u8], source: &str) -> Result<IdxArray> {
    let bad = |message: String| Error::Idx {
        path: source.into(),
        message,
    };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad("bad magic number".into()));
    }
    if bytes[2] != 0x08 {
        return Err(bad(format!(
            "unsupported element type 0x{:02x} (only u8)",
            bytes[2]
        )));
    }
    let n_dims = bytes[3] as usize;
    let header = 4 + 4 * n_dims;
    if n_dims == 0 || bytes.len() < header {
        return Err(bad("truncated header".into()));
    }
    let dims: Vec<usize> = (0..n_dims)
        .map(|i| {
            let b = &bytes[4 + 4 * i..8 + 4 * i];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad("dimensions overflow".into()))?;
    if bytes.len() - header != count {
        return Err(bad(format!(
            "header promises {count} values, file holds {}",
            bytes.len() - header
        )));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Reads an IDX file from disk (gzipped or not).
///
/// # Errors
/// I/O errors and the errors of [`parse_idx`].
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray> {
    let path = path.as_ref();
    let bytes = read_maybe_gz(path)?;
    parse_idx(&bytes, &path.display().to_string())
}

/// Builds an image data set from an IDX image array `[n, h, w]` and label array `[n]`, scaling
/// pixels to `[0, 1]`.
///
/// # Errors
/// When the two arrays do not describe the same number of samples.
pub fn images_from_idx(
    name: &str,
    images: IdxArray,
    labels: IdxArray,
    class_names: &[&str],
) -> Result<Dataset> {
    if images.dims.len() != 3 || labels.dims.len() != 1 || images.dims[0] != labels.dims[0] {
        return Err(Error::Mismatch(format!(
            "images {:?} and labels {:?} do not match",
            images.dims, labels.dims
        )));
    }
    let (h, w) = (images.dims[1], images.dims[2]);
    let features = images.data.iter().map(|&p| p as f32 / 255.0).collect();
    let labels: Vec<usize> = labels.data.iter().map(|&l| l as usize).collect();
    Dataset::new(
        name,
        features,
        h * w,
        Targets::Classes {
            labels,
            names: class_names.iter().map(|s| s.to_string()).collect(),
        },
        Some([1, h, w]),
    )
}

/// Loads Fashion-MNIST's training (60 000) and test (10 000) sets from `dir`, or from
/// [`FASHION_MNIST_DIR`] when `dir` is `None`.
///
/// # Errors
/// [`Error::FashionMnistMissing`] when the files are not there; IDX errors when they are corrupt.
pub fn fashion_mnist(dir: Option<&Path>) -> Result<(Dataset, Dataset)> {
    let dir: PathBuf = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| FASHION_MNIST_DIR.into());
    let file = |stem: &str| -> Option<PathBuf> {
        [format!("{stem}.gz"), stem.to_string()]
            .into_iter()
            .map(|n| dir.join(n))
            .find(|p| p.exists())
    };
    let need = |stem: &str| file(stem).ok_or_else(|| Error::FashionMnistMissing(dir.clone()));
    let train = images_from_idx(
        "fashion-mnist",
        read_idx(need("train-images-idx3-ubyte")?)?,
        read_idx(need("train-labels-idx1-ubyte")?)?,
        &FASHION_MNIST_CLASSES,
    )?;
    let test = images_from_idx(
        "fashion-mnist",
        read_idx(need("t10k-images-idx3-ubyte")?)?,
        read_idx(need("t10k-labels-idx1-ubyte")?)?,
        &FASHION_MNIST_CLASSES,
    )?;
    Ok((train, test))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 0x08, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn parses_and_builds_images() {
        let images = parse_idx(&idx(&[2, 2, 2], &[0, 255, 0, 0, 255, 255, 255, 255]), "i").unwrap();
        let labels = parse_idx(&idx(&[2], &[3, 1]), "l").unwrap();
        let names = ["a", "b", "c", "d"];
        let d = images_from_idx("t", images, labels, &names).unwrap();
        assert_eq!(d.image_shape, Some([1, 2, 2]));
        assert_eq!(d.row(0), &[0.0, 1.0, 0.0, 0.0]);
        assert_eq!(d.labels().unwrap(), &[3, 1]);
    }

    #[test]
    fn corrupt_files_are_errors() {
        assert!(parse_idx(&[1, 2, 3], "x").is_err());
        assert!(parse_idx(&idx(&[3], &[1, 2]), "x").is_err());
        let mut wrong_type = idx(&[1], &[0]);
        wrong_type[2] = 0x0D;
        assert!(parse_idx(&wrong_type, "x").is_err());
    }

    /// Reads the real Fashion-MNIST from Debian's package when it is installed (CI installs it).
    #[test]
    fn reads_debian_fashion_mnist_when_installed() {
        if !Path::new(FASHION_MNIST_DIR)
            .join("train-images-idx3-ubyte.gz")
            .exists()
        {
            // In CI (which installs the package) this fails instead of skipping.
            return strata_tensor::require::unmet(
                "fashion-mnist",
                &format!("{FASHION_MNIST_DIR} not installed (apt install dataset-fashion-mnist)"),
            );
        }
        let (train, test) = fashion_mnist(None).unwrap();
        assert_eq!((train.len(), test.len()), (60_000, 10_000));
        assert_eq!(train.image_shape, Some([1, 28, 28]));
        let mut counts = [0usize; 10];
        for &l in train.labels().unwrap() {
            counts[l] += 1;
        }
        assert!(counts.iter().all(|&c| c == 6000), "{counts:?}");
        assert!(train.features.iter().all(|&v| (0.0..=1.0).contains(&v)));
    }

    #[test]
    fn missing_directory_says_how_to_install() {
        let e = fashion_mnist(Some(Path::new("/nonexistent/fm"))).unwrap_err();
        assert!(e.to_string().contains("dataset-fashion-mnist"));
    }
}
