//! Benchmark helper for benchmarks/run.sh: asks `weekly_avg` about areas and times each answer
//! as a client sees it; for the first PLAIN areas also times the plain SQL over the `trips` view, and
//! checks that both give the same number.
//!
//! Usage: weekly_avg_bench DATABASE_URL AREAS PLAIN SEED [warm] [since=T until=T] [weeks]
//! With `warm`, the session first asks a 200 m box and a 200 m triangle by every `by`, untimed, so that the
//! times are those of a session that has asked before (PostgreSQL plans a function's queries once per
//! session). The areas asked are the same.
//! With `since=` and `until=` (timestamps), every question and the plain SQL are about that window.
//! With `weeks`, the questions are `weekly_counts` (one row per week) and the plain SQL counts per week;
//! the weeks must be the same, and `ours`/`plain` are their totals over the window's weeks.
//! Areas: centred on trip origins picked by a hash of their values; boxes 100 m to 100 km wide (log-uniform), every fourth area an
//! irregular polygon of the same size, and `by` cycling through origin, destination, both, either.
//! Output: one CSV line per question: kind,by,width_m,ours_ms,ours,plain_ms,plain,area (plain empty when not
//! run; area is the WKT asked about, quoted, so that a slow or wrong answer can be asked again by hand).

use postgres::{Client, NoTls};
use std::time::Instant;

/// xorshift64*: small, seeded, good enough to pick areas.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

const BY: [&str; 4] = ["origin", "destination", "both", "either"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = &args[1];
    let (areas, plain, seed): (usize, usize, u64) = (
        args[2].parse().unwrap(),
        args[3].parse().unwrap(),
        args[4].parse().unwrap(),
    );
    let option = |name: &str| {
        args[5..]
            .iter()
            .find_map(|a| a.strip_prefix(name).map(str::to_string))
    };
    let (since, until) = (option("since="), option("until="));
    let per_week = args[5..].iter().any(|a| a == "weeks");
    let mut client = Client::connect(url, NoTls).unwrap();
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    client
        .batch_execute(&format!("SELECT setseed({})", rng.next() - 0.5))
        .unwrap();
    // The same seed picks the same trips from the same data, so runs before and after a
    // change ask about the same areas. Chosen by the trips' values (a hash of each origin and the seed),
    // not by where they lie on disk, so that the same trips loaded as one file or as many, merged or not,
    // are asked the same questions.
    let centres: Vec<(f64, f64)> = client
        .query(
            "SELECT origin_lon / 1e7::float8, origin_lat / 1e7::float8
               FROM trip_rows
              WHERE hashint8extended((origin_lon::int8 << 32) | (origin_lat::int8 & 4294967295), $2) % 100 = 0
              ORDER BY hashint8extended((origin_lon::int8 << 32) | (origin_lat::int8 & 4294967295), $2),
                       origin_lon, origin_lat
              LIMIT $1",
            &[&(areas as i64), &(seed as i64)],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let weeks: f64 = client
        .query_one(
            "SELECT weeks FROM trip_window($1::text::timestamp, $2::text::timestamp)",
            &[&since, &until],
        )
        .unwrap()
        .get(0);
    if args[5..].iter().any(|a| a == "warm") {
        let (lon, lat) = centres[0];
        let (x1, y1) = (lon + 0.002, lat + 0.002);
        for by in BY {
            for wkt in [
                format!("POLYGON(({lon} {lat},{x1} {lat},{x1} {y1},{lon} {y1},{lon} {lat}))"),
                format!("POLYGON(({lon} {lat},{x1} {lat},{lon} {y1},{lon} {lat}))"),
            ] {
                client
                    .query_one(
                        "SELECT weekly_avg(ST_GeomFromText($1, 4326), $2)",
                        &[&wkt, &by],
                    )
                    .unwrap();
            }
        }
    }
    println!("kind,by,width_m,ours_ms,ours,plain_ms,plain,area");
    for (i, &(lon, lat)) in centres.iter().enumerate() {
        let width_m = 100.0 * 1000f64.powf(rng.next());
        let half_lat = width_m / 2.0 / 111_320.0;
        let half_lon = half_lat / lat.to_radians().cos();
        let by = BY[i % 4];
        let (kind, wkt) = if (i / 4) % 4 == 3 {
            ("polygon", polygon(&mut rng, lon, lat, half_lon, half_lat))
        } else {
            let (x0, y0, x1, y1) = (
                lon - half_lon,
                lat - half_lat,
                lon + half_lon,
                lat + half_lat,
            );
            (
                "box",
                format!("POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"),
            )
        };
        let t = Instant::now();
        let (ours, ours_weeks): (f64, Vec<i64>) = if per_week {
            let counts: Vec<i64> = client
                .query(
                    "SELECT trips FROM weekly_counts(ST_GeomFromText($1, 4326), $2, $3::text::timestamp,
                                                     $4::text::timestamp)",
                    &[&wkt, &by, &since, &until],
                )
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            (counts.iter().sum::<i64>() as f64 / weeks, counts)
        } else {
            let avg = client
                .query_one(
                    "SELECT weekly_avg(ST_GeomFromText($1, 4326), $2, $3::text::timestamp, $4::text::timestamp)",
                    &[&wkt, &by, &since, &until],
                )
                .unwrap()
                .get(0);
            (avg, Vec::new())
        };
        let ours_ms = t.elapsed().as_secs_f64() * 1000.0;
        let (mut plain_ms, mut plain_avg) = (String::new(), String::new());
        if i < plain {
            let test = match by {
                "origin" => "ST_Intersects(a, origin)",
                "destination" => "ST_Intersects(a, destination)",
                "both" => "ST_Intersects(a, origin) AND ST_Intersects(a, destination)",
                _ => "(ST_Intersects(a, origin) OR ST_Intersects(a, destination))",
            };
            // Over a window, the trips that departed in it; otherwise every trip (the default window).
            let in_window = if since.is_some() || until.is_some() {
                " AND departed_at >= w.window_start AND departed_at < w.window_end"
            } else {
                ""
            };
            // Per week: the trips of each week of the window (weeks without trips are zeros).
            let sql = if per_week {
                format!(
                    "SELECT count(t.*)
                       FROM trip_window($2::text::timestamp, $3::text::timestamp) AS w
                      CROSS JOIN trip_window_weeks($2::text::timestamp, $3::text::timestamp) AS k
                       LEFT JOIN (SELECT date_trunc('week', departed_at)::date AS monday
                                    FROM trips, ST_GeomFromText($1, 4326) AS a,
                                         trip_window($2::text::timestamp, $3::text::timestamp) AS w
                                   WHERE {test}{in_window}) AS t ON t.monday = k.week_start
                      GROUP BY k.week_start ORDER BY k.week_start"
                )
            } else {
                format!(
                    "SELECT count(*) FROM trips, ST_GeomFromText($1, 4326) AS a,
                            trip_window($2::text::timestamp, $3::text::timestamp) AS w
                      WHERE {test}{in_window}"
                )
            };
            let t = Instant::now();
            let counts: Vec<i64> = client
                .query(&sql, &[&wkt, &since, &until])
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            plain_ms = format!("{:.3}", t.elapsed().as_secs_f64() * 1000.0);
            let avg = counts.iter().sum::<i64>() as f64 / weeks;
            plain_avg = format!("{avg}");
            if (avg - ours).abs() > 1e-9 * avg.abs().max(1.0) || (per_week && counts != ours_weeks)
            {
                eprintln!("MISMATCH {kind} {by} {wkt}: weekly_avg {ours}, plain SQL {avg}");
            }
        }
        println!("{kind},{by},{width_m:.0},{ours_ms:.3},{ours},{plain_ms},{plain_avg},\"{wkt}\"");
    }
}

/// A star-shaped polygon around (lon, lat): 6 to 12 vertices at increasing angles, each at 50-100% of the
/// half-widths, so it is always simple and valid.
fn polygon(rng: &mut Rng, lon: f64, lat: f64, half_lon: f64, half_lat: f64) -> String {
    let n = 6 + (rng.next() * 7.0) as usize;
    let mut points: Vec<String> = (0..n)
        .map(|k| {
            let angle = (k as f64 + rng.next() * 0.8) / n as f64 * std::f64::consts::TAU;
            let r = 0.5 + 0.5 * rng.next();
            format!(
                "{} {}",
                lon + r * half_lon * angle.cos(),
                lat + r * half_lat * angle.sin()
            )
        })
        .collect();
    points.push(points[0].clone());
    format!("POLYGON(({}))", points.join(","))
}
