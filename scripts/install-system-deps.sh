#!/usr/bin/env bash
# Installs the system programs the tests start for real: redis-server and redis-cli (Sentinel, Cluster), coturn
# (turnserver, turnutils_uclient), Debian's Chromium for Playwright, Node.js + npm for the official Orga packages, wrk and valgrind
# (callgrind) for the benchmark.
# Does nothing for what is already there; needs root (or sudo) and apt for the rest.
set -euo pipefail

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v turnserver >/dev/null || need+=(coturn)
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v wrk >/dev/null || need+=(wrk)
command -v valgrind >/dev/null || need+=(valgrind)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  echo "install-system-deps: missing ${need[*]} and no apt-get here; install them by hand" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "install-system-deps: missing ${need[*]}; run as root to install them" >&2
    exit 0
  fi
fi
echo "install-system-deps: installing ${need[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
