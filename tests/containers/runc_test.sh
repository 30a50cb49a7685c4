#!/usr/bin/env bash
# A CUDA program in a real container (runc, Debian's package) allocates
# through vmmd: its own pid, mount, ipc, uts and network namespaces and a
# root filesystem holding only the program, the preload library and the
# (emulated) driver; the host shares only vmmd's socket directory.  Checks:
#   - the program's memory comes from vmmd, data checked (it exits 0);
#   - `vmmctl clients --json` shows it with the container's cgroup and the
#     container id read from it, and its host pid (not 1);
#   - killing the container returns every chunk;
#   - a quota on the container's cgroup limits it;
#   - `vmmctl cdi` is a valid CDI spec, and a container given nothing of
#     vmmd but that spec's edits (applied as a CDI-aware runtime does:
#     runc has no CDI of its own) allocates through vmmd.
#   runc_test.sh VMMD VMMCTL APP PRELOAD_LIB CUEMU_LIB_DIR
# Skips (77) unless root with runc installed (scripts/setup.sh installs it).
# runc, not crun: crun refuses our machines' hybrid cgroup-v1 hierarchy;
# runc wants a root filesystem directory, built here from ldd's list.
# The emulator keeps its devices' state in /dev/shm, so the container gets
# the host's /dev/shm (a real GPU would be /dev/nvidia* instead).
set -euo pipefail
vmmd=$1 vmmctl=$2 app=$3 lib=$4 cuemu=$5
[[ $(id -u) -eq 0 ]] || { echo "SKIP: runc needs root here"; exit 77; }
command -v runc >/dev/null || { echo "SKIP: runc missing (scripts/setup.sh installs it)"; exit 77; }
T=${VMM_TEST_TMPDIR:?}
rm -rf "${T:?}"/* && mkdir -p "$T/sock" "$T/out"
export VMM_SOCKET_DIR=$T/sock
hex=$(printf '%s' "vmmtest-$$-$RANDOM" | sha256sum | cut -c1-64)
ids=()
vmmd_pid=
cleanup() {
  for id in "${ids[@]}"; do runc delete --force "$id" >/dev/null 2>&1 || true; done
  [[ -n "$vmmd_pid" ]] && { kill "$vmmd_pid" 2>/dev/null || true; wait "$vmmd_pid" 2>/dev/null || true; }
  rmdir /sys/fs/cgroup/*/vmmtest-$$/* /sys/fs/cgroup/*/vmmtest-$$ 2>/dev/null || true
}
trap cleanup EXIT

# The root filesystem: the program, the library, the driver and what they
# link, nothing else (no shell).
R=$T/rootfs
mkdir -p "$R/vmm/bin" "$R/vmm/lib" "$R/lib64" "$R/proc" "$R/dev" "$R/sys" "$R/run/vmmd" "$R/out" "$R/tmp"
cp "$app" "$R/vmm/bin/app"
cp "$lib" "$R/vmm/lib/"
cp -L "$cuemu/libcuda.so.1" "$R/vmm/lib/"
for f in "$app" "$lib" "$cuemu/libcuda.so.1"; do
  LD_LIBRARY_PATH=$cuemu ldd "$f" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' |
  while read -r so; do
    case $so in
      */ld-linux*) cp -L "$so" "$R/lib64/" ;;
      *) cp -L "$so" "$R/vmm/lib/" ;;
    esac
  done
done
[[ -e "$R/lib64/ld-linux-x86-64.so.2" ]] || { echo "no dynamic loader found by ldd"; exit 1; }

"$vmmd" --foreground --socket-dir "$T/sock" &
vmmd_pid=$!
for _ in $(seq 100); do "$vmmctl" stats >/dev/null 2>&1 && break; sleep 0.05; done

# bundle NAME CGROUP ARGS...: a runc bundle running the program.
bundle() {
  local name=$1 cg=$2
  shift 2
  mkdir -p "$T/$name"
  (cd "$T/$name" && runc spec)
  python3 - "$T/$name/config.json" "$R" "$T" "$cg" "${CUEMU_INSTANCE:?}" "${CUEMU_MEM_MB:-16384}" "$@" <<'PY'
import json, sys
path, root, t, cg, inst, mem = sys.argv[1:7]
args = sys.argv[7:]
c = json.load(open(path))
c["root"] = {"path": root, "readonly": True}
p = c["process"]
p["terminal"] = False
p["args"] = ["/vmm/bin/app"] + args
p["cwd"] = "/"
p["env"] = ["PATH=/vmm/bin", "LD_LIBRARY_PATH=/vmm/lib",
            "LD_PRELOAD=/vmm/lib/libvmm_client.so", "VMM_SOCKET_DIR=/run/vmmd",
            "VMM_REQUIRE_DAEMON=1", "VMM_REPORT_MS=50",
            "CUEMU_INSTANCE=" + inst, "CUEMU_MEM_MB=" + mem]
c["mounts"] = [m for m in c["mounts"] if m["destination"] not in ("/dev/shm",)]
c["mounts"] += [
    {"destination": "/run/vmmd", "type": "bind", "source": t + "/sock", "options": ["rbind", "rw"]},
    {"destination": "/dev/shm", "type": "bind", "source": "/dev/shm", "options": ["rbind", "rw"]},
    {"destination": "/out", "type": "bind", "source": t + "/out", "options": ["rbind", "rw"]},
]
ns = [n["type"] for n in c["linux"]["namespaces"]]
for want in ("pid", "mount", "ipc", "uts", "network"):
    assert want in ns, (want, ns)
c["linux"]["cgroupsPath"] = cg
json.dump(c, open(path, "w"), indent=1)
PY
}

# 1. A container holding memory: seen by vmmd with its cgroup and id.
cgA=/vmmtest-$$/libpod-$hex.scope
bundle a "$cgA" 60000 1
ids+=(vmmtest-a-$$)
runc run -d --bundle "$T/a" "vmmtest-a-$$" > "$T/out/a.log" 2>&1
for _ in $(seq 100); do grep -q holding "$T/out/a.log" && break; sleep 0.05; done
grep -q holding "$T/out/a.log" || { echo "the container's program did not run:"; cat "$T/out/a.log"; exit 1; }
"$vmmctl" clients --json > "$T/clients.json"
python3 - "$T/clients.json" "$cgA" "$hex" <<'PY'
import json, sys
sessions = json.load(open(sys.argv[1]))["sessions"]
mine = [s for s in sessions if s["cgroup"] == sys.argv[2]]
assert len(mine) == 1, sessions
s = mine[0]
assert s["container_id"] == sys.argv[3], s
assert s["kind"] == "app" and s["bytes_held"] > 0, s
assert s["pid"] > 1, s          # the host's pid for it, not the container's 1
PY
"$vmmctl" clients | grep -q "  ${hex:0:12}$" || { echo "vmmctl clients shows no container id:"; "$vmmctl" clients; exit 1; }
lent=$("$vmmctl" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pool"]["lent_bytes"])')
[[ $lent -gt 0 ]] || { echo "nothing lent to the container"; exit 1; }

# 2. Killing the container returns every chunk.
runc kill "vmmtest-a-$$" KILL
for _ in $(seq 100); do
  lent=$("$vmmctl" stats --json | python3 -c 'import json,sys; d=json.load(sys.stdin)["pool"]; print(d["lent_bytes"] + d["quarantined_bytes"])')
  [[ $lent -eq 0 ]] && break
  sleep 0.05
done
[[ $lent -eq 0 ]] || { echo "after the container was killed vmmd still lends $lent bytes"; exit 1; }
runc delete --force "vmmtest-a-$$"

# 3. A quota on the container's cgroup limits it: the program, which needs
# about 100 MiB, is refused past 32 MiB and fails cleanly.
cgB=/vmmtest-$$/libpod-b$(printf '%s' "$hex" | cut -c2-).scope
"$vmmctl" quota set cgroup "$cgB" 32M
bundle b "$cgB" 0 1
ids+=(vmmtest-b-$$)
set +e
runc run --bundle "$T/b" "vmmtest-b-$$" > "$T/out/b.log" 2>&1
rc=$?
set -e
[[ $rc -ne 0 ]] && grep -q 'failed' "$T/out/b.log" ||
  { echo "the quota did not limit the container (exit $rc):"; cat "$T/out/b.log"; exit 1; }
"$vmmctl" stats --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["counters"]["quota_failures"] >= 1, d["counters"]
assert d["pool"]["lent_bytes"] == 0, d["pool"]
'
# 4. CDI: the spec vmmctl writes is valid, and is all a container needs.
"$vmmctl" --socket-dir "$T/sock" cdi --library "$lib" > "$T/vmmd-cdi.json"
python3 "$(dirname "$0")/cdi_check.py" "$T/vmmd-cdi.json"
"$vmmctl" quota clear cgroup "$cgB"
cgC=/vmmtest-$$/libpod-c$(printf '%s' "$hex" | cut -c2-).scope
bundle c "$cgC" 0 1
python3 - "$T/c/config.json" "$T/vmmd-cdi.json" <<'PY'
import json, sys
cfg_path, spec_path = sys.argv[1:]
c = json.load(open(cfg_path))
spec = json.load(open(spec_path))
dev = [d for d in spec["devices"] if d["name"] == "all"][0]["containerEdits"]
# Nothing of vmmd is left but what the CDI device brings.
c["process"]["env"] = [e for e in c["process"]["env"]
                       if not e.startswith(("LD_PRELOAD=", "VMM_SOCKET_DIR="))]
c["mounts"] = [m for m in c["mounts"] if m["destination"] != "/run/vmmd"]
# Apply the edits as a CDI-aware runtime would.
c["process"]["env"] += dev.get("env", []) + spec.get("containerEdits", {}).get("env", [])
for m in dev.get("mounts", []) + spec.get("containerEdits", {}).get("mounts", []):
    c["mounts"].append({"destination": m["containerPath"], "type": "bind",
                        "source": m["hostPath"], "options": m.get("options", [])})
json.dump(c, open(cfg_path, "w"), indent=1)
PY
mkdir -p "$R/usr/lib/vmmd" "$R$T/sock"
touch "$R/usr/lib/vmmd/libvmm_client.so"
rm -f "$R/vmm/lib/libvmm_client.so"
ids+=(vmmtest-c-$$)
grants0=$("$vmmctl" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["counters"]["grants"])')
runc run --bundle "$T/c" "vmmtest-c-$$" > "$T/out/c.log" 2>&1 ||
  { echo "the CDI container failed:"; cat "$T/out/c.log"; exit 1; }
grep -q 'app-check: ok' "$T/out/c.log"
grants=$("$vmmctl" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["counters"]["grants"])')
[[ $grants -gt $grants0 ]] || { echo "the CDI container did not allocate through vmmd"; exit 1; }
echo "runc: ok (container seen, killed container returned its chunks, cgroup quota held, CDI spec valid and sufficient)"
