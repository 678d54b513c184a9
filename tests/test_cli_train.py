"""`d2c train` end to end on Fashion-MNIST (CTest: cli_train, fixture cli_model).

    test_cli_train.py PATH/TO/d2c WORK_DIR

Trains a small UNet (C=16, batch 16, 150 steps, lr 2e-3, 2 threads) into
WORK_DIR/train/model.safetensors, which test_cli_sample.py then samples from, and checks:
1. the loss goes down: the mean of the last 10 logged losses is below half the mean of
   the first 10 (MODEL.log.jsonl has one line per step, 1..150, all finite);
2. the model file: metadata "config" (the UNetConfig fields, schedule, image_size) and
   "step" = 150; the training state train.params / train.adam_m / train.adam_v /
   train.ema, one float per parameter; the spec-named tensors are the EMA weights
   (concatenated in file order they equal train.ema) and differ from the raw weights;
3. `--attn-levels ''` (the help's "none") trains a model without attention levels;
4. a non-finite loss stops the run with one error line, writing no model file.
"""
import json
import math
import os

from test_cli_common import check, d2c, d2c_ok, finish, np, setup, st, THREADS

EXE, WORK = setup("train")
MODEL = os.path.join(WORK, "model.safetensors")
STEPS = 150

r = d2c_ok("train 150 steps", EXE, "train", "--data", "fashion-mnist", "--out", MODEL, "--steps", STEPS,
           "--batch", 16, "--lr", 2e-3, "--channels", 16, "--ema", 0.9, "--seed", 0, "--threads", THREADS, "--quiet")
print(f"     train: {r.seconds:.1f} s for {STEPS} steps of 16 images (C=16)")

# 1. the loss goes down
log_path = MODEL + ".log.jsonl"
rows = []
if os.path.exists(log_path):
    with open(log_path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
check("log: one line per step", [row.get("step") for row in rows] == list(range(1, STEPS + 1)),
      f"{len(rows)} lines")
losses = [row.get("loss", float("nan")) for row in rows]
check("log: losses finite", len(losses) == STEPS and all(math.isfinite(v) for v in losses))
if len(losses) >= 20:
    first, last = float(np.mean(losses[:10])), float(np.mean(losses[-10:]))
    check("loss goes down", last < 0.5 * first, f"mean of the first 10 {first:.4f} -> last 10 {last:.4f}")
else:
    check("loss goes down", False, "no log")

# 2. the model file
if os.path.exists(MODEL):
    tensors, meta = st.load(MODEL)
    cfg = json.loads(meta.get("config", "{}"))
    want = {"in_channels": 1, "base_channels": 16, "channel_mult": [1, 2, 2], "attn_levels": [2],
            "num_classes": 10, "groups": 8, "schedule": "linear", "image_size": [28, 28]}
    check("metadata config", all(cfg.get(k) == v for k, v in want.items()), json.dumps(cfg))
    check("metadata step", meta.get("step") == str(STEPS), repr(meta.get("step")))
    state = {k: tensors.pop(k, None) for k in ("train.params", "train.adam_m", "train.adam_v", "train.ema")}
    n_params = sum(t.size for t in tensors.values())
    check("training state tensors",
          all(v is not None and v.dtype == np.float32 and v.shape == (n_params,) for v in state.values()),
          f"{len(tensors)} spec tensors, {n_params} parameters")
    check("no other tensor names", all("." in k and not k.startswith("train") for k in tensors))
    if state["train.ema"] is not None:
        # the file order of the spec tensors is the flat layout of the training state
        with open(MODEL, "rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        order = sorted(tensors, key=lambda k: header[k]["data_offsets"][0])
        flat = np.concatenate([tensors[k].ravel() for k in order])
        check("spec tensors are the EMA weights", np.array_equal(flat, state["train.ema"]))
        check("EMA weights differ from the raw weights", not np.array_equal(flat, state["train.params"]))
else:
    check("model file written", False, MODEL)

# 3. an empty --attn-levels means no attention level (it was once refused as an empty value)
NO_ATTN = os.path.join(WORK, "no_attn.safetensors")
d2c_ok("train --attn-levels ''", EXE, "train", "--data", "fashion-mnist", "--out", NO_ATTN, "--steps", 1,
       "--batch", 4, "--channels", 16, "--attn-levels", "", "--threads", THREADS, "--quiet")
if os.path.exists(NO_ATTN):
    cfg = json.loads(st.load(NO_ATTN)[1].get("config", "{}"))
    check("--attn-levels '' gives no attention level", cfg.get("attn_levels") == [], json.dumps(cfg))
else:
    check("--attn-levels '' writes a model", False, NO_ATTN)

# 4. a loss that is not finite (images at 3e38 overflow the first step) stops the run:
# exit 1, one error line naming the step, no model file and no log line for that step
HUGE = os.path.join(WORK, "huge.safetensors")
st.save(HUGE, {"images": np.full((20, 1, 28, 28), 3e38, np.float32),
               "labels": (np.arange(20) % 10).astype(np.int64)})
NAN_MODEL = os.path.join(WORK, "nan.safetensors")
r = d2c(EXE, "train", "--data", HUGE, "--out", NAN_MODEL, "--steps", 20, "--batch", 8, "--channels", 8,
        "--ckpt-every", 5, "--threads", THREADS, "--quiet")
errs = [line for line in r.err.splitlines() if line.startswith("d2c: error:")]
check("non-finite loss: exit 1, one error line naming step 1",
      r.rc == 1 and len(errs) == 1 and "loss became" in errs[0] and "at step 1;" in errs[0], r.show())
check("non-finite loss: no model file", not os.path.exists(NAN_MODEL))
nan_log = NAN_MODEL + ".log.jsonl"
check("non-finite loss: no log line", not os.path.exists(nan_log) or os.path.getsize(nan_log) == 0)

finish()
