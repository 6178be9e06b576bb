//! Weekly averages (db/008_weekly_avg.sql, `trips weekly-avg`): the fast answers against the plain SQL over
//! the `trips` view, on trips made to sit on the edges that matter (cell edges, box edges, week edges),
//! whether they arrived as one file or as many, before and after the pieces are merged.

mod common;

use common::{HEADER, TestDb, db_error, sample};
use postgres::Client;

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

/// Trips crowded into a few hundred metres, on a grid of 1e-4 degree (many share a coordinate), and boxes
/// whose edges fall on that grid: a point on a box's edge, or many, must count once, whichever cell it is
/// in and whichever edge cuts the cell.
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

/// The lines of `csv` (a header, then records) as `n` files of about equal size, each with the header.
fn split_csv(db: &TestDb, csv: &str, n: usize) -> Vec<String> {
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    let records: Vec<&str> = lines.collect();
    records
        .chunks(records.len().div_ceil(n))
        .enumerate()
        .map(|(i, part)| {
            db.file(
                &format!("part{i:03}.csv"),
                format!("{header}\n{}\n", part.join("\n")),
            )
        })
        .collect()
}

/// The same trips loaded as one file, and as `files` files that are not merged.
fn one_file_and_many(tag: &str, csv: &str, files: usize) -> (TestDb, TestDb) {
    let one = TestDb::new(&format!("{tag}_one"));
    one.trips(&["ingest", &one.file("all.csv", csv)]).ok();
    let many = TestDb::new(&format!("{tag}_many"));
    let parts = split_csv(&many, csv, files);
    let mut args = vec!["ingest", "--no-compact", "--tally-limit", "300"];
    args.extend(parts.iter().map(String::as_str));
    many.trips(&args).ok();
    assert_eq!(
        many.count("SELECT count(*) FROM trip_pieces WHERE parent = 'trip_rows'"),
        files as i64
    );
    (one, many)
}

/// Waits (up to `tries` x 50 ms) until no backend runs trip_merge_step: a killed `trips compact`'s merge has
/// rolled back.
fn wait_for_merge_backend(db: &TestDb, tries: usize) {
    for _ in 0..tries {
        if db.count("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%trip_merge_step%' AND pid <> pg_backend_pid()") == 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn pieces(db: &TestDb) -> Vec<String> {
    db.rows("SELECT parent, first_job, last_job, trips FROM trip_pieces ORDER BY 1, 2")
}

#[test]
fn boxes_count_crowded_cells_exactly_from_one_file_or_many_before_and_after_merges() {
    let mut rng = Rng(0x5eed_1234_abcd_0005);
    let csv = crowded_trips_csv(&mut rng, 3000);
    let boxes: Vec<[f64; 4]> = (0..150).map(|_| crowded_box(&mut rng)).collect();
    let check = |db: &TestDb, when: &str| {
        let counts = box_counts(&mut db.client(), &boxes);
        for (question, ours, plain) in &counts {
            assert_eq!(ours, plain, "{when}: {question}");
        }
        let with_trips = counts.iter().filter(|(_, n, _)| *n > 0).count();
        assert!(
            with_trips > 300,
            "{when}: only {with_trips} of 450 answers hold trips"
        );
        counts
    };
    if !common::have_cluster() {
        return;
    }
    let (one, many) = one_file_and_many("weekly_crowded", &csv, 12);
    let answers = check(&one, "one file");
    assert_eq!(check(&many, "twelve files"), answers);
    // Merged by hand (the loader was told not to): fewer pieces, the same answers.
    let before = pieces(&many);
    let run = many.trips(&["compact"]).ok();
    assert!(
        run.stderr
            .contains("merged 10 pieces of trip_rows (jobs 1-10, 2500 trips)"),
        "{}",
        run.stderr
    );
    assert!(
        pieces(&many).len() < before.len() / 2,
        "{:?}",
        pieces(&many)
    );
    assert_eq!(check(&many, "twelve files, merged"), answers);
    let run = many.trips(&["compact"]).ok();
    assert!(
        run.stderr.contains("nothing to merge (pieces per table: "),
        "{}",
        run.stderr
    );
    // `trips refresh` rebuilds every tally from the trips: the same answers.
    many.trips(&["refresh"]).ok();
    assert_eq!(check(&many, "rebuilt"), answers);
}

/// Trips in a square of 0.05 degree (five level-2 cells a side), half of them between two crowded spots,
/// with coordinates often on the level-2 cell edges or just below them: areas of a few level-2 cells hold
/// both ends of many trips, in cells wholly inside and in cells their edge cuts.
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
fn both_and_either_are_exact_from_one_file_or_many_before_and_after_merges() {
    let mut rng = Rng(0x5eed_1234_abcd_0006);
    let csv = paired_trips_csv(&mut rng, 4000);
    let areas: Vec<String> = (0..40).map(|_| paired_area(&mut rng)).collect();
    let windows = [
        None,
        Some(("2018-01-08", "2018-01-15")),
        Some(("2018-01-03 12:00", "2018-01-16")),
    ];
    let answers = |db: &TestDb, when: &str| {
        let mut client = db.client();
        let mut out = Vec::new();
        for area in &areas {
            for by in ["both", "either"] {
                for window in windows {
                    let (ours, plain) = (
                        weekly_avg(&mut client, area, by, window),
                        plain_avg(&mut client, area, by, window),
                    );
                    assert!(
                        (ours - plain).abs() <= 1e-9 * plain.max(1.0),
                        "{when}: {area} by {by} over {window:?}: weekly_avg {ours}, plain SQL {plain}"
                    );
                    out.push(ours);
                }
            }
        }
        assert!(
            out.iter().filter(|v| **v > 0.0).count() > 150,
            "{when}: too few areas with trips"
        );
        out
    };
    if !common::have_cluster() {
        return;
    }
    let (one, many) = one_file_and_many("weekly_pairs", &csv, 20);
    let expected = answers(&one, "one file");
    assert_eq!(answers(&many, "twenty files"), expected);
    many.trips(&["compact"]).ok();
    assert_eq!(answers(&many, "twenty files, merged"), expected);
}

/// The tables of the store: every piece's, and no other.
fn piece_tables(db: &TestDb) -> (i64, i64) {
    (
        db.count("SELECT count(*) FROM trip_pieces"),
        db.count(
            "SELECT count(*) FROM pg_class
              WHERE relkind = 'r' AND relname ~ '^(new_)?(trip_rows|trip_cells|trip_group_counts)_j'",
        ),
    )
}

#[test]
fn a_merge_killed_at_any_moment_changes_nothing_and_readers_are_not_held_up() {
    let db = test_db!("weekly_merge_kill");
    let mut rng = Rng(0x5eed_1234_abcd_0008);
    let csv = trips_csv(&mut rng, 20_000);
    let parts = split_csv(&db, &csv, 20);
    let mut args = vec!["ingest", "--no-compact"];
    args.extend(parts.iter().map(String::as_str));
    db.trips(&args).ok();
    let areas: Vec<String> = (0..12).map(|_| area(&mut rng)).collect();
    let answers = |client: &mut Client| -> Vec<f64> {
        areas
            .iter()
            .flat_map(|a| BY.map(|by| (a, by)))
            .map(|(a, by)| weekly_avg(client, a, by, Some(("2017-12-04", "2018-01-29"))))
            .collect()
    };
    let mut client = db.client();
    let expected = answers(&mut client);
    assert_eq!(
        expected,
        areas
            .iter()
            .flat_map(|a| BY.map(|by| (a, by)))
            .map(|(a, by)| plain_avg(&mut client, a, by, Some(("2017-12-04", "2018-01-29"))))
            .collect::<Vec<_>>()
    );
    let before = pieces(&db);
    assert_eq!(piece_tables(&db), (60, 60));

    // Killed while it builds or swaps, at several moments: nothing changes.
    for delay_ms in [5, 40, 120, 250] {
        let mut merge = db.command(&["compact"]).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        merge.kill().unwrap();
        merge.wait().unwrap();
        // The server notices the lost client at its next read or write.
        wait_for_merge_backend(&db, 100);
        let now = pieces(&db);
        if now != before {
            // The kill came after some merges committed: each committed merge is whole.
            assert_eq!(
                now.iter()
                    .map(|p| p.split(',').next().unwrap().to_string())
                    .collect::<std::collections::BTreeSet<_>>()
                    .len(),
                3
            );
        }
        let (catalogued, tables) = piece_tables(&db);
        assert_eq!(
            catalogued, tables,
            "after a kill at {delay_ms} ms: a table for every piece, and no other"
        );
        assert_eq!(
            answers(&mut client),
            expected,
            "after a kill at {delay_ms} ms"
        );
    }

    // Killed while it waits to swap: a reader's open transaction holds the tables, so the swap waits (and
    // waits at most 50 ms at a time, then lets the readers behind it through); the build is thrown away whole.
    let mut holder = db.client();
    let mut reading = holder.transaction().unwrap();
    for table in ["trip_rows", "trip_cells", "trip_group_counts"] {
        reading
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .unwrap();
    }
    let settled = pieces(&db);
    let mut merge = db.command(&["compact"]).spawn().unwrap();
    let started = std::time::Instant::now();
    let mut reader = db.client();
    let mut slowest = std::time::Duration::ZERO;
    let mut asked_count = 0;
    while started.elapsed() < std::time::Duration::from_secs(2) {
        for (k, by) in BY.iter().enumerate() {
            let asked = std::time::Instant::now();
            let answer = weekly_avg(
                &mut reader,
                &areas[0],
                by,
                Some(("2017-12-04", "2018-01-29")),
            );
            slowest = slowest.max(asked.elapsed());
            assert_eq!(answer, expected[k], "a reader during a waiting merge");
            asked_count += 1;
        }
    }
    assert!(asked_count > 20, "only {asked_count} answers in 2 s");
    assert!(
        slowest < std::time::Duration::from_millis(500),
        "a reader waited {slowest:?}"
    );
    merge.kill().unwrap();
    merge.wait().unwrap();
    // The server stops the merge of a client that is gone (within 100 ms), even while it waits.
    wait_for_merge_backend(&db, 40);
    reading.rollback().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(pieces(&db), settled);
    let (catalogued, tables) = piece_tables(&db);
    assert_eq!(catalogued, tables);

    // The next merge completes, while readers go on reading.
    let mut merge = db.command(&["compact"]).spawn().unwrap();
    while merge.try_wait().unwrap().is_none() {
        assert_eq!(answers(&mut reader), expected, "a reader during a merge");
    }
    assert!(merge.wait().unwrap().success());
    assert!(pieces(&db).len() < before.len() / 2, "{:?}", pieces(&db));
    assert_eq!(answers(&mut client), expected);
    let (catalogued, tables) = piece_tables(&db);
    assert_eq!(catalogued, tables);
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
    let db = test_db!("weekly_slanted");
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
    // Tallies sent in several parts.
    db.trips(&["ingest", "--tally-limit", "800", &file]).ok();
    let mut client = db.client();
    let mut on_edges = 0;
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
        on_edges += client
            .query_one(
                "SELECT count(*) FROM trips t, ST_GeomFromEWKT($1) AS a
                  WHERE ST_Intersects(ST_Boundary(a), t.origin)",
                &[&area],
            )
            .unwrap()
            .get::<_, i64>(0);
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
    for by in BY {
        assert_equals_plain(&mut client, &area, by);
    }
    assert!(on_edges > 300, "only {on_edges} origins lie on an edge");
}
