//! The README's walkthrough and the service's promises, over real HTTP against the real
//! binary: datasets, jobs, history, SSE, predict, export/import, cancel, stop, restart.

mod common;

use std::time::Duration;

use common::{Server, circle, parse_sse, split, wide};
use serde_json::{Value, json};

const IRIS_TRAIN: &str = include_str!("../examples/iris.csv");
const IRIS_TEST: &str = include_str!("data/iris.test.csv");

fn parse_csv(text: &str) -> (Vec<Vec<f64>>, Vec<String>) {
    let mut x = vec![];
    let mut y = vec![];
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split(',').collect();
        let (t, f) = cells.split_last().unwrap();
        x.push(f.iter().map(|v| v.parse().unwrap()).collect());
        y.push(t.to_string());
    }
    (x, y)
}

#[tokio::test]
async fn the_course_perceptron_is_imported_and_predicts_sigmoid_of_minus_six() {
    let srv = Server::start(&[]).await;
    let (st, m) = srv
        .post(
            "/v1/models",
            &json!({"input_dim": 2, "layers": [{"units": 1, "activation": "sigmoid", "weights": [[3], [-2]], "bias": [1]}]}),
        )
        .await;
    assert_eq!(st, 201, "{m}");
    let (st, p) = srv
        .post(
            &format!("/v1/models/{}/predict", m["id"].as_str().unwrap()),
            &json!({"inputs": [[-1, 2]]}),
        )
        .await;
    assert_eq!(st, 200, "{p}");
    let y = p["outputs"][0][0].as_f64().unwrap();
    assert!((y - 0.0024726231566347743).abs() < 1e-7, "{y}");
    assert!(p.get("labels").is_none());
}

#[tokio::test]
async fn iris_csv_is_trained_watched_and_queried() {
    let srv = Server::start(&[]).await;
    let r = srv
        .post_raw(
            "/v1/datasets?name=iris&target=target",
            "text/csv",
            IRIS_TRAIN,
        )
        .await;
    assert_eq!(r.status(), 201);
    assert!(r.headers().get("location").is_some());
    let (_, ds) = split(r).await;
    assert_eq!(ds["rows"], 120);
    assert_eq!(ds["inputs"], 4);
    assert_eq!(ds["classes"], json!(["setosa", "versicolor", "virginica"]));
    assert_eq!(
        ds["feature_names"],
        json!(["sepal_length", "sepal_width", "petal_length", "petal_width"])
    );

    let spec = json!({
        "dataset_id": ds["id"], "layers": [{"units": 16, "activation": "relu"}, {"units": 3, "activation": "softmax"}],
        "loss": "categorical_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.01},
        "epochs": 150, "batch_size": 16, "seed": 1, "validation_split": 0.2
    });
    // A dry run validates and estimates without queueing.
    let (st, dry) = srv.post("/v1/jobs?dry_run=true", &spec).await;
    assert_eq!(st, 200, "{dry}");
    assert_eq!(dry["parameter_count"], 4 * 16 + 16 + 16 * 3 + 3);
    assert_eq!(dry["train_rows"], 96);
    let (_, list) = srv.get("/v1/jobs").await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        0,
        "a dry run queues nothing"
    );

    let r = srv
        .client
        .post(srv.url("/v1/jobs"))
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let (_, job) = split(r).await;
    assert_eq!(job["status"], "queued");
    assert_eq!(loc, format!("/v1/jobs/{}", job["id"].as_str().unwrap()));
    let id = job["id"].as_str().unwrap();
    let done = srv.wait_job(id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["epoch"], 150);
    assert_eq!(done["stop_reason"], "completed");

    let (_, h) = srv.get(&format!("/v1/jobs/{id}/history")).await;
    let epochs = h["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 150);
    for (i, rec) in epochs.iter().enumerate() {
        assert_eq!(rec["epoch"], i as i64 + 1);
        for k in [
            "loss",
            "val_loss",
            "accuracy",
            "val_accuracy",
            "learning_rate",
            "elapsed_ms",
        ] {
            assert!(rec[k].is_number(), "epoch {} lacks {k}: {rec}", i + 1);
        }
    }
    assert_eq!(epochs[0]["learning_rate"], 0.01);
    assert!(epochs[149]["loss"].as_f64().unwrap() < epochs[0]["loss"].as_f64().unwrap() / 3.0);
    let (_, since) = srv.get(&format!("/v1/jobs/{id}/history?since=140")).await;
    assert_eq!(since["epochs"].as_array().unwrap().len(), 10);
    assert_eq!(since["epochs"][0]["epoch"], 141);

    // Predict raw features; labels come back as the CSV's class names.
    let model_id = done["model_id"].as_str().unwrap();
    let (x, y) = parse_csv(IRIS_TEST);
    let (st, p) = srv
        .post(
            &format!("/v1/models/{model_id}/predict"),
            &json!({"inputs": x}),
        )
        .await;
    assert_eq!(st, 200, "{p}");
    let labels = p["labels"].as_array().unwrap();
    let right = labels
        .iter()
        .zip(&y)
        .filter(|(a, b)| a.as_str() == Some(b.as_str()))
        .count();
    assert!(
        right as f64 / y.len() as f64 >= 0.9,
        "iris test accuracy {right}/30"
    );
    for row in p["outputs"].as_array().unwrap() {
        let s: f64 = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .sum();
        assert!((s - 1.0).abs() < 1e-5);
    }

    // The model describes itself, and its export imports to a model with identical outputs.
    let (_, m) = srv.get(&format!("/v1/models/{model_id}")).await;
    assert_eq!(m["job_id"], job["id"]);
    assert_eq!(m["dataset_id"], ds["id"]);
    assert_eq!(m["classes"], json!(["setosa", "versicolor", "virginica"]));
    assert_eq!(
        m["architecture"],
        json!([{"units": 16, "activation": "relu"}, {"units": 3, "activation": "softmax"}])
    );
    let (st, doc) = srv.get(&format!("/v1/models/{model_id}/export")).await;
    assert_eq!(st, 200);
    let (st, m2) = srv.post("/v1/models", &doc).await;
    assert_eq!(st, 201, "{m2}");
    let (_, p2) = srv
        .post(
            &format!("/v1/models/{}/predict", m2["id"].as_str().unwrap()),
            &json!({"inputs": x}),
        )
        .await;
    assert_eq!(
        p2["outputs"], p["outputs"],
        "an exported model predicts bit for bit the same"
    );
    assert_eq!(p2["labels"], p["labels"]);
}

#[tokio::test]
async fn xor_is_learnt_from_an_inline_dataset() {
    let srv = Server::start(&[]).await;
    let spec = json!({
        "dataset": {"features": [[0, 0], [0, 1], [1, 0], [1, 1]], "targets": [0, 1, 1, 0]},
        "layers": [{"units": 4, "activation": "tanh"}, {"units": 1, "activation": "sigmoid"}],
        "loss": "binary_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.05},
        "epochs": 500, "batch_size": 4, "seed": 3, "standardize": false
    });
    let (st, job) = srv.post("/v1/jobs", &spec).await;
    assert_eq!(st, 202, "{job}");
    let done = srv
        .wait_job(job["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let (_, p) = srv
        .post(
            &format!("/v1/models/{}/predict", done["model_id"].as_str().unwrap()),
            &json!({"inputs": [[0, 0], [0, 1], [1, 0], [1, 1]]}),
        )
        .await;
    assert_eq!(p["labels"], json!([0, 1, 1, 0]), "{p}");
}

/// A job that runs for several seconds.
fn slow_spec(dataset_id: &Value, epochs: u32) -> Value {
    json!({
        "dataset_id": dataset_id,
        "layers": [{"units": 256, "activation": "relu"}, {"units": 256, "activation": "relu"}, {"units": 1}],
        "loss": "mse", "optimizer": {"type": "adam", "learning_rate": 0.0001}, "epochs": epochs, "batch_size": 32, "seed": 5
    })
}

async fn upload(srv: &Server, body: &Value) -> Value {
    let (st, ds) = srv.post("/v1/datasets", body).await;
    assert_eq!(st, 201, "{ds}");
    ds["id"].clone()
}

#[tokio::test]
async fn sse_streams_epochs_then_status_and_replays_after_last_event_id() {
    let srv = Server::start(&[]).await;
    let ds = upload(&srv, &circle(200)).await;
    let spec = json!({"dataset_id": ds, "layers": [{"units": 8, "activation": "tanh"}, {"units": 1}],
        "loss": "binary_crossentropy", "epochs": 30, "batch_size": 20, "seed": 1});
    let (_, job) = srv.post("/v1/jobs", &spec).await;
    let id = job["id"].as_str().unwrap().to_string();
    let r = srv
        .client
        .get(srv.url(&format!("/v1/jobs/{id}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = tokio::time::timeout(Duration::from_secs(60), r.text())
        .await
        .expect("stream ends after the status event")
        .unwrap();
    let events = parse_sse(&text);
    let epochs: Vec<&(String, Option<String>, Value)> =
        events.iter().filter(|e| e.0 == "epoch").collect();
    assert_eq!(epochs.len(), 30, "{text}");
    for (i, (_, eid, data)) in epochs.iter().enumerate() {
        assert_eq!(eid.as_deref(), Some((i + 1).to_string().as_str()));
        assert_eq!(data["epoch"], i as i64 + 1);
    }
    let last = events.last().unwrap();
    assert_eq!(last.0, "status");
    assert_eq!(last.2["status"], "succeeded");

    // Reconnecting with Last-Event-ID replays only what came after.
    let r = srv
        .client
        .get(srv.url(&format!("/v1/jobs/{id}/events")))
        .header("Last-Event-ID", "25")
        .send()
        .await
        .unwrap();
    let events = parse_sse(&r.text().await.unwrap());
    let ids: Vec<i64> = events
        .iter()
        .filter(|e| e.0 == "epoch")
        .map(|e| e.2["epoch"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![26, 27, 28, 29, 30]);
    assert_eq!(events.last().unwrap().0, "status");
}

#[tokio::test]
async fn cancel_stops_a_running_job_and_stop_keeps_a_model() {
    let srv = Server::start(&[]).await;
    let ds = upload(&srv, &wide(2000, 20)).await;
    let (_, a) = srv.post("/v1/jobs", &slow_spec(&ds, 100_000)).await;
    let (_, b) = srv.post("/v1/jobs", &slow_spec(&ds, 100_000)).await;
    let (a, b) = (
        a["id"].as_str().unwrap().to_string(),
        b["id"].as_str().unwrap().to_string(),
    );
    srv.wait_epoch(&a, 2, Duration::from_secs(30)).await;
    srv.wait_epoch(&b, 2, Duration::from_secs(30)).await;

    let (st, j) = srv.post(&format!("/v1/jobs/{a}/cancel"), &json!({})).await;
    assert_eq!(st, 202, "{j}");
    let t0 = std::time::Instant::now();
    let done = srv.wait_job(&a, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "cancelled");
    assert!(done["model_id"].is_null());
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "cancel took {:?}",
        t0.elapsed()
    );

    let (st, j) = srv.post(&format!("/v1/jobs/{b}/stop"), &json!({})).await;
    assert_eq!(st, 202, "{j}");
    let done = srv.wait_job(&b, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["stop_reason"], "stopped_by_user");
    let model = done["model_id"]
        .as_str()
        .expect("a stopped job keeps its model");
    let (st, p) = srv
        .post(
            &format!("/v1/models/{model}/predict"),
            &json!({"inputs": [vec![0.5; 20]]}),
        )
        .await;
    assert_eq!(st, 200, "{p}");

    // Cancelling or stopping a finished job is a conflict; deleting it works.
    let (st, e) = srv.post(&format!("/v1/jobs/{a}/cancel"), &json!({})).await;
    assert_eq!(st, 409, "{e}");
    let (st, _) = srv.post(&format!("/v1/jobs/{b}/stop"), &json!({})).await;
    assert_eq!(st, 409);
    assert_eq!(srv.delete(&format!("/v1/jobs/{a}")).await, 204);
    assert_eq!(srv.get(&format!("/v1/jobs/{a}")).await.0, 404);
}

#[tokio::test]
async fn a_killed_server_resumes_its_job_after_restart() {
    let mut srv = Server::start(&["--checkpoint-secs", "0.05"]).await;
    let ds = upload(&srv, &wide(1000, 20)).await;
    let (_, job) = srv.post("/v1/jobs", &slow_spec(&ds, 120)).await;
    let id = job["id"].as_str().unwrap().to_string();
    srv.wait_epoch(&id, 20, Duration::from_secs(60)).await;
    srv.kill9();
    srv.launch().await;
    let done = srv.wait_job(&id, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "succeeded", "{done}\n{}", srv.log());
    assert!(done["attempt"].as_i64().unwrap() >= 2, "{done}");
    let (_, h) = srv.get(&format!("/v1/jobs/{id}/history")).await;
    let epochs: Vec<i64> = h["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["epoch"].as_i64().unwrap())
        .collect();
    assert_eq!(
        epochs,
        (1..=120).collect::<Vec<_>>(),
        "every epoch exactly once"
    );

    // The same job trained without interruption has the same loss history, bit for bit.
    let (_, again) = srv.post("/v1/jobs", &slow_spec(&ds, 120)).await;
    let again = srv
        .wait_job(again["id"].as_str().unwrap(), Duration::from_secs(120))
        .await;
    let (_, h2) = srv
        .get(&format!(
            "/v1/jobs/{}/history",
            again["id"].as_str().unwrap()
        ))
        .await;
    let losses = |h: &Value| {
        h["epochs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["loss"].as_f64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(losses(&h), losses(&h2));
}

#[tokio::test]
async fn sigterm_requeues_the_running_job_and_exits_promptly() {
    let mut srv = Server::start(&[]).await;
    let ds = upload(&srv, &wide(1000, 20)).await;
    let (_, job) = srv.post("/v1/jobs", &slow_spec(&ds, 100_000)).await;
    let id = job["id"].as_str().unwrap().to_string();
    srv.wait_epoch(&id, 3, Duration::from_secs(30)).await;
    let t0 = std::time::Instant::now();
    let status = srv.terminate();
    assert!(status.success(), "{status:?}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    srv.launch().await;
    let (_, j) = srv.get(&format!("/v1/jobs/{id}")).await;
    assert!(
        ["queued", "running"].contains(&j["status"].as_str().unwrap()),
        "{j}"
    );
    srv.post(&format!("/v1/jobs/{id}/cancel"), &json!({})).await;
}

#[tokio::test]
async fn restart_keeps_datasets_jobs_and_models() {
    let mut srv = Server::start(&[]).await;
    let ds = upload(&srv, &circle(50)).await;
    let (_, job) = srv
        .post("/v1/jobs", &json!({"dataset_id": ds, "layers": [{"units": 1}], "loss": "binary_crossentropy", "epochs": 3}))
        .await;
    let done = srv
        .wait_job(job["id"].as_str().unwrap(), Duration::from_secs(30))
        .await;
    srv.terminate();
    srv.launch().await;
    assert_eq!(
        srv.get(&format!("/v1/datasets/{}", ds.as_str().unwrap()))
            .await
            .0,
        200
    );
    let (_, j) = srv
        .get(&format!("/v1/jobs/{}", job["id"].as_str().unwrap()))
        .await;
    assert_eq!(j["status"], "succeeded");
    assert_eq!(j["model_id"], done["model_id"]);
    let (st, _) = srv
        .get(&format!(
            "/v1/models/{}",
            done["model_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn listings_page_and_filter() {
    let srv = Server::start(&["--max-concurrent-jobs", "1"]).await;
    let ds = upload(&srv, &circle(40)).await;
    let mut ids = vec![];
    for _ in 0..5 {
        let (_, j) = srv
            .post("/v1/jobs", &json!({"dataset_id": ds, "layers": [{"units": 1}], "loss": "binary_crossentropy", "epochs": 2}))
            .await;
        ids.push(j["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        srv.wait_job(id, Duration::from_secs(30)).await;
    }
    let (_, p1) = srv.get("/v1/jobs?limit=2").await;
    assert_eq!(p1["items"].as_array().unwrap().len(), 2);
    assert_eq!(p1["items"][0]["id"], ids[4].as_str(), "newest first");
    let cursor = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = srv.get(&format!("/v1/jobs?limit=2&cursor={cursor}")).await;
    assert_eq!(p2["items"][0]["id"], ids[2].as_str());
    let (_, p3) = srv
        .get(&format!(
            "/v1/jobs?limit=2&cursor={}",
            p2["next_cursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(p3["items"].as_array().unwrap().len(), 1);
    assert!(p3["next_cursor"].is_null());
    let (_, s) = srv.get("/v1/jobs?status=succeeded").await;
    assert_eq!(s["items"].as_array().unwrap().len(), 5);
    let (_, q) = srv.get("/v1/jobs?status=queued").await;
    assert_eq!(q["items"].as_array().unwrap().len(), 0);
    let (_, d) = srv.get("/v1/datasets").await;
    assert_eq!(d["items"].as_array().unwrap().len(), 1);
    let (_, m) = srv.get("/v1/models").await;
    assert_eq!(m["items"].as_array().unwrap().len(), 5);
    // Deleting a dataset keeps the jobs' records and models.
    assert_eq!(
        srv.delete(&format!("/v1/datasets/{}", ds.as_str().unwrap()))
            .await,
        204
    );
    assert_eq!(
        srv.delete(&format!("/v1/datasets/{}", ds.as_str().unwrap()))
            .await,
        404
    );
    assert_eq!(srv.get(&format!("/v1/jobs/{}", ids[0])).await.0, 200);
    let mid = m["items"][0]["id"].as_str().unwrap();
    assert_eq!(srv.delete(&format!("/v1/models/{mid}")).await, 204);
    assert_eq!(
        srv.post(
            &format!("/v1/models/{mid}/predict"),
            &json!({"inputs": [[0, 0]]})
        )
        .await
        .0,
        404
    );
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let srv = Server::start(&["--max-concurrent-jobs", "1", "--max-queued-jobs", "1"]).await;
    let ds = upload(&srv, &wide(1000, 20)).await;
    let (_, running) = srv.post("/v1/jobs", &slow_spec(&ds, 100_000)).await;
    srv.wait_epoch(running["id"].as_str().unwrap(), 1, Duration::from_secs(30))
        .await;
    let (st, queued) = srv.post("/v1/jobs", &slow_spec(&ds, 100_000)).await;
    assert_eq!(st, 202);
    assert_eq!(
        srv.get(&format!("/v1/jobs/{}", queued["id"].as_str().unwrap()))
            .await
            .1["queue_position"],
        0
    );
    let r = srv
        .client
        .post(srv.url("/v1/jobs"))
        .json(&slow_spec(&ds, 10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("problem+json")
    );
    for j in [&running, &queued] {
        srv.post(
            &format!("/v1/jobs/{}/cancel", j["id"].as_str().unwrap()),
            &json!({}),
        )
        .await;
    }
}

#[tokio::test]
async fn request_ids_round_trip_and_metrics_move() {
    let srv = Server::start(&[]).await;
    let r = srv
        .client
        .get(srv.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = srv.client.get(srv.url("/v1/nothing")).send().await.unwrap();
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(generated.len(), 36, "a UUID is made when none is given");

    let (_, job) = srv
        .post("/v1/jobs", &json!({"dataset": circle(60), "layers": [{"units": 4, "activation": "tanh"}, {"units": 1}], "loss": "binary_crossentropy", "epochs": 5}))
        .await;
    srv.wait_job(job["id"].as_str().unwrap(), Duration::from_secs(30))
        .await;
    let metrics = srv
        .client
        .get(srv.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from\n{metrics}"))
    };
    assert_eq!(value("backprop_epochs_total"), 5.0);
    assert_eq!(value("backprop_jobs{status=\"succeeded\"}"), 1.0);
    assert!(value("backprop_training_samples_total") >= 5.0 * 60.0 - 5.0);
    assert!(
        metrics.contains(
            "backprop_http_requests_total{method=\"POST\",route=\"/v1/jobs\",status=\"202\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("route=\"unmatched\",status=\"404\""));
    assert!(value("backprop_db_connections{state=\"open\"}") >= 1.0);
    for name in [
        "backprop_queue_wait_seconds_bucket",
        "backprop_epoch_duration_seconds_bucket",
        "backprop_http_request_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }
}
