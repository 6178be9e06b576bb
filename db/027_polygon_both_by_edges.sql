-- 027: polygons asked by both (and so either) find their cells from their edges (024), as by origin or
-- destination, and read only the other ends within reach (026).
--
-- 021's trip_area_both asked GEOS about every cell near a polygon (ST_Intersects and ST_Covers at three
-- levels) and about every point of a cut cell, and then about every other end in a cut level-2 cell. Now:
--
--   - The cells come from 024's trip_area_polygon_cells, for trips at either end in one pass: the level-2
--     cells wholly inside (directly, or below a level-1 cell wholly inside) are 016's whole cells, and the
--     level-3 cells of the cut level-2 cells, each wholly inside or cut (with its one edge when only one
--     comes near), are the band.
--   - A point of a cut band cell, and an other end in a cut level-2 cell, are tested by the side of their
--     level-3 cell's one edge, as 024 tests points; ST_Intersects is left for the points within the
--     margin of that edge's line and for cells that more than one edge comes near. An other end whose
--     level-3 cell is not in the band is outside: its cell has trips, so it would be listed if it met the
--     area.
--   - A row of a band cell wholly inside reads only the slice of its other ends (026's arrays) whose
--     longitude is within reach: the area's bounding box for origin rows, the whole cells' for destination
--     rows (which count origins in whole cells only, 016).
--
-- The 36 polygons by both or either of the 10M benchmark, asked alternately against 021's function: the
-- sum of their times -18%, p95 129 -> 110 ms, the same answers. Small polygons pay ~1 ms more for the
-- cells. Collections keep 021's function, renamed trip_collection_both.

-- 024's cells, of the trips at any of `sides`: `trips` sums them over those sides.
CREATE FUNCTION trip_area_polygon_cells(area geometry, sides smallint[])
RETURNS TABLE (level integer, cx integer, cy integer, inside boolean, trips bigint,
               x0 float8, y0 float8, dx float8, dy float8, margin float8)
LANGUAGE sql STABLE AS $$
    WITH e1 AS MATERIALIZED (
        SELECT * FROM trip_area_edge_cells(area, 1, NULL, NULL)
    ), l1 AS MATERIALIZED (   -- cells an edge comes near (`whole` false), or wholly inside
        SELECT c.cx, c.cy, sum(c.trips) AS trips, e.cx IS NULL AS whole
          FROM trip_area_counts c
          LEFT JOIN e1 e ON e.cx = c.cx AND e.cy = c.cy
         WHERE c.side = ANY (sides) AND c.level = 1
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
            ON c.side = ANY (sides) AND c.level = 2
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
            ON c.side = ANY (sides) AND c.level = 3
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

-- 024's cells of one side are those of the list of that one side.
CREATE OR REPLACE FUNCTION trip_area_polygon_cells(area geometry, side smallint)
RETURNS TABLE (level integer, cx integer, cy integer, inside boolean, trips bigint,
               x0 float8, y0 float8, dx float8, dy float8, margin float8)
LANGUAGE sql STABLE AS $$
    SELECT * FROM trip_area_polygon_cells(area, ARRAY[side])
$$;

-- Trips with both ends in a polygon or multipolygon, over all time, split as in 016:
--
--   origin in a whole cell, destination in a whole cell   the pair totals of trip_area_pairs
--   origin in the band                                    the band's origin rows: the origin in the area
--                                                         (its cell inside, or its side of the edge) and
--                                                         the destination too
--   origin in a whole cell, destination in the band       the band's destination rows: the destination in
--                                                         the area, the origin in a whole cell
--
-- An other end is in the area when its level-2 cell is whole, or (origin rows only) when its level-3 cell
-- is in the band and inside, or cut with the end on the area's side of its edge.
CREATE FUNCTION trip_polygon_both(area geometry) RETURNS bigint
LANGUAGE plpgsql STABLE SET jit = off SET plan_cache_mode = force_generic_plan AS $$
DECLARE   -- the area's bounding box on the stored coordinates (015)
    bx0 integer := trip_coord_from(ST_XMin(area));
    by0 integer := trip_coord_from(ST_YMin(area));
    bx1 integer := trip_coord_to(ST_XMax(area));
    by1 integer := trip_coord_to(ST_YMax(area));
BEGIN
    RETURN (
    WITH cell AS MATERIALIZED (   -- the area's cells with trips at either end
        SELECT * FROM trip_area_polygon_cells(area, '{1,2}'::smallint[])
    ), whole AS MATERIALIZED (   -- the level-2 cells wholly inside, with trips
        SELECT cx, cy FROM cell WHERE level = 2
        UNION
        SELECT c.cx, c.cy
          FROM cell p
          JOIN trip_area_counts c
            ON c.side IN (1, 2) AND c.level = 2
           AND c.cy = ANY (trip_area_children(p.cy)) AND c.cx BETWEEN p.cx * 10 AND p.cx * 10 + 9
         WHERE p.level = 1
    ), band AS MATERIALIZED (   -- the level-3 cells of the cut level-2 cells, inside or cut
        SELECT * FROM cell WHERE level = 3
    ), reach AS (   -- the box a row's other end must be in: the area's for origin rows, the whole cells' for
                    -- destination rows (none when no cell is whole)
        SELECT 1::smallint AS side, bx0 AS x0, by0 AS y0, bx1 AS x1, by1 AS y1
        UNION ALL
        SELECT 2::smallint, min(cx) * 100000, min(cy) * 100000, max(cx) * 100000 + 99999, max(cy) * 100000 + 99999
          FROM whole
        HAVING count(*) > 0
    ), ends AS (   -- the other ends within reach of the trips whose end in the band is in the area
        SELECT r.side, e.y0, e.y1,
               unnest(r.other_lon_sorted[s.i0:s.i1]) AS lon, unnest(r.other_lat_by_other_lon[s.i0:s.i1]) AS lat
          FROM band c
          JOIN reach e ON true
          JOIN trip_area_points r ON r.side = e.side AND r.cy = c.cy AND r.cx = c.cx
         CROSS JOIN LATERAL (SELECT width_bucket(e.x0 - 1, r.other_lon_sorted) + 1 AS i0,
                                    width_bucket(e.x1, r.other_lon_sorted) AS i1) AS s
         WHERE c.inside
        UNION ALL
        SELECT u.side, u.y0, u.y1, u.other_lon, u.other_lat
          FROM (SELECT r.side, e.x0, e.y0, e.x1, e.y1, c.x0 AS edge_x0, c.y0 AS edge_y0, c.dx, c.dy, c.margin,
                       unnest(r.lon) AS lon, unnest(r.lat) AS lat,
                       unnest(r.other_lon) AS other_lon, unnest(r.other_lat) AS other_lat
                  FROM band c
                  JOIN reach e ON true
                  JOIN trip_area_points r ON r.side = e.side AND r.cy = c.cy AND r.cx = c.cx
                 WHERE NOT c.inside) AS u
         CROSS JOIN LATERAL (SELECT u.dx * (u.lat / 1e7::float8 - u.edge_y0)
                                  - u.dy * (u.lon / 1e7::float8 - u.edge_x0)) AS v(side)
         WHERE u.other_lon BETWEEN u.x0 AND u.x1
           AND CASE WHEN u.dx IS NULL OR abs(v.side) <= u.margin
                    THEN trip_area_holds(area, NULL, u.lon, u.lat)
                    ELSE v.side > 0
               END
    )
    SELECT (SELECT coalesce(sum(p.trips), 0)
              FROM whole o
              JOIN trip_area_pairs p ON p.ocy = o.cy AND p.ocx = o.cx
             WHERE (p.dcx, p.dcy) IN (SELECT cx, cy FROM whole))
         + (SELECT count(*)
              FROM ends e
              LEFT JOIN band c   -- an origin row's other end in a cut level-2 cell
                ON e.side = 1 AND c.cx = floor(e.lon::float8 / 10000)::integer
               AND c.cy = floor(e.lat::float8 / 10000)::integer
             CROSS JOIN LATERAL (SELECT c.dx * (e.lat / 1e7::float8 - c.y0) - c.dy * (e.lon / 1e7::float8 - c.x0))
                                AS v(side)
             WHERE e.lat BETWEEN e.y0 AND e.y1
               AND ((floor(e.lon::float8 / 100000)::integer, floor(e.lat::float8 / 100000)::integer)
                        IN (SELECT cx, cy FROM whole)
                    OR c.inside
                    OR (c.cx IS NOT NULL AND CASE WHEN c.dx IS NULL OR abs(v.side) <= c.margin
                                                  THEN trip_area_holds(area, NULL, e.lon, e.lat)
                                                  ELSE v.side > 0
                                             END))));
END
$$;

-- 021's function, for collections (019): a collection's lines are not edges of an area, and 024's cells
-- take its segments as such.
ALTER FUNCTION trip_area_both(geometry, box2d) RENAME TO trip_collection_both;

-- Trips with both ends in the area, over all time: a box (020, 026), a polygon (above), a collection (021).
CREATE FUNCTION trip_area_both(area geometry, box box2d) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN box IS NOT NULL
                THEN trip_box_both(trip_coord_from(ST_XMin(box)), trip_coord_from(ST_YMin(box)),
                                   trip_coord_to(ST_XMax(box)), trip_coord_to(ST_YMax(box)))
                WHEN ST_GeometryType(area) IN ('ST_Polygon', 'ST_MultiPolygon') THEN trip_polygon_both(area)
                ELSE trip_collection_both(area, box)
           END
$$;
