//! Reading a connection string the way libpq does, for the parts the postgres crate leaves out: the sslmode
//! values `verify-ca` and `verify-full` with `sslrootcert`, the environment variables PGPASSWORD, PGSSLMODE
//! and PGSSLROOTCERT, and the password file (~/.pgpass or PGPASSFILE).

use anyhow::{Result, anyhow, bail};
use std::path::PathBuf;
use std::str::FromStr;
use tokio_postgres::Config;
use tokio_postgres::config::Host;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

pub const SSL_MODES: &str = "disable, prefer, require, verify-ca, verify-full";

impl FromStr for SslMode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<SslMode> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => bail!("sslmode={other} is not supported; use one of {SSL_MODES}"),
        })
    }
}

/// A parsed connection string.
pub struct Target {
    /// Everything the postgres crate understands; its sslmode is the transport part only (prefer or require).
    pub config: Config,
    pub ssl_mode: SslMode,
    /// `sslrootcert` or PGSSLROOTCERT; None means libpq's default, ~/.postgresql/root.crt.
    pub root_cert: Option<String>,
}

/// Parses a URL (postgresql://...) or key=value string, then fills in what libpq would take from the
/// environment and the password file.
pub fn parse(conninfo: &str) -> Result<Target> {
    let (rest, params) = take_ssl_params(conninfo)?;
    let mut config = Config::from_str(&rest).map_err(|e| {
        anyhow!(
            "the database URL is not valid ({e}); expected postgresql://user@host:port/dbname \
             or key=value pairs like 'host=... dbname=...'"
        )
    })?;
    let mode = params
        .mode
        .or_else(|| std::env::var("PGSSLMODE").ok())
        .map(|m| m.parse::<SslMode>())
        .transpose()?
        .unwrap_or(SslMode::Prefer);
    config.ssl_mode(match mode {
        SslMode::Disable => postgres::config::SslMode::Disable,
        SslMode::Prefer => postgres::config::SslMode::Prefer,
        _ => postgres::config::SslMode::Require,
    });
    fill_from_environment(&mut config);
    if config.get_password().is_none() {
        if let Ok(password) = std::env::var("PGPASSWORD") {
            config.password(password);
        } else if let Some(password) = password_from_file(&config) {
            config.password(password);
        }
    }
    Ok(Target {
        config,
        ssl_mode: mode,
        root_cert: params
            .root_cert
            .or_else(|| std::env::var("PGSSLROOTCERT").ok()),
    })
}

/// The libpq variables that name where to connect: each fills in what the connection string leaves out.
pub const LIBPQ_VARS: [&str; 4] = ["PGHOST", "PGPORT", "PGUSER", "PGDATABASE"];

/// Fills what the connection string left out from PGHOST, PGPORT, PGUSER and PGDATABASE, then from libpq's
/// defaults: localhost, 5432, the login name of the operating system (USER), a database named as the user.
fn fill_from_environment(config: &mut Config) {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if config.get_hosts().is_empty() {
        for host in var("PGHOST").as_deref().unwrap_or("localhost").split(',') {
            config.host(host);
        }
    }
    if config.get_ports().is_empty()
        && let Some(port) = var("PGPORT").and_then(|p| p.parse().ok())
    {
        config.port(port);
    }
    if config.get_user().is_none()
        && let Some(user) = var("PGUSER").or_else(|| var("USER"))
    {
        config.user(&user);
    }
    if config.get_dbname().is_none()
        && let Some(db) = var("PGDATABASE")
    {
        config.dbname(&db);
    }
}

#[derive(Default, Debug, PartialEq)]
struct SslParams {
    mode: Option<String>,
    root_cert: Option<String>,
}

/// Removes sslmode and sslrootcert from a connection string (the postgres crate knows only some sslmode
/// values and no sslrootcert) and returns the rest with them.
fn take_ssl_params(conninfo: &str) -> Result<(String, SslParams)> {
    let mut params = SslParams::default();
    let mut take = |key: &str, value: String| match key {
        "sslmode" => {
            params.mode = Some(value);
            true
        }
        "sslrootcert" => {
            params.root_cert = Some(value);
            true
        }
        _ => false,
    };
    let is_url = conninfo.starts_with("postgresql://") || conninfo.starts_with("postgres://");
    let rest = if is_url {
        match conninfo.split_once('?') {
            None => conninfo.to_string(),
            Some((base, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        !take(&percent_decode(k), percent_decode(v))
                    })
                    .collect();
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let kept: Vec<String> = key_value_pairs(conninfo)?
            .into_iter()
            .filter(|(k, v)| !take(k, v.clone()))
            .map(|(k, v)| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
            .collect();
        kept.join(" ")
    };
    Ok((rest, params))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits libpq's `key=value key='quoted \' value'` form.
fn key_value_pairs(s: &str) -> Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            bail!(
                "the database connection string is not valid: expected '=' after \"{key}\" \
                 (key=value pairs like 'host=... dbname=...', or a postgresql:// URL)"
            );
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        let quoted = chars.next_if_eq(&'\'').is_some();
        loop {
            match chars.next() {
                None if quoted => bail!(
                    "the database connection string is not valid: the quoted value of \"{key}\" \
                     has no closing quote"
                ),
                None => break,
                Some('\\') => value.extend(chars.next()),
                Some('\'') if quoted => break,
                Some(c) if c.is_whitespace() && !quoted => break,
                Some(c) => value.push(c),
            }
        }
        pairs.push((key, value));
    }
}

/// The password for this host, port, database and user in the password file, as libpq finds it: PGPASSFILE
/// or ~/.pgpass, ignored (with a warning) when others may read it.
fn password_from_file(config: &Config) -> Option<String> {
    let path = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pgpass")))?;
    let meta = std::fs::metadata(&path).ok()?;
    if !meta.is_file() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            log::warn!(
                "password file {} has group or world access; it is ignored (chmod 0600 it)",
                path.display()
            );
            return None;
        }
    }
    let content = std::fs::read_to_string(&path).ok()?;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        _ => "localhost".to_string(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user()?;
    let dbname = config.get_dbname().unwrap_or(user);
    pgpass_lookup(&content, [&host, &port, dbname, user])
}

/// The first line of a password file whose first four fields match `wanted` (`*` matches anything).
fn pgpass_lookup(content: &str, wanted: [&str; 4]) -> Option<String> {
    content
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let mut fields = Vec::new();
            let mut field = String::new();
            let mut chars = line.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => field.extend(chars.next()),
                    ':' if fields.len() < 4 => fields.push(std::mem::take(&mut field)),
                    c => field.push(c),
                }
            }
            (fields.len() == 4 && fields.iter().zip(wanted).all(|(f, w)| f == "*" || f == w))
                .then_some(field)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_params_are_taken_out_of_urls_and_key_value_strings() {
        let (rest, p) = take_ssl_params(
            "postgresql://u@h:5/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca.crt",
        )
        .unwrap();
        assert_eq!(rest, "postgresql://u@h:5/db?application_name=x");
        assert_eq!(p.mode.as_deref(), Some("verify-full"));
        assert_eq!(p.root_cert.as_deref(), Some("/tmp/ca.crt"));

        let (rest, p) =
            take_ssl_params("host=h sslmode = verify-ca sslrootcert='/a b/c\\'s.crt' dbname=d")
                .unwrap();
        assert_eq!(rest, "host='h' dbname='d'");
        assert_eq!(p.mode.as_deref(), Some("verify-ca"));
        assert_eq!(p.root_cert.as_deref(), Some("/a b/c's.crt"));
        assert!(Config::from_str(&rest).is_ok());

        assert!(take_ssl_params("host='unclosed").is_err());
        assert!(take_ssl_params("host").is_err());
        assert!("allow".parse::<SslMode>().is_err());
    }

    #[test]
    fn password_file_lines_match_like_libpq() {
        let file = "# comment\n\
                    other:5432:*:alice:wrong\n\
                    db.example:6543:trips:alice:p\\:ss\\\\word\n\
                    *:*:*:alice:fallback\n";
        assert_eq!(
            pgpass_lookup(file, ["db.example", "6543", "trips", "alice"]).as_deref(),
            Some("p:ss\\word")
        );
        assert_eq!(
            pgpass_lookup(file, ["db.example", "5432", "trips", "alice"]).as_deref(),
            Some("fallback")
        );
        assert_eq!(
            pgpass_lookup(file, ["db.example", "6543", "trips", "bob"]),
            None
        );
    }

    #[test]
    fn a_url_password_is_decoded() {
        let t = parse("postgresql://alice:s%40cret9@db.example:6543/trips").unwrap();
        assert_eq!(t.config.get_password(), Some(&b"s@cret9"[..]));
        assert_eq!(t.ssl_mode, SslMode::Prefer);
    }
}
