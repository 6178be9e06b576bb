-- 009: similar trips, grouped: same region, origin and destination in the same grid cells (ST_SnapToGrid)
-- and departure in the same time-of-day bucket, whatever the day (08:10 on a Monday and 08:20 on a Friday
-- are alike).
--
-- Groups are counted from the trips, not tallied while loading: on sparse data most trips are alone in
-- their group, so a tally kept with every file costs about what the trips cost, in bytes, in load time
-- and in merges (docs/store.md). Instead there are two parts, as in the store of the trips themselves: a
-- large one counted once, and the trips loaded since, counted when asked:
--
--   trip_groups (materialized)   the groups of the jobs done when it was last refreshed: refresh_trip_groups(),
--                                `trips refresh`, or a pg_cron schedule (scripts/schedule.sql); maps and BI
--                                tools read it (QGIS reads its geometry columns)
--   trip_group_tally(jobs)       the groups of some jobs' trips, counted from trip_rows, whose rows carry
--                                their job
--   trip_groups_at(cell_factor, bucket_minutes)
--                                the snapshot and the trips since, added up: current, at the stored
--                                resolution or a coarser one
--   trip_groups_live             the same at the stored resolution
--   trip_groups_top(n, ...)      the N largest, current, reading the snapshot through its indexes
--
-- So a refresh costs one pass over the trips, and a current answer costs the trips loaded since the last
-- refresh, whatever the database holds.
--
-- Coarser resolutions, without reloading: cells of an odd number of stored cells (3x, 5x, ...) and buckets
-- of a multiple of the stored length that divides a day (with 60 minutes: 120, 180, 240, 360, 480, 720,
-- 1440). Why odd: ST_SnapToGrid's cells are centred on the grid points, so a cell m times larger is made of
-- whole stored cells only when m is odd; with m = 2 each coarse edge would cut stored cells in half, and
-- their trips could not be split without the raw points. Stored cell k belongs to the coarse cell
-- round(k / m), which for odd m never ties; the coarse cell centre is round(k / m) * m * cell_deg. This is
-- ST_SnapToGrid(point, m * cell_deg) except for points within floating-point error of a coarse cell edge.
--
-- The functions that read trip_rows are VOLATILE, for the reason 008_weekly_avg.sql gives: merges.

-- The grid: one row. A point's cell is what ST_SnapToGrid(point, cell_deg) gives, the grid point nearest
-- to it, kept as integers (round(lon / cell_deg), round(lat / cell_deg)); a departure's bucket is its
-- minutes since midnight divided by bucket_min. The defaults, 0.02 degree (2226 m north-south, 1574 m
-- east-west at Turin) and 60 minutes, are chosen in docs/store.md. After changing them, run
-- `trips refresh`.
CREATE TABLE trip_group_grid (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    cell_deg   double precision NOT NULL DEFAULT 0.02 CHECK (cell_deg > 0 AND cell_deg <= 1),
    bucket_min integer NOT NULL DEFAULT 60 CHECK (bucket_min > 0 AND 1440 % bucket_min = 0)
);
INSERT INTO trip_group_grid DEFAULT VALUES;

-- Which jobs the snapshot counts: every job up to max_job but those in missing_jobs, the jobs that were
-- not done when it was refreshed (loads still running then). Jobs only ever become done, never undone, and
-- a job's trips are in trip_rows exactly when it is done, so the trips since the snapshot are those of the
-- jobs above max_job or in missing_jobs. A job id alone would not do: concurrent loaders finish out of
-- order.
CREATE TABLE trip_groups_snapshot (
    singleton    boolean   PRIMARY KEY DEFAULT true CHECK (singleton),
    max_job      integer   NOT NULL DEFAULT 0,
    missing_jobs integer[] NOT NULL DEFAULT '{}',
    refreshed_at timestamptz
);
INSERT INTO trip_groups_snapshot DEFAULT VALUES;

-- The condition on trip_rows.job_id that picks the trips the snapshot counts (since = false) or the trips
-- loaded since (since = true), as SQL with the numbers written in, so that the planner skips the pieces it
-- rules out.
CREATE FUNCTION trip_groups_jobs(since boolean) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN since THEN format('(job_id > %s OR job_id = ANY (%L::integer[]))', max_job, missing_jobs)
                ELSE format('(job_id <= %s AND job_id <> ALL (%L::integer[]))', max_job, missing_jobs) END
      FROM trip_groups_snapshot
$$;

-- The groups of the trips `jobs` picks, at the stored resolution: one row per group and datasource, the
-- cells as grid indices (the centre is x * cell_deg, y * cell_deg).
CREATE FUNCTION trip_group_tally(jobs text)
RETURNS TABLE (region_id smallint, ox integer, oy integer, dx integer, dy integer, bucket integer,
               datasource_id smallint, trips bigint, first_departure timestamp, last_departure timestamp)
LANGUAGE plpgsql VOLATILE
-- Hashing one entry per group: with the default 4 MB of work_mem it spills to disk.
SET work_mem = '256MB'
AS $$
DECLARE
    grid trip_group_grid;
BEGIN
    SELECT * INTO grid FROM trip_group_grid;
    -- The grid is written in as constants: joined as a table, it would make the planner expect thousands
    -- of times the trips, and compile and parallelise the query for that.
    RETURN QUERY EXECUTE format($q$
        SELECT t.region_id,
               round((t.origin_lon / 1e7::float8) / %1$s::float8)::integer,
               round((t.origin_lat / 1e7::float8) / %1$s::float8)::integer,
               round((t.dest_lon / 1e7::float8) / %1$s::float8)::integer,
               round((t.dest_lat / 1e7::float8) / %1$s::float8)::integer,
               (date_part('hour', t.departed_at) * 60 + date_part('minute', t.departed_at))::integer / %2$s,
               t.datasource_id, count(*), min(t.departed_at), max(t.departed_at)
          FROM trip_rows t
         WHERE %3$s
         GROUP BY 1, 2, 3, 4, 5, 6, 7$q$, grid.cell_deg, grid.bucket_min, jobs);
END
$$;

-- The resolution asked for, checked: stored buckets per asked bucket, the asked cell in degrees and the
-- asked bucket in minutes (NULL: the stored one).
CREATE FUNCTION trip_group_resolution(cell_factor integer, bucket_minutes integer,
                                      OUT per integer, OUT cell double precision, OUT minutes integer)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    grid trip_group_grid;
BEGIN
    SELECT * INTO grid FROM trip_group_grid;
    minutes := coalesce(bucket_minutes, grid.bucket_min);
    IF cell_factor IS NULL OR cell_factor < 1 OR cell_factor % 2 = 0 THEN
        RAISE EXCEPTION 'cell factor % is not supported', cell_factor
            USING HINT = 'Use an odd multiple of the stored cell (1, 3, 5, ...): coarser cells must be made of '
                         'whole stored cells, and ST_SnapToGrid''s cells are centred on the grid points.';
    END IF;
    IF minutes < 1 OR minutes % grid.bucket_min <> 0 OR 1440 % minutes <> 0 THEN
        RAISE EXCEPTION 'a bucket of % minutes is not supported', minutes
            USING HINT = format('Use a multiple of the stored %s minutes that divides a day (1440 minutes).',
                                grid.bucket_min);
    END IF;
    per := minutes / grid.bucket_min;
    cell := grid.cell_deg * cell_factor;
END
$$;

-- A group as users see it: its region, its cells as points (the cell centres), its departure bucket,
-- trips, first and last departure, trips per datasource, and the desire line from cell to cell.
CREATE TYPE trip_group AS (
    region           text,
    origin_cell      geometry,
    destination_cell geometry,
    time_bucket      integer,
    bucket_start     time,
    trips            bigint,
    first_departure  timestamp,
    last_departure   timestamp,
    by_datasource    jsonb,
    desire_line      geometry
);

-- The groups at a resolution, as users see them (names, the cells as points, the desire line, trips per
-- datasource), from the trips `jobs` picks, with the snapshot's groups added to them: 'none' of them,
-- 'all', or only those 'touched' by the trips (found through the snapshot's key index).
CREATE FUNCTION trip_groups_built(cell_factor integer, bucket_minutes integer, jobs text, snapshot text)
RETURNS SETOF trip_group
LANGUAGE plpgsql VOLATILE
SET work_mem = '256MB'   -- see trip_group_tally
AS $$
DECLARE
    res record;
    cell_deg double precision := (SELECT g.cell_deg FROM trip_group_grid g);
BEGIN
    res := trip_group_resolution(cell_factor, bucket_minutes);
    -- Dynamic, so that the snapshot is not read while it is being refreshed from this function.
    RETURN QUERY EXECUTE format($q$
    WITH tally AS MATERIALIZED (
        SELECT * FROM trip_group_tally(%1$L)
    ), parts AS (   -- per stored group and datasource
        SELECT region_id, ox, oy, dx, dy, bucket, datasource_id, trips, first_departure, last_departure
          FROM tally
        %2$s
    ), coarse AS (
        SELECT region_id, datasource_id,
               round(ox::float8 / %3$s)::integer AS ox, round(oy::float8 / %3$s)::integer AS oy,
               round(dx::float8 / %3$s)::integer AS dx, round(dy::float8 / %3$s)::integer AS dy,
               bucket / %4$s AS bucket,
               sum(trips) AS trips, min(first_departure) AS first, max(last_departure) AS last
          FROM parts
         GROUP BY 1, 2, 3, 4, 5, 6, 7
    )
    SELECT r.name,
           ST_SetSRID(ST_MakePoint(g.ox * %5$s::float8, g.oy * %5$s::float8), 4326),
           ST_SetSRID(ST_MakePoint(g.dx * %5$s::float8, g.dy * %5$s::float8), 4326),
           g.bucket,
           time '00:00' + make_interval(mins => g.bucket * %6$s),
           sum(g.trips)::bigint,
           min(g.first),
           max(g.last),
           jsonb_object_agg(d.name, g.trips),
           ST_SetSRID(ST_MakeLine(ST_MakePoint(g.ox * %5$s::float8, g.oy * %5$s::float8),
                                  ST_MakePoint(g.dx * %5$s::float8, g.dy * %5$s::float8)), 4326)
      FROM coarse g
      JOIN regions r     ON r.id = g.region_id
      JOIN datasources d ON d.id = g.datasource_id
     GROUP BY r.id, g.ox, g.oy, g.dx, g.dy, g.bucket   -- r.name follows from r.id, the key
    $q$,
    jobs,
    CASE snapshot WHEN 'none' THEN '' ELSE format($snap$
        UNION ALL   -- the snapshot's groups, per datasource again
        SELECT r.id, round(ST_X(s.origin_cell) / %1$s::float8)::integer,
               round(ST_Y(s.origin_cell) / %1$s::float8)::integer,
               round(ST_X(s.destination_cell) / %1$s::float8)::integer,
               round(ST_Y(s.destination_cell) / %1$s::float8)::integer,
               s.time_bucket, d.id, e.value::bigint, s.first_departure, s.last_departure
          FROM trip_groups s
          JOIN regions r ON r.name = s.region
          CROSS JOIN jsonb_each_text(s.by_datasource) AS e
          JOIN datasources d ON d.name = e.key
         WHERE %2$s$snap$, cell_deg, CASE snapshot WHEN 'all' THEN 'true' ELSE format($key$
               (s.region, s.time_bucket, ST_X(s.origin_cell), ST_Y(s.origin_cell), ST_X(s.destination_cell),
                ST_Y(s.destination_cell))
            IN (SELECT r.name, t.bucket, t.ox * %1$s::float8, t.oy * %1$s::float8, t.dx * %1$s::float8,
                       t.dy * %1$s::float8
                  FROM tally t JOIN regions r ON r.id = t.region_id)$key$, cell_deg) END) END,
    cell_factor, res.per, res.cell, res.minutes);
END
$$;

-- The groups, current: the snapshot and the trips since, added up.
CREATE FUNCTION trip_groups_at(cell_factor integer DEFAULT 1, bucket_minutes integer DEFAULT NULL)
RETURNS SETOF trip_group
LANGUAGE sql VOLATILE AS $$
    SELECT * FROM trip_groups_built(cell_factor, bucket_minutes, trip_groups_jobs(true), 'all')
$$;

-- Typed geometry columns, so that map tools see points and lines in EPSG:4326.
CREATE VIEW trip_groups_live AS
SELECT region,
       origin_cell::geometry(Point, 4326)           AS origin_cell,
       destination_cell::geometry(Point, 4326)      AS destination_cell,
       time_bucket, bucket_start, trips, first_departure, last_departure, by_datasource,
       desire_line::geometry(LineString, 4326)      AS desire_line
  FROM trip_groups_at();

-- The snapshot: the groups of the jobs trip_groups_snapshot names.
CREATE MATERIALIZED VIEW trip_groups AS
SELECT region,
       origin_cell::geometry(Point, 4326)           AS origin_cell,
       destination_cell::geometry(Point, 4326)      AS destination_cell,
       time_bucket, bucket_start, trips, first_departure, last_departure, by_datasource,
       desire_line::geometry(LineString, 4326)      AS desire_line
  FROM trip_groups_built(1, NULL, trip_groups_jobs(false), 'none');
CREATE INDEX trip_groups_trips ON trip_groups (trips DESC);          -- the largest groups first
CREATE INDEX trip_groups_region_trips ON trip_groups (region, trips DESC);
CREATE INDEX trip_groups_origin ON trip_groups USING gist (origin_cell);
-- A group by its key: how the groups the trips since the snapshot fall in are found in it.
CREATE INDEX trip_groups_key ON trip_groups (region, time_bucket, ST_X(origin_cell), ST_Y(origin_cell),
                                             ST_X(destination_cell), ST_Y(destination_cell));

-- Rebuild the snapshot from the trips (cost: one pass over them). This is what a schedule runs. The jobs
-- are named before the refresh reads the trips, so a job done in between is left to the trips since (the
-- refresh reads the jobs named, no more); the row lock makes concurrent refreshes take turns. Failed and
-- skipped jobs have no trips and never become done, so only unfinished jobs are missing.
CREATE FUNCTION refresh_trip_groups() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE trip_groups_snapshot
       SET max_job = coalesce((SELECT max(id) FROM ingest_jobs), 0),
           missing_jobs = ARRAY(SELECT id FROM ingest_jobs
                                 WHERE state IN ('queued', 'loading', 'finishing') ORDER BY id),
           refreshed_at = now();
    REFRESH MATERIALIZED VIEW trip_groups;
END
$$;

-- Whether the snapshot holds every done job (no done job is among those trip_groups_jobs(true) picks):
-- then reading it is reading the current groups.
CREATE FUNCTION trip_groups_is_current() RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    current boolean;
BEGIN
    EXECUTE format('SELECT NOT EXISTS (SELECT FROM (SELECT id AS job_id FROM ingest_jobs
                                                     WHERE state = ''done'') AS done
                                        WHERE %s)', trip_groups_jobs(true))
       INTO current;
    RETURN current;
END
$$;

-- trip_groups_top(n, ...) answers "the N largest groups", current, as
--   SELECT * FROM trip_groups_at(cell_factor, bucket_minutes)
--    WHERE (region IS NULL OR region = <region>) AND trips >= min_trips
--    ORDER BY trips DESC, region, time_bucket, ST_X(origin_cell), ST_Y(origin_cell),
--             ST_X(destination_cell), ST_Y(destination_cell)
--    LIMIT n
-- would. At the stored resolution it reads only the trips since the snapshot: the K groups they fall in
-- are built whole (their part in the snapshot found by key), and of the snapshot's other groups the
-- largest are read through its index, in the answer's order: the first N + K of the snapshot hold the
-- first N it has that the trips since did not change. Coarser groups are built whole, then ranked.
CREATE FUNCTION trip_groups_top(n bigint, region text DEFAULT NULL, min_trips bigint DEFAULT 1,
                                cell_factor integer DEFAULT 1, bucket_minutes integer DEFAULT NULL)
RETURNS SETOF trip_groups_live
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    res record;
BEGIN
    res := trip_group_resolution(cell_factor, bucket_minutes);
    IF cell_factor <> 1 OR res.per <> 1 THEN
        RETURN QUERY
        SELECT g.region, g.origin_cell::geometry(Point, 4326), g.destination_cell::geometry(Point, 4326),
               g.time_bucket, g.bucket_start, g.trips, g.first_departure, g.last_departure, g.by_datasource,
               g.desire_line::geometry(LineString, 4326)
          FROM trip_groups_at(cell_factor, bucket_minutes) g
         WHERE (trip_groups_top.region IS NULL OR g.region = trip_groups_top.region)
           AND g.trips >= min_trips
         ORDER BY g.trips DESC, g.region, g.time_bucket, ST_X(g.origin_cell), ST_Y(g.origin_cell),
                  ST_X(g.destination_cell), ST_Y(g.destination_cell)
         LIMIT n;
        RETURN;
    END IF;
    RETURN QUERY
    WITH touched AS MATERIALIZED (
        SELECT * FROM trip_groups_built(1, NULL, trip_groups_jobs(true), 'touched') t
         WHERE trip_groups_top.region IS NULL OR t.region = trip_groups_top.region
    ), untouched AS (
        SELECT * FROM trip_groups s
         WHERE trip_groups_top.region IS NULL OR s.region = trip_groups_top.region
         ORDER BY s.trips DESC, s.region, s.time_bucket, ST_X(s.origin_cell), ST_Y(s.origin_cell),
                  ST_X(s.destination_cell), ST_Y(s.destination_cell)
         LIMIT n + (SELECT count(*) FROM touched)
    ), answer AS (
        SELECT u.* FROM untouched u
         WHERE NOT EXISTS (SELECT FROM touched t
                            WHERE t.region = u.region AND t.time_bucket = u.time_bucket
                              AND ST_X(t.origin_cell) = ST_X(u.origin_cell)
                              AND ST_Y(t.origin_cell) = ST_Y(u.origin_cell)
                              AND ST_X(t.destination_cell) = ST_X(u.destination_cell)
                              AND ST_Y(t.destination_cell) = ST_Y(u.destination_cell))
        UNION ALL
        SELECT t.region, t.origin_cell::geometry(Point, 4326), t.destination_cell::geometry(Point, 4326),
               t.time_bucket, t.bucket_start, t.trips, t.first_departure, t.last_departure, t.by_datasource,
               t.desire_line::geometry(LineString, 4326)
          FROM touched t
    )
    SELECT * FROM answer a
     WHERE a.trips >= min_trips
     ORDER BY a.trips DESC, a.region, a.time_bucket, ST_X(a.origin_cell), ST_Y(a.origin_cell),
              ST_X(a.destination_cell), ST_Y(a.destination_cell)
     LIMIT n;
END
$$;
