#!/usr/bin/env bash
# deploy/kubernetes: manifests parse and agree (k8s_check.py), vmmd-node is
# valid bash, and a real vmmd accepts the ConfigMap's vmmd.conf.
#   k8s_test.sh SRC UNIT VMMD VMMCTL VERSION
set -euo pipefail
src=$1 unit=$2 vmmd=$3 vmmctl=$4 version=$5
T=${VMM_TEST_TMPDIR:?}
py=python3
$py -c 'import yaml' 2>/dev/null || py=/usr/bin/python3
$py -c 'import yaml' 2>/dev/null || { echo "SKIP: no PyYAML (python3-yaml)"; exit 77; }
"$vmmctl" cdi > "$T/cdi.json"
$py "$src/tests/deploy/k8s_check.py" "$src/deploy/kubernetes" "$unit" "$T/cdi.json" "$T/vmmd.conf" "$version"
bash -n "$src/deploy/kubernetes/vmmd-node"
# The ConfigMap's settings start a real vmmd (socket dir moved to the test's).
rm -rf "$T/sock"
"$vmmd" --foreground --config "$T/vmmd.conf" --socket-dir "$T/sock" 2> "$T/vmmd.err" &
pid=$!
for _ in $(seq 100); do "$vmmctl" --socket-dir "$T/sock" stats > /dev/null 2>&1 && break; sleep 0.05; done
"$vmmctl" --socket-dir "$T/sock" stats > /dev/null || { echo "vmmd refused the ConfigMap's vmmd.conf:"; cat "$T/vmmd.err"; exit 1; }
kill "$pid"
wait "$pid" || true
echo "kubernetes manifests: ok"
