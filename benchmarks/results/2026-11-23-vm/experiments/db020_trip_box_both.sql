-- db/020's trip_box_both under another name, for ab.py (the session ends without COMMIT).
BEGIN;
CREATE FUNCTION trip_box_both_db020(x0 integer, y0 integer, x1 integer, y1 integer) RETURNS bigint
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
