//! `trips serve` through a real HTTP client: every route against the SQL functions, the bad requests,
//! uploads with their token and limit, and the event stream (order, ?job, Last-Event-ID, a killed
//! loader, fifty clients at once).

mod common;

use common::weekly::{BY, Rng, area};
use common::{HEADER, TestDb};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::time::Duration;

/// A running `trips serve` on a free port of this machine, stopped on drop.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(db: &TestDb, extra: &[&str]) -> Server {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut child = db
            .command(&args)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start trips serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("trips serve ended before serving")
                .unwrap();
            if let Some(rest) = line.strip_prefix("serving ") {
                break rest.split('/').take(3).collect::<Vec<_>>().join("/");
            }
        };
        // The rest of its log, drained so that it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Server { child, base }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET: the status and the JSON body.
    fn get(&self, path: &str) -> (u16, Value) {
        answer(agent().get(&self.url(path)).call())
    }

    /// Sends `request` as it is and returns what comes back until the server closes or goes quiet.
    fn raw(&self, request: &str) -> String {
        use std::io::Write;
        let address = self.base.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        String::from_utf8_lossy(&answer).into_owned()
    }

    fn post(&self, path: &str, token: Option<&str>, body: &[u8]) -> (u16, Value) {
        let mut request = agent().post(&self.url(path));
        if let Some(token) = token {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        answer(request.send_bytes(body))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_read(Duration::from_secs(60))
        .build()
}

fn answer(result: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("no answer: {e}"),
    };
    let status = response.status();
    let text = response.into_string().unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, body)
}

/// A client of /v1/events, reading one event at a time.
struct Events {
    lines: BufReader<Box<dyn Read + Send + Sync>>,
}

impl Events {
    fn open(server: &Server, query: &str, last_event_id: Option<&str>) -> Events {
        let mut request = agent().get(&server.url(&format!("/v1/events{query}")));
        if let Some(id) = last_event_id {
            request = request.set("Last-Event-ID", id);
        }
        let response = request.call().expect("the event stream opens");
        assert_eq!(response.content_type(), "text/event-stream");
        Events {
            lines: BufReader::new(response.into_reader()),
        }
    }

    /// The next event's id and payload; None when the stream ends.
    fn next(&mut self) -> Option<(String, Value)> {
        let (mut id, mut data) = (String::new(), String::new());
        loop {
            let mut line = String::new();
            if self.lines.read_line(&mut line).expect("reading the stream") == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if let Some(v) = line.strip_prefix("id: ") {
                id = v.to_string();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data += v;
            } else if line.is_empty() && !data.is_empty() {
                return Some((id, serde_json::from_str(&data).unwrap()));
            }
        }
    }

    /// The events of `job` until its final one, as (state, rows).
    fn job_until_final(&mut self, job: i64) -> Vec<(String, i64)> {
        let mut seen = Vec::new();
        while let Some((_, e)) = self.next() {
            if e["job"] == job {
                let state = e["state"].as_str().unwrap().to_string();
                seen.push((state.clone(), e["rows"].as_i64().unwrap()));
                if ["done", "failed", "skipped"].contains(&state.as_str()) {
                    return seen;
                }
            }
        }
        panic!("the stream ended before job {job} did: {seen:?}");
    }
}

/// States in the order a job passes them, each at most once in a row; what a client must see.
fn assert_in_order(seen: &[(String, i64)], last: &str, rows: i64) {
    let order = [
        "queued",
        "loading",
        "finishing",
        "done",
        "failed",
        "skipped",
    ];
    let ranks: Vec<usize> = seen
        .iter()
        .map(|(s, _)| order.iter().position(|o| o == s).unwrap())
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    // Rows only grow while loading (a skipped or failed job then records 0).
    let loading = &seen[..seen.len() - 1];
    assert!(loading.windows(2).all(|w| w[0].1 <= w[1].1), "{seen:?}");
    assert_eq!(seen.last().unwrap(), &(last.to_string(), rows), "{seen:?}");
}

fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn every_answer_equals_the_sql_functions_and_bad_requests_are_told() {
    let db = test_db!("serve_answers");
    db.load_several_files(3000);
    let server = Server::start(&db, &[]);
    let mut client = db.client();

    assert_eq!(
        server.get("/healthz"),
        (200, serde_json::json!({"status": "ok"}))
    );
    let (status, spec) = server.get("/openapi.json");
    assert_eq!(status, 200);
    // Every documented GET answers something other than the unknown-route 404.
    for (path, ops) in spec["paths"].as_object().unwrap() {
        if path == "/v1/events" {
            let mut events = Events::open(&server, "?job=1", None);
            assert_eq!(events.next().unwrap().1["job"], 1);
        } else if ops.get("get").is_some() {
            let (_, body) = server.get(&path.replace("{id}", "1"));
            assert_ne!(body["error"], "no such route", "{path}");
        }
    }
    assert_eq!(server.get("/v2/nothing").0, 404);

    // Random boxes and polygons, every `by`, against weekly_avg(); the regions against weekly_avg_region().
    let mut rng = Rng(7);
    for i in 0..24 {
        let by = BY[i % 4];
        let wkt = area(&mut rng);
        let (status, got) = server.get(&format!(
            "/v1/weekly-avg?wkt={}&by={by}",
            query_escape(&wkt)
        ));
        assert_eq!(status, 200, "{got}");
        let want: f64 = client
            .query_one("SELECT weekly_avg(ST_GeomFromEWKT($1), $2)", &[&wkt, &by])
            .unwrap()
            .get(0);
        assert_eq!(
            got["average"].as_f64().unwrap_or(0.0),
            want,
            "{wkt} by {by}"
        );
        let (x, y) = (
            7.0 + rng.below(100) as f64 / 100.0,
            44.5 + rng.below(100) as f64 / 100.0,
        );
        let bbox = format!("{x},{y},{},{}", x + 0.2, y + 0.2);
        let (_, got) = server.get(&format!("/v1/weekly-avg?bbox={bbox}&by={by}"));
        let want: f64 = client
            .query_one(
                "SELECT weekly_avg(ST_MakeEnvelope($1, $2, $3, $4, 4326), $5)",
                &[&x, &y, &(x + 0.2), &(y + 0.2), &by],
            )
            .unwrap()
            .get(0);
        assert_eq!(
            got["average"].as_f64().unwrap_or(0.0),
            want,
            "{bbox} by {by}"
        );
    }
    for row in client.query("SELECT name FROM regions", &[]).unwrap() {
        let region: String = row.get(0);
        let (_, got) = server.get(&format!(
            "/v1/weekly-avg?region={}&weeks=true",
            query_escape(&region)
        ));
        let want: f64 = client
            .query_one("SELECT weekly_avg_region($1)", &[&region])
            .unwrap()
            .get(0);
        assert_eq!(got["average"].as_f64().unwrap(), want, "{region}");
        assert_eq!(
            got["per_week"].as_array().unwrap().len() as f64,
            got["weeks"].as_f64().unwrap()
        );
    }
    let (status, got) = server.get("/v1/weekly-avg?region=Atlantis");
    assert_eq!((status, got["trips"].as_i64()), (200, Some(0)));
    assert!(
        got["hint"].as_str().unwrap().contains("the regions are: "),
        "{got}"
    );

    // Bad questions: 400 with the commands' words.
    for (query, words) in [
        ("bbox=7,45,8", "expected four numbers"),
        ("bbox=7,95,8,96", "latitude"),
        ("bbox=8,45,7,46", "has min >= max"),
        ("bbox=7,45,8,46&by=sideways", "by"),
        ("wkt=POLYGON((7%2045,8", "cannot read the polygon"),
        ("region=Turin&by=both", "does not apply to --region"),
        ("", "give exactly one area"),
        ("bbox=7,45,8,46&region=Turin", "give exactly one area"),
        (
            "bbox=7,45,8,46&since=yesterday-ish",
            "--since and --until take a date",
        ),
    ] {
        let (status, got) = server.get(&format!("/v1/weekly-avg?{query}"));
        assert_eq!(status, 400, "{query}: {got}");
        assert!(
            got["error"].as_str().unwrap().contains(words),
            "{query}: {got}"
        );
    }
    let (status, got) = server.get("/v1/groups?cell_m=3000");
    assert_eq!(status, 400, "{got}");
    assert!(
        got["error"]
            .as_str()
            .unwrap()
            .contains("not a supported cell size")
    );
    assert_eq!(server.get("/v1/groups?format=kml").0, 400);
    assert_eq!(server.get("/v1/jobs?limit=0").0, 400);
    assert_eq!(server.get("/v1/jobs/x").0, 400);
    let (status, got) = server.get("/v1/jobs/999");
    assert_eq!(status, 404);
    assert_eq!(got["error"], "there is no ingest job 999");

    // Jobs: what `trips jobs --json` prints.
    let (_, jobs) = server.get("/v1/jobs?limit=50");
    let cli: Vec<Value> = db
        .trips(&["jobs", "--json", "--limit", "50"])
        .ok()
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let without_time = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("at");
        v
    };
    assert_eq!(
        jobs.as_array()
            .unwrap()
            .iter()
            .map(without_time)
            .collect::<Vec<_>>(),
        cli.iter().map(without_time).collect::<Vec<_>>()
    );
    assert_eq!(
        without_time(&server.get("/v1/jobs/2").1),
        without_time(&cli[cli.len() - 2])
    );

    // Groups: the same objects as `trips groups --json`, and as the properties of the GeoJSON's features.
    let cli: Vec<Value> = db
        .trips(&["groups", "--json", "--top", "15"])
        .ok()
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (_, groups) = server.get("/v1/groups?top=15");
    assert_eq!(groups["groups"].as_array().unwrap(), &cli);
    let (_, geojson) = server.get("/v1/groups?top=15&format=geojson");
    assert_eq!(geojson["type"], "FeatureCollection");
    let features = geojson["features"].as_array().unwrap();
    assert_eq!(features.len(), cli.len());
    for (feature, group) in features.iter().zip(&cli) {
        assert_eq!(feature["type"], "Feature");
        assert_eq!(&feature["properties"], group);
        assert_eq!(feature["geometry"]["type"], "LineString");
        assert_eq!(
            feature["geometry"]["coordinates"],
            serde_json::json!([group["origin_cell"], group["destination_cell"]])
        );
    }
    // ... and `trips groups --format geojson` prints the same collection.
    let printed: Value = serde_json::from_str(
        &db.trips(&["groups", "--top", "15", "--format", "geojson"])
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(printed, geojson);

    // Uploads are off unless asked for.
    let (status, got) = server.post("/v1/ingest", None, b"x");
    assert_eq!(status, 403, "{got}");
    assert!(got["hint"].as_str().unwrap().contains("--allow-ingest"));
}

#[test]
fn uploads_need_the_token_stream_into_the_loader_and_end_on_events() {
    let db = test_db!("serve_upload");
    // A short token, or a token without --allow-ingest, is a usage error before anything is served.
    let short = db.file("short", "abc\n");
    let run = db.trips(&["serve", "--allow-ingest", "--token-file", &short]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("is 3 characters long; use at least 16"),
        "{}",
        run.stderr
    );
    assert_eq!(db.trips(&["serve", "--token-file", &short]).code, 2);
    let token = "0123456789abcdef0123456789abcdef";
    let token_file = db.file("token", format!("{token}\n"));
    let server = Server::start(
        &db,
        &[
            "--allow-ingest",
            "--token-file",
            &token_file,
            "--max-body-mib",
            "1",
        ],
    );
    let csv = std::fs::read(db.generate(5000, 3)).unwrap();
    assert!(csv.len() < 1 << 20);

    // (Small bodies: the server answers without reading a body it refuses.)
    assert_eq!(server.post("/v1/ingest", None, b"x").0, 401);
    assert_eq!(
        server
            .post("/v1/ingest", Some("wrong-token-wrong-token"), b"x")
            .0,
        401
    );
    // Over the limit: refused on its Content-Length, before any of the body is read.
    let head = server.raw(&format!(
        "POST /v1/ingest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: {}\r\n\r\n",
        3 << 20
    ));
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    let (status, got) = server.post("/v1/ingest", Some(token), b"<html>not a csv</html>\n");
    assert_eq!(status, 400, "{got}");
    assert!(
        got["error"]
            .as_str()
            .unwrap()
            .contains("the header has no column named"),
        "{got}"
    );
    assert_eq!(server.post("/v1/ingest", Some(token), b"").0, 400);
    assert_eq!(db.count("SELECT count(*) FROM ingest_jobs"), 0);

    let (status, got) = server.post("/v1/ingest?name=five.csv", Some(token), &csv);
    assert_eq!(status, 202, "{got}");
    let job = got["job"].as_i64().unwrap();
    assert_eq!(got["events"], format!("/v1/events?job={job}"));
    let mut events = Events::open(&server, &format!("?job={job}"), None);
    let seen = events.job_until_final(job);
    assert_in_order(&seen, "done", 5000);
    assert!(
        events.next().is_none(),
        "?job ends the stream after the job's end"
    );
    assert_eq!(db.count("SELECT count(*) FROM trips"), 5000);
    assert_eq!(db.rows("SELECT file FROM ingest_jobs"), ["(five.csv)"]);

    // The same bytes again: skipped, as with `trips ingest`; with a bad record and skip_invalid, loaded.
    let (_, got) = server.post("/v1/ingest", Some(token), &csv);
    let again = got["job"].as_i64().unwrap();
    assert_in_order(
        &Events::open(&server, &format!("?job={again}"), None).job_until_final(again),
        "skipped",
        0,
    );
    let bad = format!(
        "{HEADER}\nTurin,POINT (7.6 45),POINT (7.7 45.1),2018-05-01 10:00:00,s\nTurin,POINT (1),POINT (1 1),2018-05-01 10:00:00,s\n"
    );
    let (_, got) = server.post("/v1/ingest?skip_invalid=true", Some(token), bad.as_bytes());
    let lenient = got["job"].as_i64().unwrap();
    assert_in_order(
        &Events::open(&server, &format!("?job={lenient}"), None).job_until_final(lenient),
        "done",
        1,
    );
    let (_, got) = server.post("/v1/ingest", Some(token), bad.as_bytes());
    let strict = got["job"].as_i64().unwrap();
    assert_in_order(
        &Events::open(&server, &format!("?job={strict}"), None).job_until_final(strict),
        "failed",
        0,
    );
    assert_eq!(db.count("SELECT count(*) FROM trips"), 5001);
}

#[test]
fn every_client_gets_every_event_in_order_and_can_catch_up() {
    let db = test_db!("serve_events");
    db.trips(&["migrate"]).ok();
    let server = Server::start(&db, &[]);
    let file = db.generate(20_000, 4);

    // Fifty clients at once, connected before the load starts.
    let clients: Vec<Events> = (0..50).map(|_| Events::open(&server, "", None)).collect();
    db.trips(&["ingest", "--progress-rows", "5000", &file]).ok();
    let seen: Vec<Vec<(String, i64)>> = std::thread::scope(|s| {
        let readers: Vec<_> = clients
            .into_iter()
            .map(|mut c| s.spawn(move || c.job_until_final(1)))
            .collect();
        readers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for client in &seen {
        assert_in_order(client, "done", 20_000);
        assert_eq!(client, &seen[0], "every client sees the same events");
        assert!(client.iter().any(|(s, _)| s == "loading"));
    }
    assert!(seen[0].len() >= 5, "{:?}", seen[0]);

    // Catching up: from the id of the job's first event, the job's state now comes first.
    let mut events = Events::open(&server, "?job=1", None);
    let (first_id, first) = events.next().unwrap();
    assert_eq!(first["state"], "done");
    let mut caught_up = Events::open(&server, "", Some("2000-01-01T00:00:00Z"));
    let (_, replayed) = caught_up.next().unwrap();
    assert_eq!(
        (replayed["job"].as_i64(), replayed["state"].as_str()),
        (Some(1), Some("done"))
    );
    // From the id of that final event, nothing of job 1 is replayed: the next event is job 2's.
    let mut after = Events::open(&server, "", Some(&first_id));
    let (status, _) = server.get("/v1/events?job=77");
    assert_eq!(status, 404);
    let (status, got) = answer(
        agent()
            .get(&server.url("/v1/events"))
            .set("Last-Event-ID", "not a time")
            .call(),
    );
    assert_eq!(status, 400, "{got}");

    // A loader killed mid-file: its job arrives as failed, reaped by the server.
    let (mut child, stdin) = db.loader_mid_file(50_000, 5);
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    let seen = after.job_until_final(2);
    assert_eq!(seen.last().unwrap().0, "failed", "{seen:?}");
}

#[test]
fn healthz_tells_when_the_database_stops_answering() {
    let db = test_db!("serve_health");
    db.trips(&["migrate"]).ok();
    let server = Server::start(&db, &[]);
    assert_eq!(server.get("/healthz").0, 200);
    let mut admin = postgres::Client::connect(&common::admin_url(), postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {0} ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{0}'",
            db.name
        ))
        .unwrap();
    let (status, got) = server.get("/healthz");
    assert_eq!(status, 503, "{got}");
    let (status, _) = server.get("/v1/weekly-avg?region=Turin");
    assert_eq!(status, 503);
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            db.name
        ))
        .unwrap();
    assert_eq!(server.get("/healthz").0, 200);
}
