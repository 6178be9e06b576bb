-- 006: what the loader counts while it streams a file, so that questions never have to scan all trips.
--
-- The loader tallies these numbers in memory and sends them with the file (src/ingest.rs); ingest_finish
-- (007_pieces.sql) adds them in the same transaction that commits the file's trips, so they always agree
-- with `trips`, and bringing them up to date costs in proportion to the file, not to the database.
-- rebuild_rollups() (007) recomputes all of them from the trips, with the same arithmetic.
--
--   region_datasource_stats   trips, first and last departure per region and datasource: queries.sql
--   region_weeks              trips per region and week: weekly_avg_region over any window of weeks
--   trip_cells                trips per cell and week, for each end of the trip: weekly_avg of an area
--
-- The first two are small (one row per region and datasource, or region and week) and every load adds
-- into them with an upsert. The last grows with the area the trips cover, so like trip_rows it is
-- partitioned by ranges of jobs: each load appends a piece of its own, and pieces are merged (007).
-- Similar-trip groups are not tallied while loading: 009_trip_groups.sql counts them from the trips.

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

CREATE TABLE region_weeks (
    region_id smallint NOT NULL,
    week      integer  NOT NULL,   -- trip_week() (004_cells.sql)
    trips     bigint   NOT NULL,
    PRIMARY KEY (region_id, week)
);

-- One row per end of trip (side 1: origin, 2: destination), level and cell of a piece: the trips with
-- that end in the cell, week by week, as two parallel arrays: the weeks with trips, ascending, and the
-- trips of each. Rows per week would make the table as large as the trips on sparse data; arrays keep one
-- row per cell. On sparse data most cells have one trip in each of their weeks, so week_trips is then
-- left NULL (read as 1 for every week): such a row is about a third smaller. A row's trips are its
-- weeks' trips added up; no total is kept beside them, which would cost 12 bytes a row for little
-- reading saved. Within a piece a cell may have several rows (a file too large for the loader's memory
-- sends its tally in parts); readers add them up and merges fold them into one.
CREATE TABLE trip_cells (
    job_id     integer   NOT NULL,   -- the first job of the piece; the partition key
    side       smallint  NOT NULL,   -- 1 origin, 2 destination
    level      smallint  NOT NULL,   -- 004_cells.sql
    cell       integer   NOT NULL,   -- trip_cell_key()
    weeks      integer[] NOT NULL,   -- trip_week(), ascending
    week_trips integer[]             -- trips of each of those weeks; NULL: one each
) PARTITION BY RANGE (job_id);

CREATE INDEX trip_cells_cell ON trip_cells (side, level, cell);

-- Rows of trip_cells, as `job`'s, from `per_week` (a query of side, level, cell, week and n, the trips of
-- that cell and week, one row each): the weeks ascending and the trips of each, NULL when every week has
-- one. The rebuild (trip_cells_query) and the merges (trip_merge_query, 007_pieces.sql) both write
-- through it, in the form the loader sends (RowEncoder::cell in src/copy.rs).
CREATE FUNCTION trip_cells_rows(per_week text, job integer) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT format($q$
        WITH per_week AS (%s)
        SELECT %s, side, level, cell, array_agg(week ORDER BY week),
               CASE WHEN max(n) > 1 THEN array_agg(n::integer ORDER BY week) END
          FROM per_week GROUP BY side, level, cell$q$, per_week, job)
$$;

-- The cell tally of the trips in `source` (a table or query with trip_rows' columns), as `job`'s rows of
-- trip_cells: the SQL twin of the loader's arithmetic (cells by floor, weeks from Monday 2000-01-03), for
-- rebuild_rollups().
CREATE FUNCTION trip_cells_query(source text, job integer) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT trip_cells_rows(format($q$
        SELECT e.side, l.level::smallint AS level, trip_cell(l.level, e.lon, e.lat) AS cell,
               trip_week(e.departed_at) AS week, count(*) AS n
          FROM (SELECT 1::smallint AS side, origin_lon AS lon, origin_lat AS lat, departed_at FROM %1$s
                UNION ALL
                SELECT 2::smallint, dest_lon, dest_lat, departed_at FROM %1$s) AS e
               CROSS JOIN (VALUES (1), (2)) AS l(level)
         GROUP BY 1, 2, 3, 4$q$, source), job)
$$;
