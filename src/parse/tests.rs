//! The parser's cases, and its fuzz tests.

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

/// Random bytes and mutated valid records against the parser (run by `cargo test`, a few thousand cases,
/// about a second): never a panic; every outcome a trip within the format's ranges, or an error that names
/// the column to blame (or the field count) and quotes at most a short piece of the value.
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
