//! This machine has no container engine, so this runs what the Dockerfile would run: the
//! binary with the image's ENTRYPOINT, CMD and ENV (the volume and port swapped for a temp
//! dir and a free port), then the HEALTHCHECK command against it.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DOCKERFILE: &str = include_str!("../Dockerfile");

/// Instructions of the final stage, with continuation lines joined.
fn final_stage() -> Vec<(String, String)> {
    let joined = DOCKERFILE.replace("\\\n", " ");
    let mut stage = vec![];
    for line in joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (ins, rest) = line.split_once(' ').unwrap_or((line, ""));
        if ins == "FROM" {
            stage.clear();
        }
        stage.push((ins.to_string(), rest.trim().to_string()));
    }
    stage
}

fn exec_form(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_else(|_| panic!("not an exec-form JSON array: {s}"))
}

#[test]
fn the_image_runs_as_configured() {
    let stage = final_stage();
    let get = |ins: &str| {
        stage
            .iter()
            .filter(|(i, _)| i == ins)
            .map(|(_, r)| r.clone())
            .collect::<Vec<_>>()
    };
    let user = get("USER");
    assert_eq!(user.len(), 1);
    assert_ne!(user[0], "root");
    let mut env = BTreeMap::new();
    for e in get("ENV") {
        for kv in e.split_whitespace() {
            let (k, v) = kv.split_once('=').expect("ENV key=value");
            env.insert(k.to_string(), v.to_string());
        }
    }
    let volume = get("VOLUME");
    assert_eq!(
        volume,
        vec![env["BACKPROP_DATA_DIR"].clone()],
        "the data directory is the volume"
    );
    let listen = env["BACKPROP_LISTEN"].clone();
    let port = listen.rsplit(':').next().unwrap().to_string();
    assert_eq!(get("EXPOSE"), vec![port.clone()]);
    assert!(
        listen.starts_with("0.0.0.0:"),
        "a container listens on all interfaces"
    );

    let entry = exec_form(&get("ENTRYPOINT")[0]);
    let cmd = exec_form(&get("CMD")[0]);
    assert_eq!(entry[0], "backprop");
    let health = get("HEALTHCHECK")[0].clone();
    let health_cmd = exec_form(
        health
            .split_once("CMD ")
            .expect("HEALTHCHECK ... CMD [...]")
            .1,
    );
    assert_eq!(health_cmd[0], "backprop");

    // Same arguments and environment, on a free port and a temp volume.
    let dir = tempfile::tempdir().unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    env.insert("BACKPROP_LISTEN".into(), format!("0.0.0.0:{free}"));
    env.insert("BACKPROP_DATA_DIR".into(), dir.path().display().to_string());
    let bin = env!("CARGO_BIN_EXE_backprop");
    // Without keys the image refuses to serve on 0.0.0.0: secure by default.
    let refused = Command::new(bin)
        .args(entry[1..].iter().chain(cmd.iter()))
        .envs(&env)
        .env_remove("BACKPROP_API_KEYS")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("without API keys"));
    // `docker run -e BACKPROP_API_KEYS=…` is how a deployment gives it keys.
    env.insert(
        "BACKPROP_API_KEYS".into(),
        "ops:admin:container-test-secret".into(),
    );
    let mut child = Command::new(bin)
        .args(entry[1..].iter().chain(cmd.iter()))
        .envs(&env)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let healthy = loop {
        let st = Command::new(bin)
            .args(&health_cmd[1..])
            .envs(&env)
            .status()
            .unwrap();
        if st.success() {
            break true;
        }
        if t0.elapsed() > Duration::from_secs(20) || child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        healthy,
        "the HEALTHCHECK never passed; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dir.path().join("backprop.db").exists(),
        "the database lives in the volume"
    );
    // The health check fails when nothing listens.
    let st = Command::new(bin)
        .args(&health_cmd[1..])
        .envs(&env)
        .status()
        .unwrap();
    assert!(!st.success());
}

#[test]
fn migrate_creates_the_database_and_help_reads_well() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_backprop");
    let st = Command::new(bin)
        .args(["migrate", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .status()
        .unwrap();
    assert!(st.success());
    assert!(dir.path().join("backprop.db").exists());
    let help = Command::new(bin)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8(help.stdout).unwrap();
    for flag in [
        "--listen",
        "--data-dir",
        "--database-url",
        "--threads",
        "--max-concurrent-jobs",
        "[env: BACKPROP_LISTEN=",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help:\n{text}");
    }
}

/// The README's configuration table and `backprop serve|worker --help` list the same flags, each
/// with its environment variable.
#[test]
fn the_readme_configuration_table_matches_help() {
    let readme = include_str!("../README.md");
    let help_of = |cmd: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_backprop"))
            .args([cmd, "--help"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    // `serve` and `worker` between them have every setting.
    let help = help_of("serve") + &help_of("worker");
    let table: Vec<(String, String)> = readme
        .lines()
        .filter(|l| l.starts_with("| `--"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(|c| c.trim().trim_matches('`')).collect();
            (cells[1].to_string(), cells[2].to_string())
        })
        .collect();
    let help_flags: Vec<String> = help
        .split_whitespace()
        .filter(|w| w.starts_with("--") && *w != "--help" && *w != "--version")
        .map(|w| {
            w.trim_end_matches([',', '='])
                .split('=')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    for (flag, env) in &table {
        assert!(
            help_flags.contains(flag),
            "README lists {flag}, --help does not"
        );
        assert!(
            help.contains(&format!("[env: {env}")),
            "{flag}: --help does not name {env}"
        );
    }
    for flag in &help_flags {
        assert!(
            table.iter().any(|(f, _)| f == flag),
            "--help has {flag}, the README's table does not"
        );
    }
}

/// Runs the compose file's Backprop service the way compose would (its command and
/// environment on top of the image's), two replicas on one PostgreSQL: both come up healthy
/// and a job submitted to one is trained by the pair. Needs `BACKPROP_TEST_POSTGRES_URL`.
#[test]
fn the_compose_replicas_run_as_configured() {
    let Ok(pg) = std::env::var("BACKPROP_TEST_POSTGRES_URL") else {
        eprintln!("skipped: BACKPROP_TEST_POSTGRES_URL not set");
        return;
    };
    let compose = include_str!("../compose.yaml");
    // The `x-backprop` anchor: its command and environment.
    let block: Vec<&str> = compose
        .lines()
        .skip_while(|l| !l.starts_with("x-backprop:"))
        .skip(1)
        .take_while(|l| l.starts_with(' ') || l.is_empty())
        .collect();
    let command = block
        .iter()
        .find_map(|l| l.trim().strip_prefix("command: "))
        .expect("command");
    let command = exec_form(command);
    let mut env = BTreeMap::new();
    let mut in_env = false;
    for l in &block {
        if l.trim_start().starts_with("environment:") {
            in_env = true;
            continue;
        }
        if in_env {
            if !l.starts_with("    ") {
                break;
            }
            let (k, v) = l.trim().split_once(": ").expect("KEY: value");
            env.insert(k.to_string(), v.trim_matches('"').to_string());
        }
    }
    assert!(env["DATABASE_URL"].starts_with("postgres://"));
    assert!(
        env["BACKPROP_API_KEYS"].starts_with("${BACKPROP_API_KEYS:?"),
        "keys come from the operator"
    );
    // What compose would substitute, and this machine's database in a schema of our own.
    let schema = format!("bp_compose_{}", std::process::id());
    let admin = Command::new("psql")
        .args([
            pg.as_str(),
            "-qc",
            &format!("CREATE SCHEMA IF NOT EXISTS {schema}"),
        ])
        .status();
    assert!(
        admin.map(|s| s.success()).unwrap_or(false),
        "psql could not create a schema"
    );
    let sep = if pg.contains('?') { '&' } else { '?' };
    env.insert(
        "DATABASE_URL".into(),
        format!("{pg}{sep}options=-csearch_path%3D{schema}"),
    );
    env.insert(
        "BACKPROP_API_KEYS".into(),
        "t1:admin:compose-test-secret".into(),
    );
    let bin = env!("CARGO_BIN_EXE_backprop");
    let mut nodes = vec![];
    let mut ports = vec![];
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .args(&command)
            .envs(&env)
            .env("BACKPROP_LISTEN", format!("0.0.0.0:{port}"))
            .env("BACKPROP_DATA_DIR", dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        nodes.push((child, dir));
        ports.push(port);
    }
    let healthy = |port: u16| {
        Command::new(bin)
            .args(["healthcheck", "--listen", &format!("127.0.0.1:{port}")])
            .status()
            .unwrap()
            .success()
    };
    let t0 = Instant::now();
    while !ports.iter().all(|&p| healthy(p)) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the replicas did not become healthy"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let state = rt.block_on(async {
        let c = reqwest::Client::new();
        let spec = serde_json::json!({"dataset": {"features": [[0, 0], [0, 1], [1, 0], [1, 1]], "targets": [0, 1, 1, 0]},
            "layers": [{"units": 4, "activation": "tanh"}, {"units": 1}], "loss": "binary_crossentropy", "epochs": 50});
        let job: serde_json::Value = c
            .post(format!("http://127.0.0.1:{}/v1/jobs", ports[0]))
            .bearer_auth("compose-test-secret")
            .json(&spec)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = job["id"].as_str().unwrap().to_string();
        loop {
            // Either replica answers for the job.
            let j: serde_json::Value = c
                .get(format!("http://127.0.0.1:{}/v1/jobs/{id}", ports[1]))
                .bearer_auth("compose-test-secret")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if ["succeeded", "failed", "cancelled"].contains(&j["status"].as_str().unwrap_or("")) || t0.elapsed() > Duration::from_secs(60) {
                return j["status"].clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    for (mut c, _) in nodes {
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = Command::new("psql")
        .args([pg.as_str(), "-qc", &format!("DROP SCHEMA {schema} CASCADE")])
        .status();
    assert_eq!(state, "succeeded");
}
