"""PyTorch's side of `cargo run --release --example conv_times` (strata-kernels): ResNet-20's
3x3 convolutions at batch 32, forward and each gradient timed alone (aten's
convolution_backward with one output mask at a time), 2 threads by default.

Usage: python3 benches/pytorch/conv_times.py [--threads 2] [--reps 20]
"""
import argparse
import json
import time

import torch

from allocator import keep_freed_memory

SHAPES = [
    ("stem 3->16 @32", 1, 3, 32, 16, 1),
    ("16->16 @32", 6, 16, 32, 16, 1),
    ("16->32 @32 s2", 1, 16, 32, 32, 2),
    ("32->32 @16", 5, 32, 16, 32, 1),
    ("32->64 @16 s2", 1, 32, 16, 64, 2),
    ("64->64 @8", 5, 64, 8, 64, 1),
]


def timed(reps, f):
    for _ in range(2):
        f()
    start = time.perf_counter()
    for _ in range(reps):
        f()
    return (time.perf_counter() - start) * 1e3 / reps


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as Strata's binaries do (allocator.py)
    total = 0.0
    for label, count, c, hw, o, stride in SHAPES:
        x = torch.rand(32, c, hw, hw)
        w = torch.rand(o, c, 3, 3)
        y = torch.nn.functional.conv2d(x, w, stride=stride, padding=1)
        dy = torch.rand_like(y)

        def backward(mask):
            return torch.ops.aten.convolution_backward(
                dy, x, w, None, [stride, stride], [1, 1], [1, 1], False, [0, 0], 1, mask
            )

        f = timed(args.reps, lambda: torch.nn.functional.conv2d(x, w, stride=stride, padding=1))
        di = timed(args.reps, lambda: backward([True, False, False]))
        dw = timed(args.reps, lambda: backward([False, True, False]))
        total += (f + di + dw) * count
        print(json.dumps({"shape": label, "count": count, "forward": round(f, 3),
                          "input_grad": round(di, 3), "weight_grad": round(dw, 3)}))
    print(json.dumps({"shape": "all, times count", "ms": round(total, 2)}))


if __name__ == "__main__":
    main()
