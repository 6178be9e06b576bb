-- 020: boxes asked by both (and so either) compare integers, and points are listed in the select list.
--
-- At 10M trips, boxes of 2 to 20 km asked by both or either took 200-500 ms. 017's trip_area_both reads the
-- points of the band (the level-2 cells cut by the area's edge) and tests each end of each: ~430,000
-- points for a 1.9 km box in Prague. Two costs per point made up most of the time:
--
--   - unnest(lon, lat, other_lon, other_lat) in FROM is a function scan: its rows are first written to a
--     tuplestore, then read back. unnest() in the select list (a ProjectSet) hands them on directly, in
--     lockstep, in about a third of the time. trip_area_count's cut cells (polygons by origin or
--     destination) now list their points that way too.
--   - A box was tested as 010's trip_area_holds does it: lon / 1e7 against ST_XMin(box) and the like, four
--     PostGIS calls per end. Like 015's trip_box_count, a box is now integer bounds on the stored
--     coordinates, and each end is four integer comparisons.
--
-- And an area that holds no whole level-2 cell (none does under 0.01 degree across, few under 0.02) has no
-- trip whose origin is in such a cell, so the destination rows, which count only those, are not read at all.

-- Trips with both ends in the box [x0, x1] x [y0, y1] (stored coordinates, edges included), over all time.
-- The level-2 cells wholly inside the box form the rectangle I of columns ix0..ix1 and rows iy0..iy1
-- (empty when ix0 > ix1 or iy0 > iy1); the rest of the box is the band. As in 016:
--
--   origin in I, destination in I         the pair totals of trip_area_pairs
--   origin in the band                    the origin rows of the band's level-3 cells: test both ends
--   origin in I, destination in the band  the destination rows of the band's level-3 cells: test that the
--                                         destination is in the box and the origin in I
--
-- The band's level-3 cells are found level by level, as in trip_box_count, skipping level-1 cells wholly
-- in I; a level-3 cell wholly inside the box needs only the other end of its points tested.
CREATE FUNCTION trip_box_both(x0 integer, y0 integer, x1 integer, y1 integer) RETURNS bigint
LANGUAGE plpgsql STABLE SET jit = off SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    ix0 integer := ceil(x0 / 1e5::float8);                   -- first column starting at or after x0
    ix1 integer := floor((x1 + 1::bigint) / 1e5::float8) - 1; -- last column ending at or before x1
    iy0 integer := ceil(y0 / 1e5::float8);
    iy1 integer := floor((y1 + 1::bigint) / 1e5::float8) - 1;
    sides smallint[] := CASE WHEN ix0 <= ix1 AND iy0 <= iy1 THEN '{1,2}' ELSE '{1}' END;
BEGIN
    RETURN (
    WITH l1 AS (
        SELECT DISTINCT c.cx, c.cy
          FROM trip_area_counts c
         WHERE c.side IN (1, 2) AND c.level = 1
           AND c.cx BETWEEN floor(x0 / 1e6::float8)::integer AND floor(x1 / 1e6::float8)::integer
           AND c.cy BETWEEN floor(y0 / 1e6::float8)::integer AND floor(y1 / 1e6::float8)::integer
           AND NOT (c.cx * 10 >= ix0 AND c.cx * 10 + 9 <= ix1 AND c.cy * 10 >= iy0 AND c.cy * 10 + 9 <= iy1)
    ), l2 AS (   -- the band's level-2 cells
        SELECT DISTINCT c.cx, c.cy
          FROM l1 p
          JOIN trip_area_counts c
            ON c.side IN (1, 2) AND c.level = 2
           AND c.cy = ANY (trip_box_children(p.cy, floor(y0 / 1e5::float8)::integer, floor(y1 / 1e5::float8)::integer))
           AND c.cx BETWEEN greatest(p.cx * 10, floor(x0 / 1e5::float8)::integer)
                        AND least(p.cx * 10 + 9, floor(x1 / 1e5::float8)::integer)
         WHERE NOT (c.cx BETWEEN ix0 AND ix1 AND c.cy BETWEEN iy0 AND iy1)
    ), l3 AS (   -- the band's level-3 cells, and whether each is wholly inside the box
        SELECT DISTINCT c.cx, c.cy,
               c.cx * 10000::bigint >= x0 AND c.cx * 10000::bigint + 9999 <= x1
           AND c.cy * 10000::bigint >= y0 AND c.cy * 10000::bigint + 9999 <= y1 AS inside
          FROM l2 p
          JOIN trip_area_counts c
            ON c.side IN (1, 2) AND c.level = 3
           AND c.cy = ANY (trip_box_children(p.cy, floor(y0 / 1e4::float8)::integer, floor(y1 / 1e4::float8)::integer))
           AND c.cx BETWEEN greatest(p.cx * 10, floor(x0 / 1e4::float8)::integer)
                        AND least(p.cx * 10 + 9, floor(x1 / 1e4::float8)::integer)
    )
    SELECT (SELECT coalesce(sum(p.trips), 0)
              FROM trip_area_pairs p
             WHERE p.ocy BETWEEN iy0 AND iy1 AND p.ocx BETWEEN ix0 AND ix1
               AND p.dcy BETWEEN iy0 AND iy1 AND p.dcx BETWEEN ix0 AND ix1)
         + (SELECT count(*)
              FROM (SELECT c.inside, r.side, unnest(r.lon) AS lon, unnest(r.lat) AS lat,
                           unnest(r.other_lon) AS other_lon, unnest(r.other_lat) AS other_lat
                      FROM l3 c
                      JOIN trip_area_points r ON r.side = ANY (sides) AND r.cy = c.cy AND r.cx = c.cx) AS u
             WHERE (u.inside OR (u.lon BETWEEN x0 AND x1 AND u.lat BETWEEN y0 AND y1))
               AND CASE WHEN u.side = 1
                        THEN u.other_lon BETWEEN x0 AND x1 AND u.other_lat BETWEEN y0 AND y1
                        ELSE u.other_lon BETWEEN ix0 * 100000::bigint AND ix1 * 100000::bigint + 99999
                         AND u.other_lat BETWEEN iy0 * 100000::bigint AND iy1 * 100000::bigint + 99999
                   END));
END
$$;

-- 017's trip_area_both: a box takes trip_box_both; other areas list their band's points in the select list,
-- and read destination rows only when some level-2 cell is wholly inside the area.
CREATE OR REPLACE FUNCTION trip_area_both(area geometry, box box2d) RETURNS bigint
LANGUAGE plpgsql STABLE SET jit = off SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    IF box IS NOT NULL THEN
        RETURN trip_box_both(trip_coord_from(ST_XMin(box)), trip_coord_from(ST_YMin(box)),
                             trip_coord_to(ST_XMax(box)), trip_coord_to(ST_YMax(box)));
    END IF;
    RETURN (
    WITH l1 AS (
        SELECT c.cx, c.cy, trip_area_cell_inside(area, box, 1, c.cx, c.cy) AS inside
          FROM trip_area_counts c
         WHERE c.side IN (1, 2) AND c.level = 1
           AND c.cx BETWEEN trip_area_cell_index(1, ST_XMin(area)) - 1 AND trip_area_cell_index(1, ST_XMax(area)) + 1
           AND c.cy BETWEEN trip_area_cell_index(1, ST_YMin(area)) - 1 AND trip_area_cell_index(1, ST_YMax(area)) + 1
           AND trip_area_cell_meets(area, box, 1, c.cx, c.cy)
         GROUP BY c.cx, c.cy
    ), l2 AS (
        SELECT c.cx, c.cy, p.inside OR trip_area_cell_inside(area, box, 2, c.cx, c.cy) AS inside
          FROM l1 p
          JOIN trip_area_counts c
            ON c.side IN (1, 2) AND c.level = 2
           AND c.cy = ANY (trip_area_children(p.cy)) AND c.cx BETWEEN p.cx * 10 AND p.cx * 10 + 9
         WHERE p.inside OR trip_area_cell_meets(area, box, 2, c.cx, c.cy)
         GROUP BY c.cx, c.cy, p.inside
    ), cut AS (
        SELECT cx, cy FROM l2 WHERE NOT inside
    ), band AS (   -- the level-3 cells of the cut level-2 cells that meet the area
        SELECT c.cx, c.cy, trip_area_cell_inside(area, box, 3, c.cx, c.cy) AS inside
          FROM cut p
          JOIN trip_area_counts c
            ON c.side IN (1, 2) AND c.level = 3
           AND c.cy = ANY (trip_box_children(p.cy, trip_area_cell_index(3, ST_YMin(area)) - 1,
                                             trip_area_cell_index(3, ST_YMax(area)) + 1))
           AND c.cx BETWEEN greatest(p.cx * 10, trip_area_cell_index(3, ST_XMin(area)) - 1)
                        AND least(p.cx * 10 + 9, trip_area_cell_index(3, ST_XMax(area)) + 1)
         WHERE trip_area_cell_meets(area, box, 3, c.cx, c.cy)
         GROUP BY c.cx, c.cy
    )
    SELECT (SELECT coalesce(sum(g.trips), 0)
              FROM (SELECT p.dcx, p.dcy, sum(p.trips) AS trips
                      FROM l2 o
                      JOIN trip_area_pairs p ON p.ocy = o.cy AND p.ocx = o.cx
                     WHERE o.inside
                     GROUP BY p.dcx, p.dcy) AS g
             WHERE trip_area_cell_inside(area, box, 2, g.dcx, g.dcy))
         + (SELECT count(*)
              FROM (SELECT c.inside, r.side, unnest(r.lon) AS lon, unnest(r.lat) AS lat,
                           unnest(r.other_lon) AS other_lon, unnest(r.other_lat) AS other_lat
                      FROM band c
                      JOIN trip_area_points r ON r.side IN (1, 2) AND r.cy = c.cy AND r.cx = c.cx
                     WHERE r.side = 1 OR EXISTS (SELECT FROM l2 WHERE l2.inside)) AS u
             WHERE (u.inside OR trip_area_holds(area, box, u.lon, u.lat))
               AND trip_area_holds(area, box, u.other_lon, u.other_lat)
               AND (u.side = 1 OR NOT EXISTS (   -- a destination row: its origin's cell must be inside
                        SELECT FROM cut o
                         WHERE o.cx = floor(u.other_lon::float8 / 100000) AND o.cy = floor(u.other_lat::float8 / 100000)))));
END
$$;

-- 019's count over all time, listing the cut cells' points in the select list too (polygons by origin or
-- destination, ~15% less time at 10M trips). A point is tested with ST_Intersects when its cell has no single
-- edge, or when it lies within the margin of that edge's line; otherwise the side of the line decides.
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
