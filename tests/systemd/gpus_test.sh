#!/bin/bash
# vmmd-gpus, what vmmd.service runs to start one vmmd per GPU, against the
# emulator with two GPUs (CUEMU_DEVICES=2):
#  - it lists both GPUs by UUID (GPU-8-4-4-4-12 hex, distinct), --units as
#    vmmd@GPU-<UUID>.service, and --exec runs the command (here a recording
#    stand-in for systemctl) with exactly those unit names, in that order;
#  - each UUID is the GPU vmmd serves when given it as the unit does
#    (--device %i): vmmd --device <UUID i> makes gpu<i>.sock and
#    gpu-<uuid>.sock, so instance i is GPU i;
#  - a driver failure (CUEMU_FAIL on cuDeviceGetUuid) exits 2 and runs
#    nothing; no GPU (cuInit: CUDA_ERROR_NO_DEVICE) exits 0 and runs nothing;
#    usage errors exit 1; no driver at all fails to start (127).
# Usage: gpus_test.sh <vmmd-gpus> <vmmd>
set -u -o pipefail

gpus=${1:?usage: gpus_test.sh VMMD_GPUS VMMD}
vmmd=${2:?usage: gpus_test.sh VMMD_GPUS VMMD}
tmp=${VMM_TEST_TMPDIR:?}
fail() { echo "FAIL: $*"; exit 1; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; }
trap cleanup EXIT
export CUEMU_DEVICES=2

rm -rf "$tmp/bin" "$tmp/run" && mkdir -p "$tmp/bin" "$tmp/run" || fail "mkdir"
chmod 0755 "$tmp/run"

out=$("$gpus") || fail "vmmd-gpus exited $?"
printf '%s\n' "$out"
mapfile -t uuids <<<"$out"
(( ${#uuids[@]} == 2 )) || fail "expected 2 GPUs, got ${#uuids[@]}"
re='^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
for u in "${uuids[@]}"; do [[ $u =~ $re ]] || fail "not a GPU UUID: '$u'"; done
[[ ${uuids[0]} != "${uuids[1]}" ]] || fail "both GPUs have the same UUID"

units=$("$gpus" --units) || fail "vmmd-gpus --units exited $?"
[[ $units == "$(printf 'vmmd@%s.service\n' "${uuids[@]}")" ]] ||
  fail "--units printed '$units'"

# --exec: systemctl replaced by a script recording its arguments.
printf '#!/bin/sh\nprintf "%%s\\n" "$@" > "%s/args"\n' "$tmp" > "$tmp/bin/systemctl"
chmod +x "$tmp/bin/systemctl"
rm -f "$tmp/args"
PATH="$tmp/bin:$PATH" "$gpus" --exec systemctl start || fail "--exec exited $?"
want=$(printf 'start\nvmmd@%s.service\nvmmd@%s.service' "${uuids[@]}")
[[ $(cat "$tmp/args" 2>/dev/null) == "$want" ]] ||
  fail "--exec ran systemctl with '$(cat "$tmp/args" 2>/dev/null)', want '$want'"
echo "--exec: systemctl start vmmd@${uuids[0]}.service vmmd@${uuids[1]}.service"

# Instance i (vmmd --device <UUID i>, as vmmd@.service runs it) serves GPU i.
for i in 0 1; do
  u=${uuids[$i]}
  dir=$tmp/run/$i
  mkdir -m 0755 "$dir" || fail "mkdir $dir"
  "$vmmd" --foreground --config /dev/null --device "$u" --socket-dir "$dir" \
    2> "$tmp/vmmd$i.log" &
  pids+=($!)
done
for i in 0 1; do
  u=${uuids[$i]}
  lower=$(tr 'A-F' 'a-f' <<<"${u#GPU-}")
  for _ in $(seq 100); do
    [[ -S $tmp/run/$i/gpu-$lower.sock && -e $tmp/run/$i/gpu$i.sock ]] && break
    sleep 0.1
  done
  [[ -S $tmp/run/$i/gpu-$lower.sock ]] ||
    { cat "$tmp/vmmd$i.log"; ls -l "$tmp/run/$i"; fail "vmmd --device $u made no gpu-$lower.sock"; }
  [[ -e $tmp/run/$i/gpu$i.sock ]] ||
    { ls -l "$tmp/run/$i"; fail "vmmd --device $u is not GPU $i (no gpu$i.sock)"; }
  other=$((1 - i))
  [[ -e $tmp/run/$i/gpu$other.sock ]] && fail "vmmd --device $u also claims GPU $other"
  echo "vmmd --device $u: GPU $i"
done
cleanup
pids=()

# A driver failure: exit 2, a message, and the command is not run.
rm -f "$tmp/args"
err=$(CUEMU_FAIL=cuDeviceGetUuid:2:CUDA_ERROR_UNKNOWN PATH="$tmp/bin:$PATH" \
      "$gpus" --exec systemctl start 2>&1 >/dev/null)
rc=$?
(( rc == 2 )) || fail "a failing cuDeviceGetUuid gave exit $rc, want 2"
grep -q 'vmmd-gpus: GPU 1: CUDA_ERROR_UNKNOWN' <<<"$err" || fail "message: '$err'"
[[ -e $tmp/args ]] && fail "--exec ran the command although the driver failed"
echo "driver failure: exit 2, '$err'"

# No GPU (cuInit says CUDA_ERROR_NO_DEVICE): nothing listed, nothing started,
# and vmmd.service still succeeds (a node without GPUs has nothing to serve).
rm -f "$tmp/args"
out=$(CUEMU_FAIL=cuInit:1:CUDA_ERROR_NO_DEVICE "$gpus") || fail "no GPU: exit $?, want 0"
[[ -z $out ]] || fail "no GPU, yet vmmd-gpus listed '$out'"
err=$(CUEMU_FAIL=cuInit:1:CUDA_ERROR_NO_DEVICE PATH="$tmp/bin:$PATH" \
      "$gpus" --exec systemctl start 2>&1) || fail "no GPU: --exec exit $?, want 0"
[[ -e $tmp/args ]] && fail "no GPU, yet --exec ran the command"
grep -q 'no GPU found' <<<"$err" || fail "no GPU: message '$err'"

# Usage errors.
for args in "--bogus" "--exec" "--units extra"; do
  # shellcheck disable=SC2086
  "$gpus" $args >/dev/null 2>&1
  rc=$?
  (( rc == 1 )) || fail "vmmd-gpus $args: exit $rc, want 1"
done

# No driver at all (only where this machine has none): the loader refuses.
if ! grep -q 'libcuda\.so\.1 ' <<<"$(ldconfig -p)"; then
  env -u LD_LIBRARY_PATH "$gpus" >/dev/null 2>&1
  rc=$?
  (( rc != 0 )) || fail "vmmd-gpus without libcuda.so.1 exited 0"
fi
echo PASS
