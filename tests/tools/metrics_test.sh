#!/usr/bin/env bash
# Prometheus metrics, end to end: `vmmctl metrics` and vmmd's metrics_listen
# endpoint pass `promtool check metrics`, carry the pool, the counters and a
# client series per (uid, name, cgroup) with no pid label, escape a hostile
# client name, and a real Prometheus server on the loopback scrapes vmmd.
#   metrics_test.sh VMMD VMMCTL APP PRELOAD
set -euo pipefail
vmmd=$1 vmmctl=$2 app=$3 preload=$4
for t in promtool prometheus python3; do
  command -v "$t" >/dev/null || { echo "SKIP: $t missing (scripts/setup.sh installs it)"; exit 77; }
done
T=${VMM_TEST_TMPDIR:?}
rm -rf "$T"/*
export VMM_SOCKET_DIR=$T/sock
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
fetch() { python3 -c 'import sys,urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# Bad addresses are refused at start, one line each.
for bad in nonsense 127.0.0.1 127.0.0.1:0 127.0.0.1:65536 ::1:9477 '[::1]' '[::1]:x' :9477; do
  printf 'metrics_listen = %s\n' "$bad" > "$T/bad.conf"
  if "$vmmd" --foreground --socket-dir "$T/sock" --config "$T/bad.conf" 2> "$T/bad.err"; then
    echo "metrics_listen = $bad was accepted"; exit 1
  fi
  grep -q 'metrics_listen' "$T/bad.err" || { echo "no error line for $bad:"; cat "$T/bad.err"; exit 1; }
  [[ ! -e "$T/sock/gpu0.sock" ]] || { echo "a socket left behind for $bad"; exit 1; }
  [[ $(wc -l < "$T/bad.err") -eq 1 ]] || { echo "more than one line for $bad"; exit 1; }
done

mport=$(port)
printf 'metrics_listen = 127.0.0.1:%s\n' "$mport" > "$T/vmmd.conf"
"$vmmd" --foreground --socket-dir "$T/sock" --config "$T/vmmd.conf" &
pids+=($!)
for _ in $(seq 100); do "$vmmctl" stats > /dev/null 2>&1 && break; sleep 0.05; done

# A client whose name (its command name) is hostile to the text format.
weird=$T/'we"ir\d'
cp "$app" "$weird"
LD_PRELOAD=$preload VMM_REPORT_MS=50 "$weird" 60000 > "$T/app.out" &
app_pid=$!
pids+=($app_pid)
for _ in $(seq 100); do
  "$vmmctl" metrics > "$T/ctl.txt"
  grep -q '^vmmd_client_held_bytes{.*} [1-9]' "$T/ctl.txt" && break
  sleep 0.05
done

check() {   # check FILE: what every exposition must hold
  local f=$1
  [[ -s "$f" ]] || { echo "$f is empty"; exit 1; }
  promtool check metrics < "$f" || { echo "promtool refused $f"; exit 1; }
  grep -q '^vmmd_build_info{device_uuid="GPU-[0-9a-f-]\{36\}",version="[^"]*",protocol="[0-9]*"} 1$' "$f"
  grep -q '^vmmd_lent_bytes{device_uuid="GPU-[0-9a-f-]*"} [1-9][0-9]*$' "$f"
  grep -q '^# TYPE vmmd_grants_total counter$' "$f"
  grep -q '^vmmd_client_held_bytes{device_uuid="GPU-[0-9a-f-]*",uid="'"$(id -u)"'",name="we\\"ir\\\\d",cgroup="[^"]*"} [1-9]' "$f" ||
    { echo "no escaped client series in $f:"; grep vmmd_client_held_bytes "$f"; exit 1; }
  if grep -q 'pid=' "$f"; then echo "a pid label in $f"; exit 1; fi
}
check "$T/ctl.txt"
fetch "http://127.0.0.1:$mport/metrics" > "$T/http.txt"
check "$T/http.txt"
# Only /metrics, only GET.
python3 - "$mport" <<'PY'
import sys, urllib.request, urllib.error
base = "http://127.0.0.1:%s" % sys.argv[1]
for url, method, want in ((base + "/", "GET", 404), (base + "/metrics", "POST", 501)):
    try:
        urllib.request.urlopen(urllib.request.Request(url, method=method, data=b"" if method == "POST" else None), timeout=5)
        sys.exit("%s %s answered 200" % (method, url))
    except urllib.error.HTTPError as e:
        if e.code != want:
            sys.exit("%s %s: %d, expected %d" % (method, url, e.code, want))
PY

# A real Prometheus server scrapes vmmd, bounded (its target discovery
# alone takes about 5 s).
pport=$(port)
cat > "$T/prometheus.yml" <<YML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: vmmd
    static_configs:
      - targets: ['127.0.0.1:$mport']
YML
prometheus --config.file="$T/prometheus.yml" --storage.tsdb.path="$T/tsdb" \
  --web.listen-address="127.0.0.1:$pport" > "$T/prometheus.log" 2>&1 &
pids+=($!)
ok=
for _ in $(seq 80); do
  sleep 0.5
  q=$(fetch "http://127.0.0.1:$pport/api/v1/query?query=vmmd_client_held_bytes" 2>/dev/null) || continue
  if grep -q '"uid":"'"$(id -u)"'"' <<<"$q" && grep -q '"job":"vmmd"' <<<"$q"; then ok=1; break; fi
done
[[ -n "$ok" ]] || { echo "Prometheus did not scrape vmmd:"; tail -5 "$T/prometheus.log"; exit 1; }
up=$(fetch "http://127.0.0.1:$pport/api/v1/query?query=up")
grep -q '"value":\[[0-9.]*,"1"\]' <<<"$up" || { echo "up is not 1: $up"; exit 1; }
echo "metrics: ok (promtool clean, Prometheus scraped vmmd)"
