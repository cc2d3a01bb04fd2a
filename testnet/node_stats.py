#!/usr/bin/env python3
"""Print, as one JSON list (one object per node, in argument order), each node's RocksDB figures
from its `GET /metrics`: level-0 files and compaction debt (sums over column families), memory
outside the block cache and in it, disk, write stalls, and the cumulative write-time histograms, synced
(persist batches) and unsynced (commit batches), as sum in seconds and count, so that a caller
can take per-window means. A node that does not answer
gives null.

usage: node_stats.py RPC_URL [RPC_URL ...]
"""
import json
import sys
import urllib.request

MB = 1024 * 1024


def scrape(url):
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    sums = {}
    for line in text.splitlines():
        if not line.startswith("bftnode_rocksdb_"):
            continue
        series, _, value = line.rpartition(" ")
        name = series.split("{")[0][len("bftnode_rocksdb_"):]
        try:
            sums[name] = sums.get(name, 0.0) + float(value)
        except ValueError:
            pass
        if name == "l0_files" and 'cf="txindex"' in series:
            sums["l0_files_txindex"] = float(value)
        if name.startswith("write_seconds_") and "sync=" in series:
            kind = "synced" if 'sync="true"' in series else "unsynced"
            sums[f"{kind}_{name}"] = float(value)
    get = lambda k: sums.get(k, 0.0)
    return {
        "l0_files": int(get("l0_files")),
        "l0_files_txindex": int(get("l0_files_txindex")),
        "pending_compaction_mb": round(get("pending_compaction_bytes") / MB, 1),
        "memtable_mb": round(get("memtable_bytes") / MB, 1),
        "table_readers_mb": round(get("table_readers_bytes") / MB, 1),
        "block_cache_mb": round(get("block_cache_bytes") / MB, 1),
        "sst_mb": round(get("sst_bytes") / MB, 1),
        "blob_mb": round(get("blob_bytes") / MB, 1),
        "delayed_write_rate": int(get("delayed_write_rate_bytes")),
        "write_stopped": int(get("write_stopped")),
        "synced_write_seconds_sum": get("synced_write_seconds_sum"),
        "synced_write_seconds_count": int(get("synced_write_seconds_count")),
        "unsynced_write_seconds_sum": get("unsynced_write_seconds_sum"),
        "unsynced_write_seconds_count": int(get("unsynced_write_seconds_count")),
    }


print(json.dumps([scrape(u) for u in sys.argv[1:]]))
