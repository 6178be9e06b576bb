-- 028: a question with an explicit window of whole days reads counts, not every point of the area.
--
-- Until now the cells' counts (009) had no time, so a window that did not hold every trip fell back to
-- 010's trip_area_departures: every point of every level-3 cell in the area, with its departure, tested one
-- by one. That is the plain SQL's work, in proportion to the area's trips: 1.2 s for an 11 km box over Turin
-- by origin with a four-week window at 10M trips, against 3.5 ms for the same box over all time.
--
-- Now each cell keeps when its trips departed:
--
--   levels 1 and 2   trip_area_counts.days, trips_to_day: the days with departures (days since
--                    2000-01-01, ascending) and the trips departing up to the end of each, so the trips
--                    of days [d0, d1) are two binary searches (width_bucket) and a subtraction
--   level 3          trip_area_points.departed_sorted: the row's departures in order, so the trips of any
--                    window [since, until) are two binary searches
--
-- trip_area_count_between() then answers by origin or destination like the all-time count: cells wholly
-- inside the area count their trips in the window, and only the points of level-3 cells cut by the edge
-- are tested, with their departure. Levels 1 and 2 know days, not seconds, so this needs since and until
-- at midnight (a date given to weekly_avg is); any other window keeps 010's path, as do by => 'both' and
-- weekly_counts. For 'either', the two one-end counts take the new path and 'both' the old one.
--
-- The arrays are ~4 bytes per day per level-1 or level-2 cell with trips (3,258 cells for 10M generated
-- trips over three years: 15 MB) and 8 bytes per point. The loader writes them; the rows already loaded get
-- them here, from their trips (trip_area_days) and their points.

ALTER TABLE trip_area_counts ADD COLUMN days integer[],          -- levels 1, 2: days with departures
                             ADD COLUMN trips_to_day integer[];  -- trips departing up to the end of each
ALTER TABLE trip_area_points ADD COLUMN departed_sorted timestamp[];  -- the departures, in order

-- The day of a departure, as the arrays count them: days since 2000-01-01.
CREATE FUNCTION trip_day(t timestamp) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT t::date - date '2000-01-01' $$;

-- The days and trips_to_day of every level-1 and level-2 cell of every job, from the trips.
CREATE FUNCTION trip_area_days()
RETURNS TABLE (job_id integer, side smallint, level smallint, cx integer, cy integer, days integer[],
               trips_to_day integer[])
LANGUAGE sql STABLE AS $$
    SELECT d.job_id, d.side, d.level, d.cx, d.cy, array_agg(d.day ORDER BY d.day),
           array_agg(d.to_day ORDER BY d.day)
      FROM (SELECT c.*, sum(c.trips) OVER (PARTITION BY c.job_id, c.side, c.level, c.cx, c.cy ORDER BY c.day)::integer
                        AS to_day
              FROM (SELECT t.job_id, e.side, l.level,
                           floor(e.lon::float8 / trip_area_cell_size(l.level))::integer AS cx,
                           floor(e.lat::float8 / trip_area_cell_size(l.level))::integer AS cy,
                           trip_day(t.departed_at) AS day, count(*) AS trips
                      FROM trip_rows t
                     CROSS JOIN LATERAL (VALUES (1::smallint, t.origin_lon, t.origin_lat),
                                                (2::smallint, t.dest_lon, t.dest_lat)) AS e(side, lon, lat)
                     CROSS JOIN (VALUES (1::smallint), (2::smallint)) AS l(level)
                     GROUP BY 1, 2, 3, 4, 5, 6) AS c) AS d
     GROUP BY 1, 2, 3, 4, 5
$$;

UPDATE trip_area_counts c
   SET days = d.days, trips_to_day = d.trips_to_day
  FROM trip_area_days() AS d
 WHERE c.job_id = d.job_id AND c.side = d.side AND c.level = d.level AND c.cy = d.cy AND c.cx = d.cx;
UPDATE trip_area_points SET departed_sorted = ARRAY(SELECT t FROM unnest(departed_at) AS t ORDER BY t);
ALTER TABLE trip_area_points ALTER COLUMN departed_sorted SET NOT NULL;
ALTER TABLE trip_area_counts ADD CONSTRAINT trip_area_counts_days
    CHECK ((days IS NOT NULL) = (level < 3) AND (trips_to_day IS NOT NULL) = (level < 3));

-- 026's rebuild, with the days of levels 1 and 2 and the departures in order.
CREATE OR REPLACE FUNCTION rebuild_area_counts() RETURNS void
LANGUAGE sql AS $$
    TRUNCATE trip_area_counts, trip_area_points, trip_area_pairs;
    INSERT INTO trip_area_counts (job_id, side, level, cx, cy, trips, days, trips_to_day)
    SELECT c.job_id, c.side, c.level, c.cx, c.cy, c.trips, d.days, d.trips_to_day
      FROM (SELECT t.job_id, e.side, l.level,
                   floor(e.lon::float8 / trip_area_cell_size(l.level))::integer AS cx,
                   floor(e.lat::float8 / trip_area_cell_size(l.level))::integer AS cy, count(*) AS trips
              FROM trip_rows t
             CROSS JOIN LATERAL (VALUES (1::smallint, t.origin_lon, t.origin_lat),
                                        (2::smallint, t.dest_lon, t.dest_lat)) AS e(side, lon, lat)
             CROSS JOIN (VALUES (1::smallint), (2::smallint), (3::smallint)) AS l(level)
             GROUP BY 1, 2, 3, 4, 5) AS c
      LEFT JOIN trip_area_days() AS d
        ON d.job_id = c.job_id AND d.side = c.side AND d.level = c.level AND d.cy = c.cy AND d.cx = c.cx;
    INSERT INTO trip_area_points (job_id, side, cx, cy, trips, lon, lat, departed_at, other_lon, other_lat,
                                  lat_sorted, lon_by_lat, other_lon_sorted, other_lat_by_other_lon, departed_sorted)
    SELECT t.job_id, e.side, floor(e.lon::float8 / 10000), floor(e.lat::float8 / 10000), count(*),
           array_agg(e.lon ORDER BY e.lon, e.lat, t.departed_at, e.other_lon, e.other_lat),
           array_agg(e.lat ORDER BY e.lon, e.lat, t.departed_at, e.other_lon, e.other_lat),
           array_agg(t.departed_at ORDER BY e.lon, e.lat, t.departed_at, e.other_lon, e.other_lat),
           array_agg(e.other_lon ORDER BY e.lon, e.lat, t.departed_at, e.other_lon, e.other_lat),
           array_agg(e.other_lat ORDER BY e.lon, e.lat, t.departed_at, e.other_lon, e.other_lat),
           array_agg(e.lat ORDER BY e.lat),
           array_agg(e.lon ORDER BY e.lat, e.lon),
           array_agg(e.other_lon ORDER BY e.other_lon, e.other_lat),
           array_agg(e.other_lat ORDER BY e.other_lon, e.other_lat),
           array_agg(t.departed_at ORDER BY t.departed_at)
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

-- 026's compaction, writing the departures in order too.
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

-- The trips of a level-1 or level-2 count row departing on days [d0, d1).
CREATE FUNCTION trip_days_between(days integer[], trips_to_day integer[], d0 integer, d1 integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(trips_to_day[width_bucket(d1 - 1, days)], 0) - coalesce(trips_to_day[width_bucket(d0 - 1, days)], 0)
$$;

-- Trips with their `side` end in the area departing in [since, until), both at midnight. The cells are
-- those of the all-time count: from the edges for a polygon (024), from the box or GEOS otherwise (018).
-- Cells wholly inside count their trips in the window: levels 1 and 2 by day, level 3 from its sorted
-- departures (a departure t is in the window when since <= t < until, so the count is the departures
-- up to until - 1 us less those up to since - 1 us; timestamps are whole microseconds). Cut level-3 cells
-- test each point as the plain SQL does, and its departure.
CREATE FUNCTION trip_area_count_between(area geometry, box box2d, side smallint, since timestamp, until timestamp)
RETURNS bigint
LANGUAGE plpgsql STABLE SET jit = off SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    d0 constant integer := trip_day(since);
    d1 constant integer := trip_day(until);
    polygon constant boolean := box IS NULL AND ST_GeometryType(area) IN ('ST_Polygon', 'ST_MultiPolygon');
BEGIN
    IF since <> date_trunc('day', since) OR until <> date_trunc('day', until) THEN
        RAISE EXCEPTION 'trip_area_count_between counts whole days: [%, %) does not start and end at midnight',
                        since, until;
    END IF;
    RETURN (
    WITH cell AS MATERIALIZED (
        SELECT c.level, c.cx, c.cy, c.inside FROM trip_area_polygon_cells(area, side) AS c WHERE polygon
        UNION ALL
        SELECT c.level, c.cx, c.cy, c.inside FROM trip_area_cells(area, box, side, true) AS c WHERE NOT polygon
    )
    SELECT (SELECT coalesce(sum(trip_days_between(k.days, k.trips_to_day, d0, d1)), 0)
              FROM cell c
              JOIN trip_area_counts k
                ON k.side = trip_area_count_between.side AND k.level = c.level AND k.cy = c.cy AND k.cx = c.cx
             WHERE c.level < 3)
         + (SELECT coalesce(sum(CASE
                       WHEN c.inside THEN width_bucket(until - interval '1 microsecond', r.departed_sorted)
                                        - width_bucket(since - interval '1 microsecond', r.departed_sorted)
                       ELSE (SELECT count(*) FROM unnest(r.lon, r.lat, r.departed_at) AS u(lon, lat, departed_at)
                              WHERE u.departed_at >= since AND u.departed_at < until
                                AND trip_area_holds(area, box, u.lon, u.lat))
                   END), 0)
              FROM cell c
              JOIN trip_area_points r ON r.side = trip_area_count_between.side AND r.cy = c.cy AND r.cx = c.cx
             WHERE c.level = 3));
END
$$;

-- 016's weekly_trips: by origin or destination, a window of whole days that does not hold every trip is
-- counted by trip_area_count_between; so are the one-end counts of 'either'.
CREATE OR REPLACE FUNCTION weekly_trips(area geometry, by text DEFAULT 'origin',
                                        since timestamp DEFAULT NULL, until timestamp DEFAULT NULL)
RETURNS TABLE (average double precision, trips bigint, window_start timestamp, window_end timestamp,
               weeks double precision)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    w record;
    n bigint;
    box box2d;
    by_day boolean;   -- the window starts and ends at midnight
BEGIN
    IF by IS NULL OR by NOT IN ('origin', 'destination', 'both', 'either') THEN
        RAISE EXCEPTION 'unknown by => %', coalesce(quote_literal(by), 'NULL')
            USING HINT = 'by is ''origin'', ''destination'', ''both'' or ''either'': which end of a trip must be in the area.';
    END IF;
    area := trip_area_checked(area);
    box := trip_area_box(area);
    w := trip_window(since, until);
    IF w.window_start IS NULL THEN
        RETURN QUERY SELECT NULL::float8, 0::bigint, NULL::timestamp, NULL::timestamp, NULL::float8;
        RETURN;
    END IF;
    by_day := w.window_start = date_trunc('day', w.window_start) AND w.window_end = date_trunc('day', w.window_end);
    IF by IN ('origin', 'destination') AND w.holds_all THEN
        n := trip_area_count(area, box, CASE by WHEN 'origin' THEN 1 ELSE 2 END::smallint);
    ELSIF by IN ('origin', 'destination') AND by_day THEN
        n := trip_area_count_between(area, box, CASE by WHEN 'origin' THEN 1 ELSE 2 END::smallint,
                                     w.window_start, w.window_end);
    ELSIF by IN ('origin', 'destination') THEN
        n := (SELECT count(*) FROM trip_area_departures(area, box, CASE by WHEN 'origin' THEN 1 ELSE 2 END::smallint,
                                                          w.window_start, w.window_end, false));
    ELSIF w.holds_all THEN
        n := trip_area_both(area, box);
        IF by = 'either' THEN   -- origin in + destination in - both in
            n := trip_area_count(area, box, 1::smallint) + trip_area_count(area, box, 2::smallint) - n;
        END IF;
    ELSE
        n := (SELECT count(*) FROM trip_area_departures(area, box, 1::smallint, w.window_start, w.window_end, true));
        IF by = 'either' AND by_day THEN
            n := trip_area_count_between(area, box, 1::smallint, w.window_start, w.window_end)
               + trip_area_count_between(area, box, 2::smallint, w.window_start, w.window_end) - n;
        ELSIF by = 'either' THEN
            n := (SELECT count(*) FROM trip_area_departures(area, box, 1::smallint, w.window_start, w.window_end, false))
               + (SELECT count(*) FROM trip_area_departures(area, box, 2::smallint, w.window_start, w.window_end, false))
               - n;
        END IF;
    END IF;
    RETURN QUERY SELECT n / w.weeks, n, w.window_start, w.window_end, w.weeks;
END
$$;
