#!/usr/bin/env python3
"""A Fashion-MNIST classifier as a user would bring one: trained here in
PyTorch, separately from ppgn's shipped stack (another architecture, its
own seed), and exported to ONNX with a ppgn sidecar.

    /usr/bin/python3 scripts/user_classifier.py [OUT_DIR] [--epochs N]

Writes OUT_DIR (default runs/user-classifier): fashion-cnn.onnx,
fashion-cnn.toml (the sidecar: `ppgn sample --classifier
OUT_DIR/fashion-cnn.toml`), classes.txt, and card.json (the command, the
test accuracy, the file's SHA-256). Reads the Fashion-MNIST IDX files from
$PPGN_FASHION_MNIST or /usr/share/datasets/fashion-mnist; trains on the
first 55,000 training images (the last 5,000 are the validation split ppgn
chooses settings on) with Adam, batch 128, seed 7.
"""

import argparse
import gzip
import hashlib
import json
import os
import struct
import sys

import numpy as np
import torch
from torch import nn

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def idx(path):
    with gzip.open(path) as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(folder, split):
    x = idx(os.path.join(folder, f"{split}-images-idx3-ubyte.gz"))
    y = idx(os.path.join(folder, f"{split}-labels-idx1-ubyte.gz"))
    return torch.tensor(x, dtype=torch.float32).unsqueeze(1) / 255.0, torch.tensor(y, dtype=torch.long)


class Net(nn.Module):
    """Three 3x3 convolutions with batch norm and max pooling, global
    average pooling, one hidden layer, 10 logits (the shipped guide is a
    different network: strided convolutions and a 256-unit code)."""

    def __init__(self):
        super().__init__()
        def block(i, o):
            return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]
        self.features = nn.Sequential(
            *block(1, 32), nn.MaxPool2d(2),
            *block(32, 64), nn.MaxPool2d(2),
            *block(64, 96), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(96, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x):
        return self.head(self.features(x))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?", default="runs/user-classifier")
    ap.add_argument("--epochs", type=int, default=3)
    a = ap.parse_args()
    torch.manual_seed(7)
    torch.set_num_threads(2)
    folder = os.environ.get("PPGN_FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
    x, y = load(folder, "train")
    x, y = x[:55000], y[:55000]
    xt, yt = load(folder, "t10k")
    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for epoch in range(a.epochs):
        net.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            b = perm[i:i + 128]
            loss = nn.functional.cross_entropy(net(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            acc = sum((net(xt[i:i + 1000]).argmax(1) == yt[i:i + 1000]).sum().item()
                      for i in range(0, len(xt), 1000)) / len(xt)
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}, test accuracy {acc:.4f}", flush=True)
    os.makedirs(a.out, exist_ok=True)
    onnx_path = os.path.join(a.out, "fashion-cnn.onnx")
    torch.onnx.export(net, torch.zeros(1, 1, 28, 28), onnx_path, opset_version=13,
                      input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    with open(os.path.join(a.out, "classes.txt"), "w") as f:
        f.write("\n".join(CLASSES) + "\n")
    with open(os.path.join(a.out, "fashion-cnn.toml"), "w") as f:
        f.write('[network]\nonnx = "fashion-cnn.onnx"\nkind = "classifier"\n'
                'classes = "classes.txt"\nrange = [0.0, 1.0]\n')
    sha = hashlib.sha256(open(onnx_path, "rb").read()).hexdigest()
    card = {"command": " ".join(["/usr/bin/python3"] + sys.argv), "torch": torch.__version__,
            "epochs": a.epochs, "test_accuracy": acc, "onnx_sha256": sha}
    with open(os.path.join(a.out, "card.json"), "w") as f:
        json.dump(card, f, indent=2)
    print(f"wrote {onnx_path} (test accuracy {acc:.4f})")


if __name__ == "__main__":
    main()
