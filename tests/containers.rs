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
    assert!(
        db["image"]
            .as_str()
            .unwrap()
            .starts_with("postgis/postgis:15-3"),
        "{db}"
    );
    assert!(db["healthcheck"]["test"].to_string().contains("pg_isready"));
    let volume = db["volumes"][0].as_str().unwrap();
    let named = volume.split(':').next().unwrap();
    assert!(
        c["volumes"].get(named).is_some(),
        "volume {named} is not declared as a named volume"
    );
    assert!(volume.ends_with(":/var/lib/postgresql/data"));

    let trips = &c["services"]["trips"];
    assert_eq!(trips["build"], ".");
    let url = trips["environment"]["DATABASE_URL"].as_str().unwrap();
    assert!(url.contains("@db:5432/trips"), "{url}");
    assert_eq!(trips["depends_on"]["db"]["condition"], "service_healthy");
    assert!(
        trips["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "./data:/data:ro")
    );
    // The database user and password of the URL are the ones the db service creates.
    let env = &db["environment"];
    assert!(url.starts_with(&format!(
        "postgresql://{}:",
        env["POSTGRES_USER"].as_str().unwrap()
    )));
    assert!(url.contains(env["POSTGRES_PASSWORD"].as_str().unwrap()));
}

#[test]
fn readme_shows_the_compose_commands_that_the_file_supports() {
    let readme = repo_file("docs/operations.md");
    for cmd in [
        "docker compose up -d db",
        "docker compose run --rm trips ingest /data/trips.csv",
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
