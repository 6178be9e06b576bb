//! `trips ingest` end to end: the real binary against a real PostGIS.

mod common;

use common::{HEADER, TestDb, sample};
use std::io::Write;
use std::process::Stdio;

const GOOD: &str = "Turin,POINT (7.67 44.99),POINT (7.72 45.06),2018-05-21 02:54:04,baba_car";

fn committed(db: &TestDb) -> i64 {
    db.count("SELECT count(*) FROM trip_rows")
}

/// Waits for each loader started with piped stderr, asserting that it succeeded.
fn wait_for_success(children: impl IntoIterator<Item = std::process::Child>) {
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn sample_loads_whole_and_reads_back_exactly() {
    let db = test_db!("sample");
    let run = db.trips(&["ingest", sample().to_str().unwrap()]).ok();
    assert!(run.stderr.contains("loaded "), "{}", run.stderr);
    assert!(run.stderr.contains(": 100 trips in "), "{}", run.stderr);

    assert_eq!(db.count("SELECT count(*) FROM trips"), 100);
    assert_eq!(db.count("SELECT count(DISTINCT region) FROM trips"), 3);
    assert_eq!(db.count("SELECT count(DISTINCT datasource) FROM trips"), 5);
    let per_region: Vec<(String, i64)> = db
        .client()
        .query(
            "SELECT region, count(*) FROM trips GROUP BY 1 ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        per_region,
        [
            ("Hamburg".into(), 28),
            ("Prague".into(), 34),
            ("Turin".into(), 38)
        ]
    );

    // Rows checked field by field against the file (lines 2 and 101).
    let mut client = db.client();
    for (region, olon, olat, dlon, dlat, at, source) in [
        (
            "Prague",
            14.4973794438195,
            50.00136875782316,
            14.43109483523328,
            50.04052930943246,
            "2018-05-28 09:03:40",
            "funny_car",
        ),
        (
            "Prague",
            14.61738744026195,
            50.03346482370401,
            14.31199296863995,
            50.09604608872181,
            "2018-05-15 22:10:03",
            "baba_car",
        ),
    ] {
        let row = client
            .query_one(
                "SELECT ST_X(origin), ST_Y(origin), ST_X(destination), ST_Y(destination),
                        ST_SRID(origin), datasource
                   FROM trips WHERE region = $1 AND departed_at = $2::text::timestamp",
                &[&region, &at],
            )
            .unwrap();
        for (i, want) in [olon, olat, dlon, dlat].into_iter().enumerate() {
            let got: f64 = row.get(i);
            assert!(
                (got - want).abs() <= 1e-7,
                "{region} {at} field {i}: {got} vs {want}"
            );
        }
        assert_eq!(row.get::<_, i32>(4), 4326);
        assert_eq!(row.get::<_, String>(5), source);
    }
    let job: (String, i64, i64, Option<String>) = {
        let r = client
            .query_one(
                "SELECT state, rows, total_bytes, content_sha256 FROM ingest_jobs",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2), r.get(3))
    };
    assert_eq!(job.0, "done");
    assert_eq!(job.1, 100);
    assert_eq!(job.2, std::fs::metadata(sample()).unwrap().len() as i64);
    assert_eq!(
        job.3.as_deref(),
        Some("568f8e5010143f38645ae5a1b339f166957f6305357a55a01b5532032ea979e2")
    );
}

#[test]
fn negative_coordinates_exponents_and_fractions_round_trip() {
    let db = test_db!("numbers");
    let file = db.file(
        "south.csv",
        format!(
            "{HEADER}\nSao Paulo,POINT (-46.6333 -2.35505e1),POINT(-1.8e2 9E1),2020-02-29 23:59:59.25,x\n"
        ),
    );
    db.trips(&["ingest", &file]).ok();
    let row = db
        .client()
        .query_one(
            "SELECT ST_X(origin), ST_Y(origin), ST_X(destination), ST_Y(destination), departed_at::text
               FROM trips",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, f64>(0), -46.6333);
    assert_eq!(row.get::<_, f64>(1), -23.5505);
    assert_eq!(row.get::<_, f64>(2), -180.0);
    assert_eq!(row.get::<_, f64>(3), 90.0);
    assert_eq!(row.get::<_, String>(4), "2020-02-29 23:59:59.25");
}

#[test]
fn each_kind_of_bad_record_fails_the_file_naming_line_and_column() {
    let db = test_db!("bad");
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "field count",
            b"Turin,POINT (7.67 44.99),POINT (7.72 45.06),2018-05-21 02:54:04",
            "expected 5 fields (as in the header), found 4",
        ),
        (
            "unclosed point",
            b"Turin,POINT(1 2,POINT (7.72 45.06),2018-05-21 02:54:04,baba_car",
            "column 2 (origin_coord): expected a WKT point like \"POINT (14.43 50.04)\" (longitude latitude, WGS84), found \"POINT(1 2\"",
        ),
        (
            "linestring",
            b"Turin,POINT (7.67 44.99),LINESTRING (7 45),2018-05-21 02:54:04,baba_car",
            "column 3 (destination_coord): expected a WKT point",
        ),
        (
            "missing coordinate",
            b"Turin,POINT (7.67),POINT (7.72 45.06),2018-05-21 02:54:04,baba_car",
            "column 2 (origin_coord): expected a WKT point",
        ),
        (
            "nan",
            b"Turin,POINT (NaN 44.99),POINT (7.72 45.06),2018-05-21 02:54:04,baba_car",
            "column 2 (origin_coord): expected a WKT point like \"POINT (14.43 50.04)\" (longitude latitude, WGS84), found \"POINT (NaN 44.99)\"",
        ),
        (
            "longitude",
            b"Turin,POINT (181 44.99),POINT (7.72 45.06),2018-05-21 02:54:04,baba_car",
            "column 2 (origin_coord): longitude 181 is outside [-180, 180]",
        ),
        (
            "latitude",
            b"Turin,POINT (7.67 44.99),POINT (7.72 -90.5),2018-05-21 02:54:04,baba_car",
            "column 3 (destination_coord): latitude -90.5 is outside [-90, 90]",
        ),
        (
            "date",
            b"Turin,POINT (7.67 44.99),POINT (7.72 45.06),2018-02-30 02:54:04,baba_car",
            "column 4 (datetime): expected a date and time as YYYY-MM-DD HH:MM:SS (a real calendar date), found \"2018-02-30 02:54:04\"",
        ),
        (
            "empty region",
            b",POINT (7.67 44.99),POINT (7.72 45.06),2018-05-21 02:54:04,baba_car",
            "column 1 (region): expected a name, found \"\"",
        ),
        (
            "empty datasource",
            b"Turin,POINT (7.67 44.99),POINT (7.72 45.06),2018-05-21 02:54:04,",
            "column 5 (datasource): expected a name",
        ),
        (
            "utf-8",
            b"Tur\xffin,POINT (7.67 44.99),POINT (7.72 45.06),2018-05-21 02:54:04,baba_car",
            "column 1 (region): expected UTF-8 text, found the byte 0xff at byte 4",
        ),
    ];
    for (i, (what, line, expected)) in cases.iter().enumerate() {
        let mut content = format!("{HEADER}\n{GOOD}\n").into_bytes();
        content.extend_from_slice(line);
        content.extend_from_slice(format!("\n{GOOD}\n").as_bytes());
        let file = db.file(&format!("bad{i}.csv"), content);
        let run = db.trips(&["ingest", &file]);
        assert_eq!(run.code, 1, "{what}: {}", run.stderr);
        let want = format!("{file}:3: {expected}");
        assert!(
            run.stderr.contains(&want),
            "{what}: expected\n  {want}\nin\n{}",
            run.stderr
        );
        assert!(
            run.stderr.contains("Nothing of this file was committed"),
            "{what}: {}",
            run.stderr
        );
        assert_eq!(committed(&db), 0, "{what}: trips were committed");
        let (state, error): (String, String) = {
            let r = db
                .client()
                .query_one(
                    "SELECT state, error FROM ingest_jobs ORDER BY id DESC LIMIT 1",
                    &[],
                )
                .unwrap();
            (r.get(0), r.get(1))
        };
        assert_eq!(state, "failed", "{what}");
        assert!(error.contains(&want), "{what}: job error {error}");
    }
    assert_eq!(
        db.count("SELECT count(*) FROM pg_class WHERE relname ~ '^(trip_rows|trip_cells)_j'"),
        0
    );
}

#[test]
fn bad_headers_and_empty_files() {
    let db = test_db!("headers");
    let missing = db.file(
        "missing.csv",
        format!("region,origin_coord,destination_coord,datetime\n{GOOD}\n"),
    );
    let run = db.trips(&["ingest", &missing]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(&format!(
            "{missing}:1: the header has no column named `datasource`"
        )),
        "{}",
        run.stderr
    );

    let empty = db.file("empty.csv", "");
    let run = db.trips(&["ingest", &empty]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(&format!(
            "{empty}: the file is empty; expected a header line naming {HEADER}"
        )),
        "{}",
        run.stderr
    );

    let header_only = db.file("header.csv", format!("{HEADER}\n"));
    let run = db.trips(&["ingest", &header_only]).ok();
    assert!(
        run.stderr.contains("no trips in the file (only a header)"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(": 0 trips in "), "{}", run.stderr);

    let nowhere = db.dir.join("nowhere.csv");
    let run = db.trips(&["ingest", nowhere.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("cannot open"), "{}", run.stderr);
    assert_eq!(committed(&db), 0);
}

#[test]
fn quoted_commas_crlf_any_column_order_and_extra_columns() {
    let db = test_db!("dialect");
    let file = db.file(
        "crlf.csv",
        "datasource,note,region,datetime,destination_coord,origin_coord\r\n\
         cheap_mobile,\"a, b\",\"Turin, Italy\",2018-05-21 02:54:04,POINT (7.72 45.06),\"POINT (7.67 44.99)\"\r\n\
         \"funny \"\"car\"\"\",,Prague,2018-05-22 02:54:04,POINT (14.4 50.0),POINT (14.5 50.1)\r\n",
    );
    let run = db.trips(&["ingest", &file]).ok();
    assert!(
        run.stderr.contains("ignoring column(s) note"),
        "{}",
        run.stderr
    );
    let rows: Vec<(String, String, f64)> = db
        .client()
        .query(
            "SELECT region, datasource, ST_X(origin) FROM trips ORDER BY departed_at",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        [
            ("Turin, Italy".to_string(), "cheap_mobile".to_string(), 7.67),
            ("Prague".to_string(), "funny \"car\"".to_string(), 14.5)
        ]
    );
}

#[test]
fn skip_invalid_loads_the_rest_and_writes_rejects() {
    let db = test_db!("skip");
    let file = db.file(
        "mixed.csv",
        format!(
            "{HEADER}\n{GOOD}\nTurin,POINT (7.67 44.99),POINT (7.72 45.06),2018-02-30 02:54:04,baba_car\n\
             {GOOD}\nTurin,POINT(1 2,POINT (7.72 45.06),2018-05-21 02:54:04,baba_car\nTurin,too,few\n{GOOD}\n"
        ),
    );
    let run = db.trips(&["ingest", "--skip-invalid", &file]).ok();
    let rejects = db.dir.join("mixed.csv.job1.rejects.csv");
    assert!(
        run.stderr.contains("3 trips in")
            && run
                .stderr
                .contains(&format!("3 rejected (see {})", rejects.display())),
        "{}",
        run.stderr
    );
    assert_eq!(committed(&db), 3);
    assert_eq!(db.count("SELECT rejected FROM ingest_jobs WHERE id = 1"), 3);
    assert_eq!(db.count("SELECT rows FROM ingest_jobs WHERE id = 1"), 3);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(&rejects)
        .unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[..3], ["line", "reason", "region"]);
    let rejected: Vec<(String, String)> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_string(), r[1].to_string())
        })
        .collect();
    assert_eq!(rejected.len(), 3);
    assert_eq!(rejected[0].0, "3");
    assert!(
        rejected[0].1.starts_with("column 4 (datetime)"),
        "{:?}",
        rejected[0]
    );
    assert_eq!(rejected[1].0, "5");
    assert!(
        rejected[1].1.starts_with("column 2 (origin_coord)"),
        "{:?}",
        rejected[1]
    );
    assert_eq!(
        rejected[2],
        (
            "6".to_string(),
            "expected 5 fields (as in the header), found 3".to_string()
        )
    );
}

#[test]
fn reingest_is_skipped_force_loads_again_stdin_and_gzip_are_the_same_content() {
    let db = test_db!("idempotent");
    let bytes = std::fs::read(sample()).unwrap();
    db.trips_stdin(&["ingest", "-"], &bytes).ok();
    assert_eq!(committed(&db), 100);

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&bytes).unwrap();
    let gz_file = db.file("sample.csv.gz", gz.finish().unwrap());
    let run = db.trips(&["ingest", &gz_file]).ok();
    assert!(
        run.stderr.contains(&format!(
            "skipped {gz_file}: this content was already loaded by job 1"
        )),
        "{}",
        run.stderr
    );
    assert_eq!(committed(&db), 100);
    assert_eq!(db.count("SELECT count(*) FROM ingest_jobs WHERE id = 2 AND state = 'skipped' AND duplicate_of = 1"), 1);

    let run = db.trips(&["ingest", "--force", &gz_file]).ok();
    assert!(run.stderr.contains(": 100 trips in"), "{}", run.stderr);
    assert_eq!(committed(&db), 200);
    assert_eq!(
        db.count("SELECT count(*) FROM ingest_jobs WHERE state = 'done'"),
        2
    );
    // Still only one name per region and datasource.
    assert_eq!(db.count("SELECT count(*) FROM regions"), 3);
    assert_eq!(db.count("SELECT count(*) FROM datasources"), 5);
}

#[test]
fn one_bad_file_among_several_sets_the_exit_status_but_not_the_others() {
    let db = test_db!("several");
    let bad = db.file("bad.csv", format!("{HEADER}\nnot,a,trip\n"));
    let run = db.trips(&["ingest", sample().to_str().unwrap(), &bad]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(committed(&db), 100);
}

#[test]
fn concurrent_ingests_add_up_and_share_dimensions() {
    let db = test_db!("concurrent");
    let files: Vec<String> = (1..=3).map(|seed| db.generate(20_000, seed)).collect();
    let children: Vec<_> = files
        .iter()
        .map(|f| {
            db.command(&["ingest", f])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    wait_for_success(children);
    assert_eq!(committed(&db), 60_000);
    assert_eq!(db.count("SELECT count(*) FROM trips"), 60_000);
    assert_eq!(db.count("SELECT count(*) FROM regions"), 7);
    assert_eq!(db.count("SELECT count(*) FROM datasources"), 5);
    assert_eq!(
        db.count("SELECT count(*) FROM ingest_jobs WHERE state = 'done'"),
        3
    );
}

/// A loader finishing a content that another transaction has just marked done (not yet committed) waits
/// for that transaction: if it commits, the file is skipped as a duplicate of its job; if it rolls back,
/// the file is loaded. The other transaction here is a loader's, stopped between ingest_job_done and its
/// commit.
#[test]
fn a_content_being_committed_by_another_loader_is_waited_for() {
    let db = test_db!("content_race");
    db.trips(&["migrate"]).ok();
    for (seed, commit) in [(1, true), (2, false)] {
        let file = db.generate(1_000, seed);
        let (job, out) = race_another_loader(&db, &file, commit, db.command(&["ingest", &file]));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let expected = if commit {
            format!("(skipped,{job})")
        } else {
            "(done,)".to_string()
        };
        assert_eq!(
            db.rows(&format!(
                "SELECT state, duplicate_of FROM ingest_jobs WHERE id = {job} + 1"
            )),
            [expected],
            "{stderr}"
        );
    }
    assert_eq!(committed(&db), 1_000);
}

/// Marks the content of `file` done in another loader's open transaction (a job `other.csv`, stopped
/// between ingest_job_done and its commit), starts `loader`, waits until it waits for that transaction,
/// then commits or rolls it back. Returns the other loader's job and the loader's output.
fn race_another_loader(
    db: &TestDb,
    file: &str,
    commit: bool,
    mut loader: std::process::Command,
) -> (i32, std::process::Output) {
    use sha2::{Digest, Sha256};
    let sha: String = Sha256::digest(std::fs::read(file).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut other = db.client();
    let job: i32 = other
        .query_one("SELECT ingest_jobs_open('{other.csv}', '{0}', false)", &[])
        .unwrap()
        .get(0);
    let mut tx = other.transaction().unwrap();
    tx.execute(
        "UPDATE ingest_jobs SET state = 'loading' WHERE id = $1",
        &[&job],
    )
    .unwrap();
    tx.execute("SELECT ingest_job_done($1, $2, 0, 0)", &[&job, &sha])
        .unwrap();
    let loader = loader.stderr(Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let waiting = "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                    WHERE NOT l.granted AND a.datname = current_database()";
    while db.count(waiting) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the loader never waited"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if commit { tx.commit() } else { tx.rollback() }.unwrap();
    other
        .execute("SELECT ingest_jobs_close($1)", &[&job])
        .unwrap();
    (job, loader.wait_with_output().unwrap())
}

#[test]
fn a_killed_loader_commits_nothing_and_its_job_is_marked_failed() {
    let db = test_db!("killed");
    let (mut child, stdin) = db.loader_mid_file(200_000, 7);
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);

    // The next run of trips notices the abandoned job.
    let run = db.trips(&["migrate"]).ok();
    assert!(
        run.stderr
            .contains("marked 1 abandoned ingest job(s) as failed"),
        "{}",
        run.stderr
    );
    let (state, error): (String, String) = {
        let r = db
            .client()
            .query_one("SELECT state, error FROM ingest_jobs", &[])
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(state, "failed");
    assert!(
        error.contains("the loader stopped before finishing"),
        "{error}"
    );
    assert_eq!(committed(&db), 0);
    assert_eq!(
        db.count("SELECT count(*) FROM pg_class WHERE relname ~ '^(trip_rows|trip_cells)_j'"),
        0
    );
}

/// Small files given together are loaded in one transaction, each in a savepoint: a bad file and a file
/// already loaded are rolled back alone, the others are committed together as one piece, with every
/// tally agreeing with the trips.
#[test]
fn small_files_load_together_each_committed_whole_or_not_at_all() {
    let db = test_db!("batch");
    let first = db.generate(3000, 1);
    let again = db.file("again.csv", std::fs::read(&first).unwrap());
    // 20,000 good records first: more than one COPY write (1 MiB), so rows reach the server before the
    // bad record fails the file.
    let mut bad = format!("{HEADER}\n");
    for _ in 0..20_000 {
        bad += "Nowhere,POINT (7.67 44.99),POINT (7.72 45.06),2018-05-21 02:54:04,baba_car\n";
    }
    bad += "Nowhere,POINT (7.67 44.99),POINT (7.72 45.06),2018-05-32 02:54:04,baba_car\n";
    let bad = db.file("bad.csv", bad);
    let last = db.generate(2000, 2);
    let run = db.trips(&[
        "ingest",
        "--json",
        "--tally-limit",
        "500",
        &first,
        &bad,
        &again,
        &last,
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "error: failed to load {bad} [job 2]: {bad}:20002: column 4"
        )),
        "{}",
        run.stderr
    );
    // The loader waits for the `done` of the files it committed, not for the events it has already seen.
    assert!(!run.stderr.contains("did not arrive"), "{}", run.stderr);
    assert_eq!(
        db.rows("SELECT id, state, duplicate_of FROM ingest_jobs ORDER BY id"),
        ["(1,done,)", "(2,failed,)", "(3,skipped,1)", "(4,done,)"]
    );
    // Each job's events come in the order of its states (a file that fails while read is never
    // finishing), whichever statement wrote them: a batch marks the next file loading with the last one's
    // finishing.
    assert_job_events(
        &run.stdout,
        &[
            (1, &["queued", "loading", "finishing", "done"][..]),
            (2, &["queued", "loading", "failed"]),
            (3, &["queued", "loading", "finishing", "skipped"]),
            (4, &["queued", "loading", "finishing", "done"]),
        ],
    );
    assert_eq!(committed(&db), 5000);
    assert_eq!(
        db.rows("SELECT parent, first_job, last_job, trips FROM trip_pieces ORDER BY 1"),
        ["(trip_cells,1,4,5000)", "(trip_rows,1,4,5000)"]
    );
    assert_eq!(
        db.count("SELECT count(*) FROM regions WHERE name = 'Nowhere'"),
        0
    );
    // Every tally holds the trips of the two files done, counted once.
    assert_tallies_count(&db, 5000);
}

/// Every tally (per region and week, per region and datasource, per cell and week at both ends) holds
/// `trips` trips, and the regions' weeks are those of the stored trips.
fn assert_tallies_count(db: &TestDb, trips: i64) {
    for tally in [
        "SELECT sum(trips)::bigint FROM region_weeks",
        "SELECT sum(trips)::bigint FROM region_datasource_stats",
        "SELECT sum(coalesce(u.n, 1))::bigint FROM trip_cells c, unnest(c.weeks, c.week_trips) AS u(week, n)
          WHERE c.side = 1 AND c.level = 2",
        "SELECT sum(coalesce(u.n, 1))::bigint FROM trip_cells c, unnest(c.weeks, c.week_trips) AS u(week, n)
          WHERE c.side = 2 AND c.level = 2",
    ] {
        assert_eq!(db.count(tally), trips, "{tally}");
    }
    assert_eq!(
        db.rows("SELECT region_id, trip_week(departed_at) AS w, count(*) FROM trip_rows GROUP BY 1, 2 ORDER BY 1, 2"),
        db.rows("SELECT region_id, week, trips FROM region_weeks ORDER BY 1, 2")
    );
}

/// Files of fewer trips than a run are read whole before any of their rows is sent, and sent together: a
/// bad one and a duplicate (of a file earlier in the batch, or of a file loaded before) are left out
/// without a savepoint, a large file of the same batch still streams in one, and every count adds up.
#[test]
fn files_read_whole_are_sent_together_and_left_out_before_sending() {
    let db = test_db!("batch_whole");
    let before = db.generate(1000, 5);
    db.trips(&["ingest", &before]).ok();
    let small = db.generate(3000, 1);
    let again = db.file("again.csv", std::fs::read(&small).unwrap());
    let loaded = db.file("loaded.csv", std::fs::read(&before).unwrap());
    let bad = db.file(
        "bad.csv",
        format!("{HEADER}\n{GOOD}\n{GOOD}\nTurin,POINT (7.67 44.99),POINT (7.72 45.06),2018-05-32 02:54:04,baba_car\n"),
    );
    // More trips than a run (16,384): streamed into a savepoint of its own.
    let large = db.generate(20_000, 2);
    let last = db.generate(2000, 3);
    let run = db.trips(&[
        "ingest", "--json", &small, &bad, &again, &loaded, &large, &last,
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "error: failed to load {bad} [job 3]: {bad}:4: column 4"
        )),
        "{}",
        run.stderr
    );
    assert_eq!(
        db.rows("SELECT id, state, duplicate_of, rows FROM ingest_jobs ORDER BY id"),
        [
            "(1,done,,1000)",
            "(2,done,,3000)",
            "(3,failed,,0)",
            "(4,skipped,2,0)",
            "(5,skipped,1,0)",
            "(6,done,,20000)",
            "(7,done,,2000)"
        ]
    );
    assert_job_events(
        &run.stdout,
        &[
            (2, &["queued", "loading", "finishing", "done"][..]),
            (3, &["queued", "loading", "failed"]),
            (4, &["queued", "loading", "finishing", "skipped"]),
            (5, &["queued", "loading", "finishing", "skipped"]),
            (6, &["queued", "loading", "finishing", "done"]),
            (7, &["queued", "loading", "finishing", "done"]),
        ],
    );
    assert_eq!(committed(&db), 26_000);
    assert_eq!(
        db.rows("SELECT job_id, count(*) FROM trip_rows GROUP BY 1 ORDER BY 1"),
        ["(1,1000)", "(2,3000)", "(6,20000)", "(7,2000)"]
    );
    assert_tallies_count(&db, 26_000);
}

/// The rows of files read whole wait in memory and go by one COPY every 8 MiB or so, which may come after
/// a large file of the batch was rolled back: they must not be in that file's savepoint, which the next
/// large file reuses and may roll back too.
#[test]
fn rows_sent_between_two_failed_large_files_are_kept() {
    let db = test_db!("batch_whole_kept");
    let bad_large = |name: &str| {
        let mut text = format!("{HEADER}\n");
        for _ in 0..17_000 {
            text += GOOD;
            text += "\n";
        }
        text += "Turin,POINT (7.67 44.99),POINT (7.72 45.06),2018-05-32 02:54:04,baba_car\n";
        db.file(name, text)
    };
    let mut files = vec![bad_large("bad1.csv")];
    // 26 x 5,000 trips: more rows than a pool holds (8 MiB, about 127,000 trips), so some go mid-batch.
    files.extend((1..=26).map(|seed| db.generate(5000, seed)));
    files.push(bad_large("bad2.csv"));
    files.push(db.generate(1000, 99));
    let mut args = vec!["ingest"];
    args.extend(files.iter().map(String::as_str));
    let run = db.trips(&args);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        db.count("SELECT count(*) FROM ingest_jobs WHERE state = 'failed'"),
        2
    );
    assert_eq!(
        db.count("SELECT count(*) FROM ingest_jobs WHERE state = 'done'"),
        27
    );
    assert_eq!(committed(&db), 131_000);
    assert_eq!(
        db.count("SELECT sum(rows)::bigint FROM ingest_jobs WHERE state = 'done'"),
        131_000
    );
    assert_tallies_count(&db, 131_000);
}

/// A file read whole is checked against the content already loaded before it is sent; another loader
/// may commit the same content after that check. The batch then finds it when it marks its jobs done,
/// waits for the other loader's transaction, and if it committed fails the batch, telling the user to load
/// the files again (the duplicate is then skipped); if it rolled back, the batch commits.
#[test]
fn a_content_committed_by_another_loader_during_a_batch_fails_the_batch() {
    let db = test_db!("batch_content_race");
    db.trips(&["migrate"]).ok();
    for (seed, commit) in [(1, true), (2, false)] {
        let files = [
            db.generate(1_000, seed * 10),
            db.generate(1_000, seed),
            db.generate(1_000, seed * 10 + 1),
        ];
        let loader = db.command(&["ingest", &files[0], &files[1], &files[2]]);
        let (job, out) = race_another_loader(&db, &files[1], commit, loader);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let states = db.rows(&format!(
            "SELECT state FROM ingest_jobs WHERE id > {job} ORDER BY id"
        ));
        if commit {
            assert!(!out.status.success(), "{stderr}");
            assert!(
                stderr.contains(&format!(
                    "{}: job {job} of another loader committed the same content while this batch was \
                     loading it. Load the files again: this one will be skipped as a duplicate",
                    files[1]
                )),
                "{stderr}"
            );
            assert_eq!(states, ["(failed)", "(failed)", "(failed)"], "{stderr}");
            assert_eq!(committed(&db), 0);
            // Loaded again, the duplicate is skipped before it is sent, and the others are loaded.
            db.trips(&["ingest", &files[0], &files[1], &files[2]]).ok();
            assert_eq!(
                db.rows(&format!(
                    "SELECT state, duplicate_of FROM ingest_jobs WHERE id > {job} + 3 ORDER BY id"
                )),
                [
                    "(done,)".to_string(),
                    format!("(skipped,{job})"),
                    "(done,)".to_string()
                ]
            );
            assert_eq!(committed(&db), 2_000);
        } else {
            assert!(out.status.success(), "{stderr}");
            assert_eq!(states, ["(done)", "(done)", "(done)"], "{stderr}");
            assert_eq!(committed(&db), 5_000);
        }
    }
}

/// Each job's events in `trips ingest --json` output come in the order given (a state repeated by progress
/// told once).
fn assert_job_events(stdout: &str, expected: &[(i64, &[&str])]) {
    for (job, states) in expected {
        assert_eq!(job_states(stdout, *job), *states, "job {job}: {stdout}");
    }
}

/// The states of a job's events in `trips ingest --json` output, a state repeated by progress told once.
fn job_states(stdout: &str, job: i64) -> Vec<String> {
    let mut states: Vec<String> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|event| event["job"] == job)
        .map(|event| event["state"].as_str().unwrap().to_string())
        .collect();
    states.dedup();
    states
}

/// A file of a batch that cannot be read at all fails alone, and the file after it is still told
/// `loading` before it is done. /proc/self/mem is a file of size 0 whose first read fails (EIO).
#[test]
fn a_file_of_a_batch_that_cannot_be_read_fails_alone() {
    let db = test_db!("batch_unreadable");
    let unreadable = "/proc/self/mem";
    assert!(std::fs::metadata(unreadable).unwrap().is_file());
    let (first, last) = (db.generate(1000, 1), db.generate(1000, 2));
    let run = db.trips(&["ingest", "--json", &first, unreadable, &last]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "error: failed to load {unreadable} [job 2]: cannot read {unreadable}"
        )),
        "{}",
        run.stderr
    );
    assert_eq!(
        db.rows("SELECT id, state, batch FROM ingest_jobs ORDER BY id"),
        ["(1,done,1)", "(2,failed,1)", "(3,done,1)"]
    );
    assert_eq!(job_states(&run.stdout, 2), ["queued", "loading", "failed"]);
    assert_eq!(
        job_states(&run.stdout, 3),
        ["queued", "loading", "finishing", "done"],
        "{}",
        run.stdout
    );
    assert_eq!(committed(&db), 2000);
}

/// A loader killed while its batch is open (the first file read and marked done, the second loading)
/// commits none of the batch: every job of it ends failed, nothing is stored.
#[test]
fn a_loader_killed_in_the_middle_of_a_batch_commits_none_of_it() {
    let db = test_db!("batch_killed");
    let files = [
        db.generate(2000, 1),
        db.generate(200_000, 2),
        db.generate(1000, 3),
    ];
    db.trips(&["migrate"]).ok();
    let mut child = db
        .command(&[
            "ingest",
            "--progress-rows",
            "1000",
            &files[0],
            &files[1],
            &files[2],
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while db
        .count("SELECT count(*) FROM ingest_jobs WHERE id = 2 AND state = 'loading' AND rows > 0")
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the second file never showed progress"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        db.rows("SELECT id, state FROM ingest_jobs ORDER BY id"),
        ["(1,finishing)", "(2,loading)", "(3,queued)"]
    );
    child.kill().unwrap();
    child.wait().unwrap();

    let run = db.trips(&["migrate"]).ok();
    assert!(
        run.stderr
            .contains("marked 3 abandoned ingest job(s) as failed"),
        "{}",
        run.stderr
    );
    assert_eq!(committed(&db), 0);
    assert_eq!(db.count("SELECT count(*) FROM trip_pieces"), 0);
    assert_eq!(
        db.count("SELECT count(*) FROM pg_class WHERE relname ~ '^(trip_rows|trip_cells)_j'"),
        0
    );
    // Loading them again loads them whole.
    let mut args = vec!["ingest"];
    args.extend(files.iter().map(String::as_str));
    db.trips(&args).ok();
    assert_eq!(committed(&db), 203_000);
}

/// Two loaders, each loading its small files in batches (and one of them with two workers), at the same
/// time: every batch gets consecutive jobs of its own, so the pieces' ranges never overlap, and the totals
/// are exact.
#[test]
fn concurrent_batches_get_ranges_of_their_own() {
    let db = test_db!("concurrent_batches");
    db.trips(&["migrate"]).ok();
    let files: Vec<String> = (1..=12).map(|seed| db.generate(2_000, seed)).collect();
    let (a, b) = files.split_at(6);
    let spawn = |extra: &[&str], part: &[String]| {
        let mut args = vec!["ingest"];
        args.extend(extra);
        args.extend(part.iter().map(String::as_str));
        db.command(&args).stderr(Stdio::piped()).spawn().unwrap()
    };
    let children = [spawn(&[], a), spawn(&["-j", "2", "--batch-mib", "1"], b)];
    wait_for_success(children);
    assert_eq!(committed(&db), 24_000);
    assert_eq!(
        db.count("SELECT count(*) FROM ingest_jobs WHERE state = 'done'"),
        12
    );
    // Each piece holds the trips of exactly the jobs in its range, and no two ranges overlap.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM trip_pieces p
              WHERE p.parent = 'trip_rows'
                AND p.trips <> (SELECT count(*) FROM trip_rows t WHERE t.job_id BETWEEN p.first_job AND p.last_job)"
        ),
        0
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM trip_pieces p JOIN trip_pieces q
                ON p.parent = q.parent AND p.first_job < q.first_job AND q.first_job <= p.last_job"
        ),
        0
    );
    assert!(db.count("SELECT count(*) FROM trip_pieces WHERE parent = 'trip_rows'") < 12);
}
