-- 029: weekly_counts by origin or destination reads the day counts of 028, not every point of the area.
--
-- 028 answered one window of whole days from the cells' days (levels 1 and 2) and sorted departures
-- (level 3). weekly_counts still took 010's path: every point of the area with its departure, in
-- proportion to the area's trips, seconds for a city-sized box at 10M trips. Its weeks are windows of
-- whole days too: the window cut at every Monday inside it. So the count of one window becomes the count
-- of a run of periods:
--
--   trip_area_counts_between(area, box, side, bounds)   trips departing in each [bounds[i], bounds[i + 1])
--
-- Cells wholly inside the area are looked up once per bound (trips departing before it: a width_bucket on
-- the days or the sorted departures), and each period is the difference of its two bounds. The points of
-- level-3 cells cut by the edge are tested as before and put in their period by their departure. With two
-- bounds this is 028's trip_area_count_between, which now calls it: one mechanism for weekly_avg and
-- weekly_counts.
--
-- weekly_counts takes it for origin, destination and the one-end parts of either when the window starts
-- and ends at midnight (the default window does: Mondays). 'both', and windows starting or ending within a
-- day, keep 010's path.

-- Trips with their `side` end in the area departing in each period [bounds[i], bounds[i + 1]), for bounds
-- in ascending order, each at midnight: cardinality(bounds) - 1 counts. The cells are the all-time
-- count's (028). A bound b splits a cell wholly inside as 028 did: levels 1 and 2 count the days before
-- trip_day(b), level 3 the departures up to b - 1 us (timestamps are whole microseconds).
CREATE FUNCTION trip_area_counts_between(area geometry, box box2d, side smallint, bounds timestamp[])
RETURNS bigint[]
LANGUAGE plpgsql STABLE SET jit = off SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    polygon constant boolean := box IS NULL AND ST_GeometryType(area) IN ('ST_Polygon', 'ST_MultiPolygon');
BEGIN
    IF coalesce(cardinality(bounds), 0) < 2
       OR EXISTS (SELECT FROM unnest(bounds) WITH ORDINALITY AS b(t, i)
                   WHERE t IS NULL OR t <> date_trunc('day', t) OR (i > 1 AND t <= bounds[i - 1])) THEN
        RAISE EXCEPTION 'trip_area_counts_between counts periods of whole days: the bounds % are not two or more distinct midnights in ascending order',
                        bounds;
    END IF;
    RETURN (
    WITH cell AS MATERIALIZED (
        SELECT c.level, c.cx, c.cy, c.inside FROM trip_area_polygon_cells(area, side) AS c WHERE polygon
        UNION ALL
        SELECT c.level, c.cx, c.cy, c.inside FROM trip_area_cells(area, box, side, true) AS c WHERE NOT polygon
    ), whole AS MATERIALIZED (   -- the cells wholly inside: their days (levels 1, 2) or departures (level 3)
        -- [:] copies each array out of TOAST once; the arrays themselves would be fetched and decompressed
        -- again for every bound (5x slower with the 158 bounds of three years' weeks).
        SELECT k.days[:] AS days, k.trips_to_day[:] AS trips_to_day, NULL::timestamp[] AS departed_sorted
          FROM cell c
          JOIN trip_area_counts k
            ON k.side = trip_area_counts_between.side AND k.level = c.level AND k.cy = c.cy AND k.cx = c.cx
         WHERE c.level < 3
        UNION ALL
        SELECT NULL, NULL, r.departed_sorted[:]
          FROM cell c
          JOIN trip_area_points r ON r.side = trip_area_counts_between.side AND r.cy = c.cy AND r.cx = c.cx
         WHERE c.level = 3 AND c.inside
    ), before AS (      -- per bound: the trips of the cells wholly inside that depart before it
        SELECT b.i, sum(CASE WHEN r.days IS NOT NULL
                             THEN coalesce(r.trips_to_day[width_bucket(trip_day(b.t) - 1, r.days)], 0)
                             ELSE width_bucket(b.t - interval '1 microsecond', r.departed_sorted)
                        END) AS trips
          FROM unnest(bounds) WITH ORDINALITY AS b(t, i), whole r
         GROUP BY b.i
    ), cut AS (      -- per period: the points of cut cells in the area (width_bucket: the period's number)
        SELECT width_bucket(u.departed_at, bounds) AS i, count(*) AS trips
          FROM cell c
          JOIN trip_area_points r ON r.side = trip_area_counts_between.side AND r.cy = c.cy AND r.cx = c.cx
         CROSS JOIN LATERAL unnest(r.lon, r.lat, r.departed_at) AS u(lon, lat, departed_at)
         WHERE c.level = 3 AND NOT c.inside
           AND u.departed_at >= bounds[1] AND u.departed_at < bounds[cardinality(bounds)]
           AND trip_area_holds(area, box, u.lon, u.lat)
         GROUP BY 1
    )
    SELECT array_agg(coalesce(hi.trips - lo.trips, 0) + coalesce(x.trips, 0) ORDER BY p.i)::bigint[]
      FROM generate_series(1, cardinality(bounds) - 1) AS p(i)
      LEFT JOIN before lo ON lo.i = p.i
      LEFT JOIN before hi ON hi.i = p.i + 1
      LEFT JOIN cut x ON x.i = p.i);
END
$$;

-- 028's count of one window, as one period.
CREATE OR REPLACE FUNCTION trip_area_count_between(area geometry, box box2d, side smallint, since timestamp,
                                                   until timestamp)
RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT (trip_area_counts_between(area, box, side, ARRAY[since, until]))[1]
$$;

-- 010's weekly_counts: by origin or destination, and the one-end parts of either, from the counts when
-- the window starts and ends at midnight.
CREATE OR REPLACE FUNCTION weekly_counts(area geometry, by text DEFAULT 'origin',
                                         since timestamp DEFAULT NULL, until timestamp DEFAULT NULL)
RETURNS TABLE (week_start date, trips bigint)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    w record;
    box box2d;
    weeks date[];          -- the Monday of each week of the window
    bounds timestamp[];    -- week k of the window is [bounds[k], bounds[k + 1])
    by_day boolean;        -- counts for origin and destination (else departures)
    origins bigint[];      -- per week, when by_day
    destinations bigint[];
BEGIN
    IF by IS NULL OR by NOT IN ('origin', 'destination', 'both', 'either') THEN
        RAISE EXCEPTION 'unknown by => %', coalesce(quote_literal(by), 'NULL')
            USING HINT = 'by is ''origin'', ''destination'', ''both'' or ''either'': which end of a trip must be in the area.';
    END IF;
    area := trip_area_checked(area);
    box := trip_area_box(area);
    w := trip_window(since, until);
    weeks := ARRAY(SELECT k.week_start FROM trip_window_weeks(since, until) AS k ORDER BY 1);
    bounds := ARRAY(SELECT greatest(k, w.window_start) FROM unnest(weeks) AS k ORDER BY 1) || w.window_end;
    by_day := w.window_start = date_trunc('day', w.window_start) AND w.window_end = date_trunc('day', w.window_end);
    IF by_day AND by IN ('origin', 'either') THEN
        origins := trip_area_counts_between(area, box, 1::smallint, bounds);
    END IF;
    IF by_day AND by IN ('destination', 'either') THEN
        destinations := trip_area_counts_between(area, box, 2::smallint, bounds);
    END IF;
    RETURN QUERY
    WITH departures AS (   -- (departure, +1 or -1) of what the counts did not give: either = origin + destination - both
        SELECT d AS departed_at, 1 AS n
          FROM trip_area_departures(area, box, 1::smallint, w.window_start, w.window_end, by = 'both') AS d
         WHERE by = 'both' OR (by IN ('origin', 'either') AND NOT by_day)
        UNION ALL
        SELECT d, 1 FROM trip_area_departures(area, box, 2::smallint, w.window_start, w.window_end, false) AS d
         WHERE by IN ('destination', 'either') AND NOT by_day
        UNION ALL
        SELECT d, -1 FROM trip_area_departures(area, box, 1::smallint, w.window_start, w.window_end, true) AS d
         WHERE by = 'either'
    ), per_week AS (
        SELECT date_trunc('week', departed_at)::date AS week_start, sum(n) AS trips
          FROM departures GROUP BY 1
    )
    SELECT k.week_start, (coalesce(k.origins, 0) + coalesce(k.destinations, 0) + coalesce(p.trips, 0))::bigint
      FROM unnest(weeks, origins, destinations) AS k(week_start, origins, destinations)
      LEFT JOIN per_week p USING (week_start)
     ORDER BY k.week_start;
END
$$;
