#!/usr/bin/env bash
# Attack drills on a local testnet of real bftnode processes, with measured figures.
#
#   testnet/drill.sh MODE [--runs K] [--output table|json] [--short] [--validators N] [--rate TX_S]
#                    [--during SECS]
#   testnet/drill.sh all  [--runs K] [--short]     every mode, one JSON line each
#
# MODE: crash-leader | kill-loop | partition 'A|B' (e.g. '0,1|2,3'; needs root for iptables) | any mode of
# `target/release/bftnode-adversary --list-modes`. Each run starts its own testnet in a
# temporary directory on free ports (a running testnet/up.sh network is not touched). Figures
# and JSON keys: see testnet/README.md ("Attack drills").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [[ $# -lt 1 ]]; then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi

bash .ci/deps.sh >/dev/null
cargo build --release -p cli -p testnet --bins >&2
DRILL=target/release/bftnode-drill

if [[ "$1" == "all" ]]; then
  shift
  modes=(crash-leader "partition:0,1|2,3" "partition:0,1,2|3")
  while read -r m; do modes+=("$m"); done < <(target/release/bftnode-adversary --list-modes | awk '{print $1}')
  for m in "${modes[@]}"; do
    if [[ "$m" == partition:* ]]; then
      "$DRILL" partition "${m#partition:}" --output json "$@" || echo "{\"mode\":\"$m\",\"error\":true}"
    else
      "$DRILL" "$m" --output json "$@" || echo "{\"mode\":\"$m\",\"error\":true}"
    fi
  done
  exit 0
fi
exec "$DRILL" "$@"
