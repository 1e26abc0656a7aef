#!/bin/sh
# bench/run.sh [--quick] [bench.py options]
#
# The performance table of nodedns against unbound, kresd, pdns-recursor and
# dnsmasq (see bench/README.md). `make bench` runs it after building and
# installing what is missing (scripts/deps.sh bench). Writes
# bench/results/latest.md (and .json) and prints the table.
#   --quick     1 repetition, short runs (about 2 minutes instead of ~12)
#   --profile   instead of the table: where nodedns spends its CPU on cache
#               hits (callgrind, perf) -> bench/results/profile-cache-hit.txt
#   --help      all options (servers, workloads, durations, rates)
set -eu
cd "$(dirname "$0")/.."

limit=1500
for a in "$@"; do
	case "$a" in
	--quick) limit=420 ;;
	--profile) limit=600 ;;
	esac
done

if [ -z "${NODEDNS_BIN:-}" ] && [ ! -x build/nodedns ]; then
	make --no-print-directory all
fi
for t in python3 dnsperf nsd taskset; do
	command -v "$t" >/dev/null 2>&1 || {
		echo "bench: $t is missing; run: scripts/deps.sh bench (as root)" >&2
		exit 1
	}
done

# bench.py kills everything it starts (each process in its own session) when
# it ends or gets a signal. If it is killed hard (the time limit's KILL),
# the session ids it wrote here are ended by this trap: only those whose
# process group still has that id as leader.
pids=$(mktemp /tmp/nodedns-bench-pids.XXXXXX)
cleanup() {
	for p in $(cat "$pids" 2>/dev/null); do
		[ "$(ps -o pgid= -p "$p" 2>/dev/null | tr -d ' ')" = "$p" ] && kill -TERM -- "-$p" 2>/dev/null
	done
	sleep 0.5
	for p in $(cat "$pids" 2>/dev/null); do
		[ "$(ps -o pgid= -p "$p" 2>/dev/null | tr -d ' ')" = "$p" ] && kill -KILL -- "-$p" 2>/dev/null
	done
	rm -f "$pids"
}
trap cleanup EXIT

# In the background so that a signal to this script reaches it at once:
# bench.py stops its processes and exits; then the trap above.
timeout -k 15 "$limit" python3 bench/bench.py --pids-file "$pids" "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null || true' INT TERM HUP
rc=0
wait "$child" || rc=$?
while kill -0 "$child" 2>/dev/null; do
	wait "$child" || rc=$?
done
exit "$rc"
