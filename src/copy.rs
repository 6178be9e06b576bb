//! Hand-encoding trip rows in PostgreSQL's binary COPY format.
//!
//! Rows are appended to one large buffer that the loader writes through `CopyInWriter` whenever it passes
//! [`FLUSH_AT`]; there is no per-row dynamic dispatch and no small write. Field order and types follow
//! `trip_rows` in db/004_trips.sql: int4 job, int2 region, int2 datasource, timestamp (int8 microseconds
//! since 2000-01-01), then four int4 coordinates.

use crate::parse::Trip;
use std::io::{self, Write};

/// Buffer size at which the loader hands the rows to the connection.
pub const FLUSH_AT: usize = 1 << 20;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
const FIELDS: i16 = 8;

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

    pub fn push(&mut self, job: i32, region: i16, datasource: i16, trip: &Trip) {
        let b = &mut self.buf;
        b.extend_from_slice(&FIELDS.to_be_bytes());
        field(b, &job.to_be_bytes());
        field(b, &region.to_be_bytes());
        field(b, &datasource.to_be_bytes());
        field(b, &trip.departed_at.to_be_bytes());
        for v in trip.origin.iter().chain(&trip.destination) {
            field(b, &v.to_be_bytes());
        }
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

fn field(buf: &mut Vec<u8>, value: &[u8]) {
    buf.extend_from_slice(&(value.len() as i32).to_be_bytes());
    buf.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_is_laid_out_as_postgres_expects() {
        let trip = Trip {
            region: "Turin",
            datasource: "funny_car",
            departed_at: 1,
            origin: [2, -3],
            destination: [4, 5],
        };
        let mut enc = RowEncoder::new();
        enc.push(7, 1, 2, &trip);
        let mut out = Vec::new();
        enc.finish(&mut out).unwrap();
        let body = &out[SIGNATURE.len() + 8..];
        // 2 (field count) + 3 * 4 (lengths) + 4 + 2 + 2 + 4 (length) + 8 + 4 * (4 + 4), then the trailer.
        assert_eq!(body.len(), 2 + 12 + 8 + 4 + 8 + 32 + 2);
        assert_eq!(&body[..2], &8i16.to_be_bytes());
        assert_eq!(&body[2..10], &[0, 0, 0, 4, 0, 0, 0, 7]);
        assert_eq!(&body[body.len() - 2..], &(-1i16).to_be_bytes());
    }
}
