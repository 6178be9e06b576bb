-- 005: rollups kept by every ingest, so that questions about all trips never have to scan them.
--
-- The loader tallies these numbers while it streams a file, and ingest_finish (006) adds them in the same
-- transaction that commits the file's trips: they always agree with `trips`, and bringing them up to date
-- costs in proportion to the file, not to the database. rebuild_rollups() recomputes both from the trips
-- (`trips refresh`), for checking, after a grid change, or after trips were removed by hand.

-- Per region and datasource: trips and their first and last departure. One row per pair: queries.sql
-- answers its questions from it in milliseconds at any number of trips.
CREATE TABLE region_datasource_stats (
    region_id       smallint  NOT NULL,
    datasource_id   smallint  NOT NULL,
    trips           bigint    NOT NULL,
    first_departure timestamp NOT NULL,
    last_departure  timestamp NOT NULL,
    PRIMARY KEY (region_id, datasource_id)
);

CREATE VIEW region_datasource_summary AS
SELECT r.name AS region, d.name AS datasource, s.trips, s.first_departure, s.last_departure
  FROM region_datasource_stats s
  JOIN regions r     ON r.id = s.region_id
  JOIN datasources d ON d.id = s.datasource_id;

-- The grid of similar-trip groups: one row. A point's cell is what ST_SnapToGrid(point, cell_deg) gives,
-- the grid point nearest to it, kept as integers (round(lon / cell_deg), round(lat / cell_deg)); a
-- departure's bucket is its minutes since midnight divided by bucket_min. 0.01 degree is 1113 m north-south
-- and 1113 m x cos(latitude) east-west (787 m at Turin, 716 m at Prague, 662 m at Hamburg). After changing
-- it, run `trips refresh`.
CREATE TABLE trip_group_grid (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    cell_deg   double precision NOT NULL DEFAULT 0.01 CHECK (cell_deg > 0 AND cell_deg <= 1),
    bucket_min integer NOT NULL DEFAULT 60 CHECK (bucket_min > 0 AND 1440 % bucket_min = 0)
);
INSERT INTO trip_group_grid DEFAULT VALUES;

-- Trips per group and datasource, at the grid's resolution: the base of trip_groups (008). Like trip_rows,
-- partitioned by ingest job: each file's tally goes into a table of its own, attached in the transaction
-- that commits the file (006). Appending costs in proportion to the file, with no index to maintain, and
-- a group spread over several files has one row per file, summed when read. On trip data groups are
-- sparse (a few trips per group at 1 km, 1 hour), which is why an upsert into one indexed table was much
-- slower: see benchmarks/GROUPS.md.
CREATE TABLE trip_group_counts (
    job_id          integer   NOT NULL,   -- ingest_jobs.id; the partition key
    region_id       smallint  NOT NULL,
    time_bucket     smallint  NOT NULL,   -- minutes since midnight / bucket_min
    datasource_id   smallint  NOT NULL,
    origin_x        integer   NOT NULL,   -- cell indices: the cell centre is (x * cell_deg, y * cell_deg)
    origin_y        integer   NOT NULL,
    dest_x          integer   NOT NULL,
    dest_y          integer   NOT NULL,
    trips           integer   NOT NULL,
    first_departure timestamp NOT NULL,
    last_departure  timestamp NOT NULL
) PARTITION BY LIST (job_id);

-- Recompute both rollups from the trips. The cell and bucket arithmetic is the loader's (float8 division,
-- round half to even like ST_SnapToGrid's rint), so a rebuild equals the incremental result row for row.
CREATE FUNCTION rebuild_rollups() RETURNS void
LANGUAGE sql AS $$
    DELETE FROM region_datasource_stats;
    INSERT INTO region_datasource_stats
    SELECT region_id, datasource_id, count(*), min(departed_at), max(departed_at)
      FROM trip_rows
     GROUP BY region_id, datasource_id;

    TRUNCATE trip_group_counts;   -- every job's partition
    INSERT INTO trip_group_counts   -- routed to each job's partition
    SELECT t.job_id, t.region_id,
           ((extract(hour FROM t.departed_at) * 60 + extract(minute FROM t.departed_at))::integer
               / g.bucket_min)::smallint,
           t.datasource_id,
           round((t.origin_lon / 1e7::float8) / g.cell_deg)::integer,
           round((t.origin_lat / 1e7::float8) / g.cell_deg)::integer,
           round((t.dest_lon / 1e7::float8) / g.cell_deg)::integer,
           round((t.dest_lat / 1e7::float8) / g.cell_deg)::integer,
           count(*), min(t.departed_at), max(t.departed_at)
      FROM trip_rows t CROSS JOIN trip_group_grid g
     GROUP BY 1, 2, 3, 4, 5, 6, 7, 8;
$$;
