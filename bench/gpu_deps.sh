#!/usr/bin/env bash
# Run on the development machine (Debian 12, network), before bench/gpu_check.sh's device
# call: fills .gpudeps/ (ignored by git; name it in the device run's `carry`) with what the
# GPU machine's image lacks and cannot fetch there (it has no network): the Debian 12
# packages of d2c's C libraries (OpenBLAS's OpenMP build, LAPACKE, cJSON, libpng, libjpeg,
# zlib headers; about 15 MB), fetched with apt-get download, a copy of
# ../shared/reference/bench_torch.py and d2c_spec.py for the PyTorch comparison (never
# committed), and Fashion-MNIST's IDX files from Debian's dataset-fashion-mnist (30 MB, for
# bench/gpu_e2e.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(libopenblas0-openmp libopenblas-openmp-dev liblapacke liblapacke-dev libtmglib3 libgfortran5
      libcjson1 libcjson-dev libpng16-16 libpng-dev libjpeg62-turbo libjpeg62-turbo-dev zlib1g-dev)
mkdir -p .gpudeps
cd .gpudeps
missing=()
for p in "${pkgs[@]}"; do
  compgen -G "${p}_*.deb" >/dev/null || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] || apt-get download "${missing[@]}"
# bench_torch.py imports d2c_spec from its own folder: both travel (never committed)
for f in bench_torch.py d2c_spec.py; do
  ref=../../shared/reference/$f
  if [ -f "$ref" ]; then cp "$ref" "$f"; else echo "gpu_deps.sh: $ref not found: no PyTorch comparison" >&2; fi
done
fm=/usr/share/datasets/fashion-mnist
if [ -f $fm/train-images-idx3-ubyte.gz ]; then
  mkdir -p fashion-mnist && cp -u $fm/*-ubyte.gz fashion-mnist/
else
  echo "gpu_deps.sh: $fm not found (scripts/setup.sh installs it): no end-to-end run" >&2
fi
echo "gpu_deps.sh: .gpudeps holds $(ls ./*.deb | wc -l) packages, $(du -sh . | cut -f1)"
