#!/usr/bin/env bash
# System packages the build needs: libclang for rocksdb's bindgen step (g++ builds RocksDB itself).
set -euo pipefail
if ! dpkg -s libclang-dev >/dev/null 2>&1; then
  echo "installing libclang-dev (needed by rocksdb's bindings)…"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends libclang-dev
fi
