#!/usr/bin/env bash
# The main job: condense Fashion-MNIST to 1% with d2c, train a diffusion model on the pool
# and, for comparison, on a random 1% subset with the same steps and seed, sample both,
# evaluate both against the test split with every committed evaluator, and print the numbers.
# Measured on 2 cores (2026-12-02): 41 minutes in all; condensation 690 s (50 outer
# iterations plus the held-out matching loss at the start and end), about 13 minutes per
# training.
#   scripts/main.sh [OUT_DIR]      (default out/main)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh
out=${1:-out/main}
mkdir -p "$out"
d2c=./build/d2c
ITERS=${ITERS:-50} STEPS=${STEPS:-1500} SAMPLES=${SAMPLES:-1000}
$d2c condense --data fashion-mnist --ratio 0.01 --method d2c --iters "$ITERS" --seed 0 --out "$out/pool_d2c.safetensors"
$d2c condense --data fashion-mnist --ratio 0.01 --method random --seed 0 --out "$out/pool_random.safetensors"
for m in d2c random; do
  $d2c train --data "$out/pool_$m.safetensors" --steps "$STEPS" --batch 64 --seed 0 --out "$out/model_$m.safetensors"
  $d2c sample --model "$out/model_$m.safetensors" --n "$SAMPLES" --steps 50 --seed 1 \
      --out "$out/samples_$m.safetensors" --grid "$out/samples_$m.png"
  $d2c eval --samples "$out/samples_$m.safetensors" --ref fashion-mnist:test --out "$out/metrics_$m.json"
done
echo
echo "Fashion-MNIST, 1% pools (600 images), $STEPS training steps, $SAMPLES DDIM-50 samples, every committed evaluator"
echo "(below 10,000 samples FID is biased: KID is the primary number; docs/EVALUATION.md):"
for m in d2c random; do
  python3 - "$out/metrics_$m.json" "$m" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
cells = "  ".join(f"{e['evaluator'].split(':')[0]} FID {e['fid']:.3f} KID {e['kid']:.5f}" for e in d["per_evaluator"])
cas = "-" if d.get("cas") is None else f"{d['cas']:.4f}"
print(f"{sys.argv[2]:<7} {cells}  consensus {d['consensus']:.3f}  CAS {cas}  recall {d['recall']:.3f}")
PY
done
