#!/usr/bin/env python3
"""Check a CDI spec (JSON) against the rules of the CDI specification,
version 0.6.0 (github.com/cncf-tags/container-device-interface, SPEC.md and
schema/): the fields allowed and required at each level, the forms of kind,
device names, env entries and mounts.  Exit 0 if valid, 1 with the reasons.

    cdi_check.py SPEC.json
"""
import json
import re
import sys

errors = []


def err(msg):
    errors.append(msg)


def keys(obj, where, allowed, required=()):
    if not isinstance(obj, dict):
        err("%s: not an object" % where)
        return False
    for k in obj:
        if k not in allowed:
            err("%s: unknown field %r" % (where, k))
    for k in required:
        if k not in obj:
            err("%s: %r is required" % (where, k))
    return True


def strings(v, where):
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        err("%s: not an array of strings" % where)
        return []
    return v


def edits(e, where):
    if not keys(e, where, {"env", "deviceNodes", "hooks", "mounts", "intelRdt",
                           "additionalGIDs"}):
        return
    if not e:
        err("%s: empty container edits" % where)
    for i, s in enumerate(strings(e.get("env", []), where + ".env")):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", s, re.S):
            err("%s.env[%d]: %r is not NAME=value" % (where, i, s))
    for i, m in enumerate(e.get("mounts", [])):
        w = "%s.mounts[%d]" % (where, i)
        if not keys(m, w, {"hostPath", "containerPath", "type", "options"},
                    ("hostPath", "containerPath")):
            continue
        for f in ("hostPath", "containerPath"):
            if not isinstance(m.get(f), str) or not m[f]:
                err("%s.%s: not a path" % (w, f))
        if isinstance(m.get("containerPath"), str) and not m["containerPath"].startswith("/"):
            err("%s.containerPath: not absolute" % w)
        strings(m.get("options", []), w + ".options")
    for i, d in enumerate(e.get("deviceNodes", [])):
        keys(d, "%s.deviceNodes[%d]" % (where, i),
             {"path", "hostPath", "type", "major", "minor", "fileMode",
              "permissions", "uid", "gid"}, ("path",))


def main(path):
    try:
        spec = json.load(open(path))
    except (OSError, ValueError) as e:
        print("%s: %s" % (path, e))
        return 1
    if keys(spec, "spec", {"cdiVersion", "kind", "annotations", "devices",
                           "containerEdits"}, ("cdiVersion", "kind", "devices")):
        if not re.fullmatch(r"\d+\.\d+\.\d+", str(spec.get("cdiVersion", ""))):
            err("cdiVersion: %r is not a version" % spec.get("cdiVersion"))
        kind = str(spec.get("kind", ""))
        m = re.fullmatch(r"([A-Za-z][A-Za-z0-9_.-]*)/([A-Za-z0-9][A-Za-z0-9_.-]*)", kind)
        if not m or m.group(1).endswith((".", "-", "_")):
            err("kind: %r is not vendor/class" % kind)
        devices = spec.get("devices")
        if not isinstance(devices, list) or not devices:
            err("devices: must be a non-empty array")
            devices = []
        names = set()
        for i, d in enumerate(devices):
            w = "devices[%d]" % i
            if not keys(d, w, {"name", "annotations", "containerEdits"},
                        ("name", "containerEdits")):
                continue
            n = d.get("name")
            if not isinstance(n, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:-]*", n):
                err("%s.name: %r is not a device name" % (w, n))
            elif n in names:
                err("%s.name: %r twice" % (w, n))
            names.add(n)
            edits(d.get("containerEdits"), w + ".containerEdits")
        if "containerEdits" in spec:
            edits(spec["containerEdits"], "containerEdits")
    for e in errors:
        print("%s: %s" % (path, e))
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: cdi_check.py SPEC.json")
    sys.exit(main(sys.argv[1]))
