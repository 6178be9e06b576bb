//! Connecting to PostgreSQL and checking that the server can run trips.

use crate::conninfo::{self, SslMode, Target};
use anyhow::{Context, Result, bail};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres::Client;
use postgres_openssl::MakeTlsConnector;
use std::path::PathBuf;

/// The cluster that scripts/run.sh starts, used when neither --database-url nor DATABASE_URL is given.
pub const LOCAL_DATABASE_URL: &str = "postgresql://trips@127.0.0.1:54329/trips";

pub const MIN_POSTGRES: i32 = 130_000;
pub const MIN_POSTGIS_MAJOR: u32 = 3;

/// Where a URL points, for messages: host, port, database and user, never the password.
pub fn describe(url: &str) -> String {
    match conninfo::parse(url) {
        Ok(t) => describe_config(&t.config),
        Err(_) => "(unparsable database URL)".to_string(),
    }
}

fn describe_config(c: &postgres::Config) -> String {
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

pub fn connect(url: &str) -> Result<Client> {
    let mut target = conninfo::parse(url)?;
    target.config.application_name("trips");
    let tls = tls_connector(&target)?;
    target.config.connect(tls).map_err(|e| {
        let where_ = describe_config(&target.config);
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text += &format!(": {s}");
            source = s.source();
        }
        let advice = if text.contains("server does not support TLS") {
            format!(
                "the server does not offer TLS and sslmode={} requires it: enable ssl on the server, \
                 or connect with sslmode=prefer or disable on a network you trust",
                mode_name(target.ssl_mode)
            )
        } else if text.contains("TLS") {
            match target.ssl_mode {
                SslMode::VerifyFull => "the server's certificate must be signed by the sslrootcert \
                    certificate and name the host exactly as written in the URL (sslmode=verify-full)"
                    .to_string(),
                SslMode::VerifyCa => "the server's certificate must be signed by the sslrootcert \
                    certificate (sslmode=verify-ca)"
                    .to_string(),
                _ => "the TLS handshake failed".to_string(),
            }
        } else {
            "start the local one with scripts/run.sh, or pass --database-url / set DATABASE_URL"
                .to_string()
        };
        anyhow::Error::new(e).context(format!(
            "cannot connect to the database at {where_}; {advice}"
        ))
    })
}

fn mode_name(mode: SslMode) -> &'static str {
    match mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
    }
}

/// TLS as libpq does it: `prefer` and `require` encrypt without checking the certificate (unless a root
/// certificate is at hand: then `require` checks it like `verify-ca`), `verify-ca` checks that a trusted
/// authority signed it, `verify-full` also that it names the host.
fn tls_connector(target: &Target) -> Result<MakeTlsConnector> {
    let mut builder = SslConnector::builder(SslMethod::tls())?;
    let default_root =
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".postgresql/root.crt"));
    let root = match &target.root_cert {
        Some(r) => Some(r.clone()),
        None => default_root
            .filter(|p| p.is_file())
            .map(|p| p.to_string_lossy().into_owned()),
    };
    let verify = match (target.ssl_mode, &root) {
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => bail!(
            "sslmode={} needs the certificate of the authority that signed the server's: pass \
             sslrootcert=/path/to/root.crt in the URL (or set PGSSLROOTCERT, or put it at \
             ~/.postgresql/root.crt)",
            mode_name(target.ssl_mode)
        ),
        (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, None) => false,
        (SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull, Some(_)) => true,
    };
    if verify {
        let root = root.unwrap();
        if root == "system" {
            builder.set_default_verify_paths()?;
        } else {
            builder.set_ca_file(&root).with_context(|| {
                format!("cannot read the root certificate sslrootcert={root} (a PEM file)")
            })?;
        }
        builder.set_verify(SslVerifyMode::PEER);
    } else {
        builder.set_verify(SslVerifyMode::NONE);
    }
    let mut connector = MakeTlsConnector::new(builder.build());
    if target.ssl_mode != SslMode::VerifyFull {
        connector.set_callback(|config, _host| {
            config.set_verify_hostname(false);
            Ok(())
        });
    }
    Ok(connector)
}

/// Versions of the server, logged at start.
pub struct ServerVersions {
    pub postgres: String,
    pub postgis: Option<String>,
    /// How this connection travels: "TLSv1.3" (say), or "without TLS".
    pub transport: String,
}

/// Fails with a plain sentence when the server is older than PostgreSQL 13 or lacks PostGIS 3.
pub fn check_server(client: &mut Client) -> Result<ServerVersions> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int,
                    current_setting('server_version'),
                    coalesce((SELECT extversion FROM pg_extension WHERE extname = 'postgis'),
                             (SELECT default_version FROM pg_available_extensions WHERE name = 'postgis')),
                    coalesce((SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl),
                             'without TLS')",
            &[],
        )
        .context("while asking the server for its versions")?;
    let num: i32 = row.get(0);
    let versions = ServerVersions {
        postgres: row.get(1),
        postgis: row.get(2),
        transport: row.get(3),
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
