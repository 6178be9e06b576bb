//! No Docker engine runs where these tests run, so the images are not built here. What can be checked is:
//! the compose file parses and holds what docs/operations.md documents, and the Dockerfile builds as scripts/ do.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};

fn repo_file(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap()
}

/// docker-compose.yml as JSON, parsed by PyYAML (scripts/test.sh installs it when missing).
fn compose() -> Value {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed to parse docker-compose.yml");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(repo_file("docker-compose.yml").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker-compose.yml does not parse: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn compose_file_has_the_documented_services() {
    let c = compose();
    let db = &c["services"]["db"];
    assert_eq!(db["build"]["dockerfile"], "docker/db.Dockerfile");
    assert!(db["healthcheck"]["test"].to_string().contains("pg_isready"));
    let volume = db["volumes"][0].as_str().unwrap();
    let named = volume.split(':').next().unwrap();
    assert!(
        c["volumes"].get(named).is_some(),
        "volume {named} is not declared as a named volume"
    );
    assert!(volume.ends_with(":/var/lib/postgresql/data"));
    // pg_cron is preloaded and runs its jobs in the database the service creates.
    let command = db["command"].to_string();
    assert!(
        command.contains("shared_preload_libraries=pg_cron,postgis-3"),
        "{command}"
    );
    let env = &db["environment"];
    assert!(command.contains(&format!(
        "cron.database_name={}",
        env["POSTGRES_DB"].as_str().unwrap()
    )));

    // The loader loads the bundled sample; the API waits for it, and answers this machine only.
    let trips = &c["services"]["trips"];
    assert_eq!(trips["build"], ".");
    assert_eq!(
        trips["command"],
        serde_json::json!(["ingest", "--rejects-dir", "/rejects", "/data/trips.csv"])
    );
    assert_eq!(trips["depends_on"]["db"]["condition"], "service_healthy");
    let api = &c["services"]["api"];
    assert_eq!(api["image"], trips["image"]);
    assert_eq!(api["command"][0], "serve");
    assert_eq!(api["command"][2], "0.0.0.0:8080");
    assert_eq!(api["ports"][0], "127.0.0.1:8080:8080");
    assert_eq!(
        api["depends_on"]["trips"]["condition"],
        "service_completed_successfully"
    );
    for service in [trips, api] {
        let url = service["environment"]["DATABASE_URL"].as_str().unwrap();
        assert!(url.contains("@db:5432/trips"), "{url}");
        // The database user and password of the URL are the ones the db service creates.
        assert!(url.starts_with(&format!(
            "postgresql://{}:",
            env["POSTGRES_USER"].as_str().unwrap()
        )));
        assert!(url.contains(env["POSTGRES_PASSWORD"].as_str().unwrap()));
        let mounts = service["volumes"].to_string();
        assert!(mounts.contains("\"rejects:/rejects\""), "{mounts}");
    }
    assert!(trips["volumes"].to_string().contains("\"./data:/data:ro\""));
    assert!(c["volumes"].get("rejects").is_some());
}

/// The database image: PostGIS 15-3.4, plus the pg_cron package scripts/lib.sh installs for the local
/// cluster, and the schedules scripts/run.sh applies.
#[test]
fn database_image_adds_pg_cron_and_the_schedules_of_the_scripts() {
    let dockerfile = repo_file("docker/db.Dockerfile");
    assert!(dockerfile.contains("FROM postgis/postgis:15-3.4\n"));
    let lib = repo_file("scripts/lib.sh");
    let version = lib
        .lines()
        .find_map(|l| l.strip_prefix("PG_VERSION="))
        .expect("scripts/lib.sh sets PG_VERSION")
        .trim_matches('"');
    assert!(lib.contains("postgresql-$PG_VERSION-cron"));
    assert!(dockerfile.contains(&format!(
        "install -y --no-install-recommends postgresql-{version}-cron"
    )));
    assert!(dockerfile.contains("COPY scripts/schedule.sql /docker-entrypoint-initdb.d/"));
    assert!(repo_file("scripts/run.sh").contains("scripts/schedule.sql"));
    let schedule = repo_file("scripts/schedule.sql");
    for job in ["SELECT refresh_trip_groups()", "CALL trips_merge()"] {
        assert!(schedule.contains(job), "{job}");
    }
    // The run image owns /rejects, which the named volume then takes.
    assert!(repo_file("Dockerfile").contains("mkdir /rejects && chown trips /rejects"));
    // .dockerignore keeps scripts/ in the build context the database image copies from.
    assert!(
        !repo_file(".dockerignore")
            .lines()
            .any(|l| l.trim() == "scripts")
    );
}

#[test]
fn readme_shows_the_compose_commands_that_the_file_supports() {
    let readme = repo_file("docs/operations.md");
    for cmd in [
        "docker compose up",
        "docker compose run --rm trips ingest /data/trips.csv",
        "http://127.0.0.1:8080/openapi.json",
        "TRIPS_DB_PASSWORD",
        "not built here",
    ] {
        assert!(
            readme.contains(cmd),
            "docs/operations.md does not mention {cmd:?}"
        );
    }
    // /data/trips.csv exists in the folder that is mounted there.
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data/trips.csv")
            .exists()
    );
}

#[test]
fn dockerfile_builds_like_the_scripts_and_ships_only_the_binary() {
    let dockerfile = repo_file("Dockerfile");
    let run_sh = repo_file("scripts/run.sh");
    assert!(run_sh.contains("cargo build --release"));
    assert!(dockerfile.contains("RUN cargo build --release --locked"));
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a run stage");
    assert!(stages[1].contains("slim"));
    // Everything the binary embeds (include_str! of db/) is copied into the build stage.
    for dir in ["src", "db"] {
        assert!(dockerfile.contains(&format!("COPY {dir} {dir}")));
    }
    assert!(
        dockerfile.contains("COPY --from=build /src/target/release/trips /usr/local/bin/trips")
    );
    assert!(dockerfile.contains("ENTRYPOINT [\"trips\"]"));
    // The binary links OpenSSL (TLS to the database): the run stage must have the library.
    assert!(dockerfile.contains("libssl3"));
    // Cargo.lock is committed, so --locked can work.
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("Cargo.lock")
            .exists()
    );
}
