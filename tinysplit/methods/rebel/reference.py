"""ReBEL's reference pipeline, what the deployed system must give for every sample: the TFLite Micro
device model's int8 output -> the device rule at threshold t (decision.decide) -> the early label
where the sample is served on the device, else the ONNX tail on the int8 output with the confidences
replaced by the zero point (what the host has when only z arrived) -> the label; and the path taken."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinysplit.manifest import load_manifest
from tinysplit.methods.rebel.decision import decide
from tinysplit.methods.rebel.plan import RebelPlan, plan_for
from tinysplit.reference import device_outputs, heldout, quantized_inputs, tail_logits, tail_session


@dataclass(frozen=True)
class Reference:
    threshold: float
    threshold_q: int
    early: np.ndarray  # (N,) bool: served on the device (path "device"), else "remote"
    labels: np.ndarray  # (N,) the final label
    early_label: np.ndarray  # (N,) the device's label (argmax of the int8 confidences)
    remote_label: np.ndarray  # (N,) the tail's label on z

    @property
    def coverage(self) -> float:
        return float(self.early.mean()) if len(self.early) else 0.0

    def paths(self, tail: str = "remote") -> list[str]:
        return ["device" if e else tail for e in self.early]


def remote_labels(bundle: str | Path, outputs_q: np.ndarray, plan: RebelPlan | None = None) -> np.ndarray:
    """The tail's labels on z only: the int8 outputs with their confidences set to the zero point."""
    m = load_manifest(bundle)
    plan = plan or plan_for(m)
    z = np.asarray(outputs_q, np.int8).reshape(len(outputs_q), -1)[:, :plan.latent]
    return tail_logits(bundle, m, plan.host_view(z), tail_session(bundle, m, plan.tail)).argmax(1)


def labels_at_thresholds(bundle: str | Path, thresholds: list[float], n: int | None = None,
                         outputs_q: np.ndarray | None = None) -> dict[float, Reference]:
    """Per threshold t in [0, 1] (InputError otherwise): the path and final label of each held-out input
    (the first ``n``), or of the given int8 device outputs."""
    m = load_manifest(bundle)
    plan = plan_for(m)
    qts = {t: plan.threshold_q(t) for t in thresholds}  # checks every threshold before any work
    if outputs_q is None:
        x, _ = heldout(bundle, m)
        x = x[:n] if n else x
        outputs_q = device_outputs(bundle, m, quantized_inputs(m, x, plan.device_model), plan.device_model)
    flat = np.asarray(outputs_q, np.int8).reshape(len(outputs_q), -1)
    remote = remote_labels(bundle, flat, plan)
    out = {}
    for t, qt in qts.items():
        d = decide(flat, plan.latent, plan.classes, t, plan.confidence_scale, plan.scale, plan.zero_point)
        assert bool(((d.confidence_q >= qt) == d.early).all())
        out[t] = Reference(t, qt, d.early, np.where(d.early, d.label, remote), d.label, remote)
    return out
