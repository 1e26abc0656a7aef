#!/bin/sh
# scripts/deps.sh - install what building and testing nodedns needs (Debian).
# Usage: scripts/deps.sh build|test|bench|image
# As root it runs apt-get; otherwise it prints the exact command and fails.
set -e
what=${1:-build}
build_pkgs="gcc make pkg-config libldns-dev libuv1-dev libcurl4-openssl-dev libjansson-dev libyajl-dev libyaml-dev libcmocka-dev libmnl-dev libcap-dev zlib1g-dev"
test_pkgs="nsd dnsperf bind9-dnsutils knot-dnsutils ldnsutils python3 python3-yaml valgrind clang libclang-rt-14-dev iproute2 openssl iptables conntrack libcap2-bin prometheus unbound nghttp2-proxy"
bench_pkgs="unbound dnsmasq-base knot-resolver pdns-recursor linux-perf python3-matplotlib"
image_pkgs="podman runc debootstrap"
case "$what" in
build) pkgs="$build_pkgs" ;;
test) pkgs="$build_pkgs $test_pkgs" ;;
bench) pkgs="$build_pkgs $test_pkgs $bench_pkgs" ;;
image) pkgs="$image_pkgs" ;;
*) echo "usage: $0 build|test|bench|image" >&2; exit 2 ;;
esac
missing=""
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing="$missing $p"
	fi
done
# The manifest check runs node and npm ci (tests/deploy/package.json). A node
# from another source (with its own npm) counts as installed.
if [ "$what" = test ] || [ "$what" = bench ]; then
	command -v node >/dev/null 2>&1 || missing="$missing nodejs"
	command -v npm >/dev/null 2>&1 || missing="$missing npm"
fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "nodedns: missing packages:$missing" >&2
	echo "run: sudo apt-get update && sudo apt-get install -y$missing" >&2
	exit 1
fi
echo "nodedns: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# An old package list may lack some packages: refresh once and retry.
if ! apt-get install -y --no-install-recommends $missing >/tmp/nodedns-apt.log 2>&1; then
	apt-get update >/dev/null 2>&1 || true
	apt-get install -y --no-install-recommends $missing
fi
