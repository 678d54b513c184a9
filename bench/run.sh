#!/usr/bin/env bash
# d2c against PyTorch on the same machine, threads and shapes, in one run:
# runs `d2c bench` and ../shared/reference/bench_torch.py (Debian's python3-torch), each
# under /usr/bin/time -v, and prints both rates, their ratio and both peak memories.
#   bench/run.sh [--threads T] [--batch B] [--hw N] [--channels C] [--in-channels K] [--iters N]
# The OpenBLAS core type is left to OpenBLAS's own detection for both programs (this
# workplace sets OPENBLAS_CORETYPE=Haswell, which halves sgemm on AVX-512 machines).
set -euo pipefail
cd "$(dirname "$0")/.."
d2c=${D2C:-./build/d2c}
ref=${BENCH_TORCH:-../shared/reference/bench_torch.py}
[ -x "$d2c" ] || ./scripts/build.sh
[ -f "$ref" ] || { echo "bench/run.sh: $ref not found" >&2; exit 2; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
run() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/time -v "$@"; }
run "$d2c" bench "$@" >"$tmp/d2c.out" 2>"$tmp/d2c.time"
run /usr/bin/python3 "$ref" "$@" >"$tmp/torch.out" 2>"$tmp/torch.time"
echo "== machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u +%F)"
cat "$tmp/d2c.out" "$tmp/torch.out"
rate() { awk -v w="$1" '$1 == w { for (i = 1; i <= NF; i++) if ($i ~ /^(img|calls)\/s/) { print $(i-1); exit } }' "$2"; }
rss() { awk '/Maximum resident/ { printf "%.0f", $NF / 1024 }' "$1"; }
echo "== ratios (d2c / torch, higher is better for d2c)"
for w in train_step hypergrad sample_step; do
  a=$(rate $w "$tmp/d2c.out"); b=$(rate $w "$tmp/torch.out")
  [ -n "$a" ] && [ -n "$b" ] && awk -v w=$w -v a="$a" -v b="$b" 'BEGIN { printf "%-12s d2c %8.2f  torch %8.2f  ratio %.2fx\n", w, a, b, a / b }'
done
echo "peak RSS     d2c $(rss "$tmp/d2c.time") MiB  torch $(rss "$tmp/torch.time") MiB (whole run of each program)"
