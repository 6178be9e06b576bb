-- 010: least privilege. Two group roles, NOLOGIN: people and services log in with roles of their own that
-- are members of one of them (README.md, "Roles").
--
--   trips_reader   reads the trips, the groups, the rollups and the job status, and calls weekly_avg*,
--                  weekly_counts*, trip_groups_at: it can change nothing.
--   trips_loader   a trips_reader that can also run `trips ingest`.
--
-- Everything else (schema migrations, `trips refresh`, the pg_cron schedule) is for the owner of the tables.
--
-- A loader writes job rows and new region and datasource names with plain privileges. The steps that
-- need the owner (creating a job's pieces, attaching them, merging pieces) run in SECURITY DEFINER
-- functions with a fixed search_path (ingest_begin, ingest_job_done, ingest_finish and trip_merge_step,
-- 007_pieces.sql), which only trips_loader may execute, and which check that the jobs are being loaded. A loader may
-- write into its job's pieces only until they are attached. forget_unused_names (007_pieces.sql) runs as
-- the owner, so that a loader removes the names of a failed file without a right to delete names in
-- general. ingest_reap_abandoned runs as the owner too,
-- so that a reader's `trips watch` can mark a dead loader's job failed (it only ever touches jobs whose
-- loader is gone).
--
-- Roles belong to the whole cluster, so creating them needs CREATEROLE. trips_roles() creates them when
-- they are missing and the caller may, then grants what this file lists; this migration calls it, and
-- `trips roles` calls it again (for an owner who gets CREATEROLE later). A later migration that adds a table
-- grants on it itself.

CREATE FUNCTION trips_roles() RETURNS text
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
                    region_datasource_stats, region_datasource_summary, region_weeks, trip_cells,
                    trip_group_grid, trip_groups, trip_groups_live, trip_groups_snapshot,
                    trip_pieces, trip_merge_policy
       TO trips_reader;

    -- What the loader's own statements write (src/ingest.rs): its job row and new names.
    GRANT INSERT, UPDATE (state, bytes, rows, rejected, error, rejects_file, duplicate_of, content_sha256,
                          finished_at)
       ON ingest_jobs TO trips_loader;
    GRANT INSERT ON regions, datasources TO trips_loader;
    -- ingest_jobs_open takes the ids of a batch's jobs from the sequence itself.
    EXECUTE format('GRANT USAGE, UPDATE ON SEQUENCE %s TO trips_loader', pg_get_serial_sequence('ingest_jobs', 'id'));
    GRANT EXECUTE ON FUNCTION ingest_begin(integer, integer),
                              ingest_job_done(integer, text, bigint, bigint),
                              ingest_finish(integer, integer, bigint, smallint[], smallint[], bigint[], bigint[],
                                            bigint[], smallint[], integer[], bigint[]),
                              trip_merge_step(text),
                              forget_unused_names()
       TO trips_loader;
    RETURN 'roles trips_reader and trips_loader are ready';
END
$$;

REVOKE EXECUTE ON FUNCTION ingest_begin(integer, integer),
                           ingest_job_done(integer, text, bigint, bigint),
                           ingest_finish(integer, integer, bigint, smallint[], smallint[], bigint[], bigint[],
                                         bigint[], smallint[], integer[], bigint[]),
                           trip_merge_step(text),
                           forget_unused_names(),
                           trips_roles()
    FROM PUBLIC;

DO $$ BEGIN RAISE NOTICE '%', trips_roles(); END $$;
