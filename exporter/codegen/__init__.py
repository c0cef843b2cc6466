"""Ahead-of-time C code generation: an int8 .tflite -> plain C99 model code plus the ts_kernels runtime.

    lower (TFLite ops -> typed kernel calls, parameters computed as TFLite Micro does)
      -> memplan (liveness-based static arena)
      -> emit_c (Jinja templates -> <prefix>_model.c/.h)

The C API the generated code implements is documented in ``tinysplit.modelsrc``.
"""

from tinysplit.exporter.codegen.emit_c import RenderedModel, generate_model_sources, render_model
from tinysplit.exporter.codegen.lower import LOWERINGS, KernelCall, LoweredModel, lower_model, quantize_multiplier
from tinysplit.exporter.codegen.memplan import BufferRequest, MemoryPlan, place_buffers, plan_model

__all__ = [
    "LOWERINGS", "BufferRequest", "KernelCall", "LoweredModel", "MemoryPlan", "RenderedModel",
    "generate_model_sources", "lower_model", "place_buffers", "plan_model", "quantize_multiplier", "render_model",
]
