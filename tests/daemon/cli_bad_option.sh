#!/usr/bin/env bash
# vmmd with an option it does not know: exit 1, two lines on stderr (what
# getopt found wrong, and where the help is), not the whole help.
set -u
vmmd=$1
err=$("$vmmd" --no-such-option 2>&1 >/dev/null)
rc=$?
printf '%s\n' "$err"
[ "$rc" -eq 1 ] || { echo "FAIL: exit $rc, expected 1"; exit 1; }
[ "$(printf '%s\n' "$err" | wc -l)" -eq 2 ] || { echo "FAIL: not two lines"; exit 1; }
grep -q "no-such-option" <<<"$err" && grep -q "see 'vmmd --help'" <<<"$err" ||
  { echo "FAIL: the lines do not name the option and --help"; exit 1; }
