"""Summary and plots of a benchmarks/run.sh run: reads raw.csv and latency-*.csv from the results folder and
writes summary.md (one table per case, then the budget of the lean-store issue, each line met or not),
budget.png (ingest rate, bytes per trip and p95 latency per case) and against-n.png (the same three against
the number of trips N, a line per shape and arrival, over this run and the runs given with --with: runs
at other sizes, since one run.sh run at 100M takes as long as the smaller sizes together).

Usage: python3 benchmarks/report.py RESULTS_DIR [--with OTHER_RESULTS_DIR]...
"""

import argparse
import csv
import os
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

parser = argparse.ArgumentParser(usage=__doc__.split("Usage: ")[1])
parser.add_argument("results_dir")
parser.add_argument("--with", dest="others", action="append", default=[], metavar="OTHER_RESULTS_DIR")
args = parser.parse_args()
out, others = args.results_dir, args.others


def read_raw(folder):
    """(case, metric, method) -> values, from a run's raw.csv."""
    values = defaultdict(list)
    for r in csv.DictReader(open(os.path.join(folder, "raw.csv"))):
        values[(r["case"], r["metric"], r["method"])].append(float(r["value"]))
    return values


def case_key(c):
    spread, n, files = c.split("-")
    return spread, int(n), int(files)


raw = read_raw(out)
cases = sorted({k[0] for k in raw}, key=case_key)


def one(case, metric, method, values=raw):
    v = values.get((case, metric, method))
    return statistics.median(v) if v else None


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None


GROUPS = {
    "boxes o/d": lambda r: r["kind"] == "box" and r["by"] in ("origin", "destination"),
    "polygons o/d": lambda r: r["kind"] == "polygon" and r["by"] in ("origin", "destination"),
    "both/either": lambda r: r["by"] in ("both", "either"),
    "all": lambda r: True,
}


def latency(case, suffix="", folder=out):
    path = os.path.join(folder, f"latency-{case}{suffix}.csv")
    rows = list(csv.DictReader(open(path))) if os.path.exists(path) else []
    groups = {k: [float(r["ours_ms"]) for r in rows if t(r)] for k, t in GROUPS.items()}
    paired = [r for r in rows if r["plain_ms"]]
    mism_path = os.path.join(folder, f"mismatches-{case}{suffix}.txt")
    mism = sum(1 for line in open(mism_path) if line.strip()) if os.path.exists(mism_path) else 0
    return groups, [float(r["ours_ms"]) for r in paired], [float(r["plain_ms"]) for r in paired], mism


def f(x, digits=1):
    return "n/a" if x is None else f"{x:,.{digits}f}"


def trips_of(case):
    return int(case.split("-")[1])


lines = ["# benchmarks/run.sh: the lean store", ""]
env = os.path.join(out, "environment.txt")
if os.path.exists(env):
    lines += ["```", open(env).read().rstrip(), "```", ""]

summary = {}
for c in cases:
    n = trips_of(c)
    s = summary[c] = {}
    s["ingest"] = one(c, "ingest_seconds", "trips")
    s["ceiling"] = one(c, "ingest_seconds", "ceiling")
    s["psql"] = one(c, "ingest_seconds", "psql_copy")
    s["ogr"] = one(c, "ingest_seconds", "ogr2ogr")
    s["rss_mb"] = (one(c, "loader_peak_rss_kb", "trips") or 0) / 1024
    s["bytes"] = (one(c, "bytes", "total") or 0) / n
    s["parts"] = {
        part: sum((one(c, "bytes", f"{part}_{k}") or 0) for k in ("heap", "indexes")) / n
        for part in ("trips", "trip_cells", "trip_groups", "other")
    }
    s["lat"], s["ours_paired"], s["plain"], s["mism"] = latency(c)
    s["lat4"], _, _, s["mism4"] = latency(c, "-4weeks")
    lines += [f"## {c}: {n:,} trips, {c.split('-')[0]}, {c.split('-')[2]} file(s)", ""]
    lines += ["| measure | value |", "|---|---|"]
    lines.append(f"| `trips ingest`, end to end | {f(s['ingest'])} s ({f(n / s['ingest'] / 1000 if s['ingest'] else None)}k rows/s) |")
    if s["ceiling"]:
        lines.append(f"| server-side binary COPY (ceiling) | {f(s['ceiling'])} s: ours is {f(s['ceiling'] / s['ingest'], 2)}x of it |")
    if s["psql"]:
        lines.append(f"| `psql \\copy` into a bare geometry table | {f(s['psql'])} s: ours is {f(s['psql'] / s['ingest'], 2)}x as fast |")
    if s["ogr"]:
        lines.append(f"| ogr2ogr | {f(s['ogr'])} s |")
    merges = one(c, "merges", "trips")
    if merges is not None:
        lines.append(f"| merges run by the loader | {int(merges)} |")
    lines.append(f"| loader peak memory | {f(s['rss_mb'])} MB |")
    lines.append(
        f"| bytes per trip, all in | {f(s['bytes'])} (trips {f(s['parts']['trips'])}, cells {f(s['parts']['trip_cells'])}, "
        f"other {f(s['parts']['other'])}) |"
    )
    s["snapshot"] = (one(c, "bytes", "trip_groups_snapshot") or 0) / n
    lines.append(f"| the trip_groups snapshot, refreshed | {f(s['snapshot'])} bytes per trip: {f(s['bytes'] + s['snapshot'])} with it |")
    lines.append(f"| pieces of trip_rows / trip_cells | {f(one(c, 'pieces', 'trip_rows'), 0)} / {f(one(c, 'pieces', 'trip_cells'), 0)} |")
    lines.append(f"| groups in the snapshot | {f(one(c, 'groups', 'snapshot_groups'), 0)} ({f(n / (one(c, 'groups', 'snapshot_groups') or 1))} trips per group) |")
    for label, groups in (("default window", s["lat"]), ("4-week window", s["lat4"])):
        for g, xs in groups.items():
            lines.append(f"| weekly_avg {g}, {label}: p50 / p95 ms ({len(xs)} areas) | {f(pct(xs, 0.5))} / {f(pct(xs, 0.95))} |")
    if s["plain"]:
        ratio = statistics.median(s["plain"]) / statistics.median(s["ours_paired"])
        lines.append(f"| plain SQL on the same areas, median | {f(statistics.median(s['plain']))} ms: ours is {f(ratio, 0)}x faster |")
    lines.append(f"| answers differing from the plain SQL | {s['mism']} (default window), {s['mism4']} (4 weeks) |")
    for m, label in (("weekly_avg_region", "weekly_avg_region"), ("queries_q1", "queries.sql q1"), ("queries_q2", "queries.sql q2"),
                     ("groups_top20_stale", "`trips groups --top 20`, snapshot never refreshed"), ("groups_top20_snapshot", "the same, snapshot fresh"),
                     ("groups_top20_stale_small", "the same, snapshot stale by five files of 1,000 trips")):
        v = raw.get((c, "query_ms", m))
        if v:
            lines.append(f"| {label}: median / max ms | {f(statistics.median(v))} / {f(max(v))} |")
    lines.append(f"| refresh_trip_groups() | {f(one(c, 'maintenance_seconds', 'refresh_trip_groups'))} s |")
    lines.append(f"| a file of 1,000 trips into the loaded database (median of 5) | {f(one(c, 'small_file_seconds', 'trips'), 2)} s |")
    lines.append("")

# The budget: one line per item of the issue, per shape and size.
lines += ["## Against the budget", "", "| budget | case | measured | met |", "|---|---|---|---|"]


def row(budget, case, measured, ok):
    lines.append(f"| {budget} | {case} | {measured} | {'yes' if ok else 'no'} |")


for c in cases:
    s = summary[c]
    spread, n, files = c.split("-")
    if files == "1" and s["ceiling"]:
        r = s["ceiling"] / s["ingest"]
        row("ingest >= 0.5x the binary COPY ceiling (ambition 0.7)", c, f"{r:.2f}x", r >= 0.5)
        r = s["psql"] / s["ingest"]
        row("ingest >= 1.5x `psql \\copy`", c, f"{r:.2f}x", r >= 1.5)
        if int(n) >= 100_000_000:
            row("100M trips in under 10 minutes", c, f"{s['ingest'] / 60:.1f} min", s["ingest"] < 600)
    row("bytes per trip <= 120 (ambition 100)", c, f"{s['bytes']:.1f}", s["bytes"] <= 120)
    row("loader peak memory <= 500 MB", c, f"{s['rss_mb']:.0f} MB", s["rss_mb"] <= 500)
    if files != "1":
        base = summary.get(f"{spread}-{n}-1")
        if base:
            p95 = pct(s["lat"]["all"], 0.95)
            p95b = pct(base["lat"]["all"], 0.95)
            if p95 and p95b:
                row("many files: query p95 within 1.5x of one file", c, f"{p95:.1f} vs {p95b:.1f} ms ({p95 / p95b:.2f}x)", p95 / p95b <= 1.5)
            row("many files: bytes within 1.2x", c, f"{s['bytes']:.1f} vs {base['bytes']:.1f} ({s['bytes'] / base['bytes']:.2f}x)", s["bytes"] / base["bytes"] <= 1.2)
            row("many files: load time (with merges) within 1.5x", c, f"{s['ingest']:.1f} vs {base['ingest']:.1f} s ({s['ingest'] / base['ingest']:.2f}x)", s["ingest"] / base["ingest"] <= 1.5)
    small = one(c, "small_file_seconds", "trips")
    if small is not None:
        row("a file of 1,000 trips in well under a second", c, f"{small:.2f} s", small < 0.5)
    limits = {"boxes o/d": 10, "polygons o/d": 25, "both/either": 60} if int(n) < 50_000_000 else {"boxes o/d": 50, "polygons o/d": 250, "both/either": 250}
    for g, limit in limits.items():
        xs = s["lat"][g] + s["lat4"][g]
        p95 = pct(xs, 0.95)
        if p95 is not None:
            row(f"p95 {g} <= {limit} ms (both windows)", c, f"{p95:.1f} ms", p95 <= limit)
    if s["plain"]:
        r = statistics.median(s["plain"]) / statistics.median(s["ours_paired"])
        row("median >= 100x faster than the plain SQL", c, f"{r:.0f}x", r >= 100)
    for m, label in (("weekly_avg_region", "regions"), ("queries_q1", "queries.sql q1"), ("queries_q2", "queries.sql q2")):
        v = raw.get((c, "query_ms", m))
        if v:
            row(f"{label} <= 5 ms (median)", c, f"{statistics.median(v):.1f} ms", statistics.median(v) <= 5)
    for m, label in (("groups_top20_stale", "never refreshed"), ("groups_top20_stale_small", "stale by five 1,000-trip files")):
        v = raw.get((c, "query_ms", m))
        if v:
            g = max(v)
            row(f"`trips groups --top 20` <= 2 s, snapshot {label}", c, f"{g / 1000:.2f} s", g <= 2000)
    row("answers equal to the plain SQL", c, f"{s['mism'] + s['mism4']} differ", s["mism"] + s["mism4"] == 0)
lines.append("")
open(os.path.join(out, "summary.md"), "w").write("\n".join(lines) + "\n")

# Plots: one bar per case.
labels = cases
fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
axes[0].bar(labels, [trips_of(c) / summary[c]["ingest"] / 1000 for c in cases])
axes[0].set_title("ingest, end to end (k rows/s)")
axes[1].bar(labels, [summary[c]["bytes"] for c in cases])
axes[1].axhline(120, color="red", linestyle="--")
axes[1].set_title("bytes per trip, all in (budget 120)")
axes[2].bar(labels, [pct(summary[c]["lat"]["all"], 0.95) or 0 for c in cases])
axes[2].set_title("weekly_avg p95, all areas (ms)")
for ax in axes:
    ax.tick_params(axis="x", rotation=45)
fig.tight_layout()
fig.savefig(os.path.join(out, "budget.png"), dpi=90)

# Against N: this run's cases and the other runs' (this run's first where a case is in both), a line per
# shape and arrival ("dense, 1 file", "wide, 2000 files"); the p95 over both windows.
points = defaultdict(dict)  # (spread, files) -> {n: (rows/s, bytes per trip, p95 boxes o/d, p95 all)}
for folder in [out] + others:
    values = raw if folder == out else read_raw(folder)
    for c in sorted({k[0] for k in values}, key=case_key):
        spread, n, files = case_key(c)
        seconds, total = one(c, "ingest_seconds", "trips", values), one(c, "bytes", "total", values)
        if n in points[(spread, files)] or not seconds or not total:
            continue
        lat, lat4 = latency(c, folder=folder)[0], latency(c, "-4weeks", folder=folder)[0]
        points[(spread, files)][n] = (
            n / seconds / 1000,
            total / n,
            pct(lat["boxes o/d"] + lat4["boxes o/d"], 0.95),
            pct(lat["all"] + lat4["all"], 0.95),
        )
fig, axes = plt.subplots(1, 4, figsize=(20, 4.5))
titles = ("ingest, end to end (k rows/s)", "bytes per trip, all in", "p95 boxes by origin or destination (ms)", "p95 every kind (ms)")
for (spread, files), by_n in sorted(points.items()):
    ns = sorted(by_n)
    for i, ax in enumerate(axes):
        ax.plot(ns, [by_n[n][i] for n in ns], marker="o", label=f"{spread}, {files} file{'s' if files > 1 else ''}")
for ax, title in zip(axes, titles):
    ax.set_xscale("log")
    ax.set_xlabel("trips (N)")
    ax.set_title(title)
axes[0].set_ylim(bottom=0)
axes[1].axhline(120, color="red", linestyle="--")
axes[1].set_ylim(bottom=0)
axes[2].set_yscale("log")
axes[3].set_yscale("log")
axes[0].legend(fontsize=8)
fig.tight_layout()
fig.savefig(os.path.join(out, "against-n.png"), dpi=90)
print(f"wrote {out}/summary.md, budget.png and against-n.png")
