-- 021: polygons asked by both (and so either) test the other end by its level-2 cell, not with GEOS.
--
-- After 020, a polygon by both still spent most of its time in GEOS, at 10M trips (a 25 km polygon over
-- Hamburg, 0.6 s):
--
--   - The pairs from whole cells: 017 sums them per destination cell and then asks ST_Covers of that cell,
--     but the planner moves that test below the sum, into every pair row: 22,000 ST_Covers, 75 ms. The
--     destination cell is now looked up among the area's whole level-2 cells (l2 with `inside`): a hash.
--   - The other end of every point of the band, tested with ST_Intersects. Its level-2 cell now decides
--     first: a whole cell of the area means in the area, a cut cell means ST_Intersects, and any other cell
--     means outside. That is exact: the other end is the end of a trip, so its cell has trips, and every
--     cell with trips that meets the area is in l2. A destination row needs its origin in a whole cell
--     (016), so it needs the lookup alone. Before any of that, an other end outside the area's bounding
--     box is dropped by four integer comparisons (most ends of trips from a small area are far away).
--
-- The same question at 10M trips: 0.6 s -> 0.4 s; the 36 polygons by both or either of the benchmark,
-- asked one after another: 2.5 s -> 1.7-1.9 s in all. Boxes keep 020's trip_box_both.

CREATE OR REPLACE FUNCTION trip_area_both(area geometry, box box2d) RETURNS bigint
LANGUAGE plpgsql STABLE SET jit = off SET plan_cache_mode = force_generic_plan AS $$
DECLARE   -- the area's bounding box on the stored coordinates (015), for polygons
    bx0 integer := trip_coord_from(ST_XMin(area));
    by0 integer := trip_coord_from(ST_YMin(area));
    bx1 integer := trip_coord_to(ST_XMax(area));
    by1 integer := trip_coord_to(ST_YMax(area));
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
    SELECT (SELECT coalesce(sum(p.trips), 0)   -- pairs from a whole cell to a whole cell
              FROM l2 o
              JOIN trip_area_pairs p ON p.ocy = o.cy AND p.ocx = o.cx
             WHERE o.inside
               AND (p.dcx, p.dcy) IN (SELECT cx, cy FROM l2 WHERE inside))
         + (SELECT count(*)
              FROM (SELECT c.inside, r.side, unnest(r.lon) AS lon, unnest(r.lat) AS lat,
                           unnest(r.other_lon) AS other_lon, unnest(r.other_lat) AS other_lat
                      FROM band c
                      JOIN trip_area_points r ON r.side IN (1, 2) AND r.cy = c.cy AND r.cx = c.cx
                     WHERE r.side = 1 OR EXISTS (SELECT FROM l2 WHERE l2.inside)) AS u
             CROSS JOIN LATERAL (SELECT floor(u.other_lon::float8 / 100000)::integer,
                                        floor(u.other_lat::float8 / 100000)::integer) AS o(cx, cy)
             WHERE (u.inside OR trip_area_holds(area, box, u.lon, u.lat))   -- this end is in the area
               AND u.other_lon BETWEEN bx0 AND bx1 AND u.other_lat BETWEEN by0 AND by1
               AND CASE WHEN (o.cx, o.cy) IN (SELECT cx, cy FROM l2 WHERE inside) THEN true
                        WHEN u.side = 2 THEN false   -- a destination row counts origins in whole cells only
                        ELSE (o.cx, o.cy) IN (SELECT cx, cy FROM cut)
                         AND trip_area_holds(area, box, u.other_lon, u.other_lat)
                   END));
END
$$;
