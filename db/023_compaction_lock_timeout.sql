-- 023: a compaction gives up rather than hold queries back.
--
-- db/022's swap detaches the job's old partition, which needs trip_area_points to itself (ACCESS
-- EXCLUSIVE): it waits for every query running on the table, and every query that starts meanwhile waits
-- behind it. A long query (weekly_counts of a large area, a plain-SQL count) would so stall every reader.
-- With lock_timeout, a compaction that cannot have its locks within 5 s fails instead: its transaction
-- rolls back, nothing changes, the queued queries go on, and `trips compact` tries again later. The same
-- applies to a second compaction of a job that is being compacted.
ALTER FUNCTION compact_area_points(integer) SET lock_timeout = '5s';
