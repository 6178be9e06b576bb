-- 026: each row of points also keeps its other ends in order of longitude, and a box asked by both (or
-- either) reads only the slice of them whose longitude is in range.
--
-- A box by both spends its time in its band (020): for each trip with an end in a level-3 cell there, the
-- other end is compared with the box. When the cell is wholly inside the box, that is all the test, and
-- most other ends fail it on longitude alone: of the 235,129 origins in a 2.8 km box over Turin at 10M
-- trips, 64,397 have their destination's longitude in the box, and 22,209 their destination in it. With
-- the other ends sorted by longitude (other_lon_sorted, and other_lat_by_other_lon beside it, as 025 keeps
-- lon_by_lat beside lat_sorted), width_bucket finds that slice and only its latitudes are compared.
--
--   origin rows        the other end must be in the box          slice of [x0, x1], latitudes in [y0, y1]
--   destination rows   the other end must be in I, the level-2   slice of I's longitudes, latitudes in I's
--                      cells wholly inside the box (020)
--
-- A band cell the box's edge cuts keeps 020's test of both ends. The 114 boxes by both or either of the
-- 10M benchmark, asked alternately against 020's trip_box_both: p95 88 -> 48 ms, the sum of their times
-- -45%, the same answers.
--
-- The arrays are NULL when other_lon is (no other ends given). The rows already loaded get them here; the
-- loader writes them, and compact_area_points() and rebuild_area_counts() build them.

ALTER TABLE trip_area_points ADD COLUMN other_lon_sorted integer[],        -- the other ends' longitudes, in order
                             ADD COLUMN other_lat_by_other_lon integer[];  -- their latitudes, paired with them
UPDATE trip_area_points p
   SET other_lon_sorted = (SELECT array_agg(u.x ORDER BY u.x, u.y) FROM unnest(p.other_lon, p.other_lat) AS u(x, y)),
       other_lat_by_other_lon = (SELECT array_agg(u.y ORDER BY u.x, u.y) FROM unnest(p.other_lon, p.other_lat) AS u(x, y))
 WHERE p.other_lon IS NOT NULL;

-- 025's rebuild, with the other ends in order of longitude.
CREATE OR REPLACE FUNCTION rebuild_area_counts() RETURNS void
LANGUAGE sql AS $$
    TRUNCATE trip_area_counts, trip_area_points, trip_area_pairs;
    INSERT INTO trip_area_counts (job_id, side, level, cx, cy, trips)
    SELECT t.job_id, e.side, l.level,
           floor(e.lon::float8 / trip_area_cell_size(l.level)), floor(e.lat::float8 / trip_area_cell_size(l.level)),
           count(*)
      FROM trip_rows t
     CROSS JOIN LATERAL (VALUES (1::smallint, t.origin_lon, t.origin_lat),
                                (2::smallint, t.dest_lon, t.dest_lat)) AS e(side, lon, lat)
     CROSS JOIN (VALUES (1), (2), (3)) AS l(level)
     GROUP BY 1, 2, 3, 4, 5;
    INSERT INTO trip_area_points (job_id, side, cx, cy, trips, lon, lat, departed_at, other_lon, other_lat,
                                  lat_sorted, lon_by_lat, other_lon_sorted, other_lat_by_other_lon)
    SELECT t.job_id, e.side, floor(e.lon::float8 / 10000), floor(e.lat::float8 / 10000), count(*),
           array_agg(e.lon ORDER BY e.lon, e.lat, t.departed_at, e.other_lon, e.other_lat),
           array_agg(e.lat ORDER BY e.lon, e.lat, t.departed_at, e.other_lon, e.other_lat),
           array_agg(t.departed_at ORDER BY e.lon, e.lat, t.departed_at, e.other_lon, e.other_lat),
           array_agg(e.other_lon ORDER BY e.lon, e.lat, t.departed_at, e.other_lon, e.other_lat),
           array_agg(e.other_lat ORDER BY e.lon, e.lat, t.departed_at, e.other_lon, e.other_lat),
           array_agg(e.lat ORDER BY e.lat),
           array_agg(e.lon ORDER BY e.lat, e.lon),
           array_agg(e.other_lon ORDER BY e.other_lon, e.other_lat),
           array_agg(e.other_lat ORDER BY e.other_lon, e.other_lat)
      FROM trip_rows t
     CROSS JOIN LATERAL (VALUES (1::smallint, t.origin_lon, t.origin_lat, t.dest_lon, t.dest_lat),
                                (2::smallint, t.dest_lon, t.dest_lat, t.origin_lon, t.origin_lat))
                        AS e(side, lon, lat, other_lon, other_lat)
     GROUP BY 1, 2, 3, 4;
    INSERT INTO trip_area_pairs (job_id, ocx, ocy, dcx, dcy, trips)
    SELECT t.job_id, floor(t.origin_lon::float8 / 100000), floor(t.origin_lat::float8 / 100000),
           floor(t.dest_lon::float8 / 100000), floor(t.dest_lat::float8 / 100000), count(*)
      FROM trip_rows t
     GROUP BY 1, 2, 3, 4, 5;
$$;

-- 025's compaction (with 023's lock_timeout, which CREATE OR REPLACE would otherwise drop), writing the
-- other ends in order of longitude too.
CREATE OR REPLACE FUNCTION compact_area_points(job integer, OUT rows_before bigint, OUT rows_after bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
-- One sort of the points by cell and longitude feeds a GroupAggregate, which hands each group's rows to
-- its array_agg()s in that order (a HashAggregate is not used, so nothing can reorder them).
SET enable_hashagg = off SET work_mem = '256MB' SET lock_timeout = '5s' AS $$
DECLARE
    part constant text := ingest_job_table('trip_area_points', job);
    merged constant text := ingest_job_table('trip_area_points', job) || '_compacted';
    needed boolean;
BEGIN
    -- class + 2: one compaction of a job at a time.
    PERFORM pg_advisory_xact_lock(ingest_lock_class() + 2, job);
    IF NOT EXISTS (SELECT FROM ingest_jobs j WHERE j.id = job AND j.state = 'done') THEN
        RAISE EXCEPTION 'ingest job % is not done: only a done job''s area points are compacted (`trips jobs` lists the jobs)', job;
    END IF;
    EXECUTE format('SELECT count(*), EXISTS (SELECT FROM %I GROUP BY side, cy, cx HAVING count(*) > 1) FROM %I',
                   part, part)
       INTO rows_before, needed;
    IF NOT needed THEN
        rows_after := rows_before;
        RETURN;
    END IF;

    EXECUTE format('CREATE TABLE %I (LIKE trip_area_points INCLUDING DEFAULTS INCLUDING CONSTRAINTS, '
                   'CONSTRAINT %I CHECK (job_id = %s))', merged, part || '_job_id_check', job);
    -- The subquery's ORDER BY names its own columns: the cell, then the unnested points.
    EXECUTE format(
        $sql$INSERT INTO %I (job_id, side, cx, cy, trips, lon, lat, departed_at, other_lon, other_lat, lat_sorted,
                             lon_by_lat, other_lon_sorted, other_lat_by_other_lon)
             SELECT %s, p.side, p.cx, p.cy, count(*), array_agg(p.lon), array_agg(p.lat),
                    array_agg(p.departed_at), array_agg(p.other_lon), array_agg(p.other_lat),
                    array_agg(p.lat ORDER BY p.lat), array_agg(p.lon ORDER BY p.lat, p.lon),
                    array_agg(p.other_lon ORDER BY p.other_lon, p.other_lat),
                    array_agg(p.other_lat ORDER BY p.other_lon, p.other_lat)
               FROM (SELECT r.side, r.cy, r.cx, unnest(r.lon) AS lon, unnest(r.lat) AS lat,
                            unnest(r.departed_at) AS departed_at,
                            unnest(r.other_lon) AS other_lon, unnest(r.other_lat) AS other_lat
                       FROM %I r
                      ORDER BY side, cy, cx, lon, lat, departed_at, other_lon, other_lat) AS p
              GROUP BY p.side, p.cy, p.cx$sql$,
        merged, job, part);
    GET DIAGNOSTICS rows_after = ROW_COUNT;
    EXECUTE format('CREATE INDEX %I ON %I (side, cy, cx) INCLUDE (trips)', merged || '_cell', merged);

    EXECUTE format('ALTER TABLE trip_area_points DETACH PARTITION %I', part);
    EXECUTE format('DROP TABLE %I', part);
    EXECUTE format('ALTER TABLE %I RENAME TO %I', merged, part);
    EXECUTE format('ALTER INDEX %I RENAME TO %I', merged || '_cell', part || '_cell');
    EXECUTE format('ALTER TABLE trip_area_points ATTACH PARTITION %I FOR VALUES IN (%s)', part, job);
END
$$;

-- 020's trips with both ends in the box [x0, x1] x [y0, y1]: the pairs of I, then the band's level-3
-- cells. A cell wholly in the box counts the slice of its rows' other ends whose longitude is in range
-- and whose latitude is too; a cell the box's edge cuts tests both ends of every point, as in 020.
-- (All bounds fit in integer: |longitude| <= 180 degrees is 1.8e9 stored.)
CREATE OR REPLACE FUNCTION trip_box_both(x0 integer, y0 integer, x1 integer, y1 integer) RETURNS bigint
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
         + (SELECT count(*)
              FROM (SELECT s.lat_lo, s.lat_hi, unnest(s.ys[s.i0:s.i1]) AS lat FROM slice s) AS u
             WHERE u.lat BETWEEN u.lat_lo AND u.lat_hi)
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
