-- 032: trip_days_between (028) has had no caller since 029 made a window one period of
-- trip_area_counts_between, which finds each bound's trips in the days itself. Dropped, so that every
-- function in db/ is one that runs (db/README.md lists them).
DROP FUNCTION trip_days_between(integer[], integer[], integer, integer);
