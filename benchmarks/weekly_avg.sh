#!/usr/bin/env bash
# weekly_avg latency: for each size, loads N generated trips into a fresh database, then asks AREAS random
# areas (boxes 100 m to 100 km wide, one in four a polygon, `by` cycling through origin, destination, both,
# either) with weekly_avg, timed by a client; the first PLAIN areas are also answered by the plain SQL over
# the `trips` view (timed the same way, and checked to give the same number).
#
# Usage: benchmarks/weekly_avg.sh [N...] [--areas A] [--plain P]   (default: 1000000 10000000, 300, 40)
# Output: a summary on stdout, raw numbers in benchmarks/results/<date>-<host>/weekly_avg/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
SIZES=() AREAS=300 PLAIN=40
while [ $# -gt 0 ]; do
    case $1 in
        --areas) AREAS=$2; shift 2 ;;
        --plain) PLAIN=$2; shift 2 ;;
        *) SIZES+=("$1"); shift ;;
    esac
done
[ ${#SIZES[@]} -gt 0 ] || SIZES=(1000000 10000000)
DB=trips_bench
bench_start --example weekly_avg_bench
trap bench_cleanup EXIT
results_dir weekly_avg
export DATABASE_URL=$(db_url "$DB")

for n in "${SIZES[@]}"; do
    log "loading $n trips"
    fresh_db "$DB"
    "$TRIPS" gen --rows "$n" --seed 42 | "$TRIPS" ingest --progress-secs 0 - 2>"$OUT/load-$n.txt"
    psql_at "$PORT" "$DB" -qc "VACUUM ANALYZE"
    log "asking $AREAS areas ($PLAIN also with the plain SQL)"
    "$REPO/target/release/examples/weekly_avg_bench" "$DATABASE_URL" "$AREAS" "$PLAIN" 7 \
        >"$OUT/latency-$n.csv" 2>"$OUT/mismatches-$n.txt"
done
{
    echo "command: benchmarks/weekly_avg.sh ${SIZES[*]} --areas $AREAS --plain $PLAIN"
    echo "commit: $COMMIT"
    echo "date: $(date -u +%FT%TZ)"
    echo "server: $(psql_at "$PORT" "$DB" -tAc 'SELECT version()')"
    echo "postgis: $(psql_at "$PORT" "$DB" -tAc 'SELECT postgis_lib_version()')"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) x $(nproc)"
} >"$OUT/environment.txt"

python3 - "$OUT" "${SIZES[@]}" <<'PY' | tee "$OUT/summary.txt"
import csv, sys
out, sizes = sys.argv[1], sys.argv[2:]
def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")
print(f"{'trips':>10} {'which':<12} {'n':>4} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}")
for n in sizes:
    rows = list(csv.DictReader(open(f"{out}/latency-{n}.csv")))
    groups = {k: (lambda r, k=k: k in ("all", r["by"], r["kind"]))
              for k in ["origin", "destination", "both", "either", "box", "polygon", "all"]}
    for kind in ["box", "polygon"]:
        for bys in ["origin", "destination"], ["both", "either"]:
            groups[f"{kind} {'/'.join(b[0] for b in bys)}"] = lambda r, kind=kind, bys=bys: r["kind"] == kind and r["by"] in bys
    for key, test in groups.items():
        xs = [float(r["ours_ms"]) for r in rows if test(r)]
        print(f"{n:>10} {key:<12} {len(xs):>4} {pct(xs, .5):9.2f} {pct(xs, .95):9.2f} {max(xs):9.2f}")
    both = [r for r in rows if r["plain_ms"]]
    ours = [float(r["ours_ms"]) for r in both]
    plain = [float(r["plain_ms"]) for r in both]
    mism = sum(1 for _ in open(f"{out}/mismatches-{n}.txt"))
    print(f"{n:>10} same {len(both)} areas: weekly_avg p50 {pct(ours, .5):.2f} ms p95 {pct(ours, .95):.2f} ms; "
          f"plain SQL p50 {pct(plain, .5):.1f} ms p95 {pct(plain, .95):.1f} ms; "
          f"ratio of medians {pct(plain, .5) / pct(ours, .5):.0f}x; answers that differ: {mism}")
PY
