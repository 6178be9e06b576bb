//! Benchmark helper for benchmarks/serve.sh: a client of `GET /v1/events` that prints, for each event, when
//! the database made the change (the payload's `at`, UTC) and when this client received it, as
//! examples/status_latency.rs does for a client that LISTENs itself.
//!
//! Usage: sse_latency BASE_URL EVENTS   (stops after EVENTS events)
//! Output: one CSV line per event: `state,at,received_unix_seconds`.

use std::io::{BufRead, BufReader};
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (base, wanted) = (&args[1], args[2].parse::<usize>().unwrap());
    let response = ureq::get(&format!("{base}/v1/events")).call().unwrap();
    eprintln!("listening");
    let mut lines = BufReader::new(response.into_reader());
    let mut seen = 0;
    let mut line = String::new();
    while seen < wanted && lines.read_line(&mut line).unwrap() > 0 {
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            let received = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            let e: serde_json::Value = serde_json::from_str(data).unwrap();
            println!(
                "{},{},{received:.6}",
                e["state"].as_str().unwrap(),
                e["at"].as_str().unwrap()
            );
            seen += 1;
        }
        line.clear();
    }
}
