"""The Python reference pipeline a deployed system must match: the TFLite Micro runtime runs the
device model, the host zero-fills the units that were not sent, ONNX Runtime runs the tail."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinysplit.manifest import Manifest, ManifestError, load_manifest
from tinysplit.quant import dequantize, nchw_to_nhwc, quantize
from tinysplit.slices import plan_for, zero_filled


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


def tail_per_units(manifest: Manifest) -> list[str] | None:
    """Host tail names by units received (method_data.nair.tail_per_units: entry j-1 serves j units),
    for bundles with one tail per width (CLIO-style); None when one tail serves every budget."""
    names = manifest.method_data.get("nair", {}).get("tail_per_units")
    if names is None:
        return None
    have = {t.name for t in manifest.host_tails}
    units = plan_for(manifest).units_total
    if (not isinstance(names, list) or len(names) != units
            or any(not isinstance(n, str) or n not in have for n in names)):
        raise ManifestError(f"field 'method_data.nair.tail_per_units': must list {units} host tail names "
                            f"(one per number of units) out of {', '.join(sorted(have))}")
    return names


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


def labels_at_budgets(bundle: str | Path, budgets: list[int], n: int | None = None,
                      features_q: np.ndarray | None = None) -> dict[int, np.ndarray]:
    """Reference labels for the held-out inputs when only the first ``b`` units reach the host (with
    the tail for ``b`` units where the bundle has one per width)."""
    m = load_manifest(bundle)
    if features_q is None:
        x, _ = heldout(bundle, m)
        x = x[:n] if n else x
        features_q = device_outputs(bundle, m, quantized_inputs(m, x))
    plan = plan_for(m)
    per_units = tail_per_units(m)
    shared = tail_session(bundle, m) if per_units is None else None
    return {b: tail_logits(bundle, m, np.stack([zero_filled(plan, f, b) for f in features_q]),
                           shared or tail_session(bundle, m, per_units[b - 1])).argmax(1)
            for b in budgets}
