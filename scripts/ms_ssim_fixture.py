#!/usr/bin/env python3
"""Writes tests/fixtures/ms_ssim.json: a few 28x28 image pairs and their
MS-SSIM as ppgn defines it for Fashion-MNIST (src/eval/ms_ssim.rs): three
scales (28, 14, 7; 2x2 average pooling between them), a Gaussian window of
sigma 0.8 truncated at 3.5 sigma (7x7), 'reflect' borders, the border of
3 pixels cropped before averaging, Wang et al.'s first three scale weights
renormalised. Each scale's SSIM is checked against scikit-image's
structural_similarity, the reference implementation.

Run: pip install numpy scipy scikit-image && python3 scripts/ms_ssim_fixture.py
"""
import json
import numpy as np
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

SIGMA, PAD = 0.8, 3
WEIGHTS = np.array([0.0448, 0.2856, 0.3001])
WEIGHTS = WEIGHTS / WEIGHTS.sum()
C1, C2 = 0.01 ** 2, 0.03 ** 2


def stats(x, y):
    f = lambda a: gaussian_filter(a, SIGMA, mode="reflect", truncate=3.5)
    ux, uy = f(x), f(y)
    vx, vy, vxy = f(x * x) - ux * ux, f(y * y) - uy * uy, f(x * y) - ux * uy
    cs = (2 * vxy + C2) / (vx + vy + C2)
    s = (2 * ux * uy + C1) / (ux * ux + uy * uy + C1) * cs
    crop = lambda a: a[PAD:-PAD, PAD:-PAD].mean()
    return crop(s), crop(cs)


def pool(a):
    h, w = a.shape
    return a.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def ms_ssim(x, y):
    out = 1.0
    for k in range(3):
        s, cs = stats(x, y)
        ref = structural_similarity(x, y, data_range=1.0, gaussian_weights=True,
                                    sigma=SIGMA, use_sample_covariance=False)
        assert abs(ref - s) < 1e-10, (k, ref, s)
        if k < 2:
            out *= max(cs, 0.0) ** WEIGHTS[k]
            x, y = pool(x), pool(y)
        else:
            out *= max(s, 0.0) ** WEIGHTS[k]
    return out


rng = np.random.default_rng(7)
yy, xx = np.mgrid[0:28, 0:28] / 27.0
base = [np.clip(np.sin(6 * xx) * np.cos(4 * yy) * 0.5 + 0.5, 0, 1), (xx > 0.5) * 1.0,
        np.exp(-((xx - 0.5) ** 2 + (yy - 0.4) ** 2) * 20)]
pairs = [(base[0], base[0]), (base[0], base[1]), (base[1], base[2]), (base[2], base[2] * 0.7),
         (base[0], np.clip(base[0] + rng.normal(0, 0.1, (28, 28)), 0, 1)),
         (rng.random((28, 28)), rng.random((28, 28)))]
cases = []
for a, b in pairs:
    a = np.round(a * 255) / 255
    b = np.round(b * 255) / 255
    cases.append({"a": (a * 255).round().astype(int).flatten().tolist(),
                  "b": (b * 255).round().astype(int).flatten().tolist(),
                  "ms_ssim": ms_ssim(a, b)})
with open("tests/fixtures/ms_ssim.json", "w") as f:
    json.dump({"made_by": "scripts/ms_ssim_fixture.py", "cases": cases}, f)
print([round(c["ms_ssim"], 6) for c in cases])
