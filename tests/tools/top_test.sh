#!/usr/bin/env bash
# `vmmctl top` in a real terminal (tmux): the pool line and the clients,
# sorted by memory held, refresh; q quits at once and the terminal is given
# back; bad arguments are refused.
#   top_test.sh VMMD VMMCTL APP PRELOAD
set -euo pipefail
vmmd=$1 vmmctl=$2 app=$3 preload=$4
command -v tmux >/dev/null || { echo "SKIP: tmux missing (scripts/setup.sh installs it)"; exit 77; }
T=${VMM_TEST_TMPDIR:?}
rm -rf "$T"/* && mkdir -p "$T/sock"
export VMM_SOCKET_DIR=$T/sock
sock=vmm-top-$$
pids=()
cleanup() {
  tmux -L "$sock" kill-server 2>/dev/null || true
  # Clients first, vmmd last.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null || true; wait "${pids[i]}" 2>/dev/null || true
  done
}
trap cleanup EXIT

for bad in "--interval 5" "--interval x" "--iterations 0" "--bogus 1" "--interval"; do
  # shellcheck disable=SC2086
  if "$vmmctl" top $bad > /dev/null 2> "$T/bad.err"; then echo "top $bad accepted"; exit 1; fi
  grep -q usage "$T/bad.err" || { echo "no usage line for top $bad"; exit 1; }
done

"$vmmd" --foreground --socket-dir "$T/sock" &
pids+=($!)
for _ in $(seq 200); do "$vmmctl" stats > /dev/null 2>&1 && break; sleep 0.05; done
# Two clients: the one that connects first holds a third of what the
# second holds, so sorting by memory held puts the second first.
cp "$app" "$T/first-app"
cp "$app" "$T/second-app"
LD_PRELOAD=$preload VMM_REPORT_MS=50 "$T/first-app" 60000 1 > "$T/first.out" &
pids+=($!)
for _ in $(seq 300); do grep -q holding "$T/first.out" && break; sleep 0.1; done
LD_PRELOAD=$preload VMM_REPORT_MS=50 "$T/second-app" 60000 3 > "$T/second.out" &
pids+=($!)
for _ in $(seq 300); do grep -q holding "$T/second.out" && break; sleep 0.1; done
grep -q holding "$T/first.out" && grep -q holding "$T/second.out" ||
  { echo "the clients did not get their memory:"; cat "$T/first.out" "$T/second.out"; exit 1; }

tmux -L "$sock" new-session -d -x 120 -y 20 \
  "env VMM_SOCKET_DIR='$T/sock' '$vmmctl' top --interval 200; echo TOP-EXITED \$?; sleep 30"
seen=
for _ in $(seq 150); do
  sleep 0.1
  screen=$(tmux -L "$sock" capture-pane -p)
  if grep -q '^pool ' <<<"$screen" && grep -q 'first-app' <<<"$screen" &&
     grep -q 'second-app' <<<"$screen"; then seen=1; break; fi
done
[[ -n "$seen" ]] || { echo "top did not show the pool and both clients:"; printf '%s\n' "$screen"; exit 1; }
grep -q '2 clients' <<<"$screen" || { echo "no client count:"; printf '%s\n' "$screen"; exit 1; }
grep -q 'PID *UID *NAME *HELD *IN USE *CACHED *NATIVE *QUOTA *CGROUP' <<<"$screen"
# Sorted by memory held: second-app (three times as much) above first-app.
order=$(grep -oE 'first-app|second-app' <<<"$screen" | tr '\n' ' ')
[[ "$order" == "second-app first-app " ]] || { echo "not sorted by held: $order"; printf '%s\n' "$screen"; exit 1; }
# It refreshes: kill one client and watch it disappear.
kill "${pids[2]}"
gone=
for _ in $(seq 150); do
  sleep 0.1
  screen=$(tmux -L "$sock" capture-pane -p)
  if ! grep -q 'second-app' <<<"$screen" && grep -q 'first-app' <<<"$screen"; then gone=1; break; fi
done
[[ -n "$gone" ]] || { echo "top did not refresh:"; printf '%s\n' "$screen"; exit 1; }
# q quits at once, with status 0, and echo is back on the terminal.
tmux -L "$sock" send-keys q
quit=
for _ in $(seq 100); do
  sleep 0.1
  screen=$(tmux -L "$sock" capture-pane -p)
  grep -q 'TOP-EXITED 0' <<<"$screen" && { quit=1; break; }
done
[[ -n "$quit" ]] || { echo "q did not quit top:"; printf '%s\n' "$screen"; exit 1; }
# --iterations for scripts: one frame, no terminal needed.
out=$("$vmmctl" top --iterations 1 < /dev/null)
grep -q '^pool ' <<<"$out" && grep -q first-app <<<"$out"
echo "top: ok"
