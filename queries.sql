-- The customer's two questions, answered from psql:
--
--   psql -h 127.0.0.1 -p 54329 -U trips trips -f queries.sql
--
-- Both read region_datasource_summary (db/006_tallies.sql): one row per region and
-- datasource with its trip count and first/last departure, kept exact by every ingest in the transaction
-- that commits the trips. So they take milliseconds at any number of trips. The same question asked of
-- the trips themselves (a full scan) is kept below each, commented out, for checking.

-- Q1. "From the two most commonly appearing regions, which is the latest datasource?"
--
-- Read as: take the two regions with the most trips (equal counts: the region name decides,
-- alphabetically); among the trips of those two regions, the latest datasource is the datasource of the
-- latest trip (equal departure times: the datasource name decides, alphabetically, then the region).
-- The first query answers it; the second gives the latest datasource of each of the two regions.

\echo 'Q1: the latest datasource among the trips of the two most common regions'
WITH top_regions AS (
    SELECT region, sum(trips) AS trips
      FROM region_datasource_summary
     GROUP BY region
     ORDER BY sum(trips) DESC, region
     LIMIT 2
)
SELECT s.datasource AS latest_datasource, s.region, s.last_departure
  FROM region_datasource_summary s
  JOIN top_regions USING (region)
 ORDER BY s.last_departure DESC, s.datasource, s.region
 LIMIT 1;

-- Plain version, scanning the trips:
-- WITH top_regions AS (
--     SELECT region FROM trips GROUP BY region ORDER BY count(*) DESC, region LIMIT 2
-- )
-- SELECT datasource AS latest_datasource, region, departed_at AS last_departure
--   FROM trips JOIN top_regions USING (region)
--  ORDER BY departed_at DESC, datasource, region
--  LIMIT 1;

\echo 'Q1, per region: the latest datasource of each of the two most common regions'
WITH top_regions AS (
    SELECT region, sum(trips) AS trips
      FROM region_datasource_summary
     GROUP BY region
     ORDER BY sum(trips) DESC, region
     LIMIT 2
)
SELECT region, trips AS region_trips, latest_datasource, last_departure
  FROM top_regions t,
       LATERAL (SELECT s.datasource AS latest_datasource, s.last_departure
                  FROM region_datasource_summary s
                 WHERE s.region = t.region
                 ORDER BY s.last_departure DESC, s.datasource
                 LIMIT 1) latest
 ORDER BY region_trips DESC, region;

-- Plain version, scanning the trips:
-- WITH top_regions AS (
--     SELECT region, count(*) AS trips FROM trips GROUP BY region ORDER BY count(*) DESC, region LIMIT 2
-- )
-- SELECT DISTINCT ON (t.trips, t.region) t.region, t.trips AS region_trips,
--        x.datasource AS latest_datasource, x.departed_at AS last_departure
--   FROM top_regions t JOIN trips x USING (region)
--  ORDER BY t.trips DESC, t.region, x.departed_at DESC, x.datasource;

-- Q2. "What regions has the cheap_mobile datasource appeared in?"
--
-- Every region with at least one trip from cheap_mobile, alphabetically, with how many and when.

\echo 'Q2: the regions cheap_mobile has appeared in'
SELECT region, trips, first_departure, last_departure
  FROM region_datasource_summary
 WHERE datasource = 'cheap_mobile' AND trips > 0
 ORDER BY region;

-- Plain version, scanning the trips:
-- SELECT region, count(*) AS trips, min(departed_at) AS first_departure, max(departed_at) AS last_departure
--   FROM trips
--  WHERE datasource = 'cheap_mobile'
--  GROUP BY region
--  ORDER BY region;
