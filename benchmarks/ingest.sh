#!/usr/bin/env bash
# Ingest throughput of `trips ingest` beside three baselines, on the same generated rows, same server,
# same settings, in one run:
#   trips      trips ingest FILE: parse + validate, binary COPY into the job's staging table, attach, commit
#   psql_copy  psql \copy of the CSV into a bare table with geometry columns (what most people would do)
#   ceiling    server-side binary COPY of the same rows, pre-encoded in trip_rows' own format, into a bare
#              table created in the same transaction (no parsing, no network: the most COPY can do here)
#   ogr2ogr    GDAL's ogr2ogr from the CSV (what GIS users reach for), with its default spatial index;
#              only up to 2M rows, it is slow
# Each is repeated --repeat times (default 3) into a fresh table/database; medians are reported.
#
# Usage: benchmarks/ingest.sh [ROWS] [--repeat R]      (ROWS default 2000000)
# Output: a table on stdout, raw numbers and versions in benchmarks/results/<date>-<host>/ingest-<ROWS>/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_args 2000000 "$@"
DB=trips_bench
bench_start
trap bench_cleanup EXIT
results_dir "ingest-$ROWS"
export DATABASE_URL=$(db_url "$DB")
q() { psql_at "$PORT" "$DB" -tAc "$1"; }

log "generating $ROWS trips"
"$TRIPS" gen --rows "$ROWS" --seed 42 >"$WORK/trips.csv"
CSV_BYTES=$(stat -c %s "$WORK/trips.csv")
echo "method,run,seconds,rows,bytes_on_disk" >"$OUT/raw.csv"
record() { echo "$1,$2,$3,$4,$5" >>"$OUT/raw.csv"; log "  $1 run $2: $3 s"; }

for run in $(seq "$REPEAT"); do
    log "run $run of $REPEAT"
    # trips: the whole ingest, parse to commit.
    fresh_db "$DB"
    sync
    t0=$(now); "$TRIPS" ingest --progress-secs 5 "$WORK/trips.csv" 2>"$WORK/trips.log"; t1=$(now)
    record trips "$run" "$(elapsed "$t0" "$t1")" "$(q 'SELECT count(*) FROM trip_rows')" \
        "$(q "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'trip_rows'::regclass")"

    # The same rows in trip_rows' binary form, written by the server for the ceiling run.
    [ "$run" = 1 ] && q "COPY (SELECT * FROM trip_rows) TO '$WORK/rows.bin' (FORMAT binary)"

    # ceiling: server-side binary COPY into a table created in the same transaction.
    sync
    t0=$(now)
    q "BEGIN; CREATE TABLE ceiling (LIKE trip_rows); COPY ceiling FROM '$WORK/rows.bin' (FORMAT binary, FREEZE); COMMIT;" >/dev/null
    t1=$(now)
    record ceiling "$run" "$(elapsed "$t0" "$t1")" "$(q 'SELECT count(*) FROM ceiling')" "$(q "SELECT pg_total_relation_size('ceiling')")"
    q "DROP TABLE ceiling"

    # psql_copy: \copy of the CSV into an existing table with geometry columns.
    q "CREATE TABLE bare (region text, origin geometry, destination geometry, datetime timestamp, datasource text)"
    sync
    t0=$(now)
    psql_at "$PORT" "$DB" -c "\\copy bare FROM '$WORK/trips.csv' WITH (FORMAT csv, HEADER true)"
    t1=$(now)
    record psql_copy "$run" "$(elapsed "$t0" "$t1")" "$(q 'SELECT count(*) FROM bare')" "$(q "SELECT pg_total_relation_size('bare')")"
    q "DROP TABLE bare"

    if [ "$ROWS" -le 2000000 ] && command -v ogr2ogr >/dev/null; then
        sync
        t0=$(now)
        ogr2ogr_load "$DB" "$WORK/trips.csv"
        t1=$(now)
        record ogr2ogr "$run" "$(elapsed "$t0" "$t1")" "$(q 'SELECT count(*) FROM ogr_trips')" "$(q "SELECT pg_total_relation_size('ogr_trips')")"
        q "DROP TABLE ogr_trips"
    fi
done

{
    echo "command: benchmarks/ingest.sh $ROWS --repeat $REPEAT"
    echo "commit: $COMMIT"
    echo "date: $(date -u +%FT%TZ)"
    echo "csv_bytes: $CSV_BYTES"
    echo "server: $(q 'SELECT version()')"
    echo "postgis: $(q 'SELECT postgis_full_version()')"
    echo "ogr2ogr: $(ogr2ogr --version 2>/dev/null || echo 'not installed')"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) x $(nproc)"
    echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
    echo "settings:"
    q "SELECT name || ' = ' || setting || coalesce(unit, '') FROM pg_settings WHERE name IN ('shared_buffers','maintenance_work_mem','max_wal_size','wal_level','fsync','synchronous_commit','checkpoint_timeout','full_page_writes')" | sed 's/^/  /'
} >"$OUT/environment.txt"

python3 - "$OUT/raw.csv" "$ROWS" <<'PY' | tee "$OUT/summary.txt"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
n = int(sys.argv[2])
by = {}
for r in rows:
    by.setdefault(r["method"], []).append(r)
med = {m: statistics.median(float(r["seconds"]) for r in rs) for m, rs in by.items()}
print(f"{n} rows, median of {len(by['trips'])} run(s)")
print(f"{'method':<10} {'seconds':>8} {'rows/s':>10} {'bytes/row':>10}  runs (s)")
for m, rs in by.items():
    b = int(rs[-1]["bytes_on_disk"]) / int(rs[-1]["rows"])
    runs = " ".join(f"{float(r['seconds']):.2f}" for r in rs)
    print(f"{m:<10} {med[m]:>8.2f} {n / med[m]:>10.0f} {b:>10.1f}  {runs}")
print(f"trips / psql_copy: {med['psql_copy'] / med['trips']:.2f}x the rows/s")
print(f"trips / ceiling:   {med['ceiling'] / med['trips']:.2f}x the rows/s")
if "ogr2ogr" in med:
    print(f"trips / ogr2ogr:   {med['ogr2ogr'] / med['trips']:.2f}x the rows/s")
PY
