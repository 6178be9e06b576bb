-- 014: the group tally (005) keeps one row per group and job instead of one per group, datasource and job;
-- the trips of each datasource move into two parallel arrays of the row.
--
-- On trip data a group holds a few trips, often from different datasources: 1M generated trips make
-- 772k (group, datasource) pairs but 492k groups. Writing the tally is what keeping groups fresh costs
-- an ingest, and it costs per row, so this writes about a third fewer rows (benchmarks/GROUPS.md).
--
-- The tally of the trips already loaded is rebuilt from the trips (rebuild_rollups, below), in a
-- partition per done job as before; on a large database this migration takes as long as `trips refresh`.

DROP TABLE trip_group_counts;

CREATE TABLE trip_group_counts (
    job_id           integer    NOT NULL,   -- ingest_jobs.id; the partition key
    region_id        smallint   NOT NULL,
    time_bucket      smallint   NOT NULL,   -- minutes since midnight / bucket_min
    origin_x         integer    NOT NULL,   -- cell indices: the cell centre is (x * cell_deg, y * cell_deg)
    origin_y         integer    NOT NULL,
    dest_x           integer    NOT NULL,
    dest_y           integer    NOT NULL,
    trips            integer    NOT NULL,
    first_departure  timestamp  NOT NULL,
    last_departure   timestamp  NOT NULL,
    datasource_ids   smallint[] NOT NULL,   -- datasources.id of the group's trips, ascending
    datasource_trips integer[]  NOT NULL    -- the trips of each, in the same order (they sum to trips)
) PARTITION BY LIST (job_id);

DO $$
DECLARE
    job integer;
BEGIN
    FOR job IN SELECT id FROM ingest_jobs WHERE state = 'done' LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF trip_group_counts FOR VALUES IN (%s)',
                       ingest_job_table('trip_group_counts', job), job);
    END LOOP;
END
$$;

-- As 005, with the datasources of a group gathered into its row.
CREATE OR REPLACE FUNCTION rebuild_rollups() RETURNS void
LANGUAGE sql AS $$
    DELETE FROM region_datasource_stats;
    INSERT INTO region_datasource_stats
    SELECT region_id, datasource_id, count(*), min(departed_at), max(departed_at)
      FROM trip_rows
     GROUP BY region_id, datasource_id;

    TRUNCATE trip_group_counts;   -- every job's partition
    INSERT INTO trip_group_counts   -- routed to each job's partition
    SELECT job_id, region_id, time_bucket, origin_x, origin_y, dest_x, dest_y,
           sum(trips), min(first_departure), max(last_departure),
           array_agg(datasource_id ORDER BY datasource_id), array_agg(trips ORDER BY datasource_id)
      FROM (SELECT t.job_id, t.region_id,
                   ((extract(hour FROM t.departed_at) * 60 + extract(minute FROM t.departed_at))::integer
                       / g.bucket_min)::smallint AS time_bucket,
                   round((t.origin_lon / 1e7::float8) / g.cell_deg)::integer AS origin_x,
                   round((t.origin_lat / 1e7::float8) / g.cell_deg)::integer AS origin_y,
                   round((t.dest_lon / 1e7::float8) / g.cell_deg)::integer AS dest_x,
                   round((t.dest_lat / 1e7::float8) / g.cell_deg)::integer AS dest_y,
                   t.datasource_id,
                   count(*)::integer AS trips, min(t.departed_at) AS first_departure,
                   max(t.departed_at) AS last_departure
              FROM trip_rows t CROSS JOIN trip_group_grid g
             GROUP BY 1, 2, 3, 4, 5, 6, 7, 8) AS per_datasource
     GROUP BY 1, 2, 3, 4, 5, 6, 7;
$$;

SELECT rebuild_rollups();

-- As 008, reading each row's datasources from its arrays.
CREATE OR REPLACE FUNCTION trip_groups_at(cell_factor integer DEFAULT 1, bucket_minutes integer DEFAULT NULL)
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
SET work_mem = '256MB'   -- see 008
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
    WITH coarse AS (   -- per coarse group and datasource
        SELECT c.region_id, s.datasource_id,
               round(c.origin_x::float8 / cell_factor)::integer AS ox,
               round(c.origin_y::float8 / cell_factor)::integer AS oy,
               round(c.dest_x::float8 / cell_factor)::integer   AS dx,
               round(c.dest_y::float8 / cell_factor)::integer   AS dy,
               c.time_bucket / per AS bucket,
               sum(s.trips) AS trips, min(c.first_departure) AS first, max(c.last_departure) AS last
          FROM trip_group_counts c
         CROSS JOIN LATERAL unnest(c.datasource_ids, c.datasource_trips) AS s(datasource_id, trips)
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

DO $$ BEGIN RAISE NOTICE '%', trips_roles(); END $$;   -- readers may read the new table (013)
