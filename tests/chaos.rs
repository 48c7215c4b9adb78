//! Several real `backprop` processes on one PostgreSQL database: nodes are killed with
//! SIGKILL or SIGTERM while they train, jobs move between nodes, and every job still ends
//! exactly once with the history and losses an undisturbed node computes. Also: cancel and
//! SSE across nodes, and a node whose database is not there.
//!
//! The PostgreSQL tests need `BACKPROP_TEST_POSTGRES_URL` (e.g.
//! `postgres://postgres@127.0.0.1:5432/test`); each gets its own schema there, dropped
//! afterwards. Without the variable they print "skipped" and pass.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::{Dice, Schema, Server, circle, losses};
use serde_json::{Value, json};

/// A node on the shared database; `extra` adds role flags.
async fn node(url: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--database-url", url];
    args.extend_from_slice(extra);
    Server::start(&args).await
}

async fn upload(srv: &Server, body: &Value) -> Value {
    let (st, ds) = srv.post("/v1/datasets", body).await;
    assert_eq!(st, 201, "{ds}");
    ds["id"].clone()
}

/// Twelve small jobs that differ by seed, width and learning rate: 2–3 s each alone.
fn chaos_specs(dataset_id: &Value) -> Vec<Value> {
    (0..12)
        .map(|i| {
            json!({
                "dataset_id": dataset_id,
                "name": format!("chaos-{i}"),
                "layers": [{"units": 24 + 8 * (i % 3), "activation": "tanh"},
                           {"units": 16, "activation": "relu"}, {"units": 1}],
                "loss": "binary_crossentropy",
                "optimizer": {"type": "adam", "learning_rate": 0.001 * (1 + i % 4) as f64},
                "epochs": 600, "batch_size": 8, "seed": 100 + i, "validation_split": 0.2
            })
        })
        .collect()
}

async fn submit(srv: &Server, specs: &[Value]) -> Vec<String> {
    let mut ids = vec![];
    for spec in specs {
        let (st, j) = srv.post("/v1/jobs", spec).await;
        assert_eq!(st, 202, "{j}");
        ids.push(j["id"].as_str().unwrap().to_string());
    }
    ids
}

/// Polls until every job is terminal, asking any live node.
async fn wait_all(srv: &Server, ids: &[String], timeout: Duration) -> Vec<Value> {
    let t0 = Instant::now();
    loop {
        let mut done = vec![];
        for id in ids {
            let (st, j) = srv.get(&format!("/v1/jobs/{id}")).await;
            assert_eq!(st, 200, "{j}");
            if ["succeeded", "failed", "cancelled"].contains(&j["status"].as_str().unwrap_or("")) {
                done.push(j);
            }
        }
        if done.len() == ids.len() {
            return done;
        }
        assert!(
            t0.elapsed() < timeout,
            "{} of {} jobs finished in {timeout:?}",
            done.len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const FAST: [&str; 4] = ["--checkpoint-secs", "0.1", "--lease-secs", "2"];

#[tokio::test]
async fn killed_nodes_lose_no_job_and_change_no_number() {
    let Some(db) = Schema::create().await else {
        return;
    };
    let t0 = Instant::now();
    let mut nodes = vec![];
    for _ in 0..3 {
        nodes.push(node(&db.url, &FAST).await);
    }
    let ds = upload(&nodes[0], &circle(300)).await;
    let specs = chaos_specs(&ds);
    let ids = submit(&nodes[0], &specs).await;

    let mut dice = Dice::new("BACKPROP_CHAOS_SEED");
    for round in 0..2 {
        // Kill while jobs are mid-training: after a few epochs have been checkpointed.
        let t = Instant::now();
        loop {
            let (_, list) = nodes[0].get("/v1/jobs?status=running").await;
            let busy = list["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|j| j["epoch"].as_i64().unwrap_or(0) >= 3)
                .count();
            if busy >= 3 || t.elapsed() > Duration::from_secs(10) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let victim = dice.below(nodes.len());
        println!("round {round}: kill -9 node {victim} at {:?}", t0.elapsed());
        nodes[victim].kill9();
        nodes[victim] = node(&db.url, &FAST).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }

    let done = wait_all(&nodes[0], &ids, Duration::from_secs(60)).await;
    println!("cluster finished at {:?}", t0.elapsed());
    for j in &done {
        assert_eq!(j["status"], "succeeded", "{j}");
    }
    let interrupted: i64 = done
        .iter()
        .map(|j| j["attempt"].as_i64().unwrap() - 1)
        .sum();
    assert!(
        interrupted >= 1,
        "the kills interrupted no job; the test proved nothing"
    );
    println!("{interrupted} job attempts were interrupted and resumed elsewhere");

    // Exactly one model per job.
    let (st, models) = nodes[1].get("/v1/models?limit=100").await;
    assert_eq!(st, 200, "{models}");
    let models = models["items"].as_array().unwrap();
    let job_ids: HashSet<&str> = models
        .iter()
        .map(|m| m["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(models.len(), 12, "one model per job, no more");
    assert_eq!(job_ids, ids.iter().map(String::as_str).collect());
    for j in &done {
        let m = models
            .iter()
            .find(|m| m["job_id"] == j["id"])
            .expect("model");
        assert_eq!(m["id"], j["model_id"]);
    }
    let mut chaos = HashMap::new();
    for (id, j) in ids.iter().zip(&done) {
        chaos.insert(
            id.clone(),
            losses(&nodes[2], id, j["epochs"].as_i64().unwrap()).await,
        );
    }
    drop(nodes);

    // The same twelve specs on one undisturbed node must give bit-identical losses.
    let Some(fresh) = Schema::create().await else {
        return;
    };
    let single = node(&fresh.url, &[]).await;
    let ds = upload(&single, &circle(300)).await;
    let ref_ids = submit(&single, &chaos_specs(&ds)).await;
    let done = wait_all(&single, &ref_ids, Duration::from_secs(60)).await;
    for (i, (id, j)) in ref_ids.iter().zip(&done).enumerate() {
        assert_eq!(j["status"], "succeeded", "{j}");
        assert_eq!(j["attempt"], 1);
        let reference = losses(&single, id, j["epochs"].as_i64().unwrap()).await;
        assert_eq!(
            chaos[&ids[i]], reference,
            "job {i}: losses after kills differ from an undisturbed run"
        );
    }
    println!("whole test took {:?}", t0.elapsed());
}

/// A job big enough to run for many seconds (cancelled or released before it ends).
fn long_spec(dataset_id: &Value) -> Value {
    json!({
        "dataset_id": dataset_id,
        "layers": [{"units": 64, "activation": "tanh"}, {"units": 1}],
        "loss": "binary_crossentropy", "epochs": 100000, "batch_size": 8, "seed": 3
    })
}

#[tokio::test]
async fn cancel_and_events_reach_a_job_running_on_another_node() {
    let Some(db) = Schema::create().await else {
        return;
    };
    // A serves the API only, so the job can only run on B.
    let a = node(&db.url, &["--no-workers"]).await;
    let b = node(&db.url, &FAST).await;
    let ds = upload(&a, &circle(200)).await;
    let (st, job) = a.post("/v1/jobs", &long_spec(&ds)).await;
    assert_eq!(st, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    b.wait_epoch(&id, 1, Duration::from_secs(20)).await;

    // A streams the epochs B records (from the store: A has no broadcast for them).
    let r = a
        .client
        .get(a.url(&format!("/v1/jobs/{id}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut text = String::new();
    let t = Instant::now();
    let seen = loop {
        let chunk = tokio::time::timeout(
            Duration::from_secs(5),
            futures::StreamExt::next(&mut stream),
        )
        .await
        .expect("an event within 5 s")
        .expect("stream open")
        .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
        let epochs: Vec<i64> = text
            .split("\n\n")
            .filter(|b| b.contains("event: epoch") || b.contains("event:epoch"))
            .filter_map(|b| {
                b.lines()
                    .find_map(|l| l.strip_prefix("id:"))
                    .and_then(|v| v.trim().parse().ok())
            })
            .collect();
        if epochs.len() >= 3 {
            break epochs;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "too few epochs: {text}"
        );
    };
    assert_eq!(
        seen[..3],
        [1, 2, 3],
        "epochs in order from the first: {text}"
    );

    // Cancel through A: B sees the flag at its next lease renewal and stops.
    let (st, c) = a.post(&format!("/v1/jobs/{id}/cancel"), &json!({})).await;
    assert!(st == 202 || st == 200, "{st} {c}");
    let t = Instant::now();
    let j = a.wait_job(&id, Duration::from_secs(5)).await;
    assert_eq!(j["status"], "cancelled", "{j}");
    println!("cancelled across nodes in {:?}", t.elapsed());
    // And A's event stream ends with the status.
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
    })
    .await;
    assert!(rest.is_ok(), "the stream did not end: {text}");
    assert!(
        text.contains("event: status") || text.contains("event:status"),
        "{text}"
    );
    assert!(text.contains("\"cancelled\""), "{text}");
}

#[tokio::test]
async fn sigterm_on_a_worker_releases_its_job_to_another_node_at_once() {
    let Some(db) = Schema::create().await else {
        return;
    };
    let api = node(&db.url, &["--no-workers"]).await;
    let mut worker =
        Server::start_worker(&["--database-url", &db.url, "--checkpoint-secs", "0.1"]).await;
    let (st, ready) = worker.get("/readyz").await;
    assert_eq!(st, 200, "{ready}");
    let (st, _) = worker.get("/v1/jobs").await;
    assert_eq!(st, 404, "a worker serves no API");
    let ds = upload(&api, &circle(200)).await;
    let (_, job) = api.post("/v1/jobs", &long_spec(&ds)).await;
    let id = job["id"].as_str().unwrap().to_string();
    api.wait_epoch(&id, 20, Duration::from_secs(20)).await;
    // Let a checkpoint land after epoch 20.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let t = Instant::now();
    let status = worker.terminate();
    let took = t.elapsed();
    assert!(status.success(), "{status:?}\n{}", worker.log());
    assert!(
        took < Duration::from_secs(10),
        "worker took {took:?} to exit"
    );
    let (_, j) = api.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(
        j["status"], "queued",
        "released at once, not left to its lease: {j}"
    );
    let at = j["epoch"].as_i64().unwrap();
    assert!(at >= 20, "{j}");

    // Another node takes it immediately (no lease to wait out) and resumes from the checkpoint.
    let other = node(&db.url, &["--lease-secs", "30"]).await;
    let t = Instant::now();
    let j = loop {
        let (_, j) = other.get(&format!("/v1/jobs/{id}")).await;
        if j["status"] == "running" && j["attempt"] == 2 {
            break j;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "not claimed again: {j}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // It resumed from the last checkpoint (epoch 20 or later, at most `at`): the epochs
    // after it were dropped, to be recomputed, and nothing from before it was.
    let (_, h) = other.get(&format!("/v1/jobs/{id}/history")).await;
    let epochs: Vec<i64> = h["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["epoch"].as_i64().unwrap())
        .collect();
    let n = epochs.len() as i64;
    assert!(
        (20..=at + 50).contains(&n),
        "resumed at {n}, released at {at}: {j}"
    );
    assert_eq!(epochs, (1..=n).collect::<Vec<_>>());
    let (st, _) = other
        .post(&format!("/v1/jobs/{id}/cancel"), &json!({}))
        .await;
    assert!(st < 300);
    other.wait_job(&id, Duration::from_secs(10)).await;
}

/// No PostgreSQL needed: a port where nothing listens.
const NOWHERE: &str = "postgres://postgres@127.0.0.1:9/backprop";

#[tokio::test]
async fn without_its_database_a_node_is_alive_but_not_ready() {
    let srv = node(NOWHERE, &[]).await;
    let (st, h) = srv.get("/healthz").await;
    assert_eq!(st, 200, "{h}");
    let t = Instant::now();
    let r = srv.client.get(srv.url("/readyz")).send().await.unwrap();
    let took = t.elapsed();
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], 503, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("database"),
        "{body}"
    );
    assert!(took < Duration::from_secs(5), "/readyz took {took:?}");
    // Requests that need the database fail the same way, just as fast.
    let t = Instant::now();
    let (st, body) = srv.get("/v1/jobs").await;
    assert_eq!(st, 503, "{body}");
    assert!(t.elapsed() < Duration::from_secs(5));

    let worker = Server::start_worker(&["--database-url", NOWHERE]).await;
    let (st, _) = worker.get("/healthz").await;
    assert_eq!(st, 200);
    let (st, body) = worker.get("/readyz").await;
    assert_eq!(st, 503, "{body}");
    assert_eq!(body["status"], 503, "{body}");
}
