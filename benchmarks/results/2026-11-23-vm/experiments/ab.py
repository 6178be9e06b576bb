"""Asks the same areas of two SQL functions alternately, in one psql session, and compares answers and times.

Usage: python3 ab.py AREAS.tsv SETUP.sql ROUNDS OLD NEW [DATABASE]
  AREAS.tsv  one area per line: by <TAB> WKT (by: origin, destination, both or either)
  SETUP.sql  run first in the same session (it may BEGIN and create the function under test; the session
             ends without COMMIT, so nothing it does stays)
  OLD, NEW   SQL calls with {area} (the geometry) and {side} (1 for origin, 2 for destination), e.g.
             "trip_area_count({area}, NULL, {side}::smallint)"
  DATABASE   psql connection string, default "host=localhost port=54329 user=trips dbname=trips_bench"
Each round asks every area of both, in alternating order; an area's time is the median of its rounds, as
psql's \\timing reports it (server round trip, no client start-up).
"""
import re
import statistics
import subprocess
import sys

areas = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
setup, rounds, calls = sys.argv[2], int(sys.argv[3]), {"old": sys.argv[4], "new": sys.argv[5]}
database = sys.argv[6] if len(sys.argv) > 6 else "host=localhost port=54329 user=trips dbname=trips_bench"
lines = ["SET client_min_messages = warning;", "\\i " + setup, "\\timing on"]
for r in range(rounds):
    for i, (by, wkt) in enumerate(areas):
        args = {"area": f"ST_GeomFromText('{wkt}', 4326)", "side": 1 if by == "origin" else 2}
        pair = [f"SELECT '{k}', {i}, {calls[k].format(**args)};" for k in ("old", "new")]
        lines += pair[::-1] if (r + i) % 2 else pair
run = subprocess.run(["psql", database, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"],
                     input="\n".join(lines) + "\n", capture_output=True, text=True)
if run.returncode:
    sys.exit(run.stderr)
times, answers, current = {}, {}, None
for line in run.stdout.splitlines():
    m = re.match(r"^(old|new)\|(\d+)\|(-?\d+)$", line)
    if m:
        current = (m.group(1), int(m.group(2)))
        answers.setdefault(current, set()).add(int(m.group(3)))
        continue
    m = re.match(r"^Time: ([\d.]+) ms", line)
    if m and current:
        times.setdefault(current, []).append(float(m.group(1)))
        current = None


def pct(values, q):
    values = sorted(values)
    return values[max(0, -(-len(values) * q // 100) - 1)]


med = {k: [statistics.median(times[(k, i)]) for i in range(len(areas))] for k in calls}
ratios = [n / o for o, n in zip(med["old"], med["new"])]
differ = [i for i in range(len(areas)) if len(answers[("old", i)] | answers[("new", i)]) != 1]
print(f"areas {len(areas)}, rounds {rounds}, answers that differ: {len(differ)} {differ or ''}")
for k in calls:
    print(f"{k}: p50 {pct(med[k], 50):.2f} ms, p95 {pct(med[k], 95):.2f} ms, max {max(med[k]):.2f} ms, "
          f"sum {sum(med[k]):.0f} ms   {calls[k]}")
print(f"new / old per area: median {statistics.median(ratios):.2f}, min {min(ratios):.2f}, max {max(ratios):.2f}")
worst = sorted(range(len(areas)), key=lambda i: -ratios[i])[:3]
print("largest ratios: " + ", ".join(f"line {i + 1} ({areas[i][0]}) {med['old'][i]:.1f} -> {med['new'][i]:.1f} ms"
                                     for i in worst))
