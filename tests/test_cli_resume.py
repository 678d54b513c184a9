"""--resume repeats an uninterrupted run bit for bit (CTest: cli_resume).

    test_cli_resume.py PATH/TO/d2c WORK_DIR

1. `d2c train`: N steps in one go vs N/2 steps (--ckpt-every N/2) and then --resume to N, with
   the same seed and threads; the two model files hold identical tensors, all of them
   (spec-named EMA weights and train.params / adam_m / adam_v / ema), the same metadata, and
   the resumed log has one line per step 1..N with the same losses. Twice: on Fashion-MNIST
   (N=8, batch 8, C=8) and on a 44-image .safetensors subset (N=16, batch 8: epochs end at
   steps 5.5, 11 and 16.5, on both sides of the resumption, and the epoch permutations must
   agree), the second with --ckpt-every 3, so that checkpoints also fall at steps that
   are not the stopping points (3, 6, 8 | 9, 12, 15, 16).
2. `d2c condense --method d2c --ipc 2 --iters 4 --ckpt-every 2 --channels 8 --real-batch 8
   --syn-batch 2 --t-candidates 4 --topk 1 --inner 1`: stopped at 2 (--iters 2) and resumed
   to 4 gives exactly the pool (images, labels) and state file of the uninterrupted run,
   and the same logged losses and timesteps; again with --outer-loop 2 --rescore 3
   --learn-cond --dsa --opt-img sgd --pool-res 7 (re-initialisation at iteration 2,
   re-scoring at 3, the learned conditioning, augmentation and residual state).
"""
import json
import os

from test_cli_common import check, d2c_ok, finish, fmnist_subset, setup, st, tensors_equal, THREADS

EXE, WORK = setup("resume")


def log_rows(path, keys):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    # condense also logs held-out evaluations as lines of their own (iteration 0)
    return [tuple(r[k] for k in keys) for r in rows if all(k in r for k in keys)]


def compare_models(name, a, b):
    if not (os.path.exists(a) and os.path.exists(b)):
        return check(f"{name}: identical tensors", False, "a model file is missing")
    ta, ma = st.load(a)
    tb, mb = st.load(b)
    ok, why = tensors_equal(ta, tb)
    check(f"{name}: identical tensors, train.* included", ok and all(f"train.{s}" in ta for s in
                                                                        ("params", "adam_m", "adam_v", "ema")), why)
    check(f"{name}: identical metadata", ma == mb, "" if ma == mb else f"{ma} vs {mb}")


def train_case(name, data, steps, half, ckpt_every, batch, channels):
    common = ["--data", data, "--batch", batch, "--channels", channels, "--seed", 5, "--warmup", 4,
              "--threads", THREADS, "--quiet"]
    full = os.path.join(WORK, f"{name}_full.safetensors")
    part = os.path.join(WORK, f"{name}_resumed.safetensors")
    d2c_ok(f"{name}: {steps} steps", EXE, "train", "--out", full, "--steps", steps, "--ckpt-every", steps, *common)
    d2c_ok(f"{name}: first {half} steps", EXE, "train", "--out", part, "--steps", half, "--ckpt-every", ckpt_every,
           *common)
    saved = st.load(part)[1].get("step") if os.path.exists(part) else None
    check(f"{name}: checkpoint step after the first part", saved is not None, f"step {saved}")
    d2c_ok(f"{name}: --resume to {steps}", EXE, "train", "--out", part, "--steps", steps, "--ckpt-every", ckpt_every,
           "--resume", *common)
    compare_models(name, full, part)
    la = log_rows(full + ".log.jsonl", ("step", "loss", "grad_norm"))
    lb = log_rows(part + ".log.jsonl", ("step", "loss", "grad_norm"))
    # a run stopped after its last checkpoint logs steps the resumed run repeats: keep the last of each
    if lb is not None:
        lb = sorted({row[0]: row for row in lb}.values())
    check(f"{name}: resumed log = uninterrupted log", la is not None and la == lb and len(la) == steps,
          f"{len(la or [])} vs {len(lb or [])} lines")


train_case("train_fmnist", "fashion-mnist", 8, 4, 4, 8, 8)
subset = fmnist_subset(os.path.join(WORK, "subset44.safetensors"), 44)
train_case("train_subset", subset, 16, 8, 3, 8, 8)

# 2. condense
def condense_case(name, extra):
    args = ["--data", "fashion-mnist", "--method", "d2c", "--ipc", 2, "--ckpt-every", 2, "--channels", 8,
            "--real-batch", 8, "--syn-batch", 2, "--t-candidates", 4, "--topk", 1, "--inner", 1, "--seed", 3,
            "--threads", THREADS, "--quiet", *extra]
    full = os.path.join(WORK, f"{name}_full.safetensors")
    part = os.path.join(WORK, f"{name}_resumed.safetensors")
    r = d2c_ok(f"{name}: 4 iterations", EXE, "condense", "--out", full, "--iters", 4, *args)
    print(f"     {name}: {r.seconds:.1f} s for 4 iterations")
    d2c_ok(f"{name}: 2 iterations", EXE, "condense", "--out", part, "--iters", 2, *args)
    d2c_ok(f"{name}: --resume to 4", EXE, "condense", "--out", part, "--iters", 4, "--resume", *args)
    if not (os.path.exists(full) and os.path.exists(part)):
        return check(f"{name}: pool files written", False)
    pa, ma = st.load(full)
    pb, mb = st.load(part)
    ok, why = tensors_equal(pa, pb)
    check(f"{name}: resumed pool = uninterrupted pool", ok and "images" in pa, f"{why}: {', '.join(sorted(pa))}")
    drop = ("wall_seconds", "checksum")  # the checksum covers the metadata, wall_seconds included
    check(f"{name}: same pool metadata (but wall_seconds and the checksum)",
          {k: v for k, v in ma.items() if k not in drop} == {k: v for k, v in mb.items() if k not in drop})
    sa, sb = full + ".state.safetensors", part + ".state.safetensors"
    if os.path.exists(sa) and os.path.exists(sb):
        ok, why = tensors_equal(st.load(sa)[0], st.load(sb)[0])
        check(f"{name}: same state file", ok, why)
    else:
        check(f"{name}: state files written", False)
    la = log_rows(full + ".log.jsonl", ("iter", "loss", "timesteps"))
    lb = log_rows(part + ".log.jsonl", ("iter", "loss", "timesteps"))
    check(f"{name}: same logged losses and timesteps", la is not None and la == lb and len(la) == 4,
          f"{la} vs {lb}" if la != lb else "")


condense_case("condense", [])
# network re-initialisation and re-scoring at iterations on either side of the resumption,
# learned conditioning, DSA, SGD with momentum and a low-resolution residual pool
condense_case("condense_variants", ["--outer-loop", 2, "--rescore", 3, "--learn-cond", "--dsa", "--opt-img", "sgd",
                                    "--pool-res", 7])

finish()
