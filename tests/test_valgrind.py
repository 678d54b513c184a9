"""A tiny `d2c train` and `d2c condense` are clean under valgrind memcheck (CTest: valgrind_memcheck).

    test_valgrind.py PATH/TO/d2c WORK_DIR

Runs, each under `valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect
--error-exitcode=99` with tests/valgrind.supp:
  1. d2c train on a 40-image Fashion-MNIST subset: 3 steps of batch 4, C=8, a checkpoint
     every 2 steps (so one checkpoint is written mid-run and one at the end);
  2. d2c train --resume of that model to step 4 (the checkpoint reader);
  3. d2c condense --method d2c --ipc 1 --iters 2 on a 12-image, 2-class data set of 8x8
     random images (C=8, one candidate timestep, one inner step, a state checkpoint every
     iteration, the held-out matching loss on): the bilevel loop, scoring, evaluation, the
     pool, its state file and figure. On 28x28 Fashion-MNIST with 10 classes the same run
     takes over 10 minutes under valgrind, for the same code paths;
  4. d2c sample of 2 images in 2 DDIM steps from the model of 1 (the model reader, the
     sampler and the PNG grid writer).
Each run must exit 0, and memcheck must report no error (invalid read or write, use of an
uninitialised value, bad free) and no definitely or indirectly lost block. "Possibly lost"
and "still reachable" blocks are not errors: the only ones are libgomp's thread pool and
OpenBLAS's buffers, held until exit by design. valgrind is run with --threads 2 so the
OpenMP code paths are the ones a user runs.

Needs a build without -march=native (valgrind does not run AVX-512 code): CMake registers
this test only in such a build (scripts/test.sh makes build-valgrind/) and a skip
otherwise. Exit status 77 (CTest's skip) when valgrind or numpy is missing.
"""
import os
import re
import shutil
import subprocess
import sys
import time

from test_cli_common import check, finish, fmnist_subset, np, setup, st

SUPP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "valgrind.supp")
VALGRIND = shutil.which("valgrind")
if not VALGRIND:
    print("skip: valgrind is not installed (scripts/setup.sh installs it)")
    sys.exit(77)

EXE, WORK = setup("valgrind")
ENV = {**os.environ, "OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}


def memcheck(name, *args, exe=None):
    log = os.path.join(WORK, re.sub(r"\W+", "_", name).strip("_") + ".valgrind.log")
    cmd = [VALGRIND, "--tool=memcheck", "--leak-check=full", "--show-leak-kinds=definite,indirect",
           "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=99",
           f"--suppressions={SUPP}", f"--log-file={log}", exe or EXE, *[str(a) for a in args]]
    t = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=1500)
    secs = time.time() - t
    text = open(log).read() if os.path.exists(log) else ""
    summary = re.search(r"ERROR SUMMARY: (\d+) errors", text)
    lost = {kind: int(n.replace(",", "")) for kind, n in
            re.findall(r"(definitely|indirectly|possibly) lost: ([\d,]+) bytes", text)}
    errors = int(summary.group(1)) if summary else -1
    ok = r.returncode == 0 and errors == 0 and lost.get("definitely", -1) == 0 and lost.get("indirectly", -1) == 0
    # a program that frees everything prints "All heap blocks were freed" and no LEAK SUMMARY
    if r.returncode == 0 and errors == 0 and "All heap blocks were freed" in text:
        ok, lost = True, {"definitely": 0, "indirectly": 0}
    detail = (f"exit {r.returncode}, {errors} errors, definitely lost {lost.get('definitely')} B, "
              f"indirectly {lost.get('indirectly')} B, possibly {lost.get('possibly', 0)} B, {secs:.0f} s")
    return ok, detail, r, text


def clean(name, *args):
    ok, detail, r, text = memcheck(name, *args)
    if not check(f"{name}: memcheck clean", ok, detail):
        print(r.stderr[-3000:])
        print(text[-6000:])


# the control: a program that leaks a block and reads one byte past another must fail the
# same check, else the check means nothing
probe = os.path.join(WORK, "leak_probe")
with open(probe + ".c", "w") as f:
    f.write("#include <stdlib.h>\nint main(void) { char *p = malloc(64); p[0] = 1; char *q = malloc(8);\n"
            "volatile char c = q[8]; free(q); p = NULL; return c == 99; }\n")
cc = shutil.which("cc") or shutil.which("gcc")
if cc and subprocess.run([cc, "-O0", "-g", "-o", probe, probe + ".c"]).returncode == 0:
    ok, detail, _, text = memcheck("control (leak + overread)", exe=probe)
    check("control: a leaking, overreading program fails the check", not ok and "Invalid read" in text
          and "definitely lost: 64 bytes" in text, detail)
else:
    check("control: compiled the leak probe", False, "no C compiler")


data = fmnist_subset(os.path.join(WORK, "subset40.safetensors"), 40)
tiny = os.path.join(WORK, "tiny8x8.safetensors")
rng = np.random.default_rng(0)
st.save(tiny, {"images": np.clip(rng.normal(0, 0.5, (12, 1, 8, 8)), -1, 1).astype(np.float32),
               "labels": np.array([0, 1] * 6, np.int64)}, {"num_classes": "2"})
model = os.path.join(WORK, "model.safetensors")
TINY = ["--batch", 4, "--channels", 8, "--threads", 2, "--quiet"]
clean("train", "train", "--data", data, "--out", model, "--steps", 3, "--ckpt-every", 2, *TINY)
clean("train --resume", "train", "--data", data, "--out", model, "--steps", 4, "--ckpt-every", 2, "--resume", *TINY)
clean("condense", "condense", "--data", tiny, "--out", os.path.join(WORK, "pool.safetensors"), "--method", "d2c",
         "--ipc", 1, "--iters", 2, "--ckpt-every", 1, "--channels", 8, "--real-batch", 4, "--syn-batch", 1,
         "--t-candidates", 1, "--topk", 1, "--inner", 1, "--eval-nets", 1, "--threads", 2, "--quiet")
clean("sample", "sample", "--model", model, "--out", os.path.join(WORK, "samples.safetensors"), "--n", 2,
         "--steps", 2, "--grid", os.path.join(WORK, "grid.png"), "--threads", 2, "--quiet")
finish()
