"""End to end in QEMU, for any split method: the bundle's method app on an emulated board, the wire
protocol, the real TailServer, and the labels compared with the method's Python reference pipeline.

``tinysplit hil --e2e`` reads the bundle's method and runs that method app's ``run_e2e`` (in
``tinysplit.firmware.apps.<app>``): each app adds its own options (NAIR: ``--budgets``) through
``add_e2e_arguments`` and returns a JSON-ready report whose ``ok`` says whether every label equalled
the reference.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from tinysplit.firmware.apps import APPS, app_for_method
from tinysplit.firmware.project import TRANSPORTS


def add_e2e_arguments(p: Any) -> None:
    """The end-to-end options of ``tinysplit hil`` (its --bundle/--board/--samples/--json are shared)."""
    p.add_argument("--e2e", action="store_true",
                   help="end to end: the bundle's method app sends over the wire protocol to the tail server; "
                        "labels are compared with the Python reference pipeline")
    p.add_argument("--transport", choices=TRANSPORTS, default="uart",
                   help="device -> host transport of --e2e (udp: qemu-mps2-an386, qemu-mps3-an547)")
    for app in APPS.values():
        if app.module is not None:
            importlib.import_module(app.module).add_e2e_arguments(p)


def run_e2e_for_bundle(bundle: Path, board: str, samples: int, transport: str, args: Any,
                       workdir: Path | None = None, model: str | None = None) -> dict[str, Any]:
    """Run the end-to-end check of the bundle's method (its app's ``e2e_from_args``)."""
    from tinysplit.manifest import load_manifest

    app = app_for_method(load_manifest(bundle).method)
    module = importlib.import_module(app.module)
    return module.e2e_from_args(bundle, board, samples, transport, args, workdir=workdir, model=model)


def format_e2e(report: dict[str, Any]) -> str:
    """The report for people, by the app of the report's method."""
    return importlib.import_module(app_for_method(report["method"]).module).format_e2e(report)
