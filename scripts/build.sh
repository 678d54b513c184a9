#!/usr/bin/env bash
# Configures and builds d2c in build/ (Release, -O3 -march=native). Extra arguments go to
# CMake's configure step, e.g. scripts/build.sh -DD2C_SANITIZE=ON.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j"$(nproc)"
