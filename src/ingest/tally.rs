//! What the loader counts while it streams, handed to the database with the file's trips: trips per
//! cell and week (trip_cells) and per key of a small rollup (db/006_tallies.sql).

use crate::copy::{CellKey, CellWeek};
use crate::parse;
use rustc_hash::FxHashMap as HashMap;

/// region_datasource_stats' rows as parallel arrays: region, datasource, trips, first and last departure
/// (microseconds since 2000-01-01).
pub type StatsColumns = (Vec<i16>, Vec<i16>, Vec<i64>, Vec<i64>, Vec<i64>);

/// Everything counted while a file streams, besides the trips themselves.
pub struct Tallies {
    /// Per region and datasource: trips, first and last departure (region_datasource_stats).
    stats: Tally<(i16, i16)>,
    /// Per region and week (region_weeks).
    region_weeks: HashMap<(i16, i32), i64>,
    /// Per cell and week (trip_cells), sent whenever large.
    pub cells: CellTally,
}

impl Tallies {
    pub fn new() -> Tallies {
        Tallies {
            stats: Tally::new(),
            region_weeks: HashMap::default(),
            cells: CellTally::default(),
        }
    }

    /// Counts one trip, whose names have the keys `region` and `source`.
    pub fn add(&mut self, region: i16, source: i16, trip: &parse::Trip) {
        self.stats.add((region, source), trip.departed_at);
        let week = week_of(trip.departed_at);
        self.cells.add(trip, week);
        *self.region_weeks.entry((region, week)).or_default() += 1;
    }

    /// Adds another file's counts to these (the files of a batch: src/ingest/mod.rs).
    pub fn absorb(&mut self, other: Tallies) {
        for (key, (n, first, last)) in other.stats.0 {
            self.stats.add_many(key, n, first, last);
        }
        for (key, n) in other.region_weeks {
            *self.region_weeks.entry(key).or_default() += n;
        }
        for (key, n) in other.cells.0 {
            *self.cells.0.entry(key).or_default() += n;
        }
    }

    /// Entries held by the tally that is sent whenever large.
    pub fn len(&self) -> usize {
        self.cells.0.len()
    }

    /// region_datasource_stats' rows as the parallel arrays ingest_finish takes.
    pub fn stats_columns(&self) -> StatsColumns {
        let (pairs, trips, first, last) = self.stats.columns();
        let region = pairs.iter().map(|p| p.0).collect();
        let source = pairs.iter().map(|p| p.1).collect();
        (region, source, trips, first, last)
    }

    /// region_weeks' rows as parallel arrays.
    pub fn region_week_columns(&self) -> (Vec<i16>, Vec<i32>, Vec<i64>) {
        let mut cols = (Vec::new(), Vec::new(), Vec::new());
        for (&(region, week), &n) in &self.region_weeks {
            cols.0.push(region);
            cols.1.push(week);
            cols.2.push(n);
        }
        cols
    }
}

/// Trips and first and last departure per key, tallied while streaming and handed to `ingest_finish`,
/// which adds them to the rollups (db/006_tallies.sql).
pub struct Tally<K>(HashMap<K, (i64, i64, i64)>);

impl<K: std::hash::Hash + Eq> Tally<K> {
    pub fn new() -> Self {
        Tally(HashMap::default())
    }

    pub fn add(&mut self, key: K, departed_at: i64) {
        self.add_many(key, 1, departed_at, departed_at);
    }

    /// Counts `n` trips departing from `first` to `last`.
    pub fn add_many(&mut self, key: K, n: i64, first: i64, last: i64) {
        let e = self.0.entry(key).or_insert((0, first, last));
        e.0 += n;
        e.1 = e.1.min(first);
        e.2 = e.2.max(last);
    }

    /// The keys, and the counts, firsts and lasts as parallel columns.
    pub fn columns(&self) -> (Vec<&K>, Vec<i64>, Vec<i64>, Vec<i64>) {
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

/// Trips per cell and week, for each end of the trip and each level of the grid (db/004_cells.sql,
/// trip_cells in db/006_tallies.sql): one entry per (cell, week) with trips, so memory follows the
/// trips, never the span of their dates.
#[derive(Default)]
pub struct CellTally(pub HashMap<(CellKey, i32), i32>);

impl CellTally {
    pub fn add(&mut self, trip: &parse::Trip, week: i32) {
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

    /// The entries in order of cell, then week (so that each cell's weeks are together and ascending);
    /// empties the tally, whose table is freed before the entries are sorted.
    pub fn drain_sorted(&mut self) -> Vec<CellWeek> {
        let mut entries: Vec<CellWeek> = std::mem::take(&mut self.0)
            .into_iter()
            .map(|((key, week), n)| (key, week, n))
            .collect();
        entries.sort_unstable();
        entries
    }
}

/// The cell size of levels 1 and 2, in 1e-7 degree, and their cells per degree (trip_cell_size and
/// trip_cells_per_degree in db/004_cells.sql); index 0 is unused.
const CELL_SIZE: [i32; 3] = [0, 1_000_000, 100_000];
const CELLS_PER_DEGREE: [i32; 3] = [0, 10, 100];

/// The key of the cell holding (lon, lat) at `level`: trip_cell() of db/004_cells.sql.
pub fn cell_key(level: u8, lon: i32, lat: i32) -> i32 {
    let (size, per_degree) = (CELL_SIZE[level as usize], CELLS_PER_DEGREE[level as usize]);
    (lat.div_euclid(size) + 90 * per_degree) * (360 * per_degree + 1)
        + lon.div_euclid(size)
        + 180 * per_degree
}

/// Microseconds in a day.
const DAY_US: i64 = 86_400_000_000;

/// The week of a departure (microseconds since 2000-01-01): trip_week() of db/004_cells.sql, weeks from
/// Monday 2000-01-03.
pub fn week_of(departed_at: i64) -> i32 {
    (departed_at.div_euclid(DAY_US) - 2).div_euclid(7) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_cell_tally_gives_its_entries_by_cell_then_week() {
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
        let cell = |side, level, cell| CellKey { side, level, cell };
        let origins_l2: Vec<_> = sent
            .iter()
            .filter(|c| c.0.side == 1 && c.0.level == 2)
            .copied()
            .collect();
        let (o0, o2) = (
            cell(1, 2, cell_key(2, 0, 0)),
            cell(1, 2, cell_key(2, 0, 0) + 2),
        );
        assert!(o0 < o2);
        assert_eq!(origins_l2, [(o0, 0, 2), (o0, 4, 1), (o2, 0, 1)]);
        let destinations_l1: Vec<_> = sent
            .iter()
            .filter(|c| c.0.side == 2 && c.0.level == 1)
            .map(|c| (c.1, c.2))
            .collect();
        assert_eq!(destinations_l1, [(0, 3), (4, 1)]);
    }
}
