#!/usr/bin/env bash
# The whole test suite against a throwaway PostGIS cluster: install PostgreSQL 15 + PostGIS 3 if missing,
# start a fresh cluster on port 54330 (and a small one on 54332 that tests/hostile.rs restarts under a running
# loader), run `cargo test`, then stop and delete both.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
PORT=54330

ensure_postgis
# tests/containers.rs parses docker-compose.yml with PyYAML.
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet pyyaml
# tests/cli.rs checks that the completion scripts parse in each shell.
if ! command -v zsh >/dev/null || ! command -v fish >/dev/null; then
    log "installing zsh and fish (apt-get), for the completion scripts' test"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends zsh fish >&2
fi
remove_cluster pg-test
remove_cluster pg-restart
TLS_DIR=$(cluster_dir pg-test)-tls
trap 'remove_cluster pg-test; remove_cluster pg-restart; rm -rf "$TLS_DIR" "$TLS_DIR.log"' EXIT

# TLS for tests/security.rs: an authority, the server's certificate signed by it for the name localhost only
# (so verify-full to 127.0.0.1 must fail), and a second authority that signed nothing.
rm -rf "$TLS_DIR" && mkdir -p "$TLS_DIR" && (
    cd "$TLS_DIR"
    key="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    openssl req -x509 $key -days 3 -subj "/CN=trips test authority" -keyout ca.key -out ca.crt
    openssl req -x509 $key -days 3 -subj "/CN=another authority" -keyout other-ca.key -out other-ca.crt
    openssl req $key -subj "/CN=localhost" -keyout server.key -out server.csr
    printf 'subjectAltName = DNS:localhost\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3 \
        -extfile server.ext -out server.crt
    chmod 600 server.key
) >"$TLS_DIR.log" 2>&1 || { log "making the test certificates failed:"; cat "$TLS_DIR.log" >&2; exit 1; }
[ "$(id -u)" = 0 ] && chown -R postgres: "$TLS_DIR"

# Throwaway data: durability is not needed, speed is.
start_cluster pg-test "$PORT" postgres "fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = '256MB'
ssl = on
ssl_cert_file = '$TLS_DIR/server.crt'
ssl_key_file = '$TLS_DIR/server.key'"
# One login that must give a password (tests/security.rs checks PGPASSWORD and the password file with it).
hba=$(cluster_dir pg-test)/pg_hba.conf
printf 'host all trips_pw_test 127.0.0.1/32 scram-sha-256\n%s\n' "$(cat "$hba")" >"$hba"
psql_at "$PORT" postgres -c "SELECT pg_reload_conf()" >/dev/null
# Every test database is a copy of this template, which has PostGIS already (CREATE EXTENSION takes ~1 s).
psql_at "$PORT" postgres -c "CREATE DATABASE trips_template" -c "ALTER DATABASE trips_template IS_TEMPLATE true"
psql_at "$PORT" trips_template -c "CREATE EXTENSION postgis"
# pg_cron lives in `postgres`; tests schedule jobs in their own databases with cron.schedule_in_database.
psql_at "$PORT" postgres -c "CREATE EXTENSION pg_cron"

# The cluster that tests/hostile.rs restarts: it runs the command in TRIPS_TEST_RESTART.
start_cluster pg-restart 54332 postgres "fsync = off
shared_buffers = '64MB'"
psql_at 54332 postgres -c "CREATE DATABASE trips" >/dev/null
psql_at 54332 trips -c "CREATE EXTENSION postgis" >/dev/null
export TRIPS_TEST_RESTART_URL="postgresql://trips@127.0.0.1:54332/trips"
export TRIPS_TEST_RESTART="source '$REPO/scripts/lib.sh' && restart_cluster pg-restart"

cd "$REPO"
export TRIPS_TEST_ADMIN_URL="postgresql://trips@127.0.0.1:$PORT/postgres"
export TRIPS_TEST_TLS_DIR=$TLS_DIR
cargo test --quiet "$@"
