"""The label and class rule (io/dataset.h, docs/DESIGN.md "Errors") end to end, and the
defects of issue 9 it closes (CTest: cli_labels).

    test_cli_labels.py PATH/TO/d2c WORK_DIR

Rule: labels lie in [0, K) with K the source's class count (mnist: 10), else a file's
num_classes metadata, else max label + 1; K is at most 1000; train and condense refuse
data in which a class of [0, K) has no images. Each check below failed on d2c before the
rule (the old behaviour in brackets):
- a 4-image pool labelled 0, 1, 2, 90000 is refused by train [trained a 90,001-class model];
- `sample --labels all` on a model file claiming 90,000 classes exits 2 [overflowed the
  stack buffer int list[4096]: segfault, exit -11];
- a pool labelled 0, 1, 2, 99 is refused by train and condense, naming the empty classes
  3-98 [trained a 100-class model without a word];
- an IDX label 200 is refused: as mnist: (10 classes) by the loader, as idx: (K = 201) by
  train, naming the empty classes [trained a 201-class model];
- a num_classes metadata of 12 on labels 0..9 is refused (classes 10, 11 empty) [accepted];
- `sample --labels` with 5000 entries works [refused: the list was capped at 4096].
Each refusal is exit 2 with one "d2c: error:" line, and no model or pool file is written.
"""
import os
import struct

from test_cli_common import check, d2c, d2c_ok, finish, fmnist_subset, np, setup, st, THREADS

EXE, WORK = setup("labels")


def W(name):
    return os.path.join(WORK, name)


def expect_error(name, args, needles, status=2, no_file=None):
    """d2c ARGS exits `status` with one 'd2c: error:' line (the last) holding every needle."""
    r = d2c(EXE, *args)
    errors = [line for line in r.err.splitlines() if line.startswith("d2c: error:")]
    last = r.err.rstrip("\n").split("\n")[-1] if r.err.strip() else ""
    ok = r.rc == status and len(errors) == 1 and last == errors[0] and all(n in errors[0] for n in needles)
    if not check(f"{name}: exit {status}, one error line naming {needles}", ok,
                 errors[0] if errors else f"exit {r.rc}, no error line"):
        print(r.show())
    if no_file:
        check(f"{name}: no {os.path.basename(no_file)} written", not os.path.exists(no_file))
    return r


def pool(path, labels, meta=None, hw=8):
    """A pool of len(labels) random images labelled `labels`."""
    rng = np.random.default_rng(len(labels))
    x = rng.uniform(-1, 1, (len(labels), 1, hw, hw)).astype(np.float32)
    st.save(path, {"images": x, "labels": np.asarray(labels, np.int64)}, meta)
    return path


def idx_files(prefix, labels, hw=8):
    """Raw IDX files PREFIX-images-idx3-ubyte and PREFIX-labels-idx1-ubyte."""
    n = len(labels)
    with open(prefix + "-images-idx3-ubyte", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, hw, hw) + bytes((i * 7) % 256 for i in range(n * hw * hw)))
    with open(prefix + "-labels-idx1-ubyte", "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + bytes(labels))


TRAIN = ["--steps", 1, "--batch", 4, "--channels", 8, "--threads", THREADS, "--quiet"]

# 1. a class count no data supports: the 90,000-class pool of issue 9
p90k = pool(W("pool_90000.safetensors"), [0, 1, 2, 90000])
m90k = W("m90k.safetensors")
expect_error("train on labels 0,1,2,90000", ["train", "--data", p90k, "--out", m90k, *TRAIN],
             ["pool_90000.safetensors", "label 90000", "90001 classes", "at most 1000"], no_file=m90k)

# 2. sample --labels all on a model claiming 90,000 classes (crafted: the old d2c trained
# one from the pool above) is an error, not a stack overflow
good = fmnist_subset(W("subset44.safetensors"), 44)  # the first 44 images hold all 10 classes
small = W("small.safetensors")
d2c_ok("a small model (1 step, C=8)", EXE, "train", "--data", good, "--out", small, *TRAIN)
tensors, meta = st.load(small)
big = dict(tensors)
big["class_embed.weight"] = np.zeros((90001, tensors["class_embed.weight"].shape[1]), np.float32)
big_meta = {**meta, "config": meta["config"].replace('"num_classes":10', '"num_classes":90000')}
big_meta.pop("checksum", None)  # an edited file: no checksum to verify
check("(the crafted model says 90000 classes)", '"num_classes":90000' in big_meta["config"])
st.save(W("m90000.safetensors"), big, big_meta)
samples = W("s90000.safetensors")
r = expect_error("sample --labels all from a 90000-class model",
                 ["sample", "--model", W("m90000.safetensors"), "--out", samples, "--n", 2, "--labels", "all",
                  "--steps", 1, "--threads", THREADS, "--quiet"],
                 ["m90000.safetensors", "num_classes must be 1..1000"], no_file=samples)
check("sample --labels all from a 90000-class model: no crash", r.rc >= 0, f"exit {r.rc}")

# 3. labels 0, 1, 2, 99: K = 100 by the rule, 96 classes without images
p99 = pool(W("pool_0_1_2_99.safetensors"), [0, 1, 2, 99])
m99 = W("m99.safetensors")
expect_error("train on labels 0,1,2,99", ["train", "--data", p99, "--out", m99, *TRAIN],
             ["pool_0_1_2_99.safetensors", "96 of its 100 classes have no images", "classes 3-98"], no_file=m99)
c99 = W("c99.safetensors")
expect_error("condense on labels 0,1,2,99",
             ["condense", "--data", p99, "--out", c99, "--ipc", 1, "--method", "random", "--threads", THREADS, "--quiet"],
             ["pool_0_1_2_99.safetensors", "classes 3-98"], no_file=c99)

# 4. an IDX label 200
os.makedirs(W("mnist200"), exist_ok=True)
labels200 = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 200, 0]
idx_files(W("mnist200/train"), labels200)
m200 = W("m200.safetensors")
expect_error("train on mnist: with label 200", ["train", "--data", "mnist:" + W("mnist200"), "--out", m200, *TRAIN],
             ["train-labels-idx1-ubyte", "label 200", "outside the 10 classes"], no_file=m200)
expect_error("train on idx: with label 200", ["train", "--data", "idx:" + W("mnist200/train"), "--out", m200, *TRAIN],
             ["idx:", "190 of its 201 classes have no images", "classes 10-199"], no_file=m200)

# 5. num_classes metadata above the labels: classes 10 and 11 have no images
labels10 = list(range(10)) * 2
p12 = pool(W("pool_meta12.safetensors"), labels10, {"num_classes": "12"})
expect_error("train on num_classes 12 with labels 0..9", ["train", "--data", p12, "--out", W("m12.safetensors"), *TRAIN],
             ["pool_meta12.safetensors", "2 of its 12 classes", "classes 10-11"])
expect_error("train on num_classes 5000", ["train", "--data", pool(W("pool_meta5000.safetensors"), labels10,
                                                                    {"num_classes": "5000"}),
                                           "--out", W("m5000.safetensors"), *TRAIN],
             ["pool_meta5000.safetensors", "not a class count 1..1000"])
p10 = pool(W("pool_meta10.safetensors"), labels10, {"num_classes": "10"})
d2c_ok("train on num_classes 10 with labels 0..9 (the rule's good case)", EXE, "train", "--data", p10, "--out",
       W("m10.safetensors"), *TRAIN)

# 6. --labels lists longer than the old 4096-entry buffer are sized from their entries
many = ",".join(str(i % 10) for i in range(5000))
r = d2c_ok("sample --labels with 5000 entries", EXE, "sample", "--model", small, "--out", W("s5000.safetensors"), "--n", 3,
           "--labels", many, "--steps", 1, "--threads", THREADS, "--quiet")
if r.rc == 0:
    check("sample --labels with 5000 entries: labels cycle the list",
          st.load(W("s5000.safetensors"))[0]["labels"].tolist() == [0, 1, 2])
expect_error("sample --labels with a label above the classes",
             ["sample", "--model", small, "--out", W("s11.safetensors"), "--n", 2, "--labels", "0,11", "--steps", 1,
              "--threads", THREADS, "--quiet"], ["--labels", "label 11", "0..9"])

check("no temporary files left", not [f for f in os.listdir(WORK) if ".tmp." in f])
finish()
