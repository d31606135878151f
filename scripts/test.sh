#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test with CTest, three times:
#   1. gcc build: unit tests, integration tests against the real binary, fuzz corpus replay;
#   2. clang build with AddressSanitizer + UBSan: the same tests, plus each libFuzzer harness for
#      VG_FUZZ_SECONDS (default 30) seconds;
#   3. clang build with ThreadSanitizer: the same tests again (a data race fails them).
# Warnings are errors in every build.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
jobs=$(nproc)
node=$(scripts/node-bin)

echo "== gcc build =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=gcc -DVG_WERROR=ON -DVG_NODE="$node" >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

echo "== clang build with ASan + UBSan + libFuzzer =="
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DVG_WERROR=ON \
      -DVG_ASAN=ON -DVG_UBSAN=ON -DVG_FUZZ=ON -DVG_FUZZ_SECONDS="${VG_FUZZ_SECONDS:-30}" \
      -DVG_NODE="$node" >/dev/null
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs"

echo "== clang build with ThreadSanitizer (workers, hub and registry cross threads) =="
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DVG_WERROR=ON \
      -DVG_TSAN=ON -DVG_NODE="$node" >/dev/null
cmake --build build-tsan -j"$jobs"
TSAN_OPTIONS=halt_on_error=1:exitcode=66 ctest --test-dir build-tsan --output-on-failure -j"$jobs"
