"""The devices an Adaptive ResNet plan runs on, as data: a chain, device 0 first.

A devices file (YAML or JSON, safely loaded, checked against
``tinysplit/schemas/adaptive_devices.schema.json``)::

    version: 1
    devices:                          # the chain, in order: device 0 receives the input
      - name: sensor
        board: qemu-mps2-an386        # a board in boards/
        clock_mhz: 80                 # optional: default the board's clock
        memory_bytes: 131072          # optional: default the board's data region
        flash_bytes: 524288           # optional: default the board's code region
        energy_nj_per_instruction: 0.3
        energy_nj_per_byte: 1700      # radio, per byte sent
        battery_j: 2430               # or: mains: true
        link_kbps: 250                # its outgoing link

What a device gives the planner (``planner.DeviceResources``):

- compute: ``clock_mhz`` x 1e6 instructions per second: one instruction per cycle, the same
  simplification as RoCoIn's fleet; the instruction counts themselves are measured in QEMU on the
  study's board;
- memory: the model's arena must fit ``memory_bytes`` less what the firmware keeps beside it (the
  adaptive_resnet app's buffers and the board's stack), its weights ``flash_bytes`` less the project
  generator's code estimate: the fit rule the project generator applies before compiling
  (``tinysplit.firmware.project.check_fit``). The firmware is linked for the board, so a device's
  memory can be smaller than the board's regions, not larger;
- energy: ``energy_nj_per_instruction`` per instruction and ``energy_nj_per_byte`` per byte sent
  (receiving is not counted); ``battery_j`` joules for the horizon, or ``mains: true``;
- ``link_kbps``: the rate of its outgoing link, to the next device it sends to or to the host.

Errors name the file, the device (its index in the chain and its name) and the field:
``two_m4.yaml: device 1 ('hub'), field 'clock_mhz': ...``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tinysplit.errors import InputError

SCHEMA = "adaptive_devices.schema.json"
APP = "adaptive_resnet"
SHIPPED = ("one_m4.yaml", "two_m4.yaml")  # in tinysplit/methods/adaptive_resnet/devices/
DEFAULT_DEVICES = "one_m4.yaml"


@dataclass(frozen=True)
class ChainDevice:
    name: str
    board: str
    clock_hz: float  # instructions per second (one per cycle)
    memory_bytes: int  # the device's RAM
    flash_bytes: int  # the device's flash
    ram_reserve_bytes: int  # the app's buffers and the board's stack
    flash_reserve_bytes: int  # the firmware's own code (the project generator's estimate)
    energy_per_instruction_j: float
    energy_per_byte_j: float
    battery_j: float  # math.inf: mains powered
    link_bps: float

    @property
    def model_memory_bytes(self) -> int:
        """RAM left for the model's arena."""
        return self.memory_bytes - self.ram_reserve_bytes

    @property
    def model_flash_bytes(self) -> int:
        """Flash left for the model's weights."""
        return self.flash_bytes - self.flash_reserve_bytes

    @property
    def mains(self) -> bool:
        return math.isinf(self.battery_j)

    def resources(self):
        """This device as the planner sees it."""
        from tinysplit.methods.adaptive_resnet.planner import DeviceResources

        return DeviceResources(self.name, self.clock_hz, self.model_memory_bytes, self.model_flash_bytes,
                               self.energy_per_instruction_j, self.energy_per_byte_j, self.battery_j, self.link_bps)


@dataclass(frozen=True)
class DeviceChain:
    source: str  # the file it came from, for messages
    devices: tuple[ChainDevice, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.devices)

    def resources(self) -> list:
        return [d.resources() for d in self.devices]


def load_schema() -> dict[str, Any]:
    from tinysplit.schemacheck import load_schema as schema

    return schema(SCHEMA)


def _device(entry: Any, index: int) -> str:
    if isinstance(entry, dict) and isinstance(entry.get("name"), str) and entry["name"]:
        return f"device {index} ('{entry['name']}')"
    return f"device {index}"


def _check_schema(data: Any, source: str) -> None:
    from tinysplit.schemacheck import check, field_path

    def where(path: list[Any]) -> str:
        if len(path) >= 2 and path[0] == "devices" and isinstance(path[1], int):
            dev = _device(data["devices"][path[1]], path[1])
            return dev + (f", field '{field_path(path[2:])}'" if path[2:] else "")
        return f"field '{field_path(path)}'"

    check(SCHEMA, data, source, where)


def chain_from_dict(data: Any, source: str = "devices") -> DeviceChain:
    """Validate a parsed devices file and resolve each device against its board; InputError names the
    device and the field."""
    from tinysplit.boards import board_names, get_board
    from tinysplit.firmware.apps import get_app
    from tinysplit.firmware.project import CODE_ESTIMATE_BYTES

    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a mapping with 'devices' at the top level, got {type(data).__name__}")
    _check_schema(data, source)
    app_ram = get_app(APP).ram_bytes
    devices: list[ChainDevice] = []
    seen: dict[str, int] = {}
    for i, e in enumerate(data["devices"]):
        dev = _device(e, i)

        def bad(field: str, message: str) -> InputError:
            return InputError(f"{source}: {dev}, field '{field}': {message}")

        if e["name"] in seen:
            raise bad("name", f"device {seen[e['name']]} has this name too; names must be unique")
        seen[e["name"]] = i
        for field in ("clock_mhz", "energy_nj_per_instruction", "energy_nj_per_byte", "battery_j", "link_kbps"):
            if field in e and not math.isfinite(e[field]):
                raise bad(field, f"must be a finite number, got {e[field]}")
        mains = e.get("mains", False)
        if "battery_j" in e and mains:
            raise bad("mains", "a device is mains powered or has a battery (battery_j), not both")
        if "battery_j" not in e and not mains:
            raise bad("battery_j", "give the battery's energy for the horizon in joules, or 'mains: true' for a "
                                   "mains-powered device")
        if e["board"] not in board_names():
            raise bad("board", f"unknown board '{e['board']}'; choose one of {', '.join(board_names())}")
        board = get_board(e["board"])
        memory = e.get("memory_bytes", board.ram.length)
        flash = e.get("flash_bytes", board.flash.length)
        for field, value, region in (("memory_bytes", memory, board.ram), ("flash_bytes", flash, board.flash)):
            if value > region.length:
                raise bad(field, f"{value:,} bytes is more than board '{board.name}' has in region '{region.name}' "
                                 f"({region.length:,}); the firmware is linked for the board's regions, so give the "
                                 "device's memory up to that")
        ram_reserve = app_ram + board.stack_bytes
        if memory <= ram_reserve:
            raise bad("memory_bytes", f"{memory:,} bytes leave nothing for the model's arena after the firmware's "
                                      f"{ram_reserve:,} bytes (the {APP} app's buffers {app_ram:,} + stack "
                                      f"{board.stack_bytes:,})")
        if flash <= CODE_ESTIMATE_BYTES:
            raise bad("flash_bytes", f"{flash:,} bytes leave nothing for the model's weights after the firmware's "
                                     f"own {CODE_ESTIMATE_BYTES:,} bytes of code")
        clock = float(e["clock_mhz"]) * 1e6 if "clock_mhz" in e else float(board.clock_hz)
        devices.append(ChainDevice(
            name=e["name"], board=board.name, clock_hz=clock, memory_bytes=int(memory), flash_bytes=int(flash),
            ram_reserve_bytes=ram_reserve, flash_reserve_bytes=CODE_ESTIMATE_BYTES,
            energy_per_instruction_j=float(e["energy_nj_per_instruction"]) * 1e-9,
            energy_per_byte_j=float(e["energy_nj_per_byte"]) * 1e-9,
            battery_j=math.inf if mains else float(e["battery_j"]), link_bps=float(e["link_kbps"]) * 1e3))
    return DeviceChain(source, tuple(devices))


def load_devices(path: str | Path) -> DeviceChain:
    """Safe-load a devices file (``.json``: JSON; anything else: YAML) and validate it."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise InputError(f"cannot read devices file '{p}': {e.strerror}") from None
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise InputError(f"{p.name}: not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'}: {e}") from None
    return chain_from_dict(data, p.name)


def shipped_devices(name: str = DEFAULT_DEVICES) -> Path:
    """A devices file that ships with tinysplit (``one_m4.yaml``, ``two_m4.yaml``)."""
    return Path(str(resources.files("tinysplit.methods.adaptive_resnet").joinpath("devices", name)))


__all__ = ["ChainDevice", "DEFAULT_DEVICES", "DeviceChain", "SCHEMA", "SHIPPED", "chain_from_dict", "load_devices",
           "shipped_devices"]
