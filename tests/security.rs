//! Least privilege, TLS, secrets and hostile input, against real logins on the test cluster (scripts/test.sh
//! starts it with TLS on, certificates made by openssl, and one login that must give a password).

mod common;

use common::{TestDb, admin_url, db_error, sample};
use postgres::error::SqlState;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;

fn sql_state(client: &mut postgres::Client, sql: &str) -> Option<SqlState> {
    match client.batch_execute(sql) {
        Ok(()) => None,
        Err(e) => Some(e.code().cloned().unwrap_or(SqlState::INTERNAL_ERROR)),
    }
}

#[track_caller]
fn assert_denied(client: &mut postgres::Client, sql: &str) {
    let state = sql_state(client, sql);
    assert!(
        state == Some(SqlState::INSUFFICIENT_PRIVILEGE),
        "expected permission denied for: {sql}\ngot {state:?}"
    );
}

#[test]
fn a_loader_login_ingests_and_watches_and_can_change_nothing_else() {
    let db = test_db!("loader");
    db.trips(&["roles"]).ok();
    db.trips(&["roles"]).ok(); // idempotent
    let loader = db.login("trips_loader");
    let run = db.trips_with(&loader.url, &["ingest", sample().to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.count("SELECT count(*) FROM trips"), 100);
    assert_eq!(
        db.count("SELECT count(*) FROM region_datasource_stats"),
        db.count("SELECT count(DISTINCT (region, datasource)) FROM trips")
    );
    let watch = db.trips_with(&loader.url, &["watch", "--job", "1"]);
    assert_eq!(watch.code, 0, "{}", watch.stderr);
    assert!(
        format!("{}{}", watch.stdout, watch.stderr).contains("done"),
        "{}",
        watch.stderr
    );
    // A second file, forced: the loader also handles an existing schema with partitions of others.
    let run = db.trips_with(
        &loader.url,
        &["ingest", "--force", sample().to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.count("SELECT count(*) FROM trips"), 200);

    let mut c = loader.client();
    for sql in [
        "DROP TABLE trip_rows",
        "ALTER TABLE ingest_jobs ADD COLUMN x int",
        "DELETE FROM trip_rows",
        "TRUNCATE trip_cells",
        "UPDATE region_datasource_stats SET trips = 0",
        // The job's own table, once attached, is closed to the loader.
        "INSERT INTO trip_rows_j1 VALUES (1, 1, 1, now(), 0, 0, 0, 0)",
        "INSERT INTO trip_cells_j1 VALUES (1, 1, 1, 0, '{0}', '{1}')",
        "DELETE FROM trip_pieces",
        "SELECT rebuild_rollups()",
        "REFRESH MATERIALIZED VIEW trip_groups",
        "UPDATE ingest_jobs SET file = 'x'",
        "SELECT trips_roles()",
    ] {
        assert_denied(&mut c, sql);
    }
    // The owner's functions check what they are asked to do: job 1 is done, not loading.
    let e = db_error(&mut c, "SELECT ingest_begin(1, 1)");
    assert!(e.message().contains("are not being loaded"), "{e}");
    let e = db_error(&mut c, "SELECT ingest_job_done(1, 'x', 0, 0)");
    assert!(e.message().contains("is not being loaded"), "{e}");
    let refresh = db.trips_with(&loader.url, &["refresh"]);
    assert_eq!(refresh.code, 3);
    assert!(
        refresh.stderr.contains("permission denied") && refresh.stderr.contains("need the owner"),
        "{}",
        refresh.stderr
    );
    assert_eq!(db.count("SELECT count(*) FROM trips"), 200);
}

#[test]
fn a_reader_login_queries_and_is_refused_every_write() {
    let db = test_db!("reader");
    db.trips(&["ingest", sample().to_str().unwrap()]).ok();
    let reader = db.login("trips_reader");

    let avg = db.trips_with(&reader.url, &["weekly-avg", "--region", "Turin"]);
    assert_eq!(avg.code, 0, "{}", avg.stderr);
    assert!(avg.stdout.contains("7.60 trips per week"), "{}", avg.stdout);
    for args in [
        &["groups", "--top", "3"][..],
        &["jobs"],
        &["weekly-avg", "--bbox", "7,44,8,46"],
    ] {
        let run = db.trips_with(&reader.url, args);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
    }
    let mut c = reader.client();
    let row = c
        .query_one(
            "SELECT (SELECT count(*) FROM trips), weekly_avg_region('Turin'),
                    (SELECT sum(trips)::bigint FROM weekly_counts(ST_MakeEnvelope(7, 44, 8, 46, 4326))),
                    (SELECT sum(trips)::bigint FROM trip_groups_live), (SELECT count(*) FROM ingest_jobs)",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 100);
    assert!((row.get::<_, f64>(1) - 7.6).abs() < 1e-9);
    assert_eq!(row.get::<_, Option<i64>>(2), Some(38));
    assert_eq!(row.get::<_, i64>(3), 100);
    assert_eq!(row.get::<_, i64>(4), 1);

    for sql in [
        "INSERT INTO regions (name) VALUES ('x')",
        "UPDATE ingest_jobs SET state = 'failed'",
        "DELETE FROM trip_rows",
        "DROP TABLE trip_rows",
        "DROP VIEW trips",
        "ALTER TABLE regions RENAME TO r",
        "SELECT ingest_jobs_open('{x}', '{0}', false)",
        "SELECT ingest_begin(1, 1)",
        "SELECT ingest_job_done(1, 'x', 0, 0)",
        "SELECT ingest_finish(1, 1, 0, '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}')",
        "SELECT rebuild_rollups()",
        "SELECT * FROM trip_merge_step()",
        "CALL trips_merge()",
        "SELECT refresh_trip_groups()",
        "SELECT count(*) FROM trip_groups; REFRESH MATERIALIZED VIEW trip_groups",
        "CREATE TABLE mine (x int)",
    ] {
        assert_denied(&mut c, sql);
    }
    let before = db.rows("SELECT * FROM ingest_jobs");
    let ingest = db.trips_with(
        &reader.url,
        &["ingest", "--force", sample().to_str().unwrap()],
    );
    assert_ne!(ingest.code, 0);
    assert!(
        ingest
            .stderr
            .contains("permission denied for sequence ingest_jobs_id_seq")
            && ingest.stderr.contains("trips_loader"),
        "{}",
        ingest.stderr
    );
    assert_eq!(db.rows("SELECT * FROM ingest_jobs"), before);
    assert_eq!(db.count("SELECT count(*) FROM trips"), 100);
}

#[test]
fn a_non_owner_meeting_an_older_schema_is_told_who_must_migrate() {
    let db = test_db!("oldschema");
    db.trips(&["migrate"]).ok();
    let reader = db.login("trips_reader");
    // As if this binary were newer than the database: its last migration is not recorded there.
    db.client()
        .batch_execute("DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)")
        .unwrap();
    let run = db.trips_with(&reader.url, &["jobs"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("only the owner of the trips tables, trips, can apply it")
            && run
                .stderr
                .contains(&format!("you are connected as {}", reader.name))
            && run.stderr.contains("`trips migrate`"),
        "{}",
        run.stderr
    );
}

fn tls_dir() -> PathBuf {
    PathBuf::from(std::env::var("TRIPS_TEST_TLS_DIR").expect(
        "TRIPS_TEST_TLS_DIR is not set: run the tests with scripts/test.sh, which makes the certificates",
    ))
}

/// The test cluster's port.
fn port_of(db: &TestDb) -> &str {
    db.url
        .rsplit_once(':')
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap()
}

/// The test database's URL with another host and extra parameters.
fn url_with(db: &TestDb, host: &str, params: &str) -> String {
    db.url.replacen("@127.0.0.1:", &format!("@{host}:"), 1) + "?" + params
}

#[test]
fn tls_modes_encrypt_verify_and_refuse_like_libpq() {
    let db = test_db!("tls");
    db.trips(&["migrate"]).ok();
    let ca = tls_dir().join("ca.crt");
    let other = tls_dir().join("other-ca.crt");
    let ca = ca.to_str().unwrap();
    let run = |url: String| {
        let run = db
            .command(&["jobs"])
            .env("DATABASE_URL", url)
            .env("RUST_LOG", "info,trips=debug")
            .env("HOME", &db.dir) // no ~/.postgresql/root.crt to fall back on
            .output()
            .unwrap();
        common::Run::from(run)
    };
    for (url, transport) in [
        (
            url_with(&db, "127.0.0.1", "sslmode=disable"),
            "(without TLS)",
        ),
        (url_with(&db, "127.0.0.1", "sslmode=prefer"), "(TLSv1.3)"),
        (url_with(&db, "127.0.0.1", "sslmode=require"), "(TLSv1.3)"),
        (
            url_with(
                &db,
                "127.0.0.1",
                &format!("sslmode=verify-ca&sslrootcert={ca}"),
            ),
            "(TLSv1.3)",
        ),
        (
            url_with(
                &db,
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
            "(TLSv1.3)",
        ),
    ] {
        let r = run(url.clone());
        assert_eq!(r.code, 0, "{url}: {}", r.stderr);
        assert!(r.stderr.contains(transport), "{url}: {}", r.stderr);
    }
    // key=value form too.
    let port = port_of(&db);
    let kv = format!(
        "host=localhost port={port} user=trips dbname={} sslmode=verify-full sslrootcert='{ca}'",
        db.name
    );
    let r = run(kv);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("(TLSv1.3)"), "{}", r.stderr);

    // The certificate names localhost, not 127.0.0.1.
    let r = run(url_with(
        &db,
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ));
    assert_eq!(r.code, 3);
    assert!(
        r.stderr
            .contains("name the host exactly as written in the URL (sslmode=verify-full)")
            && r.stderr.contains("certificate verify failed"),
        "{}",
        r.stderr
    );
    // Signed by an authority other than the one given.
    let r = run(url_with(
        &db,
        "localhost",
        &format!("sslmode=verify-ca&sslrootcert={}", other.display()),
    ));
    assert_eq!(r.code, 3);
    assert!(
        r.stderr
            .contains("must be signed by the sslrootcert certificate (sslmode=verify-ca)"),
        "{}",
        r.stderr
    );
    // No root certificate at all.
    let r = run(url_with(&db, "localhost", "sslmode=verify-full"));
    assert_eq!(r.code, 3);
    assert!(
        r.stderr.contains("pass sslrootcert=/path/to/root.crt"),
        "{}",
        r.stderr
    );
    // A root certificate that cannot be read: said before connecting (the TLS context itself is only
    // built once the server accepts TLS).
    let missing = db.dir.join("no-such-ca.crt");
    let r = run(url_with(
        &db,
        "localhost",
        &format!("sslmode=verify-ca&sslrootcert={}", missing.display()),
    ));
    assert_eq!(r.code, 3);
    assert!(
        r.stderr.contains(&format!(
            "cannot read the root certificate sslrootcert={} (a PEM file)",
            missing.display()
        )) && !r.stderr.contains("cannot connect"),
        "{}",
        r.stderr
    );
    // One that is not a certificate: found when the TLS context is built, after the server said yes.
    let garbage = db.dir.join("not-a-certificate.crt");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let r = run(url_with(
        &db,
        "localhost",
        &format!("sslmode=verify-ca&sslrootcert={}", garbage.display()),
    ));
    assert_eq!(r.code, 3);
    assert!(
        r.stderr
            .contains("cannot read the root certificate sslrootcert=")
            && r.stderr.contains("no certificate or crl found")
            && r.stderr
                .contains("sslrootcert must name a PEM file holding the certificate"),
        "{}",
        r.stderr
    );
    let r = run(url_with(&db, "localhost", "sslmode=allow"));
    assert!(
        r.stderr
            .contains("sslmode=allow is not supported; use one of disable, prefer"),
        "{}",
        r.stderr
    );
}

#[test]
fn require_against_a_server_without_tls_fails_with_a_clear_message() {
    // What a server with ssl = off does: answer 'N' to the TLS request.
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in server.incoming().take(2) {
            let mut stream = stream.unwrap();
            let mut request = [0u8; 8];
            if stream.read_exact(&mut request).is_ok() {
                let _ = stream.write_all(b"N");
            }
        }
    });
    let db = test_db!("notls");
    let r = db.trips_with(
        &format!("postgresql://trips@127.0.0.1:{port}/x?sslmode=require"),
        &["jobs"],
    );
    assert_eq!(r.code, 3);
    assert!(
        r.stderr
            .contains("the server does not offer TLS and sslmode=require requires it"),
        "{}",
        r.stderr
    );
}

#[test]
fn passwords_come_from_the_url_pgpassword_or_the_password_file_and_never_show() {
    let db = test_db!("secrets");
    db.trips(&["migrate"]).ok();
    let secret = "Pw'; DROP TABLE trips; --%41";
    let mut admin = postgres::Client::connect(&admin_url(), postgres::NoTls).unwrap();
    admin
        .batch_execute("DROP ROLE IF EXISTS trips_pw_test; CREATE ROLE trips_pw_test LOGIN IN ROLE trips_reader")
        .unwrap();
    admin
        .execute(
            &format!(
                "ALTER ROLE trips_pw_test PASSWORD '{}'",
                secret.replace('\'', "''")
            ),
            &[],
        )
        .unwrap();
    let bare = db.url.replacen("://trips@", "://trips_pw_test@", 1);
    let encoded: String = secret
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let with_password = db
        .url
        .replacen("://trips@", &format!("://trips_pw_test:{encoded}@"), 1);
    let run = |url: &str, env: &[(&str, &str)]| {
        let mut cmd = db.command(&["jobs"]);
        cmd.env("DATABASE_URL", url)
            .env("RUST_LOG", "debug")
            .env("HOME", &db.dir)
            .env_remove("PGPASSWORD")
            .env_remove("PGPASSFILE");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let r = common::Run::from(cmd.output().unwrap());
        let all = format!("{}{}", r.stdout, r.stderr);
        assert!(
            !all.contains(secret) && !all.contains(&encoded),
            "the password shows:\n{all}"
        );
        r
    };
    assert_eq!(run(&with_password, &[]).code, 0);
    let r = run(&bare, &[]);
    assert_eq!(r.code, 3, "no password given: {}", r.stderr);
    assert_eq!(run(&bare, &[("PGPASSWORD", secret)]).code, 0);

    let port = port_of(&db);
    let line = format!(
        "127.0.0.1:{port}:{}:trips_pw_test:{}\n",
        db.name,
        secret.replace('\\', "\\\\").replace(':', "\\:")
    );
    let pgpass = db.file(
        "pgpass",
        format!("# for the test\n*:*:*:someone_else:nope\n{line}"),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(run(&bare, &[("PGPASSFILE", &pgpass)]).code, 0);
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = run(&bare, &[("PGPASSFILE", &pgpass)]);
    assert_eq!(r.code, 3);
    assert!(
        r.stderr
            .contains("has group or world access; it is ignored"),
        "{}",
        r.stderr
    );

    // A wrong password, and a failing ingest whose job records the error: the password is nowhere.
    let wrong = db
        .url
        .replacen("://trips@", "://trips_pw_test:Wr0ngSecretXyz@", 1);
    let r = run(&wrong, &[]);
    assert_eq!(r.code, 3);
    assert!(!r.stderr.contains("Wr0ngSecretXyz"), "{}", r.stderr);
    let owner_with_password = db
        .url
        .replacen("://trips@", &format!("://trips:{encoded}@"), 1);
    let bad = db.file(
        "bad.csv",
        format!(
            "{}\nPrague,POINT (1 2),nowhere,2018-05-28 09:03:40,x\n",
            common::HEADER
        ),
    );
    let r = db.trips_with(&owner_with_password, &["ingest", &bad]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let everything = format!(
        "{}{}{:?}",
        r.stdout,
        r.stderr,
        db.rows("SELECT * FROM ingest_jobs")
    );
    assert!(!everything.contains(secret) && !everything.contains(&encoded));
    admin.batch_execute("DROP ROLE trips_pw_test").unwrap();
}

#[test]
fn hostile_names_are_data_stored_and_shown_verbatim() {
    let db = test_db!("hostile");
    let regions = [
        "'); DROP TABLE trips; --",
        "Zürich \"Altstadt\" 東京 ✓",
        "back\\slash 100% _under_",
        "two\nlines; SELECT 1",
    ];
    let sources = [
        "cheap_mobile'; DELETE FROM regions; --",
        "$$ dollar $$ \\N NULL",
    ];
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut csv = format!("{}\n", common::HEADER);
    for (i, region) in regions.iter().enumerate() {
        csv += &format!(
            "{},POINT (14.4{i} 50.0),POINT (14.5 50.1),2018-05-2{i} 09:03:40,{}\n",
            quote(region),
            quote(sources[i % 2])
        );
    }
    let name = "it's; DROP TABLE ingest_jobs; -- 100% \\ \"q\" ü.csv";
    let file = db.file(name, &csv);
    let run = db.trips(&["ingest", "--json", &file]).ok();
    // The notification payloads carry the file name exactly.
    let payload: serde_json::Value =
        serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(payload["file"], file.as_str());
    assert_eq!(payload["state"], "done");

    let mut c = db.client();
    let regions_back: Vec<String> = c
        .query("SELECT region FROM trips ORDER BY departed_at", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(regions_back, regions);
    let sources_back: Vec<String> = c
        .query("SELECT datasource FROM trips ORDER BY departed_at", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        sources_back,
        [sources[0], sources[1], sources[0], sources[1]]
    );
    let file_back: String = c
        .query_one("SELECT file FROM ingest_jobs", &[])
        .unwrap()
        .get(0);
    assert_eq!(file_back, file);
    // Nothing else changed: every table is still there, and only these names were added.
    assert_eq!(db.count("SELECT count(*) FROM regions"), 4);
    assert_eq!(db.count("SELECT count(*) FROM datasources"), 2);
    assert_eq!(db.count("SELECT count(*) FROM ingest_jobs"), 1);

    // Shown verbatim by the CLI, and usable as a question.
    let jobs = db.trips(&["jobs", "--json"]).ok();
    let job: serde_json::Value = serde_json::from_str(jobs.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(job["file"], file.as_str());
    for region in regions {
        let r = db.trips(&["weekly-avg", "--region", region, "--json"]).ok();
        let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
        assert_eq!(v["trips"], 1, "{region}: {}", r.stdout);
        let g = db.trips(&["groups", "--region", region, "--json"]).ok();
        let first: serde_json::Value =
            serde_json::from_str(g.stdout.lines().next().unwrap()).unwrap();
        assert_eq!(first["region"], region);
    }
}

#[test]
fn connection_errors_say_where_but_never_the_password() {
    let db = test_db!("connect");
    let run = db.trips(&[
        "--database-url",
        "postgresql://trips:hunter2@127.0.0.1:1/nothing",
        "ingest",
        sample().to_str().unwrap(),
    ]);
    assert_eq!(run.code, 3);
    assert!(
        run.stderr
            .contains("cannot connect to the database at 127.0.0.1:1/nothing as user trips"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
}
