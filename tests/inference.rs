//! The serving protocols over real HTTP, by deployment name: the Open Inference Protocol v2
//! (`/v2/…`) and TF Serving's REST predict (`/v1/models/{name}:predict`). Every answer is
//! compared with Backprop's own `POST /v1/models/{id}/predict` on the same rows; errors are
//! `{"error": "…"}` with a 4xx; the existing `/v1/models/{id}` routes keep working.

mod common;

use common::Server;
use serde_json::{Value, json};

const KEYS: &str = "acme:admin:acme-admin-secret,acme:predictor:acme-predict-secret,beta:trainer:beta-train-secret";
const ADMIN: &str = "acme-admin-secret";
const PREDICTOR: &str = "acme-predict-secret";
const BETA: &str = "beta-train-secret";

fn classifier(k: f32) -> Value {
    json!({
        "input_dim": 2,
        "layers": [
            {"units": 3, "activation": "relu", "weights": [[k, -0.5, 0.25], [0.5, k, -1.0]], "bias": [0.1, 0.0, -0.1]},
            {"units": 2, "activation": "softmax", "weights": [[1.0, -1.0], [-0.5, 0.5], [0.3, 0.2]], "bias": [0.0, 0.1]}
        ],
        "classes": ["no", "yes"],
        "class_encoding": "categorical",
        "feature_names": ["x", "y"]
    })
}

fn regressor() -> Value {
    json!({
        "input_dim": 2,
        "layers": [{"units": 2, "activation": "linear", "weights": [[1.0, 2.0], [3.0, 4.0]], "bias": [0.5, -0.5]}],
        "standardization": {"mean": [1.0, 0.0], "std": [2.0, 4.0]}
    })
}

/// A tabular classifier: a numeric column `size` (missing → 2) and a categorical `color`.
fn tabular() -> Value {
    json!({
        "input_dim": 4,
        "encoder": {"columns": [
            {"type": "numeric", "name": "size", "fill": 2.0},
            {"type": "categorical", "name": "color", "categories": ["blue", "red"], "missing": true}
        ]},
        "layers": [{"units": 2, "activation": "softmax",
            "weights": [[1.0, -1.0], [0.5, 0.2], [-0.3, 0.4], [0.1, 0.1]], "bias": [0.0, 0.0]}],
        "classes": ["a", "b"],
        "class_encoding": "categorical"
    })
}

/// Imports `doc` and deploys it as `name`; returns the model id.
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

async fn predict(srv: &Server, id: &str, inputs: Value) -> Value {
    srv.ok(
        "POST",
        &format!("/v1/models/{id}/predict"),
        PREDICTOR,
        Some(&json!({"inputs": inputs})),
    )
    .await
}

/// The flat row-major data of `outputs` (rows of numbers).
fn flat(outputs: &Value) -> Value {
    json!(
        outputs
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap().clone())
            .collect::<Vec<_>>()
    )
}

fn output<'a>(answer: &'a Value, name: &str) -> &'a Value {
    answer["outputs"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["name"] == name))
        .unwrap_or_else(|| panic!("no output {name} in {answer}"))
}

#[tokio::test]
async fn v2_health_metadata_and_infer_answer_as_predict_does() {
    let srv = Server::start(&["--api-keys", KEYS]).await;
    // Health and server metadata are open, like /healthz.
    assert_eq!(
        srv.get("/v2/health/live").await,
        (200, json!({"live": true}))
    );
    assert_eq!(
        srv.get("/v2/health/ready").await,
        (200, json!({"ready": true}))
    );
    let (st, meta) = srv.get("/v2").await;
    assert_eq!(
        (st, meta["name"].as_str()),
        (200, Some("backprop")),
        "{meta}"
    );

    let c = deploy(&srv, "clf", &classifier(1.0)).await;
    let r = deploy(&srv, "reg", &regressor()).await;
    let m = srv.ok("GET", "/v2/models/clf", PREDICTOR, None).await;
    assert_eq!(
        m,
        json!({
            "name": "clf", "versions": ["1"], "platform": "backprop",
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 2]}],
            "outputs": [
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]},
                {"name": "label", "datatype": "BYTES", "shape": [-1]}
            ],
            "parameters": {"model_id": c, "version": "1"}
        })
    );
    let m = srv.ok("GET", "/v2/models/reg", PREDICTOR, None).await;
    assert_eq!(
        m["outputs"],
        json!([{"name": "values", "datatype": "FP32", "shape": [-1, 2]}])
    );
    assert_eq!(
        srv.ok("GET", "/v2/models/clf/ready", PREDICTOR, None).await["ready"],
        true
    );

    let rows = json!([[0.5, -1.0], [2.0, 3.0], [-1.5, 0.0]]);
    let want = predict(&srv, &c, rows.clone()).await;
    // Flat or nested data, in any numeric datatype, answers the same.
    for (datatype, data) in [
        ("FP32", flat(&rows)),
        ("FP64", rows.clone()),
        ("INT32", json!([[1, 2], [3, 4], [0, -2]])),
    ] {
        let body = json!({"id": "req-7", "inputs": [
            {"name": "input", "shape": [3, 2], "datatype": datatype, "data": data}]});
        let got = srv
            .ok("POST", "/v2/models/clf/infer", PREDICTOR, Some(&body))
            .await;
        assert_eq!(got["id"], "req-7");
        assert_eq!(
            (got["model_name"].as_str(), got["model_version"].as_str()),
            (Some("clf"), Some("1"))
        );
        let want = if datatype == "INT32" {
            predict(&srv, &c, json!([[1, 2], [3, 4], [0, -2]])).await
        } else {
            want.clone()
        };
        let p = output(&got, "probabilities");
        assert_eq!(
            (p["datatype"].as_str(), &p["shape"]),
            (Some("FP32"), &json!([3, 2]))
        );
        assert_eq!(p["data"], flat(&want["outputs"]), "{datatype}");
        let l = output(&got, "label");
        assert_eq!(
            (l["datatype"].as_str(), &l["shape"]),
            (Some("BYTES"), &json!([3]))
        );
        assert_eq!(l["data"], want["labels"]);
    }
    // Only the outputs asked for; a regressor's values.
    let body = json!({"inputs": [{"name": "input", "shape": [3, 2], "datatype": "FP32", "data": rows}],
        "outputs": [{"name": "label", "parameters": {"binary_data": false}}]});
    let got = srv
        .ok("POST", "/v2/models/clf/infer", PREDICTOR, Some(&body))
        .await;
    assert_eq!(got["outputs"].as_array().unwrap().len(), 1, "{got}");
    assert!(got.get("id").is_none());
    let body =
        json!({"inputs": [{"name": "input", "shape": [3, 2], "datatype": "FP32", "data": rows}]});
    let got = srv
        .ok("POST", "/v2/models/reg/infer", PREDICTOR, Some(&body))
        .await;
    let want = predict(&srv, &r, rows.clone()).await;
    assert_eq!(output(&got, "values")["data"], flat(&want["outputs"]));

    // A version path reads that version's model.
    let c2 = deploy(&srv, "clf", &classifier(-3.0)).await;
    let v1 = srv
        .ok(
            "POST",
            "/v2/models/clf/versions/1/infer",
            PREDICTOR,
            Some(&body),
        )
        .await;
    let v2 = srv
        .ok("POST", "/v2/models/clf/infer", PREDICTOR, Some(&body))
        .await;
    assert_eq!(v1["model_version"], "1");
    assert_eq!(v2["model_version"], "2");
    assert_eq!(
        output(&v1, "probabilities")["data"],
        flat(&predict(&srv, &c, rows.clone()).await["outputs"])
    );
    assert_eq!(
        output(&v2, "probabilities")["data"],
        flat(&predict(&srv, &c2, rows.clone()).await["outputs"])
    );
    let m = srv
        .ok("GET", "/v2/models/clf/versions/1", PREDICTOR, None)
        .await;
    assert_eq!(
        (m["versions"].clone(), m["parameters"]["model_id"].clone()),
        (json!(["2", "1"]), json!(c))
    );
    srv.ok("GET", "/v2/models/clf/versions/2/ready", PREDICTOR, None)
        .await;
}

/// (method, path, key, body, status, what the error says)
type Case = (
    &'static str,
    &'static str,
    &'static str,
    Option<Value>,
    u16,
    &'static str,
);

#[tokio::test]
async fn v2_errors_are_an_error_field_with_a_4xx() {
    let srv = Server::start(&["--api-keys", KEYS]).await;
    deploy(&srv, "clf", &classifier(1.0)).await;
    let t = |shape: Value, datatype: &str, data: Value| json!({"inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}]});
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/v2/models/nope/infer",
            PREDICTOR,
            Some(t(json!([1, 2]), "FP32", json!([1, 2]))),
            404,
            "no deployment",
        ),
        (
            "GET",
            "/v2/models/nope",
            PREDICTOR,
            None,
            404,
            "no deployment",
        ),
        (
            "GET",
            "/v2/models/nope/ready",
            PREDICTOR,
            None,
            404,
            "no deployment",
        ),
        (
            "GET",
            "/v2/models/clf/versions/7",
            PREDICTOR,
            None,
            404,
            "no version 7",
        ),
        (
            "GET",
            "/v2/models/clf/versions/x",
            PREDICTOR,
            None,
            404,
            "no version",
        ),
        ("GET", "/v2/models/clf", BETA, None, 404, "no deployment"),
        ("GET", "/v2/models/clf", "wrong", None, 401, "not valid"),
        (
            "POST",
            "/v2/models/clf/infer",
            PREDICTOR,
            Some(t(json!([1, 3]), "FP32", json!([1, 2, 3]))),
            422,
            "/inputs/0/shape",
        ),
        (
            "POST",
            "/v2/models/clf/infer",
            PREDICTOR,
            Some(t(json!([2, 2]), "FP32", json!([1, 2, 3]))),
            422,
            "/inputs/0/data",
        ),
        (
            "POST",
            "/v2/models/clf/infer",
            PREDICTOR,
            Some(t(json!([1, 2]), "FP16", json!([1, 2]))),
            422,
            "/inputs/0/datatype",
        ),
        (
            "POST",
            "/v2/models/clf/infer",
            PREDICTOR,
            Some(t(json!([1, 2]), "FP32", json!([1, "a"]))),
            422,
            "/inputs/0/data/1",
        ),
        (
            "POST",
            "/v2/models/clf/infer",
            PREDICTOR,
            Some(json!({"inputs": []})),
            422,
            "/inputs",
        ),
        (
            "POST",
            "/v2/models/clf/infer",
            PREDICTOR,
            Some(json!({"inputs": [], "bogus": 1})),
            422,
            "bogus",
        ),
        (
            "POST",
            "/v2/models/clf/infer",
            PREDICTOR,
            Some(
                json!({"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}],
                "outputs": [{"name": "logits"}]}),
            ),
            422,
            "/outputs/0/name",
        ),
        ("GET", "/v2/nothing-here", PREDICTOR, None, 404, "no route"),
    ];
    for (method, path, key, body, status, says) in cases {
        let (st, e) = srv.call(method, path, key, body.as_ref()).await;
        assert_eq!(st, status, "{method} {path} {body:?}: {e}");
        let msg = e["error"].as_str().unwrap_or_else(|| panic!("{path}: {e}"));
        assert!(msg.contains(says), "{path}: {msg:?} should say {says:?}");
        assert_eq!(e.as_object().unwrap().len(), 1, "only `error`: {e}");
    }
    // Malformed JSON and a binary body.
    let r = srv
        .client
        .post(srv.url("/v2/models/clf/infer"))
        .bearer_auth(PREDICTOR)
        .header("content-type", "application/json")
        .body("{\"inputs\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/json");
    let e: Value = r.json().await.unwrap();
    assert!(e["error"].is_string(), "{e}");
    let r = srv
        .client
        .post(srv.url("/v2/models/clf/infer"))
        .bearer_auth(PREDICTOR)
        .header("inference-header-content-length", "10")
        .body("{\"inputs\":[]}\u{0}\u{0}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("binary"), "{e}");
    // The rest of the API keeps its problem documents.
    let (st, e) = srv
        .call("GET", "/v1/deployments/nope", PREDICTOR, None)
        .await;
    assert_eq!((st, e["type"].as_str()), (404, Some("/problems/not-found")));
}

#[tokio::test]
async fn a_tabular_model_takes_one_tensor_per_column() {
    let srv = Server::start(&["--api-keys", KEYS]).await;
    let id = deploy(&srv, "tab", &tabular()).await;
    let m = srv.ok("GET", "/v2/models/tab", PREDICTOR, None).await;
    assert_eq!(
        m["inputs"],
        json!([
            {"name": "size", "datatype": "FP64", "shape": [-1, 1]},
            {"name": "color", "datatype": "BYTES", "shape": [-1, 1]}
        ])
    );
    let records = json!([
        {"size": 1.5, "color": "red"},
        {"size": 3, "color": "blue"},
        {"size": null, "color": "green"},
        {"size": 0.5, "color": null}
    ]);
    let want = predict(&srv, &id, records).await;
    let body = json!({"inputs": [
        {"name": "color", "shape": [4, 1], "datatype": "BYTES", "data": ["red", "blue", "green", null]},
        {"name": "size", "shape": [4], "datatype": "FP64", "data": [1.5, 3, null, 0.5]}
    ]});
    let got = srv
        .ok("POST", "/v2/models/tab/infer", PREDICTOR, Some(&body))
        .await;
    assert_eq!(
        output(&got, "probabilities")["data"],
        flat(&want["outputs"])
    );
    assert_eq!(output(&got, "label")["data"], want["labels"]);
    // A column left out is missing in every row.
    let want = predict(&srv, &id, json!([{"color": "red"}, {"color": "blue"}])).await;
    let body = json!({"inputs": [
        {"name": "color", "shape": [2, 1], "datatype": "BYTES", "data": [["red"], ["blue"]]}]});
    let got = srv
        .ok("POST", "/v2/models/tab/infer", PREDICTOR, Some(&body))
        .await;
    assert_eq!(
        output(&got, "probabilities")["data"],
        flat(&want["outputs"])
    );
    // Errors name the input.
    for (body, says) in [
        (
            json!({"inputs": [{"name": "colour", "shape": [1], "datatype": "BYTES", "data": ["red"]}]}),
            "unknown input \"colour\"",
        ),
        (
            json!({"inputs": [{"name": "size", "shape": [1], "datatype": "BYTES", "data": ["big"]}]}),
            "/inputs/0/data/0",
        ),
        (
            json!({"inputs": [
            {"name": "size", "shape": [1], "datatype": "FP64", "data": [1]},
            {"name": "color", "shape": [2], "datatype": "BYTES", "data": ["red", "blue"]}]}),
            "/inputs/1/shape",
        ),
    ] {
        let (st, e) = srv
            .call("POST", "/v2/models/tab/infer", PREDICTOR, Some(&body))
            .await;
        assert_eq!(st, 422, "{e}");
        assert!(
            e["error"].as_str().unwrap().contains(says),
            "{e} should say {says}"
        );
    }
}

#[tokio::test]
async fn tf_serving_predict_takes_rows_or_columns_by_name() {
    let srv = Server::start(&["--api-keys", KEYS]).await;
    let c = deploy(&srv, "clf", &classifier(1.0)).await;
    let r = deploy(&srv, "reg", &regressor()).await;
    let t = deploy(&srv, "tab", &tabular()).await;
    let rows = json!([[0.5, -1.0], [2.0, 3.0]]);
    let want = predict(&srv, &c, rows.clone()).await;

    // Row format: instances → predictions (a classifier's per-row object).
    let got = srv
        .ok(
            "POST",
            "/v1/models/clf:predict",
            PREDICTOR,
            Some(&json!({"signature_name": "serving_default", "instances": rows})),
        )
        .await;
    let expect: Vec<Value> = (0..2)
        .map(|i| json!({"probabilities": want["outputs"][i], "label": want["labels"][i]}))
        .collect();
    assert_eq!(got, json!({"predictions": expect}));
    // Instances as records keyed by feature name.
    let got = srv
        .ok(
            "POST",
            "/v1/models/clf:predict",
            PREDICTOR,
            Some(&json!({"instances": [{"x": 0.5, "y": -1.0}, {"x": 2.0, "y": 3.0}]})),
        )
        .await;
    assert_eq!(got, json!({"predictions": expect}));
    // Columnar: inputs → outputs, as a list of rows or an object of columns.
    let got = srv
        .ok(
            "POST",
            "/v1/models/clf:predict",
            PREDICTOR,
            Some(&json!({"inputs": rows})),
        )
        .await;
    assert_eq!(
        got,
        json!({"outputs": {"probabilities": want["outputs"], "label": want["labels"]}})
    );
    let got = srv
        .ok(
            "POST",
            "/v1/models/clf:predict",
            PREDICTOR,
            Some(&json!({"inputs": {"x": [0.5, 2.0], "y": [-1.0, 3.0]}})),
        )
        .await;
    assert_eq!(
        got,
        json!({"outputs": {"probabilities": want["outputs"], "label": want["labels"]}})
    );
    // A regressor's values; a tabular model's columns; a version.
    let got = srv
        .ok(
            "POST",
            "/v1/models/reg:predict",
            PREDICTOR,
            Some(&json!({"instances": rows})),
        )
        .await;
    assert_eq!(
        got,
        json!({"predictions": predict(&srv, &r, rows.clone()).await["outputs"]})
    );
    let got = srv
        .ok(
            "POST",
            "/v1/models/tab:predict",
            PREDICTOR,
            Some(&json!({"inputs": {"size": [1.5, null], "color": ["red", "blue"]}})),
        )
        .await;
    let want_t = predict(
        &srv,
        &t,
        json!([{"size": 1.5, "color": "red"}, {"size": null, "color": "blue"}]),
    )
    .await;
    assert_eq!(got["outputs"]["probabilities"], want_t["outputs"]);
    let got = srv
        .ok(
            "POST",
            "/v1/models/clf/versions/1:predict",
            PREDICTOR,
            Some(&json!({"instances": rows})),
        )
        .await;
    assert_eq!(got, json!({"predictions": expect}));

    // Errors: {"error"} with a 4xx.
    for (path, key, body, status) in [
        (
            "/v1/models/nope:predict",
            PREDICTOR,
            json!({"instances": rows}),
            404,
        ),
        (
            "/v1/models/clf:predict",
            BETA,
            json!({"instances": rows}),
            404,
        ),
        (
            "/v1/models/clf:classify",
            PREDICTOR,
            json!({"instances": rows}),
            400,
        ),
        (
            "/v1/models/clf/versions/9:predict",
            PREDICTOR,
            json!({"instances": rows}),
            404,
        ),
        (
            "/v1/models/clf:predict",
            PREDICTOR,
            json!({"instances": [[1, 2, 3]]}),
            422,
        ),
        (
            "/v1/models/clf:predict",
            PREDICTOR,
            json!({"instances": rows, "inputs": rows}),
            422,
        ),
        (
            "/v1/models/clf:predict",
            PREDICTOR,
            json!({"rows": rows}),
            422,
        ),
        (
            "/v1/models/clf:predict",
            "wrong",
            json!({"instances": rows}),
            401,
        ),
    ] {
        let (st, e) = srv.call("POST", path, key, Some(&body)).await;
        assert_eq!(st, status, "{path} {body}: {e}");
        assert!(
            e["error"].is_string() && e.as_object().unwrap().len() == 1,
            "{path}: {e}"
        );
    }

    // Backprop's own /v1/models/{id} routes are unchanged.
    let (st, m) = srv
        .call("GET", &format!("/v1/models/{c}"), PREDICTOR, None)
        .await;
    assert_eq!((st, m["id"].as_str()), (200, Some(c.as_str())));
    let (st, e) = srv
        .call(
            "POST",
            &format!("/v1/models/{c}"),
            PREDICTOR,
            Some(&json!({"instances": rows})),
        )
        .await;
    assert_eq!(st, 404, "a model id without :predict is no route: {e}");
    assert_eq!(predict(&srv, &c, rows.clone()).await, want);
}
