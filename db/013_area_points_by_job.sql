-- 013: trip_area_points (009) becomes partitioned by ingest job, like trip_rows and trip_group_counts.
--
-- Until now every load inserted its points into one table and its B-tree. That cost grew with the database:
-- at 100M trips the index no longer fits in memory, and 1M more trips took 1.4x as long as into an empty
-- database. Now the loader COPYs its points (FREEZE) into a table of the job's own, created with the job's
-- other tables, and ATTACH PARTITION in ingest_finish builds that table's part of the index in one sorted
-- pass. Nothing of the earlier jobs is read or written, and a failed load leaves nothing behind, as before.
--
-- Readers are unchanged: they ask the parent, which looks a cell up in each job's index. Every done job has
-- a partition (ingest_finish attaches it in the transaction that marks the job done).

ALTER TABLE trip_area_points RENAME TO trip_area_points_before_013;
ALTER INDEX trip_area_points_cell RENAME TO trip_area_points_before_013_cell;

CREATE TABLE trip_area_points (
    LIKE trip_area_points_before_013 INCLUDING DEFAULTS INCLUDING CONSTRAINTS
) PARTITION BY LIST (job_id);

-- Staging tables now copy CHECK constraints too: ATTACH PARTITION requires the parent's (side IN (1, 2)).
CREATE OR REPLACE FUNCTION ingest_job_parents() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$ SELECT ARRAY['trip_rows', 'trip_group_counts', 'trip_area_points'] $$;

CREATE OR REPLACE FUNCTION ingest_create_staging(job integer, OUT trips regclass, OUT groups regclass)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    parent text;
BEGIN
    IF NOT EXISTS (SELECT FROM ingest_jobs j WHERE j.id = job AND j.state = 'loading') THEN
        RAISE EXCEPTION 'ingest job % is not being loaded', job;
    END IF;
    FOREACH parent IN ARRAY ingest_job_parents() LOOP
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS, CHECK (job_id = %s))',
                       ingest_job_table(parent, job), parent, job);
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'trips_loader') THEN
            EXECUTE format('GRANT INSERT ON %I TO trips_loader', ingest_job_table(parent, job));
        END IF;
    END LOOP;
    trips := ingest_job_table('trip_rows', job)::regclass;
    groups := ingest_job_table('trip_group_counts', job)::regclass;
END
$$;

-- The points already loaded move to a partition per job; the index is built once they are in.
DO $$
DECLARE
    job integer;
BEGIN
    FOR job IN SELECT id FROM ingest_jobs WHERE state = 'done'
               UNION SELECT DISTINCT job_id FROM trip_area_points_before_013 LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF trip_area_points FOR VALUES IN (%s)',
                       ingest_job_table('trip_area_points', job), job);
    END LOOP;
END
$$;
INSERT INTO trip_area_points SELECT * FROM trip_area_points_before_013;
DROP TABLE trip_area_points_before_013;
CREATE INDEX trip_area_points_cell ON trip_area_points (side, cy, cx) INCLUDE (trips);

-- Privileges (012): readers read the new table; the loader no longer inserts into it directly (it writes
-- only its job's table, until ingest_finish attaches it).
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
                    trip_area_counts, trip_area_points
       TO trips_reader;

    -- What the loader's own statements write (src/ingest.rs): its job row, new names, the area counts.
    GRANT INSERT, UPDATE (state, bytes, rows, rejected, error, rejects_file, duplicate_of, content_sha256,
                          finished_at)
       ON ingest_jobs TO trips_loader;
    GRANT INSERT ON regions, datasources, trip_area_counts TO trips_loader;
    GRANT EXECUTE ON FUNCTION ingest_create_staging(integer),
                              ingest_finish(integer, text, bigint, bigint, smallint[], smallint[], bigint[],
                                            bigint[], bigint[])
       TO trips_loader;
    RETURN 'roles trips_reader and trips_loader are ready';
END
$$;

DO $$ BEGIN RAISE NOTICE '%', trips_roles(); END $$;
