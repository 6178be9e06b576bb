-- 012: least privilege. Two group roles, NOLOGIN: people and services log in with roles of their own that
-- are members of one of them (README.md, "Roles").
--
--   trips_reader   reads the trips, the groups, the rollups and the job status, and calls weekly_avg*,
--                  weekly_counts*, trip_groups_at: it can change nothing.
--   trips_loader   a trips_reader that can also run `trips ingest`.
--
-- Everything else (schema migrations, `trips refresh`, the pg_cron schedule) is for the owner of the tables.
--
-- A loader writes job rows, new region and datasource names, and the area tallies with plain privileges.
-- The steps that need the owner, creating the job's own tables and attaching them as partitions, run in
-- SECURITY DEFINER functions (ingest_create_staging, ingest_finish) with a fixed search_path, which only
-- trips_loader may execute, and which check that the job is one being loaded. A loader may write into its
-- job's tables only until they are attached. ingest_reap_abandoned runs as the owner too, so that a reader's
-- `trips watch` can mark a dead loader's job failed (it only ever touches jobs whose loader is gone).
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
                    region_datasource_stats, region_datasource_summary,
                    trip_group_grid, trip_group_counts, trip_groups, trip_groups_live, trip_groups_snapshot,
                    trip_area_counts, trip_area_points
       TO trips_reader;

    -- What the loader's own statements write (src/ingest.rs): its job row, new names, the area tallies.
    GRANT INSERT, UPDATE (state, bytes, rows, rejected, error, rejects_file, duplicate_of, content_sha256,
                          finished_at)
       ON ingest_jobs TO trips_loader;
    GRANT INSERT ON regions, datasources, trip_area_counts, trip_area_points TO trips_loader;
    GRANT EXECUTE ON FUNCTION ingest_create_staging(integer),
                              ingest_finish(integer, text, bigint, bigint, smallint[], smallint[], bigint[],
                                            bigint[], bigint[])
       TO trips_loader;
    RETURN 'roles trips_reader and trips_loader are ready';
END
$$;

-- Creating a job's tables: as 006, run as the owner, and the loader may COPY into them until they are
-- attached.
CREATE OR REPLACE FUNCTION ingest_create_staging(job integer, OUT trips regclass, OUT groups regclass)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    parent text;
BEGIN
    IF NOT EXISTS (SELECT FROM ingest_jobs j WHERE j.id = job AND j.state = 'loading') THEN
        RAISE EXCEPTION 'ingest job % is not being loaded', job;
    END IF;
    FOREACH parent IN ARRAY ingest_job_parents() LOOP
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS, CHECK (job_id = %s))',
                       ingest_job_table(parent, job), parent, job);
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'trips_loader') THEN
            EXECUTE format('GRANT INSERT ON %I TO trips_loader', ingest_job_table(parent, job));
        END IF;
    END LOOP;
    trips := ingest_job_table('trip_rows', job)::regclass;
    groups := ingest_job_table('trip_group_counts', job)::regclass;
END
$$;

-- Finishing a load: as 006, run as the owner, and the loader's INSERT on the job's tables ends with it.
CREATE OR REPLACE FUNCTION ingest_finish(
    job integer, sha256 text, loaded bigint, skipped bigint,
    stats_region smallint[], stats_source smallint[], stats_trips bigint[], stats_first bigint[],
    stats_last bigint[]
) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    earlier integer;
    parent text;
    epoch constant timestamp := '2000-01-01';
BEGIN
    IF NOT EXISTS (SELECT FROM ingest_jobs j WHERE j.id = job AND j.state IN ('loading', 'finishing')) THEN
        RAISE EXCEPTION 'ingest job % is not being loaded', job;
    END IF;
    -- class + 1: a namespace apart from the per-job session locks of 003.
    PERFORM pg_advisory_xact_lock(ingest_lock_class() + 1, hashtext(sha256));

    SELECT e.id INTO earlier
      FROM ingest_jobs e
     WHERE e.content_sha256 = sha256 AND e.state = 'done' AND e.id <> job
       AND NOT (SELECT forced FROM ingest_jobs WHERE id = job)
     ORDER BY e.id
     LIMIT 1;
    IF earlier IS NOT NULL THEN
        RETURN earlier;
    END IF;

    FOREACH parent IN ARRAY ingest_job_parents() LOOP
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES IN (%s)',
                       parent, ingest_job_table(parent, job), job);
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'trips_loader') THEN
            EXECUTE format('REVOKE INSERT ON %I FROM trips_loader', ingest_job_table(parent, job));
        END IF;
    END LOOP;

    INSERT INTO region_datasource_stats AS s
    SELECT r, d, n, epoch + f * interval '1 microsecond', epoch + l * interval '1 microsecond'
      FROM unnest(stats_region, stats_source, stats_trips, stats_first, stats_last) AS u(r, d, n, f, l)
    ON CONFLICT (region_id, datasource_id) DO UPDATE
       SET trips           = s.trips + excluded.trips,
           first_departure = least(s.first_departure, excluded.first_departure),
           last_departure  = greatest(s.last_departure, excluded.last_departure);

    UPDATE ingest_jobs
       SET state = 'done', content_sha256 = sha256, rows = loaded, rejected = skipped,
           finished_at = clock_timestamp()  -- now() would be the start of this long transaction
     WHERE id = job;
    RETURN NULL;
END
$$;

ALTER FUNCTION ingest_reap_abandoned() SECURITY DEFINER SET search_path = public, pg_temp;

REVOKE EXECUTE ON FUNCTION ingest_create_staging(integer),
                           ingest_finish(integer, text, bigint, bigint, smallint[], smallint[], bigint[],
                                         bigint[], bigint[]),
                           trips_roles()
    FROM PUBLIC;

DO $$ BEGIN RAISE NOTICE '%', trips_roles(); END $$;
