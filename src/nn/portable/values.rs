//! Values as people write them in exported tables: numbers with currency symbols or codes,
//! thousands separators in either convention, accounting negatives `(1,200)` and percent
//! signs; dates and timestamps in the usual formats. A column's format is inferred from all
//! its distinct texts at upload ([`infer_number`], [`infer_date`]) and travels in the
//! dataset's schema and in the model document, so predict reads a raw cell (`"$1,200.50"`,
//! `"05.03.2024 14:30"`) exactly as the upload did.
//!
//! A date is held as days since 1970-01-01 (UTC when the text has a zone, as written when it
//! has none), with the time of day as the fraction; [`date_features`] turns it into inputs a
//! network can use. Pure computation: nothing here knows about files or HTTP.

use serde::{Deserialize, Serialize};

/// A column's value format, when its cells are not plain numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueFormat {
    Number(NumberFormat),
    Date(DateFormat),
}

/// How a numeric column's text is written. Parsing is lenient in what it strips (any known
/// currency, blanks) and strict in what it keeps: the decimal mark is this one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberFormat {
    /// `.` or `,`.
    pub decimal: char,
    /// The thousands separator the column uses, if any (`,` `.` `'` or a space).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thousands: Option<char>,
    /// The currency symbols or codes seen (removed when read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub currency: Vec<String>,
    /// Cells end in `%` (read as hundredths: `12%` is 0.12).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub percent: bool,
    /// Some cells are accounting negatives: `(1,200)` is -1200.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub parentheses: bool,
}

impl Default for NumberFormat {
    fn default() -> Self {
        NumberFormat {
            decimal: '.',
            thousands: None,
            currency: vec![],
            percent: false,
            parentheses: false,
        }
    }
}

/// The order of a date's day, month and year when they are numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DateOrder {
    /// 2024-03-05 (ISO 8601), 2024/03/05.
    Ymd,
    /// 03/05/2024 (United States).
    Mdy,
    /// 05.03.2024, 05/03/2024 (most of the world).
    Dmy,
}

impl DateOrder {
    pub fn name(self) -> &'static str {
        match self {
            DateOrder::Ymd => "ymd",
            DateOrder::Mdy => "mdy",
            DateOrder::Dmy => "dmy",
        }
    }

    pub fn parse(s: &str) -> Option<DateOrder> {
        match s {
            "ymd" => Some(DateOrder::Ymd),
            "mdy" => Some(DateOrder::Mdy),
            "dmy" => Some(DateOrder::Dmy),
            _ => None,
        }
    }
}

/// How a date column is written and what it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DateFormat {
    /// The order of numeric day/month/year dates that do not start with a 4-digit year
    /// (those always read year first).
    pub order: DateOrder,
    /// Whether the order was a guess: every date in the column fits both day/month orders.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ambiguous: bool,
    /// Some cells carry a time of day (then the hour is an input).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub time: bool,
    /// Some cells carry a zone (`Z`, `+02:00`, `UTC`): those are turned to UTC.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub zone: bool,
    /// The day of the week is an input: for timestamps (event logs, where weekly patterns
    /// are the rule), or when the user says so. A plain date column leaves it out: on small
    /// tables its two inputs are noise a network fits (3 points of accuracy on Seattle's
    /// weather, `bench/messy_exports.py`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub weekday: bool,
}

impl DateFormat {
    pub fn new(order: DateOrder) -> Self {
        DateFormat {
            order,
            ambiguous: false,
            time: false,
            zone: false,
            weekday: false,
        }
    }
}

/// Currency symbols recognised next to a number (longest first where one begins another).
const SYMBOLS: [&str; 24] = [
    "US$", "R$", "C$", "A$", "NZ$", "HK$", "S$", "$", "€", "£", "¥", "₹", "₩", "₽", "₺", "₪", "₫",
    "₴", "₦", "₱", "฿", "₡", "zł", "kr",
];

/// ISO 4217 codes recognised next to a number (only these: a code-like word before a number
/// is more often a product code than a currency).
const CODES: [&str; 34] = [
    "USD", "EUR", "GBP", "JPY", "CNY", "INR", "CHF", "CAD", "AUD", "NZD", "SEK", "NOK", "DKK",
    "PLN", "CZK", "HUF", "RUB", "BRL", "MXN", "ZAR", "KRW", "SGD", "HKD", "TRY", "ILS", "AED",
    "SAR", "THB", "IDR", "MYR", "PHP", "VND", "RON", "ARS",
];

/// The separators a number may group its thousands with.
fn is_group_char(c: char) -> bool {
    matches!(c, ',' | '.' | '\'' | ' ' | '\u{a0}' | '\u{202f}' | '’')
}

/// A number's text taken apart: the sign, currency and percent around it, and its digits
/// with their separators.
#[derive(Debug, Default, PartialEq)]
struct Shape<'a> {
    negative: bool,
    parentheses: bool,
    currency: Option<&'a str>,
    percent: bool,
    /// Digits and separators only, starting and ending with a digit (or a lone leading
    /// separator: `.5`).
    core: &'a str,
}

fn strip_currency(s: &str) -> (&str, Option<&str>) {
    for sym in SYMBOLS.iter().chain(CODES.iter()) {
        if let Some(rest) = s.strip_prefix(sym) {
            let is_code = sym.len() == 3 && sym.bytes().all(|b| b.is_ascii_uppercase());
            if !(is_code && rest.starts_with(|c: char| c.is_alphabetic())) {
                return (rest.trim_start(), Some(sym));
            }
        }
        if let Some(rest) = s.strip_suffix(sym) {
            let is_code = sym.len() == 3 && sym.bytes().all(|b| b.is_ascii_uppercase());
            if !(is_code && rest.ends_with(|c: char| c.is_alphabetic())) {
                return (rest.trim_end(), Some(sym));
            }
        }
    }
    (s, None)
}

fn strip_sign(s: &str) -> (&str, Option<bool>) {
    if let Some(r) = s.strip_prefix('-').or_else(|| s.strip_prefix('\u{2212}')) {
        (r.trim_start(), Some(true))
    } else if let Some(r) = s.strip_prefix('+') {
        (r.trim_start(), Some(false))
    } else {
        (s, None)
    }
}

/// Takes a cell apart; `None` when it is not a number in any format.
fn shape(cell: &str) -> Option<Shape<'_>> {
    let mut s = cell.trim();
    let mut out = Shape::default();
    if let Some(inner) = s.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        out.parentheses = true;
        out.negative = true;
        s = inner.trim();
    }
    if let Some(r) = s.strip_suffix('%') {
        out.percent = true;
        s = r.trim_end();
    }
    // The sign goes before or after the currency: -$12, $-12, 12 €, -12 €.
    let mut signed = false;
    let (r, sign) = strip_sign(s);
    if let Some(n) = sign {
        out.negative ^= n;
        signed = true;
        s = r;
    }
    let (r, cur) = strip_currency(s);
    out.currency = cur;
    s = r;
    if !signed && cur.is_some() {
        let (r, sign) = strip_sign(s);
        if let Some(n) = sign {
            out.negative ^= n;
            s = r;
        }
    }
    if out.percent && out.currency.is_some() {
        return None;
    }
    let first = s.chars().next()?;
    let last = s.chars().next_back()?;
    if !last.is_ascii_digit() || !(first.is_ascii_digit() || first == '.' || first == ',') {
        return None;
    }
    if !s.chars().all(|c| c.is_ascii_digit() || is_group_char(c)) {
        return None;
    }
    out.core = s;
    Some(out)
}

/// The value of digits with `decimal` as the decimal mark and `thousands` (when given) as
/// the only other separator allowed. Groups are not checked here (inference checks them).
fn core_value(core: &str, decimal: char, thousands: Option<char>) -> Option<f64> {
    let mut plain = String::with_capacity(core.len());
    let mut seen_decimal = false;
    for c in core.chars() {
        if c.is_ascii_digit() {
            plain.push(c);
        } else if c == decimal && !seen_decimal {
            seen_decimal = true;
            plain.push('.');
        } else if Some(c) == thousands
            || (thousands.is_some_and(|t| t == ' ' || t == '\u{a0}' || t == '\u{202f}')
                && matches!(c, ' ' | '\u{a0}' | '\u{202f}'))
            || (thousands == Some('\'') && c == '’')
        {
            if seen_decimal {
                return None;
            }
        } else {
            return None;
        }
    }
    plain.parse::<f64>().ok()
}

/// Whether a cell could be a number in some format (a currency, separators, a sign, `%`).
pub fn looks_numeric(cell: &str) -> bool {
    shape(cell).is_some()
}

/// Reads a cell of a column written in `format` (the cell may carry any known currency, and
/// a `%`, which divides by 100). `None` when it does not read.
pub fn parse_number(cell: &str, format: &NumberFormat) -> Option<f64> {
    let s = shape(cell)?;
    let v = core_value(s.core, format.decimal, format.thousands)?;
    let v = if s.negative { -v } else { v };
    let v = if s.percent { v / 100.0 } else { v };
    v.is_finite().then_some(v)
}

/// What one cell says of the column's separators.
enum Evidence {
    /// Only digits.
    None,
    /// This separator is the decimal mark.
    Decimal(char),
    /// This separator groups thousands.
    Thousands(char),
    /// Both.
    Both { decimal: char, thousands: char },
    /// One separator, once, with three digits after it: `1,200` (1200 or 1.2).
    Ambiguous(char),
}

/// Whether `groups` (the digit runs between one separator) are thousands: 1–3 digits, then
/// runs of exactly 3.
fn grouped(groups: &[&str]) -> bool {
    groups.first().is_some_and(|g| (1..=3).contains(&g.len()))
        && groups[1..].iter().all(|g| g.len() == 3)
}

fn evidence(core: &str) -> Option<Evidence> {
    let seps: Vec<(usize, char)> = core
        .char_indices()
        .filter(|(_, c)| !c.is_ascii_digit())
        .collect();
    let Some(&(_, last)) = seps.last() else {
        return Some(Evidence::None);
    };
    let kinds: Vec<char> = {
        let mut k: Vec<char> = seps.iter().map(|&(_, c)| c).collect();
        k.dedup();
        k
    };
    let distinct: std::collections::BTreeSet<char> = kinds.iter().copied().collect();
    let groups_by = |c: char| core.split(c).collect::<Vec<_>>();
    match distinct.len() {
        1 => {
            let n = seps.len();
            let parts = groups_by(last);
            if n == 1 {
                let after = parts[1].len();
                let before = parts[0].len();
                if after == 3 && (1..=3).contains(&before) && matches!(last, ',' | '.') {
                    Some(Evidence::Ambiguous(last))
                } else if matches!(last, ',' | '.') {
                    Some(Evidence::Decimal(last))
                } else if after == 3 && (1..=3).contains(&before) {
                    Some(Evidence::Thousands(last))
                } else {
                    None
                }
            } else if grouped(&parts) {
                Some(Evidence::Thousands(last))
            } else {
                None
            }
        }
        2 => {
            // The decimal mark comes last, once; the other groups thousands before it.
            let decimal = last;
            if !matches!(decimal, ',' | '.')
                || seps.iter().filter(|&&(_, c)| c == decimal).count() != 1
            {
                return None;
            }
            let (int, frac) = core.rsplit_once(decimal)?;
            let thousands = *distinct.iter().find(|&&c| c != decimal)?;
            if frac.is_empty()
                || int.contains(decimal)
                || !grouped(&int.split(thousands).collect::<Vec<_>>())
            {
                return None;
            }
            Some(Evidence::Both { decimal, thousands })
        }
        _ => None,
    }
}

/// The format that reads every one of `texts` (a column's distinct present cells) as a
/// number, when one does and at least one cell needs it (plain numbers need none).
/// `decimal_hint` is the file's decimal mark when its dialect says one; `thousands_given`
/// the thousands separator the user says (a cell that groups otherwise does not read).
pub fn infer_number<'a>(
    texts: impl Iterator<Item = &'a str> + Clone,
    decimal_hint: Option<char>,
    thousands_given: Option<char>,
) -> Option<NumberFormat> {
    let mut decimal: Option<char> = None;
    let mut thousands: Option<char> = thousands_given;
    let mut ambiguous: Option<char> = None;
    let mut currency: Vec<String> = vec![];
    let (mut percent, mut plain_seen, mut parentheses, mut special) =
        (0usize, 0usize, false, false);
    let mut n = 0usize;
    let agree = |slot: &mut Option<char>, c: char| -> bool {
        match slot {
            Some(x) => *x == c,
            None => {
                *slot = Some(c);
                true
            }
        }
    };
    for t in texts.clone() {
        n += 1;
        let s = shape(t)?;
        if s.percent {
            percent += 1;
        } else {
            plain_seen += 1;
        }
        parentheses |= s.parentheses;
        if let Some(c) = s.currency
            && !currency.iter().any(|x| x == c)
        {
            currency.push(c.to_owned());
        }
        special |= s.percent || s.parentheses || s.currency.is_some();
        match evidence(s.core)? {
            Evidence::None => {}
            Evidence::Decimal(c) => {
                if !agree(&mut decimal, c) {
                    return None;
                }
            }
            Evidence::Thousands(c) => {
                if !agree(&mut thousands, c) {
                    return None;
                }
            }
            Evidence::Both {
                decimal: d,
                thousands: th,
            } => {
                if !agree(&mut decimal, d) || !agree(&mut thousands, th) {
                    return None;
                }
            }
            Evidence::Ambiguous(c) => {
                if ambiguous.is_some_and(|a| a != c) {
                    return None;
                }
                ambiguous = Some(c);
            }
        }
    }
    if n == 0 || (percent > 0 && plain_seen > 0) {
        return None;
    }
    if thousands_given.is_some() && decimal == thousands_given {
        return None;
    }
    // The decimal mark: what a cell proved, else the opposite of a proven thousands
    // separator, else the file's, else a point.
    let decimal = decimal
        .or(match thousands {
            Some(',') => Some('.'),
            Some('.') => Some(','),
            _ => None,
        })
        .or(decimal_hint)
        .unwrap_or('.');
    if thousands == Some(decimal) {
        return None;
    }
    if let Some(a) = ambiguous
        && a != decimal
        && !agree(&mut thousands, a)
    {
        return None;
    }
    special |= thousands.is_some() || decimal != '.';
    if !special {
        return None;
    }
    let format = NumberFormat {
        decimal,
        thousands,
        currency,
        percent: percent > 0,
        parentheses,
    };
    texts
        .clone()
        .all(|t| parse_number(t, &format).is_some_and(|v| v.abs() <= f32::MAX as f64))
        .then_some(format)
}

/// What the format did, for a column's reason: "currency, `$` and `,` removed".
pub fn describe_number(f: &NumberFormat) -> String {
    if is_locale_only(f) {
        return "numbers with a decimal comma (`1.234,5`)".into();
    }
    let mut parts = vec![];
    if !f.currency.is_empty() {
        parts.push(format!(
            "currency, {} removed",
            f.currency
                .iter()
                .map(|c| format!("`{c}`"))
                .chain(f.thousands.map(|t| format!("`{}`", shown_sep(t))))
                .collect::<Vec<_>>()
                .join(" and ")
        ));
    } else if let Some(t) = f.thousands {
        parts.push(format!("thousands separator `{}` removed", shown_sep(t)));
    }
    if f.percent {
        parts.push("percentages, `12%` read as 0.12".into());
    }
    if f.decimal == ',' {
        parts.push("decimal comma".into());
    }
    if f.parentheses {
        parts.push("accounting negatives, `(1,200)` read as -1200".into());
    }
    parts.join("; ")
}

/// A format that says only what a decimal-comma file's plain numbers are: a decimal comma,
/// points grouping thousands.
pub fn is_locale_only(f: &NumberFormat) -> bool {
    f.decimal == ','
        && f.thousands == Some('.')
        && f.currency.is_empty()
        && !f.percent
        && !f.parentheses
}

fn shown_sep(c: char) -> String {
    match c {
        ' ' | '\u{a0}' | '\u{202f}' => "space".into(),
        c => c.to_string(),
    }
}

// ---- dates ----

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The date of a day number: (year, month 1–12, day 1–31).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn month_of(word: &str) -> Option<u32> {
    let l = word.to_ascii_lowercase();
    let full = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    if let Some(i) = full.iter().position(|m| *m == l) {
        return Some(i as u32 + 1);
    }
    let l = l.strip_suffix('.').unwrap_or(&l);
    if l == "sept" {
        return Some(9);
    }
    MONTHS.iter().position(|m| *m == l).map(|i| i as u32 + 1)
}

/// A date's parts as written, before an order is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
enum DatePart {
    /// Year first, or a month name: no order needed.
    Known(i64, u32, u32),
    /// a/b/year: which of a and b is the day depends on the column.
    Numeric { a: u32, b: u32, y: i64 },
}

/// A date cell taken apart: the date, the seconds into the day, the zone's offset in
/// seconds (when written).
#[derive(Debug, Clone, Copy, PartialEq)]
struct DateShape {
    date: DatePart,
    time: Option<f64>,
    offset: Option<i64>,
}

fn year_of(s: &str) -> Option<i64> {
    match s.len() {
        4 => s.parse().ok(),
        // POSIX %y: 69–99 → 1900s, 00–68 → 2000s.
        2 => s
            .parse::<i64>()
            .ok()
            .map(|y| if y >= 69 { 1900 + y } else { 2000 + y }),
        _ => None,
    }
}

/// `H:MM[:SS[.fff]] [AM|PM]` then an optional zone; the seconds into the day and the zone.
fn time_of(s: &str) -> Option<(f64, Option<i64>)> {
    let s = s.trim();
    // The zone: Z, UTC, GMT, or ±HH[:MM] after the clock.
    let (clock, offset) = split_zone(s)?;
    let clock = clock.trim();
    let lower = clock.to_ascii_lowercase();
    let (clock, meridiem) = if let Some(c) = lower
        .strip_suffix("am")
        .or_else(|| lower.strip_suffix("a.m."))
    {
        (c.trim_end().to_owned(), Some(false))
    } else if let Some(c) = lower
        .strip_suffix("pm")
        .or_else(|| lower.strip_suffix("p.m."))
    {
        (c.trim_end().to_owned(), Some(true))
    } else {
        (lower, None)
    };
    let mut it = clock.split(':');
    let h: u32 = digits(it.next()?, 1, 2)?;
    let m: u32 = digits(it.next()?, 2, 2)?;
    let sec: f64 = match it.next() {
        None => 0.0,
        Some(x) => {
            let (whole, frac) = x.split_once(['.', ',']).unwrap_or((x, ""));
            let w: u32 = digits(whole, 2, 2)?;
            if !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let f = if frac.is_empty() {
                0.0
            } else {
                format!("0.{frac}").parse::<f64>().ok()?
            };
            w as f64 + f
        }
    };
    if it.next().is_some() || m > 59 || sec >= 61.0 {
        return None;
    }
    let h = match meridiem {
        None if h <= 23 => h,
        Some(pm) if (1..=12).contains(&h) => (h % 12) + if pm { 12 } else { 0 },
        _ => return None,
    };
    Some((h as f64 * 3600.0 + m as f64 * 60.0 + sec, offset))
}

fn split_zone(s: &str) -> Option<(&str, Option<i64>)> {
    for z in ["Z", "z", "UTC", "GMT"] {
        if let Some(c) = s.strip_suffix(z) {
            return Some((c, Some(0)));
        }
    }
    // ±HH:MM, ±HHMM, ±HH at the end, after the clock's digits.
    if let Some(i) = s.rfind(['+', '-']) {
        let (clock, zone) = s.split_at(i);
        if clock.contains(':') {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let z = zone[1..].replace(':', "");
            let (h, m) = match z.len() {
                2 => (digits::<i64>(&z, 2, 2)?, 0),
                4 => (digits::<i64>(&z[..2], 2, 2)?, digits::<i64>(&z[2..], 2, 2)?),
                _ => return None,
            };
            if h > 14 || m > 59 {
                return None;
            }
            let clock = clock
                .strip_suffix("UTC")
                .or_else(|| clock.strip_suffix("GMT"))
                .unwrap_or(clock);
            return Some((clock, Some(sign * (h * 3600 + m * 60))));
        }
    }
    Some((s, None))
}

fn digits<T: std::str::FromStr>(s: &str, min: usize, max: usize) -> Option<T> {
    (s.len() >= min && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Takes a date cell apart; `None` when it is not a date in any usual format.
fn date_shape(cell: &str) -> Option<DateShape> {
    let mut s = cell.trim();
    // A leading weekday: "Tue, 05 Mar 2024", "Tuesday 5 March 2024".
    if let Some(first) = s.split([',', ' ']).next()
        && first.len() >= 3
        && WEEKDAYS
            .iter()
            .any(|w| first.to_ascii_lowercase().starts_with(w))
        && first.chars().all(|c| c.is_ascii_alphabetic())
    {
        s = s[first.len()..].trim_start_matches([',', ' ']);
    }
    // The date part ends at 'T' between digits, or at the first blank after its last field.
    let (date, rest) = split_date(s)?;
    let date = date_part(date)?;
    let (time, offset) = match rest.map(str::trim) {
        None | Some("") => (None, None),
        Some(r) => {
            let (t, o) = time_of(r)?;
            (Some(t), o)
        }
    };
    Some(DateShape { date, time, offset })
}

/// Splits "2024-03-05T10:00Z" / "05.03.2024 10:00" / "Mar 5, 2024 10:00 PM" into the date and
/// what follows it.
fn split_date(s: &str) -> Option<(&str, Option<&str>)> {
    let b = s.as_bytes();
    // ISO: a 'T' between digits.
    for i in 1..b.len().saturating_sub(1) {
        if (b[i] == b'T' || b[i] == b't') && b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit()
        {
            return Some((&s[..i], Some(&s[i + 1..])));
        }
    }
    // Otherwise the time begins at the first token holding ':'.
    match s.find(':') {
        None => Some((s, None)),
        Some(c) => {
            let start = s[..c].rfind([' ', ',']).map(|i| i + 1)?;
            Some((s[..start].trim_end_matches([' ', ',']), Some(&s[start..])))
        }
    }
}

fn date_part(s: &str) -> Option<DatePart> {
    let tokens: Vec<&str> = s
        .split(['-', '/', '.', ' ', ','])
        .filter(|t| !t.is_empty())
        .collect();
    if tokens.len() != 3 {
        return None;
    }
    let numeric = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let check = |y: i64, m: u32, d: u32| -> Option<DatePart> {
        ((1..=9999).contains(&y) && (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m))
            .then_some(DatePart::Known(y, m, d))
    };
    let (a, b, c) = (tokens[0], tokens[1], tokens[2]);
    if tokens.iter().all(|t| numeric(t)) {
        // One kind of separator between the three numbers.
        let seps: Vec<char> = s.chars().filter(|c| !c.is_ascii_digit()).collect();
        if seps.len() != 2 || seps[0] != seps[1] || seps[0] == ' ' || seps[0] == ',' {
            return None;
        }
        if a.len() == 4 {
            return check(a.parse().ok()?, digits(b, 1, 2)?, digits(c, 1, 2)?);
        }
        let (x, y) = (digits::<u32>(a, 1, 2)?, digits::<u32>(b, 1, 2)?);
        let year = year_of(c)?;
        // Plausible in at least one order.
        let ok_md = (1..=12).contains(&x) && y >= 1 && y <= days_in_month(year, x);
        let ok_dm = (1..=12).contains(&y) && x >= 1 && x <= days_in_month(year, y);
        return (ok_md || ok_dm).then_some(DatePart::Numeric {
            a: x,
            b: y,
            y: year,
        });
    }
    // A month name: "5 Mar 2024", "05-Mar-2024", "Mar 5, 2024", "March 5 2024", "2024 Mar 5".
    let words: Vec<usize> = (0..3).filter(|&i| !numeric(tokens[i])).collect();
    if words.len() != 1 {
        return None;
    }
    let m = month_of(tokens[words[0]])?;
    let nums: Vec<&str> = (0..3)
        .filter(|&i| i != words[0])
        .map(|i| tokens[i])
        .collect();
    let (d, y) = if nums[0].len() == 4 {
        (digits::<u32>(nums[1], 1, 2)?, nums[0].parse().ok()?)
    } else {
        (digits::<u32>(nums[0], 1, 2)?, year_of(nums[1])?)
    };
    check(y, m, d)
}

/// Days since 1970-01-01 of a shaped cell in `order`.
fn shape_days(s: &DateShape, order: DateOrder) -> Option<f64> {
    let (y, m, d) = match s.date {
        DatePart::Known(y, m, d) => (y, m, d),
        DatePart::Numeric { a, b, y } => {
            let (m, d) = match order {
                DateOrder::Mdy | DateOrder::Ymd => (a, b),
                DateOrder::Dmy => (b, a),
            };
            if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
                return None;
            }
            (y, m, d)
        }
    };
    let secs = s.time.unwrap_or(0.0) - s.offset.unwrap_or(0) as f64;
    Some(days_from_civil(y, m, d) as f64 + secs / 86400.0)
}

/// Reads a date cell of a column written in `format`: days since 1970-01-01.
pub fn parse_date(cell: &str, format: &DateFormat) -> Option<f64> {
    shape_days(&date_shape(cell)?, format.order)
}

/// The format that reads every one of `texts` (a column's distinct present cells) as a date,
/// if one does. The day/month order of numeric dates is decided by the whole column: a first
/// number above 12 means day first, a second above 12 month first; when every date fits
/// both, dots and a decimal-comma file mean day first, anything else month first (said by
/// `ambiguous`).
pub fn infer_date<'a>(
    texts: impl Iterator<Item = &'a str>,
    decimal_hint: Option<char>,
) -> Option<DateFormat> {
    let (mut day_first, mut month_first, mut dots, mut n, mut numeric) =
        (false, false, false, 0, 0);
    let mut format = DateFormat::new(DateOrder::Ymd);
    for t in texts {
        n += 1;
        let s = date_shape(t)?;
        format.time |= s.time.is_some();
        format.zone |= s.offset.is_some();
        if let DatePart::Numeric { a, b, y } = s.date {
            numeric += 1;
            dots |= t.trim().contains('.');
            let ok_md = (1..=12).contains(&a) && b >= 1 && b <= days_in_month(y, a);
            let ok_dm = (1..=12).contains(&b) && a >= 1 && a <= days_in_month(y, b);
            day_first |= !ok_md;
            month_first |= !ok_dm;
        }
    }
    if n == 0 || (day_first && month_first) {
        return None;
    }
    format.weekday = format.time;
    if numeric > 0 {
        format.order = if day_first {
            DateOrder::Dmy
        } else if month_first {
            DateOrder::Mdy
        } else {
            format.ambiguous = true;
            if dots || decimal_hint == Some(',') {
                DateOrder::Dmy
            } else {
                DateOrder::Mdy
            }
        };
    }
    Some(format)
}

/// What the format is, for a column's reason.
pub fn describe_date(f: &DateFormat) -> String {
    let what = if f.time { "timestamps" } else { "dates" };
    let order = match f.order {
        DateOrder::Ymd => "year first (ISO 8601)".to_owned(),
        DateOrder::Mdy if f.ambiguous => {
            "month/day/year: every date fits both orders, month first assumed (type the column {\"type\":\"date\",\"order\":\"dmy\"} otherwise)".to_owned()
        }
        DateOrder::Dmy if f.ambiguous => {
            "day/month/year: every date fits both orders, day first assumed from the dots or the decimal comma (type the column {\"type\":\"date\",\"order\":\"mdy\"} otherwise)".to_owned()
        }
        DateOrder::Mdy => "month/day/year (a second number above 12 decides it)".to_owned(),
        DateOrder::Dmy => "day/month/year (a first number above 12 decides it)".to_owned(),
    };
    let zone = if f.zone { ", zones turned to UTC" } else { "" };
    format!("{what}, {order}{zone}")
}

/// Inputs a date column gives: days since 1970 and the year (both standardised later), then
/// the month and the position in the year as cycles (sine and cosine), then the day of the
/// week as a cycle when the format says `weekday`, then the time of day as a cycle when the
/// column has times.
pub fn date_width(f: &DateFormat) -> usize {
    6 + if f.weekday { 2 } else { 0 } + if f.time { 2 } else { 0 }
}

/// The names of [`date_features`]' inputs.
pub fn date_feature_names(name: &str, f: &DateFormat) -> Vec<String> {
    let mut parts = vec![
        "days",
        "year",
        "month sin",
        "month cos",
        "yearday sin",
        "yearday cos",
    ];
    if f.weekday {
        parts.extend(["weekday sin", "weekday cos"]);
    }
    if f.time {
        parts.extend(["hour sin", "hour cos"]);
    }
    parts.iter().map(|p| format!("{name} ({p})")).collect()
}

/// Writes a date's inputs (see [`date_width`]) to `out`. The cycles are taken of the day
/// number itself (sine and cosine need no remainder): the day of the week from 1970-01-01, a
/// Thursday, and the position in the year as days over 365.2425 (within a day of the
/// calendar's day of the year), so an ONNX graph computes them with the same operations.
pub fn date_features(days: f64, f: &DateFormat, out: &mut [f32]) {
    use std::f64::consts::TAU;
    let whole = days.floor();
    let (y, m, _) = civil_from_days(whole as i64);
    // The remainder first (in f64), so the angle is small: an ONNX runtime takes the sine of
    // a float.
    let cycle = |x: f64, period: f64| {
        let a = (x - period * (x / period).floor()) * TAU / period;
        (a.sin() as f32, a.cos() as f32)
    };
    let (ms, mc) = cycle((m - 1) as f64, 12.0);
    let (ys, yc) = cycle(whole, YEAR_DAYS);
    let mut v = [days as f32, y as f32, ms, mc, ys, yc, 0.0, 0.0, 0.0, 0.0];
    let mut at = 6;
    if f.weekday {
        (v[at], v[at + 1]) = cycle(whole + 3.0, 7.0);
        at += 2;
    }
    if f.time {
        (v[at], v[at + 1]) = cycle(days - whole, 1.0);
        at += 2;
    }
    out[..at].copy_from_slice(&v[..at]);
}

/// The mean length of the Gregorian year, in days.
pub const YEAR_DAYS: f64 = 365.2425;

/// Which of a date column's inputs are continuous (the cycles are already in [-1, 1]).
pub fn date_continuous(f: &DateFormat) -> Vec<bool> {
    let mut v = vec![true, true];
    v.extend(std::iter::repeat_n(false, date_width(f) - 2));
    v
}

/// A day number as ISO 8601 text: a date, or a UTC timestamp to the second when it has a time.
pub fn format_days(days: f64, f: &DateFormat) -> String {
    let whole = days.floor();
    let (y, m, d) = civil_from_days(whole as i64);
    if !f.time {
        return format!("{y:04}-{m:02}-{d:02}");
    }
    let secs = ((days - whole) * 86400.0).round() as i64;
    let (h, mi, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let z = if f.zone { "Z" } else { "" };
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}{z}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(texts: &[&str]) -> Option<NumberFormat> {
        infer_number(texts.iter().copied(), None, None)
    }

    #[test]
    fn currency_thousands_and_accounting_negatives() {
        let f = num(&["$1,200.50", "$950.00", "($1,234.00)", "-$5", "$12"]).unwrap();
        assert_eq!(
            (f.decimal, f.thousands, f.parentheses),
            ('.', Some(','), true)
        );
        assert_eq!(f.currency, vec!["$".to_owned()]);
        assert_eq!(parse_number("$1,200.50", &f), Some(1200.5));
        assert_eq!(parse_number("($1,234.00)", &f), Some(-1234.0));
        assert_eq!(parse_number("-$5", &f), Some(-5.0));
        assert_eq!(parse_number("$-5", &f), Some(-5.0));
        assert_eq!(parse_number("1,234,567.5", &f), Some(1234567.5));
        assert_eq!(parse_number("abc", &f), None);
        assert!(
            describe_number(&f).contains("`$` and `,` removed"),
            "{}",
            describe_number(&f)
        );
    }

    #[test]
    fn european_numbers_and_codes() {
        let f = num(&["1.234,50 €", "12,00 €", "999 €"]).unwrap();
        assert_eq!((f.decimal, f.thousands), (',', Some('.')));
        assert_eq!(parse_number("1.234,50 €", &f), Some(1234.5));
        assert_eq!(parse_number("12,5€", &f), Some(12.5));
        let f = num(&["EUR 1 200,50", "EUR 3,10"]).unwrap();
        assert_eq!((f.decimal, f.thousands), (',', Some(' ')));
        assert_eq!(parse_number("EUR 1 200,50", &f), Some(1200.5));
        let f = num(&["CHF 1'200.50", "CHF 80.00"]).unwrap();
        assert_eq!(parse_number("CHF 1'200.50", &f), Some(1200.5));
        // Ambiguous "1,200" alone: thousands in a point-decimal file, a decimal in a comma one.
        assert_eq!(
            parse_number("1,200", &num(&["1,200", "3,400"]).unwrap()),
            Some(1200.0)
        );
        let f = infer_number(["1,200", "3,400"].into_iter(), Some(','), None).unwrap();
        assert_eq!(parse_number("1,200", &f), Some(1.2));
        // The user says the thousands separator: "1.200" is 1200, and a cell that groups
        // with another does not read.
        let f = infer_number(["1.200", "3.400", "$5"].into_iter(), None, Some('.')).unwrap();
        assert_eq!((f.decimal, f.thousands), (',', Some('.')));
        assert_eq!(parse_number("1.200", &f), Some(1200.0));
        assert_eq!(infer_number(["1,200.5"].into_iter(), None, Some('.')), None);
    }

    #[test]
    fn percentages() {
        let f = num(&["12%", "5.5 %", "100%", "-3%"]).unwrap();
        assert!(f.percent);
        assert_eq!(parse_number("12%", &f), Some(0.12));
        assert!((parse_number("5.5 %", &f).unwrap() - 0.055).abs() < 1e-12);
        // A column with some cells without the sign is not taken as percentages.
        assert_eq!(num(&["12%", "15"]), None);
    }

    #[test]
    fn not_numbers() {
        for col in [
            &["1.2.3", "2.0.1"][..],
            &["10.0.0.1"],
            &["555-1234"],
            &["(555) 123-4567"],
            &["A12", "B7"],
            &["ABC 123"],
            &["12", "7"], // plain numbers need no format
            &["1,2,3"],
            &["$12", "12%"],
        ] {
            assert_eq!(num(col), None, "{col:?}");
        }
    }

    fn date(texts: &[&str]) -> Option<DateFormat> {
        infer_date(texts.iter().copied(), None)
    }

    fn ymd(days: f64) -> (i64, u32, u32) {
        civil_from_days(days.floor() as i64)
    }

    #[test]
    fn civil_round_trip() {
        for z in [-800_000i64, -1, 0, 1, 11_016, 19_787, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn date_orders_from_the_whole_column() {
        let f = date(&["03/05/2024", "12/25/2023"]).unwrap();
        assert_eq!((f.order, f.ambiguous), (DateOrder::Mdy, false));
        assert_eq!(ymd(parse_date("03/05/2024", &f).unwrap()), (2024, 3, 5));
        let f = date(&["05.03.2024", "25.12.2023"]).unwrap();
        assert_eq!((f.order, f.ambiguous), (DateOrder::Dmy, false));
        assert_eq!(ymd(parse_date("05.03.2024", &f).unwrap()), (2024, 3, 5));
        let f = date(&["05/03/2024", "01/02/2023"]).unwrap();
        assert_eq!((f.order, f.ambiguous), (DateOrder::Mdy, true));
        assert!(describe_date(&f).contains("both orders"));
        let f = date(&["05.03.2024", "01.02.2023"]).unwrap();
        assert_eq!((f.order, f.ambiguous), (DateOrder::Dmy, true));
        // Both orders forced by different rows: not one date column.
        assert_eq!(date(&["13/01/2024", "01/13/2024"]), None);
    }

    #[test]
    fn iso_timestamps_zones_and_names() {
        let f = date(&[
            "2024-03-05T14:30:00Z",
            "2024-03-05 23:30:00+02:00",
            "2024-01-01",
        ])
        .unwrap();
        assert!(f.time && f.zone);
        assert_eq!(f.order, DateOrder::Ymd);
        let a = parse_date("2024-03-05T14:30:00Z", &f).unwrap();
        assert_eq!(ymd(a), (2024, 3, 5));
        assert!(((a - a.floor()) * 24.0 - 14.5).abs() < 1e-9);
        let b = parse_date("2024-03-05 23:30:00+02:00", &f).unwrap();
        assert!(((b - b.floor()) * 24.0 - 21.5).abs() < 1e-9);
        for (s, want) in [
            ("5 Mar 2024", (2024, 3, 5)),
            ("05-Mar-2024", (2024, 3, 5)),
            ("March 5, 2024", (2024, 3, 5)),
            ("Tue, 05 Mar 2024 10:00:00 +0000", (2024, 3, 5)),
            ("3/5/24", (2024, 3, 5)),
            ("2024/03/05", (2024, 3, 5)),
            ("3/5/2024 2:15 PM", (2024, 3, 5)),
        ] {
            let f = date(&[s]).unwrap_or_else(|| panic!("{s}"));
            assert_eq!(ymd(parse_date(s, &f).unwrap()), want, "{s}");
        }
        let f = date(&["3/5/2024 2:15 PM"]).unwrap();
        let d = parse_date("3/5/2024 2:15 PM", &f).unwrap();
        assert!(((d - d.floor()) * 24.0 - 14.25).abs() < 1e-9);
    }

    #[test]
    fn not_dates() {
        for col in [
            &["2024"][..],
            &["13/13/2024"],
            &["2024-02-30"],
            &["1.5.3"],
            &["hello"],
            &["12:30"],
            &["2024-03-05T25:00"],
            &["Mar 2024"],
        ] {
            assert_eq!(date(col), None, "{col:?}");
        }
    }

    #[test]
    fn features_are_cycles() {
        let f = DateFormat {
            time: true,
            weekday: true,
            ..DateFormat::new(DateOrder::Ymd)
        };
        let mut out = [0f32; 10];
        // 2024-03-04 was a Monday; 06:00 is a quarter of the day.
        let d = days_from_civil(2024, 3, 4) as f64 + 0.25;
        date_features(d, &f, &mut out);
        assert_eq!(out[1], 2024.0);
        assert!(
            (out[6] - 0.0).abs() < 1e-6 && (out[7] - 1.0).abs() < 1e-6,
            "{out:?}"
        );
        assert_eq!(date_width(&DateFormat::new(DateOrder::Ymd)), 6);
        assert!((out[8] - 1.0).abs() < 1e-6, "{out:?}");
        assert_eq!(date_feature_names("d", &f).len(), date_width(&f));
        assert_eq!(format_days(d, &f), "2024-03-04T06:00:00");
    }
}
