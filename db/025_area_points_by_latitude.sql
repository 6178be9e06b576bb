-- 025: each row of points also keeps its longitudes in order of latitude, and a polygon's cut cell counts
-- the points beyond its edge's reach by binary search.
--
-- In a level-3 cell that only one segment of a polygon comes near (024), the segment's line crosses the
-- cell between two longitudes and between two latitudes. Every point of the cell left of the first span (or
-- right of it, below or above the second) is on one known side of the line, so only the points within the
-- narrower span need the cross product of 018. A row's points are in order of longitude (015), so the
-- longitudes are a slice found by width_bucket; lat_sorted (015) has the latitudes in order, and now
-- lon_by_lat has the longitude paired with each of them, so the latitudes are a slice too. On the 36
-- polygons by origin or destination of the 10M benchmark, the points tested fell to about a quarter (a
-- 7 km polygon over Turin: 15,125 of 58,724), for 4 bytes more per point.
--
-- The rows already loaded get the column here (about 20 s per 10M trips); the loader writes it, and
-- compact_area_points() and rebuild_area_counts() build it.

ALTER TABLE trip_area_points ADD COLUMN lon_by_lat integer[];   -- the longitudes, paired with lat_sorted
UPDATE trip_area_points p
   SET lon_by_lat = (SELECT array_agg(u.lon ORDER BY u.lat, u.lon) FROM unnest(p.lon, p.lat) AS u(lon, lat));
ALTER TABLE trip_area_points ALTER COLUMN lon_by_lat SET NOT NULL;

-- 016's rebuild, with lon_by_lat, and the columns named (a table altered by hand may have them in another
-- order).
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
                                  lat_sorted, lon_by_lat)
    SELECT t.job_id, e.side, floor(e.lon::float8 / 10000), floor(e.lat::float8 / 10000), count(*),
           array_agg(e.lon ORDER BY e.lon, e.lat, t.departed_at, e.other_lon, e.other_lat),
           array_agg(e.lat ORDER BY e.lon, e.lat, t.departed_at, e.other_lon, e.other_lat),
           array_agg(t.departed_at ORDER BY e.lon, e.lat, t.departed_at, e.other_lon, e.other_lat),
           array_agg(e.other_lon ORDER BY e.lon, e.lat, t.departed_at, e.other_lon, e.other_lat),
           array_agg(e.other_lat ORDER BY e.lon, e.lat, t.departed_at, e.other_lon, e.other_lat),
           array_agg(e.lat ORDER BY e.lat),
           array_agg(e.lon ORDER BY e.lat, e.lon)
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

-- 022's compaction (with 023's lock_timeout, which CREATE OR REPLACE would otherwise drop), writing
-- lon_by_lat too.
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
                             lon_by_lat)
             SELECT %s, p.side, p.cx, p.cy, count(*), array_agg(p.lon), array_agg(p.lat),
                    array_agg(p.departed_at), array_agg(p.other_lon), array_agg(p.other_lat),
                    array_agg(p.lat ORDER BY p.lat), array_agg(p.lon ORDER BY p.lat, p.lon)
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


-- 024's count over all time. In a cut cell with one edge (x0, y0, dx, dy), the edge's line meets the
-- cell's latitudes at longitudes between x_lo and x_hi, and its longitudes at latitudes between y_lo and y_hi
-- (stored coordinates, widened by 1e-9 degree and clamped to just outside the cell). The narrower span is
-- used: along longitude, a point left of x_lo is left of the line (in the area, as 024 orients the edges,
-- when dy > 0) and a point right of x_hi is right of it (in the area when dy < 0); along latitude, a point
-- below y_lo is in the area when dx < 0, above y_hi when dx > 0. Those points are counted by width_bucket;
-- the slice between is listed and tested as in 024. A cut cell without one edge lists all its points.
CREATE OR REPLACE FUNCTION trip_area_count(area geometry, box box2d, side smallint) RETURNS bigint
LANGUAGE plpgsql STABLE SET jit = off SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    IF box IS NOT NULL THEN
        RETURN trip_box_count(side, trip_coord_from(ST_XMin(box)), trip_coord_from(ST_YMin(box)),
                              trip_coord_to(ST_XMax(box)), trip_coord_to(ST_YMax(box)));
    END IF;
    IF ST_GeometryType(area) IN ('ST_Polygon', 'ST_MultiPolygon') THEN
        RETURN (
        WITH cell AS MATERIALIZED (
            SELECT c.*, s.x_lo, s.x_hi, s.y_lo, s.y_hi, s.x_hi - s.x_lo <= s.y_hi - s.y_lo AS by_lon
              FROM trip_area_polygon_cells(area, side) AS c
              LEFT JOIN LATERAL (
                    SELECT floor((least(l.xa, l.xb) - 1e-9) * 1e7)::integer AS x_lo,
                           ceil((greatest(l.xa, l.xb) + 1e-9) * 1e7)::integer AS x_hi,
                           floor((least(l.ya, l.yb) - 1e-9) * 1e7)::integer AS y_lo,
                           ceil((greatest(l.ya, l.yb) + 1e-9) * 1e7)::integer AS y_hi
                      FROM (SELECT c.cx * 1e-3::float8 AS x0, (c.cx + 1) * 1e-3::float8 AS x1,
                                   c.cy * 1e-3::float8 AS y0, (c.cy + 1) * 1e-3::float8 AS y1) AS b
                     CROSS JOIN LATERAL (   -- the line at the cell's bottom and top, left and right side
                            SELECT least(greatest(coalesce(c.x0 + c.dx * (b.y0 - c.y0) / nullif(c.dy, 0), b.x0 - 1e-3),
                                                  b.x0 - 1e-3), b.x1 + 1e-3),
                                   least(greatest(coalesce(c.x0 + c.dx * (b.y1 - c.y0) / nullif(c.dy, 0), b.x1 + 1e-3),
                                                  b.x0 - 1e-3), b.x1 + 1e-3),
                                   least(greatest(coalesce(c.y0 + c.dy * (b.x0 - c.x0) / nullif(c.dx, 0), b.y0 - 1e-3),
                                                  b.y0 - 1e-3), b.y1 + 1e-3),
                                   least(greatest(coalesce(c.y0 + c.dy * (b.x1 - c.x0) / nullif(c.dx, 0), b.y1 + 1e-3),
                                                  b.y0 - 1e-3), b.y1 + 1e-3)) AS l(xa, xb, ya, yb)
                     WHERE c.dx IS NOT NULL) AS s ON true
        ), part AS MATERIALIZED (   -- each cut cell's points in the order its span needs, read once
            SELECT c.*, r.trips AS n,
                   CASE WHEN c.by_lon OR c.dx IS NULL THEN r.lon || '{}'::integer[] ELSE r.lon_by_lat || '{}'::integer[] END AS xs,
                   CASE WHEN c.by_lon OR c.dx IS NULL THEN r.lat || '{}'::integer[] ELSE r.lat_sorted || '{}'::integer[] END AS ys
              FROM cell c
              JOIN trip_area_points r ON r.side = trip_area_count.side AND r.cy = c.cy AND r.cx = c.cx
             WHERE NOT c.inside
        ), slice AS MATERIALIZED (   -- the points counted by their side of the line, and the slice to test
            SELECT p.x0, p.y0, p.dx, p.dy, p.margin, p.xs, p.ys, b.n_lo + 1 AS i0, b.n_hi AS i1,
                   CASE WHEN p.dx IS NULL THEN 0
                        WHEN p.by_lon THEN CASE WHEN p.dy > 0 THEN b.n_lo ELSE p.n - b.n_hi END
                        ELSE CASE WHEN p.dx < 0 THEN b.n_lo ELSE p.n - b.n_hi END
                   END AS known
              FROM part p
             CROSS JOIN LATERAL (   -- how many points are below the span, and how many not above it
                    SELECT CASE WHEN p.dx IS NULL THEN 0
                                WHEN p.by_lon THEN width_bucket(p.x_lo - 1, p.xs) ELSE width_bucket(p.y_lo - 1, p.ys) END,
                           CASE WHEN p.dx IS NULL THEN p.n
                                WHEN p.by_lon THEN width_bucket(p.x_hi, p.xs) ELSE width_bucket(p.y_hi, p.ys) END
                    ) AS b(n_lo, n_hi)
        )
        SELECT (SELECT coalesce(sum(trips), 0) FROM cell WHERE inside)
             + (SELECT coalesce(sum(known), 0) FROM slice)
             + (SELECT count(*)
                  FROM (SELECT p.x0, p.y0, p.dx, p.dy, p.margin,
                               unnest(p.xs[p.i0:p.i1]) AS lon, unnest(p.ys[p.i0:p.i1]) AS lat
                          FROM slice p) AS u
                 CROSS JOIN LATERAL (SELECT u.dx * (u.lat / 1e7::float8 - u.y0) - u.dy * (u.lon / 1e7::float8 - u.x0))
                                    AS v(side)
                 WHERE CASE WHEN u.dx IS NULL OR abs(v.side) <= u.margin
                            THEN trip_area_holds(area, box, u.lon, u.lat)
                            ELSE v.side > 0
                       END));
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
