//! The ingest status, pushed: one connection listens on `ingest_status` and relays every notification
//! to every client of GET /v1/events (a broadcast channel), as server-sent events.
//!
//! Each event's `id:` is the payload's `at` (the database's clock). A client that reconnects with
//! `Last-Event-ID` first gets the current state of every job still in ingest_jobs that changed after it:
//! unfinished jobs, and jobs that started or finished since. The relay does the same for everyone when
//! its own connection comes back after a loss.

use super::App;
use super::answers::{current_payload, no_such_job, query};
use super::error::ApiError;
use crate::status::{self, PAYLOADS};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_postgres::AsyncMessage;

/// How many events a slow client may fall behind before it misses some.
const BACKLOG: usize = 4096;

/// An interval at which a comment keeps idle streams (and proxies) open.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// One notification: the payload as the database sent it, and what the streams need of it.
pub struct Note {
    raw: String,
    job: i32,
    is_final: bool,
    at: String,
}

impl Note {
    fn new(raw: String) -> Option<Note> {
        let event = status::parse(&raw)?;
        Some(Note {
            job: event.job,
            is_final: event.is_final(),
            at: event.at.clone().unwrap_or_default(),
            raw,
        })
    }

    fn to_event(&self) -> Event {
        Event::default().id(self.at.clone()).data(&self.raw)
    }
}

/// Starts the relay; returns the channel it publishes on.
pub fn start_relay(url: String) -> broadcast::Sender<Arc<Note>> {
    let (sender, _) = broadcast::channel(BACKLOG);
    tokio::spawn(relay(url, sender.clone()));
    sender
}

/// How often the server looks for jobs whose loader is gone.
const REAP_EVERY: Duration = Duration::from_secs(2);

/// A loader that dies says nothing; its job is marked failed by the next command that connects
/// (ingest_reap_abandoned, db/003_ingest_jobs.sql). The server is such a command, all the time: its
/// clients see a killed loader's job end `failed` within seconds.
pub async fn reap(pool: deadpool_postgres::Pool) {
    let mut said = false;
    loop {
        tokio::time::sleep(REAP_EVERY).await;
        let reaped = async {
            let client = pool.get().await?;
            let n: i32 = client
                .query_one("SELECT ingest_reap_abandoned()", &[])
                .await?
                .get(0);
            anyhow::Ok(n)
        };
        match reaped.await {
            Ok(n) if n > 0 => {
                log::warn!("marked {n} abandoned ingest job(s) as failed (their loader was gone)")
            }
            Ok(_) => said = false,
            Err(e) if !said => {
                said = true;
                log::warn!(
                    "cannot look for abandoned ingest jobs: {}",
                    crate::redact::redact(&format!("{e:#}"))
                );
            }
            Err(_) => {}
        }
    }
}

/// Listens, and after a lost connection connects again (1 s, doubling to 30 s) and catches up.
async fn relay(url: String, sender: broadcast::Sender<Arc<Note>>) {
    let mut pause = Duration::from_secs(1);
    let mut last_at: Option<String> = None;
    loop {
        let started = Instant::now();
        if let Err(e) = listen(&url, &sender, &mut last_at).await {
            log::warn!(
                "the event relay lost its connection to the database ({}); connecting again in {} s",
                crate::redact::redact(&format!("{e:#}")),
                pause.as_secs()
            );
        }
        if started.elapsed() > Duration::from_secs(60) {
            pause = Duration::from_secs(1);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(30));
    }
}

/// One connection's life: LISTEN, catch up after `last_at` if this is a reconnection, relay until the
/// connection ends.
async fn listen(
    url: &str,
    sender: &broadcast::Sender<Arc<Note>>,
    last_at: &mut Option<String>,
) -> anyhow::Result<()> {
    let (client, mut connection) = crate::db::connect_async(url).await?;
    let (payloads, mut received) = tokio::sync::mpsc::unbounded_channel::<String>();
    // The connection carries both the answers to `client` and the notifications: drive it here.
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            if let AsyncMessage::Notification(n) = message? {
                let _ = payloads.send(n.payload().to_string());
            }
        }
        anyhow::Ok(())
    });
    client.batch_execute(crate::db::NO_IDLE_TIMEOUTS).await?;
    client
        .batch_execute(&format!("LISTEN {}", status::CHANNEL))
        .await?;
    if let Some(at) = last_at.as_deref() {
        for note in changed_since(&client, at).await? {
            let _ = sender.send(Arc::new(note));
        }
    }
    log::info!("relaying {} to GET /v1/events", status::CHANNEL);
    while let Some(raw) = received.recv().await {
        if let Some(note) = Note::new(raw) {
            *last_at = Some(note.at.clone());
            // No receiver (no client connected) is not an error.
            let _ = sender.send(Arc::new(note));
        }
    }
    driver.await??;
    anyhow::bail!("the connection ended")
}

/// The current state of every job that changed after `at`: unfinished, or started or finished since.
async fn changed_since(client: &tokio_postgres::Client, at: &str) -> anyhow::Result<Vec<Note>> {
    let rows = client
        .query(
            &format!(
                "{PAYLOADS}
                  WHERE finished_at IS NULL OR finished_at > $1::text::timestamptz
                     OR started_at > $1::text::timestamptz
                  ORDER BY id"
            ),
            &[&at],
        )
        .await?;
    Ok(rows.iter().filter_map(|r| Note::new(r.get(0))).collect())
}

#[derive(Deserialize)]
pub struct EventsQuery {
    /// Only this job's events; the stream ends after its final one.
    job: Option<i32>,
}

/// GET /v1/events: every ingest_status notification as it arrives.
pub async fn stream(
    State(app): State<App>,
    q: Result<Query<EventsQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let job = query(q)?.job;
    // Subscribed before the catch-up is read: an event between the two comes twice, never not at all.
    let live = app.events.subscribe();
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or_default().to_string());
    let client = app.pool.get().await?;
    let mut backlog = VecDeque::new();
    if let Some(at) = &last_event_id {
        if client
            .query_one("SELECT $1::text::timestamptz", &[at])
            .await
            .is_err()
        {
            return Err(ApiError::bad_request(format!(
                "Last-Event-ID {:?} is not the id of an event of this server (a timestamp)",
                at.chars().take(80).collect::<String>()
            )));
        }
        backlog.extend(
            changed_since(&client, at)
                .await?
                .into_iter()
                .filter(|n| job.is_none_or(|j| n.job == j)),
        );
    }
    if let Some(id) = job {
        // The job's state now, so that a job that ended before the client came still ends its stream.
        let Some(now) = current_payload(&client, id).await? else {
            return Err(no_such_job(id));
        };
        if backlog.is_empty()
            && let Some(note) = Note::new(now)
        {
            backlog.push_back(note);
        }
    }
    drop(client);
    let feed = Feed {
        caught_up: backlog.iter().map(|n| (n.job, n.at.clone())).collect(),
        backlog: backlog.into_iter().map(Arc::new).collect(),
        live,
        job,
        ended: false,
        stopping: app.stopping.clone(),
    };
    Ok(Sse::new(futures_util::stream::unfold(feed, Feed::next))
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat")))
}

/// What one client's stream sends: the catch-up, then the live events (of its job, if it asked for one).
struct Feed {
    backlog: VecDeque<Arc<Note>>,
    /// The `at` of each job's state in the catch-up: a live event of that job made before it (still on
    /// its way through the relay when the catch-up was read) is older news, and is not sent.
    caught_up: HashMap<i32, String>,
    live: broadcast::Receiver<Arc<Note>>,
    job: Option<i32>,
    ended: bool,
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl Feed {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Feed)> {
        if self.ended {
            return None;
        }
        let note = match self.backlog.pop_front() {
            Some(note) => note,
            None => loop {
                tokio::select! {
                    received = self.live.recv() => match received {
                        Ok(note) if self.wants(&note) => break note,
                        Ok(_) => continue,
                        Err(RecvError::Lagged(missed)) => {
                            log::warn!("an event stream fell {missed} events behind and missed them");
                            continue;
                        }
                        Err(RecvError::Closed) => return None,
                    },
                    _ = self.stopping.changed() => return None,
                }
            },
        };
        self.ended = self.job.is_some() && note.is_final;
        Some((Ok(note.to_event()), self))
    }

    /// Whether a live event is for this client: of its job, if it asked for one, and not older than
    /// what the catch-up sent of the same job (`at` has a fixed width: its text sorts as its time).
    fn wants(&self, note: &Note) -> bool {
        self.job.is_none_or(|j| note.job == j)
            && self
                .caught_up
                .get(&note.job)
                .is_none_or(|sent| note.at > *sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(job: i32, at: &str) -> Note {
        Note {
            raw: String::new(),
            job,
            is_final: false,
            at: at.into(),
        }
    }

    #[test]
    fn a_live_event_older_than_the_catch_up_of_its_job_is_not_sent() {
        let feed = |job| Feed {
            backlog: VecDeque::new(),
            caught_up: [(1, "2026-12-06T21:14:25.700000Z".to_string())].into(),
            live: broadcast::channel(1).1,
            job,
            ended: false,
            stopping: tokio::sync::watch::channel(false).1,
        };
        let all = feed(None);
        assert!(!all.wants(&note(1, "2026-12-06T21:14:25.600000Z")));
        assert!(!all.wants(&note(1, "2026-12-06T21:14:25.700000Z")));
        assert!(all.wants(&note(1, "2026-12-06T21:14:25.800000Z")));
        assert!(all.wants(&note(2, "2026-12-06T21:14:25.600000Z")));
        let one = feed(Some(1));
        assert!(one.wants(&note(1, "2026-12-06T21:14:26.000000Z")));
        assert!(!one.wants(&note(2, "2026-12-06T21:14:26.000000Z")));
    }
}
