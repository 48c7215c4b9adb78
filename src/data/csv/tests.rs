use super::*;
use crate::nn::portable::tabular::ColumnType;
use ndarray::array;
use std::collections::BTreeMap;

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
    let bytes = include_bytes!("../../../tests/data/iris.train.csv");
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
            "there is no column named \"label\"; the columns are \"a\", \"b\", \"c\" (read with \
             delimiter \",\")"
                .into(),
            None,
            Some("label".into()),
            false
        )
    );
}

#[test]
fn crlf_bom_quotes_and_whitespace() {
    let d =
        read("\u{feff}\"a\", b ,y\r\n\" 1.5 \",  -2e1 ,\"x, y\"\r\n+3,.5,z\r\n").expect("reads");
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
fn a_word_in_a_number_column_makes_it_text_as_written() {
    // The numbers before the first word keep their spelling ("2.50", not 2.5).
    let d = read("a,b,y\n1,2.50,3\n4,x,6\n").expect("reads");
    assert_eq!(d.columns[1].vocab, ["2.50", "x"]);
    assert_eq!(d.x.column(1).to_vec(), vec![0.0, 1.0]);
}

#[test]
fn non_finite_feature() {
    // (NaN is a missing cell by default; see empty_cells)
    for (cell, shown) in [("inf", "\"inf\""), (" -inf ", "\"-inf\"")] {
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
    // NaN is a missing target: the row is left out and counted
    let d = read("a,y\n1,2\n3,4\n5,NaN\n").expect("reads");
    assert_eq!((d.rows(), d.dropped_rows), (2, 1));
    let e = read_err("a,y\n1,-inf\n");
    assert_eq!((e.row, e.column.as_deref()), (Some(2), Some("y")));
}

#[test]
fn empty_cells() {
    // an empty cell is missing; a column of nothing else is ignored, and says so
    let d = read("a,b,y\n1,,3\n").expect("reads");
    assert_eq!(d.columns[1].schema.kind, ColumnType::Ignore);
    assert_eq!(d.columns[1].schema.reason, "ignored: every cell is empty");
    let d = read("a,b,y\n1,,3\n2,5,4\n").expect("reads");
    assert!(d.x[[0, 1]].is_nan());
    // a row with an empty target is left out and counted
    let d = read("a,b,y\n1,2,cat\n1,2,  \n").expect("reads");
    assert_eq!((d.rows(), d.dropped_rows), (1, 1));
    let e = read_err("a,y\n1,\n2,NA\n");
    assert!(e.message.contains("every row's target"), "{}", e.message);
}

#[test]
fn rows_are_file_lines_even_with_quoted_newlines() {
    let e = read_err("a,y\n1,\"two\nlines\"\ninf,3\n");
    assert_eq!((e.row, e.column.as_deref()), (Some(4), Some("a")));
}

#[test]
fn rows_are_file_lines_with_crlf_blank_lines_and_lone_cr() {
    for (file, line) in [
        ("a,y\r\n1,2\r\n3,4\r\ninf,5\r\n", 4),
        ("a,y\n\n1,2\n\r\n\ninf,5\n", 6),
        ("a,y\r1,2\rinf,5\r", 3),
        ("\n\na,y\ninf,5\n", 4),
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
            "row 1: column name \"a\" appears twice (columns 1 and 3); names must be unique".into(),
            Some(1),
            Some("a".into()),
            false
        )
    );
}

#[test]
fn a_quote_left_open_is_an_error_at_its_line_streamed_or_whole() {
    let mut file = String::from("x,label\n");
    for i in 0..1000 {
        if i == 2 {
            file.push_str("2,\"dog\n");
        } else {
            file.push_str(&format!("{i},{}\n", ["cat", "dog"][i % 2]));
        }
    }
    let limits = Limits::DEFAULT;
    let opts = ReadOptions::default();
    let whole = from_csv_with(file.as_bytes(), Some("label"), &limits, &opts).unwrap_err();
    assert!(
        whole.message.contains("line 4: a quoted field opens here"),
        "{}",
        whole.message
    );
    let mut stream = CsvStream::new(Some("label"), limits, opts.clone());
    for piece in file.as_bytes().chunks(7) {
        stream.push(piece).unwrap();
    }
    assert_eq!(stream.finish().unwrap_err().message, whole.message);
    // Closed quotes, escaped quotes and quotes inside unquoted fields are fine.
    let ok = "x,label\n1,\"a \"\"b\"\"\"\n2,\"two\nlines\"\n3,5'6\"\n";
    from_csv_with(ok.as_bytes(), Some("label"), &limits, &opts).unwrap();
}

#[test]
fn streamed_files_read_as_whole_ones() {
    let mut big = String::from("\u{feff}id,v,c,y\r\n");
    for i in 0..400_000 {
        big.push_str(&format!(
            "{},{}.5,{},{}\r\n",
            i % 13,
            i % 101,
            ["a", "b"][i % 2],
            i % 3
        ));
    }
    let lf = big.replace("\r\n", "\n");
    let files: Vec<String> = vec![
        big.clone(),
        format!("{big}1,inf,a,1\r\n"),
        // Pieces of whole lines parsed where they lie, then a quote late in the file, or
        // a row of the wrong width.
        lf.clone(),
        format!("{lf}1,\"2\",a,1\n3,4,b,0\n"),
        format!("{lf}1,2\n"),
        // The first piece's header read where it lies: quoted, or followed by quotes.
        format!("\"i\"\"d\",v,c,y\n{}", &lf[lf.find('\n').unwrap() + 1..]),
        format!(
            "id,v,c,y\n1,\"2\",a,1\n{}",
            &lf[lf.find('\n').unwrap() + 1..]
        ),
        // A quote left open after such pieces: the error names its line.
        format!("{lf}1,2,a,1\n1,\"2,a,1\n"),
        format!("{big}1,2,a,1\r\n1,\"2,a,1\r\n"),
        "a,\"q\nr\",y\n1,2,3\n".into(),
        "\n\na,y\nx,5\n".into(),
        String::new(),
        "a,y".into(),
        "a,y\n1,2".into(),
        // a header wider than the first buffers, and than the column limit
        format!(
            "{}\n1\n",
            (0..20_000)
                .map(|j| format!("c{j}"))
                .collect::<Vec<_>>()
                .join(",")
        ),
    ];
    for file in files {
        let whole = read(&file);
        // 0: pieces of whole lines, as an upload hands them over: the first cut at the
        // last line end in a quarter of PIECE, the others at the first after PIECE.
        for piece in [0usize, 1, 7, 4096, 1 << 20] {
            if (1..4096).contains(&piece) && file.len() > 100_000 {
                continue;
            }
            let parts: Vec<&[u8]> = if piece == 0 {
                let (mut parts, mut rest) = (vec![], file.as_bytes());
                while !rest.is_empty() {
                    let quarter = &rest[..rest.len().min(PIECE / 4)];
                    let end = match quarter.iter().rposition(|&b| b == b'\n') {
                        Some(i) if parts.is_empty() && quarter.len() < rest.len() => i + 1,
                        _ => rest
                            .iter()
                            .skip(PIECE.min(rest.len() - 1))
                            .position(|&b| b == b'\n')
                            .map_or(rest.len(), |i| PIECE.min(rest.len() - 1) + i + 1),
                    };
                    let (a, b) = rest.split_at(end);
                    parts.push(a);
                    rest = b;
                }
                parts
            } else {
                file.as_bytes().chunks(piece).collect()
            };
            let mut s = CsvStream::new(None, Limits::default(), ReadOptions::default());
            let mut result = Ok(());
            for part in parts {
                result = result.and_then(|_| s.push(part));
            }
            let streamed = result.and_then(|_| s.finish());
            match (&whole, &streamed) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a.columns, b.columns);
                    assert_eq!(a.targets, b.targets);
                    assert!(
                        a.x.iter()
                            .zip(b.x.iter())
                            .all(|(p, q)| p.to_bits() == q.to_bits())
                    );
                }
                (Err(a), Err(b)) => assert_eq!(a, b, "{:?}", &file[..file.len().min(40)]),
                _ => panic!(
                    "{whole:?} vs {streamed:?} for {:?}",
                    &file[..file.len().min(40)]
                ),
            }
        }
    }
}

#[test]
fn unnamed_column() {
    let d = read("a,,y\n1,2,3\n").expect("reads");
    assert_eq!(d.feature_names, ["a", "column_2"]);
    let e = read_err("a,,column_2,y\n1,2,3,4\n");
    assert!(e.message.contains("appears twice"), "{}", e.message);
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
    // In the head: the file is read as Windows-1252.
    let d = from_csv(b"a,y\n1,\xff\xfe\n", None, &Limits::default()).expect("reads");
    assert_eq!(
        d.targets,
        Targets::Labels(vec![ClassLabel::Text("ÿþ".into())])
    );
    // Said to be UTF-8 (or past the head the sniffer reads), it is an error that says what
    // to say instead.
    let mut s = CsvStream::new(None, Limits::default(), ReadOptions::default()).with_dialect(
        DialectOptions {
            encoding: Some(Encoding::Utf8),
            ..DialectOptions::default()
        },
    );
    let e = s
        .push(b"a,y\n1,\xff\xfe\n")
        .and_then(|()| s.finish().map(|_| ()))
        .expect_err("fails");
    assert_eq!(
        parts(e),
        (
            "row 2, column \"y\": the cell is not valid UTF-8 text; if the file is in Latin-1 or \
             Windows-1252, say ?encoding=windows-1252"
                .into(),
            Some(2),
            Some("y".into()),
            false
        )
    );
}

#[test]
fn long_cells_are_cut_in_messages() {
    let cell = "x".repeat(10_000);
    let e = from_csv_with(
        format!("a,y\n{cell},1\n").as_bytes(),
        None,
        &Limits::default(),
        &numeric("a"),
    )
    .expect_err("text in a numeric column");
    assert_eq!(
        e.message,
        format!(
            "row 2, column \"a\": \"{}\"… is not a number, and the column is typed \"numeric\"; type it \"categorical\" or fix the cell",
            "x".repeat(40)
        )
    );
    assert_eq!(e.pointer.as_deref(), Some("/columns/a"));
}

fn numeric(column: &str) -> ReadOptions {
    let mut types = std::collections::BTreeMap::new();
    types.insert(column.to_string(), ColumnType::Numeric);
    ReadOptions::new(None, types)
}

#[test]
fn text_categories_missing_cells_and_a_text_target() {
    let d = read("island,mass,sex,churn\nBiscoe,3000,male,yes\nDream,NA,,no\n,4000,female,\nDream,?,male,no\n")
        .expect("reads");
    assert_eq!((d.rows(), d.dropped_rows), (3, 1));
    assert_eq!(d.feature_names, ["island", "mass", "sex"]);
    let kinds: Vec<ColumnType> = d.columns.iter().map(|c| c.schema.kind).collect();
    assert_eq!(
        kinds,
        [
            ColumnType::Categorical,
            ColumnType::Numeric,
            ColumnType::Categorical
        ]
    );
    assert_eq!(d.columns[0].vocab, ["Biscoe", "Dream"]);
    assert_eq!(d.columns[1].schema.missing, 2);
    assert_eq!(d.x[[0, 1]], 3000.0);
    assert!(d.x[[1, 1]].is_nan() && d.x[[1, 2]].is_nan());
    assert_eq!(
        d.targets,
        Targets::Labels(vec![text("yes"), text("no"), text("no")])
    );
    let back = Dataset::from_bytes(&d.to_bytes()).expect("stored form reads back");
    assert_eq!(back.columns, d.columns);
    assert_eq!(back.dropped_rows, 1);
    assert!(
        back.x
            .iter()
            .zip(d.x.iter())
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
}

#[test]
fn text_in_a_column_forced_numeric_names_row_and_column() {
    let e = from_csv_with(
        b"a,b,y\n1,2,3\n4,x,6\n",
        None,
        &Limits::default(),
        &numeric("b"),
    )
    .expect_err("refused");
    assert_eq!((e.row, e.column.as_deref()), (Some(3), Some("b")));
    assert!(
        e.message
            .starts_with("row 3, column \"b\": \"x\" is not a number"),
        "{}",
        e.message
    );
    // a column type for a column the file does not have, or for the target
    let e = from_csv_with(b"a,y\n1,2\n", None, &Limits::default(), &numeric("zz"))
        .expect_err("refused");
    assert_eq!(e.pointer.as_deref(), Some("/columns/zz"));
    let e =
        from_csv_with(b"a,y\n1,2\n", None, &Limits::default(), &numeric("y")).expect_err("refused");
    assert!(e.message.contains("the target"), "{}", e.message);
}

#[test]
fn big_files_read_in_parallel_chunks_agree_with_one_piece() {
    // Over 2 MiB so the reader cuts it into chunks; one text column turns text late.
    let mut csv = String::from("id_code,v,cat,y\n");
    let rows = 300_000;
    for i in 0..rows {
        let cat = if i == rows - 5 {
            "late".to_string()
        } else {
            format!("{}", i % 7)
        };
        csv.push_str(&format!("{},{}.25,{cat},{}\n", i % 13, i % 101, i % 2));
    }
    assert!(csv.len() > 2 * MIN_CHUNK);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let parallel = pool.install(|| read(&csv)).expect("reads");
    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| read(&csv))
        .expect("reads");
    assert_eq!(parallel.columns, single.columns);
    assert!(
        parallel
            .x
            .iter()
            .zip(single.x.iter())
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
    assert_eq!(parallel.targets, single.targets);
    assert_eq!(parallel.rows(), rows);
    assert_eq!(parallel.columns[2].schema.kind, ColumnType::Categorical);
    // an error in a late chunk is at its file line
    let bad = format!("{csv}1,inf,2,1\n");
    let e = pool.install(|| read_err(&bad));
    assert_eq!(e.row, Some(rows + 2));
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

/// What a reader made of a chunk, comparable: the records' lines, the error (line, kind),
/// and each column's cells (numbers by their bits, text by code and vocabulary).
type Reader = fn(&[u8], &ChunkContext, &mut [Part]) -> (Vec<usize>, Option<ChunkError>);

fn outcome(read: Reader, chunk: &[u8], ctx: &ChunkContext) -> String {
    let mut parts: Vec<Part> = ctx.forced.iter().map(|f| Part::new(*f)).collect();
    let (lines, error) = read(chunk, ctx, &mut parts);
    let error = error.map(|e| {
        let kind = match e.kind {
            ChunkErrorKind::Ragged(found) => format!("ragged {found}"),
            ChunkErrorKind::NotUtf8(j) => format!("utf8 {j}"),
            ChunkErrorKind::Cell(j, c) => format!("cell {j} {}", c.describe()),
        };
        (e.line, kind)
    });
    if error.is_some() {
        // After an error the parts are not used.
        return format!("{lines:?} {error:?}");
    }
    let cells: Vec<String> = parts
        .iter()
        .map(|p| match p {
            Part::Numbers(v) => {
                format!("{:?}", v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
            }
            Part::Text {
                pending,
                codes,
                vocab,
                ..
            } => format!("{pending} {codes:?} {vocab:?}"),
        })
        .collect();
    format!("{lines:?} {cells:?}")
}

#[test]
fn the_one_pass_reader_reads_as_the_csv_crate_does() {
    // Random chunks without quotes or carriage returns, of cells drawn from numbers (plain,
    // signed, long, exponents), text, markers of missing cells, spaces, blank lines and
    // rows of the wrong width: the one-pass reader and the csv crate's agree on every one.
    let mut s: u64 = 11;
    let mut next = |n: u64| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) % n
    };
    let cells = [
        "0.1234",
        "-7",
        "+3.5",
        "12345678901234567890",
        "1e3",
        ".5",
        "5.",
        ".",
        "-",
        "",
        "NA",
        "?",
        " 2.5",
        "3 ",
        "abc",
        "x y",
        "\u{e9}t\u{e9}",
        "9007199254740993",
        "0",
        "-0",
        "00012",
    ];
    for (forced, markers) in [
        (vec![None, None, None], None),
        (
            vec![
                Some(ColumnType::Numeric),
                None,
                Some(ColumnType::Categorical),
            ],
            None,
        ),
        (vec![None, None, None], Some(vec!["-1".to_string()])),
    ] {
        let opts = ReadOptions::new(markers.as_deref(), BTreeMap::new());
        let ctx = ChunkContext {
            known: Known::default(),
            columns: forced.len(),
            forced: &forced,
            opts: &opts,
        };
        for _ in 0..3000 {
            let mut chunk = String::new();
            for _ in 0..1 + next(6) {
                let width = match next(10) {
                    0 => 2,
                    1 => 4,
                    2 => 0,
                    _ => 3,
                };
                let row: Vec<&str> = (0..width)
                    .map(|_| cells[next(cells.len() as u64) as usize])
                    .collect();
                chunk.push_str(&row.join(","));
                chunk.push('\n');
            }
            if next(2) == 0 {
                chunk.pop();
            }
            let plain = outcome(read_plain_records, chunk.as_bytes(), &ctx);
            let crate_ = outcome(read_records, chunk.as_bytes(), &ctx);
            assert_eq!(plain, crate_, "{chunk:?}");
        }
    }
}
