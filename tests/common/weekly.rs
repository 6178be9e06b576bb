//! Shared by the weekly-average tests: trips and areas made to sit on the edges that matter, and the plain
//! SQL each answer is compared with.

use super::HEADER;
use postgres::Client;

/// xorshift64*: the same seed gives the same trips and areas.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) % n
    }
}

/// A coordinate near `base` (degrees): often exactly on a multiple of 0.1, 0.01 or 0.001 degree (the cell
/// edges of every level, and the box edges below), else anywhere, to 1e-7.
pub fn coordinate(rng: &mut Rng, base: f64) -> String {
    match rng.below(4) {
        0 => format!("{:.3}", base + rng.below(300) as f64 / 1000.0),
        1 => format!("{:.2}", base + rng.below(30) as f64 / 100.0),
        _ => format!("{:.7}", base + rng.below(3_000_000) as f64 / 1e7),
    }
}

/// Departures that straddle weeks and a year: Sunday 23:59:59 and Monday 00:00:00 around New Year 2018
/// (Monday 2018-01-01) and in between, with a few far ones to widen the window.
pub fn departure(rng: &mut Rng) -> String {
    const EDGES: [&str; 6] = [
        "2017-12-31 23:59:59",
        "2018-01-01 00:00:00",
        "2017-12-24 23:59:59",
        "2017-12-25 00:00:00",
        "2018-01-07 23:59:59",
        "2018-01-08 00:00:00",
    ];
    match rng.below(4) {
        0 => EDGES[rng.below(6) as usize].to_string(),
        _ => {
            let day = rng.below(60);
            let (y, m, d) = if day < 31 {
                (2017, 12, day + 1)
            } else {
                (2018, 1, day - 30)
            };
            format!(
                "{y}-{m:02}-{d:02} {:02}:{:02}:{:02}",
                rng.below(24),
                rng.below(60),
                rng.below(60)
            )
        }
    }
}

/// Trips in two places, one west of Greenwich and south of the equator (negative coordinates: floor,
/// not truncation, must place them in cells).
pub fn trips_csv(rng: &mut Rng, rows: usize) -> String {
    let mut csv = format!("{HEADER}\n");
    for _ in 0..rows {
        let (lon, lat) = if rng.below(2) == 0 {
            (7.5, 45.0)
        } else {
            (-46.8, -23.7)
        };
        csv += &format!(
            "R{},POINT ({} {}),POINT ({} {}),{},src{}\n",
            rng.below(3),
            coordinate(rng, lon),
            coordinate(rng, lat),
            coordinate(rng, lon),
            coordinate(rng, lat),
            departure(rng),
            rng.below(2)
        );
    }
    csv
}

/// A random area as EWKT around one of the two places: mostly boxes whose edges often fall on the same
/// multiples as the points, sometimes a triangle or a polygon with a hole.
pub fn area(rng: &mut Rng) -> String {
    let (lon, lat) = if rng.below(2) == 0 {
        (7.5, 45.0)
    } else {
        (-46.8, -23.7)
    };
    let edge = |rng: &mut Rng, base: f64| -> f64 {
        match rng.below(3) {
            0 => base + rng.below(300) as f64 / 1000.0,
            1 => base + rng.below(30) as f64 / 100.0,
            _ => base + rng.below(3_000_000) as f64 / 1e7,
        }
    };
    let (a, b) = (edge(rng, lon), edge(rng, lon));
    let (c, d) = (edge(rng, lat), edge(rng, lat));
    let (x0, x1, y0, y1) = (a.min(b), a.max(b) + 0.001, c.min(d), c.max(d) + 0.001);
    match rng.below(6) {
        0 => format!("SRID=4326;POLYGON(({x0} {y0},{x1} {y0},{x0} {y1},{x0} {y0}))"),
        1 => {
            let (mx, my) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
            let (hx, hy) = ((x1 - x0) / 4.0, (y1 - y0) / 4.0);
            format!(
                "SRID=4326;POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}),\
                 ({} {},{} {},{} {},{} {},{} {}))",
                mx - hx,
                my - hy,
                mx - hx,
                my + hy,
                mx + hx,
                my + hy,
                mx + hx,
                my - hy,
                mx - hx,
                my - hy
            )
        }
        _ => format!("SRID=4326;POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"),
    }
}

/// The plain SQL's test of a trip's chosen end (`by`) against the area `a`.
pub fn end_test(by: &str) -> &'static str {
    match by {
        "origin" => "ST_Intersects(a, t.origin)",
        "destination" => "ST_Intersects(a, t.destination)",
        "both" => "ST_Intersects(a, t.origin) AND ST_Intersects(a, t.destination)",
        _ => "(ST_Intersects(a, t.origin) OR ST_Intersects(a, t.destination))",
    }
}

/// The default window, computed here from the trips themselves, or the window given: `w(since, until)`.
pub const PLAIN_WINDOW: &str = "
    w AS (SELECT coalesce(nullif($2, '')::timestamp, date_trunc('week', min(departed_at))) AS since,
                 coalesce(nullif($3, '')::timestamp, date_trunc('week', max(departed_at)) + interval '7 days') AS until
            FROM trips)";

/// The plain SQL answer: trips whose chosen end intersects the area, in the window, over the window's weeks.
pub fn plain_avg(client: &mut Client, area: &str, by: &str, window: Option<(&str, &str)>) -> f64 {
    let (since, until) = window.unwrap_or(("", ""));
    let sql = format!(
        "WITH {PLAIN_WINDOW}
         SELECT count(t.*)::float8 / (extract(epoch FROM w.until - w.since)::float8 / 604800)
           FROM w CROSS JOIN ST_GeomFromEWKT($1) AS a
           LEFT JOIN trips t ON {} AND t.departed_at >= w.since AND t.departed_at < w.until
          GROUP BY w.since, w.until",
        end_test(by)
    );
    client
        .query_one(&sql, &[&area, &since, &until])
        .unwrap()
        .get(0)
}

/// The plain SQL's weeks: (Monday, trips of the window departing in its week) for every week from the
/// window's first to its last, empty weeks included.
pub fn plain_weeks(
    client: &mut Client,
    area: &str,
    by: &str,
    window: Option<(&str, &str)>,
) -> Vec<(String, i64)> {
    let (since, until) = window.unwrap_or(("", ""));
    let sql = format!(
        "WITH {PLAIN_WINDOW},
         week AS (SELECT generate_series(date_trunc('week', since), until - interval '1 microsecond',
                                         interval '1 week')::date AS monday FROM w)
         SELECT k.monday::text, count(t.*)
           FROM week k CROSS JOIN w CROSS JOIN ST_GeomFromEWKT($1) AS a
           LEFT JOIN trips t ON {} AND t.departed_at >= w.since AND t.departed_at < w.until
                            AND date_trunc('week', t.departed_at)::date = k.monday
          GROUP BY k.monday ORDER BY k.monday",
        end_test(by)
    );
    client
        .query(&sql, &[&area, &since, &until])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

pub fn weekly_counts(
    client: &mut Client,
    area: &str,
    by: &str,
    window: Option<(&str, &str)>,
) -> Vec<(String, i64)> {
    let (since, until) = window.map_or((None, None), |(s, u)| (Some(s), Some(u)));
    client
        .query(
            "SELECT week_start::text, trips
               FROM weekly_counts(ST_GeomFromEWKT($1), $2, $3::text::timestamp, $4::text::timestamp)",
            &[&area, &by, &since, &until],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

pub fn weekly_avg(client: &mut Client, area: &str, by: &str, window: Option<(&str, &str)>) -> f64 {
    let (since, until) = window.map_or((None, None), |(s, u)| (Some(s), Some(u)));
    client
        .query_one(
            "SELECT weekly_avg(ST_GeomFromEWKT($1), $2, $3::text::timestamp, $4::text::timestamp)",
            &[&area, &by, &since, &until],
        )
        .unwrap()
        .get(0)
}

pub const BY: [&str; 4] = ["origin", "destination", "both", "either"];
