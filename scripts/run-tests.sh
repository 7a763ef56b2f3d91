#!/usr/bin/env bash
# run-tests.sh: every test of vfio-migd, from a fresh clone, as root on Debian 12.
#   1. installs missing Debian packages, builds build/ and runs every test (unit, D-Bus, and
#      the real kernel in a QEMU guest: tests/kernel/, which fetches Debian's kernel once);
#   2. builds build-asan/ with AddressSanitizer + UBSan and runs every test again;
#   3. runs the D-Bus and libvirt suites with the daemon under valgrind (leaks are failures);
#   4. builds the libFuzzer targets with clang and runs each for a bounded time;
#   5. runs the benchmarks once, for their figures (not pass/fail);
# and ends with one line "N passed, N failed, N skipped" over all passes.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

bash scripts/deps.sh || exit 1

tally() { # tally DIR LABEL: add the results of DIR's last meson test run to the totals
  python3 - "$1/meson-logs/testlog.json" "$2" <<'PY'
import json, sys
counts = {"passed": 0, "failed": 0, "skipped": 0}
try:
    for line in open(sys.argv[1]):
        r = json.loads(line)["result"]
        key = {"OK": "passed", "EXPECTEDFAIL": "passed", "SKIP": "skipped"}.get(r, "failed")
        counts[key] += 1
except FileNotFoundError:
    counts["failed"] += 1
print(counts["passed"], counts["failed"], counts["skipped"])
print(f"{sys.argv[2]}: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped", file=sys.stderr)
PY
}

passed=0 failed=0 skipped=0
add() { read -r p f s <<<"$1"; passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s)); }

run_pass() { # run_pass LABEL DIR MESON_SETUP_ARGS... -- MESON_TEST_ARGS...
  local label=$1 dir=$2; shift 2
  local setup=() testargs=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do setup+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  testargs=("$@")
  echo "=== $label: building $dir" >&2
  if ! bash scripts/build.sh "$dir" "${setup[@]}"; then
    echo "=== $label: BUILD FAILED" >&2
    failed=$((failed + 1))
    return
  fi
  echo "=== $label: testing" >&2
  rm -f "$dir/meson-logs/testlog.json"
  meson test -C "$dir" --print-errorlogs --num-processes 2 "${testargs[@]}" >&2
  add "$(tally "$dir" "$label")"
}

run_pass "tests" build
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
run_pass "asan+ubsan" build-asan -Db_sanitize=address,undefined -Db_lundef=false
unset ASAN_OPTIONS UBSAN_OPTIONS
# Under valgrind the crash-point walk takes every 8th point and the first of each kind
# (test_crash_points.py): the plain and ASan passes walk them all.
CRASH_POINT_STRIDE=8 MIGD_WRAPPER="valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect --error-exitcode=99" \
  run_pass "valgrind" build -- --suite dbus --suite libvirt --timeout-multiplier 4

CC=clang run_pass "fuzz (libFuzzer, bounded)" build-fuzz -Dfuzzing=true -Dfuzz_seconds=30

echo "=== benchmarks (figures, not pass/fail)" >&2
meson test -C build --benchmark --verbose >&2 || echo "benchmarks: failed to run" >&2

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
