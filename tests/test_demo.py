"""The README's main command: `tinysplit demo`, as a new user runs it."""

from __future__ import annotations

import json

from conftest import run_cli


def test_demo_runs_end_to_end_and_can_be_rerun(tmp_path):
    out = tmp_path / "demo"
    r = run_cli("demo", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["int8"]["top1_agreement"] >= 0.99
    assert data["tflm"]["identical_fraction"] >= 0.999
    assert (out / "bundle" / "manifest.json").is_file()
    first_id = json.loads((out / "bundle" / "manifest.json").read_text())["bundle_id"]
    r = run_cli("demo", "--out", str(out), "--epochs", "2", "-q")  # a second run replaces the results
    assert r.returncode == 0, r.stderr
    assert "TFLite Micro vs TFLite reference" in r.stdout
    assert json.loads((out / "bundle" / "manifest.json").read_text())["bundle_id"] != first_id
    assert sorted(p.name for p in out.iterdir()) == ["bundle"]
