"""The digits example: a small CNN on scikit-learn's 8x8 handwritten digits, split after layer 2.

The data ships inside scikit-learn (1,797 images), so the example trains offline in seconds.
The head (two 3x3 convs, the second with stride 2) runs on the device; its 4x4x32 output is the
intermediate representation sent to the host, where the tail (a conv, global average pooling and
a 1x1-conv classifier) finishes. The classifier variant runs the whole network on the device.
The last layer is a 1x1 conv + flatten instead of a Linear: TFLite Micro's FULLY_CONNECTED
rounds differently from TFLite's reference kernel on a few outputs, the 1x1 conv does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

SEED = 20261123
HELDOUT = 360  # images held out for verification (20% of 1,797)
CLASSES = tuple(str(d) for d in range(10))


def load_digits_split(seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_heldout, y_heldout); x is float32 NCHW (N, 1, 8, 8) scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    test, train = order[:HELDOUT], order[HELDOUT:]
    return x[train], y[train], x[test], y[test]


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class DigitsHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(1, 16)
        self.conv2 = conv_bn_relu(16, 32, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class DigitsTail(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv3 = conv_bn_relu(32, 32)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Conv2d(32, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.pool(self.conv3(x))), 1)


class DigitsNet(nn.Module):
    """Head + tail: the whole classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.head = DigitsHead()
        self.tail = DigitsTail()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.head(x))


@dataclass
class TrainedDigits:
    model: DigitsNet
    x_train: np.ndarray
    y_train: np.ndarray
    x_heldout: np.ndarray
    y_heldout: np.ndarray
    heldout_accuracy: float


def train_digits(epochs: int = 30, seed: int = SEED, log=None) -> TrainedDigits:
    """Train DigitsNet deterministically (fixed seed, single thread order); a few seconds on a CPU."""
    torch.manual_seed(seed)
    x_tr, y_tr, x_te, y_te = load_digits_split(seed)
    model = DigitsNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        sched.step()
        if log:
            log(f"epoch {epoch + 1}/{epochs} loss {loss.item():.3f}")
    model.eval()
    with torch.no_grad():
        acc = float((model(torch.from_numpy(x_te)).argmax(1).numpy() == y_te).mean())
    return TrainedDigits(model, x_tr, y_tr, x_te, y_te, acc)


VARIANTS = ("digits", "digits-classifier")
SPLIT_LAYER = "conv2.0"  # the head's last conv (its BatchNorm is folded in before ranking)
TAIL_FIRST_LAYER = "conv3.0"
UNIT_CHANNELS = 2


def digits_spec(variant: str = "digits", epochs: int = 30, log=None):
    """The export spec of the digits example.

    ``digits``: head on the device (features, 4x4x32), tail on the host; the head's 32 output
    channels are ranked by NAIR importance (L1 norm of the last conv's filters), grouped into 16
    units of 2 channels, and the order is baked into the weights (the float model is unchanged),
    so a device can send the most important units first.
    ``digits-classifier``: the whole network on the device, labels out.
    Calibration uses 300 training images; verification the 360 held-out ones.
    """
    from tinysplit.exporter import DevicePiece, ExportSpec, TailPiece

    if variant not in VARIANTS:
        raise ValueError(f"unknown digits variant '{variant}' (choose {', '.join(VARIANTS)})")
    t = train_digits(epochs=epochs, log=log)
    calib = t.x_train[np.random.default_rng(SEED).permutation(len(t.x_train))[:300]]
    common = dict(calibration=calib, heldout=t.x_heldout, heldout_labels=t.y_heldout, classes=CLASSES)
    if variant == "digits":
        from tinysplit.methods.nair.order import bake_order

        order = bake_order(t.model.head, SPLIT_LAYER, t.model.tail, TAIL_FIRST_LAYER, UNIT_CHANNELS)
        return ExportSpec(name="digits", device=[DevicePiece("head", t.model.head, "features")],
                          tails=[TailPiece("tail", t.model.tail, ("head",))], method="nair",
                          method_data=order.method_data(), **common), t
    return ExportSpec(name="digits_classifier", device=[DevicePiece("classifier", t.model, "classifier")],
                      **common), t
