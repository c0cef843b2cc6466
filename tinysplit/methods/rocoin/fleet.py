"""The fleet: the devices a RoCoIn plan spreads its students over, as data.

A fleet file (YAML or JSON, safely loaded, checked against ``tinysplit/schemas/fleet.schema.json``)::

    version: 1
    devices:
      - id: cam1
        board: qemu-mps2-an386        # a board in boards/
        link_rate_bps: 250000         # device -> host
        outage_probability: 0.1       # a portion does not arrive
      - id: cam2
        board: qemu-riscv32-virt
        link_rate_bps: 115200
        outage_probability: 0.3
        clock_hz: 48000000            # optional: the real chip's clock
        memory: {flash_bytes: 262144, ram_bytes: 65536}   # optional: a real chip smaller than the board
        transport: udp                # optional: one the board supports (default: its first)
        wire_id: 7                    # optional: id in its frames (default: 1-based position)

What a device offers a student (the paper's c^core and c^mem):

- compute: ``clock_hz`` instructions per second (one instruction per cycle); the instructions a
  student needs are measured on the device's board in QEMU (``zoo``);
- memory: its flash and RAM (the board's code and data regions, or ``memory``) less what the
  firmware itself keeps: ``FLASH_RESERVE_BYTES`` of code (the project generator's own code
  estimate, ``tinysplit.firmware.project.CODE_ESTIMATE_BYTES``) and ``APP_RAM_RESERVE_BYTES`` of
  device-runtime buffers plus the board's stack. A student fits a device iff its weights
  (``const_bytes``) fit ``model_flash_bytes`` and its arena fits ``model_ram_bytes``: the same rule
  the project generator's fit check applies before it compiles.

Errors name the file, the device and the field:
``fleet.yaml: device 'cam2', field 'board': unknown board 'stm32x'; choose one of ...``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tinysplit.errors import InputError
from tinysplit.firmware.project import CODE_ESTIMATE_BYTES
from tinysplit.schemacheck import check, field_path

SCHEMA = "fleet.schema.json"
FLASH_RESERVE_BYTES = CODE_ESTIMATE_BYTES
# The device runtime's frame and COBS buffers (and the Ethernet frame with UDP) that a method app
# keeps besides the model's arena: the nair and rebel apps declare 5 KiB (measured 3.3 KiB, 4.4 KiB
# with UDP); a test checks that this covers every method app's declaration.
APP_RAM_RESERVE_BYTES = 5 * 1024
MAX_WIRE_ID = 0xFFFE  # 0xFFFF is broadcast


@dataclass(frozen=True)
class FleetDevice:
    id: str
    board: str
    link_rate_bps: float
    outage_probability: float
    clock_hz: int  # the board's unless the file says otherwise
    flash_bytes: int  # the device's flash (the board's code region unless ``memory.flash_bytes``)
    ram_bytes: int  # the device's RAM (the board's data region unless ``memory.ram_bytes``)
    flash_reserve_bytes: int  # what the firmware's own code takes
    ram_reserve_bytes: int  # the runtime's buffers and the board's stack
    transport: str
    wire_id: int

    @property
    def model_flash_bytes(self) -> int:
        """Flash left for a student's weights."""
        return self.flash_bytes - self.flash_reserve_bytes

    @property
    def model_ram_bytes(self) -> int:
        """RAM left for a student's arena."""
        return self.ram_bytes - self.ram_reserve_bytes


@dataclass(frozen=True)
class Fleet:
    source: str  # the file it came from, for messages
    devices: tuple[FleetDevice, ...]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(d.id for d in self.devices)

    @property
    def boards(self) -> tuple[str, ...]:
        """The distinct boards, in order of first appearance."""
        return tuple(dict.fromkeys(d.board for d in self.devices))

    def device(self, device_id: str) -> FleetDevice:
        for d in self.devices:
            if d.id == device_id:
                return d
        raise InputError(f"{self.source}: no device '{device_id}'; devices: {', '.join(self.ids)}")


def _where(data: Any):
    """The schema error path in words: ``device 'cam2', field 'memory.ram_bytes'``."""
    def where(path: list[Any]) -> str:
        if len(path) >= 2 and path[0] == "devices" and isinstance(path[1], int):
            name = _name(data["devices"][path[1]], path[1])
            return f"{name}, field '{field_path(path[2:])}'" if path[2:] else name
        return f"field '{field_path(path)}'"
    return where


def _name(entry: Any, index: int) -> str:
    if isinstance(entry, dict) and isinstance(entry.get("id"), str) and entry["id"]:
        return f"device '{entry['id']}'"
    return f"device #{index + 1}"


def fleet_from_dict(data: Any, source: str = "fleet") -> Fleet:
    """Validate a parsed fleet file and resolve each device against its board; InputError names
    the device and the field."""
    from tinysplit.boards import board_names, get_board

    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a mapping with 'devices' at the top level, got {type(data).__name__}")
    check(SCHEMA, data, source, _where(data))
    devices: list[FleetDevice] = []
    seen_ids: dict[str, int] = {}
    seen_wire: dict[int, str] = {}
    for i, e in enumerate(data["devices"]):
        dev = f"device '{e['id']}'"

        def bad(field: str, message: str) -> InputError:
            return InputError(f"{source}: {dev}, field '{field}': {message}")

        if e["id"] in seen_ids:
            raise bad("id", f"duplicate id (device #{seen_ids[e['id']] + 1} has it too); ids must be unique")
        seen_ids[e["id"]] = i
        for field in ("link_rate_bps", "outage_probability"):
            if not math.isfinite(e[field]):
                raise bad(field, f"must be a finite number, got {e[field]}")
        if e["board"] not in board_names():
            raise bad("board", f"unknown board '{e['board']}'; choose one of {', '.join(board_names())}")
        board = get_board(e["board"])
        transport = e.get("transport", board.transports[0])
        if transport not in board.transports:
            raise bad("transport", f"board '{board.name}' supports {', '.join(board.transports)}, not '{transport}'")
        memory = e.get("memory", {})
        flash = memory.get("flash_bytes", board.flash.length)
        ram = memory.get("ram_bytes", board.ram.length)
        for field, value, region in (("flash_bytes", flash, board.flash), ("ram_bytes", ram, board.ram)):
            if value > region.length:
                raise bad(f"memory.{field}", f"{value:,} bytes is more than board '{board.name}' has in region "
                                             f"'{region.name}' ({region.length:,}); the firmware is linked for the "
                                             "board's regions, so give the device's memory up to that")
        ram_reserve = APP_RAM_RESERVE_BYTES + board.stack_bytes
        if flash <= FLASH_RESERVE_BYTES:
            raise bad("memory.flash_bytes", f"{flash:,} bytes leave nothing for a student's weights after the "
                                            f"firmware's own {FLASH_RESERVE_BYTES:,} bytes of code")
        if ram <= ram_reserve:
            raise bad("memory.ram_bytes", f"{ram:,} bytes leave nothing for a student's arena after the firmware's "
                                          f"{ram_reserve:,} bytes (runtime buffers {APP_RAM_RESERVE_BYTES:,} + stack "
                                          f"{board.stack_bytes:,})")
        wire_id = e.get("wire_id", i + 1)
        if wire_id > MAX_WIRE_ID:
            raise bad("wire_id", f"the default wire id {wire_id} (the position in the file) is above {MAX_WIRE_ID}; "
                                 "give wire_id")
        if wire_id in seen_wire:
            raise bad("wire_id", f"{wire_id} is also device '{seen_wire[wire_id]}''s wire id (given or its position "
                                 "in the file); wire ids must be unique")
        seen_wire[wire_id] = e["id"]
        devices.append(FleetDevice(
            id=e["id"], board=board.name, link_rate_bps=float(e["link_rate_bps"]),
            outage_probability=float(e["outage_probability"]), clock_hz=int(e.get("clock_hz", board.clock_hz)),
            flash_bytes=int(flash), ram_bytes=int(ram), flash_reserve_bytes=FLASH_RESERVE_BYTES,
            ram_reserve_bytes=ram_reserve, transport=transport, wire_id=int(wire_id)))
    return Fleet(source, tuple(devices))


def load_fleet(path: str | Path) -> Fleet:
    """Safe-load a fleet file (``.json``: JSON; anything else: YAML) and validate it."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise InputError(f"cannot read fleet file '{p}': {e.strerror}") from None
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise InputError(f"{p.name}: not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'}: {e}") from None
    return fleet_from_dict(data, p.name)
