//! Test support: a throwaway database per test on the cluster that scripts/test.sh starts, and running the
//! real `trips` binary against it.

#![allow(dead_code)]

pub mod weekly;

use postgres::{Client, NoTls};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn admin_url() -> String {
    std::env::var("TRIPS_TEST_ADMIN_URL").expect(
        "TRIPS_TEST_ADMIN_URL is not set: run the tests with scripts/test.sh, which starts a throwaway PostGIS",
    )
}

/// Whether the test cluster of scripts/test.sh is there (TRIPS_TEST_ADMIN_URL). Without it, a test that
/// needs it returns at once (see `test_db!`), and one sentence says why, once per test program: a plain
/// `cargo test` then runs the unit tests and says what to run for the rest.
pub fn have_cluster() -> bool {
    static SAID: std::sync::Once = std::sync::Once::new();
    let there = std::env::var_os("TRIPS_TEST_ADMIN_URL").is_some();
    if !there {
        // Written to stderr directly: the test harness would capture eprintln! of a passing test.
        SAID.call_once(|| {
            let _ = std::io::stderr().write_all(
                b"skipping the tests that need PostGIS: run scripts/test.sh, which starts a throwaway \
                  cluster for them\n",
            );
        });
    }
    there
}

/// `let db = test_db!("tag");`: a TestDb, or, without the test cluster, return from the test at once.
#[macro_export]
macro_rules! test_db {
    ($tag:expr) => {
        if common::have_cluster() {
            common::TestDb::new($tag)
        } else {
            return;
        }
    };
}

/// The bundled 100-row sample.
pub fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/trips.csv")
}

/// The migrations of db/, in the order they are applied: (file name, text).
pub fn migration_files() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("db");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".sql"))
        .map(|name| {
            let text = std::fs::read_to_string(dir.join(&name)).unwrap();
            (name, text)
        })
        .collect();
    files.sort();
    files
}

pub const HEADER: &str = "region,origin_coord,destination_coord,datetime,datasource";

/// A database created from the PostGIS template, and a scratch folder; both removed on drop.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub dir: PathBuf,
}

impl TestDb {
    pub fn new(tag: &str) -> TestDb {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("t_{tag}_{}_{n}", std::process::id());
        let mut admin = Client::connect(&admin_url(), NoTls).expect("connect to the test cluster");
        admin
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE trips_template"))
            .expect("create the test database");
        let url = admin_url().rsplit_once('/').unwrap().0.to_string() + "/" + &name;
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        TestDb { name, url, dir }
    }

    /// Sets the merge policy's fan-in of both tables to `f`, so that a test merges a dozen files rather
    /// than the default's thirty.
    pub fn merge_fan_in(&self, f: i32) {
        self.trips(&["migrate"]).ok();
        self.client()
            .execute("UPDATE trip_merge_policy SET fan_in = $1", &[&f])
            .expect("set the fan-in");
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.url, NoTls).expect("connect to the test database")
    }

    /// A command running the trips binary against this database, in the scratch folder.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_trips"));
        cmd.args(args)
            .env("DATABASE_URL", &self.url)
            .env("RUST_LOG", "info")
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs trips to completion.
    pub fn trips(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run trips"))
    }

    /// Runs trips with `input` on its standard input.
    pub fn trips_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start trips");
        child.stdin.take().unwrap().write_all(input).unwrap();
        Run::from(child.wait_with_output().unwrap())
    }

    /// Writes a file in the scratch folder and returns its path.
    pub fn file(&self, name: &str, content: impl AsRef<[u8]>) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, content).unwrap();
        path.to_string_lossy().into_owned()
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.client().query_one(sql, &[]).unwrap().get(0)
    }

    /// The rows of a query, each as its record text, for comparing results whole.
    pub fn rows(&self, sql: &str) -> Vec<String> {
        rows_as_text(&mut self.client(), sql)
    }

    /// Starts `trips ingest -` on half of a generated file and returns it once its job shows loaded rows,
    /// still loading (its stdin kept open): the caller kills it mid-file.
    pub fn loader_mid_file(&self, rows: u64, seed: u64) -> (Child, ChildStdin) {
        let data = std::fs::read(self.generate(rows, seed)).unwrap();
        let mut child = self
            .command(&["ingest", "--progress-rows", "1000", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&data[..data.len() / 2]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.count("SELECT coalesce(max(rows), 0) FROM ingest_jobs WHERE state = 'loading'")
            == 0
        {
            assert!(
                Instant::now() < deadline,
                "the loader never reported progress"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        (child, stdin)
    }

    /// Loads three generated files of `rows` trips (seeds 1 to 3), then the sample twice (the second time
    /// with --force): several jobs, repeated content, shared names.
    pub fn load_several_files(&self, rows: u64) {
        for seed in 1..=3 {
            self.trips(&["ingest", &self.generate(rows, seed)]).ok();
        }
        self.trips(&["ingest", sample().to_str().unwrap()]).ok();
        self.trips(&["ingest", "--force", sample().to_str().unwrap()])
            .ok();
    }

    /// Writes `rows` trips from `trips gen --seed seed` to a file and returns its path.
    pub fn generate(&self, rows: u64, seed: u64) -> String {
        let out = self
            .command(&[
                "gen",
                "--rows",
                &rows.to_string(),
                "--seed",
                &seed.to_string(),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "trips gen failed");
        self.file(&format!("gen{rows}-{seed}.csv"), out.stdout)
    }
}

/// A login role of the test cluster, member of `group`, dropped on drop.
pub struct Login {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// A new login in `group` (trips_loader or trips_reader), with this database's URL for it. The schema
    /// (and so the group roles) must exist: run a trips command first.
    pub fn login(&self, group: &str) -> Login {
        let name = format!("{}_{}", self.name, group.trim_start_matches("trips_"));
        let mut admin = Client::connect(&admin_url(), NoTls).unwrap();
        admin
            .batch_execute(&format!(
                "DROP ROLE IF EXISTS {name}; CREATE ROLE {name} LOGIN IN ROLE {group}"
            ))
            .unwrap();
        let url = self.url.replacen("://trips@", &format!("://{name}@"), 1);
        Login { name, url }
    }

    /// Runs trips connected with `url` instead of this database's owner URL.
    pub fn trips_with(&self, url: &str, args: &[&str]) -> Run {
        Run::from(
            self.command(args)
                .env("DATABASE_URL", url)
                .output()
                .expect("run trips"),
        )
    }
}

impl Login {
    pub fn client(&self) -> Client {
        Client::connect(&self.url, NoTls).expect("connect as the test login")
    }
}

impl Drop for Login {
    fn drop(&mut self) {
        if let Ok(mut admin) = Client::connect(&admin_url(), NoTls) {
            let _ = admin.batch_execute(&format!("DROP ROLE IF EXISTS {}", self.name));
        }
    }
}

/// The rows of a query, each as its record text.
pub fn rows_as_text(client: &mut Client, sql: &str) -> Vec<String> {
    let sql = sql.trim().trim_end_matches(';');
    client
        .query(&format!("SELECT t::text FROM ({sql}) t"), &[])
        .unwrap_or_else(|e| panic!("{e}\n{sql}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The error the server gives for a statement that must fail (panics if it succeeds, or fails otherwise).
pub fn db_error(client: &mut Client, sql: &str) -> postgres::error::DbError {
    let Err(err) = client.batch_execute(sql) else {
        panic!("expected an error from: {sql}");
    };
    err.as_db_error()
        .cloned()
        .unwrap_or_else(|| panic!("not a server error: {err}\n{sql}"))
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = Client::connect(&admin_url(), NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a run of the binary printed and how it exited.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "trips failed:\n{}", self.stderr);
        self
    }
}
