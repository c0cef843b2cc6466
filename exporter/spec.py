"""What the exporter is given: device pieces, host tails and data, validated before any conversion."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tinysplit.errors import InputError, UnsupportedModelError
from tinysplit.exporter.ops import find_unsupported_modules

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass
class DevicePiece:
    """A torch.nn.Module that runs on the device. It takes the model input (N, C, H, W) float32."""

    name: str
    module: Any  # torch.nn.Module
    kind: str = "features"  # "features" (an intermediate representation) or "classifier" (logits)
    # > 0: the piece has this many identity residual blocks that a runtime skip mask may skip. After the
    # int8 conversion the exporter gives each chain of them one quantization (so a skip is free and
    # exact, exporter/codegen/blocks.py) and checks that it finds exactly this many, in forward order.
    skip_blocks: int = 0


@dataclass
class TailPiece:
    """A torch.nn.Module that runs on the host on the (dequantized) outputs of device pieces."""

    name: str
    module: Any  # torch.nn.Module
    consumes: tuple[str, ...]  # device piece names, in the order of forward()'s arguments


@dataclass
class ExportSpec:
    """Everything ``export_bundle`` needs. Inputs are float32 NCHW, as the PyTorch model takes them."""

    name: str
    device: list[DevicePiece]
    calibration: np.ndarray  # representative inputs for int8 calibration, (N, C, H, W) float32
    heldout: np.ndarray  # held-out inputs for verification, (N, C, H, W) float32
    heldout_labels: np.ndarray | None = None
    tails: list[TailPiece] = field(default_factory=list)
    classes: tuple[str, ...] = ()
    method: str = "plain"
    method_data: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.calibration.shape[1:])


def _check_array(what: str, a: Any, want_shape: tuple[int, ...] | None) -> None:
    if not isinstance(a, np.ndarray):
        raise InputError(f"{what} must be a numpy array, got {type(a).__name__}; convert it with np.asarray(...)")
    if a.dtype != np.float32:
        raise InputError(f"{what} has dtype {a.dtype}; expected float32, the dtype the model takes "
                         "(convert with x.astype(np.float32) and the same scaling as in training)")
    if a.ndim != 4:
        raise InputError(f"{what} has shape {a.shape}; expected 4 dimensions (N, C, H, W), "
                         "a batch of inputs in PyTorch's NCHW layout")
    if a.shape[0] < 1:
        raise InputError(f"{what} is empty; give at least one sample (a few hundred for calibration)")
    if want_shape is not None and tuple(a.shape[1:]) != want_shape:
        raise InputError(f"{what} has shape {a.shape}; its samples must have the calibration data's shape "
                         f"(N, {', '.join(map(str, want_shape))})")
    if not np.all(np.isfinite(a)):
        raise InputError(f"{what} contains NaN or infinite values; clean the data before exporting")


def check_finite_weights(piece_name: str, module: Any) -> None:
    import torch

    for pname, t in list(module.named_parameters()) + list(module.named_buffers()):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise InputError(f"'{piece_name}': {'parameter' if pname in dict(module.named_parameters()) else 'buffer'} "
                             f"'{pname}' has {bad} NaN/infinite value(s); the model diverged or was loaded "
                             "wrongly: retrain or reload it before exporting")


def validate_spec(spec: ExportSpec) -> None:
    """Cheap checks, before any conversion: names, data, weights, known-unsupported layers, shapes."""
    import torch

    if not _IDENT.match(spec.name or ""):
        raise InputError(f"bundle name '{spec.name}' must be an identifier (letters, digits, _; <= 64 chars)")
    from tinysplit.manifest import ManifestError, validate_method_data
    from tinysplit.methods import get_method

    get_method(spec.method)
    try:  # before any conversion: the method data the manifest will carry must pass the method's schema
        validate_method_data(spec.method, spec.method_data, "ExportSpec")
    except ManifestError as e:
        raise InputError(str(e)) from None
    if not spec.device:
        raise InputError("the export spec has no device pieces; give at least one torch.nn.Module to run on the device")
    names = [p.name for p in spec.device] + [t.name for t in spec.tails]
    for n in names:
        if not _IDENT.match(n or ""):
            raise InputError(f"piece name '{n}' must be an identifier (letters, digits, _; <= 64 chars)")
    if len(set(names)) != len(names):
        raise InputError(f"piece names must be unique, got {names}")
    _check_array("calibration data", spec.calibration, None)
    _check_array("held-out data", spec.heldout, spec.input_shape)
    if spec.heldout_labels is not None and len(spec.heldout_labels) != len(spec.heldout):
        raise InputError(f"held-out labels ({len(spec.heldout_labels)}) and held-out inputs "
                         f"({len(spec.heldout)}) differ in length")
    device_names = {p.name for p in spec.device}
    for p in spec.device:
        if p.kind not in ("features", "classifier"):
            raise InputError(f"device piece '{p.name}': kind '{p.kind}' must be 'features' or 'classifier'")
        if not isinstance(p.module, torch.nn.Module):
            raise InputError(f"device piece '{p.name}' is a {type(p.module).__name__}, not a torch.nn.Module")
        if isinstance(p.skip_blocks, bool) or not isinstance(p.skip_blocks, int) or not 0 <= p.skip_blocks <= 32:
            raise InputError(f"device piece '{p.name}': skip_blocks {p.skip_blocks!r} must be an integer in 0..32 "
                             "(the identity residual blocks a u32 skip mask may skip)")
    for t in spec.tails:
        if not isinstance(t.module, torch.nn.Module):
            raise InputError(f"host tail '{t.name}' is a {type(t.module).__name__}, not a torch.nn.Module")
        if not t.consumes or any(c not in device_names for c in t.consumes):
            raise InputError(f"host tail '{t.name}' consumes {list(t.consumes)}; each must name a device piece "
                             f"({', '.join(sorted(device_names))})")
    for piece in [*spec.device, *spec.tails]:
        check_finite_weights(piece.name, piece.module)
    for p in spec.device:
        bad = find_unsupported_modules(p.module)
        if bad:
            name, mod, reason = bad[0]
            raise UnsupportedModelError(
                f"device piece '{p.name}': layer '{name}' ({type(mod).__name__}) cannot run on the device: {reason}")
    # Run each device piece once on a calibration sample: a shape mismatch shows up here, cheaply.
    x = torch.from_numpy(spec.calibration[:1])
    for p in spec.device:
        p.module.eval()
        try:
            with torch.no_grad():
                y = p.module(x)
        except Exception as e:  # torch raises RuntimeError/ValueError on shape errors
            raise InputError(f"calibration data of shape {spec.calibration.shape} does not fit device piece "
                             f"'{p.name}': {str(e).splitlines()[0]}. Calibration inputs must be (N, C, H, W) "
                             "float32 exactly as the model takes them") from None
        if not isinstance(y, torch.Tensor):
            raise InputError(f"device piece '{p.name}' returned {type(y).__name__}; it must return one tensor")
