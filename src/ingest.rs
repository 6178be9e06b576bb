//! Loading one file as one ingest job: atomic, idempotent, with clear errors for bad records.
//!
//! Two connections are used. `control` runs in autocommit: it opens the job (and holds the job's session
//! lock, see db/003_ingest_jobs.sql), hands out region/datasource keys, and writes progress and failures,
//! all visible to others at once. `load` runs the file's single transaction (db/007_pieces.sql):
//! `ingest_begin` makes the job's empty pieces, every valid row is binary-COPYed into the trips' piece, the
//! tallies counted while streaming (trips per cell and week, per group, per region and week, per region and
//! datasource) into theirs, and `ingest_finish` indexes and attaches the pieces, adds the small rollups and
//! marks the job done in the same commit. Any error before that commit rolls the whole file back.

use crate::copy::{CellKey, GroupRow, RowEncoder};
use crate::input::{self, Input};
use crate::parse::{self, Invalid, Layout};
use crate::status::{self, Printer};
use anyhow::{Context, Result, anyhow};
use csv::ByteRecord;
use postgres::Client;
use rustc_hash::FxHashMap as HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
    /// Send the group tally and the cell tally to the database once either holds this many entries, so
    /// the loader's memory stays bounded whatever the file's size.
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
    let input = match input::open(name) {
        Ok(input) => input,
        Err(e) => {
            return Ok(Outcome::Failed {
                job: None,
                error: format!("{e:#}"),
            });
        }
    };
    let total_bytes = input.total_bytes.map(|b| b as i64);
    let job: i32 = control
        .query_one(
            "SELECT ingest_job_open($1, $2, $3)",
            &[&name, &total_bytes, &opts.force],
        )
        .context("while recording the ingest job")?
        .get(0);
    control.execute(
        "UPDATE ingest_jobs SET state = 'loading' WHERE id = $1",
        &[&job],
    )?;
    relay(control, printer, job)?;
    let started = Instant::now();
    let mut loader = Loader {
        control,
        printer,
        job,
        opts,
        name,
        rows: 0,
        rejected: 0,
        keys: Keys::default(),
        rejects: None,
        last_progress: started,
        bytes_read: input.bytes_read.clone(),
        committing: false,
    };
    let result = loader.load(load, input);
    let (rows, rejected, rejects) = (loader.rows, loader.rejected, loader.rejects.take());
    let committing = loader.committing;
    let rejects_file = rejects.map(|r| r.path);
    let outcome = match result {
        Ok(None) => Outcome::Loaded {
            job,
            rows,
            rejected,
            rejects_file,
            seconds: started.elapsed().as_secs_f64(),
        },
        Ok(Some((earlier, sha))) => {
            control.execute(
                "UPDATE ingest_jobs
                    SET state = 'skipped', duplicate_of = $2, content_sha256 = $3, rows = 0, finished_at = now()
                  WHERE id = $1",
                &[&job, &earlier, &sha],
            )?;
            Outcome::Skipped { job, earlier }
        }
        Err(e) => {
            // Redacted before it is stored: job records and notifications never carry a password.
            let error = crate::conninfo::redact(&failure(name, job, committing, &e));
            if control.is_closed() {
                // The job's session lock went with the connection: the next command that connects marks
                // the job failed (ingest_reap_abandoned).
                return Ok(Outcome::Failed {
                    job: Some(job),
                    error,
                });
            }
            let rejects_file = rejects_file.as_ref().map(|p| p.display().to_string());
            control.execute(
                "UPDATE ingest_jobs
                    SET state = 'failed', error = $2, rows = 0, rejected = $3, rejects_file = $4,
                        finished_at = now()
                  WHERE id = $1",
                &[&job, &error, &rejected, &rejects_file],
            )?;
            Outcome::Failed {
                job: Some(job),
                error,
            }
        }
    };
    if let Err(e) = close(control, printer, job) {
        // The outcome stands (it was committed or recorded above); only its echo or the tidying is lost,
        // and the session's locks go with a lost connection.
        log::warn!("job {job}: after the file's outcome was recorded: {e:#}");
    }
    Ok(outcome)
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
        printer.show(raw, event);
    }
}

/// Trips and first and last departure per key, tallied while streaming and handed to `ingest_finish`,
/// which adds them to the rollups (db/006_tallies.sql).
struct Tally<K>(HashMap<K, (i64, i64, i64)>);

impl<K: std::hash::Hash + Eq> Tally<K> {
    fn new() -> Self {
        Tally(HashMap::default())
    }

    fn add(&mut self, key: K, departed_at: i64) {
        let e = self.0.entry(key).or_insert((0, departed_at, departed_at));
        e.0 += 1;
        e.1 = e.1.min(departed_at);
        e.2 = e.2.max(departed_at);
    }

    /// The keys, and the counts, firsts and lasts as parallel columns.
    fn columns(&self) -> (Vec<&K>, Vec<i64>, Vec<i64>, Vec<i64>) {
        let mut cols = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (k, &(n, first, last)) in &self.0 {
            cols.0.push(k);
            cols.1.push(n);
            cols.2.push(first);
            cols.3.push(last);
        }
        cols
    }
}

/// The similar-trip group of every trip read since the tally was last sent, with its departure: one entry
/// per trip, appended, then sorted when sent so that each group's trips are side by side (a hash map of
/// sparse groups misses the cache on nearly every trip).
#[derive(Default)]
struct GroupTally(Vec<(GroupRow, i64)>);

impl GroupTally {
    fn add(&mut self, group: GroupRow, departed_at: i64) {
        self.0.push((group, departed_at));
    }

    /// Each group once, in key order, with its trips and first and last departure.
    fn sorted_groups(&mut self) -> impl Iterator<Item = (&GroupRow, usize, i64, i64)> {
        self.0.sort_unstable();
        self.0
            .chunk_by(|a, b| a.0 == b.0)
            .map(|run| (&run[0].0, run.len(), run[0].1, run[run.len() - 1].1))
    }
}

/// The grid of similar-trip groups (db/006_tallies.sql, trip_group_grid).
pub struct Grid {
    pub cell_deg: f64,
    pub bucket_min: i32,
}

impl Grid {
    pub fn read(client: &mut Client) -> Result<Grid> {
        let row = client
            .query_one("SELECT cell_deg, bucket_min FROM trip_group_grid", &[])
            .context("while reading the grid of trip groups")?;
        Ok(Grid {
            cell_deg: row.get(0),
            bucket_min: row.get(1),
        })
    }

    /// The cell index of a coordinate in 1e-7 degree: what ST_SnapToGrid does to the `trips` view's value
    /// (the same float8 division, then rint: round half to even), so both always agree.
    fn cell(&self, fixed: i32) -> i32 {
        ((f64::from(fixed) / parse::COORD_SCALE) / self.cell_deg).round_ties_even() as i32
    }

    /// The time-of-day bucket of a departure (microseconds since 2000-01-01).
    fn bucket(&self, departed_at: i64) -> i16 {
        let minute_of_day = departed_at.rem_euclid(86_400_000_000) / 60_000_000;
        (minute_of_day / i64::from(self.bucket_min)) as i16
    }
}

/// Trips per cell and week, for each end of the trip and each level of the grid (db/004_cells.sql,
/// trip_cells in db/006_tallies.sql): one entry per (cell, week) with trips, so memory follows the
/// trips, never the span of their dates.
#[derive(Default)]
struct CellTally(HashMap<(CellKey, i32), i32>);

impl CellTally {
    fn add(&mut self, trip: &parse::Trip, week: i32) {
        for (side, [lon, lat]) in [(1, trip.origin), (2, trip.destination)] {
            for level in 1..=2u8 {
                let key = CellKey {
                    side,
                    level,
                    cell: cell_key(level, lon, lat),
                };
                *self.0.entry((key, week)).or_default() += 1;
            }
        }
    }

    /// Each cell once, in key order, with its trips and its weeks with the trips of each; empties the
    /// tally.
    fn drain_sorted(&mut self) -> Vec<(CellKey, i64, Vec<i32>, Vec<i32>)> {
        let mut entries: Vec<((CellKey, i32), i32)> = self.0.drain().collect();
        entries.sort_unstable();
        entries
            .chunk_by(|a, b| a.0.0 == b.0.0)
            .map(|run| {
                let weeks = run.iter().map(|e| e.0.1).collect();
                let trips = run.iter().map(|e| e.1).collect();
                (
                    run[0].0.0,
                    run.iter().map(|e| i64::from(e.1)).sum(),
                    weeks,
                    trips,
                )
            })
            .collect()
    }
}

/// The cell size of levels 1 and 2, in 1e-7 degree, and their cells per degree (trip_cell_size and
/// trip_cells_per_degree in db/004_cells.sql); index 0 is unused.
const CELL_SIZE: [i32; 3] = [0, 1_000_000, 100_000];
const CELLS_PER_DEGREE: [i32; 3] = [0, 10, 100];

/// The key of the cell holding (lon, lat) at `level`: trip_cell() of db/004_cells.sql.
fn cell_key(level: u8, lon: i32, lat: i32) -> i32 {
    let (size, per_degree) = (CELL_SIZE[level as usize], CELLS_PER_DEGREE[level as usize]);
    (lat.div_euclid(size) + 90 * per_degree) * (360 * per_degree + 1)
        + lon.div_euclid(size)
        + 180 * per_degree
}

/// The CSV parser's buffer.
const CSV_BUFFER: usize = 1 << 18;

/// Microseconds in a day.
const DAY_US: i64 = 86_400_000_000;

/// The week of a departure (microseconds since 2000-01-01): trip_week() of db/004_cells.sql, weeks from
/// Monday 2000-01-03.
fn week_of(departed_at: i64) -> i32 {
    (departed_at.div_euclid(DAY_US) - 2).div_euclid(7) as i32
}

/// Keys of region and datasource names met so far in this file, so the database is asked once per name.
#[derive(Default)]
struct Keys {
    regions: HashMap<String, i16>,
    datasources: HashMap<String, i16>,
}

/// Which names a key is for: the table (db/002_names.sql), the column, and the word for one of them.
#[derive(Clone, Copy)]
enum Dim {
    Region,
    Datasource,
}

impl Dim {
    fn table(self) -> &'static str {
        match self {
            Dim::Region => "regions",
            Dim::Datasource => "datasources",
        }
    }

    fn column(self) -> usize {
        match self {
            Dim::Region => 0,
            Dim::Datasource => 4,
        }
    }
}

/// The job's pieces (db/007_pieces.sql), attached as partitions when the load finishes.
struct Pieces {
    trips: String,
    cells: String,
    groups: String,
}

struct Rejects {
    path: PathBuf,
    writer: csv::Writer<std::fs::File>,
}

struct Loader<'a> {
    control: &'a mut Client,
    printer: &'a mut Printer,
    job: i32,
    opts: &'a Options,
    name: &'a str,
    rows: i64,
    rejected: i64,
    keys: Keys,
    rejects: Option<Rejects>,
    last_progress: Instant,
    bytes_read: std::rc::Rc<std::cell::Cell<u64>>,
    /// Set when COMMIT is sent: a connection lost after that leaves the outcome unknown.
    committing: bool,
}

impl Loader<'_> {
    /// Runs the file's transaction. Returns `Some((earlier job, sha))` when the content was already loaded
    /// (the transaction is then rolled back), `None` when the file's trips are committed.
    fn load(&mut self, load: &mut Client, input: Input) -> Result<Option<(i32, String)>> {
        let mut tx = load.transaction()?;
        let begun = tx
            .query_one(
                "SELECT trips, cells, groups FROM ingest_begin($1)",
                &[&self.job],
            )
            .context("while creating the job's tables")?;
        let tables = Pieces {
            trips: begun.get(0),
            cells: begun.get(1),
            groups: begun.get(2),
        };
        let mut copy = copy_into(&mut tx, &tables.trips, true)?;
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(CSV_BUFFER)
            .from_reader(input.reader);
        let mut record = ByteRecord::new();
        let name = self.name;
        let limit = input.read_limit;
        let read = |csv: &mut csv::Reader<_>, record: &mut ByteRecord| {
            let line = csv.position().line();
            let more = csv.read_byte_record(record).map_err(|e| {
                if input::is_record_too_long(&e) {
                    anyhow!(
                        "{name}:{line}: the record that starts on this line is longer than {} (the \
                         most a record may hold); nothing of this file was committed. A record is one \
                         line (a quoted value may span lines): check that the file has line breaks and \
                         no unclosed quote",
                        human_bytes(input::MAX_RECORD_BYTES)
                    )
                } else {
                    anyhow!(e).context(format!("while reading {name} at line {line}"))
                }
            })?;
            // The parser may read a buffer ahead of the next record, and that record up to the limit.
            limit.set(csv.position().byte() + input::MAX_RECORD_BYTES + CSV_BUFFER as u64);
            Ok::<_, anyhow::Error>(more)
        };
        if !read(&mut csv, &mut record)? {
            return Err(anyhow!(
                "{}: the file is empty; expected a header line naming {}",
                self.name,
                parse::COLUMNS.join(",")
            ));
        }
        let layout = parse::layout(&record).map_err(|e| anyhow!("{}:1: {e}", self.name))?;
        if !layout.ignored.is_empty() {
            log::warn!(
                "{}: ignoring column(s) {} (not used by trips)",
                self.name,
                layout.ignored.join(", ")
            );
        }
        let mut rows = RowEncoder::new();
        let grid = Grid::read(self.control)?;
        let mut stats = Tally::new();
        let mut groups = GroupTally::default();
        let mut cells = CellTally::default();
        let mut region_weeks: HashMap<(i16, i32), i64> = HashMap::default();
        while read(&mut csv, &mut record)? {
            match parse::trip(&layout, &record) {
                Ok(trip) => {
                    let region = self.key(Dim::Region, trip.region, &layout, &record)?;
                    let source = self.key(Dim::Datasource, trip.datasource, &layout, &record)?;
                    rows.trip(self.job, region, source, &trip);
                    stats.add((region, source), trip.departed_at);
                    let snap = |p: [i32; 2]| [grid.cell(p[0]), grid.cell(p[1])];
                    let group = GroupRow {
                        region,
                        origin: snap(trip.origin),
                        destination: snap(trip.destination),
                        bucket: grid.bucket(trip.departed_at),
                        datasource: source,
                    };
                    groups.add(group, trip.departed_at);
                    let week = week_of(trip.departed_at);
                    cells.add(&trip, week);
                    *region_weeks.entry((region, week)).or_default() += 1;
                    self.rows += 1;
                    if rows.is_full() {
                        rows.write_to(&mut copy)
                            .context("while sending rows to the database")?;
                    }
                    if groups.0.len().max(cells.0.len()) >= self.opts.tally_limit {
                        // Either one full sends both. One COPY at a time per connection: close the
                        // trips' COPY, send the tallies, open it again.
                        rows.finish(&mut copy)
                            .context("while sending rows to the database")?;
                        copy.finish().context("while finishing the COPY")?;
                        self.copy_tallies(&mut tx, &tables, &mut groups, &mut cells)?;
                        rows = RowEncoder::new();
                        copy = copy_into(&mut tx, &tables.trips, true)?;
                    }
                }
                Err(invalid) => self.refuse(&layout, &record, invalid)?,
            }
            let checked = (self.rows + self.rejected) as u64;
            let due = match self.opts.progress_rows {
                Some(n) => checked.is_multiple_of(n),
                None => {
                    checked.is_multiple_of(1024)
                        && !self.opts.progress_every.is_zero()
                        && self.last_progress.elapsed() >= self.opts.progress_every
                }
            };
            if due {
                self.progress("loading")?;
            }
        }
        rows.finish(&mut copy)
            .context("while sending rows to the database")?;
        copy.finish().context("while finishing the COPY")?;
        self.copy_tallies(&mut tx, &tables, &mut groups, &mut cells)?;
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
        self.progress("finishing")?;
        let sha = csv.into_inner().sha256_hex();
        let (pairs, s_trips, s_first, s_last) = stats.columns();
        let s_region: Vec<i16> = pairs.iter().map(|p| p.0).collect();
        let s_source: Vec<i16> = pairs.iter().map(|p| p.1).collect();
        let (mut w_region, mut w_week, mut w_trips) = (Vec::new(), Vec::new(), Vec::new());
        for (&(region, week), &n) in &region_weeks {
            w_region.push(region);
            w_week.push(week);
            w_trips.push(n);
        }
        let earlier: Option<i32> = tx
            .query_one(
                "SELECT ingest_finish($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                &[
                    &self.job,
                    &sha,
                    &self.rows,
                    &self.rejected,
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
            .context("while committing the trips")?
            .get(0);
        match earlier {
            Some(earlier) => {
                tx.rollback()?;
                Ok(Some((earlier, sha)))
            }
            None => {
                self.committing = true;
                tx.commit().context("while committing the trips")?;
                Ok(None)
            }
        }
    }

    /// The key of a region or datasource name, from this file's cache or the database (dimension_id in
    /// db/002_names.sql, which adds a new name). The database keeps at most 32,767 names of each; past
    /// that, the file fails naming the record.
    fn key(&mut self, dim: Dim, name: &str, layout: &Layout, record: &ByteRecord) -> Result<i16> {
        let cache = match dim {
            Dim::Region => &mut self.keys.regions,
            Dim::Datasource => &mut self.keys.datasources,
        };
        if let Some(&k) = cache.get(name) {
            return Ok(k);
        }
        let line = record.position().map_or(0, |p| p.line());
        let at = format!(
            "{}:{line}: column {} ({})",
            self.name,
            layout.index[dim.column()] + 1,
            parse::COLUMNS[dim.column()]
        );
        let shown = parse::quoted(name.as_bytes(), 80);
        let k: i16 = match self.control.query_one(
            "SELECT dimension_id($1::text::regclass, $2)",
            &[&dim.table(), &name],
        ) {
            Ok(row) => row.get(0),
            Err(e) => {
                if let Some(db) = e.as_db_error()
                    && *db.code() == postgres::error::SqlState::PROGRAM_LIMIT_EXCEEDED
                {
                    return Err(anyhow!(
                        "{at}: cannot add the name {shown}: {}; {}. Nothing of this file was committed",
                        db.message(),
                        db.hint().unwrap_or("")
                    ));
                }
                return Err(anyhow!(e).context(format!("{at}: while registering the name {shown}")));
            }
        };
        cache.insert(name.to_string(), k);
        Ok(k)
    }

    /// Sends the group tally and the cell tally to the database, and empties both. A group or cell met
    /// again later in the file gets another row; readers add them up and merges fold them.
    fn copy_tallies(
        &self,
        tx: &mut postgres::Transaction<'_>,
        tables: &Pieces,
        groups: &mut GroupTally,
        cells: &mut CellTally,
    ) -> Result<()> {
        let started = Instant::now();
        let job = self.job;
        let (tallied, cell_weeks) = (groups.0.len(), cells.0.len());
        let copy = copy_into(tx, &tables.groups, true)?;
        copy_rows(
            copy,
            "group tallies",
            groups.sorted_groups(),
            |rows, (key, trips, first, last)| {
                let trips = i32::try_from(trips)
                    .context("a group holds more than 2^31 trips of one file; split the file")?;
                rows.group(job, key, trips, first, last);
                Ok(())
            },
        )?;
        groups.0.clear();
        let copy = copy_into(tx, &tables.cells, true)?;
        copy_rows(
            copy,
            "cell tallies",
            cells.drain_sorted(),
            |rows, (key, trips, weeks, week_trips)| {
                rows.cell(job, &key, trips, &weeks, &week_trips);
                Ok(())
            },
        )?;
        log::debug!(
            "sent the groups of {tallied} trips and {cell_weeks} cell-weeks in {:.2} s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
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
        relay(self.control, self.printer, self.job)?;
        Ok(())
    }
}

/// Starts a binary COPY; `freeze` for a table created in this transaction (rows are written frozen).
fn copy_into<'a>(
    tx: &'a mut postgres::Transaction<'_>,
    table: &str,
    freeze: bool,
) -> Result<postgres::CopyInWriter<'a>> {
    let freeze = if freeze { ", FREEZE" } else { "" };
    tx.copy_in(&format!("COPY {table} FROM STDIN (FORMAT binary{freeze})"))
        .with_context(|| format!("while starting the COPY into {table}"))
}

/// Encodes `items` with `encode` into an open COPY and finishes it; `what` names the rows in errors.
fn copy_rows<T>(
    mut copy: postgres::CopyInWriter<'_>,
    what: &str,
    items: impl IntoIterator<Item = T>,
    mut encode: impl FnMut(&mut RowEncoder, T) -> Result<()>,
) -> Result<()> {
    let sending = || format!("while sending {what} to the database");
    let mut rows = RowEncoder::new();
    for item in items {
        encode(&mut rows, item)?;
        if rows.is_full() {
            rows.write_to(&mut copy).with_context(sending)?;
        }
    }
    rows.finish(&mut copy).with_context(sending)?;
    copy.finish()
        .with_context(|| format!("while finishing the COPY of {what}"))?;
    Ok(())
}

fn open_rejects(opts: &Options, name: &str, job: i32, layout: &Layout) -> Result<Rejects> {
    let stem = if name == "-" {
        "stdin".to_string()
    } else {
        Path::new(name)
            .file_name()
            .map_or("input".into(), |f| f.to_string_lossy().into_owned())
    };
    let dir = opts.rejects_dir.canonicalize().with_context(|| {
        format!(
            "cannot use the rejects folder {}",
            opts.rejects_dir.display()
        )
    })?;
    let path = dir.join(format!("{stem}.job{job}.rejects.csv"));
    let mut writer = csv::WriterBuilder::new()
        .flexible(true)
        .from_path(&path)
        .with_context(|| format!("cannot create the rejects file {}", path.display()))?;
    let mut header = vec!["line".to_string(), "reason".to_string()];
    let mut names = vec![String::new(); layout.width];
    for (c, &i) in layout.index.iter().enumerate() {
        names[i] = parse::COLUMNS[c].to_string();
    }
    let mut ignored = layout.ignored.iter();
    for n in names.iter_mut().filter(|n| n.is_empty()) {
        *n = ignored.next().cloned().unwrap_or_default();
    }
    header.extend(names);
    writer
        .write_record(&header)
        .with_context(|| format!("while writing {}", path.display()))?;
    Ok(Rejects { path, writer })
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(region: i16, bucket: i16) -> GroupRow {
        GroupRow {
            region,
            origin: [1, 2],
            destination: [3, 4],
            bucket,
            datasource: 1,
        }
    }

    #[test]
    fn cells_are_half_open_from_the_south_west_and_keys_run_row_by_row() {
        // Level 2 is 0.01 degree: 100,000 units of 1e-7 degree; 36,001 cells per row.
        assert_eq!(cell_key(2, 0, 0), 9_000 * 36_001 + 18_000);
        assert_eq!(cell_key(2, 99_999, 99_999), cell_key(2, 0, 0));
        assert_eq!(cell_key(2, 100_000, 0), cell_key(2, 0, 0) + 1);
        assert_eq!(cell_key(2, -1, 0), cell_key(2, 0, 0) - 1);
        assert_eq!(cell_key(2, 0, -1), cell_key(2, 0, 0) - 36_001);
        assert_eq!(cell_key(2, -1_800_000_000, -900_000_000), 0);
        assert_eq!(cell_key(1, 1_800_000_000, 900_000_000), 1_801 * 3_601 - 1);
    }

    #[test]
    fn weeks_start_on_monday_2000_01_03_and_go_back_before_it() {
        let day = |d: i64| d * DAY_US;
        assert_eq!(week_of(day(2)), 0); // Monday 2000-01-03 00:00
        assert_eq!(week_of(day(9) - 1), 0); // the Sunday after, 23:59:59.999999
        assert_eq!(week_of(day(9)), 1);
        assert_eq!(week_of(day(2) - 1), -1); // Sunday 2000-01-02
        assert_eq!(week_of(day(-5)), -1); // Monday 1999-12-27
        assert_eq!(week_of(day(-6)), -2);
    }

    #[test]
    fn the_cell_tally_gives_each_cell_once_with_its_weeks_in_order() {
        let trip = |lon: i32, day: i64| parse::Trip {
            region: "r",
            datasource: "d",
            departed_at: day * DAY_US,
            origin: [lon, 0],
            destination: [0, 0],
        };
        let mut tally = CellTally::default();
        for (lon, day) in [(5, 30), (7, 2), (5, 3), (200_000, 2)] {
            let t = trip(lon, day);
            tally.add(&t, week_of(t.departed_at));
        }
        let sent = tally.drain_sorted();
        assert!(tally.0.is_empty());
        let origins_l2: Vec<_> = sent
            .iter()
            .filter(|c| c.0.side == 1 && c.0.level == 2)
            .map(|c| (c.0.cell - cell_key(2, 0, 0), c.1, c.2.clone(), c.3.clone()))
            .collect();
        assert_eq!(
            origins_l2,
            [(0, 3, vec![0, 4], vec![2, 1]), (2, 1, vec![0], vec![1])]
        );
        let destinations_l1: Vec<_> = sent
            .iter()
            .filter(|c| c.0.side == 2 && c.0.level == 1)
            .map(|c| (c.1, c.2.clone(), c.3.clone()))
            .collect();
        assert_eq!(destinations_l1, [(4, vec![0, 4], vec![3, 1])]);
    }

    #[test]
    fn the_group_tally_gives_each_group_once_with_its_trips_first_and_last() {
        let mut tally = GroupTally::default();
        for (region, bucket, departed_at) in
            [(2, 8, 50), (1, 8, 30), (2, 8, 10), (1, 9, 70), (2, 8, 40)]
        {
            tally.add(group(region, bucket), departed_at);
        }
        let sent: Vec<_> = tally
            .sorted_groups()
            .map(|(g, n, first, last)| (g.region, g.bucket, n, first, last))
            .collect();
        assert_eq!(
            sent,
            [(1, 8, 1, 30, 30), (1, 9, 1, 70, 70), (2, 8, 3, 10, 50)]
        );
    }
}
