//! Group fairness against fairlearn (`tests/fixtures/gen_fairness.py`): on fixed decisions,
//! every group's accuracy, selection rate, true and false positive rates, precision (its
//! `MetricFrame` with scikit-learn's `precision_score(zero_division=0)`), calibration error
//! (scikit-learn's binning) and the overall figures, and fairlearn's demographic-parity
//! difference and ratio, equalised-odds difference and equal-opportunity difference, each
//! within 1e-9. The `degenerate` case has a group without positives and one never selected.
//!
//! Per-group threshold optimisation against fairlearn's `ThresholdOptimizer`: fitted on 900
//! scored samples with ties, for demographic parity and for equalised odds, the operating
//! point and every one of 300 new samples' probability of a positive decision within 1e-9.

use serde_json::Value;
use strata::metrics::{FairnessConstraint, GroupRates, GroupThresholds, group_fairness};
use strata_tests::fixture_json;

fn close(what: &str, got: f64, want: &Value) {
    let want = want.as_f64().unwrap_or_else(|| panic!("{what}: {want}"));
    assert!(
        got.is_finite() && (got - want).abs() <= 1e-9,
        "{what}: {got} vs fairlearn's {want}"
    );
}

fn rates(what: &str, got: &GroupRates, want: &Value) {
    for (name, v) in [
        ("accuracy", got.accuracy),
        ("selection_rate", got.selection_rate),
        ("true_positive_rate", got.true_positive_rate),
        ("false_positive_rate", got.false_positive_rate),
        ("precision", got.precision),
        ("calibration_error", got.calibration_error.unwrap()),
    ] {
        close(&format!("{what} {name}"), v, &want[name]);
    }
}

#[test]
fn group_fairness_matches_fairlearn() {
    let all = fixture_json("fairness");
    for case in ["three_groups", "degenerate"] {
        let f = &all[case];
        let bools = |k: &str| -> Vec<bool> {
            f[k].as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64() == Some(1))
                .collect()
        };
        let group: Vec<usize> = serde_json::from_value(f["group"].clone()).unwrap();
        let names: Vec<String> = serde_json::from_value(f["names"].clone()).unwrap();
        let scores: Vec<f64> = serde_json::from_value(f["scores"].clone()).unwrap();
        let got = group_fairness(
            &bools("y_true"),
            &bools("y_pred"),
            &group,
            &names,
            Some(&scores),
        )
        .unwrap();
        let want = f["groups"].as_array().unwrap();
        assert_eq!(got.groups.len(), want.len(), "{case}");
        for (g, w) in got.groups.iter().zip(want) {
            assert_eq!(g.group, w["group"].as_str().unwrap());
            assert_eq!(g.count as u64, w["count"].as_u64().unwrap());
            rates(&format!("{case} {}", g.group), g, w);
        }
        rates(&format!("{case} overall"), &got.overall, &f["overall"]);
        for (name, v) in [
            (
                "demographic_parity_difference",
                got.demographic_parity_difference,
            ),
            ("demographic_parity_ratio", got.demographic_parity_ratio),
            ("equalized_odds_difference", got.equalized_odds_difference),
            (
                "equal_opportunity_difference",
                got.equal_opportunity_difference,
            ),
        ] {
            close(&format!("{case} {name}"), v, &f[name]);
        }
    }
}

#[test]
fn threshold_optimisation_matches_fairlearn() {
    let all = fixture_json("fairness");
    let t = &all["thresholds"];
    let vec = |v: &Value| -> Vec<f64> { serde_json::from_value(v.clone()).unwrap() };
    let groups = |v: &Value| -> Vec<usize> { serde_json::from_value(v.clone()).unwrap() };
    let y_true: Vec<bool> = t["fit"]["y_true"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64() == Some(1))
        .collect();
    let (scores, group) = (vec(&t["fit"]["scores"]), groups(&t["fit"]["group"]));
    let (new_scores, new_group) = (vec(&t["new"]["scores"]), groups(&t["new"]["group"]));
    for (key, constraint) in [
        ("demographic_parity", FairnessConstraint::DemographicParity),
        ("equalized_odds", FairnessConstraint::EqualizedOdds),
    ] {
        let fitted = GroupThresholds::fit(&y_true, &scores, &group, 3, constraint).unwrap();
        close(&format!("{key} x"), fitted.x, &t[key]["x"]);
        close(&format!("{key} y"), fitted.y, &t[key]["y"]);
        let got = fitted.probabilities(&new_scores, &new_group).unwrap();
        let want = t[key]["probabilities"].as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{key}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            close(&format!("{key} sample {i}"), *g, w);
        }
    }
}
