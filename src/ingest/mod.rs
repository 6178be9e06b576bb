//! Loading one file as one ingest job: atomic, idempotent, with clear errors for bad records.
//!
//! Two connections are used. `control` runs in autocommit: it opens the job (and holds the job's session
//! lock, see db/003_ingest_jobs.sql), hands out region/datasource keys, and writes progress and failures,
//! all visible to others at once. `load` runs the file's single transaction (db/007_pieces.sql):
//! `ingest_begin` makes the job's empty pieces, every valid row is binary-COPYed into the trips' piece, the
//! tallies counted while streaming (trips per cell and week, per group, per region and week, per region and
//! datasource) into theirs, and `ingest_finish` indexes and attaches the pieces, adds the small rollups and
//! marks the job done in the same commit. Any error before that commit rolls the whole file back.

//!
//! The stages, one file each: `load.rs` the transaction and the record loop, `names.rs` the keys of region
//! and datasource names, `tally.rs` what is counted while streaming, `rejects.rs` the rejects file.

mod load;
mod names;
mod rejects;
mod tally;

use crate::input;
use crate::status::{self, Printer};
use anyhow::{Context, Result};
use load::Loader;
use postgres::Client;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The default of `Options::tally_limit` (`trips ingest --tally-limit`, and uploads to `trips serve`).
pub const TALLY_LIMIT: u64 = 2_000_000;

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
    let job = open_job(control, name, input.total_bytes, opts.force)?;
    opened(job);
    relay(control, printer, job)?;
    let started = Instant::now();
    let mut loader = Loader::new(control, printer, job, opts, name, &input);
    let result = loader.load(load, input);
    let ended = Ended {
        rows: loader.rows,
        rejected: loader.rejected,
        rejects_file: loader.rejects.take().map(|r| r.path),
        committing: loader.committing,
        seconds: started.elapsed().as_secs_f64(),
    };
    let outcome = record_outcome(control, name, job, result, ended)?;
    if let Err(e) = close(control, printer, job) {
        // The outcome stands (it was committed or recorded above); only its echo or the tidying is lost,
        // and the session's locks go with a lost connection.
        log::warn!("job {job}: after the file's outcome was recorded: {e:#}");
    }
    Ok(outcome)
}

/// Where a file's load ended.
struct Ended {
    rows: i64,
    rejected: i64,
    rejects_file: Option<PathBuf>,
    /// COMMIT had been sent: a connection lost then leaves the outcome unknown.
    committing: bool,
    seconds: f64,
}

/// Turns the result of `Loader::load` into the file's outcome, recording a skip or a failure in the job
/// (a load records its own `done` in its commit).
fn record_outcome(
    control: &mut Client,
    name: &str,
    job: i32,
    result: Result<Option<(i32, String)>>,
    ended: Ended,
) -> Result<Outcome> {
    match result {
        Ok(None) => Ok(Outcome::Loaded {
            job,
            rows: ended.rows,
            rejected: ended.rejected,
            rejects_file: ended.rejects_file,
            seconds: ended.seconds,
        }),
        Ok(Some((earlier, sha))) => {
            control.execute(
                "UPDATE ingest_jobs
                    SET state = 'skipped', duplicate_of = $2, content_sha256 = $3, rows = 0, finished_at = now()
                  WHERE id = $1",
                &[&job, &earlier, &sha],
            )?;
            Ok(Outcome::Skipped { job, earlier })
        }
        Err(e) => {
            // Redacted before it is stored: job records and notifications never carry a password.
            let error = crate::redact::redact(&failure(name, job, ended.committing, &e));
            if !control.is_closed() {
                record_failure(
                    control,
                    job,
                    &error,
                    ended.rejected,
                    ended.rejects_file.as_deref(),
                )?;
            }
            // Otherwise the job's session lock went with the connection: the next command that connects
            // marks the job failed (ingest_reap_abandoned).
            Ok(Outcome::Failed {
                job: Some(job),
                error,
            })
        }
    }
}

/// Opens the job of a file (its row and session locks, ingest_job_open in db/003_ingest_jobs.sql) and
/// marks it loading.
fn open_job(control: &mut Client, name: &str, size: Option<u64>, force: bool) -> Result<i32> {
    let total_bytes = size.map(|b| b as i64);
    let job: i32 = control
        .query_one(
            "SELECT ingest_job_open($1, $2, $3)",
            &[&name, &total_bytes, &force],
        )
        .context("while recording the ingest job")?
        .get(0);
    control.execute(
        "UPDATE ingest_jobs SET state = 'loading' WHERE id = $1",
        &[&job],
    )?;
    Ok(job)
}

/// Records a failed job: its error, and the rejects file it leaves, if any.
fn record_failure(
    control: &mut Client,
    job: i32,
    error: &str,
    rejected: i64,
    rejects_file: Option<&std::path::Path>,
) -> Result<()> {
    let rejects_file = rejects_file.map(|p| p.display().to_string());
    control.execute(
        "UPDATE ingest_jobs
            SET state = 'failed', error = $2, rows = 0, rejected = $3, rejects_file = $4,
                finished_at = now()
          WHERE id = $1",
        &[&job, &error, &rejected, &rejects_file],
    )?;
    Ok(())
}

/// Shows the job's last events, then releases the job (ingest_job_close in db/007_pieces.sql).
fn close(control: &mut Client, printer: &mut Printer, job: i32) -> Result<()> {
    // The final event: `done` is sent when the loading transaction commits, on another connection, so it
    // may still be on its way; the others were sent by the statements above.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !relay(control, printer, job)? && Instant::now() < deadline {
        if let Some((raw, event)) = status::next(control, deadline - Instant::now())?
            && event.job == job
        {
            show(printer, &raw, &event);
            if event.is_final() {
                break;
            }
        }
    }
    printer.end_line();
    let forgotten: i32 = control
        .query_one("SELECT ingest_job_close($1)", &[&job])
        .context("while closing the job")?
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

/// Shows the events of `job` received so far on `control`; true if the job's final event was among them.
fn relay(control: &mut Client, printer: &mut Printer, job: i32) -> Result<bool> {
    let mut final_seen = false;
    for (raw, event) in status::pending(control)? {
        if event.job == job {
            show(printer, &raw, &event);
            final_seen |= event.is_final();
        }
    }
    Ok(final_seen)
}

/// The final state is told by the summary line of `trips ingest`; JSON output gets every event.
fn show(printer: &mut Printer, raw: &str, event: &status::Event) {
    if !event.is_final() || printer.is_json() {
        // The file loads whatever happens to its output (a closed pipe, say).
        let _ = printer.show(raw, event);
    }
}
