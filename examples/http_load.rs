//! Benchmark helper for benchmarks/serve.sh: CLIENTS threads ask `GET /v1/weekly-avg?bbox=...` of a running
//! `trips serve` for SECONDS, each taking boxes at random from BOXES_FILE (one `minlon,minlat,maxlon,maxlat`
//! per line, the same boxes the psql side asks), one request after another on a kept-alive connection.
//!
//! Usage: http_load BASE_URL BOXES_FILE CLIENTS SECONDS
//! Output: one CSV line: clients,requests,seconds,requests_per_s,p50_ms,p95_ms,errors

use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (base, boxes_file) = (&args[1], &args[2]);
    let (clients, seconds): (usize, f64) = (args[3].parse().unwrap(), args[4].parse().unwrap());
    let boxes: Vec<String> = std::fs::read_to_string(boxes_file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let agent = ureq::AgentBuilder::new()
        .max_idle_connections_per_host(clients)
        .timeout(Duration::from_secs(120))
        .build();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let results: Vec<(Vec<f64>, usize)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..clients)
            .map(|c| {
                let (agent, boxes) = (agent.clone(), &boxes);
                s.spawn(move || {
                    let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ (c as u64 + 1);
                    let (mut times, mut errors) = (Vec::new(), 0);
                    while Instant::now() < deadline {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        let bbox = &boxes[(seed % boxes.len() as u64) as usize];
                        let t = Instant::now();
                        let ok = agent
                            .get(&format!("{base}/v1/weekly-avg?bbox={bbox}"))
                            .call()
                            .ok()
                            .and_then(|r| r.into_string().ok())
                            .is_some_and(|body| body.contains("\"average\""));
                        times.push(t.elapsed().as_secs_f64() * 1000.0);
                        errors += usize::from(!ok);
                    }
                    (times, errors)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let errors: usize = results.iter().map(|r| r.1).sum();
    let mut times: Vec<f64> = results.into_iter().flat_map(|r| r.0).collect();
    times.sort_by(f64::total_cmp);
    let p = |q: f64| times[((q * times.len() as f64) as usize).min(times.len() - 1)];
    println!(
        "{clients},{},{elapsed:.2},{:.1},{:.2},{:.2},{errors}",
        times.len(),
        times.len() as f64 / elapsed,
        p(0.5),
        p(0.95)
    );
}
