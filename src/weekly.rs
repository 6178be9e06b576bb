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

/// The answer to one question, as the SQL functions give it.
struct Answer {
    /// None when there is no week to average over (nothing loaded and no window given).
    average: Option<f64>,
    trips: i64,
    window_start: Option<String>,
    window_end: Option<String>,
    weeks: Option<f64>,
    /// The trips of each week of the window, with --weeks.
    per_week: Vec<(String, i64)>,
    /// For a region that matches nothing: what the regions are.
    unknown_region: Option<String>,
}

pub fn show(client: &mut Client, args: &WeeklyAvgArgs) -> Result<()> {
    let area = area(args)?;
    let answer = ask(client, args, &area)?;
    if args.json {
        print_json(args, &area, &answer)?;
    } else {
        print_text(args, &area, &answer)?;
    }
    if let Some(known) = &answer.unknown_region {
        eprintln!("note: {known}");
    }
    Ok(())
}

/// Asks weekly_trips (or weekly_trips_region) and, with --weeks, weekly_counts, with the same arguments.
fn ask(client: &mut Client, args: &WeeklyAvgArgs, area: &Area) -> Result<Answer> {
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
    let mut answer = Answer {
        average: row.get(0),
        trips: row.get(1),
        window_start: row.get(2),
        window_end: row.get(3),
        weeks: row.get(4),
        per_week: Vec::new(),
        unknown_region: None,
    };
    if args.weeks && answer.average.is_some() {
        answer.per_week = client
            .query(
                &format!("SELECT week_start::text, trips FROM {counts_fn}({arguments}, {window})"),
                &params,
            )
            .map_err(asked_wrong)
            .context("while counting the trips of each week")?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    }
    if let Some(region) = &args.region
        && answer.trips == 0
    {
        answer.unknown_region = unknown_region(client, region)?;
    }
    Ok(answer)
}

fn print_json(args: &WeeklyAvgArgs, area: &Area, answer: &Answer) -> Result<()> {
    let mut v = serde_json::json!({
        "area": area.shown,
        "by": if args.region.is_some() { "region" } else { args.by.as_str() },
        "average": answer.average,
        "trips": answer.trips,
        "window_start": answer.window_start,
        "window_end": answer.window_end,
        "weeks": answer.weeks,
    });
    if args.weeks {
        v["per_week"] = answer
            .per_week
            .iter()
            .map(|(w, n)| serde_json::json!({"week_start": w, "trips": n}))
            .collect();
    }
    outln!("{v}");
    Ok(())
}

fn print_text(args: &WeeklyAvgArgs, area: &Area, answer: &Answer) -> Result<()> {
    let Some(average) = answer.average else {
        outln!("no trips are loaded and no window was given: there is no week to average over");
        return Ok(());
    };
    let which = match args.by.as_str() {
        _ if args.region.is_some() => String::new(),
        "either" => " (origin or destination in it)".to_string(),
        "both" => " (origin and destination in it)".to_string(),
        by => format!(" ({by} in it)"),
    };
    outln!("{}{which}: {average:.2} trips per week", area.shown);
    outln!(
        "{} trips over {} weeks, from {} to {} (excluded)",
        answer.trips,
        answer
            .weeks
            .map_or("?".into(), |w| format!("{}", (w * 1e6).round() / 1e6)),
        answer.window_start.as_deref().unwrap_or("?"),
        answer.window_end.as_deref().unwrap_or("?")
    );
    if args.weeks {
        outln!("{:<12} {:>8}", "week of", "trips");
        for (week, n) in &answer.per_week {
            outln!("{week:<12} {n:>8}");
        }
    }
    Ok(())
}

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
