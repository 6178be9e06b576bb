-- How many points a box by both reads in its band, by the layout: per 0.001-degree cell (026) or per pair
-- of 0.01-degree cells (pair_points.sql). Counts over trip_rows directly, for one box:
--   psql "host=localhost port=54329 user=trips dbname=trips_bench" -X \
--        -v minx=... -v miny=... -v maxx=... -v maxy=... -f pair_points_band.sql
-- cover: the 0.01-degree cells that meet the box; I: those wholly inside; ring: cover minus I.
--   o_ring_points, d_ring_points   trips with their origin (destination) in the ring: 026's band reads those
--                                  of them in its 0.001-degree cells that meet the box, so at most these
--   o_ring_dcov_points             ... of them with the other end in the cover: what the pairs' band holds
--   oin_d_ring_points              trips from I to the ring: the rest of the pairs' band
--   both_ring_points               trips with both ends in the ring: pair_points.sql tests these one by one
--                                  (and those of pairs with an end in a corner cell)
--   band_pair_rows, both_ring_pair_rows, inner_pair_rows   rows of exp.pp read for each
WITH b AS (SELECT ceil(:minx*1e7)::int x0, ceil(:miny*1e7)::int y0, floor(:maxx*1e7)::int x1, floor(:maxy*1e7)::int y1),
k AS (SELECT b.*, ceil(x0/1e5)::int ix0, floor((x1+1::bigint)/1e5)::int-1 ix1, ceil(y0/1e5)::int iy0, floor((y1+1::bigint)/1e5)::int-1 iy1,
             floor(x0/1e5)::int cx0, floor(x1/1e5)::int cx1, floor(y0/1e5)::int cy0, floor(y1/1e5)::int cy1 FROM b),
t AS (SELECT floor(origin_lon/1e5)::int ocx, floor(origin_lat/1e5)::int ocy, floor(dest_lon/1e5)::int dcx, floor(dest_lat/1e5)::int dcy,
             origin_lon, origin_lat, dest_lon, dest_lat FROM trip_rows, k
       WHERE (origin_lon BETWEEN cx0*100000 AND cx1*100000+99999 AND origin_lat BETWEEN cy0*100000 AND cy1*100000+99999)
          OR (dest_lon BETWEEN cx0*100000 AND cx1*100000+99999 AND dest_lat BETWEEN cy0*100000 AND cy1*100000+99999)),
c AS (SELECT t.*, (ocx BETWEEN cx0 AND cx1 AND ocy BETWEEN cy0 AND cy1) ocov, (ocx BETWEEN ix0 AND ix1 AND ocy BETWEEN iy0 AND iy1) oin,
             (dcx BETWEEN cx0 AND cx1 AND dcy BETWEEN cy0 AND cy1) dcov, (dcx BETWEEN ix0 AND ix1 AND dcy BETWEEN iy0 AND iy1) din,
             origin_lon BETWEEN x0 AND x1 AND origin_lat BETWEEN y0 AND y1 AND dest_lon BETWEEN x0 AND x1 AND dest_lat BETWEEN y0 AND y1 AS answer
        FROM t, k)
SELECT count(*) FILTER (WHERE answer) answer,
       count(*) FILTER (WHERE ocov AND NOT oin) o_ring_points,
       count(*) FILTER (WHERE dcov AND NOT din) d_ring_points,
       count(*) FILTER (WHERE ocov AND NOT oin AND dcov) o_ring_dcov_points,
       count(*) FILTER (WHERE oin AND dcov AND NOT din) oin_d_ring_points,
       count(*) FILTER (WHERE ocov AND NOT oin AND dcov AND NOT din) both_ring_points,
       count(DISTINCT (ocx,ocy,dcx,dcy)) FILTER (WHERE (ocov AND NOT oin AND dcov) OR (oin AND dcov AND NOT din)) band_pair_rows,
       count(DISTINCT (ocx,ocy,dcx,dcy)) FILTER (WHERE (ocov AND NOT oin AND dcov AND NOT din)) both_ring_pair_rows,
       count(DISTINCT (ocx,ocy,dcx,dcy)) FILTER (WHERE oin AND din) inner_pair_rows
  FROM c;
