//! Region and datasource names: each is stored once, with a 2-byte key that the trip rows carry
//! (db/002_names.sql). The loader asks for a name's key once per transaction (a file, or a batch of them):
//! no name is removed while a loader's jobs are open (forget_unused_names, db/007_pieces.sql).

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
    /// The key of a region or datasource name, from this file's cache or the database (dimension_id in
    /// db/002_names.sql, which adds a new name). The database keeps at most 32,767 names of each; past
    /// that, the file fails naming the record.
    /// `at` says where the name is (file:line: column), for an error.
    pub fn key(
        &mut self,
        control: &mut Client,
        dim: Dim,
        name: &str,
        at: impl FnOnce() -> String,
    ) -> Result<i16> {
        let cache = match dim {
            Dim::Region => &mut self.regions,
            Dim::Datasource => &mut self.datasources,
        };
        if let Some(&k) = cache.get(name) {
            return Ok(k);
        }
        let at = at();
        let shown = parse::quoted(name.as_bytes(), 80);
        let k: i16 = match control.query_one(
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
