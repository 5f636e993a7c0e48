"""PyTorch counterpart of `strata train --model lstm --dataset shakespeare --max-seconds 900`.

The same model, data, split and training as Strata's defaults for a character LSTM on the
embedded Shakespeare corpus (crates/strata-cli/src/run_config.rs, commands/language.rs):
- vocabulary: the sorted distinct characters of the whole text (84);
- split: contiguous, the last 2% test and the 2% before it validation;
- model: Embedding(84, 64) -> dropout 0.1 -> 2-layer nn.LSTM(256, dropout 0.1 between layers)
  -> dropout 0.1 -> Linear(256, 84);
- training: 32 parallel streams, truncated back-propagation over 100 steps with the state
  carried between chunks, Adam lr 3e-3, each parameter's gradient clipped to L2 norm 5 (as
  burn's per-parameter clipping), validation every 100 steps on 128 streams of 256-step chunks;
- a wall-clock budget for training including validation (default 900 s), then the test loss
  of the best validation checkpoint.

Prints one JSON object: {"valid_nats", "test_nats", "test_bits_per_char", "steps", "seconds",
"ms_per_step", "threads"}.

Usage: python3 benches/pytorch/char_lm.py --text crates/strata-data/data/shakespeare_gut.txt.gz
       [--seconds 900] [--threads 2]
"""
import argparse
import copy
import gzip
import json
import math
import time

import torch
from torch import nn


class CharLm(nn.Module):
    def __init__(self, vocab, embed=64, hidden=256, layers=2, dropout=0.1):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.drop = nn.Dropout(dropout)
        self.rnn = nn.LSTM(embed, hidden, num_layers=layers, dropout=dropout, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x, state=None):
        y, state = self.rnn(self.drop(self.embedding(x)), state)
        return self.head(self.drop(y)), state


def streams(ids, batch):
    per = len(ids) // batch
    return ids[: per * batch].view(batch, per)


def evaluate(model, ids, batch=128, chunk=256):
    model.eval()
    s = streams(ids, min(batch, len(ids) // 2))
    total, n, state = 0.0, 0, None
    with torch.no_grad():
        for start in range(0, s.shape[1] - 1, chunk):
            end = min(start + chunk, s.shape[1] - 1)
            x, y = s[:, start:end], s[:, start + 1 : end + 1]
            logits, state = model(x, state)
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            total += loss.item() * y.numel()
            n += y.numel()
    model.train()
    return total / n


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--text", required=True)
    p.add_argument("--seconds", type=float, default=900)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    opener = gzip.open if a.text.endswith(".gz") else open
    with opener(a.text, "rt", encoding="utf-8") as f:
        text = f.read()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    n = len(ids)
    n_test, n_valid = round(n * 0.02), round(n * 0.02)
    n_train = n - n_test - n_valid
    train, valid, test = ids[:n_train], ids[n_train : n_train + n_valid], ids[n_train + n_valid :]

    model = CharLm(len(chars))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    s = streams(train, 32)
    seq, per_epoch = 100, 100
    n_chunks = math.ceil((s.shape[1] - 1) / seq)
    best, best_state, step, state = float("inf"), None, 0, None
    started = time.perf_counter()
    train_time = 0.0
    while time.perf_counter() - started < a.seconds:
        t0 = time.perf_counter()
        for _ in range(per_epoch):
            if time.perf_counter() - started >= a.seconds:
                break
            k = step % n_chunks
            if k == 0:
                state = None
            start = k * seq
            end = min(start + seq, s.shape[1] - 1)
            x, y = s[:, start:end], s[:, start + 1 : end + 1]
            logits, state = model(x, state)
            state = tuple(t.detach() for t in state)
            loss = nn.functional.cross_entropy(logits.reshape(-1, len(chars)), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            for prm in model.parameters():
                torch.nn.utils.clip_grad_norm_([prm], 5.0)
            opt.step()
            step += 1
        train_time += time.perf_counter() - t0
        v = evaluate(model, valid)
        if v < best:
            best, best_state = v, copy.deepcopy(model.state_dict())
        print(f"step {step}: valid {v:.4f} nats ({time.perf_counter() - started:.0f} s)", flush=True)
    model.load_state_dict(best_state)
    t = evaluate(model, test)
    print(json.dumps({
        "valid_nats": round(best, 4),
        "test_nats": round(t, 4),
        "test_bits_per_char": round(t / math.log(2), 4),
        "steps": step,
        "seconds": round(time.perf_counter() - started, 1),
        "ms_per_step": round(1000 * train_time / max(step, 1), 1),
        "threads": a.threads,
    }))


if __name__ == "__main__":
    main()
