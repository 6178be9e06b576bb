-- 003: one row per file handed to `trips ingest`: what it was, how far it got, how it ended.
--
-- The row is written from the loader's autocommit connection, so it exists (and can be watched) while the
-- file's trips are still invisible inside the loading transaction. Only the final `done` is written by the
-- loading transaction itself, so "job done" and "its trips are committed" are one and the same commit.

CREATE TABLE ingest_jobs (
    id             integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file           text        NOT NULL,                 -- as given on the command line ('-' is stdin)
    total_bytes    bigint,                               -- size on disk; NULL when unknown (stdin)
    bytes          bigint      NOT NULL DEFAULT 0,       -- bytes read so far (compressed bytes for .gz)
    content_sha256 text,                                 -- of the decompressed content, once read whole
    state          text        NOT NULL DEFAULT 'queued'
                   CHECK (state IN ('queued', 'loading', 'finishing', 'done', 'failed', 'skipped')),
    rows           bigint      NOT NULL DEFAULT 0,       -- trips loaded (so far, while loading)
    rejected       bigint      NOT NULL DEFAULT 0,       -- records skipped by --skip-invalid
    forced         boolean     NOT NULL DEFAULT false,   -- loaded with --force despite a known content hash
    duplicate_of   integer     REFERENCES ingest_jobs (id), -- for `skipped`: the job that loaded this content
    rejects_file   text,                                 -- where --skip-invalid wrote the rejected records
    error          text,                                 -- why it failed
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz
);

CREATE INDEX ingest_jobs_content ON ingest_jobs (content_sha256) WHERE state = 'done';

-- Advisory lock namespace of this project: (7217, job id) is held by the loader's session while it works on
-- that job. A job that is not finished and whose lock is free has lost its loader.
CREATE FUNCTION ingest_lock_class() RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT 7217';

-- Open a job and take its session lock in the same transaction, so no one can see the job without the lock.
CREATE FUNCTION ingest_job_open(file text, total_bytes bigint, forced boolean) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    job integer;
BEGIN
    INSERT INTO ingest_jobs (file, total_bytes, forced) VALUES (file, total_bytes, forced) RETURNING id INTO job;
    PERFORM pg_advisory_lock(ingest_lock_class(), job);
    RETURN job;
END
$$;

-- Mark as failed every unfinished job whose loader is gone (killed, crashed, connection lost): its session
-- lock is free. The loading transaction of such a job was rolled back by the server when the connection
-- dropped, so nothing of its file is in the trip table. Returns how many jobs were marked.
CREATE FUNCTION ingest_reap_abandoned() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    job integer;
    reaped integer := 0;
BEGIN
    FOR job IN SELECT id FROM ingest_jobs WHERE state IN ('queued', 'loading', 'finishing') ORDER BY id LOOP
        IF pg_try_advisory_xact_lock(ingest_lock_class(), job) THEN
            UPDATE ingest_jobs
               SET state = 'failed', finished_at = now(),
                   error = 'the loader stopped before finishing (process killed or connection lost); '
                           'nothing of this file was committed'
             WHERE id = job AND state IN ('queued', 'loading', 'finishing');
            reaped := reaped + 1;
        END IF;
    END LOOP;
    RETURN reaped;
END
$$;
