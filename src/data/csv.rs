//! CSV uploads: a header row, then one record per row; one column is the target, the others
//! numeric features. Rows are numbered by the file line they start on (header = line 1).

use std::collections::HashMap;

use ndarray::Array2;

use super::{BadNumber, DataError, Dataset, Limits, finite_f32, name_list, quoted};
use crate::nn::{ClassLabel, Targets};

/// Reads a CSV file with a header row. `target` names the target column (default: the last
/// column); every other column must hold finite numbers. A target column of finite numbers
/// becomes `Targets::Values` (n×1), anything else `Targets::Labels` of trimmed `Text` labels
/// (a column mixing numbers and words is all text: `"1"` and `"one"` are both labels).
///
/// Accepts `\n` and `\r\n`, quoted fields, whitespace around values and a UTF-8 BOM; blank
/// lines are skipped.
pub fn from_csv(bytes: &[u8], target: Option<&str>, limits: &Limits) -> Result<Dataset, DataError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        // Ragged rows are checked below, to say which row and how many fields.
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);

    let mut lines = Lines {
        bytes,
        pos: 0,
        line: 1,
    };
    let header = reader.byte_headers().map_err(|e| unreadable(&e))?.clone();
    let header_line = header.position().map_or(1, |p| lines.at(p.byte()));
    let names = column_names(&header, header_line, limits)?;
    let columns = names.len();
    let target_index = match target {
        None => columns - 1,
        Some(t) => names.iter().position(|n| n == t.trim()).ok_or_else(|| {
            DataError::new(format!(
                "there is no column named {}; the columns are {}",
                quoted(t),
                name_list(names.iter().map(String::as_str))
            ))
            .column(t)
        })?,
    };
    if columns < 2 {
        return Err(DataError::new(format!(
            "row {header_line}: the only column, {}, is the target; at least one feature column is required",
            quoted(&names[target_index])
        ))
        .row(header_line)
        .column(&names[target_index]));
    }

    let features = columns - 1;
    let mut x: Vec<f32> = Vec::new();
    let mut target_cells: Vec<String> = Vec::new();
    let mut target_lines: Vec<usize> = Vec::new();
    let mut record = csv::ByteRecord::new();
    while reader
        .read_byte_record(&mut record)
        .map_err(|e| unreadable(&e))?
    {
        let line = record.position().map_or(0, |p| lines.at(p.byte()));
        let rows = target_lines.len() + 1;
        if rows > limits.max_rows {
            return Err(DataError::new(format!(
                "row {line}: the file has more than {} data rows, the limit",
                limits.max_rows
            ))
            .row(line)
            .too_large());
        }
        if rows.saturating_mul(columns) > limits.max_cells {
            return Err(DataError::new(format!(
                "row {line}: the file has more than {} cells (rows × columns), the limit",
                limits.max_cells
            ))
            .row(line)
            .too_large());
        }
        if record.len() != columns {
            return Err(ragged(line, columns, record.len(), &names));
        }
        for (j, cell) in record.iter().enumerate() {
            let name = &names[j];
            let at = |what: String| {
                DataError::new(format!("row {line}, column {}: {what}", quoted(name)))
                    .row(line)
                    .column(name)
            };
            let cell = std::str::from_utf8(cell)
                .map_err(|_| at("the cell is not valid UTF-8 text".into()))?
                .trim();
            if j == target_index {
                if cell.is_empty() {
                    return Err(at("the cell is empty; every row needs a target".into()));
                }
                target_cells.push(cell.to_owned());
                continue;
            }
            if cell.is_empty() {
                return Err(at("the cell is empty; every feature needs a number".into()));
            }
            let v: f64 = cell
                .parse()
                .map_err(|_| at(format!("{} is not a number", quoted(cell))))?;
            x.push(finite_f32(v).map_err(|bad| at(bad.describe(&quoted(cell))))?);
        }
        target_lines.push(line);
    }

    let rows = target_lines.len();
    if rows == 0 {
        return Err(DataError::new(
            "the file has a header row but no data rows; at least one row is required",
        ));
    }
    let x = Array2::from_shape_vec((rows, features), x)
        .map_err(|e| DataError::new(format!("internal: feature matrix shape: {e}")))?;
    let target_name = &names[target_index];
    let targets = read_targets(target_cells, &target_lines, target_name)?;
    let feature_names = names
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != target_index)
        .map(|(_, n)| n.clone())
        .collect();
    Ok(Dataset {
        feature_names,
        target_names: vec![target_name.clone()],
        x,
        targets,
    })
}

/// File line numbers (1-based) for the byte offsets where records start, read in order.
/// The csv crate's own `Position::line` lags by one after a `\r\n` terminator (the `\n` is
/// consumed as the next record begins), so lines are counted here: `\n`, `\r\n` and a lone
/// `\r` each end a line.
struct Lines<'a> {
    bytes: &'a [u8],
    /// Offset up to which line ends have been counted.
    pos: usize,
    line: usize,
}

impl Lines<'_> {
    fn at(&mut self, offset: u64) -> usize {
        let len = self.bytes.len();
        let mut start = usize::try_from(offset).unwrap_or(len).min(len);
        // A record's offset can point at the line end before it, or at skipped blank lines.
        while start < len && matches!(self.bytes[start], b'\r' | b'\n') {
            start += 1;
        }
        if start > self.pos {
            let span = &self.bytes[self.pos..start];
            self.line += span
                .iter()
                .enumerate()
                .filter(|&(i, &b)| b == b'\n' || (b == b'\r' && span.get(i + 1) != Some(&b'\n')))
                .count();
            self.pos = start;
        }
        self.line
    }
}

/// The header's column names: valid UTF-8, non-empty, unique, within the column limit.
fn column_names(
    header: &csv::ByteRecord,
    line: usize,
    limits: &Limits,
) -> Result<Vec<String>, DataError> {
    if header.is_empty() {
        return Err(DataError::new(
            "the file is empty; expected a header row naming the columns, then data rows",
        ));
    }
    if header.len() > limits.max_columns {
        return Err(DataError::new(format!(
            "row {line}: the file has {} columns, more than the limit of {}",
            header.len(),
            limits.max_columns
        ))
        .row(line)
        .too_large());
    }
    let mut names = Vec::with_capacity(header.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (j, raw) in header.iter().enumerate() {
        let name = std::str::from_utf8(raw)
            .map_err(|_| {
                DataError::new(format!(
                    "row {line}: the name of column {} is not valid UTF-8 text",
                    j + 1
                ))
                .row(line)
            })?
            .trim()
            .to_owned();
        if name.is_empty() {
            return Err(DataError::new(format!(
                "row {line}: column {} has no name; every column needs a header",
                j + 1
            ))
            .row(line));
        }
        if let Some(first) = seen.insert(name.clone(), j) {
            return Err(DataError::new(format!(
                "row {line}: column name {} appears twice (columns {} and {}); names must be unique",
                quoted(&name),
                first + 1,
                j + 1
            ))
            .row(line)
            .column(&name));
        }
        names.push(name);
    }
    Ok(names)
}

fn ragged(line: usize, expected: usize, found: usize, names: &[String]) -> DataError {
    let base = format!("row {line}: expected {expected} fields (one per column), found {found}");
    if found < expected {
        // Name the first column the row does not reach.
        let missing = &names[found];
        DataError::new(format!(
            "{base}; the row ends before column {}",
            quoted(missing)
        ))
        .row(line)
        .column(missing)
    } else {
        DataError::new(base).row(line)
    }
}

fn unreadable(e: &csv::Error) -> DataError {
    let line = e.position().and_then(|p| usize::try_from(p.line()).ok());
    let mut err = DataError::new(match line {
        Some(l) => format!("row {l}: the file cannot be read as CSV: {e}"),
        None => format!("the file cannot be read as CSV: {e}"),
    });
    err.row = line;
    err
}

/// Numbers when every cell is one (then each must be finite), otherwise text labels.
fn read_targets(cells: Vec<String>, lines: &[usize], name: &str) -> Result<Targets, DataError> {
    let numbers: Option<Vec<f64>> = cells.iter().map(|c| c.parse().ok()).collect();
    match numbers {
        Some(numbers) => {
            let mut y = Vec::with_capacity(numbers.len());
            for ((v, cell), &line) in numbers.into_iter().zip(&cells).zip(lines) {
                let t = finite_f32(v).map_err(|bad: BadNumber| {
                    DataError::new(format!(
                        "row {line}, column {}: {}",
                        quoted(name),
                        bad.describe(&quoted(cell))
                    ))
                    .row(line)
                    .column(name)
                })?;
                y.push(t);
            }
            let n = y.len();
            Array2::from_shape_vec((n, 1), y)
                .map(Targets::Values)
                .map_err(|e| DataError::new(format!("internal: target shape: {e}")))
        }
        None => Ok(Targets::Labels(
            cells.into_iter().map(ClassLabel::Text).collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn read(s: &str) -> Result<Dataset, DataError> {
        from_csv(s.as_bytes(), None, &Limits::default())
    }

    fn read_err(s: &str) -> DataError {
        match read(s) {
            Ok(d) => panic!("expected an error, read {d:?}"),
            Err(e) => e,
        }
    }

    fn text(s: &str) -> ClassLabel {
        ClassLabel::Text(s.to_owned())
    }

    /// (message, row, column, too_large), with `pointer` checked to be absent for CSV.
    fn parts(e: DataError) -> (String, Option<usize>, Option<String>, bool) {
        assert_eq!(e.pointer, None);
        (e.message, e.row, e.column, e.too_large)
    }

    #[test]
    fn iris_training_split() {
        let bytes = include_bytes!("../../tests/data/iris.train.csv");
        let d = from_csv(bytes, None, &Limits::default()).expect("iris reads");
        assert_eq!((d.rows(), d.inputs(), d.outputs()), (120, 4, 1));
        assert_eq!(
            d.feature_names,
            ["sepal_length", "sepal_width", "petal_length", "petal_width"]
        );
        assert_eq!(d.target_names, ["target"]);
        assert_eq!(
            d.classes(),
            Some(vec![text("setosa"), text("versicolor"), text("virginica")])
        );
        // first data line: 4.8,3.0,1.4,0.3,setosa
        assert_eq!(d.x.row(0).to_vec(), vec![4.8, 3.0, 1.4, 0.3]);
        let Targets::Labels(labels) = &d.targets else {
            panic!("iris species are labels")
        };
        assert_eq!(labels[0], text("setosa"));
        for class in ["setosa", "versicolor", "virginica"] {
            assert_eq!(labels.iter().filter(|l| **l == text(class)).count(), 40);
        }
    }

    #[test]
    fn numeric_target_is_values() {
        let d = read("a,b,y\n1,2,0.5\n3,4,-1\n").expect("reads");
        assert_eq!(d.x, array![[1.0, 2.0], [3.0, 4.0]]);
        assert_eq!(d.targets, Targets::Values(array![[0.5], [-1.0]]));
        assert_eq!(d.feature_names, ["a", "b"]);
        assert_eq!(d.target_names, ["y"]);
        assert_eq!(d.classes(), None);
    }

    #[test]
    fn whole_number_target_stays_values_with_integer_classes() {
        let d = read("a,y\n1,0\n2,1\n3,1\n").expect("reads");
        assert_eq!(d.targets, Targets::Values(array![[0.0], [1.0], [1.0]]));
        assert_eq!(
            d.classes(),
            Some(vec![ClassLabel::Integer(0), ClassLabel::Integer(1)])
        );
    }

    #[test]
    fn text_target_is_trimmed_labels() {
        let d = read("a,y\n1, cat \n2,\"dog\"\n3,cat\n").expect("reads");
        assert_eq!(
            d.targets,
            Targets::Labels(vec![text("cat"), text("dog"), text("cat")])
        );
        assert_eq!(d.classes(), Some(vec![text("cat"), text("dog")]));
    }

    #[test]
    fn mixed_target_is_all_text() {
        let d = read("a,y\n1,1\n2,one\n").expect("reads");
        assert_eq!(d.targets, Targets::Labels(vec![text("1"), text("one")]));
    }

    #[test]
    fn named_target_column_anywhere() {
        let d = from_csv(b"y,a,b\nx,1,2\nz,3,4\n", Some("y"), &Limits::default()).expect("reads");
        assert_eq!(d.feature_names, ["a", "b"]);
        assert_eq!(d.target_names, ["y"]);
        assert_eq!(d.x, array![[1.0, 2.0], [3.0, 4.0]]);
        assert_eq!(d.targets, Targets::Labels(vec![text("x"), text("z")]));
        let d = from_csv(b"a,y,b\n1,5,2\n", Some("y"), &Limits::default()).expect("reads");
        assert_eq!(d.feature_names, ["a", "b"]);
        assert_eq!(d.x, array![[1.0, 2.0]]);
        assert_eq!(d.targets, Targets::Values(array![[5.0]]));
    }

    #[test]
    fn unknown_target_lists_the_columns() {
        let e = from_csv(b"a,b,c\n1,2,3\n", Some("label"), &Limits::default()).expect_err("fails");
        assert_eq!(
            parts(e),
            (
                "there is no column named \"label\"; the columns are \"a\", \"b\", \"c\"".into(),
                None,
                Some("label".into()),
                false
            )
        );
    }

    #[test]
    fn crlf_bom_quotes_and_whitespace() {
        let d = read("\u{feff}\"a\", b ,y\r\n\" 1.5 \",  -2e1 ,\"x, y\"\r\n+3,.5,z\r\n")
            .expect("reads");
        assert_eq!(d.feature_names, ["a", "b"]);
        assert_eq!(d.x, array![[1.5, -20.0], [3.0, 0.5]]);
        assert_eq!(d.targets, Targets::Labels(vec![text("x, y"), text("z")]));
    }

    #[test]
    fn no_trailing_newline_and_blank_lines() {
        let d = read("a,y\n\n1,2\n\n3,4").expect("reads");
        assert_eq!(d.x, array![[1.0], [3.0]]);
        assert_eq!(d.targets, Targets::Values(array![[2.0], [4.0]]));
    }

    #[test]
    fn empty_file() {
        for empty in ["", "\u{feff}", "\n", "\r\n\r\n"] {
            assert_eq!(
                parts(read_err(empty)),
                (
                    "the file is empty; expected a header row naming the columns, then data rows"
                        .into(),
                    None,
                    None,
                    false
                ),
                "{empty:?}"
            );
        }
    }

    #[test]
    fn header_only() {
        let e = read_err("a,b,y\n");
        assert_eq!(
            parts(e),
            (
                "the file has a header row but no data rows; at least one row is required".into(),
                None,
                None,
                false
            )
        );
    }

    #[test]
    fn ragged_rows_say_expected_and_found() {
        let e = read_err("a,b,y\n1,2,3\n4,5\n");
        assert_eq!(
            parts(e),
            (
                "row 3: expected 3 fields (one per column), found 2; the row ends before column \"y\""
                    .into(),
                Some(3),
                Some("y".into()),
                false
            )
        );
        let e = read_err("a,b,y\r\n1,2,3,4\r\n");
        assert_eq!(
            parts(e),
            (
                "row 2: expected 3 fields (one per column), found 4".into(),
                Some(2),
                None,
                false
            )
        );
    }

    #[test]
    fn non_numeric_feature() {
        let e = read_err("a,b,y\n1,2,3\n4,x,6\n");
        assert_eq!(
            parts(e),
            (
                "row 3, column \"b\": \"x\" is not a number".into(),
                Some(3),
                Some("b".into()),
                false
            )
        );
    }

    #[test]
    fn non_finite_feature() {
        for (cell, shown) in [
            ("NaN", "\"NaN\""),
            ("inf", "\"inf\""),
            (" -inf ", "\"-inf\""),
        ] {
            let e = read_err(&format!("a,b,y\n1,{cell},3\n"));
            assert_eq!(
                parts(e),
                (
                    format!("row 2, column \"b\": {shown} must be a finite number"),
                    Some(2),
                    Some("b".into()),
                    false
                )
            );
        }
    }

    #[test]
    fn feature_too_large_for_f32() {
        let e = read_err("a,y\n1e39,1\n");
        assert_eq!(e.row, Some(2));
        assert_eq!(e.column.as_deref(), Some("a"));
        assert_eq!(
            e.message,
            "row 2, column \"a\": \"1e39\" is too large for a 32-bit float (the largest magnitude is about 3.4e38)"
        );
    }

    #[test]
    fn non_finite_numeric_target() {
        let e = read_err("a,y\n1,2\n3,4\n5,NaN\n");
        assert_eq!(
            parts(e),
            (
                "row 4, column \"y\": \"NaN\" must be a finite number".into(),
                Some(4),
                Some("y".into()),
                false
            )
        );
        let e = read_err("a,y\n1,-inf\n");
        assert_eq!((e.row, e.column.as_deref()), (Some(2), Some("y")));
    }

    #[test]
    fn empty_cells() {
        let e = read_err("a,b,y\n1,,3\n");
        assert_eq!(
            parts(e),
            (
                "row 2, column \"b\": the cell is empty; every feature needs a number".into(),
                Some(2),
                Some("b".into()),
                false
            )
        );
        let e = read_err("a,b,y\n1,2,cat\n1,2,  \n");
        assert_eq!(
            parts(e),
            (
                "row 3, column \"y\": the cell is empty; every row needs a target".into(),
                Some(3),
                Some("y".into()),
                false
            )
        );
    }

    #[test]
    fn rows_are_file_lines_even_with_quoted_newlines() {
        let e = read_err("a,y\n1,\"two\nlines\"\nx,3\n");
        assert_eq!((e.row, e.column.as_deref()), (Some(4), Some("a")));
    }

    #[test]
    fn rows_are_file_lines_with_crlf_blank_lines_and_lone_cr() {
        for (file, line) in [
            ("a,y\r\n1,2\r\n3,4\r\nx,5\r\n", 4),
            ("a,y\n\n1,2\n\r\n\nx,5\n", 6),
            ("a,y\r1,2\rx,5\r", 3),
            ("\n\na,y\nx,5\n", 4),
        ] {
            let e = read_err(file);
            assert_eq!(
                (e.row, e.column.as_deref()),
                (Some(line), Some("a")),
                "{file:?}"
            );
            assert!(
                e.message.starts_with(&format!("row {line}, ")),
                "{}",
                e.message
            );
        }
        let e = read_err("\r\n\r\na,a\r\n1,2\r\n");
        assert_eq!(e.row, Some(3));
    }

    #[test]
    fn duplicate_column_names() {
        let e = read_err("a,b, a ,y\n1,2,3,4\n");
        assert_eq!(
            parts(e),
            (
                "row 1: column name \"a\" appears twice (columns 1 and 3); names must be unique"
                    .into(),
                Some(1),
                Some("a".into()),
                false
            )
        );
    }

    #[test]
    fn unnamed_column() {
        let e = read_err("a,,y\n1,2,3\n");
        assert_eq!(
            parts(e),
            (
                "row 1: column 2 has no name; every column needs a header".into(),
                Some(1),
                None,
                false
            )
        );
    }

    #[test]
    fn a_feature_column_is_required() {
        let e = read_err("y\n1\n2\n");
        assert_eq!(
            parts(e),
            (
                "row 1: the only column, \"y\", is the target; at least one feature column is required"
                    .into(),
                Some(1),
                Some("y".into()),
                false
            )
        );
    }

    #[test]
    fn row_limit() {
        let limits = Limits {
            max_rows: 2,
            ..Limits::default()
        };
        assert!(from_csv(b"a,y\n1,2\n3,4\n", None, &limits).is_ok());
        let e = from_csv(b"a,y\n1,2\n3,4\n5,6\n", None, &limits).expect_err("fails");
        assert_eq!(
            parts(e),
            (
                "row 4: the file has more than 2 data rows, the limit".into(),
                Some(4),
                None,
                true
            )
        );
    }

    #[test]
    fn column_limit() {
        let limits = Limits {
            max_columns: 2,
            ..Limits::default()
        };
        assert!(from_csv(b"a,y\n1,2\n", None, &limits).is_ok());
        let e = from_csv(b"a,b,y\n1,2,3\n", None, &limits).expect_err("fails");
        assert_eq!(
            parts(e),
            (
                "row 1: the file has 3 columns, more than the limit of 2".into(),
                Some(1),
                None,
                true
            )
        );
    }

    #[test]
    fn cell_limit() {
        let limits = Limits {
            max_cells: 5,
            ..Limits::default()
        };
        // 2 rows × 2 columns = 4 cells fit, the third row makes 6
        assert!(from_csv(b"a,y\n1,2\n3,4\n", None, &limits).is_ok());
        let e = from_csv(b"a,y\n1,2\n3,4\n5,6\n", None, &limits).expect_err("fails");
        assert_eq!(
            parts(e),
            (
                "row 4: the file has more than 5 cells (rows × columns), the limit".into(),
                Some(4),
                None,
                true
            )
        );
    }

    #[test]
    fn invalid_utf8() {
        let e = from_csv(b"a,y\n1,\xff\xfe\n", None, &Limits::default()).expect_err("fails");
        assert_eq!(
            parts(e),
            (
                "row 2, column \"y\": the cell is not valid UTF-8 text".into(),
                Some(2),
                Some("y".into()),
                false
            )
        );
        let e = from_csv(b"a,\xc3(\n1,2\n", None, &Limits::default()).expect_err("fails");
        assert_eq!(
            (e.message.as_str(), e.row),
            (
                "row 1: the name of column 2 is not valid UTF-8 text",
                Some(1)
            )
        );
    }

    #[test]
    fn long_cells_are_cut_in_messages() {
        let cell = "x".repeat(10_000);
        let e = read_err(&format!("a,y\n{cell},1\n"));
        assert_eq!(
            e.message,
            format!(
                "row 2, column \"a\": \"{}\"… is not a number",
                "x".repeat(40)
            )
        );
    }

    #[test]
    fn garbage_never_panics() {
        // A fixed pseudo-random byte soup (xorshift), plus hand-picked nasties.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut soup = Vec::with_capacity(4096);
        for _ in 0..4096 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            soup.push((state >> 24) as u8);
        }
        let inputs: Vec<&[u8]> = vec![
            &soup,
            b"\xff\xfe\x00\x00",
            b"\"",
            b"\"a\nb",
            b",,,\n,,,\n",
            b"\x00,\x00\n\x00,\x00",
            b"a\n",
            b"only_one_column\n1\n2\n",
            b"\xef\xbb\xbf\xef\xbb\xbfa,y\n1,2\n",
        ];
        for input in inputs {
            for target in [None, Some("y"), Some("")] {
                let _ = from_csv(input, target, &Limits::default());
            }
        }
        // and every prefix of a valid file
        let valid = b"a,b,y\r\n1,\"2\",cat\r\n3,4,dog\r\n";
        for cut in 0..valid.len() {
            let _ = from_csv(&valid[..cut], None, &Limits::default());
        }
    }
}
