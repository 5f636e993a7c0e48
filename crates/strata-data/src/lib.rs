//! # strata-data
//!
//! Data for Strata: the embedded UCI digits and iris, the airline, sunspot and CO2 series
//! (sliding windows, split by time, seasonal-naive baseline), the Shakespeare corpus (character
//! vocabulary, contiguous split, streams for truncated back-propagation), the UCI Adult census
//! table and tables with categorical columns in general (schema fitted on the training table,
//! category indices or one-hot), a CSV loader for any numeric CSV (gzipped or not), the IDX format and Fashion-MNIST from Debian's `dataset-fashion-mnist`,
//! data-set specs (`digits`, `csv:PATH`, `series:PATH`, ...) loaded by name with [`load_source`],
//! graphs (one graph with labelled nodes, or many labelled graphs batched block-diagonally;
//! the karate club, Cora with its Planetoid split, MUTAG, node/edge CSVs and the TU format),
//! built-in sequence transduction tasks (reverse, sort, copy) for sequence-to-sequence models,
//! image augmentation (crop, flip, affine, noise, erasing, mixup; seeded),
//! standardisation fitted on the training split, stratified train/validation/test splits,
//! stratified k-fold, class-balanced sampling, and batchers that make burn tensors.
//!
//! ```
//! use strata_data::{digits, stratified_split, Standardizer, Batcher};
//! let data = digits();
//! let split = stratified_split(&data.strata(), 0.15, 0.15, 42)?;
//! let mut train = data.subset(&split.train);
//! let scaler = Standardizer::fit(&train)?;
//! scaler.transform(&mut train)?;
//! let batcher = Batcher::new(burn::tensor::Device::flex());
//! let batch = batcher.batch(&train, &[0, 1, 2, 3]);
//! assert_eq!(batch.inputs.dims(), [4, 64]);
//! # Ok::<(), strata_data::Error>(())
//! ```

mod augment;
mod batch;
mod corrupt;
mod csv_loader;
mod dataset;
mod embedded;
mod error;
mod graph;
mod graph_io;
mod idx;
mod npy;
mod pca;
mod ring;
mod sampler;
mod series;
mod spec;
mod split;
mod standardize;
mod tabular;
mod text;
mod transduction;

pub use augment::{
    Augment, Augmentation, MAX_CROP_PADDING, MIXUP_ALPHA, beta_symmetric, resize_images,
};
pub use batch::{Batch, Batcher};
pub use corrupt::Corruption;
pub use csv_loader::{
    CsvOptions, Header, LabelColumn, TaskHint, load_csv, parse_csv, read_feature_rows,
};
pub use dataset::{Dataset, Targets, Task};
pub use embedded::{EMBEDDED, digits, embedded, iris};
pub use error::{Error, Result};
pub use graph::{Graph, GraphBatch, GraphSet, NodeSplit, normalize_rows};
pub use graph_io::{
    GRAPH_DATASETS, GraphSource, cora, karate, load_graph, load_graph_dir, load_tu_dir, mutag,
    parse_node_graph,
};
pub use idx::{
    FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, IdxArray, fashion_mnist, images_from_idx, parse_idx,
    read_idx,
};
pub use npy::{npy_f32_bytes, parse_npy_f32, read_npy_f32};
pub use pca::Pca;
pub use ring::{RING_MODES, RingModes, ring_of_gaussians};
pub use sampler::{BalancedSampler, Sampling, balanced_class_weights, epoch_order};
pub use series::{
    Series, SeriesScaler, TimeSplit, Windows, airline, co2, interpolate_gaps, parse_series,
    sunspots,
};
pub use spec::{DATASETS, SERIES, SeriesSource, Source, load_series, load_source};
pub use split::{Fold, Split, stratified_kfold, stratified_split};
pub use standardize::Standardizer;
pub use tabular::{
    ADULT_COLUMNS, Column, Encoding, GERMAN_COLUMNS, MISSING, Table, TableSchema, adult,
    adult_tables, german_credit, german_credit_table,
};
pub use text::{CharVocab, TextSplit, TokenChunk, TokenStreams, contiguous_split, shakespeare};
pub use transduction::{Pair, TransductionConfig, TransductionTask};

#[cfg(test)]
mod csv_proptests {
    use super::*;
    use proptest::prelude::*;

    fn table() -> impl Strategy<Value = (Vec<Vec<f32>>, Vec<usize>)> {
        table_of(1)
    }

    /// Tables of at least `min_rows` rows (a ragged row needs another row to differ from).
    fn table_of(min_rows: usize) -> impl Strategy<Value = (Vec<Vec<f32>>, Vec<usize>)> {
        (1usize..6, min_rows..40).prop_flat_map(|(d, n)| {
            (
                prop::collection::vec(prop::collection::vec(-1e6f32..1e6, d), n),
                prop::collection::vec(0usize..5, n),
            )
        })
    }

    fn write(rows: &[Vec<f32>], labels: &[usize], header: bool) -> String {
        let mut s = String::new();
        if header {
            let d = rows[0].len();
            let names: Vec<String> = (0..d).map(|j| format!("f{j}")).collect();
            s.push_str(&format!("{},label\n", names.join(",")));
        }
        for (r, l) in rows.iter().zip(labels) {
            let cells: Vec<String> = r.iter().map(|v| format!("{v:?}")).collect();
            s.push_str(&format!("{},{l}\n", cells.join(",")));
        }
        s
    }

    proptest! {
        #[test]
        fn well_formed_files_round_trip((rows, labels) in table(), header in any::<bool>()) {
            let text = write(&rows, &labels, header);
            let d = parse_csv(text.as_bytes(), "p.csv", &CsvOptions {
                task: TaskHint::Classification, ..Default::default()
            }).unwrap();
            let flat: Vec<f32> = rows.iter().flatten().copied().collect();
            prop_assert_eq!(&d.features, &flat);
            // Classes are the sorted distinct labels; mapping back gives the input labels.
            let names = d.class_names().unwrap();
            let back: Vec<usize> = d.labels().unwrap().iter().map(|&i| names[i].parse().unwrap()).collect();
            prop_assert_eq!(back, labels);
        }

        #[test]
        fn a_bad_cell_is_always_an_error(
            (rows, labels) in table(),
            bad in prop::sample::select(vec!["NA", "", "?", "abc", "1.2.3", "nan", "inf"]),
            pick in any::<prop::sample::Index>(),
        ) {
            let mut text_rows: Vec<Vec<String>> = rows.iter().zip(&labels).map(|(r, l)| {
                let mut c: Vec<String> = r.iter().map(|v| format!("{v:?}")).collect();
                c.push(l.to_string());
                c
            }).collect();
            let i = pick.index(text_rows.len());
            let j = pick.index(rows[0].len());
            text_rows[i][j] = bad.to_string();
            let text: String = text_rows.iter().map(|r| r.join(",") + "\n").collect();
            let result = parse_csv(text.as_bytes(), "p.csv", &CsvOptions {
                header: Header::No, ..Default::default()
            });
            prop_assert!(result.is_err(), "{:?} accepted", bad);
        }

        #[test]
        fn a_ragged_row_is_always_an_error((rows, labels) in table_of(2), pick in any::<prop::sample::Index>()) {
            let mut text_rows: Vec<String> = write(&rows, &labels, false).lines().map(String::from).collect();
            let i = pick.index(text_rows.len());
            text_rows[i].push_str(",7");
            let text = text_rows.join("\n");
            prop_assert!(parse_csv(text.as_bytes(), "p.csv", &CsvOptions::default()).is_err());
        }
    }
}
