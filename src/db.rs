//! Connecting to PostgreSQL and checking that the server can run trips.

use anyhow::{Context, Result, bail};
use postgres::{Client, Config, NoTls};
use std::str::FromStr;

/// The cluster that scripts/run.sh starts, used when neither --database-url nor DATABASE_URL is given.
pub const LOCAL_DATABASE_URL: &str = "postgresql://trips@127.0.0.1:54329/trips";

pub const MIN_POSTGRES: i32 = 130_000;
pub const MIN_POSTGIS_MAJOR: u32 = 3;

/// Where a URL points, for messages: host, port, database and user, never the password.
pub fn describe(url: &str) -> String {
    match Config::from_str(url) {
        Ok(c) => {
            let hosts: Vec<String> = c
                .get_hosts()
                .iter()
                .map(|h| match h {
                    postgres::config::Host::Tcp(name) => name.clone(),
                    postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .collect();
            let port = c.get_ports().first().copied().unwrap_or(5432);
            format!(
                "{}:{}/{} as user {}",
                hosts.join(","),
                port,
                c.get_dbname().unwrap_or("(default database)"),
                c.get_user().unwrap_or("(default user)")
            )
        }
        Err(_) => "(unparsable database URL)".to_string(),
    }
}

pub fn connect(url: &str) -> Result<Client> {
    let config = Config::from_str(url).map_err(|e| {
        anyhow::anyhow!(
            "the database URL is not valid ({e}); expected postgresql://user@host:port/dbname \
             or key=value pairs like 'host=... dbname=...'"
        )
    })?;
    let mut config = config;
    config.application_name("trips");
    config.connect(NoTls).with_context(|| {
        format!(
            "cannot connect to the database at {}; start the local one with scripts/run.sh, \
             or pass --database-url / set DATABASE_URL",
            describe(url)
        )
    })
}

/// Versions of the server, logged at start.
pub struct ServerVersions {
    pub postgres: String,
    pub postgis: Option<String>,
}

/// Fails with a plain sentence when the server is older than PostgreSQL 13 or lacks PostGIS 3.
pub fn check_server(client: &mut Client) -> Result<ServerVersions> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int,
                    current_setting('server_version'),
                    coalesce((SELECT extversion FROM pg_extension WHERE extname = 'postgis'),
                             (SELECT default_version FROM pg_available_extensions WHERE name = 'postgis'))",
            &[],
        )
        .context("while asking the server for its versions")?;
    let num: i32 = row.get(0);
    let versions = ServerVersions {
        postgres: row.get(1),
        postgis: row.get(2),
    };
    if num < MIN_POSTGRES {
        bail!(
            "the server runs PostgreSQL {}; trips needs PostgreSQL 13 or newer",
            versions.postgres
        );
    }
    match versions.postgis.as_deref() {
        None => bail!(
            "PostGIS is not installed on this server (PostgreSQL {}); trips needs PostGIS {MIN_POSTGIS_MAJOR} \
             or newer: install it (Debian/Ubuntu: apt-get install postgresql-{}-postgis-3) or use the \
             postgis/postgis image",
            versions.postgres,
            num / 10_000
        ),
        Some(v) if major(v) < MIN_POSTGIS_MAJOR => {
            bail!("the server has PostGIS {v}; trips needs PostGIS {MIN_POSTGIS_MAJOR} or newer")
        }
        Some(_) => Ok(versions),
    }
}

fn major(version: &str) -> u32 {
    version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn described_urls_never_show_the_password() {
        let d = describe("postgresql://alice:s3cret@db.example:6543/trips");
        assert_eq!(d, "db.example:6543/trips as user alice");
        assert!(!describe("host=h password=s3cret dbname=x").contains("s3cret"));
    }

    #[test]
    fn postgis_major_version() {
        assert_eq!(major("3.3.2"), 3);
        assert_eq!(major("2.5"), 2);
        assert_eq!(major("garbage"), 0);
    }
}
