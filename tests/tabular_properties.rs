//! Property tests of tabular data (proptest, a bounded number of cases each;
//! `PROPTEST_CASES=2000 cargo test --test tabular_properties` digs deeper):
//!
//! - a model trained on a table with text categories and missing cells, exported to its JSON
//!   document and imported back, predicts bit for bit the same on raw rows with missing
//!   cells and categories never seen in training;
//! - the CSV reader never panics on arbitrary bytes, and what it accepts keeps the promises
//!   `backprop::fuzzing::csv_dataset` checks (the fuzz target's own assertions);
//! - the raw-row predict reader never panics and answers a client error or finite inputs.

use backprop::data::{Limits, from_csv};
use backprop::nn::portable::model::Model;
use backprop::nn::portable::tabular::Cell;
use backprop::nn::{Control, ModelDocument, TrainSpec};
use proptest::prelude::*;
use serde_json::json;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(24),
        ..ProptestConfig::default()
    }
}

/// A CSV cell: a number, a word from a small set, or a missing marker.
fn cell() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (-50.0f64..50.0).prop_map(|v| format!("{v:.3}")),
        2 => prop::sample::select(vec!["red", "green", "blue", "teal"]).prop_map(str::to_owned),
        1 => prop::sample::select(vec!["", "NA", "?", "null"]).prop_map(str::to_owned),
    ]
}

/// A table of 12 to 40 rows: one numeric column with gaps, one text column, one free column,
/// and a two-class text target that appears in both classes.
fn table() -> impl Strategy<Value = String> {
    (12usize..40).prop_flat_map(|rows| {
        (
            prop::collection::vec(prop::option::weighted(0.85, -10.0f64..10.0), rows),
            prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "NA"]), rows),
            prop::collection::vec(cell(), rows),
            prop::collection::vec(any::<bool>(), rows),
        )
            .prop_map(|(num, cat, free, y)| {
                let mut csv = String::from("num,cat,free,y\n");
                for (i, (((n, c), f), y)) in num.iter().zip(&cat).zip(&free).zip(&y).enumerate() {
                    let n = n.map_or("NA".to_string(), |v| format!("{v:.4}"));
                    // The first two rows pin both classes, so a classifier can be trained.
                    let y = if i < 2 { i == 0 } else { *y };
                    let y = if y { "yes" } else { "no" };
                    csv.push_str(&format!("{n},{c},{f},{y}\n"));
                }
                csv
            })
    })
}

/// Raw predict rows: numbers, missing cells, seen and unseen categories.
fn raw_rows() -> impl Strategy<Value = Vec<[Option<String>; 3]>> {
    let num = prop::option::of((-100.0f64..100.0).prop_map(|v| v.to_string()));
    let cat = prop::option::of(
        prop::sample::select(vec!["a", "b", "c", "zz", "Atlantis"]).prop_map(str::to_owned),
    );
    let free = prop::option::of(
        prop::sample::select(vec!["red", "1.5", "purple", "7"]).prop_map(str::to_owned),
    );
    prop::collection::vec((num, cat, free).prop_map(|(a, b, c)| [a, b, c]), 1..8)
}

fn pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_tabular_model_predicts_bit_for_bit_after_export_and_import(
        csv in table(),
        rows in raw_rows(),
        seed in 0u64..1000,
    ) {
        let ds = from_csv(csv.as_bytes(), None, &Limits::default()).expect("the table reads");
        let spec: TrainSpec = serde_json::from_value(json!({
            "layers": [{"units": 3, "activation": "tanh"}, {}],
            "loss": "binary_crossentropy", "epochs": 2, "batch_size": 8, "seed": seed,
            "validation_split": 0.25, "min_frequency": 2
        })).unwrap();
        let session = match backprop::jobs::session(&spec, &ds, None) {
            Ok(s) => s,
            // a column entirely missing from the training split is refused by name
            Err(e) => {
                prop_assert!(e.to_string().contains("/columns/"), "{e}");
                return Ok(());
            }
        };
        let out = session.run(&pool(), None, &Control::default(), &mut |_, _| {}).expect("trains");
        let doc = serde_json::to_string(&out.model.to_document()).unwrap();
        let back = Model::from_document(&serde_json::from_str::<ModelDocument>(&doc).unwrap())
            .expect("the export imports");
        prop_assert_eq!(&back, &out.model);
        let names = out.model.raw_names().expect("a tabular model names its columns");
        prop_assert_eq!(names.len(), 3);
        let cells: Vec<Vec<Cell>> = rows
            .iter()
            .map(|r| r.iter().map(|c| match c {
                None => Cell::Missing,
                Some(s) => match s.parse::<f64>() {
                    Ok(v) => Cell::Number(v),
                    Err(_) => Cell::Text(s),
                },
            }).collect())
            .collect();
        match (out.model.encode_rows(&cells), back.encode_rows(&cells)) {
            (Ok(a), Ok(b)) => {
                let pa = out.model.predict(a.view());
                let pb = back.predict(b.view());
                let bits = |x: &ndarray::Array2<f32>| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                prop_assert_eq!(bits(&pa.outputs), bits(&pb.outputs));
                prop_assert_eq!(pa.labels, pb.labels);
                prop_assert!(pa.outputs.iter().all(|v| v.is_finite()));
            }
            (Err(a), Err(b)) => {
                // only text in a numeric column can be refused, and both say so alike
                prop_assert_eq!(a.1.to_string(), b.1.to_string());
            }
            (a, b) => prop_assert!(false, "the import encodes differently: {a:?} / {b:?}"),
        }
    }

    #[test]
    fn the_csv_reader_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        backprop::fuzzing::csv_dataset(&bytes);
    }

    #[test]
    fn the_csv_reader_never_panics_on_near_csv(
        header in prop::collection::vec(prop::sample::select(vec!["a", "b", "y", "", "\"q\"", "id"]), 1..5),
        lines in prop::collection::vec(prop::collection::vec(cell(), 0..6), 0..12),
        sep in prop::sample::select(vec!["\n", "\r\n", "\r"]),
        prefix in prop::sample::select(vec!["", "?target=a\n", "?na=-\n?columns=a:numeric,b:categorical\n", "?columns=a:ignore\n"]),
    ) {
        let mut csv = prefix.to_string();
        csv.push_str(&header.join(","));
        for l in &lines {
            csv.push_str(sep);
            csv.push_str(&l.join(","));
        }
        backprop::fuzzing::csv_dataset(csv.as_bytes());
    }

    #[test]
    fn the_predict_reader_never_panics(
        rows in prop::collection::vec(prop::collection::vec(prop_oneof![
            Just(json!(null)), (-1e6f64..1e6).prop_map(|v| json!(v)),
            prop::sample::select(vec!["x", "y", "yes", "no", "zz", ""]).prop_map(|s| json!(s)),
            any::<bool>().prop_map(|b| json!(b)),
        ], 0..6), 0..5),
        as_records in any::<bool>(),
    ) {
        let inputs: Vec<serde_json::Value> = rows.iter().map(|r| {
            if as_records {
                let keys = ["a", "c", "b", "id", "p", "q"];
                serde_json::Value::Object(r.iter().zip(keys).map(|(v, k)| (k.to_string(), v.clone())).collect())
            } else {
                json!(r)
            }
        }).collect();
        backprop::fuzzing::predict_rows(json!({"inputs": inputs}).to_string().as_bytes());
    }
}
