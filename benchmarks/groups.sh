#!/usr/bin/env bash
# Similar-trip groups at scale, on this machine's local cluster:
#   - a full `trips refresh` (rollups rebuilt from all trips, then the trip_groups snapshot) at ROWS trips,
#     and `SELECT refresh_trip_groups()` alone (the snapshot from the rollup: what a schedule runs);
#   - what keeping groups fresh adds to ingesting 1M more trips into that database: the same 1M rows loaded
#     by this commit's trips and by the same code with the group tally switched off (the line of
#     src/ingest.rs that adds a trip to the tally removed, by the sed below; its job's group table stays
#     empty), each into its own database already holding the same ROWS trips, REPEAT times each, alternating,
#     every timed load (these and the first ROWS) started from a quiet server (benchmarks/lib.sh, settle);
#   - `trips groups --top 20` latency, whole command: summing the rollup (snapshot stale, REPEAT runs) and
#     from a current snapshot (REPEAT x 10 runs).
#
# Usage: benchmarks/groups.sh [ROWS] [--repeat R]   (defaults 10000000, 3)
# Output: summary on stdout, raw numbers in benchmarks/results/<date>-<host>/groups-<ROWS>/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_args 10000000 "$@"
bench_start
trap 'git -C "$REPO" worktree remove --force "$WORK/base" 2>/dev/null; bench_cleanup' EXIT
git -C "$REPO" worktree add --quiet --detach "$WORK/base" HEAD
git -C "$REPO" diff HEAD -- src | git -C "$WORK/base" apply --allow-empty   # uncommitted changes too
TALLY='^\( *\)groups\.add(group, trip\.departed_at);$'
grep -q "$TALLY" "$WORK/base/src/ingest.rs" || { log "src/ingest.rs no longer has the group tally line"; exit 1; }
sed -i "s/$TALLY/\1let _ = group; \/\/ benchmarks\/groups.sh: no group tally/" "$WORK/base/src/ingest.rs"
(cd "$WORK/base" && cargo build --release --quiet --target-dir "$WORK/base-target")
NEW=$TRIPS OLD=$WORK/base-target/release/trips
results_dir "groups-$ROWS"
url() { db_url "$1"; }

log "generating $ROWS + 1000000 trips"
"$NEW" gen --rows "$ROWS" --seed 42 >"$WORK/base.csv"
"$NEW" gen --rows 1000000 --seed 43 >"$WORK/more.csv"

echo "step,binary,run,seconds" >"$OUT/raw.csv"
record() { echo "$1,$2,$3,$4" >>"$OUT/raw.csv"; log "  $1 $2 run $3: $4 s"; }
for b in new old; do
    bin=$NEW; [ $b = old ] && bin=$OLD
    fresh_db "groups_$b" "$bin"
    settle
    t0=$(now); DATABASE_URL=$(url "groups_$b") "$bin" ingest --progress-secs 0 "$WORK/base.csv" 2>/dev/null; t1=$(now)
    record "ingest_$ROWS" $b 1 "$(elapsed "$t0" "$t1")"
done
for run in $(seq "$REPEAT"); do
    for b in new old; do
        bin=$NEW; [ $b = old ] && bin=$OLD
        settle
        t0=$(now); DATABASE_URL=$(url "groups_$b") "$bin" ingest --force --progress-secs 0 "$WORK/more.csv" 2>/dev/null; t1=$(now)
        record ingest_1M_more $b "$run" "$(elapsed "$t0" "$t1")"
    done
done
export DATABASE_URL=$(url groups_new)
# The snapshot is stale now (the 1M files came after any refresh): trips groups sums the rollup.
for run in $(seq "$REPEAT"); do
    t0=$(now); "$NEW" groups --top 20 >/dev/null; t1=$(now)
    record groups_top20_live new "$run" "$(elapsed "$t0" "$t1")"
done
t0=$(now); "$NEW" refresh 2>/dev/null; t1=$(now)
record refresh_full new 1 "$(elapsed "$t0" "$t1")"
t0=$(now); psql_at "$PORT" groups_new -c "SELECT refresh_trip_groups()" >/dev/null; t1=$(now)
record refresh_snapshot_only new 1 "$(elapsed "$t0" "$t1")"
for run in $(seq $((REPEAT * 10))); do
    t0=$(now); "$NEW" groups --top 20 >/dev/null; t1=$(now)
    record groups_top20_snapshot new "$run" "$(elapsed "$t0" "$t1")"
done
q() { psql_at "$PORT" groups_new -tAc "$1"; }
{
    echo "command: benchmarks/groups.sh $ROWS --repeat $REPEAT"
    echo "commit: $COMMIT"
    echo "date: $(date -u +%FT%TZ)"
    echo "trips: $(q 'SELECT count(*) FROM trip_rows')"
    echo "group_count_rows: $(q 'SELECT count(*) FROM trip_group_counts')"
    echo "groups: $(q 'SELECT count(*) FROM trip_groups')"
    echo "trip_group_counts_bytes: $(q "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = 'trip_group_counts'::regclass")"
    echo "trip_rows_bytes: $(q "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = 'trip_rows'::regclass")"
    echo "trip_groups_bytes: $(q "SELECT pg_total_relation_size('trip_groups')")"
    echo "server: $(q 'SELECT version()')"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) x $(nproc)"
} >"$OUT/environment.txt"
python3 - "$OUT" <<'PY' | tee "$OUT/summary.txt"
import csv, statistics, sys
out = sys.argv[1]
runs = {}
for r in csv.DictReader(open(f"{out}/raw.csv")):
    runs.setdefault((r["step"], r["binary"]), []).append(float(r["seconds"]))
env = dict(l.split(": ", 1) for l in open(f"{out}/environment.txt").read().splitlines())
med = {k: statistics.median(v) for k, v in runs.items()}
show = lambda k: f"{med[k]:.2f} s ({' '.join(f'{x:.2f}' for x in runs[k])})"
print(f"database: {env['trips']} trips, {env['group_count_rows']} group rows (by datasource), {env['groups']} groups")
for k in sorted(runs):
    if k[0].startswith("ingest_") and not k[0].endswith("more"):
        print(f"{k[0]} with the {k[1]} binary: {show(k)}")
new, old = med[("ingest_1M_more", "new")], med[("ingest_1M_more", "old")]
print(f"1M more trips, with groups (this commit): {show(('ingest_1M_more', 'new'))}")
print(f"1M more trips, group tally off (base):     {show(('ingest_1M_more', 'old'))}")
print(f"groups add {new - old:+.2f} s = {100 * (new / old - 1):+.1f}% of the ingest without them")
print(f"full trips refresh (rollups from {env['trips']} trips, then the snapshot): {show(('refresh_full', 'new'))}")
print(f"SELECT refresh_trip_groups() (snapshot from the rollup): {show(('refresh_snapshot_only', 'new'))}")
for k, what in (("groups_top20_live", "summing the rollup"), ("groups_top20_snapshot", "from the current snapshot")):
    g = sorted(runs[(k, "new")])
    print(f"trips groups --top 20, {what} ({len(g)} runs of the command): median "
          f"{statistics.median(g) * 1000:.0f} ms, max {g[-1] * 1000:.0f} ms")
n = int(env["trips"])
print(f"storage per trip: trips {int(env['trip_rows_bytes']) / n:.1f} B, group tally {int(env['trip_group_counts_bytes']) / n:.1f} B, "
      f"snapshot {int(env['trip_groups_bytes']) / n:.1f} B")
PY
