# Shared by the benchmarks (source it): the local cluster of scripts/run.sh, the release binary, a scratch
# folder, and helpers to time steps and reset databases.

source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
PORT=54329
TRIPS=$REPO/target/release/trips

# bench_start [extra cargo build args]: cluster up, in the repository, trips built, $WORK created
# (removed by bench_cleanup), $COMMIT set to the commit being measured (taken before any result is
# written, so a run's own result files do not count as uncommitted changes).
bench_start() {
    COMMIT="$(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet || echo ' (with uncommitted changes)')"
    ensure_postgis
    # The loader's peak memory and CPU time are measured with GNU time.
    if [ ! -x /usr/bin/time ]; then
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends time >&2
    fi
    start_cluster pg "$PORT" trips
    # pg_cron's launcher wants the database it is configured for (scripts/run.sh makes it too); without it,
    # it is restarted every second, a process and a log line each time, during every measurement.
    psql_at "$PORT" postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'trips'" | grep -q 1 ||
        psql_at "$PORT" postgres -c "CREATE DATABASE trips" >/dev/null
    cd "$REPO"
    cargo build --release --quiet --bin trips "$@"
    WORK=$(mktemp -d /tmp/trips-bench.XXXXXX)
    chmod 777 "$WORK" # the server writes and reads files there too
}
bench_cleanup() { rm -rf "$WORK"; }

# results_dir NAME: sets $OUT to benchmarks/results/<date>-<host>/NAME and creates it.
results_dir() {
    OUT=$REPO/benchmarks/results/$(date -u +%Y-%m-%d)-$(hostname -s)/$1
    mkdir -p "$OUT"
}

# bench_args DEFAULT_ROWS "$@": sets ROWS (the first plain argument), REPEAT (--repeat, default 3) and
# BASE (--base, for scripts that compare with an earlier commit).
bench_args() {
    ROWS=$1 REPEAT=3 BASE=${BASE:-}
    shift
    while [ $# -gt 0 ]; do
        case $1 in
            --repeat) REPEAT=$2; shift 2 ;;
            --base) BASE=$2; shift 2 ;;
            *) ROWS=$1; shift ;;
        esac
    done
}

db_url() { echo "postgresql://trips@127.0.0.1:$PORT/$1"; }

# fresh_db NAME [BINARY]: an empty database with PostGIS and the schema of BINARY (default: this trips).
fresh_db() {
    psql_at "$PORT" postgres -c "SET client_min_messages = warning" \
        -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"
    psql_at "$PORT" "$1" -c "CREATE EXTENSION postgis"
    DATABASE_URL=$(db_url "$1") "${2:-$TRIPS}" migrate 2>/dev/null
}

# ogr2ogr_load DB CSV: GDAL's ogr2ogr from a trips CSV into table ogr_trips (a baseline of run.sh).
ogr2ogr_load() {
    ogr2ogr -f PostgreSQL "PG:host=127.0.0.1 port=$PORT user=trips dbname=$1" "$2" \
        -nln ogr_trips -oo GEOM_POSSIBLE_NAMES=origin_coord,destination_coord -oo KEEP_GEOM_COLUMNS=NO \
        -a_srs EPSG:4326 --config PG_USE_COPY YES -gt 65536
}

# settle: start a timed step from a quiet server: no autovacuum worker running (the clean-up after the step
# before it, which may belong to the other side of a comparison), and no dirty pages left to write (a
# checkpoint, then the kernel's own cache flushed), so each step pays for its own writes only.
settle() {
    while [ "$(psql_at "$PORT" postgres -tAc \
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")" != 0 ]; do
        sleep 1
    done
    psql_at "$PORT" postgres -c CHECKPOINT
    sync
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# write_environment DB COMMAND...: $OUT/environment.txt, what a run was and where it ran.
write_environment() {
    local db=$1
    shift
    {
        echo "command: $*"
        echo "commit: $COMMIT"
        echo "date: $(date -u +%FT%TZ)"
        echo "server: $(psql_at "$PORT" "$db" -tAc 'SELECT version()')"
        echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) x $(nproc)"
    } >"$OUT/environment.txt"
}
