"""Adaptive ResNet's reference pipeline, what the deployed system must give for each sample and mask:
TFLite Micro running the bundle's head with the masked blocks removed (each replaced by a QUANTIZE from
x to y: exporter/codegen/blocks.remove_blocks; with shared quantization that is the identity) -> the
host tail (ONNX Runtime) on the dequantized int8 output -> the label."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinysplit.manifest import load_manifest
from tinysplit.methods.adaptive_resnet.bundle import layout_for
from tinysplit.reference import heldout, quantized_inputs, tail_logits, tail_session


def masked_head(bundle: str | Path, mask: int) -> bytes:
    """The head's .tflite with the blocks of ``mask`` removed (InputError for bits >= B)."""
    from tinysplit.exporter.codegen.blocks import remove_blocks

    m = load_manifest(bundle)
    lay = layout_for(m)
    lay.check_mask(mask)
    return remove_blocks((Path(bundle) / m.device_model(lay.device_model).file).read_bytes(), mask)


def device_outputs(bundle: str | Path, mask: int, inputs_q: np.ndarray) -> np.ndarray:
    """(N, output_bytes) int8: TFLite Micro on the masked head, one inference per input."""
    from tinysplit.exporter.runtimes import TflmRunner

    lay = layout_for(load_manifest(bundle))
    rt = TflmRunner(masked_head(bundle, mask), num_outputs=1)
    outs = [rt.run(inputs_q[i:i + 1])[0].reshape(-1) for i in range(len(inputs_q))]
    return np.stack(outs).astype(np.int8) if outs else np.zeros((0, lay.output_bytes), np.int8)


def labels_for_masks(bundle: str | Path, masks: list[int], x: np.ndarray | None = None,
                     n: int | None = None) -> dict[int, np.ndarray]:
    """Per mask, the label of each input (the held-out inputs, the first ``n``, by default)."""
    m = load_manifest(bundle)
    lay = layout_for(m)
    for k in masks:
        lay.check_mask(k)  # every mask checked before any work
    if x is None:
        x, _ = heldout(bundle, m)
        x = x[:n] if n else x
    xq = quantized_inputs(m, x)
    sess = tail_session(bundle, m, lay.tail)
    out = {}
    for k in masks:
        q = device_outputs(bundle, k, xq)
        out[k] = tail_logits(bundle, m, q.reshape(len(q), *lay.output_shape), sess).argmax(1)
    return out


def labels_from_outputs(bundle: str | Path, outputs_q: np.ndarray) -> np.ndarray:
    """The host tail's labels on int8 head outputs (what the server computes from the device's frames)."""
    m = load_manifest(bundle)
    lay = layout_for(m)
    q = np.asarray(outputs_q, np.int8).reshape(len(outputs_q), *lay.output_shape)
    return tail_logits(bundle, m, q, tail_session(bundle, m, lay.tail)).argmax(1)
