#!/usr/bin/env bash
# The store's budget, all axes in one run, on the local cluster (settings: README.md, "The local cluster").
# For each size N and each shape (--spread: dense, the generator's hot spots; wide, half of the trip ends
# spread over 2 x 2 degrees: sparse data; both over three years), the same N trips are:
#
#   one file   `trips gen` written to a CSV file first (so the generator does not share the two cores,
#              and the file is in the page cache, as a user's export would be), then `trips ingest FILE`
#              into a fresh database: parse to commit, every answer up to date. Beside it, on the same
#              rows: the ceiling (server-side binary COPY of the loaded rows, pre-encoded, into a bare
#              table created in the same transaction), `psql \copy FROM FILE` into a bare geometry
#              table, and GDAL ogr2ogr from the file (N <= 2M: it is slow).
#   F files    (--files F, for each F given) the same trips cut into F files, loaded by one `trips ingest`
#              into a fresh database; the loader merges after each file, as it does by default.
#
# and each database is then measured the same way:
#   memory     the loader's peak resident set (/usr/bin/time).
#   storage    bytes per trip: the trips (heap and indexes), the tallies, the trip_groups snapshot, total.
#   latency    weekly_avg on AREAS areas (examples/weekly_avg_bench.rs: boxes 100 m to 100 km and polygons,
#              every `by`), over the default window and over a 4-week window; the first PLAIN of each also
#              with the plain SQL over `trips`, which must give the same number. The areas are chosen from
#              the trips by their values, so every arrival of the same trips is asked the same questions.
#   other      weekly_avg_region per region, the two queries.sql questions, `trips groups --top 20` never
#              refreshed, after refresh_trip_groups(), and stale by five 1000-trip files loaded after it.
#
# Usage: benchmarks/run.sh [--rows N]... [--spread S]... [--files F]... [--areas A] [--plain P]
#        (defaults: --rows 10000000 --spread dense --spread wide --files 100 --files 2000 --areas 300
#        --plain 20 --name store; at N >= 50M the plain SQL runs on 8 areas only, each scans every trip;
#        --files 0: the one-file case only)
# Output: benchmarks/results/<date>-<host>/<name>/: raw.csv (case,metric,method,run,value), latency-*.csv,
#         environment.txt, summary.md and plots, written by benchmarks/report.py.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
SIZES=() SPREADS=() FILES=() AREAS=300 PLAIN=20 NAME=store
while [ $# -gt 0 ]; do
    case $1 in
        --rows) SIZES+=("$2"); shift 2 ;;
        --spread) SPREADS+=("$2"); shift 2 ;;
        --files) FILES+=("$2"); shift 2 ;;
        --areas) AREAS=$2; shift 2 ;;
        --plain) PLAIN=$2; shift 2 ;;
        --name) NAME=$2; shift 2 ;;
        *) log "unknown argument $1 (see the header of benchmarks/run.sh)"; exit 2 ;;
    esac
done
[ ${#SIZES[@]} -gt 0 ] || SIZES=(10000000)
[ ${#SPREADS[@]} -gt 0 ] || SPREADS=(dense wide)
[ ${#FILES[@]} -gt 0 ] || FILES=(100 2000)

if ! command -v ogr2ogr >/dev/null; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gdal-bin >&2
fi
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install --quiet matplotlib

DB=trips_store
bench_start --example weekly_avg_bench
trap bench_cleanup EXIT
results_dir "$NAME"
export DATABASE_URL=$(db_url "$DB")
q() { psql_at "$PORT" "$DB" -tAc "$1"; }
RAW=$OUT/raw.csv
echo "case,metric,method,run,value" >"$RAW"
record() { echo "$1,$2,$3,$4,$5" >>"$RAW"; log "  $1 $2 $3 run $4: $5"; }
elapsed_ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }

# time_sql CASE LABEL REPS SQL: the server round trip of SQL as psql's \timing sees it, REPS times.
time_sql() {
    local c=$1 label=$2 reps=$3 sql=${4%;} i=0
    { echo '\timing on'; for _ in $(seq "$reps"); do printf '%s;\n' "$sql"; done; } |
        psql_at "$PORT" "$DB" -o /dev/null | awk '/^Time:/ {print $2}' |
        while read -r ms; do i=$((i + 1)); record "$c" query_ms "$label" "$i" "$ms"; done
}

# Bytes of what the store holds, by part; every relation of the database but the catalog and PostGIS's.
storage() {
    local c=$1
    q "WITH rel AS (
           SELECT CASE WHEN p.relname = 'trip_rows' THEN 'trips'
                       WHEN p.relname = 'trip_cells' THEN p.relname
                       WHEN c.relname IN ('trip_groups') THEN 'trip_groups'
                       ELSE 'other' END AS part,
                  pg_table_size(c.oid) AS heap, pg_indexes_size(c.oid) AS indexes
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
             LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
             LEFT JOIN pg_class p ON p.oid = i.inhparent
            WHERE c.relkind IN ('r', 'm') AND c.relname NOT IN ('spatial_ref_sys', 'bare', 'ceiling'))
       SELECT part || '_heap,' || sum(heap) FROM rel GROUP BY part
       UNION ALL SELECT part || '_indexes,' || sum(indexes) FROM rel GROUP BY part
       UNION ALL SELECT 'total,' || sum(heap + indexes) FROM rel" |
        while IFS=, read -r what bytes; do record "$c" bytes "$what" 1 "$bytes"; done
    record "$c" pieces trip_rows 1 "$(q "SELECT count(*) FROM trip_pieces WHERE parent = 'trip_rows'")"
    record "$c" pieces trip_cells 1 "$(q "SELECT count(*) FROM trip_pieces WHERE parent = 'trip_cells'")"
}

# measure CASE N PLAIN: everything but the ingest, on the database as loaded.
measure() {
    local c=$1 n=$2 plain=$3
    [ "$(q 'SELECT count(*) FROM trip_rows')" = "$n" ] || { log "$c: $(q 'SELECT count(*) FROM trip_rows') rows, not $n"; exit 1; }
    q "ANALYZE" >/dev/null
    storage "$c"
    "$REPO/target/release/examples/weekly_avg_bench" "$DATABASE_URL" "$AREAS" "$plain" 7 warm \
        >"$OUT/latency-$c.csv" 2>"$OUT/mismatches-$c.txt"
    "$REPO/target/release/examples/weekly_avg_bench" "$DATABASE_URL" "$AREAS" "$plain" 7 warm \
        since=2017-03-06 until=2017-04-03 >"$OUT/latency-$c-4weeks.csv" 2>"$OUT/mismatches-$c-4weeks.txt"
    q "SELECT quote_literal(name) FROM regions ORDER BY name" | while IFS= read -r region; do
        time_sql "$c" weekly_avg_region 5 "SELECT weekly_avg_region($region)"
    done
    time_sql "$c" queries_q1 5 "$(awk '/^WITH top_regions/,/LIMIT 1;/' queries.sql | head -n 12)"
    time_sql "$c" queries_q2 5 "$(awk '/^SELECT region, trips, first_departure/,/ORDER BY region;/' queries.sql)"
    t0=$(now); "$TRIPS" groups --top 20 >/dev/null; t1=$(now)   # never refreshed: counts every trip
    record "$c" query_ms groups_top20_stale 1 "$(elapsed_ms "$t0" "$t1")"
    t0=$(now); q "SELECT refresh_trip_groups()" >/dev/null; t1=$(now)
    record "$c" maintenance_seconds refresh_trip_groups 1 "$(elapsed "$t0" "$t1")"
    record "$c" bytes trip_groups_snapshot 1 "$(q "SELECT pg_total_relation_size('trip_groups')")"
    record "$c" groups snapshot_groups 1 "$(q "SELECT count(*) FROM trip_groups")"
    for run in 1 2 3; do
        t0=$(now); "$TRIPS" groups --top 20 >/dev/null; t1=$(now)
        record "$c" query_ms groups_top20_snapshot "$run" "$(elapsed_ms "$t0" "$t1")"
    done
    "$TRIPS" gen --rows 1000 --seed 99 >"$WORK/small.csv"
    for run in 1 2 3 4 5; do
        t0=$(now); "$TRIPS" ingest --force --progress-secs 0 "$WORK/small.csv" 2>/dev/null; t1=$(now)
        record "$c" small_file_seconds trips "$run" "$(elapsed "$t0" "$t1")"
    done
    for run in 1 2 3; do   # the snapshot is stale by those five files: counts their 5,000 trips
        t0=$(now); "$TRIPS" groups --top 20 >/dev/null; t1=$(now)
        record "$c" query_ms groups_top20_stale_small "$run" "$(elapsed_ms "$t0" "$t1")"
    done
}

for n in "${SIZES[@]}"; do
    plain=$PLAIN
    [ "$n" -ge 50000000 ] && [ "$plain" -gt 8 ] && plain=8
    for spread in "${SPREADS[@]}"; do
        gen() { "$TRIPS" gen --rows "$n" --seed 42 --spread "$spread"; }
        c="$spread-$n-1"
        log "== $c: $n trips, $spread, one file"
        t0=$(now); gen >"$WORK/trips.csv"; t1=$(now)
        record "$c" ingest_seconds gen_only 1 "$(elapsed "$t0" "$t1")"
        fresh_db "$DB"
        settle
        t0=$(now)
        /usr/bin/time -f %M -o "$WORK/rss" "$TRIPS" ingest --progress-secs 0 "$WORK/trips.csv" 2>"$WORK/ingest.log"
        t1=$(now)
        record "$c" ingest_seconds trips 1 "$(elapsed "$t0" "$t1")"
        record "$c" loader_peak_rss_kb trips 1 "$(cat "$WORK/rss")"

        log "ceiling: server-side binary COPY of the same rows"
        q "COPY (SELECT * FROM trip_rows) TO '$WORK/rows.bin' (FORMAT binary)"
        settle
        t0=$(now)
        q "BEGIN; CREATE TABLE ceiling (LIKE trip_rows); COPY ceiling FROM '$WORK/rows.bin' (FORMAT binary, FREEZE); COMMIT;" >/dev/null
        t1=$(now)
        record "$c" ingest_seconds ceiling 1 "$(elapsed "$t0" "$t1")"
        q "DROP TABLE ceiling"
        rm -f "$WORK/rows.bin"

        log "psql \\copy into a bare geometry table"
        q "CREATE TABLE bare (region text, origin geometry, destination geometry, datetime timestamp, datasource text)"
        settle
        t0=$(now)
        psql_at "$PORT" "$DB" -c "\\copy bare FROM '$WORK/trips.csv' WITH (FORMAT csv, HEADER true)"
        t1=$(now)
        record "$c" ingest_seconds psql_copy 1 "$(elapsed "$t0" "$t1")"
        record "$c" bytes psql_copy_table 1 "$(q "SELECT pg_total_relation_size('bare')")"
        q "DROP TABLE bare"
        if [ "$n" -le 2000000 ]; then
            log "ogr2ogr from the same file"
            settle
            t0=$(now); ogr2ogr_load "$DB" "$WORK/trips.csv"; t1=$(now)
            record "$c" ingest_seconds ogr2ogr 1 "$(elapsed "$t0" "$t1")"
            q "DROP TABLE ogr_trips"
        fi
        measure "$c" "$n" "$plain"

        for f in "${FILES[@]}"; do
            [ "$f" = 0 ] && continue
            c="$spread-$n-$f"
            log "== $c: the same trips as $f files"
            mkdir -p "$WORK/parts"
            # Streamed, so the disk holds the file and its parts, not a third copy (13 GB at 100M).
            tail -n +2 "$WORK/trips.csv" | split -l $(((n + f - 1) / f)) -d -a 5 - "$WORK/parts/p"
            for p in "$WORK"/parts/p*; do
                { echo "region,origin_coord,destination_coord,datetime,datasource"; cat "$p"; } >"$p.csv"
                rm "$p"
            done
            fresh_db "$DB"
            settle
            t0=$(now)
            /usr/bin/time -f %M -o "$WORK/rss" "$TRIPS" ingest --progress-secs 0 "$WORK"/parts/p*.csv \
                2>"$WORK/ingest.log"
            t1=$(now)
            record "$c" ingest_seconds trips 1 "$(elapsed "$t0" "$t1")"
            record "$c" loader_peak_rss_kb trips 1 "$(cat "$WORK/rss")"
            record "$c" merges trips 1 "$(grep -c '^merged ' "$WORK/ingest.log" || true)"
            rm -rf "$WORK/parts"
            measure "$c" "$n" "$plain"
        done
        rm -f "$WORK/trips.csv"
    done
done

{
    echo "command: benchmarks/run.sh$(printf ' --rows %s' "${SIZES[@]}")$(printf ' --spread %s' "${SPREADS[@]}")$(printf ' --files %s' "${FILES[@]}") --areas $AREAS --plain $PLAIN"
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
