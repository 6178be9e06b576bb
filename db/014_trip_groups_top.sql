-- 014: reading similar-trip groups faster: grouped by region id, and the N largest without decorating
-- every group.
--
-- trip_groups_at (008) grouped its second level by the region's name: a sort of every (group, datasource)
-- row on text, under the collation's rules (29 s of 64 s at 17M trips). It now groups by the region's id
-- and names the region after; the rows are the same. That is what refresh_trip_groups() runs.
--
-- trip_groups_top(n, ...) answers "the N largest groups" (`trips groups` asks it while the trip_groups
-- snapshot is stale): it ranks the groups on their summed trips alone, keeps the N largest, and reads the
-- rollup rows of those N again to build their geometries and trips per datasource. It returns what
--   SELECT * FROM trip_groups_at(cell_factor, bucket_minutes)
--    WHERE (region IS NULL OR region = <region>) AND trips >= min_trips
--    ORDER BY trips DESC, region, time_bucket, ST_X(origin_cell), ST_Y(origin_cell),
--             ST_X(destination_cell), ST_Y(destination_cell)
--    LIMIT n
-- returns, in that order, without building the other groups (measured in benchmarks/GROUPS.md).

-- The resolution asked for, checked: stored buckets per asked bucket, the asked cell in degrees and the
-- asked bucket in minutes (NULL: the stored one). The checks and messages are 008's.
CREATE FUNCTION trip_group_resolution(cell_factor integer, bucket_minutes integer,
                                      OUT per integer, OUT cell double precision, OUT minutes integer)
LANGUAGE plpgsql STABLE AS $$
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

CREATE FUNCTION trip_groups_top(n bigint, region text DEFAULT NULL, min_trips bigint DEFAULT 1,
                                cell_factor integer DEFAULT 1, bucket_minutes integer DEFAULT NULL)
RETURNS SETOF trip_groups_live
LANGUAGE plpgsql STABLE
SET work_mem = '256MB'   -- see 008
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
