//! Weekly averages (db/008_weekly_avg.sql, `trips weekly-avg`) against the plain SQL over the `trips` view:
//! edges of cells, boxes and weeks, windows, week-by-week counts, SRIDs, bad questions, the CLI.
//! By arrival and merges: weekly_arrival.rs; polygons with slanted edges: weekly_polygons.rs.

mod common;

use common::weekly::*;
use common::{db_error, sample};

#[test]
fn the_sample_region_averages() {
    let db = test_db!("weekly_sample");
    db.trips(&["ingest", sample().to_str().unwrap()]).ok();
    assert_eq!(
        db.rows(
            "SELECT r, weekly_avg_region(r) FROM unnest(ARRAY['Hamburg', 'Prague', 'Turin', 'Atlantis']) r"
        ),
        ["(Hamburg,5.6)", "(Prague,6.8)", "(Turin,7.6)", "(Atlantis,0)"]
    );
    let run = db.trips(&["weekly-avg", "--region", "Prague"]).ok();
    assert!(
        run.stdout
            .starts_with("region Prague: 6.80 trips per week\n34 trips over 5 weeks"),
        "{}",
        run.stdout
    );
    let run = db.trips(&["weekly-avg", "--region", "Atlantis"]).ok();
    assert!(
        run.stdout
            .starts_with("region Atlantis: 0.00 trips per week")
    );
    assert!(
        run.stderr
            .contains("the regions are: Hamburg, Prague, Turin"),
        "{}",
        run.stderr
    );
}

#[test]
fn weekly_avg_equals_the_plain_sql_on_edges_weeks_and_windows() {
    let db = test_db!("weekly_property");
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    // Three files, not merged, and a tiny tally limit: the loader sends its tallies many times per
    // file, so a cell has several rows in a piece and rows in several pieces.
    for name in ["a.csv", "b.csv", "c.csv"] {
        let file = db.file(name, trips_csv(&mut rng, 1000));
        db.trips(&["ingest", "--tally-limit", "500", "--no-compact", &file])
            .ok();
    }
    assert!(db.count("SELECT count(*) FROM (SELECT FROM trip_cells GROUP BY job_id, side, level, cell HAVING count(*) > 1) c") > 100);
    let mut client = db.client();
    let windows = [
        None,
        Some(("2017-12-25", "2018-01-08")), // two whole weeks across New Year
        Some(("2017-12-31 23:59:59", "2018-01-01 00:00:00")), // one second: only the Sunday trips
        Some(("2017-12-20 13:00", "2018-01-03 07:30")), // not on week edges
        Some(("2010-01-01", "2030-01-01")), // holds every trip, longer than the data
        // Whole days: a Sunday alone, with its 23:59:59 but not Monday's 00:00:00; Wednesday to Monday.
        Some(("2017-12-31", "2018-01-01")),
        Some(("2017-12-13", "2018-01-08")),
    ];
    let mut compared = 0;
    for i in 0..280 {
        let area = area(&mut rng);
        let by = BY[i % 4];
        let window = windows[(i / 4) % windows.len()];
        let ours = weekly_avg(&mut client, &area, by, window);
        let plain = plain_avg(&mut client, &area, by, window);
        assert!(
            (ours - plain).abs() <= 1e-9 * plain.abs().max(1.0),
            "{area} by {by} over {window:?}: weekly_avg {ours}, plain SQL {plain}"
        );
        compared += usize::from(plain > 0.0);
    }
    assert!(compared > 150, "too few areas with trips: {compared}");
}

#[test]
fn weekly_counts_equal_the_plain_sql_week_by_week() {
    let db = test_db!("weekly_counts");
    let mut rng = Rng(0x5eed_1234_abcd_0002);
    db.trips(&["ingest", &db.file("a.csv", trips_csv(&mut rng, 1500))])
        .ok();
    let mut client = db.client();
    let windows = [
        None,
        Some(("2017-12-04", "2018-01-15")), // Mondays: whole weeks
        Some(("2017-12-13", "2018-01-08")), // Wednesday to Monday: the first week is five days
        Some(("2017-12-31", "2018-01-01")), // a Sunday alone: one week, its 23:59:59 in, Monday's 00:00 out
        Some(("2017-12-20 13:00", "2018-01-03 07:30")), // not at midnight (part-weeks read trip by trip)
    ];
    let mut with_trips = 0;
    for i in 0..60 {
        let area = area(&mut rng);
        let by = BY[i % 4];
        for window in windows {
            let weeks = weekly_counts(&mut client, &area, by, window);
            assert_eq!(
                weeks,
                plain_weeks(&mut client, &area, by, window),
                "{area} by {by} over {window:?}: weekly_counts, then the plain SQL"
            );
            let (since, until) = window.map_or((None, None), |(s, u)| (Some(s), Some(u)));
            let summary = client
                .query_one(
                    "SELECT trips, weeks FROM weekly_trips(ST_GeomFromEWKT($1), $2,
                                                           $3::text::timestamp, $4::text::timestamp)",
                    &[&area, &by, &since, &until],
                )
                .unwrap();
            let (trips, n_weeks): (i64, f64) = (summary.get(0), summary.get(1));
            assert_eq!(
                weeks.iter().map(|w| w.1).sum::<i64>(),
                trips,
                "{area} {by} {window:?}"
            );
            if n_weeks.fract() == 0.0 {
                assert_eq!(weeks.len() as f64, n_weeks, "{area} {by} {window:?}");
            }
            with_trips += usize::from(trips > 0);
        }
    }
    assert!(
        with_trips > 150,
        "only {with_trips} of 300 questions hold trips"
    );
    // The default window runs from the week of the first trip to the week of the last: 2017-11-27 (the
    // Monday of 2017-12-01) to the week of 2018-01-29 (60 days on), with the empty weeks as zeros.
    let all = db.rows(
        "SELECT count(*), sum(trips), min(week_start), max(week_start)
                         FROM weekly_counts(-180, -90, 180, 90)",
    );
    assert_eq!(all, ["(10,1500,2017-11-27,2018-01-29)"]);
}

#[test]
fn a_second_ingest_is_counted_at_once() {
    let db = test_db!("weekly_second");
    let mut rng = Rng(0x5eed_1234_abcd_0003);
    let mut client = db.client();
    db.trips(&["ingest", &db.file("a.csv", trips_csv(&mut rng, 400))])
        .ok();
    let areas: Vec<String> = (0..30).map(|_| area(&mut rng)).collect();
    let before: Vec<f64> = areas
        .iter()
        .map(|a| weekly_avg(&mut client, a, "origin", None))
        .collect();
    db.trips(&["ingest", &db.file("b.csv", trips_csv(&mut rng, 400))])
        .ok();
    let mut changed = 0;
    for (a, was) in areas.iter().zip(before) {
        for (by, window) in BY
            .iter()
            .flat_map(|by| [None, Some(("2017-12-20", "2018-01-02"))].map(|w| (*by, w)))
        {
            let (ours, plain) = (
                weekly_avg(&mut client, a, by, window),
                plain_avg(&mut client, a, by, window),
            );
            assert!(
                (ours - plain).abs() <= 1e-9 * plain.max(1.0),
                "{a} {by} over {window:?}: {ours} vs {plain}"
            );
            assert_eq!(
                weekly_counts(&mut client, a, by, window),
                plain_weeks(&mut client, a, by, window),
                "{a} {by} over {window:?}: weekly_counts, then the plain SQL"
            );
        }
        changed += usize::from(weekly_avg(&mut client, a, "origin", None) != was);
    }
    assert!(
        changed > 10,
        "the second file changed only {changed} of 30 answers"
    );
    // `trips refresh` rebuilds the cells from the trips: the same answers.
    let now: Vec<f64> = areas
        .iter()
        .map(|a| weekly_avg(&mut client, a, "either", None))
        .collect();
    db.trips(&["refresh"]).ok();
    let rebuilt: Vec<f64> = areas
        .iter()
        .map(|a| weekly_avg(&mut client, a, "either", None))
        .collect();
    assert_eq!(now, rebuilt);
}

#[test]
fn other_srids_are_transformed_and_multipolygons_work() {
    let db = test_db!("weekly_srid");
    let mut rng = Rng(0x5eed_1234_abcd_0004);
    db.trips(&["ingest", &db.file("a.csv", trips_csv(&mut rng, 1000))])
        .ok();
    let mut client = db.client();
    let area = "SRID=4326;POLYGON((7.52 45.03,7.7 45.01,7.66 45.2,7.52 45.03))";
    let plain = plain_avg(&mut client, area, "origin", None);
    assert!(plain > 0.0);
    let in_3857: f64 = client
        .query_one(
            "SELECT weekly_avg(ST_Transform(ST_GeomFromEWKT($1), 3857))",
            &[&area],
        )
        .unwrap()
        .get(0);
    assert!(
        (in_3857 - plain).abs() < 0.05 * plain,
        "{in_3857} vs {plain}"
    );
    let multi = "SRID=4326;MULTIPOLYGON(((7.5 45.0,7.6 45.0,7.6 45.1,7.5 45.0)),((-46.8 -23.7,-46.6 -23.7,-46.6 -23.5,-46.8 -23.7)))";
    assert_eq!(
        weekly_avg(&mut client, multi, "either", None),
        plain_avg(&mut client, multi, "either", None)
    );
}

#[test]
fn bad_questions_get_clear_errors() {
    let db = test_db!("weekly_errors");
    db.trips(&["ingest", sample().to_str().unwrap()]).ok();
    let cases: [(&[&str], &str); 10] = [
        (&["--bbox", "7.8,44.9,7.5,45.2"], "has min >= max"),
        (&["--bbox", "7.5,-91,7.8,45.2"], "is outside the world"),
        (
            &["--bbox", "7.5,44.9,7.8"],
            "expected four numbers MINLON,MINLAT,MAXLON,MAXLAT",
        ),
        (
            &["--wkt", "POLYGON((0 0,1 1,1 0,0 1,0 0))"],
            "not a valid polygon: Self-intersection",
        ),
        (&["--wkt", "POLYGON EMPTY"], "the area is empty"),
        (
            &["--wkt", "POINT(7.6 45)"],
            "the area is a point, not a polygon",
        ),
        (&["--wkt", "POLYGON((7.5 45"], "cannot read the polygon"),
        (
            &["--bbox", "7.5,44.9,7.8,45.2", "--by", "sideways"],
            "possible values: origin, destination, both, either",
        ),
        (
            &[
                "--bbox",
                "7.5,44.9,7.8,45.2",
                "--since",
                "2018-05-07",
                "--until",
                "2018-05-07",
            ],
            "is empty",
        ),
        (
            &["--region", "Turin", "--since", "last tuesday"],
            "--since and --until take a date",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["weekly-avg"];
        all.extend(args);
        let run = db.trips(&all);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
    }
    // The same meanings from SQL.
    let mut client = db.client();
    let err = db_error(
        &mut client,
        "SELECT weekly_avg(7.5, 44.9, 7.8, 45.2, by => 'upstream')",
    );
    assert!(err.message().contains("unknown by => 'upstream'"), "{err}");
}

#[test]
fn the_cli_prints_the_window_and_its_weeks() {
    let db = test_db!("weekly_cli");
    db.trips(&["ingest", sample().to_str().unwrap()]).ok();
    let run = db
        .trips(&["weekly-avg", "--bbox", "7.5,44.9,7.8,45.2", "--weeks"])
        .ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "box 7.5,44.9,7.8,45.2 (origin in it): 7.60 trips per week"
    );
    assert_eq!(
        lines[1],
        "38 trips over 5 weeks, from 2018-04-30 00:00:00 to 2018-06-04 00:00:00 (excluded)"
    );
    assert_eq!(lines.len(), 3 + 5);
    // CSV: one row per week, the same weeks and counts as the text.
    let csv = db
        .trips(&[
            "weekly-avg",
            "--bbox",
            "7.5,44.9,7.8,45.2",
            "--weeks",
            "--format",
            "csv",
        ])
        .ok();
    let rows: Vec<&str> = csv.stdout.lines().collect();
    assert_eq!(rows[0], "week_start,trips");
    let from_text: Vec<String> = lines[3..]
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(","))
        .collect();
    assert_eq!(rows[1..], from_text[..]);
    let csv = db
        .trips(&["weekly-avg", "--region", "Turin", "--format", "csv"])
        .ok();
    assert_eq!(
        csv.stdout,
        "average,trips,weeks,window_start,window_end\n7.6,38,5,2018-04-30 00:00:00,2018-06-04 00:00:00\n"
    );
    let run = db
        .trips(&[
            "weekly-avg",
            "--region",
            "Turin",
            "--since",
            "2018-05-07",
            "--until",
            "2018-05-21",
            "--json",
            "--weeks",
        ])
        .ok();
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(v["weeks"], 2.0);
    let per_week: i64 = v["per_week"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["trips"].as_i64().unwrap())
        .sum();
    assert_eq!(v["trips"].as_i64().unwrap(), per_week);
    assert_eq!(
        v["trips"].as_i64().unwrap(),
        db.count(
            "SELECT count(*) FROM trips WHERE region = 'Turin'
                    AND departed_at >= '2018-05-07' AND departed_at < '2018-05-21'"
        )
    );
}
