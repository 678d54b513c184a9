#!/usr/bin/env bash
# Installs everything d2c needs on Debian 12 (as root, idempotent): the compiler
# toolchain, the numeric libraries, the default dataset and the PyTorch reference, and the
# hardening tools of scripts/test.sh: clang with libFuzzer (libclang-rt-14-dev) and its
# OpenMP runtime (libomp-14-dev) for the fuzz targets, valgrind for the memcheck test.
set -euo pipefail
pkgs=(build-essential cmake pkg-config
      libopenblas-openmp-dev liblapacke-dev zlib1g-dev libpng-dev libjpeg-dev libcjson-dev
      dataset-fashion-mnist
      python3 python3-numpy python3-scipy python3-torch python3-pil python3-pip
      time
      clang libclang-rt-14-dev libomp-14-dev valgrind)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The official safetensors reader for the interoperability test (not packaged by Debian 12);
# optional: tests/io_interop.py skips that part without it.
if ! /usr/bin/python3 -c 'import safetensors' 2>/dev/null; then
  $([ "$(id -u)" = 0 ] || echo sudo) /usr/bin/python3 -m pip install --quiet --break-system-packages safetensors \
    || echo "setup.sh: could not install the safetensors package; io_interop skips that part" >&2
fi
