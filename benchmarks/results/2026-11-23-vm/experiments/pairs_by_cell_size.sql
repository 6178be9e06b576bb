-- How many (origin cell, destination cell) pairs the trips make, by cell size (stored coordinates are 1e-7
-- degree, so 100000 is 0.01 degree, the size of trip_area_pairs' cells). Integer division truncates towards
-- zero instead of flooring, which merges the cells on either side of the zero meridian and equator only.
-- psql "host=localhost port=54329 user=trips dbname=trips_bench" -X -A -f pairs_by_cell_size.sql
SET work_mem = '1GB';
SELECT count(*) AS trips FROM trip_rows;
SELECT s AS cell, (SELECT count(*) FROM (SELECT DISTINCT origin_lon / s, origin_lat / s, dest_lon / s, dest_lat / s
                                        FROM trip_rows) AS d) AS pairs
  FROM unnest(ARRAY[1000000, 100000, 50000, 20000, 10000]) AS s;
-- one end at 0.001 degree, the other at 0.01; one at 0.01, the other at 0.1
SELECT count(*) AS origin_0_001_destination_0_01
  FROM (SELECT DISTINCT origin_lon / 10000, origin_lat / 10000, dest_lon / 100000, dest_lat / 100000 FROM trip_rows) AS d;
SELECT count(*) AS origin_0_01_destination_0_1
  FROM (SELECT DISTINCT origin_lon / 100000, origin_lat / 100000, dest_lon / 1000000, dest_lat / 1000000 FROM trip_rows) AS d;
