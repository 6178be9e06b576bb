//! `trips compact`, and the merges `trips ingest` runs after each file (db/007_pieces.sql).

use crate::error::EXIT_FILE_FAILED;
use anyhow::{Context, Result};
use std::process::ExitCode;

/// Runs the merges the merge policy calls for (db/007_pieces.sql) among the pieces of `parent` (or of any
/// table), each in a transaction of its own, and says what each did. Returns how many it ran; none when
/// there is nothing to merge or another session is merging (it goes on until nothing is left).
pub fn merge(client: &mut postgres::Client, parent: Option<&str>) -> Result<usize> {
    let mut merges = 0;
    while let Some(row) = client
        .query_opt(
            "SELECT parent, first_job, last_job, pieces, trips, seconds FROM trip_merge_step($1)",
            &[&parent],
        )
        .context("while merging pieces (nothing was lost; `trips compact` tries again)")?
    {
        let (parent, first, last): (String, i32, i32) = (row.get(0), row.get(1), row.get(2));
        let (pieces, trips, seconds): (i32, i64, f64) = (row.get(3), row.get(4), row.get(5));
        say!(
            "merged {pieces} pieces of {parent} (jobs {first}-{last}, {trips} trips) in {seconds:.2} s"
        );
        merges += 1;
    }
    Ok(merges)
}

/// `trips compact`: every merge the policy calls for, now, table by table: a merge that fails (it changes
/// nothing) is reported, and the other tables are still merged. Exit status 1 if any failed.
pub fn run(client: &mut postgres::Client, job: Option<i32>) -> Result<ExitCode> {
    if job.is_some() {
        eprintln!(
            "warning: --job is deprecated and ignored: pieces are merged by ranges of jobs, and `trips \
             compact` runs every merge the policy calls for"
        );
    }
    let parents: Vec<String> = client.query_one("SELECT trip_piece_parents()", &[])?.get(0);
    // Wait for a merge that another session is running (after its ingest, or on a schedule) to finish
    // its step, then run every merge that is left; trip_merge_step takes the same lock again.
    client.execute("SELECT pg_advisory_lock(ingest_lock_class() + 2, 0)", &[])?;
    let (mut merged, mut failed) = (0, 0);
    for parent in &parents {
        match merge(client, Some(parent)) {
            Ok(n) => merged += n,
            Err(e) => {
                failed += 1;
                eprintln!(
                    "error: merging the pieces of {parent} failed; they are as they were: {}",
                    crate::redact::redact(&format!("{e:#}"))
                );
            }
        }
    }
    if client.is_closed() {
        anyhow::bail!(
            "the connection to the database was lost while merging; no piece was changed by the merge that was running"
        );
    }
    client.execute("SELECT pg_advisory_unlock(ingest_lock_class() + 2, 0)", &[])?;
    if failed > 0 {
        return Ok(ExitCode::from(EXIT_FILE_FAILED));
    }
    if merged == 0 {
        let pieces: Vec<String> = client
            .query(
                "SELECT parent || ': ' || count(*) FROM trip_pieces GROUP BY parent ORDER BY parent",
                &[],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        say!(
            "nothing to merge (pieces per table: {})",
            if pieces.is_empty() {
                "none".to_string()
            } else {
                pieces.join(", ")
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
