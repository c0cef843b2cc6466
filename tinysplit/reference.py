"""The Python reference pipeline a deployed system must match, the parts every method shares: the
held-out inputs, quantized as the device takes them; the TFLite Micro runtime running a device model;
ONNX Runtime running a host tail. Each method's own reference (what the host does with what the
device sent) is in ``tinysplit.methods.<method>.reference``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinysplit.manifest import Manifest, ManifestError, load_manifest
from tinysplit.quant import dequantize, nchw_to_nhwc, quantize


def heldout(bundle: str | Path, manifest: Manifest | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    m = manifest or load_manifest(bundle)
    d = np.load(Path(bundle) / m.input.heldout_file)
    return d["x"], (d["y"] if "y" in d.files else None)


def quantized_inputs(manifest: Manifest, x_nchw: np.ndarray, model: str | None = None) -> np.ndarray:
    dm = manifest.device_model(model) if model else manifest.device_models[0]
    t = dm.inputs[0]
    return quantize(nchw_to_nhwc(x_nchw), t.scale, t.zero_point)


def device_outputs(bundle: str | Path, manifest: Manifest, inputs_q: np.ndarray, model: str | None = None) -> np.ndarray:
    """int8 outputs of the device model from the TFLite Micro runtime, one inference per input."""
    from tinysplit.exporter.runtimes import TflmRunner

    dm = manifest.device_model(model) if model else manifest.device_models[0]
    rt = TflmRunner((Path(bundle) / dm.file).read_bytes(), num_outputs=len(dm.outputs))
    outs = [rt.run(inputs_q[i:i + 1])[0] for i in range(len(inputs_q))]
    return np.concatenate(outs).reshape(len(inputs_q), *dm.outputs[0].shape[1:])


def tail_session(bundle: str | Path, manifest: Manifest, name: str | None = None):
    """An ONNX Runtime session of a host tail, the first by default (create once, run many times)."""
    import onnxruntime as ort

    tails = [t for t in manifest.host_tails if name is None or t.name == name]
    if not tails:
        raise ManifestError(f"bundle has no host tail named '{name}'")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(Path(bundle) / tails[0].file), opts, providers=["CPUExecutionProvider"])


def tail_logits(bundle: str | Path, manifest: Manifest, features_q: np.ndarray, session=None) -> np.ndarray:
    """Host tail (ONNX Runtime) on dequantized int8 features, batched."""
    sess = session or tail_session(bundle, manifest)
    out = manifest.device_model(manifest.host_tails[0].consumes[0]).outputs[0]
    x = dequantize(features_q, out.scale, out.zero_point)
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]
