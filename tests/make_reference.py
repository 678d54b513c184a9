"""Writes the reference tensors that d2c's C tests compare against (PyTorch twin, float32).

Usage: make_reference.py --config fmnist|cifar --out FILE.safetensors [--seed S]

The model is tests/torch_twin.py's UNet, initialised under torch.manual_seed(seed) and
then perturbed (every parameter, norm scales and biases included) so no path is trivial.
The file holds, by name:
  __metadata__   "config" (UNetConfig fields + image_size, JSON), "adam" (JSON), "seed"
  param.<key>    every state_dict tensor                           F32, its shape
  alpha_bar      linear schedule                                   F32 (1000,)
  x0, noise      (B, C, H, W) F32;  t, y  (B,) I64 (t covers 0 and 999, y has a null label)
  eps_pred, mid  model(q_sample(x0, t, noise), t, y) and its middle-block output
  loss           ddpm_loss, F32 (1,);  grad.<key>, grad_x0: its gradients
  adam_loss      (5,) loss before each of 5 Adam steps on the same batch; adam.param.<key> after
  hg{i}.*        matching-loss cases i = 0, 1, 2 for (K, dm_weight) = (1, 0), (3, 0), (3, 0.1):
                 x_real (8,C,H,W), y_real (8,), x_syn (3,C,H,W), y_syn (3,), timesteps (K,) I64,
                 noise_real (K,8,C,H,W), noise_syn (K,3,C,H,W), dm_weight (1,), loss (1,),
                 grad_x_syn (3,C,H,W) F32, grad_x_syn_f64 (3,C,H,W) F64 (model and inputs in float64)
  hg{i}.* (DSA)  i = 3, 4 for (K, dm_weight) = (1, 0), (3, 0.1): the same tensors, with the matching
                 loss taken on augmented batches, loss = matching_loss(A(x_real), A(x_syn)) and
                 grad_x_syn* = d loss / d x_syn through A (torch_twin.augment, one fixed draw), plus
                 aug (7,) F32 = brightness, saturation, contrast, scale, angle (radians), shift_x,
                     shift_y (pixels)                                 (torch_twin.AUG_FLOAT_FIELDS)
                 aug_int (4,) I64 = flip, cut_x, cut_y, cut_size  (torch_twin.AUG_INT_FIELDS)
                 aug_x_syn (3,C,H,W) F32 = A(x_syn), to check augment_forward alone.
                 Their inputs come from a second generator (seed + 1000003), after every other
                 tensor, so the tensors above are the same as without these cases.
  ddim.*         noise (4,C,H,W), labels (4,) I64, steps (1,) I64 = 10, out_w1, out_w2 (guidance 1, 2);
                 raw_w1, raw_w2: the same before the final clamp to [-1, 1] (an untrained model's
                 samples are almost all clamped, so out_* alone would hide most sampler errors)
"""
import argparse
import copy
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import st_numpy  # noqa: E402
import torch_twin as twin  # noqa: E402

CONFIGS = {
    "fmnist": dict(model=dict(in_channels=1, base_channels=32, channel_mult=(1, 2, 2), attn_levels=(2,),
                              num_classes=10, groups=8), image_size=28, batch=6),
    "cifar": dict(model=dict(in_channels=3, base_channels=16, channel_mult=(1, 2, 2, 2), attn_levels=(1,),
                             num_classes=10, groups=4), image_size=32, batch=4),
}
ADAM = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "steps": 5}
HG_CASES = [([500], 0.0), ([50, 400, 900], 0.0), ([50, 400, 900], 0.1)]
HG_CLASS, HG_REAL, HG_SYN = 3, 8, 3
# DSA cases hg3, hg4: (timesteps, dm_weight, augmentation as a function of the image size).
# Rotation, zoom in and out, shifts, flip on and off, and cutouts overhanging an edge.
HG_DSA_CASES = [
    ([250], 0.0, lambda hw: twin.AugmentParams(brightness=0.21, saturation=1.6, contrast=0.7, scale=1.13,
                                               angle=0.19, shift_x=-2.3, shift_y=1.7, flip=1,
                                               cut_x=-3, cut_y=hw // 3, cut_size=hw // 2)),
    ([100, 500, 800], 0.1, lambda hw: twin.AugmentParams(brightness=-0.35, saturation=0.4, contrast=1.3,
                                                          scale=0.86, angle=-0.23, shift_x=3.1, shift_y=-2.6,
                                                          flip=0, cut_x=hw - 8, cut_y=2, cut_size=hw // 2)),
]
DDIM_STEPS = 10


def np32(x):
    return x.detach().to(torch.float32).contiguous().numpy()


def np64(x):
    return x.detach().to(torch.float64).contiguous().numpy()


def npi64(x):
    return torch.as_tensor(x, dtype=torch.int64).contiguous().numpy()


def uniform(g, *shape):
    return torch.rand(*shape, generator=g) * 2 - 1


def make(config_name, seed):
    """Returns (tensors dict in file order, metadata dict)."""
    spec = CONFIGS[config_name]
    cfg = twin.UNetConfig(**spec["model"])
    hw, B, C, ncls = spec["image_size"], spec["batch"], cfg.in_channels, cfg.num_classes
    torch.manual_seed(seed)
    model = twin.UNet(cfg)
    g = torch.Generator().manual_seed(seed)
    twin.perturb_parameters_(model, g)
    keys = [k for k, _ in model.named_parameters()]
    assert keys == list(model.state_dict().keys()), "every state_dict entry is a parameter"
    ab = twin.linear_alpha_bar()
    out = {f"param.{k}": np32(v) for k, v in model.state_dict().items()}
    out["alpha_bar"] = np32(ab)

    # One training batch: forward, DDPM loss and its gradients.
    x0 = uniform(g, B, C, hw, hw)
    t = torch.linspace(0, twin.T_STEPS - 1, B).round().long()
    y = torch.randint(0, ncls, (B,), generator=g)
    y[B // 2] = ncls
    noise = torch.randn(B, C, hw, hw, generator=g)
    out.update(x0=np32(x0), t=npi64(t), y=npi64(y), noise=np32(noise))
    with torch.no_grad():
        eps, mid = model(twin.q_sample(x0, t, noise, ab), t, y, return_mid=True)
    out.update(eps_pred=np32(eps), mid=np32(mid))
    x0_var = x0.clone().requires_grad_(True)
    model.zero_grad()
    loss = twin.ddpm_loss(model, x0_var, t, y, noise, ab)
    loss.backward()
    out["loss"] = np32(loss.reshape(1))
    out.update({f"grad.{k}": np32(p.grad) for k, p in model.named_parameters()})
    out["grad_x0"] = np32(x0_var.grad)

    # Five Adam steps on that batch, on a copy of the model.
    trained = copy.deepcopy(model)
    opt = torch.optim.Adam(trained.parameters(), lr=ADAM["lr"], betas=(ADAM["beta1"], ADAM["beta2"]),
                           eps=ADAM["eps"], weight_decay=0.0)
    losses = []
    for _ in range(ADAM["steps"]):
        opt.zero_grad()
        step_loss = twin.ddpm_loss(trained, x0, t, y, noise, ab)
        step_loss.backward()
        losses.append(step_loss.item())
        opt.step()
    out["adam_loss"] = np32(torch.tensor(losses))
    out.update({f"adam.param.{k}": np32(v) for k, v in trained.state_dict().items()})

    # Matching loss and hypergradient, in float32 and (as an exact reference) float64.
    model64, ab64 = copy.deepcopy(model).double(), ab.double()
    for i, (steps, dm) in enumerate(HG_CASES):
        K = len(steps)
        x_real, x_syn = uniform(g, HG_REAL, C, hw, hw), uniform(g, HG_SYN, C, hw, hw)
        y_real, y_syn = torch.full((HG_REAL,), HG_CLASS), torch.full((HG_SYN,), HG_CLASS)
        n_real = torch.randn(K, HG_REAL, C, hw, hw, generator=g)
        n_syn = torch.randn(K, HG_SYN, C, hw, hw, generator=g)
        m_loss, hg = twin.hypergradient(model, x_real, y_real, x_syn, y_syn, steps, n_real, n_syn, ab, dm)
        _, hg64 = twin.hypergradient(model64, x_real.double(), y_real, x_syn.double(), y_syn, steps,
                                     n_real.double(), n_syn.double(), ab64, dm)
        p = f"hg{i}."
        out.update({p + "x_real": np32(x_real), p + "y_real": npi64(y_real),
                    p + "x_syn": np32(x_syn), p + "y_syn": npi64(y_syn),
                    p + "timesteps": npi64(steps), p + "noise_real": np32(n_real),
                    p + "noise_syn": np32(n_syn), p + "dm_weight": np32(torch.tensor([dm])),
                    p + "loss": np32(m_loss.reshape(1)), p + "grad_x_syn": np32(hg),
                    p + "grad_x_syn_f64": np64(hg64)})

    # Deterministic DDIM sampling, without and with classifier-free guidance.
    d_noise = torch.randn(4, C, hw, hw, generator=g)
    labels = torch.tensor([1, 4, 9, ncls])
    out.update({"ddim.noise": np32(d_noise), "ddim.labels": npi64(labels),
                "ddim.steps": npi64([DDIM_STEPS])})
    for w, tag in ((1.0, "w1"), (2.0, "w2")):
        raw = twin.ddim_sample(model, d_noise, labels, DDIM_STEPS, ab, guidance=w, clamp=False)
        out[f"ddim.out_{tag}"] = np32(raw.clamp(-1.0, 1.0))
        out[f"ddim.raw_{tag}"] = np32(raw)

    # Matching loss and hypergradient through one fixed DSA augmentation of both batches.
    g2 = torch.Generator().manual_seed(seed + 1000003)
    for i, (steps, dm, make_aug) in enumerate(HG_DSA_CASES, start=len(HG_CASES)):
        K, aug = len(steps), make_aug(hw)
        x_real, x_syn = uniform(g2, HG_REAL, C, hw, hw), uniform(g2, HG_SYN, C, hw, hw)
        y_real, y_syn = torch.full((HG_REAL,), HG_CLASS), torch.full((HG_SYN,), HG_CLASS)
        n_real = torch.randn(K, HG_REAL, C, hw, hw, generator=g2)
        n_syn = torch.randn(K, HG_SYN, C, hw, hw, generator=g2)
        m_loss, hg = twin.hypergradient_dsa(model, x_real, y_real, x_syn, y_syn, steps, n_real, n_syn, ab, aug, dm)
        _, hg64 = twin.hypergradient_dsa(model64, x_real.double(), y_real, x_syn.double(), y_syn, steps,
                                         n_real.double(), n_syn.double(), ab64, aug, dm)
        p = f"hg{i}."
        out.update({p + "x_real": np32(x_real), p + "y_real": npi64(y_real),
                    p + "x_syn": np32(x_syn), p + "y_syn": npi64(y_syn),
                    p + "timesteps": npi64(steps), p + "noise_real": np32(n_real),
                    p + "noise_syn": np32(n_syn), p + "dm_weight": np32(torch.tensor([dm])),
                    p + "aug": np32(torch.tensor(aug.floats())), p + "aug_int": npi64(aug.ints()),
                    p + "aug_x_syn": np32(twin.augment(x_syn, aug)),
                    p + "loss": np32(m_loss.reshape(1)), p + "grad_x_syn": np32(hg),
                    p + "grad_x_syn_f64": np64(hg64)})

    config = dict(cfg.to_json_dict(), image_size=hw)
    meta = {"config": json.dumps(config), "adam": json.dumps(ADAM), "seed": str(seed),
            "schedule": "linear", "generator": "tests/make_reference.py (torch_twin, float32)"}
    return out, meta


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, choices=sorted(CONFIGS))
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--list", action="store_true", help="print every tensor's name, dtype and shape")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tensors, meta = make(args.config, args.seed)
    tmp = args.out + ".part"
    st_numpy.save(tmp, tensors, meta)
    os.replace(tmp, args.out)
    if args.list:
        for name, a in tensors.items():
            print(f"{name} {a.dtype} {tuple(a.shape)}")
    print(f"wrote {args.out}: {len(tensors)} tensors, config {args.config}, seed {args.seed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
