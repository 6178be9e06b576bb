-- 008: the weekly average number of trips of an area (a polygon, a bounding box, or a region).
--
--   weekly_avg(area geometry, by, since, until)               -> double precision
--   weekly_avg(min_lon, min_lat, max_lon, max_lat, by, ...)    -> double precision
--   weekly_avg_region(region, since, until)                    -> double precision
--   weekly_counts(...) / weekly_counts_region(...)             -> one row per week: (week_start, trips)
--   weekly_trips(...) / weekly_trips_region(...)               -> the average with its trips and window
--
-- Meanings:
--   - `by`: which end of a trip must be in the area: 'origin' (default), 'destination', 'both', 'either'.
--     A point on the area's boundary is in the area (ST_Intersects; bounding box edges are inclusive).
--   - The window: [since, until). Left out, since is the Monday 00:00 of the week of the earliest trip in the
--     database and until the Monday after the week of the latest one, so the default window is every
--     week from the first to the last, weeks without trips counting as zeros. Weeks start on Monday
--     (date_trunc('week', ...)). The average is trips in the window / (window length in days / 7).
--
-- How it stays exact without reading every trip of the area (the cells are 004_cells.sql's, the tally
-- 006_tallies.sql's): the area is matched against the level-1 cells that hold trips. Cells wholly inside
-- it count from the tally; the level-2 cells of the cells its edge cuts are matched in turn, and again
-- those wholly inside count from the tally, while the trips of those the edge cuts are read through the
-- trip table's cell index and tested one by one, exactly as `trips` would be. The work grows with the
-- length of the area's edge, not with its trips. The tally counts whole weeks; a window that starts or
-- ends within a week reads the trips of that part of a week. 'both' must test each trip's other end, so
-- it reads every trip that starts in the area; 'either' is origin + destination - both.
--
-- Every function here that reads a table is VOLATILE, not STABLE. A STABLE function runs all its statements
-- on the snapshot of the call, so a merge (007_pieces.sql) committing during the call would show a later
-- statement the merged piece's partition but not its rows, which that old snapshot cannot see. A VOLATILE
-- function takes each statement's snapshot after the statement has locked what it reads: every statement
-- sees either the old pieces or the merged one, which hold the same trips.

-- The area as a valid polygon in EPSG:4326, or a clear error. SRID 0 is taken to be 4326.
CREATE FUNCTION trip_area_checked(area geometry) RETURNS geometry
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF area IS NULL OR ST_IsEmpty(area) THEN
        RAISE EXCEPTION 'the area is empty' USING HINT = 'Give a polygon, a bounding box or a region name.';
    END IF;
    IF ST_Dimension(area) <> 2 THEN
        RAISE EXCEPTION 'the area is a %, not a polygon', lower(replace(GeometryType(area), 'MULTI', 'multi'))
            USING HINT = 'Give a POLYGON or MULTIPOLYGON (or a bounding box).';
    END IF;
    IF NOT ST_IsValid(area) THEN
        RAISE EXCEPTION 'the area is not a valid polygon: %', ST_IsValidReason(area)
            USING HINT = 'ST_MakeValid(area) repairs most polygons.';
    END IF;
    IF ST_SRID(area) = 0 THEN
        RETURN ST_SetSRID(area, 4326);
    ELSIF ST_SRID(area) <> 4326 THEN
        RETURN ST_Transform(area, 4326);
    END IF;
    RETURN area;
END
$$;

-- A bounding box as an area, with its edges checked.
CREATE FUNCTION trip_bbox(min_lon double precision, min_lat double precision,
                          max_lon double precision, max_lat double precision) RETURNS geometry
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF min_lon IS NULL OR min_lat IS NULL OR max_lon IS NULL OR max_lat IS NULL THEN
        RAISE EXCEPTION 'a bounding box needs four numbers: min_lon, min_lat, max_lon, max_lat';
    END IF;
    IF min_lat < -90 OR max_lat > 90 OR min_lon < -180 OR max_lon > 180 THEN
        RAISE EXCEPTION 'the bounding box (%, %, %, %) is outside the world', min_lon, min_lat, max_lon, max_lat
            USING HINT = 'Longitudes are in [-180, 180] and latitudes in [-90, 90], in degrees (EPSG:4326).';
    END IF;
    IF min_lon >= max_lon OR min_lat >= max_lat THEN
        RAISE EXCEPTION 'the bounding box (%, %, %, %) has min >= max', min_lon, min_lat, max_lon, max_lat
            USING HINT = 'The order is min_lon, min_lat, max_lon, max_lat, and each min must be below its max.';
    END IF;
    RETURN ST_MakeEnvelope(min_lon, min_lat, max_lon, max_lat, 4326);
END
$$;

-- The area's bounding box if the area is exactly that rectangle, else NULL.
CREATE FUNCTION trip_area_box(area geometry) RETURNS box2d
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN ST_Equals(area, ST_Envelope(area)) THEN area::box2d END
$$;

-- The window [since, until) of a question, with the defaults of the header, and whether it holds every
-- trip (then no departure needs to be looked at). NULLs when nothing is loaded and no window is given.
CREATE FUNCTION trip_window(since timestamp, until timestamp,
                            OUT window_start timestamp, OUT window_end timestamp, OUT weeks double precision,
                            OUT holds_all boolean)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    first_trip timestamp;
    last_trip  timestamp;
BEGIN
    SELECT min(first_departure), max(last_departure) INTO first_trip, last_trip FROM region_datasource_stats;
    window_start := coalesce(since, date_trunc('week', first_trip));
    window_end := coalesce(until, date_trunc('week', last_trip) + interval '1 week');
    IF window_start >= window_end THEN
        RAISE EXCEPTION 'the window [%, %) is empty', window_start, window_end
            USING HINT = 'since must be before until; the window includes since and excludes until.';
    END IF;
    weeks := extract(epoch FROM window_end - window_start) / (7 * 86400);
    holds_all := first_trip IS NULL OR (first_trip >= window_start AND last_trip < window_end);
END
$$;

-- One row per week of the window (every Monday from the window's first week to its last, zero weeks
-- included), counting the trips of the window that depart in that week. With a window that starts and ends
-- on a Monday (the default), the rows are exactly its weeks and their average is weekly_avg.
CREATE FUNCTION trip_window_weeks(since timestamp, until timestamp) RETURNS TABLE (week_start date)
LANGUAGE sql VOLATILE AS $$
    SELECT d::date
      FROM trip_window(since, until) AS w,
           generate_series(date_trunc('week', w.window_start), w.window_end - interval '1 microsecond',
                           interval '1 week') AS d
$$;

-- Is every point of a cell in the area; might a point of it be? With `box` (the area when it is exactly a
-- rectangle, trip_area_box) these are comparisons of the cell's edges, computed like the `trips` view's
-- points, with the box's; otherwise ST_Covers / ST_Intersects of the cell's envelope. Both are
-- conservative: a cell said to be cut may be wholly inside or outside, and its points are then tested.
CREATE FUNCTION trip_cell_inside(area geometry, box box2d, level integer, key integer) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN box IS NOT NULL
                THEN trip_cell_x(level, key)::bigint * trip_cell_size(level) / 1e7::float8 >= ST_XMin(box)
                 AND (trip_cell_x(level, key) + 1)::bigint * trip_cell_size(level) / 1e7::float8 <= ST_XMax(box)
                 AND trip_cell_y(level, key)::bigint * trip_cell_size(level) / 1e7::float8 >= ST_YMin(box)
                 AND (trip_cell_y(level, key) + 1)::bigint * trip_cell_size(level) / 1e7::float8 <= ST_YMax(box)
                ELSE ST_Covers(area, trip_cell_envelope(level, key))
           END
$$;

CREATE FUNCTION trip_cell_meets(area geometry, box box2d, level integer, key integer) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN box IS NOT NULL
                THEN trip_cell_x(level, key)::bigint * trip_cell_size(level) / 1e7::float8 <= ST_XMax(box)
                 AND (trip_cell_x(level, key) + 1)::bigint * trip_cell_size(level) / 1e7::float8 > ST_XMin(box)
                 AND trip_cell_y(level, key)::bigint * trip_cell_size(level) / 1e7::float8 <= ST_YMax(box)
                 AND (trip_cell_y(level, key) + 1)::bigint * trip_cell_size(level) / 1e7::float8 > ST_YMin(box)
                ELSE ST_Intersects(area, trip_cell_envelope(level, key))
           END
$$;

-- Is the point (lon, lat), in 1e-7 degree, in the area? The point is built exactly as the `trips` view
-- builds it, so the answer is ST_Intersects' on `trips`; with `box`, comparing numbers gives the same.
CREATE FUNCTION trip_area_holds(area geometry, box box2d, lon integer, lat integer) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN box IS NOT NULL
                THEN lon / 1e7::float8 BETWEEN ST_XMin(box) AND ST_XMax(box)
                 AND lat / 1e7::float8 BETWEEN ST_YMin(box) AND ST_YMax(box)
                ELSE ST_Intersects(area, ST_SetSRID(ST_MakePoint(lon / 1e7::float8, lat / 1e7::float8), 4326))
           END
$$;

-- The level-2 cells with trips (of one end, `side`) in the given level-1 cells: ten key ranges each.
CREATE FUNCTION trip_cell_children(side smallint, parents integer[]) RETURNS integer[]
LANGUAGE sql VOLATILE AS $$
    SELECT coalesce(array_agg(DISTINCT c.cell), '{}')
      FROM unnest(parents) AS p(cell)
     CROSS JOIN generate_series(0, 9) AS dy
      JOIN trip_cells c
        ON c.side = trip_cell_children.side AND c.level = 2
       AND c.cell BETWEEN trip_cell_key(2, trip_cell_x(1, p.cell) * 10, trip_cell_y(1, p.cell) * 10 + dy)
                      AND trip_cell_key(2, trip_cell_x(1, p.cell) * 10 + 9, trip_cell_y(1, p.cell) * 10 + dy)
$$;

-- The area's cells with trips of one end: level-1 cells wholly inside it (level 1, inside), and the
-- level-2 cells of the level-1 cells its edge cuts that meet it, inside or cut. The candidates are the
-- cells in the area's bounding box, one key range per row of cells.
CREATE FUNCTION trip_area_cells(area geometry, box box2d, side smallint,
                                OUT whole_l1 integer[], OUT whole_l2 integer[], OUT cut_l2 integer[])
LANGUAGE plpgsql VOLATILE SET jit = off AS $$
DECLARE
    x0 constant integer := floor(ST_XMin(area) * 1e7 / trip_cell_size(1))::integer - 1;
    x1 constant integer := floor(ST_XMax(area) * 1e7 / trip_cell_size(1))::integer + 1;
    y0 constant integer := floor(ST_YMin(area) * 1e7 / trip_cell_size(1))::integer - 1;
    y1 constant integer := floor(ST_YMax(area) * 1e7 / trip_cell_size(1))::integer + 1;
    cut_l1 integer[];
BEGIN
    WITH l1 AS (
        SELECT DISTINCT c.cell
          FROM generate_series(y0, y1) AS y
          JOIN trip_cells c
            ON c.side = trip_area_cells.side AND c.level = 1
           AND c.cell BETWEEN trip_cell_key(1, x0, y) AND trip_cell_key(1, x1, y)
    ), classified AS (
        SELECT cell, trip_cell_inside(area, box, 1, cell) AS inside
          FROM l1 WHERE trip_cell_meets(area, box, 1, cell)
    )
    SELECT coalesce(array_agg(cell) FILTER (WHERE inside), '{}'),
           coalesce(array_agg(cell) FILTER (WHERE NOT inside), '{}')
      INTO whole_l1, cut_l1
      FROM classified;
    SELECT coalesce(array_agg(k) FILTER (WHERE trip_cell_inside(area, box, 2, k)), '{}'),
           coalesce(array_agg(k) FILTER (WHERE NOT trip_cell_inside(area, box, 2, k)), '{}')
      INTO whole_l2, cut_l2
      FROM unnest(trip_cell_children(side, cut_l1)) AS k
     WHERE trip_cell_meets(area, box, 2, k);
END
$$;

-- Trips with their `side` end in the area, over all time: whole cells from the tally (a row's weeks, one
-- trip each when week_trips is NULL), cut cells trip by trip. (Two statements for the two ends: each must
-- name its index's expression.)
CREATE FUNCTION trip_area_count(area geometry, box box2d, side smallint) RETURNS bigint
LANGUAGE plpgsql VOLATILE SET jit = off AS $$
DECLARE
    cells record := trip_area_cells(area, box, side);
    whole bigint;
    cut bigint;
BEGIN
    SELECT coalesce(sum(CASE WHEN c.week_trips IS NULL THEN cardinality(c.weeks)
                             ELSE (SELECT sum(n) FROM unnest(c.week_trips) AS n) END), 0) INTO whole
      FROM trip_cells c
     WHERE c.side = trip_area_count.side
       AND ((c.level = 1 AND c.cell = ANY (cells.whole_l1)) OR (c.level = 2 AND c.cell = ANY (cells.whole_l2)));
    IF side = 1 THEN
        SELECT count(*) INTO cut FROM trip_rows t
         WHERE trip_cell(2, t.origin_lon, t.origin_lat) = ANY (cells.cut_l2)
           AND trip_area_holds(area, box, t.origin_lon, t.origin_lat);
    ELSE
        SELECT count(*) INTO cut FROM trip_rows t
         WHERE trip_cell(2, t.dest_lon, t.dest_lat) = ANY (cells.cut_l2)
           AND trip_area_holds(area, box, t.dest_lon, t.dest_lat);
    END IF;
    RETURN whole + cut;
END
$$;

-- Trips with their `side` end in the area and departing in [since, until), per week: the weeks of the
-- window that are whole, in cells wholly inside the area, from the tally; the rest trip by trip (the cut
-- cells, and the part-weeks at either end of the window in the cells inside).
CREATE FUNCTION trip_side_weeks(area geometry, box box2d, side smallint, since timestamp, until timestamp)
RETURNS TABLE (week integer, trips bigint)
LANGUAGE plpgsql VOLATILE SET jit = off AS $$
#variable_conflict use_column
DECLARE
    cells record := trip_area_cells(area, box, side);
    first_whole constant integer := trip_week(since) + (trip_week_start(trip_week(since)) <> since)::integer;
    last_whole constant integer := trip_week(until) - 1;   -- below first_whole when no week is whole
    whole_from constant timestamp := trip_week_start(first_whole);
    whole_to constant timestamp := greatest(trip_week_start(last_whole + 1), whole_from);
    inner_cells integer[] := '{}';   -- the level-2 cells inside, when part-weeks must be read
BEGIN
    IF since < whole_from OR whole_to < until THEN
        inner_cells := cells.whole_l2 || trip_cell_children(side, cells.whole_l1);
    END IF;
    RETURN QUERY
    WITH whole AS (
        SELECT u.week, sum(coalesce(u.n, 1))::bigint AS n
          FROM trip_cells c, unnest(c.weeks, c.week_trips) AS u(week, n)
         WHERE c.side = trip_side_weeks.side
           AND ((c.level = 1 AND c.cell = ANY (cells.whole_l1)) OR (c.level = 2 AND c.cell = ANY (cells.whole_l2)))
           AND u.week BETWEEN first_whole AND last_whole
         GROUP BY u.week
    ), origins AS (
        SELECT t.departed_at FROM trip_rows t
         WHERE side = 1 AND trip_cell(2, t.origin_lon, t.origin_lat) = ANY (cells.cut_l2)
           AND trip_area_holds(area, box, t.origin_lon, t.origin_lat)
           AND t.departed_at >= since AND t.departed_at < until
        UNION ALL
        SELECT t.departed_at FROM trip_rows t
         WHERE side = 1 AND trip_cell(2, t.origin_lon, t.origin_lat) = ANY (inner_cells)
           AND t.departed_at >= since AND t.departed_at < until
           AND NOT (t.departed_at >= whole_from AND t.departed_at < whole_to)
    ), destinations AS (
        SELECT t.departed_at FROM trip_rows t
         WHERE side = 2 AND trip_cell(2, t.dest_lon, t.dest_lat) = ANY (cells.cut_l2)
           AND trip_area_holds(area, box, t.dest_lon, t.dest_lat)
           AND t.departed_at >= since AND t.departed_at < until
        UNION ALL
        SELECT t.departed_at FROM trip_rows t
         WHERE side = 2 AND trip_cell(2, t.dest_lon, t.dest_lat) = ANY (inner_cells)
           AND t.departed_at >= since AND t.departed_at < until
           AND NOT (t.departed_at >= whole_from AND t.departed_at < whole_to)
    ), one_by_one AS (
        SELECT trip_week(d.departed_at) AS week, count(*) AS n
          FROM (SELECT * FROM origins UNION ALL SELECT * FROM destinations) AS d
         GROUP BY 1
    )
    SELECT k.week, sum(k.n)::bigint
      FROM (SELECT * FROM whole UNION ALL SELECT * FROM one_by_one) AS k
     GROUP BY k.week;
END
$$;

-- Trips with both ends in the area, per week of departure in [since, until) (NULL: all time, as one row
-- with week NULL): every trip whose origin is in the area's cells, both ends tested.
CREATE FUNCTION trip_both_weeks(area geometry, box box2d, since timestamp, until timestamp)
RETURNS TABLE (week integer, trips bigint)
LANGUAGE plpgsql VOLATILE SET jit = off AS $$
#variable_conflict use_column
DECLARE
    cells record := trip_area_cells(area, box, 1::smallint);
    all_cells constant integer[] := cells.whole_l2 || cells.cut_l2 || trip_cell_children(1::smallint, cells.whole_l1);
BEGIN
    RETURN QUERY
    SELECT CASE WHEN since IS NOT NULL THEN trip_week(t.departed_at) END, count(*)
      FROM trip_rows t
     WHERE trip_cell(2, t.origin_lon, t.origin_lat) = ANY (all_cells)
       AND trip_area_holds(area, box, t.origin_lon, t.origin_lat)
       AND trip_area_holds(area, box, t.dest_lon, t.dest_lat)
       AND (since IS NULL OR (t.departed_at >= since AND t.departed_at < until))
     GROUP BY 1;
END
$$;

-- The trips of an area by `by`, per week of the window.
CREATE FUNCTION trip_area_weeks(area geometry, box box2d, by text, since timestamp, until timestamp)
RETURNS TABLE (week integer, trips bigint)
LANGUAGE sql VOLATILE AS $$
    SELECT k.week, sum(k.trips)::bigint
      FROM (SELECT * FROM trip_side_weeks(area, box, 1::smallint, since, until) WHERE by IN ('origin', 'either')
            UNION ALL
            SELECT * FROM trip_side_weeks(area, box, 2::smallint, since, until) WHERE by IN ('destination', 'either')
            UNION ALL
            SELECT b.week, CASE by WHEN 'either' THEN -b.trips ELSE b.trips END
              FROM trip_both_weeks(area, box, since, until) AS b WHERE by IN ('both', 'either')) AS k
     GROUP BY k.week
$$;

-- `by` checked.
CREATE FUNCTION trip_by_checked(by text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF by IS NULL OR by NOT IN ('origin', 'destination', 'both', 'either') THEN
        RAISE EXCEPTION 'unknown by => %', coalesce(quote_literal(by), 'NULL')
            USING HINT = 'by is ''origin'', ''destination'', ''both'' or ''either'': which end of a trip must be in the area.';
    END IF;
    RETURN by;
END
$$;

-- The average and what it is made of. Over the default window (every trip) the tally's totals serve.
CREATE FUNCTION weekly_trips(area geometry, by text DEFAULT 'origin',
                             since timestamp DEFAULT NULL, until timestamp DEFAULT NULL)
RETURNS TABLE (average double precision, trips bigint, window_start timestamp, window_end timestamp,
               weeks double precision)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    w record;
    n bigint;
    box box2d;
BEGIN
    PERFORM trip_by_checked(by);
    area := trip_area_checked(area);
    box := trip_area_box(area);
    w := trip_window(since, until);
    IF w.window_start IS NULL THEN
        RETURN QUERY SELECT NULL::float8, 0::bigint, NULL::timestamp, NULL::timestamp, NULL::float8;
        RETURN;
    END IF;
    IF w.holds_all THEN
        n := CASE WHEN by IN ('origin', 'either') THEN trip_area_count(area, box, 1::smallint) ELSE 0 END
           + CASE WHEN by IN ('destination', 'either') THEN trip_area_count(area, box, 2::smallint) ELSE 0 END
           + CASE WHEN by IN ('both', 'either')
                  THEN (CASE by WHEN 'either' THEN -1 ELSE 1 END)
                       * coalesce((SELECT sum(b.trips) FROM trip_both_weeks(area, box, NULL, NULL) AS b), 0)
                  ELSE 0 END;
    ELSE
        n := coalesce((SELECT sum(k.trips) FROM trip_area_weeks(area, box, by, w.window_start, w.window_end) AS k), 0);
    END IF;
    RETURN QUERY SELECT n / w.weeks, n, w.window_start, w.window_end, w.weeks;
END
$$;

CREATE FUNCTION weekly_trips(min_lon double precision, min_lat double precision,
                             max_lon double precision, max_lat double precision, by text DEFAULT 'origin',
                             since timestamp DEFAULT NULL, until timestamp DEFAULT NULL)
RETURNS TABLE (average double precision, trips bigint, window_start timestamp, window_end timestamp,
               weeks double precision)
LANGUAGE sql VOLATILE AS $$
    SELECT * FROM weekly_trips(trip_bbox(min_lon, min_lat, max_lon, max_lat), by, since, until)
$$;

CREATE FUNCTION weekly_avg(area geometry, by text DEFAULT 'origin',
                           since timestamp DEFAULT NULL, until timestamp DEFAULT NULL)
RETURNS double precision
LANGUAGE sql VOLATILE AS $$ SELECT average FROM weekly_trips(area, by, since, until) $$;

CREATE FUNCTION weekly_avg(min_lon double precision, min_lat double precision,
                           max_lon double precision, max_lat double precision, by text DEFAULT 'origin',
                           since timestamp DEFAULT NULL, until timestamp DEFAULT NULL)
RETURNS double precision
LANGUAGE sql VOLATILE AS $$
    SELECT average FROM weekly_trips(trip_bbox(min_lon, min_lat, max_lon, max_lat), by, since, until)
$$;

-- One row per week of the window (every Monday from the window's first week to its last, zero weeks
-- included), counting the trips of the window that depart in that week. With a window that starts and ends
-- on a Monday (the default), the rows are exactly its weeks and their average is weekly_avg.
CREATE FUNCTION weekly_counts(area geometry, by text DEFAULT 'origin',
                              since timestamp DEFAULT NULL, until timestamp DEFAULT NULL)
RETURNS TABLE (week_start date, trips bigint)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    w record;
    box box2d;
BEGIN
    PERFORM trip_by_checked(by);
    area := trip_area_checked(area);
    box := trip_area_box(area);
    w := trip_window(since, until);
    RETURN QUERY
    SELECT k.week_start, coalesce(a.trips, 0)::bigint
      FROM trip_window_weeks(since, until) AS k
      LEFT JOIN trip_area_weeks(area, box, by, w.window_start, w.window_end) AS a
        ON trip_week_start(a.week)::date = k.week_start
     ORDER BY k.week_start;
END
$$;

CREATE FUNCTION weekly_counts(min_lon double precision, min_lat double precision,
                              max_lon double precision, max_lat double precision, by text DEFAULT 'origin',
                              since timestamp DEFAULT NULL, until timestamp DEFAULT NULL)
RETURNS TABLE (week_start date, trips bigint)
LANGUAGE sql VOLATILE AS $$
    SELECT * FROM weekly_counts(trip_bbox(min_lon, min_lat, max_lon, max_lat), by, since, until)
$$;

-- A region's trips per week of [since, until): whole weeks from region_weeks, the part-weeks at either
-- end of the window from the trips (a scan: only for windows that do not start and end on a Monday).
CREATE FUNCTION trip_region_weeks(region text, since timestamp, until timestamp)
RETURNS TABLE (week integer, trips bigint)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    id constant smallint := (SELECT r.id FROM regions r WHERE r.name = region);
    first_whole constant integer := trip_week(since) + (trip_week_start(trip_week(since)) <> since)::integer;
    last_whole constant integer := trip_week(until) - 1;
    whole_from constant timestamp := trip_week_start(first_whole);
    whole_to constant timestamp := greatest(trip_week_start(last_whole + 1), whole_from);
BEGIN
    RETURN QUERY
    SELECT w.week, w.trips FROM region_weeks w
     WHERE w.region_id = id AND w.week BETWEEN first_whole AND last_whole
    UNION ALL
    SELECT trip_week(t.departed_at), count(*) FROM trip_rows t
     WHERE (since < whole_from OR whole_to < until)
       AND t.region_id = id AND t.departed_at >= since AND t.departed_at < until
       AND NOT (t.departed_at >= whole_from AND t.departed_at < whole_to)
     GROUP BY 1;
END
$$;

-- A region: its trips per week. An unknown region has no trips (0).
CREATE FUNCTION weekly_trips_region(region text, since timestamp DEFAULT NULL, until timestamp DEFAULT NULL)
RETURNS TABLE (average double precision, trips bigint, window_start timestamp, window_end timestamp,
               weeks double precision)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    w record;
    n bigint;
BEGIN
    w := trip_window(since, until);
    IF w.window_start IS NULL THEN
        RETURN QUERY SELECT NULL::float8, 0::bigint, NULL::timestamp, NULL::timestamp, NULL::float8;
        RETURN;
    END IF;
    IF w.holds_all THEN
        n := (SELECT coalesce(sum(s.trips), 0) FROM region_datasource_stats s
                JOIN regions r ON r.id = s.region_id WHERE r.name = region);
    ELSE
        n := (SELECT coalesce(sum(k.trips), 0) FROM trip_region_weeks(region, w.window_start, w.window_end) AS k);
    END IF;
    RETURN QUERY SELECT n / w.weeks, n, w.window_start, w.window_end, w.weeks;
END
$$;

CREATE FUNCTION weekly_avg_region(region text, since timestamp DEFAULT NULL, until timestamp DEFAULT NULL)
RETURNS double precision
LANGUAGE sql VOLATILE AS $$ SELECT average FROM weekly_trips_region(region, since, until) $$;

CREATE FUNCTION weekly_counts_region(region text, since timestamp DEFAULT NULL, until timestamp DEFAULT NULL)
RETURNS TABLE (week_start date, trips bigint)
LANGUAGE sql VOLATILE AS $$
    WITH w AS (SELECT * FROM trip_window(since, until)),
    per_week AS (
        SELECT trip_week_start(k.week)::date AS week_start, sum(k.trips) AS trips
          FROM w, trip_region_weeks(region, w.window_start, w.window_end) AS k
         GROUP BY 1
    )
    SELECT k.week_start, coalesce(p.trips, 0)::bigint
      FROM trip_window_weeks(since, until) AS k
      LEFT JOIN per_week p USING (week_start)
     ORDER BY k.week_start
$$;
