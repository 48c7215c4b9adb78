//! Backprop against clients and runtimes it did not write: the Python scripts in
//! tests/interop/ (their packages pinned in tests/interop/requirements.txt) run with
//! `$BACKPROP_TEST_PYTHON` against a real server. Without that variable the tests are
//! skipped, except under `CI=true`, where they fail: CI must not skip them silently
//! (`.ci/run` creates the virtual environment and sets the variable).

mod common;

use std::path::Path;
use std::process::Command;

use common::Server;
use serde_json::{Value, json};

const KEYS: &str = "acme:admin:acme-admin-secret,acme:predictor:acme-predict-secret";
const ADMIN: &str = "acme-admin-secret";
const PREDICTOR: &str = "acme-predict-secret";

/// The interpreter to run the scripts with, or `None` (skip) outside CI.
fn python() -> Option<String> {
    match std::env::var("BACKPROP_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but BACKPROP_TEST_PYTHON is unset: .ci/run creates the interop venv")
        }
        _ => {
            eprintln!(
                "skipped: set BACKPROP_TEST_PYTHON to a python with tests/interop/requirements.txt"
            );
            None
        }
    }
}

/// Runs `tests/interop/<script>` with `args`, failing the test with its output on failure.
fn run_script(python: &str, script: &str, args: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(script);
    let out = Command::new(python)
        .arg(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script} failed:\n{text}");
    text
}

async fn deploy(srv: &Server, name: &str, doc: &Value) -> String {
    let id = srv.ok("POST", "/v1/models", ADMIN, Some(doc)).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    srv.ok(
        "PUT",
        &format!("/v1/deployments/{name}"),
        ADMIN,
        Some(&json!({"model_id": id})),
    )
    .await;
    id
}

#[tokio::test]
async fn tritonclient_reads_metadata_and_infers_as_predict_does() {
    let Some(python) = python() else { return };
    let srv = Server::start(&["--api-keys", KEYS]).await;
    let classifier = json!({
        "input_dim": 3,
        "layers": [
            {"units": 4, "activation": "gelu", "weights": [[0.5, -1.0, 0.25, 2.0], [1.5, 0.5, -0.75, 0.1], [-0.2, 0.3, 0.9, -1.1]], "bias": [0.1, 0.0, -0.1, 0.2]},
            {"units": 3, "activation": "softmax", "weights": [[1.0, -1.0, 0.5], [-0.5, 0.5, 0.2], [0.3, 0.2, -0.4], [0.7, -0.6, 0.1]]}
        ],
        "classes": ["setosa", "versicolor", "virginica"],
        "class_encoding": "categorical",
        "standardization": {"mean": [5.8, 3.0, 3.7], "std": [0.8, 0.4, 1.7]}
    });
    let regressor = json!({
        "input_dim": 2,
        "layers": [{"units": 1, "activation": "linear", "weights": [[1.25], [-3.5]], "bias": [0.5]}]
    });
    let tabular = json!({
        "input_dim": 4,
        "encoder": {"columns": [
            {"type": "numeric", "name": "size", "fill": 2.0},
            {"type": "categorical", "name": "color", "categories": ["blue", "red"], "missing": true}
        ]},
        "layers": [{"units": 1, "activation": "sigmoid", "weights": [[1.0], [0.5], [-0.3], [0.1]]}],
        "classes": ["small", "large"],
        "class_encoding": "binary"
    });
    let cases = json!([
        {"name": "iris", "kind": "plain", "model_id": deploy(&srv, "iris", &classifier).await,
         "rows": [[5.1, 3.5, 1.4], [6.7, 3.0, 5.2], [5.9, 2.8, 4.3]]},
        {"name": "price", "kind": "plain", "model_id": deploy(&srv, "price", &regressor).await,
         "rows": [[1.0, 2.0], [-0.5, 0.25]]},
        {"name": "shapes", "kind": "tabular", "model_id": deploy(&srv, "shapes", &tabular).await,
         "rows": [{"size": 1.5, "color": "red"}, {"size": 4.0, "color": "blue"}, {"size": 0.5, "color": "green"}]},
    ]);
    let out = run_script(
        &python,
        "triton_client.py",
        &[&srv.base, PREDICTOR, &cases.to_string()],
    );
    println!("{out}");
    for name in ["iris", "price", "shapes"] {
        assert!(out.contains(&format!("ok {name}")), "{out}");
    }
}

/// A model of two dense layers whose hidden layer uses `activation` (with `alpha` where it
/// takes one), over standardised inputs; `head` is the output layer's kind.
fn network(activation: &str, head: &str) -> Value {
    let (units, out_activation, extra) = match head {
        "softmax" => (
            3,
            "softmax",
            json!({"classes": ["a", "b", "c"], "class_encoding": "categorical"}),
        ),
        "sigmoid" => (
            1,
            "sigmoid",
            json!({"classes": ["no", "yes"], "class_encoding": "binary"}),
        ),
        _ => (2, "linear", json!({})),
    };
    let mut hidden = json!({"units": 4, "activation": activation,
        "weights": [[0.5, -1.0, 0.25, 2.0], [1.5, 0.5, -0.75, 0.1], [-0.2, 0.3, 0.9, -1.1]],
        "bias": [0.1, 0.0, -0.1, 0.2]});
    if activation == "leaky_relu" {
        hidden["alpha"] = json!(0.05);
    }
    if activation == "elu" {
        hidden["alpha"] = json!(0.7);
    }
    let out_w: Vec<Vec<f32>> = (0..4)
        .map(|i| {
            (0..units)
                .map(|j| ((i * 3 + j) % 5) as f32 * 0.4 - 0.8)
                .collect()
        })
        .collect();
    let mut doc = json!({
        "input_dim": 3,
        "layers": [hidden, {"dropout": 0.3},
            {"units": units, "activation": out_activation, "weights": out_w, "bias": vec![0.05; units]}],
        "standardization": {"mean": [5.8, 3.0, 3.7], "std": [0.8, 0.4, 1.7]}
    });
    for (k, v) in extra.as_object().unwrap() {
        doc[k] = v.clone();
    }
    doc
}

#[tokio::test]
async fn onnxruntime_runs_every_activation_and_a_tabular_model_as_predict_does() {
    let Some(python) = python() else { return };
    let srv = Server::start(&["--api-keys", KEYS]).await;
    let rows = json!([
        [5.1, 3.5, 1.4],
        [6.7, 3.0, 5.2],
        [4.9, 2.4, 3.3],
        [7.9, 3.8, 6.4]
    ]);
    let mut cases = vec![];
    for activation in [
        "linear",
        "sigmoid",
        "tanh",
        "relu",
        "leaky_relu",
        "elu",
        "softplus",
        "gelu",
        "softmax",
    ] {
        for head in ["softmax", "sigmoid", "values"] {
            let doc = network(activation, head);
            let id = srv.ok("POST", "/v1/models", ADMIN, Some(&doc)).await["id"].clone();
            cases.push(
                json!({"model_id": id, "rows": rows, "label": format!("{activation}/{head}")}),
            );
        }
    }
    // A tabular model: imputation, a missing indicator, one-hot with missing and "other", a
    // yes/no column and an ignored one, then standardisation.
    let tabular = json!({
        "input_dim": 7,
        "encoder": {"columns": [
            {"type": "numeric", "name": "size", "fill": 2.5, "missing_indicator": true},
            {"type": "categorical", "name": "color", "categories": ["blue", "red"], "missing": true, "other": true},
            {"type": "boolean", "name": "shiny", "fill": 0.25},
            {"type": "ignore", "name": "id"}
        ]},
        "standardization": {"mean": [2.0, 0.1, 0.4, 0.4, 0.1, 0.1, 0.5], "std": [1.5, 0.3, 0.5, 0.5, 0.3, 0.3, 0.5]},
        "layers": [
            {"units": 3, "activation": "gelu", "weights": [[0.5, -1.0, 0.25], [1.5, 0.5, -0.75], [-0.2, 0.3, 0.9],
                [0.7, -0.6, 0.1], [0.2, 0.2, -0.4], [-1.0, 0.5, 0.3], [0.6, -0.3, 0.8]], "bias": [0.1, 0.0, -0.1]},
            {"units": 2, "activation": "softmax", "weights": [[1.0, -1.0], [-0.5, 0.5], [0.3, 0.2]]}
        ],
        "classes": ["keep", "drop"],
        "class_encoding": "categorical"
    });
    let id = srv.ok("POST", "/v1/models", ADMIN, Some(&tabular)).await["id"].clone();
    let records = json!([
        {"size": 1.5, "color": "red", "shiny": 1, "id": "a"},
        {"size": null, "color": "blue", "shiny": 0},
        {"size": 4.0, "color": "green", "shiny": null},
        {"size": 0.5, "color": null, "shiny": 2}
    ]);
    cases.push(json!({"model_id": id, "rows": records, "label": "tabular"}));
    // Money and a timestamp: the date's civil calendar, cycles and missing indicator.
    let w: Vec<Vec<f64>> = (0..12)
        .map(|i| {
            vec![
                ((i * 7) % 5) as f64 * 0.3 - 0.6,
                ((i * 3) % 4) as f64 * 0.25 - 0.4,
            ]
        })
        .collect();
    let dated = json!({
        "input_dim": 12,
        "encoder": {"columns": [
            {"type": "numeric", "name": "price", "fill": 10.0,
             "format": {"decimal": ".", "thousands": ",", "currency": ["$"]}},
            {"type": "date", "name": "when", "fill": 19000.25, "missing_indicator": true,
             "format": {"order": "ymd", "time": true, "zone": true, "weekday": true}}
        ]},
        "standardization": {"mean": [50.0, 19500.0, 2023.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1],
                            "std": [30.0, 400.0, 1.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.3]},
        "layers": [{"units": 2, "activation": "softmax", "weights": w}],
        "classes": ["early", "late"],
        "class_encoding": "categorical"
    });
    let id = srv.ok("POST", "/v1/models", ADMIN, Some(&dated)).await["id"].clone();
    let records = json!([
        {"price": 12.5, "when": 19787.25},
        {"price": null, "when": null},
        {"price": 99.0, "when": -365.75},
        {"price": 1200.5, "when": 20454.999}
    ]);
    cases.push(json!({"model_id": id, "rows": records, "label": "dated"}));
    // A piecewise-linear numeric column (issue 25): 4 bins and a missing indicator.
    let binned = json!({
        "input_dim": 6,
        "encoder": {"columns": [
            {"type": "numeric", "name": "size", "fill": 2.0, "missing_indicator": true,
             "bins": [0.0, 1.0, 2.5, 3.0, 6.0]},
            {"type": "numeric", "name": "k", "fill": 0.0}
        ]},
        "layers": [{"units": 2, "activation": "softmax", "weights": [[1.0, -1.0], [0.5, 0.25],
            [-0.75, 1.5], [2.0, -0.5], [0.3, 0.3], [0.1, -0.2]]}],
        "classes": ["low", "high"],
        "class_encoding": "categorical"
    });
    let id = srv.ok("POST", "/v1/models", ADMIN, Some(&binned)).await["id"].clone();
    let records = json!([
        {"size": -1.0, "k": 1.0},
        {"size": 0.5, "k": 0.0},
        {"size": null, "k": 2.0},
        {"size": 2.75, "k": -1.0},
        {"size": 9.0, "k": 0.5}
    ]);
    cases.push(json!({"model_id": id, "rows": records, "label": "binned"}));
    // Robust scaling (issue 25): the first input smooth-clipped, the indicator not; rows far
    // outside the training range reach the clipping's flat part.
    let robust = json!({
        "input_dim": 3,
        "encoder": {"columns": [
            {"type": "numeric", "name": "size", "fill": 2.0, "missing_indicator": true},
            {"type": "numeric", "name": "k", "fill": 0.0}
        ]},
        "standardization": {"mean": [2.0, 0.0, 1.0], "std": [0.5, 1.0, 4.0], "clip": [true, false, true]},
        "layers": [{"units": 2, "activation": "softmax", "weights": [[1.0, -1.0], [0.5, 0.25], [-0.75, 1.5]]}],
        "classes": ["low", "high"],
        "class_encoding": "categorical"
    });
    let id = srv.ok("POST", "/v1/models", ADMIN, Some(&robust)).await["id"].clone();
    let records = json!([
        {"size": -100.0, "k": 1.0},
        {"size": 2.1, "k": 0.0},
        {"size": null, "k": 2000.0},
        {"size": 1e6, "k": -3.0}
    ]);
    cases.push(json!({"model_id": id, "rows": records, "label": "robust"}));
    // A TabM ensemble (issue 25): 3 members' adapters, a shared hidden layer, 3 softmax heads
    // side by side; and one of 2 members with linear heads of 2 values after a dropout.
    let heads: Vec<Vec<f64>> = (0..4)
        .map(|i| {
            (0..6)
                .map(|j| ((i * 7 + j * 3) % 11) as f64 * 0.2 - 1.0)
                .collect()
        })
        .collect();
    let tabm = json!({
        "input_dim": 3,
        "layers": [
            {"ensemble": [[1.0, -1.0, 1.0], [-1.0, 1.0, 1.0], [0.5, 2.0, -1.5]]},
            {"units": 4, "activation": "relu", "weights": [[0.5, -1.0, 0.25, 0.3], [1.5, 0.5, -0.75, -0.2],
                [-0.2, 0.3, 0.9, 0.6]], "bias": [0.1, 0.0, -0.1, 0.2]},
            {"units": 6, "activation": "softmax", "weights": heads, "bias": [0.0, 0.1, 0.2, -0.1, 0.0, 0.3]}
        ],
        "classes": ["a", "b"],
        "class_encoding": "categorical"
    });
    let id = srv.ok("POST", "/v1/models", ADMIN, Some(&tabm)).await["id"].clone();
    cases.push(json!({"model_id": id, "rows": rows, "label": "tabm"}));
    let tabm_values = json!({
        "input_dim": 3,
        "layers": [
            {"ensemble": [[1.0, -1.0, 1.0], [-1.0, 1.0, 0.5]]},
            {"dropout": 0.2},
            {"units": 4, "activation": "tanh", "weights": [[0.5, -1.0, 0.25, 0.3], [1.5, 0.5, -0.75, -0.2],
                [-0.2, 0.3, 0.9, 0.6]]},
            {"units": 4, "activation": "linear", "weights": [[1.0, -1.0, 0.5, 0.25], [0.5, 0.25, -0.75, 1.5],
                [2.0, -0.5, 0.3, 0.3], [0.1, -0.2, 0.7, -0.4]], "bias": [1.0, 2.0, 3.0, 4.0]}
        ],
        "standardization": {"mean": [5.8, 3.0, 3.7], "std": [0.8, 0.4, 1.7]}
    });
    let id = srv
        .ok("POST", "/v1/models", ADMIN, Some(&tabm_values))
        .await["id"]
        .clone();
    cases.push(json!({"model_id": id, "rows": rows, "label": "tabm_values"}));
    // A periodic embedding of inputs 0 and 2 (two frequencies each: 3 + 8 inputs after it),
    // then 2 members' adapters, a shared layer and 2 linear heads.
    let wide: Vec<Vec<f64>> = (0..11)
        .map(|i| {
            (0..4)
                .map(|j| ((i * 5 + j * 3) % 7) as f64 * 0.3 - 0.9)
                .collect()
        })
        .collect();
    let periodic = json!({
        "input_dim": 3,
        "layers": [
            {"periodic": {"columns": [0, 2], "frequencies": [[0.7, -2.3], [1.9, 5.1]]}},
            {"ensemble": [[1.0, -1.0, 1.0, 0.5, 1.0, -1.0, 1.0, 1.0, -0.5, 1.0, 1.0],
                          [-1.0, 1.0, 0.5, 1.0, -1.0, 1.0, 1.0, -1.0, 1.0, 2.0, -1.0]]},
            {"units": 4, "activation": "gelu", "weights": wide, "bias": [0.1, 0.0, -0.1, 0.2]},
            {"units": 2, "activation": "linear", "weights": [[1.0, -1.0], [0.5, 0.25],
                [2.0, -0.5], [0.1, -0.2]], "bias": [1.0, 2.0]}
        ],
        "standardization": {"mean": [5.8, 3.0, 3.7], "std": [0.8, 0.4, 1.7]}
    });
    let id = srv.ok("POST", "/v1/models", ADMIN, Some(&periodic)).await["id"].clone();
    cases.push(json!({"model_id": id, "rows": rows, "label": "periodic"}));
    // Parametric activations (z + w·(g(z) − z) per unit): a gelu and a leaky_relu on one
    // network, and an elu shared by 2 members of an ensemble.
    let parametric = json!({
        "input_dim": 3,
        "layers": [
            {"units": 4, "weights": [[1.0, -1.0, 0.5, 0.25], [0.5, 0.25, -0.75, 1.5],
                [2.0, -0.5, 0.3, 0.3]], "bias": [0.1, 0.0, -0.1, 0.2]},
            {"activation": "gelu", "parametric": [1.0, 0.5, -0.3, 0.0]},
            {"units": 2, "weights": [[1.0, -1.0], [0.5, 0.25], [2.0, -0.5], [0.1, -0.2]],
                "bias": [0.3, -0.3]},
            {"activation": "leaky_relu", "alpha": 0.1, "parametric": [0.7, 1.4]},
            {"units": 3, "activation": "linear", "weights": [[1.0, -1.0, 0.2], [0.5, 0.25, -0.4]],
                "bias": [0.0, 0.1, -0.1]}
        ],
        "standardization": {"mean": [5.8, 3.0, 3.7], "std": [0.8, 0.4, 1.7]}
    });
    let id = srv.ok("POST", "/v1/models", ADMIN, Some(&parametric)).await["id"].clone();
    cases.push(json!({"model_id": id, "rows": rows, "label": "parametric"}));
    let parametric_tabm = json!({
        "input_dim": 3,
        "layers": [
            {"ensemble": [[1.0, -1.0, 0.5], [-0.5, 1.0, 2.0]]},
            {"units": 4, "weights": [[1.0, -1.0, 0.5, 0.25], [0.5, 0.25, -0.75, 1.5],
                [2.0, -0.5, 0.3, 0.3]], "bias": [0.1, 0.0, -0.1, 0.2]},
            {"activation": "elu", "alpha": 0.5, "parametric": [0.2, 1.0, 1.5, -0.5]},
            {"units": 2, "activation": "linear", "weights": [[1.0, -1.0], [0.5, 0.25],
                [2.0, -0.5], [0.1, -0.2]], "bias": [1.0, 2.0]}
        ],
        "standardization": {"mean": [5.8, 3.0, 3.7], "std": [0.8, 0.4, 1.7]}
    });
    let id = srv
        .ok("POST", "/v1/models", ADMIN, Some(&parametric_tabm))
        .await["id"]
        .clone();
    cases.push(json!({"model_id": id, "rows": rows, "label": "parametric_tabm"}));
    let out = run_script(
        &python,
        "onnx_check.py",
        &[&srv.base, PREDICTOR, &json!(cases).to_string()],
    );
    println!("{out}");
    assert_eq!(
        out.matches("\nok ").count() + usize::from(out.starts_with("ok ")),
        36,
        "{out}"
    );
    assert!(out.contains("ok robust"), "{out}");
    assert!(out.contains("ok parametric"), "{out}");
    assert!(out.contains("ok parametric_tabm"), "{out}");
    assert!(out.contains("ok periodic"), "{out}");
    assert!(out.contains("ok tabm"), "{out}");
    assert!(out.contains("ok tabm_values"), "{out}");
    assert!(out.contains("ok tabular"), "{out}");
    assert!(out.contains("ok dated"), "{out}");
    assert!(out.contains("ok binned"), "{out}");
}
