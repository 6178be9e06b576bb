-- Experiment (not a migration): polygons by both or either decide the other end of a band point by its
-- level-3 cell (whole, cut, or not in the area) where its level-2 cell is cut, instead of ST_Intersects on
-- every such end. Creates trip_area_both2 (same arguments as trip_area_both) in the session.
BEGIN;
CREATE OR REPLACE FUNCTION trip_area_both2(area geometry, box box2d) RETURNS bigint
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
                                        floor(u.other_lat::float8 / 100000)::integer,
                                        floor(u.other_lon::float8 / 10000)::integer,
                                        floor(u.other_lat::float8 / 10000)::integer) AS o(cx, cy, cx3, cy3)
             WHERE (u.inside OR trip_area_holds(area, box, u.lon, u.lat))   -- this end is in the area
               AND u.other_lon BETWEEN bx0 AND bx1 AND u.other_lat BETWEEN by0 AND by1
               AND CASE WHEN (o.cx, o.cy) IN (SELECT cx, cy FROM l2 WHERE inside) THEN true
                        WHEN u.side = 2 THEN false   -- a destination row counts origins in whole cells only
                        WHEN (o.cx3, o.cy3) IN (SELECT cx, cy FROM band WHERE inside) THEN true
                        ELSE (o.cx3, o.cy3) IN (SELECT cx, cy FROM band WHERE NOT inside)
                         AND trip_area_holds(area, box, u.other_lon, u.other_lat)
                   END));
END
$$;
