#!/usr/bin/env bash
# Where the train step's and the sampling step's GPU time goes, d2c beside PyTorch, on the
# GPU machine (about 2-3 minutes after the build): for batch 256 at 1x28x28 and 3x32x32,
#   1. d2c bench --device cuda --what train|sample and bench_torch.py --device cuda: the rates,
#      same run (PyTorch's defaults: TF32 in cuDNN);
#   2. D2C_CUDA_PROFILE=1 d2c bench ...: every op's GPU time (CUDA events), in FP32 and with
#      D2C_CUDA_TF32=1;
#   3. bench/torch_profile.py: PyTorch's kernels by device time for the same steps.
# Files in $OUT (out/gpu_profile without it); PROFILE_WHAT ("train sample") picks the steps.
#   run(command="bench/gpu_profile.sh", carry=[".gpudeps"], timeout_s=300)
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/gpu_env.sh
. bench/gpu_env.sh
out=${OUT:-out/gpu_profile}
mkdir -p "$out"
export D2C_CUDA_ALGO_CACHE=${D2C_CUDA_ALGO_CACHE:-$out/conv_algos.txt}
t0=$(date +%s)
say() { echo "== gpu_profile [$(($(date +%s) - t0)) s]: $*"; }
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
gpu_build d2c || exit 1
shapes=("--hw 28 --in-channels 1" "--hw 32 --in-channels 3")
torch_py() { env -u LD_LIBRARY_PATH PYTHONUNBUFFERED=1 timeout 90 python3 "$@"; }
for s in "${shapes[@]}"; do
  tag=$(echo "$s" | awk '{ print $4 "x" $2 }')
  for what in ${PROFILE_WHAT:-train sample}; do
    say "$what $s: rates"
    # shellcheck disable=SC2086
    timeout 90 ./build-gpu/d2c bench --device cuda --what "$what" --batch 256 --iters 30 $s 2>&1 |
      tee -a "$out/rates.txt"
    # shellcheck disable=SC2086
    torch_py -c "import runpy, sys
sys.argv = ['bench_torch.py'] + sys.argv[1:]
runpy.run_path('.gpudeps/bench_torch.py', run_name='__main__')" --device cuda --batch 256 --iters 30 $s 2>&1 |
      grep -E "^(${what}_step|Traceback|.*Error)" | tee -a "$out/rates.txt"
    for prec in fp32 tf32; do
      say "$what $s: d2c profile ($prec)"
      # shellcheck disable=SC2086
      env D2C_CUDA_PROFILE=1 $([ $prec = tf32 ] && echo D2C_CUDA_TF32=1) timeout 90 ./build-gpu/d2c bench \
        --device cuda --what "$what" --batch 256 --iters 30 $s >"$out/d2c_${what}_${tag}_$prec.txt" 2>&1
      head -45 "$out/d2c_${what}_${tag}_$prec.txt"
    done
    say "$what $s: PyTorch profile"
    # shellcheck disable=SC2086
    torch_py bench/torch_profile.py --spec .gpudeps --what "$what" --batch 256 --iters 20 $s \
      >"$out/torch_${what}_${tag}.txt" 2>&1
    head -35 "$out/torch_${what}_${tag}.txt"
  done
done
say "done"
