#!/usr/bin/env bash
# Quick start: installs what is missing, builds, and runs vigil on http://127.0.0.1:8000.
#   scripts/serve.sh --demo     the live dashboard with a simulated camera fleet (open the URL it prints)
#   scripts/serve.sh ARGS...    `vigil serve ARGS...` (e.g. --listen 0.0.0.0:8000 --jwt-secret ...)
# With no arguments it runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
cmake --build build -j"$(nproc)" --target vigil
[ $# -eq 0 ] && set -- --demo
exec build/vigil serve "$@"
