"""``tinysplit rebel-eval`` as a user runs it: bad flags are refused before any training; a short run
on digits writes the report with the device's figures (generated C in QEMU), the latency per
threshold and the fleet table."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli


@pytest.mark.parametrize("flags, says", [
    (["--fleet-coverages", "0.2,1.5"], "--fleet-coverages"),
    (["--fleet-coverages", "a,b"], "--fleet-coverages"),
    (["--board", "stm32-nope"], "unknown board 'stm32-nope'"),
    (["--clock-mhz", "0"], "--clock-mhz"),
    (["--devices", "0"], "--devices"),
    (["--variants", "gmc,bogus"], "unknown variant(s) bogus"),
])
def test_bad_flags_are_refused_before_training(tmp_path, flags, says):
    r = run_cli("rebel-eval", "--example", "digits", "--out", str(tmp_path / "o"), *flags, timeout=120)
    assert r.returncode == 2 and says in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
@pytest.mark.emulator
def test_short_rebel_eval_reports_device_latency_and_fleet(tmp_path):
    out = tmp_path / "eval"
    r = run_cli("rebel-eval", "--example", "digits", "--out", str(out), "--variants", "gmc,linear",
                "--train-epochs", "4", "--epochs", "2", "--finetune-epochs", "1", "--no-one-output-cost",
                "--clock-mhz", "80", "--rate-kbps", "100", "--overhead-ms", "10", "--json", "-q", timeout=900)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert json.loads((out / "rebel_eval.json").read_text()) == rep and (out / "rebel_eval.png").is_file()
    for name in ("gmc", "linear", "kmeans_reg", "knn_reg"):
        w = rep["classifiers"][name]["coverage_within_2_points"]
        assert 0 <= w["coverage"] <= 1 and w["overall_accuracy"] >= w["remote_accuracy"] - 0.02 - 1e-9
    c = rep["int8"]["costs"]
    d = c["device"]
    assert d["board"] == "qemu-mps2-an386" and d["identical_fraction"] == 1.0 and d["samples"] == 3
    assert d["instructions_per_inference"] > 10_000 and d["ms_at_clock"] == pytest.approx(
        d["instructions_per_inference"] / 80e3, abs=1e-3)
    assert c["link"] == {"rate_bps": 100_000.0, "overhead_ms": 10.0} and c["host_ms_per_latent"] > 0
    assert set(c["latency"]) == set(rep["int8"]["deployed"])
    for t, lat in c["latency"].items():
        cov = rep["int8"]["deployed"][t]["coverage"]
        assert lat["coverage"] == cov
        assert lat["early_ms"] == pytest.approx(d["ms_at_clock"] + 27 * 8 / 100 + 10, abs=2e-3)
        assert lat["remote_ms"] == pytest.approx(d["ms_at_clock"] + 40 * 8 / 100 + 10 + c["host_ms_per_latent"],
                                                 abs=2e-3)
        assert lat["mean_ms"] == pytest.approx(cov * lat["early_ms"] + (1 - cov) * lat["remote_ms"], abs=2e-3)
    rows = c["fleet"]["rows"]
    assert [row["payload_bytes"] for row in rows[:2]] == [64, 16]  # an 8x8 image, D = 16
    assert rows[2]["name"] == "ReBEL, coverage 0.23" and rows[3]["name"] == "ReBEL, coverage 0.49"
