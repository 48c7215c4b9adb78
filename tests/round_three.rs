//! Issue 23, round three of the attacker's and the first-time user's findings, each over real
//! HTTP: sweeps within the queue quotas (3), whole batch results for gzip-accepting clients
//! (5), `/v2` under `--rate-limit` (6), protocol errors with their detail under gzip (9),
//! `curl -d` JSON on the predict routes (11).

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::{Server, circle, split};
use serde_json::{Value, json};

const KEYS: &str = "acme:admin:acme-admin-key,beta:admin:beta-admin-key";
const A: &str = "acme-admin-key";
const B: &str = "beta-admin-key";

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a whole gzip stream");
    out
}

/// A body as the client reads it: decompressed where the server compressed it.
async fn body_of(r: reqwest::Response) -> (u16, Vec<u8>) {
    let st = r.status().as_u16();
    let gz = r
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v == "gzip");
    let bytes = r.bytes().await.expect("the whole body").to_vec();
    (st, if gz { gunzip(&bytes) } else { bytes })
}

fn model() -> Value {
    json!({"input_dim": 2, "layers": [{"units": 2, "activation": "softmax",
        "weights": [[1.0, -1.0], [0.5, 0.2]], "bias": [0.0, 0.0]}],
        "classes": ["no", "yes"], "class_encoding": "categorical", "feature_names": ["x", "y"]})
}

async fn import_and_deploy(srv: &Server, key: &str, name: &str) -> String {
    let m = srv.ok("POST", "/v1/models", key, Some(&model())).await;
    let id = m["id"].as_str().unwrap().to_string();
    srv.ok(
        "PUT",
        &format!("/v1/deployments/{name}"),
        key,
        Some(&json!({"model_id": id})),
    )
    .await;
    id
}

/// Item 6: `/v2` answered 100 of 100 at 5/s where `/v1` refused 94; every protocol draws from
/// the key's bucket now, and the refusal is the protocol's own `{"error"}` with a 429.
#[tokio::test]
async fn every_inference_protocol_is_rate_limited_alike() {
    let srv = Server::start(&[
        "--api-keys",
        KEYS,
        "--rate-limit",
        "0.5",
        "--rate-limit-burst",
        "4",
    ])
    .await;
    import_and_deploy(&srv, A, "m").await;
    let infer = json!({"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32",
                                   "data": [0.5, 1.0]}]});
    let mut statuses = vec![];
    for _ in 0..6 {
        let r = srv
            .client
            .post(srv.url("/v2/models/m/infer"))
            .bearer_auth(A)
            .json(&infer)
            .send()
            .await
            .unwrap();
        let (st, body) = split(r).await;
        if st == 429 {
            assert!(
                body["error"].as_str().unwrap().contains("--rate-limit"),
                "{body}"
            );
        }
        statuses.push(st);
    }
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 4,
        "{statuses:?}"
    );
    // The other tenant's key has its own bucket; the probes none.
    let (st, _) = srv.call("GET", "/v2/models/m", B, None).await;
    assert_eq!(st, 404, "beta sees no deployment of acme's");
    for _ in 0..10 {
        assert_eq!(srv.get("/v2/health/ready").await.0, 200);
    }
}

/// Items 5 and 9: with `Accept-Encoding: gzip` a batch result came cut short (the stream
/// panicked under the compression layer) and `/v2` errors lost their detail (the rewriter
/// read a compressed body). Every streamed answer and every error, with and without gzip.
#[tokio::test]
async fn gzip_accepting_clients_get_whole_answers_and_detailed_errors() {
    let srv = Server::start(&["--api-keys", KEYS]).await;
    let model = import_and_deploy(&srv, A, "m").await;
    let mut csv = String::from("x,y,label\n");
    for i in 0..30_000 {
        csv.push_str(&format!("{},{},{}\n", i % 17, i % 5, i % 2));
    }
    let r = srv
        .client
        .post(srv.url("/v1/datasets?name=rows&target=label"))
        .bearer_auth(A)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    let (st, ds) = split(r).await;
    assert_eq!(st, 201, "{ds}");
    let started = srv
        .ok(
            "POST",
            &format!("/v1/models/{model}/predictions"),
            A,
            Some(&json!({"dataset_id": ds["id"]})),
        )
        .await;
    let status = format!(
        "/v1/models/{model}/predictions/{}",
        started["id"].as_str().unwrap()
    );
    let t0 = Instant::now();
    let done = loop {
        let b = srv.ok("GET", &status, A, None).await;
        if b["status"] != "running" {
            break b;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "{b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    let result = done["result"].as_str().unwrap().to_string();
    let fetch = |gzip: bool| {
        let mut r = srv.client.get(srv.url(&result)).bearer_auth(A);
        if gzip {
            r = r.header("accept-encoding", "gzip");
        }
        r.send()
    };
    let (st, plain) = body_of(fetch(false).await.unwrap()).await;
    assert_eq!(st, 200);
    let r = fetch(true).await.unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let (st, unzipped) = body_of(r).await;
    assert_eq!(st, 200);
    assert_eq!(unzipped.len(), plain.len(), "the gzip answer is whole");
    assert_eq!(unzipped, plain);
    assert_eq!(
        String::from_utf8(plain).unwrap().lines().count(),
        30_001,
        "a header and every row"
    );

    // The protocols' errors keep their detail whether or not the client takes gzip.
    let bad = json!({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32",
                                 "data": [1.0, 2.0, 3.0]}]});
    for gzip in [false, true] {
        let mut r = srv
            .client
            .post(srv.url("/v2/models/m/infer"))
            .bearer_auth(A)
            .json(&bad);
        if gzip {
            r = r.header("accept-encoding", "gzip");
        }
        let (st, body) = body_of(r.send().await.unwrap()).await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(st, 422, "{body}");
        let e = body["error"].as_str().unwrap();
        assert!(
            e.contains("3") && e != "Unprocessable Entity",
            "gzip {gzip}: {e}"
        );
    }
    assert!(!srv.log().contains("panicked"), "{}", srv.log());
}

/// Item 11: the README's first examples use `curl -d`, whose form type the predict routes
/// refused (415) while `/v1/jobs/{id}/predict` took it.
#[tokio::test]
async fn curl_d_json_is_read_as_json_on_every_predict_route() {
    let srv = Server::start(&[]).await;
    let m = srv.post("/v1/models", &model()).await.1;
    let id = m["id"].as_str().unwrap();
    let r = srv
        .client
        .put(srv.url("/v1/deployments/d"))
        .json(&json!({"model_id": id}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    for path in [
        format!("/v1/models/{id}/predict"),
        "/v1/deployments/d/predict".to_string(),
    ] {
        let r = srv
            .post_raw(
                &path,
                "application/x-www-form-urlencoded",
                r#"{"inputs": [[-1, 2]]}"#,
            )
            .await;
        let (st, body) = split(r).await;
        assert_eq!(st, 200, "{path}: {body}");
        assert_eq!(body["outputs"].as_array().unwrap().len(), 1, "{body}");
    }
    // A CSV sent with curl -d loses its line breaks: still refused there, with the fix.
    let r = srv
        .post_raw(
            "/v1/datasets",
            "application/x-www-form-urlencoded",
            "x,y\n1,2\n",
        )
        .await;
    let (st, body) = split(r).await;
    assert_eq!(st, 415, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("--data-binary"));
}

/// Item 3: with `--quota-queued-jobs 3` a tenant's fourth job got 429, but sweeps of 50 and
/// 200 trials were accepted and queued 1,249 jobs, locking every other tenant out of the
/// queue. Trials count against the quota and are queued a few at a time.
#[tokio::test]
async fn sweeps_stay_within_the_queue_quotas() {
    let srv = Server::start(&[
        "--api-keys",
        KEYS,
        "--no-workers",
        "--quota-queued-jobs",
        "3",
        "--max-queued-jobs",
        "6",
    ])
    .await;
    let ds = srv.ok("POST", "/v1/datasets", B, Some(&circle(40))).await;
    let sweep = json!({
        "dataset_id": ds["id"], "method": "random", "max_trials": 200, "seed": 1,
        "base": {"layers": [{"units": 4, "activation": "tanh"}, {}],
                 "loss": "binary_crossentropy", "epochs": 2, "validation_split": 0.25},
        "space": {"/optimizer/learning_rate": {"log_uniform": [1e-3, 1e-1]}},
    });
    let (st, s) = srv.call("POST", "/v1/sweeps", B, Some(&sweep)).await;
    assert_eq!(st, 202, "{s}");
    let queued = |key: &'static str| {
        let srv = &srv;
        async move {
            srv.ok("GET", "/v1/jobs?status=queued&limit=100", key, None)
                .await["items"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    // Wait for the sweep driver's next turns: it must not queue past the quota.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(queued(B).await, 3, "at most the tenant's quota");
    for _ in 0..3 {
        let (st, e) = srv.call("POST", "/v1/sweeps", B, Some(&sweep)).await;
        assert_eq!(st, 429, "{e}");
        let (st, e) = srv
            .call(
                "POST",
                "/v1/jobs",
                B,
                Some(&json!({"dataset_id": ds["id"], "layers": [{}], "loss": "mse"})),
            )
            .await;
        assert_eq!(st, 429, "{e}");
    }
    // The other tenant is not locked out of the shared queue.
    let ds_a = srv.ok("POST", "/v1/datasets", A, Some(&circle(40))).await;
    let (st, j) = srv
        .call(
            "POST",
            "/v1/jobs",
            A,
            Some(&json!({"dataset_id": ds_a["id"], "layers": [{}], "loss": "mse"})),
        )
        .await;
    assert_eq!(st, 202, "{j}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(queued(B).await, 3);
    assert_eq!(queued(A).await, 1);
}
