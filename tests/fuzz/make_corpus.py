"""Writes the seed corpora of the fuzz targets: tests/fuzz/corpus/<target>/, small valid and
near-valid inputs (docs/HARDENING.md). Deterministic; run it again after changing it and
commit what it writes:

    /usr/bin/python3 tests/fuzz/make_corpus.py build/d2c [tests/fuzz/corpus]

d2c (any build) writes the files only d2c makes: a tiny model (C=2, one level, 8x8
images, 2 classes, with its training state, about 20 KB), a tiny pool and its state file.
Needs numpy and PIL (python3-numpy, python3-pil).
"""
import gzip
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import numpy as np  # noqa: E402
import st_numpy as st  # noqa: E402
from PIL import Image  # noqa: E402

EXE = os.path.abspath(sys.argv[1])
OUT = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "corpus"))
rng = np.random.default_rng(2024)
written = {}


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
    written[target] = written.get(target, 0) + 1


def st_bytes(tensors, metadata=None):
    with tempfile.NamedTemporaryFile(suffix=".safetensors", delete=False) as f:
        path = f.name
    st.save(path, tensors, metadata)
    data = open(path, "rb").read()
    os.remove(path)
    return data


def st_raw(header, body=b""):
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text + body


for target in os.listdir(OUT) if os.path.isdir(OUT) else []:
    shutil.rmtree(os.path.join(OUT, target))

# ---------------------------------------------------------------- files d2c writes
work = tempfile.mkdtemp(prefix="d2c_corpus.")
tiny = os.path.join(work, "tiny.safetensors")
images8 = np.clip(rng.normal(0, 0.5, (8, 1, 8, 8)), -1, 1).astype(np.float32)
st.save(tiny, {"images": images8, "labels": np.array([0, 1] * 4, np.int64)}, {"num_classes": "2"})
env = {**os.environ, "OMP_NUM_THREADS": "1"}
model = os.path.join(work, "model.safetensors")
subprocess.run([EXE, "train", "--data", tiny, "--out", model, "--steps", "1", "--batch", "2", "--channels", "2",
                "--channel-mult", "1", "--attn-levels", "0", "--groups", "1", "--threads", "1", "--quiet"],
               check=True, env=env)
pool = os.path.join(work, "pool.safetensors")
subprocess.run([EXE, "condense", "--data", tiny, "--out", pool, "--method", "d2c", "--ipc", "1", "--iters", "1",
                "--channels", "8", "--real-batch", "2", "--syn-batch", "1", "--t-candidates", "1", "--topk", "1",
                "--inner", "1", "--eval-nets", "0", "--threads", "1", "--quiet"], check=True, env=env)
MODEL = open(model, "rb").read()
POOL = open(pool, "rb").read()
pool_t, pool_m = st.load(pool)
model_t, model_m = st.load(model)
shutil.rmtree(work)

# ---------------------------------------------------------------- idx
imgs = bytes(rng.integers(0, 256, 2 * 4 * 4, dtype=np.uint8))
idx3 = struct.pack(">IIII", 0x803, 2, 4, 4) + imgs
idx1 = struct.pack(">II", 0x801, 5) + bytes([0, 1, 2, 9, 1])
idx2 = struct.pack(">III", 0x802, 2, 3) + bytes(range(6))
put("idx", "images-idx3", idx3)
put("idx", "labels-idx1", idx1)
put("idx", "matrix-idx2", idx2)
put("idx", "images-idx3.gz", gzip.compress(idx3, mtime=0))
put("idx", "labels-idx1.gz", gzip.compress(idx1, mtime=0))
put("idx", "truncated-idx3", idx3[:-7])
put("idx", "truncated-idx3.gz", gzip.compress(idx3, mtime=0)[:-9])
put("idx", "huge-count-idx3", struct.pack(">IIII", 0x803, 0x7FFFFFFF, 28, 28) + imgs)
put("idx", "float-type-idx1", struct.pack(">II", 0x00000D01, 2) + b"\0" * 8)
put("idx", "trailing-idx1", idx1 + b"\x07")
put("idx", "empty-idx1", struct.pack(">II", 0x801, 0))

# ---------------------------------------------------------------- safetensors
put("safetensors", "f32-meta.safetensors", st_bytes({"x": np.arange(6, dtype=np.float32).reshape(2, 3)},
                                                    {"who": "seed", "n": "6"}))
put("safetensors", "all-dtypes.safetensors", st_bytes({
    "a": np.arange(3, dtype=np.float64), "b": np.arange(4, dtype=np.int64), "c": np.arange(2, dtype=np.int32),
    "d": np.arange(5, dtype=np.uint8), "e": np.ones((1, 1, 2, 2), np.float32)}))
put("safetensors", "scalar-and-empty.safetensors", st_raw(
    {"s": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]},
     "z": {"dtype": "I64", "shape": [0, 3], "data_offsets": [4, 4]}}, b"\0\0\x80\x3f"))
put("safetensors", "pool-d2c.safetensors", POOL)
put("safetensors", "overlap.safetensors", st_raw(
    {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
     "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12))
put("safetensors", "gap.safetensors", st_raw({"a": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]}}, b"\0" * 3))
put("safetensors", "shape-overflow.safetensors", st_raw(
    {"a": {"dtype": "F32", "shape": [4294967296, 4294967296, 4], "data_offsets": [0, 0]}}))
put("safetensors", "header-too-long.safetensors", struct.pack("<Q", 200000000) + b"{}")
put("safetensors", "meta-not-string.safetensors", st_raw({"__metadata__": {"k": 1}}))
dup = b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}'
put("safetensors", "duplicate-name.safetensors", struct.pack("<Q", len(dup)) + dup + b"\0\0")

# ---------------------------------------------------------------- png / jpeg


def png(img, **kw):
    b = io.BytesIO()
    img.save(b, "PNG", **kw)
    return b.getvalue()


def jpeg(img, **kw):
    b = io.BytesIO()
    img.save(b, "JPEG", **kw)
    return b.getvalue()


grey = Image.fromarray(rng.integers(0, 256, (6, 5), dtype=np.uint8), "L")
rgb = Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8), "RGB")
put("png", "grey.png", png(grey))
put("png", "rgb.png", png(rgb))
put("png", "rgba.png", png(rgb.convert("RGBA")))
put("png", "grey-alpha.png", png(grey.convert("LA")))
put("png", "palette.png", png(rgb.convert("P")))
put("png", "bilevel.png", png(grey.convert("1")))
put("png", "grey16.png", png(Image.fromarray((np.arange(20).reshape(4, 5) * 3000).astype(np.uint16), "I;16")))
put("png", "optimized.png", png(rgb, optimize=True))
put("png", "truncated.png", png(rgb)[:-20])
raw = bytearray(png(grey))
raw[40] ^= 0xFF
put("png", "bad-crc.png", bytes(raw))
put("jpeg", "grey.jpg", jpeg(grey.resize((8, 8)), quality=90))
put("jpeg", "rgb.jpg", jpeg(rgb.resize((8, 8)), quality=75))
put("jpeg", "progressive.jpg", jpeg(rgb.resize((8, 8)), progressive=True))
put("jpeg", "subsampled.jpg", jpeg(rgb.resize((16, 8)), subsampling=2))
put("jpeg", "cmyk.jpg", jpeg(rgb.resize((8, 8)).convert("CMYK")))
put("jpeg", "truncated.jpg", jpeg(rgb.resize((8, 8)))[:-40])
put("jpeg", "restart.jpg", jpeg(grey.resize((16, 16)), quality=50, optimize=True))

# ---------------------------------------------------------------- folder records
PNG_G = png(Image.fromarray(rng.integers(0, 256, (4, 4), dtype=np.uint8), "L"))
PNG_C = png(Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), "RGB"))
JPG_G = jpeg(Image.fromarray(rng.integers(0, 256, (4, 4), dtype=np.uint8), "L"))


def rec(op, where, data=b""):
    return bytes([op, where]) + struct.pack("<H", len(data)) + data


put("folder", "two-classes", b"\0" + rec(0, 0, PNG_G) + rec(0, 0, PNG_G) + rec(0, 1, PNG_G) + rec(1, 1, JPG_G))
put("folder", "splits", b"\x01" + rec(0, 0, PNG_G) + rec(0, 1, PNG_G) + rec(0, 128, PNG_G) + rec(0, 129, PNG_G))
put("folder", "splits-test", b"\x03" + rec(0, 0, PNG_G) + rec(0, 128, PNG_G) + rec(0, 129, PNG_G))
put("folder", "colour", b"\0" + rec(0, 0, PNG_C) + rec(0, 1, PNG_C) + rec(0, 2, PNG_C))
put("folder", "mixed-channels", b"\0" + rec(0, 0, PNG_G) + rec(0, 1, PNG_C))
put("folder", "empty-class", b"\0" + rec(0, 0, PNG_G) + rec(3, 1))
put("folder", "loops", b"\0" + rec(0, 0, PNG_G) + rec(4, 0) + rec(5, 1) + rec(0, 1, PNG_G))
put("folder", "links", b"\0" + rec(0, 0, PNG_G) + rec(6, 1, b"../c0/0.png") + rec(6, 1, b"/nonexistent.png"))
put("folder", "junk-and-subfolder", b"\0" + rec(0, 0, PNG_G) + rec(2, 0, b"notes") + rec(7, 1, PNG_G) +
    rec(0, 1, PNG_G))
put("folder", "truncated-jpeg", b"\0" + rec(1, 0, JPG_G) + rec(1, 1, JPG_G[:len(JPG_G) // 2]))

# ---------------------------------------------------------------- pool
x4 = np.clip(rng.normal(0, 0.5, (4, 1, 4, 4)), -1, 1).astype(np.float32)
put("pool", "d2c-pool.safetensors", POOL)
put("pool", "d2c-pool-no-checksum.safetensors", st_bytes(pool_t, {k: v for k, v in pool_m.items() if k != "checksum"}))
put("pool", "samples.safetensors", st_bytes({"images": x4, "labels": np.array([0, 0, 1, 1], np.int64)},
                                            {"num_classes": "2", "class_names": '["a", "b"]'}))
put("pool", "with-cond.safetensors", st_bytes({"images": x4, "labels": np.array([0, 0, 1, 1], np.int64),
                                               "cond": np.ones((4, 8), np.float32)}, {"num_classes": "2"}))
put("pool", "labels-i32.safetensors", st_bytes({"images": x4, "labels": np.array([0, 1, 0, 1], np.int32)}))
put("pool", "label-out-of-range.safetensors", st_bytes({"images": x4, "labels": np.array([0, 1, 2, 99], np.int64)}))
put("pool", "empty-class.safetensors", st_bytes({"images": x4, "labels": np.array([0, 0, 2, 2], np.int64)},
                                                {"num_classes": "3"}))
put("pool", "nan-pixel.safetensors", st_bytes({"images": np.where(x4 > 0.4, np.nan, x4).astype(np.float32),
                                               "labels": np.array([0, 0, 1, 1], np.int64)}))
put("pool", "f64-images.safetensors", st_bytes({"images": x4.astype(np.float64), "labels": np.array([0, 0, 1, 1])}))

# ---------------------------------------------------------------- checkpoint
put("checkpoint", "tiny-model.safetensors", MODEL)
# without the checksum (files other tools write): mutations reach the structural checks
put("checkpoint", "tiny-model-no-checksum.safetensors",
    st_bytes(model_t, {k: v for k, v in model_m.items() if k != "checksum"}))
put("checkpoint", "weights-only.safetensors", st_bytes({k: v for k, v in model_t.items() if not k.startswith("train.")},
                                                       model_m))
put("checkpoint", "no-config.safetensors", st_bytes({k: v for k, v in model_t.items() if not k.startswith("train.")}))
cfg = json.loads(model_m["config"])
put("checkpoint", "config-mismatch.safetensors", st_bytes(model_t, {**model_m, "config": json.dumps({**cfg,
                                                                                                   "base_channels": 4})}))

# ---------------------------------------------------------------- config (byte 0: parser, 1-2: size)
def conf(parser, h, w, text):
    return bytes([parser, h - 1, w - 1]) + text.encode()


put("config", "model-tiny", conf(0, 8, 8, model_m["config"]))
put("config", "model-default", conf(0, 28, 28, json.dumps({
    "in_channels": 1, "base_channels": 32, "channel_mult": [1, 2, 2], "attn_levels": [2], "num_classes": 10,
    "groups": 8, "schedule": "linear", "image_size": [28, 28]})))
put("config", "model-cifar", conf(0, 32, 32, json.dumps({
    "in_channels": 3, "base_channels": 64, "channel_mult": [1, 2, 2, 2], "attn_levels": [1], "num_classes": 10,
    "groups": 32})))
put("config", "model-bad-groups", conf(0, 8, 8, json.dumps({**cfg, "groups": 3})))
put("config", "model-truncated", conf(0, 8, 8, model_m["config"][:40]))
for name in ("evaluator-fashion-mnist", "evaluator-cifar10"):
    path = os.path.join(HERE, "..", "..", "models", name + ".safetensors")
    if os.path.exists(path):
        arch = st.load(path)[1].get("arch")
        if arch:
            h = 32 if "cifar" in name else 28
            put("config", name + "-arch", conf(1, h, h, arch))
put("config", "eval-arch-garbage", conf(1, 28, 28, '{"kind": "pool", "widths": [8, -1]}'))

# ---------------------------------------------------------------- options (NUL-separated)
def argv(*a):
    return b"\0".join(x.encode() for x in a)


put("options", "all-kinds", argv("--steps", "10", "--lr=0.01", "--name", "x", "--quiet", "--labels", "1,2,3"))
put("options", "equals-forms", argv("--steps=1000000000", "--any=-1e308", "--big=-2147483648", "--name=a=b"))
put("options", "bad-values", argv("--steps", "0", "--lr", "nan", "--any", "inf", "--steps", "1e3"))
put("options", "unknown-and-stray", argv("--nope", "1", "stray", "-x", "--", "--name"))
put("options", "flag-with-value", argv("--quiet=1", "--name", ""))
put("options", "long-name", argv("--" + "n" * 80, "--labels", "1,,2", "--labels", "-3,4x"))
put("options", "help", argv("--name", "x", "--help"))

print(", ".join(f"{t}: {n}" for t, n in sorted(written.items())), f"-> {OUT}")
sizes = [os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs]
print(f"{len(sizes)} files, {sum(sizes)} bytes, largest {max(sizes)}")
