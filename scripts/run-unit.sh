#!/bin/sh
# scripts/run-unit.sh - run cmocka unit test binaries (optionally under valgrind)
# and print one closing line: "unit: N passed, N failed".
pass=0
fail=0
for t in "$@"; do
	if [ -n "$VALGRIND" ]; then
		valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect "$t" && pass=$((pass + 1)) || fail=$((fail + 1))
	else
		"$t" && pass=$((pass + 1)) || fail=$((fail + 1))
	fi
done
echo "unit${VALGRIND:+ (valgrind)}: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
