#!/bin/sh
# tests/fuzz/run.sh - build every libFuzzer target and run each for a while.
#
#   FUZZ_SECONDS=20 tests/fuzz/run.sh           # all targets, 20 s each
#   FUZZ_TARGETS="query config" tests/fuzz/run.sh
#
# Environment:
#   FUZZ_SECONDS  seconds per target (default 20); 0 only builds
#   FUZZ_TARGETS  targets to build and run (default: all of them)
#   FUZZ_BUILD    output directory (default build-fuzz)
#   FUZZ_JOBS     targets run at the same time (default 1)
#   FUZZ_CC       compiler (default clang; needs libFuzzer: clang + libclang-rt)
#   FUZZ_SEED     libFuzzer's random seed (default: a new one each run). make
#                 test sets it (fuzz-short): the same tree then fuzzes the same
#                 inputs on every machine, so a failure there is reproducible
#                 with the same command and is the change's, not luck's;
#                 make fuzz leaves it unset and explores.
#
# Each target fuzz_<t> is built from tests/fuzz/fuzz_<t>.c and the layer
# libraries, all with ASan + UBSan, and runs on a temporary copy of its seed corpus
# (tests/fuzz/corpus/<t>/), so a run never grows the committed corpus.
# Crashes go to $FUZZ_BUILD/artifacts/<t>/ and the log to
# $FUZZ_BUILD/logs/<t>.log. A target passes when it ran for its time without
# a crash, a leak, a timeout (10 s per input) or going over 2 GiB of memory.
# Prints "fuzz: N passed, N failed"; exits 1 on a failure.
set -eu

cd "$(dirname "$0")/../.."
ROOT=$(pwd)
SECONDS_EACH=${FUZZ_SECONDS:-20}
OUT=${FUZZ_BUILD:-build-fuzz}
CC=${FUZZ_CC:-clang}
JOBS=${FUZZ_JOBS:-1}
# A UBSan report with its stack, like ASan's.
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
export UBSAN_OPTIONS
ALL=$(ls tests/fuzz/fuzz_*.c | sed 's|tests/fuzz/fuzz_\(.*\)\.c|\1|' | tr '\n' ' ')
TARGETS=${FUZZ_TARGETS:-$ALL}

# Every target links the layer libraries of $OUT (built here by make with the
# fuzzer's instrumentation); the linker takes only what a target uses.
PKGS="ldns libuv libcurl jansson yajl yaml-0.1 libcap libmnl zlib"
# Largest input libFuzzer generates (bytes).
max_len() {
	case $1 in
	config | kubeconfig) echo 8192 ;;
	*) echo 16384 ;;
	esac
}

if ! command -v "$CC" >/dev/null 2>&1; then
	echo "fuzz: $CC not found (apt-get install clang libclang-rt-14-dev)" >&2
	exit 1
fi

LIBS="app node io dns cluster util"
libs() {
	make --no-print-directory -s BUILD="$OUT" CC="$CC" \
		CFLAGS="-g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
		libs >"$OUT/logs/libs.log" 2>&1 || {
		echo "fuzz: building the libraries failed; log $OUT/logs/libs.log" >&2
		tail -n 20 "$OUT/logs/libs.log" >&2
		return 1
	}
}

build() {
	t=$1
	bin=$OUT/fuzz_$t
	src=tests/fuzz/fuzz_$t.c
	libs=
	for l in $LIBS; do
		libs="$libs $OUT/lib/libnodedns_$l.a"
	done
	# Rebuild when the target, a support file or a library is newer than the binary.
	# shellcheck disable=SC2086
	if [ -x "$bin" ] &&
		[ -z "$(find $src $libs tests/fuzz/*.h $(ls tests/support/* 2>/dev/null) -newer "$bin" | head -n 1)" ]; then
		return 0
	fi
	# shellcheck disable=SC2046,SC2086
	$CC -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-fno-omit-frame-pointer -D_GNU_SOURCE -std=c11 -Wall -Wextra \
		-Iinclude -Isrc -Itests -DNODEDNS_SRCDIR="\"$ROOT\"" \
		$(pkg-config --cflags $PKGS) \
		-o "$bin" $src $(ls tests/support/*.c 2>/dev/null) $libs $(pkg-config --libs $PKGS) -lpthread -lm
}

# Run one target; its result goes to $OUT/logs/<t>.result ("pass N" / "fail N").
run_one() {
	t=$1
	log=$OUT/logs/$t.log
	art=$OUT/artifacts/$t
	work=$(mktemp -d "${TMPDIR:-/tmp}/nodedns-fuzz-$t.XXXXXX")
	mkdir -p "$art" "$work/corpus"
	if [ -d "tests/fuzz/corpus/$t" ]; then
		cp tests/fuzz/corpus/"$t"/* "$work/corpus/" 2>/dev/null || true
	fi
	dict=
	if [ -f "tests/fuzz/dict/$t.dict" ]; then
		dict="-dict=tests/fuzz/dict/$t.dict"
	fi
	seed=
	if [ -n "${FUZZ_SEED:-}" ]; then
		seed="-seed=$FUZZ_SEED"
	fi
	rc=0
	# TMPDIR: the targets' own temporary files go with the work directory.
	# shellcheck disable=SC2086
	TMPDIR=$work "$OUT/fuzz_$t" -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 \
		-max_len="$(max_len "$t")" -print_final_stats=1 -artifact_prefix="$art/" \
		$seed $dict "$work/corpus" </dev/null >"$log" 2>&1 || rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	if [ "$rc" -eq 0 ]; then
		echo "pass ${execs:-0}" >"$OUT/logs/$t.result"
		echo "fuzz: $t: ok, ${execs:-?} inputs in ${SECONDS_EACH}s"
	else
		echo "fail ${execs:-0}" >"$OUT/logs/$t.result"
		echo "fuzz: $t: FAILED (exit $rc); log $log, inputs in $art/"
		grep -E '(^==[0-9]+==ERROR|^SUMMARY|^fuzz_|^    #[0-9]+ |runtime error)' "$log" | head -n 30 | sed 's/^/  /'
	fi
	rm -rf "$work"
}

mkdir -p "$OUT/logs"
for t in $TARGETS; do
	if [ ! -f "tests/fuzz/fuzz_$t.c" ]; then
		echo "fuzz: unknown target '$t' (have: $ALL)" >&2
		exit 2
	fi
done
libs || exit 1
for t in $TARGETS; do
	rm -f "$OUT/logs/$t.result"
	if ! build "$t"; then
		echo "fail 0" >"$OUT/logs/$t.result"
		echo "fuzz: $t: build failed"
	fi
done
if [ "$SECONDS_EACH" -le 0 ]; then
	# Only building: fail when a build failed.
	for t in $TARGETS; do
		[ -f "$OUT/logs/$t.result" ] && exit 1
	done
	exit 0
fi

running=0
for t in $TARGETS; do
	[ -f "$OUT/logs/$t.result" ] && continue # build failed
	if [ "$JOBS" -le 1 ]; then
		run_one "$t"
		continue
	fi
	run_one "$t" &
	running=$((running + 1))
	if [ "$running" -ge "$JOBS" ]; then
		wait
		running=0
	fi
done
wait

passed=0
failed=0
for t in $TARGETS; do
	case $(cat "$OUT/logs/$t.result" 2>/dev/null) in
	pass*) passed=$((passed + 1)) ;;
	*) failed=$((failed + 1)) ;;
	esac
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
