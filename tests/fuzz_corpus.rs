//! Replays the checked-in fuzz corpus (`fuzz/corpus/<target>/`) through the same entry points
//! the cargo-fuzz targets call (`backprop::fuzzing`), so `cargo test` on stable re-checks
//! every input a fuzzer once found interesting, and any crash it was turned into.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{target}: only {} inputs", files.len());
    for f in files {
        let input = std::fs::read(&f).expect("a corpus file");
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
        // Name the input that fails, for `cargo +nightly fuzz run <target> <file>`.
        if std::panic::catch_unwind(|| run(&input)).is_err() {
            panic!("{target}: {} fails", name.unwrap_or_default());
        }
    }
}

#[test]
fn csv_dataset_corpus() {
    replay("csv_dataset", backprop::fuzzing::csv_dataset);
}

#[test]
fn json_dataset_corpus() {
    replay("json_dataset", backprop::fuzzing::json_dataset);
}

#[test]
fn job_spec_corpus() {
    replay("job_spec", backprop::fuzzing::job_spec);
}

#[test]
fn model_import_corpus() {
    replay("model_import", backprop::fuzzing::model_import);
}

#[test]
fn predict_rows_corpus() {
    replay("predict_rows", backprop::fuzzing::predict_rows);
}

#[test]
fn serving_bodies_corpus() {
    replay("serving_bodies", backprop::fuzzing::serving_bodies);
}
