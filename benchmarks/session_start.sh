#!/usr/bin/env bash
# What a new session pays for its first question, with and without PostGIS in shared_preload_libraries.
#
# A server process loads postgis-3.so (and GEOS, PROJ and the rest) the first time its session calls a
# PostGIS function, unless the postmaster loaded it at start and the process inherited it. Every psql -c,
# every `trips weekly-avg` and every new pooled connection is a new process.
#
# Each round restarts the cluster without, then with, the library preloaded (ALTER SYSTEM; RESET at the end),
# asks one warm-up session, then SESSIONS new sessions each:
#   select1       SELECT 1 (the connection is made; nothing of PostGIS used yet)
#   box_first     weekly_avg of a 2 km box in Hamburg, the session's first PostGIS call
#   box_again     the same, again
#   polygon_first weekly_avg of a 7-vertex polygon over Turin (the polygon path's first plans)
#   polygon_again the same, again
# timed by psql (\timing: server round trip), and `trips weekly-avg` on the same box, timed as a whole
# command (process start, connection, schema check, question); with --base REV, REV's `trips weekly-avg`
# too, right after it (cli_base).
#
# Usage: benchmarks/session_start.sh [SESSIONS] [--rounds R] [--base REV]   (default 20, 2; needs
#        trips_bench, as left by benchmarks/weekly_avg.sh)
# Output: a summary on stdout, raw numbers in benchmarks/results/<date>-<host>/session_start/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
SESSIONS=20 ROUNDS=2 BASE=
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) ROUNDS=$2; shift 2 ;;
        --base) BASE=$2; shift 2 ;;
        *) SESSIONS=$1; shift ;;
    esac
done
DB=trips_bench
bench_start
trap 'git -C "$REPO" worktree remove --force "$WORK/base" 2>/dev/null; bench_cleanup; set_preload ""' EXIT
if [ -n "$BASE" ]; then
    log "building $BASE"
    git -C "$REPO" worktree add --quiet --detach "$WORK/base" "$BASE"
    (cd "$WORK/base" && cargo build --release --quiet --bin trips --target-dir "$WORK/base-target")
fi
results_dir session_start
export DATABASE_URL=$(db_url "$DB")
psql_at "$PORT" "$DB" -c "SELECT 1" >/dev/null 2>&1 ||
    { log "no $DB database: run benchmarks/weekly_avg.sh first"; exit 1; }

BOX="9.99,53.54,10.02,53.56"
POLYGON="POLYGON((7.62 45.03,7.66 45.02,7.71 45.04,7.72 45.08,7.69 45.11,7.64 45.10,7.61 45.07,7.62 45.03))"

# set_preload LIBRARIES: the cluster restarted with shared_preload_libraries = LIBRARIES ("" resets it to
# postgresql.conf's value).
set_preload() {
    if [ -n "$1" ]; then
        psql_at "$PORT" postgres -c "ALTER SYSTEM SET shared_preload_libraries = $1"
    else
        psql_at "$PORT" postgres -c "ALTER SYSTEM RESET shared_preload_libraries"
    fi
    as_server_user "$PG_BIN/pg_ctl" -D "$(cluster_dir pg)" -l "$(cluster_dir pg)/server.log" -m fast -w restart >/dev/null
}

# cli BINARY: the time of one `trips weekly-avg` in ms.
cli() {
    local t0 t1
    t0=$(now)
    "$1" weekly-avg --bbox "$BOX" >/dev/null
    t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) * 1000 }'
}

# session: one line of times in ms, in the order of the header below.
session() {
    local times
    times=$(psql -X -q -h 127.0.0.1 -p "$PORT" -U trips -d "$DB" -v ON_ERROR_STOP=1 <<SQL | awk '/^Time:/ { printf "%s,", $2 }'
\\timing on
SELECT 1;
SELECT weekly_avg($BOX);
SELECT weekly_avg($BOX);
SELECT weekly_avg(ST_GeomFromText('$POLYGON', 4326));
SELECT weekly_avg(ST_GeomFromText('$POLYGON', 4326));
SQL
    )
    echo "$times$(cli "$TRIPS"),$([ -z "$BASE" ] || cli "$WORK/base-target/release/trips")"
}

echo "round,preload,select1,box_first,box_again,polygon_first,polygon_again,cli,cli_base" >"$OUT/sessions.csv"
for round in $(seq "$ROUNDS"); do
    for preload in "'pg_cron'" "'pg_cron', 'postgis-3'"; do
        log "round $round: shared_preload_libraries = $preload"
        set_preload "$preload"
        session >/dev/null   # the warm-up: shared buffers filled after the restart
        for _ in $(seq "$SESSIONS"); do
            echo "$round,\"$preload\",$(session)" >>"$OUT/sessions.csv"
        done
    done
done
{
    echo "command: benchmarks/session_start.sh $SESSIONS --rounds $ROUNDS${BASE:+ --base $BASE}"
    echo "commit: $COMMIT${BASE:+ (cli) against $(git -C "$REPO" rev-parse --short "$BASE") (cli_base)}"
    echo "date: $(date -u +%FT%TZ)"
    echo "trips: $(psql_at "$PORT" "$DB" -tAc 'SELECT count(*) FROM trip_rows')"
    echo "server: $(psql_at "$PORT" "$DB" -tAc 'SELECT version()')"
    echo "postgis: $(psql_at "$PORT" "$DB" -tAc 'SELECT postgis_lib_version()')"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) x $(nproc)"
} >"$OUT/environment.txt"

python3 - "$OUT/sessions.csv" <<'PY' | tee "$OUT/summary.txt"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
cols = ["select1", "box_first", "box_again", "polygon_first", "polygon_again", "cli"]
cols += ["cli_base"] if rows[0]["cli_base"] else []
print("median ms over", len(rows) // 2, "sessions each")
print(f"{'shared_preload_libraries':<26}" + "".join(f"{c:>14}" for c in cols))
med = {}
for preload in dict.fromkeys(r["preload"] for r in rows):
    med[preload] = [statistics.median(float(r[c]) for r in rows if r["preload"] == preload) for c in cols]
    print(f"{preload:<26}" + "".join(f"{m:14.2f}" for m in med[preload]))
old, new = med.values()
print(f"{'difference':<26}" + "".join(f"{n - o:14.2f}" for o, n in zip(old, new)))
PY
