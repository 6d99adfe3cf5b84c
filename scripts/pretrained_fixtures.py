#!/usr/bin/env python3
"""Reference outputs of the pretrained networks, made once with PyTorch.

Writes tests/fixtures/pretrained/*.npy: for EfficientNet-Lite0 a fixed
input, its logits and the input gradient of a log-softmax class term; for
the DCGAN faces generator a fixed code, its images and the code gradient of
a fixed linear function of the images. The Rust networks must match them to
float32 tolerance (tests/it/pretrained.rs).

The networks are written here in plain PyTorch from the architecture
descriptions (EfficientNet-Lite0: MBConv blocks, ReLU6, TensorFlow "same"
padding, batch-norm eps 1e-3; DCGAN: the PyTorch tutorial's generator), so
that the fixture checks our Rust code against an independent framework.
With --photo IMAGE it also prints EfficientNet's top-5 ImageNet classes of
a photo (center crop, 224x224), the check that the architecture and the
input normalisation are the ones the weights were trained with. With
--onnx it also exports both networks with their weights to ONNX, with
sidecars, into $PPGN_HOME/onnx (networks ppgn did not train, brought the
way a user brings theirs: docs/onnx.md, the README's example, `ppgn bench`'s
workload w2-onnx); --onnx-only exports them without writing the fixtures
(what `ppgn bench --workloads w2-onnx` runs when they are missing).
Nothing of these is committed.

Usage (a development tool; PyTorch is never a dependency of ppgn):
    apt-get install python3-torch python3-numpy python3-pil   # or pip install torch numpy pillow
    cargo run --release -- models fetch
    /usr/bin/python3 scripts/pretrained_fixtures.py [--photo cat.png]

Weights are read from $PPGN_HOME (default ~/.cache/ppgn) as installed by
`ppgn models fetch`.
"""

import argparse
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "pretrained")
HOME = os.environ.get("PPGN_HOME", os.path.expanduser("~/.cache/ppgn"))
EFF = os.path.join(HOME, "efficientnet-lite0", "efficientnet-lite0-57934424.pth")
DCGAN = os.path.join(HOME, "dcgan-faces", "weights.tar")

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
# (repeats, kernel, stride, expansion, in, out)
STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
          (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
          (1, 3, 1, 6, 192, 320)]


def same_pad(x, k, s):
    """TensorFlow "same": output ceil(n / s), the odd pixel at the end."""
    h, w = x.shape[-2:]
    ph = max((-(-h // s) - 1) * s + k - h, 0)
    pw = max((-(-w // s) - 1) * s + k - w, 0)
    return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])


class ConvBn(nn.Module):
    def __init__(self, cin, cout, k, s, groups=1):
        super().__init__()
        self.k, self.s = k, s
        self.conv = nn.Conv2d(cin, cout, k, s, bias=False, groups=groups)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x):
        return self.bn(self.conv(same_pad(x, self.k, self.s)))


class Lite0(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = ConvBn(3, 32, 3, 2)
        self.blocks = nn.ModuleList()
        self.specs = []
        for reps, k, s, e, cin, cout in STAGES:
            for r in range(reps):
                ci = cin if r == 0 else cout
                mid = ci * e
                b = nn.Module()
                b.expand = ConvBn(ci, mid, 1, 1) if mid != ci else None
                b.dw = ConvBn(mid, mid, k, s if r == 0 else 1, groups=mid)
                b.project = ConvBn(mid, cout, 1, 1)
                b.skip = (s if r == 0 else 1) == 1 and ci == cout
                self.blocks.append(b)
        self.head = ConvBn(320, 1280, 1, 1)
        self.fc = nn.Linear(1280, 1000)

    def load(self, sd):
        def cb(m, conv, bn):
            m.conv.weight.data.copy_(sd[conv + ".weight"])
            for p in ["weight", "bias", "running_mean", "running_var"]:
                getattr(m.bn, p).data.copy_(sd[bn + "." + p])
        cb(self.stem, "_conv_stem", "_bn0")
        for i, b in enumerate(self.blocks):
            p = "_blocks.%d." % i
            if b.expand is not None:
                cb(b.expand, p + "_expand_conv", p + "_bn0")
            cb(b.dw, p + "_depthwise_conv", p + "_bn1")
            cb(b.project, p + "_project_conv", p + "_bn2")
        cb(self.head, "_conv_head", "_bn1")
        self.fc.weight.data.copy_(sd["_fc.weight"])
        self.fc.bias.data.copy_(sd["_fc.bias"])

    def forward(self, x):
        y = F.relu6(self.stem(x))
        for b in self.blocks:
            z = y
            if b.expand is not None:
                z = F.relu6(b.expand(z))
            z = F.relu6(b.dw(z))
            z = b.project(z)
            y = z + y if b.skip else z
        y = F.relu6(self.head(y))
        return self.fc(y.mean((2, 3)))


class DcganG(nn.Module):
    """nz=100, ngf=64, 64x64 RGB, tanh (the PyTorch DCGAN tutorial's G)."""

    def __init__(self, nz=100, ngf=64):
        super().__init__()
        chans = [nz, ngf * 8, ngf * 4, ngf * 2, ngf, 3]
        layers = []
        for i in range(5):
            layers.append(nn.ConvTranspose2d(chans[i], chans[i + 1], 4,
                                             1 if i == 0 else 2, 0 if i == 0 else 1, bias=False))
            if i < 4:
                layers += [nn.BatchNorm2d(chans[i + 1]), nn.ReLU(True)]
        layers.append(nn.Tanh())
        self.main = nn.Sequential(*layers)

    def forward(self, z):
        return self.main(z.view(z.shape[0], -1, 1, 1))


def save(name, a):
    os.makedirs(OUT, exist_ok=True)
    np.save(os.path.join(OUT, name), np.ascontiguousarray(a, dtype=np.float32))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--photo", help="print EfficientNet's top-5 classes of this image")
    ap.add_argument("--onnx", action="store_true", help="export both networks to $PPGN_HOME/onnx")
    ap.add_argument("--onnx-only", action="store_true",
                    help="only export both networks to $PPGN_HOME/onnx (no fixtures)")
    args = ap.parse_args()
    torch.set_grad_enabled(True)

    net = Lite0().eval()
    net.load(torch.load(EFF, map_location="cpu"))
    for p in net.parameters():
        p.requires_grad_(False)

    if args.photo:
        from PIL import Image
        im = Image.open(args.photo).convert("RGB")
        s = min(im.size)
        left, top = (im.size[0] - s) // 2, (im.size[1] - s) // 2
        im = im.crop((left, top, left + s, top + s)).resize((224, 224), Image.BILINEAR)
        x = torch.tensor(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        x = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
        p = F.softmax(net(x), 1)[0]
        top = torch.topk(p, 5)
        for v, i in zip(top.values.tolist(), top.indices.tolist()):
            print("%4d %.4f" % (i, v))

    if args.onnx_only:
        export_onnx(net, dcgan())
        return

    # EfficientNet: two 80x80 inputs, logits, and d log softmax[281] / d x
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 80, 80, generator=g)
    x.requires_grad_(True)
    logits = net(x)
    F.log_softmax(logits, 1)[:, 281].sum().backward()
    save("efficientnet_input.npy", x.detach().permute(0, 2, 3, 1).numpy())  # NHWC
    save("efficientnet_logits.npy", logits.detach().numpy())
    save("efficientnet_grad.npy", x.grad.permute(0, 2, 3, 1).numpy())

    # DCGAN: three codes, images, and d sum(images * r) / d z
    gen = dcgan()
    z = torch.randn(3, 100, generator=g)
    z.requires_grad_(True)
    img = gen(z)
    r = torch.randn(img.shape, generator=g)
    (img * r).sum().backward()
    save("dcgan_code.npy", z.detach().numpy())
    save("dcgan_images.npy", img.detach().permute(0, 2, 3, 1).numpy())  # NHWC
    save("dcgan_weights_r.npy", r.permute(0, 2, 3, 1).numpy())
    save("dcgan_grad.npy", z.grad.numpy())
    print("wrote", os.path.normpath(OUT), "with torch", torch.__version__, file=sys.stderr)
    if args.onnx:
        export_onnx(net, gen)


def dcgan():
    """The DCGAN faces generator with its weights, frozen."""
    ck = torch.load(DCGAN, map_location="cpu")["netG_state_dict"]
    gen = DcganG().eval()
    gen.load_state_dict(ck)
    for p in gen.parameters():
        p.requires_grad_(False)
    return gen


def export_onnx(eff, gen):
    """Both networks as ONNX files (opset 17) with sidecars, in $PPGN_HOME/onnx."""
    out = os.path.join(HOME, "onnx")
    os.makedirs(out, exist_ok=True)
    torch.onnx.export(eff, torch.zeros(1, 3, 224, 224), os.path.join(out, "efficientnet-lite0.onnx"),
                      opset_version=17, input_names=["image"], output_names=["logits"])
    torch.onnx.export(gen, torch.zeros(1, 100), os.path.join(out, "dcgan-faces.onnx"),
                      opset_version=17, input_names=["z"], output_names=["image"])
    names = open(os.path.join(HERE, "..", "src", "data", "imagenet_classes.txt")).read()
    with open(os.path.join(out, "imagenet_classes.txt"), "w") as f:
        f.write(names)
    with open(os.path.join(out, "efficientnet-lite0.toml"), "w") as f:
        f.write('[network]\nonnx = "efficientnet-lite0.onnx"\nkind = "classifier"\n'
                'image = [3, 224, 224]\nrange = [0.0, 1.0]\n'
                'mean = %s\nstd = %s\nclasses = "imagenet_classes.txt"\n' % (MEAN, STD))
    with open(os.path.join(out, "dcgan-faces.toml"), "w") as f:
        f.write('[network]\nonnx = "dcgan-faces.onnx"\nkind = "generator"\n'
                'code = 100\nprior = "gaussian"\nsigma = 1.0\noutput_range = [-1.0, 1.0]\n')
    print("wrote", out, file=sys.stderr)


if __name__ == "__main__":
    main()
