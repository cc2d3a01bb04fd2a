#!/usr/bin/env bash
# Stop the local testnet started by testnet/up.sh.
#
#   testnet/down.sh           SIGTERM each node in testnet/data/nodes.txt, SIGKILL after 5 s
#   testnet/down.sh --clean   also delete testnet/data (keys, genesis, databases, logs)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DATA="${TESTNET_DATA:-testnet/data}"
NODES_FILE="$DATA/nodes.txt"
GRACE="${GRACE:-5}"
CLEAN=0

for arg in "$@"; do
  case "$arg" in
    --clean) CLEAN=1 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "down.sh: unknown argument '$arg' (usage: testnet/down.sh [--clean])" >&2; exit 2 ;;
  esac
done

# pid_alive PID: true if PID is a running (not zombie) bftnode process; the name check guards
# against a pid reused since nodes.txt was written.
pid_alive() {
  local info
  info="$(ps -p "$1" -o stat=,args= 2>/dev/null)" || return 1
  [[ "$info" != Z* && "$info" == *bftnode* ]]
}

if [[ -f "$NODES_FILE" ]]; then
  names=()
  pids=()
  while read -r name pidkv _rest; do
    pid="${pidkv#pid=}"
    [[ -n "$pid" ]] || continue
    if pid_alive "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      names+=("$name")
      pids+=("$pid")
    else
      echo "$name (pid $pid) was not running"
    fi
  done < "$NODES_FILE"

  # Wait up to GRACE seconds (in 0.2 s steps) for all of them to exit.
  for ((step = 0; step < GRACE * 5; step++)); do
    alive=0
    for pid in "${pids[@]}"; do
      if pid_alive "$pid"; then alive=1; fi
    done
    (( alive )) || break
    sleep 0.2
  done
  for idx in "${!pids[@]}"; do
    name="${names[$idx]}"
    pid="${pids[$idx]}"
    if pid_alive "$pid"; then
      kill -KILL "$pid" 2>/dev/null || true
      echo "stopped $name (pid $pid) with SIGKILL after ${GRACE}s"
    else
      echo "stopped $name (pid $pid)"
    fi
  done
  rm -f "$NODES_FILE"
else
  echo "no testnet running ($NODES_FILE not found)"
fi

if (( CLEAN )); then
  rm -rf "$DATA"
  echo "removed $DATA"
fi
