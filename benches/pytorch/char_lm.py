"""PyTorch counterpart of `strata train --model lstm --dataset shakespeare --max-seconds 900`
(and, with `--model transformer`, of `--model transformer-lm`; its recipe is at the end of
this note).

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

`--model transformer` (Strata's `transformer-lm` defaults, `strata train ... --out D` writes
them to D/config.toml): token + learned position embeddings (128) -> dropout 0.1 -> 2 pre-norm
nn.TransformerEncoderLayer(128, 4 heads, 512, GELU, dropout 0.1) under a causal mask -> final
LayerNorm -> Linear(128, 84); 32 streams of independent 128-character chunks (no state
carried), AdamW lr 2e-3 (betas 0.9, 0.999, eps 1e-8, no weight decay), each parameter's
gradient clipped to L2 norm 1, 100 steps an epoch with the learning rate per epoch: epoch 0
warms up at lr / 2, then a cosine from 2e-3 to 2e-4 over the remaining 29 of 30 epochs;
validation every epoch on 128 streams of independent 128-character chunks.

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

from allocator import keep_freed_memory


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


class TransformerLm(nn.Module):
    """Strata's TransformerLmConfig::new(84, 128) (as benches/pytorch/train_step.py)."""

    def __init__(self, vocab, context=128, d=128):
        super().__init__()
        self.vocab = vocab
        self.embedding = nn.Embedding(vocab, d)
        self.position = nn.Embedding(context, d)
        self.drop = nn.Dropout(0.1)
        layer = nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.1, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(context))

    def forward(self, x, state=None):
        t = x.shape[1]
        h = self.drop(self.embedding(x) + self.position(torch.arange(t)))
        h = self.encoder(h, mask=self.mask[:t, :t], is_causal=True)
        return self.head(self.norm(h)), None


def transformer_lr(epoch, base=2e-3, min_lr=2e-4, epochs=30, warm=1):
    """strata-optim's per-epoch schedule: linear warm-up, then a cosine to `min_lr`."""
    if epoch < warm:
        return base * (epoch + 1) / (warm + 1)
    t_max = max(epochs - warm, 1)
    t = min(epoch - warm, t_max)
    return min_lr + (base - min_lr) * (1 + math.cos(math.pi * t / t_max)) / 2


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
    p.add_argument("--model", choices=["lstm", "transformer"], default="lstm")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    keep_freed_memory()  # as Strata's binaries do (allocator.py)
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

    transformer = a.model == "transformer"
    if transformer:
        model = TransformerLm(len(chars))
        opt = torch.optim.AdamW(model.parameters(), lr=transformer_lr(0), betas=(0.9, 0.999),
                                eps=1e-8, weight_decay=0.0)
        seq, clip, eval_chunk = 128, 1.0, 128
    else:
        model = CharLm(len(chars))
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        seq, clip, eval_chunk = 100, 5.0, 256
    s = streams(train, 32)
    per_epoch, epoch = 100, 0
    n_chunks = math.ceil((s.shape[1] - 1) / seq)
    best, best_state, step, state = float("inf"), None, 0, None
    started = time.perf_counter()
    train_time = 0.0
    # Strata's recipes end at the budget or after their epochs of 100 steps, whichever comes
    # first: 30 for the transformer, 50 for the LSTM.
    max_epochs = 30 if transformer else 50
    while time.perf_counter() - started < a.seconds and epoch < max_epochs:
        if transformer:
            for group in opt.param_groups:
                group["lr"] = transformer_lr(epoch)
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
            if state is not None:
                state = tuple(t.detach() for t in state)
            loss = nn.functional.cross_entropy(logits.reshape(-1, len(chars)), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            for prm in model.parameters():
                torch.nn.utils.clip_grad_norm_([prm], clip)
            opt.step()
            step += 1
        epoch += 1
        train_time += time.perf_counter() - t0
        v = evaluate(model, valid, chunk=eval_chunk)
        if v < best:
            best, best_state = v, copy.deepcopy(model.state_dict())
        print(f"step {step}: valid {v:.4f} nats ({time.perf_counter() - started:.0f} s)", flush=True)
    model.load_state_dict(best_state)
    t = evaluate(model, test, chunk=eval_chunk)
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
