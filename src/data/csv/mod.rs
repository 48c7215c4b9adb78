//! CSV uploads: a header row, then one record per row; one column is the target, the others
//! features: numbers, text categories, yes/no, with missing cells. Rows are numbered by the
//! file line they start on (header = line 1).
//!
//! Large files are read in parallel: a file without quote characters is cut at line ends
//! into chunks that are parsed on the rayon pool and joined in order, so the result (and the
//! first error reported) is the same as reading it front to back.

//!
//! Five jobs, a file each: the dialect (delimiter, quote, decimal mark, encoding; given or
//! sniffed) and the transcoder to the reader's own ([`dialect`]), the piece splitter that
//! reads an upload as it arrives ([`stream`]: `CsvStream`, quoting followed across pieces,
//! each piece's stored rows), the
//! one-pass reader of a chunk ([`chunk`]), the column statistics merged over chunks
//! ([`stats`]), and here the file as a whole: the header, the join of the chunks in file
//! order, the column names and the target.

mod chunk;
mod dialect;
mod stats;
mod stream;

pub use self::dialect::{Dialect, DialectOptions, Encoding, delimiter_name};
pub use self::stream::{CsvStream, PIECE};

use self::chunk::*;
use self::stats::*;
use self::stream::*;

use std::collections::HashMap;

use ndarray::Array2;
use rayon::prelude::*;

use super::table::{CellError, NumberStats, Part, ReadOptions, decimal_cell, finish_column_with};
use super::{Columns, DataError, Dataset, Limits, name_list, quoted};
use crate::nn::portable::tabular::ColumnType;
use crate::nn::{ClassLabel, Targets};

/// Below this many bytes a file is parsed in one piece.
const MIN_CHUNK: usize = 1 << 20;

/// Reads a CSV file with a header row with the default missing-value markers and inferred
/// column types; see [`from_csv_with`].
pub fn from_csv(bytes: &[u8], target: Option<&str>, limits: &Limits) -> Result<Dataset, DataError> {
    from_csv_with(bytes, target, limits, &ReadOptions::default())
}

/// Reads a CSV file with a header row. `target` names the target column (default: the last
/// column). Feature columns may hold numbers, text and missing cells (`opts`' markers); each
/// column's type is inferred (numeric, categorical, boolean, or ignored for ids) unless `opts`
/// sets it. A target column of numbers becomes `Targets::Values` (n×1), anything else
/// `Targets::Labels` of trimmed `Text` labels (a column mixing numbers and words is all text:
/// `"1"` and `"one"` are both labels). Rows whose target is missing are left out and counted
/// in [`Dataset::dropped_rows`].
///
/// Accepts `\n` and `\r\n`, quoted fields, whitespace around values and a UTF-8 BOM; blank
/// lines are skipped.
pub fn from_csv_with(
    bytes: &[u8],
    target: Option<&str>,
    limits: &Limits,
    opts: &ReadOptions,
) -> Result<Dataset, DataError> {
    parse_file(bytes, target, limits, opts)?
        .join(limits, opts)?
        .assemble()
}

/// As [`from_csv_with`], letting go of the file's bytes once they are parsed, before the table
/// is assembled: an upload is then never held as text and as numbers at once.
pub fn from_csv_owned(
    bytes: bytes::Bytes,
    target: Option<&str>,
    limits: &Limits,
    opts: &ReadOptions,
) -> Result<Dataset, DataError> {
    let parsed = parse_file(&bytes, target, limits, opts)?;
    drop(bytes);
    parsed.join(limits, opts)?.assemble()
}

fn parse_file(
    bytes: &[u8],
    target: Option<&str>,
    limits: &Limits,
    opts: &ReadOptions,
) -> Result<ParsedFile, DataError> {
    let d = Dialect::sniff(bytes, true, DialectOptions::default());
    let transcoded;
    let bytes = if d.is_plain() {
        bytes
    } else {
        transcoded = dialect::transcode(bytes, d);
        &transcoded
    };
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let (head, data_start) = read_head(bytes, target, limits, opts, Some(&d))?;
    let chunks = parse_data(&bytes[data_start..], &head, opts, Known::default(), false);
    let mut scan = QuoteScan::new();
    scan.feed(bytes);
    Ok(ParsedFile {
        stats: new_stats(head.names.len()),
        head,
        chunks,
        unclosed: scan.unclosed(),
    })
}

/// How the file was split, for an error about its columns: the delimiter used and, when the
/// header's names hold another one, that one as the likely delimiter.
fn read_as(dialect: Option<&Dialect>, names: &[String]) -> String {
    let used = dialect.map_or(b',', |d| d.delimiter);
    let mut out = format!(" (read with delimiter {}", delimiter_name(used));
    let suspect = [b',', b'\t', b';', b'|']
        .into_iter()
        .filter(|&b| b != used)
        .max_by_key(|&b| {
            names
                .iter()
                .map(|n| n.bytes().filter(|&c| c == b).count())
                .sum::<usize>()
        })
        .filter(|&b| names.iter().any(|n| n.as_bytes().contains(&b)));
    if let Some(b) = suspect {
        let q = match b {
            b'\t' => "%09".to_owned(),
            b';' => "%3B".to_owned(),
            b'|' => "%7C".to_owned(),
            b => (b as char).to_string(),
        };
        out.push_str(&format!(
            "; the names hold {}: if that is the delimiter, say ?delimiter={q}",
            delimiter_name(b)
        ));
    }
    out.push(')');
    out
}

/// What the header row says: the columns, the target, the user's types, and the file line
/// the data starts on.
struct Head {
    names: Vec<String>,
    /// `None` for a file without a target (`ReadOptions::no_target`).
    target_index: Option<usize>,
    forced: Vec<Option<ColumnType>>,
    first_line: usize,
}

/// Reads the header row of `bytes` (BOM already stripped): the head, and the offset where
/// the data starts.
fn read_head(
    bytes: &[u8],
    target: Option<&str>,
    limits: &Limits,
    opts: &ReadOptions,
    dialect: Option<&Dialect>,
) -> Result<(Head, usize), DataError> {
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
    let data_start = usize::try_from(reader.position().byte())
        .unwrap_or(bytes.len())
        .min(bytes.len());
    let header_line = header.position().map_or(1, |p| lines.at(p.byte()));
    let names = column_names(&header, header_line, limits)?;
    let (target_index, forced) = choose_target(&names, target, opts, Some(header_line), || {
        read_as(dialect, &names)
    })?;

    // A `\r` just before the data is the first half of a `\r\n` the first chunk ends.
    let mut first_line = 1 + count_line_ends(&bytes[..data_start]);
    if data_start > 0 && bytes[data_start - 1] == b'\r' && bytes.get(data_start) == Some(&b'\n') {
        first_line -= 1;
    }
    Ok((
        Head {
            names,
            target_index,
            forced,
            first_line,
        },
        data_start,
    ))
}

/// The target column's index among `names` (the last unless `target` names one; `None` for a
/// file without a target, `ReadOptions::no_target`) and each column's type as the user gives
/// it, or what is wrong with them. `header_line`: the file line of the names, when there is
/// one; `how_read`: what to add to an error about a missing column (how the file was split).
pub(crate) fn choose_target(
    names: &[String],
    target: Option<&str>,
    opts: &ReadOptions,
    header_line: Option<usize>,
    how_read: impl Fn() -> String,
) -> Result<(Option<usize>, Vec<Option<ColumnType>>), DataError> {
    let columns = names.len();
    let target_index = match target {
        None if opts.no_target => None,
        None => Some(columns - 1),
        Some(_) if opts.no_target => {
            return Err(DataError::new(
                "labels=none says the file has no target, but target names one; give one or the other",
            )
            .pointer("/labels"));
        }
        Some(t) => Some(names.iter().position(|n| n == t.trim()).ok_or_else(|| {
            DataError::new(format!(
                "there is no column named {}; the columns are {}{}",
                quoted(t),
                name_list(names.iter().map(String::as_str)),
                how_read()
            ))
            .column(t)
        })?),
    };
    if let (1, Some(t)) = (columns, target_index) {
        let at = header_line.map_or(String::new(), |l| format!("row {l}: "));
        let mut e = DataError::new(format!(
            "{at}the only column, {}, is the target; at least one feature column is required",
            quoted(&names[t])
        ))
        .column(&names[t]);
        e.row = header_line;
        return Err(e);
    }
    for name in opts.columns.keys() {
        match names.iter().position(|n| n == name) {
            None => {
                return Err(DataError::new(format!(
                    "columns names {}, but there is no such column; the columns are {}",
                    quoted(name),
                    name_list(names.iter().map(String::as_str))
                ))
                .column(name)
                .pointer(format!(
                    "/columns/{}",
                    crate::nn::portable::tabular::pointer_token(name)
                )));
            }
            Some(j) if Some(j) == target_index => {
                return Err(DataError::new(format!(
                    "columns gives a type to {}, the target; types are for feature columns",
                    quoted(name)
                ))
                .column(name)
                .pointer(format!(
                    "/columns/{}",
                    crate::nn::portable::tabular::pointer_token(name)
                )));
            }
            Some(_) => {}
        }
    }
    let forced: Vec<Option<ColumnType>> = names
        .iter()
        .enumerate()
        .map(|(j, n)| {
            (Some(j) != target_index)
                .then(|| opts.columns.get(n).copied())
                .flatten()
        })
        .collect();
    Ok((target_index, forced))
}

/// Parses data rows (cut into chunks parsed in parallel when the text allows). `known`: what
/// the data is known not to hold (not looked for again). `stored`: each chunk's stored rows
/// are made too (see [`Chunk::stored`]), while its columns are still in cache.
fn parse_data(
    data: &[u8],
    head: &Head,
    opts: &ReadOptions,
    known: Known,
    stored: bool,
) -> Vec<Chunk> {
    let chunks = split_chunks(data, known.unquoted);
    let ctx = ChunkContext {
        known,
        columns: head.names.len(),
        forced: &head.forced,
        opts,
    };
    let parse = |c: &[u8]| {
        let mut chunk = parse_chunk(c, &ctx);
        if stored {
            chunk.stored = stored_chunk(&chunk, head.target_index);
        }
        chunk
    };
    if chunks.len() == 1 {
        vec![parse(chunks[0])]
    } else {
        chunks.par_iter().map(|c| parse(c)).collect()
    }
}

/// A file read into columns, chunk by chunk, not yet joined.
struct ParsedFile {
    head: Head,
    /// The columns' stats merged from the chunks whose stats were taken (see
    /// [`merge_stats`]); `None` for a column once a chunk of it holds text.
    stats: Vec<Option<NumberStats>>,
    chunks: Vec<Chunk>,
    /// The file line of a quoted field that never closes, if one opens.
    unclosed: Option<usize>,
}

impl ParsedFile {
    /// Joins the chunks in file order: limits are checked before each row, as a front-to-back
    /// reader would, then each column is finished and its type inferred.
    fn join(self, limits: &Limits, opts: &ReadOptions) -> Result<Columns, DataError> {
        if let Some(line) = self.unclosed {
            return Err(unclosed_quote(line));
        }
        let ParsedFile {
            head:
                Head {
                    names,
                    target_index,
                    first_line,
                    ..
                },
            chunks: mut parsed,
            mut stats,
            ..
        } = self;
        merge_stats(&mut stats, &mut parsed);
        let columns = names.len();

        let mut rows = 0usize;
        let mut start_line = first_line;
        let mut per_column: Vec<Vec<Part>> = (0..columns)
            .map(|_| Vec::with_capacity(parsed.len()))
            .collect();
        for chunk in parsed {
            let read = chunk.lines.len();
            let checked = read + usize::from(chunk.error.is_some());
            for i in 0..checked {
                let r = rows + i + 1;
                let line = || {
                    start_line
                        + chunk
                            .lines
                            .get(i)
                            .copied()
                            .or(chunk.error.as_ref().map(|e| e.line))
                            .unwrap_or(0)
                };
                if r > limits.max_rows {
                    let line = line();
                    return Err(DataError::new(format!(
                        "row {line}: the file has more than {} data rows, the limit",
                        limits.max_rows
                    ))
                    .row(line)
                    .too_large());
                }
                if r.saturating_mul(columns) > limits.max_cells {
                    let line = line();
                    return Err(DataError::new(format!(
                        "row {line}: the file has more than {} cells (rows × columns), the limit",
                        limits.max_cells
                    ))
                    .row(line)
                    .too_large());
                }
            }
            if let Some(e) = chunk.error {
                let line = start_line + e.line;
                return Err(e.into_data_error(line, &names));
            }
            rows += read;
            start_line += chunk.line_ends;
            for (j, p) in chunk.parts.into_iter().enumerate() {
                per_column[j].push(p);
            }
        }
        if rows == 0 {
            return Err(DataError::new(
                "the file has a header row but no data rows; at least one row is required",
            ));
        }
        columns_from_parts(&names, per_column, stats, target_index, rows, opts)
    }
}

/// A file's columns from their parts (one list per column, every column cut at the same
/// rows): the features finished all at once, in parallel, each keeping its parts as
/// segments (no copy into one allocation); the target column (`None`: the file has none)
/// read as targets. `stats`: each column's numbers' stats when they were taken as it was
/// read. What every reader of a file (CSV, Parquet) ends with.
pub(crate) fn columns_from_parts(
    names: &[String],
    mut per_column: Vec<Vec<Part>>,
    mut stats: Vec<Option<NumberStats>>,
    target_index: Option<usize>,
    rows: usize,
    opts: &ReadOptions,
) -> Result<Columns, DataError> {
    let target_parts = target_index.map(|t| std::mem::take(&mut per_column[t]));
    let target_stats = target_index.and_then(|t| stats[t].take());
    let built: Vec<Result<Option<super::table::BuiltColumn>, DataError>> = per_column
        .into_par_iter()
        .zip(stats)
        .enumerate()
        .map(|(j, (parts, stats))| {
            if Some(j) == target_index {
                Ok(None)
            } else {
                finish_column_with(&names[j], parts, opts, stats).map(Some)
            }
        })
        .collect();
    let mut features = Vec::with_capacity(names.len());
    for b in built {
        if let Some(c) = b? {
            features.push(c);
        }
    }
    let Some((t, parts)) = target_index.zip(target_parts) else {
        return Columns::without_target(features, rows);
    };
    let target_name = &names[t];
    let (targets, keep) = read_targets(parts, target_name, target_stats)?;
    Columns::new(features, targets, keep, rows, vec![target_name.clone()])
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
        // An unnamed column (the row names R's write.csv puts first) gets a name of its own.
        let name = if name.is_empty() {
            format!("column_{}", j + 1)
        } else {
            name
        };
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

/// The target column's parts as targets: numbers when every cell is one, otherwise text
/// labels; rows whose target is missing are left out (`keep` says which rows stay, `None`
/// when all do). `stats`: its numbers' stats, when they were taken as it was read.
fn read_targets(
    parts: Vec<Part>,
    name: &str,
    stats: Option<NumberStats>,
) -> Result<(Targets, Option<Vec<bool>>), DataError> {
    let col = finish_column_with(name, parts, &ReadOptions::default(), stats).map_err(|e| {
        if e.message.contains("entirely empty") {
            DataError::new(format!(
                "every row's target (column {}) is missing; there is nothing to learn from",
                quoted(name)
            ))
            .column(name)
        } else {
            e
        }
    })?;
    // A loop per segment (an iterator chain over them all was several times slower).
    let rows: usize = col.segments.iter().map(Vec::len).sum();
    let mut keep = Vec::with_capacity(rows);
    let mut present = Vec::with_capacity(rows);
    for segment in &col.segments {
        for &v in segment {
            keep.push(!v.is_nan());
            if !v.is_nan() {
                present.push(v);
            }
        }
    }
    let all = present.len() == rows;
    let targets = match col.raw.schema.storage {
        crate::nn::portable::tabular::Storage::Number => {
            let n = present.len();
            Targets::Values(
                Array2::from_shape_vec((n, 1), present)
                    .map_err(|e| DataError::new(format!("internal: target shape: {e}")))?,
            )
        }
        crate::nn::portable::tabular::Storage::Text => Targets::Labels(
            present
                .into_iter()
                .map(|c| ClassLabel::Text(col.raw.vocab[c as usize].to_owned()))
                .collect(),
        ),
    };
    Ok((targets, (!all).then_some(keep)))
}

#[cfg(test)]
mod tests;
