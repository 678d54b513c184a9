#!/usr/bin/env bash
# A/B on a shared machine: runs `d2c bench` of each given d2c binary and
# ../shared/reference/bench_torch.py under each given Python, one after the other, ROUNDS
# times (interleaved, so a change of load spreads over all of them), then prints per
# workload the median rate of each, every run's rate, and each d2c's ratio to each PyTorch.
#   bench/alternate.sh [--rounds N] [--d2c BIN]... [--python PY]... [-- bench args]
# Defaults: 5 rounds, ./build/d2c, /usr/bin/python3 (Debian's PyTorch). Bench arguments
# (--hw 32 --in-channels 3, --threads T; 2 by default) go to both programs. As bench/run.sh,
# the OpenBLAS core type is left to OpenBLAS's detection; OMP_WAIT_POLICY is passed on
# as the caller set it. Raw outputs stay in $ALTERNATE_OUT (default: a temporary folder).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=5 d2cs=() pys=() args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --d2c) d2cs+=("$2"); shift 2 ;;
    --python) pys+=("$2"); shift 2 ;;
    --) shift; args=("$@"); break ;;
    *) echo "bench/alternate.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ ${#d2cs[@]} -gt 0 ] || d2cs=(./build/d2c)
[ ${#pys[@]} -gt 0 ] || pys=(/usr/bin/python3)
has_threads=0
for a in "${args[@]}"; do [ "$a" = --threads ] && has_threads=1; done
[ $has_threads = 1 ] || args+=(--threads 2)
ref=${BENCH_TORCH:-../shared/reference/bench_torch.py}
out=${ALTERNATE_OUT:-$(mktemp -d)}
mkdir -p "$out"
run() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$@"; }
names=()
for i in "${!d2cs[@]}"; do names+=("d2c$i"); done
for i in "${!pys[@]}"; do names+=("torch$i"); done
echo "== machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u '+%F %T') UTC; args: ${args[*]}"
for i in "${!d2cs[@]}"; do echo "   d2c$i = ${d2cs[$i]}"; done
for i in "${!pys[@]}"; do echo "   torch$i = ${pys[$i]} ($("${pys[$i]}" -c 'import torch; print(torch.__version__)'))"; done
for r in $(seq "$rounds"); do
  for i in "${!d2cs[@]}"; do run "${d2cs[$i]}" bench "${args[@]}" >>"$out/d2c$i"; done
  for i in "${!pys[@]}"; do run "${pys[$i]}" "$ref" "${args[@]}" >>"$out/torch$i"; done
  echo "   round $r done $(date -u +%T), load average $(cut -d' ' -f1-3 /proc/loadavg)"
done
rates() { awk -v w="$1" '$1 == w { for (k = 1; k <= NF; k++) if ($k ~ /^(img|calls)\/s/) print $(k-1) }' "$2"; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
for w in train_step hypergrad sample_step; do
  declare -A med=()
  for n in "${names[@]}"; do
    med[$n]=$(rates "$w" "$out/$n" | median)
    printf '%-12s %-7s median %9.2f   runs: %s\n' "$w" "$n" "${med[$n]}" "$(rates "$w" "$out/$n" | tr '\n' ' ')"
  done
  for i in "${!d2cs[@]}"; do
    for j in "${!pys[@]}"; do
      awk -v a="${med[d2c$i]}" -v b="${med[torch$j]}" -v n="d2c$i / torch$j" 'BEGIN { printf "             %s %.2fx\n", n, a / b }'
    done
    [ "$i" = 0 ] || awk -v a="${med[d2c$i]}" -v b="${med[d2c0]}" -v n="d2c$i / d2c0" 'BEGIN { printf "             %s %.2fx\n", n, a / b }'
  done
  unset med
done
echo "raw outputs: $out"
