//! JSON uploads: `{"features": [[..], ..], "targets": [..]}`. Errors carry a JSON pointer into
//! the body (0-based, as pointers are) and the 1-based row next to it.

use std::collections::HashMap;

use ndarray::Array2;
use serde_json::Value;

use super::{DataError, Dataset, Limits, finite_f32, quoted};
use crate::nn::{ClassLabel, Targets};

/// A dataset as a JSON request body. serde's own errors (wrong types, unknown fields,
/// non-numbers in `features`) are the HTTP layer's to report.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonDataset {
    pub name: Option<String>,
    /// One row of numbers per sample, all the same width.
    pub features: Vec<Vec<f64>>,
    /// One entry per row; see [`from_json`] for the shapes accepted.
    pub targets: Vec<Value>,
    /// Defaults to `x0, x1, …`.
    pub feature_names: Option<Vec<String>>,
}

/// Checks a JSON dataset and converts it. Targets, one per row, are one of:
/// - all numbers → `Values` (n×1), target name `"target"`;
/// - strings, or strings mixed with whole numbers → `Labels` (strings trimmed to `Text`, whole
///   numbers to `Integer`; `"1"` and `1` are different labels), target name `"target"`;
/// - all booleans → `Values` of 0 and 1 (n×1), exactly as if the body said 0 and 1, so a
///   binary target reads the same from JSON and CSV; target name `"target"`;
/// - all arrays of numbers of one width w → `Values` (n×w, one-hot or multi-output), target
///   names `"target_0"` … `"target_{w-1}"`.
///
/// `null`, objects, and any other mixture are errors at `/targets/i`.
pub fn from_json(body: &JsonDataset, limits: &Limits) -> Result<Dataset, DataError> {
    let rows = body.features.len();
    let Some(first) = body.features.first() else {
        return Err(
            DataError::new("features is empty; at least one row is required").pointer("/features"),
        );
    };
    if rows > limits.max_rows {
        return Err(DataError::new(format!(
            "features has {rows} rows, more than the limit of {}",
            limits.max_rows
        ))
        .pointer("/features")
        .too_large());
    }
    let width = first.len();
    if width == 0 {
        return Err(
            DataError::new("row 1 has no features; each row needs at least one number")
                .pointer("/features/0")
                .row(1),
        );
    }
    // The target adds at least one column; its real width is checked once it is known.
    check_size(rows, width, 1, limits)?;
    for (i, row) in body.features.iter().enumerate() {
        if row.len() != width {
            return Err(DataError::new(format!(
                "row {} has {} features, expected {width} like row 1",
                i + 1,
                row.len()
            ))
            .pointer(format!("/features/{i}"))
            .row(i + 1));
        }
    }
    if body.targets.len() != rows {
        return Err(DataError::new(format!(
            "targets has {} entries for {rows} rows of features; give one target per row",
            body.targets.len()
        ))
        .pointer("/targets"));
    }
    let feature_names = feature_names(body.feature_names.as_deref(), width)?;

    let mut x = Vec::with_capacity(rows * width);
    for (i, row) in body.features.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            let t = finite_f32(v).map_err(|bad| {
                let name = &feature_names[j];
                DataError::new(format!(
                    "row {}, column {}: {}",
                    i + 1,
                    quoted(name),
                    bad.describe(&show(v))
                ))
                .pointer(format!("/features/{i}/{j}"))
                .row(i + 1)
                .column(name)
            })?;
            x.push(t);
        }
    }
    let x = Array2::from_shape_vec((rows, width), x)
        .map_err(|e| DataError::new(format!("internal: feature matrix shape: {e}")))?;

    let targets = read_targets(&body.targets)?;
    let target_names = match &targets {
        Targets::Values(v) if matches!(body.targets.first(), Some(Value::Array(_))) => {
            (0..v.ncols()).map(|j| format!("target_{j}")).collect()
        }
        _ => vec!["target".to_owned()],
    };
    check_size(rows, width, target_names.len(), limits)?;
    Ok(Dataset {
        feature_names,
        target_names,
        x,
        targets,
    })
}

fn check_size(
    rows: usize,
    features: usize,
    target_width: usize,
    limits: &Limits,
) -> Result<(), DataError> {
    let columns = features.saturating_add(target_width);
    if columns > limits.max_columns {
        return Err(DataError::new(format!(
            "the dataset has {columns} columns ({features} features and {target_width} target), more than the limit of {}",
            limits.max_columns
        ))
        .pointer("/features/0")
        .row(1)
        .too_large());
    }
    let cells = rows.saturating_mul(columns);
    if cells > limits.max_cells {
        return Err(DataError::new(format!(
            "the dataset has {cells} cells ({rows} rows × {columns} columns), more than the limit of {}",
            limits.max_cells
        ))
        .pointer("/features")
        .too_large());
    }
    Ok(())
}

fn feature_names(given: Option<&[String]>, width: usize) -> Result<Vec<String>, DataError> {
    let Some(given) = given else {
        return Ok((0..width).map(|j| format!("x{j}")).collect());
    };
    if given.len() != width {
        return Err(DataError::new(format!(
            "feature_names has {} names for {width} features; give one name per feature",
            given.len()
        ))
        .pointer("/feature_names"));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (j, name) in given.iter().enumerate() {
        if name.trim().is_empty() {
            return Err(DataError::new(format!(
                "feature name {j} is empty; every feature needs a name"
            ))
            .pointer(format!("/feature_names/{j}")));
        }
        if let Some(first) = seen.insert(name, j) {
            return Err(DataError::new(format!(
                "feature name {} appears twice (at {first} and {j}); names must be unique",
                quoted(name)
            ))
            .pointer(format!("/feature_names/{j}"))
            .column(name));
        }
    }
    Ok(given.to_vec())
}

/// The shape families a target can belong to; one body uses one family.
#[derive(Clone, Copy, PartialEq)]
enum Family {
    /// numbers, or labels (strings and whole numbers)
    Scalar,
    Boolean,
    Array,
}

fn family(v: &Value) -> Option<Family> {
    match v {
        Value::Number(_) | Value::String(_) => Some(Family::Scalar),
        Value::Bool(_) => Some(Family::Boolean),
        Value::Array(_) => Some(Family::Array),
        Value::Null | Value::Object(_) => None,
    }
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn target_error(i: usize, message: String) -> DataError {
    DataError::new(format!("row {}: {message}", i + 1))
        .pointer(format!("/targets/{i}"))
        .row(i + 1)
}

fn read_targets(targets: &[Value]) -> Result<Targets, DataError> {
    let mut first: Option<(Family, &Value)> = None;
    let mut any_string = false;
    for (i, t) in targets.iter().enumerate() {
        let Some(f) = family(t) else {
            return Err(target_error(
                i,
                format!(
                    "the target is {}; expected a number, a string, a boolean or an array of numbers",
                    describe(t)
                ),
            ));
        };
        match first {
            None => first = Some((f, t)),
            Some((f0, t0)) if f0 != f => {
                return Err(target_error(
                    i,
                    format!(
                        "the target is {} but row 1's is {}; targets must be all numbers and labels, all booleans, or all arrays of numbers",
                        describe(t),
                        describe(t0)
                    ),
                ));
            }
            Some(_) => {}
        }
        any_string |= t.is_string();
    }
    let n = targets.len();
    match first.map(|(f, _)| f) {
        Some(Family::Scalar) if any_string => read_labels(targets).map(Targets::Labels),
        Some(Family::Scalar) => {
            let mut y = Vec::with_capacity(n);
            for (i, t) in targets.iter().enumerate() {
                y.push(target_number(t, &format!("/targets/{i}"), i, "the target")?);
            }
            values(y, n, 1)
        }
        Some(Family::Boolean) => {
            let y = targets
                .iter()
                .map(|t| if t.as_bool() == Some(true) { 1.0 } else { 0.0 })
                .collect();
            values(y, n, 1)
        }
        Some(Family::Array) => read_arrays(targets),
        None => values(Vec::new(), 0, 1),
    }
}

fn values(y: Vec<f32>, rows: usize, width: usize) -> Result<Targets, DataError> {
    Array2::from_shape_vec((rows, width), y)
        .map(Targets::Values)
        .map_err(|e| DataError::new(format!("internal: target shape: {e}")))
}

/// A JSON number as a finite f32; `what` begins the message ("the target", "target value 2").
fn target_number(v: &Value, pointer: &str, i: usize, what: &str) -> Result<f32, DataError> {
    let Some(f) = v.as_f64() else {
        return Err(DataError::new(format!(
            "row {}: {what} is {}; expected a number",
            i + 1,
            describe(v)
        ))
        .pointer(pointer)
        .row(i + 1));
    };
    finite_f32(f).map_err(|bad| {
        DataError::new(format!("row {}: {what} {}", i + 1, bad.describe(&show(f))))
            .pointer(pointer)
            .row(i + 1)
    })
}

fn read_labels(targets: &[Value]) -> Result<Vec<ClassLabel>, DataError> {
    let mut labels = Vec::with_capacity(targets.len());
    for (i, t) in targets.iter().enumerate() {
        let label = match t {
            Value::String(s) if s.trim().is_empty() => {
                return Err(target_error(
                    i,
                    "the label is empty; every row needs a target".into(),
                ));
            }
            Value::String(s) => ClassLabel::Text(s.trim().to_owned()),
            Value::Number(n) => match n.as_i64() {
                Some(k) => ClassLabel::Integer(k),
                None => ClassLabel::Integer(whole(n.as_f64()).ok_or_else(|| {
                    target_error(
                        i,
                        format!(
                            "{n} is not a whole number; when targets mix labels and numbers, the numbers must be whole class labels"
                        ),
                    )
                })?),
            },
            // read_targets only sends strings and numbers here.
            other => {
                return Err(target_error(
                    i,
                    format!("the target is {}; expected a label", describe(other)),
                ));
            }
        };
        labels.push(label);
    }
    Ok(labels)
}

/// `2.0` → 2; fractions and numbers beyond i64 → None.
fn whole(f: Option<f64>) -> Option<i64> {
    // 2^63: every f64 below it in magnitude with no fraction converts exactly.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    f.filter(|f| f.fract() == 0.0 && (-LIMIT..LIMIT).contains(f))
        .map(|f| f as i64)
}

fn read_arrays(targets: &[Value]) -> Result<Targets, DataError> {
    let n = targets.len();
    let mut width = 0;
    let mut y = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let Value::Array(items) = t else {
            return Err(target_error(
                i,
                format!("the target is {}; expected an array", describe(t)),
            ));
        };
        if i == 0 {
            width = items.len();
            if width == 0 {
                return Err(target_error(
                    0,
                    "the target array is empty; it needs at least one number".into(),
                ));
            }
            y.reserve(n.saturating_mul(width));
        } else if items.len() != width {
            return Err(target_error(
                i,
                format!(
                    "the target has {} values, expected {width} like row 1",
                    items.len()
                ),
            ));
        }
        for (j, v) in items.iter().enumerate() {
            y.push(target_number(
                v,
                &format!("/targets/{i}/{j}"),
                i,
                &format!("target value {j}"),
            )?);
        }
    }
    values(y, n, width)
}

/// A number for a message: scientific when plain notation would be long.
fn show(v: f64) -> String {
    if v.is_finite() && v != 0.0 && !(1e-6..1e16).contains(&v.abs()) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use serde_json::json;

    fn body(v: Value) -> JsonDataset {
        serde_json::from_value(v).expect("test body deserialises")
    }

    fn read(v: Value) -> Result<Dataset, DataError> {
        from_json(&body(v), &Limits::default())
    }

    fn read_err(v: Value) -> DataError {
        match read(v) {
            Ok(d) => panic!("expected an error, read {d:?}"),
            Err(e) => e,
        }
    }

    /// (message, pointer, row, too_large)
    fn parts(e: DataError) -> (String, Option<String>, Option<usize>, bool) {
        (e.message, e.pointer, e.row, e.too_large)
    }

    fn p(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    fn text(s: &str) -> ClassLabel {
        ClassLabel::Text(s.to_owned())
    }

    #[test]
    fn numbers_are_values_with_default_names() {
        let d = read(json!({"features": [[1, 2.5], [3, 4]], "targets": [0.5, -1]})).expect("reads");
        assert_eq!(d.feature_names, ["x0", "x1"]);
        assert_eq!(d.target_names, ["target"]);
        assert_eq!(d.x, array![[1.0, 2.5], [3.0, 4.0]]);
        assert_eq!(d.targets, Targets::Values(array![[0.5], [-1.0]]));
    }

    #[test]
    fn given_feature_names_and_name_field() {
        let d = read(json!({
            "name": "tiny", "features": [[1, 2]], "targets": [1], "feature_names": ["a", "b"]
        }))
        .expect("reads");
        assert_eq!(d.feature_names, ["a", "b"]);
    }

    #[test]
    fn unknown_fields_are_rejected_by_serde() {
        let r: Result<JsonDataset, _> =
            serde_json::from_value(json!({"features": [[1]], "targets": [1], "extra": 1}));
        assert!(r.is_err());
    }

    #[test]
    fn strings_are_trimmed_labels() {
        let d = read(json!({"features": [[1], [2], [3]], "targets": ["b", " a ", "b"]}))
            .expect("reads");
        assert_eq!(
            d.targets,
            Targets::Labels(vec![text("b"), text("a"), text("b")])
        );
        assert_eq!(d.target_names, ["target"]);
        assert_eq!(d.classes(), Some(vec![text("a"), text("b")]));
    }

    #[test]
    fn whole_numbers_mixed_with_strings_are_integer_labels() {
        let d =
            read(json!({"features": [[1], [2], [3]], "targets": [3, "cat", 2.0]})).expect("reads");
        assert_eq!(
            d.targets,
            Targets::Labels(vec![
                ClassLabel::Integer(3),
                text("cat"),
                ClassLabel::Integer(2)
            ])
        );
    }

    #[test]
    fn fraction_mixed_with_strings() {
        let e = read_err(json!({"features": [[1], [2]], "targets": ["cat", 1.5]}));
        assert_eq!(
            parts(e),
            (
                "row 2: 1.5 is not a whole number; when targets mix labels and numbers, the numbers must be whole class labels".into(),
                p("/targets/1"),
                Some(2),
                false
            )
        );
    }

    #[test]
    fn empty_label() {
        let e = read_err(json!({"features": [[1], [2]], "targets": ["cat", "  "]}));
        assert_eq!(
            parts(e),
            (
                "row 2: the label is empty; every row needs a target".into(),
                p("/targets/1"),
                Some(2),
                false
            )
        );
    }

    #[test]
    fn arrays_are_multi_column_values() {
        let d = read(json!({"features": [[1], [2]], "targets": [[1, 0, 0], [0, 0.5, 1]]}))
            .expect("reads");
        assert_eq!(
            d.targets,
            Targets::Values(array![[1.0, 0.0, 0.0], [0.0, 0.5, 1.0]])
        );
        assert_eq!(d.target_names, ["target_0", "target_1", "target_2"]);
        assert_eq!(d.outputs(), 3);
        let d = read(json!({"features": [[1]], "targets": [[7]]})).expect("reads");
        assert_eq!(d.target_names, ["target_0"]);
    }

    #[test]
    fn arrays_of_unequal_width() {
        let e = read_err(json!({"features": [[1], [2]], "targets": [[1, 0], [0, 1, 0]]}));
        assert_eq!(
            parts(e),
            (
                "row 2: the target has 3 values, expected 2 like row 1".into(),
                p("/targets/1"),
                Some(2),
                false
            )
        );
        let e = read_err(json!({"features": [[1]], "targets": [[]]}));
        assert_eq!(e.pointer, p("/targets/0"));
    }

    #[test]
    fn non_number_inside_a_target_array() {
        let e = read_err(json!({"features": [[1], [2]], "targets": [[1, 0], [0, "x"]]}));
        assert_eq!(
            parts(e),
            (
                "row 2: target value 1 is a string; expected a number".into(),
                p("/targets/1/1"),
                Some(2),
                false
            )
        );
        let e = read_err(json!({"features": [[1]], "targets": [[1e300]]}));
        assert_eq!(
            parts(e),
            (
                "row 1: target value 0 1e300 is too large for a 32-bit float (the largest magnitude is about 3.4e38)".into(),
                p("/targets/0/0"),
                Some(1),
                false
            )
        );
    }

    #[test]
    fn booleans_are_zero_one_values() {
        let d = read(json!({"features": [[1], [2], [3]], "targets": [true, false, true]}))
            .expect("reads");
        assert_eq!(d.targets, Targets::Values(array![[1.0], [0.0], [1.0]]));
        assert_eq!(d.target_names, ["target"]);
        assert_eq!(
            d.classes(),
            Some(vec![ClassLabel::Integer(0), ClassLabel::Integer(1)])
        );
    }

    #[test]
    fn mixed_families_are_errors_at_the_first_odd_one() {
        let e = read_err(json!({"features": [[1], [2], [3]], "targets": [1, 2, true]}));
        assert_eq!(
            parts(e),
            (
                "row 3: the target is a boolean but row 1's is a number; targets must be all numbers and labels, all booleans, or all arrays of numbers".into(),
                p("/targets/2"),
                Some(3),
                false
            )
        );
        let e = read_err(json!({"features": [[1], [2]], "targets": [[1], 1]}));
        assert_eq!((e.pointer, e.row), (p("/targets/1"), Some(2)));
    }

    #[test]
    fn null_and_objects() {
        for (t, what) in [(json!(null), "null"), (json!({"y": 1}), "an object")] {
            let e = read_err(json!({"features": [[1], [2]], "targets": [1, t]}));
            assert_eq!(
                parts(e),
                (
                    format!(
                        "row 2: the target is {what}; expected a number, a string, a boolean or an array of numbers"
                    ),
                    p("/targets/1"),
                    Some(2),
                    false
                )
            );
        }
    }

    #[test]
    fn numeric_target_too_large() {
        let e = read_err(json!({"features": [[1], [2]], "targets": [1, 1e39]}));
        assert_eq!(
            parts(e),
            (
                "row 2: the target 1e39 is too large for a 32-bit float (the largest magnitude is about 3.4e38)".into(),
                p("/targets/1"),
                Some(2),
                false
            )
        );
    }

    #[test]
    fn target_count_must_match_rows() {
        let e = read_err(json!({"features": [[1], [2]], "targets": [1]}));
        assert_eq!(
            parts(e),
            (
                "targets has 1 entries for 2 rows of features; give one target per row".into(),
                p("/targets"),
                None,
                false
            )
        );
    }

    #[test]
    fn empty_features() {
        let e = read_err(json!({"features": [], "targets": []}));
        assert_eq!(
            parts(e),
            (
                "features is empty; at least one row is required".into(),
                p("/features"),
                None,
                false
            )
        );
        let e = read_err(json!({"features": [[]], "targets": [1]}));
        assert_eq!(
            parts(e),
            (
                "row 1 has no features; each row needs at least one number".into(),
                p("/features/0"),
                Some(1),
                false
            )
        );
    }

    #[test]
    fn rows_of_different_width() {
        let e = read_err(json!({"features": [[1, 2], [3, 4], [5]], "targets": [1, 2, 3]}));
        assert_eq!(
            parts(e),
            (
                "row 3 has 1 features, expected 2 like row 1".into(),
                p("/features/2"),
                Some(3),
                false
            )
        );
    }

    #[test]
    fn features_must_be_finite_and_fit_f32() {
        let e = read_err(json!({
            "features": [[1, 2, 3], [4, 5, 6], [7, 8, 9], [1, 1, 1], [0, 0, 1e300]],
            "targets": [1, 2, 3, 4, 5],
            "feature_names": ["a", "b", "c"]
        }));
        assert_eq!(
            parts(e.clone()),
            (
                "row 5, column \"c\": 1e300 is too large for a 32-bit float (the largest magnitude is about 3.4e38)".into(),
                p("/features/4/2"),
                Some(5),
                false
            )
        );
        assert_eq!(e.column, p("c"));
        // JSON text cannot hold NaN, but a body built in code can
        let b = JsonDataset {
            name: None,
            features: vec![vec![1.0], vec![f64::NAN]],
            targets: vec![json!(1), json!(2)],
            feature_names: None,
        };
        let e = from_json(&b, &Limits::default()).expect_err("fails");
        assert_eq!(
            parts(e),
            (
                "row 2, column \"x0\": NaN must be a finite number".into(),
                p("/features/1/0"),
                Some(2),
                false
            )
        );
    }

    #[test]
    fn feature_names_must_fit_and_be_unique() {
        let e = read_err(json!({"features": [[1, 2]], "targets": [1], "feature_names": ["a"]}));
        assert_eq!(
            parts(e),
            (
                "feature_names has 1 names for 2 features; give one name per feature".into(),
                p("/feature_names"),
                None,
                false
            )
        );
        let e = read_err(
            json!({"features": [[1, 2, 3]], "targets": [1], "feature_names": ["a", "b", "a"]}),
        );
        assert_eq!(
            parts(e),
            (
                "feature name \"a\" appears twice (at 0 and 2); names must be unique".into(),
                p("/feature_names/2"),
                None,
                false
            )
        );
        let e =
            read_err(json!({"features": [[1, 2]], "targets": [1], "feature_names": ["a", " "]}));
        assert_eq!(e.pointer, p("/feature_names/1"));
    }

    #[test]
    fn limits() {
        let two_rows = json!({"features": [[1, 2], [3, 4]], "targets": [[1, 0], [0, 1]]});
        let rows = Limits {
            max_rows: 1,
            ..Limits::default()
        };
        let e = from_json(&body(two_rows.clone()), &rows).expect_err("fails");
        assert_eq!(
            parts(e),
            (
                "features has 2 rows, more than the limit of 1".into(),
                p("/features"),
                None,
                true
            )
        );
        // 2 features + 2 target columns = 4
        let columns = Limits {
            max_columns: 3,
            ..Limits::default()
        };
        let e = from_json(&body(two_rows.clone()), &columns).expect_err("fails");
        assert_eq!(
            parts(e),
            (
                "the dataset has 4 columns (2 features and 2 target), more than the limit of 3"
                    .into(),
                p("/features/0"),
                Some(1),
                true
            )
        );
        let cells = Limits {
            max_cells: 7,
            ..Limits::default()
        };
        let e = from_json(&body(two_rows.clone()), &cells).expect_err("fails");
        assert_eq!(
            parts(e),
            (
                "the dataset has 8 cells (2 rows × 4 columns), more than the limit of 7".into(),
                p("/features"),
                None,
                true
            )
        );
        let exact = Limits {
            max_rows: 2,
            max_columns: 4,
            max_cells: 8,
        };
        assert!(from_json(&body(two_rows), &exact).is_ok());
    }

    #[test]
    fn json_and_csv_agree_on_a_binary_target() {
        let from_bools = read(json!({"features": [[1.5], [2]], "targets": [false, true],
            "feature_names": ["a"]}))
        .expect("reads");
        let from_csv = super::super::from_csv(b"a,target\n1.5,0\n2,1\n", None, &Limits::default())
            .expect("reads");
        assert_eq!(from_bools, from_csv);
    }

    #[test]
    fn show_keeps_messages_short() {
        assert_eq!(show(1.5), "1.5");
        assert_eq!(show(1e300), "1e300");
        assert_eq!(show(f64::INFINITY), "inf");
        assert_eq!(show(-1e-7), "-1e-7");
    }
}
