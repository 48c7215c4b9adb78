//! The dashboard's static files and the two API routes it added: `GET /v1/datasets/{id}/rows`
//! (the points it plots) and `POST /v1/jobs/{id}/predict` (a running job's latest weights,
//! for the decision boundary). Real binary, real HTTP.

mod common;

use std::time::Duration;

use common::{Server, circle, split};
use serde_json::{Value, json};

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
}

#[tokio::test]
async fn the_dashboard_is_served_with_a_strict_policy_and_without_a_key() {
    // With keys configured the API wants one, but the page that asks for it does not.
    let srv = Server::start(&["--api-keys", "acme:admin:s3cret-admin"]).await;
    let r = srv.client.get(srv.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
    let csp = header(&r, "content-security-policy").to_string();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="/ui/app.js"></script>"#));
    // The policy forbids inline code, so the page must have none.
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert!(
        !html.contains("style=") && !html.contains("<style"),
        "{html}"
    );
    // No inline event handlers (` onclick=`, ` onload=`, …) either.
    let handlers = html.split(" on").skip(1).filter(|rest| {
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase())
            .collect();
        !name.is_empty() && rest[name.len()..].starts_with('=')
    });
    assert_eq!(handlers.count(), 0, "{html}");
    let (st, _) = srv.get("/v1/jobs").await;
    assert_eq!(st, 401);
}

#[tokio::test]
async fn assets_have_their_content_types_and_etags_and_unknown_ones_are_404() {
    let srv = Server::start(&[]).await;
    for (path, ctype) in [
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/api.js", "text/javascript; charset=utf-8"),
        ("/ui/charts.js", "text/javascript; charset=utf-8"),
        ("/ui/style.css", "text/css; charset=utf-8"),
        ("/ui/icon.svg", "image/svg+xml"),
        ("/ui/index.html", "text/html; charset=utf-8"),
    ] {
        let r = srv.client.get(srv.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(header(&r, "content-type"), ctype, "{path}");
        assert_eq!(header(&r, "cache-control"), "no-cache", "{path}");
        let etag = header(&r, "etag").to_string();
        assert!(etag.starts_with('"') && etag.len() == 34, "{path}: {etag}");
        assert!(!r.bytes().await.unwrap().is_empty());
        // Revalidation: the same tag answers 304 with no body; another answers the file.
        let r = srv
            .client
            .get(srv.url(path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 304, "{path}");
        assert_eq!(header(&r, "etag"), etag);
        assert!(r.bytes().await.unwrap().is_empty());
        let r = srv
            .client
            .get(srv.url(path))
            .header("if-none-match", "\"stale\"")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // Modules import each other by these names; a typo would be a blank page.
    let (_, app) = srv.get("/ui/app.js").await;
    let app = app.as_str().unwrap().to_string();
    assert!(app.contains("from './api.js'") && app.contains("from './charts.js'"));

    for path in ["/ui/nope.js", "/ui/..%2Fmod.rs", "/ui/app.js.map"] {
        let r = srv.client.get(srv.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(header(&r, "content-type"), "application/problem+json");
    }
}

async fn upload(srv: &Server, body: &Value) -> String {
    let (st, d) = srv.post("/v1/datasets", body).await;
    assert_eq!(st, 201, "{d}");
    d["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn dataset_rows_come_back_as_uploaded_a_page_at_a_time() {
    let srv = Server::start(&[]).await;
    let r = srv
        .post_raw(
            "/v1/datasets?name=pts&target=label",
            "text/csv",
            "x,y,label\n0.5,1.25,red\n-1,2,blue\n3,-0.1,red\n",
        )
        .await;
    assert_eq!(r.status(), 201);
    let (_, d) = split(r).await;
    let id = d["id"].as_str().unwrap();

    let (st, rows) = srv.get(&format!("/v1/datasets/{id}/rows")).await;
    assert_eq!(st, 200, "{rows}");
    assert_eq!(rows["total"], 3);
    assert_eq!(rows["offset"], 0);
    assert_eq!(rows["feature_names"], json!(["x", "y"]));
    assert_eq!(rows["target_names"], json!(["label"]));
    assert_eq!(
        rows["rows"],
        json!([
            {"features": [0.5, 1.25], "target": "red"},
            {"features": [-1.0, 2.0], "target": "blue"},
            {"features": [3.0, -0.1], "target": "red"},
        ])
    );
    let (_, page) = srv
        .get(&format!("/v1/datasets/{id}/rows?offset=1&limit=1"))
        .await;
    assert_eq!(
        page["rows"],
        json!([{"features": [-1.0, 2.0], "target": "blue"}])
    );
    let (st, past) = srv.get(&format!("/v1/datasets/{id}/rows?offset=10")).await;
    assert_eq!(st, 200);
    assert_eq!(past["rows"], json!([]));

    for (q, pointer) in [
        ("limit=0", "/limit"),
        ("limit=10001", "/limit"),
        ("offset=-1", "/offset"),
    ] {
        let (st, p) = srv.get(&format!("/v1/datasets/{id}/rows?{q}")).await;
        assert_eq!(st, 422, "{q}: {p}");
        assert_eq!(p["pointer"], pointer, "{q}: {p}");
    }
    let (st, _) = srv.get(&format!("/v1/datasets/{id}/rows?row=1")).await;
    assert_eq!(st, 400);
    let (st, _) = srv
        .get("/v1/datasets/00000000-0000-4000-8000-000000000000/rows")
        .await;
    assert_eq!(st, 404);
}

fn circle_spec(dataset: &str, epochs: u32) -> Value {
    json!({
        "dataset_id": dataset,
        "layers": [{"units": 8, "activation": "tanh"}, {"units": 1, "activation": "sigmoid"}],
        "loss": "binary_crossentropy",
        "optimizer": {"type": "adam", "learning_rate": 0.01},
        "epochs": epochs, "batch_size": 16, "seed": 11,
    })
}

#[tokio::test]
async fn a_job_predicts_with_its_latest_checkpoint_while_it_trains_then_with_its_model() {
    // A checkpoint after every epoch, so one exists as soon as an epoch has finished.
    let srv = Server::start(&["--checkpoint-secs", "0"]).await;
    let ds = upload(&srv, &circle(200)).await;
    let grid = json!({"inputs": [[0.0, 0.0], [1.9, 1.9], [-0.2, 0.3]]});

    let (st, p) = srv
        .post(
            "/v1/jobs/00000000-0000-4000-8000-000000000000/predict",
            &grid,
        )
        .await;
    assert_eq!(st, 404, "{p}");
    let (st, _) = srv.post("/v1/jobs/not-a-uuid/predict", &grid).await;
    assert_eq!(st, 404);

    let (_, long) = srv.post("/v1/jobs", &circle_spec(&ds, 100_000)).await;
    let long = long["id"].as_str().unwrap().to_string();
    srv.wait_epoch(&long, 3, Duration::from_secs(30)).await;
    let (st, p) = srv.post(&format!("/v1/jobs/{long}/predict"), &grid).await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["source"], "checkpoint");
    assert_eq!(p["job_id"], long.as_str());
    let epoch = p["epoch"].as_i64().unwrap();
    assert!(epoch >= 1, "{p}");
    let outputs = p["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 3);
    for (o, label) in outputs.iter().zip(p["labels"].as_array().unwrap()) {
        let y = o[0].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&y), "{p}");
        assert_eq!(label.as_i64().unwrap(), (y >= 0.5) as i64, "{p}");
    }

    // Rows are checked as for a model: the problem names the row or value.
    let (st, e) = srv
        .post(
            &format!("/v1/jobs/{long}/predict"),
            &json!({"inputs": [[0.0, 0.0], [1.0]]}),
        )
        .await;
    assert_eq!(st, 422, "{e}");
    assert_eq!(e["pointer"], "/inputs/1");
    let (st, e) = srv
        .post(&format!("/v1/jobs/{long}/predict"), &json!({"inputs": []}))
        .await;
    assert_eq!(st, 422, "{e}");
    assert_eq!(e["pointer"], "/inputs");
    let (st, e) = srv
        .post(&format!("/v1/jobs/{long}/predict"), &json!({"rows": []}))
        .await;
    assert_eq!(st, 422, "{e}");
    let (st, _) = srv
        .post(
            &format!("/v1/jobs/{long}/predict"),
            &json!({"inputs": [[1e39, 0]]}),
        )
        .await;
    assert_eq!(st, 422);

    // The checkpoint's weights are exactly those of the same run stopped at that epoch:
    // the same spec and seed trained for `epoch` epochs gives the same outputs.
    let (_, short) = srv.post("/v1/jobs", &circle_spec(&ds, epoch as u32)).await;
    let short = srv
        .wait_job(short["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(short["status"], "succeeded", "{short}");
    let model = short["model_id"].as_str().unwrap();
    let (_, m) = srv
        .post(&format!("/v1/models/{model}/predict"), &grid)
        .await;
    assert_eq!(m["outputs"], p["outputs"], "checkpoint {p} vs model {m}");

    // A finished job predicts with its model.
    let (st, f) = srv
        .post(
            &format!("/v1/jobs/{}/predict", short["id"].as_str().unwrap()),
            &grid,
        )
        .await;
    assert_eq!(st, 200, "{f}");
    assert_eq!(f["source"], "model");
    assert_eq!(f["model_id"], model);
    assert_eq!(f["epoch"], epoch);
    assert_eq!(f["outputs"], m["outputs"]);

    let (st, _) = srv
        .post(&format!("/v1/jobs/{long}/cancel"), &json!({}))
        .await;
    assert_eq!(st, 202);
    srv.wait_job(&long, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_job_without_weights_yet_is_a_conflict() {
    // An API-only node never trains, so the job stays queued without a checkpoint.
    let srv = Server::start(&["--no-workers"]).await;
    let ds = upload(&srv, &circle(20)).await;
    let (_, j) = srv.post("/v1/jobs", &circle_spec(&ds, 5)).await;
    let id = j["id"].as_str().unwrap();
    let (st, p) = srv
        .post(
            &format!("/v1/jobs/{id}/predict"),
            &json!({"inputs": [[0, 0]]}),
        )
        .await;
    assert_eq!(st, 409, "{p}");
    assert_eq!(p["type"], "/problems/conflict");
    assert!(
        p["detail"].as_str().unwrap().contains("no weights yet"),
        "{p}"
    );
    // A malformed body is still a 400 first.
    let r = srv
        .post_raw(&format!("/v1/jobs/{id}/predict"), "application/json", "{")
        .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn a_predictor_key_cannot_read_a_jobs_weights() {
    let srv = Server::start(&[
        "--api-keys",
        "acme:trainer:trainer-secret,acme:predictor:predictor-secret",
    ])
    .await;
    let (st, _) = split(
        srv.client
            .post(srv.url("/v1/jobs/00000000-0000-4000-8000-000000000000/predict"))
            .bearer_auth("predictor-secret")
            .json(&json!({"inputs": [[0, 0]]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 403);
}
