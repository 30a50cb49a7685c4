#!/usr/bin/env bash
# vmm-replay's trace parser, one ctest case per run: good traces of both
# formats give the right figures (--parse-only: no CUDA), and each kind of
# bad line is refused with exit 2 and a FILE:LINE: message.
#   parse_test.sh CASE VMM_REPLAY
set -euo pipefail
case_=$1 R=$2
T=$(mktemp -d /tmp/vmm-replay-parse.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL [$case_]: $*" >&2; exit 1; }

# ok FILE KEY VALUE...: parses, and each key has its value.
ok() {
  local f=$1 out; shift
  out=$("$R" --parse-only "$f") || fail "exit $? for a good trace"
  while [[ $# -gt 0 ]]; do
    got=$(awk -v k="$1" '$1 == k { print $2 }' <<<"$out")
    [[ "$got" == "$2" ]] || fail "$1 = '$got', want '$2'"$'\n'"$out"
    shift 2
  done
}
# bad FILE PATTERN... [-- ARGS]: exit 2, stderr matches each pattern.
bad() {
  local f=$1 rc=0 err; shift
  err=$("$R" --parse-only "$f" 2>&1 >/dev/null) || rc=$?
  [[ $rc -eq 2 ]] || fail "exit $rc, want 2; stderr: $err"
  for p in "$@"; do
    grep -qE -- "$p" <<<"$err" || fail "stderr lacks /$p/: $err"
  done
}
t() { printf '%s\n' "$@" > "$T/t.trace"; }
csv() { printf '%s\n' "Thread,Time,Action,Pointer,Size,Stream" "$@" > "$T/t.csv"; }

case $case_ in
text)     t '# a comment' '' 'alloc a 4M   # trailing comment' $'alloc\tb 1k' 'realloc a 6M' \
            'sleep 0' 'free b' 'alloc b 2G' 'free a' 'free b' 'alloc x 1T' 'free x'
          ok "$T/t.trace" format text ops 9 allocs 4 frees 4 reallocs 1 sleeps 1 \
             peak_requested_bytes 1099511627776 live_at_end_bytes 0 ids 3 ;;
crlf)     printf 'alloc a 10\r\nfree a\r\n' > "$T/t.trace"
          ok "$T/t.trace" ops 2 peak_requested_bytes 10 ;;
csv)      csv '1,16:40:22.287973,allocate,0x775400000,16777216,0' \
              '1,16:40:22.288000,allocate,0x775500000,100,0' \
              '1,16:40:22.288100,allocate failure,0x0,999999999,0' \
              '1,16:40:22.288250,free,0x775400000,16777216,0' \
              '1,16:40:22.288300,allocate,0x775400000,8,0' \
              '1,16:40:22.288400,deallocate,0x775500000,100,0'
          ok "$T/t.csv" format csv ops 5 allocs 3 frees 2 alloc_failures_in_trace 1 \
             peak_requested_bytes 16777316 live_at_end_bytes 8 ;;
min_size) t 'alloc a 1M' 'alloc b 2M' 'realloc a 8M' 'free a' 'free b'
          out=$("$R" --parse-only --min-size 2M "$T/t.trace")
          grep -qE '^peak_requested_bytes +2097152$' <<<"$out" || fail "$out"
          grep -qE '^skipped +3$' <<<"$out" || fail "$out" ;;
lenient)  t 'alloc a 1' 'free nobody' 'realloc nobody 5' 'free a'
          bad "$T/t.trace" "t.trace:2: free of unknown id nobody" "t.trace:3: realloc of unknown id nobody"
          out=$("$R" --parse-only --lenient "$T/t.trace") || fail "--lenient refused"
          grep -qE '^skipped +2$' <<<"$out" || fail "$out" ;;
unknown_op)   t 'alloc a 1' 'malloc b 2' 'free a'; bad "$T/t.trace" 't.trace:2: unknown op "malloc"' ;;
bad_size)     t 'alloc a 12Q'; bad "$T/t.trace" 't.trace:1: bad size "12Q"' ;;
zero_size)    t 'alloc a 0'; bad "$T/t.trace" 't.trace:1: bad size "0"' ;;
neg_size)     t 'alloc a -5'; bad "$T/t.trace" 't.trace:1: bad size "-5"' ;;
huge_size)    t 'alloc a 99999999999999999999'; bad "$T/t.trace" 't.trace:1: bad size' ;;
missing_arg)  t 'alloc a'; bad "$T/t.trace" 't.trace:1: alloc takes an id and a size' ;;
extra_arg)    t 'alloc a 1' 'free a a'; bad "$T/t.trace" 't.trace:2: free takes one id' ;;
realloc_args) t 'alloc a 1' 'realloc a'; bad "$T/t.trace" 't.trace:2: realloc takes an id and a size' ;;
double_alloc) t 'alloc a 1' 'alloc a 2'; bad "$T/t.trace" 't.trace:2: alloc of id a, which is already live' ;;
double_free)  t 'alloc a 1' 'free a' 'free a'; bad "$T/t.trace" 't.trace:3: free of unknown id a' ;;
bad_sleep)    t 'sleep 1.5' 'sleep' 'sleep 99999999999'
              bad "$T/t.trace" 't.trace:1: bad sleep "1.5"' 't.trace:2: sleep takes milliseconds' 't.trace:3: bad sleep' ;;
long_id)      t "alloc $(printf 'x%.0s' {1..300}) 1"; bad "$T/t.trace" 't.trace:1: id longer than 255 bytes' ;;
every_line)   t 'alloc a 1' 'bogus' 'free zz' 'alloc b 0' 'free a' 'sleep x'
              bad "$T/t.trace" 't.trace:2:' 't.trace:3:' 't.trace:4:' 't.trace:6:' '4 bad lines, nothing replayed' ;;
csv_fields)   csv '1,16:40:22.287973,allocate,0x1,16'; bad "$T/t.csv" 't.csv:2: expected 6 comma-separated fields' ;;
csv_action)   csv '1,16:40:22.287973,alloc,0x1,16,0'; bad "$T/t.csv" 't.csv:2: unknown Action "alloc"' ;;
csv_size)     csv '1,16:40:22.287973,allocate,0x1,16M,0' '1,16:40:22.287973,allocate,0x2,0,0'
              bad "$T/t.csv" 't.csv:2: bad Size "16M"' 't.csv:3: allocate of 0 bytes' ;;
csv_pointer)  csv '1,16:40:22.287973,allocate,,16,0'; bad "$T/t.csv" 't.csv:2: bad Pointer' ;;
csv_free)     csv '1,16:40:22.287973,free,0x9,16,0'; bad "$T/t.csv" 't.csv:2: free of unknown id 0x9' ;;
csv_header)   csv '1,1,allocate,0x1,8,0' 'Thread,Time,Action,Pointer,Size,Stream'
              bad "$T/t.csv" 't.csv:3: the header again' ;;
no_file)      rc=0; err=$("$R" --parse-only "$T/none" 2>&1) || rc=$?
              [[ $rc -eq 2 && $err == *"$T/none"* ]] || fail "exit $rc: $err" ;;
usage)        rc=0; "$R" --procs 0 x 2>/dev/null || rc=$?; [[ $rc -eq 2 ]] || fail "--procs 0: exit $rc"
              rc=0; "$R" --min-size 3X x 2>/dev/null || rc=$?; [[ $rc -eq 2 ]] || fail "--min-size 3X: exit $rc" ;;
passes_arg)   for a in 0 17 x -1 ''; do
                rc=0; err=$("$R" --passes "$a" x 2>&1) || rc=$?
                [[ $rc -eq 2 && $err == *"--passes: 1..16"* ]] || fail "--passes '$a': exit $rc: $err"
              done ;;
between_arg)  rc=0; err=$("$R" --between '' x 2>&1) || rc=$?
              [[ $rc -eq 2 && $err == *"--between: a command"* ]] || fail "--between '': exit $rc: $err"
              rc=0; err=$("$R" --procs 2 --between true x 2>&1) || rc=$?
              [[ $rc -eq 2 && $err == *"--between needs one process"* ]] || fail "--between with 2 procs: exit $rc: $err" ;;
events_path)  t 'alloc a 1' 'free a'
              # Refused before any CUDA call: no device is needed.
              rc=0; err=$("$R" --events "$T/no/such/dir/ev" "$T/t.trace" 2>&1) || rc=$?
              [[ $rc -eq 2 && $err == *"--events $T/no/such/dir/ev: No such file"* ]] || fail "exit $rc: $err"
              [[ ! -e $T/no ]] || fail "created something" ;;
allocs_path)  t 'alloc a 1' 'free a'
              rc=0; err=$("$R" --allocs "$T/no/such/dir/al" "$T/t.trace" 2>&1) || rc=$?
              [[ $rc -eq 2 && $err == *"--allocs $T/no/such/dir/al: No such file"* ]] || fail "exit $rc: $err"
              [[ ! -e $T/no ]] || fail "created something" ;;
*) fail "unknown case" ;;
esac
echo "ok [$case_]"
