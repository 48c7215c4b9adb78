//! The Kubernetes manifests (`deploy/kubernetes/`) against the binary they run, as
//! tests/container.rs does for the Dockerfile. This machine has no cluster, so for the base
//! and every overlay (rendered with `kubectl kustomize` where kubectl is installed, as CI
//! does; the base's files alone otherwise) each Deployment's container is run as the kubelet
//! would run it: the image's ENTRYPOINT with the container's `args` and `env` (secrets
//! replaced by test values, the port by a free one, the volume by a temp dir). Its probes and
//! the metrics port the scrape annotation names must answer 200; every variable must be one
//! `backprop <role> --help` accepts; the Service, PodDisruptionBudgets and the autoscaler must
//! select what exists; and the pod must be locked down (non-root as the image's user,
//! read-only root filesystem with the data directory and /tmp on volumes, no privilege
//! escalation) with a grace period longer than the release-on-SIGTERM path.
//! (`.ci/kubernetes.sh` validates the rendered output against the Kubernetes schemas.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// YAML documents as JSON values (the manifests use nothing JSON cannot hold).
fn parse(text: &str) -> Vec<Value> {
    fn conv(y: &yaml_rust2::Yaml) -> Value {
        use yaml_rust2::Yaml;
        match y {
            Yaml::Hash(h) => Value::Object(
                h.iter()
                    .map(|(k, v)| {
                        let key = match k {
                            Yaml::String(s) => s.clone(),
                            other => conv(other).to_string(),
                        };
                        (key, conv(v))
                    })
                    .collect(),
            ),
            Yaml::Array(a) => Value::Array(a.iter().map(conv).collect()),
            Yaml::String(s) => Value::String(s.clone()),
            Yaml::Integer(i) => Value::from(*i),
            Yaml::Real(r) => Value::from(r.parse::<f64>().expect("a YAML float")),
            Yaml::Boolean(b) => Value::Bool(*b),
            Yaml::Null => Value::Null,
            other => panic!("unexpected YAML node {other:?}"),
        }
    }
    yaml_rust2::YamlLoader::load_from_str(text)
        .expect("valid YAML")
        .iter()
        .filter(|d| !d.is_null())
        .map(conv)
        .collect()
}

/// The base's resources straight from its files (what kustomize would render, less the
/// common labels and image rewrites it adds).
fn base_files() -> Vec<Value> {
    let kustomization =
        parse(&std::fs::read_to_string(root().join("base/kustomization.yaml")).unwrap());
    kustomization[0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| {
            parse(&std::fs::read_to_string(root().join("base").join(f.as_str().unwrap())).unwrap())
        })
        .collect()
}

fn kubectl() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `kubectl kustomize DIR`, parsed.
fn render(dir: &Path) -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    parse(&String::from_utf8(out.stdout).unwrap())
}

/// Every kustomization: the base and each overlay, by name.
fn renderings() -> Vec<(String, Vec<Value>)> {
    let mut dirs = vec![("base".to_string(), root().join("base"))];
    let mut overlays: Vec<_> = std::fs::read_dir(root().join("overlays"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    overlays.sort();
    for o in overlays {
        dirs.push((o.file_name().unwrap().to_string_lossy().into_owned(), o));
    }
    assert!(dirs.len() >= 3, "a base and at least two overlays");
    if !kubectl() {
        assert!(
            std::env::var("CI").is_err(),
            "CI renders every overlay: install kubectl (.ci/kubernetes.sh)"
        );
        println!("kubectl not installed: checking the base's files only");
        return vec![("base files".into(), base_files())];
    }
    dirs.into_iter().map(|(n, d)| (n, render(&d))).collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    of_kind(docs, kind)
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// Does `selector` (matchLabels, or a Service's plain map) select `labels`?
fn selects(selector: &Value, labels: &Value) -> bool {
    let m = selector.get("matchLabels").unwrap_or(selector);
    let m = m.as_object().expect("a label map");
    !m.is_empty() && m.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The image's user and ENTRYPOINT, from the Dockerfile.
fn image() -> (u64, Vec<String>) {
    let dockerfile = include_str!("../Dockerfile");
    let uid = dockerfile
        .split_whitespace()
        .skip_while(|w| *w != "--uid")
        .nth(1)
        .and_then(|u| u.parse().ok())
        .expect("useradd --uid N");
    let entry = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("ENTRYPOINT");
    (
        uid,
        serde_json::from_str(entry).expect("exec-form ENTRYPOINT"),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}

/// The container's port number behind a probe's or Service's `port` (a name or a number).
fn port_number(container: &Value, port: &Value) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == *port)
        .unwrap_or_else(|| panic!("no container port named {port}"))["containerPort"]
        .as_u64()
        .unwrap()
}

/// Runs one Deployment's container as the kubelet would, and checks it against its spec.
fn check_deployment(what: &str, d: &Value, schema_url: Option<&str>) {
    let name = d["metadata"]["name"].as_str().unwrap();
    let at = format!("{what}: Deployment {name}");
    let pod = &d["spec"]["template"]["spec"];
    let (uid, entry) = image();
    // Security: the image's non-root user, nothing writable but volumes.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{at}");
    assert_eq!(
        pod["securityContext"]["runAsUser"], uid,
        "{at}: the image's user"
    );
    assert_eq!(
        pod["serviceAccountName"], "backprop",
        "{at}: the token-less ServiceAccount"
    );
    // SIGTERM: jobs are released within 8 s and the process exits within 10 s.
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        grace > 10,
        "{at}: the grace period must outlast the 10 s shutdown, got {grace}"
    );
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "{at}");
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{at}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{at}");
    assert_eq!(
        sc["capabilities"]["drop"],
        serde_json::json!(["ALL"]),
        "{at}"
    );
    assert!(
        c.get("command").is_none(),
        "{at}: the image's ENTRYPOINT runs"
    );
    for r in ["requests", "limits"] {
        assert!(c["resources"][r]["memory"].is_string(), "{at}: memory {r}");
    }
    let args: Vec<String> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let role = args[0].as_str();
    assert!(["serve", "worker"].contains(&role), "{at}: role {role}");
    let bin = env!("CARGO_BIN_EXE_backprop");
    let help = Command::new(bin)
        .args(&args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success(), "{at}: backprop {args:?} is refused");
    let help = String::from_utf8(help.stdout).unwrap();

    // The environment: every variable one the role reads; secrets from the Secret.
    let mut env = BTreeMap::new();
    for e in c["env"].as_array().expect("env") {
        let k = e["name"].as_str().unwrap().to_string();
        assert!(
            help.contains(&format!("[env: {k}")),
            "{at}: backprop {role} does not read {k}"
        );
        let v = if let Some(v) = e.get("value") {
            v.as_str()
                .unwrap_or_else(|| panic!("{at}: {k} must be a string"))
                .to_string()
        } else {
            let sk = &e["valueFrom"]["secretKeyRef"];
            assert_eq!(
                sk["key"], k,
                "{at}: {k} from the Secret's key of the same name"
            );
            match k.as_str() {
                "DATABASE_URL" => schema_url.map(str::to_string).unwrap_or_default(),
                "BACKPROP_API_KEYS" => "k8s:admin:k8s-test-secret".into(),
                other => panic!("{at}: unexpected secret {other}"),
            }
        };
        env.insert(k, v);
    }
    assert!(
        env.contains_key("DATABASE_URL"),
        "{at}: DATABASE_URL from the Secret"
    );
    if role == "serve" {
        assert!(
            env.contains_key("BACKPROP_API_KEYS"),
            "{at}: keys from the Secret"
        );
        assert!(
            args.contains(&"--no-workers".to_string()),
            "{at}: API nodes do not train"
        );
    }
    let listen_var = if role == "serve" {
        "BACKPROP_LISTEN"
    } else {
        "BACKPROP_HEALTH_LISTEN"
    };
    let listen = env[listen_var].clone();
    assert!(
        listen.starts_with("0.0.0.0:"),
        "{at}: {listen_var} on all interfaces"
    );
    let port: u64 = listen.rsplit(':').next().unwrap().parse().unwrap();
    // Volumes: the data directory and /tmp, since the root filesystem is read-only.
    let mounts: Vec<&str> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    assert!(
        mounts.contains(&env["BACKPROP_DATA_DIR"].as_str()),
        "{at}: data dir on a volume"
    );
    assert!(mounts.contains(&"/tmp"), "{at}: /tmp on a volume");

    // Probes and the scraped port all land on the listener, on paths the role serves.
    let mut paths = vec![];
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let g = &c[probe]["httpGet"];
        assert!(g.is_object(), "{at}: {probe} over HTTP");
        assert_eq!(port_number(c, &g["port"]), port, "{at}: {probe} port");
        paths.push(g["path"].as_str().unwrap().to_string());
    }
    assert_eq!(paths[1], "/readyz", "{at}: readiness follows the database");
    let ann = &d["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        ann["prometheus.io/port"],
        port.to_string(),
        "{at}: scrape port"
    );
    paths.push(ann["prometheus.io/path"].as_str().unwrap().to_string());

    // Run it: the ENTRYPOINT, the args, the env (port and volume swapped for free ones).
    let data = tempfile::tempdir().unwrap();
    let free = free_port();
    env.insert(listen_var.into(), format!("0.0.0.0:{free}"));
    env.insert(
        "BACKPROP_DATA_DIR".into(),
        data.path().display().to_string(),
    );
    if schema_url.is_none() {
        // No PostgreSQL here: the data directory's SQLite file stands in.
        env.remove("DATABASE_URL");
    }
    assert_eq!(entry, ["backprop"]);
    let mut child = Command::new(bin)
        .args(&args)
        .env_clear()
        .envs(&env)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let mut answered = vec![];
    for path in &paths {
        loop {
            let st = get_status(free, path);
            if st == Some(200) {
                answered.push(path.clone());
                break;
            }
            if t0.elapsed() > Duration::from_secs(20) || child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        answered,
        paths,
        "{at}: every probe path answers 200; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_overlay_runs_the_binary_as_it_accepts() {
    // With PostgreSQL, the nodes run on a schema of their own; without, on SQLite.
    let pg = std::env::var("BACKPROP_TEST_POSTGRES_URL").ok();
    let schema = format!("bp_k8s_{}", std::process::id());
    let schema_url = pg.as_ref().map(|pg| {
        let ok = Command::new("psql")
            .args([
                pg.as_str(),
                "-qc",
                &format!("CREATE SCHEMA IF NOT EXISTS {schema}"),
            ])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "psql could not create a schema");
        let sep = if pg.contains('?') { '&' } else { '?' };
        format!("{pg}{sep}options=-csearch_path%3D{schema}")
    });
    let result = std::panic::catch_unwind(|| {
        for (what, docs) in renderings() {
            let deployments = of_kind(&docs, "Deployment");
            assert_eq!(deployments.len(), 2, "{what}: the API and the workers");
            for d in &deployments {
                check_deployment(&what, d, schema_url.as_deref());
            }
            check_wiring(&what, &docs);
        }
    });
    if let Some(pg) = &pg {
        let _ = Command::new("psql")
            .args([pg.as_str(), "-qc", &format!("DROP SCHEMA {schema} CASCADE")])
            .stderr(Stdio::null())
            .status();
    }
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// The Service, the disruption budgets and the autoscaler point at what exists.
fn check_wiring(what: &str, docs: &[Value]) {
    let api = named(docs, "Deployment", "backprop-api");
    let worker = named(docs, "Deployment", "backprop-worker");
    let labels = |d: &Value| d["spec"]["template"]["metadata"]["labels"].clone();
    for d in [api, worker] {
        assert!(
            selects(&d["spec"]["selector"], &labels(d)),
            "{what}: {} selects its pods",
            d["metadata"]["name"]
        );
    }
    let svc = named(docs, "Service", "backprop");
    assert!(
        selects(&svc["spec"]["selector"], &labels(api)),
        "{what}: the Service selects the API pods"
    );
    assert!(
        !selects(&svc["spec"]["selector"], &labels(worker)),
        "{what}: and not the workers"
    );
    let c = &api["spec"]["template"]["spec"]["containers"][0];
    for p in svc["spec"]["ports"].as_array().unwrap() {
        let target = port_number(c, &p["targetPort"]);
        let listen = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "BACKPROP_LISTEN")
            .unwrap()["value"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            listen.ends_with(&format!(":{target}")),
            "{what}: the Service targets the API's port"
        );
    }
    let pdbs = of_kind(docs, "PodDisruptionBudget");
    for d in [api, worker] {
        assert!(
            pdbs.iter()
                .any(|p| selects(&p["spec"]["selector"], &labels(d))),
            "{what}: a PodDisruptionBudget covers {}",
            d["metadata"]["name"]
        );
    }
    let sa = named(docs, "ServiceAccount", "backprop");
    assert_eq!(
        sa["automountServiceAccountToken"], false,
        "{what}: no API token in the pods"
    );
    let hpa = named(docs, "HorizontalPodAutoscaler", "backprop-worker");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "backprop-worker");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert!(
        worker["spec"].get("replicas").is_none(),
        "{what}: the autoscaler owns the workers' replicas"
    );
    // One worker per BACKPROP_MAX_CONCURRENT_JOBS pending jobs.
    let wc = &worker["spec"]["template"]["spec"]["containers"][0];
    let per_worker = wc["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "BACKPROP_MAX_CONCURRENT_JOBS")
        .expect("BACKPROP_MAX_CONCURRENT_JOBS")["value"]
        .clone();
    let m = &hpa["spec"]["metrics"][0]["external"];
    assert_eq!(m["metric"]["name"], "backprop_jobs_pending");
    assert_eq!(
        m["target"]["averageValue"], per_worker,
        "{what}: the autoscaler's target is a worker's capacity"
    );
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 1);
}
