"""The README's main command, `tinysplit demo`, in its quick form, as a new user runs it."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli

pytestmark = pytest.mark.emulator


def test_demo_runs_end_to_end_and_can_be_rerun(tmp_path):
    out = tmp_path / "demo"
    r = run_cli("demo", "--quick", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["ok"] and data["board"] == "qemu-mps2-an386" and data["samples"] == 60
    rows = {row["budget_units"]: row for row in data["rows"]}
    assert sorted(rows) == [1, 4, 16]
    for row in rows.values():
        assert row["labels_equal_reference"] == 1.0  # the device path is the reference pipeline, exactly
    assert rows[1]["bytes_per_sample"] < rows[4]["bytes_per_sample"] < rows[16]["bytes_per_sample"]
    assert rows[16]["device_accuracy"] > 0.8
    assert rows[4]["device_accuracy"] > rows[4]["baseline_accuracy"]  # NAIR beats the unordered order
    # ReBEL: the emulated device's paths and labels are the reference pipeline's at every threshold
    rebel = {row["threshold"]: row for row in data["rebel"]["rows"]}
    assert sorted(rebel) == [0.0, 0.9, 1.0]
    for row in rebel.values():
        assert row["labels_equal_reference"] == 1.0 and row["paths_equal_reference"] == 1.0
    assert rebel[0.0]["coverage"] == 1.0 and rebel[1.0]["coverage"] < 1.0
    assert rebel[0.0]["bytes_per_sample"] < rebel[1.0]["bytes_per_sample"]  # a label frame is smaller than a latent
    assert rebel[0.0]["overall_accuracy"] == rebel[0.0]["local_accuracy"] > 0.5
    for f in ("demo.json", "nair_eval.json", "nair_eval.png", "bundles/nair/manifest.json", "rebel/rebel_eval.json",
              "rebel/rebel_eval.png", "rebel/bundles/gmc/manifest.json"):
        assert (out / f).is_file(), f
    assert list((out / "firmware").glob("*/build/firmware.elf"))
    r = run_cli("demo", "--quick", "--out", str(out), "--transport", "uart")  # a second run replaces results
    assert r.returncode == 0, r.stderr
    assert "unordered baseline" in r.stdout and "plot:" in r.stdout and "ReBEL on qemu-mps2-an386" in r.stdout
    assert json.loads((out / "demo.json").read_text())["transport"] == "uart"
