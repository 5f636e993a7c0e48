//! Reading graphs: a node CSV with an edge CSV (and a feature CSV) for one graph with labelled
//! nodes; the TU text format for a set of labelled graphs; the embedded karate club, Cora
//! (Planetoid split) and MUTAG (see `data/NOTICE.md`).
//!
//! **One graph, a directory of CSVs** (`graph:DIR`; each file may be gzipped, as `NAME.csv` or
//! `NAME.csv.gz`):
//! - `nodes.csv`: a header, then a row per node: its id (column `node`, else the first), its
//!   class (column `label`, else the first other column that is not `split`), and optionally
//!   `split` = `train`, `val`/`valid`, `test` or `none`. Ids and classes are any text; classes
//!   are ordered as the sorted distinct values (numerically when all are integers). Without a
//!   `split` column the run splits the nodes itself.
//! - `edges.csv`: a header, then `source,target[,weight]` by node id. The graph is
//!   **undirected**: every row is an edge both ways; a pair listed twice (either way round)
//!   is kept once, with its first weight; a self loop stays a single self loop.
//! - `features.csv` (optional): either sparse rows `node,feature,value` (header exactly that;
//!   feature indices from 0, absent entries 0) or dense rows `node,x0,x1,...` with a value per
//!   column. Without it every node's feature is its one-hot id (as PyTorch Geometric's karate
//!   club).
//!
//! **Many graphs, the TU format** (`tu:DIR`, as in Morris et al.'s TUDataset; ids 1-based):
//! `NAME_A.txt` (`row, col` per directed edge, taken as given), `NAME_graph_indicator.txt`
//! (the graph of each node), `NAME_graph_labels.txt` (a class per graph), and optionally
//! `NAME_node_labels.txt` (one-hot encoded into the features) and `NAME_node_attributes.txt`
//! (comma-separated values appended). Edge labels are not read.
//!
//! A malformed file is an error that names the file and the line.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::csv_loader::read_maybe_gz;
use crate::error::{Error, Result};
use crate::graph::{Graph, GraphSet, NodeSplit};

static KARATE_NODES: &str = include_str!("../data/graphs/karate/nodes.csv");
static KARATE_EDGES: &str = include_str!("../data/graphs/karate/edges.csv");
static CORA_NODES: &[u8] = include_bytes!("../data/graphs/cora/nodes.csv.gz");
static CORA_EDGES: &[u8] = include_bytes!("../data/graphs/cora/edges.csv.gz");
static CORA_FEATURES: &[u8] = include_bytes!("../data/graphs/cora/features.csv.gz");
static MUTAG_A: &[u8] = include_bytes!("../data/graphs/mutag/MUTAG_A.txt.gz");
static MUTAG_INDICATOR: &[u8] = include_bytes!("../data/graphs/mutag/MUTAG_graph_indicator.txt.gz");
static MUTAG_GRAPH_LABELS: &[u8] = include_bytes!("../data/graphs/mutag/MUTAG_graph_labels.txt.gz");
static MUTAG_NODE_LABELS: &[u8] = include_bytes!("../data/graphs/mutag/MUTAG_node_labels.txt.gz");

/// The graph data sets [`load_graph`] knows, with what each is.
pub const GRAPH_DATASETS: [(&str, &str); 5] = [
    (
        "karate",
        "Zachary's karate club, 34 members, 78 friendships, 2 factions; one labelled member per faction (embedded)",
    ),
    (
        "cora",
        "Cora citations, 2708 papers, 5278 links, 1433 word features, 7 classes; Planetoid split 140/500/1000 (embedded)",
    ),
    (
        "mutag",
        "MUTAG, 188 molecules (17.9 atoms on average), 7 atom types, mutagenic or not (embedded)",
    ),
    (
        "graph:DIR",
        "one graph: DIR/nodes.csv (node,label[,split]), edges.csv (source,target[,weight]; undirected), optional features.csv",
    ),
    (
        "tu:DIR",
        "graphs in the TU format: DIR/NAME_A.txt, NAME_graph_indicator.txt, NAME_graph_labels.txt[, NAME_node_labels.txt]",
    ),
];

/// A graph data set as named: one graph whose nodes are classified, or graphs to classify.
// Made once per run: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum GraphSource {
    /// One graph with labelled nodes.
    Nodes(Graph),
    /// Labelled graphs.
    Graphs(GraphSet),
}

/// Loads a graph spec (`karate`, `cora`, `mutag`, `graph:DIR`, `tu:DIR`); `None` for a spec
/// that is not a graph's.
///
/// # Errors
/// An unreadable or malformed file.
pub fn load_graph(spec: &str) -> Result<Option<GraphSource>> {
    Ok(Some(match spec {
        "karate" => GraphSource::Nodes(karate()),
        "cora" => GraphSource::Nodes(cora()),
        "mutag" => GraphSource::Graphs(mutag()),
        s => {
            if let Some(dir) = s.strip_prefix("graph:") {
                GraphSource::Nodes(load_graph_dir(dir)?)
            } else if let Some(dir) = s.strip_prefix("tu:") {
                GraphSource::Graphs(load_tu_dir(dir)?)
            } else {
                return Ok(None);
            }
        }
    }))
}

fn gunzip(bytes: &[u8]) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut s)
        .expect("embedded graph files decompress");
    s
}

/// Zachary's karate club (1977): 34 members, 78 undirected friendships weighted by the number
/// of contexts they met in, the faction each member joined (`Mr. Hi`, `Officer`). Features are
/// one-hot member ids. The split labels one member per faction, the two leaders (member 0,
/// the instructor, and member 33, the administrator), and tests on the other 32; there is no
/// validation set.
pub fn karate() -> Graph {
    let mut g = parse_node_graph(
        "karate",
        (KARATE_NODES, "karate/nodes.csv"),
        (KARATE_EDGES, "karate/edges.csv"),
        None,
    )
    .expect("embedded karate club is well formed");
    g.split = Some(NodeSplit {
        train: vec![0, 33],
        valid: Vec::new(),
        test: (1..33).collect(),
    });
    g
}

/// Cora (Sen et al. 2008) with the Planetoid split (Yang et al. 2016), node for node as
/// PyTorch Geometric's `Planetoid("Cora")`: 2708 papers, 5278 undirected citation links
/// (10556 directed edges), 1433 binary bag-of-words features (not row-normalised), 7 classes;
/// 140 training nodes (20 per class), 500 validation, 1000 test.
pub fn cora() -> Graph {
    let (n, e, f) = (
        gunzip(CORA_NODES),
        gunzip(CORA_EDGES),
        gunzip(CORA_FEATURES),
    );
    parse_node_graph(
        "cora",
        (&n, "cora/nodes.csv"),
        (&e, "cora/edges.csv"),
        Some((&f, "cora/features.csv")),
    )
    .expect("embedded Cora is well formed")
}

/// MUTAG (Debnath et al. 1991) as in the TUDataset: 188 molecules, atoms one-hot by type (7
/// features), bonds as edges both ways; class `1` mutagenic (125 graphs), `-1` not (63).
pub fn mutag() -> GraphSet {
    let files = TuFiles {
        name: "MUTAG".into(),
        a: (gunzip(MUTAG_A), "MUTAG_A.txt".into()),
        indicator: (gunzip(MUTAG_INDICATOR), "MUTAG_graph_indicator.txt".into()),
        graph_labels: (gunzip(MUTAG_GRAPH_LABELS), "MUTAG_graph_labels.txt".into()),
        node_labels: Some((gunzip(MUTAG_NODE_LABELS), "MUTAG_node_labels.txt".into())),
        node_attributes: None,
    };
    parse_tu(&files).expect("embedded MUTAG is well formed")
}

/// `DIR/NAME.csv`, else `DIR/NAME.csv.gz`, read (and decompressed).
fn read_csv_file(dir: &Path, name: &str, required: bool) -> Result<Option<(String, String)>> {
    for file in [format!("{name}.csv"), format!("{name}.csv.gz")] {
        let path = dir.join(&file);
        if path.exists() {
            let bytes = read_maybe_gz(&path)?;
            let text = String::from_utf8(bytes).map_err(|_| Error::Csv {
                path: path.display().to_string(),
                line: 0,
                message: "not UTF-8 text".into(),
            })?;
            return Ok(Some((text, path.display().to_string())));
        }
    }
    if required {
        return Err(Error::io(
            dir.join(format!("{name}.csv")),
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file (nor .csv.gz)"),
        ));
    }
    Ok(None)
}

/// Loads one graph from `dir` (see the module page for the files).
///
/// # Errors
/// A missing `nodes.csv` or `edges.csv`, a malformed row (named by file and line), an edge
/// to a node `nodes.csv` does not list.
pub fn load_graph_dir(dir: impl AsRef<Path>) -> Result<Graph> {
    let dir = dir.as_ref();
    let name = dir.file_name().map_or_else(
        || dir.display().to_string(),
        |s| s.to_string_lossy().to_string(),
    );
    let nodes = read_csv_file(dir, "nodes", true)?.expect("required");
    let edges = read_csv_file(dir, "edges", true)?.expect("required");
    let features = read_csv_file(dir, "features", false)?;
    parse_node_graph(
        &name,
        (&nodes.0, &nodes.1),
        (&edges.0, &edges.1),
        features.as_ref().map(|(t, p)| (t.as_str(), p.as_str())),
    )
}

/// A CSV row: its 1-based line number and its cells.
type Row = (usize, Vec<String>);

/// The records of a CSV text with a header: `(header, rows)`.
fn records(text: &str, path: &str) -> Result<(Vec<String>, Vec<Row>)> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let csv_err = |e: csv::Error| Error::Csv {
        path: path.to_string(),
        line: e.position().map_or(0, |p| p.line() as usize),
        message: e.to_string(),
    };
    let header: Vec<String> = r
        .headers()
        .map_err(csv_err)?
        .iter()
        .map(|h| h.to_lowercase())
        .collect();
    let mut rows = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(csv_err)?;
        let line = rec.position().map_or(0, |p| p.line() as usize);
        if rec.iter().all(str::is_empty) {
            continue;
        }
        rows.push((line, rec.iter().map(str::to_string).collect()));
    }
    if header.is_empty() || header.iter().all(String::is_empty) {
        return Err(Error::Csv {
            path: path.to_string(),
            line: 1,
            message: "empty file: expected a header".into(),
        });
    }
    Ok((header, rows))
}

/// Parses one graph from the texts of its node, edge and (optional) feature CSVs, each with
/// the path its errors name. See the module page for the formats.
///
/// # Errors
/// A malformed row, an unknown node id, a label missing, a file with no nodes.
pub fn parse_node_graph(
    name: &str,
    nodes: (&str, &str),
    edges: (&str, &str),
    features: Option<(&str, &str)>,
) -> Result<Graph> {
    let csv_error = |path: &str, line: usize, message: String| Error::Csv {
        path: path.to_string(),
        line,
        message,
    };
    // Nodes.
    let (header, rows) = records(nodes.0, nodes.1)?;
    let id_col = header.iter().position(|h| h == "node").unwrap_or(0);
    let split_col = header.iter().position(|h| h == "split");
    let label_col = header
        .iter()
        .position(|h| h == "label")
        .or_else(|| (0..header.len()).find(|&c| c != id_col && Some(c) != split_col))
        .ok_or_else(|| {
            csv_error(
                nodes.1,
                1,
                "no label column: expected a header like node,label[,split]".into(),
            )
        })?;
    if rows.is_empty() {
        return Err(csv_error(nodes.1, 1, "no nodes".into()));
    }
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut ids = Vec::with_capacity(rows.len());
    let mut raw_labels = Vec::with_capacity(rows.len());
    let mut split = NodeSplit::default();
    for (line, cells) in &rows {
        if cells.len() != header.len() {
            return Err(csv_error(
                nodes.1,
                *line,
                format!("{} cells, the header has {}", cells.len(), header.len()),
            ));
        }
        let id = cells[id_col].clone();
        let i = ids.len();
        if index.insert(id.clone(), i).is_some() {
            return Err(csv_error(
                nodes.1,
                *line,
                format!("node `{id}` listed twice"),
            ));
        }
        let label = cells[label_col].clone();
        if label.is_empty() {
            return Err(csv_error(
                nodes.1,
                *line,
                format!("node `{id}` has no label"),
            ));
        }
        raw_labels.push(label);
        if let Some(c) = split_col {
            match cells[c].to_lowercase().as_str() {
                "train" => split.train.push(i),
                "val" | "valid" | "validation" => split.valid.push(i),
                "test" => split.test.push(i),
                "none" | "" => {}
                other => {
                    return Err(csv_error(
                        nodes.1,
                        *line,
                        format!("split `{other}`: expected train, val, test or none"),
                    ));
                }
            }
        }
        ids.push(id);
    }
    let n = ids.len();
    let (labels, class_names) = classes(&raw_labels);

    // Edges: undirected, each pair once.
    let (eh, erows) = records(edges.0, edges.1)?;
    if !(2..=3).contains(&eh.len()) {
        return Err(csv_error(
            edges.1,
            1,
            format!("header `{}`: expected source,target[,weight]", eh.join(",")),
        ));
    }
    let weighted = eh.len() == 3;
    let node_of = |path: &str, line: usize, id: &str| {
        index.get(id).copied().ok_or_else(|| {
            csv_error(
                path,
                line,
                format!("edge to node `{id}`, which nodes.csv does not list"),
            )
        })
    };
    let mut source = Vec::with_capacity(2 * erows.len());
    let mut target = Vec::with_capacity(2 * erows.len());
    let mut weight = Vec::new();
    for (line, cells) in &erows {
        if cells.len() != eh.len() {
            return Err(csv_error(
                edges.1,
                *line,
                format!("{} cells, the header has {}", cells.len(), eh.len()),
            ));
        }
        source.push(node_of(edges.1, *line, &cells[0])?);
        target.push(node_of(edges.1, *line, &cells[1])?);
        if weighted {
            let w: f32 = cells[2]
                .parse()
                .ok()
                .filter(|w: &f32| w.is_finite())
                .ok_or_else(|| {
                    csv_error(
                        edges.1,
                        *line,
                        format!("weight `{}` is not a number", cells[2]),
                    )
                })?;
            weight.push(w);
        }
    }

    // Features.
    let (n_features, values) = match features {
        None => {
            let mut x = vec![0.0; n * n];
            for i in 0..n {
                x[i * n + i] = 1.0;
            }
            (n, x)
        }
        Some((text, path)) => parse_features(text, path, &index)?,
    };
    let graph = Graph {
        name: name.to_string(),
        n_nodes: n,
        features: values,
        n_features,
        source,
        target,
        edge_weight: weighted.then_some(weight),
        labels: None,
        class_names: Vec::new(),
        node_ids: ids,
        split: None,
    }
    .to_undirected();
    let split = (split_col.is_some()).then_some(split);
    graph.with_labels(labels, class_names, split)
}

/// Class indices of text labels: the sorted distinct values (numerically when all are
/// integers).
fn classes(raw: &[String]) -> (Vec<usize>, Vec<String>) {
    let mut names: Vec<String> = raw.to_vec();
    names.sort_unstable();
    names.dedup();
    if names.iter().all(|n| n.parse::<i64>().is_ok()) {
        names.sort_by_key(|n| n.parse::<i64>().unwrap_or(0));
    }
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    (raw.iter().map(|l| index[l.as_str()]).collect(), names)
}

/// The most features a sparse feature file may declare (a guard against a typo'd index
/// allocating gigabytes).
const MAX_FEATURES: usize = 1 << 20;

/// The most node labels a TU file may one-hot encode.
const MAX_ONE_HOT: usize = 10_000;

/// Sparse (`node,feature,value`) or dense (`node,x0,...`) node features.
fn parse_features(
    text: &str,
    path: &str,
    index: &HashMap<String, usize>,
) -> Result<(usize, Vec<f32>)> {
    let n = index.len();
    let (header, rows) = records(text, path)?;
    let err = |line: usize, message: String| Error::Csv {
        path: path.to_string(),
        line,
        message,
    };
    let node = |line: usize, id: &str| {
        index.get(id).copied().ok_or_else(|| {
            err(
                line,
                format!("features of node `{id}`, which nodes.csv does not list"),
            )
        })
    };
    let number = |line: usize, cell: &str| {
        cell.parse::<f32>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| err(line, format!("`{cell}` is not a number")))
    };
    if header == ["node", "feature", "value"] {
        let mut entries = Vec::with_capacity(rows.len());
        let mut width = 0;
        for (line, cells) in &rows {
            if cells.len() != 3 {
                return Err(err(
                    *line,
                    format!("{} cells: expected node,feature,value", cells.len()),
                ));
            }
            let i = node(*line, &cells[0])?;
            let j: usize = cells[1]
                .parse()
                .ok()
                .filter(|j| *j < MAX_FEATURES)
                .ok_or_else(|| {
                    err(
                        *line,
                        format!(
                            "feature `{}` is not an index below {MAX_FEATURES}",
                            cells[1]
                        ),
                    )
                })?;
            width = width.max(j + 1);
            entries.push((i, j, number(*line, &cells[2])?));
        }
        let mut x = vec![0.0; n * width];
        for (i, j, v) in entries {
            x[i * width + j] = v;
        }
        return Ok((width, x));
    }
    let width = header.len() - 1;
    if width == 0 {
        return Err(err(
            1,
            "no feature columns: expected node,feature,value or node,x0,x1,...".into(),
        ));
    }
    let mut x = vec![0.0; n * width];
    let mut seen = vec![false; n];
    for (line, cells) in &rows {
        if cells.len() != header.len() {
            return Err(err(
                *line,
                format!(
                    "{} values, the header has {width} features",
                    cells.len() - 1
                ),
            ));
        }
        let i = node(*line, &cells[0])?;
        seen[i] = true;
        for (j, c) in cells[1..].iter().enumerate() {
            x[i * width + j] = number(*line, c)?;
        }
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        let id = index
            .iter()
            .find(|(_, v)| **v == i)
            .map_or("?", |(k, _)| k.as_str());
        return Err(err(0, format!("no feature row for node `{id}`")));
    }
    Ok((width, x))
}

/// The texts of a TU data set's files, each with the name its errors give.
struct TuFiles {
    name: String,
    a: (String, String),
    indicator: (String, String),
    graph_labels: (String, String),
    node_labels: Option<(String, String)>,
    node_attributes: Option<(String, String)>,
}

/// Loads graphs in the TU format from `dir` (see the module page).
///
/// # Errors
/// No `*_A.txt` in `dir`, a missing required file, a malformed line (named by file and line),
/// an edge between two graphs, labels of the wrong length.
pub fn load_tu_dir(dir: impl AsRef<Path>) -> Result<GraphSet> {
    let dir = dir.as_ref();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix("_A.txt")
                .map(str::to_string)
        })
        .collect();
    names.sort();
    let name = names.first().cloned().ok_or_else(|| {
        Error::Spec(format!(
            "{}: no NAME_A.txt: a TU data set needs NAME_A.txt, NAME_graph_indicator.txt and NAME_graph_labels.txt",
            dir.display()
        ))
    })?;
    let read = |suffix: &str, required: bool| -> Result<Option<(String, String)>> {
        let path: PathBuf = dir.join(format!("{name}_{suffix}.txt"));
        if !path.exists() && !required {
            return Ok(None);
        }
        let bytes = read_maybe_gz(&path)?;
        let text = String::from_utf8(bytes).map_err(|_| Error::Csv {
            path: path.display().to_string(),
            line: 0,
            message: "not UTF-8 text".into(),
        })?;
        Ok(Some((text, path.display().to_string())))
    };
    let files = TuFiles {
        a: read("A", true)?.expect("required"),
        indicator: read("graph_indicator", true)?.expect("required"),
        graph_labels: read("graph_labels", true)?.expect("required"),
        node_labels: read("node_labels", false)?,
        node_attributes: read("node_attributes", false)?,
        name,
    };
    parse_tu(&files)
}

/// The non-empty lines of a text with their 1-based numbers, split on commas.
fn tu_lines(text: &str) -> impl Iterator<Item = (usize, Vec<&str>)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l.split(',').map(str::trim).collect()))
}

fn parse_tu(f: &TuFiles) -> Result<GraphSet> {
    let err = |path: &str, line: usize, message: String| Error::Csv {
        path: path.to_string(),
        line,
        message,
    };
    let int = |path: &str, line: usize, cell: &str| -> Result<i64> {
        cell.parse()
            .map_err(|_| err(path, line, format!("`{cell}` is not an integer")))
    };
    // The graph of each node.
    let (text, path) = (&f.indicator.0, f.indicator.1.as_str());
    let mut graph_of = Vec::new();
    for (line, cells) in tu_lines(text) {
        let g = int(path, line, cells[0])?;
        if cells.len() != 1 || g < 1 {
            return Err(err(
                path,
                line,
                format!("`{}`: expected a graph id from 1", cells.join(",")),
            ));
        }
        graph_of.push(g as usize - 1);
    }
    let n_nodes = graph_of.len();
    // Graph labels.
    let (text, path) = (&f.graph_labels.0, f.graph_labels.1.as_str());
    let mut raw = Vec::new();
    for (line, cells) in tu_lines(text) {
        if cells.len() != 1 {
            return Err(err(path, line, "expected one label per line".into()));
        }
        int(path, line, cells[0])?;
        raw.push(cells[0].to_string());
    }
    let n_graphs = raw.len();
    if let Some(&g) = graph_of.iter().find(|&&g| g >= n_graphs) {
        let line = graph_of.iter().position(|&x| x == g).unwrap_or(0) + 1;
        return Err(err(
            &f.indicator.1,
            line,
            format!(
                "graph {} but {} has {n_graphs} labels",
                g + 1,
                f.graph_labels.1
            ),
        ));
    }
    let (labels, class_names) = classes(&raw);
    // Local node numbers.
    let mut sizes = vec![0usize; n_graphs];
    let mut local = Vec::with_capacity(n_nodes);
    for &g in &graph_of {
        local.push(sizes[g]);
        sizes[g] += 1;
    }
    if let Some(g) = sizes.iter().position(|&s| s == 0) {
        return Err(err(
            &f.indicator.1,
            0,
            format!("graph {} has no nodes", g + 1),
        ));
    }
    // Node features: one-hot node labels, then attributes.
    let mut blocks: Vec<(usize, Vec<f32>)> = Vec::new();
    if let Some((text, path)) = &f.node_labels {
        let mut l = Vec::with_capacity(n_nodes);
        for (line, cells) in tu_lines(text) {
            let v = int(path, line, cells[0])?;
            if v < 0 || cells.len() != 1 {
                return Err(err(
                    path,
                    line,
                    format!("`{}`: expected a node label from 0", cells.join(",")),
                ));
            }
            l.push(v as usize);
        }
        if l.len() != n_nodes {
            return Err(err(
                path,
                0,
                format!("{} node labels for {n_nodes} nodes", l.len()),
            ));
        }
        let k = l.iter().max().map_or(0, |m| m + 1);
        if k > MAX_ONE_HOT {
            return Err(err(
                path,
                0,
                format!("node label {k} is too large to one-hot"),
            ));
        }
        let mut x = vec![0.0; n_nodes * k];
        for (i, &v) in l.iter().enumerate() {
            x[i * k + v] = 1.0;
        }
        blocks.push((k, x));
    }
    if let Some((text, path)) = &f.node_attributes {
        let mut x = Vec::new();
        let mut width = None;
        for (line, cells) in tu_lines(text) {
            if *width.get_or_insert(cells.len()) != cells.len() {
                return Err(err(
                    path,
                    line,
                    format!("{} values, line 1 has {}", cells.len(), width.unwrap_or(0)),
                ));
            }
            for c in cells {
                x.push(
                    c.parse::<f32>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .ok_or_else(|| err(path, line, format!("`{c}` is not a number")))?,
                );
            }
        }
        let width = width.unwrap_or(0);
        if x.len() != n_nodes * width {
            return Err(err(
                path,
                0,
                format!(
                    "{} attribute rows for {n_nodes} nodes",
                    x.len() / width.max(1)
                ),
            ));
        }
        blocks.push((width, x));
    }
    if blocks.is_empty() {
        // No node information: a constant feature, as PyTorch Geometric's structure-only sets.
        blocks.push((1, vec![1.0; n_nodes]));
    }
    let n_features: usize = blocks.iter().map(|(w, _)| w).sum();
    let mut graphs: Vec<Graph> = sizes
        .iter()
        .enumerate()
        .map(|(g, &s)| Graph {
            name: format!("{}[{g}]", f.name),
            n_nodes: s,
            features: Vec::with_capacity(s * n_features),
            n_features,
            source: Vec::new(),
            target: Vec::new(),
            edge_weight: None,
            labels: None,
            class_names: Vec::new(),
            node_ids: Vec::with_capacity(s),
            split: None,
        })
        .collect();
    for i in 0..n_nodes {
        let g = &mut graphs[graph_of[i]];
        for (w, x) in &blocks {
            g.features.extend_from_slice(&x[i * w..(i + 1) * w]);
        }
        g.node_ids.push((i + 1).to_string());
    }
    // Edges.
    let (text, path) = (&f.a.0, f.a.1.as_str());
    for (line, cells) in tu_lines(text) {
        if cells.len() != 2 {
            return Err(err(
                path,
                line,
                format!("`{}`: expected `row, col`", cells.join(",")),
            ));
        }
        let node = |c: &str| -> Result<usize> {
            let v = int(path, line, c)?;
            if v < 1 || v as usize > n_nodes {
                return Err(err(
                    path,
                    line,
                    format!("node {v} does not exist (nodes are 1..{n_nodes})"),
                ));
            }
            Ok(v as usize - 1)
        };
        let (s, t) = (node(cells[0])?, node(cells[1])?);
        if graph_of[s] != graph_of[t] {
            return Err(err(
                path,
                line,
                format!(
                    "edge {} -> {} joins graphs {} and {}",
                    s + 1,
                    t + 1,
                    graph_of[s] + 1,
                    graph_of[t] + 1
                ),
            ));
        }
        let g = &mut graphs[graph_of[s]];
        g.source.push(local[s]);
        g.target.push(local[t]);
    }
    GraphSet::new(&f.name, graphs, labels, class_names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_embedded_graphs_have_their_published_sizes() {
        let k = karate();
        assert_eq!(
            (k.n_nodes, k.n_edges(), k.n_features, k.n_classes()),
            (34, 156, 34, 2)
        );
        assert_eq!(k.class_names, vec!["Mr. Hi", "Officer"]);
        let l = k.labels.as_ref().unwrap();
        assert_eq!(
            (l[0], l[33]),
            (0, 1),
            "the two leaders lead different factions"
        );
        let c = cora();
        assert_eq!(
            (c.n_nodes, c.n_edges(), c.n_features, c.n_classes()),
            (2708, 10556, 1433, 7)
        );
        let s = c.split.as_ref().unwrap();
        assert_eq!(
            (s.train.len(), s.valid.len(), s.test.len()),
            (140, 500, 1000)
        );
        assert_eq!(c.features.iter().filter(|v| **v != 0.0).count(), 49216);
        assert!(!c.has_self_loops() && c.isolated_nodes().is_empty());
        let m = mutag();
        assert_eq!((m.len(), m.n_features(), m.n_classes()), (188, 7, 2));
        assert_eq!(m.graphs.iter().map(|g| g.n_nodes).sum::<usize>(), 3371);
        assert_eq!(m.graphs.iter().map(Graph::n_edges).sum::<usize>(), 7442);
        assert_eq!(m.labels.iter().filter(|&&l| l == 1).count(), 125);
        assert_eq!(m.class_names, vec!["-1", "1"]);
    }

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(d.path().join(name), text).unwrap();
        }
        d
    }

    #[test]
    fn a_graph_directory_reads_with_string_ids_and_dense_features() {
        let d = dir_with(&[
            (
                "nodes.csv",
                "node,label,split\na,x,train\nb,y,val\nc,x,test\nd,y,none\n",
            ),
            ("edges.csv", "source,target\na,b\nb,a\nb,c\nc,c\n"),
            ("features.csv", "node,f0,f1\na,1,2\nb,3,4\nc,5,6\nd,7,8\n"),
        ]);
        let g = load_graph_dir(d.path()).unwrap();
        assert_eq!(g.n_nodes, 4);
        // a-b listed both ways is one undirected edge; c-c one self loop; d isolated.
        assert_eq!(g.n_edges(), 5);
        assert_eq!(g.isolated_nodes(), vec![3]);
        assert_eq!(g.features, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        assert_eq!(g.labels, Some(vec![0, 1, 0, 1]));
        let s = g.split.unwrap();
        assert_eq!((s.train, s.valid, s.test), (vec![0], vec![1], vec![2]));
    }

    #[test]
    fn malformed_graph_files_name_the_file_and_line() {
        let cases = [
            (
                vec![
                    ("nodes.csv", "node,label\n0,a\n1,b\n"),
                    ("edges.csv", "source,target\n0,1\n1,7\n"),
                ],
                "edges.csv: line 3: edge to node `7`",
            ),
            (
                vec![
                    ("nodes.csv", "node,label\n0,a\n1,b\n"),
                    ("edges.csv", "source,target\n0,1\n"),
                    ("features.csv", "node,x0,x1\n0,1,2\n1,3\n"),
                ],
                "features.csv: line 3: 1 values, the header has 2 features",
            ),
            (
                vec![
                    ("nodes.csv", "node,label\n0,a\n1,\n"),
                    ("edges.csv", "source,target\n0,1\n"),
                ],
                "nodes.csv: line 3: node `1` has no label",
            ),
            (
                vec![
                    ("nodes.csv", "node,label,split\n0,a,train\n1,b,dev\n"),
                    ("edges.csv", "source,target\n"),
                ],
                "nodes.csv: line 3: split `dev`",
            ),
            (
                vec![
                    ("nodes.csv", "node,label\n0,a\n"),
                    ("edges.csv", "source,target,weight\n0,0,heavy\n"),
                ],
                "edges.csv: line 2: weight `heavy`",
            ),
        ];
        for (files, expected) in cases {
            let d = dir_with(&files);
            let e = load_graph_dir(d.path()).unwrap_err().to_string();
            assert!(e.contains(expected), "`{e}` lacks `{expected}`");
        }
        let d = dir_with(&[("nodes.csv", "node,label\n0,a\n")]);
        assert!(
            load_graph_dir(d.path())
                .unwrap_err()
                .to_string()
                .contains("edges.csv")
        );
    }

    #[test]
    fn tu_files_read_and_their_errors_name_file_and_line() {
        let good = [
            ("T_A.txt", "1, 2\n2, 1\n3, 4\n4, 3\n4, 5\n"),
            ("T_graph_indicator.txt", "1\n1\n2\n2\n2\n"),
            ("T_graph_labels.txt", "-1\n1\n"),
            ("T_node_labels.txt", "0\n1\n2\n0\n0\n"),
        ];
        let d = dir_with(&good);
        let s = load_tu_dir(d.path()).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.labels, vec![0, 1]);
        assert_eq!(
            (s.graphs[1].n_nodes, s.graphs[1].n_edges(), s.n_features()),
            (3, 3, 3)
        );
        assert_eq!(s.graphs[1].source, vec![0, 1, 1]);
        let mut bad_edge = good;
        bad_edge[0] = ("T_A.txt", "1, 2\n2, 3\n");
        let e = load_tu_dir(dir_with(&bad_edge).path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("T_A.txt: line 2: edge 2 -> 3 joins graphs 1 and 2"),
            "{e}"
        );
        let mut short = good;
        short[3] = ("T_node_labels.txt", "0\n1\n");
        let e = load_tu_dir(dir_with(&short).path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 node labels for 5 nodes"), "{e}");
        let mut few = good;
        few[2] = ("T_graph_labels.txt", "1\n");
        let e = load_tu_dir(dir_with(&few).path()).unwrap_err().to_string();
        assert!(e.contains("graph 2 but"), "{e}");
        let mut nan = good;
        nan[0] = ("T_A.txt", "1, x\n");
        let e = load_tu_dir(dir_with(&nan).path()).unwrap_err().to_string();
        assert!(e.contains("T_A.txt: line 1: `x` is not an integer"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn graph_parsers_never_panic(nodes in ".{0,200}", edges in ".{0,200}", features in ".{0,200}") {
            let _ = parse_node_graph("p", (&nodes, "n"), (&edges, "e"), Some((&features, "f")));
            let _ = parse_node_graph("p", (&nodes, "n"), (&edges, "e"), None);
        }

        #[test]
        fn tu_parser_never_panics(a in "[0-9, \n-]{0,80}", ind in "[0-9\n]{0,40}", lab in "[0-9\n-]{0,20}", nl in "[0-9\n]{0,40}") {
            let f = TuFiles {
                name: "P".into(),
                a: (a, "a".into()),
                indicator: (ind, "i".into()),
                graph_labels: (lab, "l".into()),
                node_labels: Some((nl, "n".into())),
                node_attributes: None,
            };
            let _ = parse_tu(&f);
        }
    }
}
