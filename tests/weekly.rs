//! Weekly averages (db/010_weekly_avg.sql, `trips weekly-avg`): the fast answers against the plain SQL over
//! the `trips` view, on trips made to sit on the edges that matter (cell edges, box edges, week edges).

mod common;

use common::{HEADER, TestDb, db_error, migration_files, sample};
use postgres::Client;
use sha2::Digest;

/// xorshift64*: the same seed gives the same trips and areas.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) % n
    }
}

/// A coordinate near `base` (degrees): often exactly on a multiple of 0.1, 0.01 or 0.001 degree (the cell
/// edges of every level, and the box edges below), else anywhere, to 1e-7.
fn coordinate(rng: &mut Rng, base: f64) -> String {
    match rng.below(4) {
        0 => format!("{:.3}", base + rng.below(300) as f64 / 1000.0),
        1 => format!("{:.2}", base + rng.below(30) as f64 / 100.0),
        _ => format!("{:.7}", base + rng.below(3_000_000) as f64 / 1e7),
    }
}

/// Departures that straddle weeks and a year: Sunday 23:59:59 and Monday 00:00:00 around New Year 2018
/// (Monday 2018-01-01) and in between, with a few far ones to widen the window.
fn departure(rng: &mut Rng) -> String {
    const EDGES: [&str; 6] = [
        "2017-12-31 23:59:59",
        "2018-01-01 00:00:00",
        "2017-12-24 23:59:59",
        "2017-12-25 00:00:00",
        "2018-01-07 23:59:59",
        "2018-01-08 00:00:00",
    ];
    match rng.below(4) {
        0 => EDGES[rng.below(6) as usize].to_string(),
        _ => {
            let day = rng.below(60);
            let (y, m, d) = if day < 31 {
                (2017, 12, day + 1)
            } else {
                (2018, 1, day - 30)
            };
            format!(
                "{y}-{m:02}-{d:02} {:02}:{:02}:{:02}",
                rng.below(24),
                rng.below(60),
                rng.below(60)
            )
        }
    }
}

/// Trips in two places, one west of Greenwich and south of the equator (negative coordinates: floor,
/// not truncation, must place them in cells).
fn trips_csv(rng: &mut Rng, rows: usize) -> String {
    let mut csv = format!("{HEADER}\n");
    for _ in 0..rows {
        let (lon, lat) = if rng.below(2) == 0 {
            (7.5, 45.0)
        } else {
            (-46.8, -23.7)
        };
        csv += &format!(
            "R{},POINT ({} {}),POINT ({} {}),{},src{}\n",
            rng.below(3),
            coordinate(rng, lon),
            coordinate(rng, lat),
            coordinate(rng, lon),
            coordinate(rng, lat),
            departure(rng),
            rng.below(2)
        );
    }
    csv
}

/// A random area as EWKT around one of the two places: mostly boxes whose edges often fall on the same
/// multiples as the points, sometimes a triangle or a polygon with a hole.
fn area(rng: &mut Rng) -> String {
    let (lon, lat) = if rng.below(2) == 0 {
        (7.5, 45.0)
    } else {
        (-46.8, -23.7)
    };
    let edge = |rng: &mut Rng, base: f64| -> f64 {
        match rng.below(3) {
            0 => base + rng.below(300) as f64 / 1000.0,
            1 => base + rng.below(30) as f64 / 100.0,
            _ => base + rng.below(3_000_000) as f64 / 1e7,
        }
    };
    let (a, b) = (edge(rng, lon), edge(rng, lon));
    let (c, d) = (edge(rng, lat), edge(rng, lat));
    let (x0, x1, y0, y1) = (a.min(b), a.max(b) + 0.001, c.min(d), c.max(d) + 0.001);
    match rng.below(6) {
        0 => format!("SRID=4326;POLYGON(({x0} {y0},{x1} {y0},{x0} {y1},{x0} {y0}))"),
        1 => {
            let (mx, my) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
            let (hx, hy) = ((x1 - x0) / 4.0, (y1 - y0) / 4.0);
            format!(
                "SRID=4326;POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}),\
                 ({} {},{} {},{} {},{} {},{} {}))",
                mx - hx,
                my - hy,
                mx - hx,
                my + hy,
                mx + hx,
                my + hy,
                mx + hx,
                my - hy,
                mx - hx,
                my - hy
            )
        }
        _ => format!("SRID=4326;POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"),
    }
}

/// The plain SQL's test of a trip's chosen end (`by`) against the area `a`.
fn end_test(by: &str) -> &'static str {
    match by {
        "origin" => "ST_Intersects(a, t.origin)",
        "destination" => "ST_Intersects(a, t.destination)",
        "both" => "ST_Intersects(a, t.origin) AND ST_Intersects(a, t.destination)",
        _ => "(ST_Intersects(a, t.origin) OR ST_Intersects(a, t.destination))",
    }
}

/// The default window, computed here from the trips themselves, or the window given: `w(since, until)`.
const PLAIN_WINDOW: &str = "
    w AS (SELECT coalesce(nullif($2, '')::timestamp, date_trunc('week', min(departed_at))) AS since,
                 coalesce(nullif($3, '')::timestamp, date_trunc('week', max(departed_at)) + interval '7 days') AS until
            FROM trips)";

/// The plain SQL answer: trips whose chosen end intersects the area, in the window, over the window's weeks.
fn plain_avg(client: &mut Client, area: &str, by: &str, window: Option<(&str, &str)>) -> f64 {
    let (since, until) = window.unwrap_or(("", ""));
    let sql = format!(
        "WITH {PLAIN_WINDOW}
         SELECT count(t.*)::float8 / (extract(epoch FROM w.until - w.since)::float8 / 604800)
           FROM w CROSS JOIN ST_GeomFromEWKT($1) AS a
           LEFT JOIN trips t ON {} AND t.departed_at >= w.since AND t.departed_at < w.until
          GROUP BY w.since, w.until",
        end_test(by)
    );
    client
        .query_one(&sql, &[&area, &since, &until])
        .unwrap()
        .get(0)
}

/// The plain SQL's weeks: (Monday, trips of the window departing in its week) for every week from the
/// window's first to its last, empty weeks included.
fn plain_weeks(
    client: &mut Client,
    area: &str,
    by: &str,
    window: Option<(&str, &str)>,
) -> Vec<(String, i64)> {
    let (since, until) = window.unwrap_or(("", ""));
    let sql = format!(
        "WITH {PLAIN_WINDOW},
         week AS (SELECT generate_series(date_trunc('week', since), until - interval '1 microsecond',
                                         interval '1 week')::date AS monday FROM w)
         SELECT k.monday::text, count(t.*)
           FROM week k CROSS JOIN w CROSS JOIN ST_GeomFromEWKT($1) AS a
           LEFT JOIN trips t ON {} AND t.departed_at >= w.since AND t.departed_at < w.until
                            AND date_trunc('week', t.departed_at)::date = k.monday
          GROUP BY k.monday ORDER BY k.monday",
        end_test(by)
    );
    client
        .query(&sql, &[&area, &since, &until])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn weekly_counts(
    client: &mut Client,
    area: &str,
    by: &str,
    window: Option<(&str, &str)>,
) -> Vec<(String, i64)> {
    let (since, until) = window.map_or((None, None), |(s, u)| (Some(s), Some(u)));
    client
        .query(
            "SELECT week_start::text, trips
               FROM weekly_counts(ST_GeomFromEWKT($1), $2, $3::text::timestamp, $4::text::timestamp)",
            &[&area, &by, &since, &until],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn weekly_avg(client: &mut Client, area: &str, by: &str, window: Option<(&str, &str)>) -> f64 {
    let (since, until) = window.map_or((None, None), |(s, u)| (Some(s), Some(u)));
    client
        .query_one(
            "SELECT weekly_avg(ST_GeomFromEWKT($1), $2, $3::text::timestamp, $4::text::timestamp)",
            &[&area, &by, &since, &until],
        )
        .unwrap()
        .get(0)
}

const BY: [&str; 4] = ["origin", "destination", "both", "either"];

/// Takes a database back to before db/028 (no days per cell, no sorted departures), for tests that re-run
/// older migrations, whose rows have neither; `trips migrate` then applies db/028 again, from the trips,
/// and db/029 to db/032 after it (which replace functions that the older migrations replace too; db/030
/// gives the pairs their days; db/032 drops a function of db/028 that nothing calls).
const BEFORE_DB_028: &str = "
    DELETE FROM schema_migrations WHERE version IN (28, 29, 30, 31, 32);
    DROP FUNCTION trip_area_both_between, trip_area_pair_days, trip_area_counts_between, compact_area_pairs;
    ALTER TABLE IF EXISTS trip_area_pairs DROP COLUMN days, DROP COLUMN trips_to_day;
    ALTER TABLE trip_area_counts DROP CONSTRAINT trip_area_counts_days, DROP COLUMN days, DROP COLUMN trips_to_day;
    ALTER TABLE trip_area_points DROP COLUMN departed_sorted;
    DROP FUNCTION trip_area_count_between, trip_area_days, trip_day;";

#[test]
fn the_sample_region_averages() {
    let db = TestDb::new("weekly_sample");
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
    let db = TestDb::new("weekly_property");
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    // A tiny tally limit, not compacted: the loader sends points many times per file, so cells have
    // several rows.
    let file = db.file("a.csv", trips_csv(&mut rng, 3000));
    db.trips(&["ingest", "--tally-limit", "500", "--no-compact", &file])
        .ok();
    // What the loader wrote for windows (db/028) is what the migration computes from the trips.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM trip_area_counts c
               FULL JOIN trip_area_days() d USING (job_id, side, level, cx, cy)
              WHERE coalesce(c.level, d.level) < 3
                AND (c.days IS DISTINCT FROM d.days OR c.trips_to_day IS DISTINCT FROM d.trips_to_day)"
        ),
        0
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM trip_area_points
              WHERE departed_sorted IS DISTINCT FROM ARRAY(SELECT t FROM unnest(departed_at) AS t ORDER BY t)"
        ),
        0
    );
    let mut client = db.client();
    let windows = [
        None,
        Some(("2017-12-25", "2018-01-08")), // two whole weeks across New Year
        Some(("2017-12-31 23:59:59", "2018-01-01 00:00:00")), // one second: only the Sunday trips
        Some(("2017-12-20 13:00", "2018-01-03 07:30")), // not on week edges
        Some(("2010-01-01", "2030-01-01")), // holds every trip, longer than the data
        // Whole days (db/028 counts them by day): a Sunday alone, with its 23:59:59 but not Monday's
        // 00:00:00; Wednesday to Monday.
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
    let db = TestDb::new("weekly_counts");
    let mut rng = Rng(0x5eed_1234_abcd_0002);
    db.trips(&["ingest", &db.file("a.csv", trips_csv(&mut rng, 1500))])
        .ok();
    let mut client = db.client();
    let windows = [
        None,
        Some(("2017-12-04", "2018-01-15")), // Mondays: whole weeks
        Some(("2017-12-13", "2018-01-08")), // Wednesday to Monday: the first week is five days
        Some(("2017-12-31", "2018-01-01")), // a Sunday alone: one week, its 23:59:59 in, Monday's 00:00 out
        Some(("2017-12-20 13:00", "2018-01-03 07:30")), // not at midnight (read from the points)
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
    // The periods' bounds must be midnights in ascending order: any other bound would be counted wrongly
    // by levels 1 and 2, which know days.
    for bounds in [
        "'{2017-12-04 06:00, 2018-01-15}'",
        "'{2018-01-15, 2017-12-04}'",
        "'{2017-12-04, 2017-12-04}'",
        "'{2017-12-04}'",
    ] {
        let err = db_error(
            &mut client,
            &format!(
                "SELECT trip_area_counts_between(ST_MakeEnvelope(7, 44, 8, 46, 4326), NULL, 1::smallint, {bounds})"
            ),
        );
        assert!(
            err.message()
                .contains("are not two or more distinct midnights in ascending order"),
            "{bounds}: {}",
            err.message()
        );
    }
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
    let db = TestDb::new("weekly_second");
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
    let db = TestDb::new("weekly_srid");
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
    let db = TestDb::new("weekly_errors");
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
    let db = TestDb::new("weekly_cli");
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

#[test]
fn trips_loaded_before_the_area_pyramid_are_backfilled_by_the_migration() {
    let db = TestDb::new("weekly_backfill");
    db.trips(&["ingest", sample().to_str().unwrap()]).ok();
    // A database whose trips were loaded before db/009: no cells, and db/011 not yet applied.
    db.client()
        .batch_execute(
            "TRUNCATE trip_area_counts, trip_area_points; DELETE FROM schema_migrations WHERE version = 11",
        )
        .unwrap();
    let run = db.trips(&["migrate"]).ok();
    assert!(
        run.stderr
            .contains("applied db/011_area_counts_backfill.sql"),
        "{}",
        run.stderr
    );
    let mut client = db.client();
    let area = "SRID=4326;POLYGON((7.6 45,7.75 45,7.75 45.15,7.6 45.15,7.6 45))";
    let plain = plain_avg(&mut client, area, "either", None);
    assert_eq!(plain, 29.0 / 5.0);
    assert_eq!(weekly_avg(&mut client, area, "either", None), plain);
}

#[test]
fn area_points_loaded_before_db_013_move_into_a_partition_per_job() {
    let db = TestDb::new("weekly_013");
    let mut c = db.client();
    // The schema as it was before db/013, applied and recorded the way `trips migrate` does it.
    c.batch_execute(
        "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
                                         sha256 text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .unwrap();
    let files: Vec<_> = migration_files()
        .into_iter()
        .filter(|(n, _)| n.as_str() < "013")
        .collect();
    assert_eq!(files.len(), 12);
    for (i, (name, sql)) in files.iter().enumerate() {
        let sum: String = sha2::Sha256::digest(sql.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        c.batch_execute(&sql).unwrap();
        c.execute(
            "INSERT INTO schema_migrations (version, name, sha256) VALUES ($1, $2, $3)",
            &[&(i as i32 + 1), name, &sum],
        )
        .unwrap();
    }
    // Two files' trips, loaded through the functions the loader called then, and their area pyramid in the
    // one shared table of that schema.
    for (job, seed) in [(1, 7919), (2, 104_729)] {
        c.batch_execute(&format!(
            "SELECT ingest_job_open('file{job}.csv', NULL, false);
             UPDATE ingest_jobs SET state = 'loading' WHERE id = {job};
             SELECT ingest_create_staging({job});
             INSERT INTO trip_rows_job_{job}
             SELECT {job}, dimension_id('regions', 'Turin'), dimension_id('datasources', 'ds' || g % 3),
                    timestamp '2018-05-01' + (g * {seed} % 40000) * interval '1 minute',
                    76000000 + g * {seed} % 2000000, 450000000 + g * 31 * {seed} % 2000000,
                    76000000 + g * 7 * {seed} % 2000000, 450000000 + g * 13 * {seed} % 2000000
               FROM generate_series(1::bigint, 3000) AS g;
             SELECT ingest_finish({job}, 'sha{job}', 3000, 0, '{{}}', '{{}}', '{{}}', '{{}}', '{{}}');"
        ))
        .unwrap();
    }
    c.batch_execute("SELECT rebuild_rollups(); SELECT rebuild_area_counts();")
        .unwrap();
    assert_eq!(
        db.count("SELECT count(*) FROM pg_inherits WHERE inhparent = 'trip_area_points'::regclass"),
        0,
        "before db/013 the points are one table"
    );

    let run = db.trips(&["migrate"]).ok();
    assert!(
        run.stderr.contains("applied db/013_area_points_by_job.sql"),
        "{}",
        run.stderr
    );
    assert_eq!(
        db.rows(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                  WHERE i.inhparent = 'trip_area_points'::regclass ORDER BY 1"
        ),
        ["(trip_area_points_job_1)", "(trip_area_points_job_2)"]
    );
    assert_eq!(
        db.count("SELECT sum(trips)::bigint FROM trip_area_points_job_2 WHERE side = 1"),
        3000
    );
    // The answers are the plain SQL's, before and after a file loaded by this binary.
    let check = |client: &mut Client| {
        for area in [
            "SRID=4326;POLYGON((7.6 45,7.75 45,7.75 45.15,7.6 45.15,7.6 45))",
            "SRID=4326;POLYGON((7.61 45.02,7.7 45.01,7.74 45.12,7.63 45.09,7.61 45.02))",
        ] {
            for by in BY {
                let plain = plain_avg(client, area, by, None);
                assert!(plain > 0.0, "{area} {by}: the area holds trips");
                assert_eq!(weekly_avg(client, area, by, None), plain, "{area} {by}");
            }
        }
    };
    check(&mut db.client());
    db.trips(&["ingest", sample().to_str().unwrap()]).ok();
    assert_eq!(db.count("SELECT count(*) FROM trips"), 6100);
    check(&mut db.client());
}

/// How many (side, cell)s have their points in more than one row of trip_area_points.
/// Rows of points whose arrays are not as db/015, db/025 and db/026 need them: `trips` their length, `lon`
/// in order, `lat_sorted` the latitudes in order and `lon_by_lat` the longitude of each of them, the other
/// ends there and `other_lon_sorted` / `other_lat_by_other_lon` the same other ends in order of longitude.
fn rows_out_of_order(db: &TestDb) -> i64 {
    db.count(
        "SELECT count(*) FROM trip_area_points
          WHERE trips <> cardinality(lon)
             OR lon <> (SELECT array_agg(v ORDER BY v) FROM unnest(lon) AS v)
             OR lat_sorted <> (SELECT array_agg(v ORDER BY v) FROM unnest(lat) AS v)
             OR lon_by_lat <> (SELECT array_agg(u.x ORDER BY u.y, u.x) FROM unnest(lon, lat) AS u(x, y))
             OR other_lon IS NULL OR trips <> cardinality(other_lon)
             OR other_lon_sorted IS DISTINCT FROM
                (SELECT array_agg(u.x ORDER BY u.x, u.y) FROM unnest(other_lon, other_lat) AS u(x, y))
             OR other_lat_by_other_lon IS DISTINCT FROM
                (SELECT array_agg(u.y ORDER BY u.x, u.y) FROM unnest(other_lon, other_lat) AS u(x, y))",
    )
}

fn cells_in_several_rows(db: &TestDb) -> i64 {
    db.count(
        "SELECT count(*) FROM (SELECT side, cx, cy FROM trip_area_points GROUP BY 1, 2, 3
                               HAVING count(*) > 1) AS c",
    )
}

/// Trips crowded into a few level-3 cells, on a grid of 1e-4 degree (many share a coordinate), and boxes
/// whose edges fall on that grid: a box's edge cells are counted by binary search on sorted coordinates
/// (db/015_box_counts.sql), and a point on the edge, or many, must count once, whichever edge cuts the cell.
fn crowded_trips_csv(rng: &mut Rng, rows: usize) -> String {
    let mut csv = format!("{HEADER}\n");
    let mut coordinate = |base: f64| match rng.below(5) {
        0 => format!("{:.7}", base + rng.below(50_000) as f64 / 1e7),
        _ => format!("{:.4}", base + rng.below(50) as f64 / 1e4),
    };
    for i in 0..rows {
        let (a, b, c, d) = (
            coordinate(7.5),
            coordinate(45.0),
            coordinate(7.5),
            coordinate(45.0),
        );
        csv += &format!(
            "R,POINT ({a} {b}),POINT ({c} {d}),2018-01-{:02} 10:00:00,s\n",
            1 + i % 21 // three weeks from Monday 2018-01-01
        );
    }
    csv
}

/// A box on the grid of crowded_trips_csv, from 1e-4 degree (inside one cell) to its whole width.
fn crowded_box(rng: &mut Rng) -> [f64; 4] {
    let mut edges = |base: f64| {
        let (a, b) = (rng.below(54) as f64 - 2.0, rng.below(54) as f64 - 2.0);
        [base + a.min(b) / 1e4, base + (a.max(b) + 1.0) / 1e4]
    };
    let ([x0, x1], [y0, y1]) = (edges(7.5), edges(45.0));
    [x0, y0, x1, y1]
}

/// For each box and by: (weekly_trips' count, the plain SQL's count).
fn box_counts(client: &mut Client, boxes: &[[f64; 4]]) -> Vec<(String, i64, i64)> {
    let mut out = Vec::new();
    for b in boxes {
        for (by, test) in [
            ("origin", "ST_Intersects(a, origin)"),
            ("destination", "ST_Intersects(a, destination)"),
            (
                "either",
                "(ST_Intersects(a, origin) OR ST_Intersects(a, destination))",
            ),
        ] {
            let row = client
                .query_one(
                    &format!(
                        "SELECT (SELECT trips FROM weekly_trips($1, $2, $3, $4, $5)),
                                (SELECT count(*) FROM trips, ST_MakeEnvelope($1, $2, $3, $4, 4326) AS a
                                  WHERE {test})"
                    ),
                    &[&b[0], &b[1], &b[2], &b[3], &by],
                )
                .unwrap();
            out.push((format!("{b:?} by {by}"), row.get(0), row.get(1)));
        }
    }
    out
}

#[test]
fn boxes_count_crowded_cells_exactly_after_load_migration_and_rebuild() {
    let db = TestDb::new("weekly_crowded");
    let mut rng = Rng(0x5eed_1234_abcd_0005);
    // A small tally limit, not compacted: each cell gets several rows, each sorted on its own.
    let file = db.file("a.csv", crowded_trips_csv(&mut rng, 3000));
    db.trips(&["ingest", "--tally-limit", "700", "--no-compact", &file])
        .ok();
    let boxes: Vec<[f64; 4]> = (0..150).map(|_| crowded_box(&mut rng)).collect();
    let mut client = db.client();
    let check = |client: &mut Client, when: &str| {
        let counts = box_counts(client, &boxes);
        for (question, ours, plain) in &counts {
            assert_eq!(ours, plain, "{when}: {question}");
        }
        let edges = counts.iter().filter(|(_, n, _)| *n > 0).count();
        assert!(
            edges > 300,
            "{when}: only {edges} of 450 answers hold trips"
        );
    };
    check(&mut client, "as loaded");
    assert!(cells_in_several_rows(&db) > 10, "several rows per cell");
    assert_eq!(rows_out_of_order(&db), 0, "rows as the loader wrote them");

    // Compaction (db/022): one row per cell, the same points, in the order the box counts rely on.
    let points =
        "SELECT side, cx, cy, unnest(lon), unnest(lat), unnest(departed_at), unnest(other_lon),
                         unnest(other_lat) FROM trip_area_points ORDER BY 1, 2, 3, 4, 5, 6, 7, 8";
    let before = db.rows(points);
    // A query still running on trip_area_points: the swap cannot have the table within 5 s (db/023), so
    // the compaction gives up, and nothing changes.
    let mut holder = db.client();
    let mut reading = holder.transaction().unwrap();
    reading
        .query_one("SELECT count(*) FROM trip_area_points", &[])
        .unwrap();
    let run = db.trips(&["compact"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "could not compact the area points of job 1: trip_area_points stayed in use for 5 s"
        ) && run.stderr.contains("Nothing changed"),
        "{}",
        run.stderr
    );
    reading.rollback().unwrap();
    assert!(cells_in_several_rows(&db) > 10, "rows as they were");
    assert_eq!(
        db.rows(points),
        before,
        "the points after a failed compaction"
    );
    let run = db.trips(&["compact"]).ok();
    assert!(
        run.stderr
            .contains("job 1: compacted the area points from "),
        "{}",
        run.stderr
    );
    check(&mut client, "after trips compact");
    assert_eq!(db.rows(points), before, "the points after compaction");
    assert_eq!(
        cells_in_several_rows(&db),
        0,
        "one row per cell after compaction"
    );
    assert_eq!(
        rows_out_of_order(&db),
        0,
        "compacted rows counted and sorted"
    );
    let run = db.trips(&["compact", "--job", "1"]).ok();
    assert!(
        run.stderr
            .contains("job 1: area points already one row per cell"),
        "{}",
        run.stderr
    );
    let run = db.trips(&["compact", "--job", "9"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("there is no ingest job 9; `trips jobs` lists them"),
        "{}",
        run.stderr
    );

    // Rows written before db/015: in no particular order, without lat_sorted (nor db/025's lon_by_lat, nor
    // db/026's other ends in order). The migrations sort them and add those.
    client
        .batch_execute(
            "DELETE FROM schema_migrations WHERE version IN (15, 25, 26, 28);
             UPDATE trip_area_points p
                SET lon = (SELECT array_agg(v ORDER BY i DESC) FROM unnest(p.lon) WITH ORDINALITY u(v, i)),
                    lat = (SELECT array_agg(v ORDER BY i DESC) FROM unnest(p.lat) WITH ORDINALITY u(v, i)),
                    departed_at = (SELECT array_agg(v ORDER BY i DESC)
                                     FROM unnest(p.departed_at) WITH ORDINALITY u(v, i)),
                    other_lon = (SELECT array_agg(v ORDER BY i DESC) FROM unnest(p.other_lon) WITH ORDINALITY u(v, i)),
                    other_lat = (SELECT array_agg(v ORDER BY i DESC) FROM unnest(p.other_lat) WITH ORDINALITY u(v, i));
             ALTER TABLE trip_area_points DROP COLUMN lat_sorted, DROP COLUMN lon_by_lat,
                                          DROP COLUMN other_lon_sorted, DROP COLUMN other_lat_by_other_lon;
             DROP FUNCTION trip_box_count, trip_box_children, trip_coord_from, trip_coord_to;",
        )
        .unwrap();
    client.batch_execute(BEFORE_DB_028).unwrap();
    let run = db.trips(&["migrate"]).ok();
    assert!(
        run.stderr.contains("applied db/015_box_counts.sql")
            && run
                .stderr
                .contains("applied db/025_area_points_by_latitude.sql")
            && run
                .stderr
                .contains("applied db/026_area_points_other_ends_by_longitude.sql"),
        "{}",
        run.stderr
    );
    let mut client = db.client();
    check(&mut client, "after db/015 sorted the rows");

    assert_eq!(
        rows_out_of_order(&db),
        0,
        "rows sorted by db/015, db/025 and db/026"
    );

    client
        .batch_execute("SELECT rebuild_area_counts()")
        .unwrap();
    check(&mut client, "after rebuild_area_counts()");
    assert_eq!(rows_out_of_order(&db), 0, "rows rebuilt");
}

/// Trips in a square of 0.05 degree (five level-2 cells a side), half of them between two crowded spots,
/// with coordinates often on the level-2 and level-3 cell edges or just below them: areas of a few level-2
/// cells hold whole pairs of cells (db/016_area_pairs.sql), and the band of cells along their edge holds
/// both ends of many trips.
fn paired_trips_csv(rng: &mut Rng, rows: usize) -> String {
    let mut csv = format!("{HEADER}\n");
    let end = |rng: &mut Rng, spot: f64| -> (String, String) {
        let mut at = |base: f64| match rng.below(5) {
            0 => format!("{:.2}", base + rng.below(6) as f64 / 100.0),
            1 => format!("{:.3}", base + rng.below(50) as f64 / 1000.0),
            2 => format!("{:.7}", base + spot + rng.below(30_000) as f64 / 1e7),
            // the last stored coordinate of a level-2 cell, just below the next cell's edge
            4 => format!("{:.7}", base + (1 + rng.below(5)) as f64 / 100.0 - 1e-7),
            _ => format!("{:.7}", base + rng.below(500_000) as f64 / 1e7),
        };
        (at(7.5), at(45.0))
    };
    for i in 0..rows {
        let ((a, b), (c, d)) = (end(rng, 0.012), end(rng, 0.031));
        csv += &format!(
            "R,POINT ({a} {b}),POINT ({c} {d}),2018-01-{:02} 10:00:00,s\n",
            1 + i % 21 // three weeks from Monday 2018-01-01
        );
    }
    csv
}

/// An area over the square of paired_trips_csv, from 0.001 to 0.06 degree wide, its edges often on cell
/// edges: mostly boxes, sometimes a triangle or a box with a hole.
fn paired_area(rng: &mut Rng) -> String {
    let mut edges = |base: f64| {
        let at = |rng: &mut Rng| match rng.below(3) {
            0 => base - 0.005 + rng.below(7) as f64 / 100.0,
            1 => base - 0.005 + rng.below(60) as f64 / 1000.0,
            _ => base - 0.005 + rng.below(600_000) as f64 / 1e7,
        };
        let (a, b) = (at(rng), at(rng));
        (a.min(b), a.max(b) + 0.001)
    };
    let ((x0, x1), (y0, y1)) = (edges(7.5), edges(45.0));
    match rng.below(6) {
        0 => format!("SRID=4326;POLYGON(({x0} {y0},{x1} {y0},{x0} {y1},{x0} {y0}))"),
        1 => {
            let (hx, hy) = ((x1 - x0) / 3.0, (y1 - y0) / 3.0);
            format!(
                "SRID=4326;POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}),\
                 ({} {},{} {},{} {},{} {},{} {}))",
                x0 + hx,
                y0 + hy,
                x0 + hx,
                y1 - hy,
                x1 - hx,
                y1 - hy,
                x1 - hx,
                y0 + hy,
                x0 + hx,
                y0 + hy
            )
        }
        _ => format!("SRID=4326;POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"),
    }
}

#[test]
fn both_and_either_count_pairs_of_cells_exactly_after_load_and_migration() {
    let db = TestDb::new("weekly_pairs");
    let mut rng = Rng(0x5eed_1234_abcd_0006);
    // Two files, and a small tally limit, not compacted: a cell's points come in several rows, its pairs
    // in two jobs, and in two rows of each job (sent every 5 x 300 trips, db/031).
    for name in ["a.csv", "b.csv"] {
        let file = db.file(name, paired_trips_csv(&mut rng, 2000));
        db.trips(&["ingest", "--tally-limit", "300", "--no-compact", &file])
            .ok();
    }
    // What the loader wrote for windows (db/030) is what the trips give, a pair in several rows of a job
    // (one per send, db/031), which the readers below add up.
    assert_eq!(pairs_unlike_their_trips(&db), 0, "pairs as loaded");
    assert!(pairs_in_several_rows(&db) > 100, "pairs sent in parts");
    let areas: Vec<String> = (0..80).map(|_| paired_area(&mut rng)).collect();
    let mut client = db.client();
    // Areas that hold both cells of some pair wholly: the pair totals are used, not only points.
    let whole_pairs = areas
        .iter()
        .filter(|a| {
            client
                .query_one(
                    "SELECT EXISTS (SELECT FROM trip_area_pairs p, ST_GeomFromEWKT($1) AS a
                                     WHERE ST_Covers(a, trip_area_cell(2, p.ocx, p.ocy))
                                       AND ST_Covers(a, trip_area_cell(2, p.dcx, p.dcy)))",
                    &[a],
                )
                .unwrap()
                .get(0)
        })
        .count();
    assert!(
        whole_pairs > 15,
        "only {whole_pairs} of 80 areas hold a whole pair of cells"
    );
    // Over all time the pairs' totals count (db/016); over windows of whole days, their days (db/030): a
    // pair with as many days as the window has bounds or more is looked up at each bound, one with fewer
    // puts its days in their periods. A window not at midnight reads the points.
    let windows = [
        None,
        Some(("2018-01-03", "2018-01-15")), // Wednesday to Monday: three bounds per week count
        Some(("2018-01-09", "2018-01-10")), // a Tuesday alone
        Some(("2018-01-03 10:00", "2018-01-15")),
    ];
    let check = |client: &mut Client, when: &str| {
        let mut with_trips = 0;
        for area in &areas {
            for by in ["both", "either"] {
                for window in windows {
                    let (ours, plain) = (
                        weekly_avg(client, area, by, window),
                        plain_avg(client, area, by, window),
                    );
                    assert!(
                        (ours - plain).abs() <= 1e-9 * plain.max(1.0),
                        "{when}: {area} by {by} over {window:?}: weekly_avg {ours}, plain SQL {plain}"
                    );
                    with_trips += usize::from(plain > 0.0);
                }
                for window in [None, windows[1]] {
                    assert_eq!(
                        weekly_counts(client, area, by, window),
                        plain_weeks(client, area, by, window),
                        "{when}: {area} by {by} over {window:?}: weekly_counts against the plain SQL"
                    );
                }
            }
        }
        assert!(
            with_trips > 480,
            "{when}: only {with_trips} of 640 answers hold trips"
        );
    };
    check(&mut client, "as loaded");

    // Compaction merges each pair's rows of a job into one, exactly the row the migration computes from
    // the trips (read by the checks after the migration below).
    let run = db.trips(&["compact"]).ok();
    assert!(run.stderr.contains("job 2: compacted"), "{}", run.stderr);
    assert_eq!(pairs_in_several_rows(&db), 0, "pairs compacted");
    assert_eq!(
        db.count(
            "SELECT count(*) FROM trip_area_pairs p
               FULL JOIN trip_area_pair_days() d USING (job_id, ocx, ocy, dcx, dcy)
              WHERE p.days IS DISTINCT FROM d.days OR p.trips_to_day IS DISTINCT FROM d.trips_to_day
                 OR p.trips IS DISTINCT FROM d.trips_to_day[cardinality(d.trips_to_day)]"
        ),
        0,
        "pairs compacted"
    );

    // A database from before db/016: no pairs, destination rows without their origins (nor db/025's
    // lon_by_lat or db/026's other ends in order, which db/016's rebuild does not write). The migrations
    // rebuild them from the trips.
    client
        .batch_execute(
            "DELETE FROM schema_migrations WHERE version IN (16, 25, 26, 28);
             DROP TABLE trip_area_pairs;
             DROP FUNCTION trip_area_both;
             ALTER TABLE trip_area_points DROP COLUMN lon_by_lat,
                                          DROP COLUMN other_lon_sorted, DROP COLUMN other_lat_by_other_lon;
             UPDATE trip_area_points SET other_lon = NULL, other_lat = NULL WHERE side = 2;",
        )
        .unwrap();
    client.batch_execute(BEFORE_DB_028).unwrap();
    let run = db.trips(&["migrate"]).ok();
    assert!(
        run.stderr.contains("applied db/016_area_pairs.sql")
            && run
                .stderr
                .contains("applied db/025_area_points_by_latitude.sql")
            && run
                .stderr
                .contains("applied db/026_area_points_other_ends_by_longitude.sql"),
        "{}",
        run.stderr
    );
    assert_eq!(
        rows_out_of_order(&db),
        0,
        "rows rebuilt by db/016, db/025 and db/026"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM trip_area_points WHERE side = 2 AND other_lon IS NULL"),
        0
    );
    assert_eq!(pairs_unlike_their_trips(&db), 0, "pairs as migrated");
    let mut client = db.client();
    check(&mut client, "after db/016 rebuilt the cells");
    client
        .batch_execute("SELECT rebuild_area_counts()")
        .unwrap();
    assert_eq!(pairs_unlike_their_trips(&db), 0, "pairs rebuilt");
}

/// Pairs of cells whose trips, days or trips up to each day differ from what their trips give (db/030).
/// A pair may have several rows in one job, one per send of the loader's points (db/031): its trips per
/// day are what the rows' days and trips up to each add up to. Rows whose days are not ascending, whose
/// trips up to a day do not grow, or whose trips are not their trips up to the last day count too.
fn pairs_unlike_their_trips(db: &TestDb) -> i64 {
    db.count(
        "WITH loaded AS (
             SELECT p.job_id, p.ocx, p.ocy, p.dcx, p.dcy, d.day,
                    sum(d.to_day - coalesce(p.trips_to_day[d.i - 1], 0)) AS trips
               FROM trip_area_pairs p
              CROSS JOIN LATERAL unnest(p.days, p.trips_to_day) WITH ORDINALITY AS d(day, to_day, i)
              GROUP BY 1, 2, 3, 4, 5, 6
         ), from_trips AS (
             SELECT t.job_id, floor(t.origin_lon / 1e5)::int AS ocx, floor(t.origin_lat / 1e5)::int AS ocy,
                    floor(t.dest_lon / 1e5)::int AS dcx, floor(t.dest_lat / 1e5)::int AS dcy,
                    (t.departed_at::date - date '2000-01-01') AS day, count(*) AS trips
               FROM trip_rows t
              GROUP BY 1, 2, 3, 4, 5, 6
         )
         SELECT (SELECT count(*) FROM loaded l FULL JOIN from_trips f USING (job_id, ocx, ocy, dcx, dcy, day)
                  WHERE l.trips IS DISTINCT FROM f.trips)
              + (SELECT count(*) FROM trip_area_pairs p
                  WHERE cardinality(p.days) = 0 OR cardinality(p.days) <> cardinality(p.trips_to_day)
                     OR p.trips <> p.trips_to_day[cardinality(p.trips_to_day)]
                     OR EXISTS (SELECT FROM generate_subscripts(p.days, 1) i
                                 WHERE i > 1 AND (p.days[i] <= p.days[i - 1]
                                                  OR p.trips_to_day[i] <= p.trips_to_day[i - 1])))",
    )
}

/// (job, pair of cells) with more than one row.
fn pairs_in_several_rows(db: &TestDb) -> i64 {
    db.count(
        "SELECT count(*) FROM (SELECT FROM trip_area_pairs
                                GROUP BY job_id, ocx, ocy, dcx, dcy HAVING count(*) > 1) AS p",
    )
}

/// weekly_avg of `area` by `by` over all time equals the plain SQL's.
fn assert_equals_plain(client: &mut Client, area: &str, by: &str) {
    let (ours, plain) = (
        weekly_avg(client, area, by, None),
        plain_avg(client, area, by, None),
    );
    assert!(
        (ours - plain).abs() <= 1e-9 * plain.max(1.0),
        "{area} by {by}: weekly_avg {ours}, plain SQL {plain}"
    );
}

/// A triangle near (7.5, 45.0), its vertices on the stored grid (integers, 1e-7 degree), two of its edges
/// along short integer steps so that many grid points lie exactly on them; 0.002 to 0.03 degree wide.
fn slanted_triangle(rng: &mut Rng) -> [(i64, i64); 3] {
    loop {
        let a = (
            75_000_000 + rng.below(100_000) as i64,
            450_000_000 + rng.below(100_000) as i64,
        );
        let step = |rng: &mut Rng| {
            let (p, q) = (rng.below(15) as i64 - 7, rng.below(15) as i64 - 7);
            let m = 2_000 + rng.below(40_000) as i64;
            (a.0 + m * p, a.1 + m * q)
        };
        let (b, c) = (step(rng), step(rng));
        let cross = (b.0 - a.0) * (c.1 - a.1) - (b.1 - a.1) * (c.0 - a.0);
        let wide =
            |u: (i64, i64), v: (i64, i64)| (u.0 - v.0).abs().max((u.1 - v.1).abs()) >= 20_000;
        if cross != 0 && wide(a, b) && wide(a, c) {
            return [a, b, c];
        }
    }
}

/// Trip ends on the triangle's edges and beside them: grid points exactly on an edge, the grid point
/// nearest to a point of an edge and its four neighbours (1e-7 degree to either side), and points anywhere
/// in its bounding box.
fn slanted_points(rng: &mut Rng, t: &[(i64, i64); 3], n: usize) -> Vec<(i64, i64)> {
    let gcd = |mut x: i64, mut y: i64| {
        while y != 0 {
            (x, y) = (y, x % y);
        }
        x.abs().max(1)
    };
    let mut out = Vec::new();
    while out.len() < n {
        let (u, v) = (t[rng.below(3) as usize], t[rng.below(3) as usize]);
        let (dx, dy) = (v.0 - u.0, v.1 - u.1);
        match rng.below(3) {
            0 => {
                let g = gcd(dx, dy);
                let k = rng.below(g as u64 + 1) as i64;
                out.push((u.0 + k * dx / g, u.1 + k * dy / g));
            }
            1 => {
                let f = rng.below(1_000_001) as f64 / 1e6;
                let p = (
                    (u.0 as f64 + f * dx as f64).round() as i64,
                    (u.1 as f64 + f * dy as f64).round() as i64,
                );
                for d in [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)] {
                    out.push((p.0 + d.0, p.1 + d.1));
                }
            }
            _ => {
                let (x0, x1) = (
                    t.iter().map(|p| p.0).min().unwrap(),
                    t.iter().map(|p| p.0).max().unwrap(),
                );
                let (y0, y1) = (
                    t.iter().map(|p| p.1).min().unwrap(),
                    t.iter().map(|p| p.1).max().unwrap(),
                );
                out.push((
                    x0 + rng.below((x1 - x0) as u64 + 1) as i64,
                    y0 + rng.below((y1 - y0) as u64 + 1) as i64,
                ));
            }
        }
    }
    out
}

#[test]
fn polygons_count_points_on_and_beside_slanted_edges_exactly() {
    let db = TestDb::new("weekly_slanted");
    let mut rng = Rng(0x5eed_1234_abcd_0007);
    let deg = |v: i64| format!("{}.{:07}", v / 10_000_000, v % 10_000_000);
    // A triangle's closed ring, as WKT.
    let ring = |t: &[(i64, i64); 3]| {
        let p = |k: usize| format!("{} {}", deg(t[k].0), deg(t[k].1));
        format!("({},{},{},{})", p(0), p(1), p(2), p(0))
    };
    let triangles: Vec<[(i64, i64); 3]> = (0..16).map(|_| slanted_triangle(&mut rng)).collect();
    let mut csv = format!("{HEADER}\n");
    for (i, t) in triangles.iter().enumerate() {
        // Origins on this triangle's edges, destinations on the next one's.
        let next = &triangles[(i + 1) % triangles.len()];
        let ends = slanted_points(&mut rng, t, 300)
            .into_iter()
            .zip(slanted_points(&mut rng, next, 300));
        for (j, (o, d)) in ends.enumerate() {
            csv += &format!(
                "R,POINT ({} {}),POINT ({} {}),2018-01-0{} 10:00:00,s\n",
                deg(o.0),
                deg(o.1),
                deg(d.0),
                deg(d.1),
                1 + j % 7
            );
        }
    }
    let file = db.file("a.csv", csv);
    // Sent in several parts, then compacted by the loader once the job is done (db/022).
    let run = db.trips(&["ingest", "--tally-limit", "800", &file]).ok();
    assert!(
        run.stderr
            .contains("job 1: compacted the area points from "),
        "{}",
        run.stderr
    );
    assert_eq!(cells_in_several_rows(&db), 0, "one row per cell");
    let mut client = db.client();
    // The count of one-edge cells below calls db/024's cells directly, outside trip_area_count and its
    // `SET jit = off`: its row estimates would have it JIT-compiled, which takes seconds per call.
    client.batch_execute("SET jit = off").unwrap();
    let (mut one_edge_cells, mut on_edges) = (0, 0);
    for t in &triangles {
        let area = format!("SRID=4326;POLYGON({})", ring(t));
        for by in BY {
            assert_equals_plain(&mut client, &area, by);
        }
        // The same triangle as a hole in a box around it: the area is now on the other side of each of
        // its edges, and the hole's ring may run either way round.
        let (x0, x1) = (
            t.iter().map(|p| p.0).min().unwrap() - 20_000,
            t.iter().map(|p| p.0).max().unwrap() + 20_000,
        );
        let (y0, y1) = (
            t.iter().map(|p| p.1).min().unwrap() - 20_000,
            t.iter().map(|p| p.1).max().unwrap() + 20_000,
        );
        let holed = format!(
            "SRID=4326;POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}),{})",
            ring(t),
            x0 = deg(x0),
            x1 = deg(x1),
            y0 = deg(y0),
            y1 = deg(y1)
        );
        for by in BY {
            assert_equals_plain(&mut client, &holed, by);
        }
        // The cut cells crossed by one edge (db/024), counted by sides of it, and the trips on the edges.
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM trip_area_polygon_cells(a, 1::smallint) AS c
                          WHERE NOT c.inside AND c.dx IS NOT NULL),
                        (SELECT count(*) FROM trips t WHERE ST_Intersects(ST_Boundary(a), t.origin))
                   FROM ST_GeomFromEWKT($1) AS a",
                &[&area],
            )
            .unwrap();
        one_edge_cells += row.get::<_, i64>(0);
        on_edges += row.get::<_, i64>(1);
    }
    // A collection of a triangle and a line: a cell the line alone crosses is not split in two by it.
    let t = &triangles[0];
    let area = format!(
        "SRID=4326;GEOMETRYCOLLECTION(POLYGON({}),LINESTRING({} {},{} {}))",
        ring(t),
        deg(t[0].0 - 30_000),
        deg(t[0].1 - 30_000),
        deg(t[0].0 + 30_000),
        deg(t[0].1 + 30_500)
    );
    // By both, it keeps db/021's function (trip_collection_both since db/027).
    for by in BY {
        assert_equals_plain(&mut client, &area, by);
    }
    assert!(
        one_edge_cells > 100,
        "only {one_edge_cells} cut cells are crossed by one edge"
    );
    assert!(on_edges > 300, "only {on_edges} origins lie on an edge");
}
