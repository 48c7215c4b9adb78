//! Named deployments over real HTTP: pointing a name at a model, versions and rollback, the
//! 409 on deleting a deployed model, tenants and roles, and the switch under load (clients
//! hammering predict and infer by name while the name flips between two models: no request
//! fails, and every answer is one of the two models' answers).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::Server;
use serde_json::{Value, json};

const KEYS: &str = "acme:admin:acme-admin-secret,acme:predictor:acme-predict-secret,beta:trainer:beta-train-secret";
const ADMIN: &str = "acme-admin-secret";
const PREDICTOR: &str = "acme-predict-secret";
const BETA: &str = "beta-train-secret";

/// A two-input, two-class softmax classifier whose weights are scaled by `k` (so two values
/// of `k` give two models with different answers).
fn classifier(k: f32) -> Value {
    json!({
        "input_dim": 2,
        "layers": [
            {"units": 3, "activation": "tanh", "weights": [[k, -0.5, 0.25], [0.5, k, -1.0]], "bias": [0.1, 0.0, -0.1]},
            {"units": 2, "activation": "softmax", "weights": [[1.0, -1.0], [-0.5, 0.5], [0.3, 0.2]], "bias": [0.0, 0.1]}
        ],
        "classes": ["no", "yes"],
        "class_encoding": "categorical",
        "standardization": {"mean": [0.5, -0.5], "std": [2.0, 0.5]}
    })
}

async fn import(srv: &Server, key: &str, doc: &Value) -> String {
    srv.ok("POST", "/v1/models", key, Some(doc)).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

const ROWS: [[f32; 2]; 3] = [[0.0, 0.0], [1.5, -2.0], [-3.0, 0.25]];

async fn predict_by_id(srv: &Server, key: &str, id: &str) -> Value {
    srv.ok(
        "POST",
        &format!("/v1/models/{id}/predict"),
        key,
        Some(&json!({"inputs": ROWS})),
    )
    .await
}

async fn by_name(srv: &Server, name: &str) -> Value {
    srv.ok(
        "POST",
        &format!("/v1/deployments/{name}/predict"),
        PREDICTOR,
        Some(&json!({"inputs": ROWS})),
    )
    .await
}

#[tokio::test]
async fn a_name_points_at_one_model_at_a_time_with_versions_and_rollback() {
    let srv = Server::start(&["--api-keys", KEYS]).await;
    let a = import(&srv, ADMIN, &classifier(1.0)).await;
    let b = import(&srv, ADMIN, &classifier(-2.0)).await;
    let (pa, pb) = (
        predict_by_id(&srv, ADMIN, &a).await,
        predict_by_id(&srv, ADMIN, &b).await,
    );
    assert_ne!(pa["outputs"], pb["outputs"], "the two models must differ");

    // A new name is created (201) at version 1; pointing it again is version 2 (200).
    let (st, d) = srv
        .call(
            "PUT",
            "/v1/deployments/iris",
            ADMIN,
            Some(&json!({"model_id": a})),
        )
        .await;
    assert_eq!(st, 201, "{d}");
    assert_eq!(
        (d["name"].as_str(), d["version"].as_i64()),
        (Some("iris"), Some(1))
    );
    assert_eq!(d["model_id"], a.as_str());
    let p = by_name(&srv, "iris").await;
    assert_eq!(p["outputs"], pa["outputs"]);
    assert_eq!(p["labels"], pa["labels"]);
    assert_eq!(
        (p["model_id"].as_str(), p["version"].as_i64()),
        (Some(a.as_str()), Some(1))
    );
    assert_eq!(p["deployment"], "iris");

    let (st, d) = srv
        .call(
            "PUT",
            "/v1/deployments/iris",
            ADMIN,
            Some(&json!({"model_id": b})),
        )
        .await;
    assert_eq!(st, 200, "{d}");
    assert_eq!(d["version"], 2);
    assert_eq!(by_name(&srv, "iris").await["outputs"], pb["outputs"]);

    // The history, newest first; the list.
    let d = srv.ok("GET", "/v1/deployments/iris", PREDICTOR, None).await;
    assert_eq!(d["version"], 2);
    let versions: Vec<(i64, String)> = d["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_i64().unwrap(),
                v["model_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(versions, vec![(2, b.clone()), (1, a.clone())]);
    let list = srv.ok("GET", "/v1/deployments", PREDICTOR, None).await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["name"], "iris");
    assert_eq!(list["items"][0]["model_id"], b.as_str());

    // Rollback points back at the previous version's model as a new version; twice returns.
    let d = srv
        .ok("POST", "/v1/deployments/iris/rollback", ADMIN, None)
        .await;
    assert_eq!(
        (d["version"].as_i64(), d["model_id"].as_str()),
        (Some(3), Some(a.as_str()))
    );
    assert_eq!(by_name(&srv, "iris").await["outputs"], pa["outputs"]);
    let d = srv
        .ok(
            "POST",
            "/v1/deployments/iris/rollback",
            ADMIN,
            Some(&json!({})),
        )
        .await;
    assert_eq!(
        (d["version"].as_i64(), d["model_id"].as_str()),
        (Some(4), Some(b.as_str()))
    );
    let d = srv
        .ok(
            "POST",
            "/v1/deployments/iris/rollback",
            ADMIN,
            Some(&json!({"version": 1})),
        )
        .await;
    assert_eq!(
        (d["version"].as_i64(), d["model_id"].as_str()),
        (Some(5), Some(a.as_str()))
    );
    let (st, e) = srv
        .call(
            "POST",
            "/v1/deployments/iris/rollback",
            ADMIN,
            Some(&json!({"version": 9})),
        )
        .await;
    assert_eq!((st, e["pointer"].as_str()), (422, Some("/version")), "{e}");

    // The deployed model cannot be deleted: 409 naming the deployment. The other one can.
    let (st, e) = srv
        .call("DELETE", &format!("/v1/models/{a}"), ADMIN, None)
        .await;
    assert_eq!(st, 409, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("\"iris\""), "{e}");
    let (st, _) = srv
        .call("DELETE", &format!("/v1/models/{b}"), ADMIN, None)
        .await;
    assert_eq!(st, 204);
    // Rolling back to the deleted model's version is a conflict that says so.
    let (st, e) = srv
        .call("POST", "/v1/deployments/iris/rollback", ADMIN, None)
        .await;
    assert_eq!(st, 409, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("deleted"), "{e}");
    assert_eq!(by_name(&srv, "iris").await["outputs"], pa["outputs"]);

    // Deleting the name leaves the model.
    let (st, _) = srv
        .call("DELETE", "/v1/deployments/iris", ADMIN, None)
        .await;
    assert_eq!(st, 204);
    let (st, _) = srv.call("GET", "/v1/deployments/iris", ADMIN, None).await;
    assert_eq!(st, 404);
    let (st, _) = srv
        .call(
            "POST",
            "/v1/deployments/iris/predict",
            ADMIN,
            Some(&json!({"inputs": ROWS})),
        )
        .await;
    assert_eq!(st, 404);
    srv.ok("GET", &format!("/v1/models/{a}"), ADMIN, None).await;
    let (st, _) = srv
        .call("DELETE", "/v1/deployments/iris", ADMIN, None)
        .await;
    assert_eq!(st, 404);
    let (st, _) = srv
        .call("DELETE", &format!("/v1/models/{a}"), ADMIN, None)
        .await;
    assert_eq!(st, 204);
}

#[tokio::test]
async fn bad_names_and_bodies_are_refused_at_their_field() {
    let srv = Server::start(&["--api-keys", KEYS]).await;
    let a = import(&srv, ADMIN, &classifier(1.0)).await;
    let put = |name: String, body: Value| {
        let srv = &srv;
        async move {
            srv.call(
                "PUT",
                &format!("/v1/deployments/{name}"),
                ADMIN,
                Some(&body),
            )
            .await
        }
    };
    for name in [
        "-lead".to_string(),
        "a.b".into(),
        "x".repeat(64),
        "a%20b".into(),
    ] {
        let (st, e) = put(name.clone(), json!({"model_id": a})).await;
        assert_eq!(
            (st, e["pointer"].as_str()),
            (422, Some("/name")),
            "{name}: {e}"
        );
    }
    let (st, _) = put("x".repeat(63), json!({"model_id": a})).await;
    assert_eq!(st, 201);
    let (st, e) = put(
        "iris".into(),
        json!({"model_id": "6f1c3f8e-7a4e-4c36-9f7e-2d1d2b9e8c11"}),
    )
    .await;
    assert_eq!((st, e["pointer"].as_str()), (422, Some("/model_id")), "{e}");
    let (st, e) = put("iris".into(), json!({"model_id": "not-a-uuid"})).await;
    assert!(st == 422 || st == 400, "{st} {e}");
    assert_eq!(e["pointer"], "/model_id", "{e}");
    let (st, e) = put("iris".into(), json!({"model_id": a, "extra": 1})).await;
    assert!(st == 422 || st == 400, "{st} {e}");
    let (st, e) = put("iris".into(), json!({})).await;
    assert!(st == 422 || st == 400, "{st} {e}");
    // A name with nothing deployed has no rollback.
    put("iris".into(), json!({"model_id": a})).await;
    let (st, e) = srv
        .call("POST", "/v1/deployments/iris/rollback", ADMIN, None)
        .await;
    assert_eq!(st, 409, "{e}");
    let (st, e) = srv
        .call("POST", "/v1/deployments/nope/rollback", ADMIN, None)
        .await;
    assert_eq!(st, 404, "{e}");
}

#[tokio::test]
async fn tenants_are_apart_and_a_predictor_cannot_change_a_deployment() {
    let srv = Server::start(&["--api-keys", KEYS]).await;
    let a = import(&srv, ADMIN, &classifier(1.0)).await;
    let b = import(&srv, ADMIN, &classifier(-2.0)).await;
    srv.ok(
        "PUT",
        "/v1/deployments/iris",
        ADMIN,
        Some(&json!({"model_id": a})),
    )
    .await;
    srv.ok(
        "PUT",
        "/v1/deployments/iris",
        ADMIN,
        Some(&json!({"model_id": b})),
    )
    .await;

    // A predictor key reads and predicts but changes nothing.
    srv.ok("GET", "/v1/deployments/iris", PREDICTOR, None).await;
    srv.ok(
        "POST",
        "/v1/deployments/iris/predict",
        PREDICTOR,
        Some(&json!({"inputs": ROWS})),
    )
    .await;
    for (method, path, body) in [
        ("PUT", "/v1/deployments/iris", Some(json!({"model_id": a}))),
        ("PUT", "/v1/deployments/other", Some(json!({"model_id": a}))),
        ("DELETE", "/v1/deployments/iris", None),
        ("POST", "/v1/deployments/iris/rollback", None),
    ] {
        let (st, e) = srv.call(method, path, PREDICTOR, body.as_ref()).await;
        assert_eq!(st, 403, "{method} {path}: {e}");
    }
    assert_eq!(
        srv.ok("GET", "/v1/deployments/iris", ADMIN, None).await["version"],
        2
    );

    // Another tenant: 404 for everything of acme's, an empty list, and a model of acme's
    // cannot be deployed by name of its id.
    for (method, path, body) in [
        ("GET", "/v1/deployments/iris", None),
        ("DELETE", "/v1/deployments/iris", None),
        ("POST", "/v1/deployments/iris/rollback", None),
        (
            "POST",
            "/v1/deployments/iris/predict",
            Some(json!({"inputs": ROWS})),
        ),
    ] {
        let (st, e) = srv.call(method, path, BETA, body.as_ref()).await;
        assert_eq!(st, 404, "{method} {path}: {e}");
    }
    let list = srv.ok("GET", "/v1/deployments", BETA, None).await;
    assert_eq!(
        (
            list["total"].as_i64(),
            list["items"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );
    let (st, e) = srv
        .call(
            "PUT",
            "/v1/deployments/iris",
            BETA,
            Some(&json!({"model_id": a})),
        )
        .await;
    assert_eq!((st, e["pointer"].as_str()), (422, Some("/model_id")), "{e}");
    // Beta's own "iris" is another deployment.
    let c = import(&srv, BETA, &classifier(3.0)).await;
    let (st, d) = srv
        .call(
            "PUT",
            "/v1/deployments/iris",
            BETA,
            Some(&json!({"model_id": c})),
        )
        .await;
    assert_eq!((st, d["version"].as_i64()), (201, Some(1)), "{d}");
    let p = srv
        .ok(
            "POST",
            "/v1/deployments/iris/predict",
            PREDICTOR,
            Some(&json!({"inputs": ROWS})),
        )
        .await;
    assert_eq!(
        p["model_id"],
        b.as_str(),
        "acme's iris still answers with acme's model"
    );
}

#[tokio::test]
async fn the_switch_is_atomic_while_clients_hammer_the_name() {
    let srv = Arc::new(Server::start(&["--api-keys", KEYS]).await);
    let a = import(&srv, ADMIN, &classifier(1.0)).await;
    let b = import(&srv, ADMIN, &classifier(-2.0)).await;
    let (pa, pb) = (
        predict_by_id(&srv, ADMIN, &a).await["outputs"].clone(),
        predict_by_id(&srv, ADMIN, &b).await["outputs"].clone(),
    );
    assert_ne!(pa, pb);
    srv.ok(
        "PUT",
        "/v1/deployments/flip",
        ADMIN,
        Some(&json!({"model_id": a})),
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = vec![];
    for c in 0..6 {
        let (srv, stop) = (srv.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            // Half the clients speak Backprop's predict, half v2 infer.
            let mut answers: Vec<(u16, Value)> = vec![];
            while !stop.load(Ordering::Relaxed) {
                let (st, v) = if c % 2 == 0 {
                    let (st, v) = srv
                        .call(
                            "POST",
                            "/v1/deployments/flip/predict",
                            PREDICTOR,
                            Some(&json!({"inputs": ROWS})),
                        )
                        .await;
                    (st, v["outputs"].clone())
                } else {
                    let body = json!({"inputs": [{"name": "input", "shape": [3, 2],
                        "datatype": "FP32", "data": ROWS}]});
                    let (st, v) = srv
                        .call("POST", "/v2/models/flip/infer", PREDICTOR, Some(&body))
                        .await;
                    // Back into rows of two, as predict answers them.
                    let rows: Vec<Value> = v["outputs"][0]["data"]
                        .as_array()
                        .map(|d| d.chunks(2).map(|r| json!(r)).collect())
                        .unwrap_or_default();
                    (st, if st == 200 { json!(rows) } else { v })
                };
                answers.push((st, v));
            }
            answers
        }));
    }
    for i in 0..60 {
        let to = if i % 2 == 0 { &b } else { &a };
        srv.ok(
            "PUT",
            "/v1/deployments/flip",
            ADMIN,
            Some(&json!({"model_id": to})),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (mut seen_a, mut seen_b, mut total) = (0, 0, 0);
    for c in clients {
        for (st, v) in c.await.unwrap() {
            total += 1;
            assert_eq!(st, 200, "a request failed during the switch: {v}");
            if v == pa {
                seen_a += 1;
            } else if v == pb {
                seen_b += 1;
            } else {
                panic!("an answer from neither model: {v}");
            }
        }
    }
    println!("{total} answers: {seen_a} from a, {seen_b} from b");
    assert!(
        seen_a > 0 && seen_b > 0,
        "both models answered: {seen_a} {seen_b}"
    );
    let d = srv.ok("GET", "/v1/deployments/flip", ADMIN, None).await;
    assert_eq!(d["version"], 61);
}

/// Two nodes on one PostgreSQL database (`BACKPROP_TEST_POSTGRES_URL`; skipped without it):
/// a switch made on one node is answered by the other within the cache's second, the 409 on
/// a deployed model holds across nodes, and switches made on both at once each get their
/// own version.
#[tokio::test]
async fn two_nodes_on_postgres_see_a_switch_within_a_second() {
    let Some(schema) = common::Schema::create().await else {
        return;
    };
    let args = ["--api-keys", KEYS, "--database-url", &schema.url];
    let (one, two) = (Server::start(&args).await, Server::start(&args).await);
    let a = import(&one, ADMIN, &classifier(1.0)).await;
    let b = import(&one, ADMIN, &classifier(-2.0)).await;
    one.ok(
        "PUT",
        "/v1/deployments/iris",
        ADMIN,
        Some(&json!({"model_id": a})),
    )
    .await;
    assert_eq!(by_name(&two, "iris").await["model_id"], a.as_str());
    one.ok(
        "PUT",
        "/v1/deployments/iris",
        ADMIN,
        Some(&json!({"model_id": b})),
    )
    .await;
    // The node that switched answers with the new model at once; the other within ~1 s.
    assert_eq!(by_name(&one, "iris").await["model_id"], b.as_str());
    let t0 = std::time::Instant::now();
    loop {
        if by_name(&two, "iris").await["model_id"] == b.as_str() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_millis(2500),
            "the other node still answers with the old model after {:?}",
            t0.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "the other node answered with the new model after {:?}",
        t0.elapsed()
    );
    let (st, e) = two
        .call("DELETE", &format!("/v1/models/{b}"), ADMIN, None)
        .await;
    assert_eq!(st, 409, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("\"iris\""), "{e}");

    // Switches from both nodes at once: every one is a version of its own.
    let mut tasks = vec![];
    for i in 0..20 {
        let (base, to) = (
            if i % 2 == 0 {
                one.base.clone()
            } else {
                two.base.clone()
            },
            if i % 3 == 0 { a.clone() } else { b.clone() },
        );
        tasks.push(tokio::spawn(async move {
            let r = reqwest::Client::new()
                .put(format!("{base}/v1/deployments/iris"))
                .bearer_auth(ADMIN)
                .json(&json!({"model_id": to}))
                .send()
                .await
                .unwrap();
            let st = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            assert_eq!(st, 200, "{v}");
            v["version"].as_i64().unwrap()
        }));
    }
    let mut versions = vec![];
    for t in tasks {
        versions.push(t.await.unwrap());
    }
    versions.sort();
    assert_eq!(versions, (3..=22).collect::<Vec<i64>>());
    let d = two.ok("GET", "/v1/deployments/iris", ADMIN, None).await;
    assert_eq!(d["version"], 22);
}
