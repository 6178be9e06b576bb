-- 005: the trips themselves.
--
-- A trip row is 32 bytes of data (60 on disk with the tuple header and line pointer): names as smallint
-- keys (002_names.sql), the departure as a plain `timestamp` (local time, no zone, exactly as in the file),
-- and the coordinates as fixed-point integers in 1e-7 degree (about 1 cm; the WKT value is rounded to the
-- nearest unit). A geometry(Point) column would take 32 bytes per point, as much as the whole row here.
--
-- The table is partitioned by ranges of ingest job ids: each file is COPYed into a fresh table of its own,
-- attached as the partition of its one job in the transaction that marks the job done, and small
-- partitions are later merged into larger ones covering consecutive jobs (007_pieces.sql calls them
-- pieces). Every row carries its job, so a trip can always be traced to its file.
--
-- Each piece has two b-tree indexes: on the level-2 cell of the origin and of the destination
-- (004_cells.sql). They find the trips of the cells an area's edge cuts, whose points must be tested one
-- by one (008_weekly_avg.sql); cells wholly inside an area are counted from the tally (006_tallies.sql).
-- A cell holds many trips, so b-tree deduplication keeps each index to a few bytes per trip. Merged pieces
-- are written in the order of the origin's cell, so the trips of a cell are side by side on disk.
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
) PARTITION BY RANGE (job_id);

CREATE INDEX trip_rows_origin_cell ON trip_rows (trip_cell(2, origin_lon, origin_lat));
CREATE INDEX trip_rows_dest_cell ON trip_rows (trip_cell(2, dest_lon, dest_lat));

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
