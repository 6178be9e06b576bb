-- Tried after db/031, not kept (ab.py SETUP): a cell that no edge comes near is classified by the area's
-- crossings of its row's centre line, not by ST_Intersects of its centre (024's trip_area_cell_centre_in).
--   trip_area_row_crossings(area, level)   for each row of cells of `level`, the longitudes where the area's
--                                          boundary crosses the row's centre line, in order (a segment
--                                          counts when its lower end is on or below the line and its upper
--                                          end above it, so each vertex counts once)
--   trip_area_polygon_cells_new            027's cells, with a cell's centre inside when an odd number of
--                                          crossings of its row lie left of it (width_bucket)
--   trip_area_count_new                    025's trip_area_count over those cells
--   pg_temp.cells_only(area, side)         the cells alone, as trip_area_count takes them (a generic plan
--                                          in plpgsql): what the cells cost of a count
-- Why it holds: no edge comes within 1e-8 degree of such a cell, so no crossing of its row falls within
-- its own longitudes, and a crossing's computed longitude stays on cells that an edge does come near.
-- The session ends without COMMIT.
BEGIN;
SET client_min_messages = warning;
CREATE FUNCTION trip_area_row_crossings(area geometry, level integer)
RETURNS TABLE (cy integer, xs float8[])
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH seg AS (
        SELECT ST_X(ST_StartPoint(d.geom)) AS x0, ST_Y(ST_StartPoint(d.geom)) AS y0,
               ST_X(ST_EndPoint(d.geom)) AS x1, ST_Y(ST_EndPoint(d.geom)) AS y1
          FROM ST_DumpSegments(area) AS d
    ), k AS (
        SELECT trip_area_cell_size(level) / 1e7::float8 AS w
    ), crossing AS (
        SELECT r.cy, least(greatest(s.x0 + (y.c - s.y0) * (s.x1 - s.x0) / (s.y1 - s.y0), least(s.x0, s.x1)),
                           greatest(s.x0, s.x1)) AS x
          FROM seg s, k
         CROSS JOIN LATERAL generate_series(floor(least(s.y0, s.y1) / k.w)::integer - 1,
                                            floor(greatest(s.y0, s.y1) / k.w)::integer + 1) AS r(cy)
         CROSS JOIN LATERAL (SELECT (r.cy + 0.5::float8) * k.w) AS y(c)
         WHERE least(s.y0, s.y1) <= y.c AND y.c < greatest(s.y0, s.y1)
    )
    SELECT cy, array_agg(x ORDER BY x) FROM crossing GROUP BY cy
$$;
CREATE FUNCTION trip_area_polygon_cells_new(area geometry, sides smallint[])
RETURNS TABLE (level integer, cx integer, cy integer, inside boolean, trips bigint,
               x0 float8, y0 float8, dx float8, dy float8, margin float8)
LANGUAGE sql STABLE AS $$
    WITH e1 AS MATERIALIZED (
        SELECT * FROM trip_area_edge_cells(area, 1, NULL, NULL)
    ), l1 AS MATERIALIZED (   -- cells an edge comes near (`whole` false), or wholly inside
        SELECT g.*
          FROM (SELECT c.cx, c.cy, sum(c.trips) AS trips, e.cx IS NULL AS whole
                  FROM trip_area_counts c
                  LEFT JOIN e1 e ON e.cx = c.cx AND e.cy = c.cy
                 WHERE c.side = ANY (sides) AND c.level = 1
                   AND c.cx BETWEEN trip_area_cell_index(1, ST_XMin(area)) - 1 AND trip_area_cell_index(1, ST_XMax(area)) + 1
                   AND c.cy BETWEEN trip_area_cell_index(1, ST_YMin(area)) - 1 AND trip_area_cell_index(1, ST_YMax(area)) + 1
                 GROUP BY c.cx, c.cy, e.cx) AS g
          LEFT JOIN trip_area_row_crossings(area, 1) AS x ON x.cy = g.cy
         WHERE NOT g.whole OR width_bucket((g.cx + 0.5::float8) * trip_area_cell_size(1) / 1e7::float8, x.xs) % 2 = 1
    ), e2 AS MATERIALIZED (
        SELECT e.*
          FROM (SELECT array_agg(cx) AS x, array_agg(cy) AS y FROM l1 WHERE NOT whole) AS p,
               trip_area_edge_cells(area, 2, p.x, p.y) AS e
         WHERE p.x IS NOT NULL   -- no cut cell above: nothing to list (NULL would list them all)
    ), l2 AS MATERIALIZED (
        SELECT g.*
          FROM (SELECT c.cx, c.cy, sum(c.trips) AS trips, e.cx IS NULL AS whole
                  FROM l1 p
                  JOIN trip_area_counts c
                    ON c.side = ANY (sides) AND c.level = 2
                   AND c.cy = ANY (trip_area_children(p.cy)) AND c.cx BETWEEN p.cx * 10 AND p.cx * 10 + 9
                  LEFT JOIN e2 e ON e.cx = c.cx AND e.cy = c.cy
                 WHERE NOT p.whole
                 GROUP BY c.cx, c.cy, e.cx) AS g
          LEFT JOIN trip_area_row_crossings(area, 2) AS x ON x.cy = g.cy
         WHERE NOT g.whole OR width_bucket((g.cx + 0.5::float8) * trip_area_cell_size(2) / 1e7::float8, x.xs) % 2 = 1
    ), e3 AS MATERIALIZED (
        SELECT e.*
          FROM (SELECT array_agg(cx) AS x, array_agg(cy) AS y FROM l2 WHERE NOT whole) AS p,
               trip_area_edge_cells(area, 3, p.x, p.y) AS e
         WHERE p.x IS NOT NULL   -- no cut cell above: nothing to list (NULL would list them all)
    ), l3 AS (
        SELECT g.*
          FROM (SELECT c.cx, c.cy, sum(c.trips) AS trips, e.cx IS NULL AS whole, e.edges, e.x0, e.y0, e.dx, e.dy
                  FROM l2 p
                  JOIN trip_area_counts c
                    ON c.side = ANY (sides) AND c.level = 3
                   AND c.cy = ANY (trip_area_children(p.cy)) AND c.cx BETWEEN p.cx * 10 AND p.cx * 10 + 9
                  LEFT JOIN e3 e ON e.cx = c.cx AND e.cy = c.cy
                 WHERE NOT p.whole
                 GROUP BY c.cx, c.cy, e.cx, e.edges, e.x0, e.y0, e.dx, e.dy) AS g
          LEFT JOIN trip_area_row_crossings(area, 3) AS x ON x.cy = g.cy
         WHERE NOT g.whole OR width_bucket((g.cx + 0.5::float8) * trip_area_cell_size(3) / 1e7::float8, x.xs) % 2 = 1
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
CREATE OR REPLACE FUNCTION trip_area_count_new(area geometry, box box2d, side smallint)
 RETURNS bigint
 LANGUAGE plpgsql
 STABLE
 SET jit TO 'off'
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
BEGIN
    IF box IS NOT NULL THEN
        RETURN trip_box_count(side, trip_coord_from(ST_XMin(box)), trip_coord_from(ST_YMin(box)),
                              trip_coord_to(ST_XMax(box)), trip_coord_to(ST_YMax(box)));
    END IF;
    IF ST_GeometryType(area) IN ('ST_Polygon', 'ST_MultiPolygon') THEN
        RETURN (
        WITH cell AS MATERIALIZED (
            SELECT c.*, s.x_lo, s.x_hi, s.y_lo, s.y_hi, s.x_hi - s.x_lo <= s.y_hi - s.y_lo AS by_lon
              FROM trip_area_polygon_cells_new(area, ARRAY[side]) AS c
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
              JOIN trip_area_points r ON r.side = trip_area_count_new.side AND r.cy = c.cy AND r.cx = c.cx
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
    END IF;
    RETURN (
    WITH cell AS MATERIALIZED (
        SELECT * FROM trip_area_cells(area, box, side, true)
    ), cut AS MATERIALIZED (   -- each cut cell once, with its edge if only one comes near it
        SELECT c.cx, c.cy, e.*
          FROM cell c
          LEFT JOIN LATERAL trip_area_cell_edge(area, c.cx, c.cy) AS e ON true
         WHERE NOT c.inside
    )
    SELECT (SELECT coalesce(sum(trips), 0) FROM cell WHERE inside)
         + (SELECT count(*)
              FROM (SELECT c.x0, c.y0, c.dx, c.dy, c.margin, c.inside_sign,
                           unnest(r.lon) AS lon, unnest(r.lat) AS lat
                      FROM cut c
                      JOIN trip_area_points r ON r.side = trip_area_count_new.side AND r.cy = c.cy AND r.cx = c.cx) AS u
             CROSS JOIN LATERAL (SELECT u.dx * (u.lat / 1e7::float8 - u.y0) - u.dy * (u.lon / 1e7::float8 - u.x0))
                                AS v(side)
             WHERE CASE WHEN u.inside_sign IS NULL OR abs(v.side) <= u.margin
                        THEN trip_area_holds(area, box, u.lon, u.lat)
                        ELSE sign(v.side) = u.inside_sign
                   END));
END
$function$

;
CREATE FUNCTION pg_temp.cells_only(area geometry, side smallint) RETURNS bigint
LANGUAGE plpgsql STABLE SET jit = off SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN (WITH cell AS MATERIALIZED (SELECT * FROM trip_area_polygon_cells(area, side))
            SELECT count(*) FROM cell);
END
$$;
