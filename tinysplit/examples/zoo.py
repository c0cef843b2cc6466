"""Three small heads that use the ops common tiny models need beyond convolutions and ReLU6.

- ``mobilenetv3``: a MobileNetV3-small-style head: Hardswish stem, bottlenecks with
  squeeze-and-excitation (global average pool, 1x1 reduce + ReLU, 1x1 expand + hard sigmoid, channel
  scaling), Hardswish and ReLU activations, 3x3 and 5x5 depthwise convolutions. 3x32x32 -> 24x8x8.
- ``encoder-decoder``: a small encoder-decoder: two stride-2 convolutions down, a transposed
  convolution and a bilinear upsampling back up. 3x32x32 -> 8x32x32.
- ``detector``: a detector-style head (a YOLO-like neck): leaky-ReLU convolutions, the deep features
  upsampled (nearest) and concatenated with the shallow ones, a 1x1 prediction layer with
  3 anchors x (4 box + 1 objectness + 2 classes). 3x32x32 -> 21x16x16.

Each comes with a small host tail (global average pooling and a linear classifier) so that it exports
as an ordinary bundle (``tinysplit export --example NAME``). Weights are seeded random with BatchNorm
statistics calibrated on the deterministic synthetic images of ``tinysplit.examples.mobilenet``: no
dataset is needed; the held-out labels are the float model's own predictions.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tinysplit.examples.mobilenet import CLASSES, SEED, synthetic_images

CALIBRATION = 160
HELDOUT = 60


def _cbn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: nn.Module | None = None) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act)
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, squeeze: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(c, squeeze, 1)
        self.relu = nn.ReLU()
        self.expand = nn.Conv2d(squeeze, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Hardsigmoid written as relu6(s + 3) / 6: nn.Hardsigmoid converts to RELU_0_TO_1, which
        # TFLite Micro has no kernel for
        s = self.expand(self.relu(self.reduce(self.pool(x))))
        return x * (nn.functional.relu6(s + 3.0) * (1.0 / 6.0))


class Bneck(nn.Module):
    """MobileNetV3's bottleneck: [1x1 expand], kxk depthwise, [SE], 1x1 linear project, [residual]."""

    def __init__(self, cin: int, hidden: int, cout: int, k: int, stride: int, se: bool, act: type[nn.Module]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(_cbn(cin, hidden, 1, act=act()))
        layers.append(_cbn(hidden, hidden, k, stride, groups=hidden, act=act()))
        if se:
            layers.append(SqueezeExcite(hidden, max(8, hidden // 4)))
        layers.append(_cbn(hidden, cout, 1))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV3Head(nn.Module):
    """3x32x32 -> 24x8x8."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _cbn(3, 16, 3, 2, act=nn.Hardswish())             # -> 16x16
        self.blocks = nn.Sequential(
            Bneck(16, 16, 16, 3, 2, se=True, act=nn.ReLU),               # -> 8x8, SE
            Bneck(16, 48, 24, 5, 1, se=True, act=nn.Hardswish),          # 8x8, 5x5 depthwise, SE
            Bneck(24, 64, 24, 3, 1, se=False, act=nn.Hardswish),         # 8x8, residual
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


class EncoderDecoderHead(nn.Module):
    """3x32x32 -> 8x32x32."""

    def __init__(self) -> None:
        super().__init__()
        self.down1 = _cbn(3, 16, 3, 2, act=nn.ReLU())                   # -> 16x16
        self.down2 = _cbn(16, 32, 3, 2, act=nn.ReLU())                  # -> 8x8
        self.up1 = nn.Sequential(nn.ConvTranspose2d(32, 16, 2, stride=2), nn.ReLU())   # -> 16x16
        self.up2 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)  # -> 32x32
        self.out = nn.Conv2d(16, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.up2(self.up1(self.down2(self.down1(x)))))


class DetectorHead(nn.Module):
    """3x32x32 -> 21x16x16."""

    def __init__(self, anchors: int = 3, classes: int = 2) -> None:
        super().__init__()
        leaky = lambda: nn.LeakyReLU(0.1)  # noqa: E731
        self.c1 = _cbn(3, 16, 3, 2, act=leaky())                         # -> 16x16
        self.c2 = _cbn(16, 32, 3, 2, act=leaky())                        # -> 8x8
        self.lateral = _cbn(32, 16, 1, act=leaky())
        self.up = nn.Upsample(scale_factor=2, mode="nearest")            # -> 16x16
        self.fuse = _cbn(32, 32, 3, act=leaky())
        self.pred = nn.Conv2d(32, anchors * (5 + classes), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shallow = self.c1(x)
        deep = self.up(self.lateral(self.c2(shallow)))
        return self.pred(self.fuse(torch.cat([deep, shallow], dim=1)))


class PoolTail(nn.Module):
    def __init__(self, channels: int, num_classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))


class _Split(nn.Module):
    def __init__(self, head: nn.Module, tail: nn.Module) -> None:
        super().__init__()
        self.head, self.tail = head, tail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.head(x))


# name -> (head class, head output channels)
HEADS: dict[str, tuple[type[nn.Module], int]] = {
    "mobilenetv3": (MobileNetV3Head, 24),
    "encoder-decoder": (EncoderDecoderHead, 8),
    "detector": (DetectorHead, 21),
}


def build(name: str, seed: int = SEED) -> _Split:
    """Seeded random weights, BatchNorm statistics calibrated on synthetic images (eval mode)."""
    head_cls, channels = HEADS[name]
    torch.manual_seed(seed)
    model = _Split(head_cls(), PoolTail(channels))
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, nn.BatchNorm2d):
            m.momentum = None
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.1, 0.1)
    x = torch.from_numpy(synthetic_images(192, seed + 1))
    model.train()
    with torch.no_grad():
        for i in range(0, len(x), 64):
            model(x[i:i + 64])
    return model.eval()


def zoo_spec(name: str, seed: int = SEED):
    """The export spec of example ``name``: the head on the device ("features"), the tail on the host.
    Returns (spec, model)."""
    from tinysplit.exporter import DevicePiece, ExportSpec, TailPiece

    model = build(name, seed)
    calib = synthetic_images(CALIBRATION, seed + 2)
    heldout = synthetic_images(HELDOUT, seed + 3)
    with torch.no_grad():
        labels = model(torch.from_numpy(heldout)).argmax(1).numpy().astype(np.int64)
    spec = ExportSpec(name=name.replace("-", "_"), device=[DevicePiece("head", model.head, "features")],
                      tails=[TailPiece("tail", model.tail, ("head",))], calibration=calib, heldout=heldout,
                      heldout_labels=labels, classes=CLASSES)
    return spec, model
