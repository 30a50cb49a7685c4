#!/usr/bin/env bash
# Every VMM_* setting accepts exactly what it documents, or refuses: an
# unmodified program under the shim ends at start-up (exit 1) with one line
# naming the variable, and an accepted value runs (no vmmd: CUDA's own
# allocator).
#   settings_refused.sh LIBVMM_CLIENT_SO PROGRAM
set -u
lib=$1 prog=$2
fail=0
for bad in VMM_SMALL_MAX=33M VMM_SMALL_MAX=32769K VMM_FRAG_RATIO=1.5 VMM_MODE=FAST \
           VMM_CONNECT_TIMEOUT_MS=0 VMM_REPORT_MS=5 VMM_PEER_ACCESS=some \
           VMM_APP_VMM=driver VMM_MEDIUM_MAX=2G VMM_MEDIUM_MAX=1025M \
           VMM_MEDIUM_MAX=512K VMM_MEDIUM_MAX=32Q VMM_MEDIUM_MAX=-1; do
  out=$(env "$bad" LD_PRELOAD="$lib" "$prog" 1 1 2>&1 >/dev/null)
  rc=$?
  var=${bad%%=*}
  if [ "$rc" -ne 1 ] || ! grep -q "$var" <<<"$out"; then
    echo "FAIL: $bad: exit $rc, stderr: $out"
    fail=1
  else
    echo "refused $bad: $out"
  fi
done
for good in VMM_SMALL_MAX=1M VMM_SMALL_MAX=32M VMM_SMALL_MAX=0 VMM_FRAG_RATIO=0 \
            VMM_PEER_ACCESS=all VMM_PEER_ACCESS=none VMM_PEER_ACCESS=auto \
            VMM_APP_VMM=pool VMM_APP_VMM=native VMM_MEDIUM_MAX=0 \
            VMM_MEDIUM_MAX=1M VMM_MEDIUM_MAX=1G; do
  if ! env "$good" VMM_SOCKET_DIR=/nonexistent LD_PRELOAD="$lib" "$prog" 1 1 >/dev/null 2>&1; then
    echo "FAIL: $good was refused or failed"
    fail=1
  fi
done
exit $fail
