-- 024: a polygon finds its cut cells from its edges, not by asking GEOS about every cell.
--
-- A polygon asked by origin or destination (018, 020) spent about a third of its time at 10M trips before
-- it read a single point:
--
--   - trip_area_cells asked ST_Intersects and ST_Covers of every cell with trips below a cut cell (1,009
--     level-3 cells for a 7 km polygon over Turin, 3-6 us each);
--   - trip_area_cell_edge then looked for the one edge near each cut cell by dumping every segment of the
--     area again, and asked ST_Intersects of four corners: ~25 us per cell, and in proportion to the
--     polygon's vertices (a 4,096-vertex circle took 1 s).
--
-- Now each segment of the area lists the cells it passes near, level by level (inside the cut cells of the
-- level above only). A cell no segment comes near is wholly inside the area or wholly outside it, and one
-- point-in-polygon test of its centre tells which. A cell that exactly one segment comes near is split by
-- that segment alone. The segments come from ST_ForcePolygonCCW(area): outer rings counter-clockwise,
-- holes clockwise, so the area is always on a segment's left and its side needs no test.
--
-- "Near" is within 1e-8 degree (1 mm), computed with float arithmetic whose error is below 1e-13 degree, so
-- every cell the edge really passes through or touches is among them. A cell listed for being near but not
-- crossed only has its points tested one by one, as a cut cell's, and the answer stays the plain SQL's.
--
-- Collections (019) keep 020's path.

-- The cells of `level` that a segment of the area comes within 1e-8 degree of: with how many segments do,
-- and, when that is one, the segment (from (x0, y0), direction (dx, dy), the area on its left). Only cells
-- inside the cells (pcx[i], pcy[i]) of the level above are listed; all of them when pcx is NULL.
--
-- For each segment and column of cells it spans, the segment's latitudes over that column (widened by the
-- margin) give the rows it passes near.
CREATE FUNCTION trip_area_edge_cells(area geometry, level integer, pcx integer[], pcy integer[])
RETURNS TABLE (cx integer, cy integer, edges integer, x0 float8, y0 float8, dx float8, dy float8)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH seg AS (
        SELECT ST_X(ST_StartPoint(d.geom)) AS x0, ST_Y(ST_StartPoint(d.geom)) AS y0,
               ST_X(ST_EndPoint(d.geom)) AS x1, ST_Y(ST_EndPoint(d.geom)) AS y1
          FROM ST_DumpSegments(ST_ForcePolygonCCW(area)) AS d
    ), k AS (   -- the cells' width in degrees, and the margin
        SELECT trip_area_cell_size(level) / 1e7::float8 AS w, 1e-8::float8 AS m
    ), piece AS (   -- each segment in each parent cell it comes near: the columns and rows to look at
        SELECT s.*, greatest(floor((least(s.x0, s.x1) - k.m) / k.w)::integer, p.cx * 10) AS c0,
               least(floor((greatest(s.x0, s.x1) + k.m) / k.w)::integer, p.cx * 10 + 9) AS c1,
               p.cy * 10 AS r0, p.cy * 10 + 9 AS r1
          FROM seg s, k, unnest(pcx, pcy) AS p(cx, cy)
         WHERE least(s.x0, s.x1) - k.m <= (p.cx + 1) * 10 * k.w AND greatest(s.x0, s.x1) + k.m >= p.cx * 10 * k.w
           AND least(s.y0, s.y1) - k.m <= (p.cy + 1) * 10 * k.w AND greatest(s.y0, s.y1) + k.m >= p.cy * 10 * k.w
        UNION ALL
        SELECT s.*, floor((least(s.x0, s.x1) - k.m) / k.w)::integer, floor((greatest(s.x0, s.x1) + k.m) / k.w)::integer,
               -2147483648, 2147483647
          FROM seg s, k
         WHERE pcx IS NULL
    ), near AS (
        SELECT s.x0, s.y0, s.x1, s.y1, col.cx, r.cy
          FROM piece s, k
         CROSS JOIN LATERAL generate_series(s.c0, s.c1) AS col(cx)
         CROSS JOIN LATERAL (   -- the longitudes of the segment over the column, widened by the margin
                SELECT greatest(least(s.x0, s.x1), col.cx * k.w - k.m) AS xa,
                       least(greatest(s.x0, s.x1), (col.cx + 1) * k.w + k.m) AS xb) AS x
         CROSS JOIN LATERAL (   -- its latitudes there (all of them for a vertical segment)
                SELECT s.y0 + (x.xa - s.x0) * (s.y1 - s.y0) / nullif(s.x1 - s.x0, 0) AS ya,
                       s.y0 + (x.xb - s.x0) * (s.y1 - s.y0) / nullif(s.x1 - s.x0, 0) AS yb) AS y
         CROSS JOIN LATERAL generate_series(
                greatest(floor((greatest(least(s.y0, s.y1), coalesce(least(y.ya, y.yb), '-infinity')) - k.m) / k.w)::integer, s.r0),
                least(floor((least(greatest(s.y0, s.y1), coalesce(greatest(y.ya, y.yb), 'infinity')) + k.m) / k.w)::integer, s.r1))
                AS r(cy)
    )
    SELECT n.cx, n.cy, count(*)::integer, (array_agg(n.x0))[1], (array_agg(n.y0))[1],
           (array_agg(n.x1 - n.x0))[1], (array_agg(n.y1 - n.y0))[1]
      FROM near n
     GROUP BY n.cx, n.cy
$$;

-- Is the centre of a cell in the area? For a cell no edge comes near, that is the whole cell.
CREATE FUNCTION trip_area_cell_centre_in(area geometry, level integer, cx integer, cy integer) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ST_Intersects(area, ST_Point((cx + 0.5) * trip_area_cell_size(level) / 1e7::float8,
                                        (cy + 0.5) * trip_area_cell_size(level) / 1e7::float8, 4326))
$$;

-- A polygon's cells with trips on `side`, as 018's trip_area_cells(area, NULL, side, true) gives them:
-- the cells wholly inside at the coarsest level possible (`inside`), then the level-3 cells an edge comes
-- near; for those, the one edge when only one does, and the margin within which a point's side of that
-- edge's line is not trusted (1e-9 degree times its length, as in 018).
CREATE FUNCTION trip_area_polygon_cells(area geometry, side smallint)
RETURNS TABLE (level integer, cx integer, cy integer, inside boolean, trips bigint,
               x0 float8, y0 float8, dx float8, dy float8, margin float8)
LANGUAGE sql STABLE AS $$
    WITH e1 AS MATERIALIZED (
        SELECT * FROM trip_area_edge_cells(area, 1, NULL, NULL)
    ), l1 AS MATERIALIZED (   -- cells an edge comes near (`whole` false), or wholly inside
        SELECT c.cx, c.cy, sum(c.trips) AS trips, e.cx IS NULL AS whole
          FROM trip_area_counts c
          LEFT JOIN e1 e ON e.cx = c.cx AND e.cy = c.cy
         WHERE c.side = trip_area_polygon_cells.side AND c.level = 1
           AND c.cx BETWEEN trip_area_cell_index(1, ST_XMin(area)) - 1 AND trip_area_cell_index(1, ST_XMax(area)) + 1
           AND c.cy BETWEEN trip_area_cell_index(1, ST_YMin(area)) - 1 AND trip_area_cell_index(1, ST_YMax(area)) + 1
         GROUP BY c.cx, c.cy, e.cx
        HAVING e.cx IS NOT NULL OR trip_area_cell_centre_in(area, 1, c.cx, c.cy)
    ), e2 AS MATERIALIZED (
        SELECT e.*
          FROM (SELECT array_agg(cx) AS x, array_agg(cy) AS y FROM l1 WHERE NOT whole) AS p,
               trip_area_edge_cells(area, 2, p.x, p.y) AS e
         WHERE p.x IS NOT NULL   -- no cut cell above: nothing to list (NULL would list them all)
    ), l2 AS MATERIALIZED (
        SELECT c.cx, c.cy, sum(c.trips) AS trips, e.cx IS NULL AS whole
          FROM l1 p
          JOIN trip_area_counts c
            ON c.side = trip_area_polygon_cells.side AND c.level = 2
           AND c.cy = ANY (trip_area_children(p.cy)) AND c.cx BETWEEN p.cx * 10 AND p.cx * 10 + 9
          LEFT JOIN e2 e ON e.cx = c.cx AND e.cy = c.cy
         WHERE NOT p.whole
         GROUP BY c.cx, c.cy, e.cx
        HAVING e.cx IS NOT NULL OR trip_area_cell_centre_in(area, 2, c.cx, c.cy)
    ), e3 AS MATERIALIZED (
        SELECT e.*
          FROM (SELECT array_agg(cx) AS x, array_agg(cy) AS y FROM l2 WHERE NOT whole) AS p,
               trip_area_edge_cells(area, 3, p.x, p.y) AS e
         WHERE p.x IS NOT NULL   -- no cut cell above: nothing to list (NULL would list them all)
    ), l3 AS (
        SELECT c.cx, c.cy, sum(c.trips) AS trips, e.cx IS NULL AS whole, e.edges, e.x0, e.y0, e.dx, e.dy
          FROM l2 p
          JOIN trip_area_counts c
            ON c.side = trip_area_polygon_cells.side AND c.level = 3
           AND c.cy = ANY (trip_area_children(p.cy)) AND c.cx BETWEEN p.cx * 10 AND p.cx * 10 + 9
          LEFT JOIN e3 e ON e.cx = c.cx AND e.cy = c.cy
         WHERE NOT p.whole
         GROUP BY c.cx, c.cy, e.cx, e.edges, e.x0, e.y0, e.dx, e.dy
        HAVING e.cx IS NOT NULL OR trip_area_cell_centre_in(area, 3, c.cx, c.cy)
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

-- 020's count over all time. A polygon or multipolygon takes the cells above: a point of a cut cell with
-- one edge is in the area when it is left of that edge (dx * (y - y0) - dy * (x - x0) > 0), and is tested
-- with ST_Intersects when within the margin of its line or when its cell has no single edge. A collection
-- keeps 020's path (018's cells, 019's edges).
CREATE OR REPLACE FUNCTION trip_area_count(area geometry, box box2d, side smallint) RETURNS bigint
LANGUAGE plpgsql STABLE SET jit = off SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    IF box IS NOT NULL THEN
        RETURN trip_box_count(side, trip_coord_from(ST_XMin(box)), trip_coord_from(ST_YMin(box)),
                              trip_coord_to(ST_XMax(box)), trip_coord_to(ST_YMax(box)));
    END IF;
    IF ST_GeometryType(area) IN ('ST_Polygon', 'ST_MultiPolygon') THEN
        RETURN (
        WITH cell AS MATERIALIZED (
            SELECT * FROM trip_area_polygon_cells(area, side)
        )
        SELECT (SELECT coalesce(sum(trips), 0) FROM cell WHERE inside)
             + (SELECT count(*)
                  FROM (SELECT c.x0, c.y0, c.dx, c.dy, c.margin, unnest(r.lon) AS lon, unnest(r.lat) AS lat
                          FROM cell c
                          JOIN trip_area_points r ON r.side = trip_area_count.side AND r.cy = c.cy AND r.cx = c.cx
                         WHERE NOT c.inside) AS u
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
                      JOIN trip_area_points r ON r.side = trip_area_count.side AND r.cy = c.cy AND r.cx = c.cx) AS u
             CROSS JOIN LATERAL (SELECT u.dx * (u.lat / 1e7::float8 - u.y0) - u.dy * (u.lon / 1e7::float8 - u.x0))
                                AS v(side)
             WHERE CASE WHEN u.inside_sign IS NULL OR abs(v.side) <= u.margin
                        THEN trip_area_holds(area, box, u.lon, u.lat)
                        ELSE sign(v.side) = u.inside_sign
                   END));
END
$$;
