//! Loading files, each as one ingest job: atomic, idempotent, with clear errors for bad records.
//!
//! Two threads: the files are read, parsed and encoded on a thread of their own (`read.rs`), ahead of this
//! one, which does all the talking to the database, on two connections. `control` runs in autocommit: it
//! opens the jobs (and holds their session locks, see db/003_ingest_jobs.sql), hands out region and
//! datasource keys, and writes progress and failures, all visible to others at once. `load` runs the
//! loading transaction (db/007_pieces.sql): `ingest_begin` makes the empty pieces of the jobs' range, every
//! valid row is binary-COPYed into the trips' piece, the tallies counted while streaming (trips per cell
//! and week, per region and week, per region and datasource) are sent, and `ingest_finish` indexes and
//! attaches the pieces and adds the small rollups; each file's job is marked done in the same commit.
//!
//! A transaction holds one file, or a batch of small files (`load_batch`), each committed whole or not at
//! all: a file that fails or is a duplicate is left out alone, and the others are committed together, as
//! one piece. A file of the batch of fewer trips than a run (read.rs) is read whole before any of its rows
//! is sent: a bad one is never sent, a duplicate is found before it is, and the others' rows go by one
//! COPY for many files (`Pool` in load.rs). A larger file streams into a savepoint of its own, rolled back
//! if the file fails or is a duplicate. Any error of the transaction itself rolls back every file in it.
//!
//! The stages, one file each: `read.rs` one file's records (the reading thread), `load.rs` the same file
//! sent into the transaction, `names.rs` the keys of region and datasource names, `tally.rs` what is
//! counted while streaming, `rejects.rs` the rejects file.

mod load;
mod names;
mod read;
mod rejects;
mod tally;

use crate::input;
use crate::status::{self, Printer};
use anyhow::{Context, Result};
use load::{Loader, Pieces, Pool, Read, Statements, send_cells};
use postgres::Client;
use read::Msg;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};
use tally::Tallies;

/// The default of `Options::tally_limit` (`trips ingest --tally-limit`, and uploads to `trips serve`). The
/// cell tally is a hash table of 2^k buckets filled to at most 7/8: 3.6M entries (and the four of the trip
/// that reaches the limit) fit in 2^22 buckets, where 4M would take 2^23, twice the memory for each of
/// the tallies the loader holds at once (docs/store.md, "The tally's rows").
pub const TALLY_LIMIT: u64 = 3_600_000;

pub struct Options {
    /// Load the valid records and write the others to a rejects file, instead of failing the file.
    pub skip_invalid: bool,
    /// Load even if a done job already holds the same content.
    pub force: bool,
    /// Where rejects files go.
    pub rejects_dir: PathBuf,
    /// How often progress is written to the job row (and so notified); zero: only state changes.
    pub progress_every: Duration,
    /// Instead of by time, write progress every this many records (deterministic, for tests).
    pub progress_rows: Option<u64>,
    /// Send the cell tally to the database once it holds this many entries, so the loader's memory stays
    /// bounded whatever the file's size.
    pub tally_limit: usize,
}

pub enum Outcome {
    Loaded {
        job: i32,
        rows: i64,
        rejected: i64,
        rejects_file: Option<PathBuf>,
        seconds: f64,
    },
    Skipped {
        job: i32,
        earlier: i32,
    },
    Failed {
        job: Option<i32>,
        error: String,
    },
}

/// Loads one file. Errors of the file itself come back as `Outcome::Failed` (and are recorded in the job);
/// an `Err` means the database could not be reached to record anything.
pub fn ingest_file(
    control: &mut Client,
    load: &mut Client,
    name: &str,
    opts: &Options,
    printer: &mut Printer,
) -> Result<Outcome> {
    ingest_input(
        control,
        load,
        name,
        input::open(name),
        opts,
        printer,
        |_| {},
    )
}

/// Loads one opened input (`trips serve` opens a request's body) as `ingest_file` does; `opened` is told
/// the job's id as soon as the job exists.
pub fn ingest_input(
    control: &mut Client,
    load: &mut Client,
    name: &str,
    input: Result<input::Input>,
    opts: &Options,
    printer: &mut Printer,
    opened: impl FnOnce(i32),
) -> Result<Outcome> {
    let input = match input {
        Ok(input) => input,
        Err(e) => {
            return Ok(Outcome::Failed {
                job: None,
                error: format!("{e:#}"),
            });
        }
    };
    let source = Source {
        name,
        total_bytes: input.total_bytes,
        input: Some(input),
    };
    let mut outcomes = load_batch(control, load, vec![source], opts, printer, opened)?;
    Ok(outcomes.remove(0))
}

/// Loads small files in one transaction, as one piece (db/007_pieces.sql): each file is still its own
/// job, committed whole or not at all, but they are done together, when the transaction commits. Each is
/// opened when its turn comes; the outcomes are in the order of `files`, which come with their sizes.
pub fn ingest_batch(
    control: &mut Client,
    load: &mut Client,
    files: &[(&str, u64)],
    opts: &Options,
    printer: &mut Printer,
) -> Result<Vec<Outcome>> {
    let sources = files
        .iter()
        .map(|&(name, size)| Source {
            name,
            total_bytes: Some(size),
            input: None,
        })
        .collect();
    load_batch(control, load, sources, opts, printer, |_| {})
}

/// A file of a transaction: its name, its size when known, and its input if already opened.
struct Source<'a> {
    name: &'a str,
    total_bytes: Option<u64>,
    input: Option<input::Input>,
}

/// Opens the jobs of `sources` and loads them in one transaction, each file in a savepoint unless it is
/// alone (a file alone is written frozen, COPY FREEZE needing the table made in the same subtransaction).
/// The files are read on a thread of their own (read.rs), ahead of this one, which talks to the database.
fn load_batch(
    control: &mut Client,
    load: &mut Client,
    sources: Vec<Source>,
    opts: &Options,
    printer: &mut Printer,
    opened: impl FnOnce(i32),
) -> Result<Vec<Outcome>> {
    let jobs = open_jobs(control, &sources, opts.force)?;
    opened(jobs[0]);
    let mut batch = Batch {
        names: sources.iter().map(|s| s.name).collect(),
        outcomes: jobs.iter().map(|_| None).collect(),
        read: Vec::new(),
        committing: false,
        jobs,
    };
    let result = std::thread::scope(|scope| {
        let (to_load, messages) = std::sync::mpsc::sync_channel(read::READ_AHEAD);
        let files = batch.jobs.iter().copied().zip(sources).collect();
        scope.spawn(move || read::read_files(files, opts, to_load));
        // `messages` goes with this call: a reading thread still going stops.
        batch.transaction(control, load, printer, opts, messages)
    });
    let Batch {
        jobs,
        names,
        mut outcomes,
        read,
        committing,
    } = batch;
    match result {
        Ok(()) => {
            for (i, ended) in read {
                outcomes[i] = Some(Outcome::Loaded {
                    job: jobs[i],
                    rows: ended.rows,
                    rejected: ended.rejected,
                    rejects_file: ended.rejects_file,
                    seconds: ended.seconds,
                });
            }
        }
        Err(e) => {
            // Every file not yet failed or skipped goes with the transaction.
            let unread: Vec<(usize, Ended)> = (0..jobs.len())
                .filter(|&i| outcomes[i].is_none() && !read.iter().any(|(j, _)| *j == i))
                .map(|i| (i, Ended::before_reading()))
                .collect();
            let mut gone = read;
            gone.extend(unread);
            for (i, ended) in gone {
                let error = if jobs.len() == 1 {
                    failure(names[i], jobs[i], committing, &e)
                } else {
                    batch_failure(names[i], jobs[i], committing, &e)
                };
                let error = crate::redact::redact(&error);
                outcomes[i] = Some(record_failed(control, jobs[i], &error, ended)?);
            }
        }
    }
    let loaded: Vec<i32> = outcomes
        .iter()
        .filter_map(|o| match o {
            Some(Outcome::Loaded { job, .. }) => Some(*job),
            _ => None,
        })
        .collect();
    if let Err(e) = close(control, printer, &jobs, &loaded) {
        // The outcomes stand (they were committed or recorded above); only their echo or the tidying is
        // lost, and the session's locks go with a lost connection.
        log::warn!(
            "jobs {}..{}: after the outcomes were recorded: {e:#}",
            jobs[0],
            jobs[jobs.len() - 1]
        );
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.expect("every file has an outcome"))
        .collect())
}

/// The files of one transaction, and how far each got.
struct Batch<'a> {
    /// Consecutive.
    jobs: Vec<i32>,
    names: Vec<&'a str>,
    /// Failed or skipped files; loaded ones are told once the transaction commits.
    outcomes: Vec<Option<Outcome>>,
    /// The files read whole and marked done in the transaction, waiting for its commit.
    read: Vec<(usize, Ended)>,
    /// The commit was sent.
    committing: bool,
}

impl Batch<'_> {
    /// One file, loaded without a savepoint (and so written frozen).
    fn alone(&self) -> bool {
        self.jobs.len() == 1
    }

    /// The batch's transaction: its pieces made, each file loaded from the reading thread's `messages`
    /// (failed or skipped alone, in its savepoint), the tallies sent, the pieces finished, the commit.
    fn transaction(
        &mut self,
        control: &mut Client,
        load: &mut Client,
        printer: &mut Printer,
        opts: &Options,
        messages: Receiver<Msg>,
    ) -> Result<()> {
        let range = self.jobs[0]..=self.jobs[self.jobs.len() - 1];
        let mut tx = load.transaction()?;
        let begun = tx
            .query_one(
                "SELECT trips, cells FROM ingest_begin($1, $2)",
                &[range.start(), range.end()],
            )
            .context("while creating the tables of the new piece")?;
        let pieces = Pieces {
            trips: begun.get(0),
            cells: begun.get(1),
            first_job: *range.start(),
            freeze: self.alone(),
        };
        let statements = Statements::prepare(control, &mut tx, &pieces)?;
        let mut counted = Tallies::new();
        let mut savepoint = FileSavepoint::default();
        let mut pool = Pool::default();
        // The last file's `finishing` marked this one loading.
        let mut marked_loading = false;
        for i in 0..self.jobs.len() {
            let (job, name) = (self.jobs[i], self.names[i]);
            printer.end_line();
            let started = Instant::now();
            let mut loader =
                Loader::new(control, &statements, printer, job, range.clone(), &messages);
            if !std::mem::take(&mut marked_loading) {
                loader.progress("loading")?;
            }
            if let Err(e) = loader.opened() {
                let ended = Ended::before_reading();
                self.outcomes[i] = Some(record_failed(control, job, &format!("{e:#}"), ended)?);
                continue;
            }
            let (result, broken) = match loader.next()? {
                // Failed before any of its rows was sent.
                Msg::Failed { error, .. } => (Err(error), false),
                Msg::End {
                    whole: Some(rows),
                    tallies,
                    sha256,
                    counts,
                } if !self.alone() => {
                    let loaded = loader.finishing(Some(&sha256))?;
                    let pooled = if opts.force {
                        None
                    } else {
                        pool.holding(&sha256)
                    };
                    match pooled.or(loaded) {
                        Some(earlier) => (Ok(Read::Duplicate(earlier, sha256)), false),
                        None => {
                            pool.add(job, name, &counts, &sha256, &rows);
                            (Ok(Read::Done(tallies)), false)
                        }
                    }
                }
                first if self.alone() => (loader.load(&mut tx, &pieces, first), false),
                first => load_in_savepoint(&mut loader, &mut tx, &pieces, &mut savepoint, first)?,
            };
            if result.is_err() && !broken {
                loader.skip_rest()?;
            }
            marked_loading = loader.marked_next;
            let counts = std::mem::take(&mut loader.counts);
            let ended = Ended {
                rows: counts.rows,
                rejected: counts.rejected,
                rejects_file: counts.rejects_file,
                seconds: started.elapsed().as_secs_f64(),
            };
            match result {
                Ok(Read::Done(tallies)) => {
                    counted.absorb(tallies);
                    self.read.push((i, ended));
                    if pool.is_full() {
                        pool.send(&mut tx, &statements)?;
                    }
                    if counted.len() >= opts.tally_limit {
                        send_cells(&mut tx, &pieces, &mut counted.cells)?;
                    }
                }
                Ok(Read::Duplicate(earlier, sha)) => {
                    self.outcomes[i] = Some(record_skipped(control, job, earlier, &sha)?);
                }
                Err(e) => {
                    // Redacted before it is stored: job records and notifications never carry a password.
                    let error = crate::redact::redact(&failure(name, job, false, &e));
                    self.outcomes[i] = Some(record_failed(control, job, &error, ended)?);
                    if broken {
                        return Err(
                            e.context(format!("while loading {name}, in the same transaction"))
                        );
                    }
                }
            }
        }
        if self.read.is_empty() {
            return Ok(()); // nothing to commit: the transaction rolls back
        }
        pool.send(&mut tx, &statements)?;
        pool.mark_done(&mut tx)?;
        send_cells(&mut tx, &pieces, &mut counted.cells)?;
        let loaded: i64 = self.read.iter().map(|(_, e)| e.rows).sum();
        finish(&mut tx, &range, loaded, &counted)?;
        self.committing = true;
        tx.commit().context("while committing the trips")
    }
}

/// Loads a file of a batch, whose first message after `Opened` is `first`, in a savepoint of its own, kept
/// if the file is done, rolled back otherwise; true beside the file's result if the savepoint could not be
/// ended (the transaction is broken).
fn load_in_savepoint(
    loader: &mut Loader,
    tx: &mut postgres::Transaction<'_>,
    pieces: &Pieces,
    savepoint: &mut FileSavepoint,
    first: Msg,
) -> Result<(Result<Read>, bool)> {
    savepoint.take(tx)?;
    let result = loader.load(tx, pieces, first);
    let end = savepoint.end(tx, matches!(result, Ok(Read::Done(_))));
    Ok(match (result, end) {
        (result, Ok(())) => (result, false),
        (Err(e), Err(_)) => (Err(e), true),
        (Ok(_), Err(e)) => (Err(e).context("while ending the file's savepoint"), true),
    })
}

/// The savepoint `file` that each file of a batch that streams is loaded in, taken and ended by hand so
/// that a boundary between files costs one round trip: the last file's savepoint, kept or rolled back, is
/// released when the next one is taken, in the same statement (the last one by the commit). Releasing it
/// keeps what the batch wrote in it after the last file (the pool's rows, the cell tally), whatever the
/// next file does.
#[derive(Default)]
struct FileSavepoint {
    taken: bool,
}

impl FileSavepoint {
    /// A savepoint for the next file.
    fn take(&mut self, tx: &mut postgres::Transaction<'_>) -> Result<()> {
        let sql = if self.taken {
            "RELEASE SAVEPOINT file; SAVEPOINT file"
        } else {
            "SAVEPOINT file"
        };
        tx.batch_execute(sql)
            .context("while starting the file's savepoint")?;
        self.taken = true;
        Ok(())
    }

    /// The file is kept, or rolled back (the savepoint stays, to be released by the next `take`).
    fn end(&mut self, tx: &mut postgres::Transaction<'_>, keep: bool) -> Result<()> {
        if !keep {
            tx.batch_execute("ROLLBACK TO SAVEPOINT file")?;
        }
        Ok(())
    }
}

/// ingest_finish (db/007_pieces.sql): the pieces indexed and attached, the small rollups added.
fn finish(
    tx: &mut postgres::Transaction<'_>,
    batch: &RangeInclusive<i32>,
    loaded: i64,
    counted: &Tallies,
) -> Result<()> {
    let (s_region, s_source, s_trips, s_first, s_last) = counted.stats_columns();
    let (w_region, w_week, w_trips) = counted.region_week_columns();
    tx.execute(
        "SELECT ingest_finish($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &[
            batch.start(),
            batch.end(),
            &loaded,
            &s_region,
            &s_source,
            &s_trips,
            &s_first,
            &s_last,
            &w_region,
            &w_week,
            &w_trips,
        ],
    )
    .context("while committing the trips")?;
    Ok(())
}

/// Where a file's load ended.
struct Ended {
    rows: i64,
    rejected: i64,
    rejects_file: Option<PathBuf>,
    seconds: f64,
}

impl Ended {
    fn before_reading() -> Ended {
        Ended {
            rows: 0,
            rejected: 0,
            rejects_file: None,
            seconds: 0.0,
        }
    }
}

/// Records a skipped job: its content was loaded by `earlier`.
fn record_skipped(control: &mut Client, job: i32, earlier: i32, sha: &str) -> Result<Outcome> {
    control.execute(
        "UPDATE ingest_jobs
            SET state = 'skipped', duplicate_of = $2, content_sha256 = $3, rows = 0, finished_at = now()
          WHERE id = $1",
        &[&job, &earlier, &sha],
    )?;
    Ok(Outcome::Skipped { job, earlier })
}

/// Records a failed job, unless the control connection is gone (the job's session lock went with it:
/// the next command that connects marks the job failed, ingest_reap_abandoned).
fn record_failed(control: &mut Client, job: i32, error: &str, ended: Ended) -> Result<Outcome> {
    if !control.is_closed() {
        let rejects_file = ended.rejects_file.map(|p| p.display().to_string());
        control.execute(
            "UPDATE ingest_jobs
                SET state = 'failed', error = $2, rows = 0, rejected = $3, rejects_file = $4,
                    finished_at = now()
              WHERE id = $1",
            &[&job, &error, &ended.rejected, &rejects_file],
        )?;
    }
    Ok(Outcome::Failed {
        job: Some(job),
        error: error.to_string(),
    })
}

/// Opens the jobs of the files of one transaction, consecutive (ingest_jobs_open in
/// db/003_ingest_jobs.sql); they stay queued until their turn comes.
fn open_jobs(control: &mut Client, sources: &[Source], force: bool) -> Result<Vec<i32>> {
    let names: Vec<&str> = sources.iter().map(|s| s.name).collect();
    let sizes: Vec<Option<i64>> = sources
        .iter()
        .map(|s| s.total_bytes.map(|b| b as i64))
        .collect();
    let mut jobs: Vec<i32> = control
        .query(
            "SELECT ingest_jobs_open($1, $2, $3)",
            &[&names, &sizes, &force],
        )
        .context("while recording the ingest jobs")?
        .iter()
        .map(|row| row.get(0))
        .collect();
    jobs.sort_unstable();
    Ok(jobs)
}

/// Shows the jobs' last events, then releases the jobs, opened together with the first (ingest_jobs_close
/// in db/007_pieces.sql).
fn close(control: &mut Client, printer: &mut Printer, jobs: &[i32], loaded: &[i32]) -> Result<()> {
    // The `done` of the files loaded is sent when the loading transaction commits, on the other
    // connection, so it may still be on its way. The other final events were sent by this connection's
    // own statements, and so have arrived: shown already, or pending and shown here.
    let batch = jobs[0]..=jobs[jobs.len() - 1];
    let last = *batch.end();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut waiting: Vec<i32> = loaded.to_vec();
    loop {
        let finals = relay(control, printer, last, &batch)?;
        waiting.retain(|j| !finals.contains(j));
        if waiting.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            log::warn!(
                "the `done` events of {} job(s) of {}..{} did not arrive within 10 s; `trips jobs` shows \
                 their state",
                waiting.len(),
                batch.start(),
                batch.end()
            );
            break;
        }
        if let Some((raw, event)) = status::next(control, deadline - Instant::now())?
            && show(printer, &raw, &event, last, &batch)
        {
            waiting.retain(|&j| j != event.job);
        }
    }
    printer.end_line();
    let forgotten: i32 = control
        .query_one("SELECT ingest_jobs_close($1)", &[&jobs[0]])
        .context("while closing the jobs")?
        .get(0);
    if forgotten > 0 {
        log::debug!("forgot {forgotten} region or datasource name(s) that no committed trip uses");
    }
    Ok(())
}

/// The message of a file that failed. A lost connection gets told as such, with what it means for the
/// file: before the commit was sent the server rolls the transaction back, so nothing was committed;
/// during the commit no one can say, but loading the file again is safe either way.
fn failure(name: &str, job: i32, committing: bool, e: &anyhow::Error) -> String {
    if !connection_lost(e) {
        return format!("{e:#}");
    }
    let outcome = if committing {
        format!(
            "It is not known whether the file was committed: `trips jobs` shows whether job {job} is \
             done. Loading the file again is safe: if it was committed, it is skipped"
        )
    } else {
        "Nothing of this file was committed (the server rolls back a transaction whose connection is \
         lost); load it again when the database is back"
            .to_string()
    };
    format!("{name}: the connection to the database was lost ({e:#}). {outcome}")
}

/// The message of a file of a batch whose transaction failed (not the file itself): told as `failure` tells
/// a lost connection, or with the error of the transaction.
fn batch_failure(name: &str, job: i32, committing: bool, e: &anyhow::Error) -> String {
    if connection_lost(e) {
        return failure(name, job, committing, e);
    }
    format!(
        "{name}: not committed: it was loaded in one transaction with other small files, and that \
         transaction failed ({e:#}). Nothing of this file was committed; load it again"
    )
}

/// True if the error chain holds a lost connection: closed, reset, or ended by the server (shutdown,
/// restart, pg_terminate_backend: SQLSTATE class 57P).
pub fn connection_lost(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<postgres::Error>().is_some_and(|pg| {
            pg.is_closed()
                || pg.code().is_some_and(|code| code.code().starts_with("57P"))
                || std::error::Error::source(pg).is_some_and(|s| s.is::<std::io::Error>())
        })
    })
}

/// Shows the events received so far on `control` (see `show`); returns the jobs of `batch` whose final
/// event was among them.
fn relay(
    control: &mut Client,
    printer: &mut Printer,
    job: i32,
    batch: &RangeInclusive<i32>,
) -> Result<Vec<i32>> {
    let mut finals = Vec::new();
    for (raw, event) in status::pending(control)? {
        if show(printer, &raw, &event, job, batch) {
            finals.push(event.job);
        }
    }
    Ok(finals)
}

/// Shows an event of the file being loaded (`job`); JSON output gets every event of the batch's jobs. The
/// final state is told by the summary line of `trips ingest`. True if it is the final event of one of the
/// batch's jobs.
fn show(
    printer: &mut Printer,
    raw: &str,
    event: &status::Event,
    job: i32,
    batch: &RangeInclusive<i32>,
) -> bool {
    if !batch.contains(&event.job) {
        return false;
    }
    if printer.is_json() || (event.job == job && !event.is_final()) {
        // The file loads whatever happens to its output (a closed pipe, say).
        let _ = printer.show(raw, event);
    }
    event.is_final()
}
