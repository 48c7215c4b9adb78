//! Upgrades without fear: every past release left a database here
//! (`tests/fixtures/upgrade/<release>/`: a SQLite data directory and a PostgreSQL dump,
//! written by that release's binary with `make.py`, and the answers that binary gave about
//! them). Today's binary is started on a copy of each and must answer the same: every
//! record, history, export and rows page with every field the old binary answered (new fields
//! may be added), the same predictions bit for bit, the same keys, roles and tenants; and
//! the job that release was killed in the middle of must resume from its checkpoint and
//! finish as an undisturbed run of its spec did on the old binary.
//!
//! A new migration or format change adds its own release's fixture in the same commit
//! (tests/fixtures/upgrade/README.md). The PostgreSQL half needs
//! `BACKPROP_TEST_POSTGRES_URL` and `psql`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Schema, Server};
use serde_json::{Value, json};

/// The schema `make.py` writes the PostgreSQL half in (renamed on restore).
const FIXTURE_SCHEMA: &str = "backprop_upgrade_fixture";

fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upgrade")
}

/// Every release folder, oldest name first.
fn releases() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures_root())
        .expect("tests/fixtures/upgrade")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no release fixtures");
    dirs
}

fn expected(dir: &Path) -> Value {
    let path = dir.join("expected.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The matrixmultiply kernel this CPU runs (chosen at run time, as `make.py` records it for
/// the machine that wrote the fixture). Floating-point results are bit-identical only
/// between machines with the same kernel; elsewhere they are compared to 1e-5.
fn cpu_kernel() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            return "avx512";
        }
        if is_x86_feature_detected!("fma") && is_x86_feature_detected!("avx") {
            return "fma";
        }
        if is_x86_feature_detected!("avx") {
            return "avx";
        }
        "sse2"
    }
    #[cfg(not(target_arch = "x86_64"))]
    "other"
}

/// Every field of `old` is in `new` with the same value (`new` may have more fields); numbers
/// equal exactly, or within a relative 1e-5 when `exact` is false.
fn assert_same(at: &str, old: &Value, new: &Value, exact: bool) {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            for (k, v) in o {
                let nv = n
                    .get(k)
                    .unwrap_or_else(|| panic!("{at}/{k}: missing now (was {v})"));
                assert_same(&format!("{at}/{k}"), v, nv, exact);
            }
        }
        (Value::Array(o), Value::Array(n)) => {
            assert_eq!(
                o.len(),
                n.len(),
                "{at}: length was {}, now {}",
                o.len(),
                n.len()
            );
            for (i, (a, b)) in o.iter().zip(n).enumerate() {
                assert_same(&format!("{at}/{i}"), a, b, exact);
            }
        }
        (Value::Number(a), Value::Number(b)) if !exact => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!(
                (a - b).abs() <= 1e-5 * a.abs().max(b.abs()).max(1e-3),
                "{at}: was {a}, now {b}"
            );
        }
        _ => assert_eq!(old, new, "{at}: was {old}, now {new}"),
    }
}

/// The data directory of a fixture: a temp copy of its files (the SQLite database, the keys
/// file), so the test never writes to the checked-in ones.
fn copy_dir(from: &Path) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["backprop.db", "keys.json"] {
        let src = from.join(name);
        if src.exists() {
            std::fs::copy(&src, tmp.path().join(name)).unwrap();
        }
    }
    tmp
}

/// Everything the old binary answered, asked again of `srv` (serving the API only, so the
/// interrupted job is still as the kill left it).
async fn check_answers(srv: &Server, exp: &Value, exact: bool) {
    let key = |name: &Value| {
        exp["keys"][name.as_str().unwrap()]
            .as_str()
            .unwrap()
            .to_string()
    };
    for d in exp["datasets"].as_array().unwrap() {
        let k = key(&d["key"]);
        let id = d["record"]["id"].as_str().unwrap();
        let rec = srv.ok("GET", &format!("/v1/datasets/{id}"), &k, None).await;
        assert_same(&format!("dataset {id}"), &d["record"], &rec, true);
        let rows = srv
            .ok(
                "GET",
                &format!("/v1/datasets/{id}/rows?offset=0&limit=10000"),
                &k,
                None,
            )
            .await;
        assert_same(&format!("dataset {id} rows"), &d["rows"], &rows, true);
    }
    for (name, j) in exp["jobs"].as_object().unwrap() {
        let k = key(&j["key"]);
        let id = j["record"]["id"].as_str().unwrap();
        let rec = srv.ok("GET", &format!("/v1/jobs/{id}"), &k, None).await;
        assert_same(&format!("job {name}"), &j["record"], &rec, true);
        let hist = srv
            .ok("GET", &format!("/v1/jobs/{id}/history"), &k, None)
            .await;
        assert_same(&format!("job {name} history"), &j["history"], &hist, true);
        let inputs = json!({"inputs": j["inputs"]});
        let pred = srv
            .ok("POST", &format!("/v1/jobs/{id}/predict"), &k, Some(&inputs))
            .await;
        assert_same(
            &format!("job {name} predict"),
            &j["job_predict"],
            &pred,
            exact,
        );
        if j.get("model").is_some() {
            check_model(srv, &k, &j["model"], exact).await;
        }
    }
    for m in exp["models"].as_array().unwrap() {
        check_model(srv, &key(&m["key"]), m, exact).await;
    }
    // Named deployments (fixtures from 0.1.0+f376117 on): the versions as they were, and the
    // name still predicts what its model predicted.
    for d in exp
        .get("deployments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let k = key(&d["key"]);
        let name = d["record"]["name"].as_str().unwrap();
        let rec = srv
            .ok("GET", &format!("/v1/deployments/{name}"), &k, None)
            .await;
        assert_same(&format!("deployment {name}"), &d["record"], &rec, true);
        let inputs = json!({"inputs": d["inputs"]});
        let pred = srv
            .ok(
                "POST",
                &format!("/v1/deployments/{name}/predict"),
                &k,
                Some(&inputs),
            )
            .await;
        assert_same(
            &format!("deployment {name} predict"),
            &d["predict"],
            &pred,
            exact,
        );
    }
    // Sweeps (fixtures from 0.1.0+1200e33 on): the record as it was, and every job and model
    // of theirs linked to them once the upgrade task has run; their trials leave the lists.
    let mut trials: Vec<Value> = vec![];
    for sw in exp
        .get("sweeps")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let k = key(&sw["key"]);
        let old = &sw["record"];
        let id = old["id"].as_str().unwrap();
        let rec = srv.ok("GET", &format!("/v1/sweeps/{id}"), &k, None).await;
        assert_same(&format!("sweep {id}"), old, &rec, true);
        let folds = old["spec"]["folds"].as_i64().unwrap().max(1);
        let trial_jobs: i64 = old["trials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["jobs"].as_array().unwrap().len() as i64 * folds)
            .sum();
        let refit = old["best"]["refit_job_id"].as_str();
        let t0 = std::time::Instant::now();
        let linked = loop {
            let l = srv
                .ok(
                    "GET",
                    &format!("/v1/jobs?sweep_id={id}&limit=500"),
                    &k,
                    None,
                )
                .await;
            if l["total"].as_i64() == Some(trial_jobs + i64::from(refit.is_some())) {
                break l;
            }
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(20),
                "sweep {id}'s jobs were not linked: {l}\n{}",
                srv.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        for j in linked["items"].as_array().unwrap() {
            let l = &j["sweep"];
            if Some(j["id"].as_str().unwrap()) == refit {
                assert_eq!(
                    (&l["role"], &l["trial"]),
                    (&json!("refit"), &old["best"]["trial"])
                );
                continue;
            }
            assert_eq!(l["role"], "trial", "{j}");
            assert_eq!(
                l["fold"].as_i64(),
                Some(j["spec"]["validation_fold"].as_i64().unwrap_or(0)),
                "{j}"
            );
            trials.push(j["id"].clone());
            if let Some(m) = j["model_id"].as_str() {
                let m = srv.ok("GET", &format!("/v1/models/{m}"), &k, None).await;
                assert_eq!(m["sweep"], *l, "{m}");
                trials.push(m["id"].clone());
            }
        }
        for t in old["trials"].as_array().unwrap() {
            for (rung, j) in t["jobs"].as_array().unwrap().iter().enumerate() {
                let j = srv
                    .ok(
                        "GET",
                        &format!("/v1/jobs/{}", j.as_str().unwrap()),
                        &k,
                        None,
                    )
                    .await;
                assert_eq!(
                    (&j["sweep"]["trial"], j["sweep"]["rung"].as_u64()),
                    (&t["trial"], Some(rung as u64)),
                    "{j}"
                );
            }
        }
    }
    // The lists as they were, trials included; without `include=trials`, the same less the
    // sweeps' trial jobs and models.
    for (name, lists) in exp["lists"].as_object().unwrap() {
        let k = exp["keys"][name].as_str().unwrap();
        for (what, ids) in lists.as_object().unwrap() {
            let ids_of = |v: &Value| -> Vec<Value> {
                v["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x["id"].clone())
                    .collect()
            };
            let now = srv
                .ok(
                    "GET",
                    &format!("/v1/{what}?limit=100&include=trials"),
                    k,
                    None,
                )
                .await;
            assert_eq!(
                &Value::Array(ids_of(&now)),
                ids,
                "{name}'s {what}, newest first"
            );
            let shown = srv
                .ok("GET", &format!("/v1/{what}?limit=100"), k, None)
                .await;
            let want: Vec<Value> = ids
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| !trials.contains(i))
                .cloned()
                .collect();
            assert_eq!(ids_of(&shown), want, "{name}'s {what} without trials");
        }
    }
    // Keys, roles and tenants from the old keys file.
    let iris = &exp["datasets"][0]["record"]["id"].as_str().unwrap();
    let perceptron = exp["models"][0]["record"]["id"].as_str().unwrap();
    let probe = json!({"inputs": [[-1, 2]]});
    let predictor = exp["keys"]["acme_predictor"].as_str().unwrap();
    let p = srv
        .ok(
            "POST",
            &format!("/v1/models/{perceptron}/predict"),
            predictor,
            Some(&probe),
        )
        .await;
    assert_same(
        "predictor's predict",
        &exp["models"][0]["predict"]["outputs"][0],
        &p["outputs"][0],
        exact,
    );
    let (st, _) = srv
        .call("GET", &format!("/v1/datasets/{iris}"), predictor, None)
        .await;
    assert_eq!(st, 403, "a predictor key still may not read datasets");
    let globex = exp["keys"]["globex_admin"].as_str().unwrap();
    let (st, _) = srv
        .call("GET", &format!("/v1/datasets/{iris}"), globex, None)
        .await;
    assert_eq!(st, 404, "another tenant's dataset stays invisible");
    let revoked = exp["keys"]["revoked"].as_str().unwrap();
    let (st, _) = srv.call("GET", "/v1/jobs", revoked, None).await;
    assert_eq!(st, 401, "a revoked key stays revoked");
}

async fn check_model(srv: &Server, k: &str, m: &Value, exact: bool) {
    let id = m["record"]["id"].as_str().unwrap();
    let rec = srv.ok("GET", &format!("/v1/models/{id}"), k, None).await;
    assert_same(&format!("model {id}"), &m["record"], &rec, true);
    let export = srv
        .ok("GET", &format!("/v1/models/{id}/export"), k, None)
        .await;
    assert_same(&format!("model {id} export"), &m["export"], &export, true);
    let inputs = json!({"inputs": m["inputs"]});
    let pred = srv
        .ok(
            "POST",
            &format!("/v1/models/{id}/predict"),
            k,
            Some(&inputs),
        )
        .await;
    assert_same(&format!("model {id} predict"), &m["predict"], &pred, exact);
}

/// The interrupted job, with workers now: it resumes from its checkpoint (a new attempt),
/// keeps the epochs up to the checkpoint as they were, and ends with the history and model
/// of the twin the old binary trained undisturbed from the same spec.
async fn check_resume(srv: &Server, exp: &Value, exact: bool) {
    let job = &exp["jobs"]["interrupted"];
    let twin = &exp["jobs"]["twin"];
    let k = exp["keys"][job["key"].as_str().unwrap()].as_str().unwrap();
    let id = job["record"]["id"].as_str().unwrap();
    let n = job["record"]["epochs"].as_i64().unwrap();
    let checkpoint = job["job_predict"]["epoch"].as_i64().unwrap();
    assert!(
        checkpoint >= 1 && checkpoint < n,
        "the fixture's job was killed mid-training"
    );
    let done = srv.wait_job_as(k, id, Duration::from_secs(50)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        done["attempt"],
        job["record"]["attempt"].as_i64().unwrap() + 1,
        "resumed once"
    );
    let hist = srv
        .ok("GET", &format!("/v1/jobs/{id}/history"), k, None)
        .await;
    let epochs = hist["epochs"].as_array().unwrap();
    let numbers: Vec<i64> = epochs
        .iter()
        .map(|e| e["epoch"].as_i64().unwrap())
        .collect();
    assert_eq!(
        numbers,
        (1..=n).collect::<Vec<_>>(),
        "each epoch once, in order"
    );
    let before = job["history"]["epochs"].as_array().unwrap();
    let twin_epochs = twin["history"]["epochs"].as_array().unwrap();
    for (i, e) in epochs.iter().enumerate() {
        let epoch = i as i64 + 1;
        if epoch <= checkpoint {
            // Kept from before the kill, timings included.
            assert_same(&format!("epoch {epoch}"), &before[i], e, true);
        }
        for field in [
            "loss",
            "val_loss",
            "accuracy",
            "val_accuracy",
            "learning_rate",
        ] {
            assert_same(
                &format!("epoch {epoch} {field} (vs the undisturbed twin)"),
                &twin_epochs[i].get(field).cloned().unwrap_or(Value::Null),
                &e.get(field).cloned().unwrap_or(Value::Null),
                exact,
            );
        }
    }
    let model = done["model_id"].as_str().unwrap();
    let inputs = json!({"inputs": job["inputs"]});
    let pred = srv
        .ok(
            "POST",
            &format!("/v1/models/{model}/predict"),
            k,
            Some(&inputs),
        )
        .await;
    assert_same(
        "the resumed job's model predicts as the twin's",
        &twin["model"]["predict"]["outputs"],
        &pred["outputs"],
        exact,
    );
}

fn exactness(exp: &Value) -> bool {
    let exact = exp["cpu_kernel"] == cpu_kernel();
    if !exact {
        println!(
            "fixture written with the {} kernel, this CPU runs {}: floats compared to 1e-5",
            exp["cpu_kernel"],
            cpu_kernel()
        );
    }
    exact
}

#[tokio::test]
async fn sqlite_databases_of_every_release_serve_the_same_answers_and_resume() {
    for release in releases() {
        let dir = release.join("sqlite");
        let exp = expected(&dir);
        let exact = exactness(&exp);
        let mut srv = Server::start_in(copy_dir(&dir), &["--no-workers"]).await;
        check_answers(&srv, &exp, exact).await;
        srv.terminate();
        srv.set_args(&["--threads", "2"]);
        srv.launch().await;
        check_resume(&srv, &exp, exact).await;
        println!("{}: ok", release.display());
    }
}

#[tokio::test]
async fn postgres_dumps_of_every_release_serve_the_same_answers_and_resume() {
    for release in releases() {
        let Some(schema) = Schema::create().await else {
            return;
        };
        let dir = release.join("postgres");
        let exp = expected(&dir);
        let exact = exactness(&exp);
        schema.restore_dump(
            &std::fs::read_to_string(dir.join("dump.sql")).unwrap(),
            FIXTURE_SCHEMA,
        );
        let mut srv = Server::start_in(
            copy_dir(&dir),
            &["--no-workers", "--database-url", &schema.url],
        )
        .await;
        check_answers(&srv, &exp, exact).await;
        srv.terminate();
        srv.set_args(&["--threads", "2", "--database-url", &schema.url]);
        srv.launch().await;
        check_resume(&srv, &exp, exact).await;
        println!("{}: ok", release.display());
    }
}
