//! `trips`: loads vehicle-trip CSV files into PostGIS. This file only wires the command line to the modules
//! and turns outcomes into messages and exit codes (documented in README.md).

mod cli;
mod copy;
mod db;
mod generate;
mod ingest;
mod input;
mod migrate;
mod parse;

use anyhow::{Result, bail};
use clap::Parser;
use cli::{Cli, Command};
use ingest::Outcome;
use std::process::ExitCode;
use std::time::Duration;

/// Exit codes: 0 success, 1 some file was not loaded, 2 usage error (clap), 3 database unusable.
const EXIT_FILE_FAILED: u8 = 1;
const EXIT_DATABASE: u8 = 3;

fn main() -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,tokio_postgres=warn"),
    )
    .format_timestamp(None)
    .format_target(false)
    .init();
    let cli = Cli::parse();
    let url = cli
        .database_url
        .clone()
        .unwrap_or_else(|| db::LOCAL_DATABASE_URL.to_string());
    let result = match cli.command {
        Command::Gen(args) => generate::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Migrate => open(&url).map(|_| ExitCode::SUCCESS),
        Command::Ingest(args) => ingest(&url, &args),
    };
    result.unwrap_or_else(|e| {
        if is_broken_pipe(&e) {
            return ExitCode::SUCCESS;
        }
        eprintln!("error: {e:#}");
        ExitCode::from(EXIT_DATABASE)
    })
}

/// Connects, checks the server and applies the schema.
fn open(url: &str) -> Result<postgres::Client> {
    let mut client = db::connect(url)?;
    let v = db::check_server(&mut client)?;
    log::debug!(
        "connected to {}: PostgreSQL {}, PostGIS {}",
        db::describe(url),
        v.postgres,
        v.postgis.as_deref().unwrap_or("?")
    );
    for applied in migrate::migrate(&mut client)? {
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

fn ingest(url: &str, args: &cli::IngestArgs) -> Result<ExitCode> {
    if !(args.progress_secs >= 0.0 && args.progress_secs.is_finite()) {
        bail!(
            "--progress-secs must be a number of seconds >= 0, got {}",
            args.progress_secs
        );
    }
    let opts = ingest::Options {
        skip_invalid: args.skip_invalid,
        force: args.force,
        rejects_dir: args.rejects_dir.clone(),
        progress_every: Duration::from_secs_f64(args.progress_secs),
    };
    let mut control = open(url)?;
    let mut load = db::connect(url)?;
    let mut failed = 0;
    for file in &args.files {
        match ingest::ingest_file(&mut control, &mut load, file, &opts)? {
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
                eprintln!(
                    "loaded {file}: {rows} trips in {seconds:.2} s ({:.0} rows/s){rejects} [job {job}]",
                    rows as f64 / seconds.max(1e-9)
                );
            }
            Outcome::Skipped { job, earlier } => eprintln!(
                "skipped {file}: this content was already loaded by job {earlier} (use --force to load it again) [job {job}]"
            ),
            Outcome::Failed { job, error } => {
                failed += 1;
                let job = job.map(|j| format!(" [job {j}]")).unwrap_or_default();
                eprintln!("error: failed to load {file}{job}: {error}");
            }
        }
    }
    Ok(if failed > 0 {
        ExitCode::from(EXIT_FILE_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
