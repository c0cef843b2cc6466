"""CIFAR-10 for the benchmarks: the archive's loader, crops and flips, the MobileNetV2-style split
model (tinysplit.examples.mobilenet's head and a host tail) and its float training. Shared by
bench_nair_cifar10.py and bench_rebel_cifar10.py (not collected by pytest)."""

from __future__ import annotations

import io
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinysplit.examples.mobilenet import InvertedResidual, MobileNetHead, conv_bn

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-jpeg.npz"

SEED = 1
MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)[:, None, None]
STD = np.array([0.2470, 0.2435, 0.2616], np.float32)[:, None, None]


def make_tail(num_classes: int = 10) -> nn.Sequential:
    return nn.Sequential(conv_bn(32, 96, 1), conv_bn(96, 96, 3, 1, groups=96), conv_bn(96, 64, 1, relu6=False),
                         InvertedResidual(64, 64, 1, 4), conv_bn(64, 256, 1), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(256, num_classes))


def load_split(path: Path, split: str, n: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    d = np.load(path)
    jpeg, off, labels = d[f"{split}_jpeg"], d[f"{split}_offsets"], d[f"{split}_labels"]
    idx = np.random.default_rng(seed).permutation(len(labels))  # the splits are stored sorted by class
    if n:
        idx = idx[:n]
    x = np.stack([np.asarray(Image.open(io.BytesIO(jpeg[off[i]:off[i + 1]].tobytes())).convert("RGB"))
                  for i in idx]).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    return ((x - MEAN) / STD).astype(np.float32), labels[idx].astype(np.int64)


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random crop with 4-pixel padding and horizontal flip."""
    b = x.shape[0]
    padded = nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
    dx, dy = torch.randint(0, 9, (2,), generator=g).tolist()
    out = padded[:, :, dy:dy + 32, dx:dx + 32]
    flip = torch.rand(b, generator=g) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: float, lr: float, log, device: str = "cpu") -> None:
    """SGD with Nesterov momentum, a one-cycle learning rate, crops and flips; on ``device``, the model
    back on the CPU at the end."""
    g = torch.Generator().manual_seed(SEED)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.to(device)
    steps = max(1, int(math.ceil(epochs * len(xt) / 128)))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=4e-5, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.25)
    model.train()
    step, t0 = 0, time.time()
    while step < steps:
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt) - 127, 128):
            if step >= steps:
                break
            bi = perm[i:i + 128]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(augment(xt[bi], g).to(device)), yt[bi].to(device))
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 50 == 0:
                log(f"  step {step}/{steps} loss {loss.item():.3f} ({time.time() - t0:.0f} s)")
    model.cpu().eval()



def split_model() -> nn.Sequential:
    """The float model: .head (3x32x32 -> 8x8x32) and .tail (-> 10 logits), channels-last (about twice
    as fast on CPU for depthwise convs)."""
    model = nn.Sequential()
    model.head, model.tail = MobileNetHead(), make_tail()
    return model.to(memory_format=torch.channels_last)


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    hits = sum(int((model(torch.from_numpy(x[i:i + 500])).argmax(1).numpy() == y[i:i + 500]).sum())
               for i in range(0, len(x), 500))
    return hits / len(x)
