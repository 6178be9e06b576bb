-- 031: the loader sends its pairs of cells before they outgrow its tally limit, and compaction merges a
-- job's rows of each pair.
--
-- Since 030 each pair of level-2 cells keeps its days. The loader held the day of departure of every trip
-- of the file with its pair until the end of the file: 296 MB for a file of 10M trips against 217 MB for
-- 1M, and growing with the file. Its tally limit bounded the group tally and the points, not that.
--
-- Now it sends the pairs, and forgets them, whenever they hold five times --tally-limit days (a day takes
-- 4 bytes, a buffered point 24: every 10M trips by default), and at the end of the file. A pair of a larger
-- file so has one row per send that met it, as a level-3 cell's points have. The readers already add up
-- the rows of a pair (one per job until now): the trips of a row, and a row's trips up to a day, are its
-- own part of the pair's. Nothing else changes for them.
--
-- compact_area_points(job), which runs once the job is done, now also merges the job's rows of each pair
-- into one: the days of its rows united, the trips of a day summed, the trips up to each day summed again
-- in order. The new rows replace the old in the same transaction; a job whose pairs have one row each (a
-- file of up to 10M trips, by default) is left alone. Its result still counts the area points' rows.

-- Merges the rows of each pair of job `job` into one: about 35 s for the 9.8 million (pair, day) entries of
-- 10M trips sent in ten parts. The job's rows are found by a scan of trip_area_pairs (it has no index by
-- job). Called by compact_area_points, whose settings it runs under:
-- enable_hashagg off, so each aggregate below is a GroupAggregate over rows in the order of its keys.
--
-- A row's i-th day had its trips up to that day less those up to the day before: unnest() pads the
-- shorter arrays with NULLs, so pairing trips_to_day with 0 || trips_to_day gives each day the trips up to
-- the day before it (and one last row with no day). Subscripting the array instead would detoast it again
-- for every element. The rows come sorted by pair, so each pair's days are sorted on their own
-- (an incremental sort), not all days of the job at once.
CREATE FUNCTION compact_area_pairs(job integer) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH sent AS (
        DELETE FROM trip_area_pairs p
         WHERE p.job_id = job
     RETURNING p.ocx, p.ocy, p.dcx, p.dcy, p.days, p.trips_to_day
    ), per_day AS (
        SELECT s.ocx, s.ocy, s.dcx, s.dcy, d.day, sum(d.to_day - d.to_day_before)::integer AS trips
          FROM (SELECT * FROM sent ORDER BY ocx, ocy, dcx, dcy) AS s
         CROSS JOIN LATERAL unnest(s.days, s.trips_to_day, 0 || s.trips_to_day) AS d(day, to_day, to_day_before)
         WHERE d.day IS NOT NULL
         GROUP BY 1, 2, 3, 4, 5
    ), to_day AS (
        SELECT c.*, (sum(c.trips) OVER (PARTITION BY c.ocx, c.ocy, c.dcx, c.dcy ORDER BY c.day))::integer AS to_day
          FROM per_day c
    )
    INSERT INTO trip_area_pairs (job_id, ocx, ocy, dcx, dcy, trips, days, trips_to_day)
    SELECT job, t.ocx, t.ocy, t.dcx, t.dcy, max(t.to_day), array_agg(t.day ORDER BY t.day),
           array_agg(t.to_day ORDER BY t.day)
      FROM to_day t
     GROUP BY t.ocx, t.ocy, t.dcx, t.dcy;
$$;
REVOKE EXECUTE ON FUNCTION compact_area_pairs(integer) FROM PUBLIC;

-- 028's compaction, which first merges the job's pairs when one of them has several rows.
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
    IF EXISTS (SELECT FROM trip_area_pairs p WHERE p.job_id = job
                GROUP BY p.ocx, p.ocy, p.dcx, p.dcy HAVING count(*) > 1) THEN
        PERFORM compact_area_pairs(job);
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
                             lon_by_lat, other_lon_sorted, other_lat_by_other_lon, departed_sorted)
             SELECT %s, p.side, p.cx, p.cy, count(*), array_agg(p.lon), array_agg(p.lat),
                    array_agg(p.departed_at), array_agg(p.other_lon), array_agg(p.other_lat),
                    array_agg(p.lat ORDER BY p.lat), array_agg(p.lon ORDER BY p.lat, p.lon),
                    array_agg(p.other_lon ORDER BY p.other_lon, p.other_lat),
                    array_agg(p.other_lat ORDER BY p.other_lon, p.other_lat),
                    array_agg(p.departed_at ORDER BY p.departed_at)
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
