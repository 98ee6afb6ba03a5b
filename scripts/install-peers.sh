#!/usr/bin/env bash
# Installs the real peers the tests and the demo use, pinned (--python-only: just .venv;
# --bench: also what make bench needs):
#  - tests/peers/node_modules: the official TypeScript SDK and the reference server, and
#    @grafana/schema with the TypeScript compiler (the dashboard type check);
#  - .venv: the official MCP Python SDK, an OTLP/HTTP receiver (oteltap), the official
#    OpenTelemetry generated types and grpcio (tests/peers/requirements.txt);
#  - Prometheus and promtool from Debian (apt), when they are not on the machine yet;
#  - with --bench, valgrind from Debian too (the proxy benchmark's instruction counts).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f .venv/.installed ] || [ tests/peers/requirements.txt -nt .venv/.installed ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/peers/requirements.txt
  touch .venv/.installed
fi
[ "${1:-}" = "--python-only" ] && exit 0
# The official TypeScript SDK and reference server (tests/peers/package-lock.json).
if [ ! -f tests/peers/node_modules/.installed ] || [ tests/peers/package-lock.json -nt tests/peers/node_modules/.installed ]; then
  (cd tests/peers && npm ci --no-audit --no-fund --loglevel=error)
  touch tests/peers/node_modules/.installed
fi
# True when one of the commands is not on the machine.
missing() {
  local command
  for command in "$@"; do command -v "$command" >/dev/null 2>&1 || return 0; done
  return 1
}
# Installs Debian package $1 (sudo when not root). Called as a plain command, so that a
# failed apt-get stops this script (set -e does not apply inside a condition).
apt_install() {
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install-peers: this user cannot install Debian packages; install the '$1' package" >&2; exit 1; }
    sudo="sudo"
  fi
  echo "install-peers: installing $1 from Debian"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$1" >/dev/null
}
if missing prometheus promtool; then
  apt_install prometheus
  # The package may start a system service; the tests run their own instances.
  $sudo systemctl stop prometheus >/dev/null 2>&1 || true
fi
# valgrind counts the proxy benchmark's instructions per request (make bench only).
if [ "${1:-}" = "--bench" ] && missing valgrind; then
  apt_install valgrind
fi
# helm (official static build, pinned) for the chart tests.
scripts/install-helm.sh >/dev/null
