//! `trips`: loads vehicle-trip CSV files into PostGIS. This file only wires the command line to the modules
//! and turns outcomes into messages and exit codes (documented in docs/cli.md).

/// `println!` that returns the error instead of panicking, so that a closed pipe (`trips jobs | head -1`)
/// ends the command quietly (see `is_broken_pipe`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// `-q`: no progress and no outcome lines, only warnings and errors.
pub static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A line for people on stderr (above any progress bars), unless `-q`.
macro_rules! say {
    ($($arg:tt)*) => {
        if !$crate::QUIET.load(std::sync::atomic::Ordering::Relaxed) {
            $crate::progress::above(|| eprintln!($($arg)*));
        }
    };
}

mod cli;
mod commands;
mod conninfo;
mod copy;
mod db;
mod error;
mod generate;
mod groups;
mod ingest;
mod input;
mod migrate;
mod parse;
mod progress;
mod redact;
mod serve;
mod status;
mod weekly;

use clap::Parser;
use cli::{Cli, Command};
use db::open;
use error::{EXIT_DATABASE, EXIT_USAGE, Usage, is_broken_pipe, is_permission_denied};
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let cli = Cli::parse();
    QUIET.store(cli.quiet > 0, std::sync::atomic::Ordering::Relaxed);
    init_logging(cli.quiet, cli.verbose);
    let given = cli.database_url.as_deref();
    let url = db::resolve_url(given.or(cli.command.conn().and_then(|c| c.database_url.as_deref())));
    let result = match cli.command {
        Command::Gen(args) => generate::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Completions(args) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut cmd, "trips", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
            .render(&mut std::io::stdout())
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
        Command::Migrate(_) => open(&url).map(|_| ExitCode::SUCCESS),
        Command::Roles(_) => open(&url).and_then(|mut c| commands::roles::run(&mut c)),
        Command::Ingest(args) => commands::ingest::run(&url, &args),
        Command::Watch(args) => commands::watch::run(&url, &args),
        Command::Jobs(args) => commands::jobs::run(&url, &args),
        Command::Groups(args) => open(&url)
            .and_then(|mut c| groups::show(&mut c, &args))
            .map(|()| ExitCode::SUCCESS),
        Command::WeeklyAvg(args) => open(&url)
            .and_then(|mut c| weekly::show(&mut c, &args))
            .map(|()| ExitCode::SUCCESS),
        Command::Compact(args) => {
            open(&url).and_then(|mut c| commands::compact::run(&mut c, args.job))
        }
        Command::Serve(args) => serve::run(&url, &args).map(|()| ExitCode::SUCCESS),
        Command::Refresh(_) => open(&url).and_then(|mut c| {
            let started = Instant::now();
            groups::refresh(&mut c)?;
            say!(
                "rebuilt the rollups and trip_groups in {:.2} s",
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }),
    };
    result.unwrap_or_else(|e| report(&e, &url))
}

/// -q and -v decide what is logged; without them, RUST_LOG if set.
fn init_logging(quiet: u8, verbose: u8) {
    let level = match (quiet, verbose) {
        (2.., _) => Some("error"),
        (1, _) => Some("warn"),
        (_, 1) => Some("info,trips=debug,postgres=warn,tokio_postgres=warn"),
        (_, 2..) => Some("debug,trips=trace"),
        (0, 0) => None,
    };
    let env =
        env_logger::Env::default().default_filter_or("info,postgres=warn,tokio_postgres=warn");
    let mut logger = env_logger::Builder::from_env(env);
    if let Some(level) = level {
        logger.parse_filters(level);
    }
    logger
        .target(env_logger::Target::Pipe(Box::new(progress::Stderr)))
        // Every log line goes through redact(): no password of a connection string is ever printed.
        .format(|buf, record| {
            use std::io::Write;
            writeln!(
                buf,
                "[{:<5}] {}",
                record.level(),
                redact::redact(&record.args().to_string())
            )
        })
        .init();
}

/// Tells the error of a command and gives its exit code (docs/cli.md).
fn report(e: &anyhow::Error, url: &str) -> ExitCode {
    if is_broken_pipe(e) {
        return ExitCode::SUCCESS;
    }
    eprintln!("error: {}", redact::redact(&format!("{e:#}")));
    if is_permission_denied(e) {
        eprintln!(
            "hint: connected to {}. Loading needs a login in the role trips_loader, reading one in \
             trips_reader; schema changes and `trips refresh` need the owner of the tables \
             (docs/operations.md, \"Roles, TLS, passwords\").",
            db::describe(url)
        );
    }
    if e.downcast_ref::<Usage>().is_some() {
        ExitCode::from(EXIT_USAGE)
    } else {
        ExitCode::from(EXIT_DATABASE)
    }
}
