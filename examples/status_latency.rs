//! Benchmark helper for benchmarks/status.sh: listens on ingest_status and prints, for each event, when the
//! database made the change (the payload's `at`, taken by the trigger, UTC) and when this client received it.
//!
//! Usage: status_latency DATABASE_URL EVENTS   (stops after EVENTS events, or 10 minutes without one)
//! Output: one CSV line per event: `state,at,received_unix_seconds`.

use fallible_iterator::FallibleIterator;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (url, wanted) = (&args[1], args[2].parse::<usize>().unwrap());
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    client.batch_execute("LISTEN ingest_status").unwrap();
    eprintln!("listening");
    let mut notifications = client.notifications();
    let mut it = notifications.timeout_iter(Duration::from_secs(600));
    for _ in 0..wanted {
        let Some(n) = it.next().unwrap() else { break };
        let received = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let e: serde_json::Value = serde_json::from_str(n.payload()).unwrap();
        println!(
            "{},{},{received:.6}",
            e["state"].as_str().unwrap(),
            e["at"].as_str().unwrap()
        );
    }
}
