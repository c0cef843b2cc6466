"""A ReBEL bundle's deployment plan, read from its manifest: where z and the confidences are in the device
model's one int8 output, the output's quantization, the host tail, and the threshold as the device's
integer (numpy only: the host server, the device simulator and the reference read it from here).

The bundle (tinysplit.methods.rebel.export): one device model (Head1 + GMC) whose output holds
D + C int8 values per sample in flattened order, z in [0, D) and s * gamma_c in [D, D + C); one host
tail "remote" (Head2 + Tail) that consumes the WHOLE dequantized device output and slices z itself, so
the host fills the C confidences with the zero point when only z arrived (the tail ignores them).
``plan_for`` checks that method_data.rebel matches the device output (ManifestError naming the field).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tinysplit.errors import InputError, ManifestError
from tinysplit.manifest import Manifest
from tinysplit.methods.rebel.decision import threshold_q
from tinysplit.wire.frame import MAX_PAYLOAD

TAIL = "remote"
MAX_LATENT = 1018  # z in one LATENT frame (the schema's maximum of latent_dim)
assert MAX_LATENT <= MAX_PAYLOAD


@dataclass(frozen=True)
class RebelPlan:
    latent: int  # D
    classes: int  # C
    confidence_scale: float  # s
    default_threshold: float
    scale: float  # the device output's quantization
    zero_point: int
    output_shape: tuple[int, ...]  # the device output's NHWC shape without the batch (the tail's input view)
    device_model: str
    tail: str

    @property
    def output_bytes(self) -> int:
        return self.latent + self.classes

    def threshold_q(self, threshold: float) -> int:
        """q_t for a threshold t in [0, 1] (InputError otherwise): -128..128, 128 = never early."""
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating, np.integer)) \
                or math.isnan(threshold) or not 0.0 <= threshold <= 1.0:
            raise InputError(f"threshold must be a number in [0, 1], got {threshold!r}")
        return threshold_q(float(threshold), self.confidence_scale, self.scale, self.zero_point)

    def control_value(self, threshold: float) -> int:
        """The value of CONTROL key 3 (TS_CONTROL_THRESHOLD) for t: q_t + 128, in 0..256."""
        return self.threshold_q(threshold) + 128

    @property
    def default_threshold_q(self) -> int:
        return self.threshold_q(self.default_threshold)

    def confidence(self, q: int | np.ndarray) -> float | np.ndarray:
        """gamma from an int8 confidence code: (q - zero_point) * scale / s."""
        return (np.asarray(q, np.float64) - self.zero_point) * self.scale / self.confidence_scale

    def host_view(self, z_q: np.ndarray) -> np.ndarray:
        """(N, *output_shape) int8: z followed by the zero point for each confidence (what the host
        gives the tail when only z arrived)."""
        z = np.asarray(z_q, dtype=np.int8).reshape(-1, self.latent)
        fill = np.full((len(z), self.classes), self.zero_point, dtype=np.int8)
        return np.concatenate([z, fill], axis=1).reshape(len(z), *self.output_shape)


def plan_for(manifest: Manifest) -> RebelPlan:
    """The plan of a 'rebel' bundle; ManifestError naming the field where method_data.rebel does not match
    the device model's output or the host tail."""
    if manifest.method != "rebel" or "rebel" not in manifest.method_data:
        raise ManifestError(f"bundle '{manifest.name}' is a '{manifest.method}' bundle without a ReBEL layout "
                            "(field 'method_data.rebel'); export it with tinysplit.methods.rebel.export")
    r = manifest.method_data["rebel"]
    tails = [(i, t) for i, t in enumerate(manifest.host_tails) if t.name == TAIL]
    if not tails:
        raise ManifestError(f"field 'host_tails': a 'rebel' bundle needs a host tail named '{TAIL}' (Head2 + Tail); "
                            f"it has: {', '.join(t.name for t in manifest.host_tails) or 'none'}")
    ti, tail = tails[0]
    if len(tail.consumes) != 1:
        raise ManifestError(f"field 'host_tails[{ti}].consumes': the '{TAIL}' tail must consume exactly one device model")
    dm = manifest.device_model(tail.consumes[0])
    if len(dm.outputs) != 1:
        raise ManifestError(f"field 'device_models[{manifest.device_models.index(dm)}].outputs': device model '{dm.name}' must have one output "
                            f"[z, s * gamma], it has {len(dm.outputs)}")
    out = dm.outputs[0]
    size = int(np.prod(out.shape[1:]))
    d, c = int(r["latent_dim"]), int(r["classes"])
    if d + c != size:
        raise ManifestError(f"field 'method_data.rebel.latent_dim': latent_dim {d} + classes {c} = {d + c}, but "
                            f"device model '{dm.name}' outputs {size} values per sample (shape "
                            f"{list(out.shape)}): the classifier does not match the latent size")
    if manifest.classes and c != len(manifest.classes):
        raise ManifestError(f"field 'method_data.rebel.classes': {c}, but the bundle names {len(manifest.classes)} "
                            "classes")
    t_in = tail.inputs[0].shape if tail.inputs else None
    if t_in is not None and int(np.prod([abs(v) for v in t_in[1:]])) != size:
        raise ManifestError(f"field 'host_tails[{ti}].inputs': the '{TAIL}' tail takes {list(t_in)}, not the whole device "
                            f"output of {size} values")
    return RebelPlan(d, c, float(r["confidence_scale"]), float(r["default_threshold"]), float(out.scale),
                     int(out.zero_point), tuple(int(v) for v in out.shape[1:]), dm.name, tail.name)
