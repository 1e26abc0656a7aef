#!/bin/sh
# tests/apiserver/build_driver.sh - build the k8s_watch test driver (not part of the Makefile).
# Usage: tests/apiserver/build_driver.sh [plain|asan|real] [OUTDIR]
#   plain: build/apiserver/watch_driver with the recording fake store
#   asan:  the same with -fsanitize=address,undefined (watch_driver_asan)
#   real:  linked with the real cluster store (watch_driver_real)
set -e
mode=${1:-plain}
out=${2:-build/apiserver}
mkdir -p "$out"
pkgs="libuv libcurl jansson yaml-0.1"
cflags="-std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -Iinclude $(pkg-config --cflags $pkgs)"
libs="$(pkg-config --libs $pkgs) -lyaml -lpthread -lm"
srcs="tests/apiserver/watch_driver.c src/k8s_watch.c src/k8s_stream.c src/k8s_kubeconfig.c src/log.c"
case "$mode" in
plain) ${CC:-cc} -O1 -g $cflags -o "$out/watch_driver" $srcs $libs ;;
asan) ${CC:-cc} -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=all $cflags -o "$out/watch_driver_asan" $srcs $libs ;;
real) ${CC:-cc} -O1 -g -DREAL_STORE $cflags $(pkg-config --cflags ldns) -o "$out/watch_driver_real" $srcs \
	src/k8s_store.c src/cluster_snapshot.c src/cluster_zone.c $libs $(pkg-config --libs ldns) ;;
*) echo "usage: $0 plain|asan|real [OUTDIR]" >&2; exit 2 ;;
esac
