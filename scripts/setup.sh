#!/usr/bin/env bash
# Install the Debian build dependencies (only those missing) and build vmmd.
#   scripts/setup.sh [BUILD_DIR [extra cmake args...]]
# Idempotent: a second run installs nothing and rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

# dpkg-dev (dpkg-shlibdeps) and mandoc: the Debian package and man page tests.
PACKAGES=(cmake make gcc pkg-config libevent-dev libprotobuf-c-dev protobuf-c-compiler
          libsystemd-dev systemd python3 python3-matplotlib libmimalloc-dev prometheus tmux runc
          python3-yaml dpkg-dev mandoc)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -f /usr/local/cuda/include/cuda.h ]] && ! command -v nvcc >/dev/null; then
  echo "setup: the CUDA 13 toolkit is not installed (expected /usr/local/cuda); install it first" >&2
  exit 1
fi
export PATH="/usr/local/cuda/bin:$PATH"

BUILD_DIR=${1:-build}
shift || true
cmake -S . -B "$BUILD_DIR" -DVMM_WERROR=ON "$@" >/dev/null
# The filter may print nothing (grep then fails): only the build's status
# counts, and with pipefail a failed build fails the script (an "|| true"
# after the whole pipeline used to swallow it, and PIPESTATUS with it).
cmake --build "$BUILD_DIR" -j "$(nproc)" -- --no-print-directory |
  { grep -Ev '^\[ *[0-9]+%\]|^Consolidate|^Built target' || true; }
