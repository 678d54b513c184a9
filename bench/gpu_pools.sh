#!/usr/bin/env bash
# Condensation's model-level comparison on the GPU machine (docs/CONDENSATION.md): for each
# pool named on the command line as METHOD:RATIO:SEED[:STEPS] (made there with `d2c condense`
# from $DATA, a few seconds each for the selections; METHOD `default` is what `d2c condense`
# makes with no --method; METHOD+OPTION+VALUE... adds condense options, e.g.
# default+--bandwidth+0.5), and the full data, trains a model with `d2c train --device cuda`
# to each length of STEPS (one run, resumed from its checkpoint at each length: the same as
# an uninterrupted run; a spec's STEPS, lengths joined by '/', overrides $STEPS for that
# pool; a fifth field adds `d2c train` options joined by '+', e.g. kherding:0.01:0::--seed+1
# for a second training seed of the same pool), draws SAMPLES DDIM-50 samples at each length and scores them with `d2c eval` against
# each reference of REFS. JOBS runs share the card at a time. One JSON line per (pool,
# length, reference) goes to $OUT/pools.jsonl, with the pool, the steps, the wall times and
# the metrics (every evaluator, consensus, CAS).
#
#   run(command="bench/gpu_pools.sh random:0.01:0 random:0.01:1 kherding:0.01:0",
#       carry=[".gpudeps"], timeout_s=600)
#
# Environment: DATA (fashion-mnist: the source condensed and the full-data run's), REFS
# (fashion-mnist:test; several, space-separated), STEPS ("8000 16000"), BATCH (128), SAMPLES
# (10000), JOBS (4), FULL (1: also the full training set), DEVICE (cuda; cpu for a local smoke run), POOLS_BUDGET (seconds,
# 560: runs still going then are stopped, and what finished is reported), MPS (1: run the
# JOBS concurrent runs through NVIDIA's Multi-Process Service, a user-space daemon started
# in /tmp and stopped at the end, so that their kernels share the card's SMs instead of
# taking turns; a 20-step probe must pass first, else the runs go without it); D2C_CUDA_*
# reach every d2c run (docs/CUDA.md).
set -uo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || { echo "usage: bench/gpu_pools.sh METHOD:RATIO:SEED ..." >&2; exit 2; }
out=${OUT:-out/gpu_pools}
mkdir -p "$out"
steps=${STEPS:-8000 16000}
batch=${BATCH:-128}
nsamples=${SAMPLES:-10000}
jobs=${JOBS:-4}
data=${DATA:-fashion-mnist}
refs=${REFS:-fashion-mnist:test}
device=${DEVICE:-cuda}
budget=${POOLS_BUDGET:-560}
t0=$(date +%s)
say() { echo "== gpu_pools [$(($(date +%s) - t0)) s]: $*"; }
d2c=./build-gpu/d2c
if [ "$device" = cuda ]; then
  # shellcheck source=bench/gpu_env.sh
  . bench/gpu_env.sh
  command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
  gpu_build d2c || exit 1
  fm=/usr/share/datasets/fashion-mnist
  if [ ! -f $fm/train-images-idx3-ubyte.gz ]; then
    mkdir -p $fm && cp .gpudeps/fashion-mnist/*.gz $fm/ || { say "no Fashion-MNIST in .gpudeps"; exit 1; }
  fi
else
  d2c=${D2C:-./build/d2c}
fi
work=${POOLS_WORK:-/tmp/d2c-pools}
mkdir -p "$work"

# one NAME SRC: trains on SRC to every length of $steps, sampling and scoring at each
one() {
  local name=$1 src=$2 lengths=${3//\// } model=$work/$1.safetensors s resume="" ts tt te
  local -a targs=()
  [ -n "${4:-}" ] && IFS=+ read -r -a targs <<<"$4"
  for s in $lengths; do
    ts=$(date +%s%N)
    "$d2c" train --device "$device" --data "$src" --steps "$s" --batch "$batch" --ckpt-every 2000 --quiet $resume "${targs[@]}" \
      --out "$model" >"$work/$name.train.log" 2>&1 || { echo "$name: train to $s failed: $(tail -1 "$work/$name.train.log")"; return 1; }
    tt=$(date +%s%N)
    "$d2c" sample --device "$device" --model "$model" --n "$nsamples" --steps 50 --batch 1000 --quiet \
      --out "$work/${name}_s$s.samples.safetensors" >"$work/$name.sample.log" 2>&1 ||
      { echo "$name: sample at $s failed: $(tail -1 "$work/$name.sample.log")"; return 1; }
    te=$(date +%s%N)
    for ref in $refs; do
      local mfile=$work/${name}_s${s}_${ref//:/_}.metrics.json
      "$d2c" eval --device "$device" --samples "$work/${name}_s$s.samples.safetensors" --ref "$ref" \
        --threads 2 --quiet --out "$mfile" >"$work/$name.eval.log" 2>&1 ||
        { echo "$name: eval at $s against $ref failed: $(tail -1 "$work/$name.eval.log")"; return 1; }
      # JOBS runs append to one file: one locked write per line, so that lines never interleave
      python3 -c 'import fcntl, json, os, sys
m = json.load(open(sys.argv[1]))
line = json.dumps({"pool": sys.argv[2], "source": sys.argv[3], "steps": int(sys.argv[4]), "batch": int(sys.argv[5]),
                   "train_seconds_cumulative_segment": float(sys.argv[6]), "sample_seconds": float(sys.argv[7]),
                   "ref": sys.argv[8], "metrics": m}) + "\n"
fd = os.open(sys.argv[9], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, line.encode())
os.close(fd)' "$mfile" "$name" "$src" "$s" "$batch" \
        "$(awk -v a="$ts" -v b="$tt" 'BEGIN { print (b - a) / 1e9 }')" \
        "$(awk -v a="$tt" -v b="$te" 'BEGIN { print (b - a) / 1e9 }')" "$ref" "$out/pools.jsonl"
    done
    echo "$name: $s steps done"
    resume=--resume
  done
}
export -f one
export d2c device steps batch nsamples work out refs

if [ "${MPS:-0}" = 1 ] && [ "$device" = cuda ]; then
  if command -v nvidia-cuda-mps-control >/dev/null; then
    export CUDA_MPS_PIPE_DIRECTORY=/tmp/d2c-mps/pipe CUDA_MPS_LOG_DIRECTORY=/tmp/d2c-mps/log
    mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
    nvidia-cuda-mps-control -d && trap 'echo quit | nvidia-cuda-mps-control' EXIT
    if timeout 60 "$d2c" train --device cuda --data fashion-mnist --steps 20 --batch 16 --quiet \
      --out /tmp/d2c-mps/probe.safetensors >/tmp/d2c-mps/probe.log 2>&1; then
      say "MPS on"
    else
      say "MPS probe failed ($(tail -1 /tmp/d2c-mps/probe.log)): the runs go without it"
      echo quit | nvidia-cuda-mps-control; trap - EXIT; unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
    fi
  else
    say "no nvidia-cuda-mps-control: the runs go without MPS"
  fi
fi

list=$work/list.txt
: >"$list"
for spec in "$@"; do
  IFS=: read -r method ratio seed lengths train <<<"$spec"
  IFS=+ read -r -a margs <<<"$method" # METHOD[+OPTION+VALUE...]: more condense options
  method=${margs[0]}
  name=$(echo "${margs[*]}" | tr -s ' -' '__')_r${ratio}_s${seed}
  margs=(--method "${margs[@]}"); [ "$method" = default ] && margs=("${margs[@]:2}")
  say "condense $name: ${margs[*]} from $data"
  "$d2c" condense --data "$data" "${margs[@]}" --ratio "$ratio" --seed "$seed" --threads "$(nproc)" \
    --quiet --out "$work/$name.pool.safetensors" || { say "condense $spec failed"; exit 1; }
  pool=$work/$name.pool.safetensors
  [ -n "$train" ] && name=${name}_t$(echo "$train" | tr -s '+-' '__')
  echo "$name $pool ${lengths:-${steps// //}}${train:+ $train}" >>"$list" # no trailing blank: xargs -L joins such lines
done
[ "${FULL:-1}" = 1 ] && echo "full $data ${steps// //}" >>"$list"
say "$(wc -l <"$list") runs, $jobs at a time, lengths: $steps, batch $batch, $nsamples samples, device $device"
timeout "$((budget - ($(date +%s) - t0)))" xargs -P "$jobs" -L 1 bash -c 'one "$0" "$1" "$2" "$3"' <"$list"
say "done (xargs status $?)"
python3 - "$out/pools.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])] if __import__("os").path.exists(sys.argv[1]) else []
print(f"{'pool':36s} {'ref':18s} {'steps':>6s} {'FID':>8s} {'KID':>9s} {'consensus':>9s} {'CAS':>6s} {'recall':>6s}")
for r in sorted(rows, key=lambda r: (r.get("ref", ""), r["steps"], r["pool"])):
    m = r["metrics"]
    cas = f"{m['cas']:6.3f}" if m.get("cas") is not None else f"{'-':>6s}"  # no CAS against :val
    print(f"{r['pool']:36s} {r.get('ref', '?'):18s} {r['steps']:6d} {m['fid']:8.4f} {m['kid']:9.5f} {m['consensus']:9.4f} "
          f"{cas} {m['recall']:6.3f}")
EOF
