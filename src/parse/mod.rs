//! Turning one CSV record into a validated trip, without allocating.
//!
//! The loader calls [`trip`] once per record with a reused `csv::ByteRecord`; the returned [`Trip`] borrows
//! the names from that record and carries coordinates and time already in the integer form that is COPYed
//! (see `copy.rs`). Anything that does not fit the input format comes back as an [`Invalid`] that says
//! which column, what was found and what was expected.

use csv::ByteRecord;
use std::fmt;

/// The columns a trip file must have, in the order [`Layout::index`] keeps them.
pub const COLUMNS: [&str; 5] = [
    "region",
    "origin_coord",
    "destination_coord",
    "datetime",
    "datasource",
];
const REGION: usize = 0;
const ORIGIN: usize = 1;
const DESTINATION: usize = 2;
const DATETIME: usize = 3;
const DATASOURCE: usize = 4;

/// Coordinates are stored as integers in units of 1e-7 degree (see db/005_trips.sql).
pub const COORD_SCALE: f64 = 1e7;

/// The longest region or datasource name, in bytes of UTF-8. Names are stored once each with a unique
/// index (db/002_names.sql), whose entries PostgreSQL limits to about 2,700 bytes; real names are far
/// shorter, and a longer value is almost always a shifted column.
pub const MAX_NAME_BYTES: usize = 1024;

/// Microseconds between 1970-01-01 and 2000-01-01, PostgreSQL's binary timestamp epoch.
const PG_EPOCH_DAYS: i64 = 10_957;

/// Where each required column sits in the file's header, which may order them freely and add others.
#[derive(Debug)]
pub struct Layout {
    /// Field number of each of [`COLUMNS`].
    pub index: [usize; 5],
    /// How many fields the header has; every record must have as many.
    pub width: usize,
    /// Header names that are not ours, ignored.
    pub ignored: Vec<String>,
}

/// Reads the header record. Names are compared after trimming spaces, ignoring case.
pub fn layout(header: &ByteRecord) -> Result<Layout, String> {
    let mut index = [usize::MAX; 5];
    let mut ignored = Vec::new();
    for (i, raw) in header.iter().enumerate() {
        let name = std::str::from_utf8(raw)
            .map_err(|_| format!("header field {} is not UTF-8 text", i + 1))?
            .trim()
            .trim_start_matches('\u{feff}');
        match COLUMNS.iter().position(|c| c.eq_ignore_ascii_case(name)) {
            Some(c) if index[c] != usize::MAX => {
                return Err(format!(
                    "the header names column `{}` twice (fields {} and {})",
                    COLUMNS[c],
                    index[c] + 1,
                    i + 1
                ));
            }
            Some(c) => index[c] = i,
            None => ignored.push(name.to_string()),
        }
    }
    let missing: Vec<&str> = (0..5)
        .filter(|&c| index[c] == usize::MAX)
        .map(|c| COLUMNS[c])
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the header has no column named {}; expected a header naming {} (any order), found {}",
            missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", "),
            COLUMNS.join(","),
            quoted(&header.iter().collect::<Vec<_>>().join(&b","[..]), 300)
        ));
    }
    Ok(Layout {
        index,
        width: header.len(),
        ignored,
    })
}

/// One valid trip, in the form it is stored.
#[derive(Debug, PartialEq)]
pub struct Trip<'a> {
    pub region: &'a str,
    pub datasource: &'a str,
    /// Microseconds since 2000-01-01 00:00:00 (PostgreSQL's binary `timestamp`).
    pub departed_at: i64,
    /// (lon, lat) in units of 1e-7 degree.
    pub origin: [i32; 2],
    pub destination: [i32; 2],
}

/// Why a record was refused.
#[derive(Debug, PartialEq)]
pub struct Invalid {
    /// 1-based field number and column name, when one field is to blame.
    pub column: Option<(usize, &'static str)>,
    pub reason: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some((n, name)) => write!(f, "column {n} ({name}): {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

/// Validates one record against the header's layout.
pub fn trip<'a>(layout: &Layout, record: &'a ByteRecord) -> Result<Trip<'a>, Invalid> {
    if record.len() != layout.width {
        return Err(Invalid {
            column: None,
            reason: format!(
                "expected {} fields (as in the header), found {}",
                layout.width,
                record.len()
            ),
        });
    }
    let field = |c: usize| &record[layout.index[c]];
    let blame = |c: usize, reason: String| Invalid {
        column: Some((layout.index[c] + 1, COLUMNS[c])),
        reason,
    };
    let name = |c: usize| name(field(c)).map_err(|r| blame(c, r));
    let point = |c: usize| point(field(c)).map_err(|r| blame(c, r));
    Ok(Trip {
        region: name(REGION)?,
        origin: point(ORIGIN)?,
        destination: point(DESTINATION)?,
        departed_at: datetime(field(DATETIME)).map_err(|r| blame(DATETIME, r))?,
        datasource: name(DATASOURCE)?,
    })
}

/// Quotes a field for an error message, cut to 80 bytes.
fn shown(field: &[u8]) -> String {
    quoted(field, 80)
}

/// Quotes a value for a message: control characters escaped, invalid UTF-8 shown as U+FFFD, and cut after
/// `max` bytes with `...`, so that no message ever repeats a long value whole.
pub fn quoted(value: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&value[..value.len().min(max)]);
    let more = if value.len() > max { "..." } else { "" };
    format!("{text:?}{more}")
}

fn name(field: &[u8]) -> Result<&str, String> {
    let text = std::str::from_utf8(field).map_err(|e| {
        format!(
            "expected UTF-8 text, found the byte 0x{:02x} at byte {} of {}",
            field[e.valid_up_to()],
            e.valid_up_to() + 1,
            shown(field)
        )
    })?;
    if text.trim().is_empty() {
        return Err(format!("expected a name, found {}", shown(field)));
    }
    if let Some(at) = field.iter().position(|&b| b == 0) {
        // PostgreSQL's text cannot hold the NUL character.
        return Err(format!(
            "expected text without NUL characters, found one at byte {} of {}",
            at + 1,
            shown(field)
        ));
    }
    if field.len() > MAX_NAME_BYTES {
        return Err(format!(
            "expected a name of at most {MAX_NAME_BYTES} bytes, found {} bytes: {}",
            field.len(),
            shown(field)
        ));
    }
    Ok(text)
}

/// Parses WKT `POINT (lon lat)` (any case, any spacing, signs and exponents allowed) into 1e-7 degrees.
fn point(field: &[u8]) -> Result<[i32; 2], String> {
    let expected = || {
        format!(
            "expected a WKT point like \"POINT (14.43 50.04)\" (longitude latitude, WGS84), found {}",
            shown(field)
        )
    };
    let text = std::str::from_utf8(field).map_err(|_| expected())?.trim();
    let body = text
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("point"))
        .map(|_| text[5..].trim_start())
        .and_then(|rest| rest.strip_prefix('('))
        .and_then(|rest| rest.strip_suffix(')'))
        .ok_or_else(expected)?;
    let mut numbers = body.split_ascii_whitespace();
    let (Some(lon), Some(lat), None) = (numbers.next(), numbers.next(), numbers.next()) else {
        return Err(expected());
    };
    let number = |s: &str| {
        // Only plain decimal notation: Rust's parser would also take "NaN" and "inf".
        if s.bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
        {
            s.parse::<f64>().ok()
        } else {
            None
        }
    };
    let (Some(lon), Some(lat)) = (number(lon), number(lat)) else {
        return Err(expected());
    };
    if !(-180.0..=180.0).contains(&lon) {
        return Err(format!(
            "longitude {lon} is outside [-180, 180] in {}",
            shown(field)
        ));
    }
    if !(-90.0..=90.0).contains(&lat) {
        return Err(format!(
            "latitude {lat} is outside [-90, 90] in {}",
            shown(field)
        ));
    }
    Ok([
        (lon * COORD_SCALE).round() as i32,
        (lat * COORD_SCALE).round() as i32,
    ])
}

/// Parses `YYYY-MM-DD HH:MM:SS` (optionally `.ffffff`) into microseconds since 2000-01-01.
fn datetime(field: &[u8]) -> Result<i64, String> {
    let expected = |what: &str| {
        format!(
            "expected a date and time as YYYY-MM-DD HH:MM:SS{what}, found {}",
            shown(field)
        )
    };
    let digits = |at: usize, len: usize| -> Option<i64> {
        let part = field.get(at..at + len)?;
        part.iter().try_fold(0i64, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
        })
    };
    let sep = |at: usize, c: u8| field.get(at) == Some(&c);
    let shape_ok = sep(4, b'-') && sep(7, b'-') && sep(10, b' ') && sep(13, b':') && sep(16, b':');
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(s), true) = (
        digits(0, 4),
        digits(5, 2),
        digits(8, 2),
        digits(11, 2),
        digits(14, 2),
        digits(17, 2),
        shape_ok,
    ) else {
        return Err(expected(""));
    };
    let micros = match &field[19..] {
        [] => 0,
        [b'.', frac @ ..] if (1..=6).contains(&frac.len()) => {
            let n = digits(20, frac.len()).ok_or_else(|| expected(""))?;
            n * 10i64.pow(6 - frac.len() as u32)
        }
        _ => return Err(expected("")),
    };
    if y == 0 {
        // The year before 0001 is 1 BC, which this format cannot write (PostgreSQL refuses 0000 too).
        return Err(expected(" (a real calendar date: there is no year 0000)"));
    }
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return Err(expected(" (a real calendar date)"));
    }
    if h > 23 || mi > 59 || s > 59 {
        return Err(expected(" (a real time of day)"));
    }
    let days = days_from_civil(y, mo, d) - PG_EPOCH_DAYS;
    Ok((days * 86_400 + h * 3_600 + mi * 60 + s) * 1_000_000 + micros)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01, the inverse of [`days_from_civil`].
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests;
