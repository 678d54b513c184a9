#!/usr/bin/env bash
# One call on the GPU machine (the H200 lent by the device tool; about 5 minutes): builds d2c
# with the CUDA backend (Release, -DD2C_CUDA=ON, sm_90) and runs, each under a time limit,
#   1. test_backend_ops with D2C_REQUIRE_CUDA=1: every engine op, CUDA against the CPU; again
#      with D2C_CUDA_CONV=gemm (im2col + cuBLAS only) when the default uses cuDNN;
#   2. gpu_ops: the CUDA ops one by one at the UNet's shapes (B 256, C 32, 28x28), for the
#      default convolutions (auto: cuDNN for 3x3 when built, fp32), with D2C_CUDA_TF32=1 and
#      with cuDNN for every convolution; and the device Philox against the host's;
#   3. d2c bench --device cuda at C 32, 28x28, batch 256 and at 3x32x32 (the train step also
#      with TF32 and with D2C_CUDA_CONV=gemm), and bench_torch.py --device cuda at the same shapes (when
#      carried); then prints the rates side by side.
# Everything goes to $OUT (out/gpu_check without it).
#
# The machine has no network and no Debian packages of d2c's C libraries: run
# bench/gpu_deps.sh here first, then, from the repository root,
#   run(command="bench/gpu_check.sh", carry=[".gpudeps"], timeout_s=420)
# (GPU_CHECK_BUDGET=330 s by default: the steps after the build share what is left of it)
# Exit status: that of test_backend_ops (0 when every op matched), 1 if the build failed.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out/gpu_check}
mkdir -p "$out"
t0=$(date +%s)
budget=${GPU_CHECK_BUDGET:-330} # seconds for the whole script; each step's limit is cut to what is left
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

# ---- the C libraries: unpacked from .gpudeps (bench/gpu_deps.sh) into a private prefix
deps=/tmp/d2c-gpudeps
args=()
libpath=""
if compgen -G ".gpudeps/*.deb" >/dev/null; then
  say "unpacking .gpudeps into $deps"
  rm -rf "$deps" && mkdir -p "$deps"
  for f in .gpudeps/*.deb; do
    if command -v dpkg-deb >/dev/null; then
      dpkg-deb -x "$f" "$deps"
    else
      (cd "$deps" && ar p "$OLDPWD/$f" "$(ar t "$OLDPWD/$f" | grep '^data.tar')" | tar -xJ)
    fi
  done
  lib=$deps/usr/lib/x86_64-linux-gnu
  rm -f "$lib/libz.so" # an absolute link to Debian's libz.so.1.2.13: the system's libz is used
  zlib=$(ldconfig -p | awk '/libz\.so\.1 .*x86-64/ { print $NF; exit }')
  [ -n "$zlib" ] && args+=(-DZLIB_LIBRARY="$zlib" -DZLIB_INCLUDE_DIR="$deps/usr/include")
  libpath=$lib:$lib/openblas-openmp
  args+=(-DCMAKE_PREFIX_PATH="$deps/usr" -DCMAKE_LIBRARY_PATH="$lib" -DCMAKE_INCLUDE_PATH="$deps/usr/include"
         -DD2C_OPENBLAS_DIR="$lib/openblas-openmp"
         -DCMAKE_C_FLAGS="-isystem $deps/usr/include -isystem $deps/usr/include/x86_64-linux-gnu")
else
  say "no .gpudeps: using the system's libraries"
fi
export LD_LIBRARY_PATH=${libpath}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
command -v ninja >/dev/null && args+=(-G Ninja)
# cuDNN: the toolkit's, else the nvidia-cudnn wheel that PyTorch uses
if [ -z "${CUDNN_ROOT:-}" ] && ! compgen -G "$(dirname "$(dirname "$(command -v nvcc)")")/include/cudnn.h" >/dev/null; then
  CUDNN_ROOT=$(python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null) && export CUDNN_ROOT
fi
echo "CUDNN_ROOT=${CUDNN_ROOT:-}"

say "configure and build (Release, -DD2C_CUDA=ON, sm_90)"
if ! cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DD2C_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
       "${args[@]}" >"$out/configure.log" 2>&1; then
  tail -30 "$out/configure.log"
  say "configure FAILED"
  return 1
fi
if ! cmake --build build-gpu -j"$(nproc)" --target d2c test_backend_ops gpu_ops >"$out/build.log" 2>&1; then
  grep -E "error|Error" "$out/build.log" | head -30
  say "build FAILED"
  return 1
fi
say "built"

say "test_backend_ops (CUDA against the CPU)"
D2C_REQUIRE_CUDA=1 OMP_WAIT_POLICY=PASSIVE timeout "$(tl 150)" ./build-gpu/tests/test_backend_ops >"$out/backend_ops.txt" 2>&1
rc=$?
cat "$out/backend_ops.txt"
say "test_backend_ops exit status $rc"
cudnn=0
grep -q "d2c: cuDNN /" "$out/configure.log" && cudnn=1
if [ $cudnn = 1 ]; then
  say "test_backend_ops with D2C_CUDA_CONV=gemm (no cuDNN)"
  D2C_CUDA_CONV=gemm D2C_REQUIRE_CUDA=1 OMP_WAIT_POLICY=PASSIVE timeout "$(tl 150)" ./build-gpu/tests/test_backend_ops \
    >"$out/backend_ops_gemm.txt" 2>&1
  rc_gemm=$?
  grep -v " ok$" "$out/backend_ops_gemm.txt"
  say "test_backend_ops (gemm) exit status $rc_gemm"
fi

say "gpu_ops (one op at a time, B 256, C 32): the default convolutions (auto: cuDNN for 3x3 when built)"
timeout "$(tl 60)" ./build-gpu/gpu_ops --batch 256 --channels 32 --iters 20 2>&1 | tee "$out/gpu_ops.txt"
say "gpu_ops with D2C_CUDA_TF32=1 (convolutions only)"
D2C_CUDA_TF32=1 timeout "$(tl 45)" ./build-gpu/gpu_ops --batch 256 --channels 32 --iters 20 2>&1 | grep conv | tee -a "$out/gpu_ops.txt"
if [ $cudnn = 1 ]; then
  say "gpu_ops with D2C_CUDA_CONV=cudnn (convolutions only)"
  D2C_CUDA_CONV=cudnn timeout "$(tl 45)" ./build-gpu/gpu_ops --batch 256 --channels 32 --iters 20 2>&1 | grep conv |
    tee -a "$out/gpu_ops.txt"
fi

shapes=("--batch 256 --hw 28 --channels 32 --in-channels 1" "--batch 256 --hw 32 --channels 32 --in-channels 3")
for s in "${shapes[@]}"; do
    say "d2c bench --device cuda $s"
    # shellcheck disable=SC2086
    timeout "$(tl 75)" ./build-gpu/d2c bench --device cuda $s --iters 20 2>&1 | tee -a "$out/bench_d2c.txt"
done
if [ -f .gpudeps/bench_torch.py ]; then
  for s in "${shapes[@]}"; do
    say "bench_torch.py --device cuda $s (PyTorch eager)"
    # shellcheck disable=SC2086
    env -u LD_LIBRARY_PATH PYTHONUNBUFFERED=1 timeout "$(tl 75)" python3 .gpudeps/bench_torch.py --device cuda $s --iters 20 \
      2>&1 | tee -a "$out/bench_torch.txt"
  done
fi

for v in D2C_CUDA_TF32=1 D2C_CUDA_CONV=gemm; do
  say "$v d2c bench --device cuda --what train ${shapes[0]}"
  # shellcheck disable=SC2086
  env $v timeout "$(tl 45)" ./build-gpu/d2c bench --device cuda --what train ${shapes[0]} --iters 20 2>&1 |
    sed "s/^/$v /" | tee -a "$out/bench_variants.txt"
done
if [ -s "$out/bench_d2c.txt" ] && [ -s "$out/bench_torch.txt" ]; then
  say "ratios (d2c / torch, in file order: 28x28 then 32x32)"
  rates() { awk -v w="$1" '$1 == w { for (i = 1; i <= NF; i++) if ($i ~ /^(img|calls)\/s/) print $(i-1) }' "$2"; }
  for w in train_step hypergrad sample_step; do
    paste <(rates $w "$out/bench_d2c.txt") <(rates $w "$out/bench_torch.txt") |
      awk -v w=$w 'NF == 2 { printf "%-12s d2c %10.2f  torch %10.2f  ratio %.2fx\n", w, $1, $2, $1 / $2 }'
  done
fi
say "done; test_backend_ops exit status $rc${rc_gemm:+ (with gemm: $rc_gemm)}"
[ "$rc" = 0 ] && return "${rc_gemm:-0}"
return "$rc"
}
main 2>&1 | tee "$out/gpu_check.log"
exit "${PIPESTATUS[0]}"
