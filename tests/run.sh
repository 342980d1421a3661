#!/usr/bin/env bash
# Runs every test and prints one closing line: "tests: N passed, N failed, N skipped".
#  - C tests: each $BUILD/tests/test_* binary (cmocka); its per-test counts are read from its output.
#  - Python tests: each tests/py/test_*.py, run with $PYTHON (Debian's python3 with NumPy) under
#    unittest; counts are read from unittest's summary.
# Exit status is non-zero if any test failed or any runner crashed.
set -u
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
export LLAMITA_BUILD="$BUILD"
pass=0; fail=0; skip=0; crashed=()
log=$(mktemp); trap 'rm -f "$log"' EXIT

for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  echo "=== $t"
  "$t" >"$log" 2>&1; rc=$?
  cat "$log"
  p=$(grep -c '^\[       OK \]' "$log"); f=$(grep -c '^\[  FAILED  \] [a-zA-Z_]' "$log"); s=$(grep -c '^\[  SKIPPED \] [a-zA-Z_]' "$log")
  pass=$((pass+p)); fail=$((fail+f)); skip=$((skip+s))
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then crashed+=("$t (exit $rc)"); fail=$((fail+1)); fi
done

for t in tests/py/test_*.py; do
  [ -f "$t" ] || continue
  echo "=== $t"
  "$PYTHON" -m unittest -v "$t" >"$log" 2>&1; rc=$?
  cat "$log"
  p=$(grep -cE '(^| \.\.\. )ok$' "$log"); f=$(grep -cE ' \.\.\. (FAIL|ERROR)$' "$log"); s=$(grep -cE ' \.\.\. skipped' "$log")
  pass=$((pass+p)); fail=$((fail+f)); skip=$((skip+s))
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then crashed+=("$t (exit $rc)"); fail=$((fail+1)); fi
done

for c in "${crashed[@]+"${crashed[@]}"}"; do echo "CRASHED: $c"; done
echo "tests: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
