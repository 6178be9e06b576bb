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
    (2, "002_names.sql", include_str!("../db/002_names.sql")),
    (
        3,
        "003_ingest_jobs.sql",
        include_str!("../db/003_ingest_jobs.sql"),
    ),
    (4, "004_cells.sql", include_str!("../db/004_cells.sql")),
    (5, "005_trips.sql", include_str!("../db/005_trips.sql")),
    (6, "006_tallies.sql", include_str!("../db/006_tallies.sql")),
    (7, "007_pieces.sql", include_str!("../db/007_pieces.sql")),
    (
        8,
        "008_weekly_avg.sql",
        include_str!("../db/008_weekly_avg.sql"),
    ),
    (
        9,
        "009_trip_groups.sql",
        include_str!("../db/009_trip_groups.sql"),
    ),
    (10, "010_roles.sql", include_str!("../db/010_roles.sql")),
];

/// Lock key (class, id) used while migrating; class 7217 is the project's, see db/003_ingest_jobs.sql.
const LOCK: (i32, i32) = (7217, -1);

fn checksum(sql: &str) -> String {
    Sha256::digest(sql.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Applies what is missing; returns the names of the files applied now. A database that is up to date is
/// only read, so any role that may read it can run every command; one that needs migrations needs the
/// owner, and anyone else gets a message saying so.
pub fn migrate(client: &mut Client) -> Result<Vec<&'static str>> {
    if pending(client)?.is_empty() {
        return Ok(Vec::new());
    }
    check_may_migrate(client)?;
    client.execute("SELECT pg_advisory_lock($1, $2)", &[&LOCK.0, &LOCK.1])?;
    let result = apply_missing(client);
    client.execute("SELECT pg_advisory_unlock($1, $2)", &[&LOCK.0, &LOCK.1])?;
    result
}

/// The migrations this database lacks, after checking that those it has are the ones this binary knows.
fn pending(client: &mut Client) -> Result<Vec<&'static str>> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])?
        .get(0);
    let applied: Vec<(i32, String, String)> = if exists {
        client
            .query(
                "SELECT version, name, sha256 FROM schema_migrations ORDER BY version",
                &[],
            )
            .context("while reading schema_migrations")?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    } else {
        Vec::new()
    };
    if let Some((v, name, _)) = applied
        .iter()
        .find(|(v, name, _)| MIGRATIONS.iter().any(|m| m.0 == *v && m.1 != name))
    {
        bail!(
            "this database was made by a pre-release schema of trips (it has db/{name} as version {v}), \
             whose store this trips binary cannot read or upgrade: create a new database (or drop this \
             one) and load the files again"
        );
    }
    if let Some((v, name, _)) = applied
        .iter()
        .find(|(v, ..)| !MIGRATIONS.iter().any(|m| m.0 == *v))
    {
        bail!(
            "the database has schema version {v} ({name}), which this trips binary does not know: \
             it is older than the schema; use a newer trips binary"
        );
    }
    let mut missing = Vec::new();
    for &(version, name, sql) in MIGRATIONS {
        match applied.iter().find(|(v, ..)| *v == version) {
            Some((_, _, recorded)) if *recorded != checksum(sql) => bail!(
                "db/{name} was changed after it was applied to this database (recorded sha256 {recorded}, \
                 now {}): the database was made by another version of trips. Before the first release the \
                 schema is not upgraded: create a new database (or drop this one) and load the files again. \
                 If you are changing db/ yourself: never edit an applied file; restore it and add a new \
                 numbered one",
                checksum(sql)
            ),
            Some(_) => {}
            None => missing.push(name),
        }
    }
    Ok(missing)
}

/// Fails with a plain sentence when the connected role cannot apply migrations: it must be the owner of the
/// schema's tables (or a member of that role), or, on an empty database, be allowed to create tables.
fn check_may_migrate(client: &mut Client) -> Result<()> {
    let row = client.query_one(
        "SELECT current_user::text,
                (SELECT tableowner::text FROM pg_tables
                  WHERE tablename = 'schema_migrations' AND schemaname = current_schema())",
        &[],
    )?;
    let (user, owner): (String, Option<String>) = (row.get(0), row.get(1));
    let version: i32 = match owner {
        Some(_) => client
            .query_one(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
            )?
            .get(0),
        None => 0,
    };
    let allowed: bool = match &owner {
        Some(owner) => client
            .query_one(
                "SELECT pg_has_role(current_user, $1::text::name, 'USAGE')",
                &[owner],
            )?
            .get(0),
        None => client
            .query_one(
                "SELECT has_schema_privilege(current_schema(), 'CREATE')",
                &[],
            )?
            .get(0),
    };
    if allowed {
        return Ok(());
    }
    let latest = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    Err(match owner {
        Some(owner) => anyhow::anyhow!(
            "the database's schema is at version {version} and this trips binary needs version {latest}; \
             only the owner of the trips tables, {owner}, can apply it (you are connected as {user}): ask \
             them to run `trips migrate` with this binary"
        ),
        None => anyhow::anyhow!(
            "the database has no trips schema yet and {user} may not create tables in it: the database \
             owner must run `trips migrate` once"
        ),
    })
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
    // Read again under the lock: another binary may have applied some while this one waited.
    let missing = pending(client)?;
    let mut done = Vec::new();
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| missing.contains(&m.1)) {
        let sum = checksum(sql);
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
