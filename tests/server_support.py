"""Helpers for the server's state, overload and shutdown tests and benchmarks: NAIR frames of the
digits bundle and a copy of a bundle whose host tail does extra (output-neutral) work, so that the
tail, not the event loop, is the bottleneck: a real slow tail in ONNX Runtime, no mock."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np


def slow_tail_bundle(src: Path, dst: Path, matmuls: int, seed: int = 0) -> Path:
    """Copy bundle ``src`` to ``dst`` with its first host tail made slower per sample: its input,
    flattened, goes through ``matmuls`` (width x width) MatMul + Tanh layers whose sum, times 0,
    is added to the logits. The logits (and so the labels) are unchanged; the cost grows with the
    batch like a real model's."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    tail = manifest["host_tails"][0]["file"]
    model = onnx.load(dst / tail)
    g = model.graph
    x, logits = g.input[0].name, g.output[0].name
    width = int(np.prod([d.dim_value for d in g.input[0].type.tensor_type.shape.dim[1:]]))
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
    # rename the old output so that the new logits keep its name
    for node in g.node:
        node.output[:] = [o if o != logits else "slow_logits_in" for o in node.output]
    g.initializer.extend([numpy_helper.from_array(w, "slow_w"),
                          numpy_helper.from_array(np.array([-1, width], np.int64), "slow_shape"),
                          numpy_helper.from_array(np.zeros((), np.float32), "slow_zero")])
    nodes = [helper.make_node("Reshape", [x, "slow_shape"], ["slow_0"])]
    for i in range(matmuls):
        nodes.append(helper.make_node("MatMul", [f"slow_{i}", "slow_w"], [f"slow_m{i}"]))
        nodes.append(helper.make_node("Tanh", [f"slow_m{i}"], [f"slow_{i + 1}"]))
    nodes += [helper.make_node("ReduceSum", [f"slow_{matmuls}"], ["slow_sum"], keepdims=0),
              helper.make_node("Mul", ["slow_sum", "slow_zero"], ["slow_nothing"]),
              helper.make_node("Add", ["slow_logits_in", "slow_nothing"], [logits])]
    g.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, dst / tail)
    from tinysplit.manifest import sha256_file

    manifest["host_tails"][0]["sha256"] = sha256_file(dst / tail)
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return dst


def nair_frames(bundle: Path, n: int, device: int, seed: int = 0, start: int = 0, units: int | None = None,
                part_count: int = 1) -> list[bytes]:
    """``n`` samples of random features as NAIR_SLICE frames (part 0 carrying ``units`` units, all by
    default, of ``part_count`` announced), seqs ``start``.. ``start + n - 1``."""
    from tinysplit.manifest import load_manifest
    from tinysplit.methods.nair.slices import extract_units, plan_for
    from tinysplit.wire import encode_frame
    from tinysplit.wire.frame import FrameType
    from tinysplit.wire.payloads import NairSlice, make_frame

    m = load_manifest(bundle)
    plan = plan_for(m)
    bid = int(m.bundle_id, 16)
    units = plan.units_total if units is None else units
    feats = np.random.default_rng(seed).integers(-128, 128, (min(n, 64), plan.height, plan.width, plan.channels),
                                                 dtype=np.int8)
    return [encode_frame(make_frame(FrameType.NAIR_SLICE,
                                    NairSlice(0, units, plan.units_total, extract_units(plan, feats[i % len(feats)], 0, units)),
                                    device, bid, start + i, 0, part_count)) for i in range(n)]
