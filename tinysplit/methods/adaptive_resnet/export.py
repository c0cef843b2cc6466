"""Export a trained AdaptiveNet: device model "head" (its ResBlocks skippable: the exporter shares each
residual chain's int8 quantization and checks the block count) and host tail "tail", as an
``adaptive_resnet`` bundle (method_data schema: tinysplit/schemas/method_data/adaptive_resnet.schema.json)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinysplit.methods.adaptive_resnet.bundle import DEVICE_MODEL, TAIL
from tinysplit.methods.adaptive_resnet.model import AdaptiveNet


def export_adaptive(model: AdaptiveNet, calibration: np.ndarray, heldout: np.ndarray,
                    heldout_labels: np.ndarray | None, out_dir: str | Path, name: str = "adaptive",
                    classes: tuple[str, ...] = (), default_mask: int = 0, train: dict | None = None,
                    progress=None, force: bool = True):
    """Returns the exporter's ExportResult (bundle_dir, manifest, report)."""
    from tinysplit.exporter import DevicePiece, ExportSpec, TailPiece, export_bundle

    model.eval()
    saved = model.skip_mask
    model.skip_mask = 0  # the device model has every block; the mask is applied at run time
    try:
        from tinysplit.exporter.codegen.blocks import check_mask

        default_mask = check_mask(default_mask, model.blocks)
        names = [n for n, m in model.head.named_modules() if m in model.head.blocks]
        data = {"blocks": model.blocks, "default_mask": default_mask, "block_names": names,
                "config": model.head.config.to_json()}
        if train is not None:
            data["train"] = dict(train)
        spec = ExportSpec(name=name, device=[DevicePiece(DEVICE_MODEL, model.head, "features", skip_blocks=model.blocks)],
                          tails=[TailPiece(TAIL, model.tail, (DEVICE_MODEL,))], calibration=calibration,
                          heldout=heldout, heldout_labels=heldout_labels, classes=classes, method="adaptive_resnet",
                          method_data={"adaptive_resnet": data})
        return export_bundle(spec, out_dir, force=force, progress=progress)
    finally:
        model.skip_mask = saved
