"""The bundle manifest: schema-versioned contract between exporter, firmware generator and host.

``load_manifest(bundle_dir)`` validates ``manifest.json`` against the checked-in JSON Schema and
returns frozen dataclasses; every error names the offending field (``device_models[0].scale``).
The schema's list of methods is ``tinysplit.methods.METHODS`` (filled in when the schema is read),
and ``method_data.<method>`` is validated against that method's own schema,
``tinysplit/schemas/method_data/<method>.schema.json``: at export time and on every load.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from tinysplit import __version__
from tinysplit.errors import ManifestError

MANIFEST_NAME = "manifest.json"
FORMAT = "tinysplit-bundle"
VERSION = 1


@dataclass(frozen=True)
class QTensor:
    """An int8 tensor of a device model: NHWC shape and its affine quantization."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int


@dataclass(frozen=True)
class FTensor:
    """A float tensor of a host tail."""

    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class DeviceModel:
    name: str
    file: str
    sha256: str
    kind: str  # "features" | "classifier"
    inputs: tuple[QTensor, ...]
    outputs: tuple[QTensor, ...]
    ops: tuple[str, ...]
    flash_bytes: int
    arena_bytes: int


@dataclass(frozen=True)
class HostTail:
    name: str
    file: str
    sha256: str
    consumes: tuple[str, ...]
    inputs: tuple[FTensor, ...]
    outputs: tuple[FTensor, ...]


@dataclass(frozen=True)
class InputSpec:
    shape_nchw: tuple[int, ...]
    dtype: str = "float32"
    heldout_file: str | None = None


@dataclass(frozen=True)
class Manifest:
    name: str
    bundle_id: str
    method: str
    input: InputSpec
    classes: tuple[str, ...]
    device_models: tuple[DeviceModel, ...]
    host_tails: tuple[HostTail, ...]
    method_data: dict[str, Any] = field(default_factory=dict)
    tinysplit_version: str = __version__
    format: str = FORMAT
    version: int = VERSION

    def device_model(self, name: str) -> DeviceModel:
        for m in self.device_models:
            if m.name == name:
                return m
        raise ManifestError(f"manifest has no device model named '{name}' "
                            f"(it has: {', '.join(m.name for m in self.device_models)})")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        if d["input"].get("heldout_file") is None:
            d["input"].pop("heldout_file")
        return _lists(d)


def _lists(x: Any) -> Any:
    """Tuples -> lists, recursively, so the dict is plain JSON."""
    if isinstance(x, dict):
        return {k: _lists(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_lists(v) for v in x]
    return x


@lru_cache(maxsize=1)
def manifest_schema() -> dict[str, Any]:
    """The manifest schema, with the method list from the method registry."""
    from tinysplit.methods import METHODS

    schema = json.loads(resources.files("tinysplit.schemas").joinpath("manifest.schema.json").read_text())
    schema["properties"]["method"] = {"enum": list(METHODS)}
    return schema


@lru_cache(maxsize=None)
def method_data_schema(method: str) -> dict[str, Any]:
    """The schema of ``method_data.<method>`` (tinysplit/schemas/method_data/<method>.schema.json)."""
    path = resources.files("tinysplit.schemas").joinpath("method_data").joinpath(f"{method}.schema.json")
    if not path.is_file():
        raise ManifestError(f"method '{method}' has no method data schema (tinysplit/schemas/method_data/"
                            f"{method}.schema.json): every method in tinysplit.methods.METHODS needs one")
    return json.loads(path.read_text())


def validate_method_data(method: str, method_data: Any, source: str = MANIFEST_NAME) -> None:
    """Raise ManifestError naming the field unless ``method_data`` suits ``method``: an object whose key
    ``method`` (required where the method's schema requires fields) passes the method's schema. Other
    keys are informational and left alone."""
    if not isinstance(method_data, dict):
        raise ManifestError(f"{source}: field 'method_data': expected an object, got {type(method_data).__name__}")
    schema = method_data_schema(method)
    if method not in method_data:
        if schema.get("required"):
            raise ManifestError(f"{source}: field 'method_data.{method}' is missing: a '{method}' bundle needs "
                                f"{', '.join(schema['required'])}")
        return
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(method_data[method]), key=lambda e: (len(e.path), list(map(str, e.path))))
    if errors:
        e = errors[0]
        where = _field_path(["method_data", method, *e.path])
        raise ManifestError(f"{source}: field '{where}': {e.message}")


def _field_path(path: Any) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def validate_manifest_dict(data: Any, source: str = MANIFEST_NAME) -> None:
    """Raise ManifestError naming the first offending field (by schema path) if ``data`` is invalid."""
    if not isinstance(data, dict):
        raise ManifestError(f"{source}: expected a JSON object at the top level, got {type(data).__name__}")
    fmt, ver = data.get("format"), data.get("version")
    if fmt == FORMAT and isinstance(ver, int) and ver != VERSION:
        raise ManifestError(
            f"{source}: field 'version' is {ver}, this tinysplit {__version__} reads version {VERSION}; "
            "re-export the bundle with this tinysplit or install the matching release")
    _check_finite(data, source)
    validator = jsonschema.Draft202012Validator(manifest_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.path), list(map(str, e.path))))
    if errors:
        e = errors[0]
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ManifestError(f"{source}: field '{_field_path(e.path)}': {e.message}{more}")
    _check_scales(data, source)
    validate_method_data(data["method"], data["method_data"], source)
    names = [m["name"] for m in data["device_models"]]
    if len(set(names)) != len(names):
        raise ManifestError(f"{source}: field 'device_models': names must be unique, got {names}")
    for i, t in enumerate(data["host_tails"]):
        for c in t["consumes"]:
            if c not in names:
                raise ManifestError(f"{source}: field 'host_tails[{i}].consumes': '{c}' is not a device model "
                                    f"(device models: {', '.join(names)})")


# An int8 scale the host dequantizes with in float32 and quantizes inputs with: a positive, normal float32
# whose 255-fold (the widest int8 range) is still a finite float32.
SCALE_MIN = 1.1754944e-38  # float32's smallest normal number
SCALE_MAX = 1e36


def _first_non_finite(x: Any, path: list[Any]) -> list[Any] | None:
    """The path of the first NaN or infinite number in parsed JSON, or None."""
    if isinstance(x, float) and not math.isfinite(x):
        return path
    if isinstance(x, dict):
        items = x.items()
    elif isinstance(x, list):
        items = enumerate(x)
    else:
        return None
    for k, v in items:
        found = _first_non_finite(v, [*path, k])
        if found is not None:
            return found
    return None


def _check_finite(data: Any, source: str) -> None:
    """ManifestError naming the field of a NaN or infinite number anywhere in the manifest (Python's
    json reads the non-standard NaN/Infinity literals; the schema's bounds do not catch NaN)."""
    bad = _first_non_finite(data, [])
    if bad is not None:
        raise ManifestError(f"{source}: field '{_field_path(bad)}' is {_value_at(data, bad)}: numbers must be "
                            "finite (NaN and Infinity are not JSON); re-export the bundle or fix the value")


def _check_scales(data: dict[str, Any], source: str) -> None:
    """ManifestError naming the field of an int8 scale float32 cannot use (after the schema passed)."""
    for i, m in enumerate(data["device_models"]):
        for side in ("inputs", "outputs"):
            for j, t in enumerate(m[side]):
                if not SCALE_MIN <= t["scale"] <= SCALE_MAX:
                    raise ManifestError(
                        f"{source}: field 'device_models[{i}].{side}[{j}].scale' is {t['scale']!r}: an int8 scale "
                        f"must lie in [{SCALE_MIN:.4g}, {SCALE_MAX:.0g}] (outside it float32 overflows or "
                        "underflows); the model's quantization is broken: re-export the bundle")


def _value_at(data: Any, path: list[Any]) -> Any:
    for p in path:
        data = data[p]
    return {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}.get(repr(data), repr(data))


def manifest_from_dict(data: dict[str, Any], source: str = MANIFEST_NAME) -> Manifest:
    validate_manifest_dict(data, source)
    q = lambda ts: tuple(QTensor(t["name"], tuple(t["shape"]), t["dtype"], float(t["scale"]), int(t["zero_point"]))
                         for t in ts)
    f = lambda ts: tuple(FTensor(t["name"], tuple(t["shape"]), t["dtype"]) for t in ts)
    inp = data["input"]
    return Manifest(
        name=data["name"], bundle_id=data["bundle_id"], method=data["method"],
        input=InputSpec(tuple(inp["shape_nchw"]), inp["dtype"], inp.get("heldout_file")),
        classes=tuple(data["classes"]),
        device_models=tuple(
            DeviceModel(m["name"], m["file"], m["sha256"], m["kind"], q(m["inputs"]), q(m["outputs"]),
                        tuple(m["ops"]), m["flash_bytes"], m["arena_bytes"]) for m in data["device_models"]),
        host_tails=tuple(
            HostTail(t["name"], t["file"], t["sha256"], tuple(t["consumes"]), f(t["inputs"]), f(t["outputs"]))
            for t in data["host_tails"]),
        method_data=dict(data["method_data"]),
        tinysplit_version=data["tinysplit_version"], format=data["format"], version=data["version"],
    )


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_manifest(bundle_dir: str | Path, check_files: bool = True) -> Manifest:
    """Load and validate ``bundle_dir/manifest.json``; with ``check_files``, verify every file's sha256."""
    bundle = Path(bundle_dir)
    path = bundle / MANIFEST_NAME
    if not bundle.is_dir():
        raise ManifestError(f"bundle directory '{bundle}' does not exist; create one with 'tinysplit export'")
    if not path.is_file():
        raise ManifestError(f"'{bundle}' has no {MANIFEST_NAME}: is it a tinysplit bundle? "
                            "(create one with 'tinysplit export')")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start} is "
                            "invalid); a manifest is UTF-8 JSON as 'tinysplit export' writes it: re-export the "
                            "bundle") from None
    except OSError as e:
        raise ManifestError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    m = manifest_from_dict(data, str(path))
    if check_files:
        entries = [("device_models", i, d.file, d.sha256) for i, d in enumerate(m.device_models)]
        entries += [("host_tails", i, t.file, t.sha256) for i, t in enumerate(m.host_tails)]
        for key, i, rel, digest in entries:
            fp = bundle / rel
            if not fp.is_file():
                raise ManifestError(f"{path}: field '{key}[{i}].file': '{rel}' is missing from the bundle")
            if sha256_file(fp) != digest:
                raise ManifestError(f"{path}: field '{key}[{i}].sha256': '{rel}' does not match its recorded "
                                    "sha256 (the file was changed after export); re-export the bundle")
    return m


def write_manifest(manifest: Manifest, bundle_dir: Path) -> Path:
    data = manifest.to_json()
    validate_manifest_dict(data)
    path = Path(bundle_dir) / MANIFEST_NAME
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def bundle_id_for(device_model_digests: list[str]) -> str:
    """32-bit bundle id: the first 8 hex digits of sha256 over the device models' sha256s, in order."""
    return hashlib.sha256("".join(device_model_digests).encode()).hexdigest()[:8]
