"""Interoperability of d2c's I/O layer with the Python ecosystem (CTest: io_interop).

    io_interop.py PATH/TO/test_io

1. safetensors written by d2c are read by a small numpy reader of our own, by the official
   `safetensors` package (numpy and torch front ends) and keep their metadata;
2. safetensors written by that reader's twin writer, by `safetensors.numpy` and by
   `safetensors.torch` are read by d2c with equal values (test_io check-sample);
3. a .safetensors data source round-trips through d2c's loader;
4. Fashion-MNIST as loaded by d2c equals the IDX files decoded here (first images, all labels);
5. image folders written with PIL (RGB, RGBA, palette, grey, grey+alpha, 16-bit grey PNGs;
   RGB and grey JPEGs) load in d2c equal to PIL's decoding;
6. randomly damaged safetensors, gzip IDX, PNG and JPEG files (cut short, bytes changed; a
   fixed seed) make d2c exit 0 or 2 with one "d2c: error:" line, never crash or hang; a
   damaged d2c safetensors file (which carries a checksum) is refused unless it still reads
   back exactly as written;
7. the "checksum" metadata of d2c's files (src/io/st_checksum.h) recomputed here with
   Python's zlib.crc32 matches, a file checksummed here is read by d2c, and one whose
   checksum does not match is refused naming the file.
Parts whose Python packages are missing are reported as skipped. Ends "N passed, N failed".
"""
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

EXE = os.path.abspath(sys.argv[1])
TMP = tempfile.mkdtemp(prefix="d2c_io_interop.")
FMNIST = "/usr/share/datasets/fashion-mnist"
TRICKY = 'quote " backslash \\ newline \n unicode \u00e9'
counts = {"passed": 0, "failed": 0, "skipped": 0}


def check(name, ok, detail=""):
    counts["passed" if ok else "failed"] += 1
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)


def skip(name, why):
    counts["skipped"] += 1
    print(f"skip {name}: {why}", flush=True)


def run(*args):
    r = subprocess.run([EXE, *args], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout + r.stderr)
    return r


# ---- a small safetensors reader and writer of our own ----------------------------------
DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64, "U8": np.uint8}
NAMES = {np.dtype(v): k for k, v in DTYPES.items()}


def st_read(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, t in header.items():
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(blob[base + a:base + b], DTYPES[t["dtype"]]).reshape(t["shape"])
    return out, meta, n


def st_write(path, tensors, meta):
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name, a in tensors.items():
        b = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": NAMES[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def st_checksum(path):
    """(recorded, recomputed) "crc32:<hex>" of a file, by the definition in src/io/st_checksum.h."""
    import zlib
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    crc = 0
    for name in sorted(header, key=lambda k: k.encode()):
        t = header[name]
        desc = f"{t['dtype']} {','.join(str(d) for d in t['shape'])} {t['data_offsets'][0]} {t['data_offsets'][1]}"
        crc = zlib.crc32(name.encode() + b"\0" + desc.encode() + b"\0", crc)
    for key in sorted((k for k in meta if k != "checksum"), key=lambda k: k.encode()):
        crc = zlib.crc32(key.encode() + b"\0" + meta[key].encode() + b"\0", crc)
    crc = zlib.crc32(blob[8 + n:], crc)
    return meta.get("checksum"), f"crc32:{crc:08x}"


def with_checksum(path):
    """Rewrites a file written by st_write with the checksum computed here."""
    got, meta, _ = st_read(path)
    meta = dict(meta, checksum="crc32:00000000")
    st_write(path, {k: np.array(v) for k, v in got.items()}, meta)
    _, crc = st_checksum(path)
    st_write(path, {k: np.array(v) for k, v in got.items()}, dict(meta, checksum=crc))


def sample():
    """The tensors test_io's write-sample / check-sample use."""
    return {
        "a": (np.arange(24, dtype=np.float32) * np.float32(0.5) - np.float32(3)).reshape(2, 3, 4),
        "b": np.arange(5) / 3.0,
        "c": (np.arange(6, dtype=np.int32) - 3).reshape(3, 2),
        "d": np.array([-2**40, 0, 1, 2**40 + 7], np.int64),
        "e": (np.arange(7) * 37 % 256).astype(np.uint8),
        "s": np.array(2.5, np.float32),
        "z": np.zeros((0, 3), np.float32),
    }


def same_tensors(got, want):
    if sorted(got) != sorted(want):
        return f"names {sorted(got)} != {sorted(want)}"
    for k, w in want.items():
        g = np.asarray(got[k])
        if g.dtype != w.dtype or g.shape != w.shape or not np.array_equal(g, w):
            return f"tensor {k}: {g.dtype} {g.shape} {g.ravel()[:4]} != {w.dtype} {w.shape} {w.ravel()[:4]}"
    return ""


def part_safetensors():
    want = sample()
    path = os.path.join(TMP, "from_d2c.safetensors")
    check("d2c write-sample", run("write-sample", path).returncode == 0)
    got, meta, header_len = st_read(path)
    diff = same_tensors(got, want)
    check("own reader reads d2c's file", not diff, diff)
    plain = {k: v for k, v in meta.items() if k != "checksum"}
    check("metadata and 8-byte header padding", plain == {"who": "d2c", "tricky": TRICKY} and header_len % 8 == 0,
          f"{meta}, header {header_len} bytes")
    recorded, recomputed = st_checksum(path)
    check("d2c's checksum = zlib.crc32 here (src/io/st_checksum.h)", recorded == recomputed,
          f"recorded {recorded}, recomputed {recomputed}")

    # A file checksummed here is read by d2c; a wrong checksum is refused.
    path = os.path.join(TMP, "own_checksum.safetensors")
    st_write(path, want, {"who": "python", "tricky": TRICKY})
    with_checksum(path)
    check("d2c reads a file checksummed here", run("check-sample", path).returncode == 0)
    got, meta, _ = st_read(path)
    for what, changed in (("a metadata value", dict(meta, who="pythoN")),
                          ("the checksum itself", dict(meta, checksum="crc32:%08x" % (int(meta["checksum"][6:], 16) ^ 1)))):
        bad = os.path.join(TMP, "bad_checksum.safetensors")
        st_write(bad, {k: np.array(v) for k, v in got.items()}, changed)
        r = subprocess.run([EXE, "open", "st", bad], capture_output=True, text=True)
        check(f"d2c refuses a file whose {what} changed", r.returncode == 2 and "checksum mismatch" in r.stderr and
              bad in r.stderr, r.stderr.strip())
    values = {k: np.array(v) for k, v in got.items()}
    values["a"].flat[5] += 1
    bad = os.path.join(TMP, "bad_checksum.safetensors")
    st_write(bad, values, meta)
    r = subprocess.run([EXE, "open", "st", bad], capture_output=True, text=True)
    check("d2c refuses a file whose tensor value changed", r.returncode == 2 and "checksum mismatch" in r.stderr,
          r.stderr.strip())

    # Python writes, d2c reads.
    path = os.path.join(TMP, "own_writer.safetensors")
    st_write(path, want, {"who": "python", "tricky": TRICKY})
    check("d2c reads the own writer's file", run("check-sample", path).returncode == 0)

    try:
        import safetensors
        from safetensors import safe_open
        from safetensors.numpy import load_file, save_file
    except ImportError:
        skip("official safetensors package", "not installed (pip install safetensors)")
        return
    got = load_file(os.path.join(TMP, "from_d2c.safetensors"))
    diff = same_tensors(got, want)
    check(f"safetensors {safetensors.__version__} (numpy) reads d2c's file", not diff, diff)
    with safe_open(os.path.join(TMP, "from_d2c.safetensors"), framework="np") as f:
        m = f.metadata()
    check("safetensors reads d2c's metadata", {k: v for k, v in m.items() if k != "checksum"} ==
          {"who": "d2c", "tricky": TRICKY} and m.get("checksum", "").startswith("crc32:"), str(m))
    path = os.path.join(TMP, "official_numpy.safetensors")
    save_file(want, path, metadata={"who": "safetensors.numpy", "tricky": TRICKY})
    check("d2c reads safetensors.numpy's file", run("check-sample", path).returncode == 0)
    try:
        import torch
        from safetensors.torch import load_file as torch_load, save_file as torch_save
    except ImportError:
        skip("safetensors.torch", "torch not installed")
        return
    got = {k: v.numpy() for k, v in torch_load(os.path.join(TMP, "from_d2c.safetensors")).items()}
    diff = same_tensors(got, want)
    check(f"safetensors.torch (torch {torch.__version__}) reads d2c's file", not diff, diff)
    path = os.path.join(TMP, "official_torch.safetensors")
    torch_save({k: torch.from_numpy(np.array(v)) for k, v in want.items()}, path,
               metadata={"who": "safetensors.torch", "tricky": TRICKY})
    check("d2c reads safetensors.torch's file", run("check-sample", path).returncode == 0)


def part_pool_source():
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (7, 3, 5, 4)).astype(np.float32)
    labels = np.array([0, 3, 3, 1, 0, 2, 3], np.int64)
    path = os.path.join(TMP, "pool.safetensors")
    names = [f"class {k}" for k in range(12)]
    st_write(path, {"images": images, "labels": labels},
             {"num_classes": "12", "class_names": json.dumps(names), "method": "test"})
    r = run("load", path)
    info = json.loads(r.stdout) if r.returncode == 0 else {}
    check("pool .safetensors loads as a data set",
          info.get("n") == 7 and info.get("num_classes") == 12 and info.get("counts", [])[:4] == [2, 1, 1, 3],
          r.stdout.strip())
    out = os.path.join(TMP, "pool_dump.safetensors")
    ok = run("dump", path, out).returncode == 0
    got, meta, _ = st_read(out) if ok else ({}, {}, 0)
    check("pool round trip through d2c is exact", ok and np.array_equal(got["images"], images)
          and np.array_equal(got["labels"], labels) and meta.get("num_classes") == "12")


def idx(path):
    data = gzip.open(path).read()
    n = struct.unpack(">I", data[4:8])[0]
    return np.frombuffer(data[16:], np.uint8).reshape(n, 28, 28) if data[3] == 3 else np.frombuffer(data[8:], np.uint8)


def part_fashion_mnist():
    if not os.path.isdir(FMNIST):
        skip("Fashion-MNIST", f"{FMNIST} not installed")
        return
    for split, stem in (("train", "train"), ("test", "t10k")):
        out = os.path.join(TMP, f"fmnist_{split}.safetensors")
        ok = run("dump", f"fashion-mnist:{split}", out, "2000").returncode == 0
        got, meta, _ = st_read(out) if ok else ({}, {}, 0)
        x = idx(f"{FMNIST}/{stem}-images-idx3-ubyte.gz")[:2000].astype(np.float32) / np.float32(127.5) - np.float32(1)
        y = idx(f"{FMNIST}/{stem}-labels-idx1-ubyte.gz").astype(np.int64)
        check(f"fashion-mnist:{split} equals the IDX files (first 2000 images, all {len(y)} labels)",
              ok and np.array_equal(got["images"], x[:, None]) and np.array_equal(got["labels"], y)
              and meta.get("num_classes") == "10", f"first label {y[0]}")


def part_folders():
    try:
        from PIL import Image
    except ImportError:
        skip("image folders", "PIL not installed (Debian: python3-pil)")
        return
    rng = np.random.default_rng(1)
    H, W = 12, 10

    def smooth(c):  # smooth content, so JPEG is not the point of the comparison
        yy, xx = np.mgrid[0:H, 0:W]
        base = (yy * 9 + xx * 7 + rng.integers(0, 60))[..., None] + np.arange(c) * 40
        return np.clip(base, 0, 255).astype(np.uint8).squeeze()

    def alpha_mask():
        return np.where(rng.random((H, W)) < 0.3, 0, 255).astype(np.uint8)

    # name -> (writer producing the file, expected pixels (H, W[, 3]) or None to use PIL's decoding)
    rgb = {
        "rgb.png": lambda p: Image.fromarray(smooth(3), "RGB").save(p),
        "rgba.png": lambda p: Image.fromarray(np.dstack([smooth(3), alpha_mask()]), "RGBA").save(p),
        "palette.png": lambda p: Image.fromarray(smooth(3), "RGB").quantize(16).save(p),
        "rgb.jpg": lambda p: Image.fromarray(smooth(3), "RGB").save(p, quality=90),
        "rgb444.jpeg": lambda p: Image.fromarray(smooth(3), "RGB").save(p, quality=75, subsampling=0),
    }
    grey = {
        "grey.png": lambda p: Image.fromarray(smooth(1), "L").save(p),
        "grey_alpha.png": lambda p: Image.fromarray(np.dstack([smooth(1), alpha_mask()]), "LA").save(p),
        "grey16.png": lambda p: Image.fromarray((smooth(1).astype(np.uint16) * 257 + 100), "I;16").save(p),
        "bilevel.png": lambda p: Image.fromarray(smooth(1) > 100).save(p),
        "grey.jpg": lambda p: Image.fromarray(smooth(1), "L").save(p, quality=90),
    }

    def expected(path):
        im = Image.open(path)
        if im.mode in ("I;16", "I"):  # PIL opens 16-bit grey PNGs as "I"
            v = np.asarray(im).astype(np.float64)
            return np.round(v * 255 / 65535).astype(np.uint8)[None]
        if im.mode in ("RGBA", "LA"):
            a = np.asarray(im)
            colour, alpha = a[..., :-1], a[..., -1:]
            out = np.where(alpha == 0, 0, colour)
            return out.transpose(2, 0, 1)
        if im.mode == "P":
            im = im.convert("RGB")
        if im.mode == "1":
            im = im.convert("L")
        a = np.asarray(im)
        return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)

    for set_name, writers, channels in (("rgb", rgb, 3), ("grey", grey, 1)):
        root = os.path.join(TMP, set_name)
        want_images, want_labels = [], []
        for k, cls in enumerate(["cat", "dog"]):  # sorted order = label order
            os.makedirs(os.path.join(root, cls))
            for name in sorted(f"{i}_{n}" for i in range(2) for n in writers):
                path = os.path.join(root, cls, name)
                writers[name.split("_", 1)[1]](path)
                want_images.append(expected(path))
                want_labels.append(k)
        out = os.path.join(TMP, f"{set_name}.safetensors")
        ok = run("dump", f"folder:{root}", out).returncode == 0
        got, _, _ = st_read(out) if ok else ({}, {}, 0)
        x = np.stack(want_images).astype(np.float32) / np.float32(127.5) - np.float32(1)
        ok = ok and got["images"].shape == (len(want_labels), channels, H, W)
        err = np.abs(got["images"] - x).max() * 127.5 if ok else float("inf")
        worst = ""
        if ok and err > 0:
            per_file = np.abs(got["images"] - x).reshape(len(x), -1).max(1) * 127.5
            worst = f", worst file #{int(per_file.argmax())} of {sorted(writers)}"
        check(f"folder of {', '.join(sorted(writers))} equals PIL's decoding", ok and err <= 1.0
              and np.array_equal(got["labels"], want_labels), f"max |diff| {err:.1f} grey levels{worst}")


def part_damaged_files(per_kind=100):
    seeds = {"st": os.path.join(TMP, "damage_seed.safetensors")}
    run("write-sample", seeds["st"])
    labels = struct.pack(">II", 0x801, 300) + bytes(i % 10 for i in range(300))
    seeds["idx1"] = os.path.join(TMP, "damage_seed-labels-idx1-ubyte.gz")
    with gzip.open(seeds["idx1"], "wb") as f:
        f.write(labels)
    try:
        from PIL import Image
        pixels = (np.arange(32 * 32 * 3) * 7 % 251).astype(np.uint8).reshape(32, 32, 3)
        for ext in ("png", "jpg"):
            seeds["image." + ext] = os.path.join(TMP, "damage_seed." + ext)
            Image.fromarray(pixels).save(seeds["image." + ext])
    except ImportError:
        skip("damaged images", "PIL not installed")
    rng = np.random.default_rng(2)
    for kind, path in seeds.items():
        blob = open(path, "rb").read()
        codes, bad = {}, []
        for i in range(per_kind):
            b = bytearray(blob)
            if i % 3 == 0:
                b = b[:int(rng.integers(0, len(b)))]
            else:  # the first bytes hold the headers: damage there half the time
                for _ in range(int(rng.integers(1, 5))):
                    b[int(rng.integers(0, min(len(b), 64) if i % 3 == 1 else len(b)))] = int(rng.integers(0, 256))
            damaged = os.path.join(TMP, "damaged")
            open(damaged, "wb").write(bytes(b))
            try:
                r = subprocess.run([EXE, "open", kind.split(".")[0], damaged], capture_output=True, timeout=20)
                code, err = r.returncode, r.stderr.decode("utf-8", "replace")
            except subprocess.TimeoutExpired:
                code, err = "timeout", ""
            codes[code] = codes.get(code, 0) + 1
            if code not in (0, 2) or (code == 2 and err.count("d2c: error:") != 1):
                bad.append(f"#{i}: exit {code} {err.strip()[-200:]}")
            elif kind == "st" and code == 0 and run("check-sample", damaged).returncode != 0:
                bad.append(f"#{i}: a changed d2c file was accepted with other content (the checksum missed it)")
        check(f"{per_kind} damaged {kind} files", not bad, f"exit codes {codes}" + ("; " + bad[0] if bad else ""))


def main():
    try:
        part_safetensors()
        part_pool_source()
        part_fashion_mnist()
        part_folders()
        part_damaged_files()
    finally:
        if counts["failed"] == 0:
            shutil.rmtree(TMP, ignore_errors=True)
        else:
            print(f"files kept in {TMP}")
    line = f"{counts['passed']} passed, {counts['failed']} failed"
    print(line + (f", {counts['skipped']} skipped" if counts["skipped"] else ""))
    if counts["passed"] + counts["failed"] == 0:  # nothing was checked: a skip or a failure, never a pass
        print("skip: every part was skipped" if counts["skipped"] else "FAIL no check ran")
        sys.exit(77 if counts["skipped"] else 1)
    sys.exit(1 if counts["failed"] else 0)


if __name__ == "__main__":
    main()
