"""The shared CIFAR-10 JPEG tarball as a folder: data set (CTest: io_cifar10; slower).

    io_cifar10.py PATH/TO/test_io TARBALL CACHE_DIR

Unpacks TARBALL into CACHE_DIR once (atomically: a temporary folder renamed into place),
then checks that folder:CACHE_DIR loads as 50,000 train and 10,000 test images of 3x32x32
in 10 classes of 5,000 / 1,000, that the classes are the ten CIFAR-10 names in sorted
order, and that the first 1,000 test images (class airplane) equal PIL's decoding of the
same files; prints the load times. Exits 77 (skipped) when the tarball is absent.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

EXE, TARBALL, CACHE = (os.path.abspath(a) for a in sys.argv[1:4])
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MARKER = ".d2c-unpacked"  # written last; hidden, so the loader ignores it
failed = passed = 0


def check(name, ok, detail=""):
    global failed, passed
    failed += not ok
    passed += bool(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)


def unpack():
    if os.path.exists(os.path.join(CACHE, MARKER)):
        return
    if not os.path.exists(TARBALL):
        print(f"skip: {TARBALL} not found")
        sys.exit(77)
    shutil.rmtree(CACHE, ignore_errors=True)  # a partial copy from an interrupted run
    os.makedirs(os.path.dirname(CACHE), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(CACHE) + ".tmp.", dir=os.path.dirname(CACHE))
    t0 = time.time()
    subprocess.run(["tar", "-xzf", TARBALL, "-C", tmp], check=True)
    open(os.path.join(tmp, MARKER), "w").close()
    os.rename(tmp, CACHE)
    print(f"unpacked {TARBALL} into {CACHE} in {time.time() - t0:.1f} s")


def load(split, **env):
    r = subprocess.run([EXE, "load", f"folder:{CACHE}:{split}"], capture_output=True, text=True,
                       env={**os.environ, **env})
    if r.returncode != 0:
        print(r.stdout + r.stderr)
        return {}
    return json.loads(r.stdout)


def main():
    unpack()
    for split, per_class in (("train", 5000), ("test", 1000)):
        info = load(split)
        check(f"folder:cifar10:{split} loads", info.get("n") == 10 * per_class and
              (info.get("c"), info.get("h"), info.get("w")) == (3, 32, 32) and info.get("num_classes") == 10 and
              info.get("counts") == [per_class] * 10 and info.get("class_names") == CLASSES and
              -1 <= info.get("min", 9) and info.get("max", 9) <= 1,
              f"{info.get('n')} images in {info.get('seconds', float('nan')):.2f} s on {info.get('threads')} threads")
    info = load("train", OMP_NUM_THREADS="1")
    print(f"     train split on 1 thread: {info.get('seconds', float('nan')):.2f} s")

    try:
        from PIL import Image
    except ImportError:
        print("skip: PIL not installed, pixel comparison not made")
    else:
        out = os.path.join(tempfile.mkdtemp(prefix="d2c_io_cifar10."), "test.safetensors")
        r = subprocess.run([EXE, "dump", f"folder:{CACHE}:test", out, "1000"], capture_output=True, text=True)
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from io_interop import st_read
        got, _, _ = st_read(out) if r.returncode == 0 else ({"images": np.zeros(0)}, 0, 0)
        folder = os.path.join(CACHE, "test", "airplane")
        files = sorted(f for f in os.listdir(folder) if not f.startswith("."))[:1000]
        want = np.stack([np.asarray(Image.open(os.path.join(folder, f)).convert("RGB")).transpose(2, 0, 1)
                         for f in files]).astype(np.float32) / np.float32(127.5) - np.float32(1)
        same = got["images"].shape == want.shape and np.array_equal(got["images"], want)
        check("first 1000 test images equal PIL's decoding", same, f"{len(files)} files")
        shutil.rmtree(os.path.dirname(out), ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    if passed + failed == 0:
        print("FAIL no check ran")
        sys.exit(1)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
