# Shared by run.sh, test.sh and the benchmarks: install PostgreSQL 15 + PostGIS 3 when missing, and run a
# project-local cluster (data inside .local/, its own port, reachable on 127.0.0.1 only, user `trips`,
# trust authentication: a development and test cluster, not a production set-up).
# Source it; it defines functions only.

PG_VERSION=15
PG_BIN=/usr/lib/postgresql/$PG_VERSION/bin
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf '%s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs the server, PostGIS and pg_cron from Debian's packages if any is missing, and what building
# trips needs (OpenSSL's headers).
ensure_postgis() {
    local packages=()
    [ -x "$PG_BIN/postgres" ] || packages+=("postgresql-$PG_VERSION" "postgresql-client-$PG_VERSION")
    [ -f "/usr/share/postgresql/$PG_VERSION/extension/postgis.control" ] || packages+=("postgresql-$PG_VERSION-postgis-3")
    [ -f "/usr/share/postgresql/$PG_VERSION/extension/pg_cron.control" ] || packages+=("postgresql-$PG_VERSION-cron")
    # Building trips (TLS through OpenSSL) and making the tests' certificates.
    [ -f /usr/include/openssl/ssl.h ] || packages+=(libssl-dev)
    command -v pkg-config >/dev/null || packages+=(pkg-config)
    command -v openssl >/dev/null || packages+=(openssl)
    if [ ${#packages[@]} -gt 0 ]; then
        log "installing ${packages[*]} (apt-get)"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >&2
    fi
}

# The server refuses to run as root: when we are root it runs as the `postgres` user, which must be able to
# reach the data folder. If it cannot enter the repository (a clone under /root, say), the data goes under
# /tmp instead.
cluster_dir() {
    local name=$1
    local dir="$REPO/.local/$name"
    if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$REPO"; then
        dir="/tmp/trips-$(printf '%s' "$REPO" | md5sum | cut -c1-8)/$name"
    fi
    printf '%s\n' "$dir"
}

# Runs from / so that the server's user need not be able to enter the current folder.
as_server_user() {
    if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# start_cluster NAME PORT CRON_DB [extra postgresql.conf lines]: initialise (once) and start the cluster.
# pg_cron runs its jobs from CRON_DB (cron.schedule_in_database reaches the others).
start_cluster() {
    local name=$1 port=$2 cron_db=$3 extra=${4:-} dir
    dir=$(cluster_dir "$name")
    if [ ! -f "$dir/PG_VERSION" ]; then
        log "creating the $name cluster in $dir (port $port)"
        mkdir -p "$dir"
        [ "$(id -u)" = 0 ] && chown postgres: "$dir" "$(dirname "$dir")"
        as_server_user "$PG_BIN/initdb" -D "$dir" -U trips --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
        cat >>"$dir/postgresql.conf" <<CONF
# trips: project-local cluster, tuned for bulk loads (see docs/operations.md, "The local cluster")
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = ''
shared_buffers = '1GB'
maintenance_work_mem = '1GB'
work_mem = '64MB'
max_wal_size = '8GB'
checkpoint_timeout = '30min'
wal_level = minimal          # a table created and COPYed in one transaction then skips the WAL
max_wal_senders = 0
max_connections = 100
# pg_cron: the scheduled refresh of trip_groups (docs/operations.md). postgis-3: loaded once by the postmaster, not by
# each new session on its first PostGIS call (~15 ms here, measured by the pre-release benchmarks/session_start.sh, in git history).
shared_preload_libraries = 'pg_cron,postgis-3'
cron.database_name = '$cron_db'
cron.use_background_workers = on
max_worker_processes = 16
$extra
CONF
    fi
    if ! as_server_user "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
        as_server_user "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null ||
            { log "the $name cluster did not start; its log:"; tail -20 "$dir/server.log" >&2; return 1; }
    fi
}

stop_cluster() {
    local dir
    dir=$(cluster_dir "$1")
    [ -f "$dir/PG_VERSION" ] && as_server_user "$PG_BIN/pg_ctl" -D "$dir" -m fast -w stop >/dev/null 2>&1
    return 0
}

# Restarts a running cluster (a fast shutdown: the server ends every session, as in a real restart).
restart_cluster() {
    local dir
    dir=$(cluster_dir "$1")
    as_server_user "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -m fast -w -t 60 restart >/dev/null
}

remove_cluster() {
    stop_cluster "$1"
    rm -rf "$(cluster_dir "$1")"
}

# psql_at PORT DB ARGS...: psql as the cluster's superuser, stopping at the first error.
psql_at() {
    local port=$1 db=$2
    shift 2
    psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U trips -d "$db" "$@"
}
