-- 009: similar trips, grouped: same region, origin and destination in the same grid cells (ST_SnapToGrid)
-- and departure in the same time-of-day bucket, whatever the day (08:10 on a Monday and 08:20 on a Friday
-- are alike). Everything here reads the rollup trip_group_counts (006_tallies.sql), never the trips.
--
--   trip_groups_at(cell_factor, bucket_minutes)  the groups at the stored resolution or a coarser one
--   trip_groups_live                             the groups at the stored resolution, always current
--   trip_groups (materialized)                   the same, as a snapshot for maps and BI tools (QGIS reads
--                                                its geometry columns); refreshed by refresh_trip_groups(),
--                                                `trips refresh`, or on a schedule (pg_cron; see README)
--
-- Coarser resolutions, without reloading: cells of an odd number of stored cells (3x, 5x, ...) and buckets
-- of a multiple of the stored length that divides a day (with 60 minutes: 120, 180, 240, 360, 480, 720,
-- 1440). Why odd: ST_SnapToGrid's cells are centred on the grid points, so a cell m times larger is made of
-- whole stored cells only when m is odd; with m = 2 each coarse edge would cut stored cells in half, and
-- their trips could not be split without the raw points. Stored cell k belongs to the coarse cell
-- round(k / m), which for odd m never ties; the coarse cell centre is round(k / m) * m * cell_deg. This is
-- ST_SnapToGrid(point, m * cell_deg) except for points within floating-point error of a coarse cell edge.
--
-- The functions that read the tally are VOLATILE, for the reason 008_weekly_avg.sql gives: merges.

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

CREATE FUNCTION trip_groups_at(cell_factor integer DEFAULT 1, bucket_minutes integer DEFAULT NULL)
RETURNS TABLE (
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
)
LANGUAGE plpgsql VOLATILE
-- Summing the tally hashes one entry per group: with the default 4 MB of work_mem it spills to disk.
SET work_mem = '256MB'
AS $$
#variable_conflict use_column
DECLARE
    res record;
BEGIN
    res := trip_group_resolution(cell_factor, bucket_minutes);
    RETURN QUERY
    WITH coarse AS (
        SELECT c.region_id, c.datasource_id,
               round(c.origin_x::float8 / cell_factor)::integer AS ox,
               round(c.origin_y::float8 / cell_factor)::integer AS oy,
               round(c.dest_x::float8 / cell_factor)::integer   AS dx,
               round(c.dest_y::float8 / cell_factor)::integer   AS dy,
               c.time_bucket / res.per AS bucket,
               sum(c.trips) AS trips, min(c.first_departure) AS first, max(c.last_departure) AS last
          FROM trip_group_counts c
         GROUP BY 1, 2, 3, 4, 5, 6, 7
    )
    SELECT r.name,
           ST_SetSRID(ST_MakePoint(g.ox * res.cell, g.oy * res.cell), 4326),
           ST_SetSRID(ST_MakePoint(g.dx * res.cell, g.dy * res.cell), 4326),
           g.bucket,
           time '00:00' + make_interval(mins => g.bucket * res.minutes),
           sum(g.trips)::bigint,
           min(g.first),
           max(g.last),
           jsonb_object_agg(d.name, g.trips),
           ST_SetSRID(ST_MakeLine(ST_MakePoint(g.ox * res.cell, g.oy * res.cell),
                                  ST_MakePoint(g.dx * res.cell, g.dy * res.cell)), 4326)
      FROM coarse g
      JOIN regions r     ON r.id = g.region_id
      JOIN datasources d ON d.id = g.datasource_id
     GROUP BY r.id, g.ox, g.oy, g.dx, g.dy, g.bucket;   -- r.name follows from r.id, the key
END
$$;

-- Typed geometry columns, so that map tools see points and lines in EPSG:4326.
CREATE VIEW trip_groups_live AS
SELECT region,
       origin_cell::geometry(Point, 4326)           AS origin_cell,
       destination_cell::geometry(Point, 4326)      AS destination_cell,
       time_bucket, bucket_start, trips, first_departure, last_departure, by_datasource,
       desire_line::geometry(LineString, 4326)      AS desire_line
  FROM trip_groups_at();

CREATE MATERIALIZED VIEW trip_groups AS SELECT * FROM trip_groups_live;
CREATE INDEX trip_groups_trips ON trip_groups (trips DESC);          -- the largest groups first
CREATE INDEX trip_groups_region_trips ON trip_groups (region, trips DESC);
CREATE INDEX trip_groups_origin ON trip_groups USING gist (origin_cell);

-- How many done jobs the snapshot includes. Jobs only ever become done (never undone), so the snapshot is
-- current exactly when that count still equals the number of done jobs; a job id would not do, since
-- concurrent loaders finish out of order. Readers that want current groups at the stored resolution read
-- the snapshot when it is current and sum the rollup otherwise (`trips groups` does).
CREATE TABLE trip_groups_snapshot (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    done_jobs    bigint NOT NULL DEFAULT 0,
    refreshed_at timestamptz
);
INSERT INTO trip_groups_snapshot DEFAULT VALUES;

-- Rebuild the snapshot from the rollup (cost: the rows of the rollup, not the trips). This is what a
-- schedule runs. The count is read before the refresh takes its own snapshot, so it never counts a job
-- the refresh could miss; the row lock makes concurrent refreshes take turns.
CREATE FUNCTION refresh_trip_groups() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE trip_groups_snapshot
       SET done_jobs = (SELECT count(*) FROM ingest_jobs WHERE state = 'done'), refreshed_at = now();
    REFRESH MATERIALIZED VIEW trip_groups;
END
$$;

CREATE FUNCTION trip_groups_is_current() RETURNS boolean
LANGUAGE sql VOLATILE AS $$
    SELECT (SELECT count(*) FROM ingest_jobs WHERE state = 'done') = s.done_jobs FROM trip_groups_snapshot s;
$$;

-- trip_groups_top(n, ...) answers "the N largest groups" (`trips groups` asks it while the trip_groups
-- snapshot is stale): it ranks the groups on their summed trips alone, keeps the N largest, and reads the
-- rollup rows of those N again to build their geometries and trips per datasource. It returns what
--   SELECT * FROM trip_groups_at(cell_factor, bucket_minutes)
--    WHERE (region IS NULL OR region = <region>) AND trips >= min_trips
--    ORDER BY trips DESC, region, time_bucket, ST_X(origin_cell), ST_Y(origin_cell),
--             ST_X(destination_cell), ST_Y(destination_cell)
--    LIMIT n
-- returns, in that order, without building the other groups.
CREATE FUNCTION trip_groups_top(n bigint, region text DEFAULT NULL, min_trips bigint DEFAULT 1,
                                cell_factor integer DEFAULT 1, bucket_minutes integer DEFAULT NULL)
RETURNS SETOF trip_groups_live
LANGUAGE plpgsql VOLATILE
SET work_mem = '256MB'   -- see trip_groups_at
AS $$
DECLARE
    res record;
BEGIN
    res := trip_group_resolution(cell_factor, bucket_minutes);
    RETURN QUERY
    WITH sized AS (   -- every group, with its trips only
        SELECT c.region_id,
               round(c.origin_x::float8 / cell_factor)::integer AS ox,
               round(c.origin_y::float8 / cell_factor)::integer AS oy,
               round(c.dest_x::float8 / cell_factor)::integer   AS dx,
               round(c.dest_y::float8 / cell_factor)::integer   AS dy,
               c.time_bucket / res.per AS bucket,
               sum(c.trips) AS trips
          FROM trip_group_counts c
         WHERE trip_groups_top.region IS NULL
            OR c.region_id = (SELECT r.id FROM regions r WHERE r.name = trip_groups_top.region)
         GROUP BY 1, 2, 3, 4, 5, 6
        HAVING sum(c.trips) >= min_trips
    ), top AS (
        SELECT s.region_id, r.name, s.ox, s.oy, s.dx, s.dy, s.bucket
          FROM sized s
          JOIN regions r ON r.id = s.region_id
         ORDER BY s.trips DESC, r.name, s.bucket, s.ox, s.oy, s.dx, s.dy
         LIMIT n
    ), per_datasource AS (   -- the rollup rows of those groups, read again
        SELECT t.name, t.ox, t.oy, t.dx, t.dy, t.bucket, c.datasource_id,
               sum(c.trips) AS trips, min(c.first_departure) AS first, max(c.last_departure) AS last
          FROM top t
          JOIN trip_group_counts c
            ON c.region_id = t.region_id AND c.time_bucket / res.per = t.bucket
           AND round(c.origin_x::float8 / cell_factor)::integer = t.ox
           AND round(c.origin_y::float8 / cell_factor)::integer = t.oy
           AND round(c.dest_x::float8 / cell_factor)::integer = t.dx
           AND round(c.dest_y::float8 / cell_factor)::integer = t.dy
         GROUP BY 1, 2, 3, 4, 5, 6, 7
    )
    SELECT g.name,
           ST_SetSRID(ST_MakePoint(g.ox * res.cell, g.oy * res.cell), 4326)::geometry(Point, 4326),
           ST_SetSRID(ST_MakePoint(g.dx * res.cell, g.dy * res.cell), 4326)::geometry(Point, 4326),
           g.bucket,
           time '00:00' + make_interval(mins => g.bucket * res.minutes),
           sum(g.trips)::bigint,
           min(g.first),
           max(g.last),
           jsonb_object_agg(d.name, g.trips),
           ST_SetSRID(ST_MakeLine(ST_MakePoint(g.ox * res.cell, g.oy * res.cell),
                                  ST_MakePoint(g.dx * res.cell, g.dy * res.cell)), 4326)::geometry(LineString, 4326)
      FROM per_datasource g
      JOIN datasources d ON d.id = g.datasource_id
     GROUP BY g.name, g.ox, g.oy, g.dx, g.dy, g.bucket
     ORDER BY sum(g.trips) DESC, g.name, g.bucket, g.ox, g.oy, g.dx, g.dy;
END
$$;
