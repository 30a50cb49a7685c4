#!/usr/bin/env bash
# Set everything up, then run every test: the normal build, then the
# ASan+UBSan build of the same suite.  Exit status is non-zero on any failure.
#   scripts/test.sh            # both builds
#   VMM_TEST_QUICK=1 scripts/test.sh   # normal build only
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

# Emulator state of this tree's tests (one small file per test instance in
# /dev/shm, named by the build tree as cmake/VmmTest.cmake does): an earlier
# run's goes first, this run's when it ends, whatever the outcome (tmpfs
# memory would otherwise stay taken until reboot, for every clone tested).
clear_state() {
  local b tree
  for b in build build-asan build-tsan; do
    tree=$(printf '%s' "$PWD/$b" | md5sum | cut -c1-6)
    rm -f /dev/shm/cuemu-vmmtest-"$tree"-* 2>/dev/null || true
  done
}
clear_state
trap clear_state EXIT

scripts/setup.sh build
echo "== tests (build/)"
ctest --test-dir build --output-on-failure -j "$jobs" --timeout 300

if [[ -z "${VMM_TEST_QUICK:-}" ]]; then
  scripts/setup.sh build-asan -DVMM_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
  echo "== tests under ASan+UBSan (build-asan/)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j "$jobs" --timeout 600 -LE no-sanitize

  scripts/setup.sh build-tsan -DVMM_TSAN=ON -DCMAKE_BUILD_TYPE=Debug
  echo "== threaded tests under ThreadSanitizer (build-tsan/)"
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    ctest --test-dir build-tsan --output-on-failure -j "$jobs" --timeout 600 -L threaded
fi
