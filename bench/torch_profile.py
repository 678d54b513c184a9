"""PyTorch's GPU time per kernel for bench_torch.py's train step and sampling step, to set
beside `D2C_CUDA_PROFILE=1 d2c bench --device cuda` (bench/gpu_profile.sh): where PyTorch
is faster than d2c, op by op.

    python3 bench/torch_profile.py --spec DIR [--what train|sample] [--batch 256] [--hw 28]
                                   [--in-channels 1] [--channels 32] [--iters 10]

DIR holds d2c_spec.py (the specification's UNet; the GPU machine gets it in .gpudeps).
The step is bench_torch.py's: DDPM loss, backward and Adam (lr 2e-4) for train; one
network evaluation under no_grad for sample. Prints the device time per step and the
kernels by total device time, per step.
"""
import argparse
import sys

import torch
from torch.profiler import ProfilerActivity, profile


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    ap.add_argument("--what", default="train", choices=["train", "sample"])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--hw", type=int, default=28)
    ap.add_argument("--in-channels", type=int, default=1)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--rows", type=int, default=30)
    a = ap.parse_args()
    sys.path.insert(0, a.spec)
    from d2c_spec import UNet, UNetConfig, ddpm_loss, linear_alpha_bar  # noqa: E402

    torch.manual_seed(0)
    dev = "cuda"
    cfg = UNetConfig(in_channels=a.in_channels, base_channels=a.channels)
    model = UNet(cfg).to(dev)
    ab = linear_alpha_bar().to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    B = a.batch
    x0 = torch.randn(B, a.in_channels, a.hw, a.hw, device=dev)
    y = torch.randint(0, cfg.num_classes, (B,), device=dev)

    def train_step():
        t = torch.randint(0, 1000, (B,), device=dev)
        loss = ddpm_loss(model, x0, t, y, torch.randn_like(x0), ab)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sample_step():
        with torch.no_grad():
            model(x0, torch.full((B,), 500, device=dev), y)

    step = train_step if a.what == "train" else sample_step
    for _ in range(5):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(a.iters):
            step()
        torch.cuda.synchronize()
    rows = []
    for ev in prof.key_averages():
        us = getattr(ev, "self_device_time_total", None)
        if us is None:
            us = ev.self_cuda_time_total
        if us > 0:
            rows.append((us / a.iters, ev.count // a.iters, ev.key))
    rows.sort(reverse=True)
    total = sum(r[0] for r in rows)
    print(f"torch {torch.__version__} {a.what} B={B} hw={a.hw} in={a.in_channels} C={a.channels}: "
          f"{total / 1e3:.3f} ms of device time per step ({len(rows)} kernels)")
    print(f"  {'us/step':>9s} {'calls':>5s} {'share':>6s}  kernel")
    for us, n, name in rows[:a.rows]:
        print(f"  {us:9.1f} {n:5d} {100 * us / total:5.1f}%  {name[:110]}")


if __name__ == "__main__":
    main()
