//! The command line: what users can type, parsed by clap.

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "trips",
    version,
    about = "Load vehicle-trip CSV files into PostGIS and ask questions about them"
)]
pub struct Cli {
    /// More messages (-v: the loader's own debug lines, -vv: everything's).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Fewer messages (-q: warnings and errors only, no progress; -qq: errors only).
    #[arg(short, long, action = ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,

    /// The connection, given before the command (`trips -d URL jobs`): the same as after it.
    #[arg(short = 'd', long, value_name = "URL", hide = true)]
    pub database_url: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// How to reach the database: every command but `gen`, `completions` and `man` takes it.
#[derive(Args, Clone)]
pub struct Conn {
    /// PostgreSQL connection: a URL (postgresql://user:password@host:port/db) or key=value pairs; what it
    /// leaves out comes from PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD as in libpq. Default, when
    /// neither this nor any of those is set: the local cluster of scripts/run.sh
    /// (postgresql://trips@127.0.0.1:54329/trips).
    #[arg(
        short = 'd',
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database_url: Option<String>,
}

/// Only the connection.
#[derive(Args)]
pub struct ConnArgs {
    #[command(flatten)]
    pub conn: Conn,
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
    /// The weekly average number of trips of an area: a bounding box, a polygon, or a region.
    WeeklyAvg(WeeklyAvgArgs),
    /// Rebuild the rollups and the trip_groups materialized view from the trips.
    Refresh(ConnArgs),
    /// Merge small pieces of the store into larger ones now (`trips ingest` does it after each file).
    Compact(CompactArgs),
    /// Apply the database schema (also done automatically by every command that uses the database).
    Migrate(ConnArgs),
    /// Create the group roles trips_loader and trips_reader and grant them what they need (run as the owner).
    Roles(ConnArgs),
    /// Serve the answers and the ingest status over HTTP: JSON, GeoJSON, server-sent events (docs/api.md).
    Serve(ServeArgs),
    /// Write synthetic trips as CSV in the input format to stdout (for benchmarks and tests).
    Gen(GenArgs),
    /// Write a shell completion script to stdout, e.g. `trips completions bash > /etc/bash_completion.d/trips`.
    Completions(CompletionsArgs),
    /// Write the manual page (roff) to stdout, e.g. `trips man > trips.1 && man -l trips.1`.
    Man,
}

impl Command {
    /// The connection settings, for the commands that use the database.
    pub fn conn(&self) -> Option<&Conn> {
        Some(match self {
            Command::Ingest(a) => &a.conn,
            Command::Watch(a) => &a.conn,
            Command::Jobs(a) => &a.conn,
            Command::Groups(a) => &a.conn,
            Command::WeeklyAvg(a) => &a.conn,
            Command::Compact(a) => &a.conn,
            Command::Serve(a) => &a.conn,
            Command::Refresh(a) | Command::Migrate(a) | Command::Roles(a) => &a.conn,
            Command::Gen(_) | Command::Completions(_) | Command::Man => return None,
        })
    }
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub conn: Conn,

    /// The address and port to listen on. The default answers this machine only; 0.0.0.0:8080 answers
    /// every network the machine is on (put TLS in front: docs/api.md).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    pub listen: std::net::SocketAddr,

    /// Accept files on POST /v1/ingest (off by default); needs --token-file.
    #[arg(long, requires = "token_file")]
    pub allow_ingest: bool,

    /// A file holding the token that POST /v1/ingest must send as `Authorization: Bearer TOKEN`.
    #[arg(long, value_name = "FILE", requires = "allow_ingest")]
    pub token_file: Option<PathBuf>,

    /// The largest body POST /v1/ingest accepts, in MiB (a larger one gets 413).
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    pub max_body_mib: u64,

    /// Folder for the rejects files of uploads with ?skip_invalid=true.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub rejects_dir: PathBuf,

    /// Connections in the pool that answers questions (uploads and the event relay have their own).
    #[arg(long, default_value_t = 8, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=200))]
    pub pool: u16,
}

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// What `trips ingest` draws while it loads (what it pushes to listeners is the same either way).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    /// A bar per file on a terminal (a spinner for standard input), one line per event otherwise.
    Auto,
    /// Bars even when stderr is not a terminal.
    Always,
    /// No progress; only each file's outcome.
    Never,
}

#[derive(Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub conn: Conn,

    /// Files to load: paths, or - for standard input. Gzip files are decompressed on the fly.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,

    /// Load up to N files at once, each still its own atomic job (each with its own two connections).
    #[arg(short = 'j', long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,

    /// What to draw while loading: auto, always or never (-q means never).
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,

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

    /// Send the cell tally to the database whenever it holds this many entries (a trip adds at most
    /// four cell-week entries): the loader's memory stays bounded whatever the file's size.
    #[arg(long, default_value_t = crate::ingest::TALLY_LIMIT, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub tally_limit: u64,

    /// Load small files together: consecutive files of the list, up to this many MiB on disk (and 10,000
    /// files), in one transaction that lands them as one piece. Each file is still its own job, committed
    /// whole or not at all; they are done together when the transaction commits. 0: each file alone.
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    pub batch_mib: u64,

    /// Do not merge pieces after loading; the answers are the same, only slower to read once many small
    /// files are loaded. `trips compact` or a schedule (CALL trips_merge()) merges them later.
    #[arg(long)]
    pub no_compact: bool,
}

#[derive(Args)]
pub struct CompactArgs {
    #[command(flatten)]
    pub conn: Conn,

    /// Deprecated and ignored: pieces are merged by ranges of jobs, never one job alone.
    #[arg(long, value_name = "N", hide = true)]
    pub job: Option<i32>,
}

#[derive(Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub conn: Conn,

    /// Follow only job N and exit when it ends: status 0 if done or skipped, 1 if failed.
    #[arg(long, value_name = "N")]
    pub job: Option<i32>,

    /// Print the raw payloads (JSON, one per line).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct JobsArgs {
    #[command(flatten)]
    pub conn: Conn,

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

    /// How the trips spread: dense (every trip near one of a dozen hot spots per region, within ~10 km of
    /// its centre) or wide (half of the trip ends anywhere in a square of 2 x 2 degrees around the
    /// region's centre, about 220 km north-south: sparse data).
    #[arg(long, default_value = "dense", value_parser = ["dense", "wide"])]
    pub spread: String,
}

#[derive(Args)]
pub struct GroupsArgs {
    #[command(flatten)]
    pub conn: Conn,

    #[command(flatten)]
    pub question: GroupsQuestion,

    /// How to print the groups: a table; json, one object per group per line; geojson, one
    /// FeatureCollection of desire lines (QGIS, kepler.gl, geojson.io open it); csv.
    #[arg(long, value_enum, default_value_t = GroupsFormat::Table)]
    pub format: GroupsFormat,

    /// The same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

/// Which groups to show: the same fields for `trips groups` and `GET /v1/groups`.
#[derive(Args, Clone, Deserialize)]
pub struct GroupsQuestion {
    /// Only this region.
    #[arg(long)]
    pub region: Option<String>,

    /// How many groups, largest first.
    #[arg(long, default_value_t = 20)]
    #[serde(default = "default_top")]
    pub top: i64,

    /// Only groups with at least this many trips.
    #[arg(long, default_value_t = 1)]
    #[serde(default = "default_min_trips")]
    pub min_trips: i64,

    /// Cell size in metres (north-south): the stored one (about 2226 m) or an odd multiple of it.
    #[arg(long, value_name = "METRES")]
    pub cell_m: Option<f64>,

    /// Departure bucket in minutes: the stored one (60) or a multiple of it that divides a day.
    #[arg(long, value_name = "MINUTES")]
    pub bucket_min: Option<i32>,
}

fn default_top() -> i64 {
    20
}

fn default_min_trips() -> i64 {
    1
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GroupsFormat {
    Table,
    Json,
    Geojson,
    Csv,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("area").required(true).args(["bbox", "region", "wkt"])))]
pub struct WeeklyAvgArgs {
    #[command(flatten)]
    pub conn: Conn,

    #[command(flatten)]
    pub question: WeeklyQuestion,

    /// How to print the answer: text, json (one object) or csv (with --weeks: one row per week).
    #[arg(long, value_enum, default_value_t = WeeklyFormat::Text)]
    pub format: WeeklyFormat,

    /// The same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

/// A weekly-average question: the same fields for `trips weekly-avg` and `GET /v1/weekly-avg`.
#[derive(Args, Clone, Deserialize)]
pub struct WeeklyQuestion {
    /// A bounding box in degrees (EPSG:4326), edges included: MINLON,MINLAT,MAXLON,MAXLAT.
    #[arg(
        long,
        value_name = "MINLON,MINLAT,MAXLON,MAXLAT",
        allow_hyphen_values = true
    )]
    pub bbox: Option<String>,

    /// A region, by name as in the files.
    #[arg(long, value_name = "NAME")]
    pub region: Option<String>,

    /// A polygon as WKT, in EPSG:4326 (or EWKT with its SRID: SRID=3857;POLYGON(...)).
    #[arg(long, value_name = "POLYGON")]
    pub wkt: Option<String>,

    /// Which end of a trip must be in the area: origin, destination, both or either (not with --region).
    #[arg(long, default_value = "origin", value_parser = ["origin", "destination", "both", "either"])]
    #[serde(default = "default_by")]
    pub by: String,

    /// Start of the window (included), e.g. 2018-05-07 or "2018-05-07 08:00". Default: the Monday of the
    /// week of the earliest trip.
    #[arg(long, value_name = "TIMESTAMP")]
    pub since: Option<String>,

    /// End of the window (excluded). Default: the Monday after the week of the latest trip.
    #[arg(long, value_name = "TIMESTAMP")]
    pub until: Option<String>,

    /// Also print the trips of each week of the window, zero weeks included.
    #[arg(long)]
    #[serde(default)]
    pub weeks: bool,
}

fn default_by() -> String {
    "origin".to_string()
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WeeklyFormat {
    Text,
    Json,
    Csv,
}
