-- 007: ingest status pushed to anyone listening: `LISTEN ingest_status;` in psql, `trips watch`, any client.
--
-- Every insert or update of an ingest_jobs row sends its new state as JSON on the channel ingest_status.
-- The loader writes the job row from its autocommit connection (open, loading, progress every second,
-- finishing, failed, skipped), so those notifications go out at once; the final `done` is written by the
-- loading transaction and goes out when it commits, which is exactly when the file's trips become visible.
-- A listener therefore never sees `done` for trips it cannot query yet.
--
-- Payload fields: job, file, state, rows, rejected, bytes, total_bytes (null when unknown), elapsed_s,
-- error (null unless failed), error_truncated, duplicate_of, rejects_file, at (when the change was made, UTC, ISO 8601).
-- NOTIFY payloads must stay under 8000 bytes: a long file name is cut to 1000 characters and the error to
-- what still fits, with error_truncated = true.

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
