//! Hostile files and lost connections, through the real binary: memory stays bounded whatever a file holds,
//! every refused record is a located error, a failed file leaves nothing behind (not even names), and a
//! lost connection is told as such and survived.

mod common;

use common::{HEADER, Run, TestDb, sample};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GOOD: &str = "Turin,POINT (7.67 44.99),POINT (7.72 45.06),2018-05-21 02:54:04,baba_car";

/// Runs `trips ingest` to its end and returns what it printed, with the peak resident memory it reports
/// (VmHWM, which the kernel counts from the program's start; a child's rusage would also count the test
/// process it was forked from).
fn measured(db: &TestDb, args: &[&str]) -> (Run, u64) {
    let run = Run::from(
        db.command(args)
            .env("RUST_LOG", "info,trips=debug")
            .output()
            .expect("run trips"),
    );
    let peak = run
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("[DEBUG] peak resident memory: "))
        .and_then(|l| l.strip_suffix(" bytes"))
        .unwrap_or_else(|| panic!("trips did not report its peak memory:\n{}", run.stderr))
        .parse()
        .unwrap();
    (run, peak)
}

const MB: u64 = 1 << 20;

#[test]
fn far_apart_dates_keep_the_loader_small() {
    let db = test_db!("dates");
    // 100,000 trips of which every 100th is dated 0001-01-01: their weeks span 2,000 years.
    let generated = std::fs::read_to_string(db.generate(100_000, 1)).unwrap();
    let mut csv = String::new();
    for (i, line) in generated.lines().enumerate() {
        let mut fields: Vec<&str> = line.split(',').collect();
        if i > 0 && i % 100 == 0 {
            fields[3] = "0001-01-01 00:00:00";
        }
        csv += &fields.join(",");
        csv.push('\n');
    }
    let file = db.file("far.csv", csv);
    let (run, peak) = measured(&db, &["ingest", &file]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // The bound: 100 MB (about 20 MB are used here; a structure dense over the span of dates took 10 GB).
    assert!(peak < 100 * MB, "the loader peaked at {} MB", peak / MB);
    assert_eq!(db.count("SELECT count(*) FROM trips"), 100_000);
    assert_eq!(
        db.count("SELECT count(*) FROM trips WHERE departed_at = '0001-01-01'"),
        1000
    );
    // And the answers span the 2,000 years exactly as the plain SQL does.
    let r = db
        .trips(&["weekly-avg", "--bbox", "-180,-90,180,90", "--json"])
        .ok();
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["trips"], 100_000, "{}", r.stdout);
    let weeks = db.count(
        "SELECT (extract(epoch FROM date_trunc('week', max(departed_at)) - date_trunc('week', min(departed_at)))
                 / 604800)::bigint + 1 FROM trips",
    );
    assert_eq!(v["weeks"].as_f64(), Some(weeks as f64), "{}", r.stdout);
}

#[test]
fn a_failed_file_leaves_no_names_and_the_name_limit_is_told() {
    let db = test_db!("names");
    // 40,000 distinct regions: a database keeps at most 32,767.
    let mut csv = format!("{HEADER}\n");
    for i in 0..40_000 {
        csv += &format!(
            "r{i},POINT (1 1),POINT (1 1),2018-03-01 10:00:00,src{}\n",
            i % 3
        );
    }
    let run = db.trips(&["ingest", &db.file("many.csv", csv)]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "many.csv:32769: column 1 (region): cannot add the name \"r32767\": the database already \
             holds 32767 region names, the most it can keep; a trip stores its region as a 2-byte key. \
             A file with this many distinct region names usually has its columns shifted or mixed up. \
             Nothing of this file was committed"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(db.count("SELECT count(*) FROM regions"), 0);
    assert_eq!(db.count("SELECT count(*) FROM datasources"), 0);

    // So the next file with new names loads (its keys are the first ones again).
    let good = db.file("good.csv", format!("{HEADER}\n{GOOD}\n"));
    db.trips(&["ingest", &good]).ok();
    assert_eq!(db.rows("SELECT id, name FROM regions"), ["(1,Turin)"]);

    // A file that fails after its first record leaves none of its new names.
    let bad = format!(
        "{HEADER}\nAtlantis,POINT (1 1),POINT (1 1),2018-03-01 10:00:00,new_src\n\
         Atlantis,POINT (1 1),POINT (1 1),2018-02-30 10:00:00,new_src\n"
    );
    let bad = db.file("bad.csv", bad);
    assert_eq!(db.trips(&["ingest", &bad]).code, 1);
    assert_eq!(db.rows("SELECT name FROM regions"), ["(Turin)"]);
    assert_eq!(db.rows("SELECT name FROM datasources"), ["(baba_car)"]);

    // While another load runs, a failed file's names wait for it to end: that load may be using them.
    let (mut loader, mut stdin) = db.loader_mid_file(20_000, 5);
    assert_eq!(db.trips(&["ingest", &bad]).code, 1);
    assert_eq!(
        db.count("SELECT count(*) FROM regions WHERE name = 'Atlantis'"),
        1
    );
    let rest = std::fs::read(db.generate(20_000, 5)).unwrap();
    stdin.write_all(&rest[rest.len() / 2..]).unwrap();
    drop(stdin);
    assert!(loader.wait().unwrap().success());
    assert_eq!(
        db.count("SELECT count(*) FROM regions WHERE name = 'Atlantis'"),
        0
    );
    // Every name left is one the committed trips use.
    assert_eq!(
        db.rows("SELECT name FROM regions ORDER BY name"),
        db.rows("SELECT DISTINCT region FROM trips ORDER BY region")
    );
    assert_eq!(
        db.rows("SELECT name FROM datasources ORDER BY name"),
        db.rows("SELECT DISTINCT datasource FROM trips ORDER BY datasource")
    );
}

#[test]
fn names_postgres_cannot_store_are_refused_by_the_parser_and_quoted_short() {
    let db = test_db!("badnames");
    let huge = "x".repeat(1_000_000);
    let csv = format!(
        "{HEADER}\n{GOOD}\n{huge},POINT (1 1),POINT (1 1),2018-03-01 10:00:00,src\n\
         Tu\0rin,POINT (1 1),POINT (1 1),2018-03-01 10:00:00,src\n\
         Turin,POINT (1 1),POINT (1 1),2018-03-01 10:00:00,{}\n{GOOD}\n",
        "y".repeat(1025)
    );
    let file = db.file("names.csv", csv);
    let run = db.trips(&["ingest", &file]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(&format!(
            "names.csv:3: column 1 (region): expected a name of at most 1024 bytes, found 1000000 \
             bytes: \"{}\"...",
            "x".repeat(80)
        )),
        "{}",
        run.stderr
    );
    // Nothing repeats the value whole: not the message, not the job record.
    assert!(
        run.stderr.len() < 2000,
        "{} bytes of stderr",
        run.stderr.len()
    );
    assert!(db.count("SELECT length(error)::bigint FROM ingest_jobs") < 1000);

    // They are records like any other: --skip-invalid skips them with their reasons.
    let run = db.trips(&["ingest", "--skip-invalid", &file]).ok();
    assert!(run.stderr.contains(": 2 trips in"), "{}", run.stderr);
    let rejects = std::fs::read_to_string(db.dir.join("names.csv.job2.rejects.csv")).unwrap();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(rejects.as_bytes());
    let got: Vec<(String, String)> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_string(), r[1].to_string())
        })
        .collect();
    let want = [
        (
            "3",
            "column 1 (region): expected a name of at most 1024 bytes, found 1000000 bytes: \"xxx",
        ),
        (
            "4",
            "column 1 (region): expected text without NUL characters, found one at byte 3 of \"Tu\\0rin\"",
        ),
        (
            "5",
            "column 5 (datasource): expected a name of at most 1024 bytes, found 1025 bytes: \"yyy",
        ),
    ];
    assert_eq!(got.len(), want.len(), "{got:?}");
    for ((line, reason), (want_line, want_reason)) in got.iter().zip(want) {
        assert!(
            line == want_line && reason.starts_with(want_reason),
            "{line}: {reason:.200}"
        );
        assert!(reason.len() < 200, "{reason:.300}");
    }
}

#[test]
fn one_endless_line_stops_at_the_record_limit_with_memory_bounded() {
    let db = test_db!("endless");
    // 100 MB without a line break after the header.
    let path = db.dir.join("endless.csv");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, "{HEADER}").unwrap();
    let chunk = vec![b'A'; 1 << 20];
    for _ in 0..100 {
        f.write_all(&chunk).unwrap();
    }
    drop(f);
    let (run, peak) = measured(&db, &["ingest", path.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let told = "endless.csv:2: the record that starts on this line is longer than 1.0 MiB (the most a \
                record may hold); nothing of this file was committed. A record is one line (a quoted \
                value may span lines): check that the file has line breaks and no unclosed quote";
    assert!(run.stderr.contains(told), "{}", run.stderr);
    // The bound: 64 MB (the record limit is 1 MiB; reading the line whole took 6 GB).
    assert!(peak < 64 * MB, "the loader peaked at {} MB", peak / MB);
    assert!(db.count("SELECT length(error)::bigint FROM ingest_jobs") < 1000);

    // An unclosed quote runs on over the lines after it: the error names the line where it opened.
    let mut csv =
        format!("{HEADER}\n{GOOD}\n\"Turin,POINT (1 1),POINT (1 1),2018-03-01 10:00:00,src\n");
    for _ in 0..20_000 {
        csv += GOOD;
        csv.push('\n');
    }
    let run = db.trips(&["ingest", &db.file("quote.csv", csv)]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("quote.csv:3: the record that starts on this line is longer than 1.0 MiB"),
        "{}",
        run.stderr
    );
    assert_eq!(db.count("SELECT count(*) FROM trips"), 0);
}

#[test]
fn year_0000_is_refused_like_any_impossible_date() {
    let db = test_db!("year0");
    let file = db.file(
        "y0.csv",
        format!("{HEADER}\nTurin,POINT (1 1),POINT (1 1),0000-03-01 10:00:00,src\n"),
    );
    let run = db.trips(&["ingest", &file]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(
            "y0.csv:2: column 4 (datetime): expected a date and time as YYYY-MM-DD HH:MM:SS (a real \
             calendar date: there is no year 0000), found \"0000-03-01 10:00:00\""
        ),
        "{}",
        run.stderr
    );
    assert_eq!(db.count("SELECT count(*) FROM trips"), 0);
}

#[test]
fn a_file_whose_every_record_is_rejected_fails_and_is_not_loaded_content() {
    let db = test_db!("allbad");
    let csv = format!(
        "{HEADER}\nTurin,POINT (1 1),POINT (1 1),2018-13-01 10:00:00,src\nTurin,POINT (1),POINT (1 1),2018-03-01 10:00:00,src\n"
    );
    let file = db.file("allbad.csv", &csv);
    let run = db.trips(&["ingest", "--skip-invalid", &file]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let rejects = db.dir.join("allbad.csv.job1.rejects.csv");
    assert!(
        run.stderr.contains(&format!(
            "allbad.csv: all 2 records were rejected, so nothing was loaded; {} says why for each. Fix \
             the file and load it again",
            rejects.display()
        )),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&rejects).unwrap().lines().count(),
        3
    );
    assert_eq!(
        db.rows("SELECT state, content_sha256 IS NULL, rejects_file FROM ingest_jobs"),
        [format!("(failed,t,{})", rejects.display())]
    );
    // The same bytes again are not "already loaded": they fail again, now at the first bad record.
    let run = db.trips(&["ingest", &file]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("allbad.csv:2: column 4 (datetime)"),
        "{}",
        run.stderr
    );
    // And once fixed, the file loads.
    std::fs::write(
        &file,
        csv.replace("2018-13-01", "2018-12-01")
            .replace("POINT (1),", "POINT (1 1),"),
    )
    .unwrap();
    db.trips(&["ingest", &file]).ok();
    assert_eq!(db.count("SELECT count(*) FROM trips"), 2);
}

#[test]
fn a_password_is_redacted_where_it_is_a_password_not_in_file_names_or_dates() {
    let db = test_db!("redact");
    db.trips(&["migrate"]).ok();
    // The test cluster trusts this login, so any password connects.
    for (password, name, want) in [
        (
            "trips",
            "tripsbad.csv",
            "tripsbad.csv:2: column 4 (datetime)",
        ),
        ("0", "dates.csv", "found \"2018-10-00 10:00:00\""),
    ] {
        let url = db
            .url
            .replacen("://trips@", &format!("://trips:{password}@"), 1);
        let file = db.file(
            name,
            format!("{HEADER}\nTurin,POINT (1 1),POINT (1 1),2018-10-00 10:00:00,src\n"),
        );
        let run = db.trips_with(&url, &["ingest", &file]);
        assert_eq!(run.code, 1);
        assert!(run.stderr.contains(want), "{}", run.stderr);
        let stored: String = db
            .client()
            .query_one(
                "SELECT error FROM ingest_jobs ORDER BY id DESC LIMIT 1",
                &[],
            )
            .unwrap()
            .get(0);
        assert!(stored.contains(want), "{stored}");
    }
    // Where it is a password, it is hidden: a connection string in a message.
    let run = db.trips_with(
        "host=127.0.0.1 port=1 user=trips password=hunter2 dbname=x",
        &["jobs"],
    );
    assert_eq!(run.code, 3);
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
}

#[test]
fn an_idle_helper_connection_never_loses_a_load() {
    let db = test_db!("idle");
    db.trips(&["migrate"]).ok();
    let mut admin = db.client();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {0} SET idle_session_timeout = '1s';
             ALTER DATABASE {0} SET idle_in_transaction_session_timeout = '1s'",
            db.name
        ))
        .unwrap();
    // The server does close idle sessions now.
    let mut idle = db.client();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(idle.simple_query("SELECT 1").is_err());

    // A load whose job connection sits idle for 3 s (no progress updates) while the file streams.
    let data = std::fs::read(db.generate(20_000, 7)).unwrap();
    let mut loader = db
        .command(&["ingest", "--progress-secs", "0", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = loader.stdin.take().unwrap();
    stdin.write_all(&data[..data.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    stdin.write_all(&data[data.len() / 2..]).unwrap();
    drop(stdin);
    let run = Run::from(loader.wait_with_output().unwrap());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.count("SELECT count(*) FROM trips"), 20_000);
}

#[test]
fn compact_reports_a_merge_it_cannot_do_and_goes_on_with_the_others() {
    let db = test_db!("compact");
    db.merge_fan_in(10);
    for seed in 1..=10 {
        let file = db.generate(200, seed);
        db.trips(&["ingest", "--no-compact", &file]).ok();
    }
    let before = db.rows("SELECT parent, count(*) FROM trip_pieces GROUP BY 1 ORDER BY 1");
    assert_eq!(before, ["(trip_cells,10)", "(trip_rows,10)"]);
    // A table in the way of the merged piece of trip_rows (jobs 1 to 10).
    db.client()
        .batch_execute("CREATE TABLE trip_rows_j1_10 (x int)")
        .unwrap();
    let run = db.trips(&["compact"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("error: merging the pieces of trip_rows failed; they are as they were:")
            && run
                .stderr
                .contains("merged 10 pieces of trip_cells (jobs 1-10, 2000 trips)"),
        "{}",
        run.stderr
    );
    assert_eq!(
        db.rows("SELECT parent, count(*) FROM trip_pieces GROUP BY 1 ORDER BY 1"),
        ["(trip_cells,1)", "(trip_rows,10)"]
    );
    assert_eq!(db.count("SELECT count(*) FROM trips"), 2000);
    // Out of the way, it merges.
    db.client()
        .batch_execute("DROP TABLE trip_rows_j1_10")
        .unwrap();
    db.trips(&["compact"]).ok();
    assert_eq!(
        db.count("SELECT count(*) FROM trip_pieces WHERE parent = 'trip_rows'"),
        1
    );
    assert_eq!(db.count("SELECT count(*) FROM trips"), 2000);
}

/// The cluster that scripts/test.sh starts for this test alone, and the command that restarts it.
fn restartable() -> (String, String) {
    let get = |var: &str| {
        std::env::var(var).unwrap_or_else(|_| {
            panic!(
                "{var} is not set: run the tests with scripts/test.sh, which starts that cluster"
            )
        })
    };
    (get("TRIPS_TEST_RESTART_URL"), get("TRIPS_TEST_RESTART"))
}

/// Waits until `file` holds `text`, for at most 60 s.
fn wait_for_text(file: &Path, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = std::fs::read_to_string(file).unwrap_or_default();
        if now.contains(text) {
            return now;
        }
        assert!(Instant::now() < deadline, "never saw {text:?} in:\n{now}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_server_restart_fails_the_file_clearly_and_watch_and_the_loader_carry_on() {
    if !common::have_cluster() {
        return;
    }
    let (url, restart) = restartable();
    let dir = std::env::temp_dir().join(format!("trips-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trips = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_trips"));
        cmd.args(args).env("DATABASE_URL", &url).current_dir(&dir);
        cmd
    };
    let query = |sql: &str| -> i64 {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.query_one(sql, &[]).unwrap().get(0)
    };
    assert_eq!(trips(&["migrate"]).status().unwrap().code(), Some(0));
    let first_job = query("SELECT coalesce(max(id), 0)::bigint + 1 FROM ingest_jobs");

    // `trips watch`, following everything.
    let (watch_out, watch_err) = (dir.join("watch.out"), dir.join("watch.err"));
    let mut watch = trips(&["watch"])
        .stdout(std::fs::File::create(&watch_out).unwrap())
        .stderr(std::fs::File::create(&watch_err).unwrap())
        .spawn()
        .unwrap();
    wait_for_text(&watch_err, "following every ingest");

    // A loader half-way through a file on stdin, with the sample to load after it.
    let data = {
        let out = trips(&["gen", "--rows", "20000", "--seed", "3"])
            .output()
            .unwrap();
        out.stdout
    };
    let mut loader = trips(&[
        "ingest",
        "--force",
        "--progress-rows",
        "1000",
        "-",
        sample().to_str().unwrap(),
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdin = loader.stdin.take().unwrap();
    stdin.write_all(&data[..data.len() / 2]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while query(&format!(
        "SELECT coalesce(max(rows), 0)::bigint FROM ingest_jobs WHERE id = {first_job}"
    )) == 0
    {
        assert!(
            Instant::now() < deadline,
            "the loader never reported progress"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let restarted = Command::new("bash")
        .arg("-c")
        .arg(&restart)
        .status()
        .unwrap();
    assert!(restarted.success(), "restarting the server failed");
    // The loader may have stopped reading already: a broken pipe here is expected.
    let _ = stdin.write_all(&data[data.len() / 2..]);
    drop(stdin);
    let run = Run::from(loader.wait_with_output().unwrap());

    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("error: failed to load - [job {first_job}]: -: the connection to the database was lost ("))
            && run.stderr.contains(
                "Nothing of this file was committed (the server rolls back a transaction whose \
                 connection is lost); load it again when the database is back"
            ),
        "{}",
        run.stderr
    );
    // It connected again and loaded the next file.
    assert!(
        run.stderr.contains(
            "lost the connection to the database (while loading -); connecting again in 1 s"
        ) && run.stderr.contains("connected again")
            && run
                .stderr
                .contains(&format!("{}: 100 trips in", sample().display())),
        "{}",
        run.stderr
    );
    assert_eq!(
        query(&format!(
            "SELECT count(*) FROM trip_rows WHERE job_id = {first_job}"
        )),
        0
    );
    assert_eq!(
        query(&format!(
            "SELECT count(*) FROM ingest_jobs WHERE id = {first_job} AND state = 'failed'"
        )),
        1
    );

    // watch said it lost the connection, came back, and showed both jobs' ends.
    let said = wait_for_text(&watch_out, &format!("[job {}] done", first_job + 1));
    let err = std::fs::read_to_string(&watch_err).unwrap();
    assert!(
        err.contains("lost the connection to the database (")
            && err.contains("connected again\nshowing what changed meanwhile"),
        "{err}"
    );
    assert!(
        said.contains(&format!("- [job {first_job}] failed")),
        "{said}"
    );
    watch.kill().unwrap();
    watch.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
