#!/usr/bin/env bash
# Ingest status benchmarks:
#   1. latency: how long after the database makes a change to a job (the trigger's `at`) a listening client
#      receives the event, over one ingest of ROWS trips with progress every ROWS/400 records (~400 events);
#   2. cost of progress reporting: the same ROWS trips ingested with progress every second vs. with periodic
#      progress off (--progress-secs 0), alternating, REPEAT times each, each into a fresh database.
#
# Usage: benchmarks/status.sh [ROWS] [--repeat R]    (ROWS default 2000000, R default 3)
# Output: a summary on stdout, raw numbers in benchmarks/results/<date>-<host>/status-<ROWS>/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_args 2000000 "$@"
DB=trips_bench
bench_start --example status_latency
trap bench_cleanup EXIT
results_dir "status-$ROWS"
export DATABASE_URL=$(db_url "$DB")

log "generating $ROWS trips"
"$TRIPS" gen --rows "$ROWS" --seed 42 >"$WORK/trips.csv"

log "latency"
fresh_db "$DB"
EVERY=$((ROWS / 400))
# queued + loading + 400 progress + finishing + done
EVENTS=$((ROWS / EVERY + 4))
"$REPO/target/release/examples/status_latency" "$DATABASE_URL" "$EVENTS" >"$OUT/latency.csv" 2>"$WORK/listener.log" &
LISTENER=$!
until grep -q listening "$WORK/listener.log"; do sleep 0.1; done
"$TRIPS" ingest --progress-rows "$EVERY" "$WORK/trips.csv" 2>/dev/null
wait "$LISTENER"

echo "setting,run,seconds" >"$OUT/progress_cost.csv"
for run in $(seq "$REPEAT"); do
    for setting in every_1s off; do
        fresh_db "$DB"
        secs=1; [ "$setting" = off ] && secs=0
        t0=$(now); "$TRIPS" ingest --progress-secs "$secs" "$WORK/trips.csv" 2>/dev/null; t1=$(now)
        s=$(elapsed "$t0" "$t1")
        echo "$setting,$run,$s" >>"$OUT/progress_cost.csv"
        log "  progress $setting run $run: $s s"
    done
done
write_environment "$DB" benchmarks/status.sh $ROWS --repeat $REPEAT

python3 - "$OUT" "$ROWS" <<'PY' | tee "$OUT/summary.txt"
import csv, statistics, sys
from datetime import datetime
out, rows = sys.argv[1], int(sys.argv[2])
lat = []
for state, at, received in csv.reader(open(f"{out}/latency.csv")):
    made = datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
    lat.append((float(received) - made) * 1000)
lat.sort()
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"notification latency over {len(lat)} events: median {statistics.median(lat):.2f} ms, "
      f"p95 {p(0.95):.2f} ms, max {lat[-1]:.2f} ms")
runs = {}
for r in csv.DictReader(open(f"{out}/progress_cost.csv")):
    runs.setdefault(r["setting"], []).append(float(r["seconds"]))
on, off = statistics.median(runs["every_1s"]), statistics.median(runs["off"])
print(f"ingest of {rows} rows, median of {len(runs['off'])}: progress every 1 s {on:.2f} s "
      f"({' '.join(f'{x:.2f}' for x in runs['every_1s'])}), progress off {off:.2f} s "
      f"({' '.join(f'{x:.2f}' for x in runs['off'])}): {100 * (on / off - 1):+.1f}%")
PY
