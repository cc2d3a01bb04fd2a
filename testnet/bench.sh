#!/usr/bin/env bash
# Throughput/latency rate ladder on fresh local testnets of real bftnode processes.
#
#   testnet/bench.sh [--rates 1000,10000,25000,50000] [--duration 20] [--runs 3]
#                    [--validators 4] [--size 512] [--out DIR] [--keep] [--set KEY=VALUE]…
#   testnet/bench.sh --soak MINUTES --rates RATE [--validators 4] [--size 512] [--out DIR]
#                    [--set KEY=VALUE]… [--keys K]
#
# --keys K: the load writes K distinct keys round-robin (`bftnode load --keys`), a workload of
# updates whose application state stops growing; default a new key per transaction.
#
# --set edits one config.toml line in every home (testnet/up.sh's CONFIG_SET), e.g.
# `--set retain_heights=10000` to prune a soak's chain.
#
# --soak: one testnet offered RATE for MINUTES back-to-back one-minute windows (each a
# `bftnode load --duration 60`); the table and plot are per window, with the disk the testnet
# uses after each (an archive chain keeps about 0.7 KB per committed 512-byte transaction per
# node: 45 GB for 30 minutes at 10,000 tx/s; `--set retain_heights=10000` prunes block bodies),
# to show whether throughput, latency and memory stay flat as the chain grows.
#
# Each run starts a fresh testnet (testnet/up.sh with its own data directory and ports 27600/27700,
# so a testnet/up.sh network on the default ports is not touched), then offers each rate in turn
# with `bftnode load` over every node's RPC (512-byte puts), waiting for the mempools to empty
# between rates, and stops it. Per rate it records the load report (steady-state committed tx/s,
# intended-send → commit p50/p99, refused) and, per node, CPU % over the rate's run and RSS after.
# Written to DIR (default testnet/data/bench/<UTC time>): results.jsonl (one line per run and
# rate), summary.json and table.md (medians over the runs), plot.png (committed tx/s and p50/p99
# against offered rate; python3 with matplotlib, installed with pip if missing). The testnet's
# data (gigabytes after a ladder: every committed transaction is stored) is deleted at the end
# unless --keep.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

RATES="1000,10000,25000,50000"
DURATION=20
RUNS=3
N=4
SIZE=512
OUT="testnet/data/bench/$(date -u +%Y%m%dT%H%M%SZ)"
KEEP=0
SOAK=0
CONFIG_SET=""
KEYS=""

while (( $# > 0 )); do
  case "$1" in
    --rates) RATES="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --validators) N="$2"; shift 2 ;;
    --size) SIZE="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --soak) SOAK="$2"; shift 2 ;;
    --set) CONFIG_SET="${CONFIG_SET:+$CONFIG_SET }$2"; shift 2 ;;
    --keys) KEYS="$2"; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$RATES" =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "bench.sh: --rates must be N[,N…]" >&2; exit 2; }
if [[ "$SOAK" != 0 ]]; then
  [[ "$SOAK" =~ ^[0-9]+$ && "$RATES" =~ ^[0-9]+$ ]] \
    || { echo "bench.sh: --soak MINUTES takes one --rates RATE" >&2; exit 2; }
  RATES="$(for ((m = 0; m < SOAK; m++)); do printf '%s,' "$RATES"; done)"
  RATES="${RATES%,}"
  DURATION=60
  RUNS=1
fi
for v in "$DURATION" "$RUNS" "$N" "$SIZE"; do
  [[ "$v" =~ ^[0-9]+$ ]] && (( v > 0 )) || { echo "bench.sh: numbers must be positive integers" >&2; exit 2; }
done

mkdir -p "$OUT"
export CONFIG_SET TESTNET_DATA="$OUT/testnet" BASE_P2P_PORT=27600 BASE_RPC_PORT=27700 CHAIN_ID=bftnode-bench
BIN=target/release/bftnode
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
IFS=',' read -r -a rates <<< "$RATES"
rpcs="$(for ((i = 0; i < N; i++)); do printf 'http://127.0.0.1:%d,' $((BASE_RPC_PORT + i)); done)"
rpcs="${rpcs%,}"
TICKS="$(getconf CLK_TCK)"

pids() { awk '{sub("pid=", "", $2); print $2}' "$TESTNET_DATA/nodes.txt"; }
# cpu_ticks PID: user + system CPU ticks so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_mb() { awk '/^VmRSS:/ {printf "%.0f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo 0; }
mempool_txs() {
  "$BIN" status --rpc "http://127.0.0.1:$((BASE_RPC_PORT + $1))" --output json --timeout 2 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["mempool_txs"])' 2>/dev/null || echo 0
}
cleanup() {
  if (( KEEP )); then testnet/down.sh >/dev/null 2>&1 || true
  else testnet/down.sh --clean >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

for ((run = 1; run <= RUNS; run++)); do
  echo "==> run $run/$RUNS: fresh $N-validator testnet in $TESTNET_DATA" >&2
  testnet/down.sh --clean >/dev/null 2>&1 || true
  testnet/up.sh "$N" > "$OUT/up-$run.log" 2>&1 || { tail -20 "$OUT/up-$run.log" >&2; exit 1; }
  mapfile -t PIDS < <(pids)
  for rate in "${rates[@]}"; do
    before=(); for p in "${PIDS[@]}"; do before+=("$(cpu_ticks "$p")"); done
    t0=$(date +%s.%N)
    report="$("$BIN" load --rpc "$rpcs" --rate "$rate" --size "$SIZE" --duration "$DURATION" \
      ${KEYS:+--keys "$KEYS"} --drain 30 --output json 2>> "$OUT/load-$run.log")" \
      || report='{"error": true}'
    t1=$(date +%s.%N)
    cpu=(); rss=()
    for i in "${!PIDS[@]}"; do
      after="$(cpu_ticks "${PIDS[$i]}")"
      cpu+=("$(python3 -c "print(round(($after - ${before[$i]}) / $TICKS / ($t1 - $t0) * 100, 1))")")
      rss+=("$(rss_mb "${PIDS[$i]}")")
    done
    disk="$(du -sm "$TESTNET_DATA" | cut -f1)"
    storage="$(python3 testnet/node_stats.py ${rpcs//,/ })"
    line="$(REPORT="$report" STORAGE="$storage" python3 - "$run" "$rate" "$N" "$SIZE" "$DURATION" "${cpu[*]}" "${rss[*]}" "$disk" <<'PY'
import json, os, sys
run, rate, n, size, duration, cpu, rss, disk = sys.argv[1:9]
r = json.loads(os.environ["REPORT"])
r.update(run=int(run), offered_tps=int(rate), validators=int(n), size=int(size),
         duration_s=int(duration), cpu_pct_per_node=[float(x) for x in cpu.split()],
         rss_mb_per_node=[int(x) for x in rss.split()], testnet_disk_mb=int(disk),
         storage_per_node=json.loads(os.environ["STORAGE"]))
print(json.dumps(r))
PY
)"
    echo "$line" >> "$RESULTS"
    echo "    $line" >&2
    for ((w = 0; w < 60; w++)); do
      busy=0
      for ((i = 0; i < N; i++)); do (( $(mempool_txs "$i") == 0 )) || busy=1; done
      (( busy == 0 )) && break
      sleep 1
    done
  done
  testnet/down.sh >/dev/null 2>&1 || true
done

python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install --quiet matplotlib >&2
if [[ "$SOAK" != 0 ]]; then
  python3 testnet/bench_report.py --soak "$RESULTS" "$OUT"
else
  python3 testnet/bench_report.py "$RESULTS" "$OUT"
fi
echo "==> $OUT/table.md, summary.json, plot.png" >&2
