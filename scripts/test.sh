#!/usr/bin/env bash
# CI's test command (.ci/run): installs what d2c needs, then
#   1. build/        the Release build with -Werror, and the whole CTest suite (with the
#                    external conformance checks of ../shared/conformance when present);
#   2. build-asan/   AddressSanitizer + UndefinedBehaviorSanitizer (undefined behaviour and
#                    leaks are fatal): every C test and the CLI tests, less the few named below;
#   3. build-valgrind/ no -march=native (valgrind runs no AVX-512): valgrind memcheck of a
#                    tiny train / resume / condense / sample;
#   4. build-fuzz/   clang + libFuzzer: a few seconds of each fuzz target on its seed corpus,
#                    and every committed crash input replayed (tests/fuzz/);
#   5. build-cuda/   -DD2C_CUDA=ON with -Werror: the CUDA backend (src/engine/cuda) and bench/gpu_ops.c must compile
#                    (nvcc and cuBLAS are installed on the CI machines; they have no GPU), and
#                    test_backend_ops runs: it reports the CUDA backend as not available and
#                    runs the CPU checks through the same table.
# Each stage prints its minutes; docs/HARDENING.md says what each one checks.
# D2C_TEST_STAGES="release asan valgrind fuzz cuda-build" (the default) picks stages.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
stages=${D2C_TEST_STAGES:-release asan valgrind fuzz cuda-build}
jobs=$(nproc)
export OMP_WAIT_POLICY=PASSIVE
t_all=$(date +%s)
stage() { echo "== test.sh: $1 ($(date -u +%T))"; t_stage=$(date +%s); }
done_stage() { echo "== test.sh: $1 took $(( ($(date +%s) - t_stage + 30) / 60 )) min ($(( $(date +%s) - t_stage )) s)"; }

if [[ " $stages " == *" release "* ]]; then
  stage "release build (-Werror) and the whole suite"
  ./scripts/build.sh -DD2C_WERROR=ON
  ctest --test-dir build --output-on-failure -j1
  done_stage release
fi

if [[ " $stages " == *" asan "* ]]; then
  stage "AddressSanitizer + UndefinedBehaviorSanitizer build"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DD2C_SANITIZE=ON >/dev/null
  cmake --build build-asan -j"$jobs"
  # Left out here, run in the release build only: cli_condense (100 s there, over 10 min
  # here; condense's code runs here in cli_resume, bad_input and the valgrind stage),
  # conformance (the outside contract, a property of the release binary), io_cifar10 (decodes
  # the 60000-image CIFAR-10 tarball through the JPEG reader that test_io and io_interop
  # cover), crash_safety (timing-driven kills; it checks files, not memory) and
  # valgrind_memcheck (needs its own build). Every C test runs.
  ctest --test-dir build-asan --output-on-failure -j1 \
    -E '^(cli_condense|conformance|io_cifar10|crash_safety|valgrind_memcheck)$'
  done_stage asan
fi

if [[ " $stages " == *" valgrind "* ]]; then
  stage "valgrind memcheck build"
  cmake -S . -B build-valgrind -DCMAKE_BUILD_TYPE=RelWithDebInfo -DD2C_NATIVE=OFF >/dev/null
  cmake --build build-valgrind -j"$jobs" --target d2c
  ctest --test-dir build-valgrind --output-on-failure -L valgrind
  done_stage valgrind
fi

if [[ " $stages " == *" fuzz "* ]]; then
  stage "libFuzzer smoke run and crash regressions"
  ./scripts/fuzz.sh --build-only
  ctest --test-dir build-fuzz --output-on-failure -L fuzz
  done_stage fuzz
fi
if [[ " $stages " == *" cuda-build "* ]]; then
  stage "CUDA backend build (-DD2C_CUDA=ON, -Werror) and test_backend_ops without a GPU"
  command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] \
    || { echo "test.sh: cuda-build: nvcc not found (neither on PATH nor /usr/local/cuda/bin)" >&2; exit 1; }
  cmake -S . -B build-cuda -DD2C_CUDA=ON -DD2C_WERROR=ON >/dev/null
  cmake --build build-cuda -j"$jobs" --target d2c test_backend_ops gpu_ops
  ./build-cuda/tests/test_backend_ops
  done_stage cuda-build
fi
echo "== test.sh: all stages passed in $(( ($(date +%s) - t_all + 30) / 60 )) min"
