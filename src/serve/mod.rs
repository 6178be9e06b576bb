//! `trips serve`: the answers and the ingest status over HTTP (docs/api.md). Every answer comes from the
//! same SQL functions and the same statement builders as the commands (weekly.rs, groups.rs, status.rs),
//! run on a pool of async connections; the status is relayed from one `LISTEN ingest_status` connection
//! to every client of /v1/events; an uploaded file goes through the same loader as `trips ingest -`.
//!
//! The stages, one file each: `answers.rs` the questions, `events.rs` the relay and the event streams,
//! `upload.rs` POST /v1/ingest, `error.rs` the JSON errors; `openapi.json` describes every route of `ROUTES`.

mod answers;
mod error;
mod events;
mod upload;

use crate::cli::ServeArgs;
use crate::error::usage;
use anyhow::{Context, Result};
use axum::Router;
use axum::routing::{MethodRouter, get, post};
use deadpool_postgres::Pool;
use error::ApiError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// Every route, as openapi.json describes it (a test checks that the two agree).
pub const ROUTES: [(&str, &str); 8] = [
    ("GET", "/healthz"),
    ("GET", "/openapi.json"),
    ("GET", "/v1/weekly-avg"),
    ("GET", "/v1/groups"),
    ("GET", "/v1/jobs"),
    ("GET", "/v1/jobs/{id}"),
    ("GET", "/v1/events"),
    ("POST", "/v1/ingest"),
];

/// How long a question may take before the client gets 503 (streams and uploads have no limit).
const QUESTION_TIMEOUT: Duration = Duration::from_secs(60);

/// What every handler shares.
pub struct Server {
    url: String,
    pool: Pool,
    /// Every ingest_status notification, as the relay receives it (events.rs).
    events: broadcast::Sender<Arc<events::Note>>,
    /// The bearer token of POST /v1/ingest; None when uploads are off.
    token: Option<String>,
    rejects_dir: std::path::PathBuf,
    /// Becomes true when the server is stopping: event streams end.
    stopping: watch::Receiver<bool>,
}

type App = Arc<Server>;

pub fn run(url: &str, args: &ServeArgs) -> Result<()> {
    let token = match (&args.token_file, args.allow_ingest) {
        (Some(path), true) => Some(read_token(path)?),
        _ => None,
    };
    // The schema is applied (and the server checked) as by every command, before anything is served.
    crate::db::open(url)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("while starting the server's runtime")?;
    runtime.block_on(serve(url, args, token))
}

/// The upload token: a usage error (exit status 2) if the file cannot be read or holds a short token.
fn read_token(path: &std::path::Path) -> Result<String> {
    let token = std::fs::read_to_string(path).map_err(|e| {
        usage(format!(
            "cannot read the token file {}: {e}",
            path.display()
        ))
    })?;
    let token = token.trim().to_string();
    if token.len() < 16 {
        return Err(usage(format!(
            "the token in {} is {} characters long; use at least 16 random ones, e.g. \
             `openssl rand -hex 32 > {}`",
            path.display(),
            token.len(),
            path.display()
        )));
    }
    Ok(token)
}

async fn serve(url: &str, args: &ServeArgs, token: Option<String>) -> Result<()> {
    let (stop, stopping) = watch::channel(false);
    let server = Arc::new(Server {
        url: url.to_string(),
        pool: crate::db::pool(url, usize::from(args.pool))?,
        events: events::start_relay(url.to_string()),
        token,
        rejects_dir: args.rejects_dir.clone(),
        stopping,
    });
    tokio::spawn(events::reap(server.pool.clone()));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    say!(
        "serving http://{address}/ (uploads {}); GET /openapi.json describes the API",
        if server.token.is_some() { "on" } else { "off" }
    );
    let max_body = usize::try_from(args.max_body_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    axum::serve(listener, router(server, max_body))
        .with_graceful_shutdown(async move {
            stop_signal().await;
            say!("stopping: no new requests; event streams end");
            let _ = stop.send(true);
        })
        .await
        .context("while serving")?;
    Ok(())
}

async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("a SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// The routes of `ROUTES`, each with its handler and limits.
fn router(server: App, max_body: usize) -> Router {
    let mut router = Router::new();
    for (method, path) in ROUTES {
        let timed = |route: MethodRouter<App>| {
            route.layer(tower_http::timeout::TimeoutLayer::with_status_code(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                QUESTION_TIMEOUT,
            ))
        };
        let route: MethodRouter<App> = match (method, path) {
            ("GET", "/healthz") => timed(get(answers::healthz)),
            ("GET", "/openapi.json") => get(answers::openapi),
            ("GET", "/v1/weekly-avg") => timed(get(answers::weekly_avg)),
            ("GET", "/v1/groups") => timed(get(answers::groups)),
            ("GET", "/v1/jobs") => timed(get(answers::jobs)),
            ("GET", "/v1/jobs/{id}") => timed(get(answers::job)),
            ("GET", "/v1/events") => get(events::stream),
            ("POST", "/v1/ingest") => {
                post(upload::ingest).layer(tower_http::limit::RequestBodyLimitLayer::new(max_body))
            }
            _ => unreachable!("a route of ROUTES without a handler: {method} {path}"),
        };
        router = router.route(path, route);
    }
    router
        .fallback(|| async {
            ApiError::not_found("no such route").hint("GET /openapi.json lists every route")
        })
        .with_state(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_describes_every_route_and_no_other() {
        let spec: serde_json::Value = serde_json::from_str(include_str!("openapi.json")).unwrap();
        let mut described: Vec<(String, String)> = spec["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .map(|m| (m.to_uppercase(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        described.sort();
        let mut routes: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        routes.sort();
        assert_eq!(described, routes);
        assert_eq!(spec["openapi"].as_str().unwrap().chars().next(), Some('3'));
    }
}
