"""The conversion stages: torch -> ONNX -> TensorFlow SavedModel (onnx2tf) -> int8 TFLite.

Each stage is a function from files to files with a typed result, runnable and testable on its own.
The conversion tools are noisy and some print from C++; their output goes to a log file that a
failure quotes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from tinysplit.errors import ConversionError, ToolchainError
from tinysplit.exporter.ops import OnnxNodeInfo, torch_layer_of

log = logging.getLogger(__name__)

ONNX_OPSET = 17
# onnx2tf 1.28.8 fetches this file from the internet for models whose inputs are all 4-D with 3
# channels, even with user calibration data; a file of this name in the working directory stops it.
ONNX2TF_SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"


@dataclass(frozen=True)
class OnnxModel:
    path: Path
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    nodes: tuple[OnnxNodeInfo, ...]


@contextlib.contextmanager
def redirect_fds(log_path: Path) -> Iterator[None]:
    """Send fd 1 and fd 2 (Python and C++ writers alike) to ``log_path`` for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    with open(log_path, "ab") as f:
        saved = os.dup(1), os.dup(2)
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _log_tail(log_path: Path, n: int = 8) -> str:
    try:
        lines = [l for l in log_path.read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return ""
    return "\n  ".join(lines[-n:])


def torch_to_onnx(module: Any, example: np.ndarray | list[np.ndarray], path: Path,
                  input_names: list[str], output_names: list[str], log_path: Path,
                  dynamic_batch: bool = False) -> OnnxModel:
    """Stage 1: trace the module to ONNX (opset 17, the TorchScript exporter) and check the graph.

    Device pieces are traced at batch 1 (the converter wants static shapes); host tails with a
    dynamic batch axis so the server can micro-batch.
    """
    import onnx
    import torch

    examples = example if isinstance(example, list) else [example]
    module.eval()
    args = tuple(torch.from_numpy(np.ascontiguousarray(e[:1])) for e in examples)
    dynamic_axes = {n: {0: "batch"} for n in [*input_names, *output_names]} if dynamic_batch else None
    try:
        with warnings.catch_warnings(), redirect_fds(log_path):
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=ONNX_OPSET,
                              input_names=input_names, output_names=output_names, do_constant_folding=True,
                              dynamic_axes=dynamic_axes)
    except Exception as e:
        raise ConversionError(f"torch -> ONNX failed for '{path.stem}': {type(e).__name__}: {e}") from None
    model = onnx.load(str(path))
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise ConversionError(f"the ONNX graph of '{path.stem}' is invalid: {e}") from None
    nodes = tuple(OnnxNodeInfo(n.op_type, n.name, torch_layer_of(n.name)) for n in model.graph.node)
    return OnnxModel(path, tuple(input_names), tuple(output_names), nodes)


def onnx_outputs(onnx_path: Path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Run an ONNX model in ONNX Runtime (CPU)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    feed = {i.name: x for i, x in zip(sess.get_inputs(), inputs)}
    return sess.run(None, feed)


def _write_onnx2tf_guard(workdir: Path, calibration_nhwc: np.ndarray) -> None:
    """Give onnx2tf its sample file locally (made from our calibration data) so it never downloads."""
    n = 20
    x = calibration_nhwc[np.arange(n) % len(calibration_nhwc)]
    h, w = x.shape[1], x.shape[2]
    rows = (np.arange(128) * h) // 128
    cols = (np.arange(128) * w) // 128
    x = x[:, rows][:, :, cols]
    c = x.shape[3]
    x = x[..., np.arange(3) % c].astype(np.float32)
    np.save(workdir / ONNX2TF_SAMPLE_FILE, x)


def onnx_to_saved_model(onnx_model: OnnxModel, out_dir: Path, calibration_nhwc: np.ndarray,
                        log_path: Path) -> Path:
    """Stage 2: ONNX -> TensorFlow SavedModel with onnx2tf (NHWC, BatchNorm folded, no TRANSPOSE ops)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    workdir = out_dir.parent
    _write_onnx2tf_guard(workdir, calibration_nhwc)
    cwd = os.getcwd()
    try:
        os.chdir(workdir)
        with warnings.catch_warnings(), redirect_fds(log_path):
            warnings.simplefilter("ignore")
            import onnx2tf
            import tf_keras

            # Fresh layer-name counters: the same model converts to the same bytes in any process.
            tf_keras.backend.clear_session()
            onnx2tf.convert(input_onnx_file_path=str(onnx_model.path), output_folder_path=str(out_dir),
                            non_verbose=True, disable_model_save=False)
    except Exception as e:
        raise ConversionError(f"ONNX -> TensorFlow (onnx2tf) failed for '{onnx_model.path.stem}': "
                              f"{type(e).__name__}: {e}\n  {_log_tail(log_path)}") from None
    finally:
        os.chdir(cwd)
    if not (out_dir / "saved_model.pb").is_file():
        raise ConversionError(f"onnx2tf wrote no SavedModel for '{onnx_model.path.stem}':\n  {_log_tail(log_path)}")
    return out_dir


def saved_model_to_int8_tflite(saved_model: Path, calibration_nhwc: np.ndarray, log_path: Path) -> bytes:
    """Stage 3: post-training full-integer quantization with our representative dataset.

    int8 inputs and outputs, int8 per-channel weights, int32 biases, int8 per-tensor activations.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with warnings.catch_warnings(), redirect_fds(log_path):
        warnings.simplefilter("ignore")
        import tensorflow as tf

        def representative():
            for i in range(len(calibration_nhwc)):
                yield [calibration_nhwc[i:i + 1]]

        try:
            conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = representative
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
            return bytes(conv.convert())
        except Exception as e:
            err = e
    msg = str(err).splitlines()
    raise ConversionError(
        "TensorFlow -> int8 TFLite failed: " + (msg[0] if msg else type(err).__name__) +
        "\n  Some op in the model has no int8 TFLite kernel; keep that part in the host tail."
        f"\n  {_log_tail(log_path)}")


def nhwc_tail(tail: Any) -> Any:
    """Wrap a tail so it takes NHWC inputs (what the device sends) and feeds its NCHW layers."""
    import torch

    class NhwcTail(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tail = tail

        def forward(self, *xs):
            return self.tail(*[x.permute(0, 3, 1, 2) if x.dim() == 4 else x for x in xs])

    return NhwcTail()


def tail_to_onnx(tail: Any, inputs_nhwc: list[np.ndarray], path: Path, input_names: list[str],
                 log_path: Path, atol: float = 1e-4) -> tuple[OnnxModel, float]:
    """Export a host tail to ONNX taking NHWC float inputs (the dequantized device outputs) and check
    it against PyTorch on ``inputs_nhwc``. Returns the model and the largest absolute difference."""
    import torch

    wrapped = nhwc_tail(tail).eval()
    onnx_model = torch_to_onnx(wrapped, inputs_nhwc, path, input_names, ["logits"], log_path, dynamic_batch=True)
    with torch.no_grad():
        want = wrapped(*[torch.from_numpy(x) for x in inputs_nhwc]).numpy()
    got = onnx_outputs(path, inputs_nhwc)[0]
    diff = float(np.max(np.abs(got - want))) if want.size else 0.0
    scale = max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)
    if not diff <= atol * scale:
        raise ConversionError(f"host tail '{path.stem}': ONNX Runtime differs from PyTorch by {diff:.3g} "
                              f"(tolerance {atol * scale:.3g}); the tail uses an op ONNX exports differently")
    return onnx_model, diff


def ensure_export_extra() -> None:
    """Fail early, naming the install command, if the export toolchain is missing."""
    import importlib.util

    mods = ("torch", "onnx", "onnxruntime", "onnx2tf", "tensorflow", "ai_edge_litert", "tflite_micro")
    missing = [m for m in mods if importlib.util.find_spec(m) is None]
    if missing:
        raise ToolchainError(f"the export toolchain is not installed (missing: {', '.join(missing)}); "
                         "run ./setup.sh, or pip install 'tinysplit[export]'")
