//! `trips weekly-avg` and `GET /v1/weekly-avg`: the weekly average number of trips of an area, from the SQL
//! functions of db/008_weekly_avg.sql (which define what the numbers mean). The statements and the reading
//! of their rows are here once; the command runs them on its connection, the server on its pool.

use crate::cli::{WeeklyAvgArgs, WeeklyFormat, WeeklyQuestion};
use crate::error::usage;
use anyhow::{Context, Result};
use postgres::types::ToSql;
use postgres::{Client, Row};
use serde_json::{Value, json};

/// A parameter of a statement, owned (the server sends it from another task).
pub type Param = Box<dyn ToSql + Sync + Send>;

/// A question as SQL: the statement of the average (one row: average, trips, window start and end,
/// weeks), that of the per-week counts (week start, trips), and their parameters.
pub struct Statements {
    pub average: String,
    pub counts: String,
    pub params: Vec<Param>,
    /// The area as people read it: `box 7.6,45,7.7,45.1`, `polygon`, `region Turin`.
    pub shown: String,
}

impl Statements {
    pub fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params.iter().map(|p| p.as_ref() as _).collect()
    }
}

/// The statements of a question; a usage error if it is not one (not exactly one area, a malformed box,
/// `by` with a region).
pub fn statements(q: &WeeklyQuestion) -> Result<Statements> {
    let given = [q.bbox.is_some(), q.region.is_some(), q.wkt.is_some()];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(usage(
            "give exactly one area: --bbox MINLON,MINLAT,MAXLON,MAXLAT, --region NAME or --wkt POLYGON"
                .into(),
        ));
    }
    let (area_sql, mut params, shown): (String, Vec<Param>, String) = if let Some(bbox) = &q.bbox {
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
        let params = numbers.into_iter().map(|n| Box::new(n) as Param).collect();
        (
            "trip_bbox($1, $2, $3, $4)".into(),
            params,
            format!("box {bbox}"),
        )
    } else if let Some(wkt) = &q.wkt {
        (
            "ST_GeomFromEWKT($1)".into(),
            vec![Box::new(wkt.clone()) as Param],
            "polygon".into(),
        )
    } else {
        let region = q.region.clone().unwrap_or_default();
        if q.by != "origin" {
            return Err(usage(format!(
                "--by {} does not apply to --region (a trip's region is that of the whole trip)",
                q.by
            )));
        }
        (
            String::new(),
            vec![Box::new(region.clone()) as Param],
            format!("region {region}"),
        )
    };
    // A region has functions of its own; an area takes `by` after the geometry.
    let (average_fn, counts_fn, arguments) = if area_sql.is_empty() {
        (
            "weekly_trips_region",
            "weekly_counts_region",
            "$1".to_string(),
        )
    } else {
        params.push(Box::new(q.by.clone()));
        (
            "weekly_trips",
            "weekly_counts",
            format!("{area_sql}, ${}", params.len()),
        )
    };
    params.push(Box::new(q.since.clone()));
    params.push(Box::new(q.until.clone()));
    let window = format!(
        "${}::text::timestamp, ${}::text::timestamp",
        params.len() - 1,
        params.len()
    );
    Ok(Statements {
        average: format!(
            "SELECT average, trips, window_start::text, window_end::text, weeks
               FROM {average_fn}({arguments}, {window})"
        ),
        counts: format!("SELECT week_start::text, trips FROM {counts_fn}({arguments}, {window})"),
        params,
        shown,
    })
}

/// The answer to one question, as the SQL functions give it.
pub struct Answer {
    /// None when there is no week to average over (nothing loaded and no window given).
    pub average: Option<f64>,
    pub trips: i64,
    pub window_start: Option<String>,
    pub window_end: Option<String>,
    pub weeks: Option<f64>,
    /// The trips of each week of the window, when asked for.
    pub per_week: Vec<(String, i64)>,
    /// For a region that matches nothing: what the regions are.
    pub unknown_region: Option<String>,
}

impl Answer {
    /// From the row of `Statements::average`.
    pub fn from_row(row: &Row) -> Answer {
        Answer {
            average: row.get(0),
            trips: row.get(1),
            window_start: row.get(2),
            window_end: row.get(3),
            weeks: row.get(4),
            per_week: Vec::new(),
            unknown_region: None,
        }
    }

    /// From the rows of `Statements::counts`.
    pub fn set_weeks(&mut self, rows: &[Row]) {
        self.per_week = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    }

    /// Whether the per-week counts and the region's existence are worth asking.
    pub fn needs_weeks(&self, q: &WeeklyQuestion) -> bool {
        q.weeks && self.average.is_some()
    }

    pub fn needs_region_check(&self, q: &WeeklyQuestion) -> bool {
        q.region.is_some() && self.trips == 0
    }

    /// Notes `region` as unknown unless it is among `names` (the rows of `REGION_NAMES`).
    pub fn check_region(&mut self, region: &str, names: &[Row]) {
        let names: Vec<String> = names.iter().map(|r| r.get(0)).collect();
        if names.iter().any(|n| n == region) {
            return;
        }
        self.unknown_region = Some(if names.is_empty() {
            format!("there is no region {region:?}: no region is loaded yet")
        } else {
            format!(
                "there is no region {region:?}; the regions are: {}",
                names.join(", ")
            )
        });
    }

    /// The answer as one JSON object (`trips weekly-avg --format json`, `GET /v1/weekly-avg`).
    pub fn to_json(&self, q: &WeeklyQuestion, shown: &str) -> Value {
        let mut v = json!({
            "area": shown,
            "by": if q.region.is_some() { "region" } else { q.by.as_str() },
            "average": self.average,
            "trips": self.trips,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "weeks": self.weeks,
        });
        if q.weeks {
            v["per_week"] = self
                .per_week
                .iter()
                .map(|(w, n)| json!({"week_start": w, "trips": n}))
                .collect();
        }
        v
    }
}

/// The region names, to tell a region that matches nothing.
pub const REGION_NAMES: &str = "SELECT name FROM regions ORDER BY name";

pub fn show(client: &mut Client, args: &WeeklyAvgArgs) -> Result<()> {
    let q = &args.question;
    let statements = statements(q)?;
    let answer = ask(client, q, &statements)?;
    let format = if args.json {
        WeeklyFormat::Json
    } else {
        args.format
    };
    match format {
        WeeklyFormat::Json => outln!("{}", answer.to_json(q, &statements.shown)),
        WeeklyFormat::Csv => print_csv(q, &answer)?,
        WeeklyFormat::Text => print_text(q, &statements.shown, &answer)?,
    }
    if let Some(known) = &answer.unknown_region {
        eprintln!("note: {known}");
    }
    Ok(())
}

fn ask(client: &mut Client, q: &WeeklyQuestion, statements: &Statements) -> Result<Answer> {
    let params = statements.params();
    let row = client
        .query_one(&statements.average, &params)
        .map_err(asked_wrong)
        .context("while computing the weekly average")?;
    let mut answer = Answer::from_row(&row);
    if answer.needs_weeks(q) {
        let rows = client
            .query(&statements.counts, &params)
            .map_err(asked_wrong)
            .context("while counting the trips of each week")?;
        answer.set_weeks(&rows);
    }
    if let Some(region) = &q.region
        && answer.needs_region_check(q)
    {
        answer.check_region(region, &client.query(REGION_NAMES, &[])?);
    }
    Ok(answer)
}

/// With --weeks, one row per week (week_start,trips); otherwise one row of the answer's fields.
fn print_csv(q: &WeeklyQuestion, answer: &Answer) -> Result<()> {
    if q.weeks {
        outln!("week_start,trips");
        for (week, n) in &answer.per_week {
            outln!("{week},{n}");
        }
    } else {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        outln!("average,trips,weeks,window_start,window_end");
        outln!(
            "{},{},{},{},{}",
            answer.average.map_or(String::new(), |a| a.to_string()),
            answer.trips,
            answer.weeks.map_or(String::new(), |w| w.to_string()),
            text(&answer.window_start),
            text(&answer.window_end)
        );
    }
    Ok(())
}

fn print_text(q: &WeeklyQuestion, shown: &str, answer: &Answer) -> Result<()> {
    let Some(average) = answer.average else {
        outln!("no trips are loaded and no window was given: there is no week to average over");
        return Ok(());
    };
    let which = match q.by.as_str() {
        _ if q.region.is_some() => String::new(),
        "either" => " (origin or destination in it)".to_string(),
        "both" => " (origin and destination in it)".to_string(),
        by => format!(" ({by} in it)"),
    };
    outln!("{shown}{which}: {average:.2} trips per week");
    outln!(
        "{} trips over {} weeks, from {} to {} (excluded)",
        answer.trips,
        answer
            .weeks
            .map_or("?".into(), |w| format!("{}", (w * 1e6).round() / 1e6)),
        answer.window_start.as_deref().unwrap_or("?"),
        answer.window_end.as_deref().unwrap_or("?")
    );
    if q.weeks {
        outln!("{:<12} {:>8}", "week of", "trips");
        for (week, n) in &answer.per_week {
            outln!("{week:<12} {n:>8}");
        }
    }
    Ok(())
}

/// Errors that mean the question was wrong (bad area, bad window, unknown `by`: raised by the SQL
/// functions, or a timestamp or WKT the server cannot read) become usage errors, with the server's hint.
pub fn asked_wrong(e: postgres::Error) -> anyhow::Error {
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
