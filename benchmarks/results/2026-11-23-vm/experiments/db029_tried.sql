-- db/029's variants tried and not kept (ab.py SETUP), as session-local functions beside db/029's
-- trip_area_counts_between, and pg_temp.weeks(): the bounds of the default window's weeks.
--   pg_temp.counts_between_in_place    the arrays read in place at every bound (no [:] copy)
--   pg_temp.counts_between_few_points  a level-3 row wholly inside with fewer departures than bounds is
--                                      bucketed point by point (with the cut cells' points), not looked up
--                                      at every bound
BEGIN;
CREATE FUNCTION pg_temp.weeks() RETURNS timestamp[] LANGUAGE sql STABLE AS $$
    SELECT ARRAY(SELECT greatest(k.week_start::timestamp, w.window_start)
                   FROM trip_window_weeks(NULL, NULL) AS k, trip_window(NULL, NULL) AS w ORDER BY 1)
           || (SELECT window_end FROM trip_window(NULL, NULL))
$$;
CREATE FUNCTION pg_temp.counts_between_in_place(area geometry, box box2d, side smallint, bounds timestamp[])
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
        -- Tried: the arrays read in place at every bound, not copied once with [:].
        SELECT k.days AS days, k.trips_to_day AS trips_to_day, NULL::timestamp[] AS departed_sorted
          FROM cell c
          JOIN trip_area_counts k
            ON k.side = counts_between_in_place.side AND k.level = c.level AND k.cy = c.cy AND k.cx = c.cx
         WHERE c.level < 3
        UNION ALL
        SELECT NULL, NULL, r.departed_sorted
          FROM cell c
          JOIN trip_area_points r ON r.side = counts_between_in_place.side AND r.cy = c.cy AND r.cx = c.cx
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
          JOIN trip_area_points r ON r.side = counts_between_in_place.side AND r.cy = c.cy AND r.cx = c.cx
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

CREATE FUNCTION pg_temp.counts_between_few_points(area geometry, box box2d, side smallint, bounds timestamp[])
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
            ON k.side = counts_between_few_points.side AND k.level = c.level AND k.cy = c.cy AND k.cx = c.cx
         WHERE c.level < 3
        UNION ALL
        SELECT NULL, NULL, r.departed_sorted[:]
          FROM cell c
          JOIN trip_area_points r ON r.side = counts_between_few_points.side AND r.cy = c.cy AND r.cx = c.cx
         WHERE c.level = 3 AND c.inside AND r.trips >= cardinality(bounds)
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
          JOIN trip_area_points r ON r.side = counts_between_few_points.side AND r.cy = c.cy AND r.cx = c.cx
         CROSS JOIN LATERAL unnest(r.lon, r.lat, r.departed_at) AS u(lon, lat, departed_at)
         WHERE c.level = 3 AND (NOT c.inside OR r.trips < cardinality(bounds))
           AND u.departed_at >= bounds[1] AND u.departed_at < bounds[cardinality(bounds)]
           AND (c.inside OR trip_area_holds(area, box, u.lon, u.lat))
         GROUP BY 1
    )
    SELECT array_agg(coalesce(hi.trips - lo.trips, 0) + coalesce(x.trips, 0) ORDER BY p.i)::bigint[]
      FROM generate_series(1, cardinality(bounds) - 1) AS p(i)
      LEFT JOIN before lo ON lo.i = p.i
      LEFT JOIN before hi ON hi.i = p.i + 1
      LEFT JOIN cut x ON x.i = p.i);
END
$$;

