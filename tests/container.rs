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
