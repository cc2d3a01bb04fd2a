#!/usr/bin/env bash
# System packages the build and the tests need:
#   libclang-dev  rocksdb's bindgen step (g++ builds RocksDB itself)
#   make          tikv-jemalloc-sys builds jemalloc, the bftnode binary's allocator, with make
#   iptables      node/tests/liveness.rs drops one validator's UDP on lo: the 3|1 partition
#                 (which prints "SKIPPED: iptables unavailable" without it) and silent,
#                 kill -9-like crashes (a clean in-process stop without it)
#   prometheus    node/tests/prometheus.rs runs a real Prometheus server against four validators
#                 with deploy/prometheus.yml and every query of deploy/grafana/bftnode-dashboard.json
#                 (it prints "SKIPPED: no prometheus binary" without it)
#   chromium      node/tests/dashboard.rs loads the live dashboard page (`GET /`) in headless
#                 Chromium (it prints "SKIPPED: no chromium" without it)
#   iproute2      `ip netns`: cli/tests/cli.rs runs validators in separate network namespaces
#                 (as root; it prints "SKIPPED: network namespaces …" without it)
set -euo pipefail
missing=()
for pkg in libclang-dev make iptables iproute2 prometheus chromium; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if (( ${#missing[@]} > 0 )); then
  echo "installing ${missing[*]}…"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
