-- 004: the trips themselves.
--
-- Storage (`trip_rows`) is compact: 32 bytes of data per trip, 60 bytes per trip on disk with the tuple
-- header and line pointer. Coordinates are fixed-point integers in units of 1e-7 degree (about 1 cm; the
-- WKT value is rounded to the nearest unit, so it round-trips to within 0.5e-7 degree), names are smallint
-- keys into regions/datasources, and the departure is a plain `timestamp` (local time, no zone, exactly as
-- in the file). A geometry(Point) column would take 32 bytes per point, twice the whole coordinate pair here.
--
-- The table is partitioned by ingest job: each file is COPYed into a fresh table of its own and attached as a
-- partition in the same transaction that marks its job done (005). Every row is written once, a failed file
-- leaves no trace, and the trips of one file can be detached or dropped without touching the rest.
--
-- People and tools read trips through the `trips` view, which turns the integers back into names and
-- geometry(Point,4326), so `SELECT count(*) FROM trips` and any PostGIS query just work.

CREATE TABLE trip_rows (
    job_id        integer   NOT NULL,   -- ingest_jobs.id; the partition key
    region_id     smallint  NOT NULL,   -- regions.id
    datasource_id smallint  NOT NULL,   -- datasources.id
    departed_at   timestamp NOT NULL,
    origin_lon    integer   NOT NULL,   -- degrees * 1e7, WGS84
    origin_lat    integer   NOT NULL,
    dest_lon      integer   NOT NULL,
    dest_lat      integer   NOT NULL
) PARTITION BY LIST (job_id);

CREATE VIEW trips AS
SELECT t.job_id,
       r.name        AS region,
       d.name        AS datasource,
       t.departed_at,
       ST_SetSRID(ST_MakePoint(t.origin_lon / 1e7::float8, t.origin_lat / 1e7::float8), 4326)
           ::geometry(Point, 4326) AS origin,
       ST_SetSRID(ST_MakePoint(t.dest_lon / 1e7::float8, t.dest_lat / 1e7::float8), 4326)
           ::geometry(Point, 4326) AS destination
  FROM trip_rows t
  JOIN regions r     ON r.id = t.region_id
  JOIN datasources d ON d.id = t.datasource_id;
