//! Weekly averages whatever the arrival: the same trips as one file or as many, before and after the
//! pieces are merged, and while a merge is killed at any moment.

mod common;

use common::weekly::*;
use common::{HEADER, TestDb};
use postgres::Client;

/// Trips crowded into a few hundred metres, on a grid of 1e-4 degree (many share a coordinate), and boxes
/// whose edges fall on that grid: a point on a box's edge, or many, must count once, whichever cell it is
/// in and whichever edge cuts the cell.
fn crowded_trips_csv(rng: &mut Rng, rows: usize) -> String {
    let mut csv = format!("{HEADER}\n");
    let mut coordinate = |base: f64| match rng.below(5) {
        0 => format!("{:.7}", base + rng.below(50_000) as f64 / 1e7),
        _ => format!("{:.4}", base + rng.below(50) as f64 / 1e4),
    };
    for i in 0..rows {
        let (a, b, c, d) = (
            coordinate(7.5),
            coordinate(45.0),
            coordinate(7.5),
            coordinate(45.0),
        );
        csv += &format!(
            "R,POINT ({a} {b}),POINT ({c} {d}),2018-01-{:02} 10:00:00,s\n",
            1 + i % 21 // three weeks from Monday 2018-01-01
        );
    }
    csv
}

/// A box on the grid of crowded_trips_csv, from 1e-4 degree (inside one cell) to its whole width.
fn crowded_box(rng: &mut Rng) -> [f64; 4] {
    let mut edges = |base: f64| {
        let (a, b) = (rng.below(54) as f64 - 2.0, rng.below(54) as f64 - 2.0);
        [base + a.min(b) / 1e4, base + (a.max(b) + 1.0) / 1e4]
    };
    let ([x0, x1], [y0, y1]) = (edges(7.5), edges(45.0));
    [x0, y0, x1, y1]
}

/// For each box and by: (weekly_trips' count, the plain SQL's count).
fn box_counts(client: &mut Client, boxes: &[[f64; 4]]) -> Vec<(String, i64, i64)> {
    let mut out = Vec::new();
    for b in boxes {
        for (by, test) in [
            ("origin", "ST_Intersects(a, origin)"),
            ("destination", "ST_Intersects(a, destination)"),
            (
                "either",
                "(ST_Intersects(a, origin) OR ST_Intersects(a, destination))",
            ),
        ] {
            let row = client
                .query_one(
                    &format!(
                        "SELECT (SELECT trips FROM weekly_trips($1, $2, $3, $4, $5)),
                                (SELECT count(*) FROM trips, ST_MakeEnvelope($1, $2, $3, $4, 4326) AS a
                                  WHERE {test})"
                    ),
                    &[&b[0], &b[1], &b[2], &b[3], &by],
                )
                .unwrap();
            out.push((format!("{b:?} by {by}"), row.get(0), row.get(1)));
        }
    }
    out
}

/// The lines of `csv` (a header, then records) as `n` files of about equal size, each with the header.
fn split_csv(db: &TestDb, csv: &str, n: usize) -> Vec<String> {
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    let records: Vec<&str> = lines.collect();
    records
        .chunks(records.len().div_ceil(n))
        .enumerate()
        .map(|(i, part)| {
            db.file(
                &format!("part{i:03}.csv"),
                format!("{header}\n{}\n", part.join("\n")),
            )
        })
        .collect()
}

/// Loads `csv` cut into `files` files, each in its own transaction (so each its own piece), not merged,
/// with the ingest options `extra`; later merges take ten pieces at a time.
fn load_unmerged(db: &TestDb, csv: &str, files: usize, extra: &[&str]) {
    db.merge_fan_in(10);
    let parts = split_csv(db, csv, files);
    let mut args = vec!["ingest", "--no-compact", "--batch-mib", "0"];
    args.extend(extra);
    args.extend(parts.iter().map(String::as_str));
    db.trips(&args).ok();
}

/// The same trips loaded as one file; as `files` files, each its own piece, not merged (merged ten at a
/// time when they are); and as the same files loaded together, in one transaction (one piece).
fn one_file_and_many(tag: &str, csv: &str, files: usize) -> (TestDb, TestDb, TestDb) {
    let one = TestDb::new(&format!("{tag}_one"));
    one.trips(&["ingest", &one.file("all.csv", csv)]).ok();
    let many = TestDb::new(&format!("{tag}_many"));
    load_unmerged(&many, csv, files, &["--tally-limit", "300"]);
    let count_pieces = "SELECT count(*) FROM trip_pieces WHERE parent = 'trip_rows'";
    assert_eq!(many.count(count_pieces), files as i64);
    let together = TestDb::new(&format!("{tag}_together"));
    let parts = split_csv(&together, csv, files);
    let mut args = vec!["ingest", "--tally-limit", "300"];
    args.extend(parts.iter().map(String::as_str));
    together.trips(&args).ok();
    assert_eq!(together.count(count_pieces), 1);
    assert_eq!(
        together.count("SELECT count(*) FROM ingest_jobs WHERE state = 'done'"),
        files as i64
    );
    (one, many, together)
}

/// Waits (up to `tries` x 50 ms) until no backend runs trip_merge_step: a killed `trips compact`'s merge has
/// rolled back.
fn wait_for_merge_backend(db: &TestDb, tries: usize) {
    for _ in 0..tries {
        if db.count("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%trip_merge_step%' AND pid <> pg_backend_pid()") == 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn pieces(db: &TestDb) -> Vec<String> {
    db.rows("SELECT parent, first_job, last_job, trips FROM trip_pieces ORDER BY 1, 2")
}

#[test]
fn boxes_count_crowded_cells_exactly_from_one_file_or_many_before_and_after_merges() {
    let mut rng = Rng(0x5eed_1234_abcd_0005);
    let csv = crowded_trips_csv(&mut rng, 3000);
    let boxes: Vec<[f64; 4]> = (0..150).map(|_| crowded_box(&mut rng)).collect();
    let check = |db: &TestDb, when: &str| {
        let counts = box_counts(&mut db.client(), &boxes);
        for (question, ours, plain) in &counts {
            assert_eq!(ours, plain, "{when}: {question}");
        }
        let with_trips = counts.iter().filter(|(_, n, _)| *n > 0).count();
        assert!(
            with_trips > 300,
            "{when}: only {with_trips} of 450 answers hold trips"
        );
        counts
    };
    if !common::have_cluster() {
        return;
    }
    let (one, many, together) = one_file_and_many("weekly_crowded", &csv, 12);
    let answers = check(&one, "one file");
    assert_eq!(check(&many, "twelve files"), answers);
    assert_eq!(check(&together, "twelve files in one transaction"), answers);
    // Merged by hand (the loader was told not to): fewer pieces, the same answers.
    let before = pieces(&many);
    let run = many.trips(&["compact"]).ok();
    assert!(
        run.stderr
            .contains("merged 10 pieces of trip_rows (jobs 1-10, 2500 trips)"),
        "{}",
        run.stderr
    );
    assert!(
        pieces(&many).len() < before.len() / 2,
        "{:?}",
        pieces(&many)
    );
    assert_eq!(check(&many, "twelve files, merged"), answers);
    let run = many.trips(&["compact"]).ok();
    assert!(
        run.stderr.contains("nothing to merge (pieces per table: "),
        "{}",
        run.stderr
    );
    // `trips refresh` rebuilds every tally from the trips: the same answers.
    many.trips(&["refresh"]).ok();
    assert_eq!(check(&many, "rebuilt"), answers);
}

/// Trips in a square of 0.05 degree (five level-2 cells a side), half of them between two crowded spots,
/// with coordinates often on the level-2 cell edges or just below them: areas of a few level-2 cells hold
/// both ends of many trips, in cells wholly inside and in cells their edge cuts.
fn paired_trips_csv(rng: &mut Rng, rows: usize) -> String {
    let mut csv = format!("{HEADER}\n");
    let end = |rng: &mut Rng, spot: f64| -> (String, String) {
        let mut at = |base: f64| match rng.below(5) {
            0 => format!("{:.2}", base + rng.below(6) as f64 / 100.0),
            1 => format!("{:.3}", base + rng.below(50) as f64 / 1000.0),
            2 => format!("{:.7}", base + spot + rng.below(30_000) as f64 / 1e7),
            // the last stored coordinate of a level-2 cell, just below the next cell's edge
            4 => format!("{:.7}", base + (1 + rng.below(5)) as f64 / 100.0 - 1e-7),
            _ => format!("{:.7}", base + rng.below(500_000) as f64 / 1e7),
        };
        (at(7.5), at(45.0))
    };
    for i in 0..rows {
        let ((a, b), (c, d)) = (end(rng, 0.012), end(rng, 0.031));
        csv += &format!(
            "R,POINT ({a} {b}),POINT ({c} {d}),2018-01-{:02} 10:00:00,s\n",
            1 + i % 21 // three weeks from Monday 2018-01-01
        );
    }
    csv
}

/// An area over the square of paired_trips_csv, from 0.001 to 0.06 degree wide, its edges often on cell
/// edges: mostly boxes, sometimes a triangle or a box with a hole.
fn paired_area(rng: &mut Rng) -> String {
    let mut edges = |base: f64| {
        let at = |rng: &mut Rng| match rng.below(3) {
            0 => base - 0.005 + rng.below(7) as f64 / 100.0,
            1 => base - 0.005 + rng.below(60) as f64 / 1000.0,
            _ => base - 0.005 + rng.below(600_000) as f64 / 1e7,
        };
        let (a, b) = (at(rng), at(rng));
        (a.min(b), a.max(b) + 0.001)
    };
    let ((x0, x1), (y0, y1)) = (edges(7.5), edges(45.0));
    match rng.below(6) {
        0 => format!("SRID=4326;POLYGON(({x0} {y0},{x1} {y0},{x0} {y1},{x0} {y0}))"),
        1 => {
            let (hx, hy) = ((x1 - x0) / 3.0, (y1 - y0) / 3.0);
            format!(
                "SRID=4326;POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}),\
                 ({} {},{} {},{} {},{} {},{} {}))",
                x0 + hx,
                y0 + hy,
                x0 + hx,
                y1 - hy,
                x1 - hx,
                y1 - hy,
                x1 - hx,
                y0 + hy,
                x0 + hx,
                y0 + hy
            )
        }
        _ => format!("SRID=4326;POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"),
    }
}

#[test]
fn both_and_either_are_exact_from_one_file_or_many_before_and_after_merges() {
    let mut rng = Rng(0x5eed_1234_abcd_0006);
    let csv = paired_trips_csv(&mut rng, 4000);
    let areas: Vec<String> = (0..40).map(|_| paired_area(&mut rng)).collect();
    let windows = [
        None,
        Some(("2018-01-08", "2018-01-15")),
        Some(("2018-01-03 12:00", "2018-01-16")),
    ];
    let answers = |db: &TestDb, when: &str| {
        let mut client = db.client();
        let mut out = Vec::new();
        for area in &areas {
            for by in ["both", "either"] {
                for window in windows {
                    let (ours, plain) = (
                        weekly_avg(&mut client, area, by, window),
                        plain_avg(&mut client, area, by, window),
                    );
                    assert!(
                        (ours - plain).abs() <= 1e-9 * plain.max(1.0),
                        "{when}: {area} by {by} over {window:?}: weekly_avg {ours}, plain SQL {plain}"
                    );
                    out.push(ours);
                }
            }
        }
        assert!(
            out.iter().filter(|v| **v > 0.0).count() > 150,
            "{when}: too few areas with trips"
        );
        out
    };
    if !common::have_cluster() {
        return;
    }
    let (one, many, together) = one_file_and_many("weekly_pairs", &csv, 20);
    let expected = answers(&one, "one file");
    assert_eq!(answers(&many, "twenty files"), expected);
    assert_eq!(
        answers(&together, "twenty files in one transaction"),
        expected
    );
    many.trips(&["compact"]).ok();
    assert_eq!(answers(&many, "twenty files, merged"), expected);
}

/// The pieces of `parent` whose `column` the planner has statistics of.
fn analyzed(db: &TestDb, parent: &str, column: &str) -> Vec<String> {
    db.rows(&format!(
        "SELECT tablename FROM pg_stats WHERE tablename ~ '^{parent}_j' AND attname = '{column}' ORDER BY 1"
    ))
    .into_iter()
    .map(|row| row.trim_matches(['(', ')']).to_string())
    .collect()
}

/// A question asked right after a load must not wait for autovacuum to learn about the new piece: every
/// piece of the tally gets the statistics of its key when it lands and when it is merged (the trips' are
/// left to autovacuum).
#[test]
fn pieces_arrive_with_their_statistics() {
    let db = test_db!("weekly_piece_stats");
    let mut rng = Rng(0x5eed_1234_abcd_0009);
    load_unmerged(&db, &crowded_trips_csv(&mut rng, 1100), 11, &[]);
    let mut expected: Vec<String> = (1..=11).map(|j| format!("trip_cells_j{j}")).collect();
    expected.sort();
    assert_eq!(analyzed(&db, "trip_cells", "cell"), expected);

    db.trips(&["compact"]).ok();
    assert_eq!(
        analyzed(&db, "trip_cells", "cell"),
        ["trip_cells_j11", "trip_cells_j1_10"],
        "{:?}",
        pieces(&db)
    );
}

/// The tables of the store: every piece's, and no other.
fn piece_tables(db: &TestDb) -> (i64, i64) {
    (
        db.count("SELECT count(*) FROM trip_pieces"),
        db.count(
            "SELECT count(*) FROM pg_class
              WHERE relkind = 'r' AND relname ~ '^(new_)?(trip_rows|trip_cells)_j'",
        ),
    )
}

#[test]
fn a_merge_killed_at_any_moment_changes_nothing_and_readers_are_not_held_up() {
    let db = test_db!("weekly_merge_kill");
    let mut rng = Rng(0x5eed_1234_abcd_0008);
    load_unmerged(&db, &trips_csv(&mut rng, 20_000), 20, &[]);
    let areas: Vec<String> = (0..12).map(|_| area(&mut rng)).collect();
    let answers = |client: &mut Client| -> Vec<f64> {
        areas
            .iter()
            .flat_map(|a| BY.map(|by| (a, by)))
            .map(|(a, by)| weekly_avg(client, a, by, Some(("2017-12-04", "2018-01-29"))))
            .collect()
    };
    let mut client = db.client();
    let expected = answers(&mut client);
    assert_eq!(
        expected,
        areas
            .iter()
            .flat_map(|a| BY.map(|by| (a, by)))
            .map(|(a, by)| plain_avg(&mut client, a, by, Some(("2017-12-04", "2018-01-29"))))
            .collect::<Vec<_>>()
    );
    let before = pieces(&db);
    assert_eq!(piece_tables(&db), (40, 40));

    // Killed while it builds or swaps, at several moments: nothing changes.
    for delay_ms in [5, 40, 120, 250] {
        let mut merge = db.command(&["compact"]).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        merge.kill().unwrap();
        merge.wait().unwrap();
        // The server notices the lost client at its next read or write.
        wait_for_merge_backend(&db, 100);
        let now = pieces(&db);
        if now != before {
            // The kill came after some merges committed: each committed merge is whole.
            assert_eq!(
                now.iter()
                    .map(|p| p.split(',').next().unwrap().to_string())
                    .collect::<std::collections::BTreeSet<_>>()
                    .len(),
                2,
                "both tables still have pieces"
            );
        }
        let (catalogued, tables) = piece_tables(&db);
        assert_eq!(
            catalogued, tables,
            "after a kill at {delay_ms} ms: a table for every piece, and no other"
        );
        assert_eq!(
            answers(&mut client),
            expected,
            "after a kill at {delay_ms} ms"
        );
    }

    // Killed while it waits to swap: a reader's open transaction holds the tables, so the swap waits (and
    // waits at most 50 ms at a time, then lets the readers behind it through); the build is thrown away whole.
    let mut holder = db.client();
    let mut reading = holder.transaction().unwrap();
    for table in ["trip_rows", "trip_cells"] {
        reading
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .unwrap();
    }
    let settled = pieces(&db);
    let mut merge = db.command(&["compact"]).spawn().unwrap();
    let started = std::time::Instant::now();
    let mut reader = db.client();
    let mut slowest = std::time::Duration::ZERO;
    let mut asked_count = 0;
    while started.elapsed() < std::time::Duration::from_secs(2) {
        for (k, by) in BY.iter().enumerate() {
            let asked = std::time::Instant::now();
            let answer = weekly_avg(
                &mut reader,
                &areas[0],
                by,
                Some(("2017-12-04", "2018-01-29")),
            );
            slowest = slowest.max(asked.elapsed());
            assert_eq!(answer, expected[k], "a reader during a waiting merge");
            asked_count += 1;
        }
    }
    assert!(asked_count > 20, "only {asked_count} answers in 2 s");
    assert!(
        slowest < std::time::Duration::from_millis(500),
        "a reader waited {slowest:?}"
    );
    merge.kill().unwrap();
    merge.wait().unwrap();
    // The server stops the merge of a client that is gone (within 100 ms), even while it waits.
    wait_for_merge_backend(&db, 40);
    reading.rollback().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(pieces(&db), settled);
    let (catalogued, tables) = piece_tables(&db);
    assert_eq!(catalogued, tables);

    // The next merge completes, while readers go on reading.
    let mut merge = db.command(&["compact"]).spawn().unwrap();
    while merge.try_wait().unwrap().is_none() {
        assert_eq!(answers(&mut reader), expected, "a reader during a merge");
    }
    assert!(merge.wait().unwrap().success());
    assert!(pieces(&db).len() < before.len() / 2, "{:?}", pieces(&db));
    assert_eq!(answers(&mut client), expected);
    let (catalogued, tables) = piece_tables(&db);
    assert_eq!(catalogued, tables);
    // The merged tally, like the loader's, keeps the trips of each week only for cells with a week of
    // several trips.
    assert_eq!(
        db.count("SELECT count(*) FROM trip_cells WHERE 1 = ALL (week_trips)"),
        0
    );
    assert!(db.count("SELECT count(*) FROM trip_cells WHERE week_trips IS NULL") > 0);
    assert!(db.count("SELECT count(*) FROM trip_cells WHERE week_trips IS NOT NULL") > 0);
}
