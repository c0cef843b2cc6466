"""Where a device model comes from for the firmware commands: a bundle's device model, or any int8
.tflite file (the TFLite converter, Edge Impulse, a model zoo). Both become a ``ModelSource``
(name, int8 .tflite bytes, int8 inputs); the HIL check takes only that, so both share one code path.

Inputs of a .tflite file (``tinysplit hil --tflite``):

- none given: random int8 values, uniform over -128..127, from ``numpy.random.default_rng(seed)``
  (seed 0 unless ``--seed``), shaped like the model's input;
- ``--inputs x.npy``: an array of shape (N, H, W, C) or (H, W, C), the model's input shape without
  (or with) its batch dimension, NHWC as TFLite stores it. int8 values are used as they are
  (already quantized); float values are quantized with the model's input scale and zero point
  (TFLite's rounding, saturated). Any other dtype is an error.

No TensorFlow and no PyTorch: the .tflite is read with the schema that ships with tflite-micro.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinysplit.errors import InputError

DEFAULT_SEED = 0


@dataclass(frozen=True)
class ModelSource:
    """One int8 device model and the inputs to check it on."""

    name: str  # the report's model name; the C prefix is c_identifier(name)
    tflite: bytes
    inputs: np.ndarray  # int8, NHWC, one row per sample: (N, *input shape without batch)
    inputs_from: str  # what the inputs are, for the report: "held-out", "random int8 (seed 0)", "x.npy"


def tflite_model_name(path: str | Path) -> str:
    """The model name of a .tflite file: its stem (``models/kws_int8.tflite`` -> ``kws_int8``)."""
    return Path(path).stem


def read_tflite_file(path: str | Path) -> bytes:
    """The bytes of an int8 .tflite file the code generator can lower; else InputError (not a file,
    not a .tflite) or UnsupportedModelError (names the operator index and op)."""
    from tinysplit.exporter.codegen.lower import lower_model
    from tinysplit.exporter.tflite_model import parse_tflite

    p = Path(path)
    if not p.is_file():
        raise InputError(f"'{p}' does not exist or is not a file; pass the path of an int8 .tflite model")
    buf = p.read_bytes()
    try:
        lower_model(parse_tflite(buf))  # the code generator's own checks, before anything is built
    except InputError as e:
        raise InputError(f"'{p}': {e}") from None
    return buf


def tflite_source(path: str | Path, samples: int, inputs: str | Path | None = None,
                  seed: int = DEFAULT_SEED) -> ModelSource:
    """A .tflite file and ``samples`` inputs: random int8 (seeded) or the first ``samples`` of the
    .npy file ``inputs`` (see the module's docstring)."""
    from tinysplit.exporter.tflite_model import parse_tflite

    if samples < 1:
        raise InputError(f"the number of samples must be at least 1, got {samples}")
    buf = read_tflite_file(path)
    t = parse_tflite(buf).input_tensors()[0]
    shape, scale, zero_point = tuple(t.shape), t.scales[0], t.zero_points[0] if t.zero_points else 0
    if inputs is None:
        x = np.random.default_rng(seed).integers(-128, 128, size=(samples, *shape[1:]), dtype=np.int8)
        return ModelSource(tflite_model_name(path), buf, x, f"random int8 (seed {seed})")
    x = load_inputs(inputs, shape, scale, zero_point)
    return ModelSource(tflite_model_name(path), buf, x[:samples], Path(inputs).name)


def load_inputs(path: str | Path, shape: tuple[int, ...], scale: float, zero_point: int) -> np.ndarray:
    """int8 NHWC inputs (N, *shape[1:]) from a .npy file for a model whose input is ``shape``
    (batch first) with the given quantization."""
    from tinysplit.quant import quantize

    p = Path(path)
    want = ", ".join(str(d) for d in shape[1:])
    if not p.is_file():
        raise InputError(f"inputs '{p}' do not exist; give a .npy file of shape (N, {want})")
    try:
        a = np.load(p, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 -- numpy raises assorted errors on a file that is not .npy
        raise InputError(f"inputs '{p}' are not a .npy array ({type(e).__name__}: {e}); save them with "
                         "numpy.save") from None
    if not isinstance(a, np.ndarray):
        raise InputError(f"inputs '{p}' hold several arrays (an .npz); give one array saved with numpy.save")
    if a.shape == tuple(shape[1:]):
        a = a[None]
    if a.ndim != len(shape) or a.shape[1:] != tuple(shape[1:]) or len(a) == 0:
        raise InputError(f"inputs '{p}' have shape {a.shape}; the model's input is {tuple(shape)} (NHWC), so give "
                         f"(N, {want}) with N >= 1 (transpose NCHW data to NHWC first)")
    if a.dtype == np.int8:
        return np.ascontiguousarray(a)
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise InputError(f"inputs '{p}' hold NaN or infinite values")
        return quantize(a, scale, zero_point)
    raise InputError(f"inputs '{p}' are {a.dtype}; give int8 values (already quantized) or float values "
                     f"(quantized here with the model's input scale {scale:g} and zero point {zero_point})")


def bundle_source(bundle: str | Path, samples: int, model: str | None = None) -> ModelSource:
    """A bundle's device model (default: its first) and its first ``samples`` held-out inputs,
    quantized as the device takes them."""
    from tinysplit.manifest import load_manifest
    from tinysplit.reference import heldout, quantized_inputs

    if samples < 1:
        raise InputError(f"the number of samples must be at least 1, got {samples}")
    bundle = Path(bundle)
    manifest = load_manifest(bundle)
    dm = manifest.device_model(model) if model else manifest.device_models[0]
    x, _ = heldout(bundle, manifest)
    xq = quantized_inputs(manifest, x[:samples], dm.name)
    return ModelSource(dm.name, (bundle / dm.file).read_bytes(), xq, "held-out")
