-- 006: the database side of loading one file, called by the loader inside the file's single transaction:
--
--   BEGIN;
--   SELECT * FROM ingest_create_staging(job);   -- empty tables for this job's trips and group tally
--   COPY trip_rows_job_<job> FROM STDIN (FORMAT binary, FREEZE);
--   COPY trip_group_counts_job_<job> FROM STDIN (FORMAT binary, FREEZE);
--   SELECT ingest_finish(job, sha256, rows, rejected, tallies...);   -- attach it, add the rollups, mark done
--   COMMIT;
--
-- A failure anywhere before COMMIT (bad record, lost connection, killed loader) rolls all of it back.

-- A job's own table of each table partitioned by job: <parent>_job_<job>.
CREATE FUNCTION ingest_job_table(parent text, job integer) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT format('%s_job_%s', parent, job) $$;

-- The tables partitioned by job (004, 005), which every load adds a partition to.
CREATE FUNCTION ingest_job_parents() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$ SELECT ARRAY['trip_rows', 'trip_group_counts'] $$;

-- Each staging table carries CHECK (job_id = job), which implies the partition constraint, so ATTACH
-- PARTITION trusts it instead of scanning the rows again. Being created in this transaction also lets COPY
-- use FREEZE (rows are written already frozen: no later vacuum pass rewrites them).
CREATE FUNCTION ingest_create_staging(job integer, OUT trips regclass, OUT groups regclass)
LANGUAGE plpgsql AS $$
DECLARE
    parent text;
BEGIN
    FOREACH parent IN ARRAY ingest_job_parents() LOOP
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS, CHECK (job_id = %s))',
                       ingest_job_table(parent, job), parent, job);
    END LOOP;
    trips := ingest_job_table('trip_rows', job)::regclass;
    groups := ingest_job_table('trip_group_counts', job)::regclass;
END
$$;

-- Finish a load: if a done job already holds the same content (and this job was not forced), return that
-- job's id and change nothing; the loader then rolls back and records this job as skipped. Otherwise
-- attach the job's tables of trips and group tally, add the file's region/datasource tally to
-- region_datasource_stats (005), mark the job done, and return NULL.
--
-- That tally comes from the loader, which counted it while streaming: one entry per (region, datasource)
-- of the file, as parallel arrays; departures are microseconds since 2000-01-01 like the COPY rows.
--
-- The transaction-level advisory lock on the content hash serializes two loaders finishing the same
-- content at once: the second one waits for the first to commit and then sees its done job.
CREATE FUNCTION ingest_finish(
    job integer, sha256 text, loaded bigint, skipped bigint,
    stats_region smallint[], stats_source smallint[], stats_trips bigint[], stats_first bigint[],
    stats_last bigint[]
) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    earlier integer;
    parent text;
    epoch constant timestamp := '2000-01-01';
BEGIN
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
