//! The house rules ARCHITECTURE.md states, checked on the source: the rooms import one way
//! (`api → service → jobs → store/data → nn`, nothing back up), and inside the engine the
//! three rooms (`math`, `portable`, `run`) and the files of each import only what comes
//! before them, in the order each room's `mod.rs` header gives. A new import that runs
//! back up fails here, naming the file and the line.

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `(file, line number, line)` of every line of `dir`'s files mentioning `crate::<name>`
/// for a name in `forbidden`.
fn mentions(dir: &str, forbidden: &[&str]) -> Vec<String> {
    let mut out = vec![];
    for f in rust_files(&src().join(dir)) {
        for (i, line) in fs::read_to_string(&f).unwrap().lines().enumerate() {
            for name in forbidden {
                let needle = format!("crate::{name}");
                if line.match_indices(&needle).any(|(at, _)| {
                    !line[at + needle.len()..]
                        .starts_with(|c: char| c.is_alphanumeric() || c == '_')
                }) {
                    out.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
                }
            }
        }
    }
    out
}

#[test]
fn the_rooms_import_one_way() {
    let rules: &[(&str, &[&str])] = &[
        (
            "nn",
            &[
                "api", "service", "jobs", "store", "data", "auth", "run", "config", "crash",
            ],
        ),
        ("data", &["api", "service", "jobs", "store", "auth"]),
        ("store", &["api", "service", "jobs", "data", "auth"]),
        ("jobs", &["api", "service", "auth"]),
        ("service", &["api"]),
    ];
    let mut wrong = vec![];
    for (room, forbidden) in rules {
        wrong.extend(mentions(room, forbidden));
    }
    assert!(
        wrong.is_empty(),
        "imports that run back up:\n{}",
        wrong.join("\n")
    );
}

/// The files of a room in the order its `mod.rs` header gives (`//! Order (…): a, b, c.`);
/// every file the room declares must be in it.
fn room_order(room: &str) -> Vec<String> {
    let text = fs::read_to_string(src().join("nn").join(room).join("mod.rs")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("//! Order"))
        .unwrap_or_else(|| panic!("nn/{room}/mod.rs has no `//! Order` line"));
    let order: Vec<String> = line
        .split_once(':')
        .unwrap()
        .1
        .trim()
        .trim_end_matches('.')
        .split(',')
        .map(|f| f.trim().to_owned())
        .collect();
    let mut declared: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';').to_owned())
        .collect();
    let mut listed = order.clone();
    declared.sort();
    listed.sort();
    assert_eq!(
        declared, listed,
        "nn/{room}: the Order line and the declared files differ"
    );
    order
}

#[test]
fn the_engine_rooms_and_their_files_import_only_what_comes_before() {
    let rooms = ["math", "portable", "run"];
    let orders: Vec<Vec<String>> = rooms.iter().map(|r| room_order(r)).collect();
    let mut wrong = vec![];
    let mut files = 0;
    for (ri, room) in rooms.iter().enumerate() {
        for (fi, file) in orders[ri].iter().enumerate() {
            // A file, or a folder of them (`tabular/mod.rs` and its parts).
            let single = src().join("nn").join(room).join(format!("{file}.rs"));
            let paths: Vec<std::path::PathBuf> = if single.exists() {
                vec![single]
            } else {
                let mut p: Vec<_> = fs::read_dir(src().join("nn").join(room).join(file))
                    .unwrap_or_else(|e| panic!("nn/{room}/{file}: {e}"))
                    .map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|x| x == "rs"))
                    .collect();
                p.sort();
                p
            };
            for path in paths {
                let text = fs::read_to_string(&path).unwrap();
                files += 1;
                for (n, line) in text.lines().enumerate() {
                    let at = |what: String| format!("{}:{}: {what}", path.display(), n + 1);
                    // `crate::nn::<room>::<file>`: a room after this one, or a later file of this one.
                    for (i, _) in line.match_indices("crate::nn::") {
                        let rest = &line[i + "crate::nn::".len()..];
                        let mut parts = rest.split("::");
                        let (Some(r), Some(f)) = (parts.next(), parts.next()) else {
                            continue;
                        };
                        let f: String = f
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        if let Some(rj) = rooms.iter().position(|x| *x == r) {
                            if rj > ri {
                                wrong.push(at(format!("{room}/{file} imports the later room {r}")));
                            } else if rj == ri
                                && orders[ri]
                                    .iter()
                                    .position(|x| *x == f)
                                    .is_some_and(|fj| fj > fi)
                            {
                                wrong.push(at(format!("{room}/{file} imports the later file {f}")));
                            }
                        }
                    }
                    // `super::<file>`: a later file of this room.
                    for (i, _) in line.match_indices("super::") {
                        let f: String = line[i + "super::".len()..]
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        if orders[ri]
                            .iter()
                            .position(|x| *x == f)
                            .is_some_and(|fj| fj > fi)
                        {
                            wrong.push(at(format!("{room}/{file} imports the later file {f}")));
                        }
                    }
                }
            }
        }
    }
    // Every engine file is in a room (nothing left loose beside mod.rs).
    let loose: Vec<_> = fs::read_dir(src().join("nn"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "mod.rs"))
        .collect();
    assert!(loose.is_empty(), "engine files outside a room: {loose:?}");
    assert!(files >= 15, "only {files} engine files found");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
