"""Verification of an exported int8 model: against the float model, and TFLite Micro against the
TFLite reference kernels, on the same held-out inputs. Pure computation; the report module writes it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinysplit.errors import UnsupportedModelError
from tinysplit.exporter.ops import SUPPORTED_OPS, TFLITE_ADVICE, OnnxNodeInfo, layers_for_tflite_op
from tinysplit.exporter.runtimes import ReferenceRunner, TflmRunner
from tinysplit.exporter.tflite_model import TfliteModel
from tinysplit.quant import dequantize, quantize


def check_supported_ops(piece: str, model: TfliteModel, nodes: tuple[OnnxNodeInfo, ...], module=None) -> None:
    """Fail, naming the op and the PyTorch layer(s) it came from, if the code generator can't run it."""
    bad = [op for op in model.ops if op not in SUPPORTED_OPS]
    if bad:
        op = bad[0]
        layers = layers_for_tflite_op(op, list(nodes), module)
        src = ("; it comes from " + ", ".join(layers)) if layers else ""
        advice = f". {TFLITE_ADVICE[op]}" if op in TFLITE_ADVICE else ""
        raise UnsupportedModelError(
            f"device piece '{piece}': the int8 model uses {op}, which tinysplit's code generator does not "
            f"support{src}{advice}. Supported ops: {', '.join(sorted(SUPPORTED_OPS))}. Replace that layer or move "
            "it into the host tail")


@dataclass(frozen=True)
class Int8Comparison:
    identical_fraction: float
    max_lsb_diff: int
    values: int


def compare_int8(a: np.ndarray, b: np.ndarray) -> Int8Comparison:
    """How many int8 values are identical, and the largest difference in LSB (quantization steps)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    d = np.abs(a.astype(np.int32) - b.astype(np.int32))
    return Int8Comparison(float((d == 0).mean()) if d.size else 1.0, int(d.max()) if d.size else 0, int(d.size))


def cosine_per_sample(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    cos = (a * b).sum(1) / np.maximum(na * nb, 1e-30)
    return np.where(both_zero, 1.0, cos)


@dataclass(frozen=True)
class DeviceRun:
    """Outputs of one int8 device model on the held-out inputs, from both runtimes (NHWC int8)."""

    inputs_q: np.ndarray
    tflm: np.ndarray
    reference: np.ndarray
    arena_bytes: int


def run_device_model(model_bytes: bytes, model: TfliteModel, heldout_nhwc: np.ndarray) -> DeviceRun:
    inp, out = model.input_tensors()[0], model.output_tensors()[0]
    xq = quantize(heldout_nhwc, inp.scales[0], inp.zero_points[0])
    ref_rt = ReferenceRunner(model_bytes)
    tflm_rt = TflmRunner(model_bytes, num_outputs=len(model.outputs))
    ref, tflm = [], []
    for i in range(len(xq)):
        ref.append(ref_rt.run(xq[i:i + 1])[0])
        tflm.append(tflm_rt.run(xq[i:i + 1])[0])
    shape = (len(xq), *out.shape[1:])
    return DeviceRun(xq, np.concatenate(tflm).reshape(shape), np.concatenate(ref).reshape(shape),
                     tflm_rt.arena_bytes())


def device_model_metrics(run: DeviceRun, model: TfliteModel, float_out_nhwc: np.ndarray, kind: str) -> dict:
    out = model.output_tensors()[0]
    deq = dequantize(run.tflm, out.scales[0], out.zero_points[0])
    cmp = compare_int8(run.reference, run.tflm)
    int8: dict[str, float | int] = {
        "max_abs_error": float(np.max(np.abs(deq - float_out_nhwc))),
        "output_scale": float(out.scales[0]),
    }
    cos = cosine_per_sample(deq, float_out_nhwc)
    int8["cosine_min"] = float(cos.min())
    int8["cosine_mean"] = float(cos.mean())
    if kind == "classifier":
        int8["top1_agreement"] = float((deq.reshape(len(deq), -1).argmax(1) ==
                                        float_out_nhwc.reshape(len(deq), -1).argmax(1)).mean())
    weights = sum(t.data.nbytes for t in model.tensors if t.data is not None)
    return {
        "int8": int8,
        "tflm": {"identical_fraction": cmp.identical_fraction, "max_lsb_diff": cmp.max_lsb_diff,
                 "values_compared": cmp.values, "arena_bytes": run.arena_bytes},
        "model": {"flash_bytes": model.size_bytes, "weights_bytes": int(weights),
                  "operators": len(model.operators)},
        "ops": list(model.ops),
    }


def agreement_metrics(float_logits: np.ndarray, int8_logits: np.ndarray, labels: np.ndarray | None) -> dict:
    f, q = float_logits.argmax(1), int8_logits.argmax(1)
    m = {"top1_agreement": float((f == q).mean())}
    if labels is not None:
        m["accuracy_float"] = float((f == labels).mean())
        m["accuracy_int8"] = float((q == labels).mean())
    return m
