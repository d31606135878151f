#!/usr/bin/env bash
# Quick start: installs what is missing, builds, and runs vigil on http://127.0.0.1:8000.
# Extra arguments go to `vigil serve` (e.g. scripts/serve.sh --listen 0.0.0.0:8000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
cmake --build build -j"$(nproc)" --target vigil
exec build/vigil serve "$@"
