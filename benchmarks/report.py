"""Summary and plots of a benchmarks/run.sh run: reads raw.csv and latency-N.csv from the results folder,
writes summary.md (a table per size, then each goal of the scale issue as met or not) and three PNG plots.

Usage: python3 benchmarks/report.py RESULTS_DIR
"""

import csv
import os
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

out = sys.argv[1]
raw = defaultdict(list)  # (size, metric, method) -> values
for r in csv.DictReader(open(os.path.join(out, "raw.csv"))):
    raw[(int(r["size"]), r["metric"], r["method"])].append(float(r["value"]))
sizes = sorted({k[0] for k in raw})


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def one(n, metric, method):
    v = raw.get((n, metric, method))
    return statistics.median(v) if v else None


def latency(n):
    """weekly_avg latencies by group, and the plain SQL beside ours on the same areas."""
    path = os.path.join(out, f"latency-{n}.csv")
    rows = list(csv.DictReader(open(path))) if os.path.exists(path) else []
    groups = {
        "box, by origin/destination": lambda r: r["kind"] == "box" and r["by"] in ("origin", "destination"),
        "polygon, by origin/destination": lambda r: r["kind"] == "polygon" and r["by"] in ("origin", "destination"),
        "box or polygon, by both/either": lambda r: r["by"] in ("both", "either"),
        "all areas": lambda r: True,
    }
    out_rows = {k: [float(r["ours_ms"]) for r in rows if t(r)] for k, t in groups.items()}
    same = [r for r in rows if r["plain_ms"]]
    mism_path = os.path.join(out, f"mismatches-{n}.txt")
    mism = sum(1 for _ in open(mism_path)) if os.path.exists(mism_path) else 0
    return out_rows, [float(r["ours_ms"]) for r in same], [float(r["plain_ms"]) for r in same], mism


def fmt(x, digits=1):
    return "n/a" if x is None else f"{x:,.{digits}f}"


lines = ["# benchmarks/run.sh results", ""]
env = os.path.join(out, "environment.txt")
if os.path.exists(env):
    lines += ["```", open(env).read().rstrip(), "```", ""]
summary = {}
for n in sizes:
    lines += [f"## {n:,} trips", ""]
    lines += ["| ingest | seconds | rows/s | vs trips |", "| --- | ---: | ---: | ---: |"]
    ours = one(n, "ingest_seconds", "trips")
    for m in ["trips", "ceiling", "psql_copy", "ogr2ogr", "gen_only"]:
        s = one(n, "ingest_seconds", m)
        if s is not None:
            lines.append(f"| {m} | {s:,.1f} | {n / s:,.0f} | {ours / s:.2f}x |" if ours else "")
    rss = one(n, "loader_peak_rss_kb", "trips")
    lines += ["", f"Loader peak RSS: {fmt(rss / 1024 if rss else None)} MB.", ""]
    more_l, more_e = one(n, "more_1M_seconds", "into_loaded"), one(n, "more_1M_seconds", "into_empty")
    if more_l and more_e:
        lines += [f"1M more trips: {more_l:.1f} s into this database, {more_e:.1f} s into an empty one "
                  f"({more_l / more_e:.2f}x).", ""]
    lines += ["| storage | bytes | bytes per trip |", "| --- | ---: | ---: |"]
    for m in ["trips_heap", "trips_indexes", "aggregates_heap", "aggregates_indexes", "total", "psql_copy_table"]:
        b = one(n, "bytes", m)
        if b is not None:
            lines.append(f"| {m} | {b:,.0f} | {b / n:.1f} |")
    lines += ["", "| maintenance | seconds |", "| --- | ---: |"]
    for m in ["vacuum_analyze", "refresh_trip_groups"]:
        lines.append(f"| {m} | {fmt(one(n, 'maintenance_seconds', m))} |")
    groups, ours_same, plain_same, mism = latency(n)
    lines += ["", "| query | n | p50 ms | p95 ms |", "| --- | ---: | ---: | ---: |"]
    for k, xs in groups.items():
        lines.append(f"| weekly_avg, {k} | {len(xs)} | {pct(xs, .5):.2f} | {pct(xs, .95):.2f} |")
    for m in ["weekly_avg_region", "weekly_avg_region_plain", "groups_top20_rollup", "groups_top20_snapshot",
              "queries_q1", "queries_q1_plain", "queries_q2", "queries_q2_plain"]:
        xs = raw.get((n, "query_ms", m), [])
        if xs:
            lines.append(f"| {m} | {len(xs)} | {pct(xs, .5):,.2f} | {pct(xs, .95):,.2f} |")
    ratio = pct(plain_same, .5) / pct(ours_same, .5) if ours_same else None
    lines += ["", f"Same {len(ours_same)} areas with the plain SQL: weekly_avg p50 {pct(ours_same, .5):.2f} ms, "
              f"plain p50 {pct(plain_same, .5):,.0f} ms: {fmt(ratio, 0)}x; answers that differ: {mism}.", ""]
    summary[n] = dict(ours=ours, ratio=ratio, groups=groups, more=(more_l, more_e), rss=rss,
                      total=one(n, "bytes", "total"), ceiling=one(n, "ingest_seconds", "ceiling"))

lines += ["## Goals", "", "| goal | measured | met |", "| --- | --- | --- |"]


def goal(text, measured, ok):
    lines.append(f"| {text} | {measured} | {'n/a' if ok is None else ('yes' if ok else 'no')} |")


big = max(sizes)
s = summary[big]
goal(f"{big:,} trips ingested end to end in under 10 minutes (ambition 5)",
     f"{s['ours'] / 60:.1f} min", s["ours"] < 600 if big >= 100_000_000 else None)
if 10_000_000 in summary:
    t = summary[10_000_000]
    r = t["ceiling"] / t["ours"]
    goal("rows/s at 10M at least 0.6x the binary COPY ceiling", f"{r:.2f}x", r >= 0.6)
p95 = pct(s["groups"]["all areas"], .95)
goal(f"weekly_avg p95 under 10 ms at {big:,}", f"{p95:.1f} ms (boxes by origin/destination: "
     f"{pct(s['groups']['box, by origin/destination'], .95):.1f} ms)", p95 < 10 if big >= 100_000_000 else None)
goal(f"weekly_avg at least 500x faster than the plain SQL at {big:,}", f"{fmt(s['ratio'], 0)}x (medians)",
     s["ratio"] >= 500 if s["ratio"] else None)
bpt = s["total"] / big if s["total"] else None
goal(f"at most 100 bytes per trip all-in at {big:,}", f"{fmt(bpt)} B", bpt <= 100 if bpt else None)
ml, me = s["more"]
if ml and me:
    goal(f"1M more trips into {big:,} no slower than 1.2x into an empty database", f"{ml / me:.2f}x",
         ml / me <= 1.2)
rss = [summary[n]["rss"] for n in sizes if summary[n]["rss"]]
if len(rss) > 1:
    goal("loader memory flat in N", " / ".join(f"{r / 1024:.0f} MB" for r in rss), max(rss) <= 1.1 * min(rss))
open(os.path.join(out, "summary.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))

# Plots.
def plot(name, title, ylabel, series, logy=True):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, points in series.items():
        pts = [(n, v) for n, v in points if v]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("trips in the database")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, name), dpi=110)


plot("ingest_rows_per_s.png", "Ingest throughput (end to end)", "rows/s",
     {m: [(n, n / v if (v := one(n, "ingest_seconds", m)) else None) for n in sizes]
      for m in ["trips", "ceiling", "psql_copy", "ogr2ogr"]})
series = {f"weekly_avg {k}": [(n, pct(latency(n)[0][k], .95)) for n in sizes] for k in latency(sizes[0])[0]}
series["weekly_avg plain SQL"] = [(n, pct(latency(n)[2], .95)) for n in sizes]
for m in ["weekly_avg_region", "groups_top20_snapshot", "queries_q1", "queries_q1_plain"]:
    series[m] = [(n, pct(raw.get((n, "query_ms", m), []), .95)) for n in sizes]
plot("query_p95_ms.png", "Query latency, p95", "ms", series)
plot("bytes_per_trip.png", "Storage per trip", "bytes per trip",
     {m: [(n, v / n if (v := one(n, "bytes", m)) else None) for n in sizes]
      for m in ["trips_heap", "aggregates_heap", "aggregates_indexes", "total", "psql_copy_table"]}, logy=False)
