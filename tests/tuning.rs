//! Better models than one hand-picked spec (issue 14), over real HTTP: evaluating a model on
//! a dataset (against hand-computed metrics, and scikit-learn's through tests/interop), the
//! evaluation kept with every trained model, warm starts, continuing a job, and the
//! learning-rate range test.

mod common;

use std::time::Duration;

use common::{Schema, Server, circle, wait_sweep};
use serde_json::{Value, json};

const KEYS: &str = "acme:trainer:acme-train,acme:predictor:acme-predict,beta:trainer:beta-train";
const ACME: &str = "acme-train";
const BETA: &str = "beta-train";

fn softplus(x: f64) -> f64 {
    (1.0 + x.exp()).ln()
}

fn close(a: &Value, b: f64, tol: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() <= tol)
}

/// Submits `spec` (202), waits for the job and checks it succeeded.
async fn train(srv: &Server, key: &str, spec: Value) -> Value {
    let (st, job) = srv.call("POST", "/v1/jobs", key, Some(&spec)).await;
    assert_eq!(st, 202, "{job}");
    let done = srv
        .wait_job_as(key, job["id"].as_str().unwrap(), Duration::from_secs(120))
        .await;
    assert_eq!(done["status"], "succeeded", "{done}\n{}", srv.log());
    done
}

/// A model's exported document.
async fn export(srv: &Server, id: &Value) -> Value {
    let id = id.as_str().unwrap();
    srv.ok("GET", &format!("/v1/models/{id}/export"), ACME, None)
        .await
}

/// Model `model`'s predictions for `rows` (200 required) and its exported document, after
/// checking the document imports as a model that answers the same outputs and exports the
/// same document again.
async fn predict_and_round_trip(srv: &Server, model: &str, rows: &Value) -> (Value, Value) {
    let (st, a) = srv.post(&format!("/v1/models/{model}/predict"), rows).await;
    assert_eq!(st, 200, "{a}");
    let doc = export(srv, &json!(model)).await;
    let again = srv.ok("POST", "/v1/models", "", Some(&doc)).await["id"].clone();
    let (_, b) = srv
        .post(
            &format!("/v1/models/{}/predict", again.as_str().unwrap()),
            rows,
        )
        .await;
    assert_eq!(a["outputs"], b["outputs"]);
    assert_eq!(export(srv, &again).await, doc);
    (a, doc)
}

/// A history with the timings (which differ run to run) taken out.
async fn history(srv: &Server, key: &str, job: &str) -> Vec<Value> {
    let h = srv
        .ok("GET", &format!("/v1/jobs/{job}/history"), key, None)
        .await;
    h["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let mut e = e.clone();
            let o = e.as_object_mut().unwrap();
            o.remove("elapsed_ms");
            o.remove("samples_per_second");
            e
        })
        .collect()
}

/// The perceptron p = σ(x) on six rows, by hand: predictions (p ≥ ½) 0 0 1 1 1 0 against
/// targets 0 1 1 1 0 0 → confusion [[2, 1], [1, 2]], accuracy 4/6, precision = recall = 2/3
/// for both classes; AUC: positives σ(−1), σ(1), σ(2) against negatives σ(−2), σ(½), σ(−½)
/// win 1 + 3 + 3 of 9 pairs; log loss = mean of softplus(±x) (−ln σ(x) = softplus(−x)).
/// The line y = 2x + 1 on four rows, targets off by 0, 0.5, −0.5, 1: R² = 1 − 1.5/SS_tot.
#[tokio::test]
async fn evaluation_matches_hand_computed_metrics_and_keeps_to_its_tenant() {
    let srv = Server::start(&["--api-keys", KEYS]).await;
    let perceptron = json!({"input_dim": 1, "classes": [0, 1], "feature_names": ["x"],
        "layers": [{"units": 1, "activation": "sigmoid", "weights": [[1.0]], "bias": [0.0]}]});
    let m = srv.ok("POST", "/v1/models", ACME, Some(&perceptron)).await;
    let mid = m["id"].as_str().unwrap().to_string();
    let xs = [-2.0, -1.0, 1.0, 2.0, 0.5, -0.5];
    let ds = srv
        .ok(
            "POST",
            "/v1/datasets",
            ACME,
            Some(
                &json!({"features": xs.iter().map(|x| vec![*x]).collect::<Vec<_>>(),
                "targets": [0, 1, 1, 1, 0, 0], "feature_names": ["x"]}),
            ),
        )
        .await;
    let did = ds["id"].as_str().unwrap().to_string();
    let path = format!("/v1/models/{mid}/evaluate");
    let e = srv
        .ok("POST", &path, ACME, Some(&json!({"dataset_id": did})))
        .await;
    assert_eq!(e["task"], "classification", "{e}");
    assert_eq!(e["rows"], 6);
    assert_eq!(e["confusion_matrix"]["labels"], json!([0, 1]));
    assert_eq!(e["confusion_matrix"]["matrix"], json!([[2, 1], [1, 2]]));
    assert!(close(&e["accuracy"], 4.0 / 6.0, 1e-12), "{e}");
    for c in e["per_class"].as_array().unwrap() {
        assert!(close(&c["precision"], 2.0 / 3.0, 1e-12), "{c}");
        assert!(close(&c["recall"], 2.0 / 3.0, 1e-12), "{c}");
        assert!(close(&c["f1"], 2.0 / 3.0, 1e-12), "{c}");
        assert_eq!(c["support"], 3);
    }
    assert!(close(&e["roc_auc"], 7.0 / 9.0, 1e-12), "{e}");
    let targets = [0, 1, 1, 1, 0, 0];
    let ll = xs
        .iter()
        .zip(targets)
        .map(|(&x, t)| if t == 1 { softplus(-x) } else { softplus(x) })
        .sum::<f64>()
        / 6.0;
    assert!(close(&e["log_loss"], ll, 1e-6), "{e} vs {ll}");
    let imp = e["permutation_importance"].as_array().unwrap();
    assert_eq!((imp.len(), &imp[0]["column"]), (1, &json!("x")));
    // The same seed shuffles the same way; the answer is deterministic.
    assert_eq!(
        srv.ok("POST", &path, ACME, Some(&json!({"dataset_id": did})))
            .await,
        e
    );

    // A regressor: y = 2x + 1 against targets off by 0, .5, −.5, 1.
    let line = json!({"input_dim": 1, "feature_names": ["x"],
        "layers": [{"units": 1, "activation": "linear", "weights": [[2.0]], "bias": [1.0]}]});
    let r = srv.ok("POST", "/v1/models", ACME, Some(&line)).await;
    let rid = r["id"].as_str().unwrap().to_string();
    let ys = [1.0, 3.5, 4.5, 8.0];
    let rd = srv
        .ok(
            "POST",
            "/v1/datasets",
            ACME,
            Some(&json!({"features": [[0.0], [1.0], [2.0], [3.0]], "targets": ys, "feature_names": ["x"]})),
        )
        .await;
    let rdid = rd["id"].as_str().unwrap().to_string();
    let e = srv
        .ok(
            "POST",
            &format!("/v1/models/{rid}/evaluate"),
            ACME,
            Some(&json!({"dataset_id": rdid})),
        )
        .await;
    let mean = ys.iter().sum::<f64>() / 4.0;
    let ss_tot: f64 = ys.iter().map(|y| (y - mean).powi(2)).sum();
    assert_eq!(e["task"], "regression", "{e}");
    assert!(close(&e["r2"], 1.0 - 1.5 / ss_tot, 1e-9), "{e}");
    assert!(close(&e["mae"], 2.0 / 4.0, 1e-9), "{e}");
    assert!(close(&e["rmse"], (1.5f64 / 4.0).sqrt(), 1e-9), "{e}");

    // Wrong inputs are 4xx naming the field; another tenant sees nothing.
    let (st, p) = srv
        .call("POST", &path, ACME, Some(&json!({"dataset_id": rdid})))
        .await;
    assert_eq!(st, 422, "{p}");
    assert_eq!(p["errors"][0]["pointer"], "/dataset_id", "{p}");
    let (st, p) = srv
        .call("POST", &path, ACME, Some(&json!({"dataset": rdid})))
        .await;
    assert_eq!(st, 422, "{p}");
    let missing = "6f9619ff-8b86-d011-b42d-00c04fc964ff";
    let (st, p) = srv
        .call("POST", &path, ACME, Some(&json!({"dataset_id": missing})))
        .await;
    assert_eq!(
        (st, &p["errors"][0]["pointer"]),
        (422, &json!("/dataset_id")),
        "{p}"
    );
    let (st, _) = srv
        .call("POST", &path, BETA, Some(&json!({"dataset_id": did})))
        .await;
    assert_eq!(st, 404, "another tenant's model");
    let bm = srv.ok("POST", "/v1/models", BETA, Some(&perceptron)).await;
    let (st, p) = srv
        .call(
            "POST",
            &format!("/v1/models/{}/evaluate", bm["id"].as_str().unwrap()),
            BETA,
            Some(&json!({"dataset_id": did})),
        )
        .await;
    assert_eq!(st, 422, "another tenant's dataset is no dataset: {p}");
    let (st, _) = srv
        .call(
            "POST",
            &path,
            "acme-predict",
            Some(&json!({"dataset_id": did})),
        )
        .await;
    assert_eq!(st, 403, "a predictor's key reads no dataset");
}

/// Every trained model carries its evaluation on the job's validation rows.
#[tokio::test]
async fn a_trained_model_keeps_its_evaluation_on_the_validation_split() {
    let srv = Server::start(&["--api-keys", KEYS]).await;
    let mut spec = json!({"dataset": circle(80), "layers": [{"units": 8, "activation": "tanh"}, {}],
        "loss": "binary_crossentropy", "epochs": 5, "validation_split": 0.25, "seed": 2});
    let done = train(&srv, ACME, spec.clone()).await;
    let m = srv
        .ok(
            "GET",
            &format!("/v1/models/{}", done["model_id"].as_str().unwrap()),
            ACME,
            None,
        )
        .await;
    let e = &m["metrics"]["evaluation"];
    assert_eq!(e["task"], "classification", "{m}");
    assert_eq!(e["rows"], 20);
    let cells: u64 = e["confusion_matrix"]["matrix"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()))
        .sum();
    assert_eq!(cells, 20);
    // Its accuracy is the last epoch's val_accuracy (the same rows, the same weights).
    assert!(
        close(
            &e["accuracy"],
            m["metrics"]["final"]["val_accuracy"].as_f64().unwrap(),
            1e-9
        ),
        "{m}"
    );
    // Without validation data there is nothing to evaluate on.
    spec["validation_split"] = json!(0.0);
    let done = train(&srv, ACME, spec).await;
    let m = srv
        .ok(
            "GET",
            &format!("/v1/models/{}", done["model_id"].as_str().unwrap()),
            ACME,
            None,
        )
        .await;
    assert_eq!(m["metrics"]["evaluation"], Value::Null, "{m}");
}

/// 10 epochs continued by 10 are one uninterrupted 20-epoch run: the same history and the
/// same final weights.
#[tokio::test]
async fn a_continued_job_reads_like_one_uninterrupted_job() {
    let srv = Server::start(&["--api-keys", KEYS]).await;
    let ds = srv
        .ok("POST", "/v1/datasets", ACME, Some(&circle(64)))
        .await;
    let spec = |epochs: u32| {
        json!({"dataset_id": ds["id"], "layers": [{"units": 6, "activation": "relu"}, {"dropout": 0.1}, {}],
            "loss": "binary_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.02},
            "epochs": epochs, "batch_size": 16, "validation_split": 0.25, "seed": 11,
            "lr_schedule": {"type": "step_decay", "drop": 0.5, "every": 7}})
    };
    let first = train(&srv, ACME, spec(10)).await;
    let a = first["id"].as_str().unwrap();
    let whole = train(&srv, ACME, spec(20)).await;
    let path = format!("/v1/jobs/{a}/continue");
    let (st, more) = srv
        .call("POST", &path, ACME, Some(&json!({"epochs": 10})))
        .await;
    assert_eq!(st, 202, "{more}");
    assert_eq!(
        (more["epoch"].as_i64(), more["epochs"].as_i64()),
        (Some(10), Some(20))
    );
    assert_eq!(more["spec"]["continues"], json!(a));
    let b = more["id"].as_str().unwrap().to_string();
    let done = srv.wait_job_as(ACME, &b, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let (hb, hw) = (
        history(&srv, ACME, &b).await,
        history(&srv, ACME, whole["id"].as_str().unwrap()).await,
    );
    assert_eq!(hb.len(), 20);
    assert_eq!(
        hb, hw,
        "a continued job's history is the uninterrupted job's"
    );
    assert_eq!(
        export(&srv, &done["model_id"]).await,
        export(&srv, &whole["model_id"]).await,
        "the same final weights"
    );

    // Only a succeeded job continues; the body is checked; tenancy holds.
    let (st, p) = srv
        .call("POST", &path, ACME, Some(&json!({"epochs": 0})))
        .await;
    assert_eq!(
        (st, &p["errors"][0]["pointer"]),
        (422, &json!("/epochs")),
        "{p}"
    );
    let (st, _) = srv
        .call("POST", &path, BETA, Some(&json!({"epochs": 1})))
        .await;
    assert_eq!(st, 404);
    let (st, _) = srv
        .call("POST", &path, "acme-predict", Some(&json!({"epochs": 1})))
        .await;
    assert_eq!(st, 403);
    let mut long = spec(100_000);
    long["batch_size"] = json!(1);
    let running = srv.ok("POST", "/v1/jobs", ACME, Some(&long)).await;
    let rid = running["id"].as_str().unwrap();
    let (st, p) = srv
        .call(
            "POST",
            &format!("/v1/jobs/{rid}/continue"),
            ACME,
            Some(&json!({"epochs": 1})),
        )
        .await;
    assert_eq!(st, 409, "{p}");
    srv.ok("POST", &format!("/v1/jobs/{rid}/cancel"), ACME, None)
        .await;
}

/// A job may start from a model's weights; the model must fit, and it cannot be deleted
/// while such a job waits or runs.
#[tokio::test]
async fn a_warm_start_takes_a_models_weights_and_protects_the_model() {
    let srv = Server::start(&["--api-keys", KEYS]).await;
    let ds = srv
        .ok("POST", "/v1/datasets", ACME, Some(&circle(48)))
        .await;
    let spec = json!({"dataset_id": ds["id"], "layers": [{"units": 5, "activation": "tanh"}, {}],
        "loss": "binary_crossentropy", "epochs": 8, "seed": 4, "batch_size": 8});
    let first = train(&srv, ACME, spec.clone()).await;
    let model = first["model_id"].as_str().unwrap().to_string();
    let trained = export(&srv, &json!(model)).await;

    // A learning rate too small to move anything: the warm job ends where the model was.
    let mut warm = spec.clone();
    warm["init_model_id"] = json!(model);
    warm["epochs"] = json!(1);
    warm["optimizer"] = json!({"type": "sgd", "learning_rate": 1e-30});
    let w = train(&srv, ACME, warm.clone()).await;
    assert_eq!(w["spec"]["init_model_id"], json!(model));
    let after = export(&srv, &w["model_id"]).await;
    assert_eq!(
        after["layers"], trained["layers"],
        "started from the model's weights"
    );
    let mut cold = warm.clone();
    cold.as_object_mut().unwrap().remove("init_model_id");
    let c = train(&srv, ACME, cold).await;
    assert!(
        w["metrics"]["loss"].as_f64().unwrap() < c["metrics"]["loss"].as_f64().unwrap(),
        "the warm start begins with a lower loss than a fresh network: {} vs {}",
        w["metrics"],
        c["metrics"]
    );

    // Another architecture, an unknown model, another tenant's model: 422 at the field.
    let mut other = warm.clone();
    other["layers"] = json!([{"units": 6, "activation": "tanh"}, {}]);
    let (st, p) = srv.call("POST", "/v1/jobs", ACME, Some(&other)).await;
    assert_eq!(st, 422, "{p}");
    assert_eq!(p["errors"][0]["pointer"], "/init_model_id", "{p}");
    assert!(
        p["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("architecture"),
        "{p}"
    );
    let beta_ds = srv
        .ok("POST", "/v1/datasets", BETA, Some(&circle(48)))
        .await;
    let mut theirs = warm.clone();
    theirs["dataset_id"] = beta_ds["id"].clone();
    let (st, p) = srv.call("POST", "/v1/jobs", BETA, Some(&theirs)).await;
    assert_eq!(
        (st, &p["errors"][0]["pointer"]),
        (422, &json!("/init_model_id")),
        "{p}"
    );

    // Deleting the model under a job that starts from it is a conflict naming the job.
    let mut long = warm.clone();
    long["epochs"] = json!(100_000);
    long["batch_size"] = json!(1);
    let job = srv.ok("POST", "/v1/jobs", ACME, Some(&long)).await;
    let jid = job["id"].as_str().unwrap();
    let (st, p) = srv
        .call("DELETE", &format!("/v1/models/{model}"), ACME, None)
        .await;
    assert_eq!(st, 409, "{p}");
    assert!(p["detail"].as_str().unwrap().contains(jid), "{p}");
    srv.ok("POST", &format!("/v1/jobs/{jid}/cancel"), ACME, None)
        .await;
    srv.wait_job_as(ACME, jid, Duration::from_secs(30)).await;
    let (st, _) = srv
        .call("DELETE", &format!("/v1/models/{model}"), ACME, None)
        .await;
    assert_eq!(st, 204);
}

/// Linear regression on a standardised input with plain SGD and MSE: the loss's Hessian is
/// 2·I, so gradient descent converges for rates below 1 and diverges above. The range test
/// must stop in the divergent region and suggest a rate below 1 that trains well.
#[tokio::test]
async fn the_range_test_finds_the_usable_rates_of_a_known_problem() {
    let srv = Server::start(&["--api-keys", KEYS]).await;
    let xs: Vec<f64> = (0..256)
        .map(|i| (i as f64 * 0.7).sin() * 3.0 + 1.0)
        .collect();
    let data = json!({"features": xs.iter().map(|x| vec![*x]).collect::<Vec<_>>(),
        "targets": xs.iter().map(|x| 3.0 * x - 1.0 + 0.01).collect::<Vec<_>>()});
    let ds = srv.ok("POST", "/v1/datasets", ACME, Some(&data)).await;
    let body = json!({"dataset_id": ds["id"], "layers": [{"units": 1}], "loss": "mse",
        "optimizer": "sgd", "batch_size": 32, "seed": 1,
        "range_test": {"start": 1e-5, "end": 100, "steps": 200}});
    let t = srv
        .ok("POST", "/v1/lr-range-tests", ACME, Some(&body))
        .await;
    assert_eq!(t["end"], "diverged", "{t}");
    let points = t["points"].as_array().unwrap();
    let last = points.last().unwrap()["learning_rate"].as_f64().unwrap();
    assert!((1.0..20.0).contains(&last), "stopped at {last}: {t}");
    let suggested = t["suggested"].as_f64().unwrap();
    assert!(
        (1e-3..1.0).contains(&suggested),
        "suggested {suggested}: {t}"
    );
    assert!(close(
        &t["minimum_over_10"],
        t["minimum"].as_f64().unwrap() / 10.0,
        1e-6
    ));
    // The same request measures the same curve.
    assert_eq!(
        srv.ok("POST", "/v1/lr-range-tests", ACME, Some(&body))
            .await,
        t
    );

    // "auto" runs the test first and trains at its suggestion.
    let mut job = body.clone();
    job.as_object_mut().unwrap().remove("range_test");
    job["optimizer"] = json!({"type": "sgd", "learning_rate": "auto"});
    job["epochs"] = json!(5);
    let done = train(&srv, ACME, job).await;
    assert_eq!(done["spec"]["optimizer"]["learning_rate"], "auto", "{done}");
    let chosen = done["lr_range_test"]["learning_rate"].as_f64().unwrap();
    assert!((1e-3..1.0).contains(&chosen), "{done}");
    let h = history(&srv, ACME, done["id"].as_str().unwrap()).await;
    assert!(
        close(&h[0]["learning_rate"], chosen, chosen * 1e-6),
        "{h:?}"
    );
    assert!(
        h[4]["loss"].as_f64().unwrap() < 0.01 * h[0]["loss"].as_f64().unwrap().max(1.0),
        "trains well at the suggested rate: {h:?}"
    );

    // Bad settings, no dataset, a predictor's key.
    let mut bad = body.clone();
    bad["range_test"]["steps"] = json!(1);
    let (st, p) = srv
        .call("POST", "/v1/lr-range-tests", ACME, Some(&bad))
        .await;
    assert_eq!(
        (st, &p["errors"][0]["pointer"]),
        (422, &json!("/range_test/steps")),
        "{p}"
    );
    let (st, p) = srv
        .call("POST", "/v1/lr-range-tests", BETA, Some(&body))
        .await;
    assert_eq!(
        (st, &p["errors"][0]["pointer"]),
        (422, &json!("/dataset_id")),
        "{p}"
    );
    let (st, _) = srv
        .call("POST", "/v1/lr-range-tests", "acme-predict", Some(&body))
        .await;
    assert_eq!(st, 403);
}

/// A grid of 3 learning rates × 2 widths with successive halving (3 epochs, then the best
/// third to 9): the hopeless rate is cut, two trials finish, the best is the lowest
/// validation loss among them, and the same sweep again picks the same trial and metric.
#[tokio::test]
async fn a_grid_sweep_halves_its_trials_and_picks_the_same_best_every_time() {
    let srv = Server::start(&["--api-keys", KEYS, "--max-concurrent-jobs", "3"]).await;
    let ds = srv
        .ok("POST", "/v1/datasets", ACME, Some(&circle(80)))
        .await;
    let body = json!({
        "dataset_id": ds["id"], "method": "grid", "seed": 3,
        "base": {"layers": [{"units": 8, "activation": "tanh"}, {}], "loss": "binary_crossentropy",
                 "epochs": 9, "batch_size": 16, "validation_split": 0.25, "seed": 5},
        "space": {"/optimizer/learning_rate": {"choice": [1e-6, 0.003, 0.03]},
                  "/layers/0/units": {"choice": [4, 16]}},
        "halving": {"min_epochs": 3, "eta": 3},
    });
    let (st, s) = srv.call("POST", "/v1/sweeps", ACME, Some(&body)).await;
    assert_eq!(st, 202, "{s}");
    assert_eq!(s["rungs"], json!([3, 9]));
    let done = wait_sweep(&srv, ACME, s["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let trials = done["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 6);
    let (full, cut): (Vec<&Value>, Vec<&Value>) = trials
        .iter()
        .partition(|t| !t["stopped_early"].as_bool().unwrap());
    assert_eq!((full.len(), cut.len()), (2, 4), "{done}");
    for t in &full {
        assert_eq!(
            (&t["status"], &t["epochs"]),
            (&json!("succeeded"), &json!(9)),
            "{t}"
        );
        assert_eq!(t["jobs"].as_array().unwrap().len(), 2);
    }
    for t in &cut {
        assert_eq!(t["epochs"], 3, "{t}");
    }
    for t in trials {
        if t["params"]["/optimizer/learning_rate"] == json!(1e-6) {
            assert!(
                t["stopped_early"].as_bool().unwrap(),
                "a rate of 1e-6 learns nothing in 3 epochs: {done}"
            );
        }
    }
    let best = &done["best"];
    let lowest = full
        .iter()
        .map(|t| t["metric"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(best["metric"].as_f64(), Some(lowest), "{done}");
    // The best trial's job is an ordinary job: it continues its rung-0 job, 9 epochs long.
    let job = srv
        .ok(
            "GET",
            &format!("/v1/jobs/{}", best["job_id"].as_str().unwrap()),
            ACME,
            None,
        )
        .await;
    assert_eq!(
        (job["epoch"].as_i64(), job["spec"]["continues"].is_string()),
        (Some(9), true)
    );
    assert_eq!(job["model_id"], best["model_id"]);

    // The same sweep again: the same best trial, the same metric, bit for bit.
    let again = srv.ok("POST", "/v1/sweeps", ACME, Some(&body)).await;
    let again = wait_sweep(&srv, ACME, again["id"].as_str().unwrap()).await;
    assert_eq!(again["best"]["params"], best["params"]);
    assert_eq!(again["best"]["metric"], best["metric"]);
    assert_eq!(again["best"]["trial"], best["trial"]);

    // Another trial's model deployed by name: deleting the sweep keeps it (a deletion never
    // breaks a name other services call; it answered 500 before).
    let other = full
        .iter()
        .find(|t| t["job_id"] != best["job_id"])
        .expect("a second trial");
    let other_job = srv
        .ok(
            "GET",
            &format!("/v1/jobs/{}", other["job_id"].as_str().unwrap()),
            ACME,
            None,
        )
        .await;
    let deployed = other_job["model_id"].as_str().expect("a model").to_string();
    srv.ok(
        "PUT",
        "/v1/deployments/kept-trial",
        ACME,
        Some(&json!({"model_id": deployed})),
    )
    .await;

    // Listed, then deleted with its trials (the best model stays).
    let list = srv.ok("GET", "/v1/sweeps", ACME, None).await;
    assert_eq!(list["total"], 2);
    let id = done["id"].as_str().unwrap();
    let (st, p) = srv
        .call("DELETE", &format!("/v1/sweeps/{id}"), ACME, None)
        .await;
    assert_eq!(st, 204, "{p}");
    srv.ok("GET", &format!("/v1/models/{deployed}"), ACME, None)
        .await;
    let d = srv
        .ok("GET", "/v1/deployments/kept-trial", ACME, None)
        .await;
    assert_eq!(d["model_id"], json!(deployed));
    let (st, _) = srv
        .call(
            "GET",
            &format!("/v1/jobs/{}", best["job_id"].as_str().unwrap()),
            ACME,
            None,
        )
        .await;
    assert_eq!(st, 404, "trial jobs go with the sweep");
    srv.ok(
        "GET",
        &format!("/v1/models/{}", best["model_id"].as_str().unwrap()),
        ACME,
        None,
    )
    .await;
}

/// Cancel, tenancy, roles, the dataset a sweep uses, and bad requests.
#[tokio::test]
async fn a_sweep_cancels_keeps_to_its_tenant_and_refuses_bad_spaces() {
    let srv = Server::start(&["--api-keys", KEYS]).await;
    let ds = srv
        .ok("POST", "/v1/datasets", ACME, Some(&circle(40)))
        .await;
    let base = json!({"layers": [{"units": 4, "activation": "tanh"}, {}], "loss": "binary_crossentropy",
        "epochs": 100000, "batch_size": 1, "validation_split": 0.25});
    let body = json!({"dataset_id": ds["id"], "base": base, "max_trials": 3, "seed": 9,
        "space": {"/optimizer/learning_rate": {"log_uniform": [1e-3, 1e-1]}}});
    let s = srv.ok("POST", "/v1/sweeps", ACME, Some(&body)).await;
    let id = s["id"].as_str().unwrap().to_string();
    assert_eq!(s["trials"].as_array().unwrap().len(), 3, "{s}");
    for t in s["trials"].as_array().unwrap() {
        let lr = t["params"]["/optimizer/learning_rate"].as_f64().unwrap();
        assert!((1e-3..=1e-1).contains(&lr), "{t}");
    }
    let path = format!("/v1/sweeps/{id}");
    assert_eq!(srv.call("GET", &path, BETA, None).await.0, 404);
    assert_eq!(srv.call("GET", &path, "acme-predict", None).await.0, 403);
    assert_eq!(
        srv.call("POST", "/v1/sweeps", "acme-predict", Some(&body))
            .await
            .0,
        403
    );
    let (st, p) = srv
        .call(
            "DELETE",
            &format!("/v1/datasets/{}", ds["id"].as_str().unwrap()),
            ACME,
            None,
        )
        .await;
    assert_eq!(st, 409, "{p}");
    assert!(p["detail"].as_str().unwrap().contains(&id), "{p}");
    assert_eq!(
        srv.call("DELETE", &path, ACME, None).await.0,
        409,
        "running"
    );
    assert_eq!(
        srv.call("POST", &format!("{path}/cancel"), BETA, None)
            .await
            .0,
        404
    );
    let (st, _) = srv
        .call("POST", &format!("{path}/cancel"), ACME, None)
        .await;
    assert_eq!(st, 202);
    let done = wait_sweep(&srv, ACME, &id).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    for t in done["trials"].as_array().unwrap() {
        assert_eq!(t["status"], "cancelled", "{t}");
    }
    let (st, _) = srv
        .call("DELETE", &format!("{path}?keep_trials=true"), ACME, None)
        .await;
    assert_eq!(st, 204);
    let t0 = done["trials"][0]["job_id"].as_str().unwrap();
    srv.ok("GET", &format!("/v1/jobs/{t0}"), ACME, None).await;

    // Bad requests name the field.
    let bad = |patch: Value| {
        let mut b = body.clone();
        for (k, v) in patch.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for (patch, pointer) in [
        (
            json!({"space": {"optimizer": {"choice": [1]}}}),
            "/space/optimizer",
        ),
        (json!({"space": {"/l2": {"normal": [0, 1]}}}), "/space/~1l2"),
        (
            json!({"space": {"/l2": {"uniform": [1, 0]}}}),
            "/space/~1l2/uniform",
        ),
        (json!({"method": "grid"}), "/method"),
        (json!({"max_trials": 0}), "/max_trials"),
        (json!({"metric": "val_mae"}), "/metric"),
        (
            json!({"space": {"/layers/5/units": {"choice": [3]}}}),
            "/space/~1layers~15~1units",
        ),
        (
            json!({"space": {"/epochs": {"choice": [3]}}}),
            "/space/~1epochs",
        ),
        (json!({"space": {"/l2": {"choice": [-1]}}}), "/base/l2"),
    ] {
        let (st, p) = srv
            .call("POST", "/v1/sweeps", ACME, Some(&bad(patch.clone())))
            .await;
        assert_eq!(st, 422, "{patch}: {p}");
        assert_eq!(p["errors"][0]["pointer"], pointer, "{patch}: {p}");
    }
    // A deadline ends a sweep of endless trials: they stop, keep their models, and the best
    // of them wins.
    let mut timed = body.clone();
    timed["max_seconds"] = json!(1.5);
    timed["max_trials"] = json!(2);
    timed["dataset_id"] = srv
        .ok("POST", "/v1/datasets", ACME, Some(&circle(40)))
        .await["id"]
        .clone();
    let t = srv.ok("POST", "/v1/sweeps", ACME, Some(&timed)).await;
    let done = wait_sweep(&srv, ACME, t["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(done["best"]["metric"].is_number(), "{done}");
    let stopped = done["trials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "succeeded")
        .count();
    assert!(stopped >= 1, "{done}");

    let mut no_val = body.clone();
    no_val["base"]["validation_split"] = json!(0);
    let (st, p) = srv.call("POST", "/v1/sweeps", ACME, Some(&no_val)).await;
    assert_eq!(
        (st, &p["errors"][0]["pointer"]),
        (422, &json!("/base/validation_split")),
        "{p}"
    );
}

/// Uploads a CSV whose target column is `target` (no key); answers its id.
async fn upload_csv(srv: &Server, csv: &'static str) -> String {
    upload_csv_with_target(srv, csv, "target").await
}

/// Uploads a CSV whose target column is `target` (no key); answers its id.
async fn upload_csv_with_target(srv: &Server, csv: &'static str, target: &str) -> String {
    let r = srv
        .post_raw(&format!("/v1/datasets?target={target}"), "text/csv", csv)
        .await;
    let (st, v) = common::split(r).await;
    assert_eq!(st, 201, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// The automatic mode on iris: no spec at all, a classifier comes out.
#[tokio::test]
async fn the_automatic_mode_trains_a_good_classifier_by_itself() {
    let srv = Server::start(&["--max-concurrent-jobs", "2"]).await;
    let train = upload_csv(&srv, include_str!("data/iris.train.csv")).await;
    let test = upload_csv(&srv, include_str!("data/iris.test.csv")).await;
    let (st, s) = srv
        .post(
            "/v1/sweeps",
            &json!({"dataset_id": train, "max_trials": 4, "seed": 1}),
        )
        .await;
    assert_eq!(st, 202, "{s}");
    assert_eq!(s["spec"]["automatic"], true);
    assert_eq!(s["spec"]["base"]["loss"], "categorical_crossentropy");
    // 96 training rows: the small-data budget, compared on the unpenalised log loss.
    assert_eq!(s["rungs"], json!([20, 60, 180]));
    assert_eq!(s["metric"], "val_log_loss");
    let done = wait_sweep(&srv, "", s["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let model = done["best"]["model_id"].as_str().unwrap();
    let (st, e) = srv
        .post(
            &format!("/v1/models/{model}/evaluate"),
            &json!({"dataset_id": test}),
        )
        .await;
    assert_eq!(st, 200, "{e}");
    assert!(e["accuracy"].as_f64().unwrap() >= 0.9, "{e}\n{done}");
}

/// The automatic mode on a regression set: targets standardised, trials compared on the
/// validation RMSE, the chosen trial refitted on every training row for the epochs its
/// validation found best, and the same seed picks the same trial and metric again.
#[tokio::test]
async fn the_automatic_mode_refits_its_choice_and_picks_the_same_with_the_same_seed() {
    let srv = Server::start(&["--max-concurrent-jobs", "2"]).await;
    let train = upload_csv(&srv, include_str!("data/diabetes.train.csv")).await;
    let test = upload_csv(&srv, include_str!("data/diabetes.test.csv")).await;
    let body = json!({"dataset_id": train, "max_trials": 3, "seed": 7});
    let (st, s) = srv.post("/v1/sweeps", &body).await;
    assert_eq!(st, 202, "{s}");
    assert_eq!(s["spec"]["base"]["loss"], "mse");
    assert_eq!(s["spec"]["base"]["standardize_target"], true);
    assert_eq!(s["spec"]["refit"], true);
    assert_eq!(s["metric"], "val_rmse");
    let done = wait_sweep(&srv, "", s["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let best = &done["best"];
    // The metric is the chosen trial's validation RMSE, in the targets' units (their
    // deviation is about 77), and the trial's model is kept apart from the refit's.
    let metric = best["metric"].as_f64().unwrap();
    assert!((30.0..80.0).contains(&metric), "{best}");
    let chosen = done["trials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["trial"] == best["trial"])
        .unwrap();
    assert_eq!(chosen["metric"], best["metric"]);
    assert_eq!(best["trial_job_id"], chosen["job_id"], "{best}");
    assert_eq!(best["trial_model_id"], chosen["model_id"], "{best}");
    assert_eq!(best["refit_job_id"], best["job_id"]);
    assert_ne!(best["model_id"], best["trial_model_id"]);
    // 282 training rows: each trial is cross-validated on 5 folds, one job each. Its metric
    // is their mean at the one epoch they share (the best mean of their recorded val_rmse),
    // never better than each fold at its own best; the refit trains that many epochs.
    assert_eq!(s["spec"]["folds"], 5);
    let fold_jobs = chosen["fold_jobs"].as_array().unwrap();
    assert_eq!(fold_jobs.len(), 4, "{chosen}");
    let shared = chosen["metric_epoch"].as_u64().expect("metric_epoch") as usize;
    assert_eq!(best["metric_epoch"], shared, "{best}");
    let (mut at_shared, mut own_best) = (0.0, 0.0);
    for (f, id) in std::iter::once(&chosen["job_id"])
        .chain(fold_jobs)
        .enumerate()
    {
        let job = srv
            .get(&format!("/v1/jobs/{}", id.as_str().unwrap()))
            .await
            .1;
        assert_eq!(
            job["spec"]["validation_fold"].as_u64().unwrap_or(0),
            f as u64
        );
        let curve: Vec<f64> = srv
            .get(&format!("/v1/jobs/{}/history", id.as_str().unwrap()))
            .await
            .1["epochs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["val_rmse"].as_f64().expect("val_rmse recorded"))
            .collect();
        at_shared += curve[shared - 1];
        own_best += curve.iter().copied().fold(f64::INFINITY, f64::min);
    }
    assert!(
        (at_shared / 5.0 - metric).abs() < 1e-9,
        "{at_shared} / 5 vs {metric}"
    );
    assert!(own_best <= at_shared + 1e-9, "{own_best} vs {at_shared}");
    let best_epoch = shared as i64;
    let refit = srv
        .get(&format!("/v1/jobs/{}", best["job_id"].as_str().unwrap()))
        .await
        .1;
    assert_eq!(refit["status"], "succeeded", "{refit}");
    assert_eq!(refit["epoch"].as_i64(), Some(best_epoch), "{refit}");
    assert_eq!(refit["spec"]["validation_split"], 0.0);
    assert!(refit["spec"].get("early_stopping").is_none(), "{refit}");
    assert_eq!(refit["spec"]["standardize_target"], true);
    assert_eq!(refit["model_id"], best["model_id"]);
    // The refit predicts in the targets' units: far better than the mean on the test file.
    let (st, e) = srv
        .post(
            &format!("/v1/models/{}/evaluate", best["model_id"].as_str().unwrap()),
            &json!({"dataset_id": test}),
        )
        .await;
    assert_eq!(st, 200, "{e}");
    assert!(e["r2"].as_f64().unwrap() > 0.2, "{e}");

    // The same sweep and seed: the same trial, the same metric, the same refit history.
    let again = srv.post("/v1/sweeps", &body).await.1;
    let again = wait_sweep(&srv, "", again["id"].as_str().unwrap()).await;
    assert_eq!(again["status"], "succeeded", "{again}");
    for k in ["trial", "params", "metric"] {
        assert_eq!(again["best"][k], best[k], "{k}: {again}");
    }
    let history = |id: &Value| {
        let srv = &srv;
        let id = id.as_str().unwrap().to_string();
        async move { srv.get(&format!("/v1/jobs/{id}/history")).await.1["epochs"].clone() }
    };
    let strip = |h: Value| -> Vec<Value> {
        h.as_array()
            .unwrap()
            .iter()
            .map(|r| json!([r["epoch"], r["loss"]]))
            .collect()
    };
    assert_eq!(
        strip(history(&again["best"]["job_id"]).await),
        strip(history(&best["job_id"]).await)
    );
}

/// The evaluation agrees with scikit-learn's metrics on the same predictions: a 3-class,
/// a binary and a regression model, each on its held-out test file (tests/interop/evaluate.py
/// under `BACKPROP_TEST_PYTHON`, a Python with tests/interop/requirements.txt; `.ci/run`
/// makes one).
#[tokio::test]
async fn evaluation_agrees_with_scikit_learn() {
    let Ok(python) = std::env::var("BACKPROP_TEST_PYTHON") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "BACKPROP_TEST_PYTHON must be set in CI (see .ci/run)"
        );
        eprintln!("skipped: BACKPROP_TEST_PYTHON is not set");
        return;
    };
    let srv = Server::start(&[]).await;
    let root = env!("CARGO_MANIFEST_DIR");
    let mut args = vec![
        format!("{root}/tests/interop/evaluate.py"),
        srv.base.clone(),
    ];
    for (name, layers, loss) in [
        (
            "iris",
            json!([{"units": 8, "activation": "relu"}, {}]),
            "categorical_crossentropy",
        ),
        (
            "breast_cancer",
            json!([{"units": 8, "activation": "relu"}, {}]),
            "binary_crossentropy",
        ),
        (
            "diabetes",
            json!([{"units": 8, "activation": "relu"}, {}]),
            "mse",
        ),
    ] {
        let mut ids = vec![];
        for part in ["train", "test"] {
            let csv =
                std::fs::read_to_string(format!("{root}/tests/data/{name}.{part}.csv")).unwrap();
            let (st, d) = common::split(
                srv.post_raw("/v1/datasets?target=target", "text/csv", csv)
                    .await,
            )
            .await;
            assert_eq!(st, 201, "{d}");
            ids.push(d["id"].as_str().unwrap().to_string());
        }
        let (st, job) = srv
            .post(
                "/v1/jobs",
                &json!({"dataset_id": ids[0], "layers": layers, "loss": loss, "epochs": 5,
                        "optimizer": {"type": "adam", "learning_rate": 0.01}, "seed": 1}),
            )
            .await;
        assert_eq!(st, 202, "{job}");
        let done = srv
            .wait_job(job["id"].as_str().unwrap(), Duration::from_secs(120))
            .await;
        assert_eq!(done["status"], "succeeded", "{done}");
        args.push(done["model_id"].as_str().unwrap().to_string());
        args.push(ids[1].clone());
        args.push(format!("{root}/tests/data/{name}.test.csv"));
    }
    let out = std::process::Command::new(&python)
        .args(&args)
        .output()
        .expect("run the interop script");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("agrees with scikit-learn"), "{text}");
}

/// The same sweep on one SQLite node and on two nodes sharing PostgreSQL (both training its
/// trials, both advancing it): the same trials cut, the same best trial, the same metric.
#[tokio::test]
async fn a_sweep_on_two_nodes_picks_what_one_node_picks() {
    let Some(db) = Schema::create().await else {
        return;
    };
    let body = |dataset: &Value| {
        json!({
            "dataset_id": dataset, "seed": 21, "max_trials": 6,
            "base": {"layers": [{"units": 6, "activation": "tanh"}, {}], "loss": "binary_crossentropy",
                     "epochs": 8, "batch_size": 16, "validation_split": 0.25},
            "space": {"/optimizer/learning_rate": {"log_uniform": [1e-4, 1e-1]},
                      "/l2": {"choice": [0, 1e-3]}},
            "halving": {"min_epochs": 2, "eta": 2},
        })
    };
    let summary = |s: &Value| {
        let trials: Vec<(Value, Value, Value)> = s["trials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["params"].clone(),
                    t["metric"].clone(),
                    t["stopped_early"].clone(),
                )
            })
            .collect();
        (
            s["best"]["params"].clone(),
            s["best"]["metric"].clone(),
            trials,
        )
    };
    let one = Server::start(&["--max-concurrent-jobs", "2"]).await;
    let ds = one.post("/v1/datasets", &circle(60)).await.1;
    let s = one.post("/v1/sweeps", &body(&ds["id"])).await.1;
    let alone = wait_sweep(&one, "", s["id"].as_str().unwrap()).await;
    assert_eq!(alone["status"], "succeeded", "{alone}");

    let args = [
        "--database-url",
        db.url.as_str(),
        "--max-concurrent-jobs",
        "1",
    ];
    let a = Server::start(&args).await;
    let b = Server::start(&args).await;
    let ds = a.post("/v1/datasets", &circle(60)).await.1;
    let s = a.post("/v1/sweeps", &body(&ds["id"])).await.1;
    let shared = wait_sweep(&b, "", s["id"].as_str().unwrap()).await;
    assert_eq!(shared["status"], "succeeded", "{shared}");
    assert_eq!(summary(&shared), summary(&alone));
    assert_eq!(shared["rungs"], json!([2, 4, 8]));
}

/// Classes written as whole numbers (wine's 0, 1, 2) train a classifier in the automatic
/// mode; `task` overrides the guess, and a task the target cannot be is refused at `/task`.
#[tokio::test]
async fn whole_number_classes_are_a_classification_and_task_overrides_it() {
    let srv = Server::start(&["--max-concurrent-jobs", "1"]).await;
    let mut wine = String::from("a,b,cultivar\n");
    let mut price = String::from("a,b,price\n");
    for i in 0..150 {
        let (a, b) = ((i % 13) as f64 / 3.0, (i % 7) as f64);
        wine.push_str(&format!("{a},{b},{}\n", i % 3));
        price.push_str(&format!("{a},{b},{}.5\n", 100 + i * 7));
    }
    let post = |body: String| {
        let srv = &srv;
        async move {
            common::split(
                srv.post_raw("/v1/datasets?target=cultivar", "text/csv", body)
                    .await,
            )
            .await
            .1["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let wine = post(wine).await;
    let (st, p) = common::split(
        srv.post_raw("/v1/datasets?target=price", "text/csv", price)
            .await,
    )
    .await;
    assert_eq!(st, 201, "{p}");
    let price = p["id"].as_str().unwrap().to_owned();
    let sweep = |body: Value| {
        let srv = &srv;
        async move { srv.post("/v1/sweeps", &body).await }
    };
    let (st, s) = sweep(json!({"dataset_id": wine, "max_trials": 2})).await;
    assert_eq!(st, 202, "{s}");
    assert_eq!(s["spec"]["base"]["loss"], "categorical_crossentropy");
    let (st, r) = sweep(json!({"dataset_id": wine, "max_trials": 2, "task": "regression"})).await;
    assert_eq!(st, 202, "{r}");
    assert_eq!(r["spec"]["base"]["loss"], "mse");
    for (body, what) in [
        (
            json!({"dataset_id": price, "task": "classification"}),
            "numbers",
        ),
        (
            json!({"dataset_id": wine, "task": "clustering"}),
            "unknown task",
        ),
        (
            json!({"dataset_id": wine, "task": "regression",
                   "base": {"layers": [{}], "loss": "mse"}, "space": {}}),
            "with a base",
        ),
    ] {
        let (st, e) = sweep(body).await;
        assert!((400..500).contains(&st), "{what}: {st} {e}");
        assert!(e.to_string().contains("/task"), "{what}: {e}");
    }
    for s in [&s, &r] {
        let id = s["id"].as_str().unwrap();
        let (st, _) = srv
            .post(&format!("/v1/sweeps/{id}/cancel"), &json!({}))
            .await;
        assert!(st < 300, "{st}");
    }
}

/// Label smoothing (issue 25): a classifier trained towards soft targets is less sure of
/// itself exactly as the smoothing says (with ε = 0.3 over 3 classes the best answer for a
/// training row is 0.8 for its class), its validation loss is still on the true labels, and a
/// regression or an ε outside [0, 1) is refused at the field.
#[tokio::test]
async fn label_smoothing_trains_towards_soft_targets() {
    let srv = Server::start(&[]).await;
    let data = upload_csv(&srv, include_str!("data/iris.train.csv")).await;
    let spec = |eps: f64| {
        json!({"dataset_id": data, "layers": [{"units": 16, "activation": "relu"}, {}],
            "loss": "categorical_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.02},
            "epochs": 300, "batch_size": 32, "seed": 4, "validation_split": 0.2,
            "label_smoothing": eps})
    };
    let mut top = vec![];
    for eps in [0.0, 0.3] {
        let done = train(&srv, "", spec(eps)).await;
        if eps > 0.0 {
            assert_eq!(done["spec"]["label_smoothing"], 0.3, "{done}");
        } else {
            assert!(done["spec"].get("label_smoothing").is_none(), "{done}");
        }
        let model = done["model_id"].as_str().unwrap();
        let rows: Vec<Value> = include_str!("data/iris.train.csv")
            .lines()
            .skip(1)
            .take(40)
            .map(|l| {
                let v: Vec<f64> = l.split(',').take(4).map(|c| c.parse().unwrap()).collect();
                json!(v)
            })
            .collect();
        let (st, p) = srv
            .post(
                &format!("/v1/models/{model}/predict"),
                &json!({"inputs": rows}),
            )
            .await;
        assert_eq!(st, 200, "{p}");
        let mean_top: f64 = p["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .fold(0.0, f64::max)
            })
            .sum::<f64>()
            / 40.0;
        top.push(mean_top);
    }
    assert!(top[0] > 0.95, "{top:?}");
    assert!((top[1] - 0.8).abs() < 0.06, "{top:?}");

    for (body, pointer) in [
        (json!({"label_smoothing": 1.0}), "/label_smoothing"),
        (json!({"label_smoothing": -0.1}), "/label_smoothing"),
        (
            json!({"loss": "mse", "label_smoothing": 0.1}),
            "/label_smoothing",
        ),
    ] {
        let mut s = spec(0.0);
        for (k, v) in body.as_object().unwrap() {
            s[k] = v.clone();
        }
        let (st, e) = srv.post("/v1/jobs", &s).await;
        assert_eq!(st, 422, "{body}: {e}");
        assert!(
            e["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["pointer"] == pointer),
            "{body}: {e}"
        );
    }
}

/// Piecewise-linear numeric encodings (issue 25): a job with `numeric_bins` trains on the
/// bins of its training split, its model names them as inputs, predicts from raw values, and
/// its document holds the edges and imports back to the same answers; a bin count outside
/// 2..=256 is refused at the field.
#[tokio::test]
async fn numeric_bins_train_a_piecewise_linear_model() {
    let srv = Server::start(&[]).await;
    let data = upload_csv(&srv, include_str!("data/iris.train.csv")).await;
    let spec = json!({"dataset_id": data, "layers": [{"units": 16, "activation": "relu"}, {}],
        "loss": "categorical_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.02},
        "epochs": 60, "batch_size": 32, "seed": 2, "validation_split": 0.2, "numeric_bins": 8});
    let done = train(&srv, "", spec.clone()).await;
    assert!(
        done["metrics"]["val_accuracy"].as_f64().unwrap() > 0.85,
        "{done}"
    );
    let model = done["model_id"].as_str().unwrap();
    let (_, m) = srv.get(&format!("/v1/models/{model}")).await;
    let names: Vec<&str> = m["feature_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(names.contains(&"petal_length (bin 8)"), "{names:?}");
    let rows =
        json!({"inputs": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [9.9, 0.1, 9.9, 9.9]]});
    let (_, doc) = predict_and_round_trip(&srv, model, &rows).await;
    let bins = doc["encoder"]["columns"][2]["bins"].as_array().unwrap();
    assert!(bins.len() >= 3 && bins.len() <= 9, "{doc}");
    for bins in [1, 300] {
        let mut s = spec.clone();
        s["numeric_bins"] = json!(bins);
        let (st, e) = srv.post("/v1/jobs", &s).await;
        assert_eq!(st, 422, "{e}");
        assert_eq!(e["pointer"], "/numeric_bins", "{e}");
    }
}

/// Robust scaling (issue 25): a job with `numeric_scaling: robust` centres its numeric
/// inputs on the training median and smooth-clips them (the model document says which), so a
/// value far outside training stays inside the clipping's bound and still predicts; its
/// document imports back to the same answers; without `standardize` it is refused at the
/// field.
#[tokio::test]
async fn robust_scaling_clips_numeric_inputs_and_round_trips() {
    let srv = Server::start(&[]).await;
    // Penguins: numeric columns, text ones and missing cells.
    let data = upload_csv_with_target(&srv, include_str!("data/penguins.csv"), "species").await;
    let spec = json!({"dataset_id": data, "layers": [{"units": 16, "activation": "relu"}, {}],
        "loss": "categorical_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.01},
        "epochs": 40, "batch_size": 32, "seed": 3, "validation_split": 0.2,
        "numeric_scaling": "robust"});
    let done = train(&srv, "", spec.clone()).await;
    assert_eq!(done["spec"]["numeric_scaling"], "robust", "{done}");
    assert!(
        done["metrics"]["val_accuracy"].as_f64().unwrap() > 0.9,
        "{done}"
    );
    let model = done["model_id"].as_str().unwrap();
    let doc = export(&srv, &json!(model)).await;
    let names: Vec<String> = doc["feature_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();
    let s = &doc["standardization"];
    let clip = s["clip"].as_array().unwrap();
    assert_eq!(clip.len(), names.len(), "{doc}");
    for (j, name) in names.iter().enumerate() {
        // Measurements are clipped; one-hot categories and missing indicators are not.
        let numeric = name.ends_with("_mm") || name.ends_with("_g") || name == "year";
        assert_eq!(clip[j], json!(numeric), "{name}: {s}");
    }
    let rows = json!({"inputs": [
        {"island": "Biscoe", "bill_length_mm": 46.1, "bill_depth_mm": 13.2,
         "flipper_length_mm": 211, "body_mass_g": 4500, "sex": "female", "year": 2008},
        {"island": "Dream", "bill_length_mm": 1e9, "bill_depth_mm": -1e9,
         "flipper_length_mm": 195, "body_mass_g": null, "sex": null, "year": 2009}]});
    let (a, again) = predict_and_round_trip(&srv, model, &rows).await;
    assert_eq!(again, doc);
    assert_eq!(a["labels"][0], "Gentoo", "{a}");
    assert!(
        a["outputs"][1]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p.as_f64().unwrap().is_finite()),
        "{a}"
    );
    let mut s = spec.clone();
    s["standardize"] = json!(false);
    let (st, e) = srv.post("/v1/jobs", &s).await;
    assert_eq!(st, 422, "{e}");
    assert_eq!(e["pointer"], "/numeric_scaling", "{e}");
    let mut s = spec;
    s["numeric_scaling"] = json!("minmax");
    let (st, e) = srv.post("/v1/jobs", &s).await;
    assert_eq!(st, 422, "{e}");
}

/// TabM ensembles (issue 25): a job with `ensemble: 4` trains one model whose document holds
/// the members' adapters first and their heads side by side in the last layer, predicts
/// their mean (probabilities that still sum to one), imports back to the same answers, and
/// warm-starts only a spec of the same members; a member count outside 2..=64 is refused at
/// the field.
#[tokio::test]
async fn an_ensemble_job_trains_a_tabm_model_that_round_trips() {
    let srv = Server::start(&[]).await;
    let data = upload_csv(&srv, include_str!("data/iris.train.csv")).await;
    let spec = json!({"dataset_id": data, "layers": [{"units": 16, "activation": "relu"}, {}],
        "loss": "categorical_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.02},
        "epochs": 60, "batch_size": 32, "seed": 2, "validation_split": 0.2, "ensemble": 4});
    let done = train(&srv, "", spec.clone()).await;
    assert!(
        done["metrics"]["val_accuracy"].as_f64().unwrap() > 0.85,
        "{done}"
    );
    let model = done["model_id"].as_str().unwrap();
    let (_, m) = srv.get(&format!("/v1/models/{model}")).await;
    assert_eq!(m["architecture"][0], json!({"ensemble": 4}), "{m}");
    assert_eq!(m["output_dim"], 3, "{m}");
    // 4 adapters of 4 inputs, one shared hidden layer, 4 heads of 16 → 3.
    assert_eq!(
        m["parameter_count"],
        4 * 4 + (4 * 16 + 16) + 4 * (16 * 3 + 3),
        "{m}"
    );
    let doc = export(&srv, &json!(model)).await;
    assert_eq!(doc["layers"][0]["ensemble"].as_array().unwrap().len(), 4);
    assert_eq!(doc["layers"][2]["units"], 12, "{doc}");
    let rows =
        json!({"inputs": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]});
    let (a, _) = predict_and_round_trip(&srv, model, &rows).await;
    for p in a["outputs"].as_array().unwrap() {
        let sum: f64 = p
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .sum();
        assert!((sum - 1.0).abs() < 1e-5, "{a}");
    }
    assert_eq!(a["labels"][0], "setosa", "{a}");
    // A warm start needs the same members.
    let mut warm = spec.clone();
    warm["init_model_id"] = json!(model);
    warm["epochs"] = json!(2);
    let (st, j) = srv.post("/v1/jobs", &warm).await;
    assert_eq!(st, 202, "{j}");
    let w = srv
        .wait_job(j["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(w["status"], "succeeded", "{w}");
    warm["ensemble"] = json!(2);
    let (st, e) = srv.post("/v1/jobs", &warm).await;
    assert_eq!(st, 422, "{e}");
    assert_eq!(e["pointer"], "/init_model_id", "{e}");
    for k in [1, 65] {
        let mut s = spec.clone();
        s["ensemble"] = json!(k);
        let (st, e) = srv.post("/v1/jobs", &s).await;
        assert_eq!(st, 422, "{e}");
        assert_eq!(e["pointer"], "/ensemble", "{e}");
    }
    // A document whose heads do not divide among its members is refused at the layer.
    let mut bad = doc.clone();
    bad["layers"][0]["ensemble"] = json!([
        [1, 1, 1, 1],
        [1, 1, 1, 1],
        [1, 1, 1, 1],
        [1, 1, 1, 1],
        [1, 1, 1, 1]
    ]);
    let (st, e) = srv.post("/v1/models", &bad).await;
    assert_eq!(st, 422, "{e}");
}

/// The dashboard's example: Adam on a 300-row circle, 8 tanh units, the default 100-batch
/// range test. fastai's smoothing (β = 0.98) lags such a short curve by half its length: it
/// suggested 2.26, a rate past the divergence. Smoothed without lag, the suggestion sits
/// before the loss turns up, and training at it learns the circle.
#[tokio::test]
async fn the_range_test_suggests_a_usable_rate_on_a_short_curve() {
    let srv = Server::start(&["--api-keys", KEYS]).await;
    let ds = srv
        .ok("POST", "/v1/datasets", ACME, Some(&circle(300)))
        .await;
    let spec = |seed: u64| {
        json!({"dataset_id": ds["id"], "layers": [{"units": 8, "activation": "tanh"}, {}],
               "loss": "binary_crossentropy", "seed": seed, "epochs": 60,
               "optimizer": {"type": "adam", "learning_rate": "auto"}})
    };
    let (mut accuracies, mut lengths) = (vec![], vec![]);
    for seed in [1, 2, 3, 4] {
        let done = train(&srv, ACME, spec(seed)).await;
        let t = &done["lr_range_test"];
        let chosen = t["learning_rate"].as_f64().unwrap();
        assert!((1e-4..0.5).contains(&chosen), "seed {seed}: {t}");
        // The suggestion comes before the smoothed loss's minimum, which comes before the
        // end of the curve.
        let points = t["points"].as_array().unwrap();
        let end = points.last().unwrap()["learning_rate"].as_f64().unwrap();
        let minimum = t["minimum"].as_f64().unwrap();
        assert!(chosen <= minimum && minimum < end, "seed {seed}: {t}");
        let h = history(&srv, ACME, done["id"].as_str().unwrap()).await;
        accuracies.push(h.last().unwrap()["accuracy"].as_f64().unwrap());
        lengths.push(points.len());
        // A curve that could tell has no note.
        assert!(t.get("note").is_none() || t["steepest"].is_null(), "{t}");
    }
    assert!(
        accuracies.iter().all(|&a| a >= 0.9),
        "trains well at the suggested rate: {accuracies:?}"
    );
    // 100 batches were too few to tell for most seeds: those curves were run again ten
    // times as long (ending once the loss diverged).
    assert!(
        lengths.iter().filter(|&&n| n > 100).count() >= 2,
        "{lengths:?}"
    );
    assert!(lengths.iter().all(|&n| n <= 1000), "{lengths:?}");
    // A length asked for is kept, and a curve that cannot tell says why.
    let mut asked = spec(1);
    asked.as_object_mut().unwrap().remove("epochs");
    asked["optimizer"] = json!("adam");
    asked["range_test"] = json!({"steps": 100});
    let t = srv
        .ok("POST", "/v1/lr-range-tests", ACME, Some(&asked))
        .await;
    assert_eq!(t["points"].as_array().unwrap().len(), 100, "{t}");
    assert!(t["steepest"].is_null(), "{t}");
    assert!(t["note"].as_str().unwrap().contains("too flat"), "{t}");
    assert!(
        close(
            &t["suggested"],
            t["minimum_over_10"].as_f64().unwrap(),
            1e-9
        ),
        "{t}"
    );
}

/// Issue 25: the one-cycle schedule over HTTP: AdamW's rate rises from lr/25 to lr at epoch
/// 0.3·20 − 1 (the history's epoch 6) and falls to lr/25/1e4 at the last, and the network
/// learns iris under it.
#[tokio::test]
async fn a_one_cycle_schedule_rises_and_falls_as_recorded() {
    let srv = Server::start(&[]).await;
    let data = upload_csv(&srv, include_str!("data/iris.train.csv")).await;
    let done = train(
        &srv,
        "",
        json!({"dataset_id": data, "layers": [{"units": 16, "activation": "relu"}, {}],
               "loss": "categorical_crossentropy",
               "optimizer": {"type": "adamw", "learning_rate": 0.05, "weight_decay": 0.01},
               "lr_schedule": {"type": "one_cycle"},
               "epochs": 20, "batch_size": 16, "seed": 2, "validation_split": 0.2}),
    )
    .await;
    assert_eq!(done["spec"]["lr_schedule"]["type"], "one_cycle", "{done}");
    let h = history(&srv, "", done["id"].as_str().unwrap()).await;
    let rates: Vec<f64> = h
        .iter()
        .map(|e| e["learning_rate"].as_f64().unwrap())
        .collect();
    let near = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.max(1e-6);
    assert!(near(rates[0], 0.05 / 25.0), "{rates:?}");
    assert!(near(rates[5], 0.05), "{rates:?}");
    assert!((rates[19] - 0.05 / 25.0 / 1e4).abs() < 1e-9, "{rates:?}");
    assert!(rates[..6].windows(2).all(|w| w[0] < w[1]), "{rates:?}");
    assert!(rates[5..].windows(2).all(|w| w[0] > w[1]), "{rates:?}");
    let last = &h[19];
    assert!(last["val_accuracy"].as_f64().unwrap() >= 0.8, "{last}");
    assert!(
        last["loss"].as_f64().unwrap() < h[0]["loss"].as_f64().unwrap() / 2.0,
        "{h:?}"
    );
}

/// Early stopping may watch the validation log loss without the L2 penalty (`val_log_loss`,
/// recorded each epoch): the restored epoch is that curve's best, and the model's own
/// evaluation on the validation split is that epoch's recorded value.
#[tokio::test]
async fn early_stopping_watches_the_unpenalised_validation_loss() {
    let srv = Server::start(&[]).await;
    let data = upload_csv(&srv, include_str!("data/iris.train.csv")).await;
    let done = train(
        &srv,
        "",
        json!({"dataset_id": data, "layers": [{"units": 16, "activation": "relu"}, {}],
               "loss": "categorical_crossentropy", "l2": 0.05,
               "optimizer": {"type": "adam", "learning_rate": 0.2},
               "early_stopping": {"monitor": "val_log_loss", "patience": 4,
                                  "restore_best_weights": true},
               "epochs": 80, "batch_size": 16, "seed": 3, "validation_split": 0.25}),
    )
    .await;
    let h = history(&srv, "", done["id"].as_str().unwrap()).await;
    let curve: Vec<f64> = h
        .iter()
        .map(|e| e["val_log_loss"].as_f64().unwrap())
        .collect();
    let best = curve
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0;
    let model = srv
        .get(&format!(
            "/v1/models/{}",
            done["model_id"].as_str().unwrap()
        ))
        .await
        .1;
    assert_eq!(model["metrics"]["best_epoch"], best + 1, "{curve:?}");
    // It stopped early: the penalised val_loss would have been another curve to watch.
    assert_eq!(done["stop_reason"], "early_stopping", "{done}");
    let evaluated = model["metrics"]["evaluation"]["log_loss"].as_f64().unwrap();
    assert!(
        (evaluated - curve[best]).abs() < 1e-4 * evaluated.max(1.0),
        "{evaluated} against {}",
        curve[best]
    );
}

/// Periodic embeddings (issue 25): on a target that oscillates along one input
/// (`y = sin(6x)` over x ∈ [−2, 2]), a small network with `periodic_embedding` fits what the
/// same network without it cannot, on every one of three seeds. On penguins (numbers, text,
/// missing cells) only the numeric inputs are embedded: the model says so, its document
/// holds the trained frequencies before a TabM ensemble's adapters and imports back to the
/// same answers; a warm start needs the same embedding; out-of-range settings and malformed
/// documents are refused at the field.
#[tokio::test]
async fn a_periodic_embedding_fits_an_oscillating_target_and_round_trips() {
    let srv = Server::start(&[]).await;
    let (mut features, mut targets) = (vec![], vec![]);
    let mut s: u64 = 5;
    for _ in 0..400 {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let x = ((s >> 33) as f64 / (1u64 << 31) as f64) * 4.0 - 2.0;
        features.push(vec![x]);
        targets.push((6.0 * x).sin());
    }
    let ds = srv
        .ok(
            "POST",
            "/v1/datasets",
            "",
            Some(&json!({"name": "wave", "features": features, "targets": targets})),
        )
        .await;
    for seed in [1, 2, 3] {
        let spec = |periodic: bool| {
            let mut s = json!({"dataset_id": ds["id"],
                "layers": [{"units": 16, "activation": "relu"}, {}], "loss": "mse",
                "optimizer": {"type": "adam", "learning_rate": 0.01}, "epochs": 60,
                "batch_size": 32, "seed": seed, "validation_split": 0.2});
            if periodic {
                s["periodic_embedding"] = json!({"frequencies": 16, "sigma": 1.0});
            }
            s
        };
        let plain = train(&srv, "", spec(false)).await;
        let periodic = train(&srv, "", spec(true)).await;
        let (a, b) = (
            plain["metrics"]["val_loss"].as_f64().unwrap(),
            periodic["metrics"]["val_loss"].as_f64().unwrap(),
        );
        // sin(6x) has variance ½: the plain network explains little of it.
        assert!(
            b < 0.01 && b < a / 20.0,
            "seed {seed}: {a} without, {b} with"
        );
    }
    let penguins = upload_csv_with_target(&srv, include_str!("data/penguins.csv"), "species").await;
    let spec = json!({"dataset_id": penguins, "layers": [{"units": 16, "activation": "relu"}, {}],
        "loss": "categorical_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.01},
        "epochs": 30, "batch_size": 32, "seed": 3, "validation_split": 0.2, "ensemble": 2,
        "periodic_embedding": {"frequencies": 4, "sigma": 0.5}});
    let done = train(&srv, "", spec.clone()).await;
    assert_eq!(
        done["spec"]["periodic_embedding"],
        json!({"frequencies": 4, "sigma": 0.5}),
        "{done}"
    );
    assert!(
        done["metrics"]["val_accuracy"].as_f64().unwrap() > 0.9,
        "{done}"
    );
    let model = done["model_id"].as_str().unwrap();
    let (_, m) = srv.get(&format!("/v1/models/{model}")).await;
    // bill length and depth, flipper length, body mass, year
    assert_eq!(
        m["architecture"][0],
        json!({"periodic": {"inputs": 5, "frequencies": 4}}),
        "{m}"
    );
    assert_eq!(m["architecture"][1], json!({"ensemble": 2}), "{m}");
    let rows = json!({"inputs": [
        {"island": "Biscoe", "bill_length_mm": 46.1, "bill_depth_mm": 13.2,
         "flipper_length_mm": 211, "body_mass_g": 4500, "sex": "female", "year": 2008},
        {"island": "Dream", "bill_length_mm": null, "bill_depth_mm": 18.0,
         "flipper_length_mm": 190, "body_mass_g": null, "sex": null, "year": 2009}]});
    let (a, doc) = predict_and_round_trip(&srv, model, &rows).await;
    assert_eq!(a["labels"][0], "Gentoo", "{a}");
    let names = doc["feature_names"].as_array().unwrap();
    let p = &doc["layers"][0]["periodic"];
    let embedded: Vec<&str> = p["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| names[c.as_u64().unwrap() as usize].as_str().unwrap())
        .collect();
    assert_eq!(
        embedded,
        [
            "bill_length_mm",
            "bill_depth_mm",
            "flipper_length_mm",
            "body_mass_g",
            "year"
        ],
        "{doc}"
    );
    // The frequencies trained away from their start, and every count adds up:
    // 5 × 4 frequencies, 2 adapters over the d + 40 wide embedding, the shared layer, 2 heads.
    assert_eq!(p["frequencies"].as_array().unwrap().len(), 5);
    let d = doc["input_dim"].as_u64().unwrap();
    let w = d + 2 * 4 * 5;
    assert_eq!(
        doc["layers"][1]["ensemble"][0].as_array().unwrap().len() as u64,
        w
    );
    assert_eq!(
        m["parameter_count"].as_u64().unwrap(),
        5 * 4 + 2 * w + (w * 16 + 16) + 2 * (16 * 3 + 3),
        "{m}"
    );
    // A warm start needs the same embedding.
    let mut warm = spec.clone();
    warm["init_model_id"] = json!(model);
    warm["epochs"] = json!(2);
    let (st, j) = srv.post("/v1/jobs", &warm).await;
    assert_eq!(st, 202, "{j}");
    warm["periodic_embedding"] = json!({"frequencies": 8});
    let (st, e) = srv.post("/v1/jobs", &warm).await;
    assert_eq!(st, 422, "{e}");
    assert_eq!(e["pointer"], "/init_model_id", "{e}");
    for (field, bad) in [
        ("frequencies", json!(0)),
        ("frequencies", json!(65)),
        ("sigma", json!(0)),
        ("sigma", json!(-1.0)),
        ("sigma", json!(1000)),
    ] {
        let mut s = spec.clone();
        s["periodic_embedding"][field] = bad.clone();
        let (st, e) = srv.post("/v1/jobs", &s).await;
        assert_eq!(st, 422, "{field} {bad}: {e}");
        assert_eq!(e["pointer"], format!("/periodic_embedding/{field}"), "{e}");
    }
    let mut s = spec.clone();
    s["periodic_embedding"]["scale"] = json!(1);
    let (st, e) = srv.post("/v1/jobs", &s).await;
    assert_eq!(st, 422, "{e}");
    // Documents: an input past the last, columns out of order, ragged or non-finite rows, a
    // periodic layer anywhere but first.
    for (pointer, change) in [
        (
            "/layers/0/periodic/columns",
            json!({"columns": [0, 999], "frequencies": [[1.0], [2.0]]}),
        ),
        (
            "/layers/0/periodic/columns",
            json!({"columns": [2, 1], "frequencies": [[1.0], [2.0]]}),
        ),
        (
            "/layers/0/periodic/frequencies",
            json!({"columns": [1, 2], "frequencies": [[1.0]]}),
        ),
        (
            "/layers/0/periodic/frequencies/1",
            json!({"columns": [1, 2], "frequencies": [[1.0], [2.0, 3.0]]}),
        ),
    ] {
        let mut bad = doc.clone();
        bad["layers"][0]["periodic"] = change;
        let (st, e) = srv.post("/v1/models", &bad).await;
        assert_eq!(st, 422, "{e}");
        assert_eq!(e["pointer"], pointer, "{e}");
    }
    let mut bad = doc.clone();
    let first = bad["layers"][0].clone();
    bad["layers"].as_array_mut().unwrap().insert(2, first);
    let (st, e) = srv.post("/v1/models", &bad).await;
    assert_eq!(st, 422, "{e}");
    // A dense layer's field on the embedding or on the adapters is refused, not ignored.
    for layer in [0, 1] {
        let mut bad = doc.clone();
        bad["layers"][layer]["activation"] = json!("relu");
        let (st, e) = srv.post("/v1/models", &bad).await;
        assert_eq!(st, 422, "{e}");
        assert_eq!(e["pointer"], format!("/layers/{layer}"), "{e}");
    }
}

/// Parametric activations (issue 25): with `parametric_activation` each hidden unit mixes
/// its activation with the identity by a trained weight. One relu unit cannot follow a
/// straight line through zero (it is flat on one side); made parametric it learns to be
/// linear, on each of three seeds. On penguins, in a TabM ensemble, the model lists the
/// activation after a linear dense layer, counts its weights, holds them in its document and
/// imports back to the same answers; a warm start needs the same activations; malformed
/// documents are refused at the field.
#[tokio::test]
async fn a_parametric_activation_learns_to_be_linear_and_round_trips() {
    let srv = Server::start(&[]).await;
    let (mut features, mut targets) = (vec![], vec![]);
    for i in 0..200 {
        let x = i as f64 / 50.0 - 2.0;
        features.push(vec![x]);
        targets.push(3.0 * x);
    }
    let ds = srv
        .ok(
            "POST",
            "/v1/datasets",
            "",
            Some(&json!({"name": "line", "features": features, "targets": targets})),
        )
        .await;
    for seed in [1, 2, 3] {
        let spec = |parametric: bool| {
            json!({"dataset_id": ds["id"],
                "layers": [{"units": 1, "activation": "relu"}, {}], "loss": "mse",
                "optimizer": {"type": "adam", "learning_rate": 0.05}, "epochs": 150,
                "batch_size": 32, "seed": seed, "validation_split": 0.2,
                "standardize_target": true, "parametric_activation": parametric})
        };
        let plain = train(&srv, "", spec(false)).await;
        let parametric = train(&srv, "", spec(true)).await;
        let (a, b) = (
            plain["metrics"]["val_loss"].as_f64().unwrap(),
            parametric["metrics"]["val_loss"].as_f64().unwrap(),
        );
        // (standardised targets: a loss of 1 explains nothing)
        assert!(
            b < 0.01 && b < a / 10.0,
            "seed {seed}: {a} without, {b} with"
        );
        let doc = export(&srv, &parametric["model_id"]).await;
        let w = doc["layers"][1]["parametric"][0].as_f64().unwrap();
        assert!(w.abs() < 0.2, "seed {seed}: the unit's weight {w}");
    }
    let penguins = upload_csv_with_target(&srv, include_str!("data/penguins.csv"), "species").await;
    let spec = json!({"dataset_id": penguins,
        "layers": [{"units": 16, "activation": "gelu"}, {"units": 8, "activation": "elu", "alpha": 0.5}, {}],
        "loss": "categorical_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.01},
        "epochs": 30, "batch_size": 32, "seed": 3, "validation_split": 0.2, "ensemble": 2,
        "parametric_activation": true});
    let done = train(&srv, "", spec.clone()).await;
    assert_eq!(done["spec"]["parametric_activation"], true, "{done}");
    assert!(
        done["metrics"]["val_accuracy"].as_f64().unwrap() > 0.9,
        "{done}"
    );
    let model = done["model_id"].as_str().unwrap();
    let (_, m) = srv.get(&format!("/v1/models/{model}")).await;
    let arch = m["architecture"].as_array().unwrap();
    assert_eq!(arch[1], json!({"units": 16, "activation": "linear"}), "{m}");
    assert_eq!(
        arch[2],
        json!({"parametric": 16, "activation": "gelu"}),
        "{m}"
    );
    assert_eq!(
        arch[4],
        json!({"parametric": 8, "activation": "elu"}),
        "{m}"
    );
    let rows = json!({"inputs": [
        {"island": "Biscoe", "bill_length_mm": 46.1, "bill_depth_mm": 13.2,
         "flipper_length_mm": 211, "body_mass_g": 4500, "sex": "female", "year": 2008},
        {"island": "Dream", "bill_length_mm": null, "bill_depth_mm": 18.0,
         "flipper_length_mm": 190, "body_mass_g": null, "sex": null, "year": 2009}]});
    let (a, doc) = predict_and_round_trip(&srv, model, &rows).await;
    assert_eq!(a["labels"][0], "Gentoo", "{a}");
    assert_eq!(doc["layers"][4]["alpha"], 0.5, "{doc}");
    // The weights trained away from 1, and every count adds up: 2 adapters over the
    // d inputs, d·16 + 16 and 16 mixing weights, 16·8 + 8 and 8, 2 heads of 8·3 + 3.
    let mix: Vec<f64> = doc["layers"][2]["parametric"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(mix.len(), 16);
    assert!(mix.iter().any(|&v| (v - 1.0).abs() > 1e-3), "{mix:?}");
    let d = doc["input_dim"].as_u64().unwrap();
    assert_eq!(
        m["parameter_count"].as_u64().unwrap(),
        2 * d + (d * 16 + 16) + 16 + (16 * 8 + 8) + 8 + 2 * (8 * 3 + 3),
        "{m}"
    );
    // A warm start needs the same activations.
    let mut warm = spec.clone();
    warm["init_model_id"] = json!(model);
    warm["epochs"] = json!(2);
    let (st, j) = srv.post("/v1/jobs", &warm).await;
    assert_eq!(st, 202, "{j}");
    warm["parametric_activation"] = json!(false);
    let (st, e) = srv.post("/v1/jobs", &warm).await;
    assert_eq!(st, 422, "{e}");
    assert_eq!(e["pointer"], "/init_model_id", "{e}");
    let mut s = spec.clone();
    s["parametric_activation"] = json!("yes");
    let (st, e) = srv.post("/v1/jobs", &s).await;
    assert_eq!(st, 422, "{e}");
    // Documents: the wrong number of weights, a non-finite one, alpha on an activation
    // without one, a dense layer's field, a parametric layer first or last.
    for (pointer, layer, field, value) in [
        ("/layers/2/parametric", 2, "parametric", json!([1.0, 2.0])),
        (
            "/layers/2/parametric",
            2,
            "parametric",
            json!(vec![1e39; 16]),
        ),
        ("/layers/2/alpha", 2, "alpha", json!(0.3)),
        ("/layers/2", 2, "units", json!(16)),
        ("/layers/2", 2, "bias", json!(vec![0.0; 16])),
        ("/layers/4", 4, "weights", json!([[1.0]])),
    ] {
        let mut bad = doc.clone();
        bad["layers"][layer][field] = value;
        let (st, e) = srv.post("/v1/models", &bad).await;
        assert_eq!(st, 422, "{field}: {e}");
        assert_eq!(e["pointer"], pointer, "{field}: {e}");
    }
    let mut bad = doc.clone();
    let layers = bad["layers"].as_array_mut().unwrap();
    let p = layers[2].clone();
    layers.insert(0, p.clone());
    let (st, e) = srv.post("/v1/models", &bad).await;
    assert_eq!(st, 422, "{e}");
    assert_eq!(e["pointer"], "/layers/0/parametric", "{e}");
    let mut bad = doc.clone();
    let layers = bad["layers"].as_array_mut().unwrap();
    layers.push(json!({"activation": "relu", "parametric": vec![1.0; 6]}));
    let (st, e) = srv.post("/v1/models", &bad).await;
    assert_eq!(st, 422, "{e}");
}
