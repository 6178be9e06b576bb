-- 010: the weekly average number of trips of an area (a polygon, a bounding box, or a region).
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
-- How it stays exact and fast (the cells are in 009_area_counts.sql): the area is matched against the
-- level-1 cells; cells wholly inside it count with their totals, cells cut by its edge are split into their
-- level-2 cells, and those into level-3 cells, whose points are tested one by one. The work is in
-- proportion to the length of the area's edge, not to its trips. Trips outside an explicit window that
-- does not hold every trip, and 'both' and 'either', need each trip's departure or other end: those read
-- every level-3 point of the area, in proportion to its trips.

-- Is a cell wholly inside the area, and might it hold points of the area? `box` is the area's bounding box
-- when the area is exactly that rectangle (trip_area_box), else NULL. For a box the answers are comparisons
-- of the cell's edges (computed like the `trips` view's points) with the box's: exact and far cheaper than
-- ST_Covers / ST_Intersects. A cell [x0, x1) holds no point at x1 itself (its points are below the next
-- cell's edge), hence the strict comparisons of `meets`.
CREATE FUNCTION trip_area_cell_inside(area geometry, box box2d, level integer, cx integer, cy integer)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN box IS NOT NULL
                THEN cx::bigint * trip_area_cell_size(level) / 1e7::float8 >= ST_XMin(box)
                 AND (cx + 1)::bigint * trip_area_cell_size(level) / 1e7::float8 <= ST_XMax(box)
                 AND cy::bigint * trip_area_cell_size(level) / 1e7::float8 >= ST_YMin(box)
                 AND (cy + 1)::bigint * trip_area_cell_size(level) / 1e7::float8 <= ST_YMax(box)
                ELSE ST_Covers(area, trip_area_cell(level, cx, cy))
           END
$$;

CREATE FUNCTION trip_area_cell_meets(area geometry, box box2d, level integer, cx integer, cy integer)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN box IS NOT NULL
                THEN cx::bigint * trip_area_cell_size(level) / 1e7::float8 <= ST_XMax(box)
                 AND (cx + 1)::bigint * trip_area_cell_size(level) / 1e7::float8 > ST_XMin(box)
                 AND cy::bigint * trip_area_cell_size(level) / 1e7::float8 <= ST_YMax(box)
                 AND (cy + 1)::bigint * trip_area_cell_size(level) / 1e7::float8 > ST_YMin(box)
                ELSE ST_Intersects(area, trip_area_cell(level, cx, cy))
           END
$$;

-- The ten rows (or columns) of cells below a cell of the level above.
CREATE FUNCTION trip_area_children(c integer) RETURNS integer[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY[c * 10, c * 10 + 1, c * 10 + 2, c * 10 + 3, c * 10 + 4,
                 c * 10 + 5, c * 10 + 6, c * 10 + 7, c * 10 + 8, c * 10 + 9]
$$;

-- What the area is made of: cells wholly inside it, with their trips, at the coarsest level possible (only
-- when `whole_cells`), then the trip_area_points rows of the level-3 cells inside it or cut by its edge
-- (`inside` false), with their points. Without `whole_cells`, every level-3 cell's points are listed, for
-- callers that need each point.
--
-- Each level reads the children of the cells above it that are cut by the edge (or all children, without
-- `whole_cells`). `cy = ANY (its ten rows)` makes that ten index ranges bounded by the cx range, instead of
-- one range over whole rows of cells.
CREATE FUNCTION trip_area_parts(area geometry, box box2d, side smallint, whole_cells boolean)
RETURNS TABLE (inside boolean, trips bigint, lon integer[], lat integer[], departed_at timestamp[],
               other_lon integer[], other_lat integer[])
LANGUAGE sql STABLE AS $$
    WITH l1 AS (
        SELECT c.cx, c.cy, sum(c.trips) AS trips, trip_area_cell_inside(area, box, 1, c.cx, c.cy) AS inside
          FROM trip_area_counts c
         WHERE c.side = trip_area_parts.side AND c.level = 1
           AND c.cx BETWEEN trip_area_cell_index(1, ST_XMin(area)) - 1 AND trip_area_cell_index(1, ST_XMax(area)) + 1
           AND c.cy BETWEEN trip_area_cell_index(1, ST_YMin(area)) - 1 AND trip_area_cell_index(1, ST_YMax(area)) + 1
           AND trip_area_cell_meets(area, box, 1, c.cx, c.cy)
         GROUP BY c.cx, c.cy
    ), l2 AS (
        SELECT c.cx, c.cy, sum(c.trips) AS trips,
               p.inside OR trip_area_cell_inside(area, box, 2, c.cx, c.cy) AS inside
          FROM l1 p
          JOIN trip_area_counts c
            ON c.side = trip_area_parts.side AND c.level = 2
           AND c.cy = ANY (trip_area_children(p.cy)) AND c.cx BETWEEN p.cx * 10 AND p.cx * 10 + 9
         WHERE NOT (p.inside AND whole_cells)
           AND (p.inside OR trip_area_cell_meets(area, box, 2, c.cx, c.cy))
         GROUP BY c.cx, c.cy, p.inside
    ), l3 AS (
        SELECT c.cx, c.cy, sum(c.trips) AS trips,
               p.inside OR trip_area_cell_inside(area, box, 3, c.cx, c.cy) AS inside
          FROM l2 p
          JOIN trip_area_counts c
            ON c.side = trip_area_parts.side AND c.level = 3
           AND c.cy = ANY (trip_area_children(p.cy)) AND c.cx BETWEEN p.cx * 10 AND p.cx * 10 + 9
         WHERE NOT (p.inside AND whole_cells)
           AND (p.inside OR trip_area_cell_meets(area, box, 3, c.cx, c.cy))
         GROUP BY c.cx, c.cy, p.inside
    ), whole AS (
        SELECT trips FROM l1 WHERE inside
        UNION ALL
        SELECT trips FROM l2 WHERE inside
        UNION ALL
        SELECT trips FROM l3 WHERE inside
    )
    SELECT true, trips, NULL::integer[], NULL::integer[], NULL::timestamp[], NULL::integer[], NULL::integer[]
      FROM whole WHERE whole_cells
    UNION ALL
    SELECT c.inside, r.trips, r.lon, r.lat, r.departed_at, r.other_lon, r.other_lat
      FROM l3 c
      JOIN trip_area_points r ON r.side = trip_area_parts.side AND r.cy = c.cy AND r.cx = c.cx
     WHERE NOT (c.inside AND whole_cells)
$$;

-- Is the point (lon, lat), in 1e-7 degree, in the area? With `box` (see above), comparing numbers gives
-- ST_Intersects' answer, edges included. The point is built exactly as the `trips` view builds it.
CREATE FUNCTION trip_area_holds(area geometry, box box2d, lon integer, lat integer) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN box IS NOT NULL
                THEN lon / 1e7::float8 BETWEEN ST_XMin(box) AND ST_XMax(box)
                 AND lat / 1e7::float8 BETWEEN ST_YMin(box) AND ST_YMax(box)
                ELSE ST_Intersects(area, ST_SetSRID(ST_MakePoint(lon / 1e7::float8, lat / 1e7::float8), 4326))
           END
$$;

-- The area's bounding box if the area is exactly that rectangle, else NULL.
CREATE FUNCTION trip_area_box(area geometry) RETURNS box2d
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN ST_Equals(area, ST_Envelope(area)) THEN area::box2d END
$$;

-- The two readers of the cells are PL/pgSQL so that their plans are made once per session (a SQL
-- function's body is planned at every call), and without JIT: PostGIS's high function costs make the
-- planner expect a long query and compile it, which takes longer than running it.

-- Trips with their `side` end in the area, over all time: whole cells by their totals, cut level-3 cells
-- point by point. `box` is trip_area_box(area), computed once by the caller.
CREATE FUNCTION trip_area_count(area geometry, box box2d, side smallint) RETURNS bigint
LANGUAGE plpgsql STABLE SET jit = off SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN (
        SELECT coalesce(sum(CASE WHEN r.inside THEN r.trips ELSE (
                   SELECT count(*) FROM unnest(r.lon, r.lat) AS u(lon, lat)
                    WHERE trip_area_holds(area, box, u.lon, u.lat))
               END), 0)::bigint
          FROM trip_area_parts(area, box, side, true) AS r);
END
$$;

-- The departure of every trip with its `side` end in the area and departing in [since, until); with
-- `both_ends`, only trips whose other end is in the area too (side 1 only: origin rows carry it).
CREATE FUNCTION trip_area_departures(area geometry, box box2d, side smallint, since timestamp,
                                     until timestamp, both_ends boolean)
RETURNS SETOF timestamp
LANGUAGE plpgsql STABLE SET jit = off SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN QUERY
    SELECT u.departed_at
      FROM trip_area_parts(area, box, side, false) AS r
     CROSS JOIN LATERAL unnest(r.lon, r.lat, r.departed_at, r.other_lon, r.other_lat)
                        AS u(lon, lat, departed_at, other_lon, other_lat)
     WHERE (r.inside OR trip_area_holds(area, box, u.lon, u.lat))
       AND u.departed_at >= since AND u.departed_at < until
       AND (NOT both_ends OR trip_area_holds(area, box, u.other_lon, u.other_lat));
END
$$;

-- The window [since, until) of a question, with the defaults of the header, and whether it holds every
-- trip (then no departure needs to be looked at). NULLs when nothing is loaded and no window is given.
CREATE FUNCTION trip_window(since timestamp, until timestamp,
                            OUT window_start timestamp, OUT window_end timestamp, OUT weeks double precision,
                            OUT holds_all boolean)
LANGUAGE plpgsql STABLE AS $$
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

-- The average and what it is made of.
CREATE FUNCTION weekly_trips(area geometry, by text DEFAULT 'origin',
                             since timestamp DEFAULT NULL, until timestamp DEFAULT NULL)
RETURNS TABLE (average double precision, trips bigint, window_start timestamp, window_end timestamp,
               weeks double precision)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    w record;
    n bigint;
    box box2d;
BEGIN
    IF by IS NULL OR by NOT IN ('origin', 'destination', 'both', 'either') THEN
        RAISE EXCEPTION 'unknown by => %', coalesce(quote_literal(by), 'NULL')
            USING HINT = 'by is ''origin'', ''destination'', ''both'' or ''either'': which end of a trip must be in the area.';
    END IF;
    area := trip_area_checked(area);
    box := trip_area_box(area);
    w := trip_window(since, until);
    IF w.window_start IS NULL THEN
        RETURN QUERY SELECT NULL::float8, 0::bigint, NULL::timestamp, NULL::timestamp, NULL::float8;
        RETURN;
    END IF;
    IF by IN ('origin', 'destination') AND w.holds_all THEN
        n := trip_area_count(area, box, CASE by WHEN 'origin' THEN 1 ELSE 2 END::smallint);
    ELSIF by IN ('origin', 'destination') THEN
        n := (SELECT count(*) FROM trip_area_departures(area, box, CASE by WHEN 'origin' THEN 1 ELSE 2 END::smallint,
                                                          w.window_start, w.window_end, false));
    ELSE
        n := (SELECT count(*) FROM trip_area_departures(area, box, 1::smallint, w.window_start, w.window_end, true));
        IF by = 'either' THEN   -- origin in + destination in - both in
            n := CASE WHEN w.holds_all
                      THEN trip_area_count(area, box, 1::smallint) + trip_area_count(area, box, 2::smallint)
                      ELSE (SELECT count(*) FROM trip_area_departures(area, box, 1::smallint, w.window_start, w.window_end, false))
                         + (SELECT count(*) FROM trip_area_departures(area, box, 2::smallint, w.window_start, w.window_end, false))
                 END - n;
        END IF;
    END IF;
    RETURN QUERY SELECT n / w.weeks, n, w.window_start, w.window_end, w.weeks;
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

CREATE FUNCTION weekly_trips(min_lon double precision, min_lat double precision,
                             max_lon double precision, max_lat double precision, by text DEFAULT 'origin',
                             since timestamp DEFAULT NULL, until timestamp DEFAULT NULL)
RETURNS TABLE (average double precision, trips bigint, window_start timestamp, window_end timestamp,
               weeks double precision)
LANGUAGE sql STABLE AS $$
    SELECT * FROM weekly_trips(trip_bbox(min_lon, min_lat, max_lon, max_lat), by, since, until)
$$;

CREATE FUNCTION weekly_avg(area geometry, by text DEFAULT 'origin',
                           since timestamp DEFAULT NULL, until timestamp DEFAULT NULL)
RETURNS double precision
LANGUAGE sql STABLE AS $$ SELECT average FROM weekly_trips(area, by, since, until) $$;

CREATE FUNCTION weekly_avg(min_lon double precision, min_lat double precision,
                           max_lon double precision, max_lat double precision, by text DEFAULT 'origin',
                           since timestamp DEFAULT NULL, until timestamp DEFAULT NULL)
RETURNS double precision
LANGUAGE sql STABLE AS $$
    SELECT average FROM weekly_trips(trip_bbox(min_lon, min_lat, max_lon, max_lat), by, since, until)
$$;

-- A region: its trips per week. An unknown region has no trips (0).
CREATE FUNCTION weekly_trips_region(region text, since timestamp DEFAULT NULL, until timestamp DEFAULT NULL)
RETURNS TABLE (average double precision, trips bigint, window_start timestamp, window_end timestamp,
               weeks double precision)
LANGUAGE plpgsql STABLE AS $$
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
    ELSE   -- the rollup has no time: count the region's trips in the window
        n := (SELECT count(*) FROM trip_rows t JOIN regions r ON r.id = t.region_id
               WHERE r.name = region AND t.departed_at >= w.window_start AND t.departed_at < w.window_end);
    END IF;
    RETURN QUERY SELECT n / w.weeks, n, w.window_start, w.window_end, w.weeks;
END
$$;

CREATE FUNCTION weekly_avg_region(region text, since timestamp DEFAULT NULL, until timestamp DEFAULT NULL)
RETURNS double precision
LANGUAGE sql STABLE AS $$ SELECT average FROM weekly_trips_region(region, since, until) $$;

-- One row per week of the window (every Monday from the window's first week to its last, zero weeks
-- included), counting the trips of the window that depart in that week. With a window that starts and ends
-- on a Monday (the default), the rows are exactly its weeks and their average is weekly_avg.
CREATE FUNCTION trip_window_weeks(since timestamp, until timestamp) RETURNS TABLE (week_start date)
LANGUAGE sql STABLE AS $$
    SELECT d::date
      FROM trip_window(since, until) AS w,
           generate_series(date_trunc('week', w.window_start), w.window_end - interval '1 microsecond',
                           interval '1 week') AS d
$$;

CREATE FUNCTION weekly_counts(area geometry, by text DEFAULT 'origin',
                              since timestamp DEFAULT NULL, until timestamp DEFAULT NULL)
RETURNS TABLE (week_start date, trips bigint)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    w record;
    box box2d;
BEGIN
    IF by IS NULL OR by NOT IN ('origin', 'destination', 'both', 'either') THEN
        RAISE EXCEPTION 'unknown by => %', coalesce(quote_literal(by), 'NULL')
            USING HINT = 'by is ''origin'', ''destination'', ''both'' or ''either'': which end of a trip must be in the area.';
    END IF;
    area := trip_area_checked(area);
    box := trip_area_box(area);
    w := trip_window(since, until);
    RETURN QUERY
    WITH departures AS (   -- (departure, +1 or -1): either = origin + destination - both
        SELECT d AS departed_at, 1 AS n
          FROM trip_area_departures(area, box, 1::smallint, w.window_start, w.window_end, by = 'both') AS d
         WHERE by <> 'destination'
        UNION ALL
        SELECT d, 1 FROM trip_area_departures(area, box, 2::smallint, w.window_start, w.window_end, false) AS d
         WHERE by IN ('destination', 'either')
        UNION ALL
        SELECT d, -1 FROM trip_area_departures(area, box, 1::smallint, w.window_start, w.window_end, true) AS d
         WHERE by = 'either'
    ), per_week AS (
        SELECT date_trunc('week', departed_at)::date AS week_start, sum(n) AS trips
          FROM departures GROUP BY 1
    )
    SELECT k.week_start, coalesce(p.trips, 0)::bigint
      FROM trip_window_weeks(since, until) AS k
      LEFT JOIN per_week p USING (week_start)
     ORDER BY k.week_start;
END
$$;

CREATE FUNCTION weekly_counts(min_lon double precision, min_lat double precision,
                              max_lon double precision, max_lat double precision, by text DEFAULT 'origin',
                              since timestamp DEFAULT NULL, until timestamp DEFAULT NULL)
RETURNS TABLE (week_start date, trips bigint)
LANGUAGE sql STABLE AS $$
    SELECT * FROM weekly_counts(trip_bbox(min_lon, min_lat, max_lon, max_lat), by, since, until)
$$;

CREATE FUNCTION weekly_counts_region(region text, since timestamp DEFAULT NULL, until timestamp DEFAULT NULL)
RETURNS TABLE (week_start date, trips bigint)
LANGUAGE sql STABLE AS $$
    WITH w AS (SELECT * FROM trip_window(since, until)),
    per_week AS (
        SELECT date_trunc('week', t.departed_at)::date AS week_start, count(*) AS trips
          FROM trip_rows t JOIN regions r ON r.id = t.region_id, w
         WHERE r.name = region AND t.departed_at >= w.window_start AND t.departed_at < w.window_end
         GROUP BY 1
    )
    SELECT k.week_start, coalesce(p.trips, 0)::bigint
      FROM trip_window_weeks(since, until) AS k
      LEFT JOIN per_week p USING (week_start)
     ORDER BY k.week_start
$$;
