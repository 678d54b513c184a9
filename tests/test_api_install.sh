#!/usr/bin/env bash
# The installed API as a user sees it: `cmake --install` into a fresh prefix, then
# examples/train_and_sample.c compiled with only that prefix's include folder (pkg-config
# --cflags d2c, never src/) and linked through pkg-config both against libd2c.so and
# statically against libd2c.a, and run; the header also compiles as C++; libd2c.so exports
# exactly the functions d2c.h declares, under its SONAME. The prefix is left for
# test_api_ctypes.py (CTest fixture api_prefix).
#
#   test_api_install.sh BUILD_DIR SOURCE_DIR WORK_DIR CC [EXTRA_CFLAGS]
set -euo pipefail
build=$1 src=$2 work=$3 cc=$4 extra=${5:-}
prefix=$work/prefix
fail() { echo "FAIL: $*"; exit 1; }
rm -rf "$work"
mkdir -p "$work"
cmake --install "$build" --prefix "$prefix" >/dev/null

pc=$(find "$prefix" -name d2c.pc)
[ -n "$pc" ] || fail "no d2c.pc installed"
libdir=$(dirname "$(dirname "$pc")")
export PKG_CONFIG_PATH=$(dirname "$pc")
[ "$(ls "$prefix/include")" = "d2c.h" ] || fail "the installed include folder holds more than d2c.h: $(ls "$prefix/include")"
for f in libd2c.a libd2c.so libd2c.so.0.1; do [ -e "$libdir/$f" ] || fail "$libdir/$f not installed"; done
[ -x "$prefix/bin/d2c" ] || fail "bin/d2c not installed"
cflags=$(pkg-config --cflags d2c)
libs=$(pkg-config --libs d2c)
static_libs=$(pkg-config --static --libs d2c | sed 's/-ld2c\b/-l:libd2c.a/')
echo "pkg-config --cflags: $cflags"
echo "pkg-config --libs:   $libs"
case "$cflags $libs" in *"$src/src"*|*"$src/include"*) fail "pkg-config names the source tree" ;; esac
[ "$(pkg-config --modversion d2c)" = "$("$prefix/bin/d2c" --version | awk '{print $2}')" ] || fail "d2c.pc's version is not the command's"

# the example against the shared and the static library
strict="-std=c11 -Wall -Wextra -Werror -pedantic"
# shellcheck disable=SC2086
"$cc" $strict $extra $cflags "$src/examples/train_and_sample.c" $libs -Wl,-rpath,"$libdir" -o "$work/ex_shared"
# shellcheck disable=SC2086
"$cc" $strict $extra $cflags "$src/examples/train_and_sample.c" $static_libs -o "$work/ex_static"
# (each tool's output is taken whole before grep reads it: with pipefail, `ldd | grep -q` fails
# at random when grep's early exit stops ldd with SIGPIPE)
deps_shared=$(ldd "$work/ex_shared") deps_static=$(ldd "$work/ex_static" 2>&1 || true)
grep -qF "$libdir/libd2c.so.0.1" <<<"$deps_shared" || fail "ex_shared does not load the installed libd2c.so.0.1: $deps_shared"
! grep -q libd2c <<<"$deps_static" || fail "ex_static loads a shared libd2c: $deps_static"
# the header in C++ (extern "C"), linked and called
printf '#include <d2c.h>\n#include <cstring>\nint main() { return std::strcmp(d2c_version(), D2C_VERSION) != 0; }\n' >"$work/cxx.cc"
# shellcheck disable=SC2086
c++ -std=c++11 -Wall -Wextra -Werror $extra $cflags "$work/cxx.cc" $libs -Wl,-rpath,"$libdir" -o "$work/cxx"
"$work/cxx" || fail "C++ program: header and library versions differ"

# exports: exactly d2c.h's D2C_API functions, and the SONAME
nm -D --defined-only "$libdir/libd2c.so" | awk '{print $3}' | sort >"$work/exported"
grep -E '^D2C_API' "$prefix/include/d2c.h" | grep -oE 'd2c_[a-z0-9_]+\(' | tr -d '(' | sort >"$work/declared"
diff "$work/declared" "$work/exported" >"$work/exports.diff" || { cat "$work/exports.diff"; fail "exports differ from d2c.h (< declared, > exported)"; }
echo "exports: $(wc -l <"$work/exported") functions, all declared in d2c.h"
dynamic=$(readelf -d "$libdir/libd2c.so")
grep -q 'SONAME.*\[libd2c.so.0.1\]' <<<"$dynamic" || fail "SONAME is not libd2c.so.0.1"

# run both; the same program on the same library code gives the same output
cd "$work"
./ex_shared fashion-mnist:test "$work/model.safetensors" 3 >out_shared.txt || fail "ex_shared exited $?"
mv model.safetensors model_shared.safetensors
./ex_static fashion-mnist:test "$work/model.safetensors" 3 >out_static.txt || fail "ex_static exited $?"
cat out_shared.txt
grep -q '^sample 9: class 9, pixels in' out_shared.txt || fail "the example printed no sample of class 9"
diff out_shared.txt out_static.txt || fail "shared and static builds of the example disagree"
cmp model_shared.safetensors model.safetensors || fail "shared and static builds trained different models"
# an error goes through d2c_last_error and the status
set +e
./ex_shared folder:/nonexistent "$work/never.safetensors" 2>err.txt
st=$?
set -e
[ "$st" = 2 ] || fail "bad data source: exit $st, not 2"
grep -q '^train_and_sample: loading the data: .*/nonexistent' err.txt || fail "bad data source: message '$(cat err.txt)'"
echo "ok: installed header and libraries, example built shared and static, C++, exports, SONAME, error path"
