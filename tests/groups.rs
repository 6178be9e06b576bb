//! Similar-trip groups: ST_SnapToGrid cells and time-of-day buckets, counted from the trips: a snapshot
//! refreshed by `trips refresh` or pg_cron, plus the trips loaded since it; read by `trips groups`.

mod common;

use common::{HEADER, TestDb, admin_url, db_error, sample};
use postgres::NoTls;
use std::time::{Duration, Instant};

/// The groups as the definition says, straight from the trips: ST_SnapToGrid cells and hour buckets.
fn groups_by_definition(cell: f64, hours: i32) -> String {
    format!(
        "SELECT region, ST_AsBinary(ST_SnapToGrid(origin, {cell})) AS o,
                ST_AsBinary(ST_SnapToGrid(destination, {cell})) AS d,
                extract(hour FROM departed_at)::int / {hours} AS b, count(*) AS n
           FROM trips GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
    )
}

fn groups_stored(cell_factor: i32, bucket_min: i32) -> String {
    format!(
        "SELECT region, ST_AsBinary(origin_cell) AS o, ST_AsBinary(destination_cell) AS d, time_bucket AS b,
                trips AS n
           FROM trip_groups_at({cell_factor}, {bucket_min}) ORDER BY 1, 2, 3, 4"
    )
}

/// trip_groups_top(n, region, min_trips, cell_factor, bucket_minutes) gives the first n rows of
/// trip_groups_at in the answer's order, ties included, for each case.
fn top_is_the_first_of_all(db: &TestDb, cases: &[(i64, &str, i64, i32, &str)]) {
    for &(n, region, min_trips, factor, minutes) in cases {
        assert_eq!(
            db.rows(&format!(
                "SELECT * FROM trip_groups_top({n}, {region}, {min_trips}, {factor}, {minutes})"
            )),
            db.rows(&format!(
                "SELECT * FROM trip_groups_at({factor}, {minutes})
                  WHERE ({region}::text IS NULL OR region = {region}) AND trips >= {min_trips}
                  ORDER BY trips DESC, region, time_bucket, ST_X(origin_cell), ST_Y(origin_cell),
                           ST_X(destination_cell), ST_Y(destination_cell)
                  LIMIT {n}"
            )),
            "trip_groups_top({n}, {region}, {min_trips}, {factor}, {minutes})"
        );
    }
}

/// These tests are written for a grid of 0.01 degree and 60 minutes (finer than the default, so that a
/// handful of trips spans several groups); it is set before anything is loaded.
fn fine_grid(db: &TestDb) {
    db.trips(&["migrate"]).ok();
    db.client()
        .batch_execute("UPDATE trip_group_grid SET cell_deg = 0.01, bucket_min = 60")
        .unwrap();
}

#[test]
fn similar_trips_share_a_group_and_cells_are_where_the_grid_says() {
    let db = test_db!("groups_cases");
    fine_grid(&db);
    let file = db.file(
        "cases.csv",
        format!(
            "{HEADER}\n\
             Turin,POINT (7.6812 45.0712),POINT (7.7012 45.0612),2018-05-07 08:10:00,a\n\
             Turin,POINT (7.6821 45.0718),POINT (7.7019 45.0619),2018-05-11 08:20:00,b\n\
             Turin,POINT (7.6812 45.0712),POINT (7.7012 45.0612),2018-05-07 20:10:00,a\n\
             Prague,POINT (7.6812 45.0712),POINT (7.7012 45.0612),2018-05-07 08:10:00,a\n\
             Edge,POINT (7.0049999 45.0),POINT (-7.0050001 0.015),2018-05-07 23:59:59,a\n\
             Edge,POINT (7.0050001 45.0),POINT (-7.0049999 -0.015),2018-05-08 00:00:00,a\n"
        ),
    );
    db.trips(&["ingest", &file]).ok();
    assert_eq!(
        db.rows(
            "SELECT region, ST_AsText(origin_cell), ST_AsText(destination_cell), time_bucket, bucket_start,
                    trips, by_datasource, ST_AsText(desire_line)
               FROM trip_groups_live WHERE region IN ('Turin', 'Prague') ORDER BY region, time_bucket"
        ),
        [
            "(Prague,\"POINT(7.68 45.07)\",\"POINT(7.7 45.06)\",8,08:00:00,1,\"{\"\"a\"\": 1}\",\"LINESTRING(7.68 45.07,7.7 45.06)\")",
            "(Turin,\"POINT(7.68 45.07)\",\"POINT(7.7 45.06)\",8,08:00:00,2,\"{\"\"a\"\": 1, \"\"b\"\": 1}\",\"LINESTRING(7.68 45.07,7.7 45.06)\")",
            "(Turin,\"POINT(7.68 45.07)\",\"POINT(7.7 45.06)\",20,20:00:00,1,\"{\"\"a\"\": 1}\",\"LINESTRING(7.68 45.07,7.7 45.06)\")",
        ]
    );
    // Straddling the cell edge at 7.005: two groups, each where ST_SnapToGrid puts its points.
    assert_eq!(
        db.rows(
            "SELECT ST_AsText(origin_cell) FROM trip_groups_live WHERE region = 'Edge' ORDER BY 1"
        ),
        ["(\"POINT(7 45)\")", "(\"POINT(7.01 45)\")"]
    );
    assert_eq!(
        db.rows(&groups_stored(1, 60)),
        db.rows(&groups_by_definition(0.01, 1))
    );
    let typmods = db.rows(
        "SELECT f_geometry_column || ':' || type || ':' || srid FROM geometry_columns
          WHERE f_table_name = 'trip_groups' ORDER BY 1",
    );
    assert_eq!(
        typmods,
        [
            "(desire_line:LINESTRING:4326)",
            "(destination_cell:POINT:4326)",
            "(origin_cell:POINT:4326)"
        ]
    );
}

#[test]
fn groups_equal_the_definition_at_every_supported_resolution_and_refresh_agrees() {
    let db = test_db!("groups_property");
    fine_grid(&db);
    db.load_several_files(4000);

    assert_eq!(
        db.count("SELECT sum(trips)::bigint FROM trip_groups_live"),
        db.count("SELECT count(*) FROM trips")
    );
    assert_eq!(
        db.rows(&groups_stored(1, 60)),
        db.rows(&groups_by_definition(0.01, 1))
    );
    // Coarser: 3 and 5 cells, 3-hour and 6-hour buckets (random points are never exactly on an edge).
    assert_eq!(
        db.rows(&groups_stored(3, 180)),
        db.rows(&groups_by_definition(0.03, 3))
    );
    assert_eq!(
        db.rows(&groups_stored(5, 360)),
        db.rows(&groups_by_definition(0.05, 6))
    );

    // The N largest are the first N of all the groups, ties included.
    top_is_the_first_of_all(
        &db,
        &[
            (25, "NULL", 1, 1, "NULL"),
            (7, "'Turin'", 2, 3, "180"),
            (400, "NULL", 1, 5, "120"),
            (10, "'Atlantis'", 1, 1, "NULL"),
        ],
    );

    // Each group's trips per datasource equal the trips'.
    assert_eq!(
        db.rows(
            "SELECT region, ST_AsBinary(origin_cell), ST_AsBinary(destination_cell), time_bucket, by_datasource
               FROM trip_groups_live ORDER BY 1, 2, 3, 4"
        ),
        db.rows(
            "SELECT region, o, d, b, jsonb_object_agg(datasource, n)
               FROM (SELECT region, ST_AsBinary(ST_SnapToGrid(origin, 0.01)) AS o,
                            ST_AsBinary(ST_SnapToGrid(destination, 0.01)) AS d,
                            extract(hour FROM departed_at)::int AS b, datasource, count(*) AS n
                       FROM trips GROUP BY 1, 2, 3, 4, 5) AS per_datasource
              GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
        )
    );

    assert_eq!(
        db.count("SELECT count(*) FROM trip_groups"),
        0,
        "the snapshot waits for a refresh"
    );
    let live = "SELECT * FROM trip_groups_live ORDER BY region, time_bucket, ST_X(origin_cell), \
                ST_Y(origin_cell), ST_X(destination_cell), ST_Y(destination_cell)";
    let before = db.rows(live);
    let run = db.trips(&["refresh"]).ok();
    assert!(
        run.stderr
            .contains("rebuilt the rollups and trip_groups in"),
        "{}",
        run.stderr
    );
    assert_eq!(db.rows(live), before);
    assert_eq!(
        db.rows(
            "SELECT * FROM trip_groups ORDER BY region, time_bucket, ST_X(origin_cell), ST_Y(origin_cell), ST_X(destination_cell), ST_Y(destination_cell)"
        ),
        before
    );
}

/// The snapshot's groups and the trips loaded since it, added up, are the groups of all the trips: for
/// groups both touch, groups only one holds, a job still loading while the snapshot was refreshed, and
/// every resolution and ranking.
#[test]
fn the_snapshot_and_the_trips_since_add_up_to_the_definition() {
    let db = test_db!("groups_since");
    fine_grid(&db);
    let sample = sample();
    let sample = sample.to_str().unwrap();
    db.trips(&["ingest", sample]).ok();
    db.trips(&["ingest", &db.generate(3000, 21)]).ok();
    // A loader half-way through its file while the snapshot is refreshed: its job is not in it.
    let (mut loader, mut stdin) = db.loader_mid_file(20_000, 22);
    db.trips(&["refresh"]).ok();
    assert_eq!(db.count("SELECT sum(trips)::bigint FROM trip_groups"), 3100);
    let data = std::fs::read(db.generate(20_000, 22)).unwrap();
    std::io::Write::write_all(&mut stdin, &data[data.len() / 2..]).unwrap();
    drop(stdin);
    assert!(loader.wait().unwrap().success());
    // The same trips again (every group of the sample touched twice) and trips of new groups.
    db.trips(&["ingest", "--force", sample]).ok();
    db.trips(&["ingest", &db.generate(3000, 23)]).ok();
    assert_eq!(db.count("SELECT trip_groups_is_current()::int::bigint"), 0);
    assert_eq!(db.count("SELECT sum(trips)::bigint FROM trip_groups"), 3100);

    assert_eq!(
        db.rows(
            "SELECT region, ST_AsBinary(origin_cell), ST_AsBinary(destination_cell), time_bucket, trips,
                    first_departure, last_departure, by_datasource
               FROM trip_groups_live ORDER BY 1, 2, 3, 4"
        ),
        db.rows(
            "SELECT region, o, d, b, sum(n)::bigint, min(first), max(last), jsonb_object_agg(datasource, n)
               FROM (SELECT region, ST_AsBinary(ST_SnapToGrid(origin, 0.01)) AS o,
                            ST_AsBinary(ST_SnapToGrid(destination, 0.01)) AS d,
                            extract(hour FROM departed_at)::int AS b, datasource, count(*) AS n,
                            min(departed_at) AS first, max(departed_at) AS last
                       FROM trips GROUP BY 1, 2, 3, 4, 5) AS per_datasource
              GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
        )
    );
    assert_eq!(
        db.rows(&groups_stored(3, 180)),
        db.rows(&groups_by_definition(0.03, 3))
    );
    top_is_the_first_of_all(
        &db,
        &[
            (30, "NULL", 1, 1, "NULL"),
            (5, "'Turin'", 2, 1, "NULL"),
            (12, "NULL", 1, 3, "120"),
        ],
    );

    // Refreshed again, the snapshot alone is the groups.
    db.trips(&["refresh"]).ok();
    assert_eq!(db.count("SELECT trip_groups_is_current()::int::bigint"), 1);
    assert_eq!(
        db.count("SELECT sum(trips)::bigint FROM trip_groups"),
        db.count("SELECT count(*) FROM trips")
    );
}

#[test]
fn unsupported_resolutions_are_refused_by_sql_too() {
    let db = test_db!("groups_sql_errors");
    fine_grid(&db);
    db.trips(&["migrate"]).ok();
    let mut c = db.client();
    let err = db_error(&mut c, "SELECT * FROM trip_groups_at(2)");
    assert_eq!(err.message(), "cell factor 2 is not supported");
    assert!(err.hint().unwrap().contains("odd multiple"));
    assert_eq!(
        db_error(&mut c, "SELECT * FROM trip_groups_at(1, 90)").message(),
        "a bucket of 90 minutes is not supported"
    );
    assert_eq!(
        db_error(
            &mut c,
            "SELECT * FROM trip_groups_top(10, cell_factor => 4)"
        )
        .message(),
        "cell factor 4 is not supported"
    );
}

#[test]
fn a_pg_cron_job_refreshes_the_snapshot() {
    let db = test_db!("groups_cron");
    fine_grid(&db);
    db.trips(&["ingest", sample().to_str().unwrap()]).ok();
    assert_eq!(db.count("SELECT count(*) FROM trip_groups"), 0);
    let mut cron = postgres::Client::connect(&admin_url(), NoTls).unwrap();
    let job: i64 = cron
        .query_one(
            // pg_cron 1.4 (Debian 12) schedules by the minute at best.
            "SELECT cron.schedule_in_database($1, '* * * * *', 'SELECT refresh_trip_groups()', $2)",
            &[&db.name, &db.name],
        )
        .unwrap()
        .get(0);
    let deadline = Instant::now() + Duration::from_secs(90);
    while db.count("SELECT count(*) FROM trip_groups") == 0 {
        assert!(
            Instant::now() < deadline,
            "pg_cron did not refresh trip_groups within 90 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    cron.execute("SELECT cron.unschedule($1::bigint)", &[&job])
        .unwrap();
    assert_eq!(db.count("SELECT sum(trips)::bigint FROM trip_groups"), 100);
    // pg_cron records the run as succeeded after the job's own transaction commits: a moment later.
    let succeeded = |cron: &mut postgres::Client| -> i64 {
        cron.query_one(
            "SELECT count(*) FROM cron.job_run_details WHERE jobid = $1 AND status = 'succeeded'",
            &[&job],
        )
        .unwrap()
        .get(0)
    };
    while succeeded(&mut cron) == 0 {
        assert!(
            Instant::now() < deadline,
            "pg_cron did not record the run as succeeded within 90 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_groups_command_shows_the_largest_and_explains_bad_resolutions() {
    let db = test_db!("groups_cli");
    fine_grid(&db);
    db.trips(&["ingest", &db.generate(20_000, 11)]).ok();
    let run = db.trips(&["groups", "--top", "3", "--json"]).ok();
    let groups: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(groups.len(), 3);
    let largest = db.count("SELECT max(trips) FROM trip_groups_live");
    assert_eq!(groups[0]["trips"], largest);
    assert!(groups[0]["trips"].as_i64() >= groups[2]["trips"].as_i64());
    let total: i64 = groups[0]["by_datasource"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(total, largest);
    // CSV: a header, then the same groups in the same order.
    let csv = db.trips(&["groups", "--top", "3", "--format", "csv"]).ok();
    let mut reader = csv::Reader::from_reader(csv.stdout.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3);
    for (row, group) in rows.iter().zip(&groups) {
        assert_eq!(row[0], group["region"]);
        assert_eq!(row[7].parse::<i64>().unwrap(), group["trips"]);
        assert_eq!(row[1].parse::<f64>().unwrap(), group["origin_cell"][0]);
    }

    let run = db
        .trips(&[
            "groups",
            "--region",
            "Lisbon",
            "--top",
            "2",
            "--cell-m",
            "3340",
            "--bucket-min",
            "180",
        ])
        .ok();
    assert!(
        run.stdout
            .starts_with("groups of cells of 3340 m (0.03 degree) and 180-minute"),
        "{}",
        run.stdout
    );
    assert_eq!(
        run.stdout.lines().filter(|l| l.contains("Lisbon")).count(),
        2,
        "{}",
        run.stdout
    );

    let run = db.trips(&["groups", "--cell-m", "2000"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("use an odd multiple of the stored cell of 1113 m (0.01 degree north-south): 1113, 3340, 5566"), "{}", run.stderr);
    let run = db.trips(&["groups", "--bucket-min", "45"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("divides a day: 60, 120, 180, 240, 360, 480, 720, 1440"),
        "{}",
        run.stderr
    );
    assert_eq!(db.trips(&["groups", "--top", "0"]).code, 2);
}

#[test]
fn the_groups_command_reads_the_snapshot_only_while_it_is_current() {
    let db = test_db!("groups_snapshot");
    fine_grid(&db);
    db.trips(&["ingest", &db.generate(20_000, 12)]).ok();
    let top = |db: &TestDb| db.trips(&["groups", "--top", "10", "--json"]).ok().stdout;
    let live = top(&db);
    db.trips(&["refresh"]).ok();
    assert_eq!(db.count("SELECT trip_groups_is_current()::int::bigint"), 1);
    assert_eq!(top(&db), live, "the snapshot and the rollup disagree");
    // A new file makes the snapshot stale; the command then sums the rollup and sees the new trips.
    db.trips(&["ingest", "--force", &db.generate(20_000, 12)])
        .ok();
    assert_eq!(db.count("SELECT trip_groups_is_current()::int::bigint"), 0);
    let doubled = top(&db);
    let first = |out: &str| -> i64 {
        serde_json::from_str::<serde_json::Value>(out.lines().next().unwrap()).unwrap()["trips"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(first(&doubled), 2 * first(&live));
}
