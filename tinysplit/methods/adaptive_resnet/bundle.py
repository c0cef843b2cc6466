"""An Adaptive ResNet bundle's layout, read from its manifest (numpy only: the host server, the device
simulator, the firmware generator and the reference read it from here).

The bundle (tinysplit.methods.adaptive_resnet.export): device model "head" with B identity residual
blocks (bit i of a skip mask skips the i-th, exporter/codegen/blocks.py), whose int8 output goes to
host tail "tail" whatever the mask; method_data.adaptive_resnet holds B and the default mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinysplit.errors import ManifestError
from tinysplit.manifest import Manifest

DEVICE_MODEL = "head"
TAIL = "tail"


@dataclass(frozen=True)
class AdaptiveLayout:
    blocks: int  # B
    default_mask: int
    device_model: str
    tail: str
    output_shape: tuple[int, ...]  # the head's NHWC output shape without the batch
    output_bytes: int
    scale: float
    zero_point: int

    @property
    def masks(self) -> int:
        return 1 << self.blocks

    def check_mask(self, mask: int) -> int:
        """``mask`` if it has bits 0..B-1 only; InputError naming the block count otherwise."""
        from tinysplit.exporter.codegen.blocks import check_mask

        return check_mask(mask, self.blocks)


def layout_for(manifest: Manifest) -> AdaptiveLayout:
    """The layout of an 'adaptive_resnet' bundle; ManifestError naming the field that does not fit."""
    if manifest.method != "adaptive_resnet" or "adaptive_resnet" not in manifest.method_data:
        raise ManifestError(f"bundle '{manifest.name}' is a '{manifest.method}' bundle without Adaptive ResNet data "
                            "(field 'method_data.adaptive_resnet'); export it with tinysplit.methods.adaptive_resnet.export")
    a = manifest.method_data["adaptive_resnet"]
    names = [d.name for d in manifest.device_models]
    if names != [DEVICE_MODEL]:
        raise ManifestError(f"field 'device_models': an 'adaptive_resnet' bundle has one device model '{DEVICE_MODEL}', "
                            f"it has {names}")
    tails = [t for t in manifest.host_tails if t.name == TAIL]
    if not tails or tuple(tails[0].consumes) != (DEVICE_MODEL,):
        raise ManifestError(f"field 'host_tails': an 'adaptive_resnet' bundle needs a host tail '{TAIL}' consuming "
                            f"'{DEVICE_MODEL}'")
    blocks, default = int(a["blocks"]), int(a["default_mask"])
    if default >> blocks:
        raise ManifestError(f"field 'method_data.adaptive_resnet.default_mask': 0x{default:x} has bits at or above "
                            f"bit {blocks}, but the head has {blocks} skippable blocks")
    names_ = a.get("block_names")
    if names_ is not None and len(names_) != blocks:
        raise ManifestError(f"field 'method_data.adaptive_resnet.block_names': {len(names_)} names for {blocks} blocks")
    out = manifest.device_models[0].outputs[0]
    shape = tuple(int(v) for v in out.shape[1:])
    return AdaptiveLayout(blocks, default, DEVICE_MODEL, TAIL, shape, int(np.prod(shape)), float(out.scale),
                          int(out.zero_point))


__all__ = ["AdaptiveLayout", "DEVICE_MODEL", "TAIL", "layout_for"]
