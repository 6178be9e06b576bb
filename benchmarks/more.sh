#!/usr/bin/env bash
# Does a file cost more in a large database? Loads ROWS generated trips into a fresh database, then loads
# the same 1M more trips (another seed) into it and into an empty database, alternating, REPEAT times each
# (each load into the large database is forced, so it adds another 1M). The ratio of the medians is what
# the database's size adds to a file's cost; the target (README.md, "Measured") is at most 1.2x.
#
# Usage: benchmarks/more.sh [ROWS] [--repeat R]   (defaults 10000000, 3)
# Output: summary on stdout, raw numbers in benchmarks/results/<date>-<host>/more-<ROWS>/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_args 10000000 "$@"
bench_start
trap bench_cleanup EXIT
results_dir "more-$ROWS"
BIG=trips_more_big EMPTY=trips_more_empty

log "loading $ROWS trips"
fresh_db "$BIG"
t0=$(now)
"$TRIPS" gen --rows "$ROWS" --seed 42 | DATABASE_URL=$(db_url "$BIG") "$TRIPS" ingest --progress-secs 0 - 2>/dev/null
t1=$(now)
psql_at "$PORT" "$BIG" -c "VACUUM ANALYZE"
"$TRIPS" gen --rows 1000000 --seed 43 >"$WORK/more.csv"

echo "step,run,seconds" >"$OUT/raw.csv"
record() { echo "$1,$2,$3" >>"$OUT/raw.csv"; log "  $1 run $2: $3 s"; }
record "ingest_$ROWS" 1 "$(elapsed "$t0" "$t1")"
for run in $(seq "$REPEAT"); do
    t0=$(now)
    DATABASE_URL=$(db_url "$BIG") "$TRIPS" ingest --force --progress-secs 0 "$WORK/more.csv" 2>/dev/null
    t1=$(now)
    record into_large "$run" "$(elapsed "$t0" "$t1")"
    fresh_db "$EMPTY"
    t0=$(now)
    DATABASE_URL=$(db_url "$EMPTY") "$TRIPS" ingest --progress-secs 0 "$WORK/more.csv" 2>/dev/null
    t1=$(now)
    record into_empty "$run" "$(elapsed "$t0" "$t1")"
done
{
    echo "command: benchmarks/more.sh $ROWS --repeat $REPEAT"
    echo "commit: $COMMIT"
    echo "date: $(date -u +%FT%TZ)"
    echo "trips: $(psql_at "$PORT" "$BIG" -tAc 'SELECT count(*) FROM trip_rows')"
    echo "database_bytes: $(psql_at "$PORT" "$BIG" -tAc "SELECT pg_database_size('$BIG')")"
    echo "server: $(psql_at "$PORT" "$BIG" -tAc 'SELECT version()')"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) x $(nproc)"
} >"$OUT/environment.txt"
psql_at "$PORT" postgres -c "DROP DATABASE $EMPTY" -c "DROP DATABASE $BIG"   # 20 GB at 100M
python3 - "$OUT" "$ROWS" <<'PY' | tee "$OUT/summary.txt"
import csv, statistics, sys
out, rows = sys.argv[1], int(sys.argv[2])
runs = {}
for r in csv.DictReader(open(f"{out}/raw.csv")):
    runs.setdefault(r["step"], []).append(float(r["seconds"]))
env = dict(l.split(": ", 1) for l in open(f"{out}/environment.txt").read().splitlines())
show = lambda k: f"{statistics.median(runs[k]):.2f} s ({' '.join(f'{x:.2f}' for x in runs[k])})"
print(f"{rows:,} trips loaded in {runs[f'ingest_{rows}'][0]:.1f} s ({rows / runs[f'ingest_{rows}'][0]:,.0f} rows/s); "
      f"database {int(env['database_bytes']) / 1e9:.1f} GB, {int(env['trips']):,} trips at the end")
print(f"1M more trips into it:      {show('into_large')}")
print(f"1M trips into an empty one: {show('into_empty')}")
print(f"ratio of medians: {statistics.median(runs['into_large']) / statistics.median(runs['into_empty']):.2f}x")
PY
