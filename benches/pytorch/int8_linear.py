"""Milliseconds per inference pass of linear layers and of an MLP (784 -> 256 -> 128 -> 10,
ReLU) in PyTorch, f32 and dynamic int8 (torch.ao.quantization.quantize_dynamic: int8 weights
per output channel, inputs quantised per batch), at batch 1 and 64: seven alternating rounds,
medians. The same rows as `cargo run --release --example int8_times -p strata-kernels`.

Usage: python3 benches/pytorch/int8_linear.py [--threads 2]
"""

import argparse
import json
import time

import torch
from torch import nn


def per_call_ms(f, reps):
    f()
    start = time.perf_counter()
    for _ in range(reps):
        f()
    return (time.perf_counter() - start) * 1e3 / reps


def row(label, batch, model, x):
    model.eval()
    # Per-channel weight scales, as Strata's `--per-channel`.
    int8 = torch.ao.quantization.quantize_dynamic(
        model, {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}, dtype=torch.qint8)
    reps = 2000 if batch == 1 else 200
    floats, ints = [], []
    with torch.inference_mode():
        for _ in range(7):
            floats.append(per_call_ms(lambda: model(x).sum().item(), reps))
            ints.append(per_call_ms(lambda: int8(x).sum().item(), reps))
    f, q = sorted(floats)[3], sorted(ints)[3]
    print(json.dumps({"op": label, "batch": batch, "f32_ms": round(f, 4), "int8_ms": round(q, 4),
                      "f32_over_int8": round(f / q, 2)}), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    torch.backends.quantized.engine = "fbgemm"
    for batch in (1, 64):
        for d_in, d_out in ((784, 256), (256, 128), (128, 10), (3136, 128)):
            row(f"linear {d_in} -> {d_out}", batch, nn.Sequential(nn.Linear(d_in, d_out)),
                torch.rand(batch, d_in))
        mlp = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                            nn.Linear(128, 10))
        row("mlp 784 -> 256 -> 128 -> 10", batch, mlp, torch.rand(batch, 784))


if __name__ == "__main__":
    main()
