//! Applying the SQL files of `db/` in order, once each, recorded with their checksums.
//!
//! The files are embedded in the binary. Each is applied in its own transaction together with its row in
//! `schema_migrations`; a file that was applied and has changed since is an error, because the database
//! would no longer match what the code expects. A session advisory lock keeps two binaries starting at once
//! from applying the same file twice.

use anyhow::{Context, Result, bail};
use postgres::Client;
use sha2::{Digest, Sha256};

/// (version, name, SQL), in the order they must run.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "001_postgis.sql", include_str!("../db/001_postgis.sql")),
    (
        2,
        "002_dimensions.sql",
        include_str!("../db/002_dimensions.sql"),
    ),
    (
        3,
        "003_ingest_jobs.sql",
        include_str!("../db/003_ingest_jobs.sql"),
    ),
    (4, "004_trips.sql", include_str!("../db/004_trips.sql")),
    (5, "005_rollups.sql", include_str!("../db/005_rollups.sql")),
    (6, "006_ingest.sql", include_str!("../db/006_ingest.sql")),
    (
        7,
        "007_ingest_status.sql",
        include_str!("../db/007_ingest_status.sql"),
    ),
    (
        8,
        "008_trip_groups.sql",
        include_str!("../db/008_trip_groups.sql"),
    ),
    (
        9,
        "009_area_counts.sql",
        include_str!("../db/009_area_counts.sql"),
    ),
    (
        10,
        "010_weekly_avg.sql",
        include_str!("../db/010_weekly_avg.sql"),
    ),
    (
        11,
        "011_area_counts_backfill.sql",
        include_str!("../db/011_area_counts_backfill.sql"),
    ),
];

/// Lock key (class, id) used while migrating; class 7217 is the project's, see db/003_ingest_jobs.sql.
const LOCK: (i32, i32) = (7217, -1);

fn checksum(sql: &str) -> String {
    Sha256::digest(sql.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Applies what is missing; returns the names of the files applied now.
pub fn migrate(client: &mut Client) -> Result<Vec<&'static str>> {
    client.execute("SELECT pg_advisory_lock($1, $2)", &[&LOCK.0, &LOCK.1])?;
    let result = apply_missing(client);
    client.execute("SELECT pg_advisory_unlock($1, $2)", &[&LOCK.0, &LOCK.1])?;
    result
}

fn apply_missing(client: &mut Client) -> Result<Vec<&'static str>> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 sha256     text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .context("while creating the schema_migrations table")?;
    let applied: Vec<(i32, String, String)> = client
        .query(
            "SELECT version, name, sha256 FROM schema_migrations ORDER BY version",
            &[],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    if let Some((v, name, _)) = applied
        .iter()
        .find(|(v, ..)| !MIGRATIONS.iter().any(|m| m.0 == *v))
    {
        bail!(
            "the database has schema version {v} ({name}), which this trips binary does not know: \
             it is older than the schema; use a newer trips binary"
        );
    }
    let mut done = Vec::new();
    for &(version, name, sql) in MIGRATIONS {
        let sum = checksum(sql);
        if let Some((_, _, recorded)) = applied.iter().find(|(v, ..)| *v == version) {
            if *recorded != sum {
                bail!(
                    "db/{name} was changed after it was applied to this database (recorded sha256 {recorded}, \
                     now {sum}); never edit an applied migration: restore it and add a new numbered file"
                );
            }
            continue;
        }
        let mut tx = client.transaction()?;
        tx.batch_execute(sql)
            .with_context(|| format!("while applying db/{name}"))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, sha256) VALUES ($1, $2, $3)",
            &[&version, &name, &sum],
        )?;
        tx.commit()?;
        done.push(name);
    }
    Ok(done)
}
