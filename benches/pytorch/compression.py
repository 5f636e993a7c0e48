"""PyTorch's side of docs/compression.md: a Strata Fashion-MNIST CNN run's weights loaded into
the same network in PyTorch, then PyTorch's dynamic int8 quantisation of it
(torch.ao.quantization.quantize_dynamic: nn.Linear weights in int8, activations quantised on
the fly). For each: test accuracy on the 10,000 Fashion-MNIST test images, the state dict's
size (torch.save), and inference latency at batch 1 and 64 (median of repeated runs, 2
threads).

Run: python3 benches/pytorch/compression.py RUN_DIR [RUN_DIR_INT8]
(needs torch, safetensors; Fashion-MNIST from Debian's dataset-fashion-mnist). With a second
run written by `strata compress --quantize int8`, it also reports that run's file size.
"""
import gzip
import io
import os
import statistics
import sys
import time

import numpy as np
import torch
from safetensors.numpy import load_file
from torch import nn

FM = "/usr/share/datasets/fashion-mnist"
torch.set_num_threads(2)


def idx(name):
    with gzip.open(os.path.join(FM, name)) as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


class Cnn(nn.Module):
    """Strata's CNN recipe: two blocks of 3x3 conv (same padding), batch norm, ReLU, 2x2
    max pool; a hidden dense layer with ReLU; the classifier."""

    def __init__(self):
        super().__init__()
        blocks = []
        for cin, cout in [(1, 32), (32, 64)]:
            blocks += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout, eps=1e-5),
                       nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*blocks)
        self.hidden = nn.Linear(64 * 7 * 7, 128)
        self.classifier = nn.Linear(128, 10)

    def forward(self, x):
        x = self.features(x).flatten(1)
        return self.classifier(torch.relu(self.hidden(x)))


def load(run):
    w = load_file(os.path.join(run, "model.safetensors"))
    m = Cnn().eval()
    t = lambda k: torch.from_numpy(w[k].copy())
    with torch.no_grad():
        for i, j in [(0, 0), (1, 4)]:
            conv, bn = m.features[j], m.features[j + 1]
            conv.weight.copy_(t(f"Cnn.features.{i}.conv.weight"))
            conv.bias.copy_(t(f"Cnn.features.{i}.conv.bias"))
            bn.weight.copy_(t(f"Cnn.features.{i}.norm.gamma"))
            bn.bias.copy_(t(f"Cnn.features.{i}.norm.beta"))
            bn.running_mean.copy_(t(f"Cnn.features.{i}.norm.running_mean"))
            bn.running_var.copy_(t(f"Cnn.features.{i}.norm.running_var"))
        # burn stores linear weights as [inputs, outputs].
        m.hidden.weight.copy_(t("Cnn.hidden.linear.weight").T)
        m.hidden.bias.copy_(t("Cnn.hidden.linear.bias"))
        m.classifier.weight.copy_(t("Cnn.classifier.weight").T)
        m.classifier.bias.copy_(t("Cnn.classifier.bias"))
    return m


def size(m):
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    return buf.tell()


def latency(m, batch, x):
    xs = x[:batch]
    with torch.no_grad():
        for _ in range(5):
            m(xs)
        times = []
        for _ in range(50 if batch == 1 else 20):
            t0 = time.perf_counter()
            m(xs)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main():
    run = sys.argv[1]
    x = torch.from_numpy(idx("t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0)
    x = x.reshape(-1, 1, 28, 28)
    y = torch.from_numpy(idx("t10k-labels-idx1-ubyte.gz").astype(np.int64))
    f32 = load(run)
    int8 = torch.ao.quantization.quantize_dynamic(f32, {nn.Linear}, dtype=torch.qint8)
    print("| model | test accuracy | size (bytes) | batch 1 (ms) | batch 64 (ms) |")
    print("|---|---|---|---|---|")
    for name, m in [("PyTorch f32", f32), ("PyTorch dynamic int8", int8)]:
        with torch.no_grad():
            acc = (m(x).argmax(1) == y).float().mean().item()
        print(f"| {name} | {acc:.4f} | {size(m):,} | {latency(m, 1, x):.3f} | "
              f"{latency(m, 64, x):.3f} |")
    st = os.path.getsize(os.path.join(run, "model.safetensors"))
    print(f"Strata f32 model.safetensors: {st:,} bytes")
    if len(sys.argv) > 2:
        q = os.path.getsize(os.path.join(sys.argv[2], "model.int8.safetensors"))
        print(f"Strata int8 model.int8.safetensors: {q:,} bytes")


if __name__ == "__main__":
    main()
