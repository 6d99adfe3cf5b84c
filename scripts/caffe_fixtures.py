#!/usr/bin/env python3
"""Reference outputs of the papers' networks (CaffeNet and the DGN fc6
generator) at a small size, made once with PyTorch.

Writes tests/fixtures/caffe/*.npy: random weights (one flat float32 array in
the order of ppgn's `alexnet_tensors` / `generator_tensors`), a fixed input,
the outputs, and the input gradients of a fixed scalar. The networks are
written here in plain PyTorch from their Caffe definitions (grouped
convolutions, 3x3 stride-2 max pooling, local response normalisation,
channel-major flattening, leaky ReLU 0.3, a centre crop), so that the test
checks ppgn's compiled graphs against an independent framework. The sizes
are the tests' tiny configs (`tiny_caffenet`, `tiny_dgn` in
tests/it/pretrained.rs); no download is needed.

Usage (a development tool; PyTorch is never a dependency of ppgn):
    apt-get install python3-torch python3-numpy   # made with Debian 12's torch 1.13.0a0
    /usr/bin/python3 scripts/caffe_fixtures.py
"""

import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "caffe")

# tests/it/pretrained.rs: tiny_caffenet() and tiny_dgn()
CONV = [4, 6, 6, 6, 4]
FC, CLASSES, IMAGE = 8, 5, 67
CODE, CH, SIDE, CROP = 8, [4, 4, 6, 4, 4, 4, 4, 4, 4], 256, 67

G = torch.Generator().manual_seed(0)


def uniform(shape, a):
    """Uniform in (-a, a), rounded to float32 (what the fixtures store), so
    that the float64 computation here is the one the test repeats."""
    return ((torch.rand(shape, generator=G, dtype=torch.float64) * 2 - 1) * a).float().double()


def random_weights(shapes):
    """Fan-in scaled uniform weights, small uniform biases."""
    w = {}
    for name, shape in shapes:
        if len(shape) == 4 and name.startswith("deconv"):
            fan_in = shape[0] * 4
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        a = (3.0 / fan_in) ** 0.5 if len(shape) > 1 else 0.05
        w[name] = uniform(shape, a)
    return w


def alexnet_shapes():
    c = CONV
    p = IMAGE
    p = (p - 11) // 4 + 1
    for _ in range(3):
        p = (p - 3) // 2 + 1
    t = []
    for name, out, inp, k in [("conv1", c[0], 3, 11), ("conv2", c[1], c[0] // 2, 5),
                              ("conv3", c[2], c[1], 3), ("conv4", c[3], c[2] // 2, 3),
                              ("conv5", c[4], c[3] // 2, 3)]:
        t += [(name + ".weight", [out, inp, k, k]), (name + ".bias", [out])]
    for name, out, inp in [("fc6", FC, c[4] * p * p), ("fc7", FC, FC), ("fc8", CLASSES, FC)]:
        t += [(name + ".weight", [out, inp]), (name + ".bias", [out])]
    return t


DGN_LAYERS = [("deconv5", True, 0, 1), ("conv5_1", False, 1, 2), ("deconv4", True, 2, 3),
              ("conv4_1", False, 3, 4), ("deconv3", True, 4, 5), ("conv3_1", False, 5, 6),
              ("deconv2", True, 6, 7), ("deconv1", True, 7, 8), ("deconv0", True, 8, None)]


def generator_shapes():
    t = []
    for name, out, inp in [("defc7", CODE, CODE), ("defc6", CODE, CODE), ("defc5", CH[0] * 16, CODE)]:
        t += [(name + ".weight", [out, inp]), (name + ".bias", [out])]
    for name, deconv, i, o in DGN_LAYERS:
        cin, cout = CH[i], 3 if o is None else CH[o]
        t += [(name + ".weight", [cin, cout, 4, 4] if deconv else [cout, cin, 3, 3]),
              (name + ".bias", [cout])]
    return t


def caffenet(w, x):
    """Logits and fc6 (the code h) of NCHW images."""
    def conv(y, name, groups, stride, pad):
        return F.relu(F.conv2d(y, w[name + ".weight"], w[name + ".bias"], stride, pad, 1, groups))
    lrn = torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
    y = lrn(F.max_pool2d(conv(x, "conv1", 1, 4, 0), 3, 2))
    y = lrn(F.max_pool2d(conv(y, "conv2", 2, 1, 2), 3, 2))
    y = conv(conv(conv(y, "conv3", 1, 1, 1), "conv4", 2, 1, 1), "conv5", 2, 1, 1)
    y = F.max_pool2d(y, 3, 2).flatten(1)  # channel-major, as Caffe
    h = F.relu(F.linear(y, w["fc6.weight"], w["fc6.bias"]))
    h7 = F.relu(F.linear(h, w["fc7.weight"], w["fc7.bias"]))
    return F.linear(h7, w["fc8.weight"], w["fc8.bias"]), h


def dgn(w, h):
    """The centre crop of the generator's NCHW images of codes h."""
    y = h
    for name in ["defc7", "defc6", "defc5"]:
        y = F.leaky_relu(F.linear(y, w[name + ".weight"], w[name + ".bias"]), 0.3)
    y = y.reshape(-1, CH[0], 4, 4)
    for i, (name, deconv, _, _) in enumerate(DGN_LAYERS):
        if deconv:
            y = F.conv_transpose2d(y, w[name + ".weight"], w[name + ".bias"], 2, 1)
        else:
            y = F.conv2d(y, w[name + ".weight"], w[name + ".bias"], 1, 1)
        if i + 1 < len(DGN_LAYERS):
            y = F.leaky_relu(y, 0.3)
    off = (SIDE - CROP) // 2
    return y[:, :, off:off + CROP, off:off + CROP]


def save(name, a):
    os.makedirs(OUT, exist_ok=True)
    np.save(os.path.join(OUT, name), np.ascontiguousarray(a.detach().numpy(), dtype=np.float32))


def flat(w, shapes):
    return torch.cat([w[name].flatten() for name, _ in shapes])


def main():
    torch.set_default_dtype(torch.float64)
    # CaffeNet: two images, logits, h, and d sum(log softmax[:, 1]) / dx
    shapes = alexnet_shapes()
    w = random_weights(shapes)
    x = uniform([2, 3, IMAGE, IMAGE], 50.0).requires_grad_(True)
    logits, h = caffenet(w, x)
    F.log_softmax(logits, 1)[:, 1].sum().backward()
    save("caffenet_weights.npy", flat(w, shapes))
    save("caffenet_input.npy", x.permute(0, 2, 3, 1))  # NHWC
    save("caffenet_logits.npy", logits)
    save("caffenet_h.npy", h)
    save("caffenet_grad.npy", x.grad.permute(0, 2, 3, 1))

    # DGN: two codes, the cropped images, and d sum(images * r) / d h
    shapes = generator_shapes()
    w = random_weights(shapes)
    code = (uniform([2, CODE], 1.5) + 1.5).float().double().requires_grad_(True)
    img = dgn(w, code)
    r = uniform(list(img.shape), 1.0)
    (img * r).sum().backward()
    save("dgn_weights.npy", flat(w, shapes))
    save("dgn_code.npy", code)
    save("dgn_images.npy", img.permute(0, 2, 3, 1))  # NHWC
    save("dgn_weights_r.npy", r.permute(0, 2, 3, 1))
    save("dgn_grad.npy", code.grad)
    print("wrote", os.path.normpath(OUT), "with torch", torch.__version__, file=sys.stderr)


if __name__ == "__main__":
    main()
