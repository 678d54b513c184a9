"""Reference values for tests/test_metrics.c, computed the plain way with numpy/scipy.

Usage: metrics_ref.py CASE.bin OUT.bin [CASE.bin OUT.bin ...]

CASE.bin (little-endian), written by the C test:
  int32 magic 0x4D433244 ("D2CM"), n_real, n_fake, d, n_classes, k
  float32 real (n_real, d), float32 fake (n_fake, d),
  float32 probs (n_fake, n_classes), int64 labels (n_fake),
  int32 kid_subsets S, kid_subset_size m, int32 real subset indices (S, m),
  int32 fake subset indices (S, m)
OUT.bin: float64 values, in this order
  fid, is_mean, is_std, precision, recall, density, coverage, class_accuracy,
  precision, recall, density, coverage with open balls (strict <),
  real mean (d), real cov (d, d), real radii (n_real), fake radii (n_fake),
  kid mean, kid std

FID follows pytorch-fid's calculate_frechet_distance (scipy.linalg.sqrtm of the product,
eps offset when it is not finite, real part). IS follows the original implementation:
splits [i n // 10, (i + 1) n // 10), p(y) the split mean, std with ddof 0. Precision /
recall / density / coverage use k-NN radii in squared Euclidean distance computed
directly as sum((a - b)^2) in float64, the point itself excluded by index. KID is
torch-fidelity's kid: per subset the unbiased MMD^2 with the kernel (x.y / d + 1)^3,
  (sum K_XX - tr K_XX + sum K_YY - tr K_YY) / (m (m - 1)) - 2 sum K_XY / m^2,
mean and std (ddof 0) over the subsets, on the subset indices the C test drew.
"""
import sys

import numpy as np
import scipy.linalg

MAGIC = 0x4D433244


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    diff = mu1 - mu2
    covmean, _ = scipy.linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError("imaginary component %g" % np.max(np.abs(covmean.imag)))
        covmean = covmean.real
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


def inception_score(probs, splits=10):
    n = probs.shape[0]
    scores = []
    for i in range(splits):
        part = probs[i * n // splits:(i + 1) * n // splits]
        py = part.mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(part > 0, part * (np.log(part) - np.log(py)), 0.0)
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return np.mean(scores), np.std(scores)


def sq_distances(a, b):
    """(len(a), len(b)) squared Euclidean distances, row by row."""
    return np.stack([((b - a[i]) ** 2).sum(axis=1) for i in range(len(a))])


def knn_radii(x, k):
    dist = sq_distances(x, x)
    radii = np.empty(len(x))
    for i in range(len(x)):
        others = np.delete(dist[i], i)
        radii[i] = np.sort(others)[k - 1]
    return radii


def prdc(real_fake, real_radii, fake_radii, k, inside):
    """real_fake (n_real, n_fake) distances; inside(dist, radius) -> bool array."""
    in_real_ball = inside(real_fake, real_radii[:, None])  # (n_real, n_fake)
    in_fake_ball = inside(real_fake, fake_radii[None, :])
    precision = in_real_ball.any(axis=0).mean()
    recall = in_fake_ball.any(axis=1).mean()
    density = in_real_ball.sum(axis=0).mean() / k
    coverage = in_real_ball.any(axis=1).mean()
    return [precision, recall, density, coverage]


def kid(real, fake, idx_real, idx_fake):
    d = real.shape[1]
    values = []
    for ir, jf in zip(idx_real, idx_fake):
        x, y = real[ir], fake[jf]
        m = len(x)
        k_xx = (x @ x.T / d + 1) ** 3
        k_yy = (y @ y.T / d + 1) ** 3
        k_xy = (x @ y.T / d + 1) ** 3
        values.append((k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
                      - 2 * k_xy.sum() / (m * m))
    return np.mean(values), np.std(values)


def reference(path):
    raw = open(path, "rb").read()
    header = np.frombuffer(raw, dtype="<i4", count=6)
    magic, n_real, n_fake, d, n_classes, k = (int(v) for v in header)
    assert magic == MAGIC, "bad magic in " + path
    offset = header.nbytes

    def take(dtype, count):
        nonlocal offset
        arr = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
        offset += arr.nbytes
        return arr

    real = take("<f4", n_real * d).reshape(n_real, d).astype(np.float64)
    fake = take("<f4", n_fake * d).reshape(n_fake, d).astype(np.float64)
    probs = take("<f4", n_fake * n_classes).reshape(n_fake, n_classes).astype(np.float64)
    labels = take("<i8", n_fake)
    subsets, m = (int(v) for v in take("<i4", 2))
    idx_real = take("<i4", subsets * m).reshape(subsets, m)
    idx_fake = take("<i4", subsets * m).reshape(subsets, m)
    assert offset == len(raw), "trailing bytes in " + path

    mu_r, cov_r = real.mean(axis=0), np.cov(real, rowvar=False)
    mu_f, cov_f = fake.mean(axis=0), np.cov(fake, rowvar=False)
    fid = frechet_distance(mu_r, cov_r, mu_f, cov_f)
    is_mean, is_std = inception_score(probs)
    accuracy = (probs.argmax(axis=1) == labels).mean()

    real_radii, fake_radii = knn_radii(real, k), knn_radii(fake, k)
    real_fake = sq_distances(real, fake)
    closed = prdc(real_fake, real_radii, fake_radii, k, lambda a, b: a <= b)
    strict = prdc(real_fake, real_radii, fake_radii, k, lambda a, b: a < b)
    kid_mean, kid_std = kid(real, fake, idx_real, idx_fake)
    return np.concatenate([[fid, is_mean, is_std], closed, [accuracy], strict,
                           mu_r, cov_r.ravel(), real_radii, fake_radii, [kid_mean, kid_std]]).astype("<f8")


def main(argv):
    if len(argv) < 2 or len(argv) % 2:
        sys.exit("usage: metrics_ref.py CASE.bin OUT.bin [CASE.bin OUT.bin ...]")
    for case_path, out_path in zip(argv[0::2], argv[1::2]):
        reference(case_path).tofile(out_path)


if __name__ == "__main__":
    main(sys.argv[1:])
