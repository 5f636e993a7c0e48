//! `strata train --sensitive`: the fairness of an Adult classifier's test decisions by sex and
//! race, checked against the run's own `test_predictions.csv` and the test file's cells, and
//! bad columns as one line with exit code 1.

mod common;
use common::{assert_clean_failure, json, stderr, strata};

/// `strata train` of an MLP on iris (not a table) into `out` with `FLAG sex`.
fn iris<'a>(out: &'a str, flag: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--model",
        "mlp",
        "--dataset",
        "iris",
        "--out",
        out,
        flag,
        "sex",
    ]
}

#[test]
fn adult_decisions_by_sex_and_race() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("adult");
    let r = run.to_str().unwrap();
    let o = strata(&[
        "train",
        "--model",
        "mlp",
        "--dataset",
        "adult",
        "--epochs",
        "2",
        "--quiet",
        "--sensitive",
        "sex,race",
        "--out",
        r,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = json(&run.join("metrics.json"));
    let block = &m["fairness"];
    assert_eq!(block["positive_class"], ">50K");
    let sex = &block["columns"]["sex"];
    let groups: Vec<&str> = sex["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["Female", "Male"]);
    assert_eq!(
        block["columns"]["race"]["groups"].as_array().unwrap().len(),
        5
    );
    for key in [
        "demographic_parity_difference",
        "equalized_odds_difference",
        "equal_opportunity_difference",
    ] {
        let v = sex[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{key} {v}");
    }
    assert_eq!(
        sex["overall"]["accuracy"].as_f64(),
        m["test"]["accuracy"].as_f64(),
        "the overall accuracy is the test accuracy"
    );

    // Each sex's selection rate, counted from test_predictions.csv and the test file's cells.
    let (_, test) = strata::data::adult_tables();
    let col = test.header.iter().position(|h| h == "sex").unwrap();
    let predictions = std::fs::read_to_string(run.join("test_predictions.csv")).unwrap();
    let mut counts = std::collections::BTreeMap::<String, (usize, usize)>::new();
    for line in predictions.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        let row: usize = cells[0].parse().unwrap();
        let e = counts.entry(test.rows[row].1[col].clone()).or_default();
        e.0 += 1;
        e.1 += usize::from(cells[2] == ">50K");
    }
    let csv = std::fs::read_to_string(run.join("fairness_sex.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("group,count,accuracy,selection_rate,"),
        "{csv}"
    );
    assert_eq!(lines.len(), 4, "{csv}");
    for line in &lines[1..3] {
        let cells: Vec<&str> = line.split(',').collect();
        let (n, selected) = counts[cells[0]];
        assert_eq!(cells[1].parse::<usize>().unwrap(), n, "{line}");
        let rate: f64 = cells[3].parse().unwrap();
        assert!((rate - selected as f64 / n as f64).abs() < 1e-6, "{line}");
    }
    assert!(lines[3].starts_with("overall,16281,"), "{}", lines[3]);
    for c in ["sex", "race"] {
        let png = std::fs::read(run.join(format!("fairness_{c}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG"));
    }

    // `strata evaluate --sensitive` of the same run gives the same figures, in RUN/fairness/.
    let o = strata(&["evaluate", "--run", r, "--sensitive", "sex,race"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = json(&run.join("evaluation.json"));
    assert_eq!(e["fairness"], m["fairness"]);
    assert_eq!(
        std::fs::read_to_string(run.join("fairness/fairness_sex.csv")).unwrap(),
        csv
    );

    // Per-group thresholds fitted on the validation split: each narrows the gap it targets
    // on the test split (bars set before the first run: parity gap under 0.05 and below the
    // model's own; odds gap below the model's own).
    let before = &m["fairness"]["columns"]["sex"];
    for (constraint, gap) in [
        ("demographic-parity", "demographic_parity_difference"),
        ("equalized-odds", "equalized_odds_difference"),
    ] {
        let o = strata(&[
            "evaluate",
            "--run",
            r,
            "--sensitive",
            "sex",
            "--thresholds",
            constraint,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let e = json(&run.join("evaluation.json"));
        let t = &e["thresholds"];
        assert_eq!(t["constraint"], constraint);
        let (was, now) = (
            before[gap].as_f64().unwrap(),
            t["fairness"][gap].as_f64().unwrap(),
        );
        assert!(now < was, "{constraint}: {gap} {now} after vs {was} before");
        if constraint == "demographic-parity" {
            assert!(now < 0.05, "{gap} {now}");
        }
        let rules = t["rules"].as_object().unwrap();
        assert_eq!(rules.len(), 2, "{t}");
        let accuracy = t["accuracy"].as_f64().unwrap();
        assert!(accuracy > 0.75, "accuracy {accuracy} after {constraint}");
        let png = std::fs::read(run.join("fairness/fairness_sex_thresholded.png")).unwrap();
        assert!(png.starts_with(b"\x89PNG"));
    }
    assert_clean_failure(
        &[
            "evaluate",
            "--run",
            r,
            "--sensitive",
            "sex,race",
            "--thresholds",
            "odds",
        ],
        "one column",
    );
    assert_clean_failure(
        &[
            "evaluate",
            "--run",
            r,
            "--sensitive",
            "sex",
            "--thresholds",
            "fast",
        ],
        "unknown fairness constraint `fast`",
    );
    assert_clean_failure(
        &["evaluate", "--run", r, "--sensitive", "gender"],
        "no column `gender`",
    );

    // German credit by sex and age group (derived columns of the embedded data).
    let german = dir.path().join("german");
    let o = strata(&[
        "train",
        "--model",
        "mlp",
        "--dataset",
        "german-credit",
        "--quiet",
        "--sensitive",
        "sex,age-group",
        "--out",
        german.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = json(&german.join("metrics.json"));
    assert_eq!(m["fairness"]["positive_class"], "good");
    let names = |c: &str| -> Vec<String> {
        m["fairness"]["columns"][c]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["group"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("sex"), ["female", "male"]);
    assert_eq!(names("age-group"), ["<= 25", "> 25"]);

    // Bad columns, before any training: one line, exit code 1.
    let out = dir.path().join("bad");
    let o = out.to_str().unwrap();
    let base = ["train", "--model", "mlp", "--dataset", "adult", "--out", o];
    assert_clean_failure(
        &[&base[..], &["--sensitive", "gender"]].concat(),
        "no column `gender`; the categorical columns are workclass",
    );
    assert_clean_failure(&[&base[..], &["--sensitive", "age"]].concat(), "numeric");
    assert_clean_failure(&[&base[..], &["--sensitive", "sex,sex"]].concat(), "twice");
    assert_clean_failure(&iris(o, "--sensitive"), "is not one");
    // A column whose rows hold one group: refused before training.
    let table = dir.path().join("one-site.csv");
    let mut text = String::from("x,site,label\n");
    for i in 0..60 {
        text.push_str(&format!(
            "{},A,{}\n",
            i % 7,
            if i % 3 == 0 { "yes" } else { "no" }
        ));
    }
    std::fs::write(&table, text).unwrap();
    let spec = format!("table:{}", table.display());
    assert_clean_failure(
        &[
            "train",
            "--model",
            "mlp",
            "--dataset",
            &spec,
            "--out",
            o,
            "--sensitive",
            "site",
        ],
        "is in one group, `A`",
    );
    assert!(!out.exists(), "nothing written for a refused run");
}

/// Reweighing by sex, and adversarial debiasing for demographic parity, each narrow the gap in
/// selection rates between women and men that a plain Adult MLP shows (the bars, 2 points for
/// reweighing and 5 for debiasing, set before their first runs).
#[test]
fn mitigation_narrows_the_demographic_parity_gap() {
    let dir = tempfile::tempdir().unwrap();
    let gap = |extra: &[&str]| {
        let out = dir.path().join(format!(
            "run{}",
            extra.join("_").replace([':', ',', '='], "_")
        ));
        let args = [
            &[
                "train",
                "--model",
                "mlp",
                "--dataset",
                "adult",
                "--epochs",
                "3",
                "--quiet",
                "--sensitive",
                "sex",
                "--out",
                out.to_str().unwrap(),
            ][..],
            extra,
        ]
        .concat();
        let o = strata(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let m = json(&out.join("metrics.json"));
        let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
        let f = &m["fairness"]["columns"]["sex"];
        (f["demographic_parity_difference"].as_f64().unwrap(), config)
    };
    let (plain, _) = gap(&[]);
    let (reweighed, config) = gap(&["--reweigh", "sex"]);
    assert!(
        reweighed < plain - 0.02,
        "demographic parity difference {reweighed} reweighed vs {plain} plain"
    );
    assert!(config.contains("reweigh = \"sex\""), "{config}");
    let (debiased, config) = gap(&["--debias", "sex:constraint=demographic-parity"]);
    assert!(
        debiased < plain - 0.05,
        "demographic parity difference {debiased} debiased vs {plain} plain"
    );
    assert!(config.contains("[debias]"), "{config}");
    let out = dir
        .path()
        .join("run--debias_sex_constraint_demographic-parity");
    let history = std::fs::read_to_string(out.join("history.csv")).unwrap();
    let header = history.lines().next().unwrap();
    for column in ["predictor", "adversary", "adversary_acc", "parity_gap"] {
        assert!(header.contains(column), "{column} in {header}");
    }

    let out = dir.path().join("bad");
    let o = out.to_str().unwrap();
    let base = ["train", "--model", "mlp", "--dataset", "adult", "--out", o];
    assert_clean_failure(&[&base[..], &["--reweigh", "age"]].concat(), "numeric");
    assert_clean_failure(
        &[
            &base[..],
            &["--reweigh", "sex", "--adversarial", "fgsm:eps=0.1"],
        ]
        .concat(),
        "choose one",
    );
    assert_clean_failure(
        &[&base[..], &["--reweigh", "sex", "--class-weights"]].concat(),
        "plain cross-entropy",
    );
    assert_clean_failure(&iris(o, "--reweigh"), "--reweigh names columns of a table");
    assert_clean_failure(&iris(o, "--debias"), "--debias names columns of a table");
    assert_clean_failure(&[&base[..], &["--debias", "age"]].concat(), "numeric");
    assert_clean_failure(
        &[&base[..], &["--debias", "sex", "--reweigh", "sex"]].concat(),
        "--reweigh and --debias each replace the training loss: choose one",
    );
    assert_clean_failure(
        &[&base[..], &["--debias", "sex:alpha=-2"]].concat(),
        "alpha must be a finite number >= 0",
    );
    assert!(!out.exists(), "nothing written for a refused run");
}
