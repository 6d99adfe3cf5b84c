#!/usr/bin/env python3
"""The score prior's recipe outside the engine (docs/score-prior.md, "How it
starts"): the shipped model's weights and the same recipe in PyTorch.

    /usr/bin/python3 scripts/score_start_check.py [--epochs N] [--starts LIST] [--draws]

1. With --draws: the shipped `code-score` model's weights in a PyTorch copy
   of its network, drawn alone by the `ppgn-score` preset's reverse
   diffusion (200 levels from 10 to 0.01, 5,000 draws, torch's generator
   seeded 0), and the Frechet distance of the draws to the validation
   codes in the per-unit standardised code, as the card measures it. It
   checks that the engine's network and sampler are what the card says,
   by an independent implementation (the noise draws differ, so the
   distance agrees only within its sampling error).
2. For each start in --starts (default: torch,he,zero), the recipe of
   `ppgn train code-score` (EDM's preconditioning and loss weighting, ln s
   ~ N(-1.2, 1.2^2), Adam at 1e-3, batch 256, the codes of the first 55,000
   training images) for --epochs epochs from that start, printing the mean
   weighted loss of every epoch:
   - torch: PyTorch's default start of nn.Linear (uniform, +-1/sqrt(fan_in));
   - he: He's normal (std sqrt(2 / fan_in)) everywhere and biases 0, the
     start `ppgn train code-score` had before --zero-init;
   - zero: he, with each residual block's second layer and the output
     layer at zero (`--zero-init`).

Reads models/fashion-mnist/{classifier,code-score}.safetensors and the
Fashion-MNIST IDX files from $PPGN_FASHION_MNIST or
/usr/share/datasets/fashion-mnist. One thread (torch.set_num_threads(1)).
"""

import argparse
import os
import sys
import time

import torch
from torch.nn import functional as F

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "bench"))
from peer import FashionStack, read_safetensors  # noqa: E402
from user_classifier import idx  # noqa: E402

MODELS = os.path.join(ROOT, "models", "fashion-mnist")
VALIDATION = 5000
FREQUENCIES = 16


def pre_relu_codes(models, images):
    """The classifier's code before its ReLU (the bench peer's copy of the
    shipped classifier), a block of images at a time."""
    stack = FashionStack(models)
    with torch.no_grad():
        return torch.cat([stack.encode_pre_relu(images[i:i + 2000]) for i in range(0, len(images), 2000)])


def frechet(a, b):
    a, b = a.double(), b.double()
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    roots = torch.linalg.eigvals(ca @ cb).real.clamp(min=0).sqrt().sum()
    return ((a.mean(0) - b.mean(0)) ** 2).sum().item() + (ca.trace() + cb.trace() - 2 * roots).item()


OMEGA = 0.5 * (16 / 0.5) ** (torch.arange(FREQUENCIES, dtype=torch.float64) / (FREQUENCIES - 1))


def embedding(c_noise):
    a = c_noise[:, None] * OMEGA[None, :]
    return torch.cat([a.sin(), a.cos()], 1)


class Net(torch.nn.Module):
    """F of src/models/fashion/code_score.rs: a residual MLP whose blocks
    each read the noise features again."""

    def __init__(self, dim=256, width=512, blocks=3):
        super().__init__()
        e = 2 * FREQUENCIES
        self.dim = dim
        self.fc_in = torch.nn.Linear(dim + e, width)
        self.blocks = torch.nn.ModuleList(
            torch.nn.ModuleList([torch.nn.Linear(width + e, width), torch.nn.Linear(width, width)])
            for _ in range(blocks))
        self.fc_out = torch.nn.Linear(width, dim)

    def forward(self, inp):
        e = inp[:, self.dim:]
        h = F.relu(self.fc_in(inp))
        for fc1, fc2 in self.blocks:
            h = h + fc2(F.relu(fc1(torch.cat([h, e], 1))))
        return self.fc_out(h)


def precondition(sigma):
    total = sigma ** 2 + 1
    return 1 / total, sigma / total.sqrt(), 1 / total.sqrt(), sigma.log() / 4


def denoise(net, v, sigma):
    c_skip, c_out, c_in, c_noise = precondition(sigma)
    inp = torch.cat([v * c_in[:, None], embedding(c_noise.double()).to(v.dtype)], 1)
    return c_skip[:, None] * v + c_out[:, None] * net(inp)


def shipped(w):
    net = Net()
    state = {f"fc_in.{p}": w[f"fc_in.{p}"] for p in ("weight", "bias")}
    state.update({f"fc_out.{p}": w[f"fc_out.{p}"] for p in ("weight", "bias")})
    for i in range(3):
        for j, layer in enumerate(("fc1", "fc2")):
            for p in ("weight", "bias"):
                state[f"blocks.{i}.{j}.{p}"] = w[f"b{i}.{layer}.{p}"]
    net.load_state_dict(state)
    return net


def reverse_diffusion(net, n=5000, levels=200, seed=0):
    """The ppgn-score preset's ladder (src/sampler/schedule.rs, rho 7)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, levels, dtype=torch.float64)
    ladder = (10.0 ** (1 / 7) + t * (0.01 ** (1 / 7) - 10.0 ** (1 / 7))) ** 7
    v = torch.randn(n, 256, generator=g) * ladder[0].item()
    with torch.no_grad():
        for i in range(levels):
            now = ladder[i].item()
            after = ladder[i + 1].item() if i + 1 < levels else 0.0
            score = (denoise(net, v, torch.full((n,), now)) - v) / now ** 2
            var = now ** 2 - after ** 2
            v = v + var * score
            if after > 0:
                v = v + var ** 0.5 * torch.randn(n, 256, generator=g)
    return v


def train(codes, start, epochs, batch=256, seed=8):
    torch.manual_seed(seed)
    net = Net()
    if start in ("he", "zero"):
        for m in net.modules():
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.normal_(m.weight, 0, (2.0 / m.weight.shape[1]) ** 0.5)
                torch.nn.init.zeros_(m.bias)
    if start == "zero":
        with torch.no_grad():
            for _, fc2 in net.blocks:
                fc2.weight.zero_()
                fc2.bias.zero_()
            net.fc_out.weight.zero_()
            net.fc_out.bias.zero_()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    t0 = time.time()
    for epoch in range(epochs):
        perm = torch.randperm(len(codes))
        total, steps = 0.0, 0
        for i in range(0, len(codes) - batch + 1, batch):
            v = codes[perm[i:i + batch]]
            sigma = torch.exp(torch.randn(batch) * 1.2 - 1.2)
            y = v + torch.randn_like(v) * sigma[:, None]
            c_skip, c_out, c_in, c_noise = precondition(sigma)
            inp = torch.cat([y * c_in[:, None], embedding(c_noise.double()).float()], 1)
            target = (v - c_skip[:, None] * y) / c_out[:, None]
            loss = ((net(inp) - target) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, steps = total + loss.item(), steps + 1
        print(f"start {start}: epoch {epoch + 1}, mean weighted loss {total / steps:.4f} ({time.time() - t0:.0f} s)", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--starts", default="torch,he,zero")
    ap.add_argument("--draws", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    data = os.environ.get("PPGN_FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
    images = torch.tensor(idx(os.path.join(data, "train-images-idx3-ubyte.gz")), dtype=torch.float32)
    u = pre_relu_codes(MODELS, images.unsqueeze(1) / 255)
    w = read_safetensors(os.path.join(MODELS, "code-score.safetensors"))
    train_u, val_u = u[:-VALIDATION], u[-VALIDATION:]
    gap = max((train_u.mean(0) - w["norm.mean"]).abs().max().item(), (train_u.std(0) - w["norm.std"]).abs().max().item())
    print(f"codes: largest difference from the model's standardisation {gap:.1e}")
    z_train = (train_u - w["norm.mean"]) / w["norm.std"]
    z_val = (val_u - w["norm.mean"]) / w["norm.std"]
    print(f"floor (5,000 training codes): {frechet(z_train[:VALIDATION], z_val):.2f}")
    if a.draws:
        print(f"shipped model, drawn in PyTorch: {frechet(reverse_diffusion(shipped(w)), z_val):.2f}")
    for start in a.starts.split(","):
        if start not in ("torch", "he", "zero"):
            raise SystemExit(f"--starts: unknown start {start!r}; the starts are torch, he and zero")
        train(z_train, start, a.epochs)


if __name__ == "__main__":
    main()
