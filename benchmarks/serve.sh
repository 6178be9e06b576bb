#!/usr/bin/env bash
# `trips serve` under load, beside the same questions asked of PostgreSQL directly:
#   1. GET /v1/weekly-avg?bbox=... from 1, 8 and 32 concurrent clients (examples/http_load.rs, kept-alive
#      connections) for SECONDS each, against pgbench asking weekly_avg() of the same 1,000 boxes from the
#      same numbers of clients; requests per second, p50 and p95 of each;
#   2. the delay of a status event from the database's change (the payload's `at`) to a client of
#      /v1/events (examples/sse_latency.rs), beside a client that LISTENs itself (examples/status_latency.rs),
#      over one ingest with ~400 progress events.
# The boxes: 1,000 centred on trip origins picked by TABLESAMPLE BERNOULLI ... REPEATABLE, 100 m to 100 km tall
# (log-uniform), as wide in metres.
#
# Usage: benchmarks/serve.sh [ROWS] [--seconds S]   (ROWS default 10000000, S default 20)
# Output: a summary on stdout, raw numbers in benchmarks/results/<date>-<host>/serve-<ROWS>/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
SECONDS_EACH=20
args=()
while [ $# -gt 0 ]; do
    case $1 in
        --seconds) SECONDS_EACH=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
bench_args 10000000 "${args[@]}"
DB=trips_serve
LISTEN_ADDR=127.0.0.1:18181
bench_start --example http_load --example sse_latency --example status_latency
SERVER=
trap '[ -n "$SERVER" ] && kill "$SERVER"; bench_cleanup' EXIT
results_dir "serve-$ROWS"
export DATABASE_URL=$(db_url "$DB")
EXAMPLES=$REPO/target/release/examples

log "generating and loading $ROWS trips"
"$TRIPS" gen --rows "$ROWS" --seed 42 >"$WORK/trips.csv"
fresh_db "$DB"
"$TRIPS" ingest --progress never "$WORK/trips.csv"
# About 2,000 trips sampled, the first 1,000 of them taken.
PERCENT=$(awk -v n="$ROWS" 'BEGIN { p = 200000 / n; if (p > 100) p = 100; printf "%.6f", p }')
psql_at "$PORT" "$DB" -q <<SQL
SELECT setseed(0.42);
CREATE TABLE bench_boxes AS
SELECT row_number() OVER () AS i, x - w / 2 AS a, y - h / 2 AS b, x + w / 2 AS c, y + h / 2 AS d
  FROM (SELECT x, y, h, h / cos(radians(y)) AS w
          FROM (SELECT origin_lon / 1e7 AS x, origin_lat / 1e7 AS y,
                       100 * power(1000, random()) / 111320.0 AS h
                  FROM (SELECT origin_lon, origin_lat FROM trip_rows
                          TABLESAMPLE BERNOULLI ($PERCENT) REPEATABLE (42) LIMIT 1000) t) u) v;
VACUUM ANALYZE;
SQL
psql_at "$PORT" "$DB" -tA -F, -c "SELECT a, b, c, d FROM bench_boxes ORDER BY i" >"$WORK/boxes.txt"
printf '\\set i random(1, 1000)\nSELECT weekly_avg(a, b, c, d) FROM bench_boxes WHERE i = :i;\n' >"$WORK/ask.sql"

"$TRIPS" serve --listen "$LISTEN_ADDR" --pool 32 2>"$WORK/serve.log" &
SERVER=$!
until grep -q "^serving" "$WORK/serve.log"; do sleep 0.1; done

echo "side,clients,requests,seconds,requests_per_s,p50_ms,p95_ms,errors" >"$OUT/load.csv"
for clients in 1 8 32; do
    settle
    "$EXAMPLES/http_load" "http://$LISTEN_ADDR" "$WORK/boxes.txt" "$clients" 3 >/dev/null # warm the pool
    line=$("$EXAMPLES/http_load" "http://$LISTEN_ADDR" "$WORK/boxes.txt" "$clients" "$SECONDS_EACH")
    echo "http,$line" >>"$OUT/load.csv"
    log "  http, $clients clients: $line"
    settle
    rm -f "$WORK"/pgbench_log.*
    "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PORT" -U trips -n -c "$clients" -j "$clients" -T 3 \
        -f "$WORK/ask.sql" "$DB" >/dev/null 2>&1
    "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PORT" -U trips -n -c "$clients" -j "$clients" -T "$SECONDS_EACH" \
        -f "$WORK/ask.sql" --log --log-prefix="$WORK/pgbench_log" "$DB" >"$WORK/pgbench.out" 2>&1
    line=$(python3 - "$clients" "$SECONDS_EACH" "$WORK"/pgbench_log.* <<'PY'
import sys
clients, seconds, files = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
# One line per transaction: client_id transaction_no latency_us script_no epoch_s epoch_us
ms = sorted(int(l.split()[2]) / 1000 for f in files for l in open(f))
p = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]
print(f"{clients},{len(ms)},{seconds:.2f},{len(ms) / seconds:.1f},{p(0.5):.2f},{p(0.95):.2f},0")
PY
)
    echo "pgbench,$line" >>"$OUT/load.csv"
    log "  pgbench, $clients clients: $line"
done

log "event delay"
EVENTS_FILE=$WORK/events.csv
"$TRIPS" gen --rows 400000 --seed 43 >"$EVENTS_FILE"
EVENTS=404 # queued, loading, ~400 progress events, finishing, done
"$EXAMPLES/sse_latency" "http://$LISTEN_ADDR" "$EVENTS" >"$OUT/sse_latency.csv" 2>"$WORK/sse.log" &
SSE=$!
"$EXAMPLES/status_latency" "$DATABASE_URL" "$EVENTS" >"$OUT/listen_latency.csv" 2>"$WORK/listen.log" &
LISTENER=$!
until grep -q listening "$WORK/sse.log" && grep -q listening "$WORK/listen.log"; do sleep 0.1; done
"$TRIPS" ingest --progress never --progress-rows 1000 "$EVENTS_FILE"
wait "$SSE" "$LISTENER"

write_environment "$DB" benchmarks/serve.sh $ROWS --seconds $SECONDS_EACH

python3 - "$OUT" "$ROWS" <<'PY' | tee "$OUT/summary.md"
import csv, sys
from datetime import datetime
out, rows = sys.argv[1], int(sys.argv[2])
runs = {(r["side"], r["clients"]): r for r in csv.DictReader(open(f"{out}/load.csv"))}
print(f"# trips serve at {rows:,} trips\n")
print(open(f"{out}/environment.txt").read().replace("\n", "  \n"))
print("| clients | HTTP requests/s | HTTP p50 / p95 ms | pgbench requests/s | pgbench p50 / p95 ms | HTTP errors |")
print("|---:|---:|---:|---:|---:|---:|")
for c in ("1", "8", "32"):
    h, g = runs[("http", c)], runs[("pgbench", c)]
    print(f"| {c} | {float(h['requests_per_s']):.0f} | {float(h['p50_ms']):.1f} / {float(h['p95_ms']):.1f} | "
          f"{float(g['requests_per_s']):.0f} | {float(g['p50_ms']):.1f} / {float(g['p95_ms']):.1f} | {h['errors']} |")
def delays(name):
    d = sorted((float(rec) - datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()) * 1000
               for _, at, rec in csv.reader(open(f"{out}/{name}")))
    return len(d), d[len(d) // 2], d[min(len(d) - 1, int(0.95 * len(d)))]
print()
for name, who in (("sse_latency.csv", "a client of GET /v1/events"), ("listen_latency.csv", "a client that LISTENs itself")):
    n, p50, p95 = delays(name)
    print(f"- event delay, {who}: p50 {p50:.2f} ms, p95 {p95:.2f} ms over {n} events")
PY
