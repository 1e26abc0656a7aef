#!/bin/sh
# scripts/run-unit.sh - run cmocka unit test binaries (optionally under valgrind)
# and print one closing line: "unit: N passed, N failed".
#
# UNIT_JOBS binaries run at once (default: the number of online CPUs; each is
# one process, and valgrind runs a program on one CPU). Each one's output is
# kept and printed whole, in the order given, once it has finished.
jobs=${UNIT_JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)}
dir=$(mktemp -d "${TMPDIR:-/tmp}/nodedns-unit.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT INT TERM

# One binary a line ("N PATH"); xargs runs $jobs of them at a time, each
# with its output to $dir/N.log and its exit status in $dir/N.rc.
export dir VALGRIND
i=0
for t in "$@"; do
	i=$((i + 1))
	printf '%s %s\n' "$i" "$t"
done | xargs -n 2 -P "$jobs" sh -c '
	if [ -n "$VALGRIND" ]; then
		valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect "$2"
	else
		"$2"
	fi >"$dir/$1.log" 2>&1
	echo $? >"$dir/$1.rc"' sh

pass=0
fail=0
i=0
for t in "$@"; do
	i=$((i + 1))
	cat "$dir/$i.log"
	if [ "$(cat "$dir/$i.rc" 2>/dev/null)" = 0 ]; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1))
		echo "FAIL: $t (exit $(cat "$dir/$i.rc" 2>/dev/null || echo '?'))"
	fi
done
echo "unit${VALGRIND:+ (valgrind)}: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
