#!/bin/bash
# The man pages (man/): lint-clean (mandoc -Tlint, else man --warnings), and
# complete, as tests/common/test_docs.sh checks the README:
#  - vmmd.conf(5): every setting of `vmmd --dump-config`, and the quota keys;
#  - vmmd(8): every long option of `vmmd --help`;
#  - vmmctl(8): every command of vmmctl.c's table and every long option of
#    `vmmctl --help`, and each exit status;
#  - libvmm_client(3): every VMM_* variable of client/settings.c and every
#    vmm_* function of client/vmm_client.h.
# The rendered text is searched (mdoc writes "--json" as "\-\-json").
set -u -o pipefail

src=${VMM_SOURCE_DIR:?}
build=${VMM_BUILD_DIR:?}
man=$src/man
vmmd=$build/daemon/vmmd
vmmctl=$build/tools/vmmctl
fail=0
bad() { echo "FAIL: $*"; fail=1; }

pages=(vmmd.8 vmmctl.8 vmmd.conf.5 libvmm_client.3)
# --- lint ------------------------------------------------------------------
for p in "${pages[@]}"; do
  [[ -s $man/$p ]] || { bad "man/$p missing or empty"; continue; }
  if command -v mandoc >/dev/null; then
    out=$(mandoc -Tlint -W warning "$man/$p" 2>&1) || bad "mandoc -Tlint $p: $out"
  else
    out=$(man --warnings -l "$man/$p" 2>&1 >/dev/null)
    [[ -z $out ]] || bad "man --warnings $p: $out"
  fi
done
command -v mandoc >/dev/null || echo "note: mandoc not installed: linted with man --warnings"

# The page as text, on long lines (nothing split across two).
text() {
  if command -v mandoc >/dev/null; then
    mandoc -Tascii -O width=400 "$man/$1"
  else
    MANWIDTH=400 man -l "$man/$1" 2>/dev/null
  fi | sed 's/.\x08//g'
}
has() { grep -qF -- "$2" <<<"$1"; }

# --- vmmd.conf(5) --------------------------------------------------------------
t=$(text vmmd.conf.5)
keys=$("$vmmd" --config /dev/null --dump-config | cut -d' ' -f1) || bad "vmmd --dump-config"
[[ -n $keys ]] || bad "no settings from vmmd --dump-config"
for k in $keys quota.uid. quota.name. quota.cgroup.; do
  grep -qE "^ +$k( |[A-Z])" <<<"$t" || bad "vmmd.conf(5) has no entry for $k"
done

# --- vmmd(8) ---------------------------------------------------------------------
t=$(text vmmd.8)
help=$("$vmmd" --help) || bad "vmmd --help"
# The options only: the settings' help below mentions vmmctl's.
help=$(sed '/^Settings/,$d' <<<"$help")
opts=$(grep -oE -- '--[a-z][a-z-]*' <<<"$help" | sort -u)
[[ -n $opts ]] || bad "no options in vmmd --help"
for o in $opts; do has "$t" "$o" || bad "vmmd(8) lacks $o"; done
for s in $(grep -oE '^  -[a-zA-Z],' <<<"$help" | tr -d ' ,'); do
  has "$t" "$s" || bad "vmmd(8) lacks $s"
done

# --- vmmctl(8) ---------------------------------------------------------------
t=$(text vmmctl.8)
# The command table's rows: { "name", min, max, bool, cmd_handler, ...
cmds=$(grep -oE '\{ "[a-z][a-z ]*", *[0-9]+, *[0-9]+, *[a-z]+, *cmd_' "$src/tools/vmmctl.c" |
       sed 's/{ "\([a-z ]*\)".*/\1/')
[[ -n $cmds ]] || bad "no commands found in tools/vmmctl.c"
while read -r c; do
  [[ -z $c ]] && continue
  grep -qE "^ {5}$c( |$)" <<<"$t" || bad "vmmctl(8) has no entry for the command '$c'"
done <<<"$cmds"
help=$("$vmmctl" --help) || bad "vmmctl --help"
for o in $(grep -oE -- '--[a-z][a-z-]*' <<<"$help" | sort -u); do
  has "$t" "$o" || bad "vmmctl(8) lacks $o"
done
for code in $(sed -n '/^Exit status:/,$p' <<<"$help" | grep -oE '^ +[0-9]+ ' | tr -d ' '); do
  grep -qE "^ +$code +[a-z]" <<<"$t" || bad "vmmctl(8) lacks exit status $code"
done

# --- libvmm_client(3) ----------------------------------------------------------
t=$(text libvmm_client.3)
vars=$(grep -o '"VMM_[A-Z_]*"' "$src/client/settings.c" | tr -d '"' | sort -u)
[[ -n $vars ]] || bad "no VMM_* variables in client/settings.c"
for v in $vars; do grep -qE "^ +$v$" <<<"$t" || bad "libvmm_client(3) has no entry for $v"; done
funcs=$(grep -oE 'VMM_API[^(]*\bvmm_[a-z_]+\(' "$src/client/vmm_client.h" | grep -oE 'vmm_[a-z_]+' | sort -u)
[[ -n $funcs ]] || bad "no functions in client/vmm_client.h"
for f in $funcs; do has "$t" "$f(" || bad "libvmm_client(3) lacks $f()"; done
for s in SYNOPSIS DESCRIPTION ENVIRONMENT CAVEATS EXAMPLES FILES; do
  grep -qx "$s" <<<"$t" || bad "libvmm_client(3) has no $s section"
done
for c in fork 'Static binaries' IPC Graphs Frameworks; do
  grep -qE "^ +$c( |$)" <<<"$t" || bad "libvmm_client(3) CAVEATS lacks $c"
done

(( fail == 0 )) && echo "PASS: ${#pages[@]} pages, $(wc -w <<<"$keys") settings, $(wc -w <<<"$vars") variables, $(wc -l <<<"$cmds") commands"
exit $fail
