-- 015: a bounding box counts its trips by binary search in its edge cells, not by testing every point.
--
-- At 10M trips a 10 km box by origin took 20-30 ms, most of it in the level-3 cells cut by the box's edge:
-- every point of every such cell was tested (010's trip_area_count). But a level-3 cell cut by one edge
-- only, or by two opposite edges (all but the few corner cells of a box), asks a question about one
-- coordinate: how many of its points have lon (or lat) between two bounds. With the coordinates sorted,
-- width_bucket answers it by binary search, whatever the cell's number of points.
--
-- So each trip_area_points row (009) now keeps its points in order of longitude, and the same latitudes
-- once more in their own order (lat_sorted). The loader writes rows that way; this migration reorders the
-- rows already loaded (about a minute per 10M trips) and rebuild_area_counts() builds them that way.
--
-- A box is also turned once into integer bounds on the stored coordinates (1e-7 degree), so that every
-- test below compares integers: a point is in the box when x0 <= lon <= x1 and y0 <= lat <= y1, which is
-- exactly ST_Intersects(box, point) with the point built like the `trips` view builds it (lon / 1e7).

ALTER TABLE trip_area_points ADD COLUMN lat_sorted integer[];   -- the row's latitudes, ascending

-- The points already loaded: each row's arrays in order of longitude (ties in their loaded order).
UPDATE trip_area_points p
   SET (lon, lat, departed_at, other_lon, other_lat, lat_sorted) = (
       SELECT array_agg(u.lon ORDER BY u.lon, u.i), array_agg(u.lat ORDER BY u.lon, u.i),
              array_agg(u.departed_at ORDER BY u.lon, u.i),
              CASE WHEN p.other_lon IS NOT NULL THEN array_agg(u.other_lon ORDER BY u.lon, u.i) END,
              CASE WHEN p.other_lon IS NOT NULL THEN array_agg(u.other_lat ORDER BY u.lon, u.i) END,
              array_agg(u.lat ORDER BY u.lat)
         FROM unnest(p.lon, p.lat, p.departed_at, p.other_lon, p.other_lat) WITH ORDINALITY
              AS u(lon, lat, departed_at, other_lon, other_lat, i));
ALTER TABLE trip_area_points ALTER COLUMN lat_sorted SET NOT NULL;

CREATE OR REPLACE FUNCTION rebuild_area_counts() RETURNS void
LANGUAGE sql AS $$
    TRUNCATE trip_area_counts, trip_area_points;
    INSERT INTO trip_area_counts
    SELECT t.job_id, e.side, l.level,
           floor(e.lon::float8 / trip_area_cell_size(l.level)), floor(e.lat::float8 / trip_area_cell_size(l.level)),
           count(*)
      FROM trip_rows t
     CROSS JOIN LATERAL (VALUES (1::smallint, t.origin_lon, t.origin_lat),
                                (2::smallint, t.dest_lon, t.dest_lat)) AS e(side, lon, lat)
     CROSS JOIN (VALUES (1), (2), (3)) AS l(level)
     GROUP BY 1, 2, 3, 4, 5;
    INSERT INTO trip_area_points
    SELECT t.job_id, 1, floor(t.origin_lon::float8 / 10000), floor(t.origin_lat::float8 / 10000), count(*),
           array_agg(t.origin_lon ORDER BY t.origin_lon), array_agg(t.origin_lat ORDER BY t.origin_lon),
           array_agg(t.departed_at ORDER BY t.origin_lon),
           array_agg(t.dest_lon ORDER BY t.origin_lon), array_agg(t.dest_lat ORDER BY t.origin_lon),
           array_agg(t.origin_lat ORDER BY t.origin_lat)
      FROM trip_rows t
     GROUP BY 1, 2, 3, 4;
    INSERT INTO trip_area_points
    SELECT t.job_id, 2, floor(t.dest_lon::float8 / 10000), floor(t.dest_lat::float8 / 10000), count(*),
           array_agg(t.dest_lon ORDER BY t.dest_lon), array_agg(t.dest_lat ORDER BY t.dest_lon),
           array_agg(t.departed_at ORDER BY t.dest_lon), NULL, NULL,
           array_agg(t.dest_lat ORDER BY t.dest_lat)
      FROM trip_rows t
     GROUP BY 1, 2, 3, 4;
$$;

-- The smallest stored coordinate c (1e-7 degree) with c / 1e7 >= d, and the largest with c / 1e7 <= d.
-- c / 1e7::float8 never decreases as c grows, so "c / 1e7 >= d" is "c >= trip_coord_from(d)". The answer
-- is within one of d * 1e7 rounded; the two on either side are tried too.
CREATE FUNCTION trip_coord_from(d double precision) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT min(c)::integer FROM generate_series(ceil(d * 1e7)::bigint - 2, ceil(d * 1e7)::bigint + 2) AS c
     WHERE c / 1e7::float8 >= d
$$;

CREATE FUNCTION trip_coord_to(d double precision) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT max(c)::integer FROM generate_series(floor(d * 1e7)::bigint - 2, floor(d * 1e7)::bigint + 2) AS c
     WHERE c / 1e7::float8 <= d
$$;

-- The rows (or columns) of cells below cell c of the level above that lie between lo and hi.
CREATE FUNCTION trip_box_children(c integer, lo integer, hi integer) RETURNS integer[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY(SELECT generate_series(greatest(c * 10, lo), least(c * 10 + 9, hi)))
$$;

-- Trips with their `side` end in the box [x0, x1] x [y0, y1] (stored coordinates, edges included), over
-- all time. Like 010's trip_area_parts, level by level: cells wholly inside count with their totals, cells
-- cut by an edge are split into their children, reading only the children that meet the box. Then the
-- level-3 cells cut by an edge: cut in x only, count the longitudes between x0 and x1 by binary search
-- (width_bucket(v, sorted) is how many are <= v); cut in y only, the same on lat_sorted; a corner cell,
-- test its points.
CREATE FUNCTION trip_box_count(side smallint, x0 integer, y0 integer, x1 integer, y1 integer) RETURNS bigint
LANGUAGE plpgsql STABLE SET jit = off SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN (
    WITH l1 AS (
        SELECT c.cx, c.cy, sum(c.trips) AS trips,
               c.cx * 1000000::bigint >= x0 AND c.cx * 1000000::bigint + 999999 <= x1
           AND c.cy * 1000000::bigint >= y0 AND c.cy * 1000000::bigint + 999999 <= y1 AS inside
          FROM trip_area_counts c
         WHERE c.side = trip_box_count.side AND c.level = 1
           AND c.cx BETWEEN floor(x0 / 1e6::float8)::integer AND floor(x1 / 1e6::float8)::integer
           AND c.cy BETWEEN floor(y0 / 1e6::float8)::integer AND floor(y1 / 1e6::float8)::integer
         GROUP BY c.cx, c.cy
    ), l2 AS (
        SELECT c.cx, c.cy, sum(c.trips) AS trips,
               c.cx * 100000::bigint >= x0 AND c.cx * 100000::bigint + 99999 <= x1
           AND c.cy * 100000::bigint >= y0 AND c.cy * 100000::bigint + 99999 <= y1 AS inside
          FROM l1 p
          JOIN trip_area_counts c
            ON c.side = trip_box_count.side AND c.level = 2
           AND c.cy = ANY (trip_box_children(p.cy, floor(y0 / 1e5::float8)::integer, floor(y1 / 1e5::float8)::integer))
           AND c.cx BETWEEN greatest(p.cx * 10, floor(x0 / 1e5::float8)::integer)
                        AND least(p.cx * 10 + 9, floor(x1 / 1e5::float8)::integer)
         WHERE NOT p.inside
         GROUP BY c.cx, c.cy
    ), l3 AS (
        SELECT c.cx, c.cy, sum(c.trips) AS trips,
               c.cx * 10000::bigint < x0 OR c.cx * 10000::bigint + 9999 > x1 AS x_cut,
               c.cy * 10000::bigint < y0 OR c.cy * 10000::bigint + 9999 > y1 AS y_cut
          FROM l2 p
          JOIN trip_area_counts c
            ON c.side = trip_box_count.side AND c.level = 3
           AND c.cy = ANY (trip_box_children(p.cy, floor(y0 / 1e4::float8)::integer, floor(y1 / 1e4::float8)::integer))
           AND c.cx BETWEEN greatest(p.cx * 10, floor(x0 / 1e4::float8)::integer)
                        AND least(p.cx * 10 + 9, floor(x1 / 1e4::float8)::integer)
         WHERE NOT p.inside
         GROUP BY c.cx, c.cy
    )
    SELECT (SELECT coalesce(sum(trips), 0) FROM l1 WHERE inside)
         + (SELECT coalesce(sum(trips), 0) FROM l2 WHERE inside)
         + (SELECT coalesce(sum(trips), 0) FROM l3 WHERE NOT x_cut AND NOT y_cut)
         + (SELECT coalesce(sum(CASE
                       WHEN c.x_cut AND c.y_cut THEN (SELECT count(*) FROM unnest(r.lon, r.lat) AS u(lon, lat)
                                                       WHERE u.lon BETWEEN x0 AND x1 AND u.lat BETWEEN y0 AND y1)
                       WHEN c.x_cut THEN width_bucket(x1, r.lon) - width_bucket(x0 - 1, r.lon)
                       ELSE width_bucket(y1, r.lat_sorted) - width_bucket(y0 - 1, r.lat_sorted)
                   END), 0)
              FROM l3 c
              JOIN trip_area_points r ON r.side = trip_box_count.side AND r.cy = c.cy AND r.cx = c.cx
             WHERE c.x_cut OR c.y_cut));
END
$$;

-- 010's count over all time takes this path for a box (`box` not NULL); other areas keep theirs.
CREATE OR REPLACE FUNCTION trip_area_count(area geometry, box box2d, side smallint) RETURNS bigint
LANGUAGE plpgsql STABLE SET jit = off SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    IF box IS NOT NULL THEN
        RETURN trip_box_count(side, trip_coord_from(ST_XMin(box)), trip_coord_from(ST_YMin(box)),
                              trip_coord_to(ST_XMax(box)), trip_coord_to(ST_YMax(box)));
    END IF;
    RETURN (
        SELECT coalesce(sum(CASE WHEN r.inside THEN r.trips ELSE (
                   SELECT count(*) FROM unnest(r.lon, r.lat) AS u(lon, lat)
                    WHERE trip_area_holds(area, box, u.lon, u.lat))
               END), 0)::bigint
          FROM trip_area_parts(area, box, side, true) AS r);
END
$$;
