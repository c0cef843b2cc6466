"""Board descriptions (one YAML file per board, validated by board.schema.json) and their registry.

This package is ``tinysplit.boards`` (pyproject maps the top-level ``boards/`` folder to it), so the
registry lives here beside the data it loads:

    from tinysplit.boards import list_boards, get_board
    board = get_board("qemu-mps2-an386")
    board.ram.length, board.uart.kind, board.emulator.qemu_machine

Files are safe-loaded, validated against the schema (errors name the file and the field) and turned
into frozen dataclasses. ``list_boards()`` is the one list that feeds the CLI's choices, template
selection and the tests' parametrization.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tinysplit.errors import InputError

log = logging.getLogger(__name__)

SCHEMA_NAME = "board.schema.json"


@dataclass(frozen=True)
class Core:
    cpu: str
    fpu: bool
    cflags: tuple[str, ...]
    reset_vector: int | None = None  # where the core starts when that is not the ELF entry (Xtensa sim)


@dataclass(frozen=True)
class Toolchain:
    prefix: str  # "arm-none-eabi-": the compiler is prefix + "gcc"
    specs: tuple[str, ...]

    @property
    def cc(self) -> str:
        return f"{self.prefix}gcc"


@dataclass(frozen=True)
class MemoryRegion:
    name: str
    origin: int
    length: int
    kind: str  # "flash" | "ram"

    def contains(self, addr: int) -> bool:
        return self.origin <= addr < self.origin + self.length


@dataclass(frozen=True)
class Uart:
    kind: str  # "cmsdk" | "pl011" | "stm32_usart" | "ns16550" | "xtensa_simcall" (semihosting console, base 0)
    base: int


@dataclass(frozen=True)
class Nic:
    kind: str  # "none" | "lan9118"
    base: int | None = None


@dataclass(frozen=True)
class Emulator:
    qemu_binary: str
    qemu_machine: str
    extra_args: tuple[str, ...] = ()
    renode_platform: str | None = None


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    family: str  # "cortex_m" | "riscv" | "xtensa"
    core: Core
    toolchain: Toolchain
    memory: tuple[MemoryRegion, ...]
    code_region: str
    data_region: str
    clock_hz: int
    stack_bytes: int
    uart: Uart
    nic: Nic
    emulator: Emulator | None
    transports: tuple[str, ...]
    exit: str  # "semihosting" | "riscv_virt_test" | "xtensa_simcall" | "none"
    counter: str  # "systick" | "minstret" | "xtensa_icount"
    source: Path | None = None

    def region(self, name: str) -> MemoryRegion:
        for r in self.memory:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def flash(self) -> MemoryRegion:
        """The region that holds code, rodata and the load image of .data."""
        return self.region(self.code_region)

    @property
    def ram(self) -> MemoryRegion:
        """The region that holds .data, .bss (the model's arena) and the stack."""
        return self.region(self.data_region)

    @property
    def emulated(self) -> bool:
        return self.emulator is not None


def boards_dir() -> Path:
    return Path(str(resources.files(__name__)))


@lru_cache(maxsize=1)
def board_schema() -> dict[str, Any]:
    return json.loads((boards_dir() / SCHEMA_NAME).read_text())


def _field_path(path: Any) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def board_from_dict(data: Any, source: str) -> Board:
    """Validate ``data`` (a parsed board file) and build a Board; InputError names file and field."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    validator = jsonschema.Draft202012Validator(board_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.path), list(map(str, e.path))))
    if errors:
        e = errors[0]
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        path = list(e.path)
        if e.validator == "required" and isinstance(e.instance, dict):  # name the missing field itself
            path += [next(r for r in e.validator_value if r not in e.instance)]
        raise InputError(f"{source}: field '{_field_path(path)}': {e.message}{more}")
    regions = tuple(MemoryRegion(r["name"], r["origin"], r["length"], r["kind"]) for r in data["memory"])
    names = [r.name for r in regions]
    if len(set(names)) != len(names):
        raise InputError(f"{source}: field 'memory': region names must be unique, got {names}")
    for key, kind in (("code", "flash"), ("data", "ram")):
        want = data["placement"][key]
        match = [r for r in regions if r.name == want]
        if not match:
            raise InputError(f"{source}: field 'placement.{key}': '{want}' is not a memory region "
                             f"(regions: {', '.join(names)})")
        if match[0].kind != kind:
            raise InputError(f"{source}: field 'placement.{key}': region '{want}' has kind "
                             f"'{match[0].kind}', expected '{kind}'")
    em = data["emulator"]
    emulator = None if em is None else Emulator(em["qemu_binary"], em["qemu_machine"],
                                               tuple(em.get("extra_args", ())), em.get("renode_platform"))
    if emulator is not None and data["exit"] == "none":
        raise InputError(f"{source}: field 'exit': an emulated board needs an exit mechanism, got 'none'")
    nic = data["nic"]
    return Board(
        name=data["name"], description=data["description"], family=data["family"],
        core=Core(data["core"]["cpu"], data["core"]["fpu"], tuple(data["core"]["cflags"]), data["core"].get("reset_vector")),
        toolchain=Toolchain(data["toolchain"]["prefix"], tuple(data["toolchain"]["specs"])),
        memory=regions, code_region=data["placement"]["code"], data_region=data["placement"]["data"],
        clock_hz=data["clock_hz"], stack_bytes=data["stack_bytes"],
        uart=Uart(data["uart"]["kind"], data["uart"]["base"]),
        nic=Nic(nic["kind"], nic.get("base")),
        emulator=emulator, transports=tuple(data["transports"]), exit=data["exit"], counter=data["counter"],
    )


def load_board_file(path: str | Path) -> Board:
    """Safe-load and validate one board file."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except OSError as e:
        raise InputError(f"cannot read board file '{p}': {e.strerror}") from None
    except yaml.YAMLError as e:
        raise InputError(f"{p}: not valid YAML: {e}") from None
    board = board_from_dict(data, str(p))
    if board.name != p.stem:
        raise InputError(f"{p}: field 'name': '{board.name}' must equal the file name without .yaml ('{p.stem}')")
    return replace(board, source=p)


@lru_cache(maxsize=1)
def _registry() -> dict[str, Board]:
    boards: dict[str, Board] = {}
    for p in sorted(boards_dir().glob("*.yaml")):
        b = load_board_file(p)
        boards[b.name] = b
    log.debug("loaded %d boards from %s", len(boards), boards_dir())
    return boards


def list_boards(emulated_only: bool = False) -> tuple[Board, ...]:
    """All boards, sorted by name (only those with an emulator if ``emulated_only``)."""
    return tuple(b for b in _registry().values() if b.emulated or not emulated_only)


def board_names(emulated_only: bool = False) -> tuple[str, ...]:
    return tuple(b.name for b in list_boards(emulated_only))


def get_board(name: str) -> Board:
    try:
        return _registry()[name]
    except KeyError:
        raise InputError(f"unknown board '{name}'; known boards: {', '.join(_registry())} "
                         "(see 'tinysplit boards')") from None
