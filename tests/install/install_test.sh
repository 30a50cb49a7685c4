#!/bin/bash
# `cmake --install` into a DESTDIR with another prefix (/opt/vmm):
#  - exactly the expected files, in the GNUInstallDirs places, the library
#    with its soname and version links;
#  - the units and the pkg-config file name the prefix installed to, not the
#    one configured;
#  - a tiny C program compiles and links against the installed header and
#    library through pkg-config, and another through find_package(vmm_client),
#    and both run (vmm_strerror needs no daemon).
# Environment (from tests/install/CMakeLists.txt): VMM_BUILD_DIR,
# VMM_TEST_TMPDIR, VMM_INST_* (the GNUInstallDirs and systemd directories),
# VMM_VERSION, VMM_TEST_CFLAGS (sanitizer flags of this build).
set -u -o pipefail

build=${VMM_BUILD_DIR:?}
tmp=${VMM_TEST_TMPDIR:?}
prefix=/opt/vmm
dest=$tmp/dest
fail() { echo "FAIL: $*"; exit 1; }
command -v pkg-config >/dev/null || { echo "SKIP: no pkg-config"; exit 77; }

rm -rf "$dest" "$tmp/pc" "$tmp/cm" && mkdir -p "$dest" || fail "cannot create $dest"
DESTDIR=$dest cmake --install "$build" --prefix "$prefix" > "$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log"; fail "cmake --install"; }

# --- the file list -------------------------------------------------------
P=$prefix
lib=$P/$VMM_INST_LIBDIR
ver=$VMM_VERSION
expected=(
  "$P/$VMM_INST_SBINDIR/vmmd"
  "$P/$VMM_INST_BINDIR/vmmctl"
  "$P/$VMM_INST_LIBEXECDIR/vmmd/vmmd-gpus"
  "$lib/libvmm_client.so"
  "$lib/libvmm_client.so.${ver%%.*}"
  "$lib/libvmm_client.so.$ver"
  "$P/$VMM_INST_INCLUDEDIR/vmm_client.h"
  "$lib/pkgconfig/vmm_client.pc"
  "$lib/cmake/vmm_client/vmm_clientConfig.cmake"
  "$lib/cmake/vmm_client/vmm_clientConfigVersion.cmake"
  "$lib/cmake/vmm_client/vmm_clientTargets.cmake"
  "$lib/cmake/vmm_client/vmm_clientTargets-$VMM_INST_CONFIG.cmake"
  "$VMM_INST_UNITDIR/vmmd.service"
  "$VMM_INST_UNITDIR/vmmd@.service"
  "$VMM_INST_UNITDIR/vmmd@.socket"
  "$VMM_INST_TMPFILESDIR/vmmd.conf"
  "$VMM_INST_SYSUSERSDIR/vmmd.conf"
  "$P/$VMM_INST_DOCDIR/examples/vmmd.conf.example"
  "$P/$VMM_INST_DOCDIR/examples/vmmd-metrics.conf"
  "$P/$VMM_INST_MANDIR/man3/libvmm_client.3.gz"
  "$P/$VMM_INST_MANDIR/man5/vmmd.conf.5.gz"
  "$P/$VMM_INST_MANDIR/man8/vmmctl.8.gz"
  "$P/$VMM_INST_MANDIR/man8/vmmd.8.gz"
)
printf '%s\n' "${expected[@]}" | sed 's|//*|/|g' | sort > "$tmp/expected.txt"
(cd "$dest" && find . \( -type f -o -type l \) | sed 's|^\.||' | sort) > "$tmp/got.txt"
if ! diff -u "$tmp/expected.txt" "$tmp/got.txt"; then
  fail "installed files differ from the expected list (- expected, + installed)"
fi
echo "installed: $(wc -l < "$tmp/got.txt") files, as expected"

# Binaries are executable; the library is a real file behind two links, with
# the soname libvmm_client.so.<major>.
for f in "$P/$VMM_INST_SBINDIR/vmmd" "$P/$VMM_INST_BINDIR/vmmctl" \
         "$P/$VMM_INST_LIBEXECDIR/vmmd/vmmd-gpus"; do
  [[ -x $dest$f && -f $dest$f ]] || fail "$f is not an executable file"
done
[[ -L $dest$lib/libvmm_client.so && -L $dest$lib/libvmm_client.so.${ver%%.*} &&
   -f $dest$lib/libvmm_client.so.$ver && ! -L $dest$lib/libvmm_client.so.$ver ]] ||
  fail "libvmm_client.so is not real file + soname link + dev link"
[[ $(readlink -f "$dest$lib/libvmm_client.so") == "$(readlink -f "$dest$lib/libvmm_client.so.$ver")" ]] ||
  fail "libvmm_client.so does not lead to libvmm_client.so.$ver"
soname=$(objdump -p "$dest$lib/libvmm_client.so.$ver" | awk '$1 == "SONAME" {print $2}')
[[ $soname == "libvmm_client.so.${ver%%.*}" ]] || fail "soname is '$soname'"

# The man pages are the sources, compressed.
for m in man3/libvmm_client.3 man5/vmmd.conf.5 man8/vmmctl.8 man8/vmmd.8; do
  cmp -s <(gzip -dc "$dest$P/$VMM_INST_MANDIR/$m.gz") "$VMM_SOURCE_DIR/man/${m#*/}" ||
    fail "installed $m.gz is not man/${m#*/}"
done

# The units and the .pc name the prefix installed to.
grep -qx "ExecStart=$P/$VMM_INST_SBINDIR/vmmd --device %i --foreground" \
  "$dest$VMM_INST_UNITDIR/vmmd@.service" || fail "vmmd@.service: $(grep ExecStart= "$dest$VMM_INST_UNITDIR/vmmd@.service")"
grep -qx "ExecStart=$P/$VMM_INST_LIBEXECDIR/vmmd/vmmd-gpus --exec systemctl start" \
  "$dest$VMM_INST_UNITDIR/vmmd.service" || fail "vmmd.service: $(grep ExecStart= "$dest$VMM_INST_UNITDIR/vmmd.service")"
grep -qx "prefix=$P" "$dest$lib/pkgconfig/vmm_client.pc" || fail "vmm_client.pc: wrong prefix"

# --- programs linking the API ----------------------------------------------
# libvmm_client.so needs libcuda.so.1: the linker must find it (the
# emulator here, the driver on a GPU machine).
rpl=()
[[ -n ${LD_LIBRARY_PATH:-} ]] && rpl=("-Wl,-rpath-link,$LD_LIBRARY_PATH")
cflags=(${VMM_TEST_CFLAGS:-})
mkdir -p "$tmp/pc" "$tmp/cm"
cat > "$tmp/pc/app.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <vmm_client.h>

int
main(void)
{
	const char *s = vmm_strerror(VMM_ENOMEM);

	if (s == NULL || strstr(s, "memory") == NULL)
		return 1;
	printf("vmm_strerror: %s\n", s);
	return 0;
}
C
cp "$tmp/pc/app.c" "$tmp/cm/app.c"
run_app() {
  local out
  out=$(LD_LIBRARY_PATH="$dest$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$1" 2>&1) ||
    { printf '%s\n' "$out"; fail "$1 did not run"; }
  printf '%s\n' "$out"
  grep -q '^vmm_strerror: .*memory' <<<"$out" || fail "$1 printed '$out'"
  grep -q "NEEDED *libvmm_client.so.${ver%%.*}\$" <<<"$(objdump -p "$1")" ||
    fail "$1 does not need libvmm_client.so.${ver%%.*}"
}

# pkg-config, as a build system would use it for a staged root.
pc=$(PKG_CONFIG_PATH="$dest$lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$dest" \
     pkg-config --cflags --libs vmm_client) || fail "pkg-config does not find vmm_client"
echo "pkg-config: $pc"
[[ $(PKG_CONFIG_PATH="$dest$lib/pkgconfig" pkg-config --modversion vmm_client) == "$ver" ]] ||
  fail "pkg-config --modversion is not $ver"
# shellcheck disable=SC2086
cc "${cflags[@]}" -o "$tmp/pc/app" "$tmp/pc/app.c" $pc "${rpl[@]}" || fail "cc with pkg-config"
run_app "$tmp/pc/app"

# CMake: find_package(vmm_client <version>) and the imported target.
cat > "$tmp/cm/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.16)
project(app LANGUAGES C)
find_package(vmm_client $ver REQUIRED)
add_executable(app app.c)
target_link_libraries(app PRIVATE vmm_client::vmm_client)
CM
cmake -S "$tmp/cm" -B "$tmp/cm/build" -DCMAKE_PREFIX_PATH="$dest$P" \
      -DCMAKE_C_FLAGS="${VMM_TEST_CFLAGS:-}" \
      -DCMAKE_EXE_LINKER_FLAGS="${rpl[*]:-}" > "$tmp/cm.log" 2>&1 &&
  cmake --build "$tmp/cm/build" >> "$tmp/cm.log" 2>&1 ||
  { cat "$tmp/cm.log"; fail "the CMake package config"; }
run_app "$tmp/cm/build/app"

# A version the package does not satisfy is refused.
sed -i "s/find_package(vmm_client $ver REQUIRED)/find_package(vmm_client $((${ver%%.*} + 1)).0 REQUIRED)/" \
  "$tmp/cm/CMakeLists.txt"
if cmake -S "$tmp/cm" -B "$tmp/cm/build2" -DCMAKE_PREFIX_PATH="$dest$P" > "$tmp/cm2.log" 2>&1; then
  fail "find_package(vmm_client $((${ver%%.*} + 1)).0) accepted version $ver"
fi
echo PASS
