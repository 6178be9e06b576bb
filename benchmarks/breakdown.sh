#!/usr/bin/env bash
# Where one file's load goes: `trips ingest --no-compact` of one generated file into a fresh database, with
# the loader's wall and CPU time and peak memory, and the server's time per statement (from its log, with
# log_min_duration_statement = 0 for the load only).
#
# Usage: benchmarks/breakdown.sh [ROWS] [--spread dense|wide] [--repeat N]   (default 10000000, dense, 1)
# Output: one block per run on standard output; the statements that took over 20 ms in all, longest first.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
SPREAD=dense
ARGS=()
while [ $# -gt 0 ]; do
    case $1 in
        --spread) SPREAD=$2; shift 2 ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
bench_args 10000000 --repeat 1 "${ARGS[@]}"
bench_start
trap 'psql_at "$PORT" postgres -c "ALTER SYSTEM RESET log_min_duration_statement" -c "SELECT pg_reload_conf()" >/dev/null; bench_cleanup' EXIT
LOG=$(cluster_dir pg)/server.log

"$TRIPS" gen --rows "$ROWS" --seed 42 --spread "$SPREAD" >"$WORK/trips.csv"
echo "commit $COMMIT, $ROWS trips, $SPREAD, one file"
for run in $(seq "$REPEAT"); do
    fresh_db breakdown
    settle
    psql_at "$PORT" postgres -c "ALTER SYSTEM SET log_min_duration_statement = 0" -c "SELECT pg_reload_conf()" >/dev/null
    from=$(($(wc -l <"$LOG") + 1))
    /usr/bin/time -f "loader: wall %e s, user %U s, system %S s, peak memory %M kB" -o "$WORK/time" \
        env DATABASE_URL="$(db_url breakdown)" "$TRIPS" ingest --progress-secs 0 --no-compact "$WORK/trips.csv" \
        >/dev/null 2>&1
    psql_at "$PORT" postgres -c "ALTER SYSTEM RESET log_min_duration_statement" -c "SELECT pg_reload_conf()" >/dev/null
    echo "run $run: $(cat "$WORK/time")"
    # Statements by their first 60 characters: total ms, count. Parse and bind steps are left out.
    tail -n +"$from" "$LOG" | grep -oP "duration: [0-9.]+ ms  (statement|execute [^:]*): .{0,60}" \
        | sed -E 's/execute [^:]*:/execute:/' \
        | awk '{ ms = $2; $1 = $2 = $3 = ""; sum[$0] += ms; n[$0]++ }
               END { for (s in sum) if (sum[s] > 20) printf "  %8.0f ms %5d x%s\n", sum[s], n[s], s }' \
        | sort -rn
done
