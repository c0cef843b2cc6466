"""`tinysplit firmware --bundle` and `tinysplit build` through the CLI.

The real C code generator (tinysplit.exporter.codegen) is written in parallel; these tests put a
fake one in its place (same signature) so the command's own work is checked on its own."""

from __future__ import annotations

import hashlib
import json
import sys
import types
from pathlib import Path

import pytest

from firmware_support import IN_BYTES, OUT_BYTES, write_fake_model
from tinysplit import __version__, cli
from tinysplit.errors import ToolchainError
from tinysplit.firmware.project import load_project_meta

TFLITE = b"TFL3 not a real model, only bytes the fake code generator checks"


def _bundle(root: Path) -> Path:
    b = root / "bundle"
    (b / "device").mkdir(parents=True)
    (b / "device" / "head.tflite").write_bytes(TFLITE)
    q = lambda name, shape: {"name": name, "shape": shape, "dtype": "int8", "scale": 0.5, "zero_point": 0}
    manifest = {
        "format": "tinysplit-bundle", "version": 1, "tinysplit_version": __version__, "name": "fake",
        "bundle_id": "0123abcd", "method": "plain", "input": {"shape_nchw": [1, 1, 8, 8], "dtype": "float32"},
        "classes": ["a", "b"],
        "device_models": [{"name": "head", "file": "device/head.tflite",
                           "sha256": hashlib.sha256(TFLITE).hexdigest(), "kind": "features",
                           "inputs": [q("x", [1, 8, 8, 1])], "outputs": [q("y", [1, OUT_BYTES])],
                           "ops": ["CONV_2D"], "flash_bytes": len(TFLITE), "arena_bytes": 1024}],
        "host_tails": [], "method_data": {},
    }
    (b / "manifest.json").write_text(json.dumps(manifest))
    return b


@pytest.fixture
def fake_codegen(monkeypatch):
    calls = []

    def generate_model_sources(tflite_bytes: bytes, prefix: str, out_dir: Path, skippable: bool = False,
                               stream: bool = True, profile: bool = False):
        assert not skippable  # only the adaptive_resnet app asks for skippable blocks
        calls.append((tflite_bytes, prefix) if stream else (tflite_bytes, prefix, "layer at a time"))
        return write_fake_model(Path(out_dir), prefix=prefix, in_bytes=IN_BYTES, out_bytes=OUT_BYTES)

    mod = types.ModuleType("tinysplit.exporter.codegen")
    mod.generate_model_sources = generate_model_sources  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tinysplit.exporter.codegen", mod)
    return calls


def test_firmware_then_build(tmp_path: Path, fake_codegen, capsys):
    bundle = _bundle(tmp_path)
    out = tmp_path / "proj"
    assert cli.main(["firmware", "--bundle", str(bundle), "--board", "qemu-lm3s6965evb", "--out", str(out)]) == 0
    assert fake_codegen == [(TFLITE, "head")]
    meta = load_project_meta(out)
    assert meta["board"] == "qemu-lm3s6965evb" and meta["model"]["prefix"] == "head" and meta["app"] == "hil"
    assert (out / "src" / "model" / "head_model.c").is_file()
    assert '#include "head_model.h"' in (out / "src" / "main.c").read_text()
    capsys.readouterr()
    assert cli.main(["build", str(out), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["board"] == "qemu-lm3s6965evb" and r["ram_available"] == 65536 and 0 < r["flash_bytes"] < 8192
    assert r["ram_bytes"] >= 1024 + 4096
    assert cli.main(["build", str(out)]) == 0
    text = capsys.readouterr().out
    assert "flash" in text and "of 262,144 B" in text and "of 65,536 B" in text


def test_firmware_no_stream_blocks_reaches_the_generator(tmp_path: Path, fake_codegen, capsys):
    bundle = _bundle(tmp_path)
    assert cli.main(["firmware", "--bundle", str(bundle), "--board", "qemu-lm3s6965evb", "--out",
                     str(tmp_path / "proj"), "--no-stream-blocks"]) == 0
    assert fake_codegen == [(TFLITE, "head", "layer at a time")]


def test_hil_no_stream_blocks_needs_the_qemu_check(tmp_path: Path, capsys):
    assert cli.main(["hil", "--bundle", str(_bundle(tmp_path)), "--board", "qemu-lm3s6965evb", "--e2e",
                     "--no-stream-blocks"]) == 2
    assert "--no-stream-blocks goes with the QEMU check" in capsys.readouterr().err


def test_firmware_unknown_board_is_a_usage_error(tmp_path: Path, fake_codegen, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["firmware", "--bundle", str(_bundle(tmp_path)), "--board", "nope", "--out", str(tmp_path / "p")])
    assert e.value.code == 2 and "qemu-mps2-an386" in capsys.readouterr().err


def test_firmware_without_jinja2_names_the_firmware_extra(tmp_path: Path, fake_codegen, monkeypatch, capsys):
    """An install without the firmware extra (unit check; tests/test_installs.py runs the real one)."""
    from tinysplit.firmware import render

    def no_jinja2():
        raise ModuleNotFoundError("No module named 'jinja2'", name="jinja2")

    monkeypatch.setattr(render, "environment", no_jinja2)
    rc = cli.main(["firmware", "--bundle", str(_bundle(tmp_path)), "--board", "qemu-mps2-an386",
                   "--out", str(tmp_path / "p")])
    assert rc == ToolchainError.exit_code and "pip install 'tinysplit[firmware]'" in capsys.readouterr().err


def test_build_of_a_non_project_is_an_input_error(tmp_path: Path, capsys):
    assert cli.main(["build", str(tmp_path)]) == 2
    assert "not a tinysplit firmware project" in capsys.readouterr().err


def test_method_app_for_a_bundle_of_another_method_is_an_input_error(tmp_path: Path, fake_codegen, capsys):
    """A 'plain' bundle has no method app: firmware --app nair and hil --e2e say so (exit 2), and so
    does serve (no assembler: nothing for a host to do)."""
    bundle = str(_bundle(tmp_path))
    assert cli.main(["firmware", "--bundle", bundle, "--board", "qemu-mps2-an386", "--out", str(tmp_path / "p"),
                     "--app", "nair"]) == 2
    assert "app 'nair' is the device side of method 'nair', but bundle" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
    assert cli.main(["hil", "--bundle", bundle, "--board", "qemu-mps2-an386", "--e2e"]) == 2
    assert "method 'plain' has no device application that speaks the wire protocol" in capsys.readouterr().err
    assert cli.main(["serve", "--bundle", bundle, "--listen", "udp://127.0.0.1:0", "--insecure", "--out",
                     str(tmp_path / "p.jsonl")]) == 2
    assert "nothing for a host server to do" in capsys.readouterr().err
    assert not (tmp_path / "p.jsonl").exists()
