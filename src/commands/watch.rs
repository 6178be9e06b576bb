//! `trips watch`: every ingest_status event as it arrives, surviving a lost connection.

use crate::error::{EXIT_FILE_FAILED, usage};
use crate::{cli, db, ingest, status};
use anyhow::Result;
use std::process::ExitCode;
use std::time::Duration;

/// How often `trips watch` checks for loaders that died without a word, while no event arrives.
const REAP_EVERY: Duration = Duration::from_secs(5);

/// `trips watch`: every event (or job N's) until Ctrl-C (or job N ends). If the connection is lost (a
/// server restart, say), it says so, connects again with growing pauses (1 s, doubling to 30 s), and then
/// shows what changed meanwhile: the jobs started since, and the current state of those still running.
pub fn run(url: &str, args: &cli::WatchArgs) -> Result<ExitCode> {
    let mut client = status::open_listening(url)?;
    let mut printer = status::Printer::for_watch(args.json);
    // Listening before reading the job's state, so no change between the two is missed.
    let mut shown = Shown {
        last: Default::default(),
        newest: client
            .query_one("SELECT coalesce(max(id), 0) FROM ingest_jobs", &[])?
            .get(0),
    };
    if let Some(job) = args.job {
        match status::current(&mut client, job)? {
            Some((raw, event)) => {
                if let Some(code) = shown.show(&mut printer, args.job, &raw, &event)? {
                    return Ok(code);
                }
            }
            None if job <= shown.newest => {
                return Err(usage(format!(
                    "there is no ingest job {job} (jobs so far: 1 to {}); `trips jobs` lists them",
                    shown.newest
                )));
            }
            None => say!("waiting for job {job} to start"),
        }
    } else if !args.json {
        say!("following every ingest (Ctrl-C to stop)");
    }
    loop {
        let next = status::next(&mut client, REAP_EVERY).and_then(|got| {
            if got.is_none() {
                // Marking an abandoned job failed sends its event, which arrives on the next turn.
                client.query_one("SELECT ingest_reap_abandoned()", &[])?;
            }
            Ok(got)
        });
        match next {
            Ok(Some((raw, event))) => {
                if let Some(code) = shown.show(&mut printer, args.job, &raw, &event)? {
                    return Ok(code);
                }
            }
            Ok(None) => {}
            Err(e) if ingest::connection_lost(&e) => {
                client = db::reconnect(&e, None, || status::open_listening(url))?;
                say!("showing what changed meanwhile");
                for (raw, event) in status::since(&mut client, shown.newest, &shown.running())? {
                    if let Some(code) = shown.show(&mut printer, args.job, &raw, &event)? {
                        return Ok(code);
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// What `trips watch` has shown: the last state and rows of each job, and the newest job id known.
#[derive(Default)]
struct Shown {
    last: std::collections::HashMap<i32, (String, i64)>,
    newest: i32,
}

impl Shown {
    /// Shows an event of the job followed (or of any, without --job) unless it repeats the last one
    /// shown; returns the exit code when the job followed has ended. An error is stdout closed.
    fn show(
        &mut self,
        printer: &mut status::Printer,
        follow: Option<i32>,
        raw: &str,
        event: &status::Event,
    ) -> std::io::Result<Option<ExitCode>> {
        self.newest = self.newest.max(event.job);
        if follow.is_some_and(|j| j != event.job) {
            return Ok(None);
        }
        let now = (event.state.clone(), event.rows);
        if self.last.get(&event.job) != Some(&now) {
            printer.show(raw, event)?;
            self.last.insert(event.job, now);
        }
        Ok((follow.is_some() && event.is_final()).then(|| outcome_code(event)))
    }

    /// Jobs last shown unfinished.
    fn running(&self) -> Vec<i32> {
        let finals = ["done", "failed", "skipped"];
        self.last
            .iter()
            .filter(|(_, (state, _))| !finals.contains(&state.as_str()))
            .map(|(&job, _)| job)
            .collect()
    }
}

fn outcome_code(event: &status::Event) -> ExitCode {
    if event.state == "failed" {
        ExitCode::from(EXIT_FILE_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}
