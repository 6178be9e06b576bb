//! `trips`: loads vehicle-trip CSV files into PostGIS. This file only wires the command line to the modules
//! and turns outcomes into messages and exit codes (documented in docs/cli.md).

/// `println!` that returns the error instead of panicking, so that a closed pipe (`trips jobs | head -1`)
/// ends the command quietly (see `is_broken_pipe`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

mod cli;
mod conninfo;
mod copy;
mod db;
mod generate;
mod groups;
mod ingest;
mod input;
mod migrate;
mod parse;
mod status;
mod weekly;

use anyhow::{Context, Result};
use clap::Parser;
use cli::{Cli, Command};
use ingest::Outcome;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Exit codes: 0 success, 1 some file was not loaded, 2 usage error, 3 database unusable.
const EXIT_FILE_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_DATABASE: u8 = 3;

/// An error in what the user asked for (exit status 2), as opposed to a problem with the database.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

pub fn usage(message: String) -> anyhow::Error {
    Usage(message).into()
}

/// `-q`: no progress and no outcome lines, only warnings and errors.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A line for people on stderr, unless `-q`.
macro_rules! say {
    ($($arg:tt)*) => {
        if !QUIET.load(std::sync::atomic::Ordering::Relaxed) {
            eprintln!($($arg)*);
        }
    };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    QUIET.store(cli.quiet > 0, std::sync::atomic::Ordering::Relaxed);
    // -q and -v decide what is logged; without them, RUST_LOG if set.
    let level = match (cli.quiet, cli.verbose) {
        (2.., _) => Some("error"),
        (1, _) => Some("warn"),
        (_, 1) => Some("info,trips=debug,postgres=warn,tokio_postgres=warn"),
        (_, 2..) => Some("debug,trips=trace"),
        (0, 0) => None,
    };
    let env =
        env_logger::Env::default().default_filter_or("info,postgres=warn,tokio_postgres=warn");
    let mut logger = env_logger::Builder::from_env(env);
    if let Some(level) = level {
        logger.parse_filters(level);
    }
    logger
        // Every log line goes through redact(): no password of a connection string is ever printed.
        .format(|buf, record| {
            use std::io::Write;
            writeln!(
                buf,
                "[{:<5}] {}",
                record.level(),
                conninfo::redact(&record.args().to_string())
            )
        })
        .init();
    let given = cli.database_url.as_deref();
    let url = db::resolve_url(given.or(cli.command.conn().and_then(|c| c.database_url.as_deref())));
    let result = match cli.command {
        Command::Gen(args) => generate::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Completions(args) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut cmd, "trips", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
            .render(&mut std::io::stdout())
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
        Command::Migrate(_) => open(&url).map(|_| ExitCode::SUCCESS),
        Command::Roles(_) => open(&url).and_then(|mut c| roles(&mut c)),
        Command::Ingest(args) => ingest(&url, &args),
        Command::Watch(args) => watch(&url, &args),
        Command::Jobs(args) => jobs(&url, &args),
        Command::Groups(args) => open(&url)
            .and_then(|mut c| groups::show(&mut c, &args))
            .map(|()| ExitCode::SUCCESS),
        Command::WeeklyAvg(args) => open(&url)
            .and_then(|mut c| weekly::show(&mut c, &args))
            .map(|()| ExitCode::SUCCESS),
        Command::Compact(args) => open(&url).and_then(|mut c| compact(&mut c, args.job)),
        Command::Refresh(_) => open(&url).and_then(|mut c| {
            let started = Instant::now();
            groups::refresh(&mut c)?;
            say!(
                "rebuilt the rollups and trip_groups in {:.2} s",
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }),
    };
    result.unwrap_or_else(|e| {
        if is_broken_pipe(&e) {
            return ExitCode::SUCCESS;
        }
        eprintln!("error: {}", conninfo::redact(&format!("{e:#}")));
        if is_permission_denied(&e) {
            eprintln!(
                "hint: connected to {}. Loading needs a login in the role trips_loader, reading one in \
                 trips_reader; schema changes and `trips refresh` need the owner of the tables \
                 (docs/operations.md, \"Roles, TLS, passwords\").",
                db::describe(&url)
            );
        }
        if e.downcast_ref::<Usage>().is_some() {
            ExitCode::from(EXIT_USAGE)
        } else {
            ExitCode::from(EXIT_DATABASE)
        }
    })
}

/// Connects, checks the server and applies the schema.
fn open(url: &str) -> Result<postgres::Client> {
    let mut client = db::connect(url)?;
    let v = db::check_server(&mut client)?;
    log::debug!(
        "connected to {} ({}): PostgreSQL {}, PostGIS {}",
        db::describe(url),
        v.transport,
        v.postgres,
        v.postgis.as_deref().unwrap_or("?")
    );
    for applied in migrate::migrate(&mut client)? {
        log::info!("applied db/{applied}");
    }
    let reaped: i32 = client
        .query_one("SELECT ingest_reap_abandoned()", &[])?
        .get(0);
    if reaped > 0 {
        log::warn!("marked {reaped} abandoned ingest job(s) as failed (their loader was gone)");
    }
    Ok(client)
}

fn ingest(url: &str, args: &cli::IngestArgs) -> Result<ExitCode> {
    if !(args.progress_secs >= 0.0 && args.progress_secs.is_finite()) {
        return Err(usage(format!(
            "--progress-secs must be a number of seconds >= 0, got {}",
            args.progress_secs
        )));
    }
    let opts = ingest::Options {
        skip_invalid: args.skip_invalid,
        force: args.force,
        rejects_dir: args.rejects_dir.clone(),
        progress_every: Duration::from_secs_f64(args.progress_secs),
        progress_rows: args.progress_rows,
        tally_limit: args.tally_limit as usize,
    };
    let workers = usize::from(args.jobs).min(args.files.len());
    let draw = if QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        cli::Progress::Never
    } else if args.progress == cli::Progress::Auto && workers > 1 {
        // Several live lines would overwrite each other: one line per event instead.
        cli::Progress::Lines
    } else {
        args.progress
    };
    let queue = Queue {
        files: &args.files,
        next: AtomicUsize::new(0),
    };
    let failed = AtomicUsize::new(0);
    // Each worker takes the next file not yet taken, with connections of its own, until none is left.
    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..workers)
            .map(|_| scope.spawn(|| ingest_worker(url, args, &opts, draw, &queue, &failed)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("an ingest worker panicked"))
            .collect()
    });
    if let Some(peak) = peak_memory() {
        log::debug!("peak resident memory: {peak} bytes");
    }
    results.into_iter().collect::<Result<()>>()?;
    Ok(if failed.load(Ordering::Relaxed) > 0 {
        ExitCode::from(EXIT_FILE_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// The files of one `trips ingest`, handed out one at a time to its workers.
struct Queue<'a> {
    files: &'a [String],
    next: AtomicUsize,
}

impl Queue<'_> {
    fn take(&self) -> Option<&str> {
        self.files
            .get(self.next.fetch_add(1, Ordering::Relaxed))
            .map(String::as_str)
    }

    /// The files no worker has taken yet; none will be.
    fn give_up(&self) -> Vec<&str> {
        let from = self.next.swap(self.files.len(), Ordering::Relaxed);
        self.files
            .get(from..)
            .unwrap_or_default()
            .iter()
            .map(String::as_str)
            .collect()
    }
}

/// Loads files from the queue one after another on its own two connections, and tells each outcome.
fn ingest_worker(
    url: &str,
    args: &cli::IngestArgs,
    opts: &ingest::Options,
    draw: cli::Progress,
    queue: &Queue,
    failed: &AtomicUsize,
) -> Result<()> {
    let Some(mut file) = queue.take() else {
        return Ok(());
    };
    let (mut control, mut load) = ingest_connections(url)?;
    let mut printer = status::Printer::for_ingest(args.json, draw);
    loop {
        match ingest::ingest_file(&mut control, &mut load, file, opts, &mut printer)? {
            Outcome::Loaded {
                job,
                rows,
                rejected,
                rejects_file,
                seconds,
            } => {
                let rejects = match rejects_file {
                    Some(p) => format!(", {rejected} rejected (see {})", p.display()),
                    None => String::new(),
                };
                say!(
                    "loaded {file}: {rows} trips in {seconds:.2} s ({:.0} rows/s){rejects} [job {job}]",
                    rows as f64 / seconds.max(1e-9)
                );
                if !args.no_compact {
                    // The trips are committed and visible: a failed merge loses nothing and changes no
                    // answer, so it is reported and the load still counts as done.
                    if let Err(e) = merge(&mut load, None) {
                        eprintln!(
                            "warning: job {job} is loaded, but merging pieces failed (answers are the \
                             same; `trips compact` tries again): {}",
                            conninfo::redact(&format!("{e:#}"))
                        );
                    }
                }
            }
            Outcome::Skipped { job, earlier } => say!(
                "skipped {file}: this content was already loaded by job {earlier} (use --force to load it again) [job {job}]"
            ),
            Outcome::Failed { job, error } => {
                failed.fetch_add(1, Ordering::Relaxed);
                let job = job.map(|j| format!(" [job {j}]")).unwrap_or_default();
                // A job's error was redacted where it is stored (ingest.rs); opening a file names only the file.
                eprintln!("error: failed to load {file}{job}: {error}");
            }
        }
        let Some(next) = queue.take() else {
            return Ok(());
        };
        if control.is_closed() || load.is_closed() {
            // A lost connection failed the file it was loading; the next waits for the database.
            let lost = anyhow::anyhow!("while loading {file}");
            (control, load) = reconnect(&lost, Some(RECONNECT_FOR), || ingest_connections(url))
                .with_context(|| {
                    let mut left = vec![next];
                    left.extend(queue.give_up());
                    format!(
                        "while connecting again after a lost connection; not loaded: {}",
                        left.join(", ")
                    )
                })?;
        }
        file = next;
    }
}

/// The most memory this process has held resident (VmHWM, Linux), in bytes.
fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// How long `trips ingest` tries to connect again after a lost connection before it gives up on the files
/// left (a server restart takes seconds; a failover, maybe a minute).
const RECONNECT_FOR: Duration = Duration::from_secs(120);

/// The loader's two connections (ingest.rs): the job's, listening for status, and the file's.
fn ingest_connections(url: &str) -> Result<(postgres::Client, postgres::Client)> {
    let mut control = open(url)?;
    status::listen(&mut control)?;
    Ok((control, db::connect(url)?))
}

/// Runs the merges the merge policy calls for (db/007_pieces.sql) among the pieces of `parent` (or of any
/// table), each in a transaction of its own, and says what each did. Returns how many it ran; none when
/// there is nothing to merge or another session is merging (it goes on until nothing is left).
fn merge(client: &mut postgres::Client, parent: Option<&str>) -> Result<usize> {
    let mut merges = 0;
    while let Some(row) = client
        .query_opt(
            "SELECT parent, first_job, last_job, pieces, trips, seconds FROM trip_merge_step($1)",
            &[&parent],
        )
        .context("while merging pieces (nothing was lost; `trips compact` tries again)")?
    {
        let (parent, first, last): (String, i32, i32) = (row.get(0), row.get(1), row.get(2));
        let (pieces, trips, seconds): (i32, i64, f64) = (row.get(3), row.get(4), row.get(5));
        say!(
            "merged {pieces} pieces of {parent} (jobs {first}-{last}, {trips} trips) in {seconds:.2} s"
        );
        merges += 1;
    }
    Ok(merges)
}

/// `trips compact`: every merge the policy calls for, now, table by table: a merge that fails (it changes
/// nothing) is reported, and the other tables are still merged. Exit status 1 if any failed.
fn compact(client: &mut postgres::Client, job: Option<i32>) -> Result<ExitCode> {
    if job.is_some() {
        eprintln!(
            "warning: --job is deprecated and ignored: pieces are merged by ranges of jobs, and `trips \
             compact` runs every merge the policy calls for"
        );
    }
    let parents: Vec<String> = client.query_one("SELECT trip_piece_parents()", &[])?.get(0);
    // Wait for a merge that another session is running (after its ingest, or on a schedule) to finish
    // its step, then run every merge that is left; trip_merge_step takes the same lock again.
    client.execute("SELECT pg_advisory_lock(ingest_lock_class() + 2, 0)", &[])?;
    let (mut merged, mut failed) = (0, 0);
    for parent in &parents {
        match merge(client, Some(parent)) {
            Ok(n) => merged += n,
            Err(e) => {
                failed += 1;
                eprintln!(
                    "error: merging the pieces of {parent} failed; they are as they were: {}",
                    conninfo::redact(&format!("{e:#}"))
                );
            }
        }
    }
    if client.is_closed() {
        anyhow::bail!(
            "the connection to the database was lost while merging; no piece was changed by the merge that was running"
        );
    }
    client.execute("SELECT pg_advisory_unlock(ingest_lock_class() + 2, 0)", &[])?;
    if failed > 0 {
        return Ok(ExitCode::from(EXIT_FILE_FAILED));
    }
    if merged == 0 {
        let pieces: Vec<String> = client
            .query(
                "SELECT parent || ': ' || count(*) FROM trip_pieces GROUP BY parent ORDER BY parent",
                &[],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        say!(
            "nothing to merge (pieces per table: {})",
            if pieces.is_empty() {
                "none".to_string()
            } else {
                pieces.join(", ")
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// How often `trips watch` checks for loaders that died without a word, while no event arrives.
const REAP_EVERY: Duration = Duration::from_secs(5);

/// `trips watch`: every event (or job N's) until Ctrl-C (or job N ends). If the connection is lost (a
/// server restart, say), it says so, connects again with growing pauses (1 s, doubling to 30 s), and then
/// shows what changed meanwhile: the jobs started since, and the current state of those still running.
fn watch(url: &str, args: &cli::WatchArgs) -> Result<ExitCode> {
    let mut client = open(url)?;
    status::listen(&mut client)?;
    let mut printer = status::Printer::for_watch(args.json);
    // Listening before reading the job's state, so no change between the two is missed.
    let mut shown = Shown {
        last: Default::default(),
        newest: client
            .query_one("SELECT coalesce(max(id), 0) FROM ingest_jobs", &[])?
            .get(0),
    };
    if let Some(job) = args.job {
        match status::current(&mut client, job)? {
            Some((raw, event)) => {
                if let Some(code) = shown.show(&mut printer, args.job, &raw, &event) {
                    return Ok(code);
                }
            }
            None if job <= shown.newest => {
                return Err(usage(format!(
                    "there is no ingest job {job} (jobs so far: 1 to {}); `trips jobs` lists them",
                    shown.newest
                )));
            }
            None => say!("waiting for job {job} to start"),
        }
    } else if !args.json {
        say!("following every ingest (Ctrl-C to stop)");
    }
    loop {
        let next = status::next(&mut client, REAP_EVERY).and_then(|got| {
            if got.is_none() {
                // Marking an abandoned job failed sends its event, which arrives on the next turn.
                client.query_one("SELECT ingest_reap_abandoned()", &[])?;
            }
            Ok(got)
        });
        match next {
            Ok(Some((raw, event))) => {
                if let Some(code) = shown.show(&mut printer, args.job, &raw, &event) {
                    return Ok(code);
                }
            }
            Ok(None) => {}
            Err(e) if ingest::connection_lost(&e) => {
                client = reconnect(&e, None, || {
                    let mut client = open(url)?;
                    status::listen(&mut client)?;
                    Ok(client)
                })?;
                say!("showing what changed meanwhile");
                for (raw, event) in status::since(&mut client, shown.newest, &shown.running())? {
                    if let Some(code) = shown.show(&mut printer, args.job, &raw, &event) {
                        return Ok(code);
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// What `trips watch` has shown: the last state and rows of each job, and the newest job id known.
#[derive(Default)]
struct Shown {
    last: std::collections::HashMap<i32, (String, i64)>,
    newest: i32,
}

impl Shown {
    /// Shows an event of the job followed (or of any, without --job) unless it repeats the last one
    /// shown; returns the exit code when the job followed has ended.
    fn show(
        &mut self,
        printer: &mut status::Printer,
        follow: Option<i32>,
        raw: &str,
        event: &status::Event,
    ) -> Option<ExitCode> {
        self.newest = self.newest.max(event.job);
        if follow.is_some_and(|j| j != event.job) {
            return None;
        }
        let now = (event.state.clone(), event.rows);
        if self.last.get(&event.job) != Some(&now) {
            printer.show(raw, event);
            self.last.insert(event.job, now);
        }
        (follow.is_some() && event.is_final()).then(|| outcome_code(event))
    }

    /// Jobs last shown unfinished.
    fn running(&self) -> Vec<i32> {
        let finals = ["done", "failed", "skipped"];
        self.last
            .iter()
            .filter(|(_, (state, _))| !finals.contains(&state.as_str()))
            .map(|(&job, _)| job)
            .collect()
    }
}

/// Connects again after `lost` (with `connect`), with a notice before each pause: 1 s, doubling up to
/// 30 s. Tries until it works, or until `give_up` has passed, then returns the last error.
fn reconnect<T>(
    lost: &anyhow::Error,
    give_up: Option<Duration>,
    mut connect: impl FnMut() -> Result<T>,
) -> Result<T> {
    let started = Instant::now();
    let mut pause = Duration::from_secs(1);
    let mut why = format!("{lost:#}");
    loop {
        eprintln!(
            "lost the connection to the database ({}); connecting again in {} s",
            conninfo::redact(&why),
            pause.as_secs()
        );
        std::thread::sleep(pause);
        match connect() {
            Ok(connected) => {
                eprintln!("connected again");
                return Ok(connected);
            }
            Err(e) if give_up.is_some_and(|limit| started.elapsed() >= limit) => return Err(e),
            Err(e) => why = format!("{e:#}"),
        }
        pause = (pause * 2).min(Duration::from_secs(30));
    }
}

fn outcome_code(event: &status::Event) -> ExitCode {
    if event.state == "failed" {
        ExitCode::from(EXIT_FILE_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

fn jobs(url: &str, args: &cli::JobsArgs) -> Result<ExitCode> {
    let mut client = open(url)?;
    let jobs = status::recent(&mut client, args.limit)?;
    if args.json {
        for (raw, _) in &jobs {
            outln!("{raw}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:>5}  {:<9} {:>11} {:>8} {:>9}  {:<30} error",
        "job",
        "state",
        "rows",
        "rejected",
        "seconds",
        "file"
    );
    for (_, e) in &jobs {
        let error = e.error.as_deref().unwrap_or("");
        let error: String = error.chars().take(100).collect();
        outln!(
            "{:>5}  {:<9} {:>11} {:>8} {:>9.2}  {:<30} {}",
            e.job,
            e.state,
            e.rows,
            e.rejected,
            e.elapsed_s,
            e.file,
            error.replace('\n', " ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `trips roles`: creates the two group roles (if missing) and grants them what db/010_roles.sql lists.
fn roles(client: &mut postgres::Client) -> Result<ExitCode> {
    let said: String = client.query_one("SELECT trips_roles()", &[])?.get(0);
    let ready: bool = client
        .query_one(
            "SELECT count(*) = 2 FROM pg_roles WHERE rolname IN ('trips_reader', 'trips_loader')",
            &[],
        )?
        .get(0);
    if !ready {
        anyhow::bail!("{said}");
    }
    say!(
        "{said}. Give each person or service a login of its own, for example:\n  \
         CREATE ROLE alice LOGIN PASSWORD '...' IN ROLE trips_reader;   -- queries, trips groups, weekly-avg\n  \
         CREATE ROLE etl LOGIN PASSWORD '...' IN ROLE trips_loader;     -- trips ingest, trips watch"
    );
    Ok(ExitCode::SUCCESS)
}

fn is_permission_denied(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<postgres::Error>()
            .and_then(|pg| pg.code())
            .is_some_and(|code| *code == postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    })
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
