"""Shared helpers of the d2c command-line integration tests (tests/test_cli_*.py).

Not a test itself: test_cli_train.py, test_cli_resume.py, test_cli_sample.py and
test_cli_errors.py import it. Every test is run by CTest as

    /usr/bin/python3 tests/test_cli_X.py PATH/TO/d2c WORK_DIR

prints one "ok"/"FAIL"/"skip" line per check and ends with "N passed, N failed"; the exit
status is 1 when a check failed, 77 (CTest's skip) when numpy or torch are missing.
"""
import gzip
import os
import shutil
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

try:
    import numpy as np
    import st_numpy as st
except ImportError as e:  # pragma: no cover - Debian's python3-numpy is a build dependency
    print(f"skip: {e}")
    sys.exit(77)

FMNIST = "/usr/share/datasets/fashion-mnist"
THREADS = "2"
counts = {"passed": 0, "failed": 0, "skipped": 0}
_t0 = time.time()


def setup(name):
    """(d2c executable, an emptied work folder) from argv."""
    if len(sys.argv) != 3:
        print(f"usage: {os.path.basename(sys.argv[0])} PATH/TO/d2c WORK_DIR")
        sys.exit(2)
    exe = os.path.abspath(sys.argv[1])
    work = os.path.abspath(os.path.join(sys.argv[2], name))
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    return exe, work


def check(name, ok, detail=""):
    counts["passed" if ok else "failed"] += 1
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    return ok


def skip(name, why):
    counts["skipped"] += 1
    print(f"skip {name}: {why}", flush=True)


def finish():
    skipped = f", {counts['skipped']} skipped" if counts["skipped"] else ""
    print(f"({time.time() - _t0:.1f} s)")
    print(f"{counts['passed']} passed, {counts['failed']} failed{skipped}", flush=True)
    if counts["passed"] + counts["failed"] == 0:  # nothing was checked: a skip or a failure, never a pass
        print("skip: every check was skipped" if counts["skipped"] else "FAIL no check ran", flush=True)
        sys.exit(77 if counts["skipped"] else 1)
    sys.exit(1 if counts["failed"] else 0)


class Run:
    """A finished d2c run: rc, stdout, stderr, seconds."""

    def __init__(self, args, rc, out, err, seconds):
        self.args, self.rc, self.out, self.err, self.seconds = args, rc, out, err, seconds

    def show(self):
        return f"d2c {' '.join(self.args)} -> exit {self.rc}\n{self.out}{self.err}"


def d2c(exe, *args, cwd=None, timeout=600):
    args = [str(a) for a in args]
    t = time.time()
    r = subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    return Run(args, r.returncode, r.stdout, r.stderr, time.time() - t)


def d2c_ok(name, exe, *args, **kw):
    """Runs d2c and counts a check that it exited 0 (printing its output when not)."""
    r = d2c(exe, *args, **kw)
    if not check(f"{name}: exit 0", r.rc == 0, f"exit {r.rc}" if r.rc else f"{r.seconds:.1f} s"):
        print(r.show())
    return r


def read_idx_images(path, n):
    """The first n images of a gzip IDX file as float32 (n, 1, 28, 28) in [-1, 1]."""
    with gzip.open(path, "rb") as f:
        magic, count, h, w = struct.unpack(">IIII", f.read(16))
        assert magic == 0x803 and count >= n
        raw = np.frombuffer(f.read(n * h * w), dtype=np.uint8)
    return (raw.reshape(n, 1, h, w).astype(np.float32) / 127.5 - 1.0).astype(np.float32)


def read_idx_labels(path, n):
    with gzip.open(path, "rb") as f:
        magic, count = struct.unpack(">II", f.read(8))
        assert magic == 0x801 and count >= n
        return np.frombuffer(f.read(n), dtype=np.uint8).astype(np.int64)


def fmnist_subset(path, n):
    """Writes the first n Fashion-MNIST training images as a .safetensors data set."""
    x = read_idx_images(os.path.join(FMNIST, "train-images-idx3-ubyte.gz"), n)
    y = read_idx_labels(os.path.join(FMNIST, "train-labels-idx1-ubyte.gz"), n)
    st.save(path, {"images": x, "labels": y}, {"num_classes": "10"})
    return path


def tensors_equal(a, b):
    """(equal?, description of the first difference) of two dicts of arrays, bit for bit."""
    if set(a) != set(b):
        return False, f"names differ: {sorted(set(a) ^ set(b))[:6]}"
    for k in sorted(a):
        if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape:
            return False, f"{k}: {a[k].dtype}{a[k].shape} vs {b[k].dtype}{b[k].shape}"
        if a[k].tobytes() != b[k].tobytes():
            d = np.abs(a[k].astype(np.float64) - b[k].astype(np.float64))
            return False, f"{k}: {int((d > 0).sum())} elements differ, max {d.max():.3g}"
    return True, f"{len(a)} tensors"
