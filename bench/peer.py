#!/usr/bin/env python3
"""The PyTorch peer of `ppgn bench`: the same networks with the same
weights, the same sampler step, the same thread count. A development tool,
never a dependency of ppgn (bench/README.md says how to install it).

One step of every workload is what `ppgn bench` times: evaluate the
gradient of the target at the chains' positions (forward through the
networks, backward to the position; weights do not require gradients),
then the MALA-approx update (eq. 13) with the step normalised by each
chain's mean absolute gradient, noise eps3 and clipping.

  W1: Fashion-MNIST PPGN (`ppgn` preset): x = G(h); prior E(x) - h (no
      gradient through it), class term d log softmax(C(x))_y / dh;
      eps1 1e-5, eps2 1, eps3 1e-17, step 0.2, h clipped to [0, 30].
  W2: DCGAN faces + EfficientNet-Lite0 (`faces` preset): x = (G(z)+1)/2,
      bilinear 64 -> 224, ImageNet normalisation; prior N(0, I) with
      eps1 0.01; eps3 0.01, step 0.05, class 837.
  W3: EfficientNet-Lite0 on 224x224 pixels, class 980, step 0.005,
      pixels clipped to [0, 1].

Prints one JSON line per measurement: workload, chains, ms_per_step, peak_mb.
"""

import argparse
import json
import os
import resource
import struct
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from pretrained_fixtures import DcganG, Lite0, MEAN, STD  # noqa: E402


def read_safetensors(path):
    """A safetensors file as a dict of torch tensors (f32 only)."""
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "F32", (k, v["dtype"])
        s, e = v["data_offsets"]
        a = np.frombuffer(b[8 + n + s:8 + n + e], dtype=np.float32).reshape(v["shape"])
        out[k] = torch.tensor(a)
    return out


class FashionStack:
    """The shipped classifier (E, C) and generator G, NCHW."""

    def __init__(self, models):
        self.c = read_safetensors(os.path.join(models, "classifier.safetensors"))
        self.g = read_safetensors(os.path.join(models, "generator.safetensors"))

    def encode_pre_relu(self, x):  # x [n, 1, 28, 28] in [0, 1] -> u [n, 256], h = relu(u)
        c = self.c
        y = x * 2 - 1
        y = F.relu(F.conv2d(y, c["conv1.weight"], c["conv1.bias"], 1, 1))
        y = F.relu(F.conv2d(y, c["conv2.weight"], c["conv2.bias"], 2, 1))
        y = F.relu(F.conv2d(y, c["conv3.weight"], c["conv3.bias"], 2, 1))
        y = y.permute(0, 2, 3, 1).flatten(1)  # ours flattens NHWC
        return F.linear(y, c["fc6.weight"], c["fc6.bias"])

    def encode(self, x):  # x [n, 1, 28, 28] in [0, 1] -> h [n, 256]
        return F.relu(self.encode_pre_relu(x))

    def logits(self, x):
        return F.linear(self.encode(x), self.c["fc8.weight"], self.c["fc8.bias"])

    def generate(self, h):  # h [n, 256] -> x [n, 1, 28, 28]
        g, n = self.g, h.shape[0]
        y = F.leaky_relu(F.linear(h, g["fc1.weight"], g["fc1.bias"]), 0.2)
        y = F.leaky_relu(F.linear(y, g["fc2.weight"], g["fc2.bias"]), 0.2)
        y = y.view(n, 7, 7, -1).permute(0, 3, 1, 2)
        for name in ["up1", "up2"]:
            w = g[name + ".weight"]
            y = F.conv2d(y, w, g[name + ".bias"], 1, 1)  # [n, 4c, h, w], channel (r, s, c)
            c4, hh, ww = y.shape[1], y.shape[2], y.shape[3]
            c = c4 // 4
            y = y.view(n, 2, 2, c, hh, ww).permute(0, 3, 4, 1, 5, 2).reshape(n, c, 2 * hh, 2 * ww)
            y = F.leaky_relu(y, 0.2)
        return torch.sigmoid(F.conv2d(y, g["out.weight"], g["out.bias"], 1, 1))


def mala_approx(pos, grad, step, eps3, clip, gen):
    per = grad[0].numel()
    scale = per / grad.abs().flatten(1).sum(1).clamp_min(1e-30)
    upd = grad * step * scale.view(-1, *([1] * (grad.dim() - 1)))
    x = pos + upd
    if eps3 > 0:
        x = x + torch.randn(x.shape, generator=gen) * eps3
    if clip is not None:
        x = x.clamp(*clip)
    return x


def workload(name, n, args):
    gen = torch.Generator().manual_seed(7)
    if name == "w1":
        s = FashionStack(args.models)
        ys = torch.arange(n) % 10
        pos = F.relu(torch.randn(n, 256, generator=gen) * 2)

        def grad(h):
            h = h.detach().requires_grad_(True)
            x = s.generate(h)
            with torch.no_grad():
                prior = s.encode(x) - h
            lp = F.log_softmax(s.logits(x), 1)[torch.arange(n), ys].sum()
            (g,) = torch.autograd.grad(lp, h)
            return 1e-5 * prior + g

        step = lambda p: mala_approx(p, grad(p), 0.2, 1e-17, (0.0, 30.0), gen)
    else:
        eff = Lite0().eval()
        eff.load(torch.load(os.path.join(args.home, "efficientnet-lite0", "efficientnet-lite0-57934424.pth"), map_location="cpu"))
        for p in eff.parameters():
            p.requires_grad_(False)
        mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
        if name in ("w2", "w2-onnx"):  # w2-onnx: the networks its ONNX files came from
            g = DcganG().eval()
            g.load_state_dict(torch.load(os.path.join(args.home, "dcgan-faces", "weights.tar"), map_location="cpu")["netG_state_dict"])
            for p in g.parameters():
                p.requires_grad_(False)
            pos = torch.randn(n, 100, generator=gen)

            def grad(z):
                z = z.detach().requires_grad_(True)
                x = (g(z) + 1) / 2
                x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
                lp = F.log_softmax(eff((x - mean) / std), 1)[:, 837].sum()
                (gz,) = torch.autograd.grad(lp, z)
                return 0.01 * -z + gz

            step = lambda p: mala_approx(p, grad(p), 0.05, 0.01, None, gen)
        else:
            pos = torch.full((n, 3, 224, 224), 0.5)

            def grad(x):
                x = x.detach().requires_grad_(True)
                lp = F.log_softmax(eff((x - mean) / std), 1)[:, 980].sum()
                (gx,) = torch.autograd.grad(lp, x)
                return gx

            step = lambda p: mala_approx(p, grad(p), 0.005, 0.01, (0.0, 1.0), gen)
    for _ in range(args.warmup):
        pos = step(pos)
    t0, k = time.perf_counter(), 0
    while k < 3 or time.perf_counter() - t0 < args.seconds:
        pos = step(pos)
        k += 1
    ms = (time.perf_counter() - t0) * 1000 / k
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"workload": name, "chains": n, "ms_per_step": ms, "peak_mb": peak, "torch": torch.__version__}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workloads", default="w1,w2,w3")
    ap.add_argument("--w1-chains", default="1,8,64,256")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--models", default="models/fashion-mnist")
    ap.add_argument("--home", default=os.environ.get("PPGN_HOME", os.path.expanduser("~/.cache/ppgn")))
    ap.add_argument("--one", help="WORKLOAD:CHAINS, in this process")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(True)
    if args.one:
        w, n = args.one.split(":")
        r = workload(w, int(n), args)
        print(json.dumps(r))
        print("torch {:<3} {:>4} chains: {:>9.1f} ms/step".format(w, n, r["ms_per_step"]), file=sys.stderr)
        return
    # each measurement in a process of its own, as ours, so peaks are separate
    for w in args.workloads.split(","):
        chains = args.w1_chains.split(",") if w == "w1" else ["1", "8"]
        for n in chains:
            cmd = [sys.executable, os.path.abspath(__file__), "--one", f"{w}:{n}"] + [
                a for kv in [("--threads", args.threads), ("--seconds", args.seconds), ("--warmup", args.warmup),
                             ("--models", args.models), ("--home", args.home)] for a in (kv[0], str(kv[1]))]
            out = subprocess.run(cmd, stdout=subprocess.PIPE, check=True).stdout.decode()
            print(out.strip(), flush=True)


if __name__ == "__main__":
    main()
