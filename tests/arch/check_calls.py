#!/usr/bin/env python3
"""Two-way calls between source files of one folder (issue 9, "Done when").

    check_calls.py --allow FILE GROUP=OBJ[:OBJ...] ...

Each GROUP (client, daemon) names the object files of one folder's sources
as the build made them (build/.../large.c.o stands for GROUP/large.c).  With
nm, a file A "calls" file B when A's object references a function (a text
symbol) that B's object defines; the linker's view, so comments, strings and
macros cannot fool it, and static functions never count.  A pair of files
that call each other in both directions is reported.

The allowlist holds the pairs known today, one a line:
    GROUP/a.c GROUP/b.c    # why it is still there
Exit 0 only if the pairs found are exactly the allowlisted ones: a new pair
fails, and so does an allowlisted pair that no longer exists (delete its
line), so the list only shrinks.
"""
import argparse
import collections
import os
import re
import subprocess
import sys


def symbols(obj):
    """(defined functions, referenced symbols) of one object file."""
    out = subprocess.run(['nm', '-P', obj], check=True, capture_output=True,
                         text=True).stdout
    defined, used = set(), set()
    for line in out.splitlines():
        f = line.split()
        if len(f) < 2:
            continue
        if f[1] == 'T':
            defined.add(f[0])
        elif f[1] == 'U':
            used.add(f[0])
    return defined, used


def source_name(group, obj):
    base = os.path.basename(obj)
    for ext in ('.o', '.obj'):
        if base.endswith(ext):
            base = base[:-len(ext)]
    return '%s/%s' % (group, base)


def two_way_pairs(group, objs):
    """{(a, b): (functions a calls in b, functions b calls in a)}."""
    defs, uses = {}, {}
    for o in objs:
        name = source_name(group, o)
        defs[name], uses[name] = symbols(o)
    owner = {}
    for name, ds in defs.items():
        for d in ds:
            owner[d] = name
    calls = collections.defaultdict(set)        # (from, to) -> functions
    for name, us in uses.items():
        for u in us:
            if u in owner and owner[u] != name:
                calls[(name, owner[u])].add(u)
    pairs = {}
    for (a, b), fa in calls.items():
        if a < b and (b, a) in calls:
            pairs[(a, b)] = (sorted(fa), sorted(calls[(b, a)]))
    return pairs


def read_allowlist(path):
    allowed = {}
    with open(path, encoding='utf-8') as f:
        for n, line in enumerate(f, 1):
            text = line.split('#', 1)[0].split()
            if not text:
                continue
            if len(text) != 2 or '#' not in line:
                sys.exit('%s:%d: expected "A B  # comment"' % (path, n))
            allowed[tuple(sorted(text))] = n
    return allowed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--allow', required=True, help='the allowlist file')
    ap.add_argument('groups', nargs='+', metavar='GROUP=OBJ[:OBJ...]')
    args = ap.parse_args()

    found = {}
    for g in args.groups:
        group, sep, objs = g.partition('=')
        if not sep or not re.fullmatch(r'[A-Za-z0-9_]+', group):
            ap.error('bad group %r' % g)
        objs = [o for o in re.split('[:;]', objs) if o]
        if len(objs) < 2:
            ap.error('group %s has fewer than two objects' % group)
        for o in objs:
            if not os.path.exists(o):
                sys.exit('no object %s: build first' % o)
        found.update(two_way_pairs(group, objs))

    allowed = read_allowlist(args.allow)
    rc = 0
    for pair in sorted(found):
        ab, ba = found[pair]
        tag = 'known' if pair in allowed else 'NEW'
        print('%s: %s <-> %s' % (tag, pair[0], pair[1]))
        print('    %s calls %s' % (pair[0], ', '.join(ab)))
        print('    %s calls %s' % (pair[1], ', '.join(ba)))
        if pair not in allowed:
            rc = 1
    for pair, line in sorted(allowed.items(), key=lambda x: x[1]):
        if pair not in found:
            print('GONE: %s <-> %s no longer call each other: delete line %d '
                  'of %s' % (pair[0], pair[1], line, args.allow))
            rc = 1
    if rc:
        print('FAIL: two-way calls differ from %s (a NEW pair must be '
              'untangled, not allowlisted)' % args.allow)
    else:
        print('ok: %d two-way pair(s), all known' % len(found))
    return rc


if __name__ == '__main__':
    sys.exit(main())
