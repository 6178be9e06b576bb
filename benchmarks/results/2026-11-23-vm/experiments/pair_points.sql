-- Experiment (not a migration; ab.py SETUP, after pair_points_build.sql): a box's trips with both ends in
-- it, counted from exp.pp, the points grouped by their pair of 0.01-degree cells, instead of 026's band of
-- 0.001-degree cells.
--
--   I, the 0.01-degree cells wholly inside     pairs of I with I: their totals (n)
--   pairs with an end in a cut 0.01-degree     one end cut, the other in I: that end by binary search on
--   cell (eight rectangles of pairs: origin    its sorted coordinate (two width_buckets; a cell cut along
--   in the band, or origin in I and            its longitudes only needs its longitude)
--   destination in the band)                   otherwise (both ends cut, or a corner): every trip tested
--
--   pg_temp.box_both_pairs          as above
--   pg_temp.box_both_pairs_hybrid   026's trip_box_both when no 0.01-degree cell is wholly inside
CREATE FUNCTION pg_temp.box_both_pairs(x0 integer, y0 integer, x1 integer, y1 integer) RETURNS bigint
LANGUAGE plpgsql STABLE SET jit = off SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    ix0 integer := ceil(x0 / 1e5::float8);                   -- first column starting at or after x0
    ix1 integer := floor((x1 + 1::bigint) / 1e5::float8) - 1; -- last column ending at or before x1
    iy0 integer := ceil(y0 / 1e5::float8);
    iy1 integer := floor((y1 + 1::bigint) / 1e5::float8) - 1;
    cx0 integer := floor(x0 / 1e5::float8);
    cx1 integer := floor(x1 / 1e5::float8);
    cy0 integer := floor(y0 / 1e5::float8);
    cy1 integer := floor(y1 / 1e5::float8);
    whole boolean := ix0 <= ix1 AND iy0 <= iy1;
BEGIN
    RETURN (
    WITH r (oy0, oy1, ox0, ox1, dy0, dy1, dx0, dx1) AS (   -- the pairs with an end in the band: rectangles
        SELECT * FROM (VALUES (cy0, iy0 - 1, cx0, cx1, cy0, cy1, cx0, cx1),   -- origin below I
                              (iy1 + 1, cy1, cx0, cx1, cy0, cy1, cx0, cx1),   -- above
                              (iy0, iy1, cx0, ix0 - 1, cy0, cy1, cx0, cx1),   -- left
                              (iy0, iy1, ix1 + 1, cx1, cy0, cy1, cx0, cx1),   -- right
                              (iy0, iy1, ix0, ix1, cy0, iy0 - 1, cx0, cx1),   -- origin in I, destination below
                              (iy0, iy1, ix0, ix1, iy1 + 1, cy1, cx0, cx1),
                              (iy0, iy1, ix0, ix1, iy0, iy1, cx0, ix0 - 1),
                              (iy0, iy1, ix0, ix1, iy0, iy1, ix1 + 1, cx1)) AS v
         WHERE whole
        UNION ALL
        SELECT cy0, cy1, cx0, cx1, cy0, cy1, cx0, cx1 WHERE NOT whole
    )
    SELECT (SELECT coalesce(sum(p.n), 0) FROM exp.pp p
             WHERE whole AND p.ocy BETWEEN iy0 AND iy1 AND p.ocx BETWEEN ix0 AND ix1
               AND p.dcy BETWEEN iy0 AND iy1 AND p.dcx BETWEEN ix0 AND ix1)
         + (SELECT coalesce(sum(
           CASE WHEN k.oi AND k.di THEN p.n
                WHEN k.di AND k.oy THEN width_bucket(x1, p.o_lon_sorted) - width_bucket(x0 - 1, p.o_lon_sorted)
                WHEN k.di AND k.ox THEN width_bucket(y1, p.o_lat_sorted) - width_bucket(y0 - 1, p.o_lat_sorted)
                WHEN k.oi AND k.dy THEN width_bucket(x1, p.d_lon_sorted) - width_bucket(x0 - 1, p.d_lon_sorted)
                WHEN k.oi AND k.dx THEN width_bucket(y1, p.d_lat_sorted) - width_bucket(y0 - 1, p.d_lat_sorted)
                ELSE (SELECT count(*) FROM unnest(p.o_lon, p.o_lat, p.d_lon, p.d_lat) AS u(a, b, c, d)
                       WHERE u.a BETWEEN x0 AND x1 AND u.b BETWEEN y0 AND y1
                         AND u.c BETWEEN x0 AND x1 AND u.d BETWEEN y0 AND y1)
           END), 0)
      FROM r
      JOIN exp.pp p ON p.ocy BETWEEN r.oy0 AND r.oy1 AND p.ocx BETWEEN r.ox0 AND r.ox1
                   AND p.dcy BETWEEN r.dy0 AND r.dy1 AND p.dcx BETWEEN r.dx0 AND r.dx1
     CROSS JOIN LATERAL (SELECT p.ocx * 100000::bigint >= x0 AND p.ocx * 100000::bigint + 99999 <= x1 AS ox,
                                p.ocy * 100000::bigint >= y0 AND p.ocy * 100000::bigint + 99999 <= y1 AS oy,
                                p.dcx * 100000::bigint >= x0 AND p.dcx * 100000::bigint + 99999 <= x1 AS dx,
                                p.dcy * 100000::bigint >= y0 AND p.dcy * 100000::bigint + 99999 <= y1 AS dy) AS c
     CROSS JOIN LATERAL (SELECT c.ox AND c.oy AS oi, c.dx AND c.dy AS di, c.ox, c.oy, c.dx, c.dy) AS k));
END
$$;

CREATE FUNCTION pg_temp.box_both_pairs_hybrid(x0 integer, y0 integer, x1 integer, y1 integer) RETURNS bigint
LANGUAGE plpgsql STABLE SET jit = off SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    ix0 integer := ceil(x0 / 1e5::float8);                   -- first column starting at or after x0
    ix1 integer := floor((x1 + 1::bigint) / 1e5::float8) - 1; -- last column ending at or before x1
    iy0 integer := ceil(y0 / 1e5::float8);
    iy1 integer := floor((y1 + 1::bigint) / 1e5::float8) - 1;
    cx0 integer := floor(x0 / 1e5::float8);
    cx1 integer := floor(x1 / 1e5::float8);
    cy0 integer := floor(y0 / 1e5::float8);
    cy1 integer := floor(y1 / 1e5::float8);
    whole boolean := ix0 <= ix1 AND iy0 <= iy1;
BEGIN
    IF NOT whole THEN   -- no 0.01-degree cell wholly inside: 026's band of 0.001-degree cells is thinner
        RETURN trip_box_both(x0, y0, x1, y1);
    END IF;
    RETURN (
    WITH r (oy0, oy1, ox0, ox1, dy0, dy1, dx0, dx1) AS (   -- the pairs with an end in the band: rectangles
        SELECT * FROM (VALUES (cy0, iy0 - 1, cx0, cx1, cy0, cy1, cx0, cx1),   -- origin below I
                              (iy1 + 1, cy1, cx0, cx1, cy0, cy1, cx0, cx1),   -- above
                              (iy0, iy1, cx0, ix0 - 1, cy0, cy1, cx0, cx1),   -- left
                              (iy0, iy1, ix1 + 1, cx1, cy0, cy1, cx0, cx1),   -- right
                              (iy0, iy1, ix0, ix1, cy0, iy0 - 1, cx0, cx1),   -- origin in I, destination below
                              (iy0, iy1, ix0, ix1, iy1 + 1, cy1, cx0, cx1),
                              (iy0, iy1, ix0, ix1, iy0, iy1, cx0, ix0 - 1),
                              (iy0, iy1, ix0, ix1, iy0, iy1, ix1 + 1, cx1)) AS v
         WHERE whole
        UNION ALL
        SELECT cy0, cy1, cx0, cx1, cy0, cy1, cx0, cx1 WHERE NOT whole
    )
    SELECT (SELECT coalesce(sum(p.n), 0) FROM exp.pp p
             WHERE whole AND p.ocy BETWEEN iy0 AND iy1 AND p.ocx BETWEEN ix0 AND ix1
               AND p.dcy BETWEEN iy0 AND iy1 AND p.dcx BETWEEN ix0 AND ix1)
         + (SELECT coalesce(sum(
           CASE WHEN k.oi AND k.di THEN p.n
                WHEN k.di AND k.oy THEN width_bucket(x1, p.o_lon_sorted) - width_bucket(x0 - 1, p.o_lon_sorted)
                WHEN k.di AND k.ox THEN width_bucket(y1, p.o_lat_sorted) - width_bucket(y0 - 1, p.o_lat_sorted)
                WHEN k.oi AND k.dy THEN width_bucket(x1, p.d_lon_sorted) - width_bucket(x0 - 1, p.d_lon_sorted)
                WHEN k.oi AND k.dx THEN width_bucket(y1, p.d_lat_sorted) - width_bucket(y0 - 1, p.d_lat_sorted)
                ELSE (SELECT count(*) FROM unnest(p.o_lon, p.o_lat, p.d_lon, p.d_lat) AS u(a, b, c, d)
                       WHERE u.a BETWEEN x0 AND x1 AND u.b BETWEEN y0 AND y1
                         AND u.c BETWEEN x0 AND x1 AND u.d BETWEEN y0 AND y1)
           END), 0)
      FROM r
      JOIN exp.pp p ON p.ocy BETWEEN r.oy0 AND r.oy1 AND p.ocx BETWEEN r.ox0 AND r.ox1
                   AND p.dcy BETWEEN r.dy0 AND r.dy1 AND p.dcx BETWEEN r.dx0 AND r.dx1
     CROSS JOIN LATERAL (SELECT p.ocx * 100000::bigint >= x0 AND p.ocx * 100000::bigint + 99999 <= x1 AS ox,
                                p.ocy * 100000::bigint >= y0 AND p.ocy * 100000::bigint + 99999 <= y1 AS oy,
                                p.dcx * 100000::bigint >= x0 AND p.dcx * 100000::bigint + 99999 <= x1 AS dx,
                                p.dcy * 100000::bigint >= y0 AND p.dcy * 100000::bigint + 99999 <= y1 AS dy) AS c
     CROSS JOIN LATERAL (SELECT c.ox AND c.oy AS oi, c.dx AND c.dy AS di, c.ox, c.oy, c.dx, c.dy) AS k));
END
$$;
