-- 022: a job's area points are compacted to one row per cell, in order of the cell.
--
-- The loader sends its buffered points whenever they reach its tally limit (2M points by default, so every
-- 1M trips), and each send writes one row per cell it met. A cell of a 10M-trip file so has up to ten
-- rows, 7.3 on average at 10M, scattered over the job's table in the order they were sent. Every reader
-- of a cell fetches them all: at 10M trips a busy 5.9 km box by both read 19,000 rows for its 597,000
-- points, and the row fetches were a third of its time.
--
-- compact_area_points(job) rewrites a done job's partition: one row per (side, cell), its points in the
-- order rebuild_area_counts() gives them (longitude first, as 015 needs), the rows in index order. The
-- new table is filled and indexed beside the old one, which readers go on using; then, in the same
-- transaction, the old one is detached and dropped and the new one attached in its place (a moment's
-- ACCESS EXCLUSIVE lock on trip_area_points, no scan: the partition's CHECK proves its job). The answers
-- do not change; a compaction that fails or is interrupted leaves the old partition as it was.
--
-- `trips ingest` compacts its job right after marking it done (the trips are visible before), unless told
-- not to; `trips compact` compacts every done job that needs it (a job whose cells each have one row is
-- left alone).

CREATE FUNCTION compact_area_points(job integer, OUT rows_before bigint, OUT rows_after bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
-- One sort of the points by cell and longitude feeds a GroupAggregate, which hands each group's rows to
-- its array_agg()s in that order (a HashAggregate is not used, so nothing can reorder them).
SET enable_hashagg = off SET work_mem = '256MB' AS $$
DECLARE
    part constant text := ingest_job_table('trip_area_points', job);
    merged constant text := ingest_job_table('trip_area_points', job) || '_compacted';
    needed boolean;
BEGIN
    -- class + 2: one compaction of a job at a time.
    PERFORM pg_advisory_xact_lock(ingest_lock_class() + 2, job);
    IF NOT EXISTS (SELECT FROM ingest_jobs j WHERE j.id = job AND j.state = 'done') THEN
        RAISE EXCEPTION 'ingest job % is not done: only a done job''s area points are compacted (`trips jobs` lists the jobs)', job;
    END IF;
    EXECUTE format('SELECT count(*), EXISTS (SELECT FROM %I GROUP BY side, cy, cx HAVING count(*) > 1) FROM %I',
                   part, part)
       INTO rows_before, needed;
    IF NOT needed THEN
        rows_after := rows_before;
        RETURN;
    END IF;

    EXECUTE format('CREATE TABLE %I (LIKE trip_area_points INCLUDING DEFAULTS INCLUDING CONSTRAINTS, '
                   'CONSTRAINT %I CHECK (job_id = %s))', merged, part || '_job_id_check', job);
    -- The subquery's ORDER BY names its own columns: the cell, then the unnested points.
    EXECUTE format(
        $sql$INSERT INTO %I (job_id, side, cx, cy, trips, lon, lat, departed_at, other_lon, other_lat, lat_sorted)
             SELECT %s, p.side, p.cx, p.cy, count(*), array_agg(p.lon), array_agg(p.lat),
                    array_agg(p.departed_at), array_agg(p.other_lon), array_agg(p.other_lat),
                    array_agg(p.lat ORDER BY p.lat)
               FROM (SELECT r.side, r.cy, r.cx, unnest(r.lon) AS lon, unnest(r.lat) AS lat,
                            unnest(r.departed_at) AS departed_at,
                            unnest(r.other_lon) AS other_lon, unnest(r.other_lat) AS other_lat
                       FROM %I r
                      ORDER BY side, cy, cx, lon, lat, departed_at, other_lon, other_lat) AS p
              GROUP BY p.side, p.cy, p.cx$sql$,
        merged, job, part);
    GET DIAGNOSTICS rows_after = ROW_COUNT;
    EXECUTE format('CREATE INDEX %I ON %I (side, cy, cx) INCLUDE (trips)', merged || '_cell', merged);

    EXECUTE format('ALTER TABLE trip_area_points DETACH PARTITION %I', part);
    EXECUTE format('DROP TABLE %I', part);
    EXECUTE format('ALTER TABLE %I RENAME TO %I', merged, part);
    EXECUTE format('ALTER INDEX %I RENAME TO %I', merged || '_cell', part || '_cell');
    EXECUTE format('ALTER TABLE trip_area_points ATTACH PARTITION %I FOR VALUES IN (%s)', part, job);
END
$$;

REVOKE EXECUTE ON FUNCTION compact_area_points(integer) FROM PUBLIC;

-- Privileges (012, 013, 016): as in 016, and the loader may compact (its own job, once done).
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
                                            bigint[], bigint[]),
                              compact_area_points(integer)
       TO trips_loader;
    RETURN 'roles trips_reader and trips_loader are ready';
END
$$;

DO $$ BEGIN RAISE NOTICE '%', trips_roles(); END $$;
