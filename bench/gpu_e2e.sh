#!/usr/bin/env bash
# The end-to-end GPU run of docs/CUDA.md, on the GPU machine: d2c train --device cuda on
# Fashion-MNIST (16,000 steps at batch 128 unless E2E_STEPS / E2E_BATCH say otherwise),
# 10,000 DDIM-50 samples from it with d2c sample --device cuda (1,000 images a network call,
# E2E_SAMPLE_BATCH, as torch_train.py), d2c eval of them against the
# test split; then (with `torch` as an argument) the same work in PyTorch on the same card
# (bench/torch_train.py: d2c train's recipe on the project's twin of the spec UNet), its
# samples evaluated by the same d2c eval. Prints each phase's wall time; metrics and logs go
# to $OUT (out/gpu_e2e without it).
#
#   run(command="bench/gpu_e2e.sh d2c torch", carry=[".gpudeps"], timeout_s=600)
#
# .gpudeps (bench/gpu_deps.sh) carries the C libraries' packages, the PyTorch reference
# files and the Fashion-MNIST IDX files (the device has no network and no Debian package of
# the data); they are installed where d2c's `fashion-mnist` source looks for them.
# E2E_BUDGET (seconds, default 560) bounds the whole script; each phase gets what is left.
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/gpu_env.sh
. bench/gpu_env.sh
out=${OUT:-out/gpu_e2e}
mkdir -p "$out"
t0=$(date +%s)
budget=${E2E_BUDGET:-560}
steps=${E2E_STEPS:-16000}
batch=${E2E_BATCH:-128}
nsamples=${E2E_SAMPLES:-10000}
sample_batch=${E2E_SAMPLE_BATCH:-1000} # images per network call of d2c sample (torch_train.py: 1000)
say() { echo "== gpu_e2e [$(($(date +%s) - t0)) s]: $*"; }
left() { echo $((budget - ($(date +%s) - t0))); }
# timed NAME CMD...: runs CMD under what is left of the budget, prints and records its wall time
timed() {
  local name=$1 s rc
  shift
  s=$(date +%s%N)
  timeout "$(left)" "$@"
  rc=$?
  awk -v n="$name" -v ns=$(($(date +%s%N) - s)) -v rc=$rc 'BEGIN { printf "%s wall_s %.1f rc %d\n", n, ns / 1e9, rc }' |
    tee -a "$out/times.txt"
  return $rc
}

main() {
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
  command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
  gpu_build d2c || return 1
  local fm=/usr/share/datasets/fashion-mnist w=/tmp/d2c-e2e
  if [ ! -f $fm/train-images-idx3-ubyte.gz ]; then
    mkdir -p $fm && cp .gpudeps/fashion-mnist/*.gz $fm/ || { say "no Fashion-MNIST in .gpudeps"; return 1; }
  fi
  mkdir -p $w
  for what in "$@"; do
    case $what in
      d2c)
        say "d2c train --device cuda: $steps steps, batch $batch"
        timed d2c_train ./build-gpu/d2c train --device cuda --data fashion-mnist --steps "$steps" --batch "$batch" \
          --ckpt-every 4000 --quiet --out $w/d2c.safetensors || return 1
        cp $w/d2c.safetensors.log.jsonl "$out/d2c_train.log.jsonl" 2>/dev/null
        say "d2c sample --device cuda: $nsamples DDIM-50 samples"
        timed d2c_sample ./build-gpu/d2c sample --device cuda --model $w/d2c.safetensors --n "$nsamples" --steps 50 \
          --batch "$sample_batch" --out $w/d2c_samples.safetensors || return 1
        say "d2c eval (device cuda) of d2c's samples"
        timed d2c_eval ./build-gpu/d2c eval --device cuda --samples $w/d2c_samples.safetensors --ref fashion-mnist:test \
          --threads "$(nproc)" --out "$out/d2c_metrics.json" || return 1
        ;;
      torch)
        say "PyTorch (bench/torch_train.py, the twin, eager) on the same card: $steps steps, batch $batch"
        mkdir -p $w/torch
        # its log (a line per 500 steps) copied out as it grows: it comes back even if the call ends first
        (while sleep 15; do cp $w/torch/torch.log "$out/torch_train.log" 2>/dev/null; done) &
        local copier=$!
        timed torch_train_and_sample env -u LD_LIBRARY_PATH PYTHONUNBUFFERED=1 python3 bench/torch_train.py \
          --data fmnist:$fm --name torch --steps "$steps" --batch "$batch" --samples "$nsamples" --out $w/torch
        local rc=$?
        kill $copier 2>/dev/null
        cp $w/torch/torch.log "$out/torch_train.log" 2>/dev/null
        [ $rc = 0 ] || return 1
        # its samples (8-bit, as real images are stored) as a d2c SAMPLES file
        env -u LD_LIBRARY_PATH python3 -c 'import sys, numpy as np; from safetensors.numpy import save_file
z = np.load(sys.argv[1]); x = z["images"].astype(np.float32) / 127.5 - 1
save_file({"images": x, "labels": z["labels"].astype(np.int64)}, sys.argv[2])' \
          $w/torch/torch_s"$steps".npz $w/torch_samples.safetensors || return 1
        say "d2c eval (device cuda) of PyTorch's samples"
        timed torch_eval ./build-gpu/d2c eval --device cuda --samples $w/torch_samples.safetensors \
          --ref fashion-mnist:test --threads "$(nproc)" --out "$out/torch_metrics.json" || return 1
        ;;
      *) say "unknown phase $what (d2c | torch)"; return 2 ;;
    esac
  done
  say "done"
  cat "$out/times.txt"
}
main "$@" 2>&1 | tee "$out/gpu_e2e.log"
exit "${PIPESTATUS[0]}"
