#!/usr/bin/env bash
# One call on the GPU machine (the H200 lent by the device tool; about 5 minutes): builds d2c
# with the CUDA backend (Release, -DD2C_CUDA=ON, sm_90) and runs, each under a time limit,
#   1. test_backend_ops with D2C_REQUIRE_CUDA=1: every engine op, CUDA against the CPU; again
#      with D2C_CUDA_CONV=gemm (im2col + cuBLAS only) when the default uses cuDNN;
#   2. gpu_ops: the CUDA ops one by one at the UNet's shapes (B 256, C 32, 28x28), for the
#      default convolutions (auto: cuDNN for 3x3 when built, fp32), with D2C_CUDA_TF32=1 and
#      with cuDNN for every convolution; and the device Philox against the host's;
#   3. d2c bench --device cuda at C 32, 28x28, batch 256 and at 3x32x32: as built (the
#      cached convolution choice, measured in the first run into $OUT/conv_algos.txt), again
#      (read from that file), with D2C_CUDA_CONV_ALGO=heuristic (the earlier default) and
#      =find, and with D2C_CUDA_TF32=1 (the train step also with
#      D2C_CUDA_CONV=gemm; the train step, hypergradient and sampling step also with D2C_CUDA_GRAPH=0, eager), and bench_torch.py
#      --device cuda at the same shapes (when carried):
#      PyTorch's defaults, and with TF32 off (d2c's precision); the ratios side by side;
#   4. d2c train --device cuda (300 steps, batch 128, Fashion-MNIST from .gpudeps) with CUDA graphs
#      and with D2C_CUDA_GRAPH=0: the checkpoints and the logs (less the rates) must be identical;
#   5. each workload again with D2C_CUDA_PROFILE=1: the GPU time of every op (profile.txt).
# GPU_CHECK_QUICK=1 leaves out the gemm-only test_backend_ops run, gpu_ops, the gemm bench,
# PyTorch with TF32 off, the second, heuristic and find benches, and all profiles but the
# hypergradient's at 28x28 (GPU_CHECK_PROFILED="hypergrad sample" names others).
# Everything goes to $OUT (out/gpu_check without it).
#
# The machine has no network and no Debian packages of d2c's C libraries: run
# bench/gpu_deps.sh here first, then, from the repository root,
#   run(command="bench/gpu_check.sh", carry=[".gpudeps"], timeout_s=420)
# (GPU_CHECK_BUDGET=330 s by default: the steps after the build share what is left of it)
# Exit status: that of test_backend_ops (0 when every op matched), 1 if the build failed or the
# graph and eager trainings differ.
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/gpu_env.sh
. bench/gpu_env.sh
out=${OUT:-out/gpu_check}
mkdir -p "$out"
# the cached convolution choices of every d2c run here (test_backend_ops uses its own file)
export D2C_CUDA_ALGO_CACHE=${D2C_CUDA_ALGO_CACHE:-$out/conv_algos.txt}
t0=$(date +%s)
budget=${GPU_CHECK_BUDGET:-330} # seconds for the whole script; each step's limit is cut to what is left
quick=${GPU_CHECK_QUICK:-0}     # 1: the short version (above)
say() { echo "== gpu_check [$(($(date +%s) - t0)) s]: $*"; }
tl() { # tl SECONDS: that limit, or what is left of the budget (at least 5 s)
  local want=$1 rest=$((budget - ($(date +%s) - t0)))
  ((rest < want)) && want=$rest
  ((want < 5)) && want=5
  echo "$want"
}

main() {
say "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
nvcc --version | tail -1
cmake --version | head -1
cc --version | head -1
echo "$(nproc) cores"

# ---- the C libraries and the build (bench/gpu_env.sh)
gpu_build d2c test_backend_ops gpu_ops || return 1

say "test_backend_ops (CUDA against the CPU)"
D2C_REQUIRE_CUDA=1 OMP_WAIT_POLICY=PASSIVE timeout "$(tl 150)" ./build-gpu/tests/test_backend_ops >"$out/backend_ops.txt" 2>&1
rc=$?
cat "$out/backend_ops.txt"
say "test_backend_ops exit status $rc"
cudnn=0
grep -q "d2c: cuDNN /" "$out/configure.log" && cudnn=1
if [ $cudnn = 1 ] && [ "$quick" = 0 ]; then
  say "test_backend_ops with D2C_CUDA_CONV=gemm (no cuDNN)"
  D2C_CUDA_CONV=gemm D2C_REQUIRE_CUDA=1 OMP_WAIT_POLICY=PASSIVE timeout "$(tl 150)" ./build-gpu/tests/test_backend_ops \
    >"$out/backend_ops_gemm.txt" 2>&1
  rc_gemm=$?
  grep -v " ok$" "$out/backend_ops_gemm.txt"
  say "test_backend_ops (gemm) exit status $rc_gemm"
fi

if [ "$quick" = 0 ]; then
  say "gpu_ops (one op at a time, B 256, C 32): the default convolutions (auto: cuDNN for 3x3 when built)"
  timeout "$(tl 60)" ./build-gpu/gpu_ops --batch 256 --channels 32 --iters 20 2>&1 | tee "$out/gpu_ops.txt"
  say "gpu_ops with D2C_CUDA_TF32=1 (convolutions only)"
  D2C_CUDA_TF32=1 timeout "$(tl 45)" ./build-gpu/gpu_ops --batch 256 --channels 32 --iters 20 2>&1 | grep conv |
    tee -a "$out/gpu_ops.txt"
  if [ $cudnn = 1 ]; then
    say "gpu_ops with D2C_CUDA_CONV=cudnn (convolutions only)"
    D2C_CUDA_CONV=cudnn timeout "$(tl 45)" ./build-gpu/gpu_ops --batch 256 --channels 32 --iters 20 2>&1 | grep conv |
      tee -a "$out/gpu_ops.txt"
  fi
fi

shapes=("--batch 256 --hw 28 --channels 32 --in-channels 1" "--batch 256 --hw 32 --channels 32 --in-channels 3")
# d2c_bench FILE [VAR=VALUE ...]: d2c bench --device cuda at both shapes, appended to FILE
d2c_bench() {
  local f=$1 s
  shift
  for s in "${shapes[@]}"; do
    say "$* d2c bench --device cuda $s"
    # shellcheck disable=SC2086
    env "$@" timeout "$(tl 75)" ./build-gpu/d2c bench --device cuda $s --iters 20 2>&1 | tee -a "$f"
  done
}
# torch_bench FILE [PYTHON CODE run first]: bench_torch.py --device cuda at both shapes
torch_bench() {
  local f=$1 pre=${2:-} s
  for s in "${shapes[@]}"; do
    say "bench_torch.py --device cuda $s (PyTorch eager) ${pre:+with: $pre}"
    # shellcheck disable=SC2086
    env -u LD_LIBRARY_PATH PYTHONUNBUFFERED=1 timeout "$(tl 75)" python3 -c "import runpy, sys, torch
$pre
sys.argv = ['bench_torch.py'] + sys.argv[1:]
runpy.run_path('.gpudeps/bench_torch.py', run_name='__main__')" --device cuda $s --iters 20 2>&1 | tee -a "$f"
  done
}
# ratios A B: A's rates over B's, in file order (28x28 then 32x32)
ratios() {
  rates() { awk -v w="$1" '$1 == w { for (i = 1; i <= NF; i++) if ($i ~ /^(img|calls)\/s/) { print $(i-1); break } }' "$2"; }
  say "ratios $(basename "$1") / $(basename "$2"), in file order: 28x28 then 32x32"
  for w in train_step hypergrad sample_step; do
    paste <(rates $w "$1") <(rates $w "$2") |
      awk -v w=$w 'NF == 2 { printf "%-12s %10.2f  vs %10.2f  ratio %.2fx\n", w, $1, $2, $1 / $2 }'
  done
}

d2c_bench "$out/bench_d2c.txt"
[ -f .gpudeps/bench_torch.py ] && torch_bench "$out/bench_torch.txt"
# PyTorch's default lets cuDNN's convolutions use TF32 (torch.backends.cudnn.allow_tf32 is True);
# d2c's default is full FP32: PyTorch with TF32 off is the comparison at equal precision
if [ "$quick" = 0 ]; then
  [ -f .gpudeps/bench_torch.py ] && torch_bench "$out/bench_torch_fp32.txt" \
    "torch.backends.cudnn.allow_tf32 = False; torch.backends.cuda.matmul.allow_tf32 = False"
  d2c_bench "$out/bench_d2c_again.txt"
  d2c_bench "$out/bench_d2c_heuristic.txt" D2C_CUDA_CONV_ALGO=heuristic
  d2c_bench "$out/bench_d2c_find.txt" D2C_CUDA_CONV_ALGO=find
fi
d2c_bench "$out/bench_d2c_tf32.txt" D2C_CUDA_TF32=1
for s in "${shapes[@]}"; do
  for w in train hypergrad sample; do
    say "D2C_CUDA_GRAPH=0 d2c bench --device cuda --what $w $s (eager, not as a CUDA graph)"
    # shellcheck disable=SC2086
    D2C_CUDA_GRAPH=0 timeout "$(tl 45)" ./build-gpu/d2c bench --device cuda --what $w $s --iters 20 2>&1 |
      tee -a "$out/bench_d2c_eager.txt"
  done
done
# the graphs change nothing: d2c train's checkpoint with them and without them, byte for byte
if [ -f .gpudeps/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  fm=/usr/share/datasets/fashion-mnist
  [ -f $fm/train-images-idx3-ubyte.gz ] || { mkdir -p $fm && cp .gpudeps/fashion-mnist/*.gz $fm/; }
  for g in 1 0; do
    say "D2C_CUDA_GRAPH=$g d2c train --device cuda, 300 steps at batch 128"
    D2C_CUDA_GRAPH=$g timeout "$(tl 60)" ./build-gpu/d2c train --device cuda --data fashion-mnist --steps 300 \
      --batch 128 --ckpt-every 150 --quiet --out "/tmp/d2c-graph$g.safetensors" 2>&1 | tail -3
  done
  sed 's/"img_per_s": [0-9.]*//' /tmp/d2c-graph1.safetensors.log.jsonl >/tmp/log1
  sed 's/"img_per_s": [0-9.]*//' /tmp/d2c-graph0.safetensors.log.jsonl >/tmp/log0
  if cmp -s /tmp/d2c-graph1.safetensors /tmp/d2c-graph0.safetensors && cmp -s /tmp/log1 /tmp/log0; then
    say "d2c train: graph and eager checkpoints and logs (less the rates) identical" | tee "$out/train_graph_vs_eager.txt"
  else
    say "d2c train: graph and eager DIFFER" | tee "$out/train_graph_vs_eager.txt"
    cmp /tmp/d2c-graph1.safetensors /tmp/d2c-graph0.safetensors | tee -a "$out/train_graph_vs_eager.txt"
    diff /tmp/log1 /tmp/log0 | head -5 | tee -a "$out/train_graph_vs_eager.txt"
    train_graph_rc=1
  fi
fi
if [ "$quick" = 0 ]; then
  say "D2C_CUDA_CONV=gemm d2c bench --device cuda --what train ${shapes[0]}"
  # shellcheck disable=SC2086
  D2C_CUDA_CONV=gemm timeout "$(tl 45)" ./build-gpu/d2c bench --device cuda --what train ${shapes[0]} --iters 20 2>&1 |
    tee -a "$out/bench_variants.txt"
fi
profiled=(train hypergrad sample) profiled_shapes=("${shapes[@]}")
[ "$quick" = 1 ] && profiled=(${GPU_CHECK_PROFILED:-hypergrad}) profiled_shapes=("${shapes[0]}")
for w in "${profiled[@]}"; do
  for s in "${profiled_shapes[@]}"; do
    say "D2C_CUDA_PROFILE=1 d2c bench --device cuda --what $w $s (the ops' GPU time)"
    # shellcheck disable=SC2086
    D2C_CUDA_PROFILE=1 timeout "$(tl 45)" ./build-gpu/d2c bench --device cuda --what $w $s --iters 20 2>&1 |
      tee -a "$out/profile.txt" | head -30
  done
done
if [ -s "$out/bench_torch.txt" ]; then
  ratios "$out/bench_d2c.txt" "$out/bench_torch.txt"
  for f in bench_torch_fp32; do [ -s "$out/$f.txt" ] && ratios "$out/bench_d2c.txt" "$out/$f.txt"; done
  for f in bench_d2c_again bench_d2c_heuristic bench_d2c_find bench_d2c_tf32 bench_d2c_graph; do
    [ -s "$out/$f.txt" ] && ratios "$out/$f.txt" "$out/bench_torch.txt"
  done
fi
[ -f "$D2C_CUDA_ALGO_CACHE" ] && say "the cached convolution choices ($D2C_CUDA_ALGO_CACHE)" && cat "$D2C_CUDA_ALGO_CACHE"
say "done; test_backend_ops exit status $rc${rc_gemm:+ (with gemm: $rc_gemm)}${train_graph_rc:+; d2c train graph vs eager differ}"
[ "$rc" = 0 ] && [ -n "${train_graph_rc:-}" ] && return 1
[ "$rc" = 0 ] && return "${rc_gemm:-0}"
return "$rc"
}
main 2>&1 | tee "$out/gpu_check.log"
exit "${PIPESTATUS[0]}"
