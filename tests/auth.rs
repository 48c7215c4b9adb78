//! API keys, roles, tenants, quotas and idempotency over real HTTP.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Server, circle};
use serde_json::{Value, json};

const KEYS: &str = "acme:admin:acme-admin-secret,acme:predictor:acme-predict-secret,beta:trainer:beta-train-secret";

async fn call(
    srv: &Server,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = srv
        .client
        .request(method.to_uppercase().parse().unwrap(), srv.url(path));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().await.unwrap();
    let headers = r.headers().clone();
    let (st, v) = common::split(r).await;
    (st, v, headers)
}

#[tokio::test]
async fn every_v1_route_wants_a_valid_key() {
    let srv = Server::start(&["--api-keys", KEYS]).await;
    let id = "6f1c3f8e-7a4e-4c36-9f7e-2d1d2b9e8c11";
    let mut checked = 0;
    for (method, route) in backprop::api::ROUTES {
        let path = route.replace("{id}", id);
        // The serving protocols' model routes (v2, TF Serving) want a key too, and answer
        // their own error shape, `{"error": …}`.
        let protocol = path.starts_with("/v2/models/")
            || (*method == "post"
                && ["/v1/models/{id}", "/v1/models/{id}/versions/{version}"].contains(route));
        if !path.starts_with("/v1/") && !protocol {
            let (st, _, _) = call(&srv, method, &path, None, None).await;
            assert!(st != 401, "{method} {path} is open: {st}");
            continue;
        }
        for key in [None, Some("wrong-secret")] {
            let (st, body, headers) = call(&srv, method, &path, key, Some(&json!({}))).await;
            assert_eq!(st, 401, "{method} {path} with {key:?}: {body}");
            if protocol {
                assert_eq!(headers["content-type"], "application/json");
                assert!(body["error"].is_string(), "{method} {path}: {body}");
            } else {
                assert_eq!(headers["content-type"], "application/problem+json");
            }
            assert_eq!(headers["www-authenticate"], "Bearer");
        }
        checked += 1;
    }
    assert!(checked >= 17);
}

#[tokio::test]
async fn roles_and_tenants_keep_callers_apart() {
    let srv = Server::start(&["--api-keys", KEYS]).await;
    let admin = Some("acme-admin-secret");
    let predictor = Some("acme-predict-secret");
    let beta = Some("beta-train-secret");
    let (st, ds, _) = call(&srv, "POST", "/v1/datasets", admin, Some(&circle(40))).await;
    assert_eq!(st, 201, "{ds}");
    let ds = ds["id"].as_str().unwrap().to_string();
    let spec = json!({"dataset_id": ds, "layers": [{"units": 4, "activation": "tanh"}, {"units": 1}], "loss": "binary_crossentropy", "epochs": 3});
    let (st, job, _) = call(&srv, "POST", "/v1/jobs", admin, Some(&spec)).await;
    assert_eq!(st, 202, "{job}");
    let job_id = job["id"].as_str().unwrap().to_string();
    let done = loop {
        let (_, j, _) = call(&srv, "GET", &format!("/v1/jobs/{job_id}"), admin, None).await;
        if j["status"] == "succeeded" {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let model = done["model_id"].as_str().unwrap().to_string();

    // A predictor may predict and read models, nothing else.
    let (st, p, _) = call(
        &srv,
        "POST",
        &format!("/v1/models/{model}/predict"),
        predictor,
        Some(&json!({"inputs": [[0, 0]]})),
    )
    .await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(
        call(&srv, "GET", &format!("/v1/models/{model}"), predictor, None)
            .await
            .0,
        200
    );
    assert_eq!(
        call(
            &srv,
            "GET",
            &format!("/v1/models/{model}/export"),
            predictor,
            None
        )
        .await
        .0,
        200
    );
    let (st, e, _) = call(&srv, "POST", "/v1/jobs", predictor, Some(&spec)).await;
    assert_eq!(st, 403, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("predictor"));
    assert_eq!(
        call(&srv, "POST", "/v1/datasets", predictor, Some(&circle(5)))
            .await
            .0,
        403
    );
    assert_eq!(call(&srv, "GET", "/v1/jobs", predictor, None).await.0, 403);
    assert_eq!(
        call(
            &srv,
            "DELETE",
            &format!("/v1/models/{model}"),
            predictor,
            None
        )
        .await
        .0,
        403
    );

    // Another tenant sees nothing: 404 for every resource, empty lists.
    for path in [
        format!("/v1/datasets/{ds}"),
        format!("/v1/jobs/{job_id}"),
        format!("/v1/jobs/{job_id}/history"),
        format!("/v1/jobs/{job_id}/events"),
        format!("/v1/models/{model}"),
        format!("/v1/models/{model}/export"),
    ] {
        let (st, body, _) = call(&srv, "GET", &path, beta, None).await;
        assert_eq!(st, 404, "{path}: {body}");
    }
    assert_eq!(
        call(
            &srv,
            "POST",
            &format!("/v1/models/{model}/predict"),
            beta,
            Some(&json!({"inputs": [[0, 0]]}))
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(
            &srv,
            "POST",
            &format!("/v1/jobs/{job_id}/cancel"),
            beta,
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(&srv, "DELETE", &format!("/v1/datasets/{ds}"), beta, None)
            .await
            .0,
        404
    );
    assert_eq!(
        call(&srv, "DELETE", &format!("/v1/models/{model}"), beta, None)
            .await
            .0,
        404
    );
    let (st, e, _) = call(&srv, "POST", "/v1/jobs", beta, Some(&spec)).await;
    assert_eq!(
        (st, e["pointer"].as_str()),
        (422, Some("/dataset_id")),
        "another tenant's dataset cannot be trained on"
    );
    for list in ["/v1/datasets", "/v1/jobs", "/v1/models"] {
        let (_, l, _) = call(&srv, "GET", list, beta, None).await;
        assert_eq!(
            l["items"].as_array().unwrap().len(),
            0,
            "{list} leaks across tenants"
        );
        let (_, l, _) = call(&srv, "GET", list, admin, None).await;
        assert_eq!(l["items"].as_array().unwrap().len(), 1, "{list}");
    }
}

#[tokio::test]
async fn quotas_answer_429_with_retry_after() {
    let srv = Server::start(&[
        "--api-keys",
        KEYS,
        "--quota-queued-jobs",
        "1",
        "--quota-running-jobs",
        "1",
        "--quota-stored-bytes",
        "2000",
    ])
    .await;
    let key = Some("beta-train-secret");
    let (st, ds, _) = call(&srv, "POST", "/v1/datasets", key, Some(&circle(40))).await;
    assert_eq!(st, 201);
    let (st, e, h) = call(&srv, "POST", "/v1/datasets", key, Some(&circle(200))).await;
    assert_eq!(st, 429, "{e}");
    assert!(h.get("retry-after").is_some());
    assert!(e["detail"].as_str().unwrap().contains("quota"));
    let spec = json!({"dataset_id": ds["id"], "layers": [{"units": 64, "activation": "relu"}, {"units": 1}], "loss": "binary_crossentropy", "epochs": 100000});
    let (st, running, _) = call(&srv, "POST", "/v1/jobs", key, Some(&spec)).await;
    assert_eq!(st, 202);
    // The running quota is 1: the second job waits in the queue, the third is refused.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (st, queued, _) = call(&srv, "POST", "/v1/jobs", key, Some(&spec)).await;
    assert_eq!(st, 202);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, q, _) = call(
        &srv,
        "GET",
        &format!("/v1/jobs/{}", queued["id"].as_str().unwrap()),
        key,
        None,
    )
    .await;
    assert_eq!(
        q["status"], "queued",
        "the tenant's running quota holds it back: {q}"
    );
    let (st, e, h) = call(&srv, "POST", "/v1/jobs", key, Some(&spec)).await;
    assert_eq!(st, 429, "{e}");
    assert!(h.get("retry-after").is_some());
    for j in [&running, &queued] {
        call(
            &srv,
            "POST",
            &format!("/v1/jobs/{}/cancel", j["id"].as_str().unwrap()),
            key,
            None,
        )
        .await;
    }
}

#[tokio::test]
async fn idempotency_keys_replay_the_first_answer() {
    let srv = Server::start(&[]).await;
    let body = json!({"dataset": circle(20), "layers": [{"units": 1}], "loss": "binary_crossentropy", "epochs": 1});
    let post = |key: &'static str, body: Value| {
        let c = srv.client.clone();
        let url = srv.url("/v1/jobs");
        async move {
            c.post(url)
                .header("idempotency-key", key)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let first = post("k-1", body.clone()).await;
    assert_eq!(first.status(), 202);
    let loc = first.headers()["location"].clone();
    let first: Value = first.json().await.unwrap();
    let again = post("k-1", body.clone()).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["location"], loc);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    let (_, jobs) = srv.get("/v1/jobs").await;
    assert_eq!(jobs["items"].as_array().unwrap().len(), 1, "created once");
    let (_, ds) = srv.get("/v1/datasets").await;
    assert_eq!(
        ds["items"].as_array().unwrap().len(),
        1,
        "the inline dataset once too"
    );
    let mut other = body.clone();
    other["epochs"] = json!(2);
    let conflict = post("k-1", other).await;
    assert_eq!(conflict.status(), 409);
    assert_eq!(post("k-2", body.clone()).await.status(), 202);

    let up = |key: &'static str| {
        srv.client
            .post(srv.url("/v1/datasets?name=x"))
            .header("idempotency-key", key)
            .json(&circle(10))
            .send()
    };
    let a: Value = up("d-1").await.unwrap().json().await.unwrap();
    let b: Value = up("d-1").await.unwrap().json().await.unwrap();
    assert_eq!(a["id"], b["id"]);
}

#[tokio::test]
async fn keys_file_cli_and_open_mode_rules() {
    let bin = env!("CARGO_BIN_EXE_backprop");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin)
        .args([
            "keys",
            "create",
            "--tenant",
            "acme",
            "--role",
            "trainer",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(secret.starts_with("bp_") && secret.len() > 40);
    let file = std::fs::read_to_string(dir.path().join("keys.json")).unwrap();
    assert!(!file.contains(&secret), "only the hash is stored");
    let list = Command::new(bin)
        .args(["keys", "list", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    // A header row, then one row per key.
    assert!(list.starts_with("ID\tTENANT\tROLE"), "{list}");
    let key_id = list
        .lines()
        .nth(1)
        .and_then(|row| row.split_whitespace().next())
        .unwrap()
        .to_string();
    assert!(list.contains("acme") && list.contains("trainer") && list.contains("active"));

    let keys_file = dir.path().join("keys.json").display().to_string();
    let srv = Server::start(&["--keys-file", &keys_file]).await;
    assert_eq!(
        call(&srv, "GET", "/v1/jobs", Some(&secret), None).await.0,
        200
    );
    assert_eq!(call(&srv, "GET", "/v1/jobs", None, None).await.0, 401);
    assert!(
        Command::new(bin)
            .args(["keys", "revoke", &key_id, "--data-dir"])
            .arg(dir.path())
            .status()
            .unwrap()
            .success()
    );
    let mut revoked = false;
    for _ in 0..60 {
        if call(&srv, "GET", "/v1/jobs", Some(&secret), None).await.0 == 401 {
            revoked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(revoked, "a revoked key stops working within seconds");

    // No keys on a non-loopback address: refused, unless explicitly insecure.
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(bin)
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(data.path())
        .env_remove("BACKPROP_API_KEYS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure-no-auth"));
}

#[tokio::test]
async fn metrics_can_want_their_own_token() {
    let srv = Server::start(&["--api-keys", KEYS, "--metrics-token", "scrape-me"]).await;
    assert_eq!(
        srv.client
            .get(srv.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let r = srv
        .client
        .get(srv.url("/metrics"))
        .bearer_auth("scrape-me")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        srv.client
            .get(srv.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        srv.client
            .get(srv.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
