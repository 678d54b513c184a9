#!/usr/bin/env bash
# The main job: condense Fashion-MNIST to 1% with d2c's default method (kernel herding in
# pixel-PCA space, docs/CONDENSATION.md), train a diffusion model on the pool and, for
# comparison, on a random 1% subset with the same steps and seed, sample both, evaluate both
# against the test split with every committed evaluator, and print the numbers, the pools'
# own KID beside them.
#   scripts/main.sh [OUT_DIR]      (default out/main)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh
out=${1:-out/main}
mkdir -p "$out"
d2c=./build/d2c
STEPS=${STEPS:-1500} SAMPLES=${SAMPLES:-1000}
$d2c condense --data fashion-mnist --ratio 0.01 --seed 0 --out "$out/pool_default.safetensors"
$d2c condense --data fashion-mnist --ratio 0.01 --method random --seed 0 --out "$out/pool_random.safetensors"
for m in default random; do
  $d2c eval --samples "$out/pool_$m.safetensors" --ref fashion-mnist:test --no-cas --quiet --out "$out/pool_metrics_$m.json"
  $d2c train --data "$out/pool_$m.safetensors" --steps "$STEPS" --batch 64 --seed 0 --out "$out/model_$m.safetensors"
  $d2c sample --model "$out/model_$m.safetensors" --n "$SAMPLES" --steps 50 --seed 1 \
      --out "$out/samples_$m.safetensors" --grid "$out/samples_$m.png"
  $d2c eval --samples "$out/samples_$m.safetensors" --ref fashion-mnist:test --out "$out/metrics_$m.json"
done
echo
echo "Fashion-MNIST, 1% pools (600 images): the default (kherding) and a random subset; $STEPS training steps,"
echo "$SAMPLES DDIM-50 samples, every committed evaluator (below 10,000 samples FID is biased: KID is the"
echo "primary number; docs/EVALUATION.md). 'pool' rows score the 600 pool images themselves."
for m in default random; do
  python3 - "$out/pool_metrics_$m.json" "$m pool" "$out/metrics_$m.json" "$m model" <<'PY'
import json, sys
for path, name in zip(sys.argv[1::2], sys.argv[2::2]):
    d = json.load(open(path))
    cells = "  ".join(f"{e['evaluator'].split(':')[0]} FID {e['fid']:.3f} KID {e['kid']:.5f}" for e in d["per_evaluator"])
    cas = "-" if d.get("cas") is None else f"{d['cas']:.4f}"
    print(f"{name:<14} {cells}  consensus {d['consensus']:.3f}  CAS {cas}  recall {d['recall']:.3f}")
PY
done
