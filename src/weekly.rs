//! `trips weekly-avg`: the weekly average number of trips of an area, from the SQL functions of
//! db/008_weekly_avg.sql (which define what the numbers mean).

use crate::cli::WeeklyAvgArgs;
use crate::error::usage;
use anyhow::{Context, Result};
use postgres::Client;
use postgres::types::ToSql;

/// The area of a question: how to ask SQL for it, and how to show it.
struct Area {
    /// The area as a geometry expression over the first parameters (a box's four numbers, or the WKT);
    /// empty for a region, whose name is then the only parameter and which has its own SQL functions.
    sql: &'static str,
    params: Vec<Box<dyn ToSql + Sync>>,
    shown: String,
}

fn area(args: &WeeklyAvgArgs) -> Result<Area> {
    if let Some(bbox) = &args.bbox {
        let numbers: Vec<f64> = bbox
            .split(',')
            .map(|n| n.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .ok()
            .filter(|v: &Vec<f64>| v.len() == 4 && v.iter().all(|x| x.is_finite()))
            .ok_or_else(|| {
                usage(format!(
                    "--bbox {bbox:?}: expected four numbers MINLON,MINLAT,MAXLON,MAXLAT in degrees, \
                     e.g. --bbox 7.60,45.00,7.72,45.10"
                ))
            })?;
        return Ok(Area {
            sql: "trip_bbox($1, $2, $3, $4)",
            params: numbers
                .into_iter()
                .map(|n| Box::new(n) as Box<dyn ToSql + Sync>)
                .collect(),
            shown: format!("box {bbox}"),
        });
    }
    if let Some(wkt) = &args.wkt {
        return Ok(Area {
            sql: "ST_GeomFromEWKT($1)",
            params: vec![Box::new(wkt.clone())],
            shown: "polygon".to_string(),
        });
    }
    let region = args.region.clone().unwrap_or_default();
    if args.by != "origin" {
        return Err(usage(format!(
            "--by {} does not apply to --region (a trip's region is that of the whole trip)",
            args.by
        )));
    }
    Ok(Area {
        sql: "",
        shown: format!("region {region}"),
        params: vec![Box::new(region)],
    })
}

pub fn show(client: &mut Client, args: &WeeklyAvgArgs) -> Result<()> {
    let area = area(args)?;
    let mut params: Vec<&(dyn ToSql + Sync)> =
        area.params.iter().map(|p| p.as_ref() as _).collect();
    let (trips_fn, counts_fn, arguments) = if area.sql.is_empty() {
        (
            "weekly_trips_region",
            "weekly_counts_region",
            "$1".to_string(),
        )
    } else {
        params.push(&args.by);
        let by = params.len();
        (
            "weekly_trips",
            "weekly_counts",
            format!("{}, ${by}", area.sql),
        )
    };
    params.push(&args.since);
    params.push(&args.until);
    let window = format!(
        "${}::text::timestamp, ${}::text::timestamp",
        params.len() - 1,
        params.len()
    );
    let row = client
        .query_one(
            &format!(
                "SELECT average, trips, window_start::text, window_end::text, weeks
                   FROM {trips_fn}({arguments}, {window})"
            ),
            &params,
        )
        .map_err(asked_wrong)
        .context("while computing the weekly average")?;
    let average: Option<f64> = row.get(0);
    let trips: i64 = row.get(1);
    let (window_start, window_end): (Option<String>, Option<String>) = (row.get(2), row.get(3));
    let weeks: Option<f64> = row.get(4);
    let per_week: Vec<(String, i64)> = if args.weeks && average.is_some() {
        client
            .query(
                &format!("SELECT week_start::text, trips FROM {counts_fn}({arguments}, {window})"),
                &params,
            )
            .map_err(asked_wrong)
            .context("while counting the trips of each week")?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    } else {
        Vec::new()
    };
    let unknown_region = match &args.region {
        Some(region) if trips == 0 => unknown_region(client, region)?,
        _ => None,
    };
    if args.json {
        let mut v = serde_json::json!({
            "area": area.shown,
            "by": if args.region.is_some() { "region" } else { args.by.as_str() },
            "average": average,
            "trips": trips,
            "window_start": window_start,
            "window_end": window_end,
            "weeks": weeks,
        });
        if args.weeks {
            v["per_week"] = per_week
                .iter()
                .map(|(w, n)| serde_json::json!({"week_start": w, "trips": n}))
                .collect();
        }
        outln!("{v}");
    } else if let Some(average) = average {
        let which = match args.by.as_str() {
            _ if args.region.is_some() => String::new(),
            "either" => " (origin or destination in it)".to_string(),
            "both" => " (origin and destination in it)".to_string(),
            by => format!(" ({by} in it)"),
        };
        outln!("{}{which}: {average:.2} trips per week", area.shown);
        outln!(
            "{trips} trips over {} weeks, from {} to {} (excluded)",
            weeks.map_or("?".into(), |w| format!("{}", (w * 1e6).round() / 1e6)),
            window_start.as_deref().unwrap_or("?"),
            window_end.as_deref().unwrap_or("?")
        );
        if args.weeks {
            outln!("{:<12} {:>8}", "week of", "trips");
            for (week, n) in &per_week {
                outln!("{week:<12} {n:>8}");
            }
        }
    } else {
        outln!("no trips are loaded and no window was given: there is no week to average over");
    }
    if let Some(known) = unknown_region {
        eprintln!("note: {known}");
    }
    Ok(())
}

/// For a region without trips: a note naming the regions there are, unless it is one of them.
fn unknown_region(client: &mut Client, region: &str) -> Result<Option<String>> {
    let names: Vec<String> = client
        .query("SELECT name FROM regions ORDER BY name", &[])?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if names.iter().any(|n| n == region) {
        return Ok(None);
    }
    Ok(Some(if names.is_empty() {
        format!("there is no region {region:?}: no region is loaded yet")
    } else {
        format!(
            "there is no region {region:?}; the regions are: {}",
            names.join(", ")
        )
    }))
}

/// Errors that mean the question was wrong (bad area, bad window, unknown `by`: raised by the SQL
/// functions, or a timestamp or WKT the server cannot read) become usage errors, with the server's hint.
fn asked_wrong(e: postgres::Error) -> anyhow::Error {
    let Some(db) = e.as_db_error() else {
        return e.into();
    };
    let code = db.code().code();
    // P0001: RAISE EXCEPTION; 22xxx: data exceptions (bad timestamp); XX000: PostGIS cannot parse the WKT.
    let hint = db.hint().map(|h| format!(". {h}")).unwrap_or_default();
    if code == "P0001" {
        return usage(format!("{}{hint}", db.message()));
    }
    if code.starts_with("22") {
        return usage(format!(
            "{}: --since and --until take a date or a timestamp, e.g. 2018-05-07 or \"2018-05-07 08:00\"",
            db.message()
        ));
    }
    if code == "XX000" && db.message().contains("parse error") {
        return usage(format!(
            "cannot read the polygon: {}{hint}; --wkt takes WKT in degrees, e.g. \
             \"POLYGON((7.6 45.0, 7.7 45.0, 7.7 45.1, 7.6 45.0))\"",
            db.message()
        ));
    }
    e.into()
}
