//! CSV uploads: a header row, then one record per row; one column is the target, the others
//! features: numbers, text categories, yes/no, with missing cells. Rows are numbered by the
//! file line they start on (header = line 1).
//!
//! Large files are read in parallel: a file without quote characters is cut at line ends
//! into chunks that are parsed on the rayon pool and joined in order, so the result (and the
//! first error reported) is the same as reading it front to back.

use std::collections::HashMap;

use ndarray::Array2;
use rayon::prelude::*;

use super::table::{CellError, NumberStats, Part, ReadOptions, decimal_cell, finish_column_with};
use super::{Columns, DataError, Dataset, Limits, name_list, quoted};
use crate::nn::tabular::ColumnType;
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
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let (head, data_start) = read_head(bytes, target, limits, opts)?;
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

/// What the header row says: the columns, the target, the user's types, and the file line
/// the data starts on.
struct Head {
    names: Vec<String>,
    target_index: usize,
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
                    crate::nn::tabular::pointer_token(name)
                )));
            }
            Some(j) if j == target_index => {
                return Err(DataError::new(format!(
                    "columns gives a type to {}, the target; types are for feature columns",
                    quoted(name)
                ))
                .column(name)
                .pointer(format!(
                    "/columns/{}",
                    crate::nn::tabular::pointer_token(name)
                )));
            }
            Some(_) => {}
        }
    }
    let forced: Vec<Option<ColumnType>> = names
        .iter()
        .enumerate()
        .map(|(j, n)| {
            (j != target_index)
                .then(|| opts.columns.get(n).copied())
                .flatten()
        })
        .collect();

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

/// The size of the pieces an upload hands to [`CsvStream::push`]: whole lines in pieces of at
/// least half this are parsed where they lie; bytes pushed otherwise are gathered until half
/// this is buffered, then its whole lines are parsed.
pub const PIECE: usize = if cfg!(test) { 1 << 20 } else { 8 << 20 };

/// Reads a CSV upload as its bytes arrive: whole lines are parsed a piece at a time (each
/// piece in parallel chunks) and only the parsed columns are kept, so the file's text is never
/// held whole. The result, errors included, is what [`from_csv_with`] gives for the same bytes.
pub struct CsvStream {
    target: Option<String>,
    limits: Limits,
    opts: ReadOptions,
    /// Bytes not parsed yet.
    buf: Vec<u8>,
    head: Option<Head>,
    chunks: Vec<Chunk>,
    /// Bytes seen, to strip a BOM at the start.
    seen: usize,
    /// A quote character was seen: fields may span lines, so the rest is parsed in one piece.
    quoted: bool,
    /// The header is tried again once this many bytes are buffered.
    next_head_try: usize,
    /// Data rows parsed so far.
    rows: usize,
    /// Quoting across every byte pushed, parsed or not.
    scan: QuoteScan,
    /// A row limit is passed or a row is wrong: the first problem is known, the rest of the
    /// file is not kept.
    settled: bool,
    /// Whether each piece's stored rows are made as it is parsed (see
    /// [`stream_rows`](Self::stream_rows)).
    stream: Stream,
    /// Stored rows made and not taken yet, and the rows they hold (all made so far).
    ready: Vec<Vec<u8>>,
    streamed_rows: usize,
    /// The rest of the file is parsed.
    ended: bool,
    /// The columns' stats over the pieces parsed (see [`ParsedFile`]).
    stats: Vec<Option<NumberStats>>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stream {
    Off,
    On,
    /// A piece could not be streamed (text in a feature column, an error) or the taker
    /// stopped: the stored rows handed out are not the dataset's.
    Stopped,
}

impl CsvStream {
    pub fn new(target: Option<&str>, limits: Limits, opts: ReadOptions) -> Self {
        CsvStream {
            target: target.map(str::to_owned),
            limits,
            opts,
            buf: Vec::new(),
            head: None,
            chunks: Vec::new(),
            seen: 0,
            quoted: false,
            next_head_try: 64 << 10,
            rows: 0,
            settled: false,
            scan: QuoteScan::new(),
            stream: Stream::Off,
            ready: Vec::new(),
            streamed_rows: 0,
            ended: false,
            stats: Vec::new(),
        }
    }

    /// Makes each piece's stored rows as it is parsed (while every feature cell so far read as
    /// a number), for [`take_rows`](Self::take_rows): an upload can be written while it is
    /// still arriving. Once a piece cannot be, streaming stops for good, and so it does when
    /// [`stop_streaming`](Self::stop_streaming) is called.
    pub fn stream_rows(&mut self) {
        if self.stream == Stream::Off && self.rows == 0 {
            self.stream = Stream::On;
        }
    }

    pub fn stop_streaming(&mut self) {
        if self.stream == Stream::On {
            self.stream = Stream::Stopped;
        }
        self.ready = Vec::new();
    }

    /// Whether the stored rows handed out so far are still the dataset's first rows.
    pub fn streaming(&self) -> bool {
        self.stream == Stream::On
    }

    /// The stored rows (`storage::fill_stored_rows`) of the pieces parsed since the last call,
    /// in file order. When the stream is still on at the end, the rows handed out, then
    /// joined in order between `Columns::stored_ends`' head and tail, are the dataset's stored
    /// form ([`Columns::streamed`] says so).
    pub fn take_rows(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.ready)
    }

    /// Takes the next bytes of the file.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), DataError> {
        if self.head.is_some()
            && !self.settled
            && !self.quoted
            && self.buf.is_empty()
            && bytes.len() >= PIECE / 2
            && bytes.last() == Some(&b'\n')
        {
            // Whole lines, nothing before them: parsed where they lie, not copied. Without
            // quotes or carriage returns (most files), their line ends are counted once, by
            // the parser.
            match memchr::memchr2(b'"', b'\r', bytes) {
                None if self.scan.outside_fields() => {
                    self.seen += bytes.len();
                    let lines = self.parse_piece(bytes, true);
                    self.scan.skip_lines(bytes.len(), lines);
                    return Ok(());
                }
                Some(i) if bytes[i] == b'\r' && memchr::memchr(b'"', &bytes[i..]).is_none() => {
                    self.scan.feed(bytes);
                    self.seen += bytes.len();
                    self.parse_piece(bytes, false);
                    return Ok(());
                }
                _ => {}
            }
        }
        // (An upload's first piece is a quarter of PIECE, less its partial last line.)
        if self.seen == 0 && bytes.len() >= PIECE / 8 && bytes.last() == Some(&b'\n') {
            // A first piece of whole lines: its header is read where it lies, and the lines
            // after it are parsed as any piece's (quoted ones are kept to be parsed at the
            // end in one piece, as the header's reading below would keep them).
            if let Some((head, data)) = self.head_in(bytes, false)? {
                self.scan.feed(bytes);
                self.seen += bytes.len();
                self.head = Some(head);
                let rest = &bytes[data..];
                self.quoted = memchr::memchr(b'"', rest).is_some();
                if self.quoted {
                    self.buf.extend_from_slice(rest);
                } else {
                    self.parse_piece(rest, false);
                }
                return Ok(());
            }
        }
        let quote = self.scan.feed(bytes);
        if self.settled {
            return Ok(());
        }
        self.seen += bytes.len();
        self.buf.extend_from_slice(bytes);
        if self.head.is_none() {
            if self.buf.len() < self.next_head_try {
                return Ok(());
            }
            self.next_head_try = self.buf.len().saturating_mul(2);
            if !self.try_head(false)? {
                return Ok(());
            }
        }
        self.quoted |= quote;
        if !self.quoted
            && self.buf.len() >= PIECE / 2
            && let Some(last) = self.buf.iter().rposition(|&b| b == b'\n')
        {
            // Parsed where it lies; only the partial line after it moves to the front.
            let buf = std::mem::take(&mut self.buf);
            self.parse_piece(&buf[..=last], false);
            if !self.settled {
                self.buf = buf;
                self.buf.drain(..=last);
            }
        }
        Ok(())
    }

    /// The header, once the buffer holds all of it (or the file ended): `false` while more
    /// bytes are needed.
    fn try_head(&mut self, at_end: bool) -> Result<bool, DataError> {
        let Some((head, data)) = self.head_in(&self.buf, at_end)? else {
            return Ok(false);
        };
        self.buf.drain(..data);
        self.quoted = memchr::memchr(b'"', &self.buf).is_some();
        self.head = Some(head);
        Ok(true)
    }

    /// The header at the start of `bytes` (after a BOM) and where the data after it starts,
    /// once the header row ends inside them (or the file ended): `None` while more bytes are
    /// needed.
    fn head_in(&self, bytes: &[u8], at_end: bool) -> Result<Option<(Head, usize)>, DataError> {
        let start = if bytes.starts_with(b"\xEF\xBB\xBF") {
            3
        } else {
            0
        };
        let bytes = &bytes[start..];
        if !at_end {
            // Only a header row that ends inside the buffer is judged (a partial one would
            // count the wrong number of columns).
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(true)
                .flexible(true)
                .from_reader(bytes);
            let ended = reader.byte_headers().is_ok()
                && usize::try_from(reader.position().byte()).is_ok_and(|p| p < bytes.len());
            if !ended {
                return Ok(None);
            }
        }
        let (head, data_start) =
            read_head(bytes, self.target.as_deref(), &self.limits, &self.opts)?;
        Ok(Some((head, start + data_start)))
    }

    /// Parses whole lines; `no_cr`: they are known to hold no carriage return. Returns the
    /// line ends they held.
    fn parse_piece(&mut self, piece: &[u8], no_cr: bool) -> usize {
        let mut line_ends = 0;
        if let Some(head) = &self.head {
            let stream = self.stream == Stream::On;
            let known = Known {
                unquoted: !self.quoted,
                no_cr,
            };
            let mut chunks = parse_data(piece, head, &self.opts, known, stream);
            line_ends = chunks.iter().map(|c| c.line_ends).sum();
            self.rows += chunks.iter().map(|c| c.lines.len()).sum::<usize>();
            let columns = head.names.len();
            self.settled = chunks.iter().any(|c| c.error.is_some())
                || self.rows > self.limits.max_rows
                || self.rows.saturating_mul(columns) > self.limits.max_cells;
            if stream {
                let stored: Option<Vec<(Vec<u8>, usize)>> = chunks
                    .iter_mut()
                    .map(|c| c.stored.take())
                    .collect::<Option<_>>()
                    .filter(|_| !self.settled);
                match stored {
                    Some(stored) => {
                        for (bytes, rows) in stored {
                            self.streamed_rows += rows;
                            if !bytes.is_empty() {
                                self.ready.push(bytes);
                            }
                        }
                    }
                    None => self.stop_streaming(),
                }
            }
            if self.stats.is_empty() {
                self.stats = new_stats(columns);
            }
            merge_stats(&mut self.stats, &mut chunks);
            self.chunks.append(&mut chunks);
            if self.settled {
                self.buf = Vec::new();
            }
        }
        line_ends
    }

    /// The file ended: parses what is left and joins everything into the dataset.
    pub fn finish(self) -> Result<Dataset, DataError> {
        self.finish_columns()?.assemble()
    }

    /// Whether what was pushed has no header row yet and nothing else but blanks.
    fn blank(&self) -> bool {
        self.head.is_none() && (self.seen == 0 || self.buf.iter().all(|b| b.is_ascii_whitespace()))
    }

    /// The file ended: parses what is left (its stored rows, when streaming, are then ready
    /// for [`take_rows`](Self::take_rows) too). [`finish_columns`](Self::finish_columns)
    /// does this first, and gives the same error.
    pub fn end(&mut self) -> Result<(), DataError> {
        if self.ended || self.blank() {
            return Ok(());
        }
        if self.head.is_none() {
            self.try_head(true)?;
        }
        let rest = std::mem::take(&mut self.buf);
        if !rest.is_empty() && !self.settled {
            self.parse_piece(&rest, false);
        }
        self.ended = true;
        Ok(())
    }

    /// As [`finish`](Self::finish), the dataset left in its columns (what an upload stores).
    pub fn finish_columns(mut self) -> Result<Columns, DataError> {
        if self.blank() {
            // As from_csv_with says of an empty file.
            return from_csv_with(&self.buf, self.target.as_deref(), &self.limits, &self.opts)
                .map(Columns::from);
        }
        self.end()?;
        let Some(head) = self.head else {
            return Err(DataError::new(
                "the file is empty; expected a header row naming the columns, then data rows",
            ));
        };
        let columns_read = head.names.len();
        let mut columns = ParsedFile {
            stats: if self.stats.is_empty() {
                new_stats(columns_read)
            } else {
                self.stats
            },
            head,
            chunks: self.chunks,
            unclosed: self.scan.unclosed(),
        }
        .join(&self.limits, &self.opts)?;
        if self.stream == Stream::On {
            columns.set_streamed(self.streamed_rows);
        }
        Ok(columns)
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

/// Follows quoting as the CSV reader does (a quote opens a field only at the field's first
/// byte; `""` inside a quoted field is one quote), across as many pieces as the file comes
/// in, to find a quoted field that is still open when the file ends: the reader would quietly
/// take the rest of the file as that one field.
#[derive(Clone, Debug)]
struct QuoteScan {
    /// Bytes seen (a leading UTF-8 BOM does not start a field).
    pos: usize,
    line: usize,
    at_field_start: bool,
    in_quote: bool,
    /// Inside a quoted field, the last byte was a quote: closing, or the first of `""`.
    quote_pending: bool,
    opened_at: usize,
}

impl QuoteScan {
    fn new() -> Self {
        QuoteScan {
            pos: 0,
            line: 1,
            at_field_start: true,
            in_quote: false,
            quote_pending: false,
            opened_at: 0,
        }
    }

    /// Whether the bytes so far end outside any field's quotes and past a BOM, so that bytes
    /// without quotes only move the position and the line.
    fn outside_fields(&self) -> bool {
        !self.in_quote && self.pos >= 3
    }

    /// Takes `len` bytes without quote characters that end a line and hold `lines` line ends
    /// (`\n`), when [`outside_fields`](Self::outside_fields).
    fn skip_lines(&mut self, len: usize, lines: usize) {
        self.pos += len;
        self.line += lines;
        self.at_field_start = true;
    }

    /// Takes the next bytes; whether they hold a quote character.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        let quote = memchr::memchr(b'"', bytes).is_some();
        // Outside a quoted field, bytes without a quote only move the position and the line,
        // and leave a field start after a comma or a line end: no need to look at each one.
        if !self.in_quote
            && self.pos >= 3
            && let Some(&last) = bytes.last()
            && !quote
        {
            self.pos += bytes.len();
            self.line += memchr::memchr_iter(b'\n', bytes).count();
            self.at_field_start = matches!(last, b',' | b'\n');
            return false;
        }
        for &b in bytes {
            self.pos += 1;
            if self.pos <= 3 && b == b"\xEF\xBB\xBF"[self.pos - 1] {
                continue;
            }
            if self.in_quote {
                if self.quote_pending {
                    self.quote_pending = false;
                    if b == b'"' {
                        continue;
                    }
                    self.in_quote = false;
                } else {
                    if b == b'"' {
                        self.quote_pending = true;
                    } else if b == b'\n' {
                        self.line += 1;
                    }
                    continue;
                }
            }
            match b {
                b'"' if self.at_field_start => {
                    self.in_quote = true;
                    self.opened_at = self.line;
                    self.at_field_start = false;
                }
                b',' => self.at_field_start = true,
                b'\n' => {
                    self.line += 1;
                    self.at_field_start = true;
                }
                _ => self.at_field_start = false,
            }
        }
        quote
    }

    /// The line where a quoted field opened that the file never closes.
    fn unclosed(&self) -> Option<usize> {
        (self.in_quote && !self.quote_pending).then_some(self.opened_at)
    }
}

fn unclosed_quote(line: usize) -> DataError {
    DataError::new(format!(
        "line {line}: a quoted field opens here and is never closed, so the rest of the file would be one value; close the quote, or write a quote inside a quoted field as \"\""
    ))
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
        let target_parts = std::mem::take(&mut per_column[target_index]);
        let target_stats = stats[target_index].take();
        // Each column keeps its parts as segments (no copy into one allocation), so columns
        // are finished all at once, in parallel.
        let built: Vec<Result<Option<super::table::BuiltColumn>, DataError>> = per_column
            .into_par_iter()
            .zip(stats)
            .enumerate()
            .map(|(j, (parts, stats))| {
                if j == target_index {
                    Ok(None)
                } else {
                    finish_column_with(&names[j], parts, opts, stats).map(Some)
                }
            })
            .collect();
        let mut features = Vec::with_capacity(columns - 1);
        for b in built {
            if let Some(c) = b? {
                features.push(c);
            }
        }
        let target_name = &names[target_index];
        let (targets, keep) = read_targets(target_parts, target_name, target_stats)?;
        Columns::new(features, targets, keep, rows, vec![target_name.clone()])
    }
}

/// The stats of columns not read yet.
fn new_stats(columns: usize) -> Vec<Option<NumberStats>> {
    vec![Some(NumberStats::of(&[])); columns]
}

/// Merges the stats of `chunks` (which follow the rows `stats` has seen) into `stats`, and
/// lets the chunks' own go; then counts the chunks' distinct numbers into each column's set
/// (the columns in parallel; a column whose set is full is passed over).
fn merge_stats(stats: &mut [Option<NumberStats>], chunks: &mut [Chunk]) {
    let mut merged = Vec::with_capacity(chunks.len());
    for (k, c) in chunks.iter_mut().enumerate() {
        if c.stats.is_empty() {
            continue;
        }
        merged.push(k);
        for (all, part) in stats.iter_mut().zip(std::mem::take(&mut c.stats)) {
            match (all.as_mut(), part) {
                (Some(a), Some(p)) => a.merge(&p),
                _ => *all = None,
            }
        }
    }
    let chunks = &*chunks;
    stats.par_iter_mut().enumerate().for_each(|(j, all)| {
        if let Some(all) = all {
            for &k in &merged {
                if let Some(v) = chunks[k].parts[j].numbers() {
                    all.count_distinct(v);
                }
            }
        }
    });
}

/// A parsed chunk's stored rows and how many rows they are; `None` when a feature column of
/// it holds text (or it has an error). The rows whose target is missing are left out, as the
/// dataset leaves them out. Made as soon as the chunk is parsed (its columns still in cache),
/// in a buffer of its own: a part of a few hundred KiB, which SQLite copies in cache.
fn stored_chunk(c: &Chunk, target: usize) -> Option<(Vec<u8>, usize)> {
    if c.error.is_some() {
        return None;
    }
    let features: Vec<&[f32]> = c
        .parts
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != target)
        .map(|(_, p)| p.numbers())
        .collect::<Option<_>>()?;
    let t = &c.parts[target];
    let rows = (0..c.lines.len()).filter(|&r| !t.is_missing(r)).count();
    let mut out = vec![0u8; 4 * features.len() * rows];
    super::storage::fill_stored_rows(&mut out, &features, c.lines.len(), |r| !t.is_missing(r));
    Some((out, rows))
}

/// What bytes to parse are known not to hold.
#[derive(Clone, Copy, Debug, Default)]
struct Known {
    /// No quote character.
    unquoted: bool,
    /// No carriage return.
    no_cr: bool,
}

/// What chunks share.
struct ChunkContext<'a> {
    known: Known,
    columns: usize,
    forced: &'a [Option<ColumnType>],
    opts: &'a ReadOptions,
}

/// One chunk's columns, the line (relative to the chunk's first) of each record read, the
/// line ends it holds, and the first error in it.
struct Chunk {
    parts: Vec<Part>,
    /// Its stored rows and their count, when asked for and it has them (see
    /// [`stored_chunk`]); taken once handed out.
    stored: Option<(Vec<u8>, usize)>,
    /// Each column's stats while its part holds numbers (taken while the chunk is in cache);
    /// emptied once merged into the file's.
    stats: Vec<Option<NumberStats>>,
    lines: Vec<usize>,
    line_ends: usize,
    error: Option<ChunkError>,
}

struct ChunkError {
    /// Relative to the chunk's first line.
    line: usize,
    kind: ChunkErrorKind,
}

enum ChunkErrorKind {
    Ragged(usize),
    NotUtf8(usize),
    Cell(usize, CellError),
}

impl ChunkError {
    fn into_data_error(self, line: usize, names: &[String]) -> DataError {
        let at = |j: usize, what: String| {
            let name = &names[j];
            DataError::new(format!("row {line}, column {}: {what}", quoted(name)))
                .row(line)
                .column(name)
        };
        match self.kind {
            ChunkErrorKind::Ragged(found) => ragged(line, names.len(), found, names),
            ChunkErrorKind::NotUtf8(j) => at(j, "the cell is not valid UTF-8 text".into()),
            ChunkErrorKind::Cell(j, e @ CellError::TextInNumeric(_)) => {
                // The user's column type is what the file contradicts: 422 at the setting.
                let pointer = format!("/columns/{}", crate::nn::tabular::pointer_token(&names[j]));
                at(j, e.describe()).pointer(pointer)
            }
            ChunkErrorKind::Cell(j, e) => at(j, e.describe()),
        }
    }
}

/// Cuts `data` at line ends into pieces for parallel parsing; a file with quote characters
/// (whose fields may span lines) stays in one piece.
fn split_chunks(data: &[u8], unquoted: bool) -> Vec<&[u8]> {
    let threads = rayon::current_num_threads().max(1);
    if data.len() < 2 * MIN_CHUNK
        || threads == 1
        || (!unquoted && memchr::memchr(b'"', data).is_some())
    {
        return vec![data];
    }
    let target = (data.len() / (threads * 4)).max(MIN_CHUNK);
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < data.len() {
        let want = start + target;
        if want >= data.len() {
            chunks.push(&data[start..]);
            break;
        }
        match data[want..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let end = want + i + 1;
                chunks.push(&data[start..end]);
                start = end;
            }
            None => {
                chunks.push(&data[start..]);
                break;
            }
        }
    }
    chunks
}

fn parse_chunk(chunk: &[u8], ctx: &ChunkContext) -> Chunk {
    // Each column's part sized for the chunk's lines up front: grown by doubling, the parts
    // held up to twice the cells they had read.
    let lf = memchr::memchr_iter(b'\n', chunk).count();
    let cr = !ctx.known.no_cr && memchr::memchr(b'\r', chunk).is_some();
    let mut parts: Vec<Part> = ctx
        .forced
        .iter()
        .map(|f| Part::with_capacity(*f, lf + 1))
        .collect();
    let (rel, error) = if cr || (!ctx.known.unquoted && memchr::memchr(b'"', chunk).is_some()) {
        read_records(chunk, ctx, &mut parts)
    } else {
        read_plain_records(chunk, ctx, &mut parts)
    };
    fill_pending(chunk, ctx, &mut parts);
    let stats = if error.is_none() {
        parts
            .iter()
            .map(|p| p.numbers().map(NumberStats::of))
            .collect()
    } else {
        Vec::new()
    };
    Chunk {
        parts,
        stored: None,
        stats,
        lines: rel,
        line_ends: if cr { count_line_ends(chunk) } else { lf },
        error,
    }
}

/// One record's cells into the columns' parts.
fn push_record<'c>(
    cells: impl Iterator<Item = &'c [u8]>,
    line: usize,
    ctx: &ChunkContext,
    parts: &mut [Part],
) -> Result<(), ChunkError> {
    for (j, cell) in cells.enumerate() {
        push_cell(j, cell, ctx, parts).map_err(|kind| ChunkError { line, kind })?;
    }
    Ok(())
}

/// One cell into column `j`'s part: a missing-value marker is a missing cell, any other cell
/// is read by its column.
#[inline]
fn push_cell(
    j: usize,
    cell: &[u8],
    ctx: &ChunkContext,
    parts: &mut [Part],
) -> Result<(), ChunkErrorKind> {
    if !ctx.opts.numeric_markers() && parts[j].push_plain_number(cell) {
        return Ok(());
    }
    let Ok(cell) = std::str::from_utf8(cell) else {
        return Err(ChunkErrorKind::NotUtf8(j));
    };
    let cell = cell.trim();
    let part = &mut parts[j];
    if ctx.opts.is_na(cell) {
        part.push_missing();
        Ok(())
    } else {
        part.push_cell(cell, ctx.forced[j] == Some(ColumnType::Numeric), false)
            .map_err(|e| ChunkErrorKind::Cell(j, e))
    }
}

/// The records of a chunk without quote characters or carriage returns: a record is a line
/// (blank lines skipped), its cells what the commas separate, exactly as the csv crate reads
/// such bytes, without its per-byte state machine. One pass: a plain decimal in a numeric
/// column is read as its end is found (each byte looked at once); any other cell's end is
/// found by memchr and the cell read by its column.
fn read_plain_records(
    chunk: &[u8],
    ctx: &ChunkContext,
    parts: &mut [Part],
) -> (Vec<usize>, Option<ChunkError>) {
    let fast = !ctx.opts.numeric_markers();
    let n = chunk.len();
    let mut rel = Vec::new();
    let (mut pos, mut line) = (0, 0);
    // The line from `from` on has this many cells, for a ragged row's message.
    let cells_from = |from: usize, cells_before: usize| {
        let end = memchr::memchr(b'\n', &chunk[from..]).map_or(n, |i| from + i);
        cells_before + 1 + memchr::memchr_iter(b',', &chunk[from..end]).count()
    };
    while pos < n {
        if chunk[pos] == b'\n' {
            pos += 1;
            line += 1;
            continue;
        }
        let record = pos;
        let mut j = 0;
        loop {
            let read = match &mut parts[j] {
                Part::Numbers(v) if fast => decimal_cell(chunk, pos).map(|(value, end)| {
                    v.push(value as f32);
                    end
                }),
                _ => None,
            };
            pos = match read {
                Some(end) => end,
                None => {
                    let end = memchr::memchr2(b',', b'\n', &chunk[pos..]).map_or(n, |i| pos + i);
                    if let Err(kind) = push_cell(j, &chunk[pos..end], ctx, parts) {
                        // A row of the wrong width is that, whatever its cells hold.
                        let found = cells_from(record, 0);
                        let kind = if found == ctx.columns {
                            kind
                        } else {
                            ChunkErrorKind::Ragged(found)
                        };
                        return (rel, Some(ChunkError { line, kind }));
                    }
                    end
                }
            };
            if pos < n && chunk[pos] == b',' {
                pos += 1;
                j += 1;
                if j == ctx.columns {
                    let kind = ChunkErrorKind::Ragged(cells_from(pos, j));
                    return (rel, Some(ChunkError { line, kind }));
                }
                continue;
            }
            // The line (or the chunk) ends.
            if j + 1 != ctx.columns {
                let kind = ChunkErrorKind::Ragged(j + 1);
                return (rel, Some(ChunkError { line, kind }));
            }
            rel.push(line);
            pos += 1;
            line += 1;
            break;
        }
    }
    (rel, None)
}

/// The records of any chunk, read by the csv crate (quoted fields, `\r` line ends).
fn read_records(
    chunk: &[u8],
    ctx: &ChunkContext,
    parts: &mut [Part],
) -> (Vec<usize>, Option<ChunkError>) {
    // No csv-level trimming: each cell is trimmed once, below.
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(chunk);
    let mut lines = Lines {
        bytes: chunk,
        pos: 0,
        line: 0,
    };
    let mut rel = Vec::new();
    let mut record = csv::ByteRecord::new();
    while let Ok(true) = reader.read_byte_record(&mut record) {
        let line = record.position().map_or(0, |p| lines.at(p.byte()));
        if record.len() != ctx.columns {
            let error = ChunkError {
                line,
                kind: ChunkErrorKind::Ragged(record.len()),
            };
            return (rel, Some(error));
        }
        if let Err(e) = push_record(record.iter(), line, ctx, parts) {
            return (rel, Some(e));
        }
        rel.push(line);
    }
    (rel, None)
}

/// Rows a column read as numbers before its first text cell get their text as written.
fn fill_pending(chunk: &[u8], ctx: &ChunkContext, parts: &mut [Part]) {
    let pending: Vec<(usize, usize)> = parts
        .iter()
        .enumerate()
        .filter(|(_, p)| p.pending() > 0)
        .map(|(j, p)| (j, p.pending()))
        .collect();
    if !pending.is_empty() {
        let most = pending.iter().map(|&(_, n)| n).max().unwrap_or(0);
        let mut cells: HashMap<usize, Vec<Option<String>>> = pending
            .iter()
            .map(|&(j, n)| (j, Vec::with_capacity(n)))
            .collect();
        let mut again = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(chunk);
        let mut record = csv::ByteRecord::new();
        let mut n = 0;
        while n < most && matches!(again.read_byte_record(&mut record), Ok(true)) {
            for (&j, out) in cells.iter_mut() {
                let cell = record
                    .get(j)
                    .and_then(|c| std::str::from_utf8(c).ok())
                    .map(str::trim)
                    .filter(|c| !ctx.opts.is_na(c))
                    .map(str::to_owned);
                out.push(cell);
            }
            n += 1;
        }
        for (j, out) in cells {
            parts[j].fill_pending(out.iter().map(|c| c.as_deref()));
        }
    }
}

/// Line ends in `b`: `\n`, `\r\n` and a lone `\r` each end a line.
fn count_line_ends(b: &[u8]) -> usize {
    let lf = memchr::memchr_iter(b'\n', b).count();
    if memchr::memchr(b'\r', b).is_none() {
        return lf;
    }
    lf + b
        .iter()
        .enumerate()
        .filter(|&(i, &c)| c == b'\r' && b.get(i + 1) != Some(&b'\n'))
        .count()
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
            self.line += count_line_ends(&self.bytes[self.pos..start]);
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
        crate::nn::tabular::Storage::Number => {
            let n = present.len();
            Targets::Values(
                Array2::from_shape_vec((n, 1), present)
                    .map_err(|e| DataError::new(format!("internal: target shape: {e}")))?,
            )
        }
        crate::nn::tabular::Storage::Text => Targets::Labels(
            present
                .into_iter()
                .map(|c| ClassLabel::Text(col.raw.vocab[c as usize].clone()))
                .collect(),
        ),
    };
    Ok((targets, (!all).then_some(keep)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::tabular::ColumnType;
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
        // an empty cell is missing; a column of nothing else is an error naming it
        let e = read_err("a,b,y\n1,,3\n");
        assert_eq!(
            parts(e),
            (
                "column \"b\" is entirely empty; remove it from the file or type it \"ignore\" (columns=b:ignore)".into(),
                None,
                Some("b".into()),
                false
            )
        );
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
                "row 1: column name \"a\" appears twice (columns 1 and 3); names must be unique"
                    .into(),
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
        let e = from_csv_with(b"a,y\n1,2\n", None, &Limits::default(), &numeric("y"))
            .expect_err("refused");
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
}
