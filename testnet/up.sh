#!/usr/bin/env bash
# Bring up a local N-validator bftnode testnet (default 4) on 127.0.0.1.
#
#   testnet/up.sh [N]        build, generate testnet/data/node0..node{N-1}, start, smoke-test
#   testnet/down.sh [--clean]
#
# Node i listens on UDP 127.0.0.1:$((BASE_P2P_PORT+i)) (QUIC) and serves RPC on
# http://127.0.0.1:$((BASE_RPC_PORT+i)). Environment: BASE_P2P_PORT (26600), BASE_RPC_PORT
# (26700), CHAIN_ID (bftnode-local), START_TIMEOUT seconds to wait for the first commit (120),
# TESTNET_DATA (testnet/data: homes, nodes.txt; testnet/down.sh takes the same variable),
# CONFIG_SET ("KEY=VALUE …": config.toml lines set in every home, e.g. "retain_heights=10000";
# testnet/config_set.sh), BFTNODE_BIN (run this bftnode binary instead of building
# target/release/bftnode: for A/B runs of two builds; testnet/bench.sh passes it through;
# copying a binary over target/release/bftnode does not work, since the build here relinks it
# from the sources).
#
# Adversaries: ADVERSARY="3:equivocate,2:silent" starts the validators with those validator
# indices (as in `bftnode validators`, not the node<i> home numbers) as
# `bftnode-adversary --home DIR --mode MODE` instead of `bftnode start --home DIR`;
# ADVERSARY_ARGS (e.g. "--late-margin-ms 100") is appended to every adversary's command line.
# Modes: target/release/bftnode-adversary --list-modes. See testnet/README.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=testnet/config_set.sh
source testnet/config_set.sh

N="${1:-4}"
BASE_P2P_PORT="${BASE_P2P_PORT:-26600}"
BASE_RPC_PORT="${BASE_RPC_PORT:-26700}"
CHAIN_ID="${CHAIN_ID:-bftnode-local}"
START_TIMEOUT="${START_TIMEOUT:-120}"
DATA="${TESTNET_DATA:-testnet/data}"
NODES_FILE="$DATA/nodes.txt"
BIN="${BFTNODE_BIN:-target/release/bftnode}"
ADV_BIN="target/release/bftnode-adversary"
ADVERSARY="${ADVERSARY:-}"
ADVERSARY_ARGS="${ADVERSARY_ARGS:-}"

die() { echo "up.sh: $*" >&2; exit 1; }

if ! [[ "$N" =~ ^[0-9]+$ ]] || (( N < 1 || N > 100 )); then
  die "usage: testnet/up.sh [N]   (N validators, 1..100; got '$N')"
fi

# pid_alive PID: true if PID is a running (not zombie) bftnode process; the name check guards
# against a pid reused since nodes.txt was written.
pid_alive() {
  local info
  info="$(ps -p "$1" -o stat=,args= 2>/dev/null)" || return 1
  [[ "$info" != Z* && "$info" == *bftnode* ]]
}

# --- parse ADVERSARY ("INDEX:MODE,INDEX:MODE") ---------------------------------------------------
declare -A ADV_MODE=()
if [[ -n "$ADVERSARY" ]]; then
  IFS=',' read -r -a adv_entries <<< "$ADVERSARY"
  for entry in "${adv_entries[@]}"; do
    [[ "$entry" =~ ^[[:space:]]*([0-9]+):([a-z0-9-]+)[[:space:]]*$ ]] \
      || die "ADVERSARY entry '$entry' is not INDEX:MODE (e.g. ADVERSARY=\"3:equivocate,2:silent\")"
    idx="${BASH_REMATCH[1]}"
    (( idx < N )) || die "ADVERSARY: validator index $idx is not below N=$N"
    [[ -z "${ADV_MODE[$idx]:-}" ]] || die "ADVERSARY: validator $idx given twice"
    ADV_MODE[$idx]="${BASH_REMATCH[2]}"
  done
fi

# --- refuse to start over a running testnet ---------------------------------------------------
if [[ -f "$NODES_FILE" ]]; then
  running=()
  while read -r name pidkv _rest; do
    pid="${pidkv#pid=}"
    if [[ -n "$pid" ]] && pid_alive "$pid"; then
      running+=("$name (pid $pid)")
    fi
  done < "$NODES_FILE"
  if (( ${#running[@]} > 0 )); then
    list="${running[0]}"
    for entry in "${running[@]:1}"; do list+=", $entry"; done
    die "testnet already running: $list; run testnet/down.sh"
  fi
fi

# --- build --------------------------------------------------------------------------------------
# System packages the build needs (libclang for RocksDB's bindings), as CI installs them.
if [[ -n "${BFTNODE_BIN:-}" ]]; then
  [[ -x "$BIN" ]] || die "BFTNODE_BIN=$BIN is not an executable"
  echo "==> not building: running $BIN (BFTNODE_BIN)"
else
  bash .ci/deps.sh
  echo "==> building bftnode: cargo build --release -p cli"
  cargo build --release -p cli
  [[ -x "$BIN" ]] || die "$BIN was not built"
fi
if (( ${#ADV_MODE[@]} > 0 )); then
  echo "==> building bftnode-adversary: cargo build --release -p testnet --bin bftnode-adversary"
  cargo build --release -p testnet --bin bftnode-adversary
  [[ -x "$ADV_BIN" ]] || die "$ADV_BIN was not built"
  known="$("$ADV_BIN" --list-modes)"
  for idx in "${!ADV_MODE[@]}"; do
    grep -qx -- "${ADV_MODE[$idx]}" <<< "$known" \
      || die "ADVERSARY: unknown mode '${ADV_MODE[$idx]}'; modes: $(tr '\n' ' ' <<< "$known")"
  done
fi

# --- generate homes -----------------------------------------------------------------------------
if [[ -d "$DATA" ]]; then
  echo "==> removing the previous (stopped) testnet in $DATA"
  rm -rf "$DATA"
fi
echo "==> generating $N validator homes in $DATA"
"$BIN" testnet --validators "$N" --out "$DATA" \
  --base-p2p-port "$BASE_P2P_PORT" --base-rpc-port "$BASE_RPC_PORT" --chain-id "$CHAIN_ID"
if [[ -n "${CONFIG_SET:-}" ]]; then
  read -r -a config_sets <<< "$CONFIG_SET"
  for ((i = 0; i < N; i++)); do
    config_set "$DATA/node$i" "${config_sets[@]}" || die "CONFIG_SET='$CONFIG_SET' failed"
  done
fi

rpc_url() { echo "http://127.0.0.1:$((BASE_RPC_PORT + $1))"; }

# --- start --------------------------------------------------------------------------------------
echo "==> starting $N nodes"
: > "$NODES_FILE"
PIDS=()
HONEST=()
for ((i = 0; i < N; i++)); do
  home="$DATA/node$i"
  [[ -d "$home" ]] || die "expected home $home was not generated"
  vidx="$("$BIN" keys show --home "$home" --output json \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["validator_index"])')" \
    || die "cannot read the validator index of $home"
  mode="${ADV_MODE[$vidx]:-}"
  if [[ -n "$mode" ]]; then
    # shellcheck disable=SC2086 # ADVERSARY_ARGS is a list of flags
    NO_COLOR=1 nohup "$ADV_BIN" --home "$home" --mode "$mode" $ADVERSARY_ARGS \
      > "$home/node.log" 2>&1 &
  else
    NO_COLOR=1 nohup "$BIN" start --home "$home" > "$home/node.log" 2>&1 &
  fi
  pid=$!
  PIDS+=("$pid")
  [[ -n "$mode" ]] || HONEST+=("$i")
  [[ "$home" == /* ]] || home="$ROOT/$home"
  echo "node$i pid=$pid rpc=$(rpc_url "$i") home=$home validator=$vidx mode=${mode:-honest}" >> "$NODES_FILE"
  echo "    node$i  validator $vidx  pid $pid  rpc $(rpc_url "$i")  log $home/node.log${mode:+  ADVERSARY $mode}"
done

# fail_node I: report that node I died, show its log, stop the others, exit nonzero.
fail_node() {
  echo >&2
  echo "up.sh: node$1 (pid ${PIDS[$1]}) exited during start-up; last lines of $DATA/node$1/node.log:" >&2
  tail -n 30 "$DATA/node$1/node.log" >&2 || true
  echo "up.sh: stopping the other nodes" >&2
  testnet/down.sh >&2 || true
  exit 1
}

check_alive() {
  for ((i = 0; i < N; i++)); do
    pid_alive "${PIDS[$i]}" || fail_node "$i"
  done
}

# committed_height URL: the node's committed height, or "-" if it does not answer.
committed_height() {
  local out
  out="$("$BIN" status --rpc "$1" --output json --timeout 2 2>/dev/null)" || { echo "-"; return; }
  printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["committed_height"])' \
    2>/dev/null || echo "-"
}

# --- wait for the first commit on every node ----------------------------------------------------
echo "==> waiting up to ${START_TIMEOUT}s for every node to commit height 1"
start=$SECONDS
while :; do
  check_alive
  ready=0
  line=""
  for ((i = 0; i < N; i++)); do
    h="$(committed_height "$(rpc_url "$i")")"
    line+=" node$i=$h"
    if [[ "$h" =~ ^[0-9]+$ ]] && (( h >= 1 )); then
      ready=$((ready + 1))
    fi
  done
  elapsed=$((SECONDS - start))
  printf '\r    [%3ds] committed heights:%s ' "$elapsed" "$line"
  if (( ready == N )); then
    break
  fi
  if (( elapsed >= START_TIMEOUT )); then
    echo
    echo "up.sh: not every node committed within ${START_TIMEOUT}s; the nodes are left running" >&2
    for ((i = 0; i < N; i++)); do
      echo "--- last lines of $DATA/node$i/node.log" >&2
      tail -n 10 "$DATA/node$i/node.log" >&2 || true
    done
    echo "up.sh: inspect them, then stop them with testnet/down.sh" >&2
    exit 1
  fi
  sleep 1
done
echo
check_alive
echo "==> all $N nodes are committing"

# --- smoke test: write through node0, read through another node ---------------------------------
# Through honest nodes only (an adversary's RPC works, but its gossip may be refused).
(( ${#HONEST[@]} > 0 )) || HONEST=(0)
writer="${HONEST[0]}"
reader="${HONEST[$(( ${#HONEST[@]} > 1 ? 1 : 0 ))]}"
echo "==> smoke test: 3 puts via node$writer, read back via node$reader"
for k in 1 2 3; do
  key="smoke-$k"
  value="hello-$k-$$"
  "$BIN" tx put "$key" "$value" --rpc "$(rpc_url "$writer")" --wait --wait-timeout 60 --output json \
    > "$DATA/smoke-$k.json" || { check_alive; die "tx put $key was not committed (see above)"; }
  height="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("height"))' \
    "$DATA/smoke-$k.json")"
  # The reader may lag the writer by a block or two.
  got=""
  for _ in $(seq 1 100); do
    got="$("$BIN" tx get "$key" --rpc "$(rpc_url "$reader")" --output json 2>/dev/null \
      | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["value"] if v["found"] else "")' \
      2>/dev/null || true)"
    [[ "$got" == "$value" ]] && break
    sleep 0.2
  done
  [[ "$got" == "$value" ]] || die "node$reader does not return $key=$value (got '${got}')"
  echo "    $key=$value committed at height $height, read back from node$reader"
done
rm -f "$DATA"/smoke-*.json

cat <<EOF
==> testnet of $N validators is up (chain $CHAIN_ID); nodes are listed in $NODES_FILE
Query it:
    $BIN status --rpc $(rpc_url "$writer")
    $BIN block --rpc $(rpc_url 1)
    $BIN validators --rpc $(rpc_url 0)
    $BIN tx put mykey myvalue --wait --rpc $(rpc_url 0)
    $BIN tx get mykey --rpc $(rpc_url $reader)
    $BIN load --rpc $(rpc_url 0),$(rpc_url $reader) --rate 1000 --size 100 --duration 10
Logs: $DATA/node<i>/node.log
Stop: testnet/down.sh   (add --clean to also delete $DATA)
EOF
