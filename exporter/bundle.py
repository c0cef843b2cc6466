"""export_bundle: the exporter's chain of stages, writing one bundle directory atomically.

    validate spec -> per device piece: torch -> ONNX -> SavedModel -> int8 .tflite -> checks -> verify
                  -> per host tail: ONNX (NHWC inputs) checked against PyTorch -> pipeline agreement
                  -> manifest.json, report.json, report.txt, data/heldout.npz
The bundle is built in a temporary directory beside the destination and renamed into place, so a
failure never leaves a half-written bundle.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tinysplit import __version__
from tinysplit.errors import InputError
from tinysplit.exporter import convert, report as report_mod, verify
from tinysplit.exporter.spec import ExportSpec, validate_spec
from tinysplit.exporter.tflite_model import check_fully_int8, parse_tflite
from tinysplit.manifest import (DeviceModel, FTensor, HostTail, InputSpec, Manifest, QTensor, bundle_id_for,
                                sha256_file, write_manifest)
from tinysplit.quant import dequantize, nchw_to_nhwc

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ExportResult:
    bundle_dir: Path
    manifest: Manifest
    report: dict[str, Any]


def check_out_dir(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not force:
        raise InputError(f"output directory '{out_dir}' already exists; choose another path, or pass --force "
                         "(force=True) to replace it")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output path '{out_dir}' exists and is not a directory; choose another path")
    if not out_dir.parent.is_dir():
        raise InputError(f"the parent directory of '{out_dir}' does not exist; create it first")


def _qtensors(ts) -> tuple[QTensor, ...]:
    return tuple(QTensor(t.name, t.shape, t.dtype, t.scales[0], t.zero_points[0]) for t in ts)


def _float_outputs(module, x: np.ndarray) -> np.ndarray:
    import torch

    module.eval()
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def _publish(tmp: Path, out_dir: Path) -> None:
    """Rename the finished bundle into place; replace an existing one only after the new one is whole."""
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.rename(out_dir, old)
        os.rename(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out_dir)


def export_bundle(spec: ExportSpec, out_dir: str | Path, force: bool = False,
                  progress: Progress | None = None) -> ExportResult:
    """Export ``spec`` to a verified bundle directory at ``out_dir``. Raises TinysplitError subclasses."""
    say = progress or (lambda msg: None)
    out_dir = Path(out_dir).resolve()
    check_out_dir(out_dir, force)
    convert.ensure_export_extra()
    validate_spec(spec)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    work = Path(tempfile.mkdtemp(prefix="tinysplit-export-"))
    try:
        result = _build(spec, tmp, work, say)
        _publish(tmp, out_dir)
        return ExportResult(out_dir, result[0], result[1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def _skippable(piece, tfl_bytes: bytes) -> dict:
    """Share each residual chain's quantization and check the piece's declared skippable blocks."""
    from tinysplit.errors import ConversionError
    from tinysplit.exporter.codegen.blocks import find_residual_blocks, share_residual_quantization

    shared, chains = share_residual_quantization(tfl_bytes)
    blocks = find_residual_blocks(parse_tflite(shared))
    if len(blocks) != piece.skip_blocks:
        raise ConversionError(f"{piece.name}: the int8 model has {len(blocks)} identity residual blocks, the piece "
                              f"declares {piece.skip_blocks}; the conversion changed the blocks' structure (see "
                              "logs/convert.log) or skip_blocks is wrong")
    return {"tflite": shared, "blocks": len(blocks), "chains_requantized": chains,
            "ranges": [[b.first_op, b.add_op] for b in blocks]}


def _build(spec: ExportSpec, bundle: Path, work: Path, say: Progress) -> tuple[Manifest, dict]:
    timings: dict[str, float] = {}
    (bundle / "device").mkdir()
    (bundle / "host").mkdir()
    (bundle / "data").mkdir()
    (bundle / "logs").mkdir()
    log_path = bundle / "logs" / "convert.log"
    calib_nhwc = nchw_to_nhwc(spec.calibration)
    heldout_nhwc = nchw_to_nhwc(spec.heldout)

    def stage(key: str, msg: str, fn, *a, **kw):
        say(msg)
        t0 = time.perf_counter()
        r = fn(*a, **kw)
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0
        return r

    device_models: list[DeviceModel] = []
    device_reports: dict[str, dict] = {}
    runs: dict[str, tuple[verify.DeviceRun, Any, np.ndarray]] = {}
    for piece in spec.device:
        n = piece.name
        onnx_model = stage("torch_to_onnx", f"{n}: torch -> ONNX", convert.torch_to_onnx, piece.module,
                           spec.calibration, work / f"{n}.onnx", ["input"], [n], log_path)
        saved = stage("onnx_to_tf", f"{n}: ONNX -> TensorFlow (onnx2tf)", convert.onnx_to_saved_model,
                      onnx_model, work / f"{n}_saved_model", calib_nhwc, log_path)
        tfl_bytes = stage("tf_to_tflite", f"{n}: TensorFlow -> int8 TFLite ({len(calib_nhwc)} calibration samples)",
                          convert.saved_model_to_int8_tflite, saved, calib_nhwc, log_path)
        tfl = parse_tflite(tfl_bytes)
        check_fully_int8(tfl)
        blocks_report = _skippable(piece, tfl_bytes) if piece.skip_blocks else None
        if blocks_report is not None:
            tfl_bytes = blocks_report.pop("tflite")
            tfl = parse_tflite(tfl_bytes)
        verify.check_supported_ops(n, tfl, onnx_model.nodes, piece.module)
        path = bundle / "device" / f"{n}.tflite"
        path.write_bytes(tfl_bytes)
        run = stage("verify", f"{n}: verifying int8 vs float and TFLite Micro vs TFLite reference "
                    f"({len(heldout_nhwc)} held-out samples)", verify.run_device_model, tfl_bytes, tfl, heldout_nhwc)
        float_out = _float_outputs(piece.module, spec.heldout)
        float_out_nhwc = nchw_to_nhwc(float_out)
        metrics = verify.device_model_metrics(run, tfl, float_out_nhwc, piece.kind)
        device_reports[n] = {"kind": piece.kind, **metrics, **({"skip_blocks": blocks_report} if blocks_report else {})}
        runs[n] = (run, tfl, float_out_nhwc)
        device_models.append(DeviceModel(
            name=n, file=f"device/{n}.tflite", sha256=sha256_file(path), kind=piece.kind,
            inputs=_qtensors(tfl.input_tensors()), outputs=_qtensors(tfl.output_tensors()), ops=tuple(tfl.ops),
            flash_bytes=tfl.size_bytes, arena_bytes=run.arena_bytes))

    host_tails: list[HostTail] = []
    tail_reports: dict[str, dict] = {}
    for tail in spec.tails:
        float_in = [runs[c][2] for c in tail.consumes]  # float head outputs, NHWC
        path = bundle / "host" / f"{tail.name}.onnx"
        onnx_tail, diff = stage("tail_to_onnx", f"{tail.name}: host tail -> ONNX (checked against PyTorch)",
                                convert.tail_to_onnx, tail.module, float_in, path, list(tail.consumes), log_path)
        int8_in = []
        for c in tail.consumes:
            run, tfl, _ = runs[c]
            o = tfl.output_tensors()[0]
            int8_in.append(dequantize(run.tflm, o.scales[0], o.zero_points[0]))
        int8_logits = convert.onnx_outputs(path, int8_in)[0]
        float_logits = convert.onnx_outputs(path, float_in)[0]
        tail_reports[tail.name] = {
            "consumes": list(tail.consumes), "onnx_max_abs_diff": diff,
            **verify.agreement_metrics(float_logits, int8_logits, spec.heldout_labels)}
        host_tails.append(HostTail(
            name=tail.name, file=f"host/{tail.name}.onnx", sha256=sha256_file(path), consumes=tuple(tail.consumes),
            inputs=tuple(FTensor(c, (1, *x.shape[1:]), "float32")
                         for c, x in zip(tail.consumes, float_in)),
            outputs=(FTensor("logits", (1, int(float_logits.shape[1])), "float32"),)))
    for piece in spec.device:  # a classifier on the device with labels: its accuracy too
        if piece.kind == "classifier" and spec.heldout_labels is not None:
            run, tfl, float_out = runs[piece.name]
            o = tfl.output_tensors()[0]
            deq = dequantize(run.tflm, o.scales[0], o.zero_points[0]).reshape(len(run.tflm), -1)
            acc = verify.agreement_metrics(float_out.reshape(len(float_out), -1), deq, spec.heldout_labels)
            device_reports[piece.name]["int8"].update(
                accuracy_float=acc["accuracy_float"], accuracy_int8=acc["accuracy_int8"])

    say("writing manifest and report")
    np.savez(bundle / "data" / "heldout.npz", x=spec.heldout,
             **({"y": spec.heldout_labels} if spec.heldout_labels is not None else {}))
    manifest = Manifest(
        name=spec.name, bundle_id=bundle_id_for([m.sha256 for m in device_models]), method=spec.method,
        input=InputSpec(spec.input_shape, "float32", "data/heldout.npz"), classes=tuple(spec.classes),
        device_models=tuple(device_models), host_tails=tuple(host_tails), method_data=dict(spec.method_data))
    write_manifest(manifest, bundle)
    rep = report_mod.aggregate(device_reports, tail_reports, len(spec.heldout), timings, __version__)
    (bundle / "report.json").write_text(json.dumps(rep, indent=2) + "\n")
    (bundle / "report.txt").write_text(report_mod.summary_text(rep, spec.name))
    return manifest, rep
