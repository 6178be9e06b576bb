//! The schema: db/ applied in order with checksums, a changed file or a pre-release database refused with
//! what to do, and db/README.md (the map of db/) matching the functions the database holds.

mod common;

use common::{migration_files, sample};

#[test]
fn a_changed_migration_is_refused() {
    let db = test_db!("migrations");
    db.trips(&["migrate"]).ok();
    db.client()
        .batch_execute("UPDATE schema_migrations SET sha256 = 'edited' WHERE version = 2")
        .unwrap();
    let run = db.trips(&["migrate"]);
    assert_eq!(run.code, 3);
    assert!(
        run.stderr
            .contains("db/002_names.sql was changed after it was applied")
            && run
                .stderr
                .contains("create a new database (or drop this one) and load the files again"),
        "{}",
        run.stderr
    );
}

/// A database made by the pre-release schema (db/001 to db/032, a partition per file in five tables) is
/// refused with a sentence saying what it is and what to do, and nothing is changed.
#[test]
fn a_pre_release_database_is_told_to_be_recreated() {
    let db = test_db!("pre_release");
    db.client()
        .batch_execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
                                             sha256 text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
             INSERT INTO schema_migrations (version, name, sha256)
             VALUES (1, '001_postgis.sql', 'x'), (2, '002_dimensions.sql', 'x'), (32, '032_unused_function_dropped.sql', 'x');",
        )
        .unwrap();
    for args in [&["migrate"][..], &["ingest", sample().to_str().unwrap()]] {
        let run = db.trips(args);
        assert_eq!(run.code, 3, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(
                "this database was made by a pre-release schema of trips (it has db/002_dimensions.sql as \
                 version 2)"
            ) && run.stderr.contains("create a new database (or drop this one) and load the files again"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_eq!(
        db.count("SELECT count(*) FROM pg_class WHERE relname = 'ingest_jobs'"),
        0
    );
}

/// The schema is a baseline: each function is created once, by one file of db/, never replaced by a later
/// one; and db/README.md, the map of db/, names every file and every function.
#[test]
fn each_function_is_defined_once_and_db_readme_names_every_file_and_function() {
    let db = test_db!("db_readme");
    db.trips(&["migrate"]).ok();
    let functions: Vec<String> = db
        .client()
        .query(
            "SELECT DISTINCT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = 'public'
                AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
              ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(functions.len() > 30, "{functions:?}");
    let files = migration_files();
    for f in &functions {
        let defining: Vec<&str> = files
            .iter()
            .filter(|(_, text)| {
                text.lines().any(|line| {
                    line.starts_with(&format!("CREATE FUNCTION {f}("))
                        || line.starts_with(&format!("CREATE PROCEDURE {f}("))
                })
            })
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(defining.len(), 1, "{f} is created by {defining:?}");
    }
    for (name, text) in &files {
        assert!(
            !text.contains("CREATE OR REPLACE"),
            "{name} replaces an object of an earlier file"
        );
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/db/README.md")).unwrap();
    for (name, _) in &files {
        assert!(
            readme.contains(name.as_str()),
            "db/README.md does not name {name}"
        );
    }
    // And its story names every function of the baseline.
    for f in &functions {
        assert!(
            ["(", "`", ","]
                .iter()
                .any(|after| readme.contains(&format!("`{f}{after}"))),
            "db/README.md does not name the function {f}"
        );
    }
}

/// autovacuum's ANALYZE and pg_restore evaluate index expressions with an empty search_path: the trips'
/// indexes (on trip_cell()) must be computable there, or a restore fails and autovacuum never gives the
/// trips statistics.
#[test]
fn the_cell_indexes_work_with_an_empty_search_path() {
    let db = test_db!("empty_search_path");
    db.trips(&["ingest", sample().to_str().unwrap()]).ok();
    let mut c = db.client();
    c.batch_execute(
        "SET search_path = ''; ANALYZE public.trip_rows_j1; REINDEX TABLE public.trip_rows_j1",
    )
    .unwrap();
    let stats: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_stats WHERE tablename LIKE 'trip_rows_j1_%cell%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(stats, 2, "both cell indexes analyzed");
}
