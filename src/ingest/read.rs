//! Reading the files of a transaction on a thread of their own: every record read, validated, encoded as a
//! binary COPY row and counted, while the loading thread (load.rs) sends the rows before them to the
//! database and waits for it. At a file boundary the next file is already being read: a batch of small
//! files costs about what one file of the same trips costs.
//!
//! The reading thread never touches the database. What it needs from it, a new name's key, it asks the
//! loading thread for (`Msg::Name`). Each file's messages end with `End` or `Failed`; a full channel holds
//! the reader back, so memory stays bounded by [`READ_AHEAD`] messages. A file of fewer trips than a run
//! sends no rows before its `End`, which carries them: it is read, validated and hashed whole first.

use super::names::{self, Dim, Names};
use super::rejects::{Rejects, open_rejects};
use super::tally::{self, CellTally, Tallies};
use super::{Options, Source};
use crate::copy::{RowEncoder, TripRow};
use crate::input::{self, Input};
use crate::parse::{self, Invalid, Layout};
use crate::status::human_bytes;
use anyhow::{Context, Result, anyhow};
use csv::ByteRecord;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Sender, SyncSender, channel};
use std::time::Instant;

/// How many messages the reader may be ahead of the loading thread: up to 32 MiB of rows, or as many
/// small files. Enough to keep reading while the loading thread sends a cell tally (its own COPY, about
/// a second for a full tally of sparse data). A tally is sent at --tally-limit entries, and a trip
/// adds at most four, so 32 chunks of rows hold at most one more tally at the default limit: with the one
/// being sent and the one being counted, three at most.
pub const READ_AHEAD: usize = 32;

/// The CSV parser's buffer.
const CSV_BUFFER: usize = 1 << 18;

/// Trips per run: about one chunk of rows (a `trip_rows` row is 66 bytes in the COPY stream).
const RUN_TRIPS: usize = 16 * 1024;

/// What the reading thread tells the loading thread, in the order of the files.
pub enum Msg {
    /// The file is open; its messages follow.
    Opened,
    /// Encoded `trip_rows` rows, part of a binary COPY stream: the first chunk of a stream starts with its
    /// header, the last (before `Cells` or `End`) ends with its trailer.
    Rows(Vec<u8>),
    /// The counters so far, for the job row (--progress-every, --progress-rows).
    Progress(Counts),
    /// The file's cell tally outgrew --tally-limit: the rows so far are to be COPYed, then this tally.
    Cells(CellTally),
    /// A name not met before in this transaction: its key is wanted on `reply`.
    Name {
        dim: Dim,
        name: String,
        /// Where the name is (file:line: column), for an error.
        at: String,
        reply: Sender<Result<i16>>,
    },
    /// The file is read whole: what it counted, and its content's hash. `whole` holds the file's rows (a
    /// whole COPY stream) if none were sent before: a file of fewer trips than a run was read, validated
    /// and hashed before any of it is sent, so a batch can send it with others and skip it if its content
    /// is already loaded (docs/store.md, "Files read whole").
    End {
        counts: Counts,
        tallies: Tallies,
        sha256: String,
        whole: Option<Vec<u8>>,
    },
    /// The file failed; without `Opened` before it, it could not be opened.
    Failed {
        counts: Counts,
        error: anyhow::Error,
    },
}

/// A file's counters so far.
#[derive(Clone, Default)]
pub struct Counts {
    pub rows: i64,
    pub rejected: i64,
    /// Bytes read of the input (on disk: compressed, if it is).
    pub bytes: u64,
    pub rejects_file: Option<PathBuf>,
}

/// The reading thread: reads the files of a transaction, with their jobs, in order and sends what it finds
/// to `out`. It stops early when the loading thread has gone (its receiver dropped).
pub fn read_files(files: Vec<(i32, Source)>, opts: &Options, out: SyncSender<Msg>) {
    let mut names = Names::default();
    for (job, file) in files {
        let input = match file.input.map_or_else(|| input::open(file.name), Ok) {
            Ok(input) => input,
            Err(error) => {
                let failed = Msg::Failed {
                    counts: Counts::default(),
                    error,
                };
                if out.send(failed).is_err() {
                    return;
                }
                continue;
            }
        };
        if out.send(Msg::Opened).is_err() {
            return;
        }
        let mut reader = Reader {
            job,
            name: file.name,
            opts,
            names: &mut names,
            out: &out,
            rows: 0,
            rejected: 0,
            rejects: None,
            bytes_read: input.bytes_read.clone(),
            last_progress: Instant::now(),
        };
        let last = match reader.read(input) {
            Ok((tallies, sha256, whole)) => Msg::End {
                counts: reader.counts(),
                tallies,
                sha256,
                whole,
            },
            Err(error) => Msg::Failed {
                counts: reader.counts(),
                error,
            },
        };
        if out.send(last).is_err() {
            return;
        }
    }
}

/// One file being read.
struct Reader<'a> {
    job: i32,
    name: &'a str,
    opts: &'a Options,
    names: &'a mut Names,
    out: &'a SyncSender<Msg>,
    rows: i64,
    rejected: i64,
    rejects: Option<Rejects>,
    bytes_read: Arc<AtomicU64>,
    last_progress: Instant,
}

impl Reader<'_> {
    /// Reads the file's records, sending the rows as they fill a chunk; returns the file's tallies (less
    /// the cells sent as `Cells`), its content's hash and, if no chunk was sent, its rows.
    fn read(&mut self, input: Input) -> Result<(Tallies, String, Option<Vec<u8>>)> {
        let mut records = Records::new(self.name, input);
        let mut record = ByteRecord::new();
        let layout = self.header(&mut records, &mut record)?;
        let mut rows = RowEncoder::new();
        let mut run = Run::default();
        let mut tallies = Tallies::new();
        let mut sent = false;
        while records.next(&mut record)? {
            match parse::trip(&layout, &record) {
                Ok(trip) => {
                    let region = self.key(Dim::Region, trip.region, &layout, &record)?;
                    let source = self.key(Dim::Datasource, trip.datasource, &layout, &record)?;
                    run.push(TripRow::new(region, source, &trip));
                    tallies.add(region, source, &trip);
                    self.rows += 1;
                    if run.is_full() {
                        run.encode(self.job, &mut rows);
                        self.send(Msg::Rows(rows.take()))?;
                        sent = true;
                    }
                    if tallies.len() >= self.opts.tally_limit {
                        // The loading thread ends the COPY to send the tally (one COPY at a time per
                        // connection), and starts another with the next rows.
                        run.encode(self.job, &mut rows);
                        self.send(Msg::Rows(rows.finish()))?;
                        sent = true;
                        self.send(Msg::Cells(std::mem::take(&mut tallies.cells)))?;
                        rows = RowEncoder::new();
                    }
                }
                Err(invalid) => self.refuse(&layout, &record, invalid)?,
            }
            if self.progress_due() {
                self.send(Msg::Progress(self.counts()))?;
                self.last_progress = Instant::now();
            }
        }
        run.encode(self.job, &mut rows);
        self.check_something_loaded()?;
        let whole = if sent {
            self.send(Msg::Rows(rows.finish()))?;
            None
        } else {
            Some(rows.finish())
        };
        Ok((tallies, records.sha256_hex(), whole))
    }

    fn send(&self, msg: Msg) -> Result<()> {
        self.out
            .send(msg)
            .map_err(|_| anyhow!("{}: the loading thread stopped", self.name))
    }

    fn counts(&self) -> Counts {
        Counts {
            rows: self.rows,
            rejected: self.rejected,
            bytes: self.bytes_read.load(Ordering::Relaxed),
            rejects_file: self.rejects.as_ref().map(|r| r.path.clone()),
        }
    }

    /// The key of the region or datasource name in `dim`'s column of `record`.
    fn key(&mut self, dim: Dim, name: &str, layout: &Layout, record: &ByteRecord) -> Result<i16> {
        let (out, file) = (self.out, self.name);
        self.names.key(dim, name, || {
            let (reply, answer) = channel();
            let ask = Msg::Name {
                dim,
                name: name.to_string(),
                at: names::location(file, layout, record, dim),
                reply,
            };
            out.send(ask)
                .map_err(|_| anyhow!("{file}: the loading thread stopped"))?;
            answer
                .recv()
                .map_err(|_| anyhow!("{file}: the loading thread stopped"))?
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
}

/// The trips of a file read since the last chunk was sent, encoded in the order of their origin's level-2
/// cell: in the piece's table, the trips of a cell then lie in one stretch of pages per run rather than
/// anywhere, and a question reading the trips of the cells its edge cuts (through the cell index,
/// db/008_weekly_avg.sql) touches fewer pages. A run is one chunk of rows (or a small file), so a cell of a
/// 10M-trip file is in at most one stretch per 16,384 trips.
#[derive(Default)]
struct Run(Vec<(i32, TripRow)>);

impl Run {
    fn push(&mut self, trip: TripRow) {
        let [lon, lat] = trip.origin;
        self.0.push((tally::cell_key(2, lon, lat), trip));
    }

    fn is_full(&self) -> bool {
        self.0.len() >= RUN_TRIPS
    }

    /// Encodes the run's trips into `rows`, sorted, and empties the run.
    fn encode(&mut self, job: i32, rows: &mut RowEncoder) {
        self.0.sort_unstable_by_key(|&(cell, _)| cell);
        for (_, trip) in self.0.drain(..) {
            rows.trip(job, &trip);
        }
    }
}

/// The file's CSV records, each bounded by the record limit (input.rs): a record longer than that fails the
/// file naming the line where it starts, with memory bounded by it.
struct Records<'a> {
    name: &'a str,
    csv: csv::Reader<Hashed>,
    limit: Arc<AtomicU64>,
}

type Hashed = input::Hashing<input::Bounded<Box<dyn std::io::Read + Send>>>;

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
        self.limit.store(
            self.csv.position().byte() + input::MAX_RECORD_BYTES + CSV_BUFFER as u64,
            Ordering::Relaxed,
        );
        Ok(more)
    }

    /// SHA-256 of the content read.
    fn sha256_hex(self) -> String {
        self.csv.into_inner().sha256_hex()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_encoded_in_the_order_of_its_origin_cells() {
        let mut run = Run::default();
        // Three cells of one row of the grid, and a trip in another row (further north) that comes last.
        for [lon, lat] in [
            [30_000_000, 450_000_000],
            [-10_000_000, 450_000_000],
            [0, 460_000_000],
            [20_000_000, 450_000_000],
        ] {
            run.push(TripRow {
                region: 1,
                datasource: 1,
                departed_at: 0,
                origin: [lon, lat],
                destination: [0, 0],
            });
        }
        let mut rows = RowEncoder::new();
        run.encode(5, &mut rows);
        assert!(run.0.is_empty());
        let bytes = rows.finish();
        // After the 19-byte header, rows of 66 bytes; a row's origin longitude is at byte 38 of it.
        let lons: Vec<i32> = (0..4)
            .map(|i| {
                let at = 19 + i * 66 + 38;
                i32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
            })
            .collect();
        assert_eq!(lons, [-10_000_000, 20_000_000, 30_000_000, 0]);
        assert_eq!(bytes.len(), 19 + 4 * 66 + 2);
    }
}
