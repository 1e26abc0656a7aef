#!/bin/sh
# tests/apiserver/build_driver.sh - build the k8s_watch test driver against the
# layer libraries of $BUILD (make builds them first: `make watch` does both).
# Usage: BUILD=build tests/apiserver/build_driver.sh [plain|asan|real] [OUTDIR]
#   plain: OUTDIR/watch_driver with the recording fake store
#   asan:  the same, named watch_driver_asan (BUILD=build-asan: sanitized libs)
#   real:  linked with the real cluster store (watch_driver_real)
# CFLAGS and LDFLAGS (as make passes them) must match how the libraries were
# built; the sanitizers come in through them.
set -e
mode=${1:-plain}
build=${BUILD:-build}
out=${2:-$build/apiserver}
mkdir -p "$out"
pkgs="ldns libuv libcurl jansson yajl yaml-0.1"
cflags="-std=c11 -Wall -Wextra -Wpedantic -Werror -D_GNU_SOURCE -Iinclude $(pkg-config --cflags $pkgs) ${CFLAGS:--O1 -g}"
libs="$build/lib/libnodedns_io.a $build/lib/libnodedns_cluster.a $build/lib/libnodedns_util.a"
syslibs="$(pkg-config --libs $pkgs) -lpthread -lm"
case "$mode" in
plain) name=watch_driver def= ;;
asan) name=watch_driver_asan def= ;;
real) name=watch_driver_real def=-DREAL_STORE ;;
*) echo "usage: $0 plain|asan|real [OUTDIR]" >&2; exit 2 ;;
esac
# shellcheck disable=SC2086
${CC:-cc} $cflags $def ${LDFLAGS:-} -o "$out/$name" tests/apiserver/watch_driver.c $libs $syslibs
