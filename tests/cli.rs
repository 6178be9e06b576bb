//! The command line's conventions: libpq's environment, -d, -q/-v, --progress, -j, completions, the manual
//! page, a closed pipe, and docs/cli.md naming exactly the flags of the help.

mod common;

use common::{HEADER, Run};
use std::collections::BTreeSet;
use std::process::{Command, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_trips"))
}

/// The `--flags` a help text offers.
fn flags(help: &str) -> BTreeSet<String> {
    help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w[2..].starts_with(|c: char| c.is_ascii_alphabetic()))
        .map(String::from)
        .collect()
}

const COMMANDS: [&str; 13] = [
    "ingest",
    "watch",
    "jobs",
    "groups",
    "weekly-avg",
    "refresh",
    "compact",
    "migrate",
    "roles",
    "serve",
    "gen",
    "completions",
    "man",
];

#[test]
fn docs_cli_names_every_command_and_flag_of_the_help_and_no_other() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cli.md")).unwrap();
    let top = String::from_utf8(bin().arg("--help").output().unwrap().stdout).unwrap();
    let mut offered = BTreeSet::new();
    for command in COMMANDS {
        assert!(top.contains(command), "`trips --help` lacks {command}");
        assert!(
            doc.contains(&format!("trips {command}")),
            "docs/cli.md lacks `trips {command}`"
        );
        let out = bin().args([command, "--help"]).output().unwrap();
        let help = String::from_utf8(out.stdout).unwrap();
        for flag in flags(&help) {
            assert!(
                doc.contains(&format!("`{flag}")),
                "docs/cli.md lacks {flag} of `trips {command}`"
            );
            offered.insert(flag);
        }
    }
    for flag in flags(&doc) {
        assert!(
            offered.contains(&flag),
            "docs/cli.md names {flag}, which no command offers"
        );
    }
}

#[test]
fn the_libpq_variables_and_d_reach_the_database() {
    let db = test_db!("pgenv");
    // postgresql://trips@127.0.0.1:PORT/NAME
    let rest = db.url.strip_prefix("postgresql://trips@").unwrap();
    let (host_port, name) = rest.split_once('/').unwrap();
    let (host, port) = host_port.split_once(':').unwrap();
    let run = db
        .command(&["ingest", common::sample().to_str().unwrap()])
        .env_remove("DATABASE_URL")
        .env("PGHOST", host)
        .env("PGPORT", port)
        .env("PGUSER", "trips")
        .env("PGDATABASE", &db.name)
        .output()
        .unwrap();
    Run::from(run).ok();
    assert_eq!(db.count("SELECT count(*) FROM trips"), 100);
    assert_eq!(name, db.name);

    // -d wins over DATABASE_URL; a URL without a database takes PGDATABASE's.
    let run = db
        .command(&[
            "jobs",
            "--json",
            "-d",
            &format!("postgresql://trips@{host_port}"),
        ])
        .env("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nothing")
        .env("PGDATABASE", &db.name)
        .output()
        .unwrap();
    assert_eq!(Run::from(run).ok().stdout.lines().count(), 1);

    // `gen` has no connection to offer.
    let run = bin()
        .args(["gen", "--rows", "1", "-d", &db.url])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
}

#[test]
fn quiet_verbose_and_progress_change_what_is_drawn_not_what_is_pushed() {
    let db = test_db!("quiet");
    let file = db.generate(3000, 1);
    // -q: nothing at all on success.
    let run = db
        .trips(&["-q", "ingest", "--progress-rows", "1000", &file])
        .ok();
    assert_eq!(run.stderr, "");
    // ... but errors still.
    let bad = db.file(
        "bad.csv",
        format!("{HEADER}\nTurin,POINT (1),POINT (1 1),2018-03-01 10:00:00,s\n"),
    );
    let run = db.trips(&["-q", "ingest", &bad]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.starts_with("error: failed to load"),
        "{}",
        run.stderr
    );

    // --progress never: only the outcome line; the payloads pushed are the same as with auto.
    let never = db
        .trips(&[
            "ingest",
            "--force",
            "--progress-rows",
            "1000",
            "--progress",
            "never",
            "--json",
            &file,
        ])
        .ok();
    let auto = db
        .trips(&[
            "ingest",
            "--force",
            "--progress-rows",
            "1000",
            "--json",
            &file,
        ])
        .ok();
    let states = |out: &str| -> Vec<(String, i64)> {
        out.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| {
                (
                    v["state"].as_str().unwrap().to_string(),
                    v["rows"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(states(&never.stdout), states(&auto.stdout));
    assert!(states(&never.stdout).len() >= 5, "{}", never.stdout);
    let run = db
        .trips(&[
            "ingest",
            "--force",
            "--progress-rows",
            "1000",
            "--progress",
            "never",
            &file,
        ])
        .ok();
    assert_eq!(
        run.stderr
            .lines()
            .filter(|l| l.starts_with("loaded "))
            .count(),
        1
    );
    assert!(!run.stderr.contains("loading:"), "{}", run.stderr);
    let run = db
        .trips(&["ingest", "--force", "--progress-rows", "1000", &file])
        .ok();
    assert!(run.stderr.contains("loading: 1000 rows"), "{}", run.stderr);

    // -v: the loader's debug lines.
    let run = db
        .command(&["-v", "jobs"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&run.stderr).contains("[DEBUG]"));
}

/// What a terminal would show of `text`: the lines between carriage returns and newlines, without the
/// escape sequences that erase and move.
fn screen_lines(text: &str) -> Vec<String> {
    text.split(['\r', '\n'])
        .map(|line| {
            let mut shown = String::new();
            let mut chars = line.chars();
            while let Some(c) = chars.next() {
                if c == '\x1b' {
                    // CSI: ESC [ parameters, then one final letter.
                    chars.by_ref().find(|c| c.is_ascii_alphabetic());
                } else {
                    shown.push(c);
                }
            }
            shown
        })
        .filter(|l| !l.is_empty())
        .collect()
}

/// Whether every progress line (not the log and outcome lines around them) fits in 80 columns.
fn bars_fit(lines: &[String]) -> bool {
    let bars: Vec<_> = lines.iter().filter(|l| l.contains(" rows, ")).collect();
    !bars.is_empty() && bars.iter().all(|l| l.chars().count() <= 80)
}

#[test]
fn progress_bars_show_percent_and_eta_or_a_spinner_and_never_wrap() {
    let db = test_db!("bars");
    let file = db.generate(3000, 1);
    // --progress always draws even though stderr is a pipe here (79 columns assumed).
    let run = db
        .trips(&[
            "ingest",
            "--progress",
            "always",
            "--progress-rows",
            "1000",
            &file,
        ])
        .ok();
    let lines = screen_lines(&run.stderr);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("% loading 3000 rows") && l.contains(" eta ")),
        "{lines:#?}"
    );
    assert!(bars_fit(&lines), "{lines:#?}");
    assert!(lines.last().unwrap().starts_with("loaded "), "{lines:#?}");

    // Standard input has no size: a spinner with the elapsed time, no percent.
    let csv = std::fs::read(&file).unwrap();
    let run = db
        .trips_stdin(
            &[
                "ingest",
                "--force",
                "--progress",
                "always",
                "--progress-rows",
                "1000",
                "-",
            ],
            &csv,
        )
        .ok();
    let lines = screen_lines(&run.stderr);
    assert!(
        lines.iter().any(|l| l.contains("loading 3000 rows")),
        "{lines:#?}"
    );
    assert!(!lines.iter().any(|l| l.contains('%')), "{lines:#?}");
    assert!(bars_fit(&lines), "{lines:#?}");
}

#[test]
fn j_loads_files_at_once_each_its_own_job_and_a_bad_one_fails_alone() {
    let db = test_db!("parallel");
    let files: Vec<String> = (1..=3).map(|seed| db.generate(5000, seed)).collect();
    let bad = db.file(
        "bad.csv",
        format!("{HEADER}\nTurin,POINT (1),POINT (1 1),2018-03-01 10:00:00,s\n"),
    );
    let run = db.trips(&["ingest", "-j", "3", &files[0], &bad, &files[1], &files[2]]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.stderr.matches("error: failed to load").count(),
        1,
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.matches("loaded ").count(), 3, "{}", run.stderr);
    assert_eq!(
        db.rows("SELECT state, count(*) FROM ingest_jobs GROUP BY 1 ORDER BY 1"),
        ["(done,3)", "(failed,1)"]
    );
    // Exact totals: the same as the three files loaded one by one.
    let one_by_one = test_db!("serial");
    for f in &files {
        one_by_one.trips(&["ingest", f]).ok();
    }
    let summary = "SELECT region, datasource, trips, first_departure, last_departure \
                   FROM region_datasource_summary ORDER BY 1, 2";
    assert_eq!(db.rows(summary), one_by_one.rows(summary));
    assert_eq!(db.count("SELECT count(*) FROM trips"), 15_000);
}

#[test]
fn completions_and_the_manual_page() {
    // Each script must parse in its shell (scripts/test.sh installs zsh and fish).
    for (shell, check) in [("bash", "-n"), ("zsh", "-n"), ("fish", "--no-execute")] {
        let out = bin().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("weekly-avg"),
            "{shell}"
        );
        if Command::new(shell).arg("-c").arg("true").status().is_err() {
            assert!(
                !common::have_cluster(),
                "{shell} is not installed; scripts/test.sh installs it"
            );
            continue;
        }
        let script =
            std::env::temp_dir().join(format!("trips-completion-{}.{shell}", std::process::id()));
        std::fs::write(&script, &out.stdout).unwrap();
        let parsed = Command::new(shell)
            .arg(check)
            .arg(&script)
            .output()
            .unwrap();
        std::fs::remove_file(&script).unwrap();
        assert!(
            parsed.status.success(),
            "the {shell} completion script does not parse: {}",
            String::from_utf8_lossy(&parsed.stderr)
        );
    }
    for shell in ["elvish", "powershell"] {
        let out = bin().args(["completions", shell]).output().unwrap();
        assert!(out.status.success() && out.stdout.len() > 500, "{shell}");
    }
    let man = String::from_utf8(bin().arg("man").output().unwrap().stdout).unwrap();
    assert!(man.contains(".TH trips 1"), "{man:.300}");
    for command in ["ingest", "weekly\\-avg", "watch"] {
        assert!(man.contains(command), "the manual page lacks {command}");
    }
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let db = test_db!("pipe");
    db.load_several_files(300);
    let mut child = db
        .command(&["jobs", "--limit", "1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));

    // `trips watch` ends at the first event it cannot write, instead of running on.
    let mut watch = db
        .command(&["watch", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    drop(watch.stdout.take());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        db.trips(&["ingest", "--force", common::sample().to_str().unwrap()])
            .ok();
        if let Some(status) = watch.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "watch ran on");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(status.code(), Some(0));
}
