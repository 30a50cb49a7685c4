#!/usr/bin/env python3
"""Every VMM_* setting of the client library at its edges (issue: settings
accept exactly what they document, or refuse).

Reads the option table from client/settings.c and the README's settings
table, then runs an unmodified program under the library:
  - every variable of the code has a README row, and every README row a
    variable; a numeric row states its bounds (min if above 0, and max);
  - numbers: min and max accepted (the program runs, exit 0); one past
    either bound, a blank before the value, a sign, "" and "abc" refused;
  - enums: every choice accepted, another word refused; booleans: 0 and 1
    accepted, 2 refused; strings: one byte too long refused;
  - a refusal ends the program at start-up: exit 1 and one line on stderr
    that names the variable.
usage: settings_edges.py SOURCE_DIR LIBVMM_CLIENT_SO PROGRAM
"""
import concurrent.futures
import os
import re
import subprocess
import sys
import tempfile

src, lib, prog = sys.argv[1:4]
STRMAX = 256  # common/opt.h VMM_OPT_STRMAX

table = open(os.path.join(src, "client/settings.c")).read()
opts = re.findall(r'\{\s*"(VMM_\w+)",\s*VMM_OPT_(\w+),\s*"([^"]*)",\s*'
                  r'([^,]+),\s*([^,]+),\s*(NULL|"[^"]*")', table)
readme = open(os.path.join(src, "README.md")).read()
sect = readme.split("## Client settings", 1)[1].split("\n## ", 1)[0]
rows = {m.group(1): m.group(0) for m in
        re.finditer(r"^\| `(VMM_\w+)` \|.*$", sect, re.M)}
fail = []

names = [o[0] for o in opts]
if len(opts) < 18:
    fail.append("parsed only %d options from settings.c" % len(opts))
for n in names:
    if n not in rows:
        fail.append("%s: no row in the README's settings table" % n)
for n in rows:
    if n not in names:
        fail.append("%s: a README row, but no such setting" % n)


def num(s):
    v = float(s)
    return int(v) if v == int(v) else v


def forms(v, size):
    """How a bound may be written in the README."""
    out = {str(v), "%g" % v}
    if size and isinstance(v, int) and v:
        for suf, sh in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
            if v % (1 << sh) == 0:
                out.add("%d%s" % (v >> sh, suf))
                break
    if isinstance(v, int) and v >= 10**6 and str(v).rstrip("0") == "1":
        out.add("10^%d" % (len(str(v)) - 1))
    return out


cases = []  # (name, value, accepted)
tmp = tempfile.mkdtemp(prefix="vmm-settings-")
for name, typ, default, lo, hi, choices in opts:
    if typ in ("U64", "SIZE", "DOUBLE"):
        lo, hi = num(lo), num(hi)
        row = rows.get(name, "")
        for b in ([lo] if lo else []) + [hi]:
            if not any(f in row for f in forms(b, typ == "SIZE")):
                fail.append("%s: README row does not state the bound %s"
                            % (name, b))
        fmt = (lambda v: "%g" % v) if typ == "DOUBLE" else str
        cases += [(name, fmt(lo), True), (name, fmt(hi), True)]
        over = hi * 1.01 + 0.01 if typ == "DOUBLE" else hi + 1
        cases += [(name, fmt(over), False), (name, "", False),
                  (name, "abc", False), (name, " " + fmt(lo), False),
                  (name, "+" + fmt(hi), False), (name, "-1", False)]
        if lo > 0:
            under = lo / 2 if typ == "DOUBLE" else lo - 1
            cases.append((name, fmt(under), False))
    elif typ == "ENUM":
        for c in choices.strip('"').split("|"):
            cases.append((name, c, True))
        cases += [(name, "bogus", False), (name, "", False)]
    elif typ == "BOOL":
        cases += [(name, "0", True), (name, "1", True), (name, "2", False)]
    elif typ == "STRING":
        good = {"VMM_LOG_FILE": os.path.join(tmp, "log"),
                "VMM_SOCKET_DIR": "/nonexistent",
                "VMM_DAEMON_USER": "vmmd"}.get(name, "x")
        cases += [(name, good, True), (name, "x" * STRMAX, False)]
    else:
        fail.append("%s: type %s not covered here" % (name, typ))
# Documented refusals that are not a bound of the table.
cases += [("VMM_SOCKET_DIR", "", False), ("VMM_LOG_FILE", "", True),
          ("VMM_LOG_FILE", "/nonexistent/dir/log", False)]


def run(case):
    name, value, accepted = case
    env = dict(os.environ, LD_PRELOAD=lib)
    if name != "VMM_SOCKET_DIR":
        env["VMM_SOCKET_DIR"] = "/nonexistent"
    env[name] = value
    p = subprocess.run([prog, "1", "1"], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True,
                       errors="replace", timeout=120)
    err = p.stderr.strip()
    if accepted:
        # With no vmmd, VMM_REQUIRE_DAEMON=1 fails the allocations, as
        # documented: accepted all the same.
        if (name == "VMM_REQUIRE_DAEMON" and value == "1" and
                "allocations fail (VMM_REQUIRE_DAEMON=1)" in err):
            return None
        if p.returncode != 0:
            return "%s=%r refused or failed: exit %d, %s" % (
                name, value, p.returncode, err[:200])
    elif p.returncode != 1 or len(err.splitlines()) != 1 or name not in err:
        return "%s=%r not refused at start-up: exit %d, stderr %r" % (
            name, value, p.returncode, err[:200])
    return None


with concurrent.futures.ThreadPoolExecutor(max_workers=2) as ex:
    for case, res in zip(cases, ex.map(run, cases)):
        if res:
            fail.append(res)
for f in fail:
    print("FAIL:", f)
print("%d cases over %d settings, %d failures" % (len(cases), len(opts),
                                                 len(fail)))
sys.exit(1 if fail else 0)
