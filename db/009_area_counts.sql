-- 009: where trips start and end, kept so that "how many trips in this area?" never scans the trips.
--
-- A pyramid of square cells on the fixed-point coordinates of trip_rows (units of 1e-7 degree), aligned
-- on multiples of the cell size (cell index = floor(coordinate / size)):
--
--   level 1   0.1   degree cells (11.1 km north-south)    trip_area_counts: trips per cell
--   level 2   0.01  degree cells (1.1 km)                  trip_area_counts: trips per cell
--   level 3   0.001 degree cells (111 m)                   trip_area_counts: trips per cell
--                                                          trip_area_points: the exact points of the cell
--
-- East-west, a cell is the north-south size times cos(latitude): 0.001 degree is 79 m at Turin, 65 m at
-- Hamburg. Each level-n cell holds exactly the 10 x 10 level-(n+1) cells below it.
--
-- Each trip is counted twice, once per end: side 1 is the origin, side 2 the destination. The level-3 rows
-- keep every point of the cell with its departure, and origin rows also the trip's destination, so that an
-- area can be answered exactly: cells wholly inside the area are counted from their totals, and only the
-- points of level-3 cells cut by the area's edge are tested one by one (010_weekly_avg.sql).
--
-- The loader fills both tables while it streams a file, in the file's transaction. It keeps the counts
-- whole (one row per cell and job; there are as many as cells with trips, not trips), but writes the points
-- whenever its buffer is full, so a level-3 cell may have several trip_area_points rows per job.
-- rebuild_area_counts() recomputes both from the trips (`trips refresh`).

CREATE TABLE trip_area_counts (
    job_id integer  NOT NULL,   -- ingest_jobs.id
    side   smallint NOT NULL CHECK (side IN (1, 2)),    -- 1: origin, 2: destination
    level  smallint NOT NULL CHECK (level IN (1, 2, 3)),
    cx     integer  NOT NULL,   -- floor(lon / cell size), lon and size in 1e-7 degree
    cy     integer  NOT NULL,   -- floor(lat / cell size)
    trips  integer  NOT NULL
);
CREATE INDEX trip_area_counts_cell ON trip_area_counts (side, level, cy, cx) INCLUDE (trips);

CREATE TABLE trip_area_points (
    job_id      integer     NOT NULL,
    side        smallint    NOT NULL CHECK (side IN (1, 2)),
    cx          integer     NOT NULL,   -- level-3 cell
    cy          integer     NOT NULL,
    trips       integer     NOT NULL,   -- the length of each array
    lon         integer[]   NOT NULL,   -- this end of each trip, 1e-7 degree
    lat         integer[]   NOT NULL,
    departed_at timestamp[] NOT NULL,
    other_lon   integer[],              -- origin rows: each trip's destination (for by => 'both' / 'either')
    other_lat   integer[]
);
CREATE INDEX trip_area_points_cell ON trip_area_points (side, cy, cx) INCLUDE (trips);

-- The size of a level's cells in 1e-7 degree: 10^6, 10^5, 10^4.
CREATE FUNCTION trip_area_cell_size(level integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT (10 ^ (7 - level))::integer $$;

-- A cell as a polygon in EPSG:4326. Its edges are computed like the points of the `trips` view
-- (integer / 1e7 as float8), so a point of the cell is never outside its polygon by a rounding error.
CREATE FUNCTION trip_area_cell(level integer, cx integer, cy integer) RETURNS geometry
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ST_MakeEnvelope(cx::bigint * s / 1e7::float8, cy::bigint * s / 1e7::float8,
                           (cx + 1)::bigint * s / 1e7::float8, (cy + 1)::bigint * s / 1e7::float8, 4326)
      FROM trip_area_cell_size(level) AS s
$$;

-- The index of the cell holding a coordinate given in degrees (approximate at the cell's edges: callers
-- widen ranges by one cell and test the cell polygon).
CREATE FUNCTION trip_area_cell_index(level integer, degrees double precision) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT floor(degrees * 1e7 / trip_area_cell_size(level))::integer
$$;

-- Recompute both tables from the trips, one row per cell and job.
CREATE FUNCTION rebuild_area_counts() RETURNS void
LANGUAGE sql AS $$
    TRUNCATE trip_area_counts, trip_area_points;
    INSERT INTO trip_area_counts
    SELECT t.job_id, e.side, l.level,
           floor(e.lon::float8 / trip_area_cell_size(l.level)), floor(e.lat::float8 / trip_area_cell_size(l.level)),
           count(*)
      FROM trip_rows t
     CROSS JOIN LATERAL (VALUES (1::smallint, t.origin_lon, t.origin_lat),
                                (2::smallint, t.dest_lon, t.dest_lat)) AS e(side, lon, lat)
     CROSS JOIN (VALUES (1), (2), (3)) AS l(level)
     GROUP BY 1, 2, 3, 4, 5;
    INSERT INTO trip_area_points
    SELECT t.job_id, 1, floor(t.origin_lon::float8 / 10000), floor(t.origin_lat::float8 / 10000), count(*),
           array_agg(t.origin_lon), array_agg(t.origin_lat), array_agg(t.departed_at),
           array_agg(t.dest_lon), array_agg(t.dest_lat)
      FROM trip_rows t
     GROUP BY 1, 2, 3, 4;
    INSERT INTO trip_area_points
    SELECT t.job_id, 2, floor(t.dest_lon::float8 / 10000), floor(t.dest_lat::float8 / 10000), count(*),
           array_agg(t.dest_lon), array_agg(t.dest_lat), array_agg(t.departed_at), NULL, NULL
      FROM trip_rows t
     GROUP BY 1, 2, 3, 4;
$$;
