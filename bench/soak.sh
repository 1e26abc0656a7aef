#!/bin/sh
# bench/soak.sh - soak test: mixed dnsperf load, NSD restarts, API churn, RSS/fd curve.
#
#   bench/soak.sh                  # 600 s (DURATION=S or --duration S to change)
#   bench/soak.sh --ci             # 30 s, the same checks
#   bench/soak.sh --help           # every option (bench/soak/soak.py)
#
# Uses NODEDNS_BIN (default build/nodedns, brought up to date with `make`).
# Prints the RSS/fd/metrics curve as a table, the slope of RSS over the last
# half, one ok/FAIL line per check and "soak: N passed, N failed"; exit 1 on
# a failure. Needs nsd, dnsperf, openssl and python3 (stdlib).
set -eu
cd "$(dirname "$0")/.."
: "${NODEDNS_BIN:=build/nodedns}"
export NODEDNS_BIN
if [ "$NODEDNS_BIN" = build/nodedns ]; then
	make --no-print-directory build/nodedns >&2
fi
exec python3 bench/soak/soak.py "$@"
