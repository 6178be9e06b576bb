-- Experiment (not a migration): the trips' points grouped by their pair of 0.01-degree cells, for
-- pair_points.sql. Builds exp.pp on the bench database and keeps it (COMMIT); drop it afterwards with
-- DROP SCHEMA exp CASCADE.
--   psql "host=localhost port=54329 user=trips dbname=trips_bench" -X -f pair_points_build.sql
--
-- One row per pair of cells (the pairs of trip_area_pairs, all jobs together), with
--   n                          its trips
--   o_lon_sorted ... d_lat_sorted
--                              each coordinate of its trips sorted alone: a pair with one end in a cell
--                              that one edge of the box cuts counts that end by binary search
--   o_lon, o_lat, d_lon, d_lat its trips, in one order: for pairs with both ends cut, or a corner
SET work_mem = '2GB';
SET maintenance_work_mem = '2GB';
\timing on
CREATE SCHEMA exp;
CREATE TABLE exp.pp AS
SELECT floor(origin_lon::float8 / 1e5)::int AS ocx, floor(origin_lat::float8 / 1e5)::int AS ocy,
       floor(dest_lon::float8 / 1e5)::int AS dcx, floor(dest_lat::float8 / 1e5)::int AS dcy,
       count(*) AS n,
       array_agg(origin_lon ORDER BY origin_lon) AS o_lon_sorted,
       array_agg(origin_lat ORDER BY origin_lat) AS o_lat_sorted,
       array_agg(dest_lon ORDER BY dest_lon) AS d_lon_sorted,
       array_agg(dest_lat ORDER BY dest_lat) AS d_lat_sorted,
       array_agg(origin_lon ORDER BY origin_lon, origin_lat, dest_lon, dest_lat) AS o_lon,
       array_agg(origin_lat ORDER BY origin_lon, origin_lat, dest_lon, dest_lat) AS o_lat,
       array_agg(dest_lon ORDER BY origin_lon, origin_lat, dest_lon, dest_lat) AS d_lon,
       array_agg(dest_lat ORDER BY origin_lon, origin_lat, dest_lon, dest_lat) AS d_lat
  FROM trip_rows GROUP BY 1, 2, 3, 4;
CREATE INDEX ON exp.pp (ocy, ocx, dcy, dcx) INCLUDE (n);
VACUUM ANALYZE exp.pp;
SELECT count(*) AS pairs, pg_size_pretty(pg_total_relation_size('exp.pp')) AS total,
       pg_size_pretty(pg_relation_size('exp.pp')) AS heap
  FROM exp.pp;
