-- 011: fill the area pyramid (009) from the trips already loaded when it was added. Trips loaded before
-- 009 have no cells, so weekly_avg would miss them; on a new database this is a no-op.
SELECT rebuild_area_counts();
