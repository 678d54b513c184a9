#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz in build-fuzz/ (clang, -fsanitize=fuzzer with
# AddressSanitizer and UndefinedBehaviorSanitizer, no -march=native) and runs each for a
# set time from its seed corpus (tests/fuzz/campaign.sh), a few at a time, at nice 19.
#   scripts/fuzz.sh [--seconds N (default 60)] [--jobs J (default 2)] [--out DIR (out/fuzz)]
#                   [--build-only] [TARGET...]
# A finding is left as OUT/<target>/crash-<sha1> (or leak-, timeout-, oom-); copy it to
# tests/fuzz/regressions/<target>/ once fixed, and CTest replays it in every build.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=60 jobs=2 out=out/fuzz build_only=0 targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) secs=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --build-only) build_only=1; shift ;;
    -*) echo "scripts/fuzz.sh: unknown option '$1'" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
command -v clang >/dev/null || { echo "scripts/fuzz.sh: clang not found (scripts/setup.sh installs it)" >&2; exit 2; }
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DD2C_FUZZ=ON -DD2C_NATIVE=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target fuzz_targets
[ "$build_only" = 1 ] && exit 0
echo "== fuzzing ${targets[*]:-every target}: $secs s each, $jobs at a time, nice 19"
nice -n 19 tests/fuzz/campaign.sh build-fuzz/tests tests/fuzz/corpus "$out" "$secs" "$jobs" "${targets[@]}"
