#!/usr/bin/env bash
# Crash safety, the long form of CTest's crash_safety: kills `d2c train` and `d2c condense`
# with SIGKILL at random moments and inside their atomic writes, resumes them, and checks
# that the final files equal an uninterrupted run's and that no output is ever half-written
# (tests/test_crash_safety.py says exactly what is checked).
#   bench/crash_safety.sh [--trials N (default 20 per command)] [--seed S] [--report FILE.json]
# Uses ./build/d2c (built if missing); works in ./out/crash_safety/. About 15 s per train
# trial and 30 s per condense trial on 2 busy cores.
set -euo pipefail
cd "$(dirname "$0")/.."
d2c=${D2C:-./build/d2c}
[ -x "$d2c" ] || ./scripts/build.sh
trials=20; seed=$(date +%s); report=out/crash_safety/report.json
while [ $# -gt 0 ]; do
  case "$1" in
    --trials) trials=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --report) report=$2; shift 2 ;;
    *) echo "bench/crash_safety.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
mkdir -p out "$(dirname "$report")"
echo "== crash safety: $trials trials per command, seed $seed, $(nproc) cores, $(date -u +%F)"
OMP_WAIT_POLICY=PASSIVE PYTHONDONTWRITEBYTECODE=1 \
  /usr/bin/python3 tests/test_crash_safety.py "$d2c" out --trials "$trials" --seed "$seed" --report "$report"
