//! `trips jobs`: the most recent ingest jobs.

use crate::{cli, db, status};
use anyhow::Result;
use std::process::ExitCode;

pub fn run(url: &str, args: &cli::JobsArgs) -> Result<ExitCode> {
    let mut client = db::open(url)?;
    let jobs = status::recent(&mut client, args.limit)?;
    if args.json {
        for (raw, _) in &jobs {
            outln!("{raw}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:>5}  {:<9} {:>11} {:>8} {:>9}  {:<30} error",
        "job",
        "state",
        "rows",
        "rejected",
        "seconds",
        "file"
    );
    for (_, e) in &jobs {
        let error = e.error.as_deref().unwrap_or("");
        let error: String = error.chars().take(100).collect();
        outln!(
            "{:>5}  {:<9} {:>11} {:>8} {:>9.2}  {:<30} {}",
            e.job,
            e.state,
            e.rows,
            e.rejected,
            e.elapsed_s,
            e.file,
            error.replace('\n', " ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
