#!/bin/bash
# vmmctl against fake_vmmd (canned replies; see fake_vmmd.c): one case per
# ctest test.
#
#   vmmctl_test.sh CASE VMMCTL FAKE_VMMD [VMMD]
#
# Cases: stats json paging errors usage socket trim_quota figures; daemon
# runs vmmctl against the real VMMD (on the emulator) instead.
set -u

CASE=$1
VMMCTL=$2
FAKE=$3
VMMD=${4:-}
T=${VMM_TEST_TMPDIR:?VMM_TEST_TMPDIR must be set}
rm -rf "$T"
mkdir -p "$T"
unset VMM_SOCKET_DIR

# Socket paths must fit sun_path (108 bytes, UUID names are 45): fall back
# to a short directory when the build tree is deep.
D=$T/s
if [ ${#D} -gt 60 ]; then
	D=$(mktemp -d /tmp/vmmctl-test.XXXXXX)
	trap 'rm -rf "$D"' EXIT
fi
mkdir -p "$D"
LOG=$T/fake.log
OUT=$T/out
ERR=$T/err
: >"$LOG"
UUID=0123abcd-4567-89ab-cdef-0123456789ab
fails=0

fail() {
	echo "FAIL [$CASE]: $*" >&2
	fails=$((fails + 1))
}

# fake SCENARIO [SOCKET]: a fake daemon that serves one connection.
fake() {
	"$FAKE" "${2:-$D/gpu0.sock}" "$1" "$LOG" >>"$LOG" 2>&1 ||
	    { echo "fake_vmmd $1 failed: $(cat "$LOG")" >&2; exit 1; }
}

# run STATUS ARGS...: run vmmctl (stdout in $OUT, stderr in $ERR) and check
# its exit status, and that any message is one line starting "vmmctl: ".
run() {
	local want=$1 rc
	shift
	"$VMMCTL" "$@" >"$OUT" 2>"$ERR"
	rc=$?
	if [ "$rc" -ne "$want" ]; then
		fail "vmmctl $* exited $rc, expected $want; stderr: $(cat "$ERR")"
		return 1
	fi
	if [ -s "$ERR" ]; then
		if [ "$(wc -l <"$ERR")" -ne 1 ] || ! grep -q '^vmmctl: ' "$ERR"; then
			fail "vmmctl $*: stderr is not one 'vmmctl: ' line: $(cat -v "$ERR")"
			return 1
		fi
	elif [ "$want" -ne 0 ]; then
		fail "vmmctl $*: failed without a message"
	fi
	return 0
}

# has FILE REGEX...: every extended regex matches a line of FILE.
has() {
	local f=$1 re
	shift
	for re in "$@"; do
		grep -Eq -- "$re" "$f" || fail "$(basename "$f") lacks /$re/: $(cat -v "$f")"
	done
}

# err_has TEXT: stderr contains TEXT, literally.
err_has() {
	grep -Fq -- "$1" "$ERR" || fail "stderr lacks '$1': $(cat -v "$ERR")"
}

# wait_log REGEX: the fake logs a line matching it within 2 s.
wait_log() {
	local i
	for i in $(seq 40); do
		grep -Eq -- "$1" "$LOG" && return 0
		sleep 0.05
	done
	fail "fake log lacks /$1/: $(cat -v "$LOG")"
}

# no_controls FILE: nothing but printable text and newlines.
no_controls() {
	python3 - "$1" <<'EOF' || fail "$(basename "$1") has control characters: $(cat -v "$1")"
import sys
data = open(sys.argv[1], 'rb').read()
sys.exit(any(b < 0x20 and b != 0x0a or b == 0x7f for b in data))
EOF
}

case_stats() {
	fake ok
	run 0 --socket-dir "$D" stats || return
	has "$OUT" \
	    '^device GPU-01020304-0506-0708-090a-0b0c0d0e0f10$' \
	    '^pool$' \
	    '^  physical        1\.5 GiB$' \
	    '^  lent              1 GiB$' \
	    '^  idle            512 MiB$' \
	    '^  quarantined         0 B$' \
	    '^  chunks               12$' \
	    '^  chunks lent           8$' \
	    '^  device total     80 GiB$' \
	    '^  device free    60\.1 GiB$' \
	    '^  granularity       2 MiB$' \
	    '^  peak physical     2 GiB$' \
	    '^  peak lent       1\.5 GiB$' \
	    '^counters$' \
	    '^  grants          42$' \
	    '^  oom_recoveries   1$' \
	    '^sessions \(5\)$' \
	    '^   ID   PID   UID  KIND   CHUNKS   HELD   IN-USE  CACHED    PEAK  QUOTA  IPC-OPEN  APP-VMM  NATIVE  NAME  *CONTAINER$' \
	    '^  100  4000  1000  app         0    0 B      0 B   512 B     0 B      -       0 B      0 B     0 B  python3  *-$' \
	    '^  101  4001  1000  app         1  2 MiB  1\.5 MiB   512 B   3 GiB  4 GiB       0 B    2 MiB     0 B  train "x" \\\\ y  *-$' \
	    '^  102  4002  1000  app         2  4 MiB  2\.5 MiB   512 B   6 GiB      -       0 B      0 B   8 MiB  tab\\x09here\\x0anewline  -$' \
	    '^  103  4003  1000  app         3  6 MiB  3\.5 MiB   512 B   9 GiB      -       0 B      0 B     0 B  café  *-$' \
	    '^  104  4004  1000  admin       4  8 MiB  4\.5 MiB   512 B  12 GiB      -       0 B      0 B     0 B  bad\\xff\\xfe  *-$'
	no_controls "$OUT"
	has "$LOG" '^hello version=4 kind=2 name=vmmctl pid=peer uuid_len=0$'
	[ "$(grep -c '^stats offset=' "$LOG")" -eq 3 ] ||
	    fail "expected 3 stats pages: $(cat "$LOG")"
	has "$LOG" '^stats offset=0$' '^stats offset=2$' '^stats offset=4$'
	# --reset-marks: asked on the first page only (it has the marks).
	fake ok
	run 0 --socket-dir "$D" stats --reset-marks --json || return
	has "$LOG" '^stats offset=0 reset$' '^stats offset=2$' '^stats offset=4$'
	run 1 --socket-dir "$D" stats --reset-marks --reset-marks
	wait_log '^goodbye reason=1$'
}

case_json() {
	fake ok
	run 0 --socket-dir "$D" stats --json || return
	python3 - "$OUT" <<'EOF' || fail "stats --json: $(cat -v "$OUT")"
import json, sys
d = json.load(open(sys.argv[1], encoding='utf-8'))
assert list(d) == ['pool', 'counters', 'sessions'], list(d)
assert d['pool'] == {
    'device_uuid': 'GPU-01020304-0506-0708-090a-0b0c0d0e0f10',
    'physical_bytes': 3 << 29, 'lent_bytes': 1 << 30, 'idle_bytes': 512 << 20,
    'quarantined_bytes': 0, 'chunks': 12, 'chunks_lent': 8,
    'device_total_bytes': 80 << 30, 'device_free_bytes': (60 << 30) + 123456789,
    'granularity': 2 << 20, 'peak_physical_bytes': 2 << 30,
    'peak_lent_bytes': 3 << 29, 'ipc_held_bytes': 0}, d['pool']
assert d['counters'] == {'grants': 42, 'releases': 40, 'creates': 12,
                         'stitches': 3, 'oom_recoveries': 1, 'failures': 0}
s = d['sessions']
keys = ['session_id', 'pid', 'uid', 'gid', 'kind', 'chunks_held', 'bytes_held',
        'reported_in_use', 'reported_cached', 'reported_peak', 'quota_bytes',
        'ipc_opened', 'ipc_opened_bytes', 'app_vmm_bytes',
        'native_fallback_bytes',
        'native_cumemcreate_bytes', 'native_pool_bytes', 'native_managed_bytes',
        'native_bytes', 'va_ranges', 'va_bytes', 'va_hint_missed',
        'connected_usec', 'name', 'cgroup',
        'container_id']
assert all(list(x) == keys for x in s), [list(x) for x in s]
assert [x['session_id'] for x in s] == [100, 101, 102, 103, 104]
assert [x['name'] for x in s] == ['python3', 'train "x" \\ y',
    'tab\there\nnewline', 'caf\u00e9', 'bad\ufffd\ufffd'], [x['name'] for x in s]
assert [x['kind'] for x in s] == ['app'] * 4 + ['admin']
assert s[1]['quota_bytes'] == 4 << 30 and s[1]['gid'] == 100
assert s[2]['connected_usec'] == 1700000000000002
assert [s[2][k] for k in ('native_fallback_bytes', 'native_cumemcreate_bytes',
    'native_pool_bytes', 'native_managed_bytes', 'native_bytes')] == \
    [1 << 20, 2 << 20, 4 << 20, 1 << 20, 8 << 20], s[2]
assert all(x['native_bytes'] == 0 for x in s if x['session_id'] != 102)
assert [x['app_vmm_bytes'] for x in s] == [0, 2 << 20, 0, 0, 0], s
EOF
	fake ok
	run 0 -S "$D/gpu0.sock" clients --json || return
	python3 - "$OUT" <<'EOF' || fail "clients --json: $(cat -v "$OUT")"
import json, sys
d = json.load(open(sys.argv[1], encoding='utf-8'))
assert list(d) == ['sessions'] and len(d['sessions']) == 5, d
EOF
	has "$LOG" '^clients offset=4$'
}

case_paging() {
	fake ok
	run 0 -S "$D/gpu0.sock" clients || return
	[ "$(wc -l <"$OUT")" -eq 6 ] || fail "clients: expected 6 lines: $(cat -v "$OUT")"
	has "$OUT" '^ ID   PID   UID  KIND   CHUNKS' '^100  4000' '^104  4004'
	has "$LOG" '^clients offset=0$' '^clients offset=2$' '^clients offset=4$'
	# Every row's name starts under the heading NAME.
	python3 - "$OUT" <<'EOF' || fail "clients: columns not aligned: $(cat -v "$OUT")"
import sys
lines = open(sys.argv[1], 'rb').read().decode('utf-8').splitlines()
col = lines[0].index('NAME')
assert all(len(l) > col and l[col - 2:col] == '  ' and l[col] != ' '
           for l in lines), col
EOF
	fake badpage
	run 4 -S "$D/gpu0.sock" stats && err_has "sent no sessions at offset 0 of 5"
	fake badpage
	run 4 -S "$D/gpu0.sock" clients
}

case_errors() {
	local t0 t1 s
	run 2 -S "$D/nope.sock" stats && err_has "$D/nope.sock"
	err_has "daemon not running"
	run 2 --socket-dir "$D/nodir" trim && err_has "$D/nodir/gpu0.sock"
	fake stale
	run 2 --socket-dir "$D" stats && err_has "$D/gpu0.sock"
	: >"$D/file.sock"
	run 2 -S "$D/file.sock" clients

	fake perm
	run 3 --socket-dir "$D" stats &&
	    err_has "permission denied by the daemon at $D/gpu0.sock: admin requests need uid 0 or group vmm"
	fake perm
	run 3 --socket-dir "$D" quota set uid 0 1G

	# connect() refused by file permissions (root would bypass them).
	s=$D/priv.sock
	fake ok "$s"
	chmod 600 "$s"
	if [ "$(id -u)" -ne 0 ]; then
		run 3 -S "$s" stats && err_has "permission denied: cannot connect to $s"
		chmod 666 "$s"
	elif setpriv --reuid=65534 --regid=65534 --clear-groups \
	    "$VMMCTL" --version >/dev/null 2>&1; then
		setpriv --reuid=65534 --regid=65534 --clear-groups \
		    "$VMMCTL" -S "$s" stats >"$OUT" 2>"$ERR"
		[ $? -eq 3 ] || fail "EACCES: expected 3: $(cat "$ERR")"
		err_has "permission denied: cannot connect to $s"
	else
		echo "note: EACCES case skipped (root, and uid 65534 cannot run $VMMCTL)"
	fi
	run 0 -S "$s" clients		# lets that fake go

	fake refuse
	run 5 -S "$D/gpu0.sock" quota set cgroup /a 1G &&
	    err_has "request refused by $D/gpu0.sock (invalid): no such cgroup\\x0a\\x1b[31mred"
	no_controls "$ERR"

	fake garbage
	run 4 -S "$D/gpu0.sock" stats && err_has "protocol error"
	fake version
	run 4 -S "$D/gpu0.sock" stats && err_has "speaks protocol version 99"
	fake version_error
	run 4 -S "$D/gpu0.sock" stats && err_has "(version_mismatch): this vmmd speaks protocol 3"
	fake close
	run 4 -S "$D/gpu0.sock" stats
	fake wrong
	run 4 -S "$D/gpu0.sock" trim && err_has "unexpected ack"
	fake dupcounter
	run 4 -S "$D/gpu0.sock" stats && err_has "counter 'grants' twice"
	fake goodbye
	run 2 -S "$D/gpu0.sock" clients && err_has "shutting down: stopping"

	fake silent
	t0=$(date +%s%N)
	run 4 -S "$D/gpu0.sock" --timeout 300 stats && err_has "timeout: no reply from $D/gpu0.sock within 300 ms"
	t1=$(date +%s%N)
	[ $(((t1 - t0) / 1000000)) -lt 3000 ] || fail "timeout took $(((t1 - t0) / 1000000)) ms"
}

case_usage() {
	local a
	# A socket that does not exist: any attempt to connect would exit 2.
	local S=(-S "$D/absent.sock")
	run 1
	run 1 "${S[@]}" && err_has "no command"
	run 1 "${S[@]}" frobnicate && err_has "unknown command 'frobnicate'"
	run 1 "${S[@]}" quota && err_has "incomplete command 'quota'"
	run 1 "${S[@]}" quota list
	run 1 "${S[@]}" stats --json extra
	run 1 "${S[@]}" stats --jsn && err_has "usage: vmmctl stats [--json]"
	run 1 "${S[@]}" clients -j
	run 1 "${S[@]}" trim --target
	run 1 "${S[@]}" trim --target 1X && err_has "bad size '1X'"
	run 1 "${S[@]}" trim --recall --recall --recall --recall
	run 1 "${S[@]}" quota set uid 1000 12Q && err_has "bad size '12Q'"
	run 1 "${S[@]}" quota set uid 1000 -1
	run 1 "${S[@]}" quota set uid 1000 99999999999999999999G
	run 1 "${S[@]}" quota set uid 1000
	run 1 "${S[@]}" quota set group 1000 1G
	run 1 "${S[@]}" quota set uid alice 1G && err_has "bad uid 'alice'"
	run 1 "${S[@]}" quota set uid 4294967295 1G
	run 1 "${S[@]}" quota set cgroup system.slice 1G
	run 1 "${S[@]}" quota clear name
	run 1 "${S[@]}" quota clear name "$(printf 'x%.0s' $(seq 65))"
	for a in xyz GPU-123 -1 0123abcd4567 "GPU-${UUID}0" "${UUID%?}" \
	    0123abcd--4567-89ab-cdef-0123456789ab -0123abcd4567-89ab-cdef-0123456789ab \
	    0123abcd-4567-89ab-cdef-0123456789ab- 01-23abcd4567-89ab-cdef-0123456789ab \
	    99999999999; do
		run 1 --socket-dir "$D" --device "$a" stats
	done
	err_has "device index '99999999999' out of range"
	run 1 "${S[@]}" --timeout 0 stats
	run 1 "${S[@]}" --timeout abc stats && err_has "bad timeout 'abc'"
	run 1 "${S[@]}" -t 99999999999 stats
	run 1 -S "" stats
	# Longer than PATH_MAX (longer than sun_path is fine: case_socket).
	run 1 -S "$D/$(printf 'x%.0s' $(seq 4200))" stats && err_has "socket path"
	run 1 --socket-dir "$D/$(printf 'x%.0s' $(seq 4200))" stats &&
	    err_has "longer than 4095 bytes"
	run 1 --frobnicate stats && err_has "unknown option '--frobnicate'"
	run 1 -x stats && err_has "unknown option '-x'"
	run 1 stats --device 0 && err_has "usage: vmmctl stats"
	run 1 --socket && err_has "option '--socket' needs an argument"
	run 1 help frobnicate

	run 0 --help
	has "$OUT" '^usage: vmmctl ' '^  stats \[--json\] \[--reset-marks\]$' '^  quota set uid\|name\|cgroup KEY SIZE$' \
	    '^  0  success$' '^  1  usage error' '^  2  daemon not running' \
	    '^  3  permission denied' '^  4  protocol error' '^  5  the daemon refused'
	run 0 help
	has "$OUT" '^Exit status:$'
	run 0 help quota
	[ "$(grep -c '^  quota ' "$OUT")" -eq 2 ] || fail "help quota: $(cat "$OUT")"
	run 0 help trim
	has "$OUT" '^  trim \[--recall\] \[--target SIZE\]$'
	run 0 --version
	has "$OUT" '^vmmctl [0-9]+\.[0-9]+\.[0-9]+ \(protocol 4\)$'
	[ ! -e "$D/absent.sock" ] || fail "something created $D/absent.sock"
}

case_socket() {
	local form
	run 2 --socket-dir "$D" --device 3 stats && err_has "$D/gpu3.sock:"
	run 2 --socket-dir "$D" -d 007 stats && err_has "$D/gpu7.sock:"
	run 2 --socket-dir "$D/" stats && err_has "$D/gpu0.sock:"
	for form in "GPU-0123ABCD-4567-89AB-CDEF-0123456789AB" \
	    0123abcd456789abcdef0123456789ab gpu-0123ABCD456789abcdef0123456789AB \
	    0123ABCD-4567-89ab-cdef-0123456789ab "GPU-0123abcd-456789ab-cdef0123456789ab"; do
		run 2 --socket-dir "$D" --device "$form" clients && err_has "$D/gpu-$UUID.sock:"
	done
	VMM_SOCKET_DIR=$D/env run 2 stats && err_has "$D/env/gpu0.sock:"
	VMM_SOCKET_DIR=$D/env run 2 --socket-dir "$D/opt" -d 1 stats && err_has "$D/opt/gpu1.sock:"
	VMM_SOCKET_DIR= run 2 -S "$D/x.sock" -d 4 --socket-dir "$D/opt" stats && err_has "$D/x.sock:"
	if [ ! -e /run/vmmd/gpu0.sock ]; then
		run 2 stats && err_has "/run/vmmd/gpu0.sock:"
	fi

	fake ok "$D/gpu-$UUID.sock"
	run 0 --socket-dir "$D" -d "GPU-${UUID^^}" stats
	fake ok "$D/gpu3.sock"
	VMM_SOCKET_DIR=$D run 0 -d 3 clients

	# A directory too long for sun_path is reached through its fd.
	local long=$D/$(printf 'x%.0s' $(seq 120))
	mkdir -p "$long"
	run 2 --socket-dir "$long" stats && err_has "$long/gpu0.sock: "
	fake ok "$long/gpu0.sock"
	run 0 --socket-dir "$long" stats
	fake ok "$long/gpu0.sock"
	run 0 -S "$long/gpu0.sock" clients
}

case_trim_quota() {
	fake ok
	run 0 -S "$D/gpu0.sock" trim || return
	[ "$(cat "$OUT")" = "released 768 MiB (805306368 bytes)" ] || fail "trim: $(cat "$OUT")"
	has "$LOG" '^trim target=0 recall=0$'
	fake ok
	run 0 -S "$D/gpu0.sock" trim --recall --target 1G
	[ "$(cat "$OUT")" = "released 1 GiB (1073741824 bytes)" ] || fail "trim: $(cat "$OUT")"
	has "$LOG" '^trim target=1073741824 recall=1$'
	fake ok
	run 0 -S "$D/gpu0.sock" trim --target 1536K
	has "$LOG" '^trim target=1572864 recall=0$'
	has "$OUT" '^released 1\.5 MiB \(1572864 bytes\)$'

	fake ok
	run 0 -S "$D/gpu0.sock" quota set uid 1000 4G
	[ ! -s "$OUT" ] || fail "quota set printed: $(cat "$OUT")"
	has "$LOG" '^quota kind=1 key=1000 bytes=4294967296$'
	fake ok
	run 0 -S "$D/gpu0.sock" quota set name python3 512M
	has "$LOG" '^quota kind=2 key=python3 bytes=536870912$'
	fake ok
	run 0 -S "$D/gpu0.sock" quota set cgroup /system.slice/x.service 0
	has "$LOG" '^quota kind=3 key=/system.slice/x.service bytes=0$'
	fake ok
	run 0 -S "$D/gpu0.sock" quota clear uid 0
	has "$LOG" '^quota kind=1 key=0 bytes=0$'
	[ ! -s "$OUT" ] || fail "quota clear printed: $(cat "$OUT")"
}

# figures_check LOG HELP JSON TABLE: the figures listed in LOG ("figure
# pool|counter NAME VALUE" lines; from the real daemon's JSON if LOG is -)
# each have a help line, and appear with their value in JSON and TABLE; and
# every figure the help lists is sent.
figures_check() {
	python3 - "$@" <<'EOF' || fail "figures: help, JSON and table disagree (see above)"
import json, re, sys
logf, helpf, jsonf, tablef = sys.argv[1:]
d = json.load(open(jsonf, encoding='utf-8'))
if logf == '-':
    pool = {k: v for k, v in d['pool'].items() if k != 'device_uuid'}
    counters = dict(d['counters'])
else:
    pool, counters = {}, {}
    for line in open(logf, encoding='utf-8'):
        m = re.match(r'figure (pool|counter) (\S+) (\S+)$', line.rstrip('\n'))
        if m:
            assert m[3] != 'unsupported', 'PoolStats.%s is not a uint64' % m[2]
            (pool if m[1] == 'pool' else counters)[m[2]] = int(m[3])
assert pool and counters, (pool, counters)

# Help: one section per kind, one "  NAME  meaning" line per figure.
text = open(helpf, encoding='utf-8').read()
sections = text.split('\n\n')
def listed(head):
    sec = [x for x in sections if x.startswith(head)]
    assert len(sec) == 1, (head, text)
    return [l.split()[0] for l in sec[0].splitlines()[1:]
            if re.match(r'  \S+  +\S', l)]
hpool, hcounters = listed('Pool figures'), listed('Counters')
assert sorted(hpool) == sorted(pool), ('pool: help', hpool, 'sent', sorted(pool))
assert sorted(hcounters) == sorted(counters), ('counters: help', hcounters,
                                               'sent', sorted(counters))

# JSON: every figure sent, with its value.
assert {k: v for k, v in d['pool'].items() if k != 'device_uuid'} == pool, d['pool']
assert d['counters'] == counters, d['counters']

# Table: one pool row per figure, one counter row per counter.
lines = open(tablef, encoding='utf-8').read().splitlines()
p, c = lines.index('pool'), lines.index('counters')
s = next(i for i, l in enumerate(lines) if l.startswith('sessions ('))
rows = [l for l in lines[p + 1:c] if l.strip()]
assert len(rows) == len(pool), rows
if logf != '-':
    # Values 1, 2, 3...: bytes show as "N B", counts as "N".
    got = sorted(int(re.search(r'(\d+)( B)?$', r)[1]) for r in rows)
    assert got == sorted(pool.values()), (got, pool)
crows = dict((l.split()[0], int(l.split()[1])) for l in lines[c + 1:s] if l.strip())
# The real daemon counts between the two runs: names only, then.
assert (crows == counters if logf != '-' else
        sorted(crows) == sorted(counters)), (crows, counters)
EOF
}

case_figures() {
	run 0 help stats || return
	cp "$OUT" "$T/help"
	run 0 stats --help || return
	cmp -s "$OUT" "$T/help" || fail "stats --help differs from help stats"
	run 0 help || return
	grep -q 'physical_bytes' "$OUT" && fail "help lists figures: $(cat "$OUT")"
	fake all
	run 0 --socket-dir "$D" stats --json || return
	cp "$OUT" "$T/json"
	fake all
	run 0 --socket-dir "$D" stats || return
	cp "$OUT" "$T/table"
	no_controls "$T/table"
	figures_check "$LOG" "$T/help" "$T/json" "$T/table"
}

# The real daemon sends exactly the figures vmmctl documents.
case_daemon() {
	local pid i
	[ -x "$VMMD" ] || { fail "no vmmd binary '$VMMD'"; return; }
	: >"$D/vmmd.conf"
	"$VMMD" --foreground --socket-dir "$D" --config "$D/vmmd.conf" \
	    >"$T/vmmd.log" 2>&1 &
	pid=$!
	for i in $(seq 100); do
		[ -S "$D/gpu0.sock" ] && break
		sleep 0.05
	done
	run 0 help stats && cp "$OUT" "$T/help"
	run 0 --socket-dir "$D" stats --json && cp "$OUT" "$T/json"
	run 0 --socket-dir "$D" stats && cp "$OUT" "$T/table"
	kill "$pid"
	wait "$pid" || fail "vmmd exited $?: $(cat "$T/vmmd.log")"
	[ -s "$T/json" ] && [ -s "$T/table" ] || return
	figures_check - "$T/help" "$T/json" "$T/table"
}

case "$CASE" in
stats | json | paging | errors | usage | socket | trim_quota | figures | daemon)
	"case_$CASE" ;;
*)
	echo "unknown case $CASE" >&2
	exit 2
	;;
esac
if [ "$fails" -ne 0 ]; then
	echo "$fails check(s) failed in $CASE" >&2
	exit 1
fi
echo "ok: $CASE"
