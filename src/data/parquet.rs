//! Parquet uploads: a file's flat columns read column by column, row group by row group, with
//! the Apache project's own reader (without its Arrow layer), straight into the parts a CSV
//! column is built from. Each column then gets its type, format and reason exactly as a CSV's
//! does ([`finish_column`]): numbers stay numbers, text is understood as a CSV cell is (money,
//! percentages, booleans, dates in text), and Parquet's own dates and timestamps are read as
//! dates.
//!
//! What a column holds, by its Parquet type:
//! - integers, floats and decimals: numbers (a float `NaN` is a missing cell);
//! - strings (and binary that is UTF-8): text, read as a CSV cell (`NA` and the like are
//!   missing, as `?na_values=` says);
//! - booleans: `true`/`false`;
//! - `DATE`, `TIMESTAMP` and legacy `INT96` timestamps: ISO 8601 text, so the column is a date;
//! - `UUID`: its text (an identifier).
//!
//! Lists, maps and other binary columns are refused, naming the column. The file is read
//! whole (its index is at its end); each row group is decoded as it is reached, and the
//! columns in parallel.

use ::parquet::basic::{LogicalType, TimeUnit, Type as Physical};
use ::parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use ::parquet::data_type::DataType;
use ::parquet::file::reader::{FileReader, SerializedFileReader};
use ::parquet::schema::types::ColumnDescriptor;
use bytes::Bytes;
use rayon::prelude::*;

use super::csv::{choose_target, columns_from_parts};
use super::table::{Part, ReadOptions};
use super::{Columns, DataError, Limits, quoted};
use crate::nn::portable::tabular::ColumnType;
use crate::nn::portable::values::civil_from_days;

/// Values decoded per call (the reader's own batch size).
const BATCH: usize = 8192;

/// The media types a Parquet upload is sent with.
pub fn is_parquet(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/vnd.apache.parquet" | "application/x-parquet" | "application/parquet"
    )
}

/// The columns of a Parquet file with `target` (default: the last column) as the target.
/// `max_bytes`: the most its pages may hold decoded (the server's body limit: as much as a
/// CSV body could carry), checked from the pages' own headers before any is decoded. A
/// reader panic (a damaged file the reader does not expect) is an error, not a crash.
pub fn parquet_columns(
    bytes: Bytes,
    target: Option<&str>,
    limits: &Limits,
    opts: &ReadOptions,
    max_bytes: usize,
) -> Result<Columns, DataError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        read_file(bytes, target, limits, opts, max_bytes)
    }))
    .unwrap_or_else(|_| {
        Err(DataError::new(
            "the Parquet file is damaged: its reader stopped on it; write it again",
        ))
    })
}

fn read_file(
    bytes: Bytes,
    target: Option<&str>,
    limits: &Limits,
    opts: &ReadOptions,
    max_bytes: usize,
) -> Result<Columns, DataError> {
    let file = bytes.clone();
    let reader = SerializedFileReader::new(bytes).map_err(|e| {
        DataError::new(format!(
            "the body is not a readable Parquet file: {e}; send Parquet as application/vnd.apache.parquet, or a CSV as text/csv"
        ))
    })?;
    let meta = reader.metadata();
    let schema = meta.file_metadata().schema_descr();
    let descrs: Vec<std::sync::Arc<ColumnDescriptor>> = (0..schema.num_columns())
        .map(|j| schema.column(j))
        .collect();
    if descrs.is_empty() {
        return Err(DataError::new("the Parquet file has no columns"));
    }
    if descrs.len() > limits.max_columns {
        return Err(DataError::new(format!(
            "the file has {} columns, more than the limit of {}",
            descrs.len(),
            limits.max_columns
        ))
        .too_large());
    }
    let names: Vec<String> = descrs.iter().map(|d| d.path().string()).collect();
    let mut kinds = Vec::with_capacity(descrs.len());
    for (d, name) in descrs.iter().zip(&names) {
        if d.max_rep_level() > 0 {
            return Err(DataError::new(format!(
                "column {} holds lists (a repeated field); a Parquet upload takes flat columns of numbers, text, booleans, dates or timestamps",
                quoted(name)
            ))
            .column(name));
        }
        kinds.push(kind_of(d).map_err(|what| {
            DataError::new(format!(
                "column {} holds {what}; a Parquet upload takes numbers, text, booleans, dates and timestamps (type it out, or leave the column out of the file)",
                quoted(name)
            ))
            .column(name)
        })?);
    }
    let (target_index, forced) = choose_target(&names, target, opts, None, String::new)?;
    // What decoding would hold, from the pages' headers: each page is decompressed whole
    // into a buffer of the size its header claims.
    let mut decoded = 0u64;
    for g in meta.row_groups() {
        for c in g.columns() {
            use ::parquet::basic::Compression as C;
            let refused = match c.compression() {
                C::GZIP(_) => Some("gzip"),
                C::BROTLI(_) => Some("brotli"),
                C::LZO => Some("LZO"),
                _ => None,
            };
            if let Some(codec) = refused {
                let name = c.column_path().string();
                return Err(DataError::new(format!(
                    "column {} is compressed with {codec}, which uploads do not read (its decoder does not stop at the size a page declares); write the file with snappy, zstd or lz4 (pandas: to_parquet(compression=\"snappy\"), the default)",
                    quoted(&name)
                ))
                .column(&name));
            }
            let (start, len) = c.byte_range();
            decoded = decoded.saturating_add(pages_size(&file, start, len).unwrap_or(0));
        }
    }
    if decoded > max_bytes as u64 {
        return Err(DataError::new(format!(
            "the file's pages hold {decoded} bytes decoded, more than the server's limit of {max_bytes} bytes (--max-body-bytes)"
        ))
        .too_large());
    }
    let rows = usize::try_from(meta.file_metadata().num_rows()).unwrap_or(usize::MAX);
    if rows > limits.max_rows {
        return Err(DataError::new(format!(
            "the file has {rows} data rows, more than the limit of {}",
            limits.max_rows
        ))
        .too_large());
    }
    if rows.saturating_mul(names.len()) > limits.max_cells {
        return Err(DataError::new(format!(
            "the file has {rows} rows × {} columns, more than the limit of {} cells",
            names.len(),
            limits.max_cells
        ))
        .too_large());
    }
    if rows == 0 {
        return Err(DataError::new(
            "the file has columns but no rows; at least one row is required",
        ));
    }

    // Each column read through every row group: one part per row group, so every column is
    // cut at the same rows.
    let groups = reader.num_row_groups();
    let read: Vec<Result<Vec<Part>, DataError>> = (0..names.len())
        .into_par_iter()
        .map(|j| {
            let mut parts = Vec::with_capacity(groups);
            let mut first_row = 0usize;
            for g in 0..groups {
                let group = reader
                    .get_row_group(g)
                    .map_err(|e| unreadable(&names[j], &e))?;
                let n = usize::try_from(group.metadata().num_rows()).unwrap_or(0);
                let column = group
                    .get_column_reader(j)
                    .map_err(|e| unreadable(&names[j], &e))?;
                let cx = Cx {
                    name: &names[j],
                    descr: &descrs[j],
                    kind: kinds[j],
                    forced: forced[j],
                    opts,
                    first_row,
                };
                let part = read_column(column, n, &cx)?;
                if part.len() != n {
                    return Err(DataError::new(format!(
                        "column {}: row group {} holds {} values for {n} rows; the file is damaged",
                        quoted(&names[j]),
                        g + 1,
                        part.len()
                    ))
                    .column(&names[j]));
                }
                parts.push(part);
                first_row += n;
            }
            Ok(parts)
        })
        .collect();
    let mut per_column = Vec::with_capacity(names.len());
    for r in read {
        per_column.push(r?);
    }
    let stats = (0..names.len()).map(|_| None).collect();
    columns_from_parts(&names, per_column, stats, target_index, rows, opts)
}

/// The decoded size the page headers of one column chunk (`len` bytes from `start`) claim,
/// summed; `None` where a header does not read (the reader then says what is wrong).
fn pages_size(file: &[u8], start: u64, len: u64) -> Option<u64> {
    walk_pages(file, start, len).map(|(decoded, _)| decoded)
}

/// The pages' decoded sizes and their headers' bytes, each summed.
fn walk_pages(file: &[u8], start: u64, len: u64) -> Option<(u64, u64)> {
    let start = usize::try_from(start).ok()?;
    let end = start
        .checked_add(usize::try_from(len).ok()?)?
        .min(file.len());
    let mut pos = start;
    let (mut decoded, mut headers) = (0u64, 0u64);
    while pos < end {
        let mut t = Thrift {
            b: file.get(pos..end)?,
            pos: 0,
        };
        let (uncompressed, compressed) = t.page_header()?;
        decoded = decoded.saturating_add(uncompressed);
        headers += t.pos as u64;
        pos = pos.checked_add(t.pos)?.checked_add(compressed)?;
    }
    Some((decoded, headers))
}

/// Just enough of Thrift's compact protocol to read a page header's sizes and skip the rest.
struct Thrift<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Thrift<'_> {
    fn byte(&mut self) -> Option<u8> {
        let x = *self.b.get(self.pos)?;
        self.pos += 1;
        Some(x)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let x = self.byte()?;
            v |= u64::from(x & 0x7f) << shift.min(63);
            if x & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn zigzag(&mut self) -> Option<i64> {
        let v = self.varint()?;
        Some((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// A `PageHeader`: its uncompressed and compressed sizes (fields 2 and 3).
    fn page_header(&mut self) -> Option<(u64, usize)> {
        let (mut uncompressed, mut compressed) = (None, None);
        let mut id = 0i64;
        loop {
            let h = self.byte()?;
            let kind = h & 0x0f;
            if kind == 0 {
                break;
            }
            id = match h >> 4 {
                0 => self.zigzag()?,
                d => id + i64::from(d),
            };
            match (id, kind) {
                (2, 5) => uncompressed = Some(u64::try_from(self.zigzag()?).ok()?),
                (3, 5) => compressed = Some(usize::try_from(self.zigzag()?).ok()?),
                _ => self.skip(kind, 0)?,
            }
        }
        Some((uncompressed?, compressed?))
    }

    /// Skips a value of compact type `kind` (nesting bounded).
    fn skip(&mut self, kind: u8, depth: u32) -> Option<()> {
        if depth > 16 {
            return None;
        }
        match kind {
            1 | 2 => {}
            3 => {
                self.byte()?;
            }
            4..=6 => {
                self.varint()?;
            }
            7 => self.pos = self.pos.checked_add(8)?,
            8 => {
                let n = usize::try_from(self.varint()?).ok()?;
                self.pos = self.pos.checked_add(n)?;
            }
            9 | 10 => {
                let h = self.byte()?;
                let n = match h >> 4 {
                    15 => usize::try_from(self.varint()?).ok()?,
                    n => n as usize,
                };
                let elem = h & 0x0f;
                for _ in 0..n {
                    if elem == 1 || elem == 2 {
                        self.byte()?;
                    } else {
                        self.skip(elem, depth + 1)?;
                    }
                    if self.pos > self.b.len() {
                        return None;
                    }
                }
            }
            11 => {
                let n = usize::try_from(self.varint()?).ok()?;
                if n > 0 {
                    let kv = self.byte()?;
                    for _ in 0..n {
                        self.skip(kv >> 4, depth + 1)?;
                        self.skip(kv & 0x0f, depth + 1)?;
                        if self.pos > self.b.len() {
                            return None;
                        }
                    }
                }
            }
            12 => loop {
                let h = self.byte()?;
                if h & 0x0f == 0 {
                    break;
                }
                if h >> 4 == 0 {
                    self.zigzag()?;
                }
                self.skip(h & 0x0f, depth + 1)?;
            },
            _ => return None,
        }
        (self.pos <= self.b.len()).then_some(())
    }
}

fn unreadable(name: &str, e: &::parquet::errors::ParquetError) -> DataError {
    DataError::new(format!(
        "column {}: the Parquet file cannot be read: {e}",
        quoted(name)
    ))
    .column(name)
}

/// How a column's values become cells.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// Numbers, times `scale` (a decimal's 10^-scale; 1 otherwise).
    Number {
        scale: f64,
    },
    /// UTF-8 text, read as a CSV cell.
    Text,
    Boolean,
    /// Days since 1970-01-01.
    Date,
    /// Units of 1/`per_second` second since 1970 (UTC when `utc`).
    Timestamp {
        per_second: i64,
        utc: bool,
    },
    /// Legacy 12-byte timestamps (nanoseconds in the day, then the Julian day).
    Int96,
    /// 16 bytes shown as a UUID's text.
    Uuid,
    /// A decimal as big-endian two's-complement bytes, times `scale` (10^-scale).
    Decimal {
        scale: f64,
    },
}

/// A column's kind, or what it holds that cannot be read.
fn kind_of(d: &ColumnDescriptor) -> Result<Kind, String> {
    let logical = d.logical_type_ref();
    let decimal = |scale: i32| Kind::Number {
        scale: 10f64.powi(-scale),
    };
    Ok(match (d.physical_type(), logical) {
        (Physical::INT32 | Physical::INT64, Some(LogicalType::Date)) => Kind::Date,
        (Physical::INT64, Some(LogicalType::Timestamp(t))) => Kind::Timestamp {
            per_second: match t.unit {
                TimeUnit::MILLIS => 1_000,
                TimeUnit::MICROS => 1_000_000,
                TimeUnit::NANOS => 1_000_000_000,
            },
            utc: t.is_adjusted_to_u_t_c,
        },
        (Physical::INT32 | Physical::INT64, Some(LogicalType::Decimal(dt))) => decimal(dt.scale),
        (Physical::INT32 | Physical::INT64 | Physical::FLOAT | Physical::DOUBLE, _) => {
            // A converted-type-only decimal (older writers) has its scale on the column.
            if d.converted_type() == ::parquet::basic::ConvertedType::DECIMAL {
                decimal(d.type_scale())
            } else if d.converted_type() == ::parquet::basic::ConvertedType::DATE {
                Kind::Date
            } else {
                Kind::Number { scale: 1.0 }
            }
        }
        (Physical::BOOLEAN, _) => Kind::Boolean,
        (Physical::INT96, _) => Kind::Int96,
        (Physical::BYTE_ARRAY | Physical::FIXED_LEN_BYTE_ARRAY, Some(LogicalType::Decimal(dt))) => {
            Kind::Decimal {
                scale: 10f64.powi(-dt.scale),
            }
        }
        (Physical::FIXED_LEN_BYTE_ARRAY, Some(LogicalType::Uuid)) => Kind::Uuid,
        (Physical::FIXED_LEN_BYTE_ARRAY, Some(LogicalType::Float16)) => {
            return Err("16-bit floats".into());
        }
        (Physical::FIXED_LEN_BYTE_ARRAY, _) => return Err("fixed-length binary values".into()),
        (
            Physical::BYTE_ARRAY,
            Some(LogicalType::Json | LogicalType::Bson | LogicalType::Variant(_)),
        ) => return Err("documents (JSON, BSON or variants)".into()),
        (Physical::BYTE_ARRAY, _) => Kind::Text,
    })
}

/// What reading one column chunk needs.
struct Cx<'a> {
    name: &'a str,
    descr: &'a ColumnDescriptor,
    /// How its values become cells ([`kind_of`] of `descr`).
    kind: Kind,
    forced: Option<ColumnType>,
    opts: &'a ReadOptions,
    /// The file row (0-based) of the chunk's first row.
    first_row: usize,
}

impl Cx<'_> {
    fn at(&self, r: usize, what: String) -> DataError {
        let row = self.first_row + r + 1;
        DataError::new(format!("row {row}, column {}: {what}", quoted(self.name)))
            .row(row)
            .column(self.name)
    }

    /// A text cell, read as a CSV cell is.
    fn text(&self, part: &mut Part, r: usize, cell: &str) -> Result<(), DataError> {
        let cell = cell.trim();
        if self.opts.is_na(cell) {
            part.push_missing();
            return Ok(());
        }
        part.push_cell(cell, self.forced == Some(ColumnType::Numeric), false)
            .map_err(|e| self.at(r, e.describe()))
    }

    /// A number (a float's `NaN` is missing).
    fn number(&self, part: &mut Part, r: usize, x: f64) -> Result<(), DataError> {
        if x.is_nan() {
            part.push_missing();
            return Ok(());
        }
        match part {
            Part::Numbers(v) => {
                let f =
                    super::finite_f32(x).map_err(|b| self.at(r, b.describe(&number_text(x))))?;
                v.push(f);
                Ok(())
            }
            Part::Text { .. } => self.text(part, r, &number_text(x)),
        }
    }
}

fn number_text(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// A day number and the seconds into it as ISO 8601 text (`Z` when in UTC).
fn timestamp_text(days: i64, seconds: i64, utc: bool) -> String {
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    format!(
        "{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}{}",
        if utc { "Z" } else { "" }
    )
}

/// A big-endian two's-complement integer of up to 16 bytes (a decimal's unscaled value).
fn decimal_bytes(b: &[u8]) -> f64 {
    let b = &b[b.len().saturating_sub(16)..];
    let negative = b.first().is_some_and(|&x| x & 0x80 != 0);
    let mut v: i128 = if negative { -1 } else { 0 };
    for &x in b {
        v = (v << 8) | x as i128;
    }
    v as f64
}

fn date_text(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Reads a column chunk of `n` rows into a part.
fn read_column(column: ColumnReader, n: usize, cx: &Cx) -> Result<Part, DataError> {
    let kind = cx.kind;
    let mut part = Part::with_capacity(cx.forced, n);
    let mut r = 0usize;
    match column {
        ColumnReader::Int32ColumnReader(c) => each(c, n, cx, |v| {
            let Some(&v) = v else {
                return put(&mut part, &mut r, cx, None);
            };
            let x = v as i64;
            let cell = match kind {
                Kind::Date => Cell::Text(date_text(x)),
                Kind::Number { scale } => Cell::Number(x as f64 * scale),
                _ => Cell::Number(x as f64),
            };
            put(&mut part, &mut r, cx, Some(cell))
        })?,
        ColumnReader::Int64ColumnReader(c) => each(c, n, cx, |v| {
            let Some(&x) = v else {
                return put(&mut part, &mut r, cx, None);
            };
            let cell = match kind {
                Kind::Date => Cell::Text(date_text(x)),
                Kind::Timestamp { per_second, utc } => {
                    let secs = x.div_euclid(per_second);
                    Cell::Text(timestamp_text(
                        secs.div_euclid(86_400),
                        secs.rem_euclid(86_400),
                        utc,
                    ))
                }
                Kind::Number { scale } => Cell::Number(x as f64 * scale),
                _ => Cell::Number(x as f64),
            };
            put(&mut part, &mut r, cx, Some(cell))
        })?,
        ColumnReader::FloatColumnReader(c) => each(c, n, cx, |v| {
            let cell = v.map(|&x| Cell::Number(x as f64));
            put(&mut part, &mut r, cx, cell)
        })?,
        ColumnReader::DoubleColumnReader(c) => each(c, n, cx, |v| {
            let cell = v.map(|&x| Cell::Number(x));
            put(&mut part, &mut r, cx, cell)
        })?,
        ColumnReader::BoolColumnReader(c) => each(c, n, cx, |v| {
            let cell = v.map(|&b| Cell::Str(if b { "true" } else { "false" }));
            put(&mut part, &mut r, cx, cell)
        })?,
        ColumnReader::Int96ColumnReader(c) => each(c, n, cx, |v| {
            let Some(v) = v else {
                return put(&mut part, &mut r, cx, None);
            };
            let w = v.data();
            let nanos = (w[1] as i64) << 32 | w[0] as i64;
            let days = w[2] as i64 - 2_440_588;
            let cell = Cell::Text(timestamp_text(days, nanos / 1_000_000_000, false));
            put(&mut part, &mut r, cx, Some(cell))
        })?,
        ColumnReader::ByteArrayColumnReader(c) => each(c, n, cx, |v| {
            let Some(v) = v else {
                return put(&mut part, &mut r, cx, None);
            };
            if let Kind::Decimal { scale } = kind {
                let x = decimal_bytes(v.data()) * scale;
                return put(&mut part, &mut r, cx, Some(Cell::Number(x)));
            }
            let Ok(text) = std::str::from_utf8(v.data()) else {
                return Err(cx.at(r, "the value is not UTF-8 text".into()));
            };
            put(&mut part, &mut r, cx, Some(Cell::Str(text)))
        })?,
        ColumnReader::FixedLenByteArrayColumnReader(c) => each(c, n, cx, |v| {
            let Some(v) = v else {
                return put(&mut part, &mut r, cx, None);
            };
            let b = v.data();
            if let Kind::Decimal { scale } = kind {
                let x = decimal_bytes(b) * scale;
                return put(&mut part, &mut r, cx, Some(Cell::Number(x)));
            }
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            let cell = if kind == Kind::Uuid && hex.len() == 32 {
                format!(
                    "{}-{}-{}-{}-{}",
                    &hex[..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..]
                )
            } else {
                hex
            };
            put(&mut part, &mut r, cx, Some(Cell::Text(cell)))
        })?,
    }
    Ok(part)
}

/// A decoded value on its way into a part.
enum Cell<'a> {
    Number(f64),
    Text(String),
    Str(&'a str),
}

/// One row's cell (`None`: missing) into `part`, `r` its row in the chunk.
fn put(part: &mut Part, r: &mut usize, cx: &Cx, cell: Option<Cell>) -> Result<(), DataError> {
    let row = *r;
    *r += 1;
    match cell {
        None => {
            part.push_missing();
            Ok(())
        }
        Some(Cell::Number(x)) => cx.number(part, row, x),
        Some(Cell::Text(t)) => cx.text(part, row, &t),
        Some(Cell::Str(t)) => cx.text(part, row, t),
    }
}

/// Calls `f` on each of the chunk's `n` rows in order: its value, or `None` for a null.
fn each<T: DataType>(
    mut c: ColumnReaderImpl<T>,
    n: usize,
    cx: &Cx,
    mut f: impl FnMut(Option<&T::T>) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let max_def = cx.descr.max_def_level();
    let mut values: Vec<T::T> = Vec::with_capacity(BATCH.min(n));
    let mut defs: Vec<i16> = Vec::with_capacity(BATCH.min(n));
    let mut done = 0usize;
    while done < n {
        values.clear();
        defs.clear();
        let (records, _, _) = c
            .read_records(
                BATCH.min(n - done),
                (max_def > 0).then_some(&mut defs),
                None,
                &mut values,
            )
            .map_err(|e| unreadable(cx.name, &e))?;
        if records == 0 {
            break;
        }
        if max_def == 0 {
            for v in &values {
                f(Some(v))?;
            }
        } else {
            let mut next = values.iter();
            for &d in defs.iter().take(records) {
                if d == max_def {
                    let v = next.next().ok_or_else(|| {
                        DataError::new(format!(
                            "column {}: fewer values than its levels say; the file is damaged",
                            quoted(cx.name)
                        ))
                        .column(cx.name)
                    })?;
                    f(Some(v))?;
                } else {
                    f(None)?;
                }
            }
        }
        done += records;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page headers of a pyarrow file read, and claim no more than its metadata says
    /// the chunks hold decoded (headers included).
    #[test]
    fn page_headers_are_walked() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/kinds.parquet");
        let bytes = Bytes::from(std::fs::read(path).unwrap());
        let reader = SerializedFileReader::new(bytes.clone()).unwrap();
        let mut chunks = 0;
        for g in reader.metadata().row_groups() {
            for c in g.columns() {
                let (start, len) = c.byte_range();
                let (decoded, headers) = walk_pages(&bytes, start, len).unwrap();
                assert!(decoded > 0);
                assert_eq!(decoded + headers, c.uncompressed_size() as u64);
                chunks += 1;
            }
        }
        assert_eq!(chunks, 16);
        // A truncated chunk does not read; a chunk of garbage neither.
        assert_eq!(pages_size(&bytes[..10], 4, 100), None);
        assert_eq!(pages_size(&[0xff; 64], 0, 64), None);
    }

    #[test]
    fn decimal_bytes_are_twos_complement() {
        assert_eq!(decimal_bytes(&[0x01, 0x00]), 256.0);
        assert_eq!(decimal_bytes(&[0xff, 0xff]), -1.0);
        assert_eq!(decimal_bytes(&[0xff, 0x00]), -256.0);
        assert_eq!(decimal_bytes(&[0, 0, 0, 0, 0, 0xba, 0x7d]), 47741.0);
        assert_eq!(decimal_bytes(&[]), 0.0);
    }

    #[test]
    fn dates_and_timestamps_as_text() {
        assert_eq!(date_text(0), "1970-01-01");
        assert_eq!(date_text(19721), "2023-12-30");
        assert_eq!(
            timestamp_text(19722, 8 * 3600 + 61, true),
            "2023-12-31T08:01:01Z"
        );
        assert_eq!(timestamp_text(-1, 86399, false), "1969-12-31T23:59:59");
    }
}
