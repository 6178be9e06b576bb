//! `trips groups` and `trips refresh`: reading the similar-trip groups (db/009_trip_groups.sql), at the
//! stored resolution or a coarser one, and rebuilding them from the trips.

use crate::cli::GroupsArgs;
use crate::error::usage;
use crate::ingest::Grid;
use anyhow::{Context, Result};
use postgres::Client;

/// Metres per degree of latitude (and of longitude at the equator).
pub const METRES_PER_DEGREE: f64 = 111_320.0;

/// The cell factor for `--cell-m`: an odd multiple of the stored cell, within 5% of the request.
pub fn cell_factor(grid: &Grid, cell_m: Option<f64>) -> Result<i32> {
    let stored_m = grid.cell_deg * METRES_PER_DEGREE;
    let Some(wanted) = cell_m else { return Ok(1) };
    let factor = (wanted / stored_m).round();
    if wanted.is_nan()
        || wanted <= 0.0
        || factor < 1.0
        || factor % 2.0 == 0.0
        || (wanted - factor * stored_m).abs() > 0.05 * factor * stored_m
    {
        let allowed: Vec<String> = (0..5)
            .map(|i| format!("{:.0}", (2 * i + 1) as f64 * stored_m))
            .collect();
        return Err(usage(format!(
            "--cell-m {wanted} is not a supported cell size; use an odd multiple of the stored cell of {:.0} m \
             ({} degree north-south): {}, ... Even multiples would cut stored cells in half (see db/009_trip_groups.sql)",
            stored_m,
            grid.cell_deg,
            allowed.join(", ")
        )));
    }
    Ok(factor as i32)
}

/// The bucket length for `--bucket-min`: a multiple of the stored length that divides a day.
pub fn bucket_minutes(grid: &Grid, bucket_min: Option<i32>) -> Result<i32> {
    let Some(b) = bucket_min else {
        return Ok(grid.bucket_min);
    };
    if b < 1 || b % grid.bucket_min != 0 || 1440 % b != 0 {
        let allowed: Vec<String> = (1..=1440 / grid.bucket_min)
            .map(|k| k * grid.bucket_min)
            .filter(|m| 1440 % m == 0)
            .map(|m| m.to_string())
            .collect();
        return Err(usage(format!(
            "--bucket-min {b} is not a supported bucket length; use a multiple of the stored {} minutes that \
             divides a day: {}",
            grid.bucket_min,
            allowed.join(", ")
        )));
    }
    Ok(b)
}

/// One group of similar trips, as `trips groups` shows it.
struct Group {
    region: String,
    origin_cell: [f64; 2],
    destination_cell: [f64; 2],
    time_bucket: i32,
    bucket_start: String,
    bucket_end: String,
    trips: i64,
    first_departure: String,
    last_departure: String,
    by_datasource: serde_json::Value,
}

/// The resolution groups were asked at: cells of `cell_m` metres (`cell_deg` degrees), `minutes`-minute
/// departure buckets.
struct Resolution {
    cell_m: f64,
    cell_deg: f64,
    minutes: i32,
}

pub fn show(client: &mut Client, args: &GroupsArgs) -> Result<()> {
    let (groups, resolution) = read(client, args)?;
    if args.json {
        print_json(&groups, &resolution)
    } else {
        print_table(&groups, &resolution)
    }
}

/// The largest groups that `args` asks for, at the resolution it asks.
fn read(client: &mut Client, args: &GroupsArgs) -> Result<(Vec<Group>, Resolution)> {
    let grid = Grid::read(client)?;
    let factor = cell_factor(&grid, args.cell_m)?;
    let minutes = bucket_minutes(&grid, args.bucket_min)?;
    if args.top < 1 || args.min_trips < 1 {
        return Err(usage("--top and --min-trips must be at least 1".into()));
    }
    // At the stored resolution, the trip_groups snapshot answers in milliseconds when it holds every done
    // job; otherwise the rollup is summed, ranking the groups before building the N shown (exact and
    // current, but its cost grows with the rollup; db/009_trip_groups.sql).
    let stored = factor == 1 && minutes == grid.bucket_min;
    let current: bool = client
        .query_one("SELECT trip_groups_is_current()", &[])?
        .get(0);
    let source = if stored && current {
        "trip_groups"
    } else {
        "trip_groups_top($5, $3, $4, $1, $2)"
    };
    let rows = client
        .query(
            &format!(
                "SELECT region, ST_X(origin_cell), ST_Y(origin_cell), ST_X(destination_cell),
                        ST_Y(destination_cell), time_bucket, bucket_start::text,
                        (bucket_start + make_interval(mins => $2))::text,
                        trips, first_departure::text, last_departure::text, by_datasource::text
                   FROM {source}
                  WHERE $1 > 0  -- the cell factor: used by trip_groups_top, typed here for both sources
                    AND ($3::text IS NULL OR region = $3) AND trips >= $4
                  ORDER BY trips DESC, region, time_bucket, ST_X(origin_cell), ST_Y(origin_cell),
                           ST_X(destination_cell), ST_Y(destination_cell)
                  LIMIT $5"
            ),
            &[&factor, &minutes, &args.region, &args.min_trips, &args.top],
        )
        .context("while reading trip groups")?;
    log::debug!("read the groups from {source}");
    let groups = rows
        .iter()
        .map(|r| {
            Ok(Group {
                region: r.get(0),
                origin_cell: [r.get(1), r.get(2)],
                destination_cell: [r.get(3), r.get(4)],
                time_bucket: r.get(5),
                bucket_start: r.get(6),
                bucket_end: r.get(7),
                trips: r.get(8),
                first_departure: r.get(9),
                last_departure: r.get(10),
                by_datasource: serde_json::from_str(r.get(11))?,
            })
        })
        .collect::<Result<_>>()?;
    let cell_deg = grid.cell_deg * factor as f64;
    let resolution = Resolution {
        cell_m: cell_deg * METRES_PER_DEGREE,
        cell_deg,
        minutes,
    };
    Ok((groups, resolution))
}

/// One JSON object per line.
fn print_json(groups: &[Group], resolution: &Resolution) -> Result<()> {
    for g in groups {
        let v = serde_json::json!({
            "region": g.region,
            "origin_cell": g.origin_cell,
            "destination_cell": g.destination_cell,
            "time_bucket": g.time_bucket,
            "bucket_start": g.bucket_start,
            "trips": g.trips,
            "first_departure": g.first_departure,
            "last_departure": g.last_departure,
            "by_datasource": g.by_datasource,
            "cell_m": resolution.cell_m.round(),
            "bucket_min": resolution.minutes,
        });
        outln!("{v}");
    }
    Ok(())
}

fn print_table(groups: &[Group], resolution: &Resolution) -> Result<()> {
    outln!(
        "groups of cells of {:.0} m ({} degree) and {}-minute departure buckets, largest first:",
        resolution.cell_m,
        resolution.cell_deg,
        resolution.minutes
    );
    outln!(
        "{:>8}  {:<14} {:<11}  {:<22}  {:<22}  first / last departure",
        "trips",
        "region",
        "departs",
        "origin cell (lon lat)",
        "destination cell"
    );
    for g in groups {
        // The last bucket of a day ends at midnight, shown as 24:00.
        let end = if g.bucket_end.starts_with("00:00") && g.time_bucket > 0 {
            "24:00"
        } else {
            &g.bucket_end[..5]
        };
        outln!(
            "{:>8}  {:<14} {}-{end}  {:<22}  {:<22}  {} / {}",
            g.trips,
            g.region,
            &g.bucket_start[..5],
            format!("{:.4} {:.4}", g.origin_cell[0], g.origin_cell[1]),
            format!("{:.4} {:.4}", g.destination_cell[0], g.destination_cell[1]),
            g.first_departure,
            g.last_departure
        );
    }
    if groups.is_empty() {
        outln!("(no group matches)");
    }
    Ok(())
}

pub fn refresh(client: &mut Client) -> Result<()> {
    let mut tx = client.transaction()?;
    tx.batch_execute("SELECT rebuild_rollups(); SELECT refresh_trip_groups();")
        .context("while rebuilding the rollups and trip_groups")?;
    tx.commit()?;
    Ok(())
}
