//! Keeps `openapi.yaml`, `api::ROUTES` and the router in step, without a server:
//!
//! * the (method, path) pairs of `openapi.yaml`'s `paths:` equal `ROUTES`, both ways;
//! * the `.route("PATH", get(..).post(..))` registrations in `src/api/*.rs` equal `ROUTES`
//!   plus the dashboard's static files (`api::dashboard::ROUTES`, which are not API and so
//!   not in the document), so a route added to the router without updating `ROUTES` fails here;
//! * the document declares OpenAPI 3.1, and every operation has an `operationId` and an
//!   error (4xx or `default`) response.
//!
//! The YAML is read with a small scan that relies on the file's layout (two-space indents):
//! under `paths:`, keys indented by exactly 2 spaces are paths, by exactly 4 are methods (or
//! `parameters`), by exactly 6 are an operation's fields, and the response codes of
//! `responses:` are indented by exactly 8.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use backprop::api::ROUTES;
use backprop::api::dashboard::ROUTES as DASHBOARD_ROUTES;

const HTTP_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];
/// Keys of a path item that are not operations.
const PATH_ITEM_FIELDS: [&str; 4] = ["parameters", "summary", "description", "servers"];

type Route = (String, String);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn spec_text() -> String {
    read(&root().join("openapi.yaml"))
}

fn routes() -> BTreeSet<Route> {
    let mut set = BTreeSet::new();
    for (m, p) in ROUTES {
        assert!(
            set.insert((m.to_string(), p.to_string())),
            "ROUTES lists {m} {p} twice"
        );
    }
    set
}

/// Leading spaces of a line (a tab is an error in YAML indentation anyway).
fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// `key:` (nothing after the colon but maybe a comment) as `key`, unquoted.
fn block_key(line: &str) -> Option<String> {
    let t = line.trim();
    let t = match t.find(" #") {
        Some(i) => t[..i].trim_end(),
        None => t,
    };
    let k = t.strip_suffix(':')?;
    let k = k.trim();
    let k = k
        .strip_prefix('\'')
        .and_then(|k| k.strip_suffix('\''))
        .or_else(|| k.strip_prefix('"').and_then(|k| k.strip_suffix('"')))
        .unwrap_or(k);
    Some(k.to_string())
}

/// `key: value` at any indent as (key, value), unquoted.
fn key_value(line: &str) -> Option<(String, String)> {
    let t = line.trim();
    let (k, v) = t.split_once(':')?;
    let unquote = |s: &str| {
        let s = s.trim();
        s.strip_prefix('\'')
            .and_then(|s| s.strip_suffix('\''))
            .or_else(|| s.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
            .unwrap_or(s)
            .to_string()
    };
    Some((unquote(k), unquote(v)))
}

/// One operation of the document: its (method, path), line number and lines.
struct Operation {
    method: String,
    path: String,
    line: usize,
    body: Vec<String>,
}

/// The operations under `paths:`, in document order.
fn operations(text: &str) -> Vec<Operation> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_end() == "paths:")
        .expect("openapi.yaml has no top-level `paths:` line");
    let mut ops: Vec<Operation> = vec![];
    let mut path: Option<String> = None;
    let mut in_op = false;
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        if is_blank_or_comment(line) {
            continue;
        }
        let n = indent(line);
        if n == 0 {
            break; // the next top-level key: the end of `paths:`
        }
        match n {
            2 => {
                let k = block_key(line).unwrap_or_else(|| {
                    panic!("openapi.yaml:{}: expected a path key, got {line:?}", i + 1)
                });
                assert!(
                    k.starts_with('/'),
                    "openapi.yaml:{}: path {k:?} does not start with /",
                    i + 1
                );
                path = Some(k);
                in_op = false;
            }
            4 => {
                let k = block_key(line)
                    .or_else(|| key_value(line).map(|(k, _)| k))
                    .unwrap_or_else(|| {
                        panic!(
                            "openapi.yaml:{}: expected a method key, got {line:?}",
                            i + 1
                        )
                    });
                let p = path
                    .clone()
                    .unwrap_or_else(|| panic!("openapi.yaml:{}: a method outside a path", i + 1));
                if HTTP_METHODS.contains(&k.as_str()) {
                    ops.push(Operation {
                        method: k,
                        path: p,
                        line: i + 1,
                        body: vec![],
                    });
                    in_op = true;
                } else {
                    assert!(
                        PATH_ITEM_FIELDS.contains(&k.as_str()),
                        "openapi.yaml:{}: {k:?} under {p} is neither an HTTP method nor a path-item field",
                        i + 1
                    );
                    in_op = false;
                }
            }
            1 | 3 => panic!(
                "openapi.yaml:{}: odd indentation under `paths:`: {line:?}",
                i + 1
            ),
            _ => {
                if in_op {
                    ops.last_mut()
                        .expect("in an operation")
                        .body
                        .push(line.to_string());
                }
            }
        }
    }
    ops
}

/// The `.route("PATH", get(a).post(b))` registrations of a Rust source file, as
/// (method, path, line).
fn route_registrations(src: &str, file: &str) -> Vec<(String, String, usize)> {
    // Drop line comments so documentation mentioning `.route(` does not count.
    let code: String = src
        .lines()
        .map(|l| match l.trim_start().starts_with("//") {
            true => "",
            false => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let bytes = code.as_bytes();
    let mut out = vec![];
    let mut from = 0;
    while let Some(off) = code[from..].find(".route(") {
        let open = from + off + ".route(".len();
        let line = code[..open].lines().count();
        // The call's argument text, up to the matching `)`, skipping string literals.
        let mut depth = 1;
        let mut j = open;
        let mut in_str = false;
        while j < bytes.len() && depth > 0 {
            let c = bytes[j];
            if in_str {
                if c == b'\\' {
                    j += 1;
                } else if c == b'"' {
                    in_str = false;
                }
            } else {
                match c {
                    b'"' => in_str = true,
                    b'(' => depth += 1,
                    b')' => depth -= 1,
                    _ => {}
                }
            }
            j += 1;
        }
        assert!(depth == 0, "{file}:{line}: unbalanced .route( call");
        let args = &code[open..j - 1];
        from = j;

        let args_t = args.trim_start();
        assert!(
            args_t.starts_with('"'),
            "{file}:{line}: .route( whose path is not a string literal; this test cannot read it: {args:?}"
        );
        let end = args_t[1..].find('"').expect("closing quote") + 1;
        let path = args_t[1..end].to_string();
        let rest = args_t[end + 1..].trim_start();
        let handler = rest
            .strip_prefix(',')
            .unwrap_or_else(|| panic!("{file}:{line}: .route(\"{path}\" without a handler"));

        // Identifiers directly followed by `(` at the top level of the method router
        // expression: `get(list).post(create)` gives get, post; `routing::get(x)` gives get.
        let hb = handler.as_bytes();
        let mut depth = 0;
        let mut k = 0;
        let mut methods = vec![];
        while k < hb.len() {
            let c = hb[k];
            if c == b'"' {
                k += 1;
                while k < hb.len() && hb[k] != b'"' {
                    k += if hb[k] == b'\\' { 2 } else { 1 };
                }
                k += 1;
            } else if c == b'(' {
                depth += 1;
                k += 1;
            } else if c == b')' {
                depth -= 1;
                k += 1;
            } else if depth == 0 && (c.is_ascii_alphabetic() || c == b'_') {
                let s = k;
                while k < hb.len() && (hb[k].is_ascii_alphanumeric() || hb[k] == b'_') {
                    k += 1;
                }
                let ident = &handler[s..k];
                if handler[k..].starts_with('(') {
                    let m = ident.strip_suffix("_service").unwrap_or(ident);
                    assert!(
                        HTTP_METHODS.contains(&m),
                        "{file}:{line}: route {path} registers {ident}(..), which this test cannot map to \
                         one HTTP method; list the methods explicitly (get(..).post(..))"
                    );
                    methods.push(m.to_string());
                }
            } else {
                k += 1;
            }
        }
        assert!(
            !methods.is_empty(),
            "{file}:{line}: found no method in .route(\"{path}\", {handler})"
        );
        for m in methods {
            out.push((m, path.clone(), line));
        }
    }
    out
}

/// `a` minus `b`, one per line, for failure messages.
fn listed(set: &BTreeSet<Route>) -> String {
    if set.is_empty() {
        return "    (none)\n".into();
    }
    set.iter()
        .map(|(m, p)| format!("    {:<7} {p}\n", m.to_uppercase()))
        .collect()
}

#[test]
fn the_document_declares_openapi_3_1() {
    let text = spec_text();
    let decl = text
        .lines()
        .find(|l| l.starts_with("openapi:"))
        .expect("openapi.yaml has no top-level `openapi:` line");
    let v = decl["openapi:".len()..]
        .trim()
        .trim_matches(|c| c == '\'' || c == '"');
    assert!(
        v.starts_with("3.1"),
        "openapi.yaml declares openapi {v:?}, expected 3.1.x"
    );
    for key in ["info:", "paths:", "components:"] {
        assert!(
            text.lines().any(|l| l.trim_end() == key),
            "openapi.yaml has no top-level `{key}`"
        );
    }
}

#[test]
fn the_document_lists_exactly_the_routes() {
    let ops = operations(&spec_text());
    let mut documented = BTreeSet::new();
    for op in &ops {
        assert!(
            documented.insert((op.method.clone(), op.path.clone())),
            "openapi.yaml:{}: {} {} is documented twice",
            op.line,
            op.method,
            op.path
        );
    }
    let served = routes();
    let missing: BTreeSet<Route> = served.difference(&documented).cloned().collect();
    let extra: BTreeSet<Route> = documented.difference(&served).cloned().collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "openapi.yaml and api::ROUTES disagree.\n  in ROUTES but not in openapi.yaml:\n{}  in openapi.yaml but not in ROUTES:\n{}",
        listed(&missing),
        listed(&extra)
    );
}

#[test]
fn every_operation_has_an_id_and_an_error_response() {
    let ops = operations(&spec_text());
    assert!(!ops.is_empty(), "no operations found under `paths:`");
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    let mut problems = vec![];
    for op in &ops {
        let name = format!(
            "{} {} (openapi.yaml:{})",
            op.method.to_uppercase(),
            op.path,
            op.line
        );
        let mut op_id = None;
        let mut codes = vec![];
        let mut in_responses = false;
        for l in &op.body {
            match indent(l) {
                6 => {
                    in_responses = block_key(l).as_deref() == Some("responses");
                    if let Some((k, v)) = key_value(l)
                        && k == "operationId"
                        && !v.is_empty()
                    {
                        op_id = Some(v);
                    }
                }
                8 if in_responses => {
                    if let Some(k) = block_key(l) {
                        codes.push(k);
                    }
                }
                _ => {}
            }
        }
        match op_id {
            None => problems.push(format!("{name}: no operationId")),
            Some(id) => {
                if let Some(other) = ids.insert(id.clone(), name.clone()) {
                    problems.push(format!(
                        "{name}: operationId {id:?} is also used by {other}"
                    ));
                }
            }
        }
        if codes.is_empty() {
            problems.push(format!("{name}: no responses"));
        } else if !codes.iter().any(|c| c == "default" || c.starts_with('4')) {
            problems.push(format!(
                "{name}: no 4xx or default response (has {codes:?})"
            ));
        }
        if !codes.iter().any(|c| c.starts_with('2')) {
            problems.push(format!("{name}: no 2xx response (has {codes:?})"));
        }
    }
    assert!(
        problems.is_empty(),
        "openapi.yaml operations:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_router_registers_exactly_the_routes() {
    let dir = root().join("src/api");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    let mut registered = BTreeSet::new();
    let mut wheres: BTreeMap<Route, String> = BTreeMap::new();
    for f in &files {
        let name = format!("src/api/{}", f.file_name().unwrap().to_string_lossy());
        for (m, p, line) in route_registrations(&read(f), &name) {
            let at = format!("{name}:{line}");
            if let Some(before) = wheres.insert((m.clone(), p.clone()), at.clone()) {
                panic!(
                    "{} {p} is registered twice: {before} and {at}",
                    m.to_uppercase()
                );
            }
            registered.insert((m, p));
        }
    }
    assert!(
        !registered.is_empty(),
        "found no .route( calls in src/api/*.rs"
    );
    // The one explicit exception: the dashboard's static files are served but are not API.
    let mut served = routes();
    for (m, p) in DASHBOARD_ROUTES {
        assert!(
            served.insert((m.to_string(), p.to_string())),
            "{m} {p} is in both api::ROUTES and api::dashboard::ROUTES"
        );
    }
    let missing: BTreeSet<Route> = served.difference(&registered).cloned().collect();
    let extra: BTreeSet<Route> = registered.difference(&served).cloned().collect();
    let extra_at: String = extra
        .iter()
        .map(|r| format!("    {:<7} {}  ({})\n", r.0.to_uppercase(), r.1, wheres[r]))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the router (src/api/*.rs) and api::ROUTES disagree.\n  in ROUTES but not registered:\n{}  registered but not in ROUTES (add them to ROUTES and openapi.yaml):\n{}",
        listed(&missing),
        if extra_at.is_empty() {
            "    (none)\n".to_string()
        } else {
            extra_at
        }
    );
}

#[test]
fn the_scanners_read_what_they_should() {
    // The route scanner, on the shapes the router uses.
    let src = r#"
        // .route("/commented", get(x))
        Router::new()
            .route("/a", get(list).post(create))
            .route("/a/{id}", axum::routing::get(read).delete(remove))
            .route(
                "/b",
                post(|s: State<S>| async move { handler(s, ")").await }),
            )
    "#;
    let found: Vec<(String, String)> = route_registrations(src, "test.rs")
        .into_iter()
        .map(|(m, p, _)| (m, p))
        .collect();
    let want: Vec<(String, String)> = [
        ("get", "/a"),
        ("post", "/a"),
        ("get", "/a/{id}"),
        ("delete", "/a/{id}"),
        ("post", "/b"),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    assert_eq!(found, want);

    // The YAML scanner, on quoted keys, path-level parameters and comments.
    let yaml = "openapi: 3.1.0\npaths:\n  # a comment\n  '/x/{id}':\n    parameters:\n      - name: id\n    get:\n      operationId: getX\n      responses:\n        '200':\n          description: ok\n        default:\n          description: no\n    post:\n      operationId: postX\ncomponents: {}\n";
    let ops = operations(yaml);
    let got: Vec<(&str, &str)> = ops
        .iter()
        .map(|o| (o.method.as_str(), o.path.as_str()))
        .collect();
    assert_eq!(got, [("get", "/x/{id}"), ("post", "/x/{id}")]);
}
