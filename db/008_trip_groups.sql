-- 008: similar trips, grouped: same region, origin and destination in the same grid cells (ST_SnapToGrid)
-- and departure in the same time-of-day bucket, whatever the day (08:10 on a Monday and 08:20 on a Friday
-- are alike). Everything here reads the rollup trip_group_counts (005), never the trips.
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
LANGUAGE plpgsql STABLE
-- Summing the rollup hashes one entry per group: with the default 4 MB (64 MB on the local cluster) it
-- spills to disk in many batches (measured: 21 batches, 15.6 s for 5.8M rollup rows).
SET work_mem = '256MB'
AS $$
#variable_conflict use_column
DECLARE
    grid trip_group_grid;
    per  integer;      -- stored buckets per coarse bucket
    cell double precision;
BEGIN
    SELECT * INTO grid FROM trip_group_grid;
    bucket_minutes := coalesce(bucket_minutes, grid.bucket_min);
    IF cell_factor IS NULL OR cell_factor < 1 OR cell_factor % 2 = 0 THEN
        RAISE EXCEPTION 'cell factor % is not supported', cell_factor
            USING HINT = 'Use an odd multiple of the stored cell (1, 3, 5, ...): coarser cells must be made of '
                         'whole stored cells, and ST_SnapToGrid''s cells are centred on the grid points.';
    END IF;
    IF bucket_minutes < 1 OR bucket_minutes % grid.bucket_min <> 0 OR 1440 % bucket_minutes <> 0 THEN
        RAISE EXCEPTION 'a bucket of % minutes is not supported', bucket_minutes
            USING HINT = format('Use a multiple of the stored %s minutes that divides a day (1440 minutes).',
                                grid.bucket_min);
    END IF;
    per := bucket_minutes / grid.bucket_min;
    cell := grid.cell_deg * cell_factor;
    RETURN QUERY
    WITH coarse AS (
        SELECT c.region_id, c.datasource_id,
               round(c.origin_x::float8 / cell_factor)::integer AS ox,
               round(c.origin_y::float8 / cell_factor)::integer AS oy,
               round(c.dest_x::float8 / cell_factor)::integer   AS dx,
               round(c.dest_y::float8 / cell_factor)::integer   AS dy,
               c.time_bucket / per AS bucket,
               sum(c.trips) AS trips, min(c.first_departure) AS first, max(c.last_departure) AS last
          FROM trip_group_counts c
         GROUP BY 1, 2, 3, 4, 5, 6, 7
    )
    SELECT r.name,
           ST_SetSRID(ST_MakePoint(g.ox * cell, g.oy * cell), 4326),
           ST_SetSRID(ST_MakePoint(g.dx * cell, g.dy * cell), 4326),
           g.bucket,
           time '00:00' + make_interval(mins => g.bucket * bucket_minutes),
           sum(g.trips)::bigint,
           min(g.first),
           max(g.last),
           jsonb_object_agg(d.name, g.trips),
           ST_SetSRID(ST_MakeLine(ST_MakePoint(g.ox * cell, g.oy * cell),
                                  ST_MakePoint(g.dx * cell, g.dy * cell)), 4326)
      FROM coarse g
      JOIN regions r     ON r.id = g.region_id
      JOIN datasources d ON d.id = g.datasource_id
     GROUP BY r.name, g.ox, g.oy, g.dx, g.dy, g.bucket;
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
LANGUAGE sql STABLE AS $$
    SELECT (SELECT count(*) FROM ingest_jobs WHERE state = 'done') = s.done_jobs FROM trip_groups_snapshot s;
$$;
