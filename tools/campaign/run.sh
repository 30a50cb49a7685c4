#!/usr/bin/env bash
# Run vmm-campaign against the build's vmmd on the CUDA emulator.
#   tools/campaign/run.sh [BUILD_DIR] [vmm-campaign options...]
#   tools/campaign/run.sh build --quick          # a few seconds
#   tools/campaign/run.sh build                  # every phase, about a minute
#   tools/campaign/run.sh build --soak 600       # ten minutes of soak
# Sets LD_LIBRARY_PATH to the emulator's libcuda and VMM_BUILD_DIR; the
# tool starts its own vmmd in a private temp dir with its own
# CUEMU_INSTANCE.  Runs niced: the machines are shared.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
B=$here/../../build
if [[ $# -gt 0 && $1 != -* ]]; then B=$1; shift; fi
B=$(cd "$B" && pwd)
[[ -x $B/tools/vmm-campaign ]] || { echo "run.sh: $B/tools/vmm-campaign not built (scripts/setup.sh build)" >&2; exit 3; }
export VMM_BUILD_DIR=$B
export LD_LIBRARY_PATH=$B/tests/cuemu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
exec nice -n 10 "$B/tools/vmm-campaign" "$@"
