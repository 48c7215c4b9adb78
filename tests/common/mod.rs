//! Starts the real `backprop` binary on an ephemeral port with its own data directory and
//! speaks HTTP to it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Server {
    pub base: String,
    pub port: u16,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    child: Option<Child>,
    /// `serve` or `worker` (whose only listener is the health endpoint).
    role: &'static str,
    args: Vec<String>,
    /// Environment of the next `launch` (e.g. `BACKPROP_CRASH_AT`), on top of the test's.
    pub env: Vec<(String, String)>,
    pub client: reqwest::Client,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    pub async fn start(args: &[&str]) -> Server {
        Self::start_role("serve", args).await
    }

    /// Starts on a data directory the caller prepared (a fixture copied into `tmp`, say).
    pub async fn start_in(tmp: tempfile::TempDir, args: &[&str]) -> Server {
        let mut s = Server {
            base: String::new(),
            port: 0,
            dir: tmp.path().to_path_buf(),
            _tmp: Some(tmp),
            child: None,
            role: "serve",
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec![],
            client: reqwest::Client::new(),
        };
        s.launch().await;
        s
    }

    /// The arguments of the next `launch` (besides the listen address and data directory).
    pub fn set_args(&mut self, args: &[&str]) {
        self.args = args.iter().map(|s| s.to_string()).collect();
    }

    /// `backprop worker`: `base` is its health endpoint.
    pub async fn start_worker(args: &[&str]) -> Server {
        Self::start_role("worker", args).await
    }

    async fn start_role(role: &'static str, args: &[&str]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut s = Server {
            base: String::new(),
            port: 0,
            dir,
            _tmp: Some(tmp),
            child: None,
            role,
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec![],
            client: reqwest::Client::new(),
        };
        s.launch().await;
        s
    }

    /// Starts (again) on the same data directory.
    pub async fn launch(&mut self) {
        self.port = free_port();
        self.base = format!("http://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_backprop"))
            .arg(self.role)
            .arg(if self.role == "worker" {
                "--health-listen"
            } else {
                "--listen"
            })
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(&self.dir)
            .args(&self.args)
            .env("RUST_LOG", "info,sqlx=warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start backprop");
        self.child = Some(child);
        let t0 = Instant::now();
        loop {
            if let Ok(r) = self
                .client
                .get(format!("{}/healthz", self.base))
                .send()
                .await
                && r.status() == 200
            {
                return;
            }
            let exited = self.child.as_mut().unwrap().try_wait().unwrap().is_some();
            if exited
                && self
                    .env
                    .iter()
                    .any(|(k, _)| k == "BACKPROP_CRASH_AT" || k == "BACKPROP_CRASH_JOB_NAME")
            {
                return; // an armed crash point fired while starting: `wait_exit` sees it
            }
            if exited || t0.elapsed() > Duration::from_secs(20) {
                panic!("server did not start: {}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits up to `timeout` for the process to end by itself (a crash point fired): its exit
    /// status, or `None` while it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let t0 = Instant::now();
        loop {
            let c = self.child.as_mut()?;
            if let Some(st) = c.try_wait().unwrap() {
                self.child = None;
                return Some(st);
            }
            if t0.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        unsafe_kill(c.id() as i32, 15);
        let t0 = Instant::now();
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            if t0.elapsed() > Duration::from_secs(15) {
                let _ = c.kill();
                panic!("server did not exit within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        split(r).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        split(r).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        ctype: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", ctype)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// A request with a bearer key (and a JSON body, if any).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut r = self
            .client
            .request(method.parse().expect("method"), self.url(path))
            .bearer_auth(key);
        if let Some(b) = body {
            r = r.json(b);
        }
        split(r.send().await.unwrap()).await
    }

    /// `call`, asserting a 2xx answer.
    pub async fn ok(&self, method: &str, path: &str, key: &str, body: Option<&Value>) -> Value {
        let (st, v) = self.call(method, path, key, body).await;
        assert!((200..300).contains(&st), "{method} {path}: {st} {v}");
        v
    }

    pub async fn delete(&self, path: &str) -> u16 {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Polls a job until it is in a terminal state.
    pub async fn wait_job(&self, id: &str, timeout: Duration) -> Value {
        let t0 = Instant::now();
        loop {
            let (st, j) = self.get(&format!("/v1/jobs/{id}")).await;
            assert_eq!(st, 200, "{j}");
            if ["succeeded", "failed", "cancelled"].contains(&j["status"].as_str().unwrap_or("")) {
                return j;
            }
            if t0.elapsed() > timeout {
                panic!(
                    "job {id} did not finish in {timeout:?}: {j}\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls a job with a bearer key until it is in a terminal state.
    pub async fn wait_job_as(&self, key: &str, id: &str, timeout: Duration) -> Value {
        let t0 = Instant::now();
        loop {
            let j = self.ok("GET", &format!("/v1/jobs/{id}"), key, None).await;
            if ["succeeded", "failed", "cancelled"].contains(&j["status"].as_str().unwrap_or("")) {
                return j;
            }
            assert!(
                t0.elapsed() < timeout,
                "job {id} did not finish in {timeout:?}: {j}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls a job until it has finished at least `epoch` epochs.
    pub async fn wait_epoch(&self, id: &str, epoch: i64, timeout: Duration) -> Value {
        let t0 = Instant::now();
        loop {
            let (_, j) = self.get(&format!("/v1/jobs/{id}")).await;
            if j["epoch"].as_i64().unwrap_or(0) >= epoch {
                return j;
            }
            assert!(
                t0.elapsed() < timeout,
                "job {id} did not reach epoch {epoch}: {j}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn unsafe_kill(pid: i32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

pub async fn split(r: reqwest::Response) -> (u16, Value) {
    let st = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        st,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A deterministic two-feature classification set: class 1 inside a circle.
pub fn circle(n: usize) -> Value {
    let mut features = vec![];
    let mut targets = vec![];
    let mut s: u64 = 42;
    for _ in 0..n {
        let mut r = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f64 / (1u64 << 31) as f64) * 4.0 - 2.0
        };
        let (x, y) = (r(), r());
        features.push(vec![x, y]);
        targets.push(if x * x + y * y < 1.5 { 1 } else { 0 });
    }
    serde_json::json!({"name": "circle", "features": features, "targets": targets})
}

/// A dataset big enough that a job runs for seconds: `rows` × `width` regression.
pub fn wide(rows: usize, width: usize) -> Value {
    let mut features = vec![];
    let mut targets = vec![];
    let mut s: u64 = 7;
    for _ in 0..rows {
        let mut row = vec![];
        let mut t = 0.0;
        for j in 0..width {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = (s >> 33) as f64 / (1u64 << 31) as f64;
            t += v * (j as f64 % 3.0 - 1.0);
            row.push(v);
        }
        features.push(row);
        targets.push(t);
    }
    serde_json::json!({"name": "wide", "features": features, "targets": targets})
}

/// A schema of its own on the PostgreSQL test database (`BACKPROP_TEST_POSTGRES_URL`),
/// dropped when this goes out of scope; `url` selects it. `None` (and "skipped" printed)
/// without the variable.
pub struct Schema {
    base: String,
    name: String,
    pub url: String,
}

impl Schema {
    pub async fn create() -> Option<Schema> {
        use sqlx::{Connection, Executor};
        let Ok(base) = std::env::var("BACKPROP_TEST_POSTGRES_URL") else {
            println!("skipped: BACKPROP_TEST_POSTGRES_URL not set");
            return None;
        };
        let name = format!("bp_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {base}: {e}"));
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .await
            .expect("create schema");
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-csearch_path%3D{name}");
        Some(Schema { base, name, url })
    }
}

impl Schema {
    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Restores a plain-SQL `pg_dump` of the schema `from` into this (empty) schema with
    /// `psql`: the dump's `CREATE SCHEMA` is dropped and every `from` renamed to this name.
    pub fn restore_dump(&self, dump: &str, from: &str) {
        use std::io::Write;
        let create = format!("CREATE SCHEMA {from};");
        let sql: String = dump
            .lines()
            // `\restrict` guards a psql reading an untrusted dump (pg_dump 15.14 and later);
            // older psql versions do not know it, and these dumps are ours.
            .filter(|l| {
                l.trim() != create && !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict")
            })
            .collect::<Vec<_>>()
            .join("\n")
            .replace(from, &self.name);
        let mut psql = Command::new("psql")
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-d", &self.base])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("psql");
        psql.stdin
            .take()
            .unwrap()
            .write_all(sql.as_bytes())
            .unwrap();
        assert!(
            psql.wait().unwrap().success(),
            "psql could not restore the dump"
        );
    }

    /// A plain-SQL `pg_dump` of this schema (one consistent snapshot).
    pub fn dump(&self) -> String {
        let out = Command::new("pg_dump")
            .args([
                "--schema",
                &self.name,
                "--no-owner",
                "--no-privileges",
                &self.base,
            ])
            .output()
            .expect("pg_dump");
        assert!(
            out.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        use sqlx::{Connection, Executor};
        // Drop runs inside the test's runtime: do the cleanup on a thread of its own.
        let (base, name) = (self.base.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut c) = sqlx::PgConnection::connect(&base).await {
                    let _ = c
                        .execute(sqlx::AssertSqlSafe(format!(
                            "DROP SCHEMA IF EXISTS {name} CASCADE"
                        )))
                        .await;
                }
            });
        })
        .join();
    }
}

/// A small xorshift, seeded from the clock and printed, so a failing run can be replayed
/// with `var` (e.g. `BACKPROP_CHAOS_SEED`).
pub struct Dice(u64);

impl Dice {
    pub fn new(var: &str) -> Dice {
        let seed = std::env::var(var)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        println!("seed {seed} ({var}={seed} replays the choices)");
        Dice(seed)
    }

    /// A dice with a fixed seed (derived from another dice's throws, say).
    pub fn new_seeded(seed: u64) -> Dice {
        Dice(seed | 1)
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// A job's history after checking it is exactly epochs 1..=n, each once and in order.
pub async fn history(srv: &Server, id: &str, n: i64) -> Vec<Value> {
    let (st, h) = srv.get(&format!("/v1/jobs/{id}/history")).await;
    assert_eq!(st, 200, "{h}");
    let epochs = h["epochs"].as_array().unwrap().clone();
    let numbers: Vec<i64> = epochs
        .iter()
        .map(|e| e["epoch"].as_i64().unwrap())
        .collect();
    assert_eq!(
        numbers,
        (1..=n).collect::<Vec<_>>(),
        "job {id}: each epoch recorded once, in order"
    );
    epochs
}

/// The `loss` of every epoch, after checking the history is exactly epochs 1..=n.
pub async fn losses(srv: &Server, id: &str, n: i64) -> Vec<Value> {
    history(srv, id, n)
        .await
        .iter()
        .map(|e| e["loss"].clone())
        .collect()
}

/// The server's peak resident memory so far (Linux's `VmHWM`), in bytes.
pub fn peak_memory(srv: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", srv.pid().unwrap())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// The events of a Server-Sent Events body: (event, id, data as JSON).
pub fn parse_sse(text: &str) -> Vec<(String, Option<String>, Value)> {
    let mut out = vec![];
    for block in text.split("\n\n") {
        let (mut ev, mut id, mut data) = (None, None, String::new());
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                ev = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("id:") {
                id = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
        if let Some(ev) = ev {
            out.push((ev, id, serde_json::from_str(&data).unwrap_or(Value::Null)));
        }
    }
    out
}

/// Polls a sweep (with `key`, or none when empty) until it has ended.
pub async fn wait_sweep(srv: &Server, key: &str, id: &str) -> Value {
    let t0 = Instant::now();
    loop {
        let s = if key.is_empty() {
            srv.get(&format!("/v1/sweeps/{id}")).await.1
        } else {
            srv.ok("GET", &format!("/v1/sweeps/{id}"), key, None).await
        };
        if ["succeeded", "failed", "cancelled"].contains(&s["status"].as_str().unwrap_or("")) {
            return s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "sweep {id} did not end: {s}\n{}",
            srv.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
