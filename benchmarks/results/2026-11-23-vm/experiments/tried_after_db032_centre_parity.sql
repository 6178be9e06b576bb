-- Tried, not kept (ab.py SETUP): a polygon's cells that no edge comes near are inside or outside
-- by the parity of the edges crossing their row to their right, one sorted array of crossings per row of
-- cells, instead of one ST_Intersects of each cell's centre (024's trip_area_cell_centre_in).
--   pg_temp.polygon_cells_new   027's trip_area_polygon_cells(area, sides) with that test
--   pg_temp.area_count_new      025's trip_area_count for polygons, on those cells
--   pg_temp.area_count_copy     the control: 025's trip_area_count for polygons, copied as is
CREATE FUNCTION pg_temp.polygon_cells_new(area geometry, sides smallint[])
RETURNS TABLE (level integer, cx integer, cy integer, inside boolean, trips bigint,
               x0 float8, y0 float8, dx float8, dy float8, margin float8)
LANGUAGE sql STABLE AS $$
    WITH seg AS MATERIALIZED (   -- the area's segments, for the crossings of each row of cells
        SELECT ST_X(ST_StartPoint(d.geom)) AS x0, ST_Y(ST_StartPoint(d.geom)) AS y0,
               ST_X(ST_EndPoint(d.geom)) AS x1, ST_Y(ST_EndPoint(d.geom)) AS y1
          FROM ST_DumpSegments(area) AS d
    ), e1 AS MATERIALIZED (
        SELECT * FROM trip_area_edge_cells(area, 1, NULL, NULL)
    ), a1 AS MATERIALIZED (   -- cells an edge comes near (`whole` false), or not
        SELECT c.cx, c.cy, sum(c.trips) AS trips, e.cx IS NULL AS whole
          FROM trip_area_counts c
          LEFT JOIN e1 e ON e.cx = c.cx AND e.cy = c.cy
         WHERE c.side = ANY (sides) AND c.level = 1
           AND c.cx BETWEEN trip_area_cell_index(1, ST_XMin(area)) - 1 AND trip_area_cell_index(1, ST_XMax(area)) + 1
           AND c.cy BETWEEN trip_area_cell_index(1, ST_YMin(area)) - 1 AND trip_area_cell_index(1, ST_YMax(area)) + 1
         GROUP BY c.cx, c.cy, e.cx
    ), x1 AS MATERIALIZED (
        SELECT r.cy, array_agg(s.x0 + (y.c - s.y0) * (s.x1 - s.x0) / (s.y1 - s.y0)
                           ORDER BY s.x0 + (y.c - s.y0) * (s.x1 - s.x0) / (s.y1 - s.y0)) AS xs
          FROM seg s
         CROSS JOIN LATERAL generate_series(floor(least(s.y0, s.y1) / (trip_area_cell_size(1) / 1e7::float8))::integer - 1,
                                            floor(greatest(s.y0, s.y1) / (trip_area_cell_size(1) / 1e7::float8))::integer + 1) AS r(cy)
          JOIN (SELECT DISTINCT a.cy FROM a1 a WHERE a.whole) w ON w.cy = r.cy
         CROSS JOIN LATERAL (SELECT (r.cy + 0.5) * (trip_area_cell_size(1) / 1e7::float8) AS c) AS y
         WHERE (s.y0 > y.c) <> (s.y1 > y.c)
         GROUP BY r.cy
    ), l1 AS MATERIALIZED (   -- cut, or wholly inside: an odd number of crossings right of its centre
        SELECT a.* FROM a1 a LEFT JOIN x1 x ON x.cy = a.cy
         WHERE NOT a.whole
            OR (cardinality(x.xs) - width_bucket((a.cx + 0.5) * trip_area_cell_size(1) / 1e7::float8, x.xs)) % 2 = 1
    ), e2 AS MATERIALIZED (
        SELECT e.*
          FROM (SELECT array_agg(cx) AS x, array_agg(cy) AS y FROM l1 WHERE NOT whole) AS p,
               trip_area_edge_cells(area, 2, p.x, p.y) AS e
         WHERE p.x IS NOT NULL   -- no cut cell above: nothing to list (NULL would list them all)
    ), a2 AS MATERIALIZED (
        SELECT c.cx, c.cy, sum(c.trips) AS trips, e.cx IS NULL AS whole
          FROM l1 p
          JOIN trip_area_counts c
            ON c.side = ANY (sides) AND c.level = 2
           AND c.cy = ANY (trip_area_children(p.cy)) AND c.cx BETWEEN p.cx * 10 AND p.cx * 10 + 9
          LEFT JOIN e2 e ON e.cx = c.cx AND e.cy = c.cy
         WHERE NOT p.whole
         GROUP BY c.cx, c.cy, e.cx
    ), x2 AS MATERIALIZED (
        SELECT r.cy, array_agg(s.x0 + (y.c - s.y0) * (s.x1 - s.x0) / (s.y1 - s.y0)
                           ORDER BY s.x0 + (y.c - s.y0) * (s.x1 - s.x0) / (s.y1 - s.y0)) AS xs
          FROM seg s
         CROSS JOIN LATERAL generate_series(floor(least(s.y0, s.y1) / (trip_area_cell_size(2) / 1e7::float8))::integer - 1,
                                            floor(greatest(s.y0, s.y1) / (trip_area_cell_size(2) / 1e7::float8))::integer + 1) AS r(cy)
          JOIN (SELECT DISTINCT a.cy FROM a2 a WHERE a.whole) w ON w.cy = r.cy
         CROSS JOIN LATERAL (SELECT (r.cy + 0.5) * (trip_area_cell_size(2) / 1e7::float8) AS c) AS y
         WHERE (s.y0 > y.c) <> (s.y1 > y.c)
         GROUP BY r.cy
    ), l2 AS MATERIALIZED (
        SELECT a.* FROM a2 a LEFT JOIN x2 x ON x.cy = a.cy
         WHERE NOT a.whole
            OR (cardinality(x.xs) - width_bucket((a.cx + 0.5) * trip_area_cell_size(2) / 1e7::float8, x.xs)) % 2 = 1
    ), e3 AS MATERIALIZED (
        SELECT e.*
          FROM (SELECT array_agg(cx) AS x, array_agg(cy) AS y FROM l2 WHERE NOT whole) AS p,
               trip_area_edge_cells(area, 3, p.x, p.y) AS e
         WHERE p.x IS NOT NULL   -- no cut cell above: nothing to list (NULL would list them all)
    ), a3 AS MATERIALIZED (
        SELECT c.cx, c.cy, sum(c.trips) AS trips, e.cx IS NULL AS whole, e.edges, e.x0, e.y0, e.dx, e.dy
          FROM l2 p
          JOIN trip_area_counts c
            ON c.side = ANY (sides) AND c.level = 3
           AND c.cy = ANY (trip_area_children(p.cy)) AND c.cx BETWEEN p.cx * 10 AND p.cx * 10 + 9
          LEFT JOIN e3 e ON e.cx = c.cx AND e.cy = c.cy
         WHERE NOT p.whole
         GROUP BY c.cx, c.cy, e.cx, e.edges, e.x0, e.y0, e.dx, e.dy
    ), x3 AS MATERIALIZED (
        SELECT r.cy, array_agg(s.x0 + (y.c - s.y0) * (s.x1 - s.x0) / (s.y1 - s.y0)
                           ORDER BY s.x0 + (y.c - s.y0) * (s.x1 - s.x0) / (s.y1 - s.y0)) AS xs
          FROM seg s
         CROSS JOIN LATERAL generate_series(floor(least(s.y0, s.y1) / (trip_area_cell_size(3) / 1e7::float8))::integer - 1,
                                            floor(greatest(s.y0, s.y1) / (trip_area_cell_size(3) / 1e7::float8))::integer + 1) AS r(cy)
          JOIN (SELECT DISTINCT a.cy FROM a3 a WHERE a.whole) w ON w.cy = r.cy
         CROSS JOIN LATERAL (SELECT (r.cy + 0.5) * (trip_area_cell_size(3) / 1e7::float8) AS c) AS y
         WHERE (s.y0 > y.c) <> (s.y1 > y.c)
         GROUP BY r.cy
    ), l3 AS (
        SELECT a.* FROM a3 a LEFT JOIN x3 x ON x.cy = a.cy
         WHERE NOT a.whole
            OR (cardinality(x.xs) - width_bucket((a.cx + 0.5) * trip_area_cell_size(3) / 1e7::float8, x.xs)) % 2 = 1
    )
    SELECT 1, cx, cy, true, trips, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8
      FROM l1 WHERE whole
    UNION ALL
    SELECT 2, cx, cy, true, trips, NULL, NULL, NULL, NULL, NULL FROM l2 WHERE whole
    UNION ALL
    SELECT 3, cx, cy, whole, trips,
           CASE WHEN edges = 1 THEN x0 END, CASE WHEN edges = 1 THEN y0 END,
           CASE WHEN edges = 1 THEN dx END, CASE WHEN edges = 1 THEN dy END,
           CASE WHEN edges = 1 THEN greatest(1e-9 * sqrt(dx * dx + dy * dy), 1e-11) END
      FROM l3
$$;

CREATE FUNCTION pg_temp.area_count_new(area geometry, box box2d, side smallint) RETURNS bigint
LANGUAGE plpgsql STABLE SET jit = off SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN (
    WITH cell AS MATERIALIZED (
        SELECT c.*, s.x_lo, s.x_hi, s.y_lo, s.y_hi, s.x_hi - s.x_lo <= s.y_hi - s.y_lo AS by_lon
          FROM pg_temp.polygon_cells_new(area, ARRAY[side]) AS c
          LEFT JOIN LATERAL (
                SELECT floor((least(l.xa, l.xb) - 1e-9) * 1e7)::integer AS x_lo,
                       ceil((greatest(l.xa, l.xb) + 1e-9) * 1e7)::integer AS x_hi,
                       floor((least(l.ya, l.yb) - 1e-9) * 1e7)::integer AS y_lo,
                       ceil((greatest(l.ya, l.yb) + 1e-9) * 1e7)::integer AS y_hi
                  FROM (SELECT c.cx * 1e-3::float8 AS x0, (c.cx + 1) * 1e-3::float8 AS x1,
                               c.cy * 1e-3::float8 AS y0, (c.cy + 1) * 1e-3::float8 AS y1) AS b
                 CROSS JOIN LATERAL (   -- the line at the cell's bottom and top, left and right side
                        SELECT least(greatest(coalesce(c.x0 + c.dx * (b.y0 - c.y0) / nullif(c.dy, 0), b.x0 - 1e-3),
                                              b.x0 - 1e-3), b.x1 + 1e-3),
                               least(greatest(coalesce(c.x0 + c.dx * (b.y1 - c.y0) / nullif(c.dy, 0), b.x1 + 1e-3),
                                              b.x0 - 1e-3), b.x1 + 1e-3),
                               least(greatest(coalesce(c.y0 + c.dy * (b.x0 - c.x0) / nullif(c.dx, 0), b.y0 - 1e-3),
                                              b.y0 - 1e-3), b.y1 + 1e-3),
                               least(greatest(coalesce(c.y0 + c.dy * (b.x1 - c.x0) / nullif(c.dx, 0), b.y1 + 1e-3),
                                              b.y0 - 1e-3), b.y1 + 1e-3)) AS l(xa, xb, ya, yb)
                 WHERE c.dx IS NOT NULL) AS s ON true
    ), part AS MATERIALIZED (   -- each cut cell's points in the order its span needs, read once
        SELECT c.*, r.trips AS n,
               CASE WHEN c.by_lon OR c.dx IS NULL THEN r.lon || '{}'::integer[] ELSE r.lon_by_lat || '{}'::integer[] END AS xs,
               CASE WHEN c.by_lon OR c.dx IS NULL THEN r.lat || '{}'::integer[] ELSE r.lat_sorted || '{}'::integer[] END AS ys
          FROM cell c
          JOIN trip_area_points r ON r.side = area_count_new.side AND r.cy = c.cy AND r.cx = c.cx
         WHERE NOT c.inside
    ), slice AS MATERIALIZED (   -- the points counted by their side of the line, and the slice to test
        SELECT p.x0, p.y0, p.dx, p.dy, p.margin, p.xs, p.ys, b.n_lo + 1 AS i0, b.n_hi AS i1,
               CASE WHEN p.dx IS NULL THEN 0
                    WHEN p.by_lon THEN CASE WHEN p.dy > 0 THEN b.n_lo ELSE p.n - b.n_hi END
                    ELSE CASE WHEN p.dx < 0 THEN b.n_lo ELSE p.n - b.n_hi END
               END AS known
          FROM part p
         CROSS JOIN LATERAL (   -- how many points are below the span, and how many not above it
                SELECT CASE WHEN p.dx IS NULL THEN 0
                            WHEN p.by_lon THEN width_bucket(p.x_lo - 1, p.xs) ELSE width_bucket(p.y_lo - 1, p.ys) END,
                       CASE WHEN p.dx IS NULL THEN p.n
                            WHEN p.by_lon THEN width_bucket(p.x_hi, p.xs) ELSE width_bucket(p.y_hi, p.ys) END
                ) AS b(n_lo, n_hi)
    )
    SELECT (SELECT coalesce(sum(trips), 0) FROM cell WHERE inside)
         + (SELECT coalesce(sum(known), 0) FROM slice)
         + (SELECT count(*)
              FROM (SELECT p.x0, p.y0, p.dx, p.dy, p.margin,
                           unnest(p.xs[p.i0:p.i1]) AS lon, unnest(p.ys[p.i0:p.i1]) AS lat
                      FROM slice p) AS u
             CROSS JOIN LATERAL (SELECT u.dx * (u.lat / 1e7::float8 - u.y0) - u.dy * (u.lon / 1e7::float8 - u.x0))
                                AS v(side)
             WHERE CASE WHEN u.dx IS NULL OR abs(v.side) <= u.margin
                        THEN trip_area_holds(area, box, u.lon, u.lat)
                        ELSE v.side > 0
                   END));
END
$$;

-- control: 025's trip_area_count for polygons, copied as is (024's cells)
CREATE FUNCTION pg_temp.area_count_copy(area geometry, box box2d, side smallint) RETURNS bigint
LANGUAGE plpgsql STABLE SET jit = off SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN (
    WITH cell AS MATERIALIZED (
        SELECT c.*, s.x_lo, s.x_hi, s.y_lo, s.y_hi, s.x_hi - s.x_lo <= s.y_hi - s.y_lo AS by_lon
          FROM trip_area_polygon_cells(area, side) AS c
          LEFT JOIN LATERAL (
                SELECT floor((least(l.xa, l.xb) - 1e-9) * 1e7)::integer AS x_lo,
                       ceil((greatest(l.xa, l.xb) + 1e-9) * 1e7)::integer AS x_hi,
                       floor((least(l.ya, l.yb) - 1e-9) * 1e7)::integer AS y_lo,
                       ceil((greatest(l.ya, l.yb) + 1e-9) * 1e7)::integer AS y_hi
                  FROM (SELECT c.cx * 1e-3::float8 AS x0, (c.cx + 1) * 1e-3::float8 AS x1,
                               c.cy * 1e-3::float8 AS y0, (c.cy + 1) * 1e-3::float8 AS y1) AS b
                 CROSS JOIN LATERAL (   -- the line at the cell's bottom and top, left and right side
                        SELECT least(greatest(coalesce(c.x0 + c.dx * (b.y0 - c.y0) / nullif(c.dy, 0), b.x0 - 1e-3),
                                              b.x0 - 1e-3), b.x1 + 1e-3),
                               least(greatest(coalesce(c.x0 + c.dx * (b.y1 - c.y0) / nullif(c.dy, 0), b.x1 + 1e-3),
                                              b.x0 - 1e-3), b.x1 + 1e-3),
                               least(greatest(coalesce(c.y0 + c.dy * (b.x0 - c.x0) / nullif(c.dx, 0), b.y0 - 1e-3),
                                              b.y0 - 1e-3), b.y1 + 1e-3),
                               least(greatest(coalesce(c.y0 + c.dy * (b.x1 - c.x0) / nullif(c.dx, 0), b.y1 + 1e-3),
                                              b.y0 - 1e-3), b.y1 + 1e-3)) AS l(xa, xb, ya, yb)
                 WHERE c.dx IS NOT NULL) AS s ON true
    ), part AS MATERIALIZED (   -- each cut cell's points in the order its span needs, read once
        SELECT c.*, r.trips AS n,
               CASE WHEN c.by_lon OR c.dx IS NULL THEN r.lon || '{}'::integer[] ELSE r.lon_by_lat || '{}'::integer[] END AS xs,
               CASE WHEN c.by_lon OR c.dx IS NULL THEN r.lat || '{}'::integer[] ELSE r.lat_sorted || '{}'::integer[] END AS ys
          FROM cell c
          JOIN trip_area_points r ON r.side = area_count_copy.side AND r.cy = c.cy AND r.cx = c.cx
         WHERE NOT c.inside
    ), slice AS MATERIALIZED (   -- the points counted by their side of the line, and the slice to test
        SELECT p.x0, p.y0, p.dx, p.dy, p.margin, p.xs, p.ys, b.n_lo + 1 AS i0, b.n_hi AS i1,
               CASE WHEN p.dx IS NULL THEN 0
                    WHEN p.by_lon THEN CASE WHEN p.dy > 0 THEN b.n_lo ELSE p.n - b.n_hi END
                    ELSE CASE WHEN p.dx < 0 THEN b.n_lo ELSE p.n - b.n_hi END
               END AS known
          FROM part p
         CROSS JOIN LATERAL (   -- how many points are below the span, and how many not above it
                SELECT CASE WHEN p.dx IS NULL THEN 0
                            WHEN p.by_lon THEN width_bucket(p.x_lo - 1, p.xs) ELSE width_bucket(p.y_lo - 1, p.ys) END,
                       CASE WHEN p.dx IS NULL THEN p.n
                            WHEN p.by_lon THEN width_bucket(p.x_hi, p.xs) ELSE width_bucket(p.y_hi, p.ys) END
                ) AS b(n_lo, n_hi)
    )
    SELECT (SELECT coalesce(sum(trips), 0) FROM cell WHERE inside)
         + (SELECT coalesce(sum(known), 0) FROM slice)
         + (SELECT count(*)
              FROM (SELECT p.x0, p.y0, p.dx, p.dy, p.margin,
                           unnest(p.xs[p.i0:p.i1]) AS lon, unnest(p.ys[p.i0:p.i1]) AS lat
                      FROM slice p) AS u
             CROSS JOIN LATERAL (SELECT u.dx * (u.lat / 1e7::float8 - u.y0) - u.dy * (u.lon / 1e7::float8 - u.x0))
                                AS v(side)
             WHERE CASE WHEN u.dx IS NULL OR abs(v.side) <= u.margin
                        THEN trip_area_holds(area, box, u.lon, u.lat)
                        ELSE v.side > 0
                   END));
END
$$;

