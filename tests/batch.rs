//! Batch predictions of a stored dataset over real HTTP: started in the background, polled
//! for progress, the CSV result downloaded (streamed from the store a chunk at a time) and
//! compared with `/v1/models/{id}/predict` row by row; tenants and bad requests.

mod common;

use std::time::{Duration, Instant};

use common::{Server, split};
use serde_json::{Value, json};

const KEYS: &str =
    "acme:predictor:acme-predict-secret,acme:admin:acme-admin-secret,beta:admin:beta-secret";
const ADMIN: &str = "acme-admin-secret";
const PREDICTOR: &str = "acme-predict-secret";
const BETA: &str = "beta-secret";

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

/// `n` rows of `color,size,label` (2 500 rows make three chunks of the result).
fn rows(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let color = ["red", "blue", "green", ""][i % 4].to_string();
            let size = if i % 7 == 3 {
                String::new()
            } else {
                format!("{}", (i % 50) as f32 * 0.25 - 3.0)
            };
            (color, size)
        })
        .collect()
}

#[tokio::test]
async fn a_dataset_is_predicted_in_the_background_and_downloads_as_csv() {
    let srv = Server::start(&["--api-keys", KEYS]).await;
    let model = srv.ok("POST", "/v1/models", ADMIN, Some(&tabular())).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let data = rows(2500);
    let mut csv = String::from("color,size,label\n");
    for (i, (c, s)) in data.iter().enumerate() {
        csv.push_str(&format!("{c},{s},{}\n", ["x", "y"][i % 2]));
    }
    let r = srv
        .client
        .post(srv.url("/v1/datasets?name=batch&target=label"))
        .bearer_auth(ADMIN)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    let (st, ds) = split(r).await;
    assert_eq!(st, 201, "{ds}");
    let dataset = ds["id"].as_str().unwrap();

    // A predictor key starts it: 202, running, with where to poll.
    let r = srv
        .client
        .post(srv.url(&format!("/v1/models/{model}/predictions")))
        .bearer_auth(PREDICTOR)
        .json(&json!({"dataset_id": dataset}))
        .send()
        .await
        .unwrap();
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let (st, b) = split(r).await;
    assert_eq!(st, 202, "{b}");
    assert_eq!(
        (b["rows_total"].as_i64(), b["dataset_id"].as_str()),
        (Some(2500), Some(dataset))
    );
    assert_eq!(
        location,
        format!(
            "/v1/models/{model}/predictions/{}",
            b["id"].as_str().unwrap()
        )
    );
    let t0 = Instant::now();
    let done = loop {
        let b = srv.ok("GET", &location, PREDICTOR, None).await;
        if b["status"] != "running" {
            break b;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{b}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        (done["rows_done"].as_i64(), done["progress"].as_f64()),
        (Some(2500), Some(1.0))
    );
    let result = done["result"].as_str().unwrap().to_string();
    assert_eq!(result, format!("{location}/result"));

    let r = srv
        .client
        .get(srv.url(&result))
        .bearer_auth(PREDICTOR)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let text = r.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2501);
    assert_eq!(lines[0], "color,size,probability_a,probability_b,label");
    // Row by row as predict answers the same records (every 97th row, and the last).
    let picked: Vec<usize> = (0..2500).step_by(97).chain([2499]).collect();
    let records: Vec<Value> = picked
        .iter()
        .map(|&i| {
            let (c, s) = &data[i];
            json!({"color": if c.is_empty() { Value::Null } else { json!(c) },
                   "size": if s.is_empty() { Value::Null } else { json!(s.parse::<f64>().unwrap()) }})
        })
        .collect();
    let want = srv
        .ok(
            "POST",
            &format!("/v1/models/{model}/predict"),
            PREDICTOR,
            Some(&json!({"inputs": records})),
        )
        .await;
    for (k, &i) in picked.iter().enumerate() {
        let o = &want["outputs"][k];
        let (c, s) = &data[i];
        let expect = format!(
            "{c},{s},{},{},{}",
            o[0].as_f64().unwrap() as f32,
            o[1].as_f64().unwrap() as f32,
            want["labels"][k].as_str().unwrap()
        );
        assert_eq!(lines[i + 1], expect, "row {i}");
    }

    // Another tenant sees none of it; bad requests name the field.
    for path in [location.clone(), result.clone()] {
        let (st, _) = srv.call("GET", &path, BETA, None).await;
        assert_eq!(st, 404, "{path}");
    }
    let (st, _) = srv
        .call(
            "POST",
            &format!("/v1/models/{model}/predictions"),
            BETA,
            Some(&json!({"dataset_id": dataset})),
        )
        .await;
    assert_eq!(st, 404);
    let (st, e) = srv
        .call(
            "POST",
            &format!("/v1/models/{model}/predictions"),
            ADMIN,
            Some(&json!({"dataset_id": "6f1c3f8e-7a4e-4c36-9f7e-2d1d2b9e8c11"})),
        )
        .await;
    assert_eq!(
        (st, e["pointer"].as_str()),
        (422, Some("/dataset_id")),
        "{e}"
    );
    let (st, e) = srv
        .call(
            "POST",
            &format!("/v1/models/{model}/predictions"),
            ADMIN,
            Some(&json!({"dataset": dataset})),
        )
        .await;
    assert!(st == 400 || st == 422, "{st} {e}");
    let (st, _) = srv
        .call(
            "GET",
            &format!("/v1/models/{model}/predictions/nope"),
            ADMIN,
            None,
        )
        .await;
    assert_eq!(st, 404);
    // A dataset without a column the model takes.
    let r = srv
        .client
        .post(srv.url("/v1/datasets?name=other&target=label"))
        .bearer_auth(ADMIN)
        .header("content-type", "text/csv")
        .body("weight,label\n1,x\n2,y\n3,x\n")
        .send()
        .await
        .unwrap();
    let (_, other) = split(r).await;
    let (st, e) = srv
        .call(
            "POST",
            &format!("/v1/models/{model}/predictions"),
            ADMIN,
            Some(&json!({"dataset_id": other["id"]})),
        )
        .await;
    assert_eq!(st, 422, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("no column"), "{e}");
}

/// Issue 24: a file without labels (`?labels=none`) is stored for scoring: every column a
/// feature, every row kept; its batch result keeps the identifier column; training,
/// evaluating and sweeping on it are refused at the dataset; the parameter's misuses are 422s.
#[tokio::test]
async fn a_file_without_labels_is_stored_for_scoring() {
    let srv = Server::start(&["--api-keys", KEYS]).await;
    let model = srv.ok("POST", "/v1/models", ADMIN, Some(&tabular())).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let data = rows(60);
    let mut csv = String::from("customer_id,color,size\n");
    for (i, (c, s)) in data.iter().enumerate() {
        csv.push_str(&format!("C{i:04},{c},{s}\n"));
    }
    let upload = |query: &str, ctype: &str, body: Vec<u8>| {
        srv.client
            .post(srv.url(&format!("/v1/datasets?{query}")))
            .bearer_auth(ADMIN)
            .header("content-type", ctype.to_owned())
            .body(body)
            .send()
    };
    let (st, ds) = split(
        upload(
            "name=to-score&labels=none",
            "text/csv",
            csv.clone().into_bytes(),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(st, 201, "{ds}");
    assert_eq!(
        (
            ds["rows"].as_i64(),
            ds["outputs"].as_i64(),
            &ds["target_kind"]
        ),
        (Some(60), Some(0), &json!("none")),
        "{ds}"
    );
    assert_eq!(ds["target_names"], json!([]));
    assert_eq!(ds["feature_names"], json!(["customer_id", "color", "size"]));
    let dataset = ds["id"].as_str().unwrap().to_string();
    let (_, page) = split(
        srv.client
            .get(srv.url(&format!("/v1/datasets/{dataset}/rows?limit=2")))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page["rows"][0]["target"], Value::Null, "{page}");
    assert_eq!(page["rows"][1]["features"][0], "C0001", "{page}");

    // Scored in the background: every row, the identifier kept beside the outputs.
    let r = srv
        .client
        .post(srv.url(&format!("/v1/models/{model}/predictions")))
        .bearer_auth(PREDICTOR)
        .json(&json!({"dataset_id": dataset}))
        .send()
        .await
        .unwrap();
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(r.status(), 202);
    let t0 = Instant::now();
    let done = loop {
        let b = srv.ok("GET", &location, PREDICTOR, None).await;
        if b["status"] != "running" {
            break b;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{b}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    let text = srv
        .client
        .get(srv.url(done["result"].as_str().unwrap()))
        .bearer_auth(PREDICTOR)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 61);
    assert_eq!(
        lines[0],
        "customer_id,color,size,probability_a,probability_b,label"
    );
    assert!(lines[8].starts_with("C0007,"), "{}", lines[8]);

    // Nothing to learn from or to score against: 422 at the dataset, for each use.
    let spec = json!({"dataset_id": dataset, "layers": [{}], "loss": "categorical_crossentropy",
        "epochs": 1});
    for (path, body, pointer) in [
        ("/v1/jobs".to_string(), spec.clone(), "/dataset_id"),
        (
            "/v1/jobs".to_string(),
            json!({"dataset": {"features": [[1.0], [2.0], [3.0], [4.0]], "targets": [0, 1, 0, 1]},
                "validation_dataset_id": dataset, "layers": [{}], "loss": "mse", "epochs": 1}),
            "/validation_dataset_id",
        ),
        (
            format!("/v1/models/{model}/evaluate"),
            json!({"dataset_id": dataset}),
            "/dataset_id",
        ),
        (
            "/v1/sweeps".to_string(),
            json!({"dataset_id": dataset}),
            "/dataset_id",
        ),
        (
            "/v1/lr-range-tests".to_string(),
            spec.clone(),
            "/dataset_id",
        ),
    ] {
        let (st, b) = split(
            srv.client
                .post(srv.url(&path))
                .bearer_auth(ADMIN)
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(st, 422, "{path}: {b}");
        let text = b.to_string();
        assert!(
            text.contains(pointer) && text.contains("labels=none"),
            "{path}: {b}"
        );
    }

    // JSON bodies: without targets under labels=none; each half alone is refused.
    let (st, j) = split(
        upload(
            "labels=none",
            "application/json",
            serde_json::to_vec(
                &json!({"features": [{"color": "red", "size": 1.0}, {"color": "blue"}]}),
            )
            .unwrap(),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!((st, &j["target_kind"]), (201, &json!("none")), "{j}");
    for (query, body, pointer) in [
        (
            "labels=none",
            json!({"features": [[1.0], [2.0]], "targets": [1, 2]}),
            "/targets",
        ),
        ("", json!({"features": [[1.0], [2.0]]}), "/targets"),
    ] {
        let (st, b) = split(
            upload(
                query,
                "application/json",
                serde_json::to_vec(&body).unwrap(),
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(st, 422, "{query} {body}: {b}");
        assert!(b.to_string().contains(pointer), "{b}");
    }
    // CSV: a target and labels=none contradict; labels takes only none; no task.
    for (query, pointer) in [
        ("labels=none&target=size", "/labels"),
        ("labels=some", "/labels"),
        ("labels=none&task=regression", "/task"),
    ] {
        let (st, b) = split(
            upload(query, "text/csv", csv.clone().into_bytes())
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(st, 422, "{query}: {b}");
        assert!(b.to_string().contains(pointer), "{query}: {b}");
    }
}
