-- 003: one row per file handed to `trips ingest`: what it was, how far it got, how it ended; and every
-- change of that row pushed to whoever listens (`LISTEN ingest_status` in psql, `trips watch`, any client).
--
-- The row is written from the loader's autocommit connection, so it exists (and can be watched) while the
-- file's trips are still invisible inside the loading transaction. Only the final `done` is written by the
-- loading transaction itself, so "job done" and "its trips are committed" are one and the same commit, and
-- a listener never sees `done` for trips it cannot query yet.

CREATE TABLE ingest_jobs (
    id             integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    batch          integer     NOT NULL,                 -- the first of the jobs opened with it (ingest_jobs_open)
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
-- A content is done once, unless forced: a second job finishing the same content waits here for the first
-- one's transaction, and fails to be done if it commits (ingest_job_done then says which job holds it).
CREATE UNIQUE INDEX ingest_jobs_content_once ON ingest_jobs (content_sha256) WHERE state = 'done' AND NOT forced;
CREATE INDEX ingest_jobs_batch ON ingest_jobs (batch);

-- Advisory lock namespace of this project: (7217, batch) is held by the loader's session while it works on
-- the jobs opened together with the job `batch`: a job that is not finished and whose batch's lock is free
-- has lost its loader. (7219, 0) lets one merge run at a time; (7220, 0) is held shared by every loader's
-- session from ingest_jobs_open to ingest_jobs_close, so that no name a loader uses is removed under it
-- (forget_unused_names, 007_pieces.sql); (7221, 0) makes the opening of jobs take turns (ingest_jobs_open).
-- A loader holds these few locks however many files its transaction loads.
CREATE FUNCTION ingest_lock_class() RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT 7217';

-- Open the jobs of files loaded in one transaction (one file, or a batch of small files: src/ingest/mod.rs)
-- and take their session locks in the same transaction, so no one can see a job without them.
-- ingest_jobs_close (007_pieces.sql) releases them. The jobs' ids are consecutive, in the order of `files`:
-- the batch lands as one piece covering its range of jobs (007_pieces.sql), so no other job may fall
-- inside it. The advisory lock (7221, 0) makes openings take turns, so the ids taken from the sequence
-- here are the batch's alone.
CREATE FUNCTION ingest_jobs_open(files text[], total_bytes bigint[], forced boolean) RETURNS SETOF integer
LANGUAGE plpgsql AS $$
DECLARE
    ids constant text := pg_get_serial_sequence('ingest_jobs', 'id');
    first integer;
BEGIN
    IF coalesce(cardinality(files), 0) = 0 THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(ingest_lock_class() + 4, 0);
    first := nextval(ids);
    PERFORM setval(ids, first + cardinality(files) - 1);
    PERFORM pg_advisory_lock(ingest_lock_class(), first);
    PERFORM pg_advisory_lock_shared(ingest_lock_class() + 3, 0);
    RETURN QUERY
        INSERT INTO ingest_jobs (id, batch, file, total_bytes, forced) OVERRIDING SYSTEM VALUE
        SELECT first + i::integer - 1, first, f, b, forced
          FROM unnest(files, total_bytes) WITH ORDINALITY AS u(f, b, i)
         ORDER BY i
        RETURNING id;
END
$$;

-- The loader's progress: a job's state and counters, written from its autocommit connection while the
-- file loads. At the boundary between two files of a batch, the next file's job becomes `loading` in the
-- same call, after the first one's update (so listeners see the two in that order): one round trip for
-- both, at every file of a batch. Given the content's hash of a file read whole, it also returns the done
-- job that holds the same content, if any and if this job is not forced, so that the loader skips the file
-- before sending it (ingest_job_done, 007_pieces.sql, checks again in the loading transaction).
CREATE FUNCTION ingest_job_progress(job integer, state text, rows bigint, rejected bigint, bytes bigint,
                                    rejects_file text, next_job integer, sha256 text) RETURNS integer
LANGUAGE sql AS $$
    UPDATE ingest_jobs j
       SET state = $2, rows = $3, rejected = $4, bytes = $5, rejects_file = $6
     WHERE j.id = $1;
    UPDATE ingest_jobs j SET state = 'loading' WHERE j.id = $7;
    SELECT e.id
      FROM ingest_jobs e
     WHERE e.content_sha256 = $8 AND e.state = 'done' AND e.id <> $1
       AND NOT (SELECT j.forced FROM ingest_jobs j WHERE j.id = $1)
     ORDER BY e.id
     LIMIT 1;
$$;

-- Mark as failed every unfinished job whose loader is gone (killed, crashed, connection lost): its batch's
-- session lock is free. The loading transaction of such a job was rolled back by the server when the
-- connection dropped, so nothing of its file is stored. Returns how many jobs were marked. It runs as the
-- owner (SECURITY DEFINER), so that a reader's `trips watch` can mark a dead loader's job failed; it only
-- ever touches jobs whose loader is gone.
CREATE FUNCTION ingest_reap_abandoned() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    abandoned integer;
    jobs integer;
    reaped integer := 0;
BEGIN
    FOR abandoned IN SELECT DISTINCT batch FROM ingest_jobs
                      WHERE state IN ('queued', 'loading', 'finishing') ORDER BY batch LOOP
        IF pg_try_advisory_xact_lock(ingest_lock_class(), abandoned) THEN
            UPDATE ingest_jobs
               SET state = 'failed', finished_at = now(),
                   error = 'the loader stopped before finishing (process killed or connection lost); '
                           'nothing of this file was committed'
             WHERE batch = abandoned AND state IN ('queued', 'loading', 'finishing');
            GET DIAGNOSTICS jobs = ROW_COUNT;
            reaped := reaped + jobs;
        END IF;
    END LOOP;
    RETURN reaped;
END
$$;

-- The status payload. Fields: job, file, state, rows, rejected, bytes, total_bytes (null when unknown),
-- elapsed_s, error (null unless failed), error_truncated, duplicate_of, rejects_file, at (when the change
-- was made, UTC, ISO 8601). NOTIFY payloads must stay under 8000 bytes: a long file name is cut to 1000
-- characters and the error to what still fits, with error_truncated = true.
CREATE FUNCTION ingest_status_payload(j ingest_jobs) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    limit_bytes constant integer := 7900;
    base jsonb := jsonb_build_object(
        'job', j.id,
        'file', left(j.file, 1000),
        'state', j.state,
        'rows', j.rows,
        'rejected', j.rejected,
        'bytes', j.bytes,
        'total_bytes', j.total_bytes,
        'elapsed_s', round(extract(epoch FROM coalesce(j.finished_at, clock_timestamp()) - j.started_at), 3),
        'duplicate_of', j.duplicate_of,
        'rejects_file', j.rejects_file,
        'at', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'error', NULL,
        'error_truncated', false);
    room integer := limit_bytes - octet_length(base::text);
    error text := j.error;
    cut integer;
BEGIN
    IF error IS NOT NULL AND octet_length(to_jsonb(error)::text) > room THEN
        cut := (room - 100) / 6;  -- a character takes at most 6 bytes in JSON (\uXXXX); 100 for the note
        error := left(error, cut) || ' ... (cut to fit a notification; the full text is in ingest_jobs.error)';
        base := base || jsonb_build_object('error_truncated', true);
    END IF;
    RETURN (base || jsonb_build_object('error', error))::text;
END
$$;

CREATE FUNCTION ingest_jobs_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ingest_status', ingest_status_payload(NEW));
    RETURN NULL;
END
$$;

CREATE TRIGGER ingest_jobs_notify
AFTER INSERT OR UPDATE ON ingest_jobs
FOR EACH ROW EXECUTE FUNCTION ingest_jobs_notify();
