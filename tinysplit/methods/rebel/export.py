"""Export a trained ReBEL model: the device model (Head1 + GMC, one output [z, s * gamma]) and the host
model (Head2 + Tail on z), as a bundle; and the int8 pipeline's predictions from that bundle.

The bundle is a ``rebel`` one: device model "head1" (one int8 output [z, s * gamma]), host tail "remote"
(Head2 + Tail on the whole device output; it slices z), and method_data.rebel (schema
tinysplit/schemas/method_data/rebel.schema.json: latent_dim, classes, confidence_scale,
default_threshold and the device constants), validated by the exporter before any conversion.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinysplit.methods.rebel.decision import decide
from tinysplit.methods.rebel.devicemodel import DeviceLayout, RemoteFromDevice, build_device_model
from tinysplit.methods.rebel.model import RemoteModel
from tinysplit.methods.rebel.plan import TAIL


@dataclass
class RebelExport:
    bundle: Path
    layout: DeviceLayout
    constants: dict
    report: dict


def export_rebel(model, calibration: np.ndarray, heldout: np.ndarray, heldout_labels: np.ndarray | None,
                 out_dir: str | Path, name: str = "rebel", classes: tuple[str, ...] = (), progress=None,
                 clip_max: float = 8.0, floor_margin: float = 8.0, default_threshold: float = 0.9,
                 variant: dict | None = None) -> RebelExport:
    """``default_threshold`` (in [0, 1]) is the threshold the firmware starts with; ``variant`` an
    informational record of how the model was made."""
    import math

    from tinysplit.errors import InputError
    from tinysplit.exporter import DevicePiece, ExportSpec, TailPiece, export_bundle

    if isinstance(default_threshold, bool) or not isinstance(default_threshold, (int, float)) \
            or math.isnan(default_threshold) or not 0.0 <= default_threshold <= 1.0:
        raise InputError(f"default_threshold must be a number in [0, 1], got {default_threshold!r}")
    model.eval()
    dev, layout, consts = build_device_model(model.head1, model.classifier, calibration, clip_max, floor_margin)
    remote = RemoteFromDevice(RemoteModel(model.head2, model.tail), layout.latent).eval()
    cfg = getattr(model, "config", None)
    clf = model.classifier
    rebel = {"latent_dim": layout.latent, "classes": layout.classes, "confidence_scale": layout.confidence_scale,
             "default_threshold": float(default_threshold), "clip": consts["clip"], "clip_max": float(clip_max),
             "whitened_max": consts["whitened_max"], "floor": consts["floor"], "floor_margin": float(floor_margin),
             "covariance": clf.covariance, "components": clf.components,
             "proj_dim": None if clf.projection is None else int(clf.dim)}
    if variant is not None or cfg is not None:
        from dataclasses import asdict

        rebel["variant"] = dict(variant) if variant is not None else asdict(cfg)
    spec = ExportSpec(name=name, device=[DevicePiece("head1", dev, "features")],
                      tails=[TailPiece(TAIL, remote, ("head1",))], calibration=calibration, heldout=heldout,
                      heldout_labels=heldout_labels, classes=classes, method="rebel", method_data={"rebel": rebel})
    res = export_bundle(spec, out_dir, force=True, progress=progress)
    return RebelExport(res.bundle_dir, layout, consts, res.report)


@dataclass
class Int8Pipeline:
    """What the deployed pipeline computes on held-out inputs: the int8 device output (TFLite Micro),
    the device's early label and confidence, and the host's label on the int8 z (ONNX Runtime)."""

    out_q: np.ndarray  # (N, D + C) int8
    scale: float
    zero_point: int
    z: np.ndarray  # (N, D) dequantized
    gamma: np.ndarray  # (N, C) dequantized / s
    early_label: np.ndarray
    remote_label: np.ndarray

    def decisions(self, threshold: float, layout: DeviceLayout):
        return decide(self.out_q, layout.latent, layout.classes, threshold, layout.confidence_scale, self.scale,
                      self.zero_point)


def int8_pipeline(ex: RebelExport, x: np.ndarray | None = None) -> Int8Pipeline:
    from tinysplit.manifest import load_manifest
    from tinysplit.quant import dequantize
    from tinysplit.reference import device_outputs, heldout, quantized_inputs, tail_logits

    m = load_manifest(ex.bundle)
    if x is None:
        x, _ = heldout(ex.bundle, m)
    out_q = device_outputs(ex.bundle, m, quantized_inputs(m, x)).reshape(len(x), -1)
    o = m.device_models[0].outputs[0]
    deq = dequantize(out_q, o.scale, o.zero_point)
    z, gamma = ex.layout.split(deq)
    remote = tail_logits(ex.bundle, m, out_q.reshape(len(x), *o.shape[1:])).argmax(1)
    d = decide(out_q, ex.layout.latent, ex.layout.classes, 0.0, ex.layout.confidence_scale, o.scale, o.zero_point)
    return Int8Pipeline(out_q, float(o.scale), int(o.zero_point), z, gamma, d.label, remote)
