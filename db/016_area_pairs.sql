-- 016: by => 'both' (and so 'either') over all time counts whole pairs of cells, not every point of the area.
--
-- 'both' asks for trips whose origin and destination are both in the area: a question about two points of
-- each trip at once, which the counts per end (009) cannot answer. Until now it tested every level-3 point of
-- the area (010's trip_area_departures), in proportion to the area's trips: 3-4 s for a box around a city
-- of 10M trips, about the plain SQL's time.
--
-- Now each ingest also counts its trips per pair of level-2 cells (0.01 degree, 1.1 km): trip_area_pairs,
-- (origin cell, destination cell) -> trips. The level-2 cells that meet the area are either wholly inside it
-- or cut by its edge, and a trip with both ends in the area is in exactly one of three cases:
--
--   origin cell inside, destination cell inside   the pair totals count it, no point is read
--   origin cell cut                                the origin's point rows (side 1) carry the destination:
--                                                  test both ends
--   origin cell inside, destination cell cut       the destination's point rows (side 2) now carry the
--                                                  origin too (other_lon / other_lat, NULL until now): test
--                                                  both ends, and leave out origins in cut cells (counted
--                                                  in the case above)
--
-- So the points read are those of the band of cut level-2 cells along the area's edge, not all the area's.
-- 'either' is origin + destination - both, as before. Pairs are few: a city's trips go between a few
-- hundred 1 km cells (10M generated trips make 147,184 pairs). Pairs have no time, so with a window that
-- does not hold every trip 'both' still reads every point, as before; so does weekly_counts.
--
-- The trips already loaded get their pairs and the origins of their destination rows from
-- rebuild_area_counts(), at the end of this file (a few minutes per 10M trips; nothing on a new database).

CREATE TABLE trip_area_pairs (
    job_id integer NOT NULL,   -- ingest_jobs.id
    ocx    integer NOT NULL,   -- the origin's level-2 cell (009: floor(lon / 10^5), lon in 1e-7 degree)
    ocy    integer NOT NULL,
    dcx    integer NOT NULL,   -- the destination's level-2 cell
    dcy    integer NOT NULL,
    trips  integer NOT NULL
);
CREATE INDEX trip_area_pairs_origin ON trip_area_pairs (ocy, ocx) INCLUDE (dcx, dcy, trips);

-- 015's rebuild, with the pairs and the destinations' origins. The five arrays of a row are each sorted by
-- one aggregate; ordering them by every column makes their orders agree even where longitudes tie (015
-- ordered by longitude alone and relied on equal sorts of equal input).
CREATE OR REPLACE FUNCTION rebuild_area_counts() RETURNS void
LANGUAGE sql AS $$
    TRUNCATE trip_area_counts, trip_area_points, trip_area_pairs;
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
    SELECT t.job_id, e.side, floor(e.lon::float8 / 10000), floor(e.lat::float8 / 10000), count(*),
           array_agg(e.lon ORDER BY e.lon, e.lat, t.departed_at, e.other_lon, e.other_lat),
           array_agg(e.lat ORDER BY e.lon, e.lat, t.departed_at, e.other_lon, e.other_lat),
           array_agg(t.departed_at ORDER BY e.lon, e.lat, t.departed_at, e.other_lon, e.other_lat),
           array_agg(e.other_lon ORDER BY e.lon, e.lat, t.departed_at, e.other_lon, e.other_lat),
           array_agg(e.other_lat ORDER BY e.lon, e.lat, t.departed_at, e.other_lon, e.other_lat),
           array_agg(e.lat ORDER BY e.lat)
      FROM trip_rows t
     CROSS JOIN LATERAL (VALUES (1::smallint, t.origin_lon, t.origin_lat, t.dest_lon, t.dest_lat),
                                (2::smallint, t.dest_lon, t.dest_lat, t.origin_lon, t.origin_lat))
                        AS e(side, lon, lat, other_lon, other_lat)
     GROUP BY 1, 2, 3, 4;
    INSERT INTO trip_area_pairs
    SELECT t.job_id, floor(t.origin_lon::float8 / 100000), floor(t.origin_lat::float8 / 100000),
           floor(t.dest_lon::float8 / 100000), floor(t.dest_lat::float8 / 100000), count(*)
      FROM trip_rows t
     GROUP BY 1, 2, 3, 4, 5;
$$;

-- Trips with both ends in the area, over all time. `box` is trip_area_box(area), as in 010. The level-2
-- cells are found as in 010's trip_area_parts (level-1 cells first), once for both ends. The pairs are
-- summed per destination cell before that cell is tested (a join with l2 would be planned as a nested
-- loop over it: a CTE's rows are unknown to a generic plan).
CREATE FUNCTION trip_area_both(area geometry, box box2d) RETURNS bigint
LANGUAGE plpgsql STABLE SET jit = off SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN (
    WITH l1 AS (
        SELECT c.cx, c.cy, trip_area_cell_inside(area, box, 1, c.cx, c.cy) AS inside
          FROM trip_area_counts c
         WHERE c.side IN (1, 2) AND c.level = 1
           AND c.cx BETWEEN trip_area_cell_index(1, ST_XMin(area)) - 1 AND trip_area_cell_index(1, ST_XMax(area)) + 1
           AND c.cy BETWEEN trip_area_cell_index(1, ST_YMin(area)) - 1 AND trip_area_cell_index(1, ST_YMax(area)) + 1
           AND trip_area_cell_meets(area, box, 1, c.cx, c.cy)
         GROUP BY c.cx, c.cy
    ), l2 AS (
        SELECT c.cx, c.cy, p.inside OR trip_area_cell_inside(area, box, 2, c.cx, c.cy) AS inside
          FROM l1 p
          JOIN trip_area_counts c
            ON c.side IN (1, 2) AND c.level = 2
           AND c.cy = ANY (trip_area_children(p.cy)) AND c.cx BETWEEN p.cx * 10 AND p.cx * 10 + 9
         WHERE p.inside OR trip_area_cell_meets(area, box, 2, c.cx, c.cy)
         GROUP BY c.cx, c.cy, p.inside
    ), cut AS (
        SELECT cx, cy FROM l2 WHERE NOT inside
    )
    SELECT (SELECT coalesce(sum(g.trips), 0)
              FROM (SELECT p.dcx, p.dcy, sum(p.trips) AS trips
                      FROM l2 o
                      JOIN trip_area_pairs p ON p.ocy = o.cy AND p.ocx = o.cx
                     WHERE o.inside
                     GROUP BY p.dcx, p.dcy) AS g
             WHERE trip_area_cell_inside(area, box, 2, g.dcx, g.dcy))
         + (SELECT count(*)
              FROM cut c
              JOIN trip_area_points r
                ON r.side IN (1, 2) AND r.cy = ANY (trip_area_children(c.cy)) AND r.cx BETWEEN c.cx * 10 AND c.cx * 10 + 9
             CROSS JOIN LATERAL unnest(r.lon, r.lat, r.other_lon, r.other_lat) AS u(lon, lat, other_lon, other_lat)
             WHERE trip_area_cell_meets(area, box, 3, r.cx, r.cy)
               AND trip_area_holds(area, box, u.lon, u.lat)
               AND trip_area_holds(area, box, u.other_lon, u.other_lat)
               AND (r.side = 1 OR NOT EXISTS (   -- a destination row: its origin's cell must be inside
                        SELECT FROM cut o
                         WHERE o.cx = floor(u.other_lon::float8 / 100000) AND o.cy = floor(u.other_lat::float8 / 100000)))));
END
$$;

-- 010's weekly_trips, with 'both' (and 'either') over all time taking trip_area_both.
CREATE OR REPLACE FUNCTION weekly_trips(area geometry, by text DEFAULT 'origin',
                                        since timestamp DEFAULT NULL, until timestamp DEFAULT NULL)
RETURNS TABLE (average double precision, trips bigint, window_start timestamp, window_end timestamp,
               weeks double precision)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    w record;
    n bigint;
    box box2d;
BEGIN
    IF by IS NULL OR by NOT IN ('origin', 'destination', 'both', 'either') THEN
        RAISE EXCEPTION 'unknown by => %', coalesce(quote_literal(by), 'NULL')
            USING HINT = 'by is ''origin'', ''destination'', ''both'' or ''either'': which end of a trip must be in the area.';
    END IF;
    area := trip_area_checked(area);
    box := trip_area_box(area);
    w := trip_window(since, until);
    IF w.window_start IS NULL THEN
        RETURN QUERY SELECT NULL::float8, 0::bigint, NULL::timestamp, NULL::timestamp, NULL::float8;
        RETURN;
    END IF;
    IF by IN ('origin', 'destination') AND w.holds_all THEN
        n := trip_area_count(area, box, CASE by WHEN 'origin' THEN 1 ELSE 2 END::smallint);
    ELSIF by IN ('origin', 'destination') THEN
        n := (SELECT count(*) FROM trip_area_departures(area, box, CASE by WHEN 'origin' THEN 1 ELSE 2 END::smallint,
                                                          w.window_start, w.window_end, false));
    ELSIF w.holds_all THEN
        n := trip_area_both(area, box);
        IF by = 'either' THEN   -- origin in + destination in - both in
            n := trip_area_count(area, box, 1::smallint) + trip_area_count(area, box, 2::smallint) - n;
        END IF;
    ELSE
        n := (SELECT count(*) FROM trip_area_departures(area, box, 1::smallint, w.window_start, w.window_end, true));
        IF by = 'either' THEN
            n := (SELECT count(*) FROM trip_area_departures(area, box, 1::smallint, w.window_start, w.window_end, false))
               + (SELECT count(*) FROM trip_area_departures(area, box, 2::smallint, w.window_start, w.window_end, false))
               - n;
        END IF;
    END IF;
    RETURN QUERY SELECT n / w.weeks, n, w.window_start, w.window_end, w.weeks;
END
$$;

-- Privileges (012, 013): readers read the pairs; the loader inserts its file's.
CREATE OR REPLACE FUNCTION trips_roles() RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    role text;
    missing text[] := ARRAY(SELECT r FROM unnest(ARRAY['trips_reader', 'trips_loader']) AS r
                             WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r));
BEGIN
    IF missing <> '{}' AND NOT (SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RETURN format('roles %s do not exist and %s may not create them (no CREATEROLE): a role that may '
                      'must run `trips roles`, or create them with CREATE ROLE ... NOLOGIN',
                      array_to_string(missing, ' and '), current_user);
    END IF;
    FOREACH role IN ARRAY missing LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', role);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created a moment ago by the migration of another database of this cluster
        END;
    END LOOP;
    IF NOT pg_has_role('trips_loader', 'trips_reader', 'MEMBER') THEN
        BEGIN
            GRANT trips_reader TO trips_loader;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;

    EXECUTE format('GRANT USAGE ON SCHEMA %I TO trips_reader', current_schema());
    GRANT SELECT ON trips, trip_rows, regions, datasources, ingest_jobs, schema_migrations,
                    region_datasource_stats, region_datasource_summary,
                    trip_group_grid, trip_group_counts, trip_groups, trip_groups_live, trip_groups_snapshot,
                    trip_area_counts, trip_area_points, trip_area_pairs
       TO trips_reader;

    -- What the loader's own statements write (src/ingest.rs): its job row, new names, the area counts.
    GRANT INSERT, UPDATE (state, bytes, rows, rejected, error, rejects_file, duplicate_of, content_sha256,
                          finished_at)
       ON ingest_jobs TO trips_loader;
    GRANT INSERT ON regions, datasources, trip_area_counts, trip_area_pairs TO trips_loader;
    GRANT EXECUTE ON FUNCTION ingest_create_staging(integer),
                              ingest_finish(integer, text, bigint, bigint, smallint[], smallint[], bigint[],
                                            bigint[], bigint[])
       TO trips_loader;
    RETURN 'roles trips_reader and trips_loader are ready';
END
$$;

DO $$ BEGIN RAISE NOTICE '%', trips_roles(); END $$;

-- The trips already loaded: their pairs, and the origins of their destination rows.
SELECT rebuild_area_counts() WHERE EXISTS (SELECT FROM trip_rows);
