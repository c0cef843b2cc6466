"""The firmware half of RoCoIn: the ``rocoin`` app's configuration from a bundle (``method_data.rocoin``:
the device's group, its partition k of K, the student it runs and that student's portion size n_k),
the checks against the model and board, the values its template reads (``firmware_templates/app/rocoin/``),
and the provisioning record that gives each device of a fleet its own id in a copy of one shared ELF.

The device rule (docs/rocoin.md, "Firmware and fleet"): on each complete INPUT the device runs its
student and sends the student's one int8 output, its partition's n_k features, as ROCOIN_PORTION
frames (u16 k, u16 K, a chunk): ``PORTION_CHUNK`` = MAX_PAYLOAD - 4 bytes per frame, part 0.. of
ceil(n_k / PORTION_CHUNK), under its own device id and the INPUT's seq. HELLO: TS_CAP_ROCOIN, output
bytes n_k, units K, unit bytes 0. Several devices run the same student (a group's replicas); the
fleet runner (``tinysplit.firmware.fleet``) starts them all.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinysplit.boards import Board
from tinysplit.errors import InputError, ManifestError
from tinysplit.manifest import Manifest
from tinysplit.modelsrc import ModelSources
from tinysplit.wire.frame import BROADCAST, MAX_PAYLOAD

PORTION_HEADER = 4  # u16 partition, u16 partitions_total
PORTION_CHUNK = MAX_PAYLOAD - PORTION_HEADER  # feature bytes per ROCOIN_PORTION frame
TRANSPORTS = ("uart", "udp")

# The provisioning record in the firmware's flash (main.c.j2): magic, u16 device id, u16 partition,
# u16 K, u16 reserved. The host patches the device id in a copy of the ELF (tinysplit.firmware.provision).
PROVISION_SYMBOL = "rocoin_provision"
PROVISION_MAGIC = b"TSRCPV1\0"
PROVISION = struct.Struct("<8sHHHH")


def portion_parts(n: int) -> int:
    """How many ROCOIN_PORTION frames carry a portion of ``n`` bytes."""
    return max(1, math.ceil(n / PORTION_CHUNK))


@dataclass(frozen=True)
class RocoinContext:
    """The rocoin app's values as the template reads them (numbers and C literals, no logic)."""

    bundle_id: str  # "0x1234ABCDu"
    device_id: int
    partition: int
    partitions_total: int
    portion_bytes: int
    portion_header: int
    udp: int  # 1: frames leave by UDP
    udp_port: int
    hello_name: str
    provision_symbol: str
    provision_magic: str  # a C string literal of 7 characters (+ NUL = 8 bytes)
    provision_bytes: int


@dataclass(frozen=True)
class RocoinAppConfig:
    """What the rocoin app needs besides the model: the bundle's identity, the device's partition k of
    K and its portion size n_k (the student's output bytes), the built-in device id (a fleet
    provisions each device's copy with its own), and the transport its frames leave by."""

    bundle_id: int
    device_id: int
    partition: int
    partitions_total: int
    portion_bytes: int
    transport: str = "uart"  # "uart" | "udp"
    udp_port: int = 5600  # host port the board sends datagrams to (10.0.2.2 under QEMU user-net)
    board_name: str = ""  # name sent in HELLO (default: the board's)
    student: str = ""  # the bundle's device model this firmware runs (project.json only)
    input_bytes: int = 0  # the student's input bytes as the bundle says (0: not checked)

    @property
    def output_bytes(self) -> int:
        return self.portion_bytes

    @property
    def parts(self) -> int:
        return portion_parts(self.portion_bytes)

    def check(self, board: Board, model: ModelSources) -> None:
        """InputError unless the config matches the model and the HELLO name is sendable."""
        k, kk, n = self.partition, self.partitions_total, self.portion_bytes
        if not 1 <= kk <= 0xFFFF:
            raise InputError(f"rocoin: K = {kk} partitions; it must be in 1..65535 (a u16)")
        if not 0 <= k < kk:
            raise InputError(f"rocoin: partition {k} is not in 0..{kk - 1} (K = {kk})")
        if n < 1:
            raise InputError(f"rocoin: a portion must have at least one value, got {n}")
        if n != model.output.bytes:
            raise InputError(f"rocoin: partition {k} has {n} values (portion_values[{k}]), but the student "
                             f"'{model.prefix}' has {model.output.bytes} output bytes")
        if self.input_bytes and self.input_bytes != model.input.bytes:
            raise InputError(f"rocoin: the bundle's student takes {self.input_bytes} input bytes, the model "
                             f"'{model.prefix}' {model.input.bytes}")
        if not 1 <= self.device_id < BROADCAST:
            raise InputError(f"rocoin: device id {self.device_id} is not in 1..{BROADCAST - 1}")
        if self.transport not in TRANSPORTS:
            raise InputError(f"rocoin: transport '{self.transport}' is not one of {', '.join(TRANSPORTS)}")
        name = self.board_name or board.name
        if len(name) > 64 or not name.isascii():
            raise InputError(f"rocoin: HELLO board name '{name}' must be ASCII, at most 64 characters")

    def context(self, board: Board) -> RocoinContext:
        magic = PROVISION_MAGIC.rstrip(b"\0").decode("ascii")
        return RocoinContext(
            bundle_id=f"0x{self.bundle_id:08X}u", device_id=self.device_id, partition=self.partition,
            partitions_total=self.partitions_total, portion_bytes=self.portion_bytes,
            portion_header=PORTION_HEADER, udp=int(self.transport == "udp"), udp_port=self.udp_port,
            hello_name=(self.board_name or board.name).replace("\\", "_").replace('"', "_"),
            provision_symbol=PROVISION_SYMBOL, provision_magic=f'"{magic}"', provision_bytes=PROVISION.size)

    def meta(self) -> dict[str, Any]:
        return {"bundle_id": f"{self.bundle_id:08x}", "device_id": self.device_id, "transport": self.transport,
                "udp_port": self.udp_port, "student": self.student, "partition": self.partition,
                "partitions_total": self.partitions_total, "portion_bytes": self.portion_bytes,
                "parts": self.parts, "provision_symbol": PROVISION_SYMBOL}


# --- method_data.rocoin as the firmware and the fleet read it ---------------------------------------

@dataclass(frozen=True)
class RocoinDevice:
    id: str  # the fleet's name for it
    device_id: int  # its id on the wire
    board: str
    transport: str
    partition: int
    student: str


@dataclass(frozen=True)
class RocoinGroup:
    partition: int
    student: str
    arch: str
    devices: tuple[RocoinDevice, ...]


@dataclass(frozen=True)
class RocoinLayout:
    """``method_data.rocoin``'s groups, checked against the bundle's device models: K partitions in
    order, each with its student (a device model whose one output has n_k values) and its devices."""

    partitions_total: int
    portion_values: tuple[int, ...]
    deadline_ms: float
    groups: tuple[RocoinGroup, ...]  # in partition order: groups[k].partition == k

    @property
    def devices(self) -> tuple[RocoinDevice, ...]:
        return tuple(d for g in self.groups for d in g.devices)

    def device(self, device_id: int) -> RocoinDevice:
        """The device with this wire id (InputError naming the known ones otherwise)."""
        for d in self.devices:
            if d.device_id == device_id:
                return d
        known = ", ".join(f"{d.id} ({d.device_id})" for d in self.devices)
        raise InputError(f"the bundle has no device with wire id {device_id}; its devices: {known}")

    def by_name(self, name: str) -> RocoinDevice:
        """The device with this fleet id (InputError naming the known ones otherwise)."""
        for d in self.devices:
            if d.id == name:
                return d
        raise InputError(f"the bundle has no device '{name}'; its devices: {', '.join(d.id for d in self.devices)}")


_KINDS = {str: "a string", int: "an integer", (int, float): "a number", (list, tuple): "a list"}


def _field(data: Any, key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    """data[key] of the expected kind, or ManifestError naming the field (a hand-made manifest skips the schema)."""
    try:
        value = data[key]
    except (KeyError, IndexError, TypeError):
        raise ManifestError(f"field '{where}' is missing") from None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ManifestError(f"field '{where}': expected {_KINDS[kind]}, got {value!r}")
    return value


def layout_for(manifest: Manifest) -> RocoinLayout:
    """method_data.rocoin's groups and portion sizes, checked against the device models (ManifestError
    naming the field when they disagree)."""
    if manifest.method != "rocoin" or "rocoin" not in manifest.method_data:
        raise ManifestError(f"bundle '{manifest.name}' is a '{manifest.method}' bundle without RoCoIn's groups "
                            "(field 'method_data.rocoin'); export it with tinysplit.methods.rocoin.export")
    r = manifest.method_data["rocoin"]
    base = "method_data.rocoin"
    values = tuple(_field(r, "portion_values", f"{base}.portion_values", (list, tuple)))
    kk = len(values)
    deadline = _field(r, "deadline_ms", f"{base}.deadline_ms", (int, float))
    if not deadline > 0:
        raise ManifestError(f"field '{base}.deadline_ms': must be > 0, got {deadline}")
    groups_raw = _field(r, "groups", f"{base}.groups", (list, tuple))
    if len(groups_raw) != kk:
        raise ManifestError(f"field '{base}.groups': {len(groups_raw)} groups for K = {kk} partitions "
                            "(portion_values); RoCoIn has one group per partition")
    by_k: dict[int, RocoinGroup] = {}
    seen_ids: dict[int, str] = {}
    seen_names: set[str] = set()
    for gi, g in enumerate(groups_raw):
        gw = f"{base}.groups[{gi}]"
        k = _field(g, "partition", f"{gw}.partition", int)
        if not 0 <= k < kk or k in by_k:
            raise ManifestError(f"field '{gw}.partition': {k} is not a partition of 0..{kk - 1} without a group")
        student = _field(g, "student", f"{gw}.student", str)
        dm = manifest.device_model(student)
        if len(dm.outputs) != 1:
            raise ManifestError(f"device model '{student}' has {len(dm.outputs)} outputs; a student has one, "
                                "its portion")
        size = math.prod(dm.outputs[0].shape[1:])
        if size != values[k]:
            raise ManifestError(f"field '{base}.portion_values[{k}]': {values[k]}, but student '{student}' has "
                                f"{size} output values")
        devices = []
        for di, d in enumerate(_field(g, "devices", f"{gw}.devices", (list, tuple))):
            dw = f"{gw}.devices[{di}]"
            name = _field(d, "id", f"{dw}.id", str)
            wire = _field(d, "device_id", f"{dw}.device_id", int)
            transport = _field(d, "transport", f"{dw}.transport", str)
            if not 1 <= wire < BROADCAST:
                raise ManifestError(f"field '{dw}.device_id': {wire} is not in 1..{BROADCAST - 1}")
            if wire in seen_ids:
                raise ManifestError(f"field '{dw}.device_id': {wire} is also device '{seen_ids[wire]}'s")
            if name in seen_names:
                raise ManifestError(f"field '{dw}.id': '{name}' appears twice")
            if transport not in TRANSPORTS:
                raise ManifestError(f"field '{dw}.transport': '{transport}' is not one of {', '.join(TRANSPORTS)}")
            seen_ids[wire] = name
            seen_names.add(name)
            devices.append(RocoinDevice(name, wire, _field(d, "board", f"{dw}.board", str), transport, k, student))
        if not devices:
            raise ManifestError(f"field '{gw}.devices': partition {k} has no device")
        by_k[k] = RocoinGroup(k, student, str(g.get("arch", "")), tuple(devices))
    return RocoinLayout(kk, tuple(int(v) for v in values), float(deadline), tuple(by_k[k] for k in range(kk)))


def config_from_manifest(manifest: Manifest, device_id: int | None = None, transport: str | None = None,
                         udp_port: int = 5600, model: str | None = None) -> RocoinAppConfig:
    """The rocoin app's config for one device of the bundle: its group (partition k, the student it
    runs), K, n_k, and its transport (``transport`` overrides the bundle's). ``device_id`` picks the
    device (InputError for one the bundle does not know); without it, the first device of ``model``'s
    group (or of partition 0)."""
    lay = layout_for(manifest)
    if device_id is not None:
        dev = lay.device(device_id)
        if model is not None and model != dev.student:
            raise InputError(f"device {dev.id} (wire id {device_id}) runs '{dev.student}' (partition "
                             f"{dev.partition}), not '{model}'")
    elif model is not None:
        groups = [g for g in lay.groups if g.student == model]
        if not groups:
            raise InputError(f"no group of the bundle runs '{model}'; students: "
                             f"{', '.join(g.student for g in lay.groups)}")
        dev = groups[0].devices[0]
    else:
        dev = lay.groups[0].devices[0]
    dm = manifest.device_model(dev.student)
    return RocoinAppConfig(int(manifest.bundle_id, 16), dev.device_id, dev.partition, lay.partitions_total,
                           lay.portion_values[dev.partition], transport or dev.transport, udp_port,
                           student=dev.student, input_bytes=math.prod(dm.inputs[0].shape[1:]))


def provision_record(device_id: int, partition: int, partitions_total: int) -> bytes:
    """The 16 bytes of the provisioning record for this device."""
    return PROVISION.pack(PROVISION_MAGIC, device_id, partition, partitions_total, 0)


def provision(elf: str | Path, out: str | Path, config: RocoinAppConfig, device_id: int) -> Path:
    """A copy of a rocoin firmware ``elf`` built with ``config``, answering as ``device_id``: the
    provisioning record is checked (magic, partition, K) and its device id replaced."""
    from tinysplit.firmware.provision import patch_symbol

    if not 1 <= device_id < BROADCAST:
        raise InputError(f"device id {device_id} is not in 1..{BROADCAST - 1}")
    want = (PROVISION_MAGIC, config.partition, config.partitions_total)

    def check(old: bytes) -> bytes:
        magic, _, k, kk, _ = PROVISION.unpack(old)
        if (magic, k, kk) != want:
            raise InputError(f"'{elf}' is not a rocoin firmware for partition {config.partition} of "
                             f"{config.partitions_total} (its record says {magic!r}, {k} of {kk})")
        return provision_record(device_id, k, kk)

    return patch_symbol(elf, out, PROVISION_SYMBOL, PROVISION.size, check)


# --- end to end ---------------------------------------------------------------------------------

def add_e2e_arguments(p: Any) -> None:
    """RoCoIn has no options of its own in ``tinysplit hil --e2e``: its end-to-end run is a fleet."""


def e2e_from_args(bundle: Path, board: str, samples: int, transport: str, args: Any, **kw: Any) -> dict[str, Any]:
    raise InputError("a rocoin bundle runs on a fleet of devices, one group per partition: run "
                     f"'tinysplit rocoin-fleet {bundle} --samples {samples}' (it starts every device of the "
                     "bundle's groups in its own QEMU)")


def format_e2e(r: dict[str, Any]) -> str:
    from tinysplit.firmware.fleet import format_fleet

    return format_fleet(r)
