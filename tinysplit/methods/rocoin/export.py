"""Export trained RoCoIn students as a ``rocoin`` bundle, and the zoo's .tflite files the planner
profiles.

The bundle (docs/rocoin.md "The bundle"): device models ``student_0`` .. ``student_{K-1}`` (each a
student: the model input -> its global-average-pooled final-conv maps, one int8 output of n_k
values), the host tail ``aggregator`` consuming all of them in partition order, and
``method_data.rocoin`` (schema ``tinysplit/schemas/method_data/rocoin.schema.json``: partitions,
portion_values, teacher_filters, deadline_ms and one device group per partition with each replica's
fleet id, wire device id, board and transport), validated by the exporter before any conversion.
The exporter also refuses a student whose int8 model uses an op the code generator lacks.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from tinysplit.errors import InputError
from tinysplit.methods.rocoin.bundle import TAIL, plan_for, student_name
from tinysplit.methods.rocoin.plan import Plan

DEFAULT_DEADLINE_MS = 500.0


@dataclass(frozen=True)
class RocoinExport:
    bundle: Path
    report: dict[str, Any]
    method_data: dict[str, Any]


def method_data_for(plan: Plan, archs: Sequence[str], deadline_ms: float, teacher_filters: int,
                    training: dict[str, Any] | None = None) -> dict[str, Any]:
    """``method_data.rocoin`` for a plan whose partition k is run by a student of architecture ``archs[k]``."""
    if isinstance(deadline_ms, bool) or not isinstance(deadline_ms, (int, float)) or not math.isfinite(deadline_ms) \
            or deadline_ms <= 0:
        raise InputError(f"deadline_ms must be a number > 0, got {deadline_ms!r}")
    if len(archs) != len(plan.partitions):
        raise InputError(f"{len(archs)} student architectures for {len(plan.partitions)} partitions")
    groups = []
    for g in sorted(plan.groups, key=lambda g: g.partition):
        k = g.partition
        devices = []
        for dev_id in g.devices:
            d = plan.device(dev_id)
            devices.append({"id": d.id, "device_id": d.wire_id, "board": d.board, "transport": d.transport})
        groups.append({"partition": k, "student": student_name(k), "arch": archs[k], "devices": devices})
    s = plan.settings
    out: dict[str, Any] = {
        "partitions": [list(p) for p in plan.partitions],
        "portion_values": [len(p) for p in plan.partitions],
        "teacher_filters": int(teacher_filters),
        "deadline_ms": float(deadline_ms),
        "groups": groups,
        "plan": {"fleet": plan.fleet, "d_th": s.d_th, "p_th": s.p_th, "seed": s.seed, "ncut": plan.ncut,
                 "latency_ms": {"first": 1000 * plan.latency.first_s, "expected": 1000 * plan.latency.expected_s,
                                "worst": 1000 * plan.latency.worst_s},
                 "all_partitions_probability": plan.all_partitions_probability},
    }
    if training is not None:
        out["training"] = dict(training)
    return out


def export_rocoin(net, plan: Plan, calibration: np.ndarray, heldout: np.ndarray, heldout_labels: np.ndarray | None,
                  out_dir: str | Path, name: str = "rocoin", classes: tuple[str, ...] = (),
                  deadline_ms: float = DEFAULT_DEADLINE_MS, training: dict[str, Any] | None = None,
                  progress: Callable[[str], None] | None = None) -> RocoinExport:
    """Export ``net`` (a trained ``StudentNetwork`` whose partitions are the plan's) as a rocoin bundle."""
    from tinysplit.exporter import DevicePiece, ExportSpec, TailPiece, export_bundle
    from tinysplit.manifest import load_manifest

    parts = tuple(tuple(p) for p in plan.partitions)
    if tuple(net.partitions) != parts:
        raise InputError("the students were trained for other partitions than the plan's: "
                         f"{[len(p) for p in net.partitions]} vs {[len(p) for p in parts]} filters")
    want = {g.partition: g.student for g in plan.groups}
    for k, arch in enumerate(net.archs):
        if want[k] != arch:
            raise InputError(f"partition {k}: the plan assigns student '{want[k]}', the network has '{arch}'")
    data = method_data_for(plan, net.archs, deadline_ms, plan.filters, training)
    net.eval()
    names = [student_name(k) for k in range(len(parts))]
    spec = ExportSpec(name=name, device=[DevicePiece(n, s, "features") for n, s in zip(names, net.students)],
                      tails=[TailPiece(TAIL, net.aggregator, tuple(names))], calibration=calibration,
                      heldout=heldout, heldout_labels=heldout_labels, classes=tuple(classes), method="rocoin",
                      method_data={"rocoin": data})
    res = export_bundle(spec, out_dir, force=True, progress=progress)
    plan_for(load_manifest(res.bundle_dir))  # what every reader checks, once more on the written bundle
    return RocoinExport(res.bundle_dir, res.report, data)


def int8_tflite(module, calibration: np.ndarray, name: str, check_ops: bool = True) -> bytes:
    """``module`` (taking float NCHW ``calibration``-shaped inputs) as a fully int8 .tflite, calibrated
    on ``calibration``; with ``check_ops``, refused (UnsupportedModelError) if it uses an op the code
    generator lacks."""
    from tinysplit.exporter import convert, verify
    from tinysplit.exporter.tflite_model import check_fully_int8, parse_tflite
    from tinysplit.quant import nchw_to_nhwc

    convert.ensure_export_extra()
    module.eval()
    calibration = np.ascontiguousarray(calibration, np.float32)
    calib = nchw_to_nhwc(calibration)
    with tempfile.TemporaryDirectory(prefix="tinysplit-rocoin-") as tmp:
        work = Path(tmp)
        log = work / "convert.log"
        onnx_model = convert.torch_to_onnx(module, calibration, work / f"{name}.onnx", ["input"], [name], log)
        saved = convert.onnx_to_saved_model(onnx_model, work / f"{name}_saved_model", calib, log)
        tfl = convert.saved_model_to_int8_tflite(saved, calib, log)
        model = parse_tflite(tfl)
        check_fully_int8(model)
        if check_ops:
            verify.check_supported_ops(name, model, onnx_model.nodes, module)
    return tfl


def int8_run(tflite: bytes, x: np.ndarray) -> tuple[np.ndarray, float, int]:
    """The int8 model's first output (TFLite Micro) on float NCHW ``x``, one inference per input:
    (outputs (N, values) int8, output scale, output zero point)."""
    from tinysplit.exporter.runtimes import TflmRunner
    from tinysplit.exporter.tflite_model import parse_tflite
    from tinysplit.quant import nchw_to_nhwc, quantize

    model = parse_tflite(tflite)
    inp, out = model.input_tensors()[0], model.output_tensors()[0]
    xq = quantize(nchw_to_nhwc(np.asarray(x, np.float32)), inp.scales[0], inp.zero_points[0])
    rt = TflmRunner(tflite, num_outputs=len(model.output_tensors()))
    q = np.stack([rt.run(xq[i:i + 1])[0].reshape(-1) for i in range(len(xq))]) if len(xq) else \
        np.zeros((0, int(np.prod(out.shape[1:]))), np.int8)
    return q, float(out.scales[0]), int(out.zero_points[0])


def zoo_tflite(arch: str, n_out: int, calibration: np.ndarray, path: str | Path, seed: int = 0,
               zoo: dict | None = None) -> Path:
    """An int8 .tflite of architecture ``arch`` with ``n_out`` outputs (seeded initial weights: what
    the planner profiles is its memory and instruction count, which the weights do not change);
    refused (UnsupportedModelError) if it uses an op the code generator lacks."""
    import torch

    from tinysplit.files import write_atomic
    from tinysplit.methods.rocoin.students import Student

    torch.manual_seed(seed)
    tfl = int8_tflite(Student(arch, n_out, zoo), calibration, arch)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(p, tfl)
