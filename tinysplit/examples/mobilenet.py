"""A CIFAR-shaped MobileNetV2-style split model: inverted residual head on the device, tail on the host.

Input 3x32x32 (CIFAR-10 sized). The head is a 3x3 stem and four inverted residual blocks (1x1
expand + ReLU6, 3x3 depthwise + ReLU6, 1x1 linear project, residual ADD where shapes match; two
blocks have stride 2). Its 8x8x32 output is the intermediate representation sent to the host, where
the tail (another block, a 1x1 conv to 128 channels, global average pooling and a linear
classifier) finishes.

No dataset is needed: weights are seeded random (Kaiming init), BatchNorm statistics are
calibrated on deterministic synthetic images (smooth random colour fields with shapes), and the
calibration / held-out sets are generated the same way. The activation arena (tens of KiB at
32x32x64) does not fit a 64 KiB-RAM board but fits comfortably in 512 KiB.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

SEED = 20261123
INPUT_SHAPE = (3, 32, 32)
CLASSES = tuple(f"class{i}" for i in range(10))
CALIBRATION = 200
HELDOUT = 120


def synthetic_images(n: int, seed: int = SEED) -> np.ndarray:
    """Deterministic CIFAR-like float32 NCHW images in [0, 1]: low-frequency colour fields plus a
    random rectangle and noise, so every channel and spatial scale carries signal."""
    rng = np.random.default_rng(seed)
    c, h, w = INPUT_SHAPE
    coarse = rng.random((n, c, 4, 4)).astype(np.float32)
    img = np.kron(coarse, np.ones((1, 1, h // 4, w // 4), dtype=np.float32))
    # smooth the block edges a little with a 3x3 box filter
    pad = np.pad(img, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    img = sum(pad[:, :, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9.0
    for i in range(n):
        y0, x0 = rng.integers(0, h - 8, size=2)
        hh, ww = rng.integers(4, 12, size=2)
        img[i, :, y0:y0 + hh, x0:x0 + ww] = rng.random((c, 1, 1)).astype(np.float32)
    img += rng.normal(0.0, 0.04, size=img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, relu6: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if relu6:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        self.block = nn.Sequential(
            conv_bn(cin, hidden, 1),                                 # 1x1 expand
            conv_bn(hidden, hidden, 3, stride, groups=hidden),       # 3x3 depthwise
            conv_bn(hidden, cout, 1, relu6=False),                   # 1x1 linear project
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_residual else y


class MobileNetHead(nn.Module):
    """3x32x32 -> 32x8x8."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, 16, 3)
        self.blocks = nn.Sequential(
            InvertedResidual(16, 16, 1, 4),   # 32x32, residual
            InvertedResidual(16, 24, 2, 4),   # -> 16x16
            InvertedResidual(24, 24, 1, 4),   # 16x16, residual
            InvertedResidual(24, 32, 2, 4),   # -> 8x8
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


class MobileNetTail(nn.Module):
    """32x8x8 -> logits."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.block = InvertedResidual(32, 32, 1, 4)
        self.head = conv_bn(32, 128, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.head(self.block(x))), 1))


class MobileNetSplit(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = MobileNetHead()
        self.tail = MobileNetTail()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.head(x))


def build_mobilenet(seed: int = SEED) -> MobileNetSplit:
    """Seeded random weights with BatchNorm statistics calibrated on synthetic images (eval mode)."""
    torch.manual_seed(seed)
    model = MobileNetSplit()
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration batches
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.1, 0.1)
    x = torch.from_numpy(synthetic_images(256, seed + 1))
    model.train()
    with torch.no_grad():
        for i in range(0, len(x), 64):
            model(x[i:i + 64])
    return model.eval()


def mobilenet_spec(seed: int = SEED):
    """The export spec: the head on the device ("features", 8x8x32 int8), the tail on the host.

    Returns (spec, model). Calibration and held-out inputs are deterministic synthetic images; the
    held-out labels are the float model's own predictions (there is no dataset), so the tail's
    agreement metrics measure int8-vs-float fidelity."""
    from tinysplit.exporter import DevicePiece, ExportSpec, TailPiece

    model = build_mobilenet(seed)
    calib = synthetic_images(CALIBRATION, seed + 2)
    heldout = synthetic_images(HELDOUT, seed + 3)
    with torch.no_grad():
        labels = model(torch.from_numpy(heldout)).argmax(1).numpy().astype(np.int64)
    spec = ExportSpec(name="mobilenet", device=[DevicePiece("head", model.head, "features")],
                      tails=[TailPiece("tail", model.tail, ("head",))], calibration=calib, heldout=heldout,
                      heldout_labels=labels, classes=CLASSES)
    return spec, model
