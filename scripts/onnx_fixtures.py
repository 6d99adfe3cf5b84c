#!/usr/bin/env python3
"""ONNX files and PyTorch reference values for ppgn's ONNX import.

Writes tests/fixtures/onnx/:

- `<name>.onnx`: small random-weight networks exported by PyTorch's
  exporter, which together use every operator ppgn imports: a
  torchvision-style classifier (convolutions with batch norm folded in,
  grouped, depthwise and dilated convolutions, max and average pooling,
  squeeze-excitation, residual additions, HardSwish, SiLU, ELU, GELU,
  PReLU, instance norm, a transpose, padding, Gemm, ReLU6 as Clip,
  dropout), a network of elementwise and shape ops (Split, Slice, Resize
  nearest and linear, Pow, Sqrt, Erf, MatMul, LogSoftmax, ...) at opsets 13
  and 17 (attributes that became inputs), a DCGAN generator (transposed
  convolutions, one with output_padding, batch norm left as
  BatchNormalization) and an up-sample + convolution generator (Gemm, a
  channel-major Reshape, nearest and bilinear up-sampling), a network of
  Softmax, Gather, Unsqueeze, Neg and Exp, nearest up-sampling at opset 9
  (Upsample), and a graph written with onnx.helper for the ops PyTorch
  does not emit (LRN, Identity, Dropout, Sum, Squeeze, Range, and Gelu at
  opset 20);
- `<name>_x.npy` (float32, the input), `<name>_y.npy` (float64, the output
  computed in float64 from the same float32 weights), `<name>_w.npy`
  (float64, fixed random output weights) and `<name>_g.npy` (float64,
  PyTorch autograd's gradient of `sum(w * y)` with respect to the input);
- `torchvision_ops.json`: the operator types this PyTorch's exporter emits
  for random-weight torchvision vgg11, resnet18, mobilenet_v3_small and
  efficientnet_b0 at opset 17, which the suite holds against what ppgn
  imports. (This PyTorch has one exporter, the TorchScript one; the dynamo
  exporter came with PyTorch 2.)

With --torchvision DIR it also writes the four torchvision classifiers
there (random weights, 224 x 224, not committed: 5 to 500 MB each) with an
input, PyTorch's logits and the input gradient of logit 0, for a one-off
check with `ppgn onnx eval` (the loop is in docs/onnx.md).

Usage (a development tool; PyTorch is never a dependency of ppgn):
    apt-get install python3-torch python3-torchvision python3-onnx python3-numpy
    /usr/bin/python3 scripts/onnx_fixtures.py [--torchvision DIR]
Made with Debian 12's torch 1.13.0a0 and torchvision 0.14.1 (checked below).
"""

import io
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

TORCH = "1.13"
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "onnx")


class Classifier(nn.Module):
    """A torchvision-style classifier on 3 x 16 x 16 images, 10 logits."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.grouped = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.BatchNorm2d(8), nn.LeakyReLU(0.1))
        self.depthwise = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Hardswish())
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(8, 4, 1), nn.ReLU(), nn.Conv2d(4, 8, 1), nn.Hardsigmoid()
        )
        self.dilated = nn.Conv2d(8, 12, 3, stride=2, padding=2, dilation=2)
        self.avg = nn.AvgPool2d(2, stride=2)
        self.prelu = nn.PReLU(20)
        self.norm = nn.InstanceNorm2d(20, affine=True)
        self.fc1 = nn.Linear(20 * 5 * 5, 32)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = self.pool(self.stem(x))  # 8 x 8 x 8
        y = self.depthwise(self.grouped(x))
        x = x + y * self.se(y)
        d = self.dilated(x)
        d = d * torch.sigmoid(d)  # SiLU, 12 x 4 x 4
        x = torch.cat([d, self.avg(x)], dim=1)  # 20 x 4 x 4
        x = F.gelu(F.elu(x, 0.7))
        x = self.prelu(x).transpose(2, 3)
        x = self.norm(x)
        x = x - x.mean(dim=(2, 3), keepdim=True)
        x = F.pad(x, (1, 0, 0, 1))  # 20 x 5 x 5
        x = self.drop(F.relu6(self.fc1(torch.flatten(x, 1))))
        return self.fc2(x)


class Elementwise(nn.Module):
    """Elementwise and shape ops on 4 x 6 x 6 inputs, log-probabilities of 6 classes."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(2 * 4 * 5 * 7, 6) * 0.1)
        self.scale = nn.Parameter(torch.rand(1, 4, 1, 1) + 0.5)

    def forward(self, x):
        x = torch.sqrt(x * x + 1.0) - 0.5 + x.pow(3) / 4.0
        a, b = torch.split(x, [1, 3], dim=1)
        x = torch.cat([b, torch.erf(a)], dim=1) * self.scale
        x = 2.0 - torch.tanh(x) / 3.0
        x = x[:, :, 1:6, :]  # 4 x 5 x 6
        n = F.interpolate(x, scale_factor=2, mode="nearest")  # 4 x 10 x 12
        x = F.interpolate(n, size=(5, 7), mode="bilinear", align_corners=False) + torch.sigmoid(x)[:, :, :, :1]
        x = torch.cat([x, x.mean(dim=(2, 3), keepdim=True).expand(-1, -1, 5, 7)], dim=1)
        x = torch.matmul(torch.flatten(x, 1), self.w)
        return F.log_softmax(x, dim=1)


class Dcgan(nn.Module):
    """A DCGAN generator: code 16 -> 3 x 16 x 16 in [-1, 1]."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose2d(16, 12, 4, 1, 0, bias=False), nn.BatchNorm2d(12), nn.ReLU(),
            nn.ConvTranspose2d(12, 6, 4, 2, 1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
            nn.ConvTranspose2d(6, 3, 3, 2, 1, output_padding=1), nn.Tanh(),
        )

    def forward(self, z):
        return self.net(z.view(z.shape[0], 16, 1, 1))


class Upsampler(nn.Module):
    """An up-sample + convolution generator: code 10 -> 1 x 16 x 16 in [0, 1]."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(10, 8 * 4 * 4)
        self.conv1 = nn.Sequential(nn.Conv2d(8, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.conv2 = nn.Conv2d(6, 1, 3, padding=1)

    def forward(self, z):
        x = self.fc(z).reshape(-1, 8, 4, 4)
        x = self.conv1(F.interpolate(x, scale_factor=2, mode="nearest"))
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return torch.sigmoid(self.conv2(x))


class Shapes(nn.Module):
    """Softmax over channels, a mean over channels, a gather of one channel,
    unsqueezes, Neg and Exp on 3 x 6 x 6 inputs, 4 outputs."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5 * 6 * 6, 4)

    def forward(self, x):
        s = F.softmax(torch.exp(-x * 0.5), dim=1)
        c = torch.cat([s, s.mean(dim=1).unsqueeze(1), s[:, 0].unsqueeze(1)], 1)
        return self.fc(c.reshape(c.shape[0], -1))


class Upsample9(nn.Module):
    """Nearest up-sampling as opset 9 exports it (Upsample), then a convolution."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)

    def forward(self, x):
        return torch.tanh(self.conv(F.interpolate(x, scale_factor=2, mode="nearest")))


def handmade():
    """A graph PyTorch does not export these ops in (its LRN becomes 3-D
    pooling; it drops Identity and Dropout): LRN, Identity, Dropout, Sum,
    Squeeze and Unsqueeze with axes as inputs (opset 13), written with
    onnx.helper; the reference is the same formula in PyTorch."""
    import onnx
    from onnx import TensorProto, helper

    h = helper
    nodes = [
        h.make_node("LRN", ["x"], ["a"], size=3, alpha=0.25, beta=0.75, bias=2.0),
        h.make_node("Identity", ["a"], ["b"]),
        h.make_node("Dropout", ["b"], ["c"]),
        h.make_node("Sum", ["a", "c", "x"], ["s"]),
        h.make_node("Range", ["zero", "five", "two"], ["r"]),
        h.make_node("Gather", ["s", "r"], ["d"], axis=1),
        h.make_node("GlobalAveragePool", ["d"], ["m"]),
        h.make_node("Squeeze", ["m", "axes23"], ["q"]),
        h.make_node("Unsqueeze", ["q", "axes2"], ["u"]),
        h.make_node("Flatten", ["u"], ["y"], axis=1),
    ]
    inits = [h.make_tensor("axes23", TensorProto.INT64, [2], [2, 3]),
             h.make_tensor("axes2", TensorProto.INT64, [1], [2])]
    inits += [h.make_tensor(n, TensorProto.INT64, [], [v]) for n, v in [("zero", 0), ("five", 5), ("two", 2)]]
    graph = h.make_graph(nodes, "handmade", [h.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 4, 4])],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(OUT, "handmade.onnx"))
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 4, 4, generator=gen).float()
    xd = x.double().requires_grad_(True)
    a = F.local_response_norm(xd, 3, alpha=0.25, beta=0.75, k=2.0)
    y = (2 * a + xd)[:, 0:5:2].mean((2, 3))
    w = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    (g,) = torch.autograd.grad((w * y).sum(), xd)
    for k, v in [("x", x), ("y", y.detach()), ("w", w), ("g", g)]:
        save("handmade_" + k, v.numpy())
    print("handmade: opset 13, output", tuple(y.shape))
    # Gelu is an op from opset 20, later than this PyTorch and onnx know
    graph = h.make_graph([h.make_node("Gelu", ["x"], ["y"])], "gelu",
                         [h.make_tensor_value_info("x", TensorProto.FLOAT, [2, 7])],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, [2, 7])])
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 20)]), os.path.join(OUT, "gelu20.onnx"))
    x = (torch.randn(2, 7, generator=gen) * 2).float()
    xd = x.double().requires_grad_(True)
    y = F.gelu(xd)
    w = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    (g,) = torch.autograd.grad((w * y).sum(), xd)
    for k, v in [("x", x), ("y", y.detach()), ("w", w), ("g", g)]:
        save("gelu20_" + k, v.numpy())
    print("gelu20: opset 20, output", tuple(y.shape))


NETWORKS = [
    ("classifier", Classifier, (2, 3, 16, 16), 17),
    ("elementwise", Elementwise, (2, 4, 6, 6), 17),
    ("elementwise13", Elementwise, (2, 4, 6, 6), 13),
    ("dcgan", Dcgan, (2, 16), 17),
    ("upsampler", Upsampler, (2, 10), 17),
    ("shapes", Shapes, (2, 3, 6, 6), 17),
    ("upsample9", Upsample9, (2, 2, 4, 4), 9),
]


def randomise(model, gen):
    """Random batch-norm statistics and affine parameters (fresh modules have
    the identity), so that folding them is tested."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.affine:
            m.weight.data = torch.rand(m.weight.shape, generator=gen) + 0.5
            m.bias.data = torch.randn(m.bias.shape, generator=gen) * 0.2
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean = torch.randn(m.running_mean.shape, generator=gen) * 0.2
            m.running_var = torch.rand(m.running_var.shape, generator=gen) + 0.5
        if isinstance(m, nn.PReLU):
            m.weight.data = torch.rand(m.weight.shape, generator=gen) * 0.5


def fuse_batch_norms(model):
    """Folds each Conv2d + BatchNorm2d pair of a Sequential in float64 and
    rounds the result to float32, as the exporter would fold it (in float32)
    anyway: the ONNX file and the float64 reference then hold the same
    weights. (BatchNormalization after a ConvTranspose2d stays in the file.)"""
    for m in model.modules():
        if not isinstance(m, nn.Sequential):
            continue
        for i in range(len(m) - 1):
            conv, bn = m[i], m[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                a = bn.weight.double() / (bn.running_var.double() + bn.eps).sqrt()
                bias = conv.bias.double() if conv.bias is not None else torch.zeros(a.shape, dtype=torch.float64)
                fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                                  conv.padding, conv.dilation, conv.groups, bias=True)
                fused.weight.data = (conv.weight.double() * a[:, None, None, None]).float()
                fused.bias.data = ((bias - bn.running_mean.double()) * a + bn.bias.double()).float()
                m[i], m[i + 1] = fused, nn.Identity()


def save(name, array):
    np.save(os.path.join(OUT, name + ".npy"), array)


def make(name, cls, shape, opset):
    torch.manual_seed(sum(map(ord, name.rstrip("0123456789"))))
    gen = torch.Generator().manual_seed(1)
    model = cls()
    randomise(model, gen)
    fuse_batch_norms(model)
    model.eval()
    x = torch.randn(shape, generator=gen).float()
    torch.onnx.export(
        model, x, os.path.join(OUT, name + ".onnx"), opset_version=opset,
        input_names=["x"], output_names=["y"], do_constant_folding=True,
    )
    model = model.double()
    xd = x.double().requires_grad_(True)
    y = model(xd)
    w = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    (g,) = torch.autograd.grad((w * y).sum(), xd)
    save(name + "_x", x.numpy())
    save(name + "_y", y.detach().numpy())
    save(name + "_w", w.numpy())
    save(name + "_g", g.numpy())
    print(f"{name}: opset {opset}, output {tuple(y.shape)}")


def torchvision_ops():
    """The op types of the four torchvision classifiers, exported."""
    import onnx
    import torchvision.models as tv

    ops = {}
    for name in ["vgg11", "resnet18", "mobilenet_v3_small", "efficientnet_b0"]:
        model = getattr(tv, name)(weights=None).eval()
        f = io.BytesIO()
        torch.onnx.export(model, torch.randn(1, 3, 224, 224), f, opset_version=17, do_constant_folding=True)
        graph = onnx.load_from_string(f.getvalue()).graph
        ops[name] = sorted({n.op_type for n in graph.node})
        print(f"{name}: {', '.join(ops[name])}")
    with open(os.path.join(OUT, "torchvision_ops.json"), "w") as f:
        json.dump({"torch": torch.__version__, "opset": 17, "ops": ops}, f, indent=1)
        f.write("\n")


def torchvision_full(out):
    """The four classifiers at full size, with PyTorch's reference values."""
    import torchvision.models as tv

    os.makedirs(out, exist_ok=True)
    for name in ["vgg11", "resnet18", "mobilenet_v3_small", "efficientnet_b0"]:
        torch.manual_seed(0)
        model = getattr(tv, name)(weights=None).eval()
        x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
        torch.onnx.export(model, x, os.path.join(out, name + ".onnx"), opset_version=17,
                          input_names=["x"], output_names=["y"], do_constant_folding=True)
        x.requires_grad_(True)
        y = model(x)
        (g,) = torch.autograd.grad(y[:, 0].sum(), x)
        np.save(os.path.join(out, name + "_x.npy"), x.detach().numpy())
        np.save(os.path.join(out, name + "_y.npy"), y.detach().numpy())
        np.save(os.path.join(out, name + "_g.npy"), g.numpy())
        print(f"{name}: wrote {out}")


def main():
    if "--torchvision" in sys.argv:
        torchvision_full(sys.argv[sys.argv.index("--torchvision") + 1])
        return
    if not torch.__version__.startswith(TORCH):
        sys.exit(f"made with torch {TORCH}; this is {torch.__version__} (other versions export other ops)")
    os.makedirs(OUT, exist_ok=True)
    for name, cls, shape, opset in NETWORKS:
        make(name, cls, shape, opset)
    handmade()
    torchvision_ops()


if __name__ == "__main__":
    main()
