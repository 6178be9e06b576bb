//! The command line: what users can type, parsed by clap.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "trips",
    version,
    about = "Load vehicle-trip CSV files into PostGIS and ask questions about them"
)]
pub struct Cli {
    /// PostgreSQL connection: a URL (postgresql://user:password@host:port/db) or key=value pairs.
    /// Default: the local cluster started by scripts/run.sh (postgresql://trips@127.0.0.1:54329/trips).
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Load trip CSV files (paths, - for stdin, gzip recognised automatically), each as one atomic job.
    Ingest(IngestArgs),
    /// Follow every ingest as the database reports it (LISTEN ingest_status), until Ctrl-C or job N ends.
    Watch(WatchArgs),
    /// List recent ingest jobs.
    Jobs(JobsArgs),
    /// The largest groups of similar trips (same region, origin and destination cells, time of day).
    Groups(GroupsArgs),
    /// Rebuild the rollups and the trip_groups materialized view from the trips.
    Refresh,
    /// Apply the database schema (also done automatically by every command that uses the database).
    Migrate,
    /// Write synthetic trips as CSV in the input format to stdout (for benchmarks and tests).
    Gen(GenArgs),
}

#[derive(Args)]
pub struct IngestArgs {
    /// Files to load: paths, or - for standard input. Gzip files are decompressed on the fly.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,

    /// Load the valid records of a file and write the invalid ones, with line and reason, to a rejects file.
    #[arg(long)]
    pub skip_invalid: bool,

    /// Load a file even if the same content was already loaded (as a new job).
    #[arg(long)]
    pub force: bool,

    /// Folder for rejects files (written only with --skip-invalid, when a record is rejected).
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub rejects_dir: PathBuf,

    /// Seconds between progress updates, written to the job row and so pushed to every listener
    /// (0: only state changes).
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub progress_secs: f64,

    /// Write progress every N records instead of by time (deterministic; for tests and slow links).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub progress_rows: Option<u64>,

    /// Print the raw ingest_status payloads (JSON, one per line) on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct WatchArgs {
    /// Follow only job N and exit when it ends: status 0 if done or skipped, 1 if failed.
    #[arg(long, value_name = "N")]
    pub job: Option<i32>,

    /// Print the raw payloads (JSON, one per line).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct JobsArgs {
    /// How many jobs, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: i64,

    /// One JSON object per job (the ingest_status payload), one per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct GenArgs {
    /// How many trips to write.
    #[arg(long)]
    pub rows: u64,

    /// Seed of the pseudo-random generator: the same seed writes the same file.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// How many days the trips span, starting Monday 2016-01-04.
    #[arg(long, default_value_t = 3 * 365)]
    pub days: u32,
}

#[derive(Args)]
pub struct GroupsArgs {
    /// Only this region.
    #[arg(long)]
    pub region: Option<String>,

    /// How many groups, largest first.
    #[arg(long, default_value_t = 20)]
    pub top: i64,

    /// Only groups with at least this many trips.
    #[arg(long, default_value_t = 1)]
    pub min_trips: i64,

    /// Cell size in metres (north-south): the stored one (about 1113 m) or an odd multiple of it.
    #[arg(long, value_name = "METRES")]
    pub cell_m: Option<f64>,

    /// Departure bucket in minutes: the stored one (60) or a multiple of it that divides a day.
    #[arg(long, value_name = "MINUTES")]
    pub bucket_min: Option<i32>,

    /// One JSON object per group, one per line.
    #[arg(long)]
    pub json: bool,
}
