"""Bad input to `d2c train`, `d2c sample` and `d2c condense` (CTest: cli_errors).

    test_cli_errors.py PATH/TO/d2c WORK_DIR

1. Bad usage or bad input exits with status 2 and exactly one stderr line beginning
   "d2c: error:" that names the option or file at fault: an unknown data source, missing
   files (data, model, noise, resume state), bad option values (negative --steps,
   --guidance abc, --lr 0, --threads 0, --sampler foo, an unknown option, a missing --out),
   a model file whose tensors have other shapes than its "config" metadata says, one that
   lacks a tensor, one that is not a safetensors file, `train --resume` of a model trained
   with another --channels or beyond --steps, a --noise file with the wrong channel count or
   rank, a label outside the model's classes, both --ipc and --ratio.
2. Integrity: a model file, a training checkpoint or a condensation state with one byte
   changed (tensor data or metadata) is refused with exit 2 naming the file ("checksum
   mismatch"), and a failed --resume leaves the file as it was. Files edited by other
   tools (below) drop the checksum key, as files from older d2c or PyTorch lack it.
3. A non-finite loss stops training with exit status 1 and one "d2c: error:" line naming
   the step: on a .safetensors pool of finite but enormous pixels (+-3e38, labels valid,
   metadata num_classes) a fresh run stops at step 1 and leaves no model file (nor any
   temporary file); a model trained 10 steps on good data (--ckpt-every 5) and resumed on
   the bad data stops at step 11 and its checkpoint stays byte for byte as it was.
"""
import glob
import os

from test_cli_common import check, d2c, d2c_ok, finish, fmnist_subset, np, setup, st, THREADS

EXE, WORK = setup("errors")


def W(name):
    return os.path.join(WORK, name)


def expect_error(name, args, needle, status=2):
    """d2c ARGS exits `status` with one 'd2c: error:' line on stderr that contains `needle`."""
    r = d2c(EXE, *args)
    errors = [line for line in r.err.splitlines() if line.startswith("d2c: error:")]
    last = r.err.rstrip("\n").split("\n")[-1] if r.err.strip() else ""
    ok = r.rc == status and len(errors) == 1 and last == errors[0] and needle in errors[0]
    if not check(f"{name}: exit {status}, one error line naming {needle!r}", ok,
                 errors[0] if errors else f"exit {r.rc}, no error line"):
        print(r.show())
    return r


# data: a 44-image Fashion-MNIST subset, a small model trained on it (C=8), a noise file
subset = fmnist_subset(W("subset44.safetensors"), 44)
small = W("small.safetensors")
TRAIN = ["--batch", 4, "--threads", THREADS, "--quiet"]
d2c_ok("small model (2 steps, C=8)", EXE, "train", "--data", subset, "--out", small, "--steps", 2, "--channels", 8, *TRAIN)
tensors, meta = st.load(small)
check("(d2c's model carries a checksum)", meta.get("checksum", "").startswith("crc32:"), meta.get("checksum", ""))
meta = {k: v for k, v in meta.items() if k != "checksum"}  # edited copies below: no checksum to verify

# 1. bad usage and bad input
expect_error("unknown data source", ["train", "--data", "nosuch:x", "--out", W("m1.safetensors")], "nosuch:x")
expect_error("missing data file", ["train", "--data", W("absent.safetensors"), "--out", W("m1.safetensors")],
             "absent.safetensors")
expect_error("missing idx files", ["train", "--data", "idx:" + W("nothing"), "--out", W("m1.safetensors")], "nothing")
expect_error("train without --out", ["train", "--data", subset], "--out")
expect_error("negative --steps", ["train", "--data", subset, "--out", W("m1.safetensors"), "--steps", -5], "--steps")
expect_error("--lr 0", ["train", "--data", subset, "--out", W("m1.safetensors"), "--lr", 0], "--lr")
expect_error("--threads 0", ["train", "--data", subset, "--out", W("m1.safetensors"), "--threads", 0], "--threads")
expect_error("unknown option", ["train", "--data", subset, "--out", W("m1.safetensors"), "--bogus", 1], "--bogus")
expect_error("--resume without a model", ["train", "--data", subset, "--out", W("m_absent.safetensors"), "--resume"],
             "m_absent.safetensors")
expect_error("--resume with another --channels",
             ["train", "--data", subset, "--out", small, "--steps", 4, "--channels", 16, "--resume", *TRAIN], "--resume")
expect_error("--resume beyond --steps",
             ["train", "--data", subset, "--out", small, "--steps", 1, "--channels", 8, "--resume", *TRAIN], "--steps")
check("failed resumes leave the model as it was", st.load(small)[0]["train.params"].tobytes() ==
      tensors["train.params"].tobytes())

noise = W("noise.safetensors")
st.save(noise, {"noise": np.zeros((2, 1, 28, 28), np.float32)})
SAMPLE = ["sample", "--model", small, "--out", W("s.safetensors"), "--steps", 2, "--threads", THREADS]
expect_error("missing model", ["sample", "--model", W("absent_model.safetensors"), "--out", W("s.safetensors"), "--n", 2],
             "absent_model.safetensors")
expect_error("missing noise file", [*SAMPLE, "--noise", W("absent_noise.safetensors")], "absent_noise.safetensors")
expect_error("--guidance abc", [*SAMPLE, "--n", 2, "--guidance", "abc"], "--guidance")
expect_error("--steps 0", [*SAMPLE, "--n", 2, "--steps", 0], "--steps")
expect_error("--sampler foo", [*SAMPLE, "--n", 2, "--sampler", "foo"], "--sampler")
expect_error("neither --noise nor --n", SAMPLE, "--noise")
expect_error("label outside the classes", [*SAMPLE, "--n", 2, "--labels", "0,12"], "label")

wrong = W("wrong_shapes.safetensors")   # tensors of C=8, metadata of C=16
st.save(wrong, tensors, {**meta, "config": meta["config"].replace('"base_channels":8', '"base_channels":16')})
check("(the wrong-shapes file says C=16)", '"base_channels":16' in st.load(wrong)[1]["config"])
expect_error("tensors of another shape than the config", [*SAMPLE[:2], wrong, *SAMPLE[3:], "--n", 2],
             "wrong_shapes.safetensors")
lacking = W("lacking.safetensors")
st.save(lacking, {k: v for k, v in tensors.items() if k != "conv_out.weight"}, meta)
expect_error("model lacking a tensor", [*SAMPLE[:2], lacking, *SAMPLE[3:], "--n", 2], "conv_out.weight")
text = W("text.safetensors")
with open(text, "w") as f:
    f.write("this is not a safetensors file\n" * 4)
expect_error("model not a safetensors file", [*SAMPLE[:2], text, *SAMPLE[3:], "--n", 2], "text.safetensors")
rgb = W("noise_rgb.safetensors")
st.save(rgb, {"noise": np.zeros((2, 3, 28, 28), np.float32)})
expect_error("noise with 3 channels for a 1-channel model", [*SAMPLE, "--noise", rgb], "noise_rgb.safetensors")
flat = W("noise_3d.safetensors")
st.save(flat, {"noise": np.zeros((2, 28, 28), np.float32)})
expect_error("noise of rank 3", [*SAMPLE, "--noise", flat], "noise_3d.safetensors")
r = d2c(EXE, *SAMPLE, "--noise", noise, "--quiet")
check("(the good noise file samples)", r.rc == 0, r.err.strip())

COND = ["condense", "--data", subset, "--out", W("pool.safetensors"), "--threads", THREADS, "--quiet"]
expect_error("condense --ipc and --ratio", [*COND, "--ipc", 1, "--ratio", 0.1], "--ipc")
expect_error("condense --method nosuch", [*COND, "--ipc", 1, "--method", "nosuch"], "--method")
expect_error("condense --resume without state", [*COND, "--method", "d2c", "--ipc", 1, "--iters", 2, "--resume"],
             "--resume")

# 2. integrity: one flipped byte in a d2c file
def flipped(src, dst, where):
    """dst = src with one byte changed: where = 'data' (the last tensor byte) or 'meta'."""
    blob = bytearray(open(src, "rb").read())
    if where == "data":
        blob[-3] ^= 0x10
    else:  # the digits of the "step" metadata value
        i = blob.index(b'"step":"') + len(b'"step":"')
        blob[i] = ord("7") if blob[i] != ord("7") else ord("8")
    open(dst, "wb").write(bytes(blob))
    return dst


for where in ("data", "meta"):
    bad_model = flipped(small, W(f"flipped_{where}.safetensors"), where)
    expect_error(f"sample from a model with a changed {where} byte", [*SAMPLE[:2], bad_model, *SAMPLE[3:], "--n", 2],
                 f"flipped_{where}.safetensors: checksum mismatch")
    before = open(bad_model, "rb").read()
    expect_error(f"train --resume from a checkpoint with a changed {where} byte",
                 ["train", "--data", subset, "--out", bad_model, "--steps", 4, "--channels", 8, "--resume", *TRAIN],
                 f"flipped_{where}.safetensors: checksum mismatch")
    check(f"train --resume from a changed checkpoint ({where}): the file stays as it was",
          open(bad_model, "rb").read() == before)
pool = W("cpool.safetensors")
d2c_ok("condense 2 iterations (a state file)", EXE, "condense", "--data", subset, "--out", pool, "--method", "d2c", "--ipc", 1,
       "--iters", 2,
       "--ckpt-every", 1, "--t-candidates", 4, "--topk", 1, "--real-batch", 8, "--syn-batch", 1, "--eval-nets", 0,
       "--channels", 8, "--threads", THREADS, "--quiet")
state = pool + ".state.safetensors"
check("(the condensation state carries a checksum)", st.load(state)[1].get("checksum", "").startswith("crc32:"))
check("(the pool carries a checksum)", st.load(pool)[1].get("checksum", "").startswith("crc32:"))
blob = bytearray(open(state, "rb").read())
blob[-5] ^= 0x01
open(state, "wb").write(bytes(blob))
expect_error("condense --resume from a state with a changed byte",
             ["condense", "--data", subset, "--out", pool, "--method", "d2c", "--ipc", 1, "--iters", 3, "--t-candidates", 4,
              "--topk", 1,
              "--real-batch", 8, "--syn-batch", 1, "--eval-nets", 0, "--channels", 8, "--threads", THREADS, "--quiet",
              "--resume"], "cpool.safetensors.state.safetensors: checksum mismatch")
check("condense --resume from a changed state: the state stays as it was", open(state, "rb").read() == bytes(blob))
blob = bytearray(open(pool, "rb").read())
blob[-5] ^= 0x01
open(W("cpool_flipped.safetensors"), "wb").write(bytes(blob))
expect_error("train on a pool with a changed byte",
             ["train", "--data", W("cpool_flipped.safetensors"), "--out", W("m_pool.safetensors"), "--steps", 1,
              "--channels", 8, *TRAIN], "cpool_flipped.safetensors: checksum mismatch")

# 3. a non-finite loss
good = subset
x = st.load(subset)[0]
rng = np.random.default_rng(0)
huge = (np.where(rng.random(x["images"].shape) < 0.5, -3e38, 3e38)).astype(np.float32)
bad = W("huge_pixels.safetensors")
st.save(bad, {"images": huge, "labels": x["labels"]}, {"num_classes": "10"})
check("(the huge pixels are finite)", bool(np.isfinite(huge).all()))
fresh = W("nan_fresh.safetensors")
r = expect_error("non-finite loss, fresh run", ["train", "--data", bad, "--out", fresh, "--steps", 10, "--channels", 8,
                                               *TRAIN], "at step 1;", status=1)
check("non-finite loss, fresh run: no model file", not os.path.exists(fresh))
check("no temporary files left", not glob.glob(W("*.tmp*")), str(glob.glob(W("*.tmp*"))))

model = W("nan_resume.safetensors")
d2c_ok("10 steps on good data", EXE, "train", "--data", good, "--out", model, "--steps", 10, "--ckpt-every", 5,
       "--channels", 8, *TRAIN)
with open(model, "rb") as f:
    before = f.read()
r = expect_error("non-finite loss after --resume", ["train", "--data", bad, "--out", model, "--steps", 20, "--ckpt-every",
                                                     5, "--channels", 8, "--resume", *TRAIN], "at step 11;", status=1)
check("non-finite loss after --resume: the error names the model", os.path.basename(model) in r.err)
with open(model, "rb") as f:
    check("non-finite loss after --resume: the checkpoint is unchanged", f.read() == before)
check("no temporary files left", not glob.glob(W("*.tmp*")), str(glob.glob(W("*.tmp*"))))

finish()
