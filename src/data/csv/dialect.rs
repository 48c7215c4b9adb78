//! File dialects: the delimiter, quote, decimal mark and encoding a file was written with —
//! given by the user or sniffed from its first lines — and the transcoder that turns such a
//! file into what the reader takes (comma-separated UTF-8 with decimal points), line for line,
//! so every row keeps its file line number. A plain CSV is not transcoded at all.
//!
//! Sniffing, on the first [`SNIFF_BYTES`] (or the whole file when smaller):
//! - the encoding: UTF-8 unless those bytes are not valid UTF-8, then Windows-1252 (which
//!   reads any byte; Latin-1 files are Windows-1252 but for unused control codes, as
//!   browsers read them);
//! - the delimiter: of comma, tab, semicolon and pipe, the one every line of the head holds
//!   the same number of times (outside quotes), the most often; when none is that regular,
//!   the one the header holds that the most lines agree with;
//! - the decimal mark: a comma when the delimiter is not one and more cells of the head read
//!   as numbers with a decimal comma (`3,5`) than with a decimal point (`1.234` votes for
//!   neither: it may be a thousand and more). With a decimal comma, points group thousands
//!   (`1.234,5` is 1234.5).

use serde::Serialize;

/// Bytes of a file's start that the sniffer reads.
pub const SNIFF_BYTES: usize = 64 << 10;

/// Lines of the head the sniffer looks at.
const SNIFF_LINES: usize = 100;

/// The delimiters sniffed, in the order ties are broken.
const DELIMITERS: [u8; 4] = [b',', b'\t', b';', b'|'];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum Encoding {
    #[default]
    #[serde(rename = "utf-8")]
    Utf8,
    #[serde(rename = "windows-1252")]
    Windows1252,
}

impl Encoding {
    /// The encoding a user names: `utf-8`, or `latin-1` / `iso-8859-1` / `windows-1252` /
    /// `cp1252` (all read as Windows-1252); any case, `_` for `-`.
    pub fn parse(s: &str) -> Option<Encoding> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "utf-8" | "utf8" => Some(Encoding::Utf8),
            "latin-1" | "latin1" | "iso-8859-1" | "windows-1252" | "cp1252" => {
                Some(Encoding::Windows1252)
            }
            _ => None,
        }
    }
}

/// What the user said of a file's dialect; `None` is sniffed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DialectOptions {
    pub delimiter: Option<u8>,
    pub quote: Option<u8>,
    pub decimal: Option<u8>,
    pub encoding: Option<Encoding>,
}

/// The dialect a file was read with, and which of it was sniffed (not given).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dialect {
    pub delimiter: u8,
    pub quote: u8,
    pub decimal: u8,
    pub encoding: Encoding,
    pub sniffed_delimiter: bool,
    pub sniffed_decimal: bool,
    pub sniffed_encoding: bool,
}

impl Default for Dialect {
    fn default() -> Self {
        Dialect {
            delimiter: b',',
            quote: b'"',
            decimal: b'.',
            encoding: Encoding::Utf8,
            sniffed_delimiter: false,
            sniffed_decimal: false,
            sniffed_encoding: false,
        }
    }
}

/// A delimiter as messages name it: `tab`, or the character in quotes.
pub fn delimiter_name(b: u8) -> String {
    match b {
        b'\t' => "tab".into(),
        b => format!("\"{}\"", b as char),
    }
}

impl Serialize for Dialect {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown {
            delimiter: String,
            quote: String,
            decimal: String,
            encoding: Encoding,
            sniffed: Vec<&'static str>,
        }
        let sniffed = [
            (self.sniffed_delimiter, "delimiter"),
            (self.sniffed_decimal, "decimal"),
            (self.sniffed_encoding, "encoding"),
        ]
        .into_iter()
        .filter_map(|(s, name)| s.then_some(name))
        .collect();
        Shown {
            delimiter: (self.delimiter as char).to_string(),
            quote: (self.quote as char).to_string(),
            decimal: (self.decimal as char).to_string(),
            encoding: self.encoding,
            sniffed,
        }
        .serialize(s)
    }
}

impl Dialect {
    /// Whether the reader takes the file as it is.
    pub fn is_plain(&self) -> bool {
        self.delimiter == b','
            && self.quote == b'"'
            && self.decimal == b'.'
            && self.encoding == Encoding::Utf8
    }

    /// The dialect of a file that starts with `head` (all of it when `whole`): what `given`
    /// says, the rest sniffed.
    pub fn sniff(head: &[u8], whole: bool, given: DialectOptions) -> Dialect {
        let mut d = Dialect {
            quote: given.quote.unwrap_or(b'"'),
            ..Dialect::default()
        };
        d.encoding = match given.encoding {
            Some(e) => e,
            None => match std::str::from_utf8(head) {
                // Invalid, not cut short at the head's end.
                Err(e) if e.error_len().is_some() => Encoding::Windows1252,
                _ => Encoding::Utf8,
            },
        };
        d.sniffed_encoding = given.encoding.is_none();
        d.sniffed_delimiter = given.delimiter.is_none();
        d.sniffed_decimal = given.decimal.is_none();
        let text = decode(head, d.encoding);
        let end = if whole {
            text.len()
        } else {
            memchr::memrchr(b'\n', &text).map_or(0, |i| i + 1)
        };
        let lines: Vec<&[u8]> = text[..end]
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .take(SNIFF_LINES)
            .collect();
        d.delimiter = match given.delimiter {
            Some(b) => b,
            None => sniff_delimiter(&lines, d.quote),
        };
        d.decimal = match given.decimal {
            Some(b) => b,
            None if d.delimiter != b',' => {
                let (comma, point) =
                    decimal_votes(lines.get(1..).unwrap_or(&[]), d.delimiter, d.quote);
                if comma > point { b',' } else { b'.' }
            }
            None => b'.',
        };
        d
    }
}

/// How many times each line holds `delim` outside quotes.
fn counts(lines: &[&[u8]], delim: u8, quote: u8) -> Vec<usize> {
    lines
        .iter()
        .map(|l| {
            let mut inside = false;
            l.iter()
                .filter(|&&b| {
                    if b == quote {
                        inside = !inside;
                    }
                    !inside && b == delim
                })
                .count()
        })
        .collect()
}

fn sniff_delimiter(lines: &[&[u8]], quote: u8) -> u8 {
    let per: Vec<(u8, Vec<usize>)> = DELIMITERS
        .iter()
        .map(|&d| (d, counts(lines, d, quote)))
        .collect();
    // Regular: the same count, at least one, on every line.
    let regular = per
        .iter()
        .filter(|(_, c)| {
            c.first()
                .is_some_and(|&n| n > 0 && c.iter().all(|&k| k == n))
        })
        .max_by_key(|(d, c)| {
            (
                c[0],
                std::cmp::Reverse(DELIMITERS.iter().position(|x| x == d)),
            )
        });
    if let Some((d, _)) = regular {
        return *d;
    }
    // Otherwise the header's count that the most lines agree with.
    per.iter()
        .filter(|(_, c)| c.first().is_some_and(|&n| n > 0))
        .max_by_key(|(d, c)| {
            (
                c.iter().filter(|&&k| k == c[0]).count(),
                std::cmp::Reverse(DELIMITERS.iter().position(|x| x == d)),
            )
        })
        .map_or(b',', |(d, _)| *d)
}

/// Cells of `lines` that read as numbers with a decimal comma, and with a decimal point.
fn decimal_votes(lines: &[&[u8]], delim: u8, quote: u8) -> (usize, usize) {
    let (mut comma, mut point) = (0, 0);
    for l in lines {
        for cell in l.split(|&b| b == delim) {
            let cell = cell.trim_ascii();
            let cell = cell
                .strip_prefix(&[quote])
                .and_then(|c| c.strip_suffix(&[quote]))
                .unwrap_or(cell);
            if let Some((int, frac)) = split_once(cell, b',') {
                if is_grouped(int, b'.') && is_digits(frac) {
                    comma += 1;
                }
            } else if let Some((int, frac)) = split_once(cell, b'.')
                && is_digits(signless(int))
                && is_digits(frac)
                // `1.234` may be a thousand and more with a decimal comma: no vote.
                && !(frac.len() == 3 && signless(int).len() <= 3)
            {
                point += 1;
            }
        }
    }
    (comma, point)
}

fn split_once(s: &[u8], b: u8) -> Option<(&[u8], &[u8])> {
    let i = memchr::memrchr(b, s)?;
    Some((&s[..i], &s[i + 1..]))
}

fn signless(s: &[u8]) -> &[u8] {
    s.strip_prefix(b"-")
        .or_else(|| s.strip_prefix(b"+"))
        .unwrap_or(s)
}

fn is_digits(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(u8::is_ascii_digit)
}

/// A whole number, signed or not, plain or grouped in threes by `sep` (`1.234.567`).
fn is_grouped(s: &[u8], sep: u8) -> bool {
    let mut groups = signless(s).split(|&b| b == sep);
    let first = groups.next().unwrap_or_default();
    if !is_digits(first) {
        return false;
    }
    let mut grouped = false;
    for g in groups {
        if g.len() != 3 || !is_digits(g) {
            return false;
        }
        grouped = true;
    }
    !grouped || first.len() <= 3
}

/// A number written with a decimal comma (points grouping thousands) in the reader's form;
/// `None` for any other cell.
#[cfg(test)]
fn decimal_comma_number(cell: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    write_decimal_comma(cell, &mut out).then_some(out)
}

/// Writes [`decimal_comma_number`]'s form of `cell` to `out`; false (nothing written) when
/// it is not such a number.
fn write_decimal_comma(cell: &[u8], out: &mut Vec<u8>) -> bool {
    // One pass, writing as it reads; undone when the cell turns out not to be one.
    let t = cell.trim_ascii();
    let start = out.len();
    let mut i = 0;
    if let Some(&sign @ (b'-' | b'+')) = t.first() {
        out.push(sign);
        i = 1;
    }
    // Digits in the current run, thousands points seen, and whether the comma was.
    let (mut run, mut groups, mut comma) = (0usize, 0usize, false);
    let mut ok = true;
    for &b in &t[i..] {
        match b {
            b'0'..=b'9' => {
                out.push(b);
                run += 1;
            }
            b'.' if !comma && run > 0 && (if groups == 0 { run <= 3 } else { run == 3 }) => {
                groups += 1;
                run = 0;
            }
            b',' if !comma && run > 0 && (groups == 0 || run == 3) => {
                out.push(b'.');
                comma = true;
                run = 0;
            }
            _ => {
                ok = false;
                break;
            }
        }
    }
    // A comma with digits after it, or thousands points closed by a group of three.
    ok &= if comma {
        run > 0
    } else {
        groups > 0 && run == 3
    };
    if !ok {
        out.truncate(start);
    }
    ok
}

/// Windows-1252's characters for bytes 0x80–0x9F (the rest of the upper half is Latin-1's);
/// its five unused codes read as the C1 controls, as in Latin-1.
const CP1252_HIGH: [char; 32] = [
    '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž', '\u{8f}',
    '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}', 'ž', 'Ÿ',
];

/// `bytes` as UTF-8.
fn decode(bytes: &[u8], e: Encoding) -> std::borrow::Cow<'_, [u8]> {
    match e {
        Encoding::Utf8 => std::borrow::Cow::Borrowed(bytes),
        Encoding::Windows1252 => {
            if bytes.is_ascii() {
                return std::borrow::Cow::Borrowed(bytes);
            }
            let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 8);
            let mut buf = [0; 4];
            for &b in bytes {
                if b < 0x80 {
                    out.push(b);
                } else {
                    let c = match b {
                        0x80..=0x9f => CP1252_HIGH[(b - 0x80) as usize],
                        _ => b as char,
                    };
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
            std::borrow::Cow::Owned(out)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At a field's start.
    Start,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: its end, or the first of a doubled quote.
    QuoteSeen,
}

/// Turns a file of one dialect into the reader's, a piece at a time (fields may span pieces).
pub struct Transcoder {
    d: Dialect,
    state: State,
    field: Vec<u8>,
    /// The field so far has a comma, quote or line end (it must be quoted).
    special: bool,
}

impl Transcoder {
    pub fn new(d: Dialect) -> Self {
        Transcoder {
            d,
            state: State::Start,
            field: Vec::new(),
            special: false,
        }
    }

    /// The reader's form of `bytes`, appended to `out`; a field not finished is kept for
    /// the next piece (or [`finish`](Self::finish)).
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let text = decode(bytes, self.d.encoding);
        let text: &[u8] = &text;
        out.reserve(text.len() + text.len() / 16);
        let (delim, quote) = (self.d.delimiter, self.d.quote);
        let mut i = 0;
        while i < text.len() {
            if self.state == State::Start && text[i] != quote {
                // An unquoted field, up to the next delimiter or line end: written from where
                // it lies (most fields of most files).
                let Some(k) = memchr::memchr3(delim, b'\n', b'\r', &text[i..]) else {
                    // It goes on in the next piece.
                    for &b in &text[i..] {
                        self.take(b);
                    }
                    self.state = State::Unquoted;
                    break;
                };
                let end = i + k;
                let field = &text[i..end];
                let special = memchr::memchr2(b',', b'"', field).is_some();
                write_field(self.d.decimal, field, special, out);
                out.push(if text[end] == delim { b',' } else { text[end] });
                i = end + 1;
                continue;
            }
            let b = text[i];
            i += 1;
            match self.state {
                State::Start => self.state = State::Quoted,
                State::Unquoted => {
                    if b == delim {
                        self.emit(out);
                        out.push(b',');
                    } else if b == b'\n' || b == b'\r' {
                        self.emit(out);
                        out.push(b);
                    } else {
                        self.take(b);
                    }
                }
                State::Quoted => {
                    if b == quote {
                        self.state = State::QuoteSeen;
                    } else {
                        self.take(b);
                    }
                }
                State::QuoteSeen => {
                    if b == quote {
                        self.take(b);
                        self.state = State::Quoted;
                    } else {
                        // The field's closing quote; what follows is read unquoted.
                        self.state = State::Unquoted;
                        i -= 1;
                    }
                }
            }
        }
    }

    /// As [`feed`](Self::feed), on the rayon pool when `bytes` are many and hold no quote
    /// character: cut at line ends into runs, each transcoded from a field's start (as the
    /// reader parses chunks), joined in order; the last run's state goes on.
    pub fn feed_par(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        use rayon::prelude::*;
        const MIN_RUN: usize = 1 << 20;
        let runs = rayon::current_num_threads() * 2;
        if runs < 4
            || bytes.len() < 2 * MIN_RUN
            || self.state != State::Start
            || memchr::memchr(self.d.quote, bytes).is_some()
        {
            return self.feed(bytes, out);
        }
        let step = (bytes.len() / runs).max(MIN_RUN);
        let mut cuts = vec![0];
        let mut at = 0;
        while at + step < bytes.len() {
            match memchr::memchr(b'\n', &bytes[at + step..]) {
                Some(i) => {
                    at += step + i + 1;
                    cuts.push(at);
                }
                None => break,
            }
        }
        if cuts.last() != Some(&bytes.len()) {
            cuts.push(bytes.len());
        }
        let d = self.d;
        let mut done: Vec<(Vec<u8>, Transcoder)> = cuts
            .windows(2)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|w| {
                let mut t = Transcoder::new(d);
                let mut o = Vec::new();
                t.feed(&bytes[w[0]..w[1]], &mut o);
                (o, t)
            })
            .collect();
        out.reserve(done.iter().map(|(o, _)| o.len()).sum());
        for (o, _) in &done {
            out.extend_from_slice(o);
        }
        if let Some((_, last)) = done.pop() {
            self.state = last.state;
            self.field = last.field;
            self.special = last.special;
        }
    }

    /// The last field, when the file does not end with a line end.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.state != State::Start || !self.field.is_empty() {
            self.emit(out);
        }
    }

    fn take(&mut self, b: u8) {
        self.special |= matches!(b, b',' | b'"' | b'\n' | b'\r');
        self.field.push(b);
    }

    /// The field read, in the reader's form.
    fn emit(&mut self, out: &mut Vec<u8>) {
        write_field(self.d.decimal, &self.field, self.special, out);
        self.field.clear();
        self.special = false;
        self.state = State::Start;
    }
}

/// A field in the reader's form: a number with a decimal comma (when that is the mark) with
/// a point, a field holding a comma or quote (`special`) quoted.
fn write_field(decimal: u8, field: &[u8], special: bool, out: &mut Vec<u8>) {
    if decimal == b',' && write_decimal_comma(field, out) {
        return;
    }
    if special {
        out.push(b'"');
        for &b in field {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(field);
    }
}

/// A whole file in the reader's form.
pub fn transcode(bytes: &[u8], d: Dialect) -> Vec<u8> {
    let mut t = Transcoder::new(d);
    let mut out = Vec::new();
    t.feed(bytes, &mut out);
    t.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sniffed(s: &str) -> Dialect {
        Dialect::sniff(s.as_bytes(), true, DialectOptions::default())
    }

    #[test]
    fn sniffs_the_delimiter_every_line_agrees_on() {
        assert_eq!(sniffed("a,b,c\n1,2,3\n").delimiter, b',');
        assert_eq!(sniffed("a;b;c\n1,5;2;3\n4;5,5;6\n").delimiter, b';');
        assert_eq!(sniffed("a\tb\n1\t2\n").delimiter, b'\t');
        assert_eq!(sniffed("a|b\n\"x|y\"|2\n").delimiter, b'|');
        // Commas inside a text field do not make it comma-separated.
        assert_eq!(
            sniffed("name;city\nAnn;Paris, France\nBo;Rome, Italy\n").delimiter,
            b';'
        );
        // One column: nothing to split on.
        let one = sniffed("y\n1\n2\n");
        assert_eq!(one.delimiter, b',');
        assert!(one.is_plain());
        // A ragged file: the header's count most lines share.
        assert_eq!(sniffed("a;b\n1;2\n3;4;5\n6;7\n").delimiter, b';');
    }

    #[test]
    fn sniffs_a_decimal_comma_only_where_commas_do_not_delimit() {
        let d = sniffed("Stadt;Preis\nBerlin;1.234,50\nKöln;980,00\n");
        assert_eq!((d.delimiter, d.decimal), (b';', b','));
        assert!(d.sniffed_delimiter && d.sniffed_decimal && d.sniffed_encoding);
        let given = DialectOptions {
            delimiter: Some(b';'),
            ..DialectOptions::default()
        };
        let d = Dialect::sniff(b"a;b\n1,5;2\n", true, given);
        assert!(!d.sniffed_delimiter && d.sniffed_decimal);
        assert_eq!(sniffed("a;b\n1.5;2\n2.5;3\n").decimal, b'.');
        assert_eq!(sniffed("a,b\n\"1,5\",2\n").decimal, b'.');
    }

    #[test]
    fn sniffs_windows_1252_from_bytes_that_are_not_utf8() {
        let d = Dialect::sniff(
            b"Stadt;Gr\xf6\xdfe\nK\xf6ln;3\n",
            true,
            DialectOptions::default(),
        );
        assert_eq!(d.encoding, Encoding::Windows1252);
        assert_eq!(
            transcode(b"Stadt;Gr\xf6\xdfe\nK\xf6ln;3\n\x80;1\n", d),
            "Stadt,Größe\nKöln,3\n€,1\n".as_bytes()
        );
        // A multi-byte character cut at the head's end is still UTF-8.
        let cut = &"a;é".as_bytes()[..4];
        assert_eq!(
            Dialect::sniff(cut, false, DialectOptions::default()).encoding,
            Encoding::Utf8
        );
    }

    #[test]
    fn transcodes_line_for_line_quoting_what_needs_it() {
        let d = sniffed("a;b;c\n1,5;x;y\n");
        let out = transcode(
            b"a;b;c\n1.234,5;\"say \"\"hi\"\"\";Paris, France\n\n-0,25;\"two\nlines\";\r\n7;;",
            d,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a,b,c\n1234.5,\"say \"\"hi\"\"\",\"Paris, France\"\n\n-0.25,\"two\nlines\",\r\n7,,"
        );
    }

    #[test]
    fn transcodes_across_pieces_as_in_one() {
        let file: &[u8] = b"x;\"a;b\"\"c\";1,5\n2;\"d\ne\";3,25\n";
        let d = Dialect::sniff(file, true, DialectOptions::default());
        let whole = transcode(file, d);
        for cut in 0..file.len() {
            let mut t = Transcoder::new(d);
            let mut out = Vec::new();
            t.feed(&file[..cut], &mut out);
            t.feed(&file[cut..], &mut out);
            t.finish(&mut out);
            assert_eq!(out, whole, "cut at {cut}");
        }
    }

    #[test]
    fn transcodes_in_parallel_runs_as_in_one() {
        let mut file = String::from("a;b;c\n");
        let mut i = 0;
        while file.len() < 5 << 20 {
            file.push_str(&format!("{i},5;Paris, FR;{}\r\n", i % 7));
            i += 1;
        }
        file.push_str("7;8"); // a last line without its end
        let d = Dialect::sniff(file.as_bytes(), true, DialectOptions::default());
        let whole = transcode(file.as_bytes(), d);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        let mut t = Transcoder::new(d);
        let mut out = Vec::new();
        pool.install(|| t.feed_par(file.as_bytes(), &mut out));
        t.finish(&mut out);
        assert!(out == whole, "parallel runs differ");
    }

    #[test]
    fn decimal_comma_numbers_and_what_is_not_one() {
        let n = |s: &str| decimal_comma_number(s.as_bytes()).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(n("3,5").as_deref(), Some("3.5"));
        assert_eq!(n(" -1.234.567,89 ").as_deref(), Some("-1234567.89"));
        assert_eq!(n("1.234").as_deref(), Some("1234"));
        assert_eq!(n("12"), None);
        assert_eq!(n("1.5"), None);
        assert_eq!(n("12.34,5"), None);
        assert_eq!(n("a,5"), None);
        assert_eq!(n("3,"), None);
    }

    #[test]
    fn names_and_shows_what_it_read() {
        assert_eq!(Encoding::parse("Latin_1"), Some(Encoding::Windows1252));
        assert_eq!(Encoding::parse("UTF8"), Some(Encoding::Utf8));
        assert_eq!(Encoding::parse("ebcdic"), None);
        let d = sniffed("a;b\n1,5;2\n");
        assert_eq!(
            serde_json::to_value(d).unwrap(),
            serde_json::json!({"delimiter": ";", "quote": "\"", "decimal": ",",
                               "encoding": "utf-8", "sniffed": ["delimiter", "decimal", "encoding"]})
        );
    }
}
