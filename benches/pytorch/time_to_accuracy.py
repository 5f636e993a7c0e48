"""PyTorch counterpart of `strata train`'s CNN recipes, for `cargo xtask time-to-accuracy`.

The recipe is Strata's (`strata train` with no flags, and `--dataset fashion-mnist --epochs 12
--batch-size 64 --patience 4`): the LeNet-style CNN (two conv3x3(same)-BN-ReLU-maxpool2 stages of
32 and 64 channels, dropout 0.25, Linear(-, 128)-ReLU-dropout 0.25, Linear(128, 10)), Adam at 1e-3
(eps 1e-8) with a per-epoch cosine schedule to 0, cross-entropy, shuffled batches, validation
every epoch, early stopping on the validation loss and the best epoch's weights restored for the
test. The data: the UCI digits (pixels / 16) split 65/15/20 stratified, or Fashion-MNIST (pixels /
255) with a stratified 15% of its training split for validation and its test split for the test.
The splits are drawn here (same proportions, not the same rows as Strata's) and the weights
start from PyTorch's default initialisation.

Each epoch's seconds cover training and validation, as Strata's history.csv. Prints one JSON
object: the epochs, the first epoch whose validation accuracy reaches --bar and the seconds
until then, and the test accuracy.

Usage: python3 benches/pytorch/time_to_accuracy.py --dataset digits|fashion-mnist --epochs 30
    --batch-size 32 --patience 10 --bar 0.98 [--max-seconds S] [--threads 2]
"""
import argparse
import gzip
import json
import math
import os
import struct
import time

import torch
from torch import nn

from allocator import keep_freed_memory

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FASHION = "/usr/share/datasets/fashion-mnist"


def digits():
    path = os.path.join(ROOT, "crates/strata-data/data/digits.csv.gz")
    rows = [
        [float(v) for v in line.split(",")]
        for line in gzip.open(path, "rt").read().splitlines()
        if line.strip()
    ]
    x = torch.tensor([r[:64] for r in rows]) / 16.0
    y = torch.tensor([int(r[64]) for r in rows])
    return x.reshape(-1, 1, 8, 8), y


def idx(name):
    data = gzip.open(os.path.join(FASHION, name), "rb").read()
    magic = struct.unpack(">I", data[:4])[0]
    dims = struct.unpack(">" + "I" * (magic & 0xFF), data[4 : 4 + 4 * (magic & 0xFF)])
    return torch.frombuffer(bytearray(data[4 + 4 * len(dims) :]), dtype=torch.uint8).reshape(dims)


def fashion(part):
    x = idx(f"{part}-images-idx3-ubyte.gz").float() / 255.0
    y = idx(f"{part}-labels-idx1-ubyte.gz").long()
    return x.reshape(-1, 1, 28, 28), y


def stratified(y, fractions, seed):
    """Index lists, one per fraction after the first (the first takes the rest), drawn per
    class."""
    g = torch.Generator().manual_seed(seed)
    parts = [[] for _ in fractions]
    for c in y.unique():
        rows = (y == c).nonzero().flatten()
        rows = rows[torch.randperm(len(rows), generator=g)]
        start = 0
        for i, f in list(enumerate(fractions))[1:]:
            n = round(f * len(rows))
            parts[i].append(rows[start : start + n])
            start += n
        parts[0].append(rows[start:])
    return [torch.cat(p) for p in parts]


class Cnn(nn.Module):
    def __init__(self, size):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Dropout(0.25), nn.Linear(64 * (size // 4) ** 2, 128), nn.ReLU(), nn.Dropout(0.25),
            nn.Linear(128, 10),
        )

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def evaluate(model, x, y, batch=256):
    model.eval()
    loss, correct = 0.0, 0
    with torch.inference_mode():
        for i in range(0, len(y), batch):
            out = model(x[i : i + batch])
            loss += nn.functional.cross_entropy(out, y[i : i + batch], reduction="sum").item()
            correct += (out.argmax(1) == y[i : i + batch]).sum().item()
    return loss / len(y), correct / len(y)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", choices=["digits", "fashion-mnist"], default="digits")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--bar", type=float, default=0.98)
    p.add_argument("--max-seconds", type=float, default=math.inf)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    keep_freed_memory()  # as Strata's binaries do (allocator.py)
    torch.manual_seed(a.seed)
    if a.dataset == "digits":
        x, y = digits()
        train, valid, test = stratified(y, [0.65, 0.15, 0.2], a.seed)
        (xt, yt), (xv, yv), (xs, ys) = [(x[i], y[i]) for i in (train, valid, test)]
    else:
        x, y = fashion("train")
        train, valid = stratified(y, [0.85, 0.15], a.seed)
        (xt, yt), (xv, yv) = [(x[i], y[i]) for i in (train, valid)]
        xs, ys = fashion("t10k")
    model = Cnn(x.shape[-1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-8)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.epochs, eta_min=0.0)
    epochs, spent, best, waited = [], 0.0, (math.inf, None), 0
    reached = None
    for epoch in range(1, a.epochs + 1):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(yt))
        for i in range(0, len(yt), a.batch_size):
            rows = order[i : i + a.batch_size]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[rows]), yt[rows]).backward()
            opt.step()
            if spent + time.perf_counter() - start > a.max_seconds:
                break
        schedule.step()
        valid_loss, valid_acc = evaluate(model, xv, yv)
        spent += time.perf_counter() - start
        epochs.append({"epoch": epoch, "valid_loss": valid_loss, "valid_accuracy": valid_acc,
                       "seconds": spent})
        if reached is None and valid_acc >= a.bar:
            reached = {"epoch": epoch, "seconds": spent}
        if valid_loss < best[0]:
            best, waited = (valid_loss, {k: v.clone() for k, v in model.state_dict().items()}), 0
        else:
            waited += 1
        if waited >= a.patience or spent > a.max_seconds:
            break
    model.load_state_dict(best[1])
    _, test_acc = evaluate(model, xs, ys)
    print(json.dumps({
        "dataset": a.dataset,
        "bar": a.bar,
        "reached": reached,
        "train_seconds": spent,
        "test_accuracy": test_acc,
        "epochs": epochs,
    }))


if __name__ == "__main__":
    main()
