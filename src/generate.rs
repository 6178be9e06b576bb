//! `trips gen`: realistic synthetic trips in the input CSV format, for benchmarks and tests.
//!
//! Each region has a dozen hotspots (stations, centres) placed around its centre; a trip starts near one
//! hotspot and ends near another, so similar trips really repeat. With `--spread wide`, half of the trip
//! ends are instead anywhere in a square of 2 x 2 degrees around the region's centre: sparse data, where
//! most cells and groups hold one trip. Departures follow a daily rhythm (morning
//! and evening peaks) and a weekly one (quieter weekends) over `--days` days from Monday 2016-01-04.
//! Regions on both sides of the prime meridian and the equator exercise negative coordinates. The output
//! depends only on the arguments: the same seed writes the same bytes.

use crate::cli::GenArgs;
use crate::parse::{civil_from_days, days_from_civil};
use anyhow::Result;
use std::io::{BufWriter, Write};

/// (name, centre longitude, centre latitude, relative weight)
const REGIONS: &[(&str, f64, f64, u32)] = &[
    ("Turin", 7.6869, 45.0703, 8),
    ("Prague", 14.4378, 50.0755, 7),
    ("Hamburg", 9.9937, 53.5511, 6),
    ("Lisbon", -9.1393, 38.7223, 4),
    ("Mexico City", -99.1332, 19.4326, 3),
    ("Sao Paulo", -46.6333, -23.5505, 3),
    ("Sydney", 151.2093, -33.8688, 2),
];

/// Datasource names and weights, as in the customer's sample.
const DATASOURCES: &[(&str, u32)] = &[
    ("cheap_mobile", 33),
    ("pt_search_app", 20),
    ("bad_diesel_vehicles", 18),
    ("baba_car", 16),
    ("funny_car", 13),
];

const HOTSPOTS: usize = 12;
const METRES_PER_DEGREE: f64 = 111_320.0;

/// SplitMix64: small, fast, and good enough for synthetic data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u = 1.0 - self.unit();
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    fn weighted(&mut self, weights: impl Iterator<Item = u32> + Clone) -> usize {
        let total: u32 = weights.clone().sum();
        let mut pick = self.below(u64::from(total)) as u32;
        for (i, w) in weights.enumerate() {
            if pick < w {
                return i;
            }
            pick -= w;
        }
        unreachable!("pick is below the total weight")
    }
}

struct Region {
    name: &'static str,
    centre: (f64, f64),
    /// Degrees of longitude per metre at this latitude, and of latitude per metre.
    deg_per_m: (f64, f64),
    hotspots: Vec<(f64, f64)>,
}

fn regions(rng: &mut Rng) -> Vec<Region> {
    REGIONS
        .iter()
        .map(|&(name, lon, lat, _)| {
            let deg_per_m = (
                1.0 / (METRES_PER_DEGREE * lat.to_radians().cos()),
                1.0 / METRES_PER_DEGREE,
            );
            let hotspots = (0..HOTSPOTS)
                .map(|_| {
                    let r = 8_000.0 * rng.unit().sqrt();
                    let a = std::f64::consts::TAU * rng.unit();
                    (
                        lon + r * a.cos() * deg_per_m.0,
                        lat + r * a.sin() * deg_per_m.1,
                    )
                })
                .collect();
            Region {
                name,
                centre: (lon, lat),
                deg_per_m,
                hotspots,
            }
        })
        .collect()
}

pub fn run(args: &GenArgs) -> Result<()> {
    let mut rng = Rng(args.seed);
    let regions = regions(&mut rng);
    let start_day = days_from_civil(2016, 1, 4);
    let out = std::io::stdout().lock();
    let mut out = BufWriter::with_capacity(1 << 20, out);
    writeln!(
        out,
        "region,origin_coord,destination_coord,datetime,datasource"
    )?;
    let wide = args.spread == "wide";
    for _ in 0..args.rows {
        let region = &regions[rng.weighted(REGIONS.iter().map(|r| r.3))];
        let near_hotspot = |rng: &mut Rng| {
            if wide && rng.unit() < 0.5 {
                return (
                    region.centre.0 - 1.0 + 2.0 * rng.unit(),
                    region.centre.1 - 1.0 + 2.0 * rng.unit(),
                );
            }
            let (lon, lat) = region.hotspots[rng.below(HOTSPOTS as u64) as usize];
            let spread = 600.0;
            (
                lon + rng.normal() * spread * region.deg_per_m.0,
                lat + rng.normal() * spread * region.deg_per_m.1,
            )
        };
        let origin = near_hotspot(&mut rng);
        let destination = near_hotspot(&mut rng);
        // Weekends carry 60% of a weekday's traffic.
        let day = loop {
            let d = rng.below(u64::from(args.days.max(1))) as i64;
            if d % 7 < 5 || rng.unit() < 0.6 {
                break start_day + d;
            }
        };
        // 35% around 08:00, 35% around 18:00, the rest spread over the day.
        let hour = match rng.unit() {
            p if p < 0.35 => 8.0 + 1.2 * rng.normal(),
            p if p < 0.70 => 18.0 + 1.5 * rng.normal(),
            _ => 24.0 * rng.unit(),
        };
        let second = ((hour.rem_euclid(24.0)) * 3600.0) as i64 % 86_400;
        let (y, m, d) = civil_from_days(day);
        let source = DATASOURCES[rng.weighted(DATASOURCES.iter().map(|d| d.1))].0;
        writeln!(
            out,
            "{},POINT ({} {}),POINT ({} {}),{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02},{source}",
            region.name,
            origin.0,
            origin.1,
            destination.0,
            destination.1,
            second / 3600,
            second / 60 % 60,
            second % 60
        )?;
    }
    out.flush()?;
    Ok(())
}
