//! Hand-encoding rows in PostgreSQL's binary COPY format.
//!
//! Rows are appended to one large buffer that the loader writes through `CopyInWriter` whenever it passes
//! [`FLUSH_AT`]; there is no per-row dynamic dispatch and no small write. The loader encodes five kinds of
//! rows: trips (`trip_rows`, db/004_trips.sql), group tallies (`trip_group_counts`, db/005_rollups.sql) and
//! the area pyramid (`trip_area_counts`, `trip_area_points`, db/009_area_counts.sql, and
//! `trip_area_pairs`, db/016_area_pairs.sql); each is a sequence of big-endian fields, each preceded by
//! its length.

use crate::parse::Trip;
use std::io::{self, Write};

/// Buffer size at which the loader hands the rows to the connection.
pub const FLUSH_AT: usize = 1 << 20;

const INT4_OID: u32 = 23;
const TIMESTAMP_OID: u32 = 1114;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

pub struct RowEncoder {
    buf: Vec<u8>,
}

impl RowEncoder {
    /// A buffer that starts with the COPY header.
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(FLUSH_AT + 256);
        buf.extend_from_slice(SIGNATURE);
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
        buf.extend_from_slice(&0i32.to_be_bytes()); // no header extension
        RowEncoder { buf }
    }

    /// A `trip_rows` row: job, region, datasource, departure (int8 microseconds since 2000-01-01: the binary
    /// `timestamp`), then origin and destination as int4 1e-7 degrees.
    pub fn trip(&mut self, job: i32, region: i16, datasource: i16, trip: &Trip) {
        self.start(8);
        self.field(&job.to_be_bytes());
        self.field(&region.to_be_bytes());
        self.field(&datasource.to_be_bytes());
        self.field(&trip.departed_at.to_be_bytes());
        for v in trip.origin.iter().chain(&trip.destination) {
            self.field(&v.to_be_bytes());
        }
    }

    /// A `trip_group_counts` row: job, region, bucket, datasource, the four cell indices, trips, first and
    /// last departure.
    pub fn group(&mut self, job: i32, key: &GroupRow, trips: i32, first: i64, last: i64) {
        self.start(11);
        self.field(&job.to_be_bytes());
        self.field(&key.region.to_be_bytes());
        self.field(&key.bucket.to_be_bytes());
        self.field(&key.datasource.to_be_bytes());
        for v in key.origin.iter().chain(&key.destination) {
            self.field(&v.to_be_bytes());
        }
        self.field(&trips.to_be_bytes());
        self.field(&first.to_be_bytes());
        self.field(&last.to_be_bytes());
    }

    /// A `trip_area_counts` row: job, side, level, cell, trips, and for levels 1 and 2 the days with
    /// trips and the trips up to each (db/028_area_counts_by_day.sql; NULL when empty, as at level 3).
    pub fn area_count(
        &mut self,
        job: i32,
        key: &AreaCell,
        trips: i32,
        days: &[i32],
        to_day: &[i32],
    ) {
        self.start(8);
        self.field(&job.to_be_bytes());
        self.field(&key.side.to_be_bytes());
        self.field(&key.level.to_be_bytes());
        self.field(&key.x.to_be_bytes());
        self.field(&key.y.to_be_bytes());
        self.field(&trips.to_be_bytes());
        self.array(INT4_OID, days.iter().map(|d| d.to_be_bytes()));
        self.array(INT4_OID, to_day.iter().map(|d| d.to_be_bytes()));
    }

    /// A `trip_area_pairs` row (db/016_area_pairs.sql): job, origin cell, destination cell, trips, and
    /// the days with departures with the trips up to each (db/030_pair_days.sql).
    pub fn area_pair(
        &mut self,
        job: i32,
        key: &[i32; 4],
        trips: i32,
        days: &[i32],
        to_day: &[i32],
    ) {
        self.start(8);
        self.field(&job.to_be_bytes());
        for v in key {
            self.field(&v.to_be_bytes());
        }
        self.field(&trips.to_be_bytes());
        self.array(INT4_OID, days.iter().map(|d| d.to_be_bytes()));
        self.array(INT4_OID, to_day.iter().map(|d| d.to_be_bytes()));
    }

    /// A `trip_area_points` row: job, side, level-3 cell, trips, then the points as arrays in order of
    /// longitude (ties in the order they came), the latitudes once more in their own order with their
    /// longitudes beside them, and the other ends in order of longitude (then latitude), for the binary
    /// searches of db/015_box_counts.sql, db/025_area_points_by_latitude.sql and
    /// db/026_area_points_other_ends_by_longitude.sql, and the departures in their own order
    /// (db/028_area_counts_by_day.sql). The other end's arrays are NULL when empty.
    pub fn area_points(&mut self, job: i32, key: &AreaCell, points: &CellPoints) {
        let mut order: Vec<usize> = (0..points.lon.len()).collect();
        order.sort_by_key(|&i| points.lon[i]); // stable
        // No other ends given (the loader always gives them since db/016): the other arrays are NULL.
        let other = if points.other_lon.is_empty() {
            &[][..]
        } else {
            &order[..]
        };
        let by_lat = sorted_pairs(&points.lat, &points.lon);
        let others = sorted_pairs(&points.other_lon, &points.other_lat);
        let mut departures = points.departed_at.clone();
        departures.sort_unstable();
        self.start(15);
        self.field(&job.to_be_bytes());
        self.field(&key.side.to_be_bytes());
        self.field(&key.x.to_be_bytes());
        self.field(&key.y.to_be_bytes());
        self.field(&(points.lon.len() as i32).to_be_bytes());
        self.array(INT4_OID, order.iter().map(|&i| points.lon[i].to_be_bytes()));
        self.array(INT4_OID, order.iter().map(|&i| points.lat[i].to_be_bytes()));
        self.array(
            TIMESTAMP_OID,
            order.iter().map(|&i| points.departed_at[i].to_be_bytes()),
        );
        self.array(
            INT4_OID,
            other.iter().map(|&i| points.other_lon[i].to_be_bytes()),
        );
        self.array(
            INT4_OID,
            other.iter().map(|&i| points.other_lat[i].to_be_bytes()),
        );
        self.array(INT4_OID, by_lat.iter().map(|&(lat, _)| lat.to_be_bytes()));
        self.array(INT4_OID, by_lat.iter().map(|&(_, lon)| lon.to_be_bytes()));
        self.array(INT4_OID, others.iter().map(|&(lon, _)| lon.to_be_bytes()));
        self.array(INT4_OID, others.iter().map(|&(_, lat)| lat.to_be_bytes()));
        self.array(TIMESTAMP_OID, departures.iter().map(|t| t.to_be_bytes()));
    }

    /// A one-dimensional array without NULL elements (binary array format: dimensions, flags, element
    /// type, length and lower bound, then each element with its length); no elements is a NULL field.
    fn array<const N: usize>(&mut self, oid: u32, values: impl ExactSizeIterator<Item = [u8; N]>) {
        let n = values.len();
        if n == 0 {
            self.buf.extend_from_slice(&(-1i32).to_be_bytes());
            return;
        }
        let len = 20 + n * (4 + N);
        self.buf.extend_from_slice(&(len as i32).to_be_bytes());
        self.buf.extend_from_slice(&1i32.to_be_bytes()); // dimensions
        self.buf.extend_from_slice(&0i32.to_be_bytes()); // no NULL elements
        self.buf.extend_from_slice(&oid.to_be_bytes());
        self.buf.extend_from_slice(&(n as i32).to_be_bytes());
        self.buf.extend_from_slice(&1i32.to_be_bytes()); // lower bound
        for v in values {
            self.buf.extend_from_slice(&(N as i32).to_be_bytes());
            self.buf.extend_from_slice(&v);
        }
    }

    fn start(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }

    fn field(&mut self, value: &[u8]) {
        self.buf
            .extend_from_slice(&(value.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(value);
    }

    pub fn is_full(&self) -> bool {
        self.buf.len() >= FLUSH_AT
    }

    /// Writes the rows encoded so far and empties the buffer.
    pub fn write_to(&mut self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// Writes the remaining rows and the COPY trailer.
    pub fn finish(mut self, out: &mut impl Write) -> io::Result<()> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.write_to(out)
    }
}

/// The key of a similar-trip group of one datasource: region, origin and destination cells, time-of-day
/// bucket.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
pub struct GroupRow {
    pub region: i16,
    pub origin: [i32; 2],
    pub destination: [i32; 2],
    pub bucket: i16,
    pub datasource: i16,
}

/// A cell of the area pyramid (db/009_area_counts.sql): which end of the trip, level, cell indices.
#[derive(Hash, PartialEq, Eq, Clone, Copy)]
pub struct AreaCell {
    pub side: i16,
    pub level: i16,
    pub x: i32,
    pub y: i32,
}

/// The points of one level-3 cell, as parallel columns: the trips' end in the cell, their departure
/// (microseconds since 2000-01-01) and the trip's other end.
#[derive(Default)]
pub struct CellPoints {
    pub lon: Vec<i32>,
    pub lat: Vec<i32>,
    pub departed_at: Vec<i64>,
    pub other_lon: Vec<i32>,
    pub other_lat: Vec<i32>,
}

/// `(a[i], b[i])` for every i, in order of a, then b.
fn sorted_pairs(a: &[i32], b: &[i32]) -> Vec<(i32, i32)> {
    let mut pairs: Vec<(i32, i32)> = a.iter().copied().zip(b.iter().copied()).collect();
    pairs.sort_unstable();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(enc: RowEncoder) -> Vec<u8> {
        let mut out = Vec::new();
        enc.finish(&mut out).unwrap();
        out[SIGNATURE.len() + 8..].to_vec()
    }

    #[test]
    fn a_trip_row_is_laid_out_as_postgres_expects() {
        let trip = Trip {
            region: "Turin",
            datasource: "funny_car",
            departed_at: 1,
            origin: [2, -3],
            destination: [4, 5],
        };
        let mut enc = RowEncoder::new();
        enc.trip(7, 1, 2, &trip);
        let body = body(enc);
        // 2 (field count) + 3 * 4 (lengths) + 4 + 2 + 2 + 4 (length) + 8 + 4 * (4 + 4), then the trailer.
        assert_eq!(body.len(), 2 + 12 + 8 + 4 + 8 + 32 + 2);
        assert_eq!(&body[..2], &8i16.to_be_bytes());
        assert_eq!(&body[2..10], &[0, 0, 0, 4, 0, 0, 0, 7]);
        assert_eq!(&body[body.len() - 2..], &(-1i16).to_be_bytes());
    }

    #[test]
    fn a_group_row_has_eleven_fields() {
        let key = GroupRow {
            region: 1,
            origin: [2, 3],
            destination: [4, 5],
            bucket: 6,
            datasource: 7,
        };
        let mut enc = RowEncoder::new();
        enc.group(9, &key, 10, 11, 12);
        let body = body(enc);
        // field count, then 3 int2, 6 int4 and 2 int8 fields, each with its 4-byte length, then the trailer.
        assert_eq!(body.len(), 2 + 3 * 6 + 6 * 8 + 2 * 12 + 2);
        assert_eq!(&body[..2], &11i16.to_be_bytes());
    }

    #[test]
    fn an_area_points_row_is_in_order_of_longitude_with_nulls_and_sorted_latitudes_with_their_longitudes()
     {
        let key = AreaCell {
            side: 2,
            level: 3,
            x: -1,
            y: 5,
        };
        let points = CellPoints {
            lon: vec![2, 1, 2],
            lat: vec![3, 9, 4],
            departed_at: vec![5, 6, 7],
            ..CellPoints::default()
        };
        let mut enc = RowEncoder::new();
        enc.area_points(9, &key, &points);
        let body = body(enc);
        // field count; job, side, x, y, trips; two int4[3] and one timestamp[3]; two NULLs; two int4[3];
        // two NULLs (no other ends); the departures in order, timestamp[3]; trailer.
        let ints = 4 + 20 + 3 * 8;
        let stamps = 4 + 20 + 3 * 12;
        let (lon, lat) = (2 + 38, 2 + 38 + ints);
        let (nulls, lat_sorted) = (lat + ints + stamps, lat + ints + stamps + 8);
        let lon_by_lat = lat_sorted + ints;
        let departures = lon_by_lat + ints + 8;
        assert_eq!(&body[..2], &15i16.to_be_bytes());
        assert_eq!(&body[lon_by_lat + ints..][..8], &[255; 8]);
        assert_eq!(body.len(), departures + stamps + 2);
        assert_eq!(&body[lon..lon + 4], &44i32.to_be_bytes());
        assert_eq!(&body[lon + 12..lon + 16], &INT4_OID.to_be_bytes());
        assert_eq!(&body[nulls..nulls + 8], &[255; 8]);
        let elements = |at: usize, size: usize| -> Vec<i64> {
            (0..3)
                .map(|k| {
                    let v = &body[at + 24 + k * (4 + size) + 4..][..size];
                    match size {
                        4 => i32::from_be_bytes(v.try_into().unwrap()) as i64,
                        _ => i64::from_be_bytes(v.try_into().unwrap()),
                    }
                })
                .collect()
        };
        // Longitude order, ties as they came: the three parallel arrays move together.
        assert_eq!(elements(lon, 4), [1, 2, 2]);
        assert_eq!(elements(lat, 4), [9, 3, 4]);
        assert_eq!(elements(lat + ints, 8), [6, 5, 7]);
        assert_eq!(elements(lat_sorted, 4), [3, 4, 9]);
        assert_eq!(elements(lon_by_lat, 4), [2, 2, 1]);
        assert_eq!(elements(departures, 8), [5, 6, 7]);
    }

    #[test]
    fn an_area_points_row_keeps_its_other_ends_in_its_order_and_in_order_of_their_longitude() {
        let key = AreaCell {
            side: 1,
            level: 3,
            x: 0,
            y: 0,
        };
        let points = CellPoints {
            lon: vec![3, 1, 2],
            lat: vec![0, 0, 0],
            departed_at: vec![0, 0, 0],
            other_lon: vec![7, 9, 7],
            other_lat: vec![6, 5, 4],
        };
        let mut enc = RowEncoder::new();
        enc.area_points(9, &key, &points);
        let body = body(enc);
        // The 15 fields: 5 scalars, then ten arrays of three, the third and the last of timestamps.
        let ints = 4 + 20 + 3 * 8;
        let stamps = 4 + 20 + 3 * 12;
        let array = |k: usize| 2 + 38 + k * ints + if k > 2 { stamps - ints } else { 0 };
        let elements = |at: usize| -> Vec<i32> {
            (0..3)
                .map(|k| i32::from_be_bytes(body[at + 24 + k * 8 + 4..][..4].try_into().unwrap()))
                .collect()
        };
        assert_eq!(&body[..2], &15i16.to_be_bytes());
        assert_eq!(body.len(), array(9) + stamps + 2);
        assert_eq!(elements(array(0)), [1, 2, 3]);
        // other_lon, other_lat: beside their points, in longitude order.
        assert_eq!(elements(array(3)), [9, 7, 7]);
        assert_eq!(elements(array(4)), [5, 4, 6]);
        // other_lon_sorted, other_lat_by_other_lon: by longitude, then latitude.
        assert_eq!(elements(array(7)), [7, 7, 9]);
        assert_eq!(elements(array(8)), [4, 6, 5]);
    }
}
