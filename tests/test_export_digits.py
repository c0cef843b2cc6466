"""The digits example end to end: the bundle, its manifest and report, and the issue's targets."""

from __future__ import annotations

import json

import numpy as np

from tinysplit.exporter.runtimes import TflmRunner
from tinysplit.exporter.tflite_model import read_tflite
from tinysplit.manifest import load_manifest
from tinysplit.quant import nchw_to_nhwc, quantize

REPORT_KEYS = [("int8", "top1_agreement"), ("int8", "cosine_min"), ("tflm", "identical_fraction"),
               ("tflm", "max_lsb_diff"), ("tflm", "arena_bytes"), ("model", "flash_bytes")]


def test_bundle_layout_and_manifest(digits_bundle):
    m = load_manifest(digits_bundle)  # validates schema and sha256 of every file
    assert m.method == "nair" and m.method_data["nair"]["units_total"] == 16 and m.classes == tuple(str(i) for i in range(10))
    head = m.device_model("head")
    assert head.kind == "features"
    assert head.inputs[0].shape == (1, 8, 8, 1) and head.outputs[0].shape == (1, 4, 4, 32)
    assert head.inputs[0].dtype == head.outputs[0].dtype == "int8"
    assert set(head.ops) == {"CONV_2D", "PAD"}
    assert m.host_tails[0].consumes == ("head",)
    assert m.host_tails[0].inputs[0].shape == (1, 4, 4, 32)
    for f in ("report.json", "report.txt", "data/heldout.npz", "logs/convert.log"):
        assert (digits_bundle / f).is_file(), f
    assert not list(digits_bundle.parent.glob(".digits.tmp-*")), "temporary directory left behind"


def test_report_keys_and_targets(digits_bundle):
    rep = json.loads((digits_bundle / "report.json").read_text())
    for a, b in REPORT_KEYS:
        assert b in rep[a], f"{a}.{b} missing"
    assert rep["ops"] == ["CONV_2D", "PAD"]
    assert rep["heldout_samples"] == 360
    # The targets for the digits example.
    assert rep["int8"]["top1_agreement"] >= 0.99
    assert rep["tflm"]["identical_fraction"] >= 0.999
    assert rep["tflm"]["max_lsb_diff"] <= 1
    assert rep["int8"]["cosine_min"] > 0.99
    assert rep["int8"]["accuracy_int8"] >= 0.95
    assert rep["tflm"]["arena_bytes"] == load_manifest(digits_bundle).device_model("head").arena_bytes
    assert rep["model"]["flash_bytes"] == (digits_bundle / "device" / "head.tflite").stat().st_size
    assert "TFLite Micro arena" in (digits_bundle / "report.txt").read_text()


def test_arena_is_measured_not_guessed(digits_bundle):
    """The reported arena is what TFLite Micro allocates: a run with 1 byte less than that fails."""
    m = load_manifest(digits_bundle)
    head = m.device_model("head")
    buf = (digits_bundle / head.file).read_bytes()
    x = quantize(nchw_to_nhwc(np.load(digits_bundle / "data" / "heldout.npz")["x"][:1]),
                 head.inputs[0].scale, head.inputs[0].zero_point)
    TflmRunner(buf, 1, arena_size=head.arena_bytes + 16).run(x)
    try:
        TflmRunner(buf, 1, arena_size=head.arena_bytes - 64).run(x)
        too_small_worked = True
    except Exception:
        too_small_worked = False
    assert not too_small_worked, "TFLite Micro ran with less than the reported arena"


def test_tflite_is_fully_int8_per_channel(digits_bundle):
    model = read_tflite(digits_bundle / "device" / "head.tflite")
    convs = [op for op in model.operators if op.opcode == "CONV_2D"]
    assert len(convs) == 2
    for op in convs:
        w, b = model.tensors[op.inputs[1]], model.tensors[op.inputs[2]]
        assert w.dtype == "int8" and w.per_channel and w.quantized_dimension == 0
        assert len(w.scales) == w.shape[0]
        assert b.dtype == "int32"


def test_classifier_variant(digits_classifier_export):
    result, trained = digits_classifier_export
    rep = result.report
    m = result.manifest
    assert [d.kind for d in m.device_models] == ["classifier"] and m.host_tails == ()
    assert m.device_models[0].outputs[0].shape == (1, 10)
    assert rep["int8"]["top1_agreement"] >= 0.99
    assert rep["tflm"]["identical_fraction"] >= 0.999 and rep["tflm"]["max_lsb_diff"] <= 1
    assert "MEAN" in rep["ops"]
    assert abs(rep["device_models"]["classifier"]["int8"]["accuracy_float"] - trained.heldout_accuracy) < 1e-9


def test_export_is_deterministic(digits_export, tmp_path):
    """Same seed, same data: the same int8 model bytes, so the same bundle id."""
    from tinysplit.examples.digits import digits_spec
    from tinysplit.exporter import export_bundle

    first, _ = digits_export
    spec, _ = digits_spec("digits")
    again = export_bundle(spec, tmp_path / "again")
    assert again.manifest.device_models[0].sha256 == first.manifest.device_models[0].sha256
    assert again.manifest.bundle_id == first.manifest.bundle_id
