//! Backups taken while a server serves and trains, restored into a new deployment:
//! `backprop backup` / `backprop restore` for SQLite, `pg_dump` / `psql` for PostgreSQL. The
//! restored server answers the same records and predictions (bit for bit), carries the keys,
//! and the job that was training when the snapshot was taken resumes from the checkpoint in
//! it and ends with the same history and model as the original's run.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Schema, Server};
use serde_json::{Value, json};

const KEY: &str = "backup-test-secret";

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_backprop"));
    c.env("RUST_LOG", "warn").env_remove("DATABASE_URL");
    c
}

/// `backprop ARGS`: (success, stderr).
fn run(args: &[&str]) -> (bool, String) {
    let out = bin().args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A data directory whose keys file holds a trainer key (its secret returned). The tests'
/// requests use `KEY` from `--api-keys`; the file's key proves the keys file travels.
fn dir_with_keys() -> (tempfile::TempDir, String) {
    let tmp = tempfile::tempdir().unwrap();
    let out = bin()
        .args([
            "keys",
            "create",
            "--tenant",
            "acme",
            "--role",
            "trainer",
            "--data-dir",
        ])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_string();
    (tmp, secret)
}

const PERCEPTRON: &str = r#"{"input_dim": 2, "layers": [{"units": 1, "activation": "sigmoid", "weights": [[3], [-2]], "bias": [1]}]}"#;

/// Long enough to be still training when the backup or dump is taken right after its first
/// checkpoint (60 epochs sometimes ended first on a fast CPU).
const LONG_EPOCHS: i64 = 300;

fn long_spec(dataset: &str) -> Value {
    json!({
        "dataset_id": dataset, "name": "long",
        "layers": [{"units": 128, "activation": "relu"}, {"units": 128, "activation": "tanh"}, {"units": 3}],
        "loss": "sparse_categorical_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.001},
        "epochs": LONG_EPOCHS, "batch_size": 2, "validation_split": 0.1, "seed": 4
    })
}

fn short_spec(dataset: &str) -> Value {
    json!({
        "dataset_id": dataset, "name": "short",
        "layers": [{"units": 8, "activation": "relu"}, {"units": 3}],
        "loss": "sparse_categorical_crossentropy", "epochs": 15, "batch_size": 16, "seed": 1
    })
}

fn iris_inputs() -> Value {
    json!({"inputs": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 2.8, 4.4, 1.4]]})
}

async fn wait_done(srv: &Server, key: &str, id: &str) -> Value {
    let j = srv.wait_job_as(key, id, Duration::from_secs(60)).await;
    assert_eq!(j["status"], "succeeded", "{j}");
    j
}

/// Waits until the job has a checkpoint (its predict answers from one), some epochs ago.
async fn wait_checkpoint(srv: &Server, key: &str, id: &str) {
    let t0 = Instant::now();
    loop {
        let (st, p) = srv
            .call(
                "POST",
                &format!("/v1/jobs/{id}/predict"),
                key,
                Some(&iris_inputs()),
            )
            .await;
        if st == 200 {
            assert_eq!(p["source"], "checkpoint", "the job is still training: {p}");
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no checkpoint: {st} {p}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a deployment holds: dataset, jobs and models with their predictions.
struct Made {
    dataset: String,
    short: String,
    long: String,
    perceptron: String,
}

async fn populate(srv: &Server) -> Made {
    let iris =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/iris.csv")).unwrap();
    let r = srv
        .client
        .post(srv.url("/v1/datasets?name=iris&target=target"))
        .bearer_auth(KEY)
        .header("content-type", "text/csv")
        .body(iris)
        .send()
        .await
        .unwrap();
    let (st, d) = common::split(r).await;
    assert_eq!(st, 201, "{d}");
    let dataset = d["id"].as_str().unwrap().to_string();
    let p: Value = serde_json::from_str(PERCEPTRON).unwrap();
    let perceptron = srv.ok("POST", "/v1/models", KEY, Some(&p)).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let short = srv
        .ok("POST", "/v1/jobs", KEY, Some(&short_spec(&dataset)))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_done(srv, KEY, &short).await;
    let long = srv
        .ok("POST", "/v1/jobs", KEY, Some(&long_spec(&dataset)))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_checkpoint(srv, KEY, &long).await;
    Made {
        dataset,
        short,
        long,
        perceptron,
    }
}

/// The answers that must survive: records of everything finished, and predictions.
async fn answers(srv: &Server, m: &Made) -> Value {
    let short = srv
        .ok("GET", &format!("/v1/jobs/{}", m.short), KEY, None)
        .await;
    let short_model = short["model_id"].as_str().unwrap();
    let p = json!({"inputs": [[-1, 2], [0.5, 0.25]]});
    json!({
        "dataset": srv.ok("GET", &format!("/v1/datasets/{}", m.dataset), KEY, None).await,
        "rows": srv.ok("GET", &format!("/v1/datasets/{}/rows?limit=500", m.dataset), KEY, None).await,
        "short": short,
        "short_history": srv.ok("GET", &format!("/v1/jobs/{}/history", m.short), KEY, None).await,
        "short_model": srv.ok("GET", &format!("/v1/models/{short_model}/export"), KEY, None).await,
        "short_predict": srv.ok("POST", &format!("/v1/models/{short_model}/predict"), KEY, Some(&iris_inputs())).await,
        "perceptron": srv.ok("GET", &format!("/v1/models/{}", m.perceptron), KEY, None).await,
        "perceptron_predict": srv.ok("POST", &format!("/v1/models/{}/predict", m.perceptron), KEY, Some(&p)).await,
    })
}

/// The long job's end: its history without timings (elapsed_ms, samples_per_second), and its model's predictions.
async fn outcome(srv: &Server, id: &str) -> (Vec<Value>, Value, i64) {
    let j = wait_done(srv, KEY, id).await;
    let h = srv
        .ok("GET", &format!("/v1/jobs/{id}/history"), KEY, None)
        .await;
    let epochs: Vec<Value> = h["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let mut e = e.clone();
            let e_ = e.as_object_mut().unwrap();
            e_.remove("elapsed_ms");
            e_.remove("samples_per_second");
            e
        })
        .collect();
    let numbers: Vec<i64> = epochs
        .iter()
        .map(|e| e["epoch"].as_i64().unwrap())
        .collect();
    assert_eq!(
        numbers,
        (1..=LONG_EPOCHS).collect::<Vec<_>>(),
        "each epoch once"
    );
    let model = j["model_id"].as_str().unwrap();
    let p = srv
        .ok(
            "POST",
            &format!("/v1/models/{model}/predict"),
            KEY,
            Some(&iris_inputs()),
        )
        .await;
    (epochs, p["outputs"].clone(), j["attempt"].as_i64().unwrap())
}

fn server_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "--api-keys",
        "acme:admin:backup-test-secret",
        "--checkpoint-secs",
        "0.2",
        "--threads",
        "1",
        "--lease-secs",
        "1",
    ];
    a.extend_from_slice(extra);
    a
}

#[tokio::test]
async fn a_backup_taken_mid_training_restores_to_the_same_records_and_predictions() {
    let (tmp, file_key) = dir_with_keys();
    let srv = Server::start_in(tmp, &server_args(&[])).await;
    let made = populate(&srv).await;
    let backups = tempfile::tempdir().unwrap();
    let file = backups.path().join("backprop.backup");
    let file_s = file.to_str().unwrap();
    let data = srv.dir.to_str().unwrap().to_string();

    // While the long job trains.
    let (ok, msg) = run(&["backup", "--to", file_s, "--data-dir", &data]);
    assert!(ok, "{msg}");
    assert!(msg.contains("1 running"), "{msg}");
    assert!(msg.contains("keys.json"), "the keys file travels: {msg}");
    let training = srv
        .ok("GET", &format!("/v1/jobs/{}", made.long), KEY, None)
        .await;
    assert_eq!(
        training["status"], "running",
        "the backup was taken mid-training"
    );
    // A backup never overwrites.
    let (ok, msg) = run(&["backup", "--to", file_s, "--data-dir", &data]);
    assert!(!ok && msg.contains("exists already"), "{msg}");

    let before = answers(&srv, &made).await;
    let (history, predict, attempt) = outcome(&srv, &made.long).await;
    assert_eq!(attempt, 1);

    // Restore: refused into a non-empty directory, fine into a new one.
    let (ok, msg) = run(&["restore", "--from", file_s, "--data-dir", &data]);
    assert!(!ok && msg.contains("not empty"), "{msg}");
    let target = tempfile::tempdir().unwrap();
    let (ok, msg) = run(&[
        "restore",
        "--from",
        file_s,
        "--data-dir",
        target.path().to_str().unwrap(),
    ]);
    assert!(ok, "{msg}");
    assert!(target.path().join("keys.json").exists());
    drop(srv);

    let restored = Server::start_in(target, &server_args(&[])).await;
    assert_eq!(
        answers(&restored, &made).await,
        before,
        "records and predictions"
    );
    // The keys file's key works on the restored server.
    let (st, _) = restored.call("GET", "/v1/jobs", &file_key, None).await;
    assert_eq!(st, 200);
    // The job the snapshot caught mid-training resumes and ends as the original did.
    let (h2, p2, attempt2) = outcome(&restored, &made.long).await;
    assert_eq!(attempt2, 2, "resumed from the backup's checkpoint");
    assert_eq!(h2, history);
    assert_eq!(p2, predict);
}

#[tokio::test]
async fn backup_and_restore_refuse_what_they_cannot_do() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    // PostgreSQL has its own tools; the message says which (and never echoes a password).
    let (ok, msg) = run(&[
        "backup",
        "--to",
        &s(&d.join("x")),
        "--database-url",
        "postgres://user:hunter2@db.example/backprop",
    ]);
    assert!(
        !ok && msg.contains("pg_dump") && !msg.contains("hunter2"),
        "{msg}"
    );
    // No database in the data directory.
    let (ok, msg) = run(&[
        "backup",
        "--to",
        &s(&d.join("x")),
        "--data-dir",
        &s(&d.join("none")),
    ]);
    assert!(!ok && msg.contains("no database"), "{msg}");
    assert!(!d.join("x").exists());
    // Not a backup: a text file, an SQLite file of something else.
    std::fs::write(d.join("text"), "not a database").unwrap();
    let (ok, msg) = run(&[
        "restore",
        "--from",
        &s(&d.join("text")),
        "--data-dir",
        &s(&d.join("r1")),
    ]);
    assert!(!ok, "{msg}");
    let other = d.join("other.db");
    let (ok, msg) = run(&["migrate", "--data-dir", &s(&d.join("m"))]);
    assert!(ok, "{msg}");
    let conn = format!("sqlite://{}?mode=rwc", other.display());
    let rt_ok = {
        use sqlx::{Connection, Executor};
        let mut c = sqlx::SqliteConnection::connect(&conn).await.unwrap();
        c.execute("CREATE TABLE t (x INTEGER)").await.is_ok()
    };
    assert!(rt_ok);
    let (ok, msg) = run(&[
        "restore",
        "--from",
        &s(&other),
        "--data-dir",
        &s(&d.join("r2")),
    ]);
    assert!(!ok && msg.contains("not a Backprop database"), "{msg}");
    // Nothing half-restored is left behind.
    for r in ["r1", "r2"] {
        let left: Vec<_> = std::fs::read_dir(d.join(r))
            .map(|e| e.collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{r}: {left:?}");
    }
    // A missing backup file.
    let (ok, msg) = run(&[
        "restore",
        "--from",
        &s(&d.join("missing")),
        "--data-dir",
        &s(&d.join("r3")),
    ]);
    assert!(!ok && msg.contains("no backup file"), "{msg}");
    // A real backup (of the migrated, empty database) restores.
    let (ok, msg) = run(&[
        "backup",
        "--to",
        &s(&d.join("b")),
        "--data-dir",
        &s(&d.join("m")),
    ]);
    assert!(ok && msg.contains("files: none"), "{msg}");
    let (ok, msg) = run(&[
        "restore",
        "--from",
        &s(&d.join("b")),
        "--data-dir",
        &s(&d.join("r4")),
    ]);
    assert!(ok, "{msg}");
    assert!(d.join("r4/backprop.db").exists());
}

/// PostgreSQL: `pg_dump` while jobs train (one consistent snapshot), restored into an empty
/// schema that a new node serves: same records and predictions, and the job that was running
/// in the dump is taken over once its lease expires and resumes from its checkpoint.
#[tokio::test]
async fn a_pg_dump_taken_mid_training_restores_into_a_database_a_new_node_serves() {
    let Some(schema) = Schema::create().await else {
        return;
    };
    let Some(copy) = Schema::create().await else {
        return;
    };
    let srv = Server::start(&server_args(&["--database-url", &schema.url])).await;
    let made = populate(&srv).await;
    let dump = schema.dump();
    let training = srv
        .ok("GET", &format!("/v1/jobs/{}", made.long), KEY, None)
        .await;
    assert_eq!(
        training["status"], "running",
        "the dump was taken mid-training"
    );
    let before = answers(&srv, &made).await;
    let (history, predict, _) = outcome(&srv, &made.long).await;
    drop(srv);

    copy.restore_dump(&dump, schema.name());
    let node = Server::start(&server_args(&["--database-url", &copy.url])).await;
    assert_eq!(
        answers(&node, &made).await,
        before,
        "records and predictions"
    );
    let (h2, p2, attempt2) = outcome(&node, &made.long).await;
    assert_eq!(attempt2, 2, "resumed from the dump's checkpoint");
    assert_eq!(h2, history);
    assert_eq!(p2, predict);
}
