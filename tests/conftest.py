"""Shared fixtures. Expensive exports run once per test session and are shared read-only."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def digits_export(tmp_path_factory):
    """The digits example (head on the device, tail on the host), exported once."""
    from tinysplit.examples.digits import digits_spec
    from tinysplit.exporter import export_bundle

    spec, trained = digits_spec("digits")
    out = tmp_path_factory.mktemp("bundles") / "digits"
    return export_bundle(spec, out), trained


@pytest.fixture(scope="session")
def digits_bundle(digits_export) -> Path:
    return digits_export[0].bundle_dir


@pytest.fixture(scope="session")
def digits_classifier_export(tmp_path_factory):
    from tinysplit.examples.digits import digits_spec
    from tinysplit.exporter import export_bundle

    spec, trained = digits_spec("digits-classifier")
    out = tmp_path_factory.mktemp("bundles") / "digits_classifier"
    return export_bundle(spec, out), trained


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed ``tinysplit`` command as a user would (a separate process)."""
    exe = shutil.which("tinysplit", path=str(Path(sys.executable).parent)) or "tinysplit"
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)
