"""The command line as a user meets it: help everywhere, JSON where scripts read, meaningful exits."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO, run_cli
from tinysplit.cli import COMMANDS, build_parser


def test_top_level_help_lists_every_command():
    r = run_cli("--help")
    assert r.returncode == 0
    for name in COMMANDS:
        assert name in r.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_help(command):
    r = run_cli(command, "--help")
    assert r.returncode == 0, r.stderr
    assert f"usage: tinysplit {command}" in r.stdout


def test_usage_errors_exit_2():
    r = run_cli("export", "--out", "x")  # neither --example nor --spec
    assert r.returncode == 2 and "one of the arguments --example --spec is required" in r.stderr
    r = run_cli("no-such-command")
    assert r.returncode == 2


def test_version():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("tinysplit ")


def test_export_json_and_inspect(tmp_path):
    out = tmp_path / "bundle"
    r = run_cli("export", "--example", "digits-classifier", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)  # stdout is only the JSON; progress went to stderr
    assert data["bundle"] == str(out) and len(data["bundle_id"]) == 8
    assert data["int8"]["top1_agreement"] >= 0.99 and data["tflm"]["arena_bytes"] > 0
    assert "head: torch -> ONNX" not in r.stderr and "classifier: torch -> ONNX" in r.stderr
    r = run_cli("inspect", str(out), "--json")
    assert r.returncode == 0
    got = json.loads(r.stdout)
    assert got["manifest"]["bundle_id"] == data["bundle_id"]
    assert got["report"]["tflm"] == data["tflm"]
    r = run_cli("inspect", str(out))
    assert r.returncode == 0 and "device 'classifier' (classifier)" in r.stdout


def test_inspect_reports_a_broken_bundle(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "tinysplit-bundle", "version": 1}))
    r = run_cli("inspect", str(tmp_path))
    assert r.returncode == 2
    assert "manifest.json" in r.stderr and "field" in r.stderr


def test_parser_builds_without_heavy_imports():
    """The CLI starts without importing torch or tensorflow (they load only when a command needs them)."""
    code = ("import sys; from tinysplit.cli import build_parser; build_parser(); "
            "print(any(m in sys.modules for m in ('torch', 'tensorflow', 'onnx2tf')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "False", r.stderr
    assert build_parser().prog == "tinysplit"


def test_wheel_installs_a_working_command_outside_the_repo(tinysplit_wheel, tmp_path):
    """A fresh `pip install .` gives a working `tinysplit`: build the wheel, install it alone, run it."""
    wheel = tinysplit_wheel
    names = zipfile.ZipFile(wheel).namelist()
    # every source and data file of the mapped folders is in the wheel (a package missing from
    # pyproject's list would silently break a non-editable install)
    mapping = {"tinysplit": "tinysplit", "exporter": "tinysplit/exporter", "host_server": "tinysplit/host_server",
               "boards": "tinysplit/boards", "firmware_templates": "tinysplit/firmware_templates"}
    wanted = []
    for folder, pkg in mapping.items():
        for f in (REPO / folder).rglob("*"):
            if f.is_file() and f.suffix in (".py", ".j2", ".c", ".h", ".json", ".yaml") and "__pycache__" not in f.parts:
                wanted.append(f"{pkg}/{f.relative_to(REPO / folder).as_posix()}")
    assert len(wanted) > 50
    missing = [w for w in wanted if w not in names]
    assert not missing, f"not in the wheel: {missing}"
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                        str(wheel)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"}
    code = "import tinysplit, sys; from tinysplit.cli import main; print(tinysplit.__file__); sys.exit(main(['--help']))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=elsewhere, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith(str(target))  # the installed copy, not the checkout
    assert "export" in r.stdout
    schema = subprocess.run([sys.executable, "-c", "from tinysplit.manifest import manifest_schema; "
                             "print(manifest_schema()['title'])"], capture_output=True, text=True,
                            cwd=elsewhere, env=env)
    assert "manifest" in schema.stdout, schema.stderr


def test_missing_extra_exits_6_naming_the_extra(monkeypatch, capsys):
    """Unit check of the mapping (the real installs without the extras: tests/test_installs.py): a
    command that hits a missing optional dependency exits 6 and says which extra brings it; an import
    error of anything else stays an internal error (70)."""
    from tinysplit import cli

    def needs(module):
        def run(args):
            raise ModuleNotFoundError(f"No module named '{module}'", name=module)
        return run

    monkeypatch.setitem(cli.COMMANDS, "inspect", (cli.COMMANDS["inspect"][0], needs("onnxruntime")))
    assert cli.main(["inspect", "x"]) == 6
    assert "pip install 'tinysplit[host]'" in capsys.readouterr().err
    monkeypatch.setitem(cli.COMMANDS, "inspect", (cli.COMMANDS["inspect"][0], needs("torch.nn")))
    assert cli.main(["inspect", "x"]) == 6
    assert "tinysplit[export]" in capsys.readouterr().err
    monkeypatch.setitem(cli.COMMANDS, "inspect", (cli.COMMANDS["inspect"][0], needs("not_a_dependency")))
    assert cli.main(["inspect", "x"]) == 70


def test_command_modules_never_import_the_cli():
    """The CLI imports its command modules and the methods' verbs; none of them, and no stage package,
    imports tinysplit.cli back (checked in the source, so a lazy import inside a function counts too)."""
    import re

    pattern = re.compile(r"^\s*(from tinysplit\.cli\b|from tinysplit import cli\b|import tinysplit\.cli\b)", re.M)
    offenders = []
    for folder in ("tinysplit", "exporter", "host_server", "boards"):
        for f in (REPO / folder).rglob("*.py"):
            if "cli" in f.relative_to(REPO).parts[:2] or f.name == "__main__.py":
                continue
            if pattern.search(f.read_text()):
                offenders.append(str(f.relative_to(REPO)))
    assert offenders == []
