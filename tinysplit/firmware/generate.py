"""Model -> firmware project: the glue every firmware command uses.

``model_project`` is the one path from int8 .tflite bytes to a project: the C code generator, then
the project for a board and an app. ``generate_project`` feeds it a bundle's device model (a method
app gets its configuration from the bundle through the app registry); ``generate_tflite_project``
feeds it any int8 .tflite file (test apps only: method apps need a bundle). Rendering itself is
``tinysplit.firmware.project``; the C comes from templates through ``tinysplit.firmware.render``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from tinysplit.firmware.render import c_identifier


def generate_sources(bundle: Path, manifest: Any, out_dir: Path, model: str | None = None, skippable: bool = False):
    """C sources (ModelSources) for the bundle's device model (default: its first) in ``out_dir``;
    ``skippable``: with its residual blocks behind a runtime skip mask (the app's ``skippable``)."""
    from tinysplit.exporter.codegen import generate_model_sources

    dm = manifest.device_model(model) if model else manifest.device_models[0]
    return generate_model_sources((Path(bundle) / dm.file).read_bytes(), c_identifier(dm.name), out_dir,
                                  skippable=skippable)


def generate_project(bundle: Path, board_name: str, out_dir: Path, model: str | None = None, app: str = "hil",
                     device_key: bytes | None = None, link: Any = None, stream: bool = True, kernels: str | None = None,
                     **app_options: Any):
    """Code-generate the bundle's device model and render a project for the board:
    (project, sources, manifest, device model). A method app gets its configuration from the bundle
    (``app_options`` go to the app's ``config_from_manifest``: device_id, transport, ...).
    ``device_key``: an authenticated build embedding this device's key. ``link``: an ESP-IDF board's
    Wi-Fi, host and UART settings (``tinysplit.firmware.project.LinkSettings``). ``stream``: streamed
    inverted-residual blocks (False: layer at a time; see exporter/codegen/stream.py). ``kernels``: the kernel
    set (tinysplit.firmware.kernelsets; None or "auto": the board core's default)."""
    from tinysplit.boards import get_board
    from tinysplit.firmware.apps import get_app
    from tinysplit.manifest import load_manifest

    get_board(board_name)
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
    project, sources = model_project(board_name, (Path(bundle) / dm.file).read_bytes(), dm.name, out_dir, app,
                                     config, device_key=device_key, link=link, stream=stream,
                                     kernels=kernels)
    return project, sources, manifest, dm


def model_project(board_name: str, tflite: bytes, name: str, out_dir: Path, app: str = "hil",
                  app_config: Any = None, exit_code: int = 0, device_key: bytes | None = None, link: Any = None,
                  stream: bool = True, kernels: str | None = None):
    """Code-generate an int8 .tflite (C prefix ``c_identifier(name)``) and render a project for the
    board: (project, sources)."""
    from tinysplit.boards import get_board
    from tinysplit.exporter.codegen import generate_model_sources
    from tinysplit.firmware.apps import get_app
    from tinysplit.firmware.project import render_project

    board = get_board(board_name)
    if kernels not in (None, "auto"):
        from tinysplit.firmware.kernelsets import choose_kernel_set

        choose_kernel_set(board, kernels)  # a set the board cannot run: InputError before generating
    with tempfile.TemporaryDirectory(prefix="tinysplit-model-") as tmp:
        sources = generate_model_sources(tflite, c_identifier(name), Path(tmp), skippable=get_app(app).skippable,
                                         stream=stream, profile=get_app(app).profile)
        project = render_project(board, sources, out_dir, app=app, exit_code=exit_code, app_config=app_config,
                                 device_key=device_key, link=link, kernels=kernels)
    return project, sources


def generate_tflite_project(tflite: Path, board_name: str, out_dir: Path, app: str = "hil", exit_code: int = 0,
                            link: Any = None, stream: bool = True, kernels: str | None = None):
    """A project for any int8 .tflite file (C prefix from its file name): (project, sources, name).
    Only test apps: a method app takes its configuration from a bundle."""
    from tinysplit.boards import get_board
    from tinysplit.firmware.apps import get_app
    from tinysplit.firmware.source import read_tflite_file, tflite_model_name

    get_board(board_name)
    a = get_app(app)
    if a.method is not None:
        from tinysplit.errors import InputError

        raise InputError(f"app '{app}' is the device side of method '{a.method}' and takes its configuration from "
                         f"a bundle: use --bundle DIR (from 'tinysplit export'), or --app hil|exit with --tflite")
    name = tflite_model_name(tflite)
    project, sources = model_project(board_name, read_tflite_file(tflite), name, out_dir, app, exit_code=exit_code,
                                     link=link, stream=stream, kernels=kernels)
    return project, sources, name
