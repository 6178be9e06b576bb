-- For comparing db/025 with what it replaced, on a database at db/025 or later: creates, for this session
-- only, db/024's trip_area_count (every point of a cut cell listed) as trip_area_count_db024.
BEGIN;
CREATE FUNCTION trip_area_count_db024(area geometry, box box2d, side smallint) RETURNS bigint
LANGUAGE plpgsql STABLE SET jit = off SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    IF box IS NOT NULL THEN
        RETURN trip_box_count(side, trip_coord_from(ST_XMin(box)), trip_coord_from(ST_YMin(box)),
                              trip_coord_to(ST_XMax(box)), trip_coord_to(ST_YMax(box)));
    END IF;
    IF ST_GeometryType(area) IN ('ST_Polygon', 'ST_MultiPolygon') THEN
        RETURN (
        WITH cell AS MATERIALIZED (
            SELECT * FROM trip_area_polygon_cells(area, side)
        )
        SELECT (SELECT coalesce(sum(trips), 0) FROM cell WHERE inside)
             + (SELECT count(*)
                  FROM (SELECT c.x0, c.y0, c.dx, c.dy, c.margin, unnest(r.lon) AS lon, unnest(r.lat) AS lat
                          FROM cell c
                          JOIN trip_area_points r ON r.side = trip_area_count_db024.side AND r.cy = c.cy AND r.cx = c.cx
                         WHERE NOT c.inside) AS u
                 CROSS JOIN LATERAL (SELECT u.dx * (u.lat / 1e7::float8 - u.y0) - u.dy * (u.lon / 1e7::float8 - u.x0))
                                    AS v(side)
                 WHERE CASE WHEN u.dx IS NULL OR abs(v.side) <= u.margin
                            THEN trip_area_holds(area, box, u.lon, u.lat)
                            ELSE v.side > 0
                       END));
    END IF;
    RETURN (
    WITH cell AS MATERIALIZED (
        SELECT * FROM trip_area_cells(area, box, side, true)
    ), cut AS MATERIALIZED (   -- each cut cell once, with its edge if only one comes near it
        SELECT c.cx, c.cy, e.*
          FROM cell c
          LEFT JOIN LATERAL trip_area_cell_edge(area, c.cx, c.cy) AS e ON true
         WHERE NOT c.inside
    )
    SELECT (SELECT coalesce(sum(trips), 0) FROM cell WHERE inside)
         + (SELECT count(*)
              FROM (SELECT c.x0, c.y0, c.dx, c.dy, c.margin, c.inside_sign,
                           unnest(r.lon) AS lon, unnest(r.lat) AS lat
                      FROM cut c
                      JOIN trip_area_points r ON r.side = trip_area_count_db024.side AND r.cy = c.cy AND r.cx = c.cx) AS u
             CROSS JOIN LATERAL (SELECT u.dx * (u.lat / 1e7::float8 - u.y0) - u.dy * (u.lon / 1e7::float8 - u.x0))
                                AS v(side)
             WHERE CASE WHEN u.inside_sign IS NULL OR abs(v.side) <= u.margin
                        THEN trip_area_holds(area, box, u.lon, u.lat)
                        ELSE sign(v.side) = u.inside_sign
                   END));
END
$$;
