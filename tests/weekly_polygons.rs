//! Weekly averages of polygons: points on and just beside slanted edges, counted exactly.

mod common;

use common::HEADER;
use common::weekly::*;
use postgres::Client;

/// weekly_avg of `area` by `by` over all time equals the plain SQL's.
fn assert_equals_plain(client: &mut Client, area: &str, by: &str) {
    let (ours, plain) = (
        weekly_avg(client, area, by, None),
        plain_avg(client, area, by, None),
    );
    assert!(
        (ours - plain).abs() <= 1e-9 * plain.max(1.0),
        "{area} by {by}: weekly_avg {ours}, plain SQL {plain}"
    );
}

/// A triangle near (7.5, 45.0), its vertices on the stored grid (integers, 1e-7 degree), two of its edges
/// along short integer steps so that many grid points lie exactly on them; 0.002 to 0.03 degree wide.
fn slanted_triangle(rng: &mut Rng) -> [(i64, i64); 3] {
    loop {
        let a = (
            75_000_000 + rng.below(100_000) as i64,
            450_000_000 + rng.below(100_000) as i64,
        );
        let step = |rng: &mut Rng| {
            let (p, q) = (rng.below(15) as i64 - 7, rng.below(15) as i64 - 7);
            let m = 2_000 + rng.below(40_000) as i64;
            (a.0 + m * p, a.1 + m * q)
        };
        let (b, c) = (step(rng), step(rng));
        let cross = (b.0 - a.0) * (c.1 - a.1) - (b.1 - a.1) * (c.0 - a.0);
        let wide =
            |u: (i64, i64), v: (i64, i64)| (u.0 - v.0).abs().max((u.1 - v.1).abs()) >= 20_000;
        if cross != 0 && wide(a, b) && wide(a, c) {
            return [a, b, c];
        }
    }
}

/// Trip ends on the triangle's edges and beside them: grid points exactly on an edge, the grid point
/// nearest to a point of an edge and its four neighbours (1e-7 degree to either side), and points anywhere
/// in its bounding box.
fn slanted_points(rng: &mut Rng, t: &[(i64, i64); 3], n: usize) -> Vec<(i64, i64)> {
    let gcd = |mut x: i64, mut y: i64| {
        while y != 0 {
            (x, y) = (y, x % y);
        }
        x.abs().max(1)
    };
    let mut out = Vec::new();
    while out.len() < n {
        let (u, v) = (t[rng.below(3) as usize], t[rng.below(3) as usize]);
        let (dx, dy) = (v.0 - u.0, v.1 - u.1);
        match rng.below(3) {
            0 => {
                let g = gcd(dx, dy);
                let k = rng.below(g as u64 + 1) as i64;
                out.push((u.0 + k * dx / g, u.1 + k * dy / g));
            }
            1 => {
                let f = rng.below(1_000_001) as f64 / 1e6;
                let p = (
                    (u.0 as f64 + f * dx as f64).round() as i64,
                    (u.1 as f64 + f * dy as f64).round() as i64,
                );
                for d in [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)] {
                    out.push((p.0 + d.0, p.1 + d.1));
                }
            }
            _ => {
                let (x0, x1) = (
                    t.iter().map(|p| p.0).min().unwrap(),
                    t.iter().map(|p| p.0).max().unwrap(),
                );
                let (y0, y1) = (
                    t.iter().map(|p| p.1).min().unwrap(),
                    t.iter().map(|p| p.1).max().unwrap(),
                );
                out.push((
                    x0 + rng.below((x1 - x0) as u64 + 1) as i64,
                    y0 + rng.below((y1 - y0) as u64 + 1) as i64,
                ));
            }
        }
    }
    out
}

#[test]
fn polygons_count_points_on_and_beside_slanted_edges_exactly() {
    let db = test_db!("weekly_slanted");
    let mut rng = Rng(0x5eed_1234_abcd_0007);
    let deg = |v: i64| format!("{}.{:07}", v / 10_000_000, v % 10_000_000);
    // A triangle's closed ring, as WKT.
    let ring = |t: &[(i64, i64); 3]| {
        let p = |k: usize| format!("{} {}", deg(t[k].0), deg(t[k].1));
        format!("({},{},{},{})", p(0), p(1), p(2), p(0))
    };
    let triangles: Vec<[(i64, i64); 3]> = (0..16).map(|_| slanted_triangle(&mut rng)).collect();
    let mut csv = format!("{HEADER}\n");
    for (i, t) in triangles.iter().enumerate() {
        // Origins on this triangle's edges, destinations on the next one's.
        let next = &triangles[(i + 1) % triangles.len()];
        let ends = slanted_points(&mut rng, t, 300)
            .into_iter()
            .zip(slanted_points(&mut rng, next, 300));
        for (j, (o, d)) in ends.enumerate() {
            csv += &format!(
                "R,POINT ({} {}),POINT ({} {}),2018-01-0{} 10:00:00,s\n",
                deg(o.0),
                deg(o.1),
                deg(d.0),
                deg(d.1),
                1 + j % 7
            );
        }
    }
    let file = db.file("a.csv", csv);
    // Tallies sent in several parts.
    db.trips(&["ingest", "--tally-limit", "800", &file]).ok();
    let mut client = db.client();
    let mut on_edges = 0;
    for t in &triangles {
        let area = format!("SRID=4326;POLYGON({})", ring(t));
        for by in BY {
            assert_equals_plain(&mut client, &area, by);
        }
        // The same triangle as a hole in a box around it: the area is now on the other side of each of
        // its edges, and the hole's ring may run either way round.
        let (x0, x1) = (
            t.iter().map(|p| p.0).min().unwrap() - 20_000,
            t.iter().map(|p| p.0).max().unwrap() + 20_000,
        );
        let (y0, y1) = (
            t.iter().map(|p| p.1).min().unwrap() - 20_000,
            t.iter().map(|p| p.1).max().unwrap() + 20_000,
        );
        let holed = format!(
            "SRID=4326;POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}),{})",
            ring(t),
            x0 = deg(x0),
            x1 = deg(x1),
            y0 = deg(y0),
            y1 = deg(y1)
        );
        for by in BY {
            assert_equals_plain(&mut client, &holed, by);
        }
        on_edges += client
            .query_one(
                "SELECT count(*) FROM trips t, ST_GeomFromEWKT($1) AS a
                  WHERE ST_Intersects(ST_Boundary(a), t.origin)",
                &[&area],
            )
            .unwrap()
            .get::<_, i64>(0);
    }
    // A collection of a triangle and a line: a cell the line alone crosses is not split in two by it.
    let t = &triangles[0];
    let area = format!(
        "SRID=4326;GEOMETRYCOLLECTION(POLYGON({}),LINESTRING({} {},{} {}))",
        ring(t),
        deg(t[0].0 - 30_000),
        deg(t[0].1 - 30_000),
        deg(t[0].0 + 30_000),
        deg(t[0].1 + 30_500)
    );
    for by in BY {
        assert_equals_plain(&mut client, &area, by);
    }
    assert!(on_edges > 300, "only {on_edges} origins lie on an edge");
}
