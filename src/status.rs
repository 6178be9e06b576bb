//! Ingest status as the database pushes it: the JSON payloads of the `ingest_status` channel
//! (db/003_ingest_jobs.sql), decoded and shown. `trips ingest` shows its own job's events as progress, `trips watch` every event,
//! `trips jobs` the same payloads read from the table.

use crate::cli::Progress;
use crate::progress::{self, FileBar};
use anyhow::{Context, Result};
use fallible_iterator::FallibleIterator;
use postgres::Client;
use serde::Deserialize;
use std::io::{IsTerminal, Write};
use std::time::Duration;

pub const CHANNEL: &str = "ingest_status";

/// One notification's payload (see db/003_ingest_jobs.sql for the fields).
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    pub job: i32,
    pub file: String,
    pub state: String,
    pub rows: i64,
    pub rejected: i64,
    pub bytes: i64,
    pub total_bytes: Option<i64>,
    pub elapsed_s: f64,
    pub error: Option<String>,
    pub duplicate_of: Option<i32>,
    pub rejects_file: Option<String>,
    /// When the payload was made (the database's clock, UTC, microseconds).
    #[serde(default)]
    pub at: Option<String>,
}

impl Event {
    pub fn is_final(&self) -> bool {
        matches!(self.state.as_str(), "done" | "failed" | "skipped")
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        let rate = self.rows as f64 / self.elapsed_s.max(1e-3);
        let head = format!("{} [job {}] {}", self.file, self.job, self.state);
        match self.state.as_str() {
            "failed" => format!(
                "{head} after {:.2} s: {}",
                self.elapsed_s,
                self.error.as_deref().unwrap_or("(no error recorded)")
            ),
            "skipped" => format!(
                "{head}: the same content was loaded by job {}",
                self.duplicate_of.map_or("?".into(), |j| j.to_string())
            ),
            "queued" => head,
            _ => {
                let percent = match self.total_bytes {
                    Some(t) if t > 0 => format!(
                        " ({:.1}% of {})",
                        100.0 * self.bytes as f64 / t as f64,
                        human_bytes(t as u64)
                    ),
                    _ => String::new(),
                };
                let rejects = match &self.rejects_file {
                    Some(path) => format!(" (written to {path})"),
                    None => String::new(),
                };
                format!(
                    "{head}: {} rows{percent}, {rate:.0} rows/s, {} rejected{rejects}, {:.2} s",
                    self.rows, self.rejected, self.elapsed_s
                )
            }
        }
    }

    /// A few words for beside a progress bar: `loading 1.2M rows, 340k/s` (and `, 12 rejected`).
    pub fn brief(&self) -> String {
        let rate = (self.rows as f64 / self.elapsed_s.max(1e-3)) as i64;
        let rejected = match self.rejected {
            0 => String::new(),
            n => format!(", {} rejected", short(n)),
        };
        format!(
            "{} {} rows, {}/s{rejected}",
            self.state,
            short(self.rows),
            short(rate)
        )
    }
}

/// A count in a few characters: 9999, 12.3k, 456k, 7.8M, 123M, 1.2G.
fn short(n: i64) -> String {
    let v = n as f64;
    match n.unsigned_abs() {
        0..10_000 => n.to_string(),
        10_000..100_000 => format!("{:.1}k", v / 1e3),
        100_000..1_000_000 => format!("{:.0}k", v / 1e3),
        1_000_000..100_000_000 => format!("{:.1}M", v / 1e6),
        100_000_000..1_000_000_000 => format!("{:.0}M", v / 1e6),
        _ => format!("{:.1}G", v / 1e9),
    }
}

pub fn parse(payload: &str) -> Option<Event> {
    serde_json::from_str(payload)
        .map_err(|e| {
            log::warn!("ignoring an ingest_status payload that does not decode ({e}): {payload}")
        })
        .ok()
}

/// How events are shown (one way per printer).
pub enum Printer {
    /// The raw payloads, one per line on stdout (--json): data, printed even with -q.
    Json,
    /// Nothing (--progress never, -q).
    Silent,
    /// A bar per file on stderr (src/progress.rs), the current file's once its first event comes.
    Bars(Option<FileBar>),
    /// One line per event on stderr.
    Lines,
    /// One line per event on stdout (`trips watch`).
    Stdout,
}

impl Printer {
    /// For `trips ingest`: progress on stderr, drawn as `draw` says (--progress; `progress::draw_on_stderr`
    /// starts the drawing), or the raw payloads on stdout with --json.
    pub fn for_ingest(json: bool, draw: Progress) -> Printer {
        match draw {
            _ if json => Printer::Json,
            Progress::Never => Printer::Silent,
            Progress::Always => Printer::Bars(None),
            Progress::Auto if std::io::stderr().is_terminal() => Printer::Bars(None),
            Progress::Auto => Printer::Lines,
        }
    }

    /// For `trips watch`: one line per event on stdout.
    pub fn for_watch(json: bool) -> Printer {
        if json { Printer::Json } else { Printer::Stdout }
    }

    /// Shows one event. An error writing to stdout (a closed pipe) is returned, for `trips watch` to end
    /// on; `trips ingest` goes on loading whatever happens to its output.
    pub fn show(&mut self, raw: &str, event: &Event) -> std::io::Result<()> {
        let to_stdout = |line: &str| {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}").and_then(|()| out.flush())
        };
        match self {
            Printer::Json => to_stdout(raw),
            Printer::Silent => Ok(()),
            Printer::Bars(bar) => {
                let total = event.total_bytes.map(|t| t.max(0) as u64);
                bar.get_or_insert_with(|| FileBar::new(&event.file, total))
                    .update(event.bytes.max(0) as u64, event.brief());
                Ok(())
            }
            Printer::Lines => {
                progress::above(|| eprintln!("{}", event.describe()));
                Ok(())
            }
            Printer::Stdout => to_stdout(&event.describe()),
        }
    }

    pub fn is_json(&self) -> bool {
        matches!(self, Printer::Json)
    }

    /// Ends the file's bar, before its outcome line.
    pub fn end_line(&mut self) {
        if let Printer::Bars(bar) = self
            && let Some(bar) = bar.take()
        {
            bar.finish();
        }
    }
}

/// Opens a connection (crate::db::open) that listens on ingest_status.
pub fn open_listening(url: &str) -> Result<Client> {
    let mut client = crate::db::open(url)?;
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .context("while subscribing to ingest_status")?;
    Ok(client)
}

/// Events already received on the connection, without waiting.
pub fn pending(client: &mut Client) -> Result<Vec<(String, Event)>> {
    let mut events = Vec::new();
    let mut notifications = client.notifications();
    let mut it = notifications.iter();
    while let Some(n) = it.next()? {
        if let Some(e) = parse(n.payload()) {
            events.push((n.payload().to_string(), e));
        }
    }
    Ok(events)
}

/// The next event, waiting at most `timeout`.
pub fn next(client: &mut Client, timeout: Duration) -> Result<Option<(String, Event)>> {
    let mut notifications = client.notifications();
    let mut it = notifications.timeout_iter(timeout);
    while let Some(n) = it.next()? {
        if let Some(e) = parse(n.payload()) {
            return Ok(Some((n.payload().to_string(), e)));
        }
    }
    Ok(None)
}

/// The current state of a job, as the same payload a notification would carry.
pub fn current(client: &mut Client, job: i32) -> Result<Option<(String, Event)>> {
    Ok(payloads(client, "WHERE id = $1", &[&job])?.pop())
}

/// The jobs after `newest` and those in `running`, oldest first: what `trips watch` missed while it was
/// not connected.
pub fn since(client: &mut Client, newest: i32, running: &[i32]) -> Result<Vec<(String, Event)>> {
    payloads(
        client,
        "WHERE id > $1 OR id = ANY($2) ORDER BY id",
        &[&newest, &running],
    )
}

/// The most recent jobs, newest first.
pub fn recent(client: &mut Client, limit: i64) -> Result<Vec<(String, Event)>> {
    payloads(client, "ORDER BY id DESC LIMIT $1", &[&limit])
}

/// The status payload of every job; a WHERE and/or ORDER BY clause picks them.
pub const PAYLOADS: &str = "SELECT ingest_status_payload(j) FROM ingest_jobs j";

/// The status payloads of the jobs that `rest` (a WHERE and/or ORDER BY clause) selects, decoded.
fn payloads(
    client: &mut Client,
    rest: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<Vec<(String, Event)>> {
    let sql = format!("{PAYLOADS} {rest}");
    Ok(client
        .query(&sql, params)?
        .iter()
        .filter_map(|row| {
            let raw: String = row.get(0);
            parse(&raw).map(|e| (raw, e))
        })
        .collect())
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(bytes: i64, total: Option<i64>) -> Event {
        Event {
            job: 1,
            file: "f.csv".into(),
            state: "loading".into(),
            rows: 10,
            rejected: 0,
            bytes,
            total_bytes: total,
            elapsed_s: 1.0,
            error: None,
            duplicate_of: None,
            rejects_file: None,
            at: None,
        }
    }

    #[test]
    fn counts_are_short() {
        let cases = [
            (0, "0"),
            (9999, "9999"),
            (12_345, "12.3k"),
            (456_000, "456k"),
            (7_800_000, "7.8M"),
            (123_000_000, "123M"),
            (1_200_000_000, "1.2G"),
        ];
        for (n, text) in cases {
            assert_eq!(short(n), text);
        }
    }

    #[test]
    fn a_brief_says_state_rows_rate_and_rejects() {
        let mut e = event(50, Some(100));
        e.rows = 1_200_000;
        e.rejected = 12;
        e.elapsed_s = 2.0;
        assert_eq!(e.brief(), "loading 1.2M rows, 600k/s, 12 rejected");
    }

    #[test]
    fn lines_say_what_happened() {
        assert_eq!(
            event(50, Some(100)).describe(),
            "f.csv [job 1] loading: 10 rows (50.0% of 100 B), 10 rows/s, 0 rejected, 1.00 s"
        );
    }
}
