#!/usr/bin/env bash
# Configure and build one flavour: build.sh DIR [address|thread]
set -euo pipefail
dir=$1
san=${2:-}
top=$(cd "$(dirname "$0")/.." && pwd)
cmake -S "$top" -B "$top/$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUFIO_SANITIZE="$san" >/dev/null
cmake --build "$top/$dir" -j"$(nproc)"
