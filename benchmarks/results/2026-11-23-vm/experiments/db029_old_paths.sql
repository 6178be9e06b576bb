-- db/029's comparisons (ab.py SETUP): the paths db/029 replaced, as session-local functions.
--   pg_temp.weekly_counts_010   010's weekly_counts: every point of the area with its departure
--   pg_temp.count_between_028   028's trip_area_count_between: one window, before it became one period of
--                               trip_area_counts_between
-- Bodies as in db/010 and db/028; only the names differ.
BEGIN;
CREATE FUNCTION pg_temp.weekly_counts_010(area geometry, by text DEFAULT 'origin',
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

CREATE FUNCTION pg_temp.count_between_028(area geometry, box box2d, side smallint, since timestamp, until timestamp)
RETURNS bigint
LANGUAGE plpgsql STABLE SET jit = off SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    d0 constant integer := trip_day(since);
    d1 constant integer := trip_day(until);
    polygon constant boolean := box IS NULL AND ST_GeometryType(area) IN ('ST_Polygon', 'ST_MultiPolygon');
BEGIN
    IF since <> date_trunc('day', since) OR until <> date_trunc('day', until) THEN
        RAISE EXCEPTION 'trip_area_count_between counts whole days: [%, %) does not start and end at midnight',
                        since, until;
    END IF;
    RETURN (
    WITH cell AS MATERIALIZED (
        SELECT c.level, c.cx, c.cy, c.inside FROM trip_area_polygon_cells(area, side) AS c WHERE polygon
        UNION ALL
        SELECT c.level, c.cx, c.cy, c.inside FROM trip_area_cells(area, box, side, true) AS c WHERE NOT polygon
    )
    SELECT (SELECT coalesce(sum(trip_days_between(k.days, k.trips_to_day, d0, d1)), 0)
              FROM cell c
              JOIN trip_area_counts k
                ON k.side = count_between_028.side AND k.level = c.level AND k.cy = c.cy AND k.cx = c.cx
             WHERE c.level < 3)
         + (SELECT coalesce(sum(CASE
                       WHEN c.inside THEN width_bucket(until - interval '1 microsecond', r.departed_sorted)
                                        - width_bucket(since - interval '1 microsecond', r.departed_sorted)
                       ELSE (SELECT count(*) FROM unnest(r.lon, r.lat, r.departed_at) AS u(lon, lat, departed_at)
                              WHERE u.departed_at >= since AND u.departed_at < until
                                AND trip_area_holds(area, box, u.lon, u.lat))
                   END), 0)
              FROM cell c
              JOIN trip_area_points r ON r.side = count_between_028.side AND r.cy = c.cy AND r.cx = c.cx
             WHERE c.level = 3));
END
$$;

