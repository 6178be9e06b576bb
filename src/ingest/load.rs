//! One file in its batch's transaction: every record read, validated and COPYed into the batch's piece,
//! counted, and its job marked done by `ingest_job_done` (db/007_pieces.sql); the batch (mod.rs) sends the
//! counts and commits.

use super::names::{self, Dim, Names};
use super::rejects::{Rejects, open_rejects};
use super::tally::Tallies;
use super::{Options, relay};
use crate::copy::RowEncoder;
use crate::input::{self, Input};
use crate::parse::{self, Invalid, Layout};
use crate::status::{Printer, human_bytes};
use anyhow::{Context, Result, anyhow};
use csv::ByteRecord;
use postgres::Client;
use std::ops::RangeInclusive;
use std::time::Instant;

/// The CSV parser's buffer.
const CSV_BUFFER: usize = 1 << 18;

/// The batch's pieces (db/007_pieces.sql), attached as partitions when the batch finishes.
pub(super) struct Pieces {
    pub trips: String,
    pub cells: String,
    /// The batch's first job: the cell tally's rows carry it (trip_cells.job_id).
    pub first_job: i32,
    /// Rows may be written frozen: the tables were made in the current (sub)transaction.
    pub freeze: bool,
}

/// How a file ended in its batch's transaction.
pub(super) enum Read {
    /// Its rows are sent and its job is marked done, to be committed with the batch; what it counted.
    Done(Tallies),
    /// A done job already holds this content: that job, and the content's hash.
    Duplicate(i32, String),
}

pub struct Loader<'a> {
    control: &'a mut Client,
    printer: &'a mut Printer,
    job: i32,
    /// The jobs of the batch this file is part of.
    batch: RangeInclusive<i32>,
    opts: &'a Options,
    name: &'a str,
    pub(super) rows: i64,
    pub(super) rejected: i64,
    names: &'a mut Names,
    pub(super) rejects: Option<Rejects>,
    last_progress: Instant,
    bytes_read: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<'a> Loader<'a> {
    pub(super) fn new(
        control: &'a mut Client,
        printer: &'a mut Printer,
        job: i32,
        batch: RangeInclusive<i32>,
        names: &'a mut Names,
        opts: &'a Options,
        name: &'a str,
    ) -> Loader<'a> {
        Loader {
            control,
            printer,
            job,
            batch,
            opts,
            name,
            rows: 0,
            rejected: 0,
            names,
            rejects: None,
            last_progress: Instant::now(),
            bytes_read: Default::default(),
        }
    }

    /// Loads the file into the batch's pieces within `tx` (the batch's transaction, or the file's savepoint
    /// in it). The cell tally is sent here only when it outgrows --tally-limit; the rest goes back to the
    /// batch with the other counts.
    pub(super) fn load(
        &mut self,
        tx: &mut postgres::Transaction<'_>,
        pieces: &Pieces,
        input: Input,
    ) -> Result<Read> {
        self.bytes_read = input.bytes_read.clone();
        let mut copy = copy_into(tx, &pieces.trips, pieces.freeze)?;
        let mut records = Records::new(self.name, input);
        let mut record = ByteRecord::new();
        let layout = self.header(&mut records, &mut record)?;
        let mut rows = RowEncoder::new();
        let mut tallies = Tallies::new();
        while records.next(&mut record)? {
            match parse::trip(&layout, &record) {
                Ok(trip) => {
                    let (name, layout, record) = (self.name, &layout, &record);
                    let at = |dim| move || names::location(name, layout, record, dim);
                    let region =
                        self.names
                            .key(self.control, Dim::Region, trip.region, at(Dim::Region))?;
                    let source = self.names.key(
                        self.control,
                        Dim::Datasource,
                        trip.datasource,
                        at(Dim::Datasource),
                    )?;
                    rows.trip(self.job, region, source, &trip);
                    tallies.add(region, source, &trip);
                    self.rows += 1;
                    if rows.is_full() {
                        rows.write_to(&mut copy)
                            .context("while sending rows to the database")?;
                    }
                    if tallies.len() >= self.opts.tally_limit {
                        // One COPY at a time per connection: close the trips' COPY, send the tally,
                        // open it again.
                        rows.finish(&mut copy)
                            .context("while sending rows to the database")?;
                        copy.finish().context("while finishing the COPY")?;
                        send_cells(tx, pieces, &mut tallies)?;
                        rows = RowEncoder::new();
                        copy = copy_into(tx, &pieces.trips, pieces.freeze)?;
                    }
                }
                Err(invalid) => self.refuse(&layout, &record, invalid)?,
            }
            if self.progress_due() {
                self.progress("loading")?;
            }
        }
        rows.finish(&mut copy)
            .context("while sending rows to the database")?;
        copy.finish().context("while finishing the COPY")?;
        self.check_something_loaded()?;
        self.progress("finishing")?;
        let sha = records.sha256_hex();
        Ok(match self.job_done(tx, &sha)? {
            Some(earlier) => Read::Duplicate(earlier, sha),
            None => Read::Done(tallies),
        })
    }

    /// Reads the header into a layout of the columns, or fails the file.
    fn header(&self, records: &mut Records, record: &mut ByteRecord) -> Result<Layout> {
        if !records.next(record)? {
            return Err(anyhow!(
                "{}: the file is empty; expected a header line naming {}",
                self.name,
                parse::COLUMNS.join(",")
            ));
        }
        let layout = parse::layout(record).map_err(|e| anyhow!("{}:1: {e}", self.name))?;
        if !layout.ignored.is_empty() {
            log::warn!(
                "{}: ignoring column(s) {} (not used by trips)",
                self.name,
                layout.ignored.join(", ")
            );
        }
        Ok(layout)
    }

    /// A file that loads no trip because every record was refused is a failure, not loaded content.
    fn check_something_loaded(&mut self) -> Result<()> {
        if let Some(r) = &mut self.rejects {
            r.writer
                .flush()
                .with_context(|| format!("while writing {}", r.path.display()))?;
            if self.rows == 0 {
                return Err(anyhow!(
                    "{}: all {} records were rejected, so nothing was loaded; {} says why for each. \
                     Fix the file and load it again",
                    self.name,
                    self.rejected,
                    r.path.display()
                ));
            }
        }
        if self.rows == 0 {
            log::warn!("{}: no trips in the file (only a header)", self.name);
        }
        Ok(())
    }

    /// Whether progress is due after this record: every --progress-rows records, or by time.
    fn progress_due(&self) -> bool {
        let checked = (self.rows + self.rejected) as u64;
        match self.opts.progress_rows {
            Some(n) => checked.is_multiple_of(n),
            None => {
                checked.is_multiple_of(1024)
                    && !self.opts.progress_every.is_zero()
                    && self.last_progress.elapsed() >= self.opts.progress_every
            }
        }
    }

    /// ingest_job_done (db/007_pieces.sql): the job marked done; or, if a done job already holds this
    /// content, that job's id.
    fn job_done(&self, tx: &mut postgres::Transaction<'_>, sha: &str) -> Result<Option<i32>> {
        Ok(tx
            .query_one(
                "SELECT ingest_job_done($1, $2, $3, $4)",
                &[&self.job, &sha, &self.rows, &self.rejected],
            )
            .context("while committing the trips")?
            .get(0))
    }

    /// A bad record: fail the file, or with --skip-invalid write it to the rejects file and go on.
    fn refuse(&mut self, layout: &Layout, record: &ByteRecord, invalid: Invalid) -> Result<()> {
        let line = record.position().map_or(0, |p| p.line());
        if !self.opts.skip_invalid {
            return Err(anyhow!(
                "{}:{line}: {invalid}. Nothing of this file was committed; fix the record, or rerun with \
                 --skip-invalid to load the valid records and write the others to a rejects file",
                self.name
            ));
        }
        self.rejected += 1;
        let rejects = match &mut self.rejects {
            Some(r) => r,
            None => self
                .rejects
                .insert(open_rejects(self.opts, self.name, self.job, layout)?),
        };
        let mut row = ByteRecord::new();
        row.push_field(line.to_string().as_bytes());
        row.push_field(invalid.to_string().as_bytes());
        row.extend(record.iter());
        rejects
            .writer
            .write_byte_record(&row)
            .with_context(|| format!("while writing {}", rejects.path.display()))
    }

    /// Writes the counters to the job row, which notifies every listener, and shows what comes back.
    fn progress(&mut self, state: &str) -> Result<()> {
        let bytes = self.bytes_read.get() as i64;
        let rejects_file = self.rejects.as_ref().map(|r| r.path.display().to_string());
        self.control
            .execute(
                "UPDATE ingest_jobs
                    SET state = $2, rows = $3, rejected = $4, bytes = $5, rejects_file = $6
                  WHERE id = $1",
                &[
                    &self.job,
                    &state,
                    &self.rows,
                    &self.rejected,
                    &bytes,
                    &rejects_file,
                ],
            )
            .context("while recording progress")?;
        self.last_progress = Instant::now();
        relay(self.control, self.printer, self.job, &self.batch)?;
        Ok(())
    }
}

/// Sends the cell tally into the batch's piece, and empties it. A cell sent again later gets another row;
/// readers add them up and merges fold them.
pub(super) fn send_cells(
    tx: &mut postgres::Transaction<'_>,
    pieces: &Pieces,
    tallies: &mut Tallies,
) -> Result<()> {
    let started = Instant::now();
    let cell_weeks = tallies.cells.0.len();
    let sending = "while sending the cell tally to the database";
    let mut copy = copy_into(tx, &pieces.cells, pieces.freeze)?;
    let mut rows = RowEncoder::new();
    for (key, trips, weeks, week_trips) in tallies.cells.drain_sorted() {
        rows.cell(pieces.first_job, &key, trips, &weeks, &week_trips);
        if rows.is_full() {
            rows.write_to(&mut copy).context(sending)?;
        }
    }
    rows.finish(&mut copy).context(sending)?;
    copy.finish()
        .context("while finishing the COPY of the cell tally")?;
    log::debug!(
        "sent {cell_weeks} cell-weeks in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Starts a binary COPY; `freeze` for a table created in this (sub)transaction (rows are written frozen).
fn copy_into<'a>(
    tx: &'a mut postgres::Transaction<'_>,
    table: &str,
    freeze: bool,
) -> Result<postgres::CopyInWriter<'a>> {
    let freeze = if freeze { ", FREEZE" } else { "" };
    tx.copy_in(&format!("COPY {table} FROM STDIN (FORMAT binary{freeze})"))
        .with_context(|| format!("while starting the COPY into {table}"))
}

/// The file's CSV records, each bounded by the record limit (input.rs): a record longer than that fails the
/// file naming the line where it starts, with memory bounded by it.
struct Records<'a> {
    name: &'a str,
    csv: csv::Reader<Hashed>,
    limit: std::rc::Rc<std::cell::Cell<u64>>,
}

type Hashed = input::Hashing<input::Bounded<Box<dyn std::io::Read>>>;

impl<'a> Records<'a> {
    fn new(name: &'a str, input: Input) -> Records<'a> {
        let csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(CSV_BUFFER)
            .from_reader(input.reader);
        Records {
            name,
            csv,
            limit: input.read_limit,
        }
    }

    /// Reads the next record into `record`; false at the end of the file.
    fn next(&mut self, record: &mut ByteRecord) -> Result<bool> {
        let (name, line) = (self.name, self.csv.position().line());
        let more = self.csv.read_byte_record(record).map_err(|e| {
            if input::is_record_too_long(&e) {
                anyhow!(
                    "{name}:{line}: the record that starts on this line is longer than {} (the most a \
                     record may hold); nothing of this file was committed. A record is one line (a \
                     quoted value may span lines): check that the file has line breaks and no unclosed \
                     quote",
                    human_bytes(input::MAX_RECORD_BYTES)
                )
            } else {
                anyhow!(e).context(format!("while reading {name} at line {line}"))
            }
        })?;
        // The parser may read a buffer ahead of the next record, and that record up to the limit.
        self.limit
            .set(self.csv.position().byte() + input::MAX_RECORD_BYTES + CSV_BUFFER as u64);
        Ok(more)
    }

    /// SHA-256 of the content read.
    fn sha256_hex(self) -> String {
        self.csv.into_inner().sha256_hex()
    }
}
