//! Hand-encoding rows in PostgreSQL's binary COPY format.
//!
//! Rows are appended to one large buffer that is handed to the COPY whenever it passes [`FLUSH_AT`]; there
//! is no per-row dynamic dispatch and no small write. The loader encodes two kinds of rows, each a
//! sequence of big-endian fields preceded by their lengths: trips (`trip_rows`, db/005_trips.sql) and the
//! cell tally (`trip_cells`, db/006_tallies.sql).

use crate::parse::Trip;

/// Buffer size at which the loader hands the rows to the connection.
pub const FLUSH_AT: usize = 1 << 20;

const INT4_OID: u32 = 23;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

pub struct RowEncoder {
    buf: Vec<u8>,
}

/// A trip as a `trip_rows` row holds it: its names as keys (db/002_names.sql).
#[derive(Clone, Copy)]
pub struct TripRow {
    pub region: i16,
    pub datasource: i16,
    /// Microseconds since 2000-01-01 00:00:00 (PostgreSQL's binary `timestamp`).
    pub departed_at: i64,
    /// (lon, lat) in units of 1e-7 degree.
    pub origin: [i32; 2],
    pub destination: [i32; 2],
}

impl TripRow {
    pub fn new(region: i16, datasource: i16, trip: &Trip) -> TripRow {
        TripRow {
            region,
            datasource,
            departed_at: trip.departed_at,
            origin: trip.origin,
            destination: trip.destination,
        }
    }
}

impl RowEncoder {
    /// A buffer that starts with the COPY header.
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(FLUSH_AT + 256);
        buf.extend_from_slice(&header());
        RowEncoder { buf }
    }

    /// A `trip_rows` row: job, region, datasource, departure (int8 microseconds since 2000-01-01: the binary
    /// `timestamp`), then origin and destination as int4 1e-7 degrees.
    pub fn trip(&mut self, job: i32, trip: &TripRow) {
        self.start(8);
        self.field(&job.to_be_bytes());
        self.field(&trip.region.to_be_bytes());
        self.field(&trip.datasource.to_be_bytes());
        self.field(&trip.departed_at.to_be_bytes());
        for v in trip.origin.iter().chain(&trip.destination) {
            self.field(&v.to_be_bytes());
        }
    }

    /// A `trip_cells` row from the tally entries of one cell, weeks ascending: job, side, level, cell
    /// key, then the weeks and the trips of each as int4 arrays; the second is NULL when every week has
    /// one trip.
    pub fn cell(&mut self, job: i32, entries: &[CellWeek]) {
        let key = entries[0].0;
        self.start(6);
        self.field(&job.to_be_bytes());
        self.field(&i16::from(key.side).to_be_bytes());
        self.field(&i16::from(key.level).to_be_bytes());
        self.field(&key.cell.to_be_bytes());
        self.array(INT4_OID, entries.iter().map(|e| e.1.to_be_bytes()));
        if entries.iter().all(|e| e.2 == 1) {
            self.null();
        } else {
            self.array(INT4_OID, entries.iter().map(|e| e.2.to_be_bytes()));
        }
    }

    /// A one-dimensional array without NULL elements (binary array format: dimensions, flags, element
    /// type, length and lower bound, then each element with its length). Never empty here.
    fn array<const N: usize>(&mut self, oid: u32, values: impl ExactSizeIterator<Item = [u8; N]>) {
        let n = values.len();
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

    fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    fn field(&mut self, value: &[u8]) {
        self.buf
            .extend_from_slice(&(value.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(value);
    }

    pub fn is_full(&self) -> bool {
        self.buf.len() >= FLUSH_AT
    }

    /// The rows encoded so far, to be written to the COPY; the encoder goes on empty.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.buf, Vec::with_capacity(FLUSH_AT + 256))
    }

    /// The remaining rows and the COPY trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&TRAILER);
        self.buf
    }
}

/// The end of a binary COPY stream: a row of -1 fields.
pub const TRAILER: [u8; 2] = (-1i16).to_be_bytes();

/// The start of a binary COPY stream: the signature, flags (no OIDs), no header extension.
pub fn header() -> Vec<u8> {
    [SIGNATURE, &0i32.to_be_bytes(), &0i32.to_be_bytes()].concat()
}

const HEADER_LEN: usize = SIGNATURE.len() + 8;

/// The rows of a whole stream (`RowEncoder::new`, rows, `finish`), without its header and trailer, to be
/// written into another stream.
pub fn rows_of(stream: &[u8]) -> &[u8] {
    &stream[HEADER_LEN..stream.len() - TRAILER.len()]
}

/// A cell of one end of a trip (side 1 origin, 2 destination) at one level of the grid
/// (db/004_cells.sql), by its key.
#[derive(Debug, Hash, PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
pub struct CellKey {
    pub side: u8,
    pub level: u8,
    pub cell: i32,
}

/// An entry of the cell tally: a cell, a week (trip_week()), and the trips with that end in the cell
/// that week.
pub type CellWeek = (CellKey, i32, i32);

#[cfg(test)]
mod tests {
    use super::*;

    fn body(enc: RowEncoder) -> Vec<u8> {
        enc.finish()[HEADER_LEN..].to_vec()
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
        enc.trip(7, &TripRow::new(1, 2, &trip));
        let body = body(enc);
        // 2 (field count) + 3 * 4 (lengths) + 4 + 2 + 2 + 4 (length) + 8 + 4 * (4 + 4), then the trailer.
        assert_eq!(body.len(), 2 + 12 + 8 + 4 + 8 + 32 + 2);
        assert_eq!(&body[..2], &8i16.to_be_bytes());
        assert_eq!(&body[2..10], &[0, 0, 0, 4, 0, 0, 0, 7]);
        assert_eq!(&body[body.len() - 2..], &(-1i16).to_be_bytes());
    }

    #[test]
    fn a_cell_row_has_its_weeks_as_int4_arrays() {
        let key = CellKey {
            side: 2,
            level: 1,
            cell: -5,
        };
        let mut enc = RowEncoder::new();
        enc.cell(9, &[(key, -3, 4), (key, 10, 3)]);
        let body = body(enc);
        // field count; job int4, side and level int2, cell int4; two int4[2]; trailer.
        let array = 4 + 20 + 2 * 8;
        assert_eq!(&body[..2], &6i16.to_be_bytes());
        assert_eq!(body.len(), 2 + 8 + 6 + 6 + 8 + 2 * array + 2);
        let weeks = 2 + 8 + 6 + 6 + 8;
        assert_eq!(&body[weeks + 12..weeks + 16], &INT4_OID.to_be_bytes());
        assert_eq!(&body[weeks + 28..weeks + 32], &(-3i32).to_be_bytes());
        assert_eq!(
            &body[weeks + array + 28..weeks + array + 32],
            &4i32.to_be_bytes()
        );
    }

    #[test]
    fn a_cell_with_one_trip_in_each_week_sends_no_week_trips() {
        let key = CellKey {
            side: 1,
            level: 2,
            cell: 7,
        };
        let mut enc = RowEncoder::new();
        enc.cell(9, &[(key, 3, 1), (key, 10, 1), (key, 11, 1)]);
        let body = body(enc);
        let weeks = 2 + 8 + 6 + 6 + 8;
        let array = 4 + 20 + 3 * 8;
        assert_eq!(body.len(), weeks + array + 4 + 2);
        assert_eq!(
            &body[weeks + array..weeks + array + 4],
            &(-1i32).to_be_bytes()
        );
    }
}
