"""Which install extra brings which import, so that a command run in an install that lacks it says
what to install (exit 6) instead of failing with an import error.

    tinysplit[host]      the tail server: ONNX Runtime, pyserial (no TensorFlow, no PyTorch)
    tinysplit[firmware]  firmware from any int8 .tflite: Jinja2 templates, the TFLite Micro runtime
    tinysplit[flash]     flashing real boards: pyOCD (Cortex-M), esptool (ESP32 family)
    tinysplit[export]    PyTorch -> int8 TFLite export and the methods' training (includes firmware)

A test checks this table against pyproject.toml's extras.
"""

from __future__ import annotations

from tinysplit.errors import ToolchainError

# top-level import name -> (distribution, extra that installs it)
MODULE_EXTRAS: dict[str, tuple[str, str]] = {
    "onnxruntime": ("onnxruntime", "host"),
    "serial": ("pyserial", "host"),
    "jinja2": ("jinja2", "firmware"),
    "tflite_micro": ("tflite-micro", "firmware"),
    "torch": ("torch", "export"),
    "tensorflow": ("tensorflow", "export"),
    "tf_keras": ("tf-keras", "export"),
    "onnx": ("onnx", "export"),
    "onnx2tf": ("onnx2tf", "export"),
    "onnxscript": ("onnxscript", "export"),
    "ai_edge_litert": ("ai-edge-litert", "export"),
    "sklearn": ("scikit-learn", "export"),
    "scipy": ("scipy", "export"),
    "matplotlib": ("matplotlib", "export"),
    "pyocd": ("pyocd", "flash"),
    "esptool": ("esptool", "flash"),
}


def missing_extra_error(module: str | None) -> ToolchainError | None:
    """The error to raise for a ModuleNotFoundError of ``module``, or None if it is not an extra's."""
    top = (module or "").split(".")[0]
    if top not in MODULE_EXTRAS:
        return None
    dist, extra = MODULE_EXTRAS[top]
    return ToolchainError(f"this command needs '{dist}', which this install lacks: pip install "
                          f"'tinysplit[{extra}]' (or ./setup.sh in a checkout for everything)")
