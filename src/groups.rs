//! `trips groups`, `GET /v1/groups` and `trips refresh`: reading the similar-trip groups
//! (db/009_trip_groups.sql), at the stored resolution or a coarser one, as a table, JSON, GeoJSON or CSV;
//! and rebuilding them from the trips. The statements and the reading of their rows are here once.

use crate::cli::{GroupsArgs, GroupsFormat, GroupsQuestion};
use crate::error::usage;
use crate::weekly::Param;
use anyhow::{Context, Result};
use postgres::types::ToSql;
use postgres::{Client, Row};
use serde_json::{Value, json};

/// The stored grid of the groups (trip_group_grid in db/009_trip_groups.sql).
pub struct Grid {
    pub cell_deg: f64,
    pub bucket_min: i32,
}

impl Grid {
    pub const SQL: &str = "SELECT cell_deg, bucket_min FROM trip_group_grid";

    pub fn read(client: &mut Client) -> Result<Grid> {
        let row = client
            .query_one(Grid::SQL, &[])
            .context("while reading the grid of trip groups")?;
        Ok(Grid::from_row(&row))
    }

    pub fn from_row(row: &Row) -> Grid {
        Grid {
            cell_deg: row.get(0),
            bucket_min: row.get(1),
        }
    }
}

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

/// The resolution of the groups asked for: cells of `factor` stored cells (`cell_deg` degrees, about
/// `cell_m` metres north-south) and `minutes`-minute departure buckets.
pub struct Resolution {
    pub factor: i32,
    pub minutes: i32,
    pub cell_deg: f64,
    pub cell_m: f64,
}

/// The resolution a question asks for, checked against the stored grid; a usage error if it is not one
/// that can be built from the stored groups.
pub fn resolution(grid: &Grid, q: &GroupsQuestion) -> Result<Resolution> {
    let factor = cell_factor(grid, q.cell_m)?;
    let minutes = bucket_minutes(grid, q.bucket_min)?;
    if q.top < 1 || q.min_trips < 1 {
        return Err(usage("--top and --min-trips must be at least 1".into()));
    }
    let cell_deg = grid.cell_deg * factor as f64;
    Ok(Resolution {
        factor,
        minutes,
        cell_deg,
        cell_m: cell_deg * METRES_PER_DEGREE,
    })
}

/// Whether the trip_groups snapshot holds every done job (then it answers at the stored resolution).
pub const SNAPSHOT_IS_CURRENT: &str = "SELECT trip_groups_is_current()";

/// The statement of the largest groups and its parameters. At the stored resolution, the trip_groups
/// snapshot answers alone when it is current; otherwise trip_groups_top adds the trips loaded since it
/// (exact and current; its cost grows with those trips at the stored resolution, with all the groups at
/// a coarser one; db/009_trip_groups.sql).
pub fn statement(
    grid: &Grid,
    q: &GroupsQuestion,
    r: &Resolution,
    snapshot_current: bool,
) -> (String, Vec<Param>) {
    let stored = r.factor == 1 && r.minutes == grid.bucket_min;
    let source = if stored && snapshot_current {
        "trip_groups"
    } else {
        "trip_groups_top($5, $3, $4, $1, $2)"
    };
    let sql = format!(
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
    );
    let params: Vec<Param> = vec![
        Box::new(r.factor),
        Box::new(r.minutes),
        Box::new(q.region.clone()),
        Box::new(q.min_trips),
        Box::new(q.top),
    ];
    (sql, params)
}

/// One group of similar trips.
pub struct Group {
    region: String,
    origin_cell: [f64; 2],
    destination_cell: [f64; 2],
    time_bucket: i32,
    bucket_start: String,
    bucket_end: String,
    trips: i64,
    first_departure: String,
    last_departure: String,
    by_datasource: Value,
}

impl Group {
    /// From a row of `statement`.
    pub fn from_row(r: &Row) -> Result<Group> {
        Ok(Group {
            region: r.get(0),
            origin_cell: [degrees(r.get(1)), degrees(r.get(2))],
            destination_cell: [degrees(r.get(3)), degrees(r.get(4))],
            time_bucket: r.get(5),
            bucket_start: r.get(6),
            bucket_end: r.get(7),
            trips: r.get(8),
            first_departure: r.get(9),
            last_departure: r.get(10),
            by_datasource: serde_json::from_str(r.get(11))?,
        })
    }

    /// The group's fields as one JSON object (`trips groups --format json`, a GeoJSON feature's properties).
    pub fn to_json(&self, r: &Resolution) -> Value {
        json!({
            "region": self.region,
            "origin_cell": self.origin_cell,
            "destination_cell": self.destination_cell,
            "time_bucket": self.time_bucket,
            "bucket_start": self.bucket_start,
            "trips": self.trips,
            "first_departure": self.first_departure,
            "last_departure": self.last_departure,
            "by_datasource": self.by_datasource,
            "cell_m": r.cell_m.round(),
            "bucket_min": r.minutes,
        })
    }

    /// When the group's bucket ends, HH:MM; the last bucket of a day ends at 24:00.
    fn bucket_end(&self) -> &str {
        if self.bucket_end.starts_with("00:00") && self.time_bucket > 0 {
            "24:00"
        } else {
            &self.bucket_end[..5]
        }
    }
}

/// A coordinate of a cell's centre, rounded to the 1e-7 degree of the stored coordinates (the grid's
/// float8 arithmetic leaves tails such as 53.660000000000004).
fn degrees(v: f64) -> f64 {
    (v * 1e7).round() / 1e7
}

/// The groups as a GeoJSON FeatureCollection: one LineString per group, from the centre of its origin cell
/// to that of its destination cell (a desire line), with the group's fields as properties.
pub fn geojson(groups: &[Group], r: &Resolution) -> Value {
    let features: Vec<Value> = groups
        .iter()
        .map(|g| {
            json!({
                "type": "Feature",
                "geometry": {
                    "type": "LineString",
                    "coordinates": [g.origin_cell, g.destination_cell],
                },
                "properties": g.to_json(r),
            })
        })
        .collect();
    json!({"type": "FeatureCollection", "features": features})
}

pub fn show(client: &mut Client, args: &GroupsArgs) -> Result<()> {
    let q = &args.question;
    let grid = Grid::read(client)?;
    let r = resolution(&grid, q)?;
    let current: bool = client.query_one(SNAPSHOT_IS_CURRENT, &[])?.get(0);
    let (sql, params) = statement(&grid, q, &r, current);
    let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as _).collect();
    let groups = client
        .query(&sql, &params)
        .context("while reading trip groups")?
        .iter()
        .map(Group::from_row)
        .collect::<Result<Vec<_>>>()?;
    let format = if args.json {
        GroupsFormat::Json
    } else {
        args.format
    };
    match format {
        GroupsFormat::Json => {
            for g in &groups {
                outln!("{}", g.to_json(&r));
            }
        }
        GroupsFormat::Geojson => outln!("{}", geojson(&groups, &r)),
        GroupsFormat::Csv => print_csv(&groups, &r)?,
        GroupsFormat::Table => print_table(&groups, &r)?,
    }
    Ok(())
}

/// One row per group; the datasources as JSON in one column.
fn print_csv(groups: &[Group], r: &Resolution) -> Result<()> {
    let mut out = csv::Writer::from_writer(std::io::stdout().lock());
    out.write_record([
        "region",
        "origin_lon",
        "origin_lat",
        "destination_lon",
        "destination_lat",
        "time_bucket",
        "bucket_start",
        "trips",
        "first_departure",
        "last_departure",
        "by_datasource",
        "cell_m",
        "bucket_min",
    ])?;
    for g in groups {
        out.write_record([
            g.region.clone(),
            g.origin_cell[0].to_string(),
            g.origin_cell[1].to_string(),
            g.destination_cell[0].to_string(),
            g.destination_cell[1].to_string(),
            g.time_bucket.to_string(),
            g.bucket_start.clone(),
            g.trips.to_string(),
            g.first_departure.clone(),
            g.last_departure.clone(),
            g.by_datasource.to_string(),
            format!("{:.0}", r.cell_m),
            r.minutes.to_string(),
        ])?;
    }
    out.flush()?;
    Ok(())
}

fn print_table(groups: &[Group], r: &Resolution) -> Result<()> {
    outln!(
        "groups of cells of {:.0} m ({} degree) and {}-minute departure buckets, largest first:",
        r.cell_m,
        r.cell_deg,
        r.minutes
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
        outln!(
            "{:>8}  {:<14} {}-{}  {:<22}  {:<22}  {} / {}",
            g.trips,
            g.region,
            &g.bucket_start[..5],
            g.bucket_end(),
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
