"""Every stage's registry names the same methods (tinysplit.methods.METHODS), and the CLI and
install extras stay consistent with what they point at."""

from __future__ import annotations

import importlib
import json
import tomllib
from pathlib import Path

from tinysplit.firmware.apps import APPS
from tinysplit.host_server.assemblers import ASSEMBLERS
from tinysplit.manifest import manifest_schema, method_data_schema
from tinysplit.methods import METHODS
from tinysplit.wire import FrameType

REPO = Path(__file__).resolve().parents[1]
SPLIT = {name for name, m in METHODS.items() if m.split}


def test_method_data_schemas_are_one_per_method():
    files = {p.name.removesuffix(".schema.json") for p in (REPO / "tinysplit/schemas/method_data").glob("*.json")}
    assert files == set(METHODS)
    for name in METHODS:
        schema = method_data_schema(name)
        assert schema["type"] == "object" and schema["additionalProperties"] is False, name
    assert manifest_schema()["properties"]["method"]["enum"] == list(METHODS)
    # the checked-in schema does not list methods a second time
    raw = json.loads((REPO / "tinysplit/schemas/manifest.schema.json").read_text())
    assert "enum" not in raw["properties"]["method"]


def test_host_assemblers_name_the_methods():
    assert set(ASSEMBLERS) == set(METHODS)
    for name, target in ASSEMBLERS.items():
        assert (target is not None) == (name in SPLIT), name
        if target is None:
            continue
        module, _, cls = target.partition(":")
        assembler = getattr(importlib.import_module(module), cls)
        assert assembler.frame_types and all(isinstance(t, FrameType) for t in assembler.frame_types), name
        for t in (FrameType.HELLO, FrameType.STATS):  # the server's own
            assert t not in assembler.frame_types, name


def test_firmware_apps_one_per_split_method():
    by_method = {}
    for app in APPS.values():
        assert (REPO / "firmware_templates" / app.main_template).is_file(), app.name
        for f in app.runtime_files:
            assert (REPO / "firmware_templates/runtime" / f).is_file(), (app.name, f)
        if app.method is not None:
            assert app.method in METHODS and app.method not in by_method, app.name
            assert app.module is not None, app.name
            mod = importlib.import_module(app.module)
            for fn in ("config_from_manifest", "add_e2e_arguments", "e2e_from_args", "format_e2e"):
                assert callable(getattr(mod, fn)), (app.name, fn)
            by_method[app.method] = app.name
    assert set(by_method) == SPLIT


def test_method_verbs_reach_the_cli():
    from tinysplit.cli import COMMANDS

    for m in METHODS.values():
        if m.commands:
            verbs = importlib.import_module(m.commands).COMMANDS
            assert verbs and all(COMMANDS[v] == entry for v, entry in verbs.items()), m.name


def test_method_packages_exist_and_are_light():
    """tinysplit/methods/<name>/ for every split method; importing it pulls in neither torch nor TF
    (checked in a fresh interpreter)."""
    import subprocess
    import sys

    for name in SPLIT:
        assert (REPO / "tinysplit/methods" / name / "__init__.py").is_file(), name
    code = ("import sys, tinysplit.methods, tinysplit.cli; "
            + "; ".join(f"import tinysplit.methods.{n}" for n in SPLIT)
            + "; bad = [m for m in ('torch', 'tensorflow', 'onnxruntime', 'jinja2') if m in sys.modules]; "
              "print(', '.join(bad)); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_extras_table_matches_pyproject():
    from tinysplit.extras import MODULE_EXTRAS, missing_extra_error

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def dists(extra: str) -> set[str]:
        out = set()
        for req in extras[extra]:
            name = req.split(";")[0].split("[")[0]
            for op in ("==", ">=", "<=", "~=", ">", "<"):
                name = name.split(op)[0]
            if req.startswith("tinysplit["):
                for inner in req[len("tinysplit["):-1].split(","):
                    out |= dists(inner)
            else:
                out.add(name.strip().lower())
        return out

    for module, (dist, extra) in MODULE_EXTRAS.items():
        assert dist in dists(extra), (module, dist, extra)
        err = missing_extra_error(module + ".sub")
        assert err is not None and err.exit_code == 6 and f"tinysplit[{extra}]" in str(err)
    assert missing_extra_error("no_such_module") is None
    assert not dists("host") & {"torch", "tensorflow", "jinja2"}
    assert not dists("firmware") & {"torch", "tensorflow", "onnxruntime"}


def test_board_schema_and_firmware_tables_name_the_same_kinds():
    """Every family, UART kind, exit mechanism and counter kind a board file may name has its
    templates (and every family its ELF machine), and the tables name nothing the schema refuses."""
    from tinysplit.boards import board_schema, list_boards
    from tinysplit.firmware.project import (COUNTER_TEMPLATES, EXIT_TEMPLATES, FAMILY_TEMPLATES, LAYOUTS,
                                            UART_TEMPLATES)
    from tinysplit.firmware.qemu import ELF_MACHINES

    props = board_schema()["properties"]
    assert set(props["family"]["enum"]) == set(FAMILY_TEMPLATES) == set(LAYOUTS)
    # the families tinysplit builds itself (CMake) make ELF files QEMU checks; ESP-IDF builds its own
    assert set(ELF_MACHINES) == {f for f, (_, builder) in LAYOUTS.items() if builder == "cmake"}
    assert set(props["uart"]["properties"]["kind"]["enum"]) == set(UART_TEMPLATES)
    assert set(props["exit"]["enum"]) == set(EXIT_TEMPLATES)
    assert set(props["counter"]["enum"]) == set(COUNTER_TEMPLATES)
    templates = [*UART_TEMPLATES.values(), *EXIT_TEMPLATES.values(), *COUNTER_TEMPLATES.values(),
                 *(t for files in FAMILY_TEMPLATES.values() for t in files.values())]
    for t in templates:
        assert (REPO / "firmware_templates" / t).is_file(), t
    for family, files in FAMILY_TEMPLATES.items():  # each CMake family: toolchain file, linker script, startup
        if LAYOUTS[family][1] == "cmake":
            assert {"toolchain.cmake", "linker.ld"} <= set(files) and any(f.startswith("src/startup.") for f in files)
        else:  # an ESP-IDF project: its top-level CMakeLists and the app_main that starts the app
            assert {"CMakeLists.txt", "main/main.c"} <= set(files)
    assert {b.family for b in list_boards()} == set(FAMILY_TEMPLATES)  # no family without a board
