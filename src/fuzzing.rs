//! The parsers' fuzz entry points: one function per target under `fuzz/` (cargo-fuzz, nightly),
//! also called by `tests/fuzz_corpus.rs` to replay the checked-in corpus on stable. Each takes
//! the raw bytes a client could send, runs them through the same functions the HTTP handlers
//! call, and asserts what those functions promise; a panic is a finding. No I/O, no async.
//!
//! Errors must be client errors (400/413/422): user input never earns a 500.

use std::sync::OnceLock;

use axum::response::IntoResponse;
use ndarray::{Array2, Axis};

use crate::api::ApiError;
use crate::api::view::prediction_body;
use crate::data::json::JsonCell;
use crate::data::{self, DataError, Dataset, JsonDataset, Limits as DataLimits};
use crate::nn::portable::model::Model;
use crate::nn::portable::tabular::Storage;
use crate::nn::{ClassLabel, Control, Loss, Targets, TrainError, TrainSpec};
use crate::service::Limits;
use crate::service::jobs::{DatasetSource, plan_job, read_request};
use crate::service::models::read_import;

/// Small bounds, so the limit paths are reachable by a fuzzer.
const SMALL: DataLimits = DataLimits {
    max_rows: 64,
    max_columns: 16,
    max_cells: 512,
};

/// Epochs, rows × parameters and parameters the `job_spec` target trains at most.
const TRAIN_EPOCHS: u32 = 3;
const TRAIN_WORK: usize = 200_000;
const MAX_PARAMETERS: usize = 20_000;

/// `POST /v1/datasets` with `text/csv`. An optional first line `?target=NAME` stands for the
/// `target` query parameter, then an optional `?na=A,B` for `na_values` and `?columns=a:t,…`
/// for the column types; the rest is the file.
pub fn csv_dataset(input: &[u8]) {
    let mut body = input;
    let mut param = |prefix: &[u8]| -> Option<String> {
        let rest = body.strip_prefix(prefix)?;
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let v = String::from_utf8_lossy(&rest[..end]).into_owned();
        body = rest.get(end + 1..).unwrap_or_default();
        Some(v)
    };
    let target = param(b"?target=");
    let na: Option<Vec<String>> = param(b"?na=").map(|v| v.split(',').map(str::to_owned).collect());
    let columns: std::collections::BTreeMap<String, crate::nn::portable::tabular::ColumnType> =
        param(b"?columns=")
            .map(|v| {
                v.split(',')
                    .filter_map(|p| p.rsplit_once(':'))
                    .filter_map(|(n, t)| {
                        crate::nn::portable::tabular::ColumnType::parse(t.trim())
                            .map(|t| (n.trim().to_owned(), t))
                    })
                    .collect()
            })
            .unwrap_or_default();
    let opts = data::ReadOptions::new(na.as_deref(), columns);
    // The same bytes as JSON Lines (rewritten as CSV, then read as one): any error is clean.
    if body.first() == Some(&b'{') {
        match data::jsonl_columns(body, target.as_deref(), &SMALL, opts.clone()) {
            Ok(c) => assert!(c.rows() >= 1),
            Err(e) => check_data_error(&e),
        }
    }
    // Parquet (its magic first): any error is clean, whatever the bytes.
    if body.starts_with(b"PAR1") {
        let bytes = bytes::Bytes::copy_from_slice(body);
        match data::parquet_columns(bytes, target.as_deref(), &SMALL, &opts, 1 << 20) {
            Ok(c) => assert!(c.rows() >= 1),
            Err(e) => check_data_error(&e),
        }
        return;
    }
    let small = data::from_csv_with(body, target.as_deref(), &SMALL, &opts);
    let default = data::from_csv_with(body, target.as_deref(), &DataLimits::default(), &opts);
    match &small {
        Ok(ds) => {
            check_dataset(ds, &SMALL);
            assert_eq!(ds.outputs(), 1, "a CSV has one target column");
            let default = default.as_ref().expect("limits changed an accepted file");
            assert_same(default, ds, "limits changed an accepted file");
        }
        Err(e) => {
            check_data_error(e);
            assert!(
                e.pointer
                    .as_deref()
                    .is_none_or(|p| p.starts_with("/columns/")),
                "CSV errors have no JSON pointer but at a column setting: {e:?}"
            );
            // Limits are checked before the cells they cover, so any other error is the same
            // whatever the limits.
            if !e.too_large {
                assert_eq!(default.as_ref().err(), Some(e), "limits changed an error");
            }
        }
    }
    if let Ok(ds) = &default {
        check_dataset(ds, &DataLimits::default());
    }
}

/// Datasets equal field by field, features to the bit (a missing cell is NaN, which `==`
/// never finds equal to itself).
fn assert_same(a: &Dataset, b: &Dataset, what: &str) {
    assert_eq!(a.feature_names, b.feature_names, "{what}");
    assert_eq!(a.target_names, b.target_names, "{what}");
    assert_eq!(a.targets, b.targets, "{what}");
    assert_eq!(a.columns, b.columns, "{what}");
    assert_eq!(a.dropped_rows, b.dropped_rows, "{what}");
    assert_eq!(a.x.dim(), b.x.dim(), "{what}");
    assert!(
        a.x.iter()
            .zip(b.x.iter())
            .all(|(p, q)| p.to_bits() == q.to_bits()),
        "{what}: features differ"
    );
}

/// `POST /v1/datasets` with `application/json`.
pub fn json_dataset(input: &[u8]) {
    let body: JsonDataset = match crate::service::read::parse_json(input) {
        Ok(b) => b,
        Err(e) => return check_client_error(e),
    };
    match data::from_json(&body, &SMALL) {
        Ok(ds) => {
            check_dataset(&ds, &SMALL);
            assert_eq!(
                ds.rows() as u64 + ds.dropped_rows,
                body.features.len() as u64
            );
            if ds.dropped_rows == 0 {
                for (i, row) in ds.x.rows().into_iter().enumerate() {
                    if body.features.is_record(i) {
                        continue;
                    }
                    let cells = body.features.cells(i);
                    for ((&v, cell), col) in row.iter().zip(cells).zip(&ds.columns) {
                        match (cell, col.schema.storage) {
                            (JsonCell::Number(n), Storage::Number) => {
                                assert_eq!(v, n as f32, "features changed on the way in")
                            }
                            (JsonCell::Null, _) => assert!(v.is_nan(), "null read as {v}"),
                            _ => {}
                        }
                    }
                }
            }
            if let Some(names) = &body.feature_names {
                assert_eq!(&ds.feature_names, names);
            }
            let default = data::from_json(&body, &DataLimits::default());
            let default = default.as_ref().expect("limits changed an accepted body");
            assert_same(default, &ds, "limits changed an accepted body");
        }
        Err(e) => {
            check_data_error(&e);
            let pointer = e.pointer.as_deref().unwrap_or_default();
            assert!(
                pointer.starts_with('/'),
                "JSON errors carry a pointer: {e:?}"
            );
            check_client_error(e);
        }
    }
}

/// `POST /v1/jobs`: read the body, validate the spec against its dataset (inline, or one of
/// three small stored ones when the body names a `dataset_id`), and when it is accepted, do
/// what the worker does: read the stored spec back, prepare the session, and train a few
/// epochs. An accepted job may diverge, but never fail for a reason validation could see.
pub fn job_spec(input: &[u8]) {
    job_accepted(input);
}

/// [`job_spec`]'s checks, answering whether the job was accepted (property tests count them).
pub fn job_accepted(input: &[u8]) -> bool {
    let req = match read_request(input, &SMALL) {
        Ok(r) => r,
        Err(e) => {
            check_client_error(e);
            return false;
        }
    };
    let dataset = match req.dataset {
        DatasetSource::Stored(_) => stored_dataset(input.len()),
        DatasetSource::Inline(inline) => inline.1,
    };
    // The server's limits (epochs, layers) but for the small data and parameter bounds.
    let limits = Limits {
        data: SMALL,
        ..limits_with(MAX_PARAMETERS)
    };
    let spec = req.spec;
    let plan = match plan_job(&spec, &dataset, &limits) {
        Ok(p) => p,
        Err(e) => {
            check_client_error(e);
            return false;
        }
    };
    assert!(plan.parameter_count <= MAX_PARAMETERS);

    // The use case stores the job's spec as JSON; the worker reads it back.
    let job_spec = crate::store::JobSpec {
        train: spec.clone(),
        dataset_id: Some(uuid::Uuid::nil()),
        priority: req.priority,
        name: req.name,
        validation_dataset_id: None,
        init_model_id: req.init_model,
        continues: None,
        auto_learning_rate: req.auto_learning_rate,
    };
    let stored = job_spec.to_value();
    let back = crate::store::JobSpec::from_value(stored.clone())
        .unwrap_or_else(|e| panic!("the stored spec {stored} does not read back: {e}"));
    assert_eq!(back, job_spec, "the stored spec reads back different");
    let dataset = Dataset::from_bytes(&dataset.to_bytes()).expect("stored dataset reads back");

    let session = crate::jobs::session(&spec, &dataset, None)
        .unwrap_or_else(|e| panic!("validated spec refused by the worker: {e}"));
    if dataset.is_plain() && spec.columns.is_none() {
        assert_eq!(session.plan, plan, "the worker planned a different network");
    } else {
        // Validation counts the widest encoding; the encoder fitted on the training split
        // may need fewer inputs.
        assert!(session.plan.parameter_count <= plan.parameter_count);
        assert_eq!(session.plan.encoding, plan.encoding);
    }
    assert_eq!(
        session.initial_network().parameter_count(),
        session.plan.parameter_count
    );
    let mut short = spec.clone();
    short.epochs = short.epochs.min(TRAIN_EPOCHS);
    let work = plan.parameter_count.saturating_mul(dataset.rows());
    if work > TRAIN_WORK {
        return true;
    }
    // Fewer epochs change nothing validation looks at, except schedules and early stopping
    // counted in epochs; those must still validate.
    let session = crate::jobs::session(&short, &dataset, None)
        .unwrap_or_else(|e| panic!("the spec with {TRAIN_EPOCHS} epochs is refused: {e}"));
    let pool = pool();
    match session.run(pool, None, &Control::default(), &mut |_, _| {}) {
        Ok(out) => {
            assert!(out.epochs_run >= 1 && out.epochs_run <= short.epochs);
            let doc = serde_json::to_vec(&out.model.to_document()).expect("serialises");
            let back = read_import(&doc, &limits_with(usize::MAX))
                .unwrap_or_else(|e| panic!("a trained model does not import: {e:?}"));
            let x = encoded_inputs(&out.model, &dataset);
            let p = out.model.predict(x.view());
            assert_eq!(p.outputs.dim(), (dataset.rows(), plan_width(&out.model)));
            let x_back = encoded_inputs(&back, &dataset);
            assert_bits_eq(&p.outputs, &back.predict(x_back.view()).outputs);
        }
        Err(TrainError::Diverged { .. }) => {}
        Err(e) => panic!("an accepted job failed: {e}"),
    }
    true
}

/// `POST /v1/models`: import a document; when it is accepted, export it again (the stored
/// and exported form) and predict a few rows with both.
pub fn model_import(input: &[u8]) {
    let model = match read_import(input, &limits_with(MAX_PARAMETERS)) {
        Ok(m) => m,
        Err(e) => return check_client_error(e),
    };
    let d = model.input_dim();
    assert!(d >= 1);
    let out = plan_width(&model);
    assert!(out >= 1);
    let doc = crate::store::to_json(&model.to_document());
    let back = read_import(doc.to_string().as_bytes(), &limits_with(MAX_PARAMETERS))
        .unwrap_or_else(|e| panic!("an exported model does not import: {e:?} {doc}"));
    assert_eq!(
        back.to_document(),
        model.to_document(),
        "export is not stable"
    );

    // Rows: zeros, ones, and numbers taken from the input's bytes, within ±8.
    let x = Array2::from_shape_fn((3, d), |(i, j)| match i {
        0 => 0.0,
        1 => 1.0,
        _ => f32::from(input[(j * 7) % input.len()]) / 16.0 - 8.0,
    });
    let p = model.predict(x.view());
    assert_eq!(p.outputs.dim(), (3, out));
    assert_bits_eq(&p.outputs, &back.predict(x.view()).outputs);
    match (&p.labels, model.encoding.classes()) {
        (Some(l), Some(c)) => assert!(l.len() == 3 && l.iter().all(|l| c.contains(l))),
        (None, None) => {}
        (l, c) => panic!("labels {l:?} for classes {c:?}"),
    }
    let finite = p.outputs.iter().all(|v| v.is_finite());
    if finite && model.network.output_activation() == crate::nn::Activation::Softmax {
        for row in p.outputs.rows() {
            assert!(
                (row.sum() - 1.0).abs() < 1e-4,
                "softmax row sums to {}",
                row.sum()
            );
            assert!(row.iter().all(|v| (0.0..=1.0).contains(v)));
        }
    }
    match prediction_body(uuid::Uuid::nil(), p) {
        Ok(body) => assert!(finite, "non-finite outputs answered: {body}"),
        Err(e) => {
            assert!(!finite, "finite outputs refused: {e:?}");
            check_client_error(e);
        }
    }
}

/// The network inputs of a dataset's rows, sent to `model` as raw cells, as predict reads them.
fn encoded_inputs(model: &Model, ds: &Dataset) -> Array2<f32> {
    let rows: Vec<Vec<crate::nn::portable::tabular::Cell>> =
        ds.x.rows()
            .into_iter()
            .map(|r| ds.columns.iter().zip(r).map(|(c, &v)| c.cell(v)).collect())
            .collect();
    model
        .encode_rows(&rows)
        .unwrap_or_else(|(i, e)| panic!("row {i} of the training data does not encode: {e}"))
}

/// `POST /v1/models/{id}/predict` on a tabular model (a number with missing cells, a category,
/// a yes/no column and an ignored id) and on a plain numeric model with column names: the
/// raw-row reader either gives one encoded row per input row, all finite, or a client error.
pub fn predict_rows(input: &[u8]) {
    for model in predict_models() {
        match crate::service::predict::read_inputs(input, model, 64) {
            Ok(x) => {
                assert_eq!(x.ncols(), model.input_dim());
                assert!(x.nrows() >= 1 && x.nrows() <= 64);
                assert!(x.iter().all(|v| v.is_finite()), "a non-finite input: {x:?}");
                let p = model.predict(x.view());
                assert_eq!(p.outputs.nrows(), x.nrows());
            }
            Err(e) => check_client_error(e),
        }
    }
}

/// The serving protocols' bodies (issue 13), each read for both models of `predict_rows`: the
/// Open Inference Protocol v2 `infer` body, TF Serving's `predict` body, and a CSV predict
/// body. Whatever they accept is one finite row of the network's inputs per batch item.
pub fn serving_bodies(input: &[u8]) {
    use crate::service::{inference, predict_csv};
    for model in predict_models() {
        let check = |x: &Array2<f32>| {
            assert_eq!(x.ncols(), model.input_dim());
            assert!(x.nrows() >= 1 && x.nrows() <= 64);
            assert!(x.iter().all(|v| v.is_finite()), "a non-finite input: {x:?}");
        };
        match inference::read_infer(input, model, 64) {
            Ok(r) => {
                check(&r.x);
                assert!(!r.outputs.is_empty());
            }
            Err(e) => check_client_error(e),
        }
        match inference::read_tf_predict(input, model, 64) {
            Ok((_, x)) => check(&x),
            Err(e) => check_client_error(e),
        }
        match predict_csv::read_csv(input, model, 64) {
            Ok((_, rows, x)) => {
                check(&x);
                assert_eq!(rows.len(), x.nrows());
            }
            Err(e) => check_client_error(e),
        }
    }
}

fn predict_models() -> &'static [Model; 2] {
    use crate::nn::portable::tabular::{EncodedColumn, Encoder};
    static MODELS: OnceLock<[Model; 2]> = OnceLock::new();
    MODELS.get_or_init(|| {
        let doc = |input_dim: usize| -> crate::nn::ModelDocument {
            serde_json::from_value(serde_json::json!({
                "input_dim": input_dim,
                "layers": [{"units": 2, "activation": "softmax",
                            "weights": vec![vec![0.5, -0.25]; input_dim]}],
                "classes": ["no", "yes"],
            }))
            .expect("a model document")
        };
        // 7 inputs for a, c, b; 1 for the money column m; 11 for the date column d.
        let mut tabular = Model::from_document(&doc(19)).expect("a model");
        tabular.target_names = Some(vec!["y".into()]);
        tabular.encoder = Some(Encoder {
            columns: vec![
                EncodedColumn::Numeric {
                    name: "a".into(),
                    fill: 1.5,
                    missing_indicator: true,
                    format: None,
                    bins: vec![],
                },
                EncodedColumn::Categorical {
                    name: "c".into(),
                    categories: vec!["x".into(), "y".into()],
                    missing: true,
                    other: true,
                },
                EncodedColumn::Boolean {
                    name: "b".into(),
                    fill: 0.5,
                    missing_indicator: false,
                },
                EncodedColumn::Ignore { name: "id".into() },
                EncodedColumn::Numeric {
                    name: "m".into(),
                    fill: 0.0,
                    missing_indicator: false,
                    format: Some(crate::nn::portable::values::NumberFormat {
                        decimal: '.',
                        thousands: Some(','),
                        currency: vec!["$".into()],
                        percent: false,
                        parentheses: true,
                    }),
                    bins: vec![],
                },
                EncodedColumn::Date {
                    name: "d".into(),
                    format: crate::nn::portable::values::DateFormat {
                        order: crate::nn::portable::values::DateOrder::Dmy,
                        ambiguous: false,
                        time: true,
                        zone: true,
                        weekday: true,
                    },
                    fill: 19_000.0,
                    missing_indicator: true,
                },
            ],
        });
        let mut plain = Model::from_document(&doc(2)).expect("a model");
        plain.feature_names = Some(vec!["p".into(), "q".into()]);
        [tabular, plain]
    })
}

/// Output width of a model's last dense layer.
fn plan_width(m: &Model) -> usize {
    m.network.output_dim()
}

fn assert_bits_eq(a: &Array2<f32>, b: &Array2<f32>) {
    assert_eq!(a.dim(), b.dim());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.to_bits(), y.to_bits(), "{x} != {y}");
    }
}

/// One training thread, built once: the engine needs a pool, the fuzzer a single core.
fn pool() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("a one-thread pool")
    })
}

/// A stand-in for a stored dataset: text labels, 0/1 numbers, or two regression columns.
fn stored_dataset(pick: usize) -> Dataset {
    let rows = 12;
    let x = Array2::from_shape_fn((rows, 3), |(i, j)| ((i * 7 + j * 3) % 11) as f32 - 5.0);
    let (targets, target_names) = match pick % 3 {
        0 => (
            Targets::Labels(
                (0..rows)
                    .map(|i| ClassLabel::Text(["a", "b", "c"][i % 3].into()))
                    .collect(),
            ),
            vec!["y".into()],
        ),
        1 => (
            Targets::Values(Array2::from_shape_fn((rows, 1), |(i, _)| (i % 2) as f32)),
            vec!["y".into()],
        ),
        _ => (
            Targets::Values(Array2::from_shape_fn((rows, 2), |(i, j)| {
                (i as f32 - 6.0) * (j as f32 + 0.5)
            })),
            vec!["y0".into(), "y1".into()],
        ),
    };
    Dataset::numeric(
        (0..3).map(|j| format!("x{j}")).collect(),
        target_names,
        x,
        targets,
    )
}

/// What every dataset the parsers hand out promises (see `data`'s module documentation).
fn check_dataset(ds: &Dataset, limits: &DataLimits) {
    let (rows, inputs, outputs) = (ds.rows(), ds.inputs(), ds.outputs());
    assert!(rows >= 1 && inputs >= 1 && outputs >= 1);
    assert!(rows <= limits.max_rows);
    assert!(inputs + outputs <= limits.max_columns);
    assert!(rows * (inputs + outputs) <= limits.max_cells);
    assert!(
        ds.x.iter().all(|v| v.is_finite() || v.is_nan()),
        "an infinite feature"
    );
    assert_eq!(ds.columns.len(), inputs);
    for (j, c) in ds.columns.iter().enumerate() {
        let missing = ds.x.column(j).iter().filter(|v| v.is_nan()).count() as u64;
        assert_eq!(missing, c.schema.missing, "column {j}'s missing count");
    }
    assert_eq!(ds.targets.len(), rows);
    assert_eq!(ds.feature_names.len(), inputs);
    assert_eq!(ds.target_names.len(), outputs);
    match &ds.targets {
        Targets::Labels(l) => {
            for label in l {
                if let ClassLabel::Text(s) = label {
                    assert!(!s.is_empty() && s.trim() == s, "label {s:?}");
                }
            }
        }
        Targets::Values(v) => assert!(v.iter().all(|t| t.is_finite()), "a non-finite target"),
    }
    if let Some(c) = ds.classes() {
        assert!(
            c.windows(2).all(|w| w[0] < w[1]),
            "classes not sorted: {c:?}"
        );
    }
    let back = Dataset::from_bytes(&ds.to_bytes()).expect("the stored form reads back");
    assert_same(&back, ds, "storage round trip");
    assert_eq!(
        ds.preview(3).as_array().map(Vec::len),
        Some(rows.min(3)),
        "preview length"
    );
    // Whatever the data, a one-layer spec accepted by validation must prepare a session.
    for loss in [
        Loss::Mse,
        Loss::BinaryCrossentropy,
        Loss::CategoricalCrossentropy,
    ] {
        let spec: TrainSpec = serde_json::from_value(serde_json::json!({
            "layers": [{}], "loss": loss, "seed": 1
        }))
        .expect("a minimal spec");
        let summary = crate::data::Summary::of(ds);
        let planned = spec
            .input_width(&summary.columns, rows)
            .ok()
            .and_then(|(w, _)| spec.plan(w, rows, &summary.target).ok());
        if planned.is_some() {
            let session = crate::jobs::session(&spec, ds, None);
            assert!(
                session.is_ok(),
                "{} accepted, then refused: {:?}",
                loss.name(),
                session.err()
            );
        }
    }
    // Row order survives: selecting every row gives the targets back.
    let all: Vec<usize> = (0..rows).collect();
    assert_eq!(ds.targets.select(&all), ds.targets);
    let again = ds.x.select(Axis(0), &all);
    assert!(
        again.shape() == ds.x.shape()
            && again
                .iter()
                .zip(ds.x.iter())
                .all(|(a, b)| a.to_bits() == b.to_bits()),
        "rows selected in order differ: {again} against {}",
        ds.x
    );
}

fn check_data_error(e: &DataError) {
    assert!(!e.message.trim().is_empty(), "an empty message");
    assert!(e.row.is_none_or(|r| r >= 1), "row {:?}", e.row);
    assert!(!e.message.contains("internal"), "an internal error: {e:?}");
}

/// The server's default limits with at most `max_parameters` parameters.
fn limits_with(max_parameters: usize) -> Limits {
    Limits {
        max_parameters,
        ..Limits::DEFAULT
    }
}

/// A rejection of user input must be a 4xx with something to say.
fn check_client_error(e: impl Into<ApiError>) {
    let e: ApiError = e.into();
    if let ApiError::Invalid(errs) = &e {
        assert!(!errs.is_empty());
        for s in errs {
            assert!(s.pointer.starts_with('/'), "pointer {:?}", s.pointer);
            assert!(!s.message.is_empty());
        }
    }
    let what = format!("{e:?}");
    let status = e.into_response().status();
    assert!(status.is_client_error(), "{status} for {what}");
}
