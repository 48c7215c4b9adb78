//! Fair sharing between tenants on one server: one tenant's burst of jobs cannot hold
//! another's job back beyond the first training slot that frees (the queue serves the tenant
//! with fewer running jobs first); a key's requests beyond its token bucket get 429 with
//! `Retry-After` while other keys are unaffected; and a tenant's event streams stop at its
//! share, leaving the rest to others.

mod common;

use std::time::{Duration, Instant};

use common::{Server, circle};
use serde_json::{Value, json};

const KEYS: &str = "a:admin:key-of-a,b:admin:key-of-b";

/// A job of about half a second or more (test build): long enough that the whole burst is
/// submitted before the first job ends.
fn spec(name: &str) -> Value {
    let data = circle(200);
    json!({
        "name": name,
        "dataset": {"features": data["features"], "targets": data["targets"]},
        "layers": [{"units": 64, "activation": "relu"}, {"units": 64, "activation": "tanh"}, {"units": 1}],
        "loss": "binary_crossentropy", "epochs": 300, "batch_size": 8, "seed": 1
    })
}

async fn wait_done(srv: &Server, key: &str, id: &str) -> Value {
    let j = srv.wait_job_as(key, id, Duration::from_secs(55)).await;
    assert_eq!(j["status"], "succeeded", "{j}");
    j
}

#[tokio::test]
async fn one_tenants_burst_does_not_delay_anothers_jobs_beyond_its_share() {
    let srv = Server::start(&[
        "--api-keys",
        KEYS,
        "--max-concurrent-jobs",
        "2",
        "--threads",
        "1",
    ])
    .await;
    // Tenant a fills both slots and queues four more; then tenant b submits one job.
    let mut burst = vec![];
    for i in 0..6 {
        let j = srv
            .ok(
                "POST",
                "/v1/jobs",
                "key-of-a",
                Some(&spec(&format!("a{i}"))),
            )
            .await;
        burst.push(j["id"].as_str().unwrap().to_string());
    }
    let b = srv
        .ok("POST", "/v1/jobs", "key-of-b", Some(&spec("b")))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b_job = wait_done(&srv, "key-of-b", &b).await;
    let mut a_jobs = vec![];
    for id in &burst {
        a_jobs.push(wait_done(&srv, "key-of-a", id).await);
    }
    let started = |j: &Value| j["started_at"].as_str().unwrap().to_string();
    let finished = |j: &Value| j["finished_at"].as_str().unwrap().to_string();
    // b's job took the first slot that freed: before any of a's queued jobs started.
    let a_starts: Vec<String> = a_jobs.iter().map(started).collect();
    let later: Vec<&String> = a_starts.iter().filter(|s| **s > started(&b_job)).collect();
    assert!(
        later.len() >= 4,
        "b started at {}, after a's queued jobs: {a_starts:?}",
        started(&b_job)
    );
    // So b was done long before a's burst (first come, first served would have run b last).
    let a_last = a_jobs.iter().map(finished).max().unwrap();
    assert!(
        finished(&b_job) < a_last,
        "b finished after all of a's burst"
    );
}

#[tokio::test]
async fn a_keys_requests_beyond_its_bucket_get_429_and_other_keys_do_not() {
    let srv = Server::start(&[
        "--api-keys",
        KEYS,
        "--rate-limit",
        "2",
        "--rate-limit-burst",
        "3",
    ])
    .await;
    for _ in 0..3 {
        let (st, body) = srv.call("GET", "/v1/jobs", "key-of-a", None).await;
        assert_eq!(st, 200, "{body}");
    }
    let r = srv
        .client
        .get(srv.url("/v1/datasets"))
        .bearer_auth("key-of-a")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/problem+json")
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], 429);
    assert!(
        body["detail"].as_str().unwrap().contains("--rate-limit"),
        "{body}"
    );
    // Another key, and what is not /v1, are not held back by a's bucket.
    let (st, _) = srv.call("GET", "/v1/jobs", "key-of-b", None).await;
    assert_eq!(st, 200);
    let (st, _) = srv.get("/healthz").await;
    assert_eq!(st, 200);
    // A wrong key is told so (401), not rate-limited.
    for _ in 0..5 {
        let (st, _) = srv.call("GET", "/v1/jobs", "not-a-key", None).await;
        assert_eq!(st, 401);
    }
    // The bucket refills: after Retry-After, a is served again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let (st, body) = srv.call("GET", "/v1/jobs", "key-of-a", None).await;
    assert_eq!(st, 200, "{body}");
}

#[tokio::test]
async fn a_tenants_event_streams_stop_at_its_share() {
    let srv = Server::start(&[
        "--api-keys",
        KEYS,
        "--max-sse-clients-per-tenant",
        "1",
        "--max-sse-clients",
        "10",
    ])
    .await;
    let mut long = spec("long");
    long["epochs"] = json!(2000);
    let a = srv.ok("POST", "/v1/jobs", "key-of-a", Some(&long)).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = srv
        .ok("POST", "/v1/jobs", "key-of-b", Some(&spec("b")))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let open = |key: &'static str, id: String| {
        let c = srv.client.clone();
        let url = srv.url(&format!("/v1/jobs/{id}/events"));
        async move { c.get(url).bearer_auth(key).send().await.unwrap() }
    };
    let first = open("key-of-a", a.clone()).await;
    assert_eq!(first.status(), 200);
    let second = open("key-of-a", a.clone()).await;
    assert_eq!(
        second.status(),
        429,
        "a's second stream is beyond its share"
    );
    assert!(second.headers().contains_key("retry-after"));
    let body: Value = second.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("--max-sse-clients-per-tenant"),
        "{body}"
    );
    // b's share is its own.
    let other = open("key-of-b", b).await;
    assert_eq!(other.status(), 200);
    // Closing a's stream gives its place back.
    drop(first);
    let t0 = Instant::now();
    loop {
        let again = open("key-of-a", a.clone()).await;
        if again.status() == 200 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "a's place never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    srv.ok("POST", &format!("/v1/jobs/{a}/cancel"), "key-of-a", None)
        .await;
}

/// Issue 23, item 7: with the default settings tenant b's two long jobs held both training
/// slots, and tenant a's job waited at queue position 0 until b's were cancelled. Now a
/// tenant beyond its share of the slots yields one when another tenant waits: its job
/// checkpoints at its next epoch's end, goes back to the queue, and resumes from that
/// checkpoint later with its history whole.
#[tokio::test]
async fn a_tenant_holding_every_slot_yields_one_to_a_waiting_tenant() {
    let srv = Server::start(&["--api-keys", KEYS, "--checkpoint-secs", "0.5"]).await;
    let long = |name: &str| {
        let mut s = spec(name);
        s["epochs"] = json!(100_000);
        s
    };
    let mut b = vec![];
    for i in 0..2 {
        let j = srv
            .ok(
                "POST",
                "/v1/jobs",
                "key-of-b",
                Some(&long(&format!("b{i}"))),
            )
            .await;
        b.push(j["id"].as_str().unwrap().to_string());
    }
    for id in &b {
        let t0 = Instant::now();
        loop {
            let j = srv
                .ok("GET", &format!("/v1/jobs/{id}"), "key-of-b", None)
                .await;
            if j["epoch"].as_i64().unwrap_or(0) >= 2 {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "{j}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut short = spec("a");
    short["epochs"] = json!(20);
    let submitted = Instant::now();
    let a = srv.ok("POST", "/v1/jobs", "key-of-a", Some(&short)).await;
    let a = a["id"].as_str().unwrap().to_string();
    let started = loop {
        let j = srv
            .ok("GET", &format!("/v1/jobs/{a}"), "key-of-a", None)
            .await;
        if j["status"] != "queued" {
            break submitted.elapsed();
        }
        assert!(
            submitted.elapsed() < Duration::from_secs(20),
            "a's job still waits behind b's: {j}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    println!("tenant a's job waited {started:?} for a slot");
    wait_done(&srv, "key-of-a", &a).await;
    // One of b's jobs went back to the queue and takes its slot again; both keep a whole
    // history (each epoch once, in order) and train on.
    for id in &b {
        let j = srv
            .ok("GET", &format!("/v1/jobs/{id}"), "key-of-b", None)
            .await;
        assert!(
            ["running", "queued"].contains(&j["status"].as_str().unwrap()),
            "{j}"
        );
    }
    let t0 = Instant::now();
    let yielded = loop {
        let mut attempts = vec![];
        for id in &b {
            let j = srv
                .ok("GET", &format!("/v1/jobs/{id}"), "key-of-b", None)
                .await;
            attempts.push((
                id.clone(),
                j["attempt"].as_i64().unwrap(),
                j["status"].clone(),
            ));
        }
        if let Some((id, _, _)) = attempts.iter().find(|(_, n, s)| *n >= 2 && s == "running") {
            break id.clone();
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{attempts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let at = srv
        .ok("GET", &format!("/v1/jobs/{yielded}"), "key-of-b", None)
        .await["epoch"]
        .as_i64()
        .unwrap();
    let (st, h) = srv
        .call(
            "GET",
            &format!("/v1/jobs/{yielded}/history"),
            "key-of-b",
            None,
        )
        .await;
    assert_eq!(st, 200);
    let epochs: Vec<i64> = h["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["epoch"].as_i64().unwrap())
        .collect();
    assert!(epochs.len() as i64 >= at.min(epochs.len() as i64));
    assert_eq!(
        epochs,
        (1..=epochs.len() as i64).collect::<Vec<_>>(),
        "a whole history"
    );
    // b's two jobs are the same spec and seed: the one that yielded and resumed from its
    // checkpoint has the very losses of the one that never stopped, bit for bit.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut losses = vec![];
    for id in &b {
        let (_, h) = srv
            .call("GET", &format!("/v1/jobs/{id}/history"), "key-of-b", None)
            .await;
        let l: Vec<Value> = h["epochs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["loss"].clone())
            .collect();
        losses.push(l);
    }
    let n = losses[0].len().min(losses[1].len());
    assert!(
        n > at as usize,
        "epochs after the resume compared ({n} vs {at})"
    );
    assert_eq!(losses[0][..n], losses[1][..n]);
    for id in &b {
        srv.call("POST", &format!("/v1/jobs/{id}/cancel"), "key-of-b", None)
            .await;
    }
}
