"""Render a complete, buildable C project for one board and one model.

``render_project(board, model, out_dir, app="hil")`` checks that the model fits the board, builds
one frozen ``ProjectContext`` with a pure function (``build_context``), renders the Jinja templates
in ``tinysplit.firmware_templates`` (StrictUndefined; templates are named after the file they
produce) and copies the model's C files into ``src/model/``. Which templates a project gets is
decided by small name-keyed tables (family, UART kind, exit mechanism, counter kind, NIC per
transport) and the app registry (``tinysplit.firmware.apps.APPS``), not by logic in the templates.
A method app's configuration (an ``AppConfig`` from its bundle) is checked here and its values are
given to the templates under the app's name.

Project layout::

    CMakeLists.txt  toolchain.cmake  linker.ld  project.json
    src/  startup.c|startup.S  board.h  board_config.h  board_io.c  uart.c  exit.c  counter.c  main.c
    src/model/  the model's sources and headers (from ModelSources)

An ESP-IDF board (family ``esp_idf``) gets an ESP-IDF project instead, rendered through the same
tables (``LAYOUTS`` moves the ``src/`` files into the component)::

    CMakeLists.txt  sdkconfig.defaults  project.json
    main/  CMakeLists.txt  Kconfig.projbuild  main.c (app_main)
    components/tinysplit/  CMakeLists.txt (idf_component_register)  idf_component.yml  src/ ...
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from tinysplit import __version__
from tinysplit.boards import Board
from tinysplit.wire.auth import key_fingerprint
from tinysplit.errors import InputError
from tinysplit.firmware.apps import TEST_APP_RAM, AppConfig, get_app
from tinysplit.firmware.render import BANNER, check_identifier, render, templates_root
from tinysplit.modelsrc import ModelSources

log = logging.getLogger(__name__)

PROJECT_FILE = "project.json"
ICOUNT_SHIFT = 7  # QEMU -icount shift=7: one instruction = 128 ns of virtual time
EXIT_FAULT = 120  # exit status of a firmware that took a fault / unexpected trap
EXIT_CLOCK = 121  # exit status of a firmware whose clock setup timed out (a ready flag never rose)
# What the firmware needs besides the model: startup, UART, counter, app and the few libc/libgcc
# routines they pull in. Measured: 1.5-2.5 KiB of code and < 64 B of data on every board; the
# estimate keeps a wide margin because it is checked before anything is compiled.
CODE_ESTIMATE_BYTES = 8 * 1024
APP_RAM_BYTES = TEST_APP_RAM
# Output file -> template, per selector value. Loops and names, no logic.
COMMON_TEMPLATES: dict[str, str] = {
    "CMakeLists.txt": "project/CMakeLists.txt.j2",
    "src/board_config.h": "common/board_config.h.j2",
    "src/board.h": "common/board.h.j2",
    "src/board_io.c": "common/board_io.c.j2",
}
# Clock setup run by startup before main, per board ``clock.kind``, for the families whose startup is
# ours (an ESP-IDF project's clocks are ESP-IDF's).
CLOCKED_FAMILIES = ("cortex_m", "riscv")
CLOCK_TEMPLATES: dict[str, str] = {
    "none": "clock/none/clock.c.j2",
    "stm32f4_pll": "clock/stm32f4_pll/clock.c.j2",
    "nrf52_hfclk": "clock/nrf52_hfclk/clock.c.j2",
}
# A board Renode models gets a Renode script and a Robot Framework test of the HIL check.
RENODE_TEMPLATES: dict[str, str] = {
    "renode/board.resc": "renode/board.resc.j2",
    "renode/hil.robot": "renode/hil.robot.j2",
}
FAMILY_TEMPLATES: dict[str, dict[str, str]] = {
    "cortex_m": {"toolchain.cmake": "cortex_m/toolchain.cmake.j2", "linker.ld": "cortex_m/linker.ld.j2",
                 "src/startup.c": "cortex_m/startup.c.j2"},
    "riscv": {"toolchain.cmake": "riscv/toolchain.cmake.j2", "linker.ld": "riscv/linker.ld.j2",
              "src/startup.S": "riscv/startup.S.j2"},
    "esp_idf": {"CMakeLists.txt": "esp_idf/CMakeLists.txt.j2", "sdkconfig.defaults": "esp_idf/sdkconfig.defaults.j2",
                "main/CMakeLists.txt": "esp_idf/main/CMakeLists.txt.j2", "main/main.c": "esp_idf/main/main.c.j2",
                "main/Kconfig.projbuild": "esp_idf/main/Kconfig.projbuild.j2",
                "components/tinysplit/CMakeLists.txt": "esp_idf/component/CMakeLists.txt.j2",
                "components/tinysplit/idf_component.yml": "esp_idf/component/idf_component.yml.j2",
                "src/board_io.c": "esp_idf/board_io.c.j2"},
    "xtensa": {"toolchain.cmake": "xtensa/toolchain.cmake.j2", "linker.ld": "xtensa/linker.ld.j2",
               "src/startup.S": "xtensa/startup.S.j2", "src/libgcc_lx106.c": "xtensa/libgcc_lx106.c.j2"},
}
# Where a family's "src/..." files go: the CMake projects keep src/, an ESP-IDF project puts them in
# its component. ``builder``: what builds the project ("cmake": 'tinysplit build'; "idf.py": ESP-IDF).
LAYOUTS: dict[str, tuple[str, str]] = {
    "cortex_m": ("src", "cmake"),
    "riscv": ("src", "cmake"),
    "xtensa": ("src", "cmake"),
    "esp_idf": ("components/tinysplit/src", "idf.py"),
}
IDF_COMPONENT = "tinysplit"
UART_TEMPLATES: dict[str, str] = {
    "cmsdk": "uart/cmsdk/uart.c.j2",
    "pl011": "uart/pl011/uart.c.j2",
    "stm32_usart": "uart/stm32_usart/uart.c.j2",
    "ns16550": "uart/ns16550/uart.c.j2",
    "esp_idf": "uart/esp_idf/uart.c.j2",
    "nrf52_uarte": "uart/nrf52_uarte/uart.c.j2",
    "xtensa_simcall": "uart/xtensa_simcall/uart.c.j2",
}
EXIT_TEMPLATES: dict[str, str] = {
    "semihosting": "exit/semihosting/exit.c.j2",
    "riscv_virt_test": "exit/riscv_virt_test/exit.c.j2",
    "xtensa_simcall": "exit/xtensa_simcall/exit.c.j2",
    "none": "exit/none/exit.c.j2",
    "esp_idf": "exit/esp_idf/exit.c.j2",
}
COUNTER_TEMPLATES: dict[str, str] = {
    "systick": "counter/systick/counter.c.j2",
    "minstret": "counter/minstret/counter.c.j2",
    "esp_cpu_cycles": "counter/esp_cpu_cycles/counter.c.j2",
    "xtensa_icount": "counter/xtensa_icount/counter.c.j2",
}
# A method app's device->host transport -> the src/net.c template, per board NIC kind.
NET_TEMPLATES: dict[str, dict[str, str]] = {
    "uart": {"lan9118": "net/none/net.c.j2", "none": "net/none/net.c.j2", "esp_wifi": "net/none/net.c.j2"},
    "udp": {"lan9118": "net/lan9118/net.c.j2", "esp_wifi": "net/esp_wifi/net.c.j2"},
}
# ESP-IDF components the tinysplit component needs (PRIV_REQUIRES), per transport; "driver" holds the
# UART driver in ESP-IDF 5.x, bootloader_support the entropy switch of authenticated builds.
IDF_REQUIRES: dict[str, tuple[str, ...]] = {
    "uart": ("driver", "esp_hw_support", "freertos", "bootloader_support"),
    "udp": ("driver", "esp_hw_support", "freertos", "bootloader_support", "esp_wifi", "esp_netif", "esp_event",
            "nvs_flash", "lwip"),
}
TRANSPORTS = tuple(NET_TEMPLATES)

COMPILE_FLAGS = ("-Os", "-g", "-ffunction-sections", "-fdata-sections", "-ffreestanding",
                 "-Wall", "-Wextra", "-Werror")
LINK_FLAGS = ("-nostartfiles", "-Wl,--gc-sections")
# The kernel runtime (where inference spends its time) compiles with its kernel set's flags
# (tinysplit.firmware.kernelsets: -O2 and -DTS_KERNELS=<set>), the rest at -Os: measured on the QEMU
# boards (docs/firmware.md), -O2 kernels run 0.90-0.96x the instructions of -Os ones for 0.5-1.4 KB
# more flash on Cortex-M3, Cortex-M4 and RV32 alike (the whole firmware at -O2: no faster, about
# 100 B larger).
KERNEL_SOURCES = ("ts_kernels.c",)


@dataclass(frozen=True)
class LinkSettings:
    """How a real board reaches the host, for ESP-IDF boards: the defaults of the project's Kconfig
    menu (its sdkconfig.defaults). UDP needs the Wi-Fi network and the host's IPv4 address; the UART
    number and baud rate default to the board file's."""

    wifi_ssid: str = ""
    wifi_password: str = ""
    host: str = ""
    uart_port: int | None = None
    uart_baud: int | None = None

    @property
    def given(self) -> bool:
        return bool(self.wifi_ssid or self.wifi_password or self.host) or self.uart_port is not None \
            or self.uart_baud is not None


def _kconfig_string(value: str) -> str:
    """A value inside a Kconfig/sdkconfig string literal ("..."): backslash and quote escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def check_link(board: Board, link: LinkSettings | None, transport: str) -> LinkSettings:
    """InputError unless ``link`` suits the board and the transport; returns the settings with the
    board's defaults filled in."""
    link = link or LinkSettings()
    if board.family != "esp_idf":
        if link.given:
            raise InputError(f"board '{board.name}' takes no Wi-Fi, host or UART settings (only ESP-IDF boards do: "
                             f"{', '.join(n for n, f in ((b.name, b.family) for b in _boards()) if f == 'esp_idf')})")
        return link
    assert board.idf is not None and board.uart.port is not None and board.uart.baud is not None
    port = board.uart.port if link.uart_port is None else link.uart_port
    baud = board.uart.baud if link.uart_baud is None else link.uart_baud
    if not 0 <= port < board.idf.uarts:
        raise InputError(f"UART {port} does not exist on {board.idf.target} (board '{board.name}': UARTs "
                         f"0..{board.idf.uarts - 1})")
    if not 1200 <= baud <= 5_000_000:
        raise InputError(f"UART baud rate {baud} is not in 1200..5000000")
    ssid, password, host = link.wifi_ssid, link.wifi_password, link.host
    if transport == "udp":
        missing = [n for n, v in (("the Wi-Fi network (--wifi-ssid)", ssid), ("the host's IPv4 address (--host)", host))
                   if not v]
        if missing:
            raise InputError(f"UDP on '{board.name}' goes over Wi-Fi: give {' and '.join(missing)}; the Wi-Fi "
                             "password comes from an environment variable (--wifi-password-env NAME; none for an "
                             "open network), or use --transport uart")
    elif ssid or password or host:
        raise InputError("--wifi-ssid, --wifi-password-env and --host are for --transport udp; a UART build "
                         "has no Wi-Fi")
    if ssid and (not ssid.isprintable() or not 1 <= len(ssid.encode()) <= 32):
        raise InputError(f"Wi-Fi network name {ssid!r}: 1..32 bytes of printable characters")
    if password and (not password.isascii() or not password.isprintable() or not 8 <= len(password) <= 63):
        raise InputError("the Wi-Fi password must be 8..63 printable ASCII characters (WPA2), or empty for an "
                         "open network")
    if host:
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise InputError(f"--host {host!r} is not an IPv4 address (e.g. 192.168.1.20, the machine that runs "
                             "tinysplit serve)") from None
    return LinkSettings(ssid, password, host, port, baud)


def _boards():
    from tinysplit.boards import list_boards

    return list_boards()


@dataclass(frozen=True)
class LinkerRegion:
    name: str
    origin: str  # "0x20000000"
    length: int
    attrs: str  # "rx" | "rwx"


@dataclass(frozen=True)
class UartPins:
    """A real chip's UART routing, as the UART templates write it (None in the context: no pin setup)."""

    tx: str  # "PA2", "P0.06"
    rx: str
    tx_port: int
    tx_pin: int
    rx_port: int
    rx_pin: int
    af: int = 0  # STM32 alternate function
    enable_register: str = "0x00000000"  # STM32: RCC register that clocks the USART
    enable_bit: int = 0


@dataclass(frozen=True)
class ClockContext:
    """The board's clock setup with the register codes its template writes (STM32: HPRE/PPRE)."""

    kind: str
    source: str | None
    source_hz: int
    pll_m: int
    pll_n: int
    pll_p: int
    pll_q: int
    pll_r: int
    ahb_div: int
    apb1_div: int
    apb2_div: int
    flash_latency: int
    overdrive: bool
    hpre: int
    ppre1: int
    ppre2: int


HPRE_CODES = {1: 0, 2: 8, 4: 9, 8: 10, 16: 11, 64: 12, 128: 13, 256: 14, 512: 15}  # RCC_CFGR.HPRE
PPRE_CODES = {1: 0, 2: 4, 4: 5, 8: 6, 16: 7}  # RCC_CFGR.PPRE1/PPRE2


def clock_context(board: Board) -> ClockContext:
    c = board.clock
    return ClockContext(c.kind, c.source, c.source_hz, c.pll_m, c.pll_n, c.pll_p, c.pll_q, c.pll_r, c.ahb_div,
                        c.apb1_div, c.apb2_div, c.flash_latency, c.overdrive, HPRE_CODES[c.ahb_div],
                        PPRE_CODES[c.apb1_div], PPRE_CODES[c.apb2_div])


def uart_pins(board: Board) -> UartPins | None:
    u = board.uart
    if u.tx is None or u.rx is None:
        return None
    reg, bit = u.enable if u.enable is not None else (0, 0)
    return UartPins(u.tx.name, u.rx.name, u.tx.port, u.tx.pin, u.rx.port, u.rx.pin, u.af or 0, f"0x{reg:08X}", bit)


@dataclass(frozen=True)
class FitReport:
    ram_needed: int
    ram_available: int
    flash_needed: int
    flash_available: int


@dataclass(frozen=True)
class ProjectContext:
    """Everything any template of one project reads; built by ``build_context`` (pure)."""

    banner: str
    tinysplit_version: str
    project_name: str
    board_name: str
    board_description: str
    family: str
    toolchain_prefix: str
    arch_flags: tuple[str, ...]
    compile_flags: tuple[str, ...]
    link_flags: tuple[str, ...]
    memory: tuple[LinkerRegion, ...]
    code_region: str
    data_region: str
    stack_bytes: int
    clock_hz: int
    uart_base: str
    uart_baud: int
    uart_clock_hz: int
    uart_pins: UartPins | None  # None: the emulator needs no pin setup
    clock: ClockContext
    emulated: int  # 1 in an emulator, 0 on a real chip
    exit_clock: int
    renode_platform: str
    renode_uart: str
    fpu: int
    icount_shift: int
    minstret_shift: int  # QEMU's minstret counts 2^shift per instruction under -icount; 0 on chips
    exit_fault: int
    app: str
    exit_code: int
    model_prefix: str
    P: str  # the model prefix in upper case, for its macros
    model_header: str
    sources: tuple[str, ...]  # every .c/.S the build compiles, relative to the project
    files: Mapping[str, str]  # output path -> template
    # sources compiled with kernel_flags added after compile_flags (the kernel runtime at -O2)
    kernel_sources: tuple[str, ...] = ()
    kernel_flags: tuple[str, ...] = ()
    nic_base: str = "0x00000000"
    reset_vector: str = "0x00000000"  # where the core starts after reset (Xtensa: the linker puts a jump there)
    udp_port: int = 0  # a method app's host UDP port (src/net.c of a UDP build), whatever the app
    app_context: Any = None  # a method app's values (its AppConfig.context), read as {{ <app>.field }}
    # ESP-IDF projects (family esp_idf): the Kconfig/sdkconfig defaults and the component's requirements
    idf_target: str = ""
    cpu_mhz: int = 0
    uart_port: int = 0
    uart_count: int = 0
    wifi_ssid: str = ""  # escaped for a Kconfig string
    wifi_password: str = ""  # escaped for a Kconfig string; only in sdkconfig.defaults (mode 0600)
    host_addr: str = ""
    host_port: int = 0
    udp: int = 0
    auth: int = 0
    idf_requires: tuple[str, ...] = ()


@dataclass(frozen=True)
class Project:
    dir: Path
    board: str
    app: str
    files: tuple[Path, ...]
    fit: FitReport

    @property
    def elf(self) -> Path:
        return self.dir / "build" / "firmware.elf"


def _sdk_note(reserved: int, wifi: int = 0) -> str:
    if not reserved and not wifi:
        return ""
    return (f" (after ESP-IDF's own {reserved:,}" + (f" and Wi-Fi/lwIP's {wifi:,}" if wifi else "") + ")")


def check_fit(board: Board, model: ModelSources, app: str = "hil", transport: str = "uart") -> FitReport:
    """Raise InputError (bytes needed and available) unless arena + app + stack fit the board's
    data RAM and weights + code estimate fit its code flash. Available is a region's length less what
    the vendor SDK reserves in it (ESP-IDF boards; on them a UDP build also leaves Wi-Fi and lwIP
    their share of the data RAM)."""
    app_ram = get_app(app).ram_bytes
    ram_needed = model.arena_bytes + app_ram + board.stack_bytes
    flash_needed = model.const_bytes + CODE_ESTIMATE_BYTES
    wifi = board.idf.wifi_reserved if board.idf is not None and transport == "udp" else 0
    ram_available = max(0, board.ram.available - wifi)
    fit = FitReport(ram_needed, ram_available, flash_needed, board.flash.available)
    problems = []
    if ram_needed > ram_available:
        problems.append(f"RAM: needs {ram_needed:,} bytes (arena {model.arena_bytes:,} + app {app_ram:,} "
                        f"+ stack {board.stack_bytes:,}) but region '{board.ram.name}' has {ram_available:,} "
                        f"bytes available{_sdk_note(board.ram.reserved, wifi)} ({ram_needed - ram_available:,} "
                        "too many)")
    if flash_needed > board.flash.available:
        problems.append(f"flash: needs {flash_needed:,} bytes (weights {model.const_bytes:,} + code estimate "
                        f"{CODE_ESTIMATE_BYTES:,}) but region '{board.flash.name}' has {board.flash.available:,} "
                        f"bytes available{_sdk_note(board.flash.reserved)} "
                        f"({flash_needed - board.flash.available:,} too many)")
    if problems:
        raise InputError(f"model '{model.prefix}' does not fit board '{board.name}': " + "; ".join(problems)
                         + "; choose a board with more memory or a smaller model")
    return fit


def _validate_model(model: ModelSources) -> None:
    check_identifier(model.prefix)
    header_names = {Path(h).name for h in model.headers}
    if model.header not in header_names:
        raise InputError(f"model header '{model.header}' is not among the model's headers "
                         f"({', '.join(sorted(header_names)) or 'none'})")
    names = [Path(p).name for p in (*model.sources, *model.headers)]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"model files must have distinct names (copied into one folder): {', '.join(dup)}")
    for p in (*model.sources, *model.headers):
        if not Path(p).is_file():
            raise InputError(f"model file '{p}' does not exist")
        if Path(p).suffix not in (".c", ".h", ".S"):
            raise InputError(f"model file '{p}': expected .c, .S or .h")
    if model.input.bytes <= 0 or model.output.bytes <= 0:
        raise InputError(f"model '{model.prefix}': input and output must have at least one byte")


def templates_for(board: Board, app: str, config: AppConfig | None = None) -> dict[str, str]:
    """Output path -> template name for this board and app (KeyError-free: inputs are validated)."""
    a = get_app(app)
    net = {"src/net.c": NET_TEMPLATES[config.transport][board.nic.kind]} if a.method and config else {}
    return {
        **a.templates,
        **net,
        **COMMON_TEMPLATES,
        **FAMILY_TEMPLATES[board.family],
        "src/uart.c": UART_TEMPLATES[board.uart.kind],
        **({"src/clock.c": CLOCK_TEMPLATES[board.clock.kind]} if board.family in CLOCKED_FAMILIES else {}),
        "src/exit.c": EXIT_TEMPLATES[board.exit],
        "src/counter.c": COUNTER_TEMPLATES[board.counter],
        "src/main.c": a.main_template,
        **(RENODE_TEMPLATES if board.renode is not None else {}),
    }


def check_app_config(board: Board, model: ModelSources, app: str, config: AppConfig | None) -> None:
    """InputError unless a method app has a configuration that fits the model, and the board can
    use its transport; test apps take none."""
    a = get_app(app)
    if a.method is None:
        if config is not None:
            raise InputError(f"app '{app}' is a test app and takes no configuration")
        return
    if config is None:
        raise InputError(f"app '{app}' needs its configuration (bundle id, device id, transport, ...): pass "
                         f"app_config=tinysplit.firmware.apps.get_app('{app}').config_from_manifest(manifest)")
    if not 0 <= config.bundle_id < 2**32 or not 0 <= config.device_id < 0xFFFF:
        raise InputError(f"{app}: bundle id must be a u32 and device id in 0..65534")
    if not 1 <= getattr(config, "udp_port", 1) <= 65535:
        raise InputError(f"{app}: UDP port {config.udp_port} is not in 1..65535")
    if config.transport not in NET_TEMPLATES:
        raise InputError(f"{app}: unknown transport '{config.transport}'; use one of {', '.join(TRANSPORTS)}")
    if board.nic.kind not in NET_TEMPLATES[config.transport] or config.transport not in board.transports:
        udp_boards = "qemu-mps2-an386, qemu-mps3-an547"
        raise InputError(f"board '{board.name}' cannot send over {config.transport} (NIC '{board.nic.kind}', "
                         f"transports {', '.join(board.transports)}); boards with a LAN9118: {udp_boards}")
    config.check(board, model)


AUTH_RUNTIME = ("ts_auth.c", "ts_auth.h")  # copied beside the device runtime in an authenticated build
DEVICE_KEY_FILE = "src/ts_device_key.c"  # this device's secret key (mode 0600)


def runtime_files(app: str, auth: bool = False) -> tuple[str, ...]:
    """The hand-written runtime files an app's project holds (the authentication code when ``auth``)."""
    return (*get_app(app).runtime_files, *(AUTH_RUNTIME if auth else ()))


def build_context(board: Board, model: ModelSources, app: str = "hil", exit_code: int = 0,
                  app_config: AppConfig | None = None, auth: bool = False,
                  link: LinkSettings | None = None, kernels: str | None = None) -> ProjectContext:
    """The one context object of a render (pure: reads only its arguments). ``auth``: an
    authenticated build (-DTS_AUTH, the authentication runtime and the device's key file).
    ``link``: an ESP-IDF board's Wi-Fi, host and UART settings (already checked by ``check_link``).
    ``kernels``: the kernel set (tinysplit.firmware.kernelsets; None: the board core's default)."""
    from tinysplit.firmware.kernelsets import kernel_flags

    files = templates_for(board, app, app_config)
    runtime = runtime_files(app, auth)
    own = sorted([p for p in files if p.startswith("src/") and p.endswith((".c", ".S"))]
                 + [f"src/{f}" for f in runtime if f.endswith(".c")] + ([DEVICE_KEY_FILE] if auth else []))
    transport = app_config.transport if app_config is not None else "uart"
    link = link or LinkSettings()
    idf = board.idf
    model_srcs = sorted(f"src/model/{Path(p).name}" for p in model.sources)
    return ProjectContext(
        banner=BANNER,
        tinysplit_version=__version__,
        project_name=re.sub(r"[^A-Za-z0-9_]", "_", f"tinysplit_{board.name}_{app}"),
        board_name=board.name,
        board_description=board.description,
        family=board.family,
        toolchain_prefix=board.toolchain.prefix,
        arch_flags=board.core.cflags,
        # apps that compile the runtime need the C library's headers (string.h): the specs select them
        compile_flags=(*COMPILE_FLAGS, *(board.toolchain.specs if runtime else ()), *(("-DTS_AUTH",) if auth else ()),
                       *(("-DTS_PROFILE",) if get_app(app).profile else ())),
        link_flags=(*LINK_FLAGS, *board.toolchain.specs),
        memory=tuple(LinkerRegion(r.name, f"0x{r.origin:08X}", r.length, "rx" if r.kind == "flash" else "rwx")
                     for r in board.memory),
        code_region=board.code_region,
        data_region=board.data_region,
        stack_bytes=board.stack_bytes,
        clock_hz=board.clock_hz,
        uart_base=f"0x{board.uart.base:08X}",
        uart_clock_hz=board.uart_clock_hz,
        uart_pins=uart_pins(board),
        clock=clock_context(board),
        emulated=int(board.emulated),
        exit_clock=EXIT_CLOCK,
        renode_platform=board.renode.platform if board.renode else "",
        renode_uart=board.renode.uart if board.renode else "",
        fpu=int(board.core.fpu),
        icount_shift=ICOUNT_SHIFT,
        minstret_shift=ICOUNT_SHIFT if board.emulated else 0,
        exit_fault=EXIT_FAULT,
        app=app,
        exit_code=exit_code,
        model_prefix=model.prefix,
        P=model.prefix.upper(),
        model_header=model.header,
        sources=tuple(own + model_srcs),
        kernel_sources=tuple(p for p in model_srcs if Path(p).name in KERNEL_SOURCES),
        kernel_flags=kernel_flags(board, kernels),
        files=files,
        nic_base=f"0x{board.nic.base or 0:08X}",
        reset_vector=f"0x{board.core.reset_vector or 0:08X}",
        udp_port=int(getattr(app_config, "udp_port", 0)) if app_config is not None else 0,
        app_context=app_config.context(board) if app_config is not None else None,
        idf_target=idf.target if idf else "",
        cpu_mhz=board.clock_hz // 1_000_000,
        uart_port=link.uart_port if link.uart_port is not None else (board.uart.port or 0),
        uart_baud=link.uart_baud if link.uart_baud is not None else (board.uart.baud or 0),
        uart_count=idf.uarts if idf else 0,
        wifi_ssid=_kconfig_string(link.wifi_ssid),
        wifi_password=_kconfig_string(link.wifi_password),
        host_addr=link.host,
        host_port=int(getattr(app_config, "udp_port", 0) or 5600) if app_config is not None else 5600,
        udp=int(transport == "udp"),
        auth=int(auth),
        idf_requires=IDF_REQUIRES[transport] if idf else (),
    )


def _context_dict(ctx: ProjectContext) -> dict[str, Any]:
    values = {f: getattr(ctx, f) for f in ctx.__dataclass_fields__ if f != "app_context"}
    if ctx.app_context is not None:
        values[ctx.app] = ctx.app_context
    return values


def device_key_source(key: bytes) -> str:
    """The C file holding a device's key (ts_device.h: ``ts_device_key``)."""
    from tinysplit.wire.auth import KEY_SIZE, key_fingerprint

    if len(key) != KEY_SIZE:
        raise InputError(f"a device key is {KEY_SIZE} bytes, got {len(key)}")
    rows = ",\n    ".join(", ".join(f"0x{b:02x}" for b in key[i:i + 8]) for i in range(0, KEY_SIZE, 8))
    return (f"/* {BANNER} */\n/* SECRET: this device's key for authenticated frames (fingerprint "
            f"{key_fingerprint(key)}). Keep this project private; never commit or share this file. */\n"
            f"#include \"ts_device.h\"\n\nconst uint8_t ts_device_key[32] = {{\n    {rows}\n}};\n")


def project_path(board: Board, rel: str) -> str:
    """Where a template's output path lies in this board's project layout (``LAYOUTS``)."""
    src = LAYOUTS[board.family][0]
    return f"{src}/{rel[4:]}" if rel.startswith("src/") else rel


def project_builder(board: Board) -> str:
    """What builds this board's projects: "cmake" ('tinysplit build') or "idf.py" (ESP-IDF)."""
    return LAYOUTS[board.family][1]


def render_project(board: Board, model: ModelSources, out_dir: str | Path, app: str = "hil",
                   exit_code: int = 0, app_config: AppConfig | None = None, device_key: bytes | None = None,
                   link: LinkSettings | None = None, kernels: str | None = None) -> Project:
    """Render a buildable project for ``board`` running ``model`` with ``app`` into ``out_dir``.

    ``out_dir`` must not exist, be empty, or be a project rendered before (then it is replaced).
    ``link``: an ESP-IDF board's Wi-Fi network, host address and UART (``LinkSettings``; UDP needs
    the network and the host). Raises InputError if the model does not fit the board (bytes needed
    and available) or the inputs are malformed."""
    get_app(app)
    if not 0 <= exit_code <= 255:
        raise InputError(f"exit code must be in 0..255, got {exit_code}")
    _validate_model(model)
    check_app_config(board, model, app, app_config)
    transport = app_config.transport if app_config is not None else "uart"
    link = check_link(board, link, transport)
    fit = check_fit(board, model, app, transport)
    out = Path(out_dir)
    if out.exists():
        if not out.is_dir():
            raise InputError(f"'{out}' exists and is not a directory")
        if any(out.iterdir()) and not (out / PROJECT_FILE).is_file():
            raise InputError(f"'{out}' is not empty and not a tinysplit project; choose a new directory")
        for stale in ("src", "build", "main", "components"):
            shutil.rmtree(out / stale, ignore_errors=True)
        (out / "sdkconfig").unlink(missing_ok=True)  # idf.py applies sdkconfig.defaults only to a new sdkconfig
    auth = device_key is not None
    if auth and "ts_device.c" not in get_app(app).runtime_files:
        raise InputError(f"app '{app}' does not speak the wire protocol: only method apps (nair, rebel, rocoin, "
                         "adaptive_resnet) take a device key")
    if auth:
        device_key_source(device_key)  # checks the key before anything is written
    ctx = build_context(board, model, app, exit_code, app_config, auth, link, kernels)
    values = _context_dict(ctx)
    written: list[Path] = []
    from tinysplit.files import write_atomic  # a temporary file of mode 0600, then a rename

    for rel, template in ctx.files.items():
        dest = out / project_path(board, rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if rel == "sdkconfig.defaults" and link.wifi_password:
            written.append(write_atomic(dest, render(template, **values)))  # holds the Wi-Fi password
            continue
        dest.write_text(render(template, **values))
        written.append(dest)
    runtime = templates_root() / "runtime"
    for name in runtime_files(app, auth):
        dest = out / project_path(board, f"src/{name}")
        shutil.copyfile(runtime / name, dest)
        written.append(dest)
    if auth:
        written.append(write_atomic(out / project_path(board, DEVICE_KEY_FILE), device_key_source(device_key)))
    model_dir = out / project_path(board, "src/model")
    model_dir.mkdir(parents=True, exist_ok=True)
    for p in (*model.sources, *model.headers):
        dest = model_dir / Path(p).name
        shutil.copyfile(p, dest)
        written.append(dest)
    meta = {
        "generator": f"tinysplit {__version__}",
        "board": board.name,
        "app": app,
        "builder": project_builder(board),
        "exit_code": exit_code,
        "icount_shift": ICOUNT_SHIFT,
        "model": {"prefix": model.prefix, "header": model.header, "arena_bytes": model.arena_bytes,
                  "const_bytes": model.const_bytes, "input_bytes": model.input.bytes,
                  "output_bytes": model.output.bytes, "input_shape": list(model.input.shape),
                  "output_shape": list(model.output.shape)},
        "app_config": None if app_config is None else app_config.meta(),
        "authenticated": auth,
        **({"idf": {"target": ctx.idf_target, "uart": ctx.uart_port, "baud": ctx.uart_baud, "transport": transport,
                    **({"wifi_ssid": link.wifi_ssid, "host": f"{link.host}:{ctx.host_port}"} if ctx.udp else {})}}
           if board.idf else {}),
        **({"key_fingerprint": key_fingerprint(device_key)} if auth else {}),
        "fit_estimate": {"ram_needed": fit.ram_needed, "ram_available": fit.ram_available,
                         "flash_needed": fit.flash_needed, "flash_available": fit.flash_available},
    }
    (out / PROJECT_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    written.append(out / PROJECT_FILE)
    log.info("rendered %d files for board %s (app %s) into %s", len(written), board.name, app, out)
    return Project(out, board.name, app, tuple(written), fit)


def load_project_meta(project_dir: str | Path) -> dict[str, Any]:
    """Read PROJECT/project.json (written by render_project)."""
    p = Path(project_dir) / PROJECT_FILE
    if not p.is_file():
        raise InputError(f"'{project_dir}' is not a tinysplit firmware project (no {PROJECT_FILE}); "
                         "create one with 'tinysplit firmware'")
    try:
        meta = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{p}: not valid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("board"), str):
        raise InputError(f"{p}: field 'board' is missing; re-create the project with 'tinysplit firmware'")
    return meta
