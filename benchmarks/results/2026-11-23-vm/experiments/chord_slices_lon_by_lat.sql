-- Experiment (not a migration): as chord_slices.sql, with the rows' longitudes also kept in order of
-- latitude (lon_by_lat, paired with lat_sorted), so that a latitude span is a slice too. Adds and fills that
-- column inside the session's transaction (about 20 s at 10M trips), which is never committed.
BEGIN;
ALTER TABLE trip_area_points ADD COLUMN lon_by_lat integer[];
UPDATE trip_area_points p
   SET lon_by_lat = (SELECT array_agg(u.lon ORDER BY u.lat, u.lon) FROM unnest(p.lon, p.lat) AS u(lon, lat));
-- The stored coordinates (1e-7 degree) of level-3 cell (cx, cy) between which its one edge may pass: the
-- edge's line meets the cell's rows of latitude between x_lo and x_hi, and its columns of longitude between
-- y_lo and y_hi (widened by 1e-9 degree each way, clamped to just outside the cell).
CREATE OR REPLACE FUNCTION trip_area_cell_chord(cx integer, cy integer, x0 float8, y0 float8, dx float8, dy float8)
RETURNS TABLE (x_lo integer, x_hi integer, y_lo integer, y_hi integer)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT floor((least(xa, xb) - 1e-9) * 1e7)::integer, ceil((greatest(xa, xb) + 1e-9) * 1e7)::integer,
           floor((least(ya, yb) - 1e-9) * 1e7)::integer, ceil((greatest(ya, yb) + 1e-9) * 1e7)::integer
      FROM (SELECT cx::bigint * 10000 / 1e7::float8 AS cx0, (cx + 1)::bigint * 10000 / 1e7::float8 AS cx1,
                   cy::bigint * 10000 / 1e7::float8 AS cy0, (cy + 1)::bigint * 10000 / 1e7::float8 AS cy1) AS c
     CROSS JOIN LATERAL (
        SELECT CASE WHEN dy = 0 THEN c.cx0 - 1e-3 ELSE least(greatest(x0 + dx * (c.cy0 - y0) / dy, c.cx0 - 1e-3), c.cx1 + 1e-3) END,
               CASE WHEN dy = 0 THEN c.cx1 + 1e-3 ELSE least(greatest(x0 + dx * (c.cy1 - y0) / dy, c.cx0 - 1e-3), c.cx1 + 1e-3) END,
               CASE WHEN dx = 0 THEN c.cy0 - 1e-3 ELSE least(greatest(y0 + dy * (c.cx0 - x0) / dx, c.cy0 - 1e-3), c.cy1 + 1e-3) END,
               CASE WHEN dx = 0 THEN c.cy1 + 1e-3 ELSE least(greatest(y0 + dy * (c.cx1 - x0) / dx, c.cy0 - 1e-3), c.cy1 + 1e-3) END
     ) AS l(xa, xb, ya, yb)
$$;

CREATE OR REPLACE FUNCTION trip_area_count2(area geometry, box box2d, side smallint) RETURNS bigint
LANGUAGE plpgsql STABLE SET jit = off SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    IF box IS NOT NULL THEN
        RETURN trip_box_count(side, trip_coord_from(ST_XMin(box)), trip_coord_from(ST_YMin(box)),
                              trip_coord_to(ST_XMax(box)), trip_coord_to(ST_YMax(box)));
    END IF;
    RETURN (
    WITH cell AS MATERIALIZED (
        SELECT * FROM trip_area_cells(area, box, side, true)
    ), edge AS MATERIALIZED (   -- each cut cell once, with its edge if only one comes near it
        SELECT c.cx, c.cy, e.*
          FROM cell c
          LEFT JOIN LATERAL trip_area_cell_edge(area, c.cx, c.cy) AS e ON true
         WHERE NOT c.inside
    ), cut AS MATERIALIZED (   -- and the longitudes and latitudes between which that edge may pass
        SELECT e.*, h.*, e.inside_sign IS NULL OR h.x_hi - h.x_lo <= h.y_hi - h.y_lo AS by_lon
          FROM edge e
          LEFT JOIN LATERAL trip_area_cell_chord(e.cx, e.cy, e.x0, e.y0, e.dx, e.dy) AS h ON true
    ), part AS MATERIALIZED (
        SELECT c.*, r.trips, CASE WHEN c.by_lon THEN r.lon || '{}'::integer[] END AS lon, CASE WHEN c.by_lon THEN r.lat || '{}'::integer[] END AS lat,
               CASE WHEN NOT c.by_lon THEN r.lat_sorted || '{}'::integer[] END AS lat_sorted,
               CASE WHEN NOT c.by_lon THEN r.lon_by_lat || '{}'::integer[] END AS lon_by_lat
          FROM cut c
          JOIN trip_area_points r ON r.side = trip_area_count2.side AND r.cy = c.cy AND r.cx = c.cx
    ), slice AS MATERIALIZED (   -- per row: the points known by their side, and the slice of the rest
        SELECT p.*,
               CASE WHEN p.inside_sign IS NULL THEN 0
                    WHEN p.by_lon THEN CASE WHEN sign(p.dy) = p.inside_sign THEN b.n_lo ELSE 0 END
                                     + CASE WHEN -sign(p.dy) = p.inside_sign THEN p.trips - b.n_hi ELSE 0 END
                    ELSE CASE WHEN -sign(p.dx) = p.inside_sign THEN b.n_lo ELSE 0 END
                       + CASE WHEN sign(p.dx) = p.inside_sign THEN p.trips - b.n_hi ELSE 0 END
               END AS known,
               b.n_lo + 1 AS i0, b.n_hi AS i1
          FROM part p
         CROSS JOIN LATERAL (
                SELECT CASE WHEN p.inside_sign IS NULL THEN 0
                            WHEN p.by_lon THEN width_bucket(p.x_lo - 1, p.lon)
                            ELSE width_bucket(p.y_lo - 1, p.lat_sorted) END,
                       CASE WHEN p.inside_sign IS NULL THEN p.trips
                            WHEN p.by_lon THEN width_bucket(p.x_hi, p.lon)
                            ELSE width_bucket(p.y_hi, p.lat_sorted) END) AS b(n_lo, n_hi)
    )
    SELECT (SELECT coalesce(sum(trips), 0) FROM cell WHERE inside)
         + (SELECT coalesce(sum(known), 0) FROM slice)
         + (SELECT count(*)
              FROM (SELECT p.x0, p.y0, p.dx, p.dy, p.margin, p.inside_sign, p.by_lon, p.y_lo, p.y_hi,
                           unnest(CASE WHEN p.by_lon THEN p.lon[p.i0:p.i1] ELSE p.lon_by_lat[p.i0:p.i1] END) AS lon,
                           unnest(CASE WHEN p.by_lon THEN p.lat[p.i0:p.i1] ELSE p.lat_sorted[p.i0:p.i1] END) AS lat
                      FROM slice p) AS u
             CROSS JOIN LATERAL (SELECT u.dx * (u.lat / 1e7::float8 - u.y0) - u.dy * (u.lon / 1e7::float8 - u.x0))
                                AS v(side)
             WHERE CASE WHEN u.inside_sign IS NULL OR abs(v.side) <= u.margin
                        THEN trip_area_holds(area, box, u.lon, u.lat)
                        ELSE sign(v.side) = u.inside_sign
                   END));
END
$$;
