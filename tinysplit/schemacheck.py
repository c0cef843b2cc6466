"""JSON Schema checks of the data files (RoCoIn fleets and plans, Adaptive ResNet devices and scenarios),
with errors that name the field.

The schemas are checked in beside the manifest's: ``tinysplit/schemas/fleet.schema.json`` and
``tinysplit/schemas/rocoin_plan.schema.json``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any, Callable, Sequence

import jsonschema

from tinysplit.errors import InputError


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict[str, Any]:
    """A checked-in schema of ``tinysplit.schemas`` by file name (``fleet.schema.json``)."""
    return json.loads(resources.files("tinysplit.schemas").joinpath(name).read_text())


def field_path(path: Sequence[Any]) -> str:
    """``["devices", 2, "memory", "ram_bytes"]`` -> ``devices[2].memory.ram_bytes``."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def first_error(schema_name: str, data: Any) -> tuple[list[Any], str, int] | None:
    """The first schema error of ``data`` (shallowest path first) as (path, message, how many errors),
    or None. The path of a missing required property ends with that property's name."""
    validator = jsonschema.Draft202012Validator(load_schema(schema_name))
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.path), list(map(str, e.path))))
    if not errors:
        return None
    e = errors[0]
    path = list(e.path)
    if e.validator == "required" and isinstance(e.instance, dict):
        path += [next(r for r in e.validator_value if r not in e.instance)]
    return path, e.message, len(errors)


def check(schema_name: str, data: Any, source: str, where: Callable[[list[Any]], str] | None = None,
          error: type[InputError] = InputError) -> None:
    """Raise ``error`` ("SOURCE: WHERE: message") for the first schema error of ``data``; ``where``
    turns the error's path into words (default ``field 'a.b[2]'``)."""
    found = first_error(schema_name, data)
    if found is None:
        return
    path, message, count = found
    more = f" (and {count - 1} more problem(s))" if count > 1 else ""
    place = where(path) if where else f"field '{field_path(path)}'"
    raise error(f"{source}: {place}: {message}{more}")
