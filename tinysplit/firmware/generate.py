"""Bundle -> firmware project: the glue every firmware command uses.

``generate_sources`` runs the C code generator on a bundle's device model; ``generate_project``
also renders the project for a board and an app (a method app gets its configuration from the
bundle through the app registry). Rendering itself is ``tinysplit.firmware.project``; the C comes
from templates through ``tinysplit.firmware.render``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from tinysplit.firmware.render import c_identifier


def generate_sources(bundle: Path, manifest: Any, out_dir: Path, model: str | None = None):
    """C sources (ModelSources) for the bundle's device model (default: its first) in ``out_dir``."""
    from tinysplit.exporter.codegen import generate_model_sources

    dm = manifest.device_model(model) if model else manifest.device_models[0]
    return generate_model_sources((Path(bundle) / dm.file).read_bytes(), c_identifier(dm.name), out_dir)


def generate_project(bundle: Path, board_name: str, out_dir: Path, model: str | None = None, app: str = "hil",
                     **app_options: Any):
    """Code-generate the bundle's device model and render a project for the board:
    (project, sources, manifest, device model). A method app gets its configuration from the bundle
    (``app_options`` go to the app's ``config_from_manifest``: device_id, transport, ...)."""
    from tinysplit.boards import get_board
    from tinysplit.firmware.apps import get_app
    from tinysplit.firmware.project import render_project
    from tinysplit.manifest import load_manifest

    board = get_board(board_name)
    a = get_app(app)
    manifest = load_manifest(bundle)
    dm = manifest.device_model(model) if model else manifest.device_models[0]
    config = None
    if a.method is not None:
        if manifest.method != a.method:
            from tinysplit.errors import InputError

            raise InputError(f"app '{app}' is the device side of method '{a.method}', but bundle "
                             f"'{manifest.name}' is a '{manifest.method}' bundle")
        config = a.config_from_manifest(manifest, model=dm.name, **app_options)
    with tempfile.TemporaryDirectory(prefix="tinysplit-model-") as tmp:
        sources = generate_sources(bundle, manifest, Path(tmp), dm.name)
        project = render_project(board, sources, out_dir, app=app, app_config=config)
    return project, sources, manifest, dm
