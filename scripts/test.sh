#!/usr/bin/env bash
# The whole test suite against a throwaway PostGIS cluster: install PostgreSQL 15 + PostGIS 3 if missing,
# start a fresh cluster on port 54330, run `cargo test`, then stop and delete the cluster.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
PORT=54330

ensure_postgis
# tests/containers.rs parses docker-compose.yml with PyYAML.
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet pyyaml
remove_cluster pg-test
trap 'remove_cluster pg-test' EXIT
# Throwaway data: durability is not needed, speed is.
start_cluster pg-test "$PORT" postgres "fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = '256MB'"
# Every test database is a copy of this template, which has PostGIS already (CREATE EXTENSION takes ~1 s).
psql_at "$PORT" postgres -c "CREATE DATABASE trips_template" -c "ALTER DATABASE trips_template IS_TEMPLATE true"
psql_at "$PORT" trips_template -c "CREATE EXTENSION postgis"
# pg_cron lives in `postgres`; tests schedule jobs in their own databases with cron.schedule_in_database.
psql_at "$PORT" postgres -c "CREATE EXTENSION pg_cron"

cd "$REPO"
export TRIPS_TEST_ADMIN_URL="postgresql://trips@127.0.0.1:$PORT/postgres"
cargo test --quiet "$@"
