//! No parser of user input panics or hangs: arbitrary bytes, and valid files with bytes
//! flipped, inserted or cut, give a value or an `Err`, within a time bound. One property per
//! parser behind `--dataset csv:`, `table:`, `series:`, `text:`, IDX (Fashion-MNIST), `.npy`
//! (`strata predict --weights`) and `--augment`, each followed through what the CLI does next
//! with what it parsed (schema fitting, windows, vocabularies, splits, augmentation).

use std::time::Duration;

use proptest::prelude::*;
use strata_data::{
    Augment, CharVocab, CsvOptions, Encoding, Header, LabelColumn, Table, TableSchema, TaskHint,
    TimeSplit, TokenStreams, contiguous_split, images_from_idx, load_csv, parse_csv, parse_idx,
    parse_series, stratified_split,
};
use strata_tensor::require::within;

/// Each case must finish in this time: a parser that loops fails the property.
const LIMIT: Duration = Duration::from_secs(20);

fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    within(LIMIT, f).unwrap_or_else(|| panic!("{what}: no answer within {LIMIT:?} (a hang)"))
}

/// `base` with some bytes flipped, some inserted and the end cut at `cut`.
fn mutate(
    base: &[u8],
    flips: &[(prop::sample::Index, u8)],
    inserts: &[(prop::sample::Index, u8)],
    cut: prop::sample::Index,
) -> Vec<u8> {
    let mut b = base.to_vec();
    for (at, v) in flips {
        let i = at.index(b.len());
        b[i] = *v;
    }
    for (at, v) in inserts {
        let i = at.index(b.len() + 1);
        b.insert(i, *v);
    }
    let keep = cut.index(b.len() + 1).max(b.len() / 2);
    b.truncate(keep);
    b
}

/// Inputs: arbitrary bytes, and `base` mutated.
fn inputs(base: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        (
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
            prop::collection::vec(
                (
                    any::<prop::sample::Index>(),
                    prop::sample::select(b",\"\n\r|.-e: 0?x\xff".to_vec())
                ),
                0..8
            ),
            any::<prop::sample::Index>(),
        )
            .prop_map(move |(f, i, c)| mutate(base, &f, &i, c)),
    ]
}

const CSV: &[u8] =
    b"a,b,y\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n9,10,0\n11,12,1\n13,14,0\n15,16,1\n\"1,5\",2,0\n";
const TABLE: &[u8] =
    b"| comment\nage,job,y\n39,clerk,no\n50,?,yes\n38,\"smith, j\",no\n53,clerk,yes\n28,pilot,no\n37,clerk,yes\n";
const SERIES: &[u8] = b"month,value\n1949-01,112\n1949-02,118\n1949-03,132\n1949-04,129\n1949-05,121\n1949-06,135\n1949-07,148\n1949-08,148\n";
const TEXT: &[u8] =
    b"First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n";

/// A valid IDX file: 3 images of 2x2 bytes.
fn idx_file() -> Vec<u8> {
    let mut b = vec![0, 0, 0x08, 3];
    for d in [3u32, 2, 2] {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend((0..12).map(|v| v * 20));
    b
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn csv_never_panics(bytes in inputs(CSV), header in 0..3u8, regression in any::<bool>()) {
        let options = CsvOptions {
            label: LabelColumn::Last,
            header: [Header::Auto, Header::Yes, Header::No][header as usize],
            task: if regression { TaskHint::Regression } else { TaskHint::Auto },
        };
        bounded("csv", move || {
            if let Ok(d) = parse_csv(&bytes, "p.csv", &options) {
                let _ = stratified_split(&d.strata(), 0.2, 0.2, 1);
            }
        });
    }

    #[test]
    fn gzipped_csv_never_panics(tail in prop::collection::vec(any::<u8>(), 0..200)) {
        bounded("csv.gz", move || {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.csv.gz");
            let mut bytes = vec![0x1f, 0x8b, 0x08, 0x00];
            bytes.extend_from_slice(&tail);
            std::fs::write(&path, bytes).unwrap();
            let _ = load_csv(&path, &CsvOptions::default());
            let _ = Table::load(&path);
        });
    }

    #[test]
    fn table_never_panics(bytes in inputs(TABLE), onehot in any::<bool>()) {
        bounded("table", move || {
            if let Ok(t) = Table::parse(&bytes, "t.csv", None) {
                let encoding = if onehot { Encoding::OneHot } else { Encoding::Indices };
                if let Ok(schema) = TableSchema::fit(&t, &LabelColumn::Last, encoding) {
                    let _ = schema.encode(&t);
                    let _ = schema.encode_features(&t);
                }
            }
        });
    }

    #[test]
    fn series_never_panics(bytes in inputs(SERIES), season in 0..5usize, window in 0..6usize) {
        bounded("series", move || {
            let text = String::from_utf8_lossy(&bytes).to_string();
            if let Ok(s) = parse_series(&text, "s.csv", "u", season)
                && let Ok(split) = TimeSplit::last(s.values.len(), 1, 1)
                && let Ok(scaler) = s.scaler(&split)
            {
                let _ = s.windows(&split, window, &scaler);
                let _ = s.seasonal_naive(&[0, 1, s.values.len().saturating_sub(1)]);
                let _ = s.seasonal_naive_from(s.values.len() / 2, 3);
            }
        });
    }

    #[test]
    fn text_never_panics(bytes in inputs(TEXT), batch in 0..6usize) {
        bounded("text", move || {
            let text = String::from_utf8_lossy(&bytes).to_string();
            let vocab = CharVocab::from_text(&text);
            if let Ok(tokens) = vocab.encode(&text) {
                let _ = vocab.decode(&tokens);
                if let Ok(split) = contiguous_split(&tokens, 0.1, 0.1) {
                    let _ = TokenStreams::new(&split.train, batch);
                }
            }
            let _ = CharVocab::from_text("ab").encode(&text);
        });
    }

    #[test]
    fn idx_never_panics(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..100),
            (
                prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
                any::<prop::sample::Index>(),
            )
                .prop_map(|(f, c)| mutate(&idx_file(), &f, &[], c)),
        ],
    ) {
        bounded("idx", move || {
            if let Ok(images) = parse_idx(&bytes, "x-idx3-ubyte") {
                let labels = parse_idx(&[0, 0, 8, 1, 0, 0, 0, 3, 0, 1, 2], "y");
                if let Ok(labels) = labels {
                    let _ = images_from_idx("x", images, labels, &["a", "b", "c"]);
                }
            }
        });
    }

    #[test]
    fn augment_spec_never_panics(
        spec in prop_oneof![
            ".{0,40}",
            "(crop|flip|affine|noise|erase|mixup|x)(:(-?[0-9]{1,25}(\\.[0-9]{0,3})?|nan|inf|1e19|1e-400|)){0,3}(,(crop|flip|affine|noise|erase|mixup)(:[0-9.e-]{0,8}){0,2}){0,3}",
        ],
    ) {
        bounded("--augment", move || {
            if let Ok(a) = Augment::parse(&spec) {
                // What parses also validates and runs, on a small batch of images.
                a.validate().unwrap();
                let mut rows = vec![0.5f32; 2 * 3 * 5 * 4];
                a.apply(&mut rows, [3, 5, 4], 7).unwrap();
                assert!(rows.iter().all(|v| v.is_finite()), "{spec}: {rows:?}");
                if let Some(alpha) = a.mixup {
                    let lam = strata_data::beta_symmetric(alpha, 3);
                    assert!((0.0..=1.0).contains(&lam), "{spec}: mixup weight {lam}");
                }
            }
        });
    }
}
