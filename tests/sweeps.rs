//! "Train me the best model" as people expect it (issue 26), over real HTTP: a sweep's trial
//! jobs and models kept out of the lists but linked to it, its progress, its event stream,
//! the refit judged on out-of-fold predictions, the dataset's leaderboard, and a dry run.

mod common;

use std::time::Duration;

use common::{Server, parse_sse, wait_sweep};
use serde_json::{Value, json};

const KEYS: &str = "acme:trainer:acme-train,beta:trainer:beta-train";
const ACME: &str = "acme-train";
const BETA: &str = "beta-train";

async fn upload_iris(srv: &Server) -> String {
    let r = srv
        .client
        .post(srv.url("/v1/datasets?target=target&name=iris"))
        .bearer_auth(ACME)
        .header("content-type", "text/csv")
        .body(include_str!("data/iris.train.csv"))
        .send()
        .await
        .unwrap();
    let (st, v) = common::split(r).await;
    assert_eq!(st, 201, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// Three trials on two folds, halved once (2 → 6 epochs), the chosen one refitted.
fn sweep_request(dataset: &str) -> Value {
    json!({
        "dataset_id": dataset, "seed": 4, "max_trials": 3, "folds": 2, "refit": true,
        "name": "iris search", "metric": "val_log_loss",
        "base": {"layers": [{"units": 8, "activation": "relu"}, {}],
                 "loss": "categorical_crossentropy", "epochs": 6, "batch_size": 16,
                 "validation_split": 0.5},
        "space": {"/optimizer/learning_rate": {"log_uniform": [0.003, 0.1]}},
        "halving": {"min_epochs": 2, "eta": 3},
    })
}

fn ids(page: &Value) -> Vec<String> {
    let mut v: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_sweep_keeps_its_trials_to_itself_and_hands_over_a_judged_model() {
    let srv = Server::start(&["--api-keys", KEYS, "--max-concurrent-jobs", "2"]).await;
    let dataset = upload_iris(&srv).await;
    let plain = srv
        .ok(
            "POST",
            "/v1/jobs",
            ACME,
            Some(&json!({"dataset_id": dataset, "name": "plain",
                "layers": [{"units": 8, "activation": "relu"}, {}],
                "loss": "categorical_crossentropy", "epochs": 5, "validation_split": 0.25})),
        )
        .await;
    let plain = srv
        .wait_job_as(ACME, plain["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    let s = srv
        .ok("POST", "/v1/sweeps", ACME, Some(&sweep_request(&dataset)))
        .await;
    let id = s["id"].as_str().unwrap().to_string();
    assert_eq!(s["progress"]["trials"], 3, "{s}");
    assert_eq!(s["progress"]["phase"], "searching", "{s}");

    // The event stream, followed live from the start to the end.
    let r = srv
        .client
        .get(srv.url(&format!("/v1/sweeps/{id}/events")))
        .bearer_auth(ACME)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(300), r.text())
        .await
        .expect("the stream ends with the sweep")
        .unwrap();
    let done = wait_sweep(&srv, ACME, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let best = &done["best"];

    // Progress once done: every trial accounted for, the epochs planned an upper bound.
    let p = &done["progress"];
    assert_eq!(p["phase"], "done", "{p}");
    assert_eq!(
        (p["done"].as_i64(), p["running"].as_i64()),
        (Some(3), Some(0)),
        "{p}"
    );
    assert_eq!(p["stopped_early"], 2, "{p}");
    assert_eq!(
        (p["rung"].as_i64(), p["rung_epochs"].as_i64()),
        (Some(1), Some(6))
    );
    // 3 trials × 2 epochs + 1 × 4 more, on 2 folds, and a refit of at most 6.
    assert_eq!(p["epochs_planned"], (3 * 2 + 4) * 2 + 6, "{p}");
    assert!(p["epochs_done"].as_i64().unwrap() <= p["epochs_planned"].as_i64().unwrap());
    assert_eq!(p["eta_seconds"], 0.0);
    assert_eq!(done["refit_job_id"], best["refit_job_id"]);

    // Every job of the sweep says what it is to it; the lists leave the trials out.
    let all = srv
        .ok("GET", &format!("/v1/jobs?sweep_id={id}"), ACME, None)
        .await;
    // 3 trials × 2 folds at rung 0, 1 × 2 at rung 1, the refit.
    assert_eq!(all["total"], 9, "{all}");
    let mut roles = std::collections::BTreeMap::new();
    for j in all["items"].as_array().unwrap() {
        let l = &j["sweep"];
        assert_eq!(l["id"], id.as_str(), "{j}");
        *roles
            .entry(l["role"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
        if l["role"] == "trial" {
            assert_eq!(
                j["spec"]["validation_fold"].as_i64().unwrap_or(0),
                l["fold"].as_i64().unwrap(),
                "{j}"
            );
        } else {
            assert_eq!(j["id"], best["job_id"]);
            assert_eq!(l["trial"], best["trial"]);
        }
    }
    assert_eq!(roles.get("trial"), Some(&8));
    assert_eq!(roles.get("refit"), Some(&1));
    // Every job has a name of its own (a promoted trial's says its rung).
    let names: std::collections::BTreeSet<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["spec"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 9, "{names:?}");
    assert!(names.contains("iris search trial 0 fold 1"), "{names:?}");
    let listed = srv.ok("GET", "/v1/jobs", ACME, None).await;
    assert_eq!(
        ids(&listed),
        {
            let mut v = vec![
                plain["id"].as_str().unwrap().to_string(),
                best["job_id"].as_str().unwrap().to_string(),
            ];
            v.sort();
            v
        },
        "{listed}"
    );
    assert_eq!(listed["total"], 2);
    let everything = srv.ok("GET", "/v1/jobs?include=trials", ACME, None).await;
    assert_eq!(everything["total"], 10);
    let models = srv.ok("GET", "/v1/models", ACME, None).await;
    assert_eq!(models["total"], 2, "{models}");
    let trial_models = srv
        .ok("GET", &format!("/v1/models?sweep_id={id}"), ACME, None)
        .await;
    assert_eq!(trial_models["total"], 9);
    for (q, pointer) in [
        ("include=everything", "/include"),
        ("sweep_id=nope", "/sweep_id"),
    ] {
        let (st, e) = srv.call("GET", &format!("/v1/jobs?{q}"), ACME, None).await;
        assert_eq!(
            (st, &e["errors"][0]["pointer"]),
            (422, &json!(pointer)),
            "{e}"
        );
    }
    // Another tenant sees none of it.
    let theirs = srv
        .ok("GET", &format!("/v1/jobs?sweep_id={id}"), BETA, None)
        .await;
    assert_eq!(theirs["total"], 0);

    // The refit is judged on the chosen trial's out-of-fold predictions: every training row
    // once, by the fold model that held it out.
    let refit = srv
        .ok(
            "GET",
            &format!("/v1/models/{}", best["model_id"].as_str().unwrap()),
            ACME,
            None,
        )
        .await;
    let ev = &refit["metrics"]["evaluation"];
    assert_eq!(refit["scored_on"]["kind"], "out_of_fold", "{refit}");
    assert_eq!(refit["scored_on"]["folds"], 2);
    assert_eq!(ev["rows"], 120, "{ev}");
    assert_eq!(
        ev["confusion_matrix"]["matrix"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap())
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>(),
        120
    );
    assert!(ev["accuracy"].as_f64().unwrap() > 0.5, "{ev}");
    assert_eq!(ev["permutation_importance"].as_array().unwrap().len(), 4);
    assert!(ev["roc_auc"].is_number(), "{ev}");
    assert_eq!(refit["sweep"]["role"], "refit");
    // The folds' own evaluations together are the out-of-fold one: their rows add up, and
    // the accuracy is the row-weighted mean of theirs.
    let fold_models = refit["scored_on"]["fold_models"]
        .as_array()
        .unwrap()
        .clone();
    let (mut rows, mut correct) = (0.0, 0.0);
    for m in &fold_models {
        let m = srv
            .ok(
                "GET",
                &format!("/v1/models/{}", m.as_str().unwrap()),
                ACME,
                None,
            )
            .await;
        assert_eq!(m["scored_on"]["kind"], "validation", "{m}");
        let e = &m["metrics"]["evaluation"];
        rows += e["rows"].as_f64().unwrap();
        correct += e["rows"].as_f64().unwrap() * e["accuracy"].as_f64().unwrap();
    }
    assert_eq!(rows, 120.0);
    assert!(
        (correct / rows - ev["accuracy"].as_f64().unwrap()).abs() < 1e-9,
        "{correct} / {rows} vs {ev}"
    );
    let plain_model = srv
        .ok(
            "GET",
            &format!("/v1/models/{}", plain["model_id"].as_str().unwrap()),
            ACME,
            None,
        )
        .await;
    assert_eq!(plain_model["scored_on"]["kind"], "validation");
    assert!(plain_model["sweep"].is_null());

    // The leaderboard: the plain job's model, each trial at each rung (its folds' mean),
    // and the refit, best first.
    let board = srv
        .ok(
            "GET",
            &format!("/v1/datasets/{dataset}/leaderboard"),
            ACME,
            None,
        )
        .await;
    assert_eq!(board["metric"], "log_loss");
    assert_eq!(board["higher_is_better"], false);
    let entries = board["entries"].as_array().unwrap();
    // 1 plain + 3 trials at rung 0 + 1 at rung 1 + the refit.
    assert_eq!(entries.len(), 6, "{board}");
    let values: Vec<f64> = entries
        .iter()
        .map(|e| e["value"].as_f64().unwrap())
        .collect();
    assert!(values.windows(2).all(|w| w[0] <= w[1]), "{values:?}");
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["rank"], i + 1);
    }
    let trial_entries: Vec<&Value> = entries
        .iter()
        .filter(|e| e["sweep"]["role"] == "trial")
        .collect();
    assert_eq!(trial_entries.len(), 4);
    for e in &trial_entries {
        assert_eq!(e["scored_on"]["kind"], "cross_validation", "{e}");
        assert_eq!(e["fold_models"].as_array().unwrap().len(), 2);
        assert_eq!(e["scored_on"]["rows"], 120);
    }
    // The chosen trial's entry at the last rung scores its fold models: the mean of their
    // own evaluations (the sweep's metric is the folds' mean at the epoch they share, which
    // these models, trained to the last epoch, need not hold).
    let chosen = trial_entries
        .iter()
        .find(|e| e["sweep"]["trial"] == best["trial"] && e["sweep"]["rung"] == 1)
        .expect("the chosen trial at the last rung");
    let mut own = 0.0;
    for m in chosen["fold_models"].as_array().unwrap() {
        let m = srv
            .ok(
                "GET",
                &format!("/v1/models/{}", m.as_str().unwrap()),
                ACME,
                None,
            )
            .await;
        own += m["metrics"]["evaluation"]["log_loss"].as_f64().unwrap() / 2.0;
    }
    assert!(
        (chosen["value"].as_f64().unwrap() - own).abs() < 1e-9,
        "{chosen}"
    );
    assert!(best["metric"].as_f64().unwrap() <= own + 1e-12, "{best}");
    let refit_entry = entries
        .iter()
        .find(|e| e["model_id"] == best["model_id"])
        .unwrap();
    assert_eq!(refit_entry["scored_on"]["kind"], "out_of_fold");
    let by_accuracy = srv
        .ok(
            "GET",
            &format!("/v1/datasets/{dataset}/leaderboard?metric=accuracy"),
            ACME,
            None,
        )
        .await;
    assert_eq!(by_accuracy["higher_is_better"], true);
    let acc: Vec<f64> = by_accuracy["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].as_f64().unwrap())
        .collect();
    assert!(acc.windows(2).all(|w| w[0] >= w[1]), "{acc:?}");
    let (st, e) = srv
        .call(
            "GET",
            &format!("/v1/datasets/{dataset}/leaderboard?metric=f2"),
            ACME,
            None,
        )
        .await;
    assert_eq!(
        (st, &e["errors"][0]["pointer"]),
        (422, &json!("/metric")),
        "{e}"
    );
    let (st, _) = srv
        .call(
            "GET",
            &format!("/v1/datasets/{dataset}/leaderboard"),
            BETA,
            None,
        )
        .await;
    assert_eq!(st, 404);

    // The stream told the whole story in order, each id after the one before, and ended
    // with the sweep's record.
    let events = parse_sse(&text);
    let with_ids: Vec<&(String, Option<String>, Value)> =
        events.iter().filter(|e| e.1.is_some()).collect();
    let ids_seen: Vec<&String> = with_ids.iter().map(|e| e.1.as_ref().unwrap()).collect();
    assert!(ids_seen.windows(2).all(|w| w[0] < w[1]), "{text}");
    let count = |kind: &str| events.iter().filter(|e| e.0 == kind).count();
    assert_eq!(count("queued"), 7, "{text}"); // 6 fold jobs at rung 0, the refit
    assert_eq!(count("promoted"), 2, "{text}"); // the chosen trial's 2 folds
    assert_eq!(count("started"), 9, "{text}");
    assert_eq!(count("ended"), 9, "{text}");
    assert_eq!(count("trial_result"), 4, "{text}");
    assert_eq!(count("end"), 1);
    assert!(count("progress") >= 1);
    let last = events.last().unwrap();
    assert_eq!(last.0, "status", "{text}");
    assert_eq!(last.2["best"], *best);
    let results: Vec<&Value> = events
        .iter()
        .filter(|e| e.0 == "trial_result")
        .map(|e| &e.2)
        .collect();
    let chosen_result = results
        .iter()
        .find(|r| r["trial"] == best["trial"] && r["rung"] == 1)
        .unwrap();
    assert_eq!(chosen_result["metric"], best["metric"]);

    // Reconnecting after an event replays only what came after it.
    let mid = with_ids[with_ids.len() / 2].1.clone().unwrap();
    let r = srv
        .client
        .get(srv.url(&format!("/v1/sweeps/{id}/events")))
        .bearer_auth(ACME)
        .header("Last-Event-ID", &mid)
        .send()
        .await
        .unwrap();
    let again = parse_sse(&r.text().await.unwrap());
    let again_ids: Vec<String> = again.iter().filter_map(|e| e.1.clone()).collect();
    let want: Vec<String> = ids_seen
        .iter()
        .filter(|i| ***i > mid)
        .map(|i| (*i).clone())
        .collect();
    assert_eq!(again_ids, want);
    let r = srv
        .client
        .get(srv.url(&format!("/v1/sweeps/{id}/events?since={mid}")))
        .bearer_auth(ACME)
        .send()
        .await
        .unwrap();
    let since: Vec<String> = parse_sse(&r.text().await.unwrap())
        .iter()
        .filter_map(|e| e.1.clone())
        .collect();
    assert_eq!(since, want);
    let (st, _) = srv
        .call("GET", &format!("/v1/sweeps/{id}/events"), BETA, None)
        .await;
    assert_eq!(st, 404);

    // Deleting the sweep deletes its trials; the best model stays and is listed.
    assert_eq!(
        srv.call("DELETE", &format!("/v1/sweeps/{id}"), ACME, None)
            .await
            .0,
        204
    );
    let models = srv.ok("GET", "/v1/models?include=trials", ACME, None).await;
    assert_eq!(models["total"], 2, "{models}");
}

/// A dry run checks the request as a real one is and says what it would run; nothing is
/// created.
#[tokio::test]
async fn a_sweep_dry_run_says_what_it_would_run_and_creates_nothing() {
    let srv = Server::start(&["--api-keys", KEYS]).await;
    let dataset = upload_iris(&srv).await;
    let (st, d) = srv
        .call(
            "POST",
            "/v1/sweeps?dry_run=true",
            ACME,
            Some(&sweep_request(&dataset)),
        )
        .await;
    assert_eq!(st, 200, "{d}");
    assert_eq!(d["valid"], true);
    assert_eq!(d["trials"], 3);
    assert_eq!(d["rungs"], json!([2, 6]));
    assert_eq!(d["trials_per_rung"], json!([3, 1]));
    assert_eq!(d["folds"], 2);
    assert_eq!(d["jobs"], 3 * 2 + 2 + 1);
    assert_eq!(d["epochs"], (3 * 2 + 4) * 2 + 6);
    assert!(
        d["estimated_memory_bytes_per_job"].as_u64().unwrap() > 0,
        "{d}"
    );
    let per_epoch = d["estimated_seconds_per_epoch"].as_f64().unwrap();
    assert!(per_epoch > 0.0 && per_epoch < 1.0, "{d}");
    // The epochs at that pace, and 30 ms for each job (rounded to a tenth of a second).
    let want = per_epoch * 26.0 + 9.0 * 0.03;
    assert!(
        (d["estimated_seconds"].as_f64().unwrap() - want).abs() <= 0.05 + 1e-9,
        "{want}: {d}"
    );
    assert_eq!(d["spec"]["max_trials"], 3);

    // The automatic mode's choices, written out.
    let (st, auto) = srv
        .call(
            "POST",
            "/v1/sweeps?dry_run=true",
            ACME,
            Some(&json!({"dataset_id": dataset})),
        )
        .await;
    assert_eq!(st, 200, "{auto}");
    assert_eq!(auto["trials"], 20);
    assert_eq!(auto["rungs"], json!([20, 60, 180]));
    assert_eq!(auto["trials_per_rung"], json!([20, 7, 3]));
    assert_eq!(auto["folds"], 5);
    assert_eq!(auto["refit"], true);
    assert_eq!(auto["spec"]["automatic"], true);

    // Refused as a real one would be; nothing was created either way.
    let mut bad = sweep_request(&dataset);
    bad["base"]["validation_split"] = json!(0.0);
    let (st, e) = srv
        .call("POST", "/v1/sweeps?dry_run=true", ACME, Some(&bad))
        .await;
    assert_eq!(
        (st, &e["errors"][0]["pointer"]),
        (422, &json!("/base/validation_split")),
        "{e}"
    );
    let (st, e) = srv
        .call("POST", "/v1/sweeps?dry_run=maybe", ACME, Some(&bad))
        .await;
    assert_eq!(st, 400, "{e}");
    let (st, e) = srv
        .call(
            "POST",
            "/v1/sweeps?dry_run=true",
            BETA,
            Some(&sweep_request(&dataset)),
        )
        .await;
    assert_eq!(
        (st, &e["errors"][0]["pointer"]),
        (422, &json!("/dataset_id")),
        "{e}"
    );
    let sweeps = srv.ok("GET", "/v1/sweeps", ACME, None).await;
    assert_eq!(sweeps["total"], 0);
    let jobs = srv.ok("GET", "/v1/jobs?include=trials", ACME, None).await;
    assert_eq!(jobs["total"], 0);
}

/// Issue 25: a cross-validated trial is scored at one epoch its folds share — the epoch whose
/// validation log loss, averaged over the folds, is best — not each fold at its own best
/// epoch; the refit trains that many epochs. The folds' per-epoch `val_log_loss` is the
/// unpenalised loss (below `val_loss` under L2) and matches the model's own evaluation; a
/// regression's per-epoch `val_rmse` is in the target's units.
#[tokio::test]
async fn cross_validated_trials_are_scored_at_the_epoch_their_folds_share() {
    let srv = Server::start(&[]).await;
    let (st, iris) = common::split(
        srv.post_raw(
            "/v1/datasets?target=target&name=iris",
            "text/csv",
            include_str!("data/iris.train.csv"),
        )
        .await,
    )
    .await;
    assert_eq!(st, 201, "{iris}");
    let (st, s) = srv
        .post(
            "/v1/sweeps",
            &json!({
                "dataset_id": iris["id"], "seed": 2, "max_trials": 2, "folds": 3, "refit": true,
                "metric": "val_log_loss",
                "base": {"layers": [{"units": 8, "activation": "relu"}, {}],
                         "loss": "categorical_crossentropy", "epochs": 12, "batch_size": 16,
                         "validation_split": 0.33, "l2": 0.01, "seed": 1},
                "space": {"/optimizer/learning_rate": {"choice": [0.1, 0.3]}},
            }),
        )
        .await;
    assert_eq!(st, 202, "{s}");
    let id = s["id"].as_str().unwrap();
    let done = wait_sweep(&srv, "", id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let mut flattered = vec![];
    for t in done["trials"].as_array().unwrap() {
        let jobs: Vec<&str> = std::iter::once(&t["job_id"])
            .chain(t["fold_jobs"].as_array().unwrap())
            .map(|j| j.as_str().unwrap())
            .collect();
        assert_eq!(jobs.len(), 3, "{t}");
        let mut curves = vec![];
        for j in &jobs {
            let h = common::history(&srv, j, 12).await;
            let curve: Vec<f64> = h
                .iter()
                .map(|e| {
                    let (ll, vl) = (e["val_log_loss"].as_f64(), e["val_loss"].as_f64());
                    let (ll, vl) = (ll.expect("val_log_loss recorded"), vl.unwrap());
                    assert!(ll < vl, "the L2 penalty is out of val_log_loss: {e}");
                    ll
                })
                .collect();
            // The job ran its 12 epochs: its model holds the last one, whose recorded loss
            // is the model's own evaluation on the validation fold.
            let job = srv.get(&format!("/v1/jobs/{j}")).await.1;
            let model = srv
                .get(&format!("/v1/models/{}", job["model_id"].as_str().unwrap()))
                .await
                .1;
            let evaluated = model["metrics"]["evaluation"]["log_loss"].as_f64().unwrap();
            assert!(
                (evaluated - curve[11]).abs() < 1e-4 * evaluated.max(1.0),
                "{evaluated} against {}",
                curve[11]
            );
            curves.push(curve);
        }
        let means: Vec<f64> = (0..12)
            .map(|e| curves.iter().map(|c| c[e]).sum::<f64>() / 3.0)
            .collect();
        let (best, mean) = means
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .unwrap();
        assert_eq!(t["metric_epoch"], best + 1, "{t} {means:?}");
        let metric = t["metric"].as_f64().unwrap();
        assert!((metric - mean).abs() < 1e-9, "{metric} against {mean}");
        // Each fold at its own best would have scored lower (or the same): never above.
        let own: f64 = curves
            .iter()
            .map(|c| c.iter().copied().fold(f64::INFINITY, f64::min))
            .sum::<f64>()
            / 3.0;
        assert!(own <= metric + 1e-12, "{own} against {metric}");
        flattered.push(metric - own);
    }
    // This sweep's curves are noisy (rates 0.1 and 0.3): the folds' own best epochs differ,
    // so scoring each at its own would have flattered both trials.
    assert!(flattered.iter().all(|&d| d > 1e-6), "{flattered:?}");
    let best = &done["best"];
    let chosen = done["trials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["trial"] == best["trial"])
        .unwrap();
    assert_eq!(best["metric_epoch"], chosen["metric_epoch"], "{best}");
    assert_eq!(best["metric"], chosen["metric"], "{best}");
    let refit = srv
        .get(&format!("/v1/jobs/{}", best["job_id"].as_str().unwrap()))
        .await
        .1;
    assert_eq!(refit["sweep"]["role"], "refit", "{refit}");
    assert_eq!(refit["spec"]["epochs"], best["metric_epoch"], "{refit}");
    // The event stream's results say the same.
    let text = srv
        .client
        .get(srv.url(&format!("/v1/sweeps/{id}/events")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let results: Vec<Value> = parse_sse(&text)
        .into_iter()
        .filter(|(kind, _, _)| kind == "trial_result")
        .map(|(_, _, d)| d)
        .collect();
    assert_eq!(results.len(), 2, "{text}");
    for r in &results {
        let t = &done["trials"][r["trial"].as_u64().unwrap() as usize];
        assert_eq!(
            (&r["metric"], &r["metric_epoch"]),
            (&t["metric"], &t["metric_epoch"])
        );
    }

    // A regression's per-epoch val_rmse is in the target's units: the model's evaluation.
    let (st, wide) = srv.post("/v1/datasets", &common::wide(300, 4)).await;
    assert_eq!(st, 201, "{wide}");
    let (st, job) = srv
        .post(
            "/v1/jobs",
            &json!({"dataset_id": wide["id"], "layers": [{"units": 16, "activation": "relu"}, {}],
                    "loss": "mse", "epochs": 5, "validation_split": 0.2, "l2": 0.01,
                    "standardize_target": true, "seed": 1}),
        )
        .await;
    assert_eq!(st, 202, "{job}");
    let job = srv
        .wait_job(job["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    let last = &common::history(&srv, job["id"].as_str().unwrap(), 5).await[4];
    let model = srv
        .get(&format!("/v1/models/{}", job["model_id"].as_str().unwrap()))
        .await
        .1;
    let evaluated = model["metrics"]["evaluation"]["rmse"].as_f64().unwrap();
    let recorded = last["val_rmse"].as_f64().expect("val_rmse recorded");
    assert!(
        (evaluated - recorded).abs() < 1e-4 * evaluated,
        "{evaluated} against {recorded}: {last}"
    );
    assert!(last["val_log_loss"].is_null(), "{last}");
}
