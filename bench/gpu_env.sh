# Sourced by the GPU machine's scripts (bench/gpu_check.sh, bench/gpu_e2e.sh): gpu_build
# unpacks the Debian packages of d2c's C libraries from .gpudeps (bench/gpu_deps.sh; that
# machine has no network and no development files of them) into a private prefix, puts
# their libraries on LD_LIBRARY_PATH, and configures and builds build-gpu (Release,
# -DD2C_CUDA=ON, sm_90, all cores) with the given targets. Logs: $out/configure.log and
# $out/build.log. Returns 1 when the configure or the build fails. The caller defines say().
gpu_build() {
  # ---- the C libraries: unpacked from .gpudeps (bench/gpu_deps.sh) into a private prefix
  local deps=/tmp/d2c-gpudeps lib zlib libpath="" args=()
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
  # No run-time path in the programs: CMake writes it as DT_RPATH, which ld.so searches
  # before LD_LIBRARY_PATH, and on the GPU machine it holds /usr/lib/x86_64-linux-gnu (its
  # cuDNN's folder), whose newer LAPACKE would shadow Debian's. LD_LIBRARY_PATH names the
  # CUDA toolkit's libraries instead.
  args+=(-DCMAKE_SKIP_RPATH=ON)
  local cudalib
  cudalib=$(dirname "$(dirname "$(command -v nvcc)")")/lib64
  export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$cudalib
  command -v ninja >/dev/null && args+=(-G Ninja)
  # cuDNN: the toolkit's, else the nvidia-cudnn wheel that PyTorch uses
  if [ -z "${CUDNN_ROOT:-}" ] && ! compgen -G "$(dirname "$(dirname "$(command -v nvcc)")")/include/cudnn.h" >/dev/null; then
    CUDNN_ROOT=$(python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null) && export CUDNN_ROOT
  fi
  echo "CUDNN_ROOT=${CUDNN_ROOT:-}"

  say "configure and build (Release, -DD2C_CUDA=ON, sm_90): $*"
  if ! cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DD2C_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
         "${args[@]}" >"$out/configure.log" 2>&1; then
    tail -30 "$out/configure.log"
    say "configure FAILED"
    return 1
  fi
  if ! cmake --build build-gpu -j"$(nproc)" --target "$@" >"$out/build.log" 2>&1; then
    grep -E "error|Error" "$out/build.log" | head -30
    say "build FAILED"
    return 1
  fi
  say "built"
}
