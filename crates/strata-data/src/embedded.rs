//! Real data sets embedded in the crate (see `data/NOTICE.md` for sources and licenses).

use std::io::Read;

use crate::dataset::{Dataset, Targets};
use crate::error::{Error, Result};

static DIGITS_GZ: &[u8] = include_bytes!("../data/digits.csv.gz");
static IRIS_CSV: &str = include_str!("../data/iris.csv");

/// The UCI optical handwritten digits: 1797 grey 8x8 images (pixels 0..16, scaled here to
/// `[0, 1]`), 10 classes. Rows are images of shape `[1, 8, 8]`.
pub fn digits() -> Dataset {
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_GZ)
        .read_to_string(&mut text)
        .expect("embedded digits decompress");
    let mut features = Vec::with_capacity(1797 * 64);
    let mut labels = Vec::with_capacity(1797);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let cells: Vec<f32> = line
            .split(',')
            .map(|c| c.trim().parse().expect("embedded digits are numeric"))
            .collect();
        features.extend(cells[..64].iter().map(|v| v / 16.0));
        labels.push(cells[64] as usize);
    }
    Dataset::new(
        "digits",
        features,
        64,
        Targets::Classes {
            labels,
            names: (0..10).map(|d| d.to_string()).collect(),
        },
        Some([1, 8, 8]),
    )
    .expect("embedded digits are consistent")
}

/// Fisher's iris: 150 flowers, 4 measurements (cm), 3 species.
pub fn iris() -> Dataset {
    let mut lines = IRIS_CSV.lines();
    let header: Vec<&str> = lines.next().expect("iris header").split(',').collect();
    let names: Vec<String> = header[2..].iter().map(|s| s.to_string()).collect();
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let cells: Vec<f32> = line
            .split(',')
            .map(|c| c.trim().parse().expect("embedded iris is numeric"))
            .collect();
        features.extend_from_slice(&cells[..4]);
        labels.push(cells[4] as usize);
    }
    let mut d = Dataset::new(
        "iris",
        features,
        4,
        Targets::Classes { labels, names },
        None,
    )
    .expect("embedded iris is consistent");
    d.feature_names = ["sepal length", "sepal width", "petal length", "petal width"]
        .map(String::from)
        .to_vec();
    d
}

/// The embedded data sets by name.
pub const EMBEDDED: [&str; 2] = ["digits", "iris"];

/// An embedded data set by name.
///
/// # Errors
/// [`Error::Invalid`] for an unknown name.
pub fn embedded(name: &str) -> Result<Dataset> {
    match name {
        "digits" => Ok(digits()),
        "iris" => Ok(iris()),
        other => Err(Error::Invalid(format!(
            "no embedded data set `{other}` (have: {})",
            EMBEDDED.join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Task;

    #[test]
    fn digits_shape_and_balance() {
        let d = digits();
        assert_eq!(d.len(), 1797);
        assert_eq!(d.task(), Task::Classification(10));
        let mut counts = [0usize; 10];
        for &l in d.labels().unwrap() {
            counts[l] += 1;
        }
        // Every class has between 174 and 183 samples in the UCI set.
        assert!(
            counts.iter().all(|&c| (174..=183).contains(&c)),
            "{counts:?}"
        );
        assert!(d.features.iter().all(|&v| (0.0..=1.0).contains(&v)));
    }

    #[test]
    fn iris_shape() {
        let d = iris();
        assert_eq!(d.len(), 150);
        assert_eq!(d.class_names().unwrap()[2], "virginica");
        assert_eq!(d.row(0), &[5.1, 3.5, 1.4, 0.2]);
        assert!(embedded("mnist").is_err());
    }
}
