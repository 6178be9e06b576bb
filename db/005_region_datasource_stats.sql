-- 005: per region and datasource, how many trips and their first and last departure.
--
-- Small (one row per pair) and exact, so questions like "which regions has cheap_mobile appeared in?" or
-- "which datasource is the latest in the busiest regions?" (queries.sql) never scan the trips. The loader
-- tallies these numbers while it streams a file and ingest_finish (006) adds them in the same transaction
-- that commits the file's trips, so they always agree with `trips`. rebuild_region_datasource_stats()
-- recomputes them from the trips, for checking, or after trips were removed by hand (DETACH/DROP of a
-- job's partition).

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

CREATE FUNCTION rebuild_region_datasource_stats() RETURNS void
LANGUAGE sql AS $$
    DELETE FROM region_datasource_stats;
    INSERT INTO region_datasource_stats
    SELECT region_id, datasource_id, count(*), min(departed_at), max(departed_at)
      FROM trip_rows
     GROUP BY region_id, datasource_id;
$$;
