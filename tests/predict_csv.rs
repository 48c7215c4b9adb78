//! CSV in and out of the predict routes: a CSV body (a header row of column names) answers
//! JSON, or CSV when `Accept: text/csv` asks (the rows as sent with the output columns
//! appended); other body types are 415; the row limit holds.

mod common;

use common::Server;
use serde_json::{Value, json};

/// A tabular classifier: `size` (numeric, missing → 2) and `color` (categorical).
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

async fn send(
    srv: &Server,
    path: &str,
    ctype: &str,
    accept: Option<&str>,
    body: &str,
) -> (u16, String, String) {
    let mut r = srv
        .client
        .post(srv.url(path))
        .header("content-type", ctype)
        .body(body.to_string());
    if let Some(a) = accept {
        r = r.header("accept", a);
    }
    let r = r.send().await.unwrap();
    let st = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (st, ct, r.text().await.unwrap())
}

#[tokio::test]
async fn a_csv_body_answers_json_or_csv_with_the_outputs_appended() {
    let srv = Server::start(&[]).await;
    let (_, m) = srv.post("/v1/models", &tabular()).await;
    let id = m["id"].as_str().unwrap();
    let (st, _) = srv
        .call(
            "PUT",
            "/v1/deployments/shapes",
            "",
            Some(&json!({"model_id": id})),
        )
        .await;
    assert_eq!(st, 201);
    let (_, want) = srv
        .post(
            &format!("/v1/models/{id}/predict"),
            &json!({"inputs": [
                {"size": 1.5, "color": "red"}, {"size": null, "color": "blue"}, {"size": 3, "color": null}]}),
        )
        .await;
    // Columns in any order; an empty cell is missing.
    let csv = "color,size\nred,1.5\nblue,\n,3\n";
    for path in [
        format!("/v1/models/{id}/predict"),
        "/v1/deployments/shapes/predict".to_string(),
    ] {
        let (st, ct, body) = send(&srv, &path, "text/csv", None, csv).await;
        assert_eq!((st, ct.as_str()), (200, "application/json"), "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (&v["outputs"], &v["labels"]),
            (&want["outputs"], &want["labels"])
        );
        // The NA markers an upload reads as missing are missing here too (the penguins file
        // as published has `NA` cells; the README predicts it).
        let na = "color,size\nred,1.5\nblue,NA\nnull,3\n";
        let (st, _, body) = send(&srv, &path, "text/csv", None, na).await;
        assert_eq!(st, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (&v["outputs"], &v["labels"]),
            (&want["outputs"], &want["labels"])
        );

        let (st, ct, body) = send(
            &srv,
            &path,
            "text/csv; charset=utf-8",
            Some("text/csv"),
            csv,
        )
        .await;
        assert_eq!(
            (st, ct.as_str()),
            (200, "text/csv; charset=utf-8"),
            "{body}"
        );
        let mut lines = body.lines();
        assert_eq!(
            lines.next(),
            Some("color,size,probability_a,probability_b,label")
        );
        for (i, (line, input)) in lines.zip(["red,1.5", "blue,", ",3"]).enumerate() {
            let o = &want["outputs"][i];
            let expect = format!(
                "{input},{},{},{}",
                o[0].as_f64().unwrap() as f32,
                o[1].as_f64().unwrap() as f32,
                want["labels"][i].as_str().unwrap()
            );
            assert_eq!(line, expect);
        }
    }
    // A JSON body with Accept: text/csv answers the output columns alone.
    let (st, ct, body) = send(
        &srv,
        &format!("/v1/models/{id}/predict"),
        "application/json",
        Some("text/csv"),
        &json!({"inputs": [{"size": 1.5, "color": "red"}]}).to_string(),
    )
    .await;
    assert_eq!(
        (st, ct.as_str()),
        (200, "text/csv; charset=utf-8"),
        "{body}"
    );
    assert!(
        body.starts_with("probability_a,probability_b,label\n"),
        "{body}"
    );
}

#[tokio::test]
async fn bad_csv_bodies_and_other_types_are_refused() {
    let srv = Server::start(&["--max-predict-rows", "2"]).await;
    let (_, m) = srv.post("/v1/models", &tabular()).await;
    let id = m["id"].as_str().unwrap();
    let path = format!("/v1/models/{id}/predict");
    for (csv, status, says) in [
        ("colour,size\nred,1\n", 400, "unknown column \\\"colour\\\""),
        ("size,size\n1,1\n", 400, "appears twice"),
        ("size,color\n1\n", 400, "line"),
        ("size,color\nbig,red\n", 400, "column \\\"size\\\""),
        ("size,color\n", 400, "no rows"),
        ("size\n1\n2\n3\n", 413, "--max-predict-rows"),
    ] {
        let (st, ct, body) = send(&srv, &path, "text/csv", None, csv).await;
        assert_eq!(st, status, "{csv:?}: {body}");
        assert_eq!(ct, "application/problem+json");
        assert!(body.contains(says), "{csv:?}: {body} should say {says}");
    }
    let (st, _, body) = send(&srv, &path, "application/xml", None, "<a/>").await;
    assert_eq!(st, 415, "{body}");
    // A plain model without names reads the columns in order.
    let (_, p) = srv
        .post(
            "/v1/models",
            &json!({"input_dim": 2, "layers": [{"units": 1, "activation": "linear", "weights": [[1.0], [10.0]]}]}),
        )
        .await;
    let plain = p["id"].as_str().unwrap();
    let (st, _, body) = send(
        &srv,
        &format!("/v1/models/{plain}/predict"),
        "text/csv",
        Some("text/csv"),
        "a,b\n1,2\n",
    )
    .await;
    assert_eq!((st, body.as_str()), (200, "a,b,output_0\n1,2,21\n"));
    let (st, _, body) = send(
        &srv,
        &format!("/v1/models/{plain}/predict"),
        "text/csv",
        None,
        "a\n1\n",
    )
    .await;
    assert_eq!(st, 400, "{body}");
}
