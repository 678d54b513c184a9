"""d2c's own PyTorch twin of the specification (reference/d2c_spec.py), used by the tests.

The C engine is checked against tensors this file computes (tests/make_reference.py), and
tests/test_twin_vs_spec.py checks that this file equals the shared specification. It is
written independently and in a functional style: the modules below only *hold* the
parameters, under exactly the spec's state_dict keys and shapes (and created in the same
order, so one seed gives one initialisation in both); every computation is a plain
function of (parameters, inputs) built from torch.nn.functional.

Shapes: images (B, C, H, W) float, timesteps t (B,) int64 in 0..T-1, labels y (B,) int64
in 0..num_classes, where y == num_classes is the null label of classifier-free guidance.
"""
import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F

T_STEPS = 1000
GN_EPS = 1e-5


# ------------------------------------------------------------------------ parameters

@dataclass
class UNetConfig:
    in_channels: int = 1
    base_channels: int = 32
    channel_mult: tuple = (1, 2, 2)
    attn_levels: tuple = (2,)
    num_classes: int = 10
    groups: int = 8

    def to_json_dict(self):
        d = asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        d["attn_levels"] = list(self.attn_levels)
        return d


class _Holder(nn.Module):
    """A named bag of parameter-holding leaf modules; it has no forward of its own."""

    def __init__(self, **children):
        super().__init__()
        for name, child in children.items():
            setattr(self, name, child)


def _resblock_params(cin, cout, emb_dim, groups):
    return _Holder(norm1=nn.GroupNorm(groups, cin),
                   conv1=nn.Conv2d(cin, cout, 3, padding=1),
                   emb_proj=nn.Linear(emb_dim, cout),
                   norm2=nn.GroupNorm(groups, cout),
                   conv2=nn.Conv2d(cout, cout, 3, padding=1),
                   skip=nn.Conv2d(cin, cout, 1) if cin != cout else None)


def _attention_params(ch, groups):
    return _Holder(norm=nn.GroupNorm(groups, ch),
                   qkv=nn.Conv2d(ch, 3 * ch, 1),
                   proj=nn.Conv2d(ch, ch, 1))


def _level_params(cin, cout, emb_dim, groups, attn):
    return _Holder(res=_resblock_params(cin, cout, emb_dim, groups),
                   attn=_attention_params(cout, groups) if attn else None)


# ------------------------------------------------------------------------- functions

def timestep_embedding(t, dim):
    """(B,) integer timesteps -> (B, dim) float32: [sin(t f_i), cos(t f_i)], f_i = 10000^(-i/half)."""
    half = dim // 2
    i = torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(i * (-math.log(10000.0)) / half)
    angles = t.to(torch.float32).unsqueeze(1) * freqs.unsqueeze(0)
    return torch.cat((angles.sin(), angles.cos()), dim=1)


def _gn(m, x):
    return F.group_norm(x, m.num_groups, m.weight, m.bias, GN_EPS)


def _conv(m, x):
    return F.conv2d(x, m.weight, m.bias, stride=m.stride, padding=m.padding)


def _linear(m, x):
    return F.linear(x, m.weight, m.bias)


def resblock(p, x, emb):
    """GN-SiLU-conv3x3, + Linear(SiLU(emb)) per channel, GN-SiLU-conv3x3, + skip (1x1 conv if channels change)."""
    h = _conv(p.conv1, F.silu(_gn(p.norm1, x)))
    h = h + _linear(p.emb_proj, F.silu(emb)).unsqueeze(-1).unsqueeze(-1)
    h = _conv(p.conv2, F.silu(_gn(p.norm2, h)))
    shortcut = x if p.skip is None else _conv(p.skip, x)
    return shortcut + h


def attention(p, x):
    """Single-head self-attention over the H*W positions: x + proj(V softmax(Q^T K / sqrt(C))^T)."""
    b, c, hh, ww = x.shape
    n = hh * ww
    qkv = _conv(p.qkv, _gn(p.norm, x)).reshape(b, 3, c, n)
    q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]                  # (B, C, N) each
    scores = torch.matmul(q.transpose(1, 2), k) / math.sqrt(c)  # (B, N query, N key)
    weights = torch.softmax(scores, dim=2)
    out = torch.matmul(v, weights.transpose(1, 2))              # (B, C, N)
    return _conv(p.proj, out.reshape(b, c, hh, ww)) + x


def level(p, x, emb):
    h = resblock(p.res, x, emb)
    return h if p.attn is None else attention(p.attn, h)


class UNet(nn.Module):
    """Class-conditional epsilon-prediction UNet with the spec's parameter names.

    Levels l = 0..L-1 at resolution H / 2^l with C*mult[l] channels; the down path keeps
    each level's output as a skip and halves the resolution with a stride-2 conv between
    levels; the middle is ResBlock-Attention-ResBlock; the up path concatenates [h, skip_l]
    (h first) and doubles the resolution (nearest, then a 3x3 conv) between levels.
    emb = MLP(sinusoid(t)) + class_embed[y], of width 4C.
    """

    def __init__(self, cfg: UNetConfig = UNetConfig()):
        super().__init__()
        self.cfg = cfg
        C, g = cfg.base_channels, cfg.groups
        E = 4 * C
        widths = [C * m for m in cfg.channel_mult]
        L = len(widths)
        # Registration order equals the spec's, so parameters() and the seeded init agree.
        self.time_embed = nn.Sequential(nn.Linear(C, E), nn.SiLU(), nn.Linear(E, E))
        self.class_embed = nn.Embedding(cfg.num_classes + 1, E)
        self.conv_in = nn.Conv2d(cfg.in_channels, C, 3, padding=1)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        for l in range(L):
            cin = C if l == 0 else widths[l - 1]
            self.down.append(_level_params(cin, widths[l], E, g, l in cfg.attn_levels))
            if l < L - 1:
                self.downsample.append(nn.Conv2d(widths[l], widths[l], 3, stride=2, padding=1))
        self.mid1 = _resblock_params(widths[-1], widths[-1], E, g)
        self.mid_attn = _attention_params(widths[-1], g)
        self.mid2 = _resblock_params(widths[-1], widths[-1], E, g)
        self.up = nn.ModuleList([None] * L)
        self.upsample = nn.ModuleList([None] * L)
        for l in reversed(range(L)):
            below = widths[l + 1] if l < L - 1 else widths[-1]
            self.up[l] = _level_params(below + widths[l], widths[l], E, g, l in cfg.attn_levels)
            if l > 0:
                self.upsample[l] = nn.Conv2d(widths[l], widths[l], 3, padding=1)
        self.out_norm = nn.GroupNorm(g, C)
        self.conv_out = nn.Conv2d(C, cfg.in_channels, 3, padding=1)

    def embedding(self, t, y):
        temb = timestep_embedding(t, self.cfg.base_channels).to(self.conv_in.weight.dtype)
        mlp = self.time_embed
        temb = _linear(mlp[2], F.silu(_linear(mlp[0], temb)))
        return temb + F.embedding(y, self.class_embed.weight)

    def forward(self, x, t, y, return_mid=False):
        emb = self.embedding(t, y)
        L = len(self.down)
        h = _conv(self.conv_in, x)
        skips = []
        for l in range(L):
            h = level(self.down[l], h, emb)
            skips.append(h)
            if l < L - 1:
                h = _conv(self.downsample[l], h)
        h = resblock(self.mid1, h, emb)
        h = attention(self.mid_attn, h)
        h = resblock(self.mid2, h, emb)
        mid = h
        for l in range(L - 1, -1, -1):
            h = level(self.up[l], torch.cat((h, skips[l]), dim=1), emb)
            if l > 0:
                h = _conv(self.upsample[l], F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = _conv(self.conv_out, F.silu(_gn(self.out_norm, h)))
        return (out, mid) if return_mid else out


@torch.no_grad()
def perturb_parameters_(model, generator, scale=0.1):
    """Make default-initialised weights non-trivial so every path is exercised.

    One-dimensional parameters (biases, GroupNorm scales and shifts, which start at
    0 or 1) get + scale * N(0, 1); others get + scale * std(p) * N(0, 1).
    """
    for p in model.parameters():
        z = torch.randn(p.shape, generator=generator, dtype=p.dtype)
        p.add_(z * (scale if p.dim() < 2 else scale * p.std().item()))


# -------------------------------------------------------------------------- schedules

def linear_alpha_bar(T=T_STEPS, beta_start=1e-4, beta_end=0.02):
    """alpha_bar[t] = prod_{s<=t} (1 - beta_s), beta linear from beta_start to beta_end (float64 -> float32)."""
    betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float32)


def cosine_alpha_bar(T=T_STEPS, s=0.008, max_beta=0.999):
    """Nichol & Dhariwal (2021): f(u) = cos^2((u + s) / (1 + s) * pi / 2), u = t / T;
    beta_t = min(1 - f((t+1)/T) / f(t/T), max_beta); alpha_bar[t] = prod_{s<=t} (1 - beta_s).
    Computed in float64, returned as float32."""
    u = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((u + s) / (1.0 + s) * (math.pi / 2)) ** 2
    betas = torch.clamp(1.0 - f[1:] / f[:-1], max=max_beta)
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float32)


# -------------------------------------------------------------------------- diffusion

def q_sample(x0, t, noise, alpha_bar):
    """x_t = sqrt(alpha_bar[t]) x0 + sqrt(1 - alpha_bar[t]) noise."""
    ab = alpha_bar[t][:, None, None, None]
    return torch.sqrt(ab) * x0 + torch.sqrt(1.0 - ab) * noise


def ddpm_loss(model, x0, t, y, noise, alpha_bar):
    """Mean over all elements of (eps_theta(x_t, t, y) - noise)^2."""
    err = model(q_sample(x0, t, noise, alpha_bar), t, y) - noise
    return torch.mean(err * err)


def ddim_timesteps(steps, T=T_STEPS):
    """tau_i = floor(i T / steps), i = 0..steps-1, ascending."""
    return [i * T // steps for i in range(steps)]


def guided_eps(model, x, t, y, guidance):
    """Classifier-free guidance: eps_null + w (eps_cond - eps_null); w = 1 is a single conditional pass."""
    eps = model(x, t, y)
    if guidance == 1.0:
        return eps
    eps_null = model(x, t, torch.full_like(y, model.cfg.num_classes))
    return eps_null + guidance * (eps - eps_null)


@torch.no_grad()
def ddim_sample(model, noise, y, steps, alpha_bar, guidance=1.0, clamp=True):
    """Deterministic DDIM (eta = 0) from x_T = noise over tau_{S-1} > ... > tau_0.

    x0_hat = (x - sqrt(1 - ab) eps) / sqrt(ab); x <- sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev) eps,
    with ab = alpha_bar[tau_i], ab_prev = alpha_bar[tau_{i-1}] (1 at i = 0). No clipping in
    the loop; the result is clamped to [-1, 1] (the spec's output; clamp=False, for tests
    only, returns the value before that clamp).
    """
    taus = ddim_timesteps(steps)
    one = torch.ones((), dtype=alpha_bar.dtype)
    x = noise
    for i in range(steps - 1, -1, -1):
        eps = guided_eps(model, x, torch.full_like(y, taus[i]), y, guidance)
        ab = alpha_bar[taus[i]]
        ab_prev = alpha_bar[taus[i - 1]] if i > 0 else one
        x0_hat = (x - torch.sqrt(1 - ab) * eps) / torch.sqrt(ab)
        x = torch.sqrt(ab_prev) * x0_hat + torch.sqrt(1 - ab_prev) * eps
    return torch.clamp(x, -1.0, 1.0) if clamp else x


@torch.no_grad()
def ddpm_sample(model, noise, y, steps, alpha_bar, guidance=1.0, step_noise=None, generator=None):
    """Ancestral DDPM sampling over the same timestep subsequence as DDIM (steps = T is plain DDPM).

    At step i (tau = tau_i, ab = alpha_bar[tau_i], ab_prev = alpha_bar[tau_{i-1}] or 1 at i = 0):
        beta       = 1 - ab / ab_prev                       (the effective beta of the stride)
        x0_hat     = (x - sqrt(1 - ab) eps) / sqrt(ab)
        mean       = sqrt(ab_prev) beta / (1 - ab) x0_hat + sqrt(1 - beta) (1 - ab_prev) / (1 - ab) x
        beta_tilde = (1 - ab_prev) / (1 - ab) beta          (posterior variance of q(x_prev | x, x0))
        x          <- mean + sqrt(beta_tilde) z,  z ~ N(0, I);  no noise at i = 0 (beta_tilde = 0 there).
    No clipping in the loop; the result is clamped to [-1, 1]. z for the k-th iteration
    (k = 0 first, at tau_{S-1}) is step_noise[k] when given ((steps - 1, B, C, H, W)),
    else drawn with torch.randn(generator=generator).
    """
    taus = ddim_timesteps(steps)
    one = torch.ones((), dtype=alpha_bar.dtype)
    x = noise
    for k, i in enumerate(range(steps - 1, -1, -1)):
        eps = guided_eps(model, x, torch.full_like(y, taus[i]), y, guidance)
        ab = alpha_bar[taus[i]]
        ab_prev = alpha_bar[taus[i - 1]] if i > 0 else one
        beta = 1 - ab / ab_prev
        x0_hat = (x - torch.sqrt(1 - ab) * eps) / torch.sqrt(ab)
        mean = (torch.sqrt(ab_prev) * beta / (1 - ab)) * x0_hat \
            + (torch.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab)) * x
        if i == 0:
            x = mean
            break
        z = step_noise[k] if step_noise is not None else \
            torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x = mean + torch.sqrt((1 - ab_prev) / (1 - ab) * beta) * z
    return torch.clamp(x, -1.0, 1.0)


# ----------------------------------------------------------------------- condensation

def layerwise_distance(g_real, g_syn):
    """sum over gradients with >= 2 dims, over their rows r, s (first axis):
    1 - <r, s> / (|r| |s| + 1e-6). One-dimensional gradients are ignored."""
    total = 0.0
    for a, b in zip(g_real, g_syn):
        if a.dim() < 2:
            continue
        a = a.reshape(a.shape[0], -1)
        b = b.reshape(b.shape[0], -1)
        cos = (a * b).sum(dim=1) / (torch.linalg.vector_norm(a, dim=1) * torch.linalg.vector_norm(b, dim=1) + 1e-6)
        total = total + (1.0 - cos).sum()
    return total


def _pooled_mid(mid):
    """Middle-block features averaged over H, W and the batch: (C_mid,)."""
    return mid.mean(dim=(2, 3)).mean(dim=0)


def matching_loss(model, x_real, y_real, x_syn, y_syn, timesteps, noise_real, noise_syn,
                  alpha_bar, dm_weight=0.0):
    """sum_k [ D(grad_theta L_real(t_k) (detached), grad_theta L_syn(t_k)) + dm_weight |f_real - f_syn|^2 ],
    where L is the DDPM loss at the single timestep t_k with noises noise_*[k], D is
    layerwise_distance and f the pooled middle-block features (the real ones detached).
    The synthetic gradient keeps its graph, so the result is differentiable in x_syn."""
    params = list(model.parameters())
    total = 0.0
    for k, t in enumerate(timesteps):
        t = int(t)
        t_real = torch.full((x_real.shape[0],), t, dtype=torch.long)
        t_syn = torch.full((x_syn.shape[0],), t, dtype=torch.long)
        out_r, mid_r = model(q_sample(x_real, t_real, noise_real[k], alpha_bar), t_real, y_real, return_mid=True)
        out_s, mid_s = model(q_sample(x_syn, t_syn, noise_syn[k], alpha_bar), t_syn, y_syn, return_mid=True)
        loss_r = torch.mean((out_r - noise_real[k]) ** 2)
        loss_s = torch.mean((out_s - noise_syn[k]) ** 2)
        g_real = [g.detach() for g in torch.autograd.grad(loss_r, params, retain_graph=dm_weight > 0)]
        g_syn = torch.autograd.grad(loss_s, params, create_graph=True)
        total = total + layerwise_distance(g_real, g_syn)
        if dm_weight > 0:
            diff = _pooled_mid(mid_r).detach() - _pooled_mid(mid_s)
            total = total + dm_weight * (diff * diff).sum()
    return total


def hypergradient(model, x_real, y_real, x_syn, y_syn, timesteps, noise_real, noise_syn,
                  alpha_bar, dm_weight=0.0):
    """(matching_loss, d matching_loss / d x_syn) by double backpropagation."""
    x_syn = x_syn.detach().clone().requires_grad_(True)
    loss = matching_loss(model, x_real, y_real, x_syn, y_syn, timesteps, noise_real, noise_syn,
                         alpha_bar, dm_weight)
    (grad,) = torch.autograd.grad(loss, x_syn)
    return loss.detach(), grad


# ------------------------------------------------------------------- DSA augmentation

@dataclass
class AugmentParams:
    """One fixed draw of d2c's differentiable Siamese augmentation (src/condense/augment.h).

    Order of the float fields in a reference file's "<case>.aug" tensor (AUG_FLOAT_FIELDS)
    and of the integer fields in "<case>.aug_int" (AUG_INT_FIELDS)."""
    brightness: float = 0.0
    saturation: float = 1.0
    contrast: float = 1.0
    scale: float = 1.0
    angle: float = 0.0        # radians
    shift_x: float = 0.0      # pixels
    shift_y: float = 0.0
    flip: int = 0
    cut_x: int = 0
    cut_y: int = 0
    cut_size: int = 0         # 0 = no cutout

    def floats(self):
        return [getattr(self, k) for k in AUG_FLOAT_FIELDS]

    def ints(self):
        return [int(getattr(self, k)) for k in AUG_INT_FIELDS]

    @classmethod
    def from_lists(cls, floats, ints):
        d = dict(zip(AUG_FLOAT_FIELDS, (float(v) for v in floats)))
        d.update(zip(AUG_INT_FIELDS, (int(v) for v in ints)))
        return cls(**d)


AUG_FLOAT_FIELDS = ("brightness", "saturation", "contrast", "scale", "angle", "shift_x", "shift_y")
AUG_INT_FIELDS = ("flip", "cut_x", "cut_y", "cut_size")


def augment_source_coords(a, H, W):
    """(si, sj), each (H, W) float32: the source coordinates of every output pixel (i, j),
    the inverse of flip, scale, rotation and shift about the centre ((H-1)/2, (W-1)/2).
    The same float32 operations, in the same order, as source_coord in augment.c."""
    f32 = torch.float32
    cy = torch.tensor((H - 1) * 0.5, dtype=f32)
    cx = torch.tensor((W - 1) * 0.5, dtype=f32)
    i = torch.arange(H, dtype=f32).reshape(H, 1).expand(H, W)
    j = torch.arange(W, dtype=f32).reshape(1, W).expand(H, W)
    y = (i - cy) - torch.tensor(a.shift_y, dtype=f32)
    x = (j - cx) - torch.tensor(a.shift_x, dtype=f32)
    # cosf / sinf of the float32 angle, correctly rounded (torch.cos in float32 may be an ulp off)
    ang = torch.tensor(a.angle, dtype=f32).double()
    c, s = torch.cos(ang).to(f32), torch.sin(ang).to(f32)
    scale = torch.tensor(a.scale, dtype=f32)
    yr = (c * y - s * x) / scale
    xr = (s * y + c * x) / scale
    if a.flip:
        xr = -xr
    return yr + cy, xr + cx


def augment(x, a):
    """A(x) for images x (B, C, H, W) under fixed AugmentParams a, as augment_forward in
    augment.c: colour (x + brightness; for C > 1 mix each pixel with its channel mean by
    saturation; mix with the image mean by contrast), then bilinear resampling at the
    source coordinates with zeros outside the image, then the cutout square set to zero.
    Differentiable in x (affine); the resampling weights are float32 in both precisions."""
    B, C, H, W = x.shape
    x = x + a.brightness
    if C > 1:
        m = x.mean(dim=1, keepdim=True)
        x = (x - m) * a.saturation + m
    mu = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mu) * a.contrast + mu
    si, sj = augment_source_coords(a, H, W)
    i0, j0 = torch.floor(si), torch.floor(sj)
    fi, fj = si - i0, sj - j0
    i0, j0 = i0.long(), j0.long()
    flat = x.reshape(B, C, H * W)
    out = torch.zeros(B, C, H * W, dtype=x.dtype)
    for di in (0, 1):
        for dj in (0, 1):
            ii, jj = i0 + di, j0 + dj
            wgt = (fi if di else 1 - fi) * (fj if dj else 1 - fj)
            valid = (ii >= 0) & (ii < H) & (jj >= 0) & (jj < W)
            idx = (ii.clamp(0, H - 1) * W + jj.clamp(0, W - 1)).reshape(-1)
            wgt = torch.where(valid, wgt, torch.zeros_like(wgt)).reshape(-1).to(x.dtype)
            out = out + wgt * flat[:, :, idx]
    if a.cut_size > 0:
        i = torch.arange(H).reshape(H, 1)
        j = torch.arange(W).reshape(1, W)
        cut = (i >= a.cut_y) & (i < a.cut_y + a.cut_size) & (j >= a.cut_x) & (j < a.cut_x + a.cut_size)
        out = out * (~cut).reshape(-1).to(x.dtype)
    return out.reshape(B, C, H, W)


def hypergradient_dsa(model, x_real, y_real, x_syn, y_syn, timesteps, noise_real, noise_syn,
                      alpha_bar, aug, dm_weight=0.0):
    """(matching_loss(A(x_real), A(x_syn)), its gradient in x_syn) with one augmentation A
    applied to both batches (DSA), by double backpropagation through A and the model."""
    x_syn = x_syn.detach().clone().requires_grad_(True)
    loss = matching_loss(model, augment(x_real, aug), y_real, augment(x_syn, aug), y_syn, timesteps,
                         noise_real, noise_syn, alpha_bar, dm_weight)
    (grad,) = torch.autograd.grad(loss, x_syn)
    return loss.detach(), grad
