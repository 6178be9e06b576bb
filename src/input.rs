//! Opening an input: a path, `-` for standard input, gzip recognised by its magic bytes (any name).
//!
//! The reader handed to the CSV parser counts the raw bytes read (for progress against the file size) and
//! hashes the decompressed content on the way through, so the content hash that makes re-runs idempotent
//! costs no second pass over the file. Under both, a bound on the bytes the parser may read ahead of the
//! record it is on keeps memory bounded whatever the file holds: see [`MAX_RECORD_BYTES`].

use anyhow::{Context, Result};
use flate2::bufread::MultiGzDecoder;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const READ_BUFFER: usize = 1 << 20;

/// The longest record the loader reads, in bytes of (decompressed) content: 1 MiB. A record of the five
/// columns is ~100 bytes, and names are at most 1 KiB each; a longer "record" is a file without line
/// breaks, or an unclosed quote running on to the end of the file.
pub const MAX_RECORD_BYTES: u64 = 1 << 20;

/// An opened input; it can be handed to another thread (the loader reads files on a thread of their own).
pub struct Input {
    /// Size on disk, when known.
    pub total_bytes: Option<u64>,
    /// Raw bytes read so far, updated as the parser reads.
    pub bytes_read: Arc<AtomicU64>,
    /// How far into the content the parser may read: the loader moves it forward after each record.
    pub read_limit: Arc<AtomicU64>,
    pub reader: Hashing<Bounded<Box<dyn Read + Send>>>,
}

pub fn open(name: &str) -> Result<Input> {
    let (raw, total_bytes): (Box<dyn Read + Send>, _) = if name == "-" {
        (Box::new(io::stdin()), None)
    } else {
        let file = File::open(name).with_context(|| format!("cannot open {name}"))?;
        let meta = file
            .metadata()
            .with_context(|| format!("cannot read the size of {name}"))?;
        if meta.is_dir() {
            anyhow::bail!("{name} is a directory; expected a CSV file (or .gz, or - for stdin)");
        }
        (Box::new(file), Some(meta.len()))
    };
    from_reader(name, raw, total_bytes)
}

/// An input from any reader (a file, stdin, an HTTP request's body), gzip or not.
pub fn from_reader(
    name: &str,
    raw: Box<dyn Read + Send>,
    total_bytes: Option<u64>,
) -> Result<Input> {
    let bytes_read = Arc::new(AtomicU64::new(0));
    let mut buffered = BufReader::with_capacity(
        READ_BUFFER,
        Counting {
            inner: raw,
            count: bytes_read.clone(),
        },
    );
    let gzip = buffered
        .fill_buf()
        .with_context(|| format!("cannot read {name}"))?
        .starts_with(&GZIP_MAGIC);
    let content: Box<dyn Read + Send> = if gzip {
        Box::new(MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    let read_limit = Arc::new(AtomicU64::new(MAX_RECORD_BYTES));
    Ok(Input {
        total_bytes,
        bytes_read,
        read_limit: read_limit.clone(),
        reader: Hashing {
            inner: Bounded {
                inner: content,
                delivered: 0,
                limit: read_limit,
            },
            hash: Sha256::new(),
        },
    })
}

/// The first bytes of a gzip stream.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reading past the limit of a [`Bounded`] reader: a record longer than [`MAX_RECORD_BYTES`].
#[derive(Debug)]
pub struct RecordTooLong;

impl std::fmt::Display for RecordTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a record is longer than {MAX_RECORD_BYTES} bytes")
    }
}

impl std::error::Error for RecordTooLong {}

/// Delivers bytes up to a limit that its owner moves forward, and fails with [`RecordTooLong`] past it.
/// The CSV parser keeps the record it is reading in memory whole; this is what bounds that record.
pub struct Bounded<R> {
    inner: R,
    delivered: u64,
    limit: Arc<AtomicU64>,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = self
            .limit
            .load(Ordering::Relaxed)
            .saturating_sub(self.delivered);
        if room == 0 && !buf.is_empty() {
            return Err(io::Error::other(RecordTooLong));
        }
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.delivered += n as u64;
        Ok(n)
    }
}

/// True if `e` comes from a [`Bounded`] reader's limit.
pub fn is_record_too_long(e: &csv::Error) -> bool {
    matches!(e.kind(), csv::ErrorKind::Io(io) if io.get_ref().is_some_and(|r| r.is::<RecordTooLong>()))
}

struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Passes bytes through and hashes them (SHA-256).
pub struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R> Hashing<R> {
    /// Hex SHA-256 of everything read.
    pub fn sha256_hex(self) -> String {
        self.hash
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}
