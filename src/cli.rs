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

    /// Seconds between progress updates (written to the job row and shown on stderr).
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub progress_secs: f64,
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
