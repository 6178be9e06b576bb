//! Connecting to PostgreSQL and checking that the server can run trips.

use crate::conninfo::{self, SslMode, Target};
use anyhow::{Context, Result, bail};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres::tls::{MakeTlsConnect, TlsConnect};
use postgres::{Client, Socket};
use postgres_openssl::{MakeTlsConnector, TlsStream};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// The cluster that scripts/run.sh starts, used when neither --database-url nor DATABASE_URL is given.
pub const LOCAL_DATABASE_URL: &str = "postgresql://trips@127.0.0.1:54329/trips";

pub const MIN_POSTGRES: i32 = 130_000;
pub const MIN_POSTGIS_MAJOR: u32 = 3;

/// The connection string to use: the one given (--database-url or DATABASE_URL); else, when any of
/// PGHOST, PGPORT, PGUSER, PGDATABASE is set, an empty one that those fill in as libpq does
/// (conninfo::parse); else the local cluster.
pub fn resolve_url(given: Option<&str>) -> String {
    match given {
        Some(url) => url.to_string(),
        None if conninfo::LIBPQ_VARS
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty())) =>
        {
            String::new()
        }
        None => LOCAL_DATABASE_URL.to_string(),
    }
}

/// Where a URL points, for messages: host, port, database and user, never the password.
pub fn describe(url: &str) -> String {
    match conninfo::parse(url) {
        Ok(t) => describe_config(&t.config),
        Err(_) => "(unparsable database URL)".to_string(),
    }
}

fn describe_config(c: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
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

/// Connects. The session is exempt from the server's idle timeouts: a loader's job connection waits idle
/// while the file streams on the other one, and `trips watch` waits idle for events; a server that closed
/// them would throw a load away at its end, or end the watch.
pub fn connect(url: &str) -> Result<Client> {
    let mut client = connect_only(url)?;
    client
        .batch_execute(NO_IDLE_TIMEOUTS)
        .context("while setting up the session")?;
    Ok(client)
}

fn connect_only(url: &str) -> Result<Client> {
    let mut target = conninfo::parse(url)?;
    target.config.application_name("trips");
    let tls = tls_connector(&target)?;
    postgres::Config::from(target.config.clone())
        .connect(tls)
        .map_err(|e| cannot_connect(&target, e))
}

/// What a failed connection says: where, and what to do.
fn cannot_connect(target: &Target, e: postgres::Error) -> anyhow::Error {
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
    } else if text.contains("cannot read the root certificate") {
        "sslrootcert must name a PEM file holding the certificate of the authority that signed \
         the server's"
            .to_string()
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
}

/// The async side (`trips serve`): a pool of connections with the same settings and TLS as `connect`.
/// The pool connects lazily, when a request first needs a connection.
pub fn pool(url: &str, size: usize) -> Result<deadpool_postgres::Pool> {
    let mut target = conninfo::parse(url)?;
    target.config.application_name("trips serve");
    let tls = tls_connector(&target)?;
    let manager = deadpool_postgres::Manager::from_config(
        target.config,
        tls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    // A database that does not answer makes a request fail in seconds (503), not hang.
    Ok(deadpool_postgres::Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .create_timeout(Some(Duration::from_secs(10)))
        .wait_timeout(Some(Duration::from_secs(30)))
        .build()?)
}

/// An async connection of its own (for `LISTEN`), exempt from the idle timeouts like `connect`'s. The
/// returned connection must be polled (it carries the notifications).
pub async fn connect_async(
    url: &str,
) -> Result<(
    tokio_postgres::Client,
    tokio_postgres::Connection<Socket, TlsStream<Socket>>,
)> {
    let mut target = conninfo::parse(url)?;
    target.config.application_name("trips serve");
    let tls = tls_connector(&target)?;
    target
        .config
        .connect(tls)
        .await
        .map_err(|e| cannot_connect(&target, e))
}

/// The statement that exempts a session from the server's idle timeouts.
pub const NO_IDLE_TIMEOUTS: &str = "SET idle_in_transaction_session_timeout = 0;
     SELECT set_config('idle_session_timeout', '0', false)
      WHERE current_setting('server_version_num')::integer >= 140000";

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
///
/// What to check is settled here, so that a missing root certificate is reported before connecting; the
/// OpenSSL context is built only if the server accepts TLS (`LazyTls`).
fn tls_connector(target: &Target) -> Result<LazyTls> {
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
    let root = if verify { root } else { None };
    if let Some(root) = root.as_deref().filter(|r| *r != "system") {
        std::fs::File::open(root).map_err(|e| root_unreadable(root, e))?;
    }
    Ok(LazyTls {
        root,
        verify_hostname: target.ssl_mode == SslMode::VerifyFull,
    })
}

fn root_unreadable(root: &str, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("cannot read the root certificate sslrootcert={root} (a PEM file): {e}")
}

/// A TLS setup made only when the server answers that it speaks TLS. Building an OpenSSL client context
/// (`SslConnector::builder`) reads every certificate the system trusts, ~50 ms of CPU per command with
/// OpenSSL 3 and Debian's 144 certificates, which a server without TLS (the local cluster, the
/// docker-compose one) never needs.
#[derive(Clone)]
struct LazyTls {
    /// The authority to check the server's certificate against ("system": the system's); None: no check.
    root: Option<String>,
    verify_hostname: bool,
}

impl LazyTls {
    fn connector(&self) -> Result<MakeTlsConnector> {
        let mut builder = SslConnector::builder(SslMethod::tls())?;
        match self.root.as_deref() {
            None => builder.set_verify(SslVerifyMode::NONE),
            Some(root) => {
                if root == "system" {
                    builder.set_default_verify_paths()?;
                } else {
                    builder
                        .set_ca_file(root)
                        .map_err(|e| root_unreadable(root, e))?;
                }
                builder.set_verify(SslVerifyMode::PEER);
            }
        }
        let mut connector = MakeTlsConnector::new(builder.build());
        if !self.verify_hostname {
            connector.set_callback(|config, _host| {
                config.set_verify_hostname(false);
                Ok(())
            });
        }
        Ok(connector)
    }
}

impl MakeTlsConnect<Socket> for LazyTls {
    type Stream = TlsStream<Socket>;
    type TlsConnect = LazyTlsConnect;
    type Error = std::convert::Infallible;

    fn make_tls_connect(&mut self, domain: &str) -> Result<LazyTlsConnect, Self::Error> {
        Ok(LazyTlsConnect {
            tls: self.clone(),
            domain: domain.to_string(),
        })
    }
}

struct LazyTlsConnect {
    tls: LazyTls,
    domain: String,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl TlsConnect<Socket> for LazyTlsConnect {
    type Stream = TlsStream<Socket>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<TlsStream<Socket>, BoxError>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        let tls = self.tls.connector().and_then(|mut c| {
            MakeTlsConnect::<Socket>::make_tls_connect(&mut c, &self.domain).map_err(Into::into)
        });
        match tls {
            Ok(tls) => tls.connect(stream),
            Err(e) => Box::pin(std::future::ready(Err(e.into()))),
        }
    }
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

/// Connects, checks the server and applies the schema.
pub fn open(url: &str) -> Result<postgres::Client> {
    let mut client = connect(url)?;
    let v = check_server(&mut client)?;
    log::debug!(
        "connected to {} ({}): PostgreSQL {}, PostGIS {}",
        describe(url),
        v.transport,
        v.postgres,
        v.postgis.as_deref().unwrap_or("?")
    );
    for applied in crate::migrate::migrate(&mut client)? {
        log::info!("applied db/{applied}");
    }
    let reaped: i32 = client
        .query_one("SELECT ingest_reap_abandoned()", &[])?
        .get(0);
    if reaped > 0 {
        log::warn!("marked {reaped} abandoned ingest job(s) as failed (their loader was gone)");
    }
    Ok(client)
}

/// Connects again after `lost` (with `connect`), with a notice before each pause: 1 s, doubling up to
/// 30 s. Tries until it works, or until `give_up` has passed, then returns the last error.
pub fn reconnect<T>(
    lost: &anyhow::Error,
    give_up: Option<Duration>,
    mut connect: impl FnMut() -> Result<T>,
) -> Result<T> {
    let started = Instant::now();
    let mut pause = Duration::from_secs(1);
    let mut why = format!("{lost:#}");
    loop {
        eprintln!(
            "lost the connection to the database ({}); connecting again in {} s",
            crate::redact::redact(&why),
            pause.as_secs()
        );
        std::thread::sleep(pause);
        match connect() {
            Ok(connected) => {
                eprintln!("connected again");
                return Ok(connected);
            }
            Err(e) if give_up.is_some_and(|limit| started.elapsed() >= limit) => return Err(e),
            Err(e) => why = format!("{e:#}"),
        }
        pause = (pause * 2).min(Duration::from_secs(30));
    }
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
