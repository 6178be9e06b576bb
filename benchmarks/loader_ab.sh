#!/usr/bin/env bash
# A loader change against the commit before it: the same ROWS generated trips loaded by this commit's
# `trips ingest` and by BASE's, each into a fresh database (with its own binary's schema), REPEAT times,
# alternating, every load started from a quiet server (benchmarks/lib.sh, settle). Records each load's
# seconds and the size of what it wrote (trips and area points).
#
# Usage: benchmarks/loader_ab.sh --base REV [ROWS] [--repeat R]   (defaults 2000000, 3)
# Output: a summary on stdout, raw numbers in benchmarks/results/<date>-<host>/loader_ab-<REV>-<ROWS>/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_args 2000000 "$@"
[ -n "$BASE" ] || { echo "usage: benchmarks/loader_ab.sh --base REV [ROWS] [--repeat R]" >&2; exit 2; }
bench_start
trap 'git -C "$REPO" worktree remove --force "$WORK/base" 2>/dev/null; bench_cleanup' EXIT
git -C "$REPO" worktree add --quiet --detach "$WORK/base" "$BASE"
(cd "$WORK/base" && cargo build --release --quiet --bin trips --target-dir "$WORK/base-target")
NEW=$TRIPS OLD=$WORK/base-target/release/trips
results_dir "loader_ab-$BASE-$ROWS"
DB=trips_ab

log "generating $ROWS trips"
"$NEW" gen --rows "$ROWS" --seed 42 >"$WORK/trips.csv"
size() {   # bytes of a parent table's partitions
    psql_at "$PORT" "$DB" -tAc "SELECT sum(pg_total_relation_size(i.inhrelid)) FROM pg_inherits i
                                 WHERE i.inhparent = '$1'::regclass"
}
echo "binary,run,seconds,trip_rows_bytes,trip_area_points_bytes" >"$OUT/raw.csv"
for run in $(seq "$REPEAT"); do
    for b in new base; do
        bin=$NEW; [ $b = base ] && bin=$OLD
        fresh_db "$DB" "$bin"
        settle >/dev/null
        t0=$(now); DATABASE_URL=$(db_url "$DB") "$bin" ingest --progress-secs 0 "$WORK/trips.csv" 2>/dev/null; t1=$(now)
        echo "$b,$run,$(elapsed "$t0" "$t1"),$(size trip_rows),$(size trip_area_points)" >>"$OUT/raw.csv"
        log "  $b run $run: $(elapsed "$t0" "$t1") s"
    done
done
psql_at "$PORT" postgres -c "DROP DATABASE $DB"
{
    echo "command: benchmarks/loader_ab.sh --base $BASE $ROWS --repeat $REPEAT"
    echo "commit: $COMMIT (new) against $(git -C "$REPO" rev-parse --short "$BASE") (base)"
    echo "date: $(date -u +%FT%TZ)"
    echo "server: $(psql_at "$PORT" postgres -tAc 'SELECT version()')"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) x $(nproc)"
} >"$OUT/environment.txt"
python3 - "$OUT/raw.csv" <<'PY' | tee "$OUT/summary.txt"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
med = {b: statistics.median(float(r["seconds"]) for r in rows if r["binary"] == b) for b in ("base", "new")}
for b in ("base", "new"):
    r = next(r for r in rows if r["binary"] == b)
    print(f"{b:>5}: median {med[b]:.2f} s of {sum(1 for x in rows if x['binary'] == b)} loads; "
          f"trip_rows {int(r['trip_rows_bytes']) / 2**20:.0f} MiB, trip_area_points {int(r['trip_area_points_bytes']) / 2**20:.0f} MiB")
print(f"new / base: {med['new'] / med['base']:.3f}")
PY
