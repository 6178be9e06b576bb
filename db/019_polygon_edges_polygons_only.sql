-- 019: a cell's one edge is used only when the area is a polygon or a multipolygon.
--
-- 018 took any segment of the area for an edge with the area on one side of it. A geometry collection
-- passes trip_area_checked too (its dimension is 2), but its segments need not be edges of that kind: a
-- line in the collection has the area on neither side, and polygons of a collection may overlap, so one of
-- them can have the area on both sides of an edge. A cell crossed by such a segment counted the points on
-- one side of it as in the area. Collections now take the point-by-point path everywhere, as before 018.

-- The one edge of the area that comes within 1e-9 degree of level-3 cell (cx, cy), as a line, or nothing
-- when none or several do: a point (x, y) in degrees is in the area when dx * (y - y0) - dy * (x - x0) has
-- the sign `inside_sign`; it must be tested when the absolute value is at most `margin`: 1e-9 degree times
-- the edge's length, and never less than 1e-11, ten times the tolerance PostGIS's own point-in-polygon test
-- gives a point on an edge. The corner of the cell farthest from the line tells which side is in the area.
CREATE OR REPLACE FUNCTION trip_area_cell_edge(area geometry, cx integer, cy integer)
RETURNS TABLE (x0 float8, y0 float8, dx float8, dy float8, margin float8, inside_sign float8)
LANGUAGE sql STABLE AS $$
    SELECT e.x0, e.y0, e.dx, e.dy, greatest(1e-9 * sqrt(e.dx * e.dx + e.dy * e.dy), 1e-11),
           (SELECT sign(k.side) * CASE WHEN ST_Intersects(area, ST_Point(k.x, k.y, 4326)) THEN 1 ELSE -1 END
              FROM (VALUES (0, 0), (1, 0), (0, 1), (1, 1)) AS c(i, j)
             CROSS JOIN LATERAL (SELECT (cx + c.i)::bigint * 10000 / 1e7::float8,
                                        (cy + c.j)::bigint * 10000 / 1e7::float8) AS p(x, y)
             CROSS JOIN LATERAL (SELECT p.x, p.y, e.dx * (p.y - e.y0) - e.dy * (p.x - e.x0)) AS k(x, y, side)
             ORDER BY abs(k.side) DESC
             LIMIT 1)
      FROM (SELECT ST_X(ST_StartPoint(s.edge)) AS x0, ST_Y(ST_StartPoint(s.edge)) AS y0,
                   ST_X(ST_EndPoint(s.edge)) - ST_X(ST_StartPoint(s.edge)) AS dx,
                   ST_Y(ST_EndPoint(s.edge)) - ST_Y(ST_StartPoint(s.edge)) AS dy
              FROM (SELECT (array_agg(d.geom))[1] AS edge
                      FROM ST_DumpSegments(area) AS d
                     WHERE ST_Intersects(d.geom, ST_Expand(trip_area_cell(3, cx, cy), 1e-9))
                       AND ST_GeometryType(area) IN ('ST_Polygon', 'ST_MultiPolygon')
                    HAVING count(*) = 1) AS s) AS e
$$;
