-- 007: pieces: how a file lands, and how small landings are merged into large ones.
--
-- trip_rows and trip_cells are partitioned by ranges of job ids. A piece is one partition: the rows of the
-- consecutive jobs first_job..last_job. A large file is loaded in a transaction of its own; small files
-- given to one `trips ingest` are loaded together, a batch of them in one transaction, each file in a
-- savepoint of its own, so that the batch lands as one piece. Loading (src/ingest/) runs:
--
--   SELECT ingest_jobs_open(files, ...);            -- consecutive jobs (003_ingest_jobs.sql), autocommit
--   BEGIN;
--   SELECT * FROM ingest_begin(first_job, last_job);  -- a new, empty piece of each table for the range
--   -- for each file (a batch of several: between SAVEPOINT and RELEASE, or ROLLBACK TO on failure):
--   COPY <piece of trip_rows> FROM STDIN (FORMAT binary);   -- FREEZE when the file is alone
--   SELECT ingest_job_done(job, sha256, ...);       -- or the job that already holds this content
--   -- then, once:
--   COPY <piece of trip_cells> FROM STDIN (FORMAT binary);  -- the cell tally of the files done
--   SELECT ingest_finish(first_job, last_job, ...); -- index the pieces, attach them, add the small rollups
--   COMMIT;
--
-- so every row is written once, a failed file leaves nothing behind, and a loader's open transaction holds
-- no lock on the partitioned tables until its last statement (the new tables are created from the catalog,
-- not with LIKE, which would lock the parent until commit). A batch saves each small file the making,
-- indexing and attaching of its own tables and the first merges of its trips; its files are done together,
-- when it commits (docs/store.md, "Batches of small files").
--
-- A thousand small files would make a thousand pieces, and every question would read a thousand indexes.
-- So pieces are merged as in an LSM tree (Lucene's LogMergePolicy, RocksDB's universal compaction):
-- when F consecutive pieces are alike in size, they are rewritten as one, about F times larger. A merge
-- never rewrites a piece that holds more than half of its trips, so a trip is rewritten only when its
-- piece at least doubles: at most log2(N / smallest file) times, and about log_F of that when files are
-- alike. A table keeps about F pieces per power of F. trip_merge_policy sets F per table, and the size past
-- which trip_rows pieces are no longer merged (rewriting 100M trips to save a few index probes does not
-- pay).
--
-- A merge is one transaction: build the new piece from the old ones (readers go on reading the old ones),
-- then swap: drop the old pieces and attach the new one. Only the swap locks the parent table, for a moment;
-- it waits at most 50 ms for running readers and otherwise backs off and tries again. Killed at any
-- moment, a merge rolls back and leaves the pieces as they were. Merges run after each ingest (the loader
-- calls trip_merge_step() until it says there is nothing to do), on a schedule (CALL trips_merge(), e.g.
-- from pg_cron), and by hand (`trips compact`).

CREATE TABLE trip_pieces (
    parent    text        NOT NULL,   -- trip_rows or trip_cells
    first_job integer     NOT NULL,
    last_job  integer     NOT NULL,   -- inclusive
    trips     bigint      NOT NULL,   -- trips the piece covers (for trip_cells: trips counted by it)
    merges    integer     NOT NULL DEFAULT 0,   -- how many merges its rows went through
    made_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (parent, first_job),
    CHECK (first_job <= last_job)
);

CREATE TABLE trip_merge_policy (
    parent    text    PRIMARY KEY,
    fan_in    integer NOT NULL CHECK (fan_in >= 2),
    max_trips bigint  NOT NULL CHECK (max_trips > 0)   -- a merge never makes a piece larger than this
);
-- F = 30: a larger fan-in rewrites each trip fewer times, and questions pay little for the more pieces
-- it leaves between merges (docs/store.md, "The fan-in").
INSERT INTO trip_merge_policy VALUES
    ('trip_rows', 30, 20000000),
    ('trip_cells', 30, 9223372036854775807);

CREATE FUNCTION trip_piece_parents() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$ SELECT ARRAY['trip_rows', 'trip_cells'] $$;

-- A piece's table: trip_rows_j12 for job 12 alone, trip_rows_j12_40 for jobs 12 to 40.
CREATE FUNCTION trip_piece_table(parent text, first_job integer, last_job integer) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN first_job = last_job THEN format('%s_j%s', parent, first_job)
                ELSE format('%s_j%s_%s', parent, first_job, last_job) END
$$;

-- Creates a piece's empty table (named `prefix` and the piece's name): the parent's columns, read from the
-- catalog (no lock on the parent), and a CHECK that proves the partition bound, so that attaching it does
-- not scan it.
CREATE FUNCTION trip_piece_create(parent text, first_job integer, last_job integer, prefix text DEFAULT '')
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    name constant text := prefix || trip_piece_table(parent, first_job, last_job);
    columns text;
BEGIN
    SELECT string_agg(format('%I %s', attname, format_type(atttypid, atttypmod))
                      || CASE WHEN attnotnull THEN ' NOT NULL' ELSE '' END, ', ' ORDER BY attnum)
      INTO columns
      FROM pg_attribute
     WHERE attrelid = parent::regclass AND attnum > 0 AND NOT attisdropped;
    EXECUTE format('CREATE TABLE %I (%s, CHECK (job_id >= %s AND job_id <= %s))',
                   name, columns, first_job, last_job);
    RETURN name;
END
$$;

-- The indexes of a piece, the same as its parent's (attaching then adopts them instead of building them
-- under the parent's lock).
CREATE FUNCTION trip_piece_index(parent text, piece text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF parent = 'trip_rows' THEN
        EXECUTE format('CREATE INDEX ON %I (trip_cell(2, origin_lon, origin_lat))', piece);
        EXECUTE format('CREATE INDEX ON %I (trip_cell(2, dest_lon, dest_lat))', piece);
    ELSIF parent = 'trip_cells' THEN
        EXECUTE format('CREATE INDEX ON %I (side, level, cell)', piece);
    END IF;
END
$$;

-- The statistics of a new piece (loaded or merged), so that questions asked before autovacuum gets to it
-- are planned well: without them the planner misjudges how many of a piece's tally rows a list of cells
-- matches. Only the tally's key columns, which is cheap; the trips' statistics changed no answer's time
-- measurably and their ANALYZE costs about as much for a batch's piece as for a file of 10M trips, so the
-- trips are left to autovacuum (docs/store.md, "Fresh pieces").
CREATE FUNCTION trip_piece_analyze(parent text, piece text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF parent = 'trip_cells' THEN
        EXECUTE format('ANALYZE %I (side, level, cell)', piece);
    END IF;
END
$$;

CREATE FUNCTION trip_piece_attach(parent text, first_job integer, last_job integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)',
                   parent, trip_piece_table(parent, first_job, last_job), first_job, last_job + 1);
END
$$;

-- Loading, step 1: the empty pieces of a range of jobs opened together (ingest_jobs_open: one file, or a
-- batch of small files loaded in one transaction), into which the loader COPYs. Runs as the owner, so that
-- a trips_loader login needs no right to create tables; it may insert into these until they are attached.
CREATE FUNCTION ingest_begin(first_job integer, last_job integer)
RETURNS TABLE (trips text, cells text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    parent text;
BEGIN
    IF (SELECT count(*) FROM ingest_jobs j
         WHERE j.id BETWEEN first_job AND last_job AND j.state IN ('queued', 'loading'))
       IS DISTINCT FROM last_job - first_job + 1 THEN
        RAISE EXCEPTION 'ingest jobs % to % are not being loaded', first_job, last_job;
    END IF;
    FOREACH parent IN ARRAY trip_piece_parents() LOOP
        PERFORM trip_piece_create(parent, first_job, last_job);
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'trips_loader') THEN
            EXECUTE format('GRANT INSERT ON %I TO trips_loader', trip_piece_table(parent, first_job, last_job));
        END IF;
    END LOOP;
    RETURN QUERY SELECT trip_piece_table('trip_rows', first_job, last_job),
                        trip_piece_table('trip_cells', first_job, last_job);
END
$$;

-- Loading, step 2, once per file, when its rows are sent (in a batch, inside the file's savepoint). If a done
-- job already holds the same content (and this job was not forced), return that job's id and change
-- nothing: the loader then rolls the file back and records its job as skipped. Otherwise mark the job done
-- (seen by others when the transaction commits) and return NULL. Two loaders finishing the same content
-- take turns on the unique index ingest_jobs_content_once (003_ingest_jobs.sql): the second one's update
-- waits there for the first one's transaction and, if it committed, fails; the second then finds it.
CREATE FUNCTION ingest_job_done(job integer, sha256 text, loaded bigint, skipped bigint) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    forced boolean;
    earlier integer;
BEGIN
    SELECT j.forced INTO forced FROM ingest_jobs j WHERE j.id = job AND j.state IN ('loading', 'finishing');
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ingest job % is not being loaded', job;
    END IF;
    FOR attempt IN 1..2 LOOP
        IF NOT forced THEN
            SELECT e.id INTO earlier
              FROM ingest_jobs e
             WHERE e.content_sha256 = sha256 AND e.state = 'done' AND e.id <> job
             ORDER BY e.id
             LIMIT 1;
            IF earlier IS NOT NULL THEN
                RETURN earlier;
            END IF;
        END IF;
        BEGIN
            UPDATE ingest_jobs
               SET state = 'done', content_sha256 = sha256, rows = loaded, rejected = skipped,
                   finished_at = clock_timestamp()  -- now() would be the start of this long transaction
             WHERE id = job;
            RETURN NULL;
        EXCEPTION WHEN unique_violation THEN
            NULL;  -- the same content was committed by another job meanwhile: the next attempt finds it
        END;
    END LOOP;
    RAISE EXCEPTION 'ingest job %: its content is done by another job that cannot be seen', job;
END
$$;

-- Loading, step 3, once per transaction, when every job of the range is done, failed or skipped: index the
-- pieces and attach them, and add the tallies of regions of the files done (parallel arrays, departures in
-- microseconds since 2000-01-01 like the COPY rows) to the two small rollups. The loader then commits.
CREATE FUNCTION ingest_finish(
    first_job integer, last_job integer, loaded bigint,
    stats_region smallint[], stats_source smallint[], stats_trips bigint[], stats_first bigint[],
    stats_last bigint[], weeks_region smallint[], weeks_week integer[], weeks_trips bigint[]
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    parent text;
    piece text;
    epoch constant timestamp := '2000-01-01';
BEGIN
    IF (SELECT count(*) FILTER (WHERE j.state IN ('done', 'failed', 'skipped'))
         FROM ingest_jobs j WHERE j.id BETWEEN first_job AND last_job) IS DISTINCT FROM last_job - first_job + 1
       OR NOT EXISTS (SELECT FROM ingest_jobs j WHERE j.id BETWEEN first_job AND last_job AND j.state = 'done')
    THEN
        RAISE EXCEPTION 'ingest jobs % to % are not being finished', first_job, last_job;
    END IF;

    -- Index and analyze first: until the attach below, nothing here locks the parents.
    FOREACH parent IN ARRAY trip_piece_parents() LOOP
        piece := trip_piece_table(parent, first_job, last_job);
        PERFORM trip_piece_index(parent, piece);
        PERFORM trip_piece_analyze(parent, piece);
    END LOOP;
    FOREACH parent IN ARRAY trip_piece_parents() LOOP
        PERFORM trip_piece_attach(parent, first_job, last_job);
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'trips_loader') THEN
            EXECUTE format('REVOKE INSERT ON %I FROM trips_loader', trip_piece_table(parent, first_job, last_job));
        END IF;
        INSERT INTO trip_pieces (parent, first_job, last_job, trips) VALUES (parent, first_job, last_job, loaded);
    END LOOP;

    INSERT INTO region_datasource_stats AS s
    SELECT r, d, n, epoch + f * interval '1 microsecond', epoch + l * interval '1 microsecond'
      FROM unnest(stats_region, stats_source, stats_trips, stats_first, stats_last) AS u(r, d, n, f, l)
    ON CONFLICT (region_id, datasource_id) DO UPDATE
       SET trips           = s.trips + excluded.trips,
           first_departure = least(s.first_departure, excluded.first_departure),
           last_departure  = greatest(s.last_departure, excluded.last_departure);

    INSERT INTO region_weeks AS w
    SELECT r, k, n FROM unnest(weeks_region, weeks_week, weeks_trips) AS u(r, k, n)
    ON CONFLICT (region_id, week) DO UPDATE SET trips = w.trips + excluded.trips;
END
$$;

-- Loading, the end, whatever the outcome (from the loader's autocommit connection, after the commit or
-- rollback): release the session locks of the jobs opened together with job `batch`, then forget the names
-- no committed trip uses. Returns how many names were forgotten.
CREATE FUNCTION ingest_jobs_close(batch integer) RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_unlock(ingest_lock_class(), batch);
    PERFORM pg_advisory_unlock_shared(ingest_lock_class() + 3, 0);
    RETURN forget_unused_names();
END
$$;

-- Removes the region and datasource names that no committed trip uses: those first met in files that
-- failed, or whose loader was killed. Only while no loader is working (each holds (7220, 0) shared from
-- ingest_jobs_open to ingest_jobs_close), so a name is never removed between a loader's dimension_id() and
-- its commit; when loaders are working it does nothing, and the last one to finish does it. Runs as the
-- owner, so that a trips_loader login needs no right to delete names.
CREATE FUNCTION forget_unused_names() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    regions_gone integer;
    datasources_gone integer;
BEGIN
    IF NOT pg_try_advisory_xact_lock(ingest_lock_class() + 3, 0) THEN
        RETURN 0;
    END IF;
    DELETE FROM regions r
     WHERE NOT EXISTS (SELECT FROM region_datasource_stats s WHERE s.region_id = r.id);
    GET DIAGNOSTICS regions_gone = ROW_COUNT;
    DELETE FROM datasources d
     WHERE NOT EXISTS (SELECT FROM region_datasource_stats s WHERE s.datasource_id = d.id);
    GET DIAGNOSTICS datasources_gone = ROW_COUNT;
    RETURN regions_gone + datasources_gone;
END
$$;

-- The rows of a merged piece from the rows of its parts (`parts`: a UNION ALL of their tables). Trips in
-- the order of their origin's cell; tallies folded to one row per key.
CREATE FUNCTION trip_merge_query(parent text, parts text, first_job integer) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE parent
        WHEN 'trip_rows' THEN format(
            'SELECT * FROM (%s) AS p ORDER BY trip_cell(2, origin_lon, origin_lat)', parts)
        WHEN 'trip_cells' THEN trip_cells_rows(format($q$
            SELECT p.side, p.level, p.cell, u.week, sum(coalesce(u.n, 1)) AS n
              FROM (%s) AS p, unnest(p.weeks, p.week_trips) AS u(week, n)
             GROUP BY 1, 2, 3, 4$q$, parts), first_job)
    END
$$;

-- The next merge the policy calls for, if any: a run of fan_in consecutive pieces of one table, together
-- within max_trips, none of which holds more than half of the run's trips (so every trip a merge rewrites
-- at least doubles its piece, and is rewritten at most log2 of N times, about log_F of N when pieces are
-- alike), with no unfinished job between them (its piece could not be attached inside a merged range).
-- Of all such runs, the one whose largest piece is of the lowest tier, then the oldest. A piece's tier is
-- floor(log_F(its trips)), pieces under 1000 trips counting as 1000.
CREATE FUNCTION trip_merge_candidate(of_parent text, OUT parent text, OUT first_job integer,
                                     OUT last_job integer, OUT pieces integer, OUT trips bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    p trip_merge_policy;
    f integer[];
    l integer[];
    n bigint[];
    tier integer[];
    unfinished integer[] := ARRAY(SELECT id FROM ingest_jobs WHERE state IN ('queued', 'loading', 'finishing'));
    best integer;   -- the best run's highest tier
    run_max integer;      -- the run's highest tier
    run_largest bigint;   -- and its largest piece
    run_trips bigint;
    ok boolean;
BEGIN
    FOR p IN SELECT * FROM trip_merge_policy
              WHERE of_parent IS NULL OR trip_merge_policy.parent = of_parent
              ORDER BY trip_merge_policy.parent LOOP
        SELECT array_agg(c.first_job ORDER BY c.first_job), array_agg(c.last_job ORDER BY c.first_job),
               array_agg(c.trips ORDER BY c.first_job),
               array_agg(floor(ln(greatest(c.trips, 1000)) / ln(p.fan_in))::integer ORDER BY c.first_job)
          INTO f, l, n, tier
          FROM trip_pieces c WHERE c.parent = p.parent;
        FOR i IN 1 .. coalesce(array_length(f, 1), 0) - p.fan_in + 1 LOOP
            run_max := tier[i];
            run_largest := n[i];
            run_trips := n[i];
            ok := true;
            FOR j IN i + 1 .. i + p.fan_in - 1 LOOP
                run_max := greatest(run_max, tier[j]);
                run_largest := greatest(run_largest, n[j]);
                run_trips := run_trips + n[j];
                ok := ok AND NOT EXISTS (SELECT FROM unnest(unfinished) AS u(id) WHERE u.id > l[j - 1] AND u.id < f[j]);
            END LOOP;
            IF ok AND 2 * run_largest <= run_trips AND run_trips <= p.max_trips
               AND (best IS NULL OR run_max < best) THEN
                best := run_max;
                parent := p.parent;
                first_job := f[i];
                last_job := l[i + p.fan_in - 1];
                pieces := p.fan_in;
                trips := run_trips;
            END IF;
        END LOOP;
    END LOOP;
END
$$;

-- One merge (of `of_parent`'s pieces, or of any table's), if the policy calls for one and no other merge is
-- running; returns what it merged, or no row. Runs as the owner, so that a trips_loader login can merge
-- after its ingest.
CREATE FUNCTION trip_merge_step(of_parent text DEFAULT NULL)
RETURNS TABLE (parent text, first_job integer, last_job integer, pieces integer, trips bigint,
               seconds double precision)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
-- If the caller goes away (killed, connection lost), stop within 100 ms and roll back, rather than finish
-- a merge nobody waits for.
SET client_connection_check_interval = '100ms'
AS $$
DECLARE
    m record;
    started constant timestamptz := clock_timestamp();
    parts text;
    merged text;
    part record;
    tries integer := 0;
BEGIN
    IF NOT pg_try_advisory_xact_lock(ingest_lock_class() + 2, 0) THEN
        RETURN;   -- another session is merging; it goes on until nothing is left
    END IF;
    PERFORM ingest_reap_abandoned();   -- a dead loader's job no longer breaks a run
    m := trip_merge_candidate(of_parent);
    IF m.parent IS NULL THEN
        RETURN;
    END IF;
    SELECT string_agg(format('SELECT * FROM %I', trip_piece_table(m.parent, c.first_job, c.last_job)),
                      ' UNION ALL ' ORDER BY c.first_job)
      INTO parts
      FROM trip_pieces c
     WHERE c.parent = m.parent AND c.first_job BETWEEN m.first_job AND m.last_job;

    -- Build: only the old pieces are read, and nothing is locked that readers or loaders need.
    merged := trip_piece_create(m.parent, m.first_job, m.last_job);
    EXECUTE format('INSERT INTO %I %s', merged, trip_merge_query(m.parent, parts, m.first_job));
    PERFORM trip_piece_index(m.parent, merged);
    PERFORM trip_piece_analyze(m.parent, merged);

    -- Swap: a moment under the parent's lock. Waiting for it queues the readers that come after, so never
    -- wait more than 50 ms at a time: give up, let them through, and try again a little later.
    LOOP
        BEGIN
            PERFORM set_config('lock_timeout', '50ms', true);
            EXECUTE format('LOCK TABLE %I IN ACCESS EXCLUSIVE MODE', m.parent);
            PERFORM set_config('lock_timeout', '0', true);
            EXIT;
        EXCEPTION WHEN lock_not_available THEN
            tries := tries + 1;
            IF tries >= 100 THEN
                RAISE EXCEPTION 'could not swap in the merged piece % after % tries: readers kept % busy',
                                merged, tries, m.parent
                    USING HINT = 'Nothing changed; the merge is tried again after the next ingest or schedule.';
            END IF;
            PERFORM pg_sleep(least(0.1 * tries, 1));
        END;
    END LOOP;
    FOR part IN SELECT c.first_job, c.last_job FROM trip_pieces c
                 WHERE c.parent = m.parent AND c.first_job BETWEEN m.first_job AND m.last_job LOOP
        EXECUTE format('DROP TABLE %I', trip_piece_table(m.parent, part.first_job, part.last_job));
    END LOOP;
    PERFORM trip_piece_attach(m.parent, m.first_job, m.last_job);
    UPDATE trip_pieces c
       SET last_job = m.last_job, trips = m.trips, made_at = now(),
           merges = 1 + (SELECT max(d.merges) FROM trip_pieces d WHERE d.parent = m.parent
                           AND d.first_job BETWEEN m.first_job AND m.last_job)
     WHERE c.parent = m.parent AND c.first_job = m.first_job;
    DELETE FROM trip_pieces c
     WHERE c.parent = m.parent AND c.first_job > m.first_job AND c.first_job <= m.last_job;
    RETURN QUERY SELECT m.parent, m.first_job, m.last_job, m.pieces, m.trips,
                        extract(epoch FROM clock_timestamp() - started)::float8;
END
$$;

-- Every merge the policy calls for, each committed on its own (for schedules: CALL trips_merge()).
CREATE PROCEDURE trips_merge()
LANGUAGE plpgsql AS $$
BEGIN
    LOOP
        PERFORM FROM trip_merge_step();
        EXIT WHEN NOT FOUND;
        COMMIT;
    END LOOP;
END
$$;

-- Recompute every rollup and tally from the trips: the two small rollups, and for each piece of trip_rows
-- a piece of trip_cells covering the same jobs (`trips refresh`: to check, or after trips were removed by
-- hand). It holds off loaders and merges while it works (the parents' SHARE UPDATE EXCLUSIVE lock);
-- readers keep reading until the final swap.
CREATE FUNCTION rebuild_rollups() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    piece record;
    old record;
    fresh text;   -- the new tally piece's table, under its temporary name
BEGIN
    LOCK TABLE trip_rows, trip_cells IN SHARE UPDATE EXCLUSIVE MODE;
    PERFORM pg_advisory_xact_lock(ingest_lock_class() + 2, 0);

    DELETE FROM region_datasource_stats;
    INSERT INTO region_datasource_stats
    SELECT region_id, datasource_id, count(*), min(departed_at), max(departed_at)
      FROM trip_rows GROUP BY region_id, datasource_id;
    DELETE FROM region_weeks;
    INSERT INTO region_weeks
    SELECT region_id, trip_week(departed_at), count(*) FROM trip_rows GROUP BY 1, 2;

    -- Build the new cell tally under temporary names, then swap it in.
    FOR piece IN SELECT * FROM trip_pieces WHERE trip_pieces.parent = 'trip_rows' ORDER BY first_job LOOP
        fresh := trip_piece_create('trip_cells', piece.first_job, piece.last_job, 'new_');
        EXECUTE format('INSERT INTO %I %s', fresh,
                       trip_cells_query(quote_ident(trip_piece_table('trip_rows', piece.first_job, piece.last_job)),
                                        piece.first_job));
        PERFORM trip_piece_index('trip_cells', fresh);
        PERFORM trip_piece_analyze('trip_cells', fresh);
    END LOOP;
    FOR old IN SELECT * FROM trip_pieces c WHERE c.parent = 'trip_cells' LOOP
        EXECUTE format('DROP TABLE %I', trip_piece_table('trip_cells', old.first_job, old.last_job));
    END LOOP;
    DELETE FROM trip_pieces c WHERE c.parent = 'trip_cells';
    FOR piece IN SELECT * FROM trip_pieces c WHERE c.parent = 'trip_rows' LOOP
        EXECUTE format('ALTER TABLE %I RENAME TO %I',
                       'new_' || trip_piece_table('trip_cells', piece.first_job, piece.last_job),
                       trip_piece_table('trip_cells', piece.first_job, piece.last_job));
        PERFORM trip_piece_attach('trip_cells', piece.first_job, piece.last_job);
        INSERT INTO trip_pieces (parent, first_job, last_job, trips, merges)
        VALUES ('trip_cells', piece.first_job, piece.last_job, piece.trips, piece.merges);
    END LOOP;
END
$$;
