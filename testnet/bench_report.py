#!/usr/bin/env python3
"""Summarise testnet/bench.sh results: medians over runs per offered rate, or (--soak) one row
per one-minute window of a soak, in the order they ran.

usage: bench_report.py [--soak] RESULTS.jsonl OUT_DIR  → OUT_DIR/summary.json, table.md, plot.png
"""
import json
import statistics
import sys
from collections import defaultdict

args = sys.argv[1:]
soak = args[0] == "--soak"
if soak:
    args = args[1:]
results, out = args
lines = []
with open(results) as f:
    for line in f:
        lines.append(json.loads(line))

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt


def soak_report():
    """One row per window; failed windows are kept (as such) so that minutes stay aligned."""
    rows = []
    prev_writes = {}
    for minute, r in enumerate(lines, start=1):
        row = {"minute": minute, "error": bool(r.get("error"))}
        storage = [s for s in r.get("storage_per_node") or [] if s]
        if storage:
            row.update(
                l0_files_max=max(s["l0_files"] for s in storage),
                compaction_debt_mb_max=max(s["pending_compaction_mb"] for s in storage),
                memtable_mb_max=max(s["memtable_mb"] for s in storage),
                table_readers_mb_max=max(s["table_readers_mb"] for s in storage),
                block_cache_mb_max=max((s["block_cache_mb"] for s in storage if "block_cache_mb" in s),
                                       default=None),
                write_stalled_nodes=sum(1 for s in storage
                                        if s["delayed_write_rate"] or s["write_stopped"]),
            )
            # Mean write times over the window, node 0 (cumulative histogram deltas).
            s0 = storage[0]
            for kind in ("synced", "unsynced"):
                total, n = (s0.get(f"{kind}_write_seconds_{k}", 0) for k in ("sum", "count"))
                d_sum, d_n = total - prev_writes.get((kind, "sum"), 0), n - prev_writes.get((kind, "n"), 0)
                row[f"{kind}_write_ms_node0"] = round(1000 * d_sum / d_n, 3) if d_n > 0 else None
                prev_writes[(kind, "sum")], prev_writes[(kind, "n")] = total, n
        if not row["error"]:
            row.update(
                offered_tps=r["offered_tps"],
                committed_tps=r["committed_tps"],
                latency_ms_p50=r["latency_ms_p50"],
                latency_ms_p99=r["latency_ms_p99"],
                rejected=r["rejected"],
                cpu_pct_per_node=statistics.mean(r["cpu_pct_per_node"]),
                rss_mb_max=max(r["rss_mb_per_node"]),
                testnet_disk_mb=r.get("testnet_disk_mb"),
            )
        rows.append(row)
    with open(f"{out}/summary.json", "w") as f:
        json.dump(rows, f, indent=2)
    with open(f"{out}/table.md", "w") as f:
        f.write("| minute | offered tx/s | committed tx/s | p50 ms | p99 ms | refused | CPU %/node "
                "| RSS MB (max) | testnet disk MB | L0 files (max) | compaction debt MB (max) "
                "| memtables MB (max) | SST readers MB (max) | block cache MB (max) "
                "| stalled nodes | synced write ms (node 0) "
                "| commit write ms (node 0) |\n" + "|---" * 17 + "|\n")
        dash = lambda v: "–" if v is None else v
        for r in rows:
            if r["error"]:
                f.write(f"| {r['minute']} | load run failed |" + " |" * 15 + "\n")
                continue
            f.write(f"| {r['minute']} | {r['offered_tps']:,} | {r['committed_tps']:,.0f} "
                    f"| {r['latency_ms_p50']:.1f} | {r['latency_ms_p99']:.1f} | {r['rejected']:,} "
                    f"| {r['cpu_pct_per_node']:.0f} | {r['rss_mb_max']} | {r['testnet_disk_mb']} "
                    f"| {dash(r.get('l0_files_max'))} | {dash(r.get('compaction_debt_mb_max'))} "
                    f"| {dash(r.get('memtable_mb_max'))} "
                    f"| {dash(r.get('table_readers_mb_max'))} "
                    f"| {dash(r.get('block_cache_mb_max'))} "
                    f"| {dash(r.get('write_stalled_nodes'))} "
                    f"| {dash(r.get('synced_write_ms_node0'))} "
                    f"| {dash(r.get('unsynced_write_ms_node0'))} |\n")
    print(open(f"{out}/table.md").read())
    ok = [r for r in rows if not r["error"]]
    x = [r["minute"] for r in ok]
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.2))
    a.plot(x, [r["committed_tps"] for r in ok], "o-", label="committed")
    a.plot(x, [r["offered_tps"] for r in ok], "--", color="grey", label="offered")
    a.set_ylim(0, 1.15 * max(r["offered_tps"] for r in ok))
    a.set_ylabel("tx/s (steady state of the window)")
    b.plot(x, [r["latency_ms_p50"] for r in ok], "o-", label="p50")
    b.plot(x, [r["latency_ms_p99"] for r in ok], "s-", label="p99")
    b.set_ylabel("submit → commit latency, ms")
    c.plot(x, [r["rss_mb_max"] for r in ok], "o-", label="RSS, largest node")
    c.set_ylim(bottom=0)
    c.set_ylabel("RSS, MB")
    disk = [(r["minute"], r["testnet_disk_mb"] / 1024) for r in ok if r["testnet_disk_mb"]]
    if disk:
        d = c.twinx()
        d.plot(*zip(*disk), "s-", color="tab:orange", label="testnet disk")
        d.set_ylim(bottom=0)
        d.set_ylabel("testnet disk, GB (orange)")
    for ax in (a, b, c):
        ax.set_xlabel("minute of the soak")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle("bftnode soak: 512 B transactions, local testnet")
    fig.tight_layout()
    fig.savefig(f"{out}/plot.png", dpi=110)


if soak:
    soak_report()
    sys.exit(0)

by_rate = defaultdict(list)
for r in lines:
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
        # Older results.jsonl (before the load report had it) count as 0.
        "accept_ms_p50": statistics.median(r.get("accept_ms_p50", 0) for r in rs),
        "cpu_pct_per_node": statistics.median(statistics.mean(r["cpu_pct_per_node"]) for r in rs),
        "rss_mb_max": max(max(r["rss_mb_per_node"]) for r in rs),
    })

with open(f"{out}/summary.json", "w") as f:
    json.dump(rows, f, indent=2)
with open(f"{out}/table.md", "w") as f:
    f.write("| offered tx/s | committed tx/s | p50 ms | p99 ms | refused | send lag p99 ms "
            "| accepted p50 ms | CPU %/node | RSS MB (max) | runs |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")
    for r in rows:
        f.write(f"| {r['offered_tps']:,} | {r['committed_tps']:,.0f} | {r['latency_ms_p50']:.1f} "
                f"| {r['latency_ms_p99']:.1f} | {r['rejected']:,.0f} | {r['send_lag_ms_p99']:.1f} "
                f"| {r['accept_ms_p50']:.1f} | {r['cpu_pct_per_node']:.0f} | {r['rss_mb_max']} | {r['runs']} |\n")
print(open(f"{out}/table.md").read())

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
