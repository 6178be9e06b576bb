//! `trips roles`: the group roles of db/010_roles.sql.

use anyhow::Result;
use std::process::ExitCode;

/// `trips roles`: creates the two group roles (if missing) and grants them what db/010_roles.sql lists.
pub fn run(client: &mut postgres::Client) -> Result<ExitCode> {
    let said: String = client.query_one("SELECT trips_roles()", &[])?.get(0);
    let ready: bool = client
        .query_one(
            "SELECT count(*) = 2 FROM pg_roles WHERE rolname IN ('trips_reader', 'trips_loader')",
            &[],
        )?
        .get(0);
    if !ready {
        anyhow::bail!("{said}");
    }
    say!(
        "{said}. Give each person or service a login of its own, for example:\n  \
         CREATE ROLE alice LOGIN PASSWORD '...' IN ROLE trips_reader;   -- queries, trips groups, weekly-avg\n  \
         CREATE ROLE etl LOGIN PASSWORD '...' IN ROLE trips_loader;     -- trips ingest, trips watch"
    );
    Ok(ExitCode::SUCCESS)
}
