-- 030: 'both' over a window of whole days reads the pairs' days, not every point of the area.
--
-- Over all time, 'both' counts the trips between two level-2 cells wholly inside the area from the pair
-- totals (016) and tests only the points of the band, the level-2 cells cut by the area's edge. The pairs
-- had no time, so with a window that does not hold every trip (and for weekly_counts) 'both', and so
-- 'either', fell back to 010's trip_area_departures: every origin of the area with its departure and its
-- destination, 2-3 s for a city-sized box at 10M trips.
--
-- Now each pair also keeps its days, as the level-1 and level-2 cells do since 028: the days with
-- departures and the trips departing up to the end of each. trip_area_both_between() then counts a run of
-- periods of whole days as 029 does by origin or destination:
--
--   origin and destination cells wholly inside   the pairs' days: a pair with at least as many days as
--                                                there are bounds is looked up once per bound, one with
--                                                fewer puts each of its days in its period
--   an end in the band                           016's band, each point also put in its period by its
--                                                departure
--
-- weekly_avg (by both or either) and weekly_counts (by both or either) take it when the window starts and
-- ends at midnight and the area is a polygon or multipolygon (a box is one). Windows that start or end
-- within a day, and collections, keep 010's path.
--
-- The arrays are ~8 bytes per pair and day with departures: 8.3 million for 10M generated trips over three
-- years (147,185 pairs, most with a few trips each), and trip_area_pairs grew from 15 to 91 MB. The loader
-- writes them; the pairs already loaded get them here, from their trips.

ALTER TABLE trip_area_pairs ADD COLUMN days integer[],          -- days with departures, ascending
                            ADD COLUMN trips_to_day integer[];  -- trips departing up to the end of each

-- The days and trips_to_day of every pair of every job, from the trips.
CREATE FUNCTION trip_area_pair_days()
RETURNS TABLE (job_id integer, ocx integer, ocy integer, dcx integer, dcy integer, days integer[],
               trips_to_day integer[])
LANGUAGE sql STABLE AS $$
    SELECT d.job_id, d.ocx, d.ocy, d.dcx, d.dcy, array_agg(d.day ORDER BY d.day), array_agg(d.to_day ORDER BY d.day)
      FROM (SELECT c.*, sum(c.trips) OVER (PARTITION BY c.job_id, c.ocx, c.ocy, c.dcx, c.dcy ORDER BY c.day)::integer
                        AS to_day
              FROM (SELECT t.job_id,
                           floor(t.origin_lon::float8 / 100000)::integer AS ocx,
                           floor(t.origin_lat::float8 / 100000)::integer AS ocy,
                           floor(t.dest_lon::float8 / 100000)::integer AS dcx,
                           floor(t.dest_lat::float8 / 100000)::integer AS dcy,
                           trip_day(t.departed_at) AS day, count(*) AS trips
                      FROM trip_rows t
                     GROUP BY 1, 2, 3, 4, 5, 6) AS c) AS d
     GROUP BY 1, 2, 3, 4, 5
$$;

UPDATE trip_area_pairs p
   SET days = d.days, trips_to_day = d.trips_to_day
  FROM trip_area_pair_days() AS d
 WHERE p.job_id = d.job_id AND p.ocx = d.ocx AND p.ocy = d.ocy AND p.dcx = d.dcx AND p.dcy = d.dcy;
ALTER TABLE trip_area_pairs ALTER COLUMN days SET NOT NULL, ALTER COLUMN trips_to_day SET NOT NULL;

-- 028's rebuild, with the pairs' days.
CREATE OR REPLACE FUNCTION rebuild_area_counts() RETURNS void
LANGUAGE sql AS $$
    TRUNCATE trip_area_counts, trip_area_points, trip_area_pairs;
    INSERT INTO trip_area_counts (job_id, side, level, cx, cy, trips, days, trips_to_day)
    SELECT c.job_id, c.side, c.level, c.cx, c.cy, c.trips, d.days, d.trips_to_day
      FROM (SELECT t.job_id, e.side, l.level,
                   floor(e.lon::float8 / trip_area_cell_size(l.level))::integer AS cx,
                   floor(e.lat::float8 / trip_area_cell_size(l.level))::integer AS cy, count(*) AS trips
              FROM trip_rows t
             CROSS JOIN LATERAL (VALUES (1::smallint, t.origin_lon, t.origin_lat),
                                        (2::smallint, t.dest_lon, t.dest_lat)) AS e(side, lon, lat)
             CROSS JOIN (VALUES (1::smallint), (2::smallint), (3::smallint)) AS l(level)
             GROUP BY 1, 2, 3, 4, 5) AS c
      LEFT JOIN trip_area_days() AS d
        ON d.job_id = c.job_id AND d.side = c.side AND d.level = c.level AND d.cy = c.cy AND d.cx = c.cx;
    INSERT INTO trip_area_points (job_id, side, cx, cy, trips, lon, lat, departed_at, other_lon, other_lat,
                                  lat_sorted, lon_by_lat, other_lon_sorted, other_lat_by_other_lon, departed_sorted)
    SELECT t.job_id, e.side, floor(e.lon::float8 / 10000), floor(e.lat::float8 / 10000), count(*),
           array_agg(e.lon ORDER BY e.lon, e.lat, t.departed_at, e.other_lon, e.other_lat),
           array_agg(e.lat ORDER BY e.lon, e.lat, t.departed_at, e.other_lon, e.other_lat),
           array_agg(t.departed_at ORDER BY e.lon, e.lat, t.departed_at, e.other_lon, e.other_lat),
           array_agg(e.other_lon ORDER BY e.lon, e.lat, t.departed_at, e.other_lon, e.other_lat),
           array_agg(e.other_lat ORDER BY e.lon, e.lat, t.departed_at, e.other_lon, e.other_lat),
           array_agg(e.lat ORDER BY e.lat),
           array_agg(e.lon ORDER BY e.lat, e.lon),
           array_agg(e.other_lon ORDER BY e.other_lon, e.other_lat),
           array_agg(e.other_lat ORDER BY e.other_lon, e.other_lat),
           array_agg(t.departed_at ORDER BY t.departed_at)
      FROM trip_rows t
     CROSS JOIN LATERAL (VALUES (1::smallint, t.origin_lon, t.origin_lat, t.dest_lon, t.dest_lat),
                                (2::smallint, t.dest_lon, t.dest_lat, t.origin_lon, t.origin_lat))
                        AS e(side, lon, lat, other_lon, other_lat)
     GROUP BY 1, 2, 3, 4;
    INSERT INTO trip_area_pairs (job_id, ocx, ocy, dcx, dcy, trips, days, trips_to_day)
    SELECT d.job_id, d.ocx, d.ocy, d.dcx, d.dcy, d.trips_to_day[cardinality(d.trips_to_day)], d.days, d.trips_to_day
      FROM trip_area_pair_days() AS d;
$$;

-- Trips with both ends in the area departing in each period [bounds[i], bounds[i + 1]), for bounds in
-- ascending order, each at midnight (as 029 checks them): cardinality(bounds) - 1 counts. The area is a
-- polygon or multipolygon; `box` is trip_area_box(area). As in 016, with the cells of 024 for trips at
-- either end:
--
--   whole   the level-2 cells wholly inside the area, directly or below a level-1 cell wholly inside
--   pair    the pairs from a whole cell to a whole cell, their days copied out of TOAST once (029)
--   band    the level-3 cells of the cut level-2 cells: an origin row's point counts when both its ends are
--           in the area, a destination row's when its end is and its origin's cell is whole (a trip from
--           the band is counted by its origin row). An area with no whole cell reads no destination row.
--
-- The pairs are joined to the whole cells through a LATERAL subquery that the planner cannot flatten, so
-- each whole cell looks up its pairs by index: the whole cells are a CTE, whose rows a generic plan does
-- not know, and a merge join over every pair was planned instead (226 ms for 16,475 pairs of a 20 km box).
CREATE FUNCTION trip_area_both_between(area geometry, box box2d, bounds timestamp[]) RETURNS bigint[]
LANGUAGE plpgsql STABLE SET jit = off SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    IF coalesce(cardinality(bounds), 0) < 2
       OR EXISTS (SELECT FROM unnest(bounds) WITH ORDINALITY AS b(t, i)
                   WHERE t IS NULL OR t <> date_trunc('day', t) OR (i > 1 AND t <= bounds[i - 1])) THEN
        RAISE EXCEPTION 'trip_area_both_between counts periods of whole days: the bounds % are not two or more distinct midnights in ascending order',
                        bounds;
    END IF;
    RETURN (
    WITH cell AS MATERIALIZED (
        SELECT c.level, c.cx, c.cy, c.inside FROM trip_area_polygon_cells(area, '{1,2}'::smallint[]) AS c
    ), whole AS MATERIALIZED (
        SELECT c.cx, c.cy FROM cell c WHERE c.level = 2
        UNION ALL
        SELECT x.cx, y.cy
          FROM cell c, generate_series(c.cx * 10, c.cx * 10 + 9) AS x(cx), generate_series(c.cy * 10, c.cy * 10 + 9) AS y(cy)
         WHERE c.level = 1
    ), pair AS MATERIALIZED (
        SELECT p.days, p.trips_to_day
          FROM whole o
         CROSS JOIN LATERAL (SELECT p.dcx, p.dcy, p.days[:] AS days, p.trips_to_day[:] AS trips_to_day
                               FROM trip_area_pairs p
                              WHERE p.ocy = o.cy AND p.ocx = o.cx
                             OFFSET 0) AS p
         WHERE (p.dcx, p.dcy) IN (SELECT d.cx, d.cy FROM whole d)
    ), before AS (   -- pairs with as many days as bounds or more: per bound, the trips departing before it
        SELECT b.i, sum(coalesce(r.trips_to_day[width_bucket(trip_day(b.t) - 1, r.days)], 0)) AS trips
          FROM unnest(bounds) WITH ORDINALITY AS b(t, i), pair r
         WHERE cardinality(r.days) >= cardinality(bounds)
         GROUP BY b.i
    ), few AS (      -- the other pairs: each day's trips in its period (width_bucket: the period's number)
        SELECT width_bucket(d.day, ARRAY(SELECT trip_day(t) FROM unnest(bounds) AS t)) AS i,
               sum(d.to_day - coalesce(r.trips_to_day[d.k - 1], 0)) AS trips
          FROM pair r
         CROSS JOIN LATERAL unnest(r.days, r.trips_to_day) WITH ORDINALITY AS d(day, to_day, k)
         WHERE cardinality(r.days) < cardinality(bounds)
         GROUP BY 1
    ), band AS (
        SELECT width_bucket(u.departed_at, bounds) AS i, count(*) AS trips
          FROM (SELECT c.inside, r.side, unnest(r.lon) AS lon, unnest(r.lat) AS lat,
                       unnest(r.departed_at) AS departed_at, unnest(r.other_lon) AS other_lon,
                       unnest(r.other_lat) AS other_lat
                  FROM cell c
                  JOIN trip_area_points r
                    ON r.cy = c.cy AND r.cx = c.cx
                   AND r.side = ANY (CASE WHEN EXISTS (SELECT FROM whole) THEN '{1,2}' ELSE '{1}' END::smallint[])
                 WHERE c.level = 3) AS u
         WHERE u.departed_at >= bounds[1] AND u.departed_at < bounds[cardinality(bounds)]
           AND (u.inside OR trip_area_holds(area, box, u.lon, u.lat))
           AND CASE WHEN u.side = 1 THEN trip_area_holds(area, box, u.other_lon, u.other_lat)
                    ELSE (floor(u.other_lon::float8 / 100000)::integer, floor(u.other_lat::float8 / 100000)::integer)
                         IN (SELECT o.cx, o.cy FROM whole o)
               END
         GROUP BY 1
    )
    SELECT array_agg(coalesce(hi.trips - lo.trips, 0) + coalesce(f.trips, 0) + coalesce(x.trips, 0) ORDER BY p.i)::bigint[]
      FROM generate_series(1, cardinality(bounds) - 1) AS p(i)
      LEFT JOIN before lo ON lo.i = p.i
      LEFT JOIN before hi ON hi.i = p.i + 1
      LEFT JOIN few f ON f.i = p.i
      LEFT JOIN band x ON x.i = p.i);
END
$$;

-- 028's weekly_trips: by both over a window of whole days, and the 'both' part of either, from the pairs'
-- days (above) when the area is a polygon or multipolygon.
CREATE OR REPLACE FUNCTION weekly_trips(area geometry, by text DEFAULT 'origin',
                                        since timestamp DEFAULT NULL, until timestamp DEFAULT NULL)
RETURNS TABLE (average double precision, trips bigint, window_start timestamp, window_end timestamp,
               weeks double precision)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    w record;
    n bigint;
    box box2d;
    by_day boolean;   -- the window starts and ends at midnight
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
    by_day := w.window_start = date_trunc('day', w.window_start) AND w.window_end = date_trunc('day', w.window_end);
    IF by IN ('origin', 'destination') AND w.holds_all THEN
        n := trip_area_count(area, box, CASE by WHEN 'origin' THEN 1 ELSE 2 END::smallint);
    ELSIF by IN ('origin', 'destination') AND by_day THEN
        n := trip_area_count_between(area, box, CASE by WHEN 'origin' THEN 1 ELSE 2 END::smallint,
                                     w.window_start, w.window_end);
    ELSIF by IN ('origin', 'destination') THEN
        n := (SELECT count(*) FROM trip_area_departures(area, box, CASE by WHEN 'origin' THEN 1 ELSE 2 END::smallint,
                                                          w.window_start, w.window_end, false));
    ELSIF w.holds_all THEN
        n := trip_area_both(area, box);
        IF by = 'either' THEN   -- origin in + destination in - both in
            n := trip_area_count(area, box, 1::smallint) + trip_area_count(area, box, 2::smallint) - n;
        END IF;
    ELSE
        IF by_day AND ST_GeometryType(area) IN ('ST_Polygon', 'ST_MultiPolygon') THEN
            n := (trip_area_both_between(area, box, ARRAY[w.window_start, w.window_end]))[1];
        ELSE
            n := (SELECT count(*) FROM trip_area_departures(area, box, 1::smallint, w.window_start, w.window_end, true));
        END IF;
        IF by = 'either' AND by_day THEN
            n := trip_area_count_between(area, box, 1::smallint, w.window_start, w.window_end)
               + trip_area_count_between(area, box, 2::smallint, w.window_start, w.window_end) - n;
        ELSIF by = 'either' THEN
            n := (SELECT count(*) FROM trip_area_departures(area, box, 1::smallint, w.window_start, w.window_end, false))
               + (SELECT count(*) FROM trip_area_departures(area, box, 2::smallint, w.window_start, w.window_end, false))
               - n;
        END IF;
    END IF;
    RETURN QUERY SELECT n / w.weeks, n, w.window_start, w.window_end, w.weeks;
END
$$;

-- 029's weekly_counts: by both, and the 'both' part of either, from the pairs' days too, when the window
-- starts and ends at midnight and the area is a polygon or multipolygon.
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
    both_by_day boolean;   -- counts for both (else departures)
    origins bigint[];      -- per week, when by_day
    destinations bigint[];
    boths bigint[];        -- per week, when both_by_day (subtracted for either)
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
    both_by_day := by_day AND ST_GeometryType(area) IN ('ST_Polygon', 'ST_MultiPolygon');
    IF by_day AND by IN ('origin', 'either') THEN
        origins := trip_area_counts_between(area, box, 1::smallint, bounds);
    END IF;
    IF by_day AND by IN ('destination', 'either') THEN
        destinations := trip_area_counts_between(area, box, 2::smallint, bounds);
    END IF;
    IF both_by_day AND by IN ('both', 'either') THEN
        boths := trip_area_both_between(area, box, bounds);
    END IF;
    RETURN QUERY
    WITH departures AS (   -- (departure, +1 or -1) of what the counts did not give: either = origin + destination - both
        SELECT d AS departed_at, 1 AS n
          FROM trip_area_departures(area, box, 1::smallint, w.window_start, w.window_end, by = 'both') AS d
         WHERE (by = 'both' AND NOT both_by_day) OR (by IN ('origin', 'either') AND NOT by_day)
        UNION ALL
        SELECT d, 1 FROM trip_area_departures(area, box, 2::smallint, w.window_start, w.window_end, false) AS d
         WHERE by IN ('destination', 'either') AND NOT by_day
        UNION ALL
        SELECT d, -1 FROM trip_area_departures(area, box, 1::smallint, w.window_start, w.window_end, true) AS d
         WHERE by = 'either' AND NOT both_by_day
    ), per_week AS (
        SELECT date_trunc('week', departed_at)::date AS week_start, sum(n) AS trips
          FROM departures GROUP BY 1
    )
    SELECT k.week_start,
           (coalesce(k.origins, 0) + coalesce(k.destinations, 0)
            + CASE by WHEN 'either' THEN -1 ELSE 1 END * coalesce(k.boths, 0) + coalesce(p.trips, 0))::bigint
      FROM unnest(weeks, origins, destinations, boths) AS k(week_start, origins, destinations, boths)
      LEFT JOIN per_week p USING (week_start)
     ORDER BY k.week_start;
END
$$;
