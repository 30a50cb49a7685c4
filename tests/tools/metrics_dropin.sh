#!/usr/bin/env bash
# systemd/vmmd-metrics.conf, the drop-in that lets vmmd@.service listen on
# the loopback for metrics_listen, verifies cleanly with the unit; a broken
# copy is reported (so verify really reads the drop-in).
#   metrics_dropin.sh UNITDIR VMMD DROPIN
set -uo pipefail
units=$1 vmmd=$2 dropin=$3
command -v systemd-analyze >/dev/null || { echo "SKIP: systemd-analyze missing"; exit 77; }
T=${VMM_TEST_TMPDIR:?}
rm -rf "$T/u" && mkdir -p "$T/u/vmmd@.service.d"
cp "$units/vmmd@.service" "$T/u/" || exit 1
sed -i "s|^ExecStart=[^ ]*/vmmd |ExecStart=$vmmd |" "$T/u/vmmd@.service"
cp "$dropin" "$T/u/vmmd@.service.d/metrics.conf"
cd "$T/u" || exit 1
verify() { SYSTEMD_LOG_LEVEL=info systemd-analyze verify --man=no --generators=no ./vmmd@0.service 2>&1; }
out=$(verify) || { echo "verify failed: $out"; exit 1; }
[[ -z "$out" ]] || { echo "verify printed: $out"; exit 1; }
grep -qx 'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' vmmd@.service.d/metrics.conf
grep -qx 'IPAddressAllow=localhost' vmmd@.service.d/metrics.conf
echo 'NoSuchKey=1' >> vmmd@.service.d/metrics.conf
out=$(verify)
grep -q "NoSuchKey" <<<"$out" || { echo "verify did not read the drop-in"; exit 1; }
echo "metrics drop-in: ok"
