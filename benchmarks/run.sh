#!/usr/bin/env bash
# Proof of scale: for each size N, in one run on the local cluster (settings: README.md, "The local cluster"):
#
#   ingest     `trips gen | trips ingest -` into a fresh database, parse to commit with every rollup and
#              aggregate up to date; beside it, on the same rows: the ceiling (server-side binary COPY of
#              the loaded rows into a bare table created in the same transaction), `trips gen | psql \copy`
#              into a bare geometry table, and GDAL ogr2ogr from a CSV file (N <= 2M only; it is slow).
#              `trips gen > /dev/null` alone says what the generator costs both piped runs.
#   memory     the loader's peak resident set (/usr/bin/time).
#   storage    bytes per trip: the trips (heap, indexes), the aggregates (heap, indexes), total.
#   queries    weekly_avg on AREAS random areas (examples/weekly_avg_bench.rs; the first PLAIN also with
#              the plain SQL over `trips`, which must give the same number), weekly_avg_region per region,
#              `trips groups --top 20` (rollup summed, then from the refreshed snapshot), and the two
#              queries.sql questions; each beside the plain SQL for the same answer.
#   more       1M more trips into the loaded database, and the same 1M into an empty one.
#
# Usage: benchmarks/run.sh [--rows N]... [--areas A] [--plain P]   (default: --rows 1000000 --rows 10000000,
#        300 areas, 20 of them with the plain SQL; at N >= 50M the plain SQL is run on 8 areas only: each
#        scans every trip)
# Output: benchmarks/results/<date>-<host>/scale/: raw.csv (size,metric,method,run,value), latency-N.csv,
#         environment.txt, summary.md and plots (PNG), written by benchmarks/report.py.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
SIZES=() AREAS=300 PLAIN=20
while [ $# -gt 0 ]; do
    case $1 in
        --rows) SIZES+=("$2"); shift 2 ;;
        --areas) AREAS=$2; shift 2 ;;
        --plain) PLAIN=$2; shift 2 ;;
        *) log "unknown argument $1 (usage: benchmarks/run.sh [--rows N]... [--areas A] [--plain P])"; exit 2 ;;
    esac
done
[ ${#SIZES[@]} -gt 0 ] || SIZES=(1000000 10000000)

# The baselines' and the report's tools.
missing=()
command -v ogr2ogr >/dev/null || missing+=(gdal-bin)
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install --quiet matplotlib

DB=trips_scale EMPTY=trips_scale_empty
bench_start --example weekly_avg_bench
trap bench_cleanup EXIT
results_dir scale
export DATABASE_URL=$(db_url "$DB")
q() { psql_at "$PORT" "$DB" -tAc "$1"; }
RAW=$OUT/raw.csv
echo "size,metric,method,run,value" >"$RAW"
record() { echo "$1,$2,$3,$4,$5" >>"$RAW"; log "  $2 $3 run $4: $5"; }

elapsed_ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }

# time_sql SIZE LABEL REPS SQL: the server round trip of SQL as psql's \timing sees it, REPS times.
time_sql() {
    local n=$1 label=$2 reps=$3 sql=${4%;} i=0
    { echo '\timing on'; for _ in $(seq "$reps"); do printf '%s;\n' "$sql"; done; } |
        psql_at "$PORT" "$DB" -o /dev/null | awk '/^Time:/ {print $2}' |
        while read -r ms; do i=$((i + 1)); record "$n" query_ms "$label" "$i" "$ms"; done
}

# The sizes of the database's relations, in bytes: the trips (every partition of trip_rows) and the
# aggregates (group tally partitions, area pyramid, trip_groups snapshot, region/datasource stats).
storage() {
    local n=$1
    q "WITH rel AS (
           SELECT CASE WHEN c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'trip_rows'::regclass)
                       THEN 'trips' ELSE 'aggregates' END AS part,
                  pg_table_size(c.oid) AS heap, pg_indexes_size(c.oid) AS indexes
             FROM pg_class c
            WHERE c.relkind IN ('r', 'm')
              AND (c.oid IN (SELECT inhrelid FROM pg_inherits
                              WHERE inhparent IN ('trip_rows'::regclass, 'trip_group_counts'::regclass))
                   OR c.relname IN ('trip_area_counts', 'trip_area_points', 'trip_groups',
                                    'region_datasource_stats')))
       SELECT part || '_heap,' || sum(heap) FROM rel GROUP BY part
       UNION ALL SELECT part || '_indexes,' || sum(indexes) FROM rel GROUP BY part
       UNION ALL SELECT 'total,' || sum(heap + indexes) FROM rel" |
        while IFS=, read -r what bytes; do record "$n" bytes "$what" 1 "$bytes"; done
}

for n in "${SIZES[@]}"; do
    log "== $n trips"
    plain=$PLAIN
    [ "$n" -ge 50000000 ] && [ "$plain" -gt 8 ] && plain=8

    log "ingest: trips gen | trips ingest -"
    fresh_db "$DB"
    sync
    t0=$(now)
    "$TRIPS" gen --rows "$n" --seed 42 |
        /usr/bin/time -f %M -o "$WORK/rss" "$TRIPS" ingest --progress-secs 0 - 2>"$WORK/ingest.log"
    t1=$(now)
    record "$n" ingest_seconds trips 1 "$(elapsed "$t0" "$t1")"
    record "$n" loader_peak_rss_kb trips 1 "$(cat "$WORK/rss")"
    [ "$(q 'SELECT count(*) FROM trip_rows')" = "$n" ] || { log "loaded $(q 'SELECT count(*) FROM trip_rows') rows, not $n"; exit 1; }

    t0=$(now); "$TRIPS" gen --rows "$n" --seed 42 >/dev/null; t1=$(now)
    record "$n" ingest_seconds gen_only 1 "$(elapsed "$t0" "$t1")"

    log "ceiling: server-side binary COPY of the same rows"
    q "COPY (SELECT * FROM trip_rows) TO '$WORK/rows.bin' (FORMAT binary)"
    sync
    t0=$(now)
    q "BEGIN; CREATE TABLE ceiling (LIKE trip_rows); COPY ceiling FROM '$WORK/rows.bin' (FORMAT binary, FREEZE); COMMIT;" >/dev/null
    t1=$(now)
    record "$n" ingest_seconds ceiling 1 "$(elapsed "$t0" "$t1")"
    q "DROP TABLE ceiling"
    rm -f "$WORK/rows.bin"

    log "psql_copy: trips gen | psql \\copy into a bare geometry table"
    q "CREATE TABLE bare (region text, origin geometry, destination geometry, datetime timestamp, datasource text)"
    sync
    t0=$(now)
    "$TRIPS" gen --rows "$n" --seed 42 |
        psql_at "$PORT" "$DB" -c "\\copy bare FROM STDIN WITH (FORMAT csv, HEADER true)"
    t1=$(now)
    record "$n" ingest_seconds psql_copy 1 "$(elapsed "$t0" "$t1")"
    record "$n" bytes psql_copy_table 1 "$(q "SELECT pg_total_relation_size('bare')")"
    q "DROP TABLE bare"

    if [ "$n" -le 2000000 ]; then
        log "ogr2ogr from a CSV file"
        "$TRIPS" gen --rows "$n" --seed 42 >"$WORK/trips.csv"
        sync
        t0=$(now)
        ogr2ogr_load "$DB" "$WORK/trips.csv"
        t1=$(now)
        record "$n" ingest_seconds ogr2ogr 1 "$(elapsed "$t0" "$t1")"
        q "DROP TABLE ogr_trips"
        rm -f "$WORK/trips.csv"
    fi

    log "maintenance and storage"
    t0=$(now); q "VACUUM ANALYZE" >/dev/null; t1=$(now)
    record "$n" maintenance_seconds vacuum_analyze 1 "$(elapsed "$t0" "$t1")"

    log "queries"
    t0=$(now); "$TRIPS" groups --top 20 >/dev/null; t1=$(now)   # the snapshot is stale: sums the rollup
    record "$n" query_ms groups_top20_rollup 1 "$(elapsed_ms "$t0" "$t1")"
    t0=$(now); q "SELECT refresh_trip_groups()" >/dev/null; t1=$(now)
    record "$n" maintenance_seconds refresh_trip_groups 1 "$(elapsed "$t0" "$t1")"
    storage "$n"
    for run in $(seq 10); do
        t0=$(now); "$TRIPS" groups --top 20 >/dev/null; t1=$(now)
        record "$n" query_ms groups_top20_snapshot "$run" "$(elapsed_ms "$t0" "$t1")"
    done
    "$REPO/target/release/examples/weekly_avg_bench" "$DATABASE_URL" "$AREAS" "$plain" 7 \
        >"$OUT/latency-$n.csv" 2>"$OUT/mismatches-$n.txt"
    q "SELECT quote_literal(name) FROM regions ORDER BY name" | while IFS= read -r region; do
        time_sql "$n" weekly_avg_region 10 "SELECT weekly_avg_region($region)"
        time_sql "$n" weekly_avg_region_plain 1 \
            "SELECT count(*) / (SELECT weeks FROM trip_window(NULL, NULL)) FROM trips WHERE region = $region"
    done
    # The queries.sql questions (the first statement of each), and their plain versions from its comments.
    time_sql "$n" queries_q1 10 "$(awk '/^WITH top_regions/,/LIMIT 1;/' queries.sql | head -n 12)"
    time_sql "$n" queries_q1_plain 1 "$(awk '/^-- WITH top_regions AS \($/,/LIMIT 1;/' queries.sql | head -n 7 | sed 's/^-- //')"
    time_sql "$n" queries_q2 10 "$(awk '/^SELECT region, trips, first_departure/,/ORDER BY region;/' queries.sql)"
    time_sql "$n" queries_q2_plain 1 "$(awk '/^-- SELECT region, count\(\*\) AS trips/,/GROUP BY region/' queries.sql | sed 's/^-- //')"

    log "1M more trips: into the loaded database, then into an empty one"
    "$TRIPS" gen --rows 1000000 --seed 7 >"$WORK/more.csv"
    sync
    t0=$(now); "$TRIPS" ingest --progress-secs 0 "$WORK/more.csv" 2>/dev/null; t1=$(now)
    record "$n" more_1M_seconds into_loaded 1 "$(elapsed "$t0" "$t1")"
    fresh_db "$EMPTY"
    sync
    t0=$(now); DATABASE_URL=$(db_url "$EMPTY") "$TRIPS" ingest --progress-secs 0 "$WORK/more.csv" 2>/dev/null; t1=$(now)
    record "$n" more_1M_seconds into_empty 1 "$(elapsed "$t0" "$t1")"
    rm -f "$WORK/more.csv"
    psql_at "$PORT" postgres -c "DROP DATABASE $EMPTY WITH (FORCE)"
done

{
    echo "command: benchmarks/run.sh$(printf ' --rows %s' "${SIZES[@]}") --areas $AREAS --plain $PLAIN"
    echo "commit: $COMMIT"
    echo "date: $(date -u +%FT%TZ)"
    echo "server: $(q 'SELECT version()')"
    echo "postgis: $(q 'SELECT postgis_full_version()')"
    echo "ogr2ogr: $(ogr2ogr --version 2>/dev/null || echo 'not installed')"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) x $(nproc)"
    echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
    echo "disk: $(df -h "$REPO" | awk 'NR == 2 {print $2 " total, " $4 " free after the run"}')"
    echo "settings:"
    q "SELECT name || ' = ' || setting || coalesce(unit, '') FROM pg_settings
        WHERE name IN ('shared_buffers', 'work_mem', 'maintenance_work_mem', 'max_wal_size', 'wal_level', 'fsync',
                       'synchronous_commit', 'checkpoint_timeout', 'full_page_writes', 'max_parallel_workers_per_gather')" |
        sed 's/^/  /'
} >"$OUT/environment.txt"
python3 "$REPO/benchmarks/report.py" "$OUT"
