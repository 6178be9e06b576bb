//! One file in its batch's transaction, on the loading thread: the rows the reading thread (read.rs) encoded
//! are COPYed into the batch's piece, progress is written to the job row, and the job is marked done by
//! `ingest_job_done` (db/007_pieces.sql); the batch (mod.rs) sends the counts and commits. The small files
//! of a batch, read whole before any of their rows is sent, go through the batch's `Pool` instead.

use super::names;
use super::read::{Counts, Msg};
use super::relay;
use super::tally::{CellTally, Tallies};
use crate::copy::{self, RowEncoder};
use crate::status::Printer;
use anyhow::{Context, Result, anyhow};
use postgres::{Client, Statement};
use std::collections::HashMap;
use std::io::Write;
use std::ops::RangeInclusive;
use std::sync::mpsc::Receiver;
use std::time::Instant;

/// The batch's pieces (db/007_pieces.sql), attached as partitions when the batch finishes.
pub(super) struct Pieces {
    pub trips: String,
    pub cells: String,
    /// The batch's first job: the cell tally's rows carry it (trip_cells.job_id).
    pub first_job: i32,
    /// Rows may be written frozen: the tables were made in the current (sub)transaction.
    pub freeze: bool,
}

/// The statements every file of a batch runs, prepared once per batch: a statement given as text is
/// prepared anew each time it runs, one more round trip per statement and file (docs/store.md, "Round
/// trips per file").
pub(super) struct Statements {
    /// On the control connection: a job's state and counters, the next job marked loading, and the done
    /// job holding the same content, if any (ingest_job_progress in db/003_ingest_jobs.sql); the trigger on
    /// ingest_jobs notifies.
    progress: Statement,
    /// In the batch's transaction: the COPY into the trips' piece.
    copy_trips: Statement,
    /// In the batch's transaction: ingest_job_done (db/007_pieces.sql).
    job_done: Statement,
}

impl Statements {
    pub(super) fn prepare(
        control: &mut Client,
        tx: &mut postgres::Transaction<'_>,
        pieces: &Pieces,
    ) -> Result<Statements> {
        let preparing = "while preparing the statements of the load";
        Ok(Statements {
            progress: control
                .prepare("SELECT ingest_job_progress($1, $2, $3, $4, $5, $6, $7, $8)")
                .context(preparing)?,
            copy_trips: tx
                .prepare(&copy_statement(&pieces.trips, pieces.freeze))
                .context(preparing)?,
            job_done: tx
                .prepare("SELECT ingest_job_done($1, $2, $3, $4)")
                .context(preparing)?,
        })
    }
}

/// How a file ended in its batch's transaction.
pub(super) enum Read {
    /// Its rows are sent and its job is marked done (or, read whole, both are left to the batch's `Pool`),
    /// to be committed with the batch; what it counted.
    Done(Tallies),
    /// A done job already holds this content: that job, and the content's hash.
    Duplicate(i32, String),
}

/// One file on the loading thread: what the reading thread (read.rs) sends for it, written to the
/// database.
pub struct Loader<'a> {
    control: &'a mut Client,
    statements: &'a Statements,
    printer: &'a mut Printer,
    job: i32,
    /// The jobs of the batch this file is part of.
    batch: RangeInclusive<i32>,
    messages: &'a Receiver<Msg>,
    /// The file's counters, as last told.
    pub(super) counts: Counts,
    /// Its last message (`End` or `Failed`) is received.
    ended: bool,
    /// The batch's next job was marked loading with this one's `finishing`.
    pub(super) marked_next: bool,
}

impl<'a> Loader<'a> {
    pub(super) fn new(
        control: &'a mut Client,
        statements: &'a Statements,
        printer: &'a mut Printer,
        job: i32,
        batch: RangeInclusive<i32>,
        messages: &'a Receiver<Msg>,
    ) -> Loader<'a> {
        Loader {
            control,
            statements,
            printer,
            job,
            batch,
            messages,
            counts: Counts::default(),
            ended: false,
            marked_next: false,
        }
    }

    /// Waits for the file to be opened, or for why it could not be.
    pub(super) fn opened(&mut self) -> Result<()> {
        match self.next()? {
            Msg::Opened => Ok(()),
            Msg::Failed { error, .. } => Err(error),
            _ => Err(anyhow!(
                "the reading thread sent rows before opening the file"
            )),
        }
    }

    /// Loads the file, whose first message after `Opened` is `first`, into the batch's pieces within `tx`
    /// (the batch's transaction, or the file's savepoint in it). The cell tally is sent here only when it
    /// outgrows --tally-limit; the rest goes back to the batch with the other counts. On an error,
    /// `skip_rest` passes over what is left of the file.
    pub(super) fn load(
        &mut self,
        tx: &mut postgres::Transaction<'_>,
        pieces: &Pieces,
        first: Msg,
    ) -> Result<Read> {
        let mut first = Some(first);
        loop {
            let mut copy = tx
                .copy_in(&self.statements.copy_trips)
                .with_context(|| format!("while starting the COPY into {}", pieces.trips))?;
            let sending = "while sending rows to the database";
            let after_rows = loop {
                match first.take().map_or_else(|| self.next(), Ok)? {
                    Msg::Rows(rows) => copy.write_all(&rows).context(sending)?,
                    other => {
                        if let Msg::End {
                            whole: Some(rows), ..
                        } = &other
                        {
                            copy.write_all(rows).context(sending)?;
                        }
                        break other;
                    }
                }
            };
            match after_rows {
                Msg::Cells(mut cells) => {
                    copy.finish().context("while finishing the COPY")?;
                    send_cells(tx, pieces, &mut cells)?;
                }
                Msg::End {
                    tallies, sha256, ..
                } => {
                    copy.finish().context("while finishing the COPY")?;
                    self.finishing(None)?;
                    return Ok(match self.job_done(tx, &sha256)? {
                        Some(earlier) => Read::Duplicate(earlier, sha256),
                        None => Read::Done(tallies),
                    });
                }
                // The COPY is abandoned (dropped unfinished), and the caller rolls the file back.
                Msg::Failed { error, .. } => return Err(error),
                _ => return Err(anyhow!("the reading thread sent a message out of order")),
            }
        }
    }

    /// Passes over the rest of a file that failed here rather than in the reading thread.
    pub(super) fn skip_rest(&mut self) -> Result<()> {
        while !self.ended {
            if let Msg::Name { reply, .. } = self.next()? {
                let _ = reply.send(Err(anyhow!("the file failed")));
            }
        }
        Ok(())
    }

    /// The file marked finishing, and the batch's next file loading from here, in one round trip. Given
    /// the content's hash (a file read whole, its rows not yet sent: see `Pool`), the done job that holds
    /// the same content, if any.
    pub(super) fn finishing(&mut self, sha256: Option<&str>) -> Result<Option<i32>> {
        let next = (self.job < *self.batch.end()).then_some(self.job + 1);
        let earlier = self.write_progress("finishing", next, sha256)?;
        self.marked_next = next.is_some();
        Ok(earlier)
    }

    /// The reading thread's next message for the loading thread; names and progress are dealt with here.
    pub(super) fn next(&mut self) -> Result<Msg> {
        loop {
            let msg = self
                .messages
                .recv()
                .map_err(|_| anyhow!("the reading thread stopped unexpectedly"))?;
            match msg {
                Msg::Name {
                    dim,
                    name,
                    at,
                    reply,
                } => {
                    let key = names::register(self.control, dim, &name, &at);
                    // A reader that has gone has failed the file already.
                    let _ = reply.send(key);
                }
                Msg::Progress(counts) => {
                    self.counts = counts;
                    self.progress("loading")?;
                }
                Msg::End { ref counts, .. } | Msg::Failed { ref counts, .. } => {
                    self.counts = counts.clone();
                    self.ended = true;
                    return Ok(msg);
                }
                _ => return Ok(msg),
            }
        }
    }

    /// ingest_job_done (db/007_pieces.sql): the job marked done; or, if a done job already holds this
    /// content, that job's id.
    fn job_done(&self, tx: &mut postgres::Transaction<'_>, sha: &str) -> Result<Option<i32>> {
        Ok(tx
            .query_one(
                &self.statements.job_done,
                &[&self.job, &sha, &self.counts.rows, &self.counts.rejected],
            )
            .context("while committing the trips")?
            .get(0))
    }

    /// Writes the counters to the job row, which notifies every listener, and shows what comes back.
    pub(super) fn progress(&mut self, state: &str) -> Result<()> {
        self.write_progress(state, None, None).map(|_| ())
    }

    /// `progress`, and marks `next` (a job of the batch) loading after it; given the content's hash,
    /// returns the done job that holds the same content, if any (and if this job is not forced).
    fn write_progress(
        &mut self,
        state: &str,
        next: Option<i32>,
        sha256: Option<&str>,
    ) -> Result<Option<i32>> {
        let counts = &self.counts;
        let bytes = counts.bytes as i64;
        let rejects_file = counts
            .rejects_file
            .as_ref()
            .map(|p| p.display().to_string());
        let earlier = self
            .control
            .query_one(
                &self.statements.progress,
                &[
                    &self.job,
                    &state,
                    &counts.rows,
                    &counts.rejected,
                    &bytes,
                    &rejects_file,
                    &next,
                    &sha256,
                ],
            )
            .context("while recording progress")?
            .get(0);
        relay(self.control, self.printer, self.job, &self.batch)?;
        Ok(earlier)
    }
}

/// The rows of the batch's files read whole, and their jobs. A file of fewer trips than a run (read.rs)
/// is read, validated and hashed before any of its rows is sent, so it needs no savepoint, no COPY and no
/// statement of its own in the batch's transaction: a bad file is never sent, and a file whose content is
/// already loaded is found by `Loader::finishing` before it is. Its rows wait here with others', and
/// go by one COPY every `POOL_BYTES`; the jobs are marked done together before the batch finishes
/// (docs/store.md, "Files read whole").
#[derive(Default)]
pub(super) struct Pool {
    /// COPY rows, without a stream's header and trailer.
    rows: Vec<u8>,
    /// The files of the rows, sent or not.
    files: Vec<Pooled>,
    /// Their contents: the first job of each. A file and its duplicate take the same path (it depends
    /// only on the content), so a duplicate of a pooled file is pooled, and its job is not yet done.
    contents: HashMap<String, i32>,
}

/// A file in the pool: what its job is marked done with.
struct Pooled {
    job: i32,
    name: String,
    sha256: String,
    rows: i64,
    rejected: i64,
}

/// The rows a pool holds before they are sent: about 120,000 trips.
const POOL_BYTES: usize = 8 << 20;

impl Pool {
    /// Adds a file read whole: its job and name, what it counted, its content's hash and its rows (a whole
    /// stream).
    pub(super) fn add(
        &mut self,
        job: i32,
        name: &str,
        counts: &Counts,
        sha256: &str,
        stream: &[u8],
    ) {
        // A file read whole is less than a chunk of rows, so the pool never outgrows this.
        self.rows
            .reserve(POOL_BYTES + copy::FLUSH_AT - self.rows.len());
        self.rows.extend_from_slice(copy::rows_of(stream));
        self.contents.entry(sha256.to_string()).or_insert(job);
        self.files.push(Pooled {
            job,
            name: name.to_string(),
            sha256: sha256.to_string(),
            rows: counts.rows,
            rejected: counts.rejected,
        });
    }

    /// The job of a file in the pool with this content.
    pub(super) fn holding(&self, sha256: &str) -> Option<i32> {
        self.contents.get(sha256).copied()
    }

    pub(super) fn is_full(&self) -> bool {
        self.rows.len() >= POOL_BYTES
    }

    /// Sends the rows held, by one COPY into the batch's piece of trips.
    pub(super) fn send(
        &mut self,
        tx: &mut postgres::Transaction<'_>,
        statements: &Statements,
    ) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let sending = "while sending the rows of small files to the database";
        let mut copy = tx.copy_in(&statements.copy_trips).context(sending)?;
        copy.write_all(&copy::header()).context(sending)?;
        copy.write_all(&self.rows).context(sending)?;
        copy.write_all(&copy::TRAILER).context(sending)?;
        copy.finish().context(sending)?;
        self.rows.clear();
        Ok(())
    }

    /// Marks the jobs of the files added done (ingest_job_done, db/007_pieces.sql), in one statement, once
    /// their rows are sent. A content that another loader committed since `Loader::finishing` looked (two
    /// loaders of the same file at the same moment) fails the batch: its rows are sent with the others'.
    pub(super) fn mark_done(&mut self, tx: &mut postgres::Transaction<'_>) -> Result<()> {
        if self.files.is_empty() {
            return Ok(());
        }
        let jobs: Vec<i32> = self.files.iter().map(|f| f.job).collect();
        let hashes: Vec<&str> = self.files.iter().map(|f| f.sha256.as_str()).collect();
        let rows: Vec<i64> = self.files.iter().map(|f| f.rows).collect();
        let rejected: Vec<i64> = self.files.iter().map(|f| f.rejected).collect();
        let duplicates = tx
            .query(
                "SELECT u.i, d.earlier
                   FROM unnest($1::integer[], $2::text[], $3::bigint[], $4::bigint[])
                        WITH ORDINALITY AS u(job, sha256, loaded, skipped, i),
                        LATERAL ingest_job_done(u.job, u.sha256, u.loaded, u.skipped) AS d(earlier)
                  WHERE d.earlier IS NOT NULL
                  ORDER BY u.i",
                &[&jobs, &hashes, &rows, &rejected],
            )
            .context("while committing the trips")?;
        if let Some(first) = duplicates.first() {
            let (i, earlier): (i64, i32) = (first.get(0), first.get(1));
            return Err(anyhow!(
                "{}: job {earlier} of another loader committed the same content while this batch was \
                 loading it. Load the files again: this one will be skipped as a duplicate",
                self.files[i as usize - 1].name
            ));
        }
        self.files.clear();
        Ok(())
    }
}

/// Sends the cell tally into the batch's piece, and empties it. A cell sent again later gets another row;
/// readers add them up and merges fold them.
pub(super) fn send_cells(
    tx: &mut postgres::Transaction<'_>,
    pieces: &Pieces,
    cells: &mut CellTally,
) -> Result<()> {
    let started = Instant::now();
    let cell_weeks = cells.0.len();
    let sending = "while sending the cell tally to the database";
    let mut copy = tx
        .copy_in(&copy_statement(&pieces.cells, pieces.freeze))
        .with_context(|| format!("while starting the COPY into {}", pieces.cells))?;
    let mut rows = RowEncoder::new();
    for cell in cells.drain_sorted().chunk_by(|a, b| a.0 == b.0) {
        rows.cell(pieces.first_job, cell);
        if rows.is_full() {
            copy.write_all(&rows.take()).context(sending)?;
        }
    }
    copy.write_all(&rows.finish()).context(sending)?;
    copy.finish()
        .context("while finishing the COPY of the cell tally")?;
    log::debug!(
        "sent {cell_weeks} cell-weeks in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A binary COPY into `table`; `freeze` for a table created in this (sub)transaction (rows are written
/// frozen).
fn copy_statement(table: &str, freeze: bool) -> String {
    let freeze = if freeze { ", FREEZE" } else { "" };
    format!("COPY {table} FROM STDIN (FORMAT binary{freeze})")
}
