-- Tried, not kept (ab.py SETUP): a band cell's other ends counted by latitude in C rather than one by one.
-- pg_temp.trip_box_both_sorted is 026's trip_box_both with its slice term (the other ends of a row of a
-- cell wholly inside, within the box's longitudes, whose latitude is in range) sorted by intarray's sort()
-- and counted by two width_buckets, instead of unnested and compared. intarray (contrib, trusted) goes to
-- its own schema so that its operators on integer[] do not replace the core ones. The session ends
-- without COMMIT.
BEGIN;
CREATE SCHEMA ia;
CREATE EXTENSION intarray SCHEMA ia;
CREATE FUNCTION pg_temp.trip_box_both_sorted(x0 integer, y0 integer, x1 integer, y1 integer) RETURNS bigint
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
    ), l3 AS MATERIALIZED (   -- the band's level-3 cells, and whether each is wholly inside the box
        SELECT DISTINCT c.cx, c.cy,
               c.cx * 10000::bigint >= x0 AND c.cx * 10000::bigint + 9999 <= x1
           AND c.cy * 10000::bigint >= y0 AND c.cy * 10000::bigint + 9999 <= y1 AS inside
          FROM l2 p
          JOIN trip_area_counts c
            ON c.side IN (1, 2) AND c.level = 3
           AND c.cy = ANY (trip_box_children(p.cy, floor(y0 / 1e4::float8)::integer, floor(y1 / 1e4::float8)::integer))
           AND c.cx BETWEEN greatest(p.cx * 10, floor(x0 / 1e4::float8)::integer)
                        AND least(p.cx * 10 + 9, floor(x1 / 1e4::float8)::integer)
    ), slice AS MATERIALIZED (   -- rows of cells wholly inside: where the other end must be, and its slice
        SELECT r.other_lat_by_other_lon AS ys, b.lat_lo, b.lat_hi,
               width_bucket(b.lon_lo - 1, r.other_lon_sorted) + 1 AS i0, width_bucket(b.lon_hi, r.other_lon_sorted) AS i1
          FROM l3 c
          JOIN trip_area_points r ON r.side = ANY (sides) AND r.cy = c.cy AND r.cx = c.cx
         CROSS JOIN LATERAL (   -- in the box for an origin row, in I for a destination row
                SELECT CASE WHEN r.side = 1 THEN x0 ELSE ix0 * 100000 END AS lon_lo,
                       CASE WHEN r.side = 1 THEN x1 ELSE ix1 * 100000 + 99999 END AS lon_hi,
                       CASE WHEN r.side = 1 THEN y0 ELSE iy0 * 100000 END AS lat_lo,
                       CASE WHEN r.side = 1 THEN y1 ELSE iy1 * 100000 + 99999 END AS lat_hi) AS b
         WHERE c.inside
    )
    SELECT (SELECT coalesce(sum(p.trips), 0)
              FROM trip_area_pairs p
             WHERE p.ocy BETWEEN iy0 AND iy1 AND p.ocx BETWEEN ix0 AND ix1
               AND p.dcy BETWEEN iy0 AND iy1 AND p.dcx BETWEEN ix0 AND ix1)
         + (SELECT coalesce(sum(width_bucket(s.lat_hi, z.ys) - width_bucket(s.lat_lo - 1, z.ys)), 0)
              FROM slice s CROSS JOIN LATERAL (SELECT ia.sort(s.ys[s.i0:s.i1])) AS z(ys))
         + (SELECT count(*)
              FROM (SELECT r.side, unnest(r.lon) AS lon, unnest(r.lat) AS lat,
                           unnest(r.other_lon) AS other_lon, unnest(r.other_lat) AS other_lat
                      FROM l3 c
                      JOIN trip_area_points r ON r.side = ANY (sides) AND r.cy = c.cy AND r.cx = c.cx
                     WHERE NOT c.inside) AS u
             WHERE u.lon BETWEEN x0 AND x1 AND u.lat BETWEEN y0 AND y1
               AND CASE WHEN u.side = 1
                        THEN u.other_lon BETWEEN x0 AND x1 AND u.other_lat BETWEEN y0 AND y1
                        ELSE u.other_lon BETWEEN ix0 * 100000::bigint AND ix1 * 100000::bigint + 99999
                         AND u.other_lat BETWEEN iy0 * 100000::bigint AND iy1 * 100000::bigint + 99999
                   END));
END
$$;
