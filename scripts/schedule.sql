-- The schedules of a trips database, with pg_cron (run in the database that cron.database_name names):
-- refresh the trip_groups snapshot every 10 minutes, and run the merges that are due every 5 (for loads
-- made with --no-compact or whose merge was interrupted). pg_cron replaces a job of the same name, so this
-- file can run again. Used by scripts/run.sh and by the database image of docker-compose.yml.
CREATE EXTENSION IF NOT EXISTS pg_cron;
SELECT cron.schedule('trips-refresh-groups', '*/10 * * * *', 'SELECT refresh_trip_groups()');
SELECT cron.schedule('trips-merge', '*/5 * * * *', 'CALL trips_merge()');
