//! The piece splitter: an upload read as its bytes arrive, whole lines parsed a piece at a
//! time (each piece in parallel chunks), quoting followed across pieces, and each piece's
//! stored rows made while its columns are in cache.

use super::*;

/// The size of the pieces an upload hands to [`CsvStream::push`]: whole lines in pieces of at
/// least half this are parsed where they lie; bytes pushed otherwise are gathered until half
/// this is buffered, then its whole lines are parsed.
pub const PIECE: usize = if cfg!(test) { 1 << 20 } else { 8 << 20 };

/// Reads a CSV upload as its bytes arrive: whole lines are parsed a piece at a time (each
/// piece in parallel chunks) and only the parsed columns are kept, so the file's text is never
/// held whole. The result, errors included, is what [`from_csv_with`] gives for the same bytes.
pub struct CsvStream {
    pub(super) target: Option<String>,
    pub(super) limits: Limits,
    pub(super) opts: ReadOptions,
    /// Bytes not parsed yet.
    pub(super) buf: Vec<u8>,
    pub(super) head: Option<Head>,
    pub(super) chunks: Vec<Chunk>,
    /// Bytes seen, to strip a BOM at the start.
    pub(super) seen: usize,
    /// A quote character was seen: fields may span lines, so the rest is parsed in one piece.
    pub(super) quoted: bool,
    /// The header is tried again once this many bytes are buffered.
    pub(super) next_head_try: usize,
    /// Data rows parsed so far.
    pub(super) rows: usize,
    /// Quoting across every byte pushed, parsed or not.
    pub(super) scan: QuoteScan,
    /// A row limit is passed or a row is wrong: the first problem is known, the rest of the
    /// file is not kept.
    pub(super) settled: bool,
    /// Whether each piece's stored rows are made as it is parsed (see
    /// [`stream_rows`](Self::stream_rows)).
    pub(super) stream: Stream,
    /// Stored rows made and not taken yet, and the rows they hold (all made so far).
    pub(super) ready: Vec<Vec<u8>>,
    pub(super) streamed_rows: usize,
    /// The rest of the file is parsed.
    pub(super) ended: bool,
    /// The columns' stats over the pieces parsed (see [`ParsedFile`]).
    pub(super) stats: Vec<Option<NumberStats>>,
    /// What the user said of the dialect; the dialect once the file's start decided it.
    pub(super) given: DialectOptions,
    pub(super) dialect: Option<Dialect>,
    /// The file's first bytes, until they decide the dialect.
    pub(super) undecided: Vec<u8>,
    /// For a file not in the reader's own dialect, its transcoder and the buffer it fills.
    pub(super) transcoder: Option<dialect::Transcoder>,
    pub(super) transcoded: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Stream {
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
            given: DialectOptions::default(),
            dialect: None,
            undecided: Vec::new(),
            transcoder: None,
            transcoded: Vec::new(),
        }
    }

    /// Reads the file in the dialect `given` says (what it leaves out is sniffed).
    pub fn with_dialect(mut self, given: DialectOptions) -> Self {
        self.given = given;
        self
    }

    /// The dialect the file is read with, once its start decided it.
    pub fn dialect(&self) -> Option<Dialect> {
        self.dialect
    }

    /// Takes the next bytes of the file: its first [`dialect::SNIFF_BYTES`] are gathered to
    /// decide its dialect, then everything is read in the reader's own.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), DataError> {
        if self.dialect.is_none() {
            if self.undecided.is_empty() && bytes.len() >= dialect::SNIFF_BYTES {
                // Enough to decide on where it lies (an upload's first piece is).
                self.decide(bytes, false);
                return self.push_decided(bytes);
            }
            self.undecided.extend_from_slice(bytes);
            if self.undecided.len() < dialect::SNIFF_BYTES {
                return Ok(());
            }
            let head = std::mem::take(&mut self.undecided);
            self.decide(&head, false);
            return self.push_decided(&head);
        }
        self.push_decided(bytes)
    }

    fn decide(&mut self, head: &[u8], whole: bool) {
        let d = Dialect::sniff(head, whole, self.given);
        self.transcoder = (!d.is_plain()).then(|| dialect::Transcoder::new(d));
        self.dialect = Some(d);
    }

    fn push_decided(&mut self, bytes: &[u8]) -> Result<(), DataError> {
        let Some(mut t) = self.transcoder.take() else {
            return self.push_read(bytes);
        };
        let mut out = std::mem::take(&mut self.transcoded);
        out.clear();
        t.feed_par(bytes, &mut out);
        self.transcoder = Some(t);
        let read = self.push_read(&out);
        self.transcoded = out;
        read
    }

    /// The file ended: what was gathered to decide the dialect, and a last field the
    /// transcoder holds, are read (once).
    fn flush_dialect(&mut self) -> Result<(), DataError> {
        if self.dialect.is_none() {
            let head = std::mem::take(&mut self.undecided);
            self.decide(&head, true);
            if !head.is_empty() {
                self.push_decided(&head)?;
            }
        }
        if let Some(mut t) = self.transcoder.take() {
            let mut out = Vec::new();
            t.finish(&mut out);
            self.transcoded = Vec::new();
            if !out.is_empty() {
                self.push_read(&out)?;
            }
        }
        Ok(())
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

    /// Takes the next bytes of the file in the reader's dialect.
    fn push_read(&mut self, bytes: &[u8]) -> Result<(), DataError> {
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
    pub(super) fn try_head(&mut self, at_end: bool) -> Result<bool, DataError> {
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
    pub(super) fn head_in(
        &self,
        bytes: &[u8],
        at_end: bool,
    ) -> Result<Option<(Head, usize)>, DataError> {
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
        let (head, data_start) = read_head(
            bytes,
            self.target.as_deref(),
            &self.limits,
            &self.opts,
            self.dialect.as_ref(),
        )?;
        Ok(Some((head, start + data_start)))
    }

    /// Parses whole lines; `no_cr`: they are known to hold no carriage return. Returns the
    /// line ends they held.
    pub(super) fn parse_piece(&mut self, piece: &[u8], no_cr: bool) -> usize {
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
    pub(super) fn blank(&self) -> bool {
        self.head.is_none() && (self.seen == 0 || self.buf.iter().all(|b| b.is_ascii_whitespace()))
    }

    /// The file ended: parses what is left (its stored rows, when streaming, are then ready
    /// for [`take_rows`](Self::take_rows) too). [`finish_columns`](Self::finish_columns)
    /// does this first, and gives the same error.
    pub fn end(&mut self) -> Result<(), DataError> {
        self.flush_dialect()?;
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
        self.flush_dialect()?;
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
        if let Some(d) = &self.dialect {
            self.opts.decimal = Some(d.decimal as char);
        }
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
        columns.dialect = self.dialect;
        Ok(columns)
    }
}

/// Follows quoting as the CSV reader does (a quote opens a field only at the field's first
/// byte; `""` inside a quoted field is one quote), across as many pieces as the file comes
/// in, to find a quoted field that is still open when the file ends: the reader would quietly
/// take the rest of the file as that one field.
#[derive(Clone, Debug)]
pub(super) struct QuoteScan {
    /// Bytes seen (a leading UTF-8 BOM does not start a field).
    pub(super) pos: usize,
    pub(super) line: usize,
    pub(super) at_field_start: bool,
    pub(super) in_quote: bool,
    /// Inside a quoted field, the last byte was a quote: closing, or the first of `""`.
    pub(super) quote_pending: bool,
    pub(super) opened_at: usize,
}

impl QuoteScan {
    pub(super) fn new() -> Self {
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
    pub(super) fn outside_fields(&self) -> bool {
        !self.in_quote && self.pos >= 3
    }

    /// Takes `len` bytes without quote characters that end a line and hold `lines` line ends
    /// (`\n`), when [`outside_fields`](Self::outside_fields).
    pub(super) fn skip_lines(&mut self, len: usize, lines: usize) {
        self.pos += len;
        self.line += lines;
        self.at_field_start = true;
    }

    /// Takes the next bytes; whether they hold a quote character.
    pub(super) fn feed(&mut self, bytes: &[u8]) -> bool {
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
    pub(super) fn unclosed(&self) -> Option<usize> {
        (self.in_quote && !self.quote_pending).then_some(self.opened_at)
    }
}

pub(super) fn unclosed_quote(line: usize) -> DataError {
    DataError::new(format!(
        "line {line}: a quoted field opens here and is never closed, so the rest of the file would be one value; close the quote, or write a quote inside a quoted field as \"\""
    ))
}

/// A parsed chunk's stored rows and how many rows they are; `None` when a feature column of
/// it holds text (or it has an error). The rows whose target is missing are left out, as the
/// dataset leaves them out. Made as soon as the chunk is parsed (its columns still in cache),
/// in a buffer of its own: a part of a few hundred KiB, which SQLite copies in cache.
pub(super) fn stored_chunk(c: &Chunk, target: Option<usize>) -> Option<(Vec<u8>, usize)> {
    if c.error.is_some() {
        return None;
    }
    let features: Vec<&[f32]> = c
        .parts
        .iter()
        .enumerate()
        .filter(|&(j, _)| Some(j) != target)
        .map(|(_, p)| p.numbers())
        .collect::<Option<_>>()?;
    let t = target.map(|t| &c.parts[t]);
    let kept = |r: usize| t.is_none_or(|t| !t.is_missing(r));
    let rows = (0..c.lines.len()).filter(|&r| kept(r)).count();
    let mut out = vec![0u8; 4 * features.len() * rows];
    crate::data::storage::fill_stored_rows(&mut out, &features, c.lines.len(), kept);
    Some((out, rows))
}
