#!/usr/bin/env bash
# Separate hosts on one machine: N validators (default 4), each in its own Linux network
# namespace with its own IP, keys made by the key ceremony, every QUIC datagram between them
# through a user-space relay that adds delay, jitter and loss (this kernel has no netem qdisc).
#
#   testnet/wan.sh up [N] [--delay MS] [--jitter MS] [--loss P] [--set KEY=VALUE]…
#                                          build, create, start (background); --set edits one
#                                          config.toml line `KEY = …` on every node (e.g.
#                                          --set timeout_base_ms=2000)
#   testnet/wan.sh load RATE SECS [SIZE]                         `bftnode load` from host 0, JSON
#   testnet/wan.sh stats                                           per-node block commit latency
#   testnet/wan.sh down                                            stop everything, delete namespaces
#
# Needs root and iproute2. Layout (the same as testnet::netns, used by cli/tests/cli.rs):
#   bftwan-sw      switch namespace: bridge br0, relay addresses 10.77.1.(i+1)/16
#   bftwan-<i>     validator i: eth0 10.77.0.(i+1)/16; QUIC on 0.0.0.0:26600, RPC on 0.0.0.0:26700
# The others dial validator i at 10.77.1.(i+1):26600 (the relay), which forwards to
# 10.77.0.(i+1):26600 after the delay. Query a node from the machine with
#   ip netns exec bftwan-0 target/release/bftnode status --rpc http://10.77.0.2:26700
# Homes, logs and the relay's log are in testnet/data-wan (TESTNET_DATA overrides it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=testnet/config_set.sh
source testnet/config_set.sh
DATA="${TESTNET_DATA:-testnet/data-wan}"
BIN="$ROOT/target/release/bftnode"
RELAY="$ROOT/target/release/bftnode-wan-relay"
P=bftwan
CHAIN_ID="${CHAIN_ID:-bftnode-wan}"

die() { echo "wan.sh: $*" >&2; exit 1; }
node_ip() { echo "10.77.0.$(($1 + 1))"; }
relay_ip() { echo "10.77.1.$(($1 + 1))"; }
count() { cat "$DATA/n" 2>/dev/null || echo 0; }
rpcs() { local n i out=(); n="$(count)"; for ((i = 0; i < n; i++)); do out+=("http://$(node_ip "$i"):26700"); done; (IFS=,; echo "${out[*]}"); }
in_ns() { local ns="$1"; shift; ip netns exec "$ns" "$@"; }

down() {
  if [[ -f "$DATA/pids" ]]; then
    while read -r pid; do kill "$pid" 2>/dev/null || true; done < "$DATA/pids"
    sleep 1
    while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done < "$DATA/pids"
    rm -f "$DATA/pids"
  fi
  # Whatever outlived its recorded pid (started by hand, or by an older copy of this script).
  pkill -f "bftnode start --home $DATA/" 2>/dev/null || true
  pkill -f "$RELAY" 2>/dev/null || true
  for ns in $(ip netns list | awk '{print $1}' | grep "^$P-" || true); do
    ip netns del "$ns"
  done
}

up() {
  local n=4 delay=0 jitter=0 loss=0 sets=()
  if [[ $# -gt 0 && "$1" =~ ^[0-9]+$ ]]; then n="$1"; shift; fi
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --delay) delay="${2%ms}"; shift 2 ;;
      --jitter) jitter="${2%ms}"; shift 2 ;;
      --loss) loss="$2"; if [[ "$loss" == *% ]]; then loss="$(python3 -c "print(${loss%\%}/100)")"
              elif python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 1 else 1)" "$loss" 2>/dev/null; then
                echo "wan.sh: --loss takes a probability (0.01) or a percentage (1%); $loss would drop every datagram" >&2; exit 2
              fi; shift 2 ;;
      --set) sets+=("$2"); shift 2 ;;
      *) die "unknown argument '$1'" ;;
    esac
  done
  (( n >= 1 && n <= 250 )) || die "N must be 1..250"
  [[ "$(id -u)" -eq 0 ]] || die "network namespaces need root"
  command -v ip >/dev/null || die "needs iproute2 (ip)"
  bash .ci/deps.sh
  echo "==> building: cargo build --release -p cli -p testnet --bin bftnode --bin bftnode-wan-relay"
  cargo build --release -p cli -p testnet --bin bftnode --bin bftnode-wan-relay
  down
  rm -rf "$DATA"; mkdir -p "$DATA"; echo "$n" > "$DATA/n"

  echo "==> $n namespaces, bridge, relay addresses"
  ip netns add "$P-sw"
  ip -n "$P-sw" link set lo up
  ip -n "$P-sw" link add br0 type bridge
  ip -n "$P-sw" link set br0 up
  for ((i = 0; i < n; i++)); do
    ip netns add "$P-$i"
    ip -n "$P-$i" link set lo up
    ip -n "$P-$i" link add eth0 type veth peer name "v$i" netns "$P-sw"
    ip -n "$P-sw" link set "v$i" master br0
    ip -n "$P-sw" link set "v$i" up
    ip -n "$P-$i" addr add "$(node_ip "$i")/16" dev eth0
    ip -n "$P-$i" link set eth0 up
    ip -n "$P-sw" addr add "$(relay_ip "$i")/16" dev br0
  done

  echo "==> key ceremony: bftnode init on each host, genesis build, config set-peers"
  local files=()
  for ((i = 0; i < n; i++)); do
    in_ns "$P-$i" "$BIN" init --home "$DATA/node$i" --chain-id "$CHAIN_ID" \
      --p2p-listen 0.0.0.0:26600 --p2p-external "$(relay_ip "$i"):26600" \
      --rpc-listen 0.0.0.0:26700 --name "node$i" > /dev/null
    files+=("$DATA/node$i/validator.json")
  done
  "$BIN" genesis build --out "$DATA/genesis.json" "${files[@]}" > /dev/null
  for ((i = 0; i < n; i++)); do
    cp "$DATA/genesis.json" "$DATA/node$i/"
    "$BIN" config set-peers --home "$DATA/node$i" "${files[@]}" > /dev/null
    config_set "$DATA/node$i" "${sets[@]}" || die "--set failed"
  done

  echo "==> relay: delay ${delay} ms ± ${jitter} ms, loss ${loss}"
  local relay_args=()
  for ((i = 0; i < n; i++)); do relay_args+=(--node "$(relay_ip "$i"):26600=$(node_ip "$i"):26600"); done
  # `ip netns exec` execs the program, so $! is the relay's (and below each node's) own pid.
  ip netns exec "$P-sw" "$RELAY" "${relay_args[@]}" --delay-ms "$delay" --jitter-ms "$jitter" \
    --loss "$loss" > "$DATA/relay.log" 2>&1 &
  echo $! >> "$DATA/pids"

  echo "==> starting $n nodes"
  for ((i = 0; i < n; i++)); do
    NO_COLOR=1 ip netns exec "$P-$i" "$BIN" start --home "$DATA/node$i" > "$DATA/node$i/node.log" 2>&1 &
    echo $! >> "$DATA/pids"
  done
  local deadline=$((SECONDS + 120)) h
  while :; do
    h="$(in_ns "$P-0" "$BIN" status --rpc "http://$(node_ip 0):26700" --output json 2>/dev/null \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["committed_height"])' 2>/dev/null || echo 0)"
    (( h > 2 )) && break
    (( SECONDS < deadline )) || die "no commit within 120 s; logs in $DATA"
    sleep 1
  done
  echo "==> committing (height $h). RPC of node i: http://10.77.0.(i+1):26700 inside any bftwan-<i>"
  echo "    e.g. ip netns exec $P-0 $BIN status --rpc http://$(node_ip 1):26700"
}

load() {
  local rate="${1:?rate}" secs="${2:?seconds}" size="${3:-512}"
  in_ns "$P-0" "$BIN" load --rpc "$(rpcs)" --rate "$rate" --size "$size" --duration "$secs" \
    --drain 60 --output json
}

# stats: each node's bftnode_block_commit_seconds (count, mean ms) and commit latency.
stats() {
  local n i
  n="$(count)"
  for ((i = 0; i < n; i++)); do
    in_ns "$P-0" python3 - "http://$(node_ip "$i"):26700/metrics" "$i" <<'PY'
import json, sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
v = {}
for line in text.splitlines():
    if line.startswith(("bftnode_block_commit_seconds_", "bftnode_commit_latency_seconds_")) and " " in line:
        k, x = line.rsplit(" ", 1)
        v[k] = float(x)
def mean(name):
    c = v.get(name + "_count", 0)
    return (1000 * v.get(name + "_sum", 0) / c if c else float("nan")), int(c)
b, bc = mean("bftnode_block_commit_seconds")
t, tc = mean("bftnode_commit_latency_seconds")
print(json.dumps({"node": int(sys.argv[2]), "blocks": bc, "block_commit_ms_mean": round(b, 1),
                  "block_commit_s_sum": v.get("bftnode_block_commit_seconds_sum", 0),
                  "txs": tc, "tx_commit_ms_mean": round(t, 1),
                  "tx_commit_s_sum": v.get("bftnode_commit_latency_seconds_sum", 0)}))
PY
  done
}

cmd="${1:-}"; shift || true
case "$cmd" in
  up) up "$@" ;;
  load) load "$@" ;;
  stats) stats ;;
  down) down; echo "==> stopped; namespaces deleted" ;;
  *) sed -n '2,18p' "$0"; exit 2 ;;
esac
