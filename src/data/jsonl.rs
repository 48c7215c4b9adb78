//! JSON Lines uploads (one JSON object per line, as data tools export them): the objects'
//! keys, in the order they first appear, are the columns; a key a line leaves out, or
//! `null`, is a missing cell. The lines are rewritten as CSV rows and read by the CSV reader,
//! so every column is understood as a CSV's is (value formats, kinds, reasons, warnings).

use std::collections::HashMap;

use serde_json::Value;

use super::csv::{CsvStream, DialectOptions, Encoding};
use super::{Columns, DataError, Limits, ReadOptions};

/// The columns of a JSON Lines body with `target` (default: the last key) as the target.
pub fn jsonl_columns(
    body: &[u8],
    target: Option<&str>,
    limits: &Limits,
    opts: ReadOptions,
) -> Result<Columns, DataError> {
    let csv = to_csv(body)?;
    // Written here, so nothing is sniffed: commas, points, quotes, UTF-8.
    let mut stream = CsvStream::new(target, *limits, opts).with_dialect(DialectOptions {
        delimiter: Some(b','),
        quote: Some(b'"'),
        decimal: Some(b'.'),
        encoding: Some(Encoding::Utf8),
    });
    stream.push(&csv)?;
    let mut columns = stream.finish_columns()?;
    columns.dialect = None;
    Ok(columns)
}

/// Each non-blank line, with its 1-based line number.
fn lines(body: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    body.split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix(b"\r").unwrap_or(l)))
        .filter(|(_, l)| !l.trim_ascii().is_empty())
}

fn object(line: usize, bytes: &[u8]) -> Result<serde_json::Map<String, Value>, DataError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(DataError::new(format!(
            "line {line}: expected a JSON object (one row of named cells), got {}",
            kind(&other)
        ))
        .row(line)),
        Err(e) => Err(DataError::new(format!("line {line}: not JSON: {e}")).row(line)),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The lines as a CSV text: the union of the keys as the header, then one row per line.
fn to_csv(body: &[u8]) -> Result<Vec<u8>, DataError> {
    let mut names: Vec<String> = vec![];
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut rows = 0usize;
    for (line, bytes) in lines(body) {
        for k in object(line, bytes)?.keys() {
            if !index.contains_key(k) {
                if k.is_empty() {
                    return Err(DataError::new(format!("line {line}: a key is empty")).row(line));
                }
                index.insert(k.clone(), names.len());
                names.push(k.clone());
            }
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(DataError::new(
            "the body has no lines; expected one JSON object per line",
        ));
    }
    let mut w = ::csv::Writer::from_writer(Vec::with_capacity(body.len()));
    let bad = |e: ::csv::Error| DataError::new(format!("internal: writing rows: {e}"));
    w.write_record(&names).map_err(bad)?;
    let mut cells: Vec<String> = vec![String::new(); names.len()];
    for (line, bytes) in lines(body) {
        cells.iter_mut().for_each(String::clear);
        for (k, v) in object(line, bytes)? {
            let cell = &mut cells[index[&k]];
            match v {
                Value::Null => {}
                Value::Bool(b) => cell.push_str(if b { "true" } else { "false" }),
                Value::Number(n) => cell.push_str(&n.to_string()),
                Value::String(s) => *cell = s,
                other => {
                    return Err(DataError::new(format!(
                        "line {line}, key {k:?}: {} is not a cell; cells are numbers, strings, booleans or null",
                        kind(&other)
                    ))
                    .row(line)
                    .column(&k));
                }
            }
        }
        w.write_record(&cells).map_err(bad)?;
    }
    w.into_inner()
        .map_err(|e| DataError::new(format!("internal: writing rows: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_first_appearance_order_and_missing_cells() {
        let body = b"{\"a\": 1, \"b\": \"x, y\", \"y\": \"yes\"}\n\n{\"b\": null, \"y\": \"no\", \"c\": true}\r\n{\"a\": 2.5, \"y\": \"no\"}\n";
        let csv = String::from_utf8(to_csv(body).unwrap()).unwrap();
        assert_eq!(csv, "a,b,y,c\n1,\"x, y\",yes,\n,,no,true\n2.5,,no,\n");
        let cols =
            jsonl_columns(body, Some("y"), &Limits::default(), ReadOptions::default()).unwrap();
        assert_eq!(cols.rows(), 3);
        assert_eq!(cols.feature_names(), ["a", "b", "c"]);
    }

    #[test]
    fn bad_lines_are_named() {
        for (body, want) in [
            (
                &b"{\"a\": 1}\n[1, 2]\n"[..],
                "line 2: expected a JSON object",
            ),
            (b"{\"a\": 1}\n{\"a\": \n", "line 2: not JSON"),
            (
                b"{\"a\": {\"b\": 1}}\n",
                "line 1, key \"a\": an object is not a cell",
            ),
            (b"\n\n", "no lines"),
        ] {
            let e = to_csv(body).expect_err("refused");
            assert!(e.message.contains(want), "{}", e.message);
        }
    }
}
