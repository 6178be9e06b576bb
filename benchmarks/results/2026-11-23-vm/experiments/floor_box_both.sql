-- What a box's count by both costs without its per-point work (ab.py SETUP; not a change, a measure).
--   pg_temp.trip_box_both_floor   026's trip_box_both, with the two point-by-point terms replaced by the
--                                 number of points they would test: the same cells, the same rows of
--                                 points fetched (and their arrays read: cardinality() detoasts them),
--                                 the same width_bucket slices, no unnest and no comparisons. What is
--                                 left if testing a point cost nothing.
--   pg_temp.trip_box_both_cells   the same without reading any row of points: the cells of the band
--                                 and the pairs' sum only.
-- Answers differ from trip_box_both by design (they are numbers of points, not of trips).
CREATE FUNCTION pg_temp.trip_box_both_floor(x0 integer, y0 integer, x1 integer, y1 integer) RETURNS bigint
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
         + (SELECT coalesce(sum(greatest(s.i1 - s.i0 + 1, 0) + 0 * cardinality(s.ys)), 0) FROM slice s)
         + (SELECT coalesce(sum(cardinality(r.lon) + 0 * cardinality(r.lat) + 0 * cardinality(r.other_lon)
                                 + 0 * cardinality(r.other_lat)), 0)
              FROM l3 c
              JOIN trip_area_points r ON r.side = ANY (sides) AND r.cy = c.cy AND r.cx = c.cx
             WHERE NOT c.inside));
END
$$;

CREATE FUNCTION pg_temp.trip_box_both_cells(x0 integer, y0 integer, x1 integer, y1 integer) RETURNS bigint
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
         + (SELECT count(*) FROM l3));
END
$$;
