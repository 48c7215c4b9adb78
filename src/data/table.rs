//! Columns as they are read: numbers until a cell says otherwise, then text; missing cells
//! (`na_values`, JSON `null`) as `NaN`. Then the inference a careful data scientist would make
//! (numeric, categorical, boolean-like, ignored ids), the user's upload-time overrides, and the
//! raw table a [`Dataset`](super::Dataset) holds.

use std::collections::{BTreeMap, HashMap};

use super::{BadNumber, DataError, finite_f32, quoted};
use crate::nn::portable::tabular::{ColumnType, RawColumn, Storage, number_key};
use crate::nn::portable::values::DateOrder;
use crate::nn::portable::vocab::Vocab;

/// The cells read as missing when no `na_values` is given (compared ignoring case; an empty
/// cell is always missing).
pub const DEFAULT_NA_VALUES: [&str; 5] = ["NA", "N/A", "NaN", "null", "?"];

/// How an upload is read: the missing-value markers and the user's column types.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadOptions {
    /// Lower-cased markers of a missing cell.
    na_values: Vec<String>,
    /// Whether a marker begins like a number (then every cell must be compared).
    na_numeric: bool,
    /// Column name → type, applied at upload.
    pub columns: BTreeMap<String, ColumnType>,
    /// Column name → the day/month order of its dates, when the user says it.
    pub date_orders: BTreeMap<String, DateOrder>,
    /// Column name → whether its day of the week is an input, when the user says it.
    pub date_weekdays: BTreeMap<String, bool>,
    /// The file's decimal mark when its dialect says one (a hint for formatted numbers).
    pub decimal: Option<char>,
    /// The thousands separator the user says (`?thousands=`); inferred per column otherwise.
    pub thousands: Option<char>,
    /// The file has no target (`?labels=none`): every column is a feature, every row kept.
    pub no_target: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions::new(None, BTreeMap::new())
    }
}

impl ReadOptions {
    /// `na_values` replaces the default list when given.
    pub fn new(na_values: Option<&[String]>, columns: BTreeMap<String, ColumnType>) -> Self {
        let na_values: Vec<String> = match na_values {
            Some(v) => v.iter().map(|s| s.trim().to_lowercase()).collect(),
            None => DEFAULT_NA_VALUES.iter().map(|s| s.to_lowercase()).collect(),
        };
        let na_numeric = na_values
            .iter()
            .any(|n: &String| n.starts_with(|c: char| c.is_ascii_digit() || "+-.".contains(c)));
        ReadOptions {
            na_values,
            na_numeric,
            columns,
            date_orders: BTreeMap::new(),
            date_weekdays: BTreeMap::new(),
            decimal: None,
            thousands: None,
            no_target: false,
        }
    }

    /// Whether a missing-value marker begins like a number (`-999`, `0`): then a cell that
    /// reads as a number may still be missing.
    pub fn numeric_markers(&self) -> bool {
        self.na_numeric
    }

    /// Whether a trimmed cell is missing.
    pub fn is_na(&self, cell: &str) -> bool {
        let Some(&first) = cell.as_bytes().first() else {
            return true;
        };
        // Most cells of a large file are numbers: no marker can match them.
        if !self.na_numeric && (first.is_ascii_digit() || first == b'-' || first == b'.') {
            return false;
        }
        self.na_values.iter().any(|n| n.eq_ignore_ascii_case(cell))
    }

    pub(super) fn forced(&self, name: &str) -> Option<ColumnType> {
        self.columns.get(name).copied()
    }

    pub(super) fn date_order(&self, name: &str) -> Option<DateOrder> {
        self.date_orders.get(name).copied()
    }
}

/// Why a cell could not be taken, for the reader to place at its row and column.
pub enum CellError {
    BadNumber(BadNumber, String),
    /// Text in a column the user typed numeric.
    TextInNumeric(String),
}

impl CellError {
    pub fn describe(&self) -> String {
        match self {
            CellError::BadNumber(b, cell) => b.describe(&quoted(cell)),
            CellError::TextInNumeric(cell) => format!(
                "{} is not a number, and the column is typed \"numeric\"; type it \"categorical\" or fix the cell",
                quoted(cell)
            ),
        }
    }
}

/// One column's cells over a run of rows (a chunk of a file, or all of it).
#[derive(Debug)]
pub enum Part {
    /// Every cell so far a number (or missing, `NaN`).
    Numbers(Vec<f32>),
    /// Text: `codes` index `vocab` (`u32::MAX` is missing). The first `pending` rows were
    /// numbers read before the first text cell: the reader fills them in with their exact
    /// text (see [`Part::fill_pending`]).
    Text {
        pending: usize,
        codes: Vec<u32>,
        vocab: Vocab,
        /// `vocab`'s codes by the hash of their text: each text is held once (in `vocab`'s
        /// one buffer), not again as a map key, so a column of distinct strings costs about
        /// its bytes and a few more each.
        index: Interner,
    },
}

/// Finds a text's code in a vocabulary without a second copy of the text: a hash table of
/// codes whose keys are the vocabulary's own texts.
#[derive(Debug, Default)]
pub struct Interner {
    table: hashbrown::HashTable<u32>,
    hasher: std::hash::RandomState,
}

impl Interner {
    /// The code of `s` in `vocab`, adding it first if it is new.
    fn code(&mut self, vocab: &mut Vocab, s: &str) -> u32 {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(s);
        if let Some(&c) = self.table.find(hash, |&c| &vocab[c as usize] == s) {
            return c;
        }
        let c = vocab.len() as u32;
        vocab.push(s);
        let hasher = &self.hasher;
        self.table
            .insert_unique(hash, c, |&c| hasher.hash_one(&vocab[c as usize]));
        c
    }
}

const MISSING: u32 = u32::MAX;

/// Powers of ten an f64 holds exactly.
const EXACT_POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The value of a plain decimal (`-12.375`, `0.1234`, `42`: an optional `-` or `+`, digits,
/// at most one `.` with digits on at least one side, no exponent) whose digits, read as an
/// integer, are below 2^53 (19 digits at most): that integer and the power of ten are
/// then exact in an f64, and their quotient is the correctly rounded value,
/// the same f64 `str::parse` gives (Clinger's fast path). `None` for anything else, which
/// `str::parse` then reads. Most cells of a numeric file are such decimals, read here without
/// the general parser's work.
#[inline]
pub(crate) fn simple_decimal(b: &[u8]) -> Option<f64> {
    match decimal_prefix(b, 0) {
        Some((v, end)) if end == b.len() => Some(v),
        _ => None,
    }
}

/// [`simple_decimal`] of the cell that starts at `start` and ends at the next `,` or `\n`
/// (or the end of `b`), and where it ends: the CSV reader reads a numeric cell as it finds
/// its end, each byte looked at once.
#[inline]
pub(crate) fn decimal_cell(b: &[u8], start: usize) -> Option<(f64, usize)> {
    match decimal_prefix(b, start) {
        Some((v, end)) if end == b.len() || b[end] == b',' || b[end] == b'\n' => Some((v, end)),
        _ => None,
    }
}

/// The plain decimal at the start of `b[start..]` (see [`simple_decimal`]) and the index of
/// the first byte after it.
#[inline(always)]
fn decimal_prefix(b: &[u8], start: usize) -> Option<(f64, usize)> {
    let n = b.len();
    let mut i = start;
    let negative = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    // Wrapping: a run of more than 19 digits is refused below, whatever it wrapped to.
    let mut mantissa: u64 = 0;
    let digits = |i: &mut usize, mantissa: &mut u64| {
        let first = *i;
        while *i < n {
            let d = b[*i].wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            *mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d));
            *i += 1;
        }
        *i - first
    };
    let whole = digits(&mut i, &mut mantissa);
    let mut fraction = 0;
    if i < n && b[i] == b'.' {
        i += 1;
        fraction = digits(&mut i, &mut mantissa);
    }
    // 19 digits fit in a u64; the quotient is exact-rounded only below 2^53.
    if whole + fraction == 0 || whole + fraction > 19 || mantissa >= 1 << 53 {
        return None;
    }
    let value = mantissa as f64 / EXACT_POW10[fraction];
    Some((if negative { -value } else { value }, i))
}

impl Part {
    pub fn new(forced: Option<ColumnType>) -> Self {
        match forced {
            Some(ColumnType::Categorical) => Part::text(0),
            _ => Part::Numbers(Vec::new()),
        }
    }

    /// As [`new`](Self::new), with room for `rows` numbers.
    pub fn with_capacity(forced: Option<ColumnType>, rows: usize) -> Self {
        match forced {
            Some(ColumnType::Categorical) => Part::text(0),
            _ => Part::Numbers(Vec::with_capacity(rows)),
        }
    }

    fn text(pending: usize) -> Self {
        Part::Text {
            pending,
            codes: Vec::new(),
            vocab: Vocab::new(),
            index: Interner::default(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Part::Numbers(v) => v.len(),
            Part::Text { pending, codes, .. } => pending + codes.len(),
        }
    }

    /// The numbers, while every cell so far read as one.
    pub fn numbers(&self) -> Option<&[f32]> {
        match self {
            Part::Numbers(v) => Some(v),
            Part::Text { .. } => None,
        }
    }

    /// Whether row `r`'s cell is missing (once [`fill_pending`](Self::fill_pending) is done).
    pub fn is_missing(&self, r: usize) -> bool {
        match self {
            Part::Numbers(v) => v.get(r).is_some_and(|x| x.is_nan()),
            Part::Text { pending, codes, .. } => {
                r >= *pending && codes.get(r - pending) == Some(&MISSING)
            }
        }
    }

    pub fn push_missing(&mut self) {
        match self {
            Part::Numbers(v) => v.push(f32::NAN),
            Part::Text { codes, .. } => codes.push(MISSING),
        }
    }

    /// A trimmed, non-missing CSV cell (or JSON string, with `json_string`: never a number).
    pub fn push_cell(
        &mut self,
        cell: &str,
        forced_numeric: bool,
        json_string: bool,
    ) -> Result<(), CellError> {
        if let Part::Numbers(v) = self {
            if !json_string
                && let Some(n) = simple_decimal(cell.as_bytes()).or_else(|| cell.parse().ok())
            {
                let f = finite_f32(n).map_err(|b| CellError::BadNumber(b, cell.to_owned()))?;
                v.push(f);
                return Ok(());
            }
            // A number as exports write it ("$1,200", "12%") is read when the column is done.
            if forced_numeric && !crate::nn::portable::values::looks_numeric(cell) {
                return Err(CellError::TextInNumeric(cell.to_owned()));
            }
            *self = Part::text(v.len());
        }
        self.push_text(cell);
        Ok(())
    }

    /// A cell of plain-decimal bytes (see [`simple_decimal`]; ASCII blanks around it) into a
    /// numeric part, without reading it as text first; `false` (nothing pushed) leaves the
    /// cell to the general path. Only for files whose missing-value markers cannot look like
    /// a number ([`ReadOptions::numeric_markers`]).
    #[inline]
    pub fn push_plain_number(&mut self, raw: &[u8]) -> bool {
        if let Part::Numbers(v) = self
            && let Some(n) = simple_decimal(raw.trim_ascii())
            && let Ok(f) = finite_f32(n)
        {
            v.push(f);
            return true;
        }
        false
    }

    /// A JSON number.
    pub fn push_number(&mut self, n: f64, shown: &str) -> Result<(), CellError> {
        let f = finite_f32(n).map_err(|b| CellError::BadNumber(b, shown.to_owned()))?;
        match self {
            Part::Numbers(v) => v.push(f),
            Part::Text { .. } => self.push_text(shown),
        }
        Ok(())
    }

    fn push_text(&mut self, cell: &str) {
        if let Part::Text {
            codes,
            vocab,
            index,
            ..
        } = self
        {
            codes.push(index.code(vocab, cell));
        }
    }

    /// Rows read as numbers before this part turned to text.
    pub fn pending(&self) -> usize {
        match self {
            Part::Text { pending, .. } => *pending,
            Part::Numbers(_) => 0,
        }
    }

    /// Fills the pending rows with their cells as written (`None` = missing).
    pub fn fill_pending<'a>(&mut self, cells: impl Iterator<Item = Option<&'a str>>) {
        let Part::Text {
            pending,
            codes,
            vocab,
            index,
        } = self
        else {
            return;
        };
        let mut head = Vec::with_capacity(*pending);
        for cell in cells.take(*pending) {
            head.push(match cell {
                None => MISSING,
                Some(s) => index.code(vocab, s),
            });
        }
        head.append(codes);
        *codes = head;
        *pending = 0;
    }
}

/// A finished column: values or vocabulary indexes, `NaN` for missing, in segments: one per
/// part it was read in, so every column of a file is cut at the same rows and no column is
/// copied into one allocation only to be copied again into the rows.
pub struct BuiltColumn {
    pub raw: RawColumn,
    pub segments: Vec<Vec<f32>>,
    /// A numeric column's stats over all its rows.
    pub stats: Option<NumberStats>,
}

impl BuiltColumn {
    /// The values in row order.
    pub fn values(&self) -> impl Iterator<Item = f32> + '_ {
        self.segments.iter().flatten().copied()
    }
}

/// Joins the parts of one column (in row order) and infers its type.
pub fn finish_column(
    name: &str,
    parts: Vec<Part>,
    opts: &ReadOptions,
) -> Result<BuiltColumn, DataError> {
    finish_column_with(name, parts, opts, None)
}

/// As [`finish_column`], with the stats of the parts' numbers when they were taken as the
/// parts were read (used when every part read as numbers).
pub fn finish_column_with(
    name: &str,
    parts: Vec<Part>,
    opts: &ReadOptions,
    stats: Option<NumberStats>,
) -> Result<BuiltColumn, DataError> {
    let any_text = parts.iter().any(|p| matches!(p, Part::Text { .. }));
    let rows: usize = parts.iter().map(Part::len).sum();
    let (storage, segments, vocab): (Storage, Vec<Vec<f32>>, Vocab) = if !any_text {
        // The parts' numbers are the column's segments as they are.
        let segments = parts
            .into_iter()
            .map(|p| match p {
                Part::Numbers(v) => v,
                Part::Text { .. } => Vec::new(),
            })
            .collect();
        (Storage::Number, segments, Vocab::new())
    } else {
        // One vocabulary for all parts, sorted; numbers from parts that stayed numeric are
        // taken in their shortest form. Every text stays where its part holds it: the join
        // sorts (part, code) pairs by their texts and copies each distinct text once.
        let mut parts = parts;
        // A numeric part's texts: its numbers' shortest forms, and their bit patterns.
        let mut shown: Vec<(Vocab, Vec<u32>)> = Vec::with_capacity(parts.len());
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        let mut bytes = 0;
        for (k, p) in parts.iter_mut().enumerate() {
            let mut numbers = (Vocab::new(), Vec::new());
            match p {
                Part::Text { vocab, index, .. } => {
                    *index = Interner::default();
                    pairs.extend((0..vocab.len() as u32).map(|c| (k as u32, c)));
                    bytes += vocab.text_bytes();
                }
                Part::Numbers(v) => {
                    for &x in v.iter().filter(|x| !x.is_nan()) {
                        numbers.0.push(&number_key(x as f64));
                        numbers.1.push(x.to_bits());
                    }
                    pairs.extend((0..numbers.1.len() as u32).map(|c| (k as u32, c)));
                    bytes += numbers.0.text_bytes();
                }
            }
            shown.push(numbers);
        }
        let text = |&(k, c): &(u32, u32)| -> &str {
            match &parts[k as usize] {
                Part::Text { vocab, .. } => &vocab[c as usize],
                Part::Numbers(_) => &shown[k as usize].0[c as usize],
            }
        };
        pairs.sort_unstable_by(|a, b| text(a).cmp(text(b)));
        // Each text part's codes (0..n: a dense table each), and each numeric part's bit
        // patterns, → the code in the joined, sorted vocabulary.
        let mut dense: Vec<Vec<u32>> = parts
            .iter()
            .map(|p| match p {
                Part::Text { vocab, .. } => vec![0; vocab.len()],
                Part::Numbers(_) => Vec::new(),
            })
            .collect();
        let mut remap: Vec<HashMap<u32, u32>> = vec![HashMap::new(); parts.len()];
        let mut all = Vocab::with_capacity(pairs.len(), bytes);
        for pair in &pairs {
            let s = text(pair);
            if all.last() != Some(s) {
                all.push(s);
            }
            let code = all.len() as u32 - 1;
            let (k, c) = (pair.0 as usize, pair.1 as usize);
            match &parts[k] {
                Part::Text { .. } => dense[k][c] = code,
                Part::Numbers(_) => {
                    remap[k].insert(shown[k].1[c], code);
                }
            }
        }
        drop(pairs);
        drop(shown);
        let segments = parts
            .iter()
            .zip(dense.iter().zip(&remap))
            .map(|(p, (dense, remap))| match p {
                Part::Text { codes, .. } => codes
                    .iter()
                    .map(|&c| {
                        if c == MISSING {
                            f32::NAN
                        } else {
                            dense[c as usize] as f32
                        }
                    })
                    .collect(),
                Part::Numbers(v) => v
                    .iter()
                    .map(|&x| {
                        if x.is_nan() {
                            f32::NAN
                        } else {
                            remap[&x.to_bits()] as f32
                        }
                    })
                    .collect(),
            })
            .collect();
        all.shrink_to_fit();
        (Storage::Text, segments, all)
    };
    let stats = (storage == Storage::Number)
        .then(|| stats.unwrap_or_else(|| NumberStats::of_segments(&segments)));
    let mut segments = segments;
    let (raw, stats) = super::kinds::decide(name, &mut segments, vocab, rows, stats, opts)?;
    Ok(BuiltColumn {
        raw,
        segments,
        stats,
    })
}

/// Distinct values counted exactly up to this many; beyond, the count says "more".
pub const DISTINCT_CAP: u64 = 1000;

/// The distinct f32 bit patterns of a column, up to one past [`DISTINCT_CAP`]: open addressing
/// in a table kept at most a quarter full (it starts small and doubles, to 4096 slots: 16 KiB,
/// in the first-level cache), hashed by one multiplication, so a number already seen is
/// nearly always found at its first slot. Distinct counting touches every cell of a numeric
/// column; a general hash set spent a tenth of a large upload's time here.
#[derive(Clone, Debug)]
pub(super) struct Distinct {
    slots: Vec<u32>,
    /// 32 − log2 of the table's size: the hash's top bits index it.
    shift: u32,
    pub(super) len: usize,
    last: u32,
}

impl Distinct {
    /// A NaN's bits: never a key (missing cells are not counted, and `v + 0.0` of a number
    /// is a number).
    const EMPTY: u32 = u32::MAX;
    const MAX_BITS: u32 = 12;

    fn new() -> Self {
        Distinct {
            slots: vec![Self::EMPTY; 16],
            shift: 28,
            len: 0,
            last: Self::EMPTY,
        }
    }

    fn full(&self) -> bool {
        self.len as u64 > DISTINCT_CAP
    }

    /// Counts the numbers of `values` (NaNs are missing cells, not numbers) until the set is
    /// [`full`](Self::full).
    fn count(&mut self, values: &[f32]) {
        if self.full() {
            return;
        }
        for &v in values {
            // -0 and 0 are one value.
            let bits = (v + 0.0).to_bits();
            if v.is_nan() || bits == self.last {
                continue;
            }
            self.last = bits;
            if self.put(bits) && self.added() {
                return;
            }
        }
    }

    /// Whether `bits` was new (and is now in the table).
    #[inline]
    fn put(&mut self, bits: u32) -> bool {
        let mask = self.slots.len() - 1;
        let mut h = (bits.wrapping_mul(0x9E37_79B1) >> self.shift) as usize & mask;
        loop {
            let s = self.slots[h];
            if s == bits {
                return false;
            }
            if s == Self::EMPTY {
                self.slots[h] = bits;
                self.len += 1;
                return true;
            }
            h = (h + 1) & mask;
        }
    }

    /// After a new number: whether the set is full now; if not, the table grows when it is
    /// past a quarter full.
    #[cold]
    fn added(&mut self) -> bool {
        if self.full() {
            return true;
        }
        if 4 * self.len > self.slots.len() && self.shift > 32 - Self::MAX_BITS {
            self.shift -= 1;
            let old = std::mem::replace(&mut self.slots, vec![Self::EMPTY; 1 << (32 - self.shift)]);
            self.len = 0;
            for s in old.into_iter().filter(|&s| s != Self::EMPTY) {
                self.put(s);
            }
        }
        false
    }

    pub(super) fn values(&self) -> impl Iterator<Item = f32> + '_ {
        self.slots
            .iter()
            .filter(|&&s| s != Self::EMPTY)
            .map(|&s| f32::from_bits(s))
    }
}

/// [`NumberStats::of`]'s pass over a run of numbers.
struct Run {
    missing: u64,
    lo: f32,
    hi: f32,
    integers: bool,
    sum: f64,
    sq: f64,
}

impl Run {
    fn new() -> Self {
        Run {
            missing: 0,
            lo: f32::INFINITY,
            hi: f32::NEG_INFINITY,
            integers: true,
            sum: 0.0,
            sq: 0.0,
        }
    }

    #[inline]
    fn add(&mut self, v: f32) {
        let nan = v.is_nan();
        self.missing += u64::from(nan);
        // A NaN compares false: the bounds keep what they had.
        self.lo = if v < self.lo { v } else { self.lo };
        self.hi = if v > self.hi { v } else { self.hi };
        // Every f32 from 2^23 up is an integer; below, the truncating conversion tells
        // (without a call to libm's truncf per cell).
        self.integers &= nan | (v.abs() >= 8_388_608.0) | ((v as i32) as f32 == v);
        let x = if nan { 0.0 } else { v as f64 };
        self.sum += x;
        self.sq += x * x;
    }

    /// Takes `values` four at a time in SSE2 lanes (x86-64's baseline, so no check is needed),
    /// as [`add`](Self::add) takes each: the sums are kept per lane, so they differ from the
    /// one-by-one sums by rounding only. Returns the numbers left (fewer than four). The
    /// compiler keeps `add`'s loop scalar (its f64 sums must be added in order, and `as i32`
    /// saturates), which made these stats a tenth of a large upload's time.
    #[cfg(target_arch = "x86_64")]
    fn add_sse2<'v>(&mut self, values: &'v [f32]) -> &'v [f32] {
        use std::arch::x86_64::*;
        let quads = values.chunks_exact(4);
        let rest = quads.remainder();
        // SAFETY: SSE2 is always available on x86-64; every load reads 4 f32 of one chunk of
        // exactly 4 (`_mm_loadu_ps` takes unaligned addresses), and the stores write 2 or 4
        // lanes into arrays of that size.
        unsafe {
            let (mut lo, mut hi) = (_mm_set1_ps(f32::INFINITY), _mm_set1_ps(f32::NEG_INFINITY));
            let mut whole = _mm_castsi128_ps(_mm_set1_epi32(-1));
            let mut missing = _mm_setzero_si128();
            let (mut sum_a, mut sum_b) = (_mm_setzero_pd(), _mm_setzero_pd());
            let (mut sq_a, mut sq_b) = (_mm_setzero_pd(), _mm_setzero_pd());
            let big = _mm_set1_ps(8_388_608.0);
            let abs = _mm_castsi128_ps(_mm_set1_epi32(i32::MAX));
            for q in quads {
                let v = _mm_loadu_ps(q.as_ptr());
                let nan = _mm_cmpunord_ps(v, v);
                // All ones in a NaN's lane: subtracting counts it.
                missing = _mm_sub_epi32(missing, _mm_castps_si128(nan));
                // `v < lo ? v : lo`, as `add` compares (a NaN keeps the bound).
                lo = _mm_min_ps(v, lo);
                hi = _mm_max_ps(v, hi);
                // A NaN or a number past i32 truncates to i32::MIN, which reads back unequal
                // (or, for -2^31 itself, equal and whole).
                let back = _mm_cvtepi32_ps(_mm_cvttps_epi32(v));
                let ok = _mm_or_ps(
                    _mm_or_ps(nan, _mm_cmpge_ps(_mm_and_ps(v, abs), big)),
                    _mm_cmpeq_ps(back, v),
                );
                whole = _mm_and_ps(whole, ok);
                let x = _mm_andnot_ps(nan, v);
                let (a, b) = (_mm_cvtps_pd(x), _mm_cvtps_pd(_mm_movehl_ps(x, x)));
                sum_a = _mm_add_pd(sum_a, a);
                sum_b = _mm_add_pd(sum_b, b);
                sq_a = _mm_add_pd(sq_a, _mm_mul_pd(a, a));
                sq_b = _mm_add_pd(sq_b, _mm_mul_pd(b, b));
            }
            let (mut l, mut h, mut n) = ([0f32; 4], [0f32; 4], [0i32; 4]);
            _mm_storeu_ps(l.as_mut_ptr(), lo);
            _mm_storeu_ps(h.as_mut_ptr(), hi);
            _mm_storeu_si128(n.as_mut_ptr().cast(), missing);
            let (mut s, mut s2, mut q, mut q2) = ([0f64; 2], [0f64; 2], [0f64; 2], [0f64; 2]);
            _mm_storeu_pd(s.as_mut_ptr(), sum_a);
            _mm_storeu_pd(s2.as_mut_ptr(), sum_b);
            _mm_storeu_pd(q.as_mut_ptr(), sq_a);
            _mm_storeu_pd(q2.as_mut_ptr(), sq_b);
            for k in 0..4 {
                self.lo = if l[k] < self.lo { l[k] } else { self.lo };
                self.hi = if h[k] > self.hi { h[k] } else { self.hi };
                // Per lane the count wraps past 2^32 NaNs, which no chunk holds.
                self.missing += u64::from(n[k] as u32);
            }
            self.integers &= _mm_movemask_ps(whole) == 0b1111;
            self.sum += (s[0] + s[1]) + (s2[0] + s2[1]);
            self.sq += (q[0] + q[1]) + (q2[0] + q2[1]);
        }
        rest
    }
}

/// What a numeric column's type and profile take of its numbers, over a run of its rows (a
/// chunk of a file as it is read): missing cells, bounds, whether every number is whole, the
/// sums for mean and spread, and the distinct values up to one past [`DISTINCT_CAP`]. Runs
/// merged in row order are the whole column's.
#[derive(Clone, Debug)]
pub struct NumberStats {
    pub rows: u64,
    pub missing: u64,
    pub lo: f32,
    pub hi: f32,
    pub integers: bool,
    pub sum: f64,
    pub sq: f64,
    pub(super) distinct: Distinct,
}

impl NumberStats {
    /// The stats of a column's segments, its distinct numbers counted.
    pub fn of_segments(segments: &[Vec<f32>]) -> Self {
        let mut all = NumberStats::of(&[]);
        for segment in segments {
            all.merge(&NumberStats::of(segment));
            all.count_distinct(segment);
        }
        all
    }

    pub fn of(values: &[f32]) -> Self {
        // Without the distinct values, which stop once there are more than are counted (see
        // `count_distinct`).
        let mut run = Run::new();
        #[cfg(target_arch = "x86_64")]
        let rest = run.add_sse2(values);
        #[cfg(not(target_arch = "x86_64"))]
        let rest = values;
        for &v in rest {
            run.add(v);
        }
        NumberStats {
            rows: values.len() as u64,
            missing: run.missing,
            lo: run.lo,
            hi: run.hi,
            integers: run.integers,
            sum: run.sum,
            sq: run.sq,
            distinct: Distinct::new(),
        }
    }

    /// The stats of this run followed by `next`, but for the distinct values (see
    /// [`count_distinct`](Self::count_distinct)).
    pub fn merge(&mut self, next: &NumberStats) {
        self.rows += next.rows;
        self.missing += next.missing;
        // As the one pass over both runs would compare (the first of equal bounds stays).
        self.lo = if next.lo < self.lo { next.lo } else { self.lo };
        self.hi = if next.hi > self.hi { next.hi } else { self.hi };
        self.integers &= next.integers;
        self.sum += next.sum;
        self.sq += next.sq;
    }

    /// Counts the distinct numbers of `values` (the rows that follow those counted so far),
    /// until there are more than [`DISTINCT_CAP`]. Kept apart from [`of`](Self::of) and
    /// [`merge`](Self::merge): one set per column, fed run after run, stops early and never
    /// grows twice.
    pub fn count_distinct(&mut self, values: &[f32]) {
        self.distinct.count(values);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stats taken four numbers at a time are those taken one by one: the same counts,
    /// bounds and wholeness (NaNs, negatives, numbers past 2^23 and past i32, fractions in any
    /// lane, lengths that leave a remainder), the sums to rounding.
    #[test]
    fn stats_in_lanes_are_the_one_by_one_stats() {
        let one_by_one = |values: &[f32]| {
            let mut run = Run::new();
            for &v in values {
                run.add(v);
            }
            run
        };
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) as u32
        };
        let specials = [
            f32::NAN,
            -0.0,
            0.0,
            0.5,
            -2.5,
            3e9,
            -3e9,
            16_777_217.0,
            -2_147_483_648.0,
            1e30,
        ];
        for len in [0usize, 1, 3, 4, 5, 17, 64, 1001] {
            for kind in 0..4 {
                let values: Vec<f32> = (0..len)
                    .map(|_| match (kind, next() % 8) {
                        (0, _) => (next() % 200) as f32 - 100.0,
                        (1, 0) => specials[next() as usize % specials.len()],
                        (1, _) => (next() % 200) as f32 - 100.0,
                        (2, _) => (next() % 10_000) as f32 / 16.0 - 300.0,
                        (_, _) => specials[next() as usize % specials.len()],
                    })
                    .collect();
                let (want, got) = (one_by_one(&values), NumberStats::of(&values));
                let at = format!("{len} values of kind {kind}");
                assert_eq!(got.rows, len as u64, "{at}");
                assert_eq!(got.missing, want.missing, "{at}");
                assert_eq!(got.lo, want.lo, "{at}");
                assert_eq!(got.hi, want.hi, "{at}");
                assert_eq!(got.integers, want.integers, "{at}");
                let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
                assert!(close(got.sum, want.sum), "{at}: {} {}", got.sum, want.sum);
                assert!(close(got.sq, want.sq), "{at}: {} {}", got.sq, want.sq);
            }
        }
    }

    fn column(name: &str, cells: &[&str]) -> BuiltColumn {
        column_with(name, cells, &ReadOptions::default()).expect("column builds")
    }

    fn column_with(
        name: &str,
        cells: &[&str],
        opts: &ReadOptions,
    ) -> Result<BuiltColumn, DataError> {
        let forced = opts.columns.get(name).copied();
        let mut p = Part::new(forced);
        for c in cells {
            if opts.is_na(c) {
                p.push_missing();
            } else {
                p.push_cell(c, forced == Some(ColumnType::Numeric), false)
                    .map_err(|e| DataError::new(e.describe()))?;
            }
        }
        if p.pending() > 0 {
            p.fill_pending(cells.iter().map(|c| (!opts.is_na(c)).then_some(*c)));
        }
        finish_column(name, vec![p], opts)
    }

    /// The plain-decimal fast path gives exactly what `str::parse` gives, or leaves the cell
    /// to it: a million generated cells (signs, leading zeros, points anywhere, up to 20
    /// digits, and stray characters).
    #[test]
    fn simple_decimals_read_as_str_parse_reads_them() {
        let mut s: u64 = 7;
        let mut next = |n: u64| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) % n
        };
        let alphabet = b"0123456789012345678901234567890123456789.-+e";
        let mut taken = 0;
        for case in 0..1_000_000 {
            let len = 1 + next(21) as usize;
            let cell: String = (0..len)
                .map(|i| {
                    if case % 3 == 0 && i > 0 {
                        (b'0' + next(10) as u8) as char
                    } else {
                        alphabet[next(alphabet.len() as u64) as usize] as char
                    }
                })
                .collect();
            let fast = simple_decimal(cell.as_bytes());
            let std = cell.parse::<f64>().ok();
            if let Some(v) = fast {
                assert_eq!(Some(v.to_bits()), std.map(f64::to_bits), "{cell:?}");
                taken += 1;
            }
        }
        // A third of the cells are a sign or digit and then digits only: the fast path takes
        // those (not just the odd one), so the comparison above is not vacuous.
        assert!(taken > 250_000, "the fast path read only {taken} cells");
        for (cell, want) in [
            ("0.1234", Some(0.1234)),
            ("-0", Some(-0.0)),
            ("5.", Some(5.0)),
            (".5", Some(0.5)),
            ("+7", Some(7.0)),
            (".", None),
            ("1e5", None),
            ("9007199254740993", None),
        ] {
            assert_eq!(
                simple_decimal(cell.as_bytes()).map(f64::to_bits),
                want.map(f64::to_bits),
                "{cell}"
            );
        }
    }

    #[test]
    fn default_na_values_ignore_case_and_empty_cells() {
        let c = column("a", &["1", "", "NA", "n/a", "nan", "NULL", "?", "2"]);
        assert_eq!(c.raw.schema.storage, Storage::Number);
        assert_eq!(c.raw.schema.missing, 6);
        assert_eq!(c.raw.schema.kind, ColumnType::Numeric);
        // a custom list replaces the default one
        let opts = ReadOptions::new(Some(&["-".into()]), BTreeMap::new());
        let c = column_with("a", &["1", "-", "?"], &opts).unwrap();
        assert_eq!(c.raw.schema.storage, Storage::Text);
        assert_eq!(c.raw.vocab, ["1", "?"]);
        assert_eq!(c.raw.schema.missing, 1);
    }

    #[test]
    fn text_columns_keep_numbers_as_written_and_sort_their_vocabulary() {
        let c = column("code", &["1.50", "007", "x", "007", "NA", "b"]);
        assert_eq!(c.raw.schema.storage, Storage::Text);
        assert_eq!(c.raw.vocab, ["007", "1.50", "b", "x"]);
        let codes: Vec<String> = c.values().map(|v| format!("{v}")).collect();
        assert_eq!(codes, ["1", "0", "3", "0", "NaN", "2"]);
        assert_eq!(c.raw.schema.kind, ColumnType::Categorical);
        assert!(!c.raw.schema.numeric_text);
    }

    #[test]
    fn yes_no_text_is_boolean_and_ids_are_ignored() {
        // "Yes" and "yes" are two spellings of one answer
        let c = column("churn", &["yes", "no", "Yes", "no"]);
        assert_eq!(c.raw.schema.kind, ColumnType::Boolean);
        let c = column("grade", &["yes", "no", "maybe", "no"]);
        assert_eq!(c.raw.schema.kind, ColumnType::Categorical);
        let c = column("churn", &["yes", "no", "no", "NA"]);
        assert_eq!(c.raw.schema.kind, ColumnType::Boolean);
        assert!(c.raw.schema.boolean_like);
        let ids: Vec<String> = (0..30).map(|i| format!("C{i:03}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        assert_eq!(
            column("customer", &refs).raw.schema.kind,
            ColumnType::Ignore
        );
        let n: Vec<String> = (1..=30).map(|i| i.to_string()).collect();
        let refs: Vec<&str> = n.iter().map(String::as_str).collect();
        assert_eq!(
            column("PassengerId", &refs).raw.schema.kind,
            ColumnType::Ignore
        );
        assert_eq!(
            column("row", &refs).raw.schema.kind,
            ColumnType::Ignore,
            "consecutive"
        );
        // whole numbers that repeat, or that are few, stay numeric
        assert_eq!(
            column("count", &refs[..10]).raw.schema.kind,
            ColumnType::Numeric
        );
        assert_eq!(
            column("id", &["1", "2", "2"]).raw.schema.kind,
            ColumnType::Numeric
        );
        let c = column("flag", &["0", "1", "1"]);
        assert_eq!(
            (c.raw.schema.kind, c.raw.schema.boolean_like),
            (ColumnType::Numeric, true)
        );
    }

    #[test]
    fn upload_overrides_apply_and_are_checked() {
        let mut types = BTreeMap::new();
        types.insert("area_code".to_string(), ColumnType::Categorical);
        types.insert("state".to_string(), ColumnType::Numeric);
        let opts = ReadOptions::new(None, types);
        let c = column_with("area_code", &["408", "415", "408"], &opts).unwrap();
        assert_eq!(c.raw.schema.storage, Storage::Text);
        assert_eq!(c.raw.vocab, ["408", "415"]);
        assert_eq!(c.raw.schema.kind, ColumnType::Categorical);
        assert!(c.raw.schema.numeric_text);
        let e = column_with("state", &["1", "LA"], &opts)
            .err()
            .expect("refused");
        assert!(e.message.contains("typed \"numeric\""), "{}", e.message);
    }

    #[test]
    fn an_entirely_empty_column_is_ignored_unless_typed() {
        let c = column_with("notes", &["", "NA"], &ReadOptions::default()).unwrap();
        assert_eq!(c.raw.schema.kind, ColumnType::Ignore);
        assert!(c.raw.schema.reason.contains("empty"));
        let mut types = BTreeMap::new();
        types.insert("notes".to_string(), ColumnType::Ignore);
        assert!(column_with("notes", &["", ""], &ReadOptions::new(None, types)).is_ok());
        // Typed anything else by the user, it is an error naming the column.
        let mut types = BTreeMap::new();
        types.insert("notes".to_string(), ColumnType::Categorical);
        let e = column_with("notes", &["", "NA"], &ReadOptions::new(None, types))
            .err()
            .expect("refused");
        assert_eq!(e.column.as_deref(), Some("notes"));
        assert!(e.message.contains("entirely empty"), "{}", e.message);
    }

    #[test]
    fn parts_join_across_chunks() {
        let mut a = Part::new(None);
        a.push_cell("1.5", false, false).ok();
        a.push_missing();
        let mut b = Part::new(None);
        b.push_cell("x", false, false).ok();
        let c = finish_column("c", vec![a, b], &ReadOptions::default()).unwrap();
        assert_eq!(c.raw.vocab, ["1.5", "x"]);
        let values: Vec<f32> = c.values().collect();
        assert_eq!(values[0], 0.0);
        assert!(values[1].is_nan());
        assert_eq!(values[2], 1.0);
        assert_eq!(c.segments.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
    }
}
