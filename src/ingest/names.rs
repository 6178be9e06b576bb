//! Region and datasource names: each is stored once, with a 2-byte key that the trip rows carry
//! (db/002_names.sql). The reading thread (read.rs) keeps the keys it has met in a transaction (a file, or
//! a batch of them), and asks the loading thread for a new one, which asks the database: no name is
//! removed while a loader's jobs are open (forget_unused_names, db/007_pieces.sql).

use crate::parse::{self, Layout};
use anyhow::{Result, anyhow};
use csv::ByteRecord;
use postgres::Client;
use rustc_hash::FxHashMap as HashMap;

/// Keys of region and datasource names met so far in this transaction, so the database is asked once per
/// name.
#[derive(Default)]
pub struct Names {
    regions: HashMap<String, i16>,
    datasources: HashMap<String, i16>,
}

/// Which names a key is for: the table (db/002_names.sql), the column, and the word for one of them.
#[derive(Clone, Copy)]
pub enum Dim {
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

impl Names {
    /// The key of a region or datasource name: from the cache, or else from `ask` (which gets the
    /// database's, `register`).
    pub fn key(&mut self, dim: Dim, name: &str, ask: impl FnOnce() -> Result<i16>) -> Result<i16> {
        let cache = match dim {
            Dim::Region => &mut self.regions,
            Dim::Datasource => &mut self.datasources,
        };
        if let Some(&k) = cache.get(name) {
            return Ok(k);
        }
        let k = ask()?;
        cache.insert(name.to_string(), k);
        Ok(k)
    }
}

/// The database's key of a region or datasource name (dimension_id in db/002_names.sql, which adds a new
/// name). The database keeps at most 32,767 names of each; past that, the file fails naming the record.
/// `at` says where the name is (file:line: column), for an error.
pub fn register(control: &mut Client, dim: Dim, name: &str, at: &str) -> Result<i16> {
    let shown = parse::quoted(name.as_bytes(), 80);
    match control.query_one(
        "SELECT dimension_id($1::text::regclass, $2)",
        &[&dim.table(), &name],
    ) {
        Ok(row) => Ok(row.get(0)),
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
            Err(anyhow!(e).context(format!("{at}: while registering the name {shown}")))
        }
    }
}

/// Where `dim`'s field of `record` is: `file:line: column N (name)`.
pub fn location(file: &str, layout: &Layout, record: &ByteRecord, dim: Dim) -> String {
    let line = record.position().map_or(0, |p| p.line());
    let c = dim.column();
    format!(
        "{file}:{line}: column {} ({})",
        layout.index[c] + 1,
        parse::COLUMNS[c]
    )
}
