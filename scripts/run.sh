#!/usr/bin/env bash
# The main job on the bundled sample: install PostgreSQL 15 + PostGIS 3 if missing, start the local cluster
# (port 54329), build trips, load data/trips.csv and show what is in the database. Safe to re-run: the
# sample is then recognised by its content hash and skipped. Schedules the refresh of trip_groups with
# pg_cron, and ends with the largest groups and the answers of queries.sql.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
PORT=54329

ensure_postgis
start_cluster pg "$PORT" trips
psql_at "$PORT" postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'trips'" | grep -q 1 ||
    psql_at "$PORT" postgres -c "CREATE DATABASE trips"

cd "$REPO"
log "building trips (release)"
cargo build --release --quiet
export DATABASE_URL="postgresql://trips@127.0.0.1:$PORT/trips"
./target/release/trips ingest data/trips.csv
# The refresh of trip_groups and the merges, scheduled with pg_cron (the same file as the container's).
psql_at "$PORT" trips -f "$REPO/scripts/schedule.sql" >/dev/null

psql_at "$PORT" trips <<'SQL'
\echo
\echo 'Trips by region and datasource:'
SELECT region, datasource, count(*) AS trips, min(departed_at) AS first, max(departed_at) AS last
  FROM trips GROUP BY ROLLUP (region, datasource) ORDER BY region NULLS LAST, datasource NULLS LAST;
\echo 'Ingest jobs:'
SELECT id, file, state, rows, rejected, duplicate_of, finished_at - started_at AS took FROM ingest_jobs ORDER BY id;
SQL
echo
./target/release/trips groups --top 5
echo
echo "Weekly averages (trips starting in the region, per week, over the weeks of the data):"
psql_at "$PORT" trips -c "SELECT name AS region, weekly_avg_region(name) AS trips_per_week FROM regions ORDER BY name"
./target/release/trips weekly-avg --bbox 7.6,45.0,7.75,45.15 --by either
echo
echo "queries.sql:"
psql_at "$PORT" trips -f "$REPO/queries.sql"
log "the cluster keeps running; connect with: psql -h 127.0.0.1 -p $PORT -U trips trips"
