#!/usr/bin/env python3
"""Summarise testnet/bench.sh results: medians over runs per offered rate.

usage: bench_report.py RESULTS.jsonl OUT_DIR  → OUT_DIR/summary.json, table.md, plot.png
"""
import json
import statistics
import sys
from collections import defaultdict

results, out = sys.argv[1], sys.argv[2]
by_rate = defaultdict(list)
with open(results) as f:
    for line in f:
        r = json.loads(line)
        if not r.get("error"):
            by_rate[r["offered_tps"]].append(r)

rows = []
for rate in sorted(by_rate):
    rs = by_rate[rate]
    med = lambda k: statistics.median(r[k] for r in rs)
    rows.append({
        "offered_tps": rate,
        "runs": len(rs),
        "committed_tps": med("committed_tps"),
        "latency_ms_p50": med("latency_ms_p50"),
        "latency_ms_p99": med("latency_ms_p99"),
        "rejected": med("rejected"),
        "send_lag_ms_p99": med("send_lag_ms_p99"),
        "cpu_pct_per_node": statistics.median(statistics.mean(r["cpu_pct_per_node"]) for r in rs),
        "rss_mb_max": max(max(r["rss_mb_per_node"]) for r in rs),
    })

with open(f"{out}/summary.json", "w") as f:
    json.dump(rows, f, indent=2)
with open(f"{out}/table.md", "w") as f:
    f.write("| offered tx/s | committed tx/s | p50 ms | p99 ms | refused | send lag p99 ms "
            "| CPU %/node | RSS MB (max) | runs |\n|---|---|---|---|---|---|---|---|---|\n")
    for r in rows:
        f.write(f"| {r['offered_tps']:,} | {r['committed_tps']:,.0f} | {r['latency_ms_p50']:.1f} "
                f"| {r['latency_ms_p99']:.1f} | {r['rejected']:,.0f} | {r['send_lag_ms_p99']:.1f} "
                f"| {r['cpu_pct_per_node']:.0f} | {r['rss_mb_max']} | {r['runs']} |\n")
print(open(f"{out}/table.md").read())

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

x = [r["offered_tps"] for r in rows]
fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
a.plot(x, [r["committed_tps"] for r in rows], "o-", label="committed")
a.plot(x, x, "--", color="grey", label="offered")
a.set_xlabel("offered tx/s")
a.set_ylabel("committed tx/s (steady state, median)")
a.legend()
a.grid(alpha=0.3)
b.plot(x, [r["latency_ms_p50"] for r in rows], "o-", label="p50")
b.plot(x, [r["latency_ms_p99"] for r in rows], "s-", label="p99")
b.set_yscale("log")
b.set_xlabel("offered tx/s")
b.set_ylabel("submit → commit latency, ms (median of runs)")
b.legend()
b.grid(alpha=0.3, which="both")
fig.suptitle("bftnode: 512 B transactions, local testnet")
fig.tight_layout()
fig.savefig(f"{out}/plot.png", dpi=110)
