//! `trips ingest`: files handed out to -j workers, each loading one file (or one batch of small files)
//! after another on its own two connections (ingest/), telling each outcome, connecting again after a lost
//! connection.

use super::compact::merge;
use crate::error::{EXIT_FILE_FAILED, usage};
use crate::ingest::{self, Outcome};
use crate::{QUIET, cli, db, progress, status};
use anyhow::{Context, Result};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub fn run(url: &str, args: &cli::IngestArgs) -> Result<ExitCode> {
    if !(args.progress_secs >= 0.0 && args.progress_secs.is_finite()) {
        return Err(usage(format!(
            "--progress-secs must be a number of seconds >= 0, got {}",
            args.progress_secs
        )));
    }
    let opts = ingest::Options {
        skip_invalid: args.skip_invalid,
        force: args.force,
        rejects_dir: args.rejects_dir.clone(),
        progress_every: Duration::from_secs_f64(args.progress_secs),
        progress_rows: args.progress_rows,
        tally_limit: args.tally_limit as usize,
    };
    let workers = usize::from(args.jobs).min(args.files.len());
    let draw = if QUIET.load(Ordering::Relaxed) {
        cli::Progress::Never
    } else {
        args.progress
    };
    match draw {
        cli::Progress::Always if !args.json => progress::draw_on_stderr(true),
        cli::Progress::Auto if !args.json => progress::draw_on_stderr(false),
        _ => {}
    }
    let queue = Queue {
        files: &args.files,
        next: Mutex::new(0),
        batch_bytes: args.batch_mib.saturating_mul(1 << 20),
    };
    let failed = AtomicUsize::new(0);
    // Each worker takes the next file not yet taken, with connections of its own, until none is left.
    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..workers)
            .map(|_| scope.spawn(|| ingest_worker(url, args, &opts, draw, &queue, &failed)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("an ingest worker panicked"))
            .collect()
    });
    if let Some(peak) = peak_memory() {
        log::debug!("peak resident memory: {peak} bytes");
    }
    results.into_iter().collect::<Result<()>>()?;
    Ok(if failed.load(Ordering::Relaxed) > 0 {
        ExitCode::from(EXIT_FILE_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// The files of one `trips ingest`, handed out to its workers one at a time, or as batches of small
/// files that are loaded in one transaction (ingest/mod.rs).
struct Queue<'a> {
    files: &'a [String],
    next: Mutex<usize>,
    /// The most bytes on disk of a batch; 0: no batches.
    batch_bytes: u64,
}

/// The most files in a batch: their jobs are opened in one statement, and done in one commit.
const BATCH_FILES: usize = 10_000;

impl Queue<'_> {
    /// The next file, with the files after it that fit in its batch (with their sizes): a file goes
    /// alone (no size) if it is standard input, not a file that can be read, or larger than a batch.
    fn take(&self) -> Vec<(&str, Option<u64>)> {
        let mut next = self.next.lock().expect("the queue's lock");
        let mut batch: Vec<(&str, Option<u64>)> = Vec::new();
        let mut bytes = 0;
        while let Some(file) = self.files.get(*next) {
            let size = self.batchable_size(file);
            let fits = match size {
                Some(size) => batch.len() < BATCH_FILES && bytes + size <= self.batch_bytes,
                None => false,
            };
            if !batch.is_empty() && !fits {
                break;
            }
            *next += 1;
            batch.push((file, size));
            bytes += size.unwrap_or(0);
            if !fits {
                break; // a file alone
            }
        }
        batch
    }

    fn batchable_size(&self, file: &str) -> Option<u64> {
        if self.batch_bytes == 0 || file == "-" {
            return None;
        }
        let meta = std::fs::metadata(file).ok().filter(|m| m.is_file())?;
        Some(meta.len()).filter(|&size| size <= self.batch_bytes)
    }

    /// The files no worker has taken yet; none will be.
    fn give_up(&self) -> Vec<&str> {
        let mut next = self.next.lock().expect("the queue's lock");
        let from = std::mem::replace(&mut *next, self.files.len());
        self.files
            .get(from..)
            .unwrap_or_default()
            .iter()
            .map(String::as_str)
            .collect()
    }
}

/// Loads files (or batches of them) from the queue one after another on its own two connections, and
/// tells each outcome.
fn ingest_worker(
    url: &str,
    args: &cli::IngestArgs,
    opts: &ingest::Options,
    draw: cli::Progress,
    queue: &Queue,
    failed: &AtomicUsize,
) -> Result<()> {
    let mut files = queue.take();
    if files.is_empty() {
        return Ok(());
    }
    let (mut control, mut load) = ingest_connections(url)?;
    let mut printer = status::Printer::for_ingest(args.json, draw);
    loop {
        let outcomes = if let [(file, _)] = files[..] {
            vec![ingest::ingest_file(
                &mut control,
                &mut load,
                file,
                opts,
                &mut printer,
            )?]
        } else {
            let sized: Vec<(&str, u64)> = files.iter().map(|&(f, s)| (f, s.unwrap_or(0))).collect();
            ingest::ingest_batch(&mut control, &mut load, &sized, opts, &mut printer)?
        };
        let mut loaded = None;
        for (&(file, _), outcome) in files.iter().zip(outcomes) {
            loaded = tell(file, outcome, failed).or(loaded);
        }
        if let Some(job) = loaded
            && !args.no_compact
        {
            // The trips are committed and visible: a failed merge loses nothing and changes no answer,
            // so it is reported and the load still counts as done.
            if let Err(e) = merge(&mut load, None) {
                progress::above(|| {
                    eprintln!(
                        "warning: job {job} is loaded, but merging pieces failed (answers are the same; \
                         `trips compact` tries again): {}",
                        crate::redact::redact(&format!("{e:#}"))
                    )
                });
            }
        }
        let next = queue.take();
        if next.is_empty() {
            return Ok(());
        }
        if control.is_closed() || load.is_closed() {
            // A lost connection failed the files it was loading; the next wait for the database.
            let lost = anyhow::anyhow!("while loading {}", files[files.len() - 1].0);
            (control, load) = db::reconnect(&lost, Some(RECONNECT_FOR), || ingest_connections(url))
                .with_context(|| {
                    let mut left: Vec<&str> = next.iter().map(|&(f, _)| f).collect();
                    left.extend(queue.give_up());
                    format!(
                        "while connecting again after a lost connection; not loaded: {}",
                        left.join(", ")
                    )
                })?;
        }
        files = next;
    }
}

/// Tells the outcome of a file; returns its job if it was loaded.
fn tell(file: &str, outcome: Outcome, failed: &AtomicUsize) -> Option<i32> {
    match outcome {
        Outcome::Loaded {
            job,
            rows,
            rejected,
            rejects_file,
            seconds,
        } => {
            let rejects = match rejects_file {
                Some(p) => format!(", {rejected} rejected (see {})", p.display()),
                None => String::new(),
            };
            say!(
                "loaded {file}: {rows} trips in {seconds:.2} s ({:.0} rows/s){rejects} [job {job}]",
                rows as f64 / seconds.max(1e-9)
            );
            return Some(job);
        }
        Outcome::Skipped { job, earlier } => say!(
            "skipped {file}: this content was already loaded by job {earlier} (use --force to load it again) [job {job}]"
        ),
        Outcome::Failed { job, error } => {
            failed.fetch_add(1, Ordering::Relaxed);
            let job = job.map(|j| format!(" [job {j}]")).unwrap_or_default();
            // A job's error was redacted where it is stored (ingest/mod.rs); opening a file names only the file.
            progress::above(|| eprintln!("error: failed to load {file}{job}: {error}"));
        }
    }
    None
}

/// The most memory this process has held resident (VmHWM, Linux), in bytes.
fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// How long `trips ingest` tries to connect again after a lost connection before it gives up on the files
/// left (a server restart takes seconds; a failover, maybe a minute).
const RECONNECT_FOR: Duration = Duration::from_secs(120);

/// The loader's two connections (ingest.rs): the job's, listening for status, and the file's.
fn ingest_connections(url: &str) -> Result<(postgres::Client, postgres::Client)> {
    Ok((status::open_listening(url)?, db::connect(url)?))
}
