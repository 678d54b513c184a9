"""d2c train's recipe in PyTorch, on the project's twin of the spec UNet, for GPU reference runs.

Until d2c's CUDA engine exists, long training runs (the lengths at which evaluators and
condensation methods must be compared) are made here, on a GPU, with exactly the recipe of
`d2c train` (src/diffusion/train.c): epoch permutations of the data, t uniform in [0, T),
null label with probability cond_drop, the DDPM epsilon loss, gradient clipping to norm 1,
Adam (0.9, 0.999, 1e-8) with a linear warm-up, and EMA weights whose decay ramps as
(1 + s) / (10 + s) up to 0.999. Only the random numbers differ (torch's, not Philox).
At each snapshot step it draws DDIM-50 samples from the EMA weights (the twin's
ddim_sample, which `d2c sample` matches to 1e-5) and saves them as 8-bit images, the way
real images are stored, plus the EMA state_dict, which `d2c sample` loads.

  python3 bench/torch_train.py --data fmnist:DIR | pool:FILE.safetensors --name NAME
          --steps 2000,4000,8000 --batch 128 --samples 10000 --out DIR
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import torch_twin as tw  # noqa: E402


def read_idx(path):
    with gzip.open(path) if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data[4 + 4 * ndim:], np.uint8).reshape(dims)


def load_data(spec):
    kind, _, where = spec.partition(":")
    if kind == "fmnist":
        x = read_idx(os.path.join(where, "train-images-idx3-ubyte.gz")).astype(np.float32) / 127.5 - 1
        y = read_idx(os.path.join(where, "train-labels-idx1-ubyte.gz")).astype(np.int64)
        return x[:, None], y
    if kind == "pool":
        from safetensors.numpy import load_file
        t = load_file(where)
        return t["images"].astype(np.float32), t["labels"].astype(np.int64)
    raise SystemExit(f"torch_train.py: unknown --data {spec}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--steps", default="2000,4000,8000,16000")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--cond-drop", type=float, default=0.1)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--sample-steps", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    snapshots = sorted(int(s) for s in a.steps.split(","))
    os.makedirs(a.out, exist_ok=True)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(a.seed)

    x_all, y_all = load_data(a.data)
    x_all, y_all = torch.from_numpy(x_all).to(dev), torch.from_numpy(y_all).to(dev)
    N = x_all.shape[0]
    cfg = tw.UNetConfig(in_channels=x_all.shape[1])
    K = cfg.num_classes
    model = tw.UNet(cfg).to(dev)
    ema = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    alpha_bar = tw.linear_alpha_bar().to(dev)
    log = open(os.path.join(a.out, f"{a.name}.log"), "w")
    gen = torch.Generator(device=dev).manual_seed(a.seed)
    perm, epoch = None, -1
    t0, step = time.time(), 0
    for target in snapshots:
        while step < target:
            pos = torch.arange(step * a.batch, (step + 1) * a.batch, device=dev)
            idx = torch.empty(a.batch, dtype=torch.long, device=dev)
            for e in torch.unique(pos // N).tolist():   # epoch permutations, as d2c's EpochSampler
                if e != epoch:
                    perm, epoch = torch.randperm(N, generator=gen, device=dev), e
                m = (pos // N) == e
                idx[m] = perm[pos[m] % N]
            x0, y = x_all[idx], y_all[idx].clone()
            t = torch.randint(0, 1000, (a.batch,), generator=gen, device=dev)
            drop = torch.rand(a.batch, generator=gen, device=dev) < a.cond_drop
            y[drop] = K
            noise = torch.randn(x0.shape, generator=gen, device=dev)
            loss = tw.ddpm_loss(model, x0, t, y, noise, alpha_bar)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            for g in opt.param_groups:
                g["lr"] = a.lr * ((step + 1) / a.warmup if step < a.warmup else 1.0)
            opt.step()
            d = min(a.ema, (1.0 + step) / (10.0 + step))
            with torch.no_grad():
                torch._foreach_lerp_(ema, [p.detach() for p in model.parameters()], 1 - d)
            step += 1
            if step % 500 == 0:
                print(json.dumps({"name": a.name, "step": step, "loss": float(loss), "seconds": round(time.time() - t0, 1)}),
                      file=log, flush=True)
        train_s = time.time() - t0
        # sample from the EMA weights
        ema_model = tw.UNet(cfg).to(dev)
        with torch.no_grad():
            for q, e_ in zip(ema_model.parameters(), ema):
                q.copy_(e_)
        ema_model.eval()
        sg = torch.Generator(device=dev).manual_seed(1000 + a.seed)
        imgs, labs = [], []
        ts = time.time()
        for b in range(0, a.samples, 1000):
            n = min(1000, a.samples - b)
            yb = torch.arange(b, b + n, device=dev) % K
            xT = torch.randn((n, cfg.in_channels, x_all.shape[2], x_all.shape[3]), generator=sg, device=dev)
            imgs.append(tw.ddim_sample(ema_model, xT, yb, a.sample_steps, alpha_bar).cpu())
            labs.append(yb.cpu())
        x = torch.cat(imgs).numpy()
        q8 = np.clip(np.rint((x + 1) * 127.5), 0, 255).astype(np.uint8)
        np.savez_compressed(os.path.join(a.out, f"{a.name}_s{target}.npz"), images=q8, labels=torch.cat(labs).numpy())
        from safetensors.torch import save_file
        sd = {k: v.detach().cpu().contiguous() for k, v in ema_model.state_dict().items()}
        meta = {"config": json.dumps({**cfg.to_json_dict(), "schedule": "linear",
                                      "image_size": [int(x_all.shape[2]), int(x_all.shape[3])]}),
                "step": str(target), "made_by": "bench/torch_train.py"}
        save_file(sd, os.path.join(a.out, f"{a.name}_s{target}.safetensors"), metadata=meta)
        print(json.dumps({"name": a.name, "snapshot": target, "train_seconds": round(train_s, 1),
                          "sample_seconds": round(time.time() - ts, 1), "samples": a.samples}), file=log, flush=True)
        t0 += time.time() - ts  # training time excludes sampling
    log.close()


if __name__ == "__main__":
    main()
