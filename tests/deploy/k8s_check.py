#!/usr/bin/env python3
"""deploy/kubernetes, checked without a cluster: every manifest parses and
is well-formed for its kind; the names and paths agree with each other, with
the systemd unit, with vmmd's defaults and with `vmmctl cdi`; the ConfigMap's
vmmd.conf is written out for the caller to start a real vmmd with.

    k8s_check.py DEPLOY_DIR UNIT_FILE CDI_JSON CONF_OUT VERSION
"""
import json
import os
import re
import sys

import yaml

deploy, unit_file, cdi_file, conf_out, version = sys.argv[1:6]
fail = []


def check(cond, msg):
    if not cond:
        fail.append(msg)


docs = {}
for f in sorted(os.listdir(deploy)):
    if f.endswith(".yaml"):
        for d in yaml.safe_load_all(open(os.path.join(deploy, f))):
            check(isinstance(d, dict) and "apiVersion" in d and "kind" in d and
                  "metadata" in d and "name" in d["metadata"], "%s: not a manifest" % f)
            docs[d["kind"]] = d
for k in ("Namespace", "ConfigMap", "DaemonSet", "Pod"):
    check(k in docs, "no %s manifest" % k)
ns, cm, ds, pod = (docs.get(k, {}) for k in ("Namespace", "ConfigMap", "DaemonSet", "Pod"))
unit = open(unit_file).read()
cdi = json.load(open(cdi_file))
cdi_edits = cdi["devices"][0]["containerEdits"]
cdi_env = dict(e.split("=", 1) for e in cdi_edits["env"])

# Namespace and names.
check(cm["metadata"]["namespace"] == ns["metadata"]["name"] ==
      ds["metadata"]["namespace"], "namespaces disagree")
spec = ds["spec"]
tmpl = spec["template"]
check(spec["selector"]["matchLabels"].items() <= tmpl["metadata"]["labels"].items(),
      "the DaemonSet's selector does not match its pods")
pspec = tmpl["spec"]
check(pspec.get("hostPID") is True, "vmmd needs hostPID: it ties leases to host pids")

# The ConfigMap's vmmd.conf: socket_dir as the unit's RuntimeDirectory.
conf = cm["data"]["vmmd.conf"]
m = re.search(r"^socket_dir\s*=\s*(\S+)", conf, re.M)
sock = m.group(1) if m else None
m = re.search(r"^RuntimeDirectory=(\S+)", unit, re.M)
check(m and sock == "/run/" + m.group(1), "socket_dir %s is not the unit's /run/<RuntimeDirectory>" % sock)
check(sock == cdi_env.get("VMM_SOCKET_DIR"), "the CDI spec's VMM_SOCKET_DIR is not %s" % sock)
open(conf_out, "w").write(conf)

vols = {v["name"]: v for v in pspec["volumes"]}
vmmd = [c for c in pspec["containers"] if c["name"] == "vmmd"][0]
mounts = {m["name"]: m for m in vmmd["volumeMounts"]}
check(vols["sockets"]["hostPath"]["path"] == sock == mounts["sockets"]["mountPath"],
      "the sockets hostPath and mount are not %s" % sock)
check(mounts["config"]["mountPath"] == "/etc/vmmd" and vols["config"]["configMap"]["name"]
      == cm["metadata"]["name"], "the config is not vmmd's default /etc/vmmd/vmmd.conf")
check(vmmd["readinessProbe"]["exec"]["command"][-1] == "--ready", "no readiness from vmmctl")
for c in pspec["initContainers"] + pspec["containers"]:
    check(c["image"] == "vmmd:" + version, "image %s is not vmmd:%s" % (c["image"], version))

# Containerfile: the entrypoint the DaemonSet runs is the script it copies.
cf = open(os.path.join(deploy, "Containerfile")).read()
m = re.search(r"^COPY deploy/kubernetes/vmmd-node (\S+)", cf, re.M)
check(m and vmmd["command"][0] == m.group(1), "the DaemonSet's command is not the image's vmmd-node")
check(os.access(os.path.join(deploy, "vmmd-node"), os.X_OK), "vmmd-node is not executable")

# The workload: socket dir and library where the DaemonSet puts them and
# where the CDI spec would.
w = pod["spec"]["containers"][0]
env = {e["name"]: e["value"] for e in w["env"]}
wm = {m["name"]: m["mountPath"] for m in w["volumeMounts"]}
wv = {v["name"]: v["hostPath"]["path"] for v in pod["spec"]["volumes"]}
cdi_mounts = {m["containerPath"]: m["hostPath"] for m in cdi_edits["mounts"]}
check(env["LD_PRELOAD"] == cdi_env["LD_PRELOAD"] == wm["vmmd-lib"],
      "LD_PRELOAD, the library mount and the CDI spec disagree")
check(wm["vmmd-lib"] in cdi_mounts, "the CDI spec mounts the library elsewhere")
check(env["VMM_SOCKET_DIR"] == sock == wm["vmmd-sockets"] == wv["vmmd-sockets"],
      "the workload's socket dir is not %s" % sock)
init = pspec["initContainers"][0]
check(os.path.dirname(wv["vmmd-lib"]) == vols["lib"]["hostPath"]["path"] and
      init["command"][-1].startswith("/host-lib/") and
      os.path.basename(init["command"][-1]) == os.path.basename(wv["vmmd-lib"]),
      "the workload's library is not where the init container copies it")

for f in fail:
    print("FAIL:", f)
sys.exit(1 if fail else 0)
