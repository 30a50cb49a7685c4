#!/usr/bin/env bash
# Every setting is documented: each client VMM_* variable in README.md's
# table, each vmmd setting (from `vmmd --dump-config`) in the commented
# example config, and the example parses; every top-level folder is in
# README.md's layout table.
set -euo pipefail
src=$VMM_SOURCE_DIR
vmmd=$VMM_BUILD_DIR/daemon/vmmd
fail=0

for v in $(grep -o '"VMM_[A-Z_]*"' "$src/client/settings.c" | tr -d '"' | sort -u); do
  grep -q "^| \`$v\` |" "$src/README.md" || { echo "README.md lacks $v"; fail=1; }
done
for k in $("$vmmd" --config /dev/null --dump-config | cut -d' ' -f1); do
  grep -q "^#$k =" "$src/systemd/vmmd.conf.example" ||
    { echo "vmmd.conf.example lacks $k"; fail=1; }
done
# Uncommented, the example is a valid config.
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
sed -n 's/^#\([a-z_.]*[a-z0-9/.]* = .*\)$/\1/p' "$src/systemd/vmmd.conf.example" |
  grep -v '^device = ' > "$tmp"
"$vmmd" --config "$tmp" --dump-config > /dev/null || { echo "the example does not parse"; fail=1; }
"$vmmd" --help | grep -q "quota.uid" || { echo "vmmd --help lacks quotas"; fail=1; }
# Every top-level folder of the repository is in README.md's layout table.
if dirs=$(git -C "$src" ls-files 2>/dev/null | grep / | cut -d/ -f1 | sort -u) &&
   [[ -n $dirs ]]; then
  for d in $dirs; do
    grep -q "^| .*\`$d/\`" "$src/README.md" ||
      { echo "README.md's layout table lacks $d/"; fail=1; }
  done
fi
exit $fail
