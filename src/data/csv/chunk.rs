//! The one-pass reader: a chunk of whole lines into column parts, a plain decimal read as
//! its end is found, quoted chunks by the csv crate, file line numbers kept for errors.

use super::*;

/// What bytes to parse are known not to hold.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Known {
    /// No quote character.
    pub(super) unquoted: bool,
    /// No carriage return.
    pub(super) no_cr: bool,
}

/// What chunks share.
pub(super) struct ChunkContext<'a> {
    pub(super) known: Known,
    pub(super) columns: usize,
    pub(super) forced: &'a [Option<ColumnType>],
    pub(super) opts: &'a ReadOptions,
}

/// One chunk's columns, the line (relative to the chunk's first) of each record read, the
/// line ends it holds, and the first error in it.
pub(super) struct Chunk {
    pub(super) parts: Vec<Part>,
    /// Its stored rows and their count, when asked for and it has them (see
    /// [`stored_chunk`]); taken once handed out.
    pub(super) stored: Option<(Vec<u8>, usize)>,
    /// Each column's stats while its part holds numbers (taken while the chunk is in cache);
    /// emptied once merged into the file's.
    pub(super) stats: Vec<Option<NumberStats>>,
    pub(super) lines: Vec<usize>,
    pub(super) line_ends: usize,
    pub(super) error: Option<ChunkError>,
}

pub(super) struct ChunkError {
    /// Relative to the chunk's first line.
    pub(super) line: usize,
    pub(super) kind: ChunkErrorKind,
}

pub(super) enum ChunkErrorKind {
    Ragged(usize),
    NotUtf8(usize),
    Cell(usize, CellError),
}

impl ChunkError {
    pub(super) fn into_data_error(self, line: usize, names: &[String]) -> DataError {
        let at = |j: usize, what: String| {
            let name = &names[j];
            DataError::new(format!("row {line}, column {}: {what}", quoted(name)))
                .row(line)
                .column(name)
        };
        match self.kind {
            ChunkErrorKind::Ragged(found) => ragged(line, names.len(), found, names),
            ChunkErrorKind::NotUtf8(j) => at(
                j,
                "the cell is not valid UTF-8 text; if the file is in Latin-1 or Windows-1252, \
                 say ?encoding=windows-1252"
                    .into(),
            ),
            ChunkErrorKind::Cell(j, e @ CellError::TextInNumeric(_)) => {
                // The user's column type is what the file contradicts: 422 at the setting.
                let pointer = format!(
                    "/columns/{}",
                    crate::nn::portable::tabular::pointer_token(&names[j])
                );
                at(j, e.describe()).pointer(pointer)
            }
            ChunkErrorKind::Cell(j, e) => at(j, e.describe()),
        }
    }
}

/// Cuts `data` at line ends into pieces for parallel parsing; a file with quote characters
/// (whose fields may span lines) stays in one piece.
pub(super) fn split_chunks(data: &[u8], unquoted: bool) -> Vec<&[u8]> {
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

pub(super) fn parse_chunk(chunk: &[u8], ctx: &ChunkContext) -> Chunk {
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
pub(super) fn push_record<'c>(
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
pub(super) fn push_cell(
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
pub(super) fn read_plain_records(
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
pub(super) fn read_records(
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
pub(super) fn fill_pending(chunk: &[u8], ctx: &ChunkContext, parts: &mut [Part]) {
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
pub(super) fn count_line_ends(b: &[u8]) -> usize {
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
pub(super) struct Lines<'a> {
    pub(super) bytes: &'a [u8],
    /// Offset up to which line ends have been counted.
    pub(super) pos: usize,
    pub(super) line: usize,
}

impl Lines<'_> {
    pub(super) fn at(&mut self, offset: u64) -> usize {
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
