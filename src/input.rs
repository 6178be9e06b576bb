//! Opening an input: a path, `-` for standard input, gzip recognised by its magic bytes (any name).
//!
//! The reader handed to the CSV parser counts the raw bytes read (for progress against the file size) and
//! hashes the decompressed content on the way through, so the content hash that makes re-runs idempotent
//! costs no second pass over the file.

use anyhow::{Context, Result};
use flate2::bufread::MultiGzDecoder;
use sha2::{Digest, Sha256};
use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

const READ_BUFFER: usize = 1 << 20;

pub struct Input {
    /// Size on disk, when known.
    pub total_bytes: Option<u64>,
    /// Raw bytes read so far, updated as the parser reads.
    pub bytes_read: Rc<Cell<u64>>,
    pub reader: Hashing<Box<dyn Read>>,
}

pub fn open(name: &str) -> Result<Input> {
    let bytes_read = Rc::new(Cell::new(0));
    let (raw, total_bytes): (Box<dyn Read>, _) = if name == "-" {
        (Box::new(io::stdin().lock()), None)
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
        .starts_with(&[0x1f, 0x8b]);
    let content: Box<dyn Read> = if gzip {
        Box::new(MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    Ok(Input {
        total_bytes,
        bytes_read,
        reader: Hashing {
            inner: content,
            hash: Sha256::new(),
        },
    })
}

struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
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
