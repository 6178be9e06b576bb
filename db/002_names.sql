-- 002: region and datasource names, stored once each.
--
-- A trip row keeps a smallint key for each name instead of the string, so a database holds at most 32,767
-- region names and as many datasource names (dimension_id says so when a file would add more). The loader
-- asks for a key with dimension_id() on its own autocommit connection, so two loaders that meet the same
-- new name at the same time get the same key and never wait for each other's file to finish.
--
-- A name first seen in a file that then fails names no trip. forget_unused_names() (007_pieces.sql)
-- removes such names after every file, as soon as no other load is running, and a removed name's key is
-- given out again: a failed file leaves no names behind and uses up no keys.

CREATE TABLE regions (
    id   smallint PRIMARY KEY CHECK (id > 0),
    name text NOT NULL UNIQUE CHECK (name <> '')
);

CREATE TABLE datasources (
    id   smallint PRIMARY KEY CHECK (id > 0),
    name text NOT NULL UNIQUE CHECK (name <> '')
);

-- The key of `name` in `dim` (regions or datasources), adding the name if it is new. A new name gets the
-- key after the largest, or, once 32,767 is taken, the smallest free one. Safe under concurrency: if
-- another session inserts the same name or takes the same key first, ON CONFLICT waits for it to commit
-- and the loop looks again (plpgsql takes a new snapshot per statement).
CREATE FUNCTION dimension_id(dim regclass, name text) RETURNS smallint
LANGUAGE plpgsql AS $$
DECLARE
    key smallint;
    free integer;
    noun constant text := CASE dim WHEN 'regions'::regclass THEN 'region' ELSE 'datasource' END;
BEGIN
    LOOP
        EXECUTE format('SELECT id FROM %s WHERE name = $1', dim) INTO key USING name;
        IF key IS NOT NULL THEN
            RETURN key;
        END IF;
        EXECUTE format('SELECT coalesce(max(id), 0) + 1 FROM %s', dim) INTO free;
        IF free > 32767 THEN
            EXECUTE format('SELECT min(id) + 1 FROM %1$s d WHERE NOT EXISTS (SELECT FROM %1$s WHERE id = d.id + 1)
                            UNION ALL SELECT 1 WHERE NOT EXISTS (SELECT FROM %1$s WHERE id = 1)
                            ORDER BY 1 LIMIT 1', dim) INTO free;
        END IF;
        IF free > 32767 THEN
            RAISE EXCEPTION 'the database already holds 32767 % names, the most it can keep', noun
                USING ERRCODE = 'program_limit_exceeded',
                      HINT = format('a trip stores its %s as a 2-byte key. A file with this many distinct %s '
                                    'names usually has its columns shifted or mixed up', noun, noun);
        END IF;
        EXECUTE format('INSERT INTO %s (id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING id', dim)
            INTO key USING free, name;
        IF key IS NOT NULL THEN
            RETURN key;
        END IF;
    END LOOP;
END
$$;
