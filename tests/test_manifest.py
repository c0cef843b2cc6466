"""The manifest schema: valid manifests load; each kind of defect names its field."""

from __future__ import annotations

import copy
import json

import pytest

from tinysplit.errors import ManifestError
from tinysplit.manifest import (bundle_id_for, load_manifest, manifest_from_dict, sha256_file,
                                validate_manifest_dict, write_manifest)


def valid_manifest() -> dict:
    q = {"name": "t", "shape": [1, 8, 8, 1], "dtype": "int8", "scale": 0.004, "zero_point": -128}
    return {
        "format": "tinysplit-bundle", "version": 1, "tinysplit_version": "0.1.0", "name": "demo",
        "bundle_id": "0123abcd", "method": "plain",
        "input": {"shape_nchw": [1, 8, 8], "dtype": "float32", "heldout_file": "data/heldout.npz"},
        "classes": ["a", "b"],
        "device_models": [{"name": "head", "file": "device/head.tflite", "sha256": "0" * 64, "kind": "features",
                           "inputs": [q], "outputs": [dict(q, shape=[1, 4, 4, 32])], "ops": ["CONV_2D"],
                           "flash_bytes": 100, "arena_bytes": 10}],
        "host_tails": [{"name": "tail", "file": "host/tail.onnx", "sha256": "1" * 64, "consumes": ["head"],
                        "inputs": [{"name": "head", "shape": [1, 4, 4, 32], "dtype": "float32"}],
                        "outputs": [{"name": "logits", "shape": [1, 2], "dtype": "float32"}]}],
        "method_data": {},
    }


def test_valid_manifest_round_trips():
    m = manifest_from_dict(valid_manifest())
    assert m.device_models[0].outputs[0].shape == (1, 4, 4, 32)
    assert m.device_model("head").kind == "features"
    assert m.to_json() == valid_manifest()


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.pop("method"), "(top level)"),
    (lambda d: d["device_models"][0].__setitem__("kind", "blob"), "device_models[0].kind"),
    (lambda d: d["device_models"][0]["outputs"][0].__setitem__("scale", -1.0), "device_models[0].outputs[0].scale"),
    (lambda d: d["device_models"][0]["inputs"][0].__setitem__("zero_point", 300), "device_models[0].inputs[0].zero_point"),
    (lambda d: d["device_models"][0].__setitem__("file", "../etc/passwd"), "device_models[0].file"),
    (lambda d: d.__setitem__("bundle_id", "xyz"), "bundle_id"),
    (lambda d: d["input"].__setitem__("shape_nchw", [0, 8]), "input.shape_nchw[0]"),
    (lambda d: d.__setitem__("surprise", 1), "(top level)"),
    (lambda d: d["host_tails"][0].__setitem__("consumes", ["nobody"]), "host_tails[0].consumes"),
    (lambda d: d.__setitem__("method", "early_exit"), "method"),  # not in tinysplit.methods.METHODS
    (lambda d: d.__setitem__("method", "adaptive_resnet"), "method_data.adaptive_resnet"),  # needs its blocks
    (lambda d: d.__setitem__("method", "rocoin"), "method_data.rocoin"),  # a RoCoIn bundle needs its groups
    (lambda d: d.__setitem__("method", "nair"), "method_data.nair"),  # a NAIR bundle needs its slice plan
    (lambda d: d.update(method="nair", method_data={"nair": {"unit_channels": 0, "units_total": 16,
                                                             "default_budget_units": 1}}),
     "method_data.nair.unit_channels"),
    (lambda d: d["method_data"].__setitem__("plain", {"unexpected": 1}), "method_data.plain"),
    (lambda d: d.__setitem__("method", "rebel"), "method_data.rebel"),  # a ReBEL bundle needs its layout
    (lambda d: d.update(method="rebel", method_data={"rebel": {"latent_dim": 16, "classes": 10, "confidence_scale": 1.0,
                                                               "default_threshold": -0.5}}),
     "method_data.rebel.default_threshold"),
])
def test_invalid_manifest_names_the_field(mutate, field):
    d = copy.deepcopy(valid_manifest())
    mutate(d)
    with pytest.raises(ManifestError) as e:
        validate_manifest_dict(d)
    assert f"field '{field}'" in str(e.value)


def test_newer_version_is_refused_with_advice():
    d = valid_manifest()
    d["version"] = 2
    with pytest.raises(ManifestError, match="field 'version' is 2.*re-export"):
        validate_manifest_dict(d)


def test_duplicate_device_model_names_are_refused():
    d = valid_manifest()
    d["device_models"].append(copy.deepcopy(d["device_models"][0]))
    with pytest.raises(ManifestError, match="names must be unique"):
        validate_manifest_dict(d)


def test_load_checks_files_and_hashes(tmp_path):
    (tmp_path / "device").mkdir()
    (tmp_path / "host").mkdir()
    (tmp_path / "device" / "head.tflite").write_bytes(b"model")
    (tmp_path / "host" / "tail.onnx").write_bytes(b"tail")
    d = valid_manifest()
    d["device_models"][0]["sha256"] = sha256_file(tmp_path / "device" / "head.tflite")
    d["host_tails"][0]["sha256"] = sha256_file(tmp_path / "host" / "tail.onnx")
    write_manifest(manifest_from_dict(d), tmp_path)
    assert load_manifest(tmp_path).name == "demo"
    (tmp_path / "device" / "head.tflite").write_bytes(b"changed")
    with pytest.raises(ManifestError, match=r"device_models\[0\]\.sha256.*re-export"):
        load_manifest(tmp_path)
    (tmp_path / "device" / "head.tflite").unlink()
    with pytest.raises(ManifestError, match=r"device_models\[0\]\.file.*missing"):
        load_manifest(tmp_path)


def test_load_errors_for_missing_or_broken_bundle(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        load_manifest(tmp_path / "nope")
    with pytest.raises(ManifestError, match="no manifest.json"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON.*line 1"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ManifestError, match="JSON object"):
        load_manifest(tmp_path)


def test_bundle_id_depends_on_every_model():
    a, b = "a" * 64, "b" * 64
    assert bundle_id_for([a, b]) != bundle_id_for([b, a]) != bundle_id_for([a])
    assert len(bundle_id_for([a])) == 8


def test_write_atomic_leaves_nothing_behind_on_failure(tmp_path):
    from tinysplit.files import write_atomic

    target = tmp_path / "out.json"
    write_atomic(target, "first")
    assert target.read_text() == "first"

    with pytest.raises(TypeError):
        write_atomic(target, 42)  # not bytes or str: the write fails
    assert target.read_text() == "first" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
