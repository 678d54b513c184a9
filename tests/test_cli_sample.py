"""`d2c sample` against the PyTorch twin (CTest: cli_sample, needs the fixture cli_model).

    test_cli_sample.py PATH/TO/d2c WORK_DIR

Uses WORK_DIR/train/model.safetensors, written by test_cli_train.py (150 steps, C=16).
1. d2c -> PyTorch: the model's spec-named tensors load into tests/torch_twin.py's UNet with
   load_state_dict(strict=True), built from the "config" metadata;
2. d2c's DDIM samples (50 steps, from a noise file with labels) equal the twin's
   ddim_sample on the same weights and noise, max abs error < 1e-3, at guidance 1 and 2;
   DDPM with one step (no noise is drawn: x0_hat at t=0, clamped) equals the twin's
   ddpm_sample too;
3. PyTorch -> d2c: state_dicts of randomly initialised (and perturbed) twin UNets, saved with
   tests/st_numpy.py (spec keys only), load into `d2c sample` and give the twin's DDIM
   samples: one with "config" metadata and a non-default config (2 levels, attention at
   level 1, 4 groups, 3 classes), one with no metadata at all (d2c infers the channels and
   classes; the rest is the spec's default); also the trained weights re-saved by PyTorch;
4. DDPM sampling (--n, 20 steps) is deterministic for a seed (bit-identical reruns), another
   seed gives other images, and the samples are finite, in [-1, 1], labels cycling classes;
5. --grid writes a PNG with one row per class present (10 columns, 2-pixel padding) whose
   cells are the samples of that class, short rows filled white.
"""
import json
import os
import zlib

from test_cli_common import check, d2c, d2c_ok, finish, np, setup, skip, st, THREADS

try:
    import torch
    import torch_twin as tw
except ImportError as e:
    print(f"skip: torch is not available ({e})")
    print("0 passed, 0 failed, 1 skipped")
    raise SystemExit(77)

EXE, WORK = setup("sample")
MODEL = os.path.join(os.path.dirname(WORK), "train", "model.safetensors")
torch.set_num_threads(2)
AB = tw.linear_alpha_bar()
TOL = 1e-3
if not os.path.exists(MODEL):
    check("trained model present (fixture cli_model)", False, MODEL)
    finish()


def twin_from_file(path):
    """The twin UNet holding a model file's spec-named tensors (strict load), and its config."""
    tensors, meta = st.load(path)
    c = json.loads(meta["config"])
    cfg = tw.UNetConfig(in_channels=c["in_channels"], base_channels=c["base_channels"],
                        channel_mult=tuple(c["channel_mult"]), attn_levels=tuple(c["attn_levels"]),
                        num_classes=c["num_classes"], groups=c["groups"])
    model = tw.UNet(cfg)
    sd = {k: torch.from_numpy(v) for k, v in tensors.items() if not k.startswith("train.")}
    model.load_state_dict(sd, strict=True)
    return model.eval(), c


def write_noise(path, n, c, h, w, labels, seed):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((n, c, h, w), generator=g, dtype=torch.float32)
    st.save(path, {"noise": noise.numpy(), "labels": np.asarray(labels, dtype=np.int64)})
    return noise, torch.tensor(labels, dtype=torch.long)


def d2c_samples(name, model_path, noise_path, steps, guidance, sampler="ddim"):
    out = os.path.join(WORK, f"{name}.safetensors")
    r = d2c_ok(name, EXE, "sample", "--model", model_path, "--noise", noise_path, "--out", out, "--steps", steps,
               "--guidance", guidance, "--sampler", sampler, "--threads", THREADS, "--quiet")
    if r.rc != 0:
        return None
    return st.load(out)[0]["images"]


def compare(name, got, want, tol=TOL):
    if got is None:
        return check(name, False, "no samples")
    want = want.numpy()
    err = float(np.abs(got.astype(np.float64) - want).max())
    interior = float(np.mean(np.abs(want) < 1.0))
    return check(name, got.shape == want.shape and err < tol,
                 f"max abs error {err:.2e} (tolerance {tol:g}); {100 * interior:.0f}% of values unclamped")


# 1. d2c -> PyTorch: strict load
try:
    twin, cfg = twin_from_file(MODEL)
    check("d2c model loads strictly into the twin UNet", True, f"config {json.dumps(cfg)}")
except Exception as e:  # noqa: BLE001 - report whatever load_state_dict says
    check("d2c model loads strictly into the twin UNet", False, str(e)[:300])
    finish()

# 2. DDIM at guidance 1 and 2, DDPM with one step
K = cfg["num_classes"]
noise_path = os.path.join(WORK, "noise.safetensors")
noise, y = write_noise(noise_path, 10, 1, 28, 28, list(range(K)), seed=1)
for g in (1.0, 2.0):
    got = d2c_samples(f"ddim_g{g:g}", MODEL, noise_path, 50, g)
    want = tw.ddim_sample(twin, noise, y, 50, AB, guidance=g)
    compare(f"DDIM 50 steps, guidance {g:g}: d2c = twin", got, want)
got = d2c_samples("ddpm_1step", MODEL, noise_path, 1, 1.0, sampler="ddpm")
compare("DDPM 1 step: d2c = twin", got, tw.ddpm_sample(twin, noise, y, 1, AB))

# 3. PyTorch -> d2c
def torch_model(cfg, seed):
    torch.manual_seed(seed)
    m = tw.UNet(cfg)
    tw.perturb_parameters_(m, torch.Generator().manual_seed(seed + 1), scale=0.1)
    return m.eval()


def save_state_dict(path, model, metadata=None):
    st.save(path, {k: v.detach().numpy() for k, v in model.state_dict().items()}, metadata)


cases = []
cfg_a = tw.UNetConfig(in_channels=1, base_channels=8, channel_mult=(1, 2), attn_levels=(1,), num_classes=3, groups=4)
m_a = torch_model(cfg_a, 11)
save_state_dict(os.path.join(WORK, "torch_cfg.safetensors"), m_a, {"config": json.dumps(cfg_a.to_json_dict())})
cases.append(("PyTorch model with config metadata (2 levels, 4 groups, 3 classes)", "torch_cfg", m_a, [0, 1, 2, 3, 2, 0]))
cfg_b = tw.UNetConfig(in_channels=1, base_channels=8, num_classes=4)
m_b = torch_model(cfg_b, 21)
save_state_dict(os.path.join(WORK, "torch_nometa.safetensors"), m_b)
cases.append(("PyTorch model without metadata (C=8, 4 classes)", "torch_nometa", m_b, [0, 1, 2, 3, 4, 1]))
save_state_dict(os.path.join(WORK, "torch_trained.safetensors"), twin)
cases.append(("trained weights re-saved by PyTorch, no metadata", "torch_trained", twin, list(range(K))))
for title, name, model, labels in cases:
    npath = os.path.join(WORK, f"{name}_noise.safetensors")
    noise_c, y_c = write_noise(npath, len(labels), 1, 28, 28, labels, seed=5)
    got = d2c_samples(name, os.path.join(WORK, f"{name}.safetensors"), npath, 20, 1.0)
    compare(f"{title}: DDIM 20 steps, d2c = twin", got, tw.ddim_sample(model, noise_c, y_c, 20, AB))

# 4. DDPM: deterministic for a seed
def ddpm_run(name, seed):
    out = os.path.join(WORK, f"{name}.safetensors")
    r = d2c_ok(name, EXE, "sample", "--model", MODEL, "--out", out, "--n", 6, "--sampler", "ddpm", "--steps", 20,
               "--seed", seed, "--guidance", 1.5, "--threads", THREADS, "--quiet")
    return st.load(out)[0] if r.rc == 0 else None


a, b, c = ddpm_run("ddpm_seed7", 7), ddpm_run("ddpm_seed7_again", 7), ddpm_run("ddpm_seed8", 8)
if a is not None and b is not None and c is not None:
    check("DDPM: same seed, bit-identical images", a["images"].tobytes() == b["images"].tobytes())
    check("DDPM: another seed, other images", not np.array_equal(a["images"], c["images"]))
    x = a["images"]
    check("DDPM: finite, in [-1, 1], shape (6, 1, 28, 28)",
          x.shape == (6, 1, 28, 28) and np.isfinite(x).all() and np.abs(x).max() <= 1.0,
          f"{100 * np.mean(np.abs(x) < 1):.0f}% of values unclamped")
    check("DDPM: labels cycle through the classes", a["labels"].tolist() == list(range(6)))

# 5. --grid
def png_size(path):
    with open(path, "rb") as f:
        head = f.read(33)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    crc = zlib.crc32(head[12:29]) & 0xFFFFFFFF
    if crc != int.from_bytes(head[29:33], "big"):
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def to_u8(x):
    v = (x.astype(np.float32) + np.float32(1.0)) * np.float32(127.5) + np.float32(0.5)
    return np.clip(v, 0, 255).astype(np.uint8)  # truncation, as d2c's to_u8


try:
    from PIL import Image
except ImportError:
    Image = None
for name, n, labels, classes in (("grid_all", 10, "all", list(range(K))), ("grid_some", 25, "0,3,7", [0, 3, 7])):
    out, grid = os.path.join(WORK, f"{name}.safetensors"), os.path.join(WORK, f"{name}.png")
    r = d2c_ok(f"sample --grid ({labels})", EXE, "sample", "--model", MODEL, "--out", out, "--n", n, "--labels", labels,
               "--steps", 5, "--grid", grid, "--threads", THREADS, "--quiet")
    size = png_size(grid) if os.path.exists(grid) else None
    rows, pad, H, W = len(classes), 2, 28, 28
    want = (10 * (W + pad) + pad, rows * (H + pad) + pad)
    check(f"{name}: PNG signature, {rows} rows of 10", size == want, f"{size} (want {want})")
    if size != want:
        continue
    if Image is None:
        skip(f"{name}: cell contents", "PIL is not available")
        continue
    img = np.asarray(Image.open(grid).convert("L"))
    s = st.load(out)[0]
    ok = True
    for row, k in enumerate(classes):
        xs = s["images"][s["labels"] == k][:10]
        for col in range(10):
            top, left = pad + row * (H + pad), pad + col * (W + pad)
            cell = img[top:top + H, left:left + W]
            ok &= np.array_equal(cell, to_u8(xs[col, 0]) if col < len(xs) else np.full((H, W), 255, np.uint8))
    check(f"{name}: each row holds its class's samples in order", bool(ok))

finish()
