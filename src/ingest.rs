//! Loading one file as one ingest job: atomic, idempotent, with clear errors for bad records.
//!
//! Two connections are used. `control` runs in autocommit: it opens the job (and holds the job's session
//! lock, see db/003_ingest_jobs.sql), hands out region/datasource keys, and writes progress and failures,
//! all visible to others at once. `load` runs the file's single transaction: create the job's staging tables,
//! binary COPY every valid row into one, the file's group tally into another and its area points into the
//! third, its pairs of cells into trip_area_pairs, add its area cell counts to trip_area_counts, then
//! `ingest_finish` attaches the three as partitions, adds the region/datasource tally and marks the job
//! done in the same commit (db/006_ingest.sql, db/013_area_points_by_job.sql). Any error before that
//! commit rolls the whole file back.

use crate::copy::{AreaCell, CellPoints, GroupRow, RowEncoder};
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
    /// Send the group tally and the buffered area points to the database once they hold this many
    /// entries, and the pairs of cells once they hold PAIR_DAYS_PER_ENTRY times as many days, so the
    /// loader's memory stays bounded whatever the file's size.
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
    };
    let result = loader.load(load, input);
    let (rows, rejected, rejects) = (loader.rows, loader.rejected, loader.rejects.take());
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
            let error = crate::conninfo::redact(&format!("{e:#}"));
            control.execute(
                "UPDATE ingest_jobs
                    SET state = 'failed', error = $2, rows = 0, rejected = $3, finished_at = now()
                  WHERE id = $1",
                &[&job, &error, &rejected],
            )?;
            Outcome::Failed {
                job: Some(job),
                error,
            }
        }
    };
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
    control.execute(
        "SELECT pg_advisory_unlock(ingest_lock_class(), $1)",
        &[&job],
    )?;
    Ok(outcome)
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
/// which adds them to the rollups (db/005_rollups.sql).
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
/// per trip, appended, then sorted when sent so that each group's trips are side by side. A hash map of the
/// groups instead (~800k per 1M generated trips) missed the cache on nearly every trip; measured in
/// benchmarks/GROUPS.md.
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

/// The grid of similar-trip groups (db/005_rollups.sql, trip_group_grid).
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

/// Where the file's trips start and end, for the area pyramid (db/009_area_counts.sql): the points of
/// level-3 cells and the trips of each pair of level-2 cells (db/016_area_pairs.sql) until they are sent,
/// the count of each level-3 cell sent so far, and the trips of each level-2 cell per day of departure
/// (db/028_area_counts_by_day.sql).
#[derive(Default)]
struct AreaTally {
    counts: HashMap<AreaCell, i64>,
    points: HashMap<AreaCell, CellPoints>,
    /// Points held in `points`.
    buffered: usize,
    /// (origin cell x, y, destination cell x, y) at level 2 -> the day of departure of each of its trips
    /// since the pairs were last sent (db/031).
    pairs: HashMap<[i32; 4], Vec<i32>>,
    /// Days held in `pairs`.
    pair_days: usize,
    /// Level-2 cell -> its trips per day, of the points sent so far.
    days: HashMap<AreaCell, DayCounts>,
}

/// One cell's trips per day of departure (days since 2000-01-01), from its first day with trips to its
/// last.
#[derive(Default, Clone)]
struct DayCounts {
    first: i32,
    trips: Vec<i64>,
}

impl DayCounts {
    fn add(&mut self, day: i32, n: i64) {
        if self.trips.is_empty() {
            self.first = day;
        }
        if day < self.first {
            let earlier = (self.first - day) as usize;
            self.trips.splice(0..0, std::iter::repeat_n(0, earlier));
            self.first = day;
        }
        let i = (day - self.first) as usize;
        if i >= self.trips.len() {
            self.trips.resize(i + 1, 0);
        }
        self.trips[i] += n;
    }

    fn merge(&mut self, other: &DayCounts) {
        for (i, &n) in other.trips.iter().enumerate() {
            if n > 0 {
                self.add(other.first + i as i32, n);
            }
        }
    }

    /// The days with trips, and the trips departing up to the end of each: the `days` and `trips_to_day`
    /// columns of trip_area_counts.
    fn cumulative(&self) -> Result<(Vec<i32>, Vec<i32>)> {
        let (mut days, mut to_day, mut sum) = (Vec::new(), Vec::new(), 0i64);
        for (i, &n) in self.trips.iter().enumerate() {
            if n > 0 {
                sum += n;
                days.push(self.first + i as i32);
                to_day.push(i32::try_from(sum).context(CELL_OVERFLOW)?);
            }
        }
        Ok((days, to_day))
    }
}

/// The days of `departures` (days of departure, in any order) and the trips departing up to the end of
/// each: the `days` and `trips_to_day` columns of trip_area_pairs (db/030_pair_days.sql).
fn days_with_trips(departures: &[i32]) -> Result<(Vec<i32>, Vec<i32>)> {
    let mut sorted = departures.to_vec();
    sorted.sort_unstable();
    let (mut days, mut to_day) = (Vec::new(), Vec::new());
    for (i, &day) in sorted.iter().enumerate() {
        let trips = i32::try_from(i + 1).context(PAIR_OVERFLOW)?;
        if days.last() == Some(&day) {
            *to_day.last_mut().expect("a day has its count") = trips;
        } else {
            days.push(day);
            to_day.push(trips);
        }
    }
    Ok((days, to_day))
}

/// The error of a pair of cells whose trips of one file do not fit the int4 columns of trip_area_pairs.
const PAIR_OVERFLOW: &str =
    "a pair of area cells holds more than 2^31 trips of one file; split the file";

/// The error of a cell whose trips of one file do not fit the int4 columns of trip_area_counts.
const CELL_OVERFLOW: &str = "an area cell holds more than 2^31 trips of one file; split the file";

/// A pair's day takes 4 bytes, a buffered point 24: the pairs are sent when they hold this many times
/// --tally-limit days (every 10M trips by default), in less memory than the points. A pair sent several
/// times in one file has several rows until compaction merges them (db/031), which costs the server
/// about 3-6 s per 1M trips; files up to this size never need it.
const PAIR_DAYS_PER_ENTRY: usize = 5;

/// Microseconds in a day: a departure's day is its timestamp (microseconds since 2000-01-01) divided by
/// this, rounded down.
const DAY_US: i64 = 86_400_000_000;

impl AreaTally {
    fn add(&mut self, trip: &parse::Trip) {
        let level2 = |v: i32| v.div_euclid(CELL_SIZE[2]);
        let pair = [
            level2(trip.origin[0]),
            level2(trip.origin[1]),
            level2(trip.destination[0]),
            level2(trip.destination[1]),
        ];
        let day = trip.departed_at.div_euclid(DAY_US) as i32;
        self.pairs.entry(pair).or_default().push(day);
        self.pair_days += 1;
        // Each end's row carries the other end: origins for 'both', destinations since db/016.
        let ends = [
            (1, trip.origin, trip.destination),
            (2, trip.destination, trip.origin),
        ];
        for (side, [lon, lat], [other_lon, other_lat]) in ends {
            let cell = AreaCell {
                side,
                level: 3,
                x: lon.div_euclid(CELL_SIZE[3]),
                y: lat.div_euclid(CELL_SIZE[3]),
            };
            let points = self.points.entry(cell).or_default();
            points.lon.push(lon);
            points.lat.push(lat);
            points.departed_at.push(trip.departed_at);
            points.other_lon.push(other_lon);
            points.other_lat.push(other_lat);
            self.buffered += 1;
        }
    }

    /// Counts the buffered points into their level-3 cells, and their departures into the days of the
    /// level-2 cell above, and empties the buffer (once it is sent).
    fn count_and_clear(&mut self) {
        for (cell, points) in self.points.drain() {
            *self.counts.entry(cell).or_default() += points.lon.len() as i64;
            let parent = AreaCell {
                level: 2,
                x: cell.x.div_euclid(CELL_SIZE[2] / CELL_SIZE[3]),
                y: cell.y.div_euclid(CELL_SIZE[2] / CELL_SIZE[3]),
                ..cell
            };
            let days = self.days.entry(parent).or_default();
            for &t in &points.departed_at {
                days.add(t.div_euclid(DAY_US) as i32, 1);
            }
        }
        self.buffered = 0;
    }

    /// The counts of every level: level 3 as counted, levels 2 and 1 summed from it.
    fn all_counts(&self) -> HashMap<AreaCell, i64> {
        let mut all = self.counts.clone();
        for (cell, &n) in &self.counts {
            for level in 1..=2 {
                let parent = AreaCell {
                    level,
                    x: cell.x.div_euclid(CELL_SIZE[level as usize] / CELL_SIZE[3]),
                    y: cell.y.div_euclid(CELL_SIZE[level as usize] / CELL_SIZE[3]),
                    ..*cell
                };
                *all.entry(parent).or_default() += n;
            }
        }
        all
    }

    /// The trips per day of every level-2 cell, as counted, and of every level-1 cell, summed from them.
    fn all_days(&self) -> HashMap<AreaCell, DayCounts> {
        let mut all = self.days.clone();
        for (cell, days) in &self.days {
            let parent = AreaCell {
                level: 1,
                x: cell.x.div_euclid(CELL_SIZE[1] / CELL_SIZE[2]),
                y: cell.y.div_euclid(CELL_SIZE[1] / CELL_SIZE[2]),
                ..*cell
            };
            all.entry(parent).or_default().merge(days);
        }
        all
    }
}

/// The cell size of each level of the area pyramid, in 1e-7 degree (trip_area_cell_size in
/// db/009_area_counts.sql); index 0 is unused.
const CELL_SIZE: [i32; 4] = [0, 1_000_000, 100_000, 10_000];

/// Keys of region and datasource names met so far in this file, so the database is asked once per name.
#[derive(Default)]
struct Keys {
    regions: HashMap<String, i16>,
    datasources: HashMap<String, i16>,
}

fn key(
    control: &mut Client,
    cache: &mut HashMap<String, i16>,
    table: &str,
    name: &str,
) -> Result<i16> {
    if let Some(&k) = cache.get(name) {
        return Ok(k);
    }
    let k: i16 = control
        .query_one(
            "SELECT dimension_id($1::text::regclass, $2)",
            &[&table, &name],
        )
        .with_context(|| format!("while registering the {table} name {name:?}"))?
        .get(0);
    cache.insert(name.to_string(), k);
    Ok(k)
}

/// The job's own tables (db/006_ingest.sql, db/013_area_points_by_job.sql), attached as partitions when
/// the load finishes.
struct Staging {
    trips: String,
    groups: String,
    points: String,
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
}

impl Loader<'_> {
    /// Runs the file's transaction. Returns `Some((earlier job, sha))` when the content was already loaded
    /// (the transaction is then rolled back), `None` when the file's trips are committed.
    fn load(&mut self, load: &mut Client, input: Input) -> Result<Option<(i32, String)>> {
        let mut tx = load.transaction()?;
        let staging = tx
            .query_one(
                "SELECT trips::text, groups::text, ingest_job_table('trip_area_points', $1)
                   FROM ingest_create_staging($1)",
                &[&self.job],
            )
            .context("while creating the staging tables")?;
        let tables = Staging {
            trips: staging.get(0),
            groups: staging.get(1),
            points: staging.get(2),
        };
        let mut copy = copy_into(&mut tx, &tables.trips, true)?;
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(1 << 18)
            .from_reader(input.reader);
        let mut record = ByteRecord::new();
        let name = self.name;
        let read = |csv: &mut csv::Reader<_>, record: &mut ByteRecord| {
            csv.read_byte_record(record)
                .with_context(|| format!("while reading {name}"))
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
        let mut areas = AreaTally::default();
        while read(&mut csv, &mut record)? {
            match parse::trip(&layout, &record) {
                Ok(trip) => {
                    let region = key(self.control, &mut self.keys.regions, "regions", trip.region)?;
                    let source = key(
                        self.control,
                        &mut self.keys.datasources,
                        "datasources",
                        trip.datasource,
                    )?;
                    rows.trip(self.job, region, source, &trip);
                    stats.add((region, source), trip.departed_at);
                    let cells = |p: [i32; 2]| [grid.cell(p[0]), grid.cell(p[1])];
                    let group = GroupRow {
                        region,
                        origin: cells(trip.origin),
                        destination: cells(trip.destination),
                        bucket: grid.bucket(trip.departed_at),
                        datasource: source,
                    };
                    groups.add(group, trip.departed_at);
                    areas.add(&trip);
                    self.rows += 1;
                    if rows.is_full() {
                        rows.write_to(&mut copy)
                            .context("while sending rows to the database")?;
                    }
                    if groups.0.len().max(areas.buffered) >= self.opts.tally_limit {
                        // Either one full sends both, each whole (with a limit on their sum, a 1M-trip
                        // file sent its points in two COPYs and its groups twice over). One COPY at a
                        // time per connection: close the trips' COPY, send the tallies, open it again.
                        rows.finish(&mut copy)
                            .context("while sending rows to the database")?;
                        copy.finish().context("while finishing the COPY")?;
                        self.copy_tallies(&mut tx, &tables, &mut groups, &mut areas)?;
                        if areas.pair_days >= PAIR_DAYS_PER_ENTRY * self.opts.tally_limit {
                            self.copy_pairs(&mut tx, &mut areas)?;
                        }
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
        self.copy_tallies(&mut tx, &tables, &mut groups, &mut areas)?;
        self.copy_pairs(&mut tx, &mut areas)?;
        self.copy_area_counts(&mut tx, &areas)?;
        if self.rows == 0 {
            log::warn!("{}: no trips in the file (only a header)", self.name);
        }
        if let Some(r) = &mut self.rejects {
            r.writer
                .flush()
                .with_context(|| format!("while writing {}", r.path.display()))?;
        }
        self.progress("finishing")?;
        let sha = csv.into_inner().sha256_hex();
        let (pairs, s_trips, s_first, s_last) = stats.columns();
        let s_region: Vec<i16> = pairs.iter().map(|p| p.0).collect();
        let s_source: Vec<i16> = pairs.iter().map(|p| p.1).collect();
        let earlier: Option<i32> = tx
            .query_one(
                "SELECT ingest_finish($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
                tx.commit().context("while committing the trips")?;
                Ok(None)
            }
        }
    }

    /// Sends the group tally and the buffered area points to the database, and empties both. A group or
    /// cell met again later gets another row; readers add them up.
    fn copy_tallies(
        &self,
        tx: &mut postgres::Transaction<'_>,
        tables: &Staging,
        groups: &mut GroupTally,
        areas: &mut AreaTally,
    ) -> Result<()> {
        let started = Instant::now();
        let (tallied, points) = (groups.0.len(), areas.buffered);
        let mut group_rows = 0;
        let copy = copy_into(tx, &tables.groups, true)?;
        let job = self.job;
        copy_rows(
            copy,
            "group tallies",
            groups.sorted_groups(),
            |rows, (key, trips, first, last)| {
                let trips = i32::try_from(trips)
                    .context("a group holds more than 2^31 trips of one file; split the file")?;
                rows.group(job, key, trips, first, last);
                group_rows += 1;
                Ok(())
            },
        )?;
        groups.0.clear();
        let groups_done = started.elapsed().as_secs_f64();
        let copy = copy_into(tx, &tables.points, true)?;
        copy_rows(copy, "area points", &areas.points, |rows, (key, points)| {
            rows.area_points(job, key, points);
            Ok(())
        })?;
        areas.count_and_clear();
        log::debug!(
            "sent {group_rows} group rows ({tallied} trips) in {groups_done:.2} s and {points} area points in {:.2} s",
            started.elapsed().as_secs_f64() - groups_done
        );
        Ok(())
    }

    /// Sends the pairs of cells with the days of their trips, and empties them: at the end of the file, or
    /// before they outgrow the tally limit (db/031).
    fn copy_pairs(&self, tx: &mut postgres::Transaction<'_>, areas: &mut AreaTally) -> Result<()> {
        let copy = copy_into(tx, "trip_area_pairs", false)?;
        copy_rows(
            copy,
            "area pairs",
            &areas.pairs,
            |rows, (key, departures)| {
                let (days, to_day) = days_with_trips(departures)?;
                let trips = to_day.last().copied().unwrap_or(0);
                rows.area_pair(self.job, key, trips, &days, &to_day);
                Ok(())
            },
        )?;
        log::debug!(
            "sent {} pairs of cells ({} trips)",
            areas.pairs.len(),
            areas.pair_days
        );
        areas.pairs.clear();
        areas.pair_days = 0;
        Ok(())
    }

    /// Sends the file's area counts (one row per cell with trips).
    fn copy_area_counts(
        &self,
        tx: &mut postgres::Transaction<'_>,
        areas: &AreaTally,
    ) -> Result<()> {
        let days = areas.all_days();
        let copy = copy_into(tx, "trip_area_counts", false)?;
        copy_rows(
            copy,
            "area counts",
            &areas.all_counts(),
            |rows, (key, &trips)| {
                let trips = i32::try_from(trips).context(CELL_OVERFLOW)?;
                // Levels 1 and 2 keep their trips per day; level 3 has the points' departures.
                let (days, to_day) = match days.get(key) {
                    Some(d) if key.level < 3 => d.cumulative()?,
                    _ => (Vec::new(), Vec::new()),
                };
                rows.area_count(self.job, key, trips, &days, &to_day);
                Ok(())
            },
        )
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
    fn day_counts_give_the_days_with_trips_and_the_trips_up_to_each() {
        let mut a = DayCounts::default();
        for day in [7, 7, 9, 5] {
            a.add(day, 1); // day 5 comes before the first: the counts move up
        }
        assert_eq!(a.cumulative().unwrap(), (vec![5, 7, 9], vec![1, 3, 4]));
        let mut b = DayCounts::default();
        b.add(12, 2);
        b.add(-3, 1); // before 2000-01-01
        b.merge(&a);
        assert_eq!(
            b.cumulative().unwrap(),
            (vec![-3, 5, 7, 9, 12], vec![1, 2, 4, 5, 7])
        );
    }

    #[test]
    fn a_pair_gives_the_days_with_trips_and_the_trips_up_to_each() {
        let days = days_with_trips(&[9, 5, 7, -3, 7, 9, 7]).unwrap();
        assert_eq!(days, (vec![-3, 5, 7, 9], vec![1, 2, 5, 7]));
        assert_eq!(days_with_trips(&[]).unwrap(), (vec![], vec![]));
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
