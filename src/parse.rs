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
mod tests {
    use super::*;

    #[test]
    fn points_parse_with_any_spacing_sign_and_exponent() {
        assert_eq!(
            point(b"POINT (14.4973794438195 50.00136875782316)"),
            Ok([144_973_794, 500_013_688])
        );
        assert_eq!(
            point(b" point(-9.1 -3.5e1) "),
            Ok([-91_000_000, -350_000_000])
        );
        assert_eq!(point(b"POINT (180 -90)"), Ok([1_800_000_000, -900_000_000]));
    }

    #[test]
    fn malformed_points_are_refused() {
        for bad in [
            &b"POINT(1 2"[..],
            b"LINESTRING (1 2, 3 4)",
            b"POINT (1)",
            b"POINT (1 2 3)",
            b"POINT (NaN 2)",
            b"POINT (inf 2)",
            b"POINT EMPTY",
            b"",
        ] {
            let err = point(bad).unwrap_err();
            assert!(err.starts_with("expected a WKT point"), "{err}");
        }
        assert!(
            point(b"POINT (180.5 0)")
                .unwrap_err()
                .contains("longitude 180.5")
        );
        assert!(
            point(b"POINT (0 -91)")
                .unwrap_err()
                .contains("latitude -91")
        );
    }

    #[test]
    fn datetimes_become_postgres_microseconds() {
        assert_eq!(datetime(b"2000-01-01 00:00:00"), Ok(0));
        assert_eq!(datetime(b"2000-01-01 00:00:01.5"), Ok(1_500_000));
        assert_eq!(datetime(b"1999-12-31 23:59:59"), Ok(-1_000_000));
        // 2018-05-28 is 6722 days after 2000-01-01.
        assert_eq!(
            datetime(b"2018-05-28 09:03:40"),
            Ok((6722 * 86_400 + 9 * 3600 + 3 * 60 + 40) * 1_000_000)
        );
        assert!(datetime(b"2016-02-29 00:00:00").is_ok());
        assert!(datetime(b"0001-01-01 00:00:00").is_ok());
        assert!(datetime(b"9999-12-31 23:59:59.999999").is_ok());
    }

    #[test]
    fn impossible_datetimes_are_refused() {
        for bad in [
            &b"2018-02-30 10:00:00"[..],
            b"2017-02-29 10:00:00",
            b"2018-13-01 10:00:00",
            b"2018-05-01 24:00:00",
            b"2018-05-01 10:60:00",
            b"2018-05-01T10:00:00",
            b"2018-05-01",
            b"2018-05-01 10:00:00Z",
            b"0000-03-01 10:00:00",
            b"0000-01-01 00:00:00",
        ] {
            assert!(datetime(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn civil_dates_round_trip() {
        for z in [-800_000, -1, 0, 10_957, 17_679, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn names_without_nul_and_at_most_the_maximum_length() {
        assert_eq!(
            name("Zürich \"Altstadt\"".as_bytes()),
            Ok("Zürich \"Altstadt\"")
        );
        assert!(name(&[b'a'; MAX_NAME_BYTES]).is_ok());
        let long = name(&[b'a'; MAX_NAME_BYTES + 1]).unwrap_err();
        assert!(
            long.starts_with("expected a name of at most 1024 bytes, found 1025 bytes: \"aaa"),
            "{long}"
        );
        // The value is quoted cut short, never whole.
        assert!(long.len() < 200, "{long}");
        assert_eq!(
            name(b"Tu\0rin").unwrap_err(),
            "expected text without NUL characters, found one at byte 3 of \"Tu\\0rin\""
        );
    }

    #[test]
    fn header_in_any_order_with_extra_columns() {
        let header = ByteRecord::from(vec![
            "datasource",
            "note",
            "Region ",
            "datetime",
            "destination_coord",
            "origin_coord",
        ]);
        let l = layout(&header).unwrap();
        assert_eq!(l.index, [2, 5, 4, 3, 0]);
        assert_eq!(l.ignored, vec!["note".to_string()]);
        let missing = layout(&ByteRecord::from(vec!["region", "origin_coord"])).unwrap_err();
        assert!(
            missing.contains("`destination_coord`, `datetime`, `datasource`"),
            "{missing}"
        );
    }

    #[test]
    fn record_errors_name_the_column() {
        let l = layout(&ByteRecord::from(COLUMNS.to_vec())).unwrap();
        let rec = ByteRecord::from(vec![
            "Turin",
            "POINT (7.6 45.0)",
            "POINT (7.7 45.1)",
            "2018-02-30 10:00:00",
            "funny_car",
        ]);
        let err = trip(&l, &rec).unwrap_err();
        assert_eq!(err.column, Some((4, "datetime")));
        let short = ByteRecord::from(vec!["Turin", "POINT (7.6 45.0)"]);
        assert_eq!(
            trip(&l, &short).unwrap_err().to_string(),
            "expected 5 fields (as in the header), found 2"
        );
        let empty_region = ByteRecord::from(vec![
            " ",
            "POINT (7.6 45.0)",
            "POINT (7.7 45.1)",
            "2018-02-01 10:00:00",
            "funny_car",
        ]);
        assert_eq!(
            trip(&l, &empty_region).unwrap_err().column,
            Some((1, "region"))
        );
    }
}

/// Random bytes and mutated valid records against the parser (run by `cargo test`, a few thousand cases,
/// about a second): never a panic; every outcome a trip within the format's ranges, or an error that names
/// the column to blame (or the field count) and quotes at most a short piece of the value.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 3000,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    fn check(record: &ByteRecord) -> Result<(), TestCaseError> {
        let l = layout(&ByteRecord::from(COLUMNS.to_vec())).unwrap();
        match trip(&l, record) {
            Ok(t) => {
                for name in [t.region, t.datasource] {
                    prop_assert!(!name.trim().is_empty() && name.len() <= MAX_NAME_BYTES);
                    prop_assert!(!name.contains('\0'));
                }
                for [lon, lat] in [t.origin, t.destination] {
                    prop_assert!((-1_800_000_000..=1_800_000_000).contains(&lon));
                    prop_assert!((-900_000_000..=900_000_000).contains(&lat));
                }
                // Years 0001 to 9999.
                let days = t.departed_at.div_euclid(86_400_000_000) + PG_EPOCH_DAYS;
                prop_assert!(
                    (days_from_civil(1, 1, 1)..=days_from_civil(9999, 12, 31)).contains(&days)
                );
            }
            Err(e) => {
                prop_assert!(
                    e.column.is_some() || e.reason.starts_with("expected 5 fields"),
                    "{e}"
                );
                prop_assert!(e.to_string().len() < 400, "{e}");
            }
        }
        Ok(())
    }

    /// A valid line: (line, lon/lat of the origin in 1e-7 degree, departure in microseconds).
    fn valid_line() -> impl Strategy<Value = (String, [i32; 2], i64)> {
        (
            "[A-Za-z][A-Za-z _-]{0,12}",
            -1_800_000_000i32..=1_800_000_000,
            -900_000_000i32..=900_000_000,
            1i64..=9999,
            1i64..=12,
            1i64..=28,
            0i64..86_400,
        )
            .prop_map(|(region, lon, lat, y, m, d, s)| {
                let line = format!(
                    "{region},POINT ({} {}),POINT (0 0),{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02},src",
                    f64::from(lon) / COORD_SCALE,
                    f64::from(lat) / COORD_SCALE,
                    s / 3600,
                    s / 60 % 60,
                    s % 60
                );
                let micros = ((days_from_civil(y, m, d) - PG_EPOCH_DAYS) * 86_400 + s) * 1_000_000;
                (line, [lon, lat], micros)
            })
    }

    fn records_of(bytes: &[u8]) -> Vec<ByteRecord> {
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(bytes);
        csv.byte_records().map(|r| r.unwrap()).collect()
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn random_fields(fields in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..8)) {
            check(&ByteRecord::from(fields))?;
        }

        #[test]
        fn valid_lines_read_back_exactly((line, origin, departed_at) in valid_line()) {
            let records = records_of(line.as_bytes());
            let l = layout(&ByteRecord::from(COLUMNS.to_vec())).unwrap();
            let t = trip(&l, &records[0]).map_err(|e| TestCaseError::fail(format!("{line}: {e}")))?;
            prop_assert_eq!(t.origin, origin);
            prop_assert_eq!(t.departed_at, departed_at);
        }

        #[test]
        fn mutated_valid_lines(
            (line, _, _) in valid_line(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 1..6),
        ) {
            let mut bytes = line.into_bytes();
            for (at, kind, byte) in edits {
                let i = at.index(bytes.len() + 1);
                match kind {
                    0 => bytes.insert(i, byte),
                    1 if i < bytes.len() => { bytes.remove(i); }
                    _ if i < bytes.len() => bytes[i] = byte,
                    _ => bytes.push(byte),
                }
            }
            for record in records_of(&bytes) {
                check(&record)?;
            }
        }
    }
}
