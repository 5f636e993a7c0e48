"""PyTorch counterparts of Strata's training-step benchmarks (benches/src/main.rs).

Same models: MLP and CNN at batch 64; ResNet-20 and ResNet-18 (torchvision layout) on 32
images of 3x32x32; character LMs (Embedding(84, 64), one nn.LSTM or nn.GRU
layer of 256, Linear(256, 84)) on 32 sequences of 50 steps; the convolutional VAE at batch
64 (negative ELBO, one posterior sample); a full-batch training epoch of PyTorch Geometric's
GCN (GCNConv 1433-16-7, dropout 0.5) and GAT (GATConv 8 heads of 8, ELU, one output head,
dropout 0.6) on Cora with Adam at 0.01 and weight decay 5e-4 (`gcn-cora`, `gat-cora`, from
Strata's embedded copy of Cora, row-normalised); the CPU-sized CapsNet at batch 64 (`capsnet`,
margin and reconstruction loss). Inference rows (`mlp-infer-1`, `cnn-infer-64`, `resnet20-infer-64`, ...):
forward passes in eval mode under torch.inference_mode() at that batch size. Generation rows
(`lstm-generate`, `gru-generate`, `transformer-generate`): ms per character generated greedily at
batch 1 (the transformer recomputing the sequence each step: nn.TransformerEncoder has no cache). All training with Adam (lr 1e-3, eps 1e-8), cross-entropy, random inputs; 2 threads to
match the machine the Rust benchmarks run on. Prints one JSON object per line:
{"model", "backend": "pytorch", "ms_per_step", "steps"}.

Usage: python3 benches/pytorch/train_step.py [--models mlp,cnn] [--steps 30] [--threads 2]
"""
import argparse
import json
import os
import sys
import time

import torch
from torch import nn

from allocator import keep_freed_memory


def mlp():
    return nn.Sequential(
        nn.Linear(784, 256), nn.ReLU(), nn.Dropout(0.0),
        nn.Linear(256, 128), nn.ReLU(), nn.Dropout(0.0),
        nn.Linear(128, 10),
    )


class Cnn(nn.Module):
    """Strata's CnnConfig::new(1, 28, 28, 10): two conv3x3(same)-BN-ReLU-maxpool2 stages
    (32, 64 channels), dropout 0.25, Linear(3136, 128)-ReLU-dropout, Linear(128, 10)."""

    def __init__(self, channels=(32, 64), hidden=128):
        super().__init__()
        a, b = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, a, 3, padding=1), nn.BatchNorm2d(a), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Dropout(0.25), nn.Linear(b * 7 * 7, hidden), nn.ReLU(), nn.Dropout(0.25),
            nn.Linear(hidden, 10),
        )

    def forward(self, x):
        x = self.features(x.view(-1, 1, 28, 28))
        return self.head(x.flatten(1))


class CharLm(nn.Module):
    """Strata's CharLmConfig::new(84, RecurrentConfig::new(cell, 64, 256))."""

    def __init__(self, cell):
        super().__init__()
        self.embedding = nn.Embedding(84, 64)
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(64, 256, batch_first=True)
        self.head = nn.Linear(256, 84)

    def forward(self, x):
        y, _ = self.rnn(self.embedding(x))
        return self.head(y).reshape(-1, 84)


class TransformerLm(nn.Module):
    """Strata's TransformerLmConfig::new(84, 128): token + learned position embeddings (128),
    dropout 0.1, 2 pre-norm nn.TransformerEncoderLayer(128, 4, 512, GELU, dropout 0.1) under
    a causal mask, final LayerNorm, Linear(128, 84)."""

    def __init__(self, vocab=84, context=128, d=128):
        super().__init__()
        self.embedding = nn.Embedding(vocab, d)
        self.position = nn.Embedding(context, d)
        self.drop = nn.Dropout(0.1)
        layer = nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.1, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(context))

    def forward(self, x):
        t = x.shape[1]
        h = self.drop(self.embedding(x) + self.position(torch.arange(t)))
        h = self.encoder(h, mask=self.mask[:t, :t], is_causal=True)
        return self.head(self.norm(h)).reshape(-1, 84)


class ConvVae(nn.Module):
    """Strata's `--model conv-vae` on 1x28x28 (AutoencoderConfig with channels [32, 64], no
    dense hidden layer, a 30-unit code): Conv2d(3, stride 2, padding 1)-ReLU twice, Linear(3136,
    60) to mean and log-variance; Linear(30, 3136)-ReLU, ConvTranspose2d(3, stride 2, padding 1,
    output padding 1) twice (ReLU between). Loss: Bernoulli NLL summed over pixels plus the KL
    term, averaged over the batch."""

    def __init__(self):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(1, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU())
        self.enc = nn.Linear(64 * 7 * 7, 60)
        self.dec = nn.Linear(30, 64 * 7 * 7)
        self.up = nn.Sequential(nn.ConvTranspose2d(64, 32, 3, 2, 1, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 3, 2, 1, 1))

    def loss(self, x):
        h = self.enc(self.down(x.view(-1, 1, 28, 28)).flatten(1))
        mean, log_var = h[:, :30], h[:, 30:]
        z = mean + (0.5 * log_var).exp() * torch.randn_like(mean)
        logits = self.up(torch.relu(self.dec(z)).view(-1, 64, 7, 7)).flatten(1)
        nll = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = -0.5 * (1 + log_var - mean ** 2 - log_var.exp()).sum()
        return (nll + kl) / x.shape[0]


class Dcgan(nn.Module):
    """Strata's `--model dcgan` on 1x28x28 (GanConfig width 64, noise 100): G projects z by a
    bias-free Linear to 128x7x7, BatchNorm, ReLU, ConvTranspose2d(128, 64, 4, 2, 1) BatchNorm
    ReLU, ConvTranspose2d(64, 1, 4, 2, 1), tanh; D is Conv2d(1, 64, 4, 2, 1) LeakyReLU(0.2),
    Conv2d(64, 128, 4, 2, 1, bias=False) BatchNorm LeakyReLU(0.2), Linear(6272, 1). One step:
    a discriminator step on real and generated images, then a generator step (BCE with logits),
    each with its own Adam(2e-4, betas (0.5, 0.999))."""

    def __init__(self):
        super().__init__()
        self.g = nn.Sequential(nn.Linear(100, 128 * 7 * 7, bias=False), nn.Unflatten(1, (128, 7, 7)),
                               nn.BatchNorm2d(128), nn.ReLU(),
                               nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False), nn.BatchNorm2d(64),
                               nn.ReLU(), nn.ConvTranspose2d(64, 1, 4, 2, 1, bias=False), nn.Tanh())
        self.d = nn.Sequential(nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.2),
                               nn.Conv2d(64, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128),
                               nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(128 * 7 * 7, 1))


def bench_dcgan(steps, warmup=3):
    torch.manual_seed(0)
    gan = Dcgan()
    gan.train()
    opt_d = torch.optim.Adam(gan.d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(gan.g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    x = torch.rand(64, 1, 28, 28) * 2 - 1
    bce = nn.BCEWithLogitsLoss()
    ones, zeros = torch.ones(64, 1), torch.zeros(64, 1)

    def step():
        z = torch.randn(64, 100)
        opt_d.zero_grad()
        d_loss = bce(gan.d(x), ones) + bce(gan.d(gan.g(z).detach()), zeros)
        d_loss.backward()
        opt_d.step()
        opt_g.zero_grad()
        g_loss = bce(gan.d(gan.g(z)), ones)
        g_loss.backward()
        opt_g.step()
        return g_loss.item()

    return time_steps(step, steps, warmup)


class CapsNet(nn.Module):
    """Strata's `--model capsnet` on 1x28x28 (CapsNetConfig::small): Conv2d(1, 64, 9) -> ReLU ->
    primary capsules Conv2d(64, 16*8, 9, stride 2) read as 16 types of 8-D on a 6x6 grid and
    squashed -> 10 class capsules of 16-D by 3 routing passes (W of [576, 10, 16, 8]) ->
    decoder Linear(160, 512) -> ReLU -> Linear(512, 1024) -> ReLU -> Linear(1024, 784) ->
    sigmoid, masked by the true class. Loss: margin (0.9, 0.1, 0.5) summed over classes plus
    0.0005 times the summed squared error, averaged over the batch (tests/fixtures/gen_capsnet.py
    checks the same computation against Strata)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, 9)
        self.primary = nn.Conv2d(64, 16 * 8, 9, stride=2)
        self.W = nn.Parameter(torch.randn(576, 10, 16, 8) * 0.01)
        self.decoder = nn.Sequential(nn.Linear(160, 512), nn.ReLU(), nn.Linear(512, 1024), nn.ReLU(),
                                     nn.Linear(1024, 784), nn.Sigmoid())

    @staticmethod
    def squash(s):
        sq = (s ** 2).sum(-1, keepdim=True)
        return sq / (1 + sq) * s / torch.sqrt(sq + 1e-8)

    def loss(self, x, y):
        p = self.primary(torch.relu(self.conv1(x)))
        b = p.shape[0]
        u = self.squash(p.view(b, 16, 8, 6, 6).permute(0, 1, 3, 4, 2).reshape(b, 576, 8))
        u_hat = torch.einsum("ijok,bik->bijo", self.W, u)
        logits = torch.zeros(b, 576, 10)
        for it in range(3):
            c = torch.softmax(logits, dim=2)
            v = self.squash((c.unsqueeze(-1) * u_hat).sum(1))
            if it < 2:
                logits = logits + (u_hat * v.unsqueeze(1)).sum(-1)
        lengths = torch.sqrt((v ** 2).sum(-1) + 1e-8)
        t = nn.functional.one_hot(y, 10).float()
        margin = (t * torch.relu(0.9 - lengths) ** 2 + 0.5 * (1 - t) * torch.relu(lengths - 0.1) ** 2).sum(1)
        recon = self.decoder((v * t.unsqueeze(-1)).reshape(b, 160))
        return (margin + 0.0005 * ((recon - x.reshape(b, 784)) ** 2).sum(1)).mean()


def bench_capsnet(steps, warmup=2):
    torch.manual_seed(0)
    model = CapsNet()
    x = torch.rand(64, 1, 28, 28)
    y = torch.arange(64) % 10
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-8)
    steps = min(steps, 10)

    def step():
        opt.zero_grad()
        loss = model.loss(x, y)
        loss.backward()
        opt.step()
        return loss.item()

    return time_steps(step, steps, warmup)


def resnet(name):
    """torchvision's layout (tests/fixtures/gen_resnet.py), 3 input channels, 10 classes:
    ResNet-20 (CIFAR stem, 3 x 3 basic blocks of 16/32/64) or ResNet-18 (ImageNet stem)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                    "tests", "fixtures"))
    from gen_resnet import BasicBlock, ResNet
    if name == "resnet20":
        return ResNet(BasicBlock, [3, 3, 3], [16, 32, 64], 3, 10, cifar=True)
    return ResNet(BasicBlock, [2, 2, 2, 2], [64, 128, 256, 512], 3, 10, cifar=False)


def slim_resnet20():
    """ResNet-20 with half the channels inside each block removed (`strata compress
    --prune-channels 0.5`): each block's first convolution and batch norm half as wide, its
    second convolution reading half as many channels."""
    model = resnet("resnet20")
    for stage in (model.layer1, model.layer2, model.layer3):
        for block in stage:
            c1, c2 = block.conv1, block.conv2
            inner = c1.out_channels // 2
            block.conv1 = nn.Conv2d(c1.in_channels, inner, 3, c1.stride, 1, bias=False)
            block.bn1 = nn.BatchNorm2d(inner)
            block.conv2 = nn.Conv2d(inner, c2.out_channels, 3, 1, 1, bias=False)
    return model


def time_steps(step, steps, warmup):
    """Mean ms per call of `step` over `steps` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) * 1000.0 / steps, steps


def cora():
    """Strata's embedded Cora (crates/strata-data/data/graphs/cora), row-normalised."""
    import gzip
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                        "crates", "strata-data", "data", "graphs", "cora")

    def rows(name):
        with gzip.open(os.path.join(root, name), "rt") as f:
            return [line.strip().split(",") for line in f.readlines()[1:] if line.strip()]

    nodes = rows("nodes.csv.gz")
    n = len(nodes)
    y = torch.tensor([int(r[1]) for r in nodes])
    train = torch.tensor([i for i, r in enumerate(nodes) if r[2] == "train"])
    x = torch.zeros(n, 1433)
    for r in rows("features.csv.gz"):
        x[int(r[0]), int(r[1])] = float(r[2])
    x = x / x.sum(1, keepdim=True).clamp(min=1)
    e = torch.tensor([[int(a), int(b)] for a, b in rows("edges.csv.gz")]).t()
    edge_index = torch.cat([e, e.flip(0)], 1)
    return x, edge_index, y, train


class PygNet(nn.Module):
    def __init__(self, kind):
        super().__init__()
        from torch_geometric.nn import GATConv, GCNConv
        self.kind = kind
        if kind == "gcn-cora":
            self.conv1, self.conv2, self.p = GCNConv(1433, 16), GCNConv(16, 7), 0.5
        else:
            self.conv1 = GATConv(1433, 8, heads=8, dropout=0.6)
            self.conv2 = GATConv(64, 7, heads=1, concat=False, dropout=0.6)
            self.p = 0.6

    def forward(self, x, edge_index):
        x = nn.functional.dropout(x, self.p, self.training)
        x = self.conv1(x, edge_index)
        x = nn.functional.elu(x) if self.kind == "gat-cora" else x.relu()
        x = nn.functional.dropout(x, self.p, self.training)
        return self.conv2(x, edge_index)


def bench_gnn(name, steps, warmup=3):
    torch.manual_seed(0)
    x, edge_index, y, train = cora()
    model = PygNet(name)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)

    def step():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x, edge_index)[train], y[train])
        loss.backward()
        opt.step()
        return loss.item()

    return time_steps(step, steps, warmup)


def inference_name(name):
    """`(model, batch)` of an inference row's name (`cnn-infer-64`), else None."""
    model, sep, batch = name.rpartition("-infer-")
    if not sep or not batch.isdigit():
        return None
    return model, int(batch)


def bench_inference(model_name, batch, steps, warmup=3):
    """Forward passes of a model in eval mode under torch.inference_mode(), the output read.
    `mlp-int8`, `cnn-int8`, `resnet20-int8`: the model after
    torch.ao.quantization.quantize_dynamic of its linear layers, int8 weights with a scale per
    output channel. `cnn-int8-static`, `resnet20-int8-static`: static
    quantisation in FX graph mode (fbgemm's x86 defaults: convolutions fused with their batch
    norms and ReLUs, weights per output channel, activation scales calibrated on 4 batches of
    64), as `strata compress --quantize int8 --per-channel --calibrate 4`."""
    torch.manual_seed(0)
    static = model_name.endswith("-int8-static")
    model_name = model_name.removesuffix("-static")
    int8 = model_name.endswith("-int8")
    model_name = model_name.removesuffix("-int8")
    if model_name in ("resnet20", "resnet18"):
        model = resnet(model_name)
        x = torch.rand(batch, 3, 32, 32)
    elif model_name == "resnet20-slim":
        model = slim_resnet20()
        x = torch.rand(batch, 3, 32, 32)
    else:
        if model_name == "mlp":
            model = mlp()
        elif model_name == "cnn-slim":
            # Half the channels removed (`strata compress --prune-channels 0.5`).
            model = Cnn((16, 32))
        elif model_name == "cnn-student":
            # The distilled student of docs/compression.md.
            model = Cnn((4, 8), hidden=32)
        else:
            model = Cnn()
        x = torch.rand(batch, 784)
    model.eval()
    if static:
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
        torch.backends.quantized.engine = "x86"
        prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), (x,))
        with torch.inference_mode():
            for _ in range(4):
                prepared(torch.rand(64, *x.shape[1:]))
        model = convert_fx(prepared)
    elif int8:
        model = torch.ao.quantization.quantize_dynamic(
            model, {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig},
            dtype=torch.qint8)

    def step():
        with torch.inference_mode():
            return model(x).sum().item()

    return time_steps(step, inference_steps(model_name, batch, steps), warmup)


def inference_steps(model, batch, steps):
    """As the Rust benchmark: ten times the steps at batch 1, a tenth of them (at least 3)
    for a ResNet at a larger batch."""
    if batch == 1:
        return steps * 10
    if model.startswith("resnet"):
        return max(steps // 10, 3)
    return steps


GENERATED = 100


def bench_generate(cell, calls, warmup=1):
    """ms per character of greedy generation at batch 1 (untrained model, eval mode, inference
    mode): a 20-character prompt, then one step per character carrying the recurrent state, as
    Strata's `CharLm::generate`."""
    torch.manual_seed(0)
    model = CharLm(cell).eval()
    prompt = ((torch.arange(20) * 7) % 84).reshape(1, 20)

    def call():
        with torch.inference_mode():
            y, state = model.rnn(model.embedding(prompt))
            logits = model.head(y[:, -1])
            out = []
            for _ in range(GENERATED):
                nxt = int(logits.argmax(-1))
                out.append(nxt)
                y, state = model.rnn(model.embedding(torch.tensor([[nxt]])), state)
                logits = model.head(y[:, -1])
            return out

    ms, n = time_steps(call, calls, warmup)
    return ms / GENERATED, n


def bench_transformer_generate(calls, warmup=1):
    """ms per character of greedy generation at batch 1 with the benchmark's TransformerLm
    (untrained, eval mode, inference mode): a 20-character prompt, then one forward pass over
    the whole sequence so far per character (nn.TransformerEncoder keeps no key-value cache;
    Strata's row uses burn's autoregressive cache)."""
    torch.manual_seed(0)
    model = TransformerLm().eval()
    prompt = ((torch.arange(20) * 7) % 84).reshape(1, 20)

    def call():
        with torch.inference_mode():
            tokens = prompt
            out = []
            for _ in range(GENERATED):
                logits = model(tokens).reshape(1, -1, 84)[:, -1]
                nxt = int(logits.argmax(-1))
                out.append(nxt)
                tokens = torch.cat([tokens, torch.tensor([[nxt]])], dim=1)
            return out

    ms, n = time_steps(call, calls, warmup)
    return ms / GENERATED, n


def bench(name, steps, warmup=3):
    if name == "transformer-generate":
        return bench_transformer_generate(max(1, min(steps, 5)))
    if name in ("lstm-generate", "gru-generate"):
        return bench_generate(name.split("-")[0], max(1, min(steps, 5)))
    if inference_name(name):
        return bench_inference(*inference_name(name), steps)
    if name.endswith("-cora"):
        return bench_gnn(name, steps, warmup)
    if name == "dcgan":
        return bench_dcgan(steps, warmup)
    if name == "capsnet":
        return bench_capsnet(steps)
    torch.manual_seed(0)
    if name in ("resnet20", "resnet18"):
        model = resnet(name)
        x = torch.rand(32, 3, 32, 32)
        y = torch.arange(32) % 10
        steps, warmup = min(steps, 10), 2
    elif name == "transformer":
        model = TransformerLm()
        ids = (torch.arange(32 * 128) * 7) % 84
        x = ids.reshape(32, 128)
        y = (ids + 1) % 84
        steps, warmup = min(steps, 10), 2
    elif name in ("lstm", "gru"):
        model = CharLm(name)
        ids = (torch.arange(32 * 50) * 7) % 84
        x = ids.reshape(32, 50)
        y = (ids + 1) % 84
        steps, warmup = min(steps, 10), 2
    elif name == "conv-vae":
        model = ConvVae()
        x = torch.rand(64, 784)
        y = None
    else:
        model = mlp() if name == "mlp" else Cnn()
        x = torch.rand(64, 784)
        y = torch.arange(64) % 10
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-8)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss = model.loss(x) if y is None else loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    return time_steps(step, steps, warmup)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="mlp,cnn,lstm,gru,transformer,resnet20,resnet18,conv-vae,"
                   "gcn-cora,gat-cora,dcgan,capsnet,lstm-generate,gru-generate,"
                   "transformer-generate")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    keep_freed_memory()  # as Strata's binaries do (allocator.py)
    for m in a.models.split(","):
        try:
            ms, steps = bench(m, a.steps)
        except ImportError as e:  # torch_geometric is needed for the graph benchmarks only
            print(f"skipping {m}: {e}", file=sys.stderr)
            continue
        print(json.dumps({"model": m, "backend": "pytorch", "ms_per_step": round(ms, 3), "steps": steps}))


if __name__ == "__main__":
    main()
