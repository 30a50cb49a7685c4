#!/bin/bash
# The Debian package built from this tree (cpack, cmake/VmmPackage.cmake):
#  - built only from a tree configured for /usr (skip otherwise);
#  - control: Depends names the package of every shared library the binaries
#    need (dpkg-shlibdeps), never the CUDA driver, plus sysusers;
#  - installed with dpkg into a throwaway root (--root, maintainer scripts run
#    chrootless with DPKG_ROOT): files under /usr, the vmmd user and group
#    created by sysusers, vmmd.service enabled the Debian way
#    (deb-systemd-helper: multi-user.target.wants), the vmmd@ templates not;
#  - vmmctl cdi from the root names the library where the package put it;
#  - `systemd-analyze verify --root` on the installed units;
#  - remove masks vmmd.service, purge leaves no unit state behind;
#  - lintian, when installed, is run and reported (not a failure).
# Exit 77 (skip) without dpkg-deb, dpkg-shlibdeps (dpkg-dev) or cpack.
set -u -o pipefail

build=${VMM_BUILD_DIR:?}
tmp=${VMM_TEST_TMPDIR:?}
fail() { echo "FAIL: $*"; exit 1; }
for t in dpkg-deb dpkg dpkg-shlibdeps cpack; do
  command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done
# The package is built from trees configured for /usr (the default) only.
if [[ ${VMM_INST_PREFIX:?} != /usr ]]; then
  echo "SKIP: this tree is configured for $VMM_INST_PREFIX, the package needs /usr"
  exit 77
fi

rm -rf "$tmp/pkg" "$tmp/root" && mkdir -p "$tmp/pkg" || fail "mkdir"
cpack -G DEB -B "$tmp/pkg" --config "$build/CPackConfig.cmake" > "$tmp/cpack.log" 2>&1 ||
  { cat "$tmp/cpack.log"; fail "cpack"; }
debs=("$tmp"/pkg/vmmd_*.deb)
[[ ${#debs[@]} -eq 1 && -f ${debs[0]} ]] || fail "cpack made no single vmmd_*.deb: ${debs[*]}"
deb=${debs[0]}
echo "package: $(basename "$deb") ($(stat -c %s "$deb") bytes)"

# --- control ---------------------------------------------------------------
field() { dpkg-deb -f "$deb" "$1"; }
[[ $(field Package) == vmmd ]] || fail "Package is '$(field Package)'"
[[ $(field Architecture) == "$(dpkg --print-architecture)" ]] || fail "Architecture"
depends=$(field Depends)
echo "Depends: $depends"
grep -qi 'cuda\|nvidia' <<<"$depends" && fail "Depends names the CUDA driver"
grep -q 'systemd | systemd-standalone-sysusers | systemd-sysusers' <<<"$depends" ||
  fail "Depends lacks sysusers (the postinst runs systemd-sysusers)"
# Every library the binaries need, but libcuda.so.1, comes from a package
# that Depends names.
rm -rf "$tmp/x" && dpkg-deb -x "$deb" "$tmp/x" || fail "dpkg-deb -x"
libdir=/usr/${VMM_INST_LIBDIR:?}
bins=("$tmp"/x/usr/sbin/vmmd "$tmp"/x/usr/bin/vmmctl "$tmp"/x/usr/libexec/vmmd/vmmd-gpus
      "$tmp/x$libdir"/libvmm_client.so.[0-9]*.*)
declare -A checked=()
for b in "${bins[@]}"; do
  [[ -f $b ]] || fail "missing in the package: ${b#"$tmp/x"}"
  for needed in $(objdump -p "$b" | awk '$1 == "NEEDED" {print $2}'); do
    [[ $needed == libcuda.so.1 || -n ${checked[$needed]:-} ]] && continue
    checked[$needed]=1
    path=$(ldconfig -p | awk -v n="$needed" '$1 == n {print $NF; exit}')
    [[ -n $path ]] || fail "${b#"$tmp/x"} needs $needed, which this machine lacks"
    pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -1 | cut -d: -f1) ||
      pkg=$(dpkg -S "$path" 2>/dev/null | head -1 | cut -d: -f1)
    [[ -n $pkg ]] || fail "no package owns $path ($needed)"
    grep -qE "(^|, )$pkg( |,|$)" <<<"$depends" ||
      fail "${b#"$tmp/x"} needs $needed from $pkg, which Depends lacks"
  done
done
echo "Depends covers every NEEDED library of ${#bins[@]} binaries"
ctrl=$(dpkg-deb --ctrl-tarfile "$deb" | tar -t) || fail "cannot list the control archive"
for s in postinst prerm postrm triggers; do
  grep -qx "./$s" <<<"$ctrl" || fail "no $s in the package"
done

# --- install into a throwaway root ----------------------------------------
root=$tmp/root
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/etc" || fail mkdir
touch "$root/var/lib/dpkg/status"
dpkgr() {
  dpkg --root="$root" --log=/dev/null --force-not-root --force-script-chrootless \
       --force-depends --force-unsafe-io "$@"
}
dpkgr -i "$deb" > "$tmp/dpkg-i.log" 2>&1 || { cat "$tmp/dpkg-i.log"; fail "dpkg -i"; }
grep -q '^Status: install ok installed' <<<"$(dpkg --root="$root" -s vmmd)" ||
  fail "vmmd not installed in the root"
for f in /usr/sbin/vmmd /usr/bin/vmmctl /usr/libexec/vmmd/vmmd-gpus /usr/include/vmm_client.h \
         /lib/systemd/system/vmmd.service /lib/systemd/system/vmmd@.service \
         /lib/systemd/system/vmmd@.socket /usr/lib/sysusers.d/vmmd.conf \
         /usr/lib/tmpfiles.d/vmmd.conf /usr/share/man/man8/vmmd.8.gz; do
  [[ -e $root$f ]] || fail "$f not installed"
done
grep -q '^/usr/local' <<<"$(dpkg --root="$root" -L vmmd)" && fail "the package installs under /usr/local"
# vmmctl cdi, run from the root, names the library the package installed.
cdi=$("$root/usr/bin/vmmctl" --socket-dir /run/vmmd cdi) || fail "vmmctl cdi"
lib=$(grep -o '"hostPath": *"[^"]*libvmm_client[^"]*"' <<<"$cdi" | sed 's/.*"\([^"]*\)"$/\1/')
[[ -n $lib && -e $root$lib ]] || fail "vmmctl cdi names the library '$lib', which the package lacks"
echo "vmmctl cdi: library $lib"
# sysusers made the vmmd user and its group.
pw=$(grep '^vmmd:' "$root/etc/passwd") || fail "no vmmd user in the root's /etc/passwd"
gid=$(cut -d: -f4 <<<"$pw")
grep -q "^vmmd:x:$gid:" "$root/etc/group" || fail "no vmmd group ($gid)"
echo "user: $pw"
# Enabled the Debian way: the [Install] symlink, and deb-systemd-helper's state.
if command -v deb-systemd-helper >/dev/null; then
  link=$root/etc/systemd/system/multi-user.target.wants/vmmd.service
  [[ -L $link && $(readlink "$link") == /lib/systemd/system/vmmd.service ]] ||
    fail "vmmd.service not enabled: $(ls -l "$root/etc/systemd/system" 2>&1)"
  [[ -e $root/var/lib/systemd/deb-systemd-helper-enabled/vmmd.service.dsh-also ]] ||
    fail "no deb-systemd-helper state for vmmd.service"
  grep -q 'vmmd@' <<<"$(ls "$root/etc/systemd/system/multi-user.target.wants")" &&
    fail "a vmmd@ template was enabled"
  echo "enabled: multi-user.target.wants/vmmd.service"
else
  echo "note: deb-systemd-helper not installed: enablement not checked"
fi

# --- the installed units verify in the root --------------------------------
# The root gets the host's own units (targets, sockets) as a real system has
# them from the systemd package, so the dependencies resolve; ours are the
# package's.
cp -an /lib/systemd/system/. "$root/lib/systemd/system/" || fail "cannot copy the host's units"
out=$(SYSTEMD_LOG_LEVEL=info systemd-analyze verify --root="$root" --man=no --generators=no \
        vmmd.service vmmd@.service vmmd@.socket vmmd@0.service \
        vmmd@GPU-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.service 2>&1)
status=$?
[[ -n $out ]] && printf '%s\n' "$out"
(( status == 0 )) || fail "systemd-analyze verify --root: exit $status"
grep -q vmmd <<<"$out" && fail "systemd-analyze verify has warnings about our units"
echo "systemd-analyze verify --root: clean"

# --- remove and purge ---------------------------------------------------------
dpkgr -r vmmd > "$tmp/dpkg-r.log" 2>&1 || { cat "$tmp/dpkg-r.log"; fail "dpkg -r"; }
[[ -e $root/usr/sbin/vmmd ]] && fail "vmmd still there after remove"
if command -v deb-systemd-helper >/dev/null; then
  [[ $(readlink "$root/etc/systemd/system/vmmd.service") == /dev/null ]] ||
    fail "vmmd.service not masked after remove"
fi
dpkgr -P vmmd > "$tmp/dpkg-p.log" 2>&1 || { cat "$tmp/dpkg-p.log"; fail "dpkg -P"; }
left=$(find "$root/etc/systemd" "$root/var/lib/systemd" -name 'vmmd*' 2>/dev/null)
[[ -z $left ]] || fail "left after purge: $left"

# --- lintian, if there ------------------------------------------------------
if command -v lintian >/dev/null; then
  echo "lintian (reported, not checked):"
  timeout 60 lintian --tag-display-limit 0 "$deb" 2>&1 | grep -v '^running with root' |
    sed 's/^/  /' | head -40
else
  echo "note: lintian not installed"
fi
echo PASS
