//! Ingest status pushed through LISTEN/NOTIFY: what a plain Postgres client hears, `trips watch`, `trips jobs`.

mod common;

use common::{HEADER, TestDb, sample};
use fallible_iterator::FallibleIterator;
use postgres::Client;
use serde_json::Value;
use std::process::Stdio;
use std::time::{Duration, Instant};

const GOOD: &str = "Turin,POINT (7.67 44.99),POINT (7.72 45.06),2018-05-21 02:54:04,baba_car";

fn listener(db: &TestDb) -> Client {
    let mut c = db.client();
    c.batch_execute("LISTEN ingest_status").unwrap();
    c
}

/// The events of `job` heard by `client`, in order, up to and including its final state.
fn events_of(client: &mut Client, job: i64) -> Vec<Value> {
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut notifications = client.notifications();
    let mut it = notifications.timeout_iter(Duration::from_secs(30));
    while Instant::now() < deadline {
        let Some(n) = it.next().unwrap() else { break };
        assert!(n.payload().len() < 8000);
        let e: Value = serde_json::from_str(n.payload()).unwrap();
        if e["job"] == job {
            let end = matches!(e["state"].as_str(), Some("done" | "failed" | "skipped"));
            events.push(e);
            if end {
                return events;
            }
        }
    }
    panic!("no final event for job {job}; heard {events:?}");
}

fn states(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| format!("{}:{}", e["state"].as_str().unwrap(), e["rows"]))
        .collect()
}

#[test]
fn a_successful_file_reports_each_step_in_order() {
    let db = test_db!("status_ok");
    db.trips(&["migrate"]).ok();
    let mut client = listener(&db);
    let file = db.generate(5000, 1);
    db.trips(&["ingest", "--progress-rows", "1000", &file]).ok();
    let events = events_of(&mut client, 1);
    assert_eq!(
        states(&events),
        [
            "queued:0",
            "loading:0",
            "loading:1000",
            "loading:2000",
            "loading:3000",
            "loading:4000",
            "loading:5000",
            "finishing:5000",
            "done:5000"
        ]
    );
    let size = std::fs::metadata(&file).unwrap().len();
    let done = events.last().unwrap();
    assert_eq!(done["total_bytes"], size);
    assert_eq!(done["bytes"], size);
    assert_eq!(done["rejected"], 0);
    assert_eq!(done["file"], file.as_str());
    assert!(done["error"].is_null());
    assert!(done["elapsed_s"].as_f64().unwrap() >= events[1]["elapsed_s"].as_f64().unwrap());
    // When `done` is heard, the trips are visible.
    assert_eq!(db.count("SELECT count(*) FROM trips"), 5000);
}

#[test]
fn a_bad_record_reports_failed_with_its_line_and_commits_nothing() {
    let db = test_db!("status_bad");
    db.trips(&["migrate"]).ok();
    let mut client = listener(&db);
    let file = db.file(
        "bad.csv",
        format!("{HEADER}\n{GOOD}\n{GOOD}\nTurin,POINT (7.67 44.99),POINT (7.72 45.06),2018-02-30 02:54:04,x\n"),
    );
    assert_eq!(db.trips(&["ingest", &file]).code, 1);
    let events = events_of(&mut client, 1);
    assert_eq!(states(&events), ["queued:0", "loading:0", "failed:0"]);
    let error = events[2]["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("{file}:4: column 4 (datetime)")),
        "{error}"
    );
    assert_eq!(db.count("SELECT count(*) FROM trip_rows"), 0);
}

#[test]
fn a_reingested_file_reports_skipped_and_skip_mode_reports_rejected() {
    let db = test_db!("status_skip");
    db.trips(&["migrate"]).ok();
    let mut client = listener(&db);
    let sample = sample();
    db.trips(&["ingest", sample.to_str().unwrap()]).ok();
    assert_eq!(events_of(&mut client, 1).last().unwrap()["state"], "done");
    db.trips(&["ingest", sample.to_str().unwrap()]).ok();
    let events = events_of(&mut client, 2);
    assert_eq!(
        states(&events),
        ["queued:0", "loading:0", "finishing:100", "skipped:0"]
    );
    assert_eq!(events.last().unwrap()["duplicate_of"], 1);

    let mixed = db.file(
        "mixed.csv",
        format!("{HEADER}\n{GOOD}\nno,good\n{GOOD}\nTurin,POINT (1 2),x,y,z\n"),
    );
    db.trips(&["ingest", "--skip-invalid", &mixed]).ok();
    let events = events_of(&mut client, 3);
    let done = events.last().unwrap();
    assert_eq!(done["state"], "done");
    assert_eq!(done["rows"], 2);
    assert_eq!(done["rejected"], 2);
    assert!(
        done["rejects_file"]
            .as_str()
            .unwrap()
            .ends_with("mixed.csv.job3.rejects.csv")
    );
}

#[test]
fn ingest_json_prints_the_payloads_it_receives() {
    let db = test_db!("status_json");
    let run = db
        .trips(&["ingest", "--json", sample().to_str().unwrap()])
        .ok();
    let events: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        states(&events),
        ["queued:0", "loading:0", "finishing:100", "done:100"]
    );
}

#[test]
fn a_killed_loader_ends_failed_with_an_event_and_watch_reports_it() {
    let db = test_db!("status_killed");
    db.trips(&["migrate"]).ok();
    let mut client = listener(&db);
    let (mut child, stdin) = db.loader_mid_file(100_000, 5);
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);

    // `trips watch --job 1` notices the dead loader, marks the job failed and exits 1.
    let run = db.trips(&["watch", "--job", "1"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("[job 1] failed"), "{}", run.stdout);
    assert!(
        run.stdout.contains("the loader stopped before finishing"),
        "{}",
        run.stdout
    );
    let events = events_of(&mut client, 1);
    assert_eq!(events.last().unwrap()["state"], "failed");
    assert_eq!(db.count("SELECT count(*) FROM trip_rows"), 0);
}

#[test]
fn watch_job_waits_for_the_job_and_exits_with_its_outcome() {
    let db = test_db!("status_watch");
    db.trips(&["migrate"]).ok();
    // Job 1 does not exist yet: watch waits for it.
    let watcher = db
        .command(&["watch", "--job", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    db.trips(&["ingest", sample().to_str().unwrap()]).ok();
    let out = watcher.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("[job 1] done: 100 rows"), "{stdout}");

    let bad = db.file("bad.csv", format!("{HEADER}\nnot,a,trip\n"));
    assert_eq!(db.trips(&["ingest", &bad]).code, 1);
    let run = db.trips(&["watch", "--job", "2"]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("[job 2] failed"), "{}", run.stdout);
    // A finished job answers at once, a job that never existed is an error.
    assert_eq!(db.trips(&["watch", "--job", "1"]).code, 0);
    let run = db.trips(&["watch", "--job", "0"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("there is no ingest job 0"),
        "{}",
        run.stderr
    );
}

#[test]
fn long_errors_are_cut_to_fit_a_notification_and_jobs_lists_them() {
    let db = test_db!("status_long");
    db.trips(&["migrate"]).ok();
    let mut client = listener(&db);
    client
        .batch_execute(&format!(
            "INSERT INTO ingest_jobs (batch, file, state, error) VALUES (1, '{}', 'failed', repeat('é\n', 20000))",
            "f".repeat(3000)
        ))
        .unwrap();
    let events = events_of(&mut client, 1);
    let e = &events[0];
    assert_eq!(e["error_truncated"], true);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .ends_with("the full text is in ingest_jobs.error)")
    );
    assert_eq!(e["file"].as_str().unwrap().len(), 1000);

    db.trips(&["ingest", sample().to_str().unwrap()]).ok();
    let run = db.trips(&["jobs", "--json"]).ok();
    let jobs: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(jobs.len(), 2);
    assert_eq!(
        (jobs[0]["job"].as_i64(), jobs[0]["state"].as_str()),
        (Some(2), Some("done"))
    );
    let run = db.trips(&["jobs"]).ok();
    assert!(
        run.stdout.lines().nth(1).unwrap().contains("done"),
        "{}",
        run.stdout
    );
}
