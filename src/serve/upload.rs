//! POST /v1/ingest: a CSV (or gzip) file in the request's body, streamed into the same loader as
//! `trips ingest -` on a thread of its own, never held whole. The answer (202 and the job's id) comes as
//! soon as the job exists; the outcome is pushed on /v1/events?job=N.

use super::App;
use super::error::ApiError;
use crate::ingest::{self, Outcome};
use crate::{cli, db, input, parse, status};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::io::Read;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How much of the body is read before answering, to refuse at once a body whose first line is not a
/// trips header.
const HEAD_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
pub struct UploadQuery {
    /// As `trips ingest --skip-invalid`.
    #[serde(default)]
    skip_invalid: bool,
    /// The name the job records (its `file`); default `upload`.
    name: Option<String>,
}

pub async fn ingest(
    State(app): State<App>,
    headers: HeaderMap,
    q: Result<Query<UploadQuery>, QueryRejection>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    authorize(&app, &headers)?;
    let q = super::answers::query(q)?;
    let name = q.name.unwrap_or_else(|| "upload".to_string());
    let mut body = body.into_data_stream();
    let mut head = Vec::new();
    let mut whole = false;
    while !head.contains(&b'\n') && head.len() < HEAD_BYTES {
        match body.next().await {
            Some(Ok(chunk)) => head.extend_from_slice(&chunk),
            Some(Err(e)) => return Err(body_error(&e)),
            None => {
                whole = true;
                break;
            }
        }
    }
    if head.is_empty() {
        return Err(ApiError::bad_request("the body is empty")
            .hint("send a trips CSV file (or its gzip) as the body"));
    }
    check_header(&head, whole)?;

    // The body goes on to the loader's thread through a bounded channel: the upload moves as fast as
    // the loader reads, and memory holds a few chunks at most.
    let (chunks, received) = mpsc::channel::<std::io::Result<Bytes>>(16);
    let _ = chunks.send(Ok(Bytes::from(head))).await;
    tokio::spawn(async move {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| std::io::Error::other(body_error(&e).message()));
            let failed = chunk.is_err();
            if chunks.send(chunk).await.is_err() || failed {
                break;
            }
        }
    });
    let (opened, job) = oneshot::channel();
    let opts = ingest::Options {
        skip_invalid: q.skip_invalid,
        force: false,
        rejects_dir: app.rejects_dir.clone(),
        progress_every: Duration::from_secs(1),
        progress_rows: None,
        tally_limit: ingest::TALLY_LIMIT as usize,
    };
    let url = app.url.clone();
    std::thread::Builder::new()
        .name(format!("upload {name}"))
        .spawn(move || load(&url, &name, received, &opts, opened))
        .map_err(anyhow::Error::from)?;
    match job.await {
        Ok(Ok(id)) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"job": id, "events": format!("/v1/events?job={id}")})),
        )),
        Ok(Err(e)) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e)),
        Err(_) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the loader stopped before it opened a job",
        )),
    }
}

/// 403 when uploads are off, 401 without the right bearer token.
fn authorize(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &app.token else {
        return Err(
            ApiError::new(StatusCode::FORBIDDEN, "this server does not accept files")
                .hint("start it with trips serve --allow-ingest --token-file FILE"),
        );
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !same(given.trim().as_bytes(), token.as_bytes()) {
        return Err(
            ApiError::new(StatusCode::UNAUTHORIZED, "a valid bearer token is needed")
                .hint("send Authorization: Bearer <the token in the server's --token-file>"),
        );
    }
    Ok(())
}

/// Compares without stopping at the first difference, so that timing tells nothing of the token.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// A body that could not be read: over the size limit (413), or cut off.
fn body_error(e: &axum::Error) -> ApiError {
    let text = format!("{e}");
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut over = text.contains("length limit");
    while let Some(s) = source {
        over |= s.to_string().contains("length limit");
        source = s.source();
    }
    if over {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is larger than this server accepts",
        )
        .hint("split the file, or start the server with a larger --max-body-mib")
    } else {
        ApiError::bad_request(format!("the body could not be read: {text}"))
    }
}

/// Refuses a body whose first line is not a trips header, with the loader's own words (`whole`: the head
/// is the whole body). A gzip body, or a first record longer than what was read, is left to the loader
/// (its job fails with the same words).
fn check_header(head: &[u8], whole: bool) -> Result<(), ApiError> {
    if head.starts_with(&input::GZIP_MAGIC) {
        return Ok(());
    }
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(head);
    let mut record = csv::ByteRecord::new();
    let complete = whole || head.contains(&b'\n');
    match csv.read_byte_record(&mut record) {
        Ok(true) if complete => parse::layout(&record).map(|_| ()).map_err(|e| {
            ApiError::bad_request(format!("the body is not a trips CSV: line 1: {e}"))
                .hint("the first line must name the columns (docs/cli.md, \"The input\")")
        }),
        _ => Ok(()),
    }
}

/// The loader's thread: its own two connections, the body as its input, merges after a load as
/// `trips ingest` does. `opened` gets the job's id, or why there is none.
fn load(
    url: &str,
    name: &str,
    chunks: mpsc::Receiver<std::io::Result<Bytes>>,
    opts: &ingest::Options,
    opened: oneshot::Sender<Result<i32, String>>,
) {
    let connections = status::open_listening(url).and_then(|c| Ok((c, db::connect(url)?)));
    let (mut control, mut load) = match connections {
        Ok(c) => c,
        Err(e) => {
            let _ = opened.send(Err(crate::redact::redact(&format!("{e:#}"))));
            return;
        }
    };
    let reader = Chunks {
        received: chunks,
        chunk: Bytes::new(),
    };
    let input = input::from_reader(name, Box::new(reader), None);
    let mut printer = status::Printer::for_ingest(false, cli::Progress::Never);
    let mut opened = Some(opened);
    let outcome = ingest::ingest_input(
        &mut control,
        &mut load,
        name,
        input,
        opts,
        &mut printer,
        |job| {
            if let Some(tell) = opened.take() {
                let _ = tell.send(Ok(job));
            }
        },
    );
    match (outcome, opened) {
        (Ok(Outcome::Failed { job: None, error }), Some(tell)) => {
            let _ = tell.send(Err(error));
        }
        (Err(e), Some(tell)) => {
            let _ = tell.send(Err(crate::redact::redact(&format!("{e:#}"))));
        }
        (Ok(Outcome::Loaded { job, rows, .. }), _) => {
            log::info!("upload {name}: {rows} trips loaded [job {job}]");
            if let Err(e) = crate::commands::compact::merge(&mut load, None) {
                log::warn!(
                    "job {job} is loaded, but merging pieces failed (answers are the same): {}",
                    crate::redact::redact(&format!("{e:#}"))
                );
            }
        }
        (Ok(Outcome::Failed { job, error }), _) => {
            log::info!("upload {name} failed [job {job:?}]: {error}");
        }
        (Ok(Outcome::Skipped { job, earlier }), _) => {
            log::info!("upload {name}: the same content was loaded by job {earlier} [job {job}]");
        }
        (Err(e), None) => log::warn!(
            "upload {name}: {}",
            crate::redact::redact(&format!("{e:#}"))
        ),
    }
}

/// The body's chunks as a reader, for the loader.
struct Chunks {
    received: mpsc::Receiver<std::io::Result<Bytes>>,
    chunk: Bytes,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.received.blocking_recv() {
                Some(chunk) => self.chunk = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}
