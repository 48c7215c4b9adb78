//! The stored form of a [`Dataset`]: postcard with a format number, f32 data as flat
//! row-major vectors. `ClassLabel` is `#[serde(untagged)]`, which postcard (not
//! self-describing) cannot read back, so labels get their own tagged mirror here.
//!
//! Format 1 holds complete numeric features (every dataset stored before tabular uploads);
//! format 2 appends the columns (type, storage, vocabulary, counts) and the rows left out for
//! a missing target; format 3, written now, appends to format 2 each column's value format
//! (currency, percentages, dates) and the reason for its type, as one JSON text (postcard
//! cannot hold the formats' optional fields). All three are read.

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::{Columns, Dataset};
use crate::nn::portable::tabular::{ColumnSchema, ColumnType, RawColumn, Storage};
use crate::nn::portable::values::ValueFormat;
use crate::nn::portable::vocab::Vocab;
use crate::nn::{ClassLabel, Targets};

/// Plain numeric datasets.
const FORMAT_PLAIN: u32 = 1;
/// Tabular datasets (columns with types, text, missing cells).
const FORMAT_TABLE: u32 = 2;
/// Tabular datasets with value formats and reasons.
const FORMAT_KINDS: u32 = 3;

/// What format 3 adds per column (kept in JSON, see the module's documentation).
#[derive(Serialize, Deserialize)]
struct ColumnKind {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    format: Option<ValueFormat>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    reason: String,
}

/// Format 1's fields before the features' values, as written. postcard writes a struct's
/// fields one after another, and a sequence's length as a varint, as it writes a u64: these
/// bytes, then the values, then the targets are exactly what serialising [`Stored`] gives.
#[derive(Serialize)]
struct StoredHead<'a> {
    format: u32,
    feature_names: &'a [String],
    target_names: &'a [String],
    rows: u64,
    /// The length of `Stored::x`.
    cells: u64,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    format: u32,
    feature_names: Vec<String>,
    target_names: Vec<String>,
    rows: u64,
    /// rows × feature_names.len(), row-major.
    x: Vec<f32>,
    targets: StoredTargets,
}

/// Format 2 appends this after format 1's fields.
#[derive(Serialize, Deserialize)]
struct StoredTable<'a> {
    columns: Vec<StoredColumn<'a>>,
    dropped_rows: u64,
}

/// A column's schema and vocabulary, field by field (postcard cannot skip fields).
#[derive(Serialize, Deserialize)]
struct StoredColumn<'a> {
    kind: ColumnType,
    storage: Storage,
    missing: u64,
    distinct: u64,
    numeric_text: bool,
    boolean_like: bool,
    /// Written from the column's own (a sequence of strings, as a `Vec<String>` is).
    vocab: std::borrow::Cow<'a, Vocab>,
}

#[derive(Serialize, Deserialize)]
enum StoredTargets {
    Labels(Vec<StoredLabel>),
    /// rows × width, row-major.
    Values {
        width: u64,
        data: Vec<f32>,
    },
}

#[derive(Serialize, Deserialize)]
enum StoredLabel {
    Integer(i64),
    Text(String),
}

/// Bytes of about one stored part (whole rows; the first also holds the fields before the
/// features, the last the targets and columns).
pub const PART_BYTES: usize = 4 << 20;

/// f32s as postcard writes them: 4 little-endian bytes each.
fn push_le(out: &mut Vec<u8>, x: &[f32]) {
    #[cfg(target_endian = "little")]
    {
        // SAFETY: an f32 is 4 bytes with no padding and any byte is a valid u8; on a
        // little-endian machine its bytes in memory are its little-endian bytes.
        let bytes = unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<u8>(), 4 * x.len()) };
        out.extend_from_slice(bytes);
    }
    #[cfg(not(target_endian = "little"))]
    for v in x {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// [`StoredTargets`] as written, borrowing the dataset's targets (the same bytes: postcard
/// writes a variant's index, then its fields; a borrowed slice or string as an owned one).
#[derive(Serialize)]
enum StoredTargetsRef<'a> {
    Labels(LabelsRef<'a>),
    Values { width: u64, data: &'a [f32] },
}

/// Labels written as [`StoredLabel`]s one by one, without a copy of them all first.
struct LabelsRef<'a>(&'a [ClassLabel]);

#[derive(Serialize)]
enum StoredLabelRef<'a> {
    Integer(i64),
    Text(&'a str),
}

impl Serialize for LabelsRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|c| match c {
            ClassLabel::Integer(i) => StoredLabelRef::Integer(*i),
            ClassLabel::Text(t) => StoredLabelRef::Text(t),
        }))
    }
}

/// The targets as stored, right after the features (the columns follow them).
fn targets_bytes(t: &Targets) -> Vec<u8> {
    let copied;
    let targets = match t {
        Targets::Labels(l) => StoredTargetsRef::Labels(LabelsRef(l)),
        Targets::Values(v) => StoredTargetsRef::Values {
            width: v.ncols() as u64,
            data: match v.as_slice() {
                Some(data) => data,
                None => {
                    copied = v.iter().copied().collect::<Vec<f32>>();
                    &copied
                }
            },
        },
    };
    postcard::to_stdvec(&targets).unwrap_or_default()
}

#[cfg(test)]
fn stored_targets(t: &Targets) -> StoredTargets {
    match t {
        Targets::Labels(l) => StoredTargets::Labels(
            l.iter()
                .map(|c| match c {
                    ClassLabel::Integer(i) => StoredLabel::Integer(*i),
                    ClassLabel::Text(s) => StoredLabel::Text(s.clone()),
                })
                .collect(),
        ),
        Targets::Values(v) => StoredTargets::Values {
            width: v.ncols() as u64,
            data: v.iter().copied().collect(),
        },
    }
}

/// Format 2's columns (types, counts, vocabularies) and dropped rows, as stored.
fn stored_table<'a>(
    columns: impl Iterator<Item = &'a RawColumn>,
    dropped_rows: u64,
) -> StoredTable<'a> {
    StoredTable {
        columns: columns
            .map(|c| StoredColumn {
                kind: c.schema.kind,
                storage: c.schema.storage,
                missing: c.schema.missing,
                distinct: c.schema.distinct,
                numeric_text: c.schema.numeric_text,
                boolean_like: c.schema.boolean_like,
                vocab: std::borrow::Cow::Borrowed(&c.vocab),
            })
            .collect(),
        dropped_rows,
    }
}

/// Format 3's addition: each column's format and reason, as JSON.
fn kinds_json(columns: &[&RawColumn]) -> String {
    let kinds: Vec<ColumnKind> = columns
        .iter()
        .map(|c| ColumnKind {
            format: c.schema.format.clone(),
            reason: c.schema.reason.clone(),
        })
        .collect();
    serde_json::to_string(&kinds).unwrap_or_default()
}

/// The fields before the features' values, and their count (see [`StoredHead`]).
fn head_bytes(
    feature_names: &[String],
    target_names: &[String],
    rows: usize,
    cells: usize,
) -> Vec<u8> {
    postcard::to_stdvec(&StoredHead {
        format: FORMAT_KINDS,
        feature_names,
        target_names,
        rows: rows as u64,
        cells: cells as u64,
    })
    .unwrap_or_default()
}

/// The fields after the features' values: the targets, format 2's table, format 3's kinds.
fn tail_bytes<'a>(
    targets: &Targets,
    columns: impl Iterator<Item = &'a RawColumn>,
    dropped_rows: u64,
) -> Vec<u8> {
    let mut tail = targets_bytes(targets);
    let columns: Vec<&RawColumn> = columns.collect();
    tail.extend(
        postcard::to_stdvec(&stored_table(columns.iter().copied(), dropped_rows))
            .unwrap_or_default(),
    );
    tail.extend(postcard::to_stdvec(&kinds_json(&columns)).unwrap_or_default());
    tail
}

/// The stored form's rows of `rows` rows read as numbers, `columns` the features' values in
/// column order: each row kept (`kept(r)`) as its features' f32s, little-endian, one after
/// another, into `out` (4 bytes per feature of each row kept). What an upload streamed as it
/// was read stores between [`streamed_ends`]' head and tail.
pub(super) fn fill_stored_rows(
    out: &mut [u8],
    columns: &[&[f32]],
    rows: usize,
    kept: impl Fn(usize) -> bool,
) {
    let mut out_rows = out.chunks_exact_mut((4 * columns.len()).max(1));
    for r in (0..rows).filter(|&r| kept(r)) {
        if let Some(row) = out_rows.next() {
            for (cell, column) in row.chunks_exact_mut(4).zip(columns) {
                cell.copy_from_slice(&column[r].to_le_bytes());
            }
        }
    }
}

/// The stored form's bytes before and after the features' values, for a dataset whose rows
/// were handed out as its file was read (see [`stored_rows`]): the head, those rows in file
/// order, then the tail are the bytes [`to_bytes`] gives for [`Columns::assemble`]'s dataset.
pub(super) fn streamed_ends(columns: &Columns) -> (Vec<u8>, Vec<u8>) {
    let (rows, width) = (columns.rows(), columns.inputs());
    let head = head_bytes(
        &columns.feature_names(),
        &columns.target_names,
        rows,
        rows * width,
    );
    let tail = tail_bytes(
        &columns.targets,
        columns.raw_columns(),
        columns.dropped_rows,
    );
    (head, tail)
}

/// The stored form of a dataset still in its columns (an upload), a part at a time: each
/// part's rows are assembled from the columns' segments when it is asked for, and the
/// segments it has passed are let go, so the rows are never held whole. The parts joined are
/// the bytes [`to_bytes`] gives for [`Columns::assemble`]'s dataset, however they are cut:
/// how they are cut is not part of the format.
pub struct ColumnParts {
    head: Vec<u8>,
    columns: Columns,
    /// The next row to read: its segment, its place in it, and its place in the file.
    segment: usize,
    at: usize,
    read: usize,
    /// Rows not written yet.
    left: usize,
    tail: Vec<u8>,
    part_bytes: usize,
    len: usize,
    /// Parts made so far.
    made: usize,
    done: bool,
}

impl ColumnParts {
    /// The bytes of every part together.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

pub(super) fn column_parts(columns: Columns, part_bytes: usize) -> ColumnParts {
    let (rows, width) = (columns.rows(), columns.inputs());
    let (head, tail) = streamed_ends(&columns);
    ColumnParts {
        len: head.len() + 4 * rows * width + tail.len(),
        head,
        columns,
        segment: 0,
        at: 0,
        read: 0,
        left: rows,
        tail,
        part_bytes: part_bytes.max(4),
        made: 0,
        done: false,
    }
}

impl Iterator for ColumnParts {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        let width = self.columns.inputs();
        let row_bytes = 4 * width;
        // Whole rows (at least one) per part.
        let take = (self.part_bytes.saturating_sub(self.head.len()) / row_bytes.max(1))
            .max(1)
            .min(self.left);
        let last = take == self.left;
        let mut out = Vec::with_capacity(
            self.head.len() + take * row_bytes + if last { self.tail.len() } else { 0 },
        );
        out.append(&mut self.head);
        let start = out.len();
        out.resize(start + take * row_bytes, 0);
        let mut rows = out[start..].chunks_exact_mut(row_bytes.max(1));
        let mut written = 0;
        let keep = self.columns.keep.as_deref();
        let features = &mut self.columns.features;
        let (mut at, mut read) = (self.at, self.read);
        while written < take {
            let Some(len) = features.first().map(|c| c.segments[self.segment].len()) else {
                break;
            };
            if at == len {
                // This segment is written: it goes.
                for c in features.iter_mut() {
                    c.segments[self.segment] = Vec::new();
                }
                self.segment += 1;
                at = 0;
                continue;
            }
            let segment: Vec<&[f32]> = features
                .iter()
                .map(|c| &c.segments[self.segment][..len])
                .collect();
            while at < len && written < take {
                if keep.is_none_or(|k| k[read]) {
                    if let Some(row) = rows.next() {
                        for (cell, column) in row.chunks_exact_mut(4).zip(&segment) {
                            cell.copy_from_slice(&column[at].to_le_bytes());
                        }
                    }
                    written += 1;
                }
                at += 1;
                read += 1;
            }
        }
        (self.at, self.read) = (at, read);
        self.left -= take;
        self.made += 1;
        if self.made.is_multiple_of(8) {
            // The segments let go of since are given back to the system.
            super::release_memory();
        }
        if last {
            out.append(&mut self.tail);
            self.columns.features = Vec::new();
            self.done = true;
        }
        Some(out)
    }
}

/// The stored form in one piece: the fields before the features, the features row-major, the
/// targets and the columns. Always format 3 now: its columns keep what the upload inferred
/// (types, counts); format 1, which every dataset stored before tabular uploads has, is read
/// as before.
pub(super) fn to_bytes(d: &Dataset) -> Vec<u8> {
    let cells = d.x.len();
    let mut out = head_bytes(&d.feature_names, &d.target_names, d.rows(), cells);
    let tail = tail_bytes(&d.targets, d.columns.iter(), d.dropped_rows);
    out.reserve_exact(4 * cells + tail.len());
    match d.x.as_slice() {
        Some(x) => push_le(&mut out, x),
        None => push_le(&mut out, &d.x.iter().copied().collect::<Vec<f32>>()),
    }
    out.extend(tail);
    out
}

pub(super) fn from_bytes(b: &[u8]) -> Result<Dataset, String> {
    let (s, rest): (Stored, &[u8]) =
        postcard::take_from_bytes(b).map_err(|e| format!("unreadable dataset: {e}"))?;
    if !(FORMAT_PLAIN..=FORMAT_KINDS).contains(&s.format) {
        return Err(format!(
            "dataset stored in format {}, this build reads formats {FORMAT_PLAIN} to {FORMAT_KINDS}",
            s.format
        ));
    }
    let mut kinds: Vec<ColumnKind> = vec![];
    let table = if s.format >= FORMAT_TABLE {
        let (t, rest): (StoredTable, &[u8]) = postcard::take_from_bytes(rest)
            .map_err(|e| format!("unreadable dataset columns: {e}"))?;
        if t.columns.len() != s.feature_names.len() {
            return Err(format!(
                "{} columns for {} feature names",
                t.columns.len(),
                s.feature_names.len()
            ));
        }
        if s.format == FORMAT_KINDS {
            let json: String = postcard::from_bytes(rest)
                .map_err(|e| format!("unreadable dataset column kinds: {e}"))?;
            kinds = serde_json::from_str(&json)
                .map_err(|e| format!("unreadable dataset column kinds: {e}"))?;
            if kinds.len() != t.columns.len() {
                return Err(format!(
                    "{} column kinds for {} columns",
                    kinds.len(),
                    t.columns.len()
                ));
            }
        }
        Some(t)
    } else {
        if !rest.is_empty() {
            return Err(format!("{} bytes after the dataset", rest.len()));
        }
        None
    };
    let rows = usize::try_from(s.rows).map_err(|_| "row count does not fit in memory")?;
    let x = Array2::from_shape_vec((rows, s.feature_names.len()), s.x)
        .map_err(|e| format!("features do not match {rows} rows: {e}"))?;
    let (targets, width) = match s.targets {
        StoredTargets::Labels(l) => {
            if l.len() != rows {
                return Err(format!("{} labels for {rows} rows", l.len()));
            }
            let labels = l
                .into_iter()
                .map(|c| match c {
                    StoredLabel::Integer(i) => ClassLabel::Integer(i),
                    StoredLabel::Text(s) => ClassLabel::Text(s),
                })
                .collect();
            (Targets::Labels(labels), 1)
        }
        StoredTargets::Values { width, data } => {
            let width = usize::try_from(width).map_err(|_| "target width does not fit")?;
            let v = Array2::from_shape_vec((rows, width), data)
                .map_err(|e| format!("targets do not match {rows}×{width}: {e}"))?;
            (Targets::Values(v), width)
        }
    };
    if s.target_names.len() != width {
        return Err(format!(
            "{} target names for {width} target columns",
            s.target_names.len()
        ));
    }
    let mut d = Dataset::numeric(s.feature_names, s.target_names, x, targets);
    if let Some(t) = table {
        d.dropped_rows = t.dropped_rows;
        let Dataset {
            columns,
            x,
            feature_names,
            ..
        } = &mut d;
        let mut kinds = kinds.into_iter();
        for (j, (c, stored)) in columns.iter_mut().zip(t.columns).enumerate() {
            let kind = kinds.next().unwrap_or(ColumnKind {
                format: None,
                reason: String::new(),
            });
            let name = &feature_names[j];
            if stored.storage == Storage::Text
                && let Some(bad) = x
                    .column(j)
                    .iter()
                    .find(|v| !v.is_nan() && (**v < 0.0 || **v as usize >= stored.vocab.len()))
            {
                return Err(format!(
                    "column {name:?}: code {bad} outside its vocabulary"
                ));
            }
            *c = RawColumn {
                schema: ColumnSchema {
                    name: name.clone(),
                    kind: stored.kind,
                    storage: stored.storage,
                    missing: stored.missing,
                    distinct: stored.distinct,
                    numeric_text: stored.numeric_text,
                    boolean_like: stored.boolean_like,
                    format: kind.format,
                    reason: kind.reason,
                },
                vocab: stored.vocab.into_owned(),
            };
        }
    } else if d.x.iter().any(|v| !v.is_finite()) {
        return Err("a format 1 dataset holds a non-finite feature".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn labelled() -> Dataset {
        Dataset::numeric(
            vec!["a".into(), "b".into()],
            vec!["species".into()],
            array![[1.5, -2.0], [0.1, 3e30]],
            Targets::Labels(vec![
                ClassLabel::Text("setosa".into()),
                ClassLabel::Integer(-7),
            ]),
        )
    }

    /// A dataset stored in format 2 (before value formats and reasons) reads as it was: its
    /// columns without a format or a reason.
    #[test]
    fn format_2_reads_without_kinds() {
        let d = labelled();
        let mut b = postcard::to_stdvec(&Stored {
            format: FORMAT_TABLE,
            feature_names: d.feature_names.clone(),
            target_names: d.target_names.clone(),
            rows: d.rows() as u64,
            x: d.x.iter().copied().collect(),
            targets: stored_targets(&d.targets),
        })
        .unwrap();
        b.extend(postcard::to_stdvec(&stored_table(d.columns.iter(), d.dropped_rows)).unwrap());
        let back = Dataset::from_bytes(&b).unwrap();
        assert_eq!(back, d);
        assert!(back.columns.iter().all(|c| c.schema.reason.is_empty()));
    }

    /// The stored form, in one piece or in parts however they are cut, is exactly what
    /// serialising the format's structs gives (the reader's view of format 3).
    #[test]
    fn parts_join_into_the_serialised_form() {
        let mut wide = labelled();
        wide.x = ndarray::Array2::from_shape_fn((300, 2), |(i, j)| (i * 2 + j) as f32 * 0.5);
        wide.targets = Targets::Labels((0..300).map(ClassLabel::Integer).collect());
        let regression = Dataset::numeric(
            vec!["x".into()],
            vec!["a".into(), "b".into()],
            array![[1.0], [2.0], [f32::NAN]],
            Targets::Values(array![[0.5, 1.5], [2.5, -3.0], [0.0, 1e9]]),
        );
        // A transposed (not row-major) feature array.
        let mut transposed = labelled();
        transposed.x = array![[1.5, 0.1], [-2.0, 3e30]].reversed_axes();
        for d in [labelled(), wide, regression, transposed] {
            let cells: Vec<f32> = d.x.iter().copied().collect();
            let mut want = postcard::to_stdvec(&Stored {
                format: FORMAT_KINDS,
                feature_names: d.feature_names.clone(),
                target_names: d.target_names.clone(),
                rows: d.rows() as u64,
                x: cells,
                targets: stored_targets(&d.targets),
            })
            .unwrap();
            want.extend(
                postcard::to_stdvec(&stored_table(d.columns.iter(), d.dropped_rows)).unwrap(),
            );
            let columns: Vec<&RawColumn> = d.columns.iter().collect();
            want.extend(postcard::to_stdvec(&kinds_json(&columns)).unwrap());
            assert_eq!(d.to_bytes(), want);
            // The same dataset stored from its columns, however the parts are cut.
            for part_bytes in [4, 7, 64, 1000, 1 << 20] {
                let parts = column_parts(Columns::from(d.clone()), part_bytes);
                let len = parts.len();
                let got: Vec<Vec<u8>> = parts.collect();
                assert!(got.iter().all(|p| !p.is_empty()));
                let joined = got.concat();
                assert_eq!(joined.len(), len);
                assert_eq!(joined, want, "parts of {part_bytes} bytes");
                let back = Dataset::from_bytes(&joined).unwrap();
                assert_eq!(back.x.shape(), d.x.shape());
            }
        }
    }

    /// An upload stored from its columns gives the bytes its assembled dataset gives, however
    /// the parts are cut: a file read in several pieces (so its columns have several
    /// segments), with text, missing cells and rows left out for a missing target.
    #[test]
    fn parts_from_columns_join_into_the_datasets_bytes() {
        use crate::data::{CsvStream, Limits, ReadOptions};
        let mut csv = String::from("n,colour,size,y\n");
        for i in 0..200_000 {
            let colour = ["red", "green", "NA", "blue"][i % 4];
            let size = if i % 7 == 0 {
                String::new()
            } else {
                format!("{}.25", i % 100)
            };
            let y = if i % 11 == 0 { "" } else { ["a", "b"][i % 2] };
            csv.push_str(&format!("{i},{colour},{size},{y}\n"));
        }
        let read = || {
            let mut s = CsvStream::new(Some("y"), Limits::default(), ReadOptions::default());
            for piece in csv.as_bytes().chunks(256 << 10) {
                s.push(piece).unwrap();
            }
            s.finish_columns().unwrap()
        };
        let columns = read();
        assert!(
            columns.features[0].segments.len() > 2,
            "read in several pieces"
        );
        assert!(columns.dropped_rows > 0);
        let want = read().assemble().unwrap().to_bytes();
        for part_bytes in [4, 1000, 64 << 10, 1 << 30] {
            let parts = column_parts(read(), part_bytes);
            let len = parts.len();
            let got: Vec<Vec<u8>> = parts.collect();
            assert!(got.iter().all(|p| !p.is_empty()));
            let joined = got.concat();
            assert_eq!(joined.len(), len);
            assert!(joined == want, "parts of {part_bytes} bytes");
        }
    }

    /// An upload whose feature cells are numbers (missing ones among them) is stored as it is
    /// read: the rows handed out piece by piece, between the head and the tail, are exactly
    /// the assembled dataset's bytes, with text targets and numeric ones, rows without a target
    /// left out. A file whose column turns to text in a later piece, or a stream stopped by
    /// its taker, is not marked streamed.
    #[test]
    fn rows_streamed_as_read_join_into_the_datasets_bytes() {
        use crate::data::{CsvStream, Limits, ReadOptions};
        let file = |text_at: Option<usize>, numeric_target: bool| {
            let mut csv = String::from("n,size,y,w\n");
            for i in 0..150_000 {
                let size = match text_at {
                    Some(at) if i == at => "large".to_owned(),
                    _ if i % 7 == 0 => String::new(),
                    _ => format!("{}.25", i % 100),
                };
                let y = match (i % 11 == 0, numeric_target) {
                    (true, _) => String::new(),
                    (false, true) => format!("{}", i % 5),
                    (false, false) => ["a", "b"][i % 2].to_owned(),
                };
                csv.push_str(&format!("{i},{size},{y},-{}.5\n", i % 3));
            }
            csv
        };
        // The rows handed out (taken after every push and at the end) and the columns.
        let read = |csv: &str, stop_after: Option<usize>| {
            let mut s = CsvStream::new(Some("y"), Limits::default(), ReadOptions::default());
            s.stream_rows();
            let mut rows = Vec::new();
            for (k, piece) in csv.as_bytes().chunks(256 << 10).enumerate() {
                s.push(piece).unwrap();
                rows.extend(s.take_rows());
                if stop_after == Some(k) {
                    s.stop_streaming();
                }
            }
            s.end().unwrap();
            rows.extend(s.take_rows());
            let pieces = rows.len();
            (rows.concat(), pieces, s.finish_columns().unwrap())
        };
        for numeric_target in [false, true] {
            let csv = file(None, numeric_target);
            let (rows, pieces, columns) = read(&csv, None);
            assert!(columns.streamed());
            assert!(pieces > 2, "streamed in {pieces} pieces");
            assert!(columns.dropped_rows > 0);
            let (head, tail) = columns.stored_ends();
            let want = columns.assemble().unwrap().to_bytes();
            assert!(
                [head, rows, tail].concat() == want,
                "target numeric: {numeric_target}"
            );
        }
        // Text in the last rows: the pieces before were handed out, but the dataset is not
        // streamed; nor is one whose taker stopped.
        let (_, pieces, columns) = read(&file(Some(140_000), false), None);
        assert!(pieces >= 2 && !columns.streamed(), "{pieces} pieces");
        let (_, _, columns) = read(&file(None, false), Some(3));
        assert!(!columns.streamed());
    }

    #[test]
    fn labels_round_trip() {
        let d = labelled();
        assert_eq!(Dataset::from_bytes(&d.to_bytes()), Ok(d));
    }

    #[test]
    fn values_round_trip() {
        let d = Dataset::numeric(
            vec!["a".into()],
            vec!["target_0".into(), "target_1".into()],
            array![[1.0], [2.0], [3.0]],
            Targets::Values(array![[1.0, 0.0], [0.0, 1.0], [0.5, 0.25]]),
        );
        assert_eq!(Dataset::from_bytes(&d.to_bytes()), Ok(d));
    }

    #[test]
    fn storage_is_compact() {
        // 2×2 f32 features are 16 bytes; names, labels, columns and framing add a few dozen.
        assert!(labelled().to_bytes().len() < 80);
    }

    #[test]
    fn format_1_as_the_previous_release_wrote_it_still_reads() {
        let d = labelled();
        let v1 = Stored {
            format: FORMAT_PLAIN,
            feature_names: d.feature_names.clone(),
            target_names: d.target_names.clone(),
            rows: 2,
            x: d.x.iter().copied().collect(),
            targets: StoredTargets::Labels(vec![
                StoredLabel::Text("setosa".into()),
                StoredLabel::Integer(-7),
            ]),
        };
        let b = postcard::to_stdvec(&v1).unwrap_or_default();
        let back = Dataset::from_bytes(&b).expect("format 1 reads");
        assert_eq!(back, d);
        assert!(back.is_plain());
        // format 1 never held a missing cell
        let bad = Stored {
            x: vec![1.0, f32::NAN, 0.0, 0.0],
            ..v1
        };
        let b = postcard::to_stdvec(&bad).unwrap_or_default();
        assert!(Dataset::from_bytes(&b).is_err());
    }

    #[test]
    fn wrong_format_and_truncation_are_errors() {
        let mut b = labelled().to_bytes();
        b[0] = 9; // varint format number
        assert_eq!(
            Dataset::from_bytes(&b),
            Err("dataset stored in format 9, this build reads formats 1 to 3".into())
        );
        let b = labelled().to_bytes();
        for cut in 0..b.len() {
            assert!(Dataset::from_bytes(&b[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Dataset::from_bytes(&[0xff; 64]).is_err());
    }

    #[test]
    fn inconsistent_shapes_are_errors() {
        let stored = Stored {
            format: FORMAT_PLAIN,
            feature_names: vec!["a".into(), "b".into()],
            target_names: vec!["y".into()],
            rows: 2,
            x: vec![1.0, 2.0, 3.0],
            targets: StoredTargets::Values {
                width: 1,
                data: vec![0.0, 1.0],
            },
        };
        let b = postcard::to_stdvec(&stored).unwrap_or_default();
        let err = Dataset::from_bytes(&b).err().unwrap_or_default();
        assert!(err.starts_with("features do not match 2 rows"), "{err}");

        let stored = Stored {
            x: vec![1.0, 2.0, 3.0, 4.0],
            target_names: vec![],
            ..stored
        };
        let b = postcard::to_stdvec(&stored).unwrap_or_default();
        assert_eq!(
            Dataset::from_bytes(&b),
            Err("0 target names for 1 target columns".into())
        );
    }
}
