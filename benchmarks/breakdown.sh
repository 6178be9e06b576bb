#!/usr/bin/env bash
# Where a load goes: `trips ingest --no-compact` of generated trips, as one file or split into N files given
# together, into a fresh database, with the loader's wall and CPU time and peak memory, and the server's
# time per statement (from its log, with log_min_duration_statement = 0 for the load only) and per PL/pgSQL
# function, nested ones too (pg_stat_user_functions, with track_functions = pl): the index builds, the
# statistics and the attachments inside ingest_finish.
#
# Usage: benchmarks/breakdown.sh [ROWS] [--spread dense|wide] [--files N] [--repeat N]
#        (default 10000000 trips, dense, one file, one run)
# Output: one block per run on standard output; the statements that took over 20 ms in all (by their first
# 60 characters, so one line adds up every file's COPY or every batch's ingest_finish), longest first.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
SPREAD=dense
FILES=1
ARGS=()
while [ $# -gt 0 ]; do
    case $1 in
        --spread) SPREAD=$2; shift 2 ;;
        --files) FILES=$2; shift 2 ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
bench_args 10000000 --repeat 1 "${ARGS[@]}"
bench_start
quiet() {
    psql_at "$PORT" postgres -c "ALTER SYSTEM RESET log_min_duration_statement" \
        -c "ALTER SYSTEM RESET track_functions" -c "SELECT pg_reload_conf()" >/dev/null
}
trap 'quiet; bench_cleanup' EXIT
LOG=$(cluster_dir pg)/server.log

"$TRIPS" gen --rows "$ROWS" --seed 42 --spread "$SPREAD" >"$WORK/trips.csv"
if [ "$FILES" -gt 1 ]; then
    # As benchmarks/run.sh splits them: equal parts, each with the header.
    mkdir "$WORK/parts"
    tail -n +2 "$WORK/trips.csv" | split -l $(((ROWS + FILES - 1) / FILES)) -d -a 5 - "$WORK/parts/p"
    for p in "$WORK"/parts/p*; do
        { head -1 "$WORK/trips.csv"; cat "$p"; } >"$p.csv"
        rm "$p"
    done
    rm "$WORK/trips.csv"
    INPUT=("$WORK"/parts/p*.csv)
else
    INPUT=("$WORK/trips.csv")
fi
echo "commit $COMMIT, $ROWS trips, $SPREAD, $FILES file(s)"
for run in $(seq "$REPEAT"); do
    fresh_db breakdown
    settle
    psql_at "$PORT" postgres -c "ALTER SYSTEM SET log_min_duration_statement = 0" \
        -c "ALTER SYSTEM SET track_functions = pl" -c "SELECT pg_reload_conf()" >/dev/null
    from=$(($(wc -l <"$LOG") + 1))
    /usr/bin/time -f "loader: wall %e s, user %U s, system %S s, peak memory %M kB" -o "$WORK/time" \
        env DATABASE_URL="$(db_url breakdown)" "$TRIPS" ingest --progress-secs 0 --no-compact "${INPUT[@]}" \
        >/dev/null 2>&1
    quiet
    echo "run $run: $(cat "$WORK/time")"
    # Statements by their first 60 characters, the pieces' names made alike: total ms, count. Parse and bind
    # steps are left out.
    echo "  statements:"
    tail -n +"$from" "$LOG" | grep -oP "duration: [0-9.]+ ms  (statement|execute [^:]*): .{0,60}" \
        | sed -E 's/execute [^:]*:/execute:/; s/_j[0-9_]+/_j*/g' \
        | awk '{ ms = $2; $1 = $2 = $3 = ""; sum[$0] += ms; n[$0]++ }
               END { for (s in sum) if (sum[s] > 20) printf "  %8.0f ms %5d x%s\n", sum[s], n[s], s }' \
        | sort -rn
    echo "  functions (nested in the statements above):"
    psql_at "$PORT" breakdown -tAF ' ' -c "SELECT format('  %8s ms %5s x %s', round(total_time), calls, funcname)
        FROM pg_stat_user_functions WHERE total_time > 20 ORDER BY total_time DESC"
done
