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
    kind: str  # "flash" | "ram" | "iram"
    reserved: int = 0  # bytes the vendor SDK itself takes (ESP-IDF); the fit check subtracts them

    @property
    def available(self) -> int:
        """Bytes left to tinysplit's image: the length less what the SDK reserves."""
        return self.length - self.reserved

    def contains(self, addr: int) -> bool:
        return self.origin <= addr < self.origin + self.length


DEFAULT_BAUD = 115200
NRF52_UARTE_BAUDS = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600, 1000000)  # uart/nrf52_uarte
MAX_BAUD_ERROR = 0.02  # a UART line tolerates about 2% between the two ends' rates


@dataclass(frozen=True)
class Pin:
    """A GPIO pin: STM32 'PA2' is port 0 (A), pin 2; nRF 'P0.06' is port 0, pin 6."""

    name: str
    port: int
    pin: int


@dataclass(frozen=True)
class Uart:
    kind: str  # "cmsdk" | "pl011" | "stm32_usart" | "ns16550" | "nrf52_uarte" | "esp_idf" | "xtensa_simcall"
    base: int = 0  # MMIO base (none for esp_idf: the ESP-IDF driver owns the UART)
    baud: int = DEFAULT_BAUD  # esp_idf: the default baud rate
    clock_hz: int | None = None  # the UART's kernel clock (STM32: its APB clock); None: the core clock
    tx: Pin | None = None  # pins a real chip routes the UART to (None: the emulator needs no pin setup)
    rx: Pin | None = None
    af: int | None = None  # STM32 alternate function of tx and rx
    enable: tuple[int, int] | None = None  # STM32: (RCC enable register, bit) of the USART's clock
    port: int | None = None  # esp_idf: default UART number


@dataclass(frozen=True)
class Clock:
    """How startup brings up the core clock (``kind`` "none": the reset or emulator clock as it is).
    For "stm32f4_pll": SYSCLK = source_hz / pll_m * pll_n / pll_p; AHB and APB clocks divide it."""

    kind: str  # "none" | "stm32f4_pll" | "nrf52_hfclk"
    source: str | None = None  # "hsi" | "hse" | "hse_bypass"
    source_hz: int = 0
    pll_m: int = 0
    pll_n: int = 0
    pll_p: int = 0
    pll_q: int = 0
    pll_r: int = 0
    ahb_div: int = 1
    apb1_div: int = 1
    apb2_div: int = 1
    flash_latency: int = 0
    overdrive: bool = False

    @property
    def vco_in_hz(self) -> float:
        return self.source_hz / self.pll_m

    @property
    def vco_out_hz(self) -> float:
        return self.vco_in_hz * self.pll_n

    @property
    def sysclk_hz(self) -> float:
        return self.vco_out_hz / self.pll_p

    @property
    def hclk_hz(self) -> float:
        return self.sysclk_hz / self.ahb_div

    @property
    def apb1_hz(self) -> float:
        return self.hclk_hz / self.apb1_div

    @property
    def apb2_hz(self) -> float:
        return self.hclk_hz / self.apb2_div


NO_CLOCK = Clock("none")


@dataclass(frozen=True)
class Flasher:
    """How a real board is flashed: ``tool`` (a key of tinysplit.firmware.flash.FLASHERS: "pyocd",
    "esptool", "idf.py") and its ``target`` (pyOCD's target type, or the ESP chip)."""

    tool: str
    target: str


@dataclass(frozen=True)
class Renode:
    platform: str  # "platforms/boards/stm32f4_discovery-kit.repl" (inside Renode's installation)
    uart: str  # "sysbus.usart2": the peripheral the HIL check's socket terminal connects to


@dataclass(frozen=True)
class Nic:
    kind: str  # "none" | "lan9118" | "esp_wifi"
    base: int | None = None


@dataclass(frozen=True)
class Emulator:
    qemu_binary: str
    qemu_machine: str
    extra_args: tuple[str, ...] = ()
    renode_platform: str | None = None


@dataclass(frozen=True)
class Idf:
    """An ESP-IDF board's chip: its IDF_TARGET, UART count and the data RAM a Wi-Fi build adds."""

    target: str  # "esp32" | "esp32s3" | "esp32c3"
    uarts: int
    wifi_reserved: int


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    family: str  # "cortex_m" | "riscv" | "esp_idf" | "xtensa"
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
    exit: str  # "semihosting" | "riscv_virt_test" | "xtensa_simcall" | "none" | "esp_idf"
    counter: str  # "systick" | "minstret" | "xtensa_icount" | "esp_cpu_cycles"
    clock: Clock = NO_CLOCK
    flasher: Flasher | None = None  # None: an emulator-only board
    renode: Renode | None = None  # None: Renode does not model this board
    source: Path | None = None
    idf: Idf | None = None  # esp_idf boards only

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

    @property
    def uart_clock_hz(self) -> int:
        return self.uart.clock_hz if self.uart.clock_hz is not None else self.clock_hz


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
    regions = tuple(MemoryRegion(r["name"], r["origin"], r["length"], r["kind"], r.get("reserved", 0))
                    for r in data["memory"])
    names = [r.name for r in regions]
    if len(set(names)) != len(names):
        raise InputError(f"{source}: field 'memory': region names must be unique, got {names}")
    for i, r in enumerate(regions):
        if r.reserved >= r.length:
            raise InputError(f"{source}: field 'memory[{i}].reserved': {r.reserved:,} bytes reserved leaves nothing "
                             f"of region '{r.name}' ({r.length:,} bytes)")
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
    idf = data.get("idf")
    if idf is not None and data["uart"].get("port", 0) >= idf["uarts"]:
        raise InputError(f"{source}: field 'uart.port': UART {data['uart']['port']} does not exist on {idf['target']} "
                         f"(UARTs 0..{idf['uarts'] - 1})")
    clock = _clock(data.get("clock"), data["clock_hz"], source)
    uart = _uart(data["uart"], data["clock_hz"], clock, source)
    fl, rn = data.get("flash"), data.get("renode")
    return Board(
        name=data["name"], description=data["description"], family=data["family"],
        core=Core(data["core"]["cpu"], data["core"]["fpu"], tuple(data["core"]["cflags"]), data["core"].get("reset_vector")),
        toolchain=Toolchain(data["toolchain"]["prefix"], tuple(data["toolchain"]["specs"])),
        memory=regions, code_region=data["placement"]["code"], data_region=data["placement"]["data"],
        clock_hz=data["clock_hz"], stack_bytes=data["stack_bytes"],
        uart=uart,
        nic=Nic(nic["kind"], nic.get("base")),
        emulator=emulator, transports=tuple(data["transports"]), exit=data["exit"], counter=data["counter"],
        idf=None if idf is None else Idf(idf["target"], idf["uarts"], idf["wifi_reserved"]),
        clock=clock, flasher=None if fl is None else Flasher(fl["tool"], fl["target"]),
        renode=None if rn is None else Renode(rn["platform"], rn["uart"]),
    )


def _pin(name: str | None, kind: str, source: str, field: str) -> Pin | None:
    if name is None:
        return None
    if kind == "stm32_usart" and name[1] != "0" and "." not in name:
        return Pin(name, ord(name[1]) - ord("A"), int(name[2:]))
    if kind == "nrf52_uarte" and "." in name and int(name.split(".")[1]) <= 31:
        return Pin(name, int(name[1]), int(name.split(".")[1]))
    want = "'PA2' (port letter, pin 0..15)" if kind == "stm32_usart" else "'P0.06' (port 0 or 1, pin 0..31)"
    raise InputError(f"{source}: field 'uart.{field}': pin '{name}' does not fit a {kind} UART; write it as {want}")


def _uart(u: dict, core_hz: int, clock: Clock, source: str) -> Uart:
    kind = u["kind"]
    tx, rx = _pin(u.get("tx"), kind, source, "tx"), _pin(u.get("rx"), kind, source, "rx")
    if kind == "stm32_usart" and tx is not None and ("af" not in u or "enable" not in u):
        raise InputError(f"{source}: field 'uart': an STM32 USART with pins needs 'af' (the GPIO alternate function) "
                         "and 'enable' (the RCC register and bit of its clock)")
    if kind == "nrf52_uarte" and tx is None:
        raise InputError(f"{source}: field 'uart.tx': a UARTE has no fixed pins; name tx and rx (e.g. P0.06, P0.08)")
    baud = u.get("baud", DEFAULT_BAUD)
    if kind == "nrf52_uarte" and baud not in NRF52_UARTE_BAUDS:
        raise InputError(f"{source}: field 'uart.baud': a UARTE runs at one of {', '.join(map(str, NRF52_UARTE_BAUDS))} "
                         f"baud here, got {baud}")
    clk = u.get("clock_hz")
    if clock.kind == "stm32f4_pll" and clk is not None and clk not in (clock.apb1_hz, clock.apb2_hz):
        raise InputError(f"{source}: field 'uart.clock_hz': {clk:,} Hz is neither APB1 ({clock.apb1_hz:,.0f} Hz) nor "
                         f"APB2 ({clock.apb2_hz:,.0f} Hz) of the clock tree the board file sets up")
    if kind in ("stm32_usart", "pl011"):  # divisor UARTs: the rate they reach must be within a UART's tolerance
        f = clk if clk is not None else core_hz
        div = round(f / baud)
        if div < 16 or abs(f / div - baud) / baud > MAX_BAUD_ERROR:
            raise InputError(f"{source}: field 'uart.baud': {baud} baud cannot be made from a {f:,} Hz UART clock "
                             f"within {MAX_BAUD_ERROR:.0%}")
    en = u.get("enable")
    return Uart(kind, u.get("base", 0), baud, clk, tx, rx, u.get("af"), None if en is None else (en["register"], en["bit"]),
                u.get("port"))


def _clock(c: dict | None, clock_hz: int, source: str) -> Clock:
    if c is None or c["kind"] == "none":
        return NO_CLOCK
    clock = Clock(**c)
    if clock.kind == "nrf52_hfclk" and clock_hz != 64_000_000:
        raise InputError(f"{source}: field 'clock_hz': an nRF52 core runs at 64,000,000 Hz, got {clock_hz:,}")
    if clock.kind == "stm32f4_pll":
        problems = []
        if not 1e6 <= clock.vco_in_hz <= 2e6:
            problems.append(f"PLL input source_hz/pll_m = {clock.vco_in_hz:,.0f} Hz is outside 1..2 MHz")
        if not 100e6 <= clock.vco_out_hz <= 432e6:
            problems.append(f"VCO output {clock.vco_out_hz:,.0f} Hz is outside 100..432 MHz")
        if clock.sysclk_hz != clock_hz:
            problems.append(f"the PLL makes {clock.sysclk_hz:,.0f} Hz, but clock_hz says {clock_hz:,}")
        if clock.hclk_hz != clock_hz:
            problems.append("ahb_div must be 1: clock_hz is the core (AHB) clock")
        if clock.apb1_hz > 45e6 or clock.apb2_hz > 90e6:
            problems.append(f"APB1 {clock.apb1_hz:,.0f} Hz (max 45 MHz) or APB2 {clock.apb2_hz:,.0f} Hz "
                            "(max 90 MHz) is too fast")
        min_ws = -(-int(clock.hclk_hz) // 30_000_000) - 1  # RM0390: one wait state per 30 MHz of HCLK at 2.7-3.6 V
        if clock.flash_latency < min_ws:
            problems.append(f"flash_latency {clock.flash_latency} is too low for {clock.hclk_hz:,.0f} Hz "
                            f"(at least {min_ws} wait states at 2.7-3.6 V)")
        if clock_hz > 168e6 and not clock.overdrive:
            problems.append("above 168 MHz the PWR over-drive must be on (overdrive: true)")
        if problems:
            raise InputError(f"{source}: field 'clock': " + "; ".join(problems))
    return clock


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
