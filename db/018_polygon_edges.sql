-- 018: polygons count their cut cells by which side of the area's edge each point is on.
--
-- A polygon (not a box) asked by origin or destination spent its time in two places, at 10M trips:
--
--   - Building each cell's polygon. trip_area_cell (009) read its size FROM another function, so it could not
--     be inlined: every call ran as a query of its own, ~6 us, for the thousands of cells tested with
--     ST_Intersects / ST_Covers. It is now one expression, with the same edges, so it is inlined.
--   - Testing every point of the level-3 cells cut by the edge with ST_Intersects, ~0.5 us each: 43,000
--     points for a 54 km polygon around Prague.
--
-- Most of those cells are crossed by one straight edge of the polygon and nothing else: one side of that
-- edge is in the area, the other is not. So for such a cell a point needs one cross product (on which side
-- of the edge's line is it?) instead of a point-in-polygon test. The edge is one of ST_DumpSegments(area),
-- with the polygon's own vertices, and "only one edge" is asked of the cell grown by 1e-9 degree (0.1 mm),
-- so no other edge comes near any of its points. Which side is inside is asked once per cell, of the corner
-- farthest from the line. A point within 1e-9 degree of the line (the cross product's rounding error is
-- thousands of times smaller), and every point of a cell that two edges or a vertex come near, is still
-- tested with ST_Intersects: the answer stays exactly the plain SQL's.
--
-- To reach the cut cells before their points, the cell pyramid of 010's trip_area_parts moves into
-- trip_area_cells; trip_area_parts keeps its answers and now reads the cells from there.

CREATE OR REPLACE FUNCTION trip_area_cell(level integer, cx integer, cy integer) RETURNS geometry
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ST_MakeEnvelope(cx::bigint * trip_area_cell_size(level) / 1e7::float8,
                           cy::bigint * trip_area_cell_size(level) / 1e7::float8,
                           (cx + 1)::bigint * trip_area_cell_size(level) / 1e7::float8,
                           (cy + 1)::bigint * trip_area_cell_size(level) / 1e7::float8, 4326)
$$;

-- The cells of the area, level by level, as 010's trip_area_parts found them (its body, now here, so that
-- callers can take the cells without their points):
--   - with `whole_cells`: the cells wholly inside the area at the coarsest level possible, and the level-3
--     cells below cut cells of level 2, inside or cut;
--   - without: every level-3 cell that meets the area, inside or cut.
CREATE FUNCTION trip_area_cells(area geometry, box box2d, side smallint, whole_cells boolean)
RETURNS TABLE (level integer, cx integer, cy integer, inside boolean, trips bigint)
LANGUAGE sql STABLE AS $$
    WITH l1 AS (
        SELECT c.cx, c.cy, sum(c.trips) AS trips, trip_area_cell_inside(area, box, 1, c.cx, c.cy) AS inside
          FROM trip_area_counts c
         WHERE c.side = trip_area_cells.side AND c.level = 1
           AND c.cx BETWEEN trip_area_cell_index(1, ST_XMin(area)) - 1 AND trip_area_cell_index(1, ST_XMax(area)) + 1
           AND c.cy BETWEEN trip_area_cell_index(1, ST_YMin(area)) - 1 AND trip_area_cell_index(1, ST_YMax(area)) + 1
           AND trip_area_cell_meets(area, box, 1, c.cx, c.cy)
         GROUP BY c.cx, c.cy
    ), l2 AS (
        SELECT c.cx, c.cy, sum(c.trips) AS trips,
               p.inside OR trip_area_cell_inside(area, box, 2, c.cx, c.cy) AS inside
          FROM l1 p
          JOIN trip_area_counts c
            ON c.side = trip_area_cells.side AND c.level = 2
           AND c.cy = ANY (trip_area_children(p.cy)) AND c.cx BETWEEN p.cx * 10 AND p.cx * 10 + 9
         WHERE NOT (p.inside AND whole_cells)
           AND (p.inside OR trip_area_cell_meets(area, box, 2, c.cx, c.cy))
         GROUP BY c.cx, c.cy, p.inside
    ), l3 AS (
        SELECT c.cx, c.cy, sum(c.trips) AS trips,
               p.inside OR trip_area_cell_inside(area, box, 3, c.cx, c.cy) AS inside
          FROM l2 p
          JOIN trip_area_counts c
            ON c.side = trip_area_cells.side AND c.level = 3
           AND c.cy = ANY (trip_area_children(p.cy)) AND c.cx BETWEEN p.cx * 10 AND p.cx * 10 + 9
         WHERE NOT (p.inside AND whole_cells)
           AND (p.inside OR trip_area_cell_meets(area, box, 3, c.cx, c.cy))
         GROUP BY c.cx, c.cy, p.inside
    )
    SELECT 1, cx, cy, true, trips FROM l1 WHERE inside AND whole_cells
    UNION ALL
    SELECT 2, cx, cy, true, trips FROM l2 WHERE inside AND whole_cells
    UNION ALL
    SELECT 3, cx, cy, inside, trips FROM l3
$$;

-- 010's parts, from the cells above: whole cells with their trips, then the point rows of the others.
CREATE OR REPLACE FUNCTION trip_area_parts(area geometry, box box2d, side smallint, whole_cells boolean)
RETURNS TABLE (inside boolean, trips bigint, lon integer[], lat integer[], departed_at timestamp[],
               other_lon integer[], other_lat integer[])
LANGUAGE sql STABLE AS $$
    WITH cell AS (
        SELECT * FROM trip_area_cells(area, box, side, whole_cells)
    )
    SELECT true, trips, NULL::integer[], NULL::integer[], NULL::timestamp[], NULL::integer[], NULL::integer[]
      FROM cell WHERE inside AND whole_cells
    UNION ALL
    SELECT c.inside, r.trips, r.lon, r.lat, r.departed_at, r.other_lon, r.other_lat
      FROM cell c
      JOIN trip_area_points r ON r.side = trip_area_parts.side AND r.cy = c.cy AND r.cx = c.cx
     WHERE c.level = 3 AND NOT (c.inside AND whole_cells)
$$;

-- The one edge of the area that comes within 1e-9 degree of level-3 cell (cx, cy), as a line, or nothing
-- when none or several do: a point (x, y) in degrees is in the area when dx * (y - y0) - dy * (x - x0) has
-- the sign `inside_sign`; it must be tested when the absolute value is at most `margin`: 1e-9 degree times
-- the edge's length, and never less than 1e-11, ten times the tolerance PostGIS's own point-in-polygon test
-- gives a point on an edge. The corner of the cell farthest from the line tells which side is in the area.
CREATE FUNCTION trip_area_cell_edge(area geometry, cx integer, cy integer)
RETURNS TABLE (x0 float8, y0 float8, dx float8, dy float8, margin float8, inside_sign float8)
LANGUAGE sql STABLE AS $$
    SELECT e.x0, e.y0, e.dx, e.dy, greatest(1e-9 * sqrt(e.dx * e.dx + e.dy * e.dy), 1e-11),
           (SELECT sign(k.side) * CASE WHEN ST_Intersects(area, ST_Point(k.x, k.y, 4326)) THEN 1 ELSE -1 END
              FROM (VALUES (0, 0), (1, 0), (0, 1), (1, 1)) AS c(i, j)
             CROSS JOIN LATERAL (SELECT (cx + c.i)::bigint * 10000 / 1e7::float8,
                                        (cy + c.j)::bigint * 10000 / 1e7::float8) AS p(x, y)
             CROSS JOIN LATERAL (SELECT p.x, p.y, e.dx * (p.y - e.y0) - e.dy * (p.x - e.x0)) AS k(x, y, side)
             ORDER BY abs(k.side) DESC
             LIMIT 1)
      FROM (SELECT ST_X(ST_StartPoint(s.edge)) AS x0, ST_Y(ST_StartPoint(s.edge)) AS y0,
                   ST_X(ST_EndPoint(s.edge)) - ST_X(ST_StartPoint(s.edge)) AS dx,
                   ST_Y(ST_EndPoint(s.edge)) - ST_Y(ST_StartPoint(s.edge)) AS dy
              FROM (SELECT (array_agg(d.geom))[1] AS edge
                      FROM ST_DumpSegments(area) AS d
                     WHERE ST_Intersects(d.geom, ST_Expand(trip_area_cell(3, cx, cy), 1e-9))
                    HAVING count(*) = 1) AS s) AS e
$$;

-- 015's count over all time; polygons now count their cut cells by sides of the edge where they can.
CREATE OR REPLACE FUNCTION trip_area_count(area geometry, box box2d, side smallint) RETURNS bigint
LANGUAGE plpgsql STABLE SET jit = off SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    IF box IS NOT NULL THEN
        RETURN trip_box_count(side, trip_coord_from(ST_XMin(box)), trip_coord_from(ST_YMin(box)),
                              trip_coord_to(ST_XMax(box)), trip_coord_to(ST_YMax(box)));
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
         + (SELECT coalesce(sum(CASE
                WHEN c.inside_sign IS NULL THEN (SELECT count(*) FROM unnest(r.lon, r.lat) AS u(lon, lat)
                                             WHERE trip_area_holds(area, box, u.lon, u.lat))
                ELSE (SELECT count(*) FROM unnest(r.lon, r.lat) AS u(lon, lat)
                       CROSS JOIN LATERAL (SELECT c.dx * (u.lat / 1e7::float8 - c.y0)
                                                - c.dy * (u.lon / 1e7::float8 - c.x0)) AS v(side)
                       WHERE CASE WHEN abs(v.side) <= c.margin THEN trip_area_holds(area, box, u.lon, u.lat)
                                  ELSE sign(v.side) = c.inside_sign END)
            END), 0)
              FROM cut c
              JOIN trip_area_points r ON r.side = trip_area_count.side AND r.cy = c.cy AND r.cx = c.cx));
END
$$;
