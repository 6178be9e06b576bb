BEGIN;
CREATE FUNCTION trip_box_count_between(side smallint, x0 integer, y0 integer, x1 integer, y1 integer,
                                       since timestamp, until timestamp) RETURNS bigint
LANGUAGE plpgsql STABLE SET jit = off SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    d0 constant integer := trip_day(since);
    d1 constant integer := trip_day(until);
BEGIN
    RETURN (
    WITH l1 AS (
        SELECT c.cx, c.cy, sum(trip_days_between(c.days, c.trips_to_day, d0, d1)) AS trips,
               c.cx * 1000000::bigint >= x0 AND c.cx * 1000000::bigint + 999999 <= x1
           AND c.cy * 1000000::bigint >= y0 AND c.cy * 1000000::bigint + 999999 <= y1 AS inside
          FROM trip_area_counts c
         WHERE c.side = trip_box_count_between.side AND c.level = 1
           AND c.cx BETWEEN floor(x0 / 1e6::float8)::integer AND floor(x1 / 1e6::float8)::integer
           AND c.cy BETWEEN floor(y0 / 1e6::float8)::integer AND floor(y1 / 1e6::float8)::integer
         GROUP BY c.cx, c.cy
    ), l2 AS (
        SELECT c.cx, c.cy, sum(trip_days_between(c.days, c.trips_to_day, d0, d1)) AS trips,
               c.cx * 100000::bigint >= x0 AND c.cx * 100000::bigint + 99999 <= x1
           AND c.cy * 100000::bigint >= y0 AND c.cy * 100000::bigint + 99999 <= y1 AS inside
          FROM l1 p
          JOIN trip_area_counts c
            ON c.side = trip_box_count_between.side AND c.level = 2
           AND c.cy = ANY (trip_box_children(p.cy, floor(y0 / 1e5::float8)::integer, floor(y1 / 1e5::float8)::integer))
           AND c.cx BETWEEN greatest(p.cx * 10, floor(x0 / 1e5::float8)::integer)
                        AND least(p.cx * 10 + 9, floor(x1 / 1e5::float8)::integer)
         WHERE NOT p.inside
         GROUP BY c.cx, c.cy
    ), l3 AS (
        SELECT DISTINCT c.cx, c.cy,
               c.cx * 10000::bigint >= x0 AND c.cx * 10000::bigint + 9999 <= x1
           AND c.cy * 10000::bigint >= y0 AND c.cy * 10000::bigint + 9999 <= y1 AS inside
          FROM l2 p
          JOIN trip_area_counts c
            ON c.side = trip_box_count_between.side AND c.level = 3
           AND c.cy = ANY (trip_box_children(p.cy, floor(y0 / 1e4::float8)::integer, floor(y1 / 1e4::float8)::integer))
           AND c.cx BETWEEN greatest(p.cx * 10, floor(x0 / 1e4::float8)::integer)
                        AND least(p.cx * 10 + 9, floor(x1 / 1e4::float8)::integer)
         WHERE NOT p.inside
    )
    SELECT (SELECT coalesce(sum(trips), 0) FROM l1 WHERE inside)
         + (SELECT coalesce(sum(trips), 0) FROM l2 WHERE inside)
         + (SELECT coalesce(sum(CASE
                       WHEN c.inside THEN width_bucket(until - interval '1 microsecond', r.departed_sorted)
                                        - width_bucket(since - interval '1 microsecond', r.departed_sorted)
                       ELSE (SELECT count(*) FROM unnest(r.lon, r.lat, r.departed_at) AS u(lon, lat, departed_at)
                              WHERE u.lon BETWEEN x0 AND x1 AND u.lat BETWEEN y0 AND y1
                                AND u.departed_at >= since AND u.departed_at < until)
                   END), 0)
              FROM l3 c
              JOIN trip_area_points r ON r.side = trip_box_count_between.side AND r.cy = c.cy AND r.cx = c.cx));
END
$$;
