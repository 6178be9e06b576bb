//! queries.sql: the customer's two questions, run with psql, and its fast answers against the plain scans.

mod common;

use common::{HEADER, TestDb, rows_as_text, sample};
use std::path::Path;
use std::process::Command;

fn queries_sql() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("queries.sql")).unwrap()
}

/// Runs queries.sql with psql (unaligned, tuples only) and returns its lines.
fn run_psql(db: &TestDb) -> Vec<String> {
    let out = Command::new("psql")
        .args(["-X", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("queries.sql"))
        .arg(&db.url)
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn the_sample_answers() {
    let db = test_db!("queries");
    db.trips(&["ingest", sample().to_str().unwrap()]).ok();
    let lines = run_psql(&db);
    assert_eq!(
        lines,
        [
            "Q1: the latest datasource among the trips of the two most common regions",
            "pt_search_app|Turin|2018-05-31 06:20:59",
            "Q1, per region: the latest datasource of each of the two most common regions",
            "Turin|38|pt_search_app|2018-05-31 06:20:59",
            "Prague|34|cheap_mobile|2018-05-29 12:44:02",
            "Q2: the regions cheap_mobile has appeared in",
            "Hamburg|10|2018-05-04 00:46:12|2018-05-29 07:02:25",
            "Prague|13|2018-05-01 11:50:58|2018-05-29 12:44:02",
            "Turin|10|2018-05-03 15:15:28|2018-05-29 15:58:39",
        ]
    );
}

/// The (fast, plain) pairs of queries.sql: each fast query, and the commented plain version after it.
fn query_pairs() -> Vec<(String, String)> {
    let text = queries_sql();
    let mut pairs = Vec::new();
    let mut fast = String::new();
    let mut plain: Option<String> = None;
    for line in text.lines() {
        if let Some(p) = &mut plain {
            match line.strip_prefix("-- ") {
                Some(code) if !line.trim().is_empty() => {
                    p.push_str(code);
                    p.push('\n');
                }
                _ => {
                    pairs.push((std::mem::take(&mut fast), plain.take().unwrap()));
                }
            }
        } else if line.starts_with("-- Plain version") {
            plain = Some(String::new());
        } else if line.starts_with("\\echo") {
            fast.clear();
        } else if !line.starts_with("--") {
            fast.push_str(line);
            fast.push('\n');
        }
    }
    if let Some(p) = plain {
        pairs.push((fast, p));
    }
    pairs
}

#[test]
fn fast_answers_equal_the_plain_scans_on_generated_data_and_ties() {
    let db = test_db!("queries_agree");
    let pairs = query_pairs();
    assert_eq!(
        pairs.len(),
        3,
        "queries.sql should hold three fast/plain pairs"
    );

    // Ties on purpose: regions A and B have 2 trips each, C 1; A's and B's latest trips depart at the same
    // second from different datasources.
    let ties = db.file(
        "ties.csv",
        format!(
            "{HEADER}\n\
             A,POINT (1 1),POINT (1 1),2020-01-01 10:00:00,zeta\n\
             A,POINT (1 1),POINT (1 1),2020-01-02 10:00:00,cheap_mobile\n\
             B,POINT (1 1),POINT (1 1),2020-01-02 10:00:00,alpha\n\
             B,POINT (1 1),POINT (1 1),2020-01-01 09:00:00,zeta\n\
             C,POINT (1 1),POINT (1 1),2020-01-03 10:00:00,cheap_mobile\n"
        ),
    );
    db.trips(&["ingest", &ties]).ok();
    let mut client = db.client();
    for (fast, plain) in &pairs {
        assert_eq!(
            rows_as_text(&mut client, fast),
            rows_as_text(&mut client, plain),
            "{fast}"
        );
    }
    assert_eq!(
        rows_as_text(&mut client, &pairs[0].0),
        ["(alpha,B,\"2020-01-02 10:00:00\")"]
    );

    db.trips(&["ingest", &db.generate(30_000, 3)]).ok();
    db.trips(&["ingest", "--force", sample().to_str().unwrap()])
        .ok();
    for (fast, plain) in &pairs {
        let answer = rows_as_text(&mut client, fast);
        assert!(!answer.is_empty());
        assert_eq!(answer, rows_as_text(&mut client, plain), "{fast}");
    }
}

#[test]
fn incremental_rollups_equal_a_rebuild_from_the_trips() {
    let db = test_db!("rollups");
    db.load_several_files(5000);
    let mut client = db.client();
    // Every rollup and tally, with the rows of a key in several pieces (or several rows of a piece)
    // added up: what readers see.
    let snapshot = |c: &mut postgres::Client| {
        [
            "SELECT * FROM region_datasource_stats ORDER BY region_id, datasource_id",
            "SELECT * FROM region_weeks ORDER BY region_id, week",
            "SELECT c.side, c.level, c.cell, u.week, sum(coalesce(u.n, 1))
               FROM trip_cells c, unnest(c.weeks, c.week_trips) AS u(week, n)
              GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
        ]
        .map(|sql| rows_as_text(c, sql))
    };
    // A cell with one trip in each of its weeks keeps no week_trips (the loader's rows and the
    // rebuild's alike); the others keep them all.
    let forms = |c: &mut postgres::Client| {
        let row = c
            .query_one(
                "SELECT count(*) FILTER (WHERE week_trips IS NULL),
                        count(*) FILTER (WHERE 1 = ALL (week_trips)),
                        count(*) FILTER (WHERE cardinality(week_trips) <> cardinality(weeks))
                   FROM trip_cells",
                &[],
            )
            .unwrap();
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2),
        )
    };
    let incremental = snapshot(&mut client);
    let loaded = forms(&mut client);
    assert!(loaded.0 > 100, "{loaded:?}");
    assert_eq!((loaded.1, loaded.2), (0, 0));
    client.batch_execute("SELECT rebuild_rollups()").unwrap();
    let rebuilt = forms(&mut client);
    assert!(rebuilt.0 > 100, "{rebuilt:?}");
    assert_eq!((rebuilt.1, rebuilt.2), (0, 0));
    assert!(
        incremental[2].len() > 1000,
        "{} cell-weeks",
        incremental[2].len()
    );
    assert_eq!(incremental, snapshot(&mut client));
    assert_eq!(
        db.count("SELECT sum(trips)::bigint FROM region_datasource_stats"),
        15_200
    );
}
