"""Real boards (NUCLEO-F446RE, nRF52840-DK): board files, clock/UART checks, the flash command's
invocations, the boards listing and the Renode files, all without hardware; the ``hardware`` test
flashes a board only when pyOCD sees a probe."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from firmware_support import fake_model
from tinysplit import cli
from tinysplit.boards import Flasher, board_from_dict, boards_dir, get_board, list_boards
from tinysplit.errors import InputError
from tinysplit.firmware.flash import FLASHERS, flash_plan
from tinysplit.firmware.project import render_project


def _raw(name: str) -> dict:
    return yaml.safe_load((boards_dir() / f"{name}.yaml").read_text())


def test_nucleo_clock_tree_makes_its_core_and_usart_clocks():
    b = get_board("nucleo-f446re")
    c = b.clock
    assert (c.sysclk_hz, c.apb1_hz, c.apb2_hz) == (180e6, 45e6, 90e6) and b.clock_hz == 180_000_000
    assert b.uart_clock_hz == c.apb1_hz and b.uart.base == 0x40004400 and b.uart.baud == 115200
    assert (b.uart.tx.name, b.uart.rx.name, b.uart.af) == ("PA2", "PA3", 7)
    assert b.emulator is None and b.flasher == Flasher("pyocd", "stm32f446retx")


def test_nrf52840_dk_uarte_and_hfclk():
    b = get_board("nrf52840-dk")
    assert (b.uart.kind, b.uart.base, b.uart.tx.pin, b.uart.rx.pin) == ("nrf52_uarte", 0x40002000, 6, 8)
    assert b.clock.kind == "nrf52_hfclk" and b.clock_hz == 64_000_000 and b.flasher.target == "nrf52840"


def test_every_hardware_board_names_its_flashing_tool():
    for b in list_boards():
        assert b.emulator is not None or b.flasher is not None, b.name


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d["clock"].update(pll_n=168), "the PLL makes 168,000,000 Hz"),
    (lambda d: d["clock"].update(flash_latency=3), "flash_latency 3 is too low"),
    (lambda d: d["clock"].update(overdrive=False), "over-drive"),
    (lambda d: d["uart"].update(clock_hz=50_000_000), "neither APB1"),
    (lambda d: d["uart"].update(tx="P0.06"), "uart.tx"),
    (lambda d: d["uart"].pop("af"), "'af'"),
])
def test_inconsistent_nucleo_file_names_the_problem(mutate, words):
    data = _raw("nucleo-f446re")
    mutate(data)
    with pytest.raises(InputError) as e:
        board_from_dict(data, "nucleo-f446re.yaml")
    assert words in str(e.value)


def test_nrf_baud_must_be_a_uarte_rate():
    data = _raw("nrf52840-dk")
    data["uart"]["baud"] = 100000
    with pytest.raises(InputError, match="uart.baud"):
        board_from_dict(data, "nrf52840-dk.yaml")


def test_netduinoplus2_keeps_the_stm32_driver_without_pins():
    q, n = get_board("qemu-netduinoplus2"), get_board("nucleo-f446re")
    assert q.uart.kind == n.uart.kind == "stm32_usart" and q.uart.tx is None and q.clock.kind == "none"


def _project(tmp_path: Path, board: str) -> Path:
    p = render_project(get_board(board), fake_model(), tmp_path / board).dir
    (p / "build").mkdir()
    (p / "build" / "firmware.elf").write_bytes(b"\x7fELF")
    return p


def test_generated_sources_set_up_the_real_clock_and_pins(tmp_path: Path):
    nucleo = _project(tmp_path, "nucleo-f446re")
    clock, uart = (nucleo / "src" / "clock.c").read_text(), (nucleo / "src" / "uart.c").read_text()
    assert "#define PLL_N  180u" in clock and "PWR_CR_ODEN" in clock and "#define FLASH_LATENCY 5u" in clock
    assert "pin_af(0u, 2u, 7u, 0u)" in uart and "pin_af(0u, 3u, 7u, 1u)" in uart and "0x40023840u" in uart
    assert "#define BOARD_UART_CLOCK_HZ 45000000u" in (nucleo / "src" / "board_config.h").read_text()
    nrf = (_project(tmp_path, "nrf52840-dk") / "src" / "uart.c").read_text()
    assert "UARTE_PSEL_TXD = PSEL(0u, 6u)" in nrf and "BAUD_VALUE_OF(115200)" in nrf


@pytest.mark.parametrize("board, target", [("nucleo-f446re", "stm32f446retx"), ("nrf52840-dk", "nrf52840")])
def test_flash_dry_run_prints_the_pyocd_invocation(tmp_path: Path, capsys, board, target):
    p = _project(tmp_path, board)
    assert cli.main(["flash", str(p), "--dry-run", "--probe", "0668FF"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == (f"{sys.executable} -m pyocd flash --target {target} --uid 0668FF --format elf "
                   f"{p / 'build' / 'firmware.elf'}")


def test_esptool_and_idf_py_plans(tmp_path: Path):
    esp = dataclasses.replace(get_board("nucleo-f446re"), flasher=Flasher("esptool", "esp32s3"))
    (tmp_path / "build").mkdir()
    with pytest.raises(InputError, match="flash_args"):
        FLASHERS["esptool"][0](esp, tmp_path, None)
    (tmp_path / "build" / "flash_args").write_text("0x0 bootloader.bin\n")
    plan = FLASHERS["esptool"][0](esp, tmp_path, "/dev/ttyUSB0")
    assert plan.argv[1:] == ("-m", "esptool", "--chip", "esp32s3", "--port", "/dev/ttyUSB0", "write-flash",
                             "@flash_args") and plan.cwd == tmp_path / "build"
    idf = FLASHERS["idf.py"][0](esp, tmp_path, None)
    assert idf.argv == ("idf.py", "--project-dir", str(tmp_path), "flash")


def test_flash_refuses_emulator_boards_and_unbuilt_projects(tmp_path: Path, capsys):
    q = render_project(get_board("qemu-mps2-an386"), fake_model(), tmp_path / "q").dir
    assert cli.main(["flash", str(q), "--dry-run"]) == 2
    assert "emulator-only" in capsys.readouterr().err
    n = render_project(get_board("nucleo-f446re"), fake_model(), tmp_path / "n").dir
    assert cli.main(["flash", str(n), "--dry-run"]) == 2
    assert "tinysplit build" in capsys.readouterr().err


def test_flash_without_pyocd_exits_6_naming_the_extra(tmp_path: Path, capsys, monkeypatch):
    import tinysplit.firmware.flash as flash

    p = _project(tmp_path, "nucleo-f446re")
    monkeypatch.setattr(flash.importlib.util, "find_spec", lambda name: None)
    assert cli.main(["flash", str(p)]) == 6
    assert "pip install 'tinysplit[flash]'" in capsys.readouterr().err


def test_boards_lists_emulator_or_hardware_and_flashing_tool(capsys):
    assert cli.main(["boards"]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()[1:]}
    assert set(lines) == {b.name for b in list_boards()}
    assert "hardware only" in lines["nucleo-f446re"] and "pyocd (stm32f446retx)" in lines["nucleo-f446re"]
    assert "pyocd (nrf52840)" in lines["nrf52840-dk"]
    assert "qemu netduinoplus2" in lines["qemu-netduinoplus2"] and lines["qemu-netduinoplus2"].rstrip().endswith("-")


def test_renode_files_name_the_platform_and_uart(tmp_path: Path):
    for name in ("nucleo-f446re", "nrf52840-dk"):
        b = get_board(name)
        p = render_project(b, fake_model(), tmp_path / name).dir
        resc, robot = (p / "renode" / "board.resc").read_text(), (p / "renode" / "hil.robot").read_text()
        assert f"machine LoadPlatformDescription @{b.renode.platform}" in resc
        assert f"connector Connect {b.renode.uart} hil_uart" in resc and "CreateServerSocketTerminal $port" in resc
        assert "*** Test Cases ***" in robot and "${RENODEKEYWORDS}" in robot and "tinysplit.firmware.hilclient" in robot
    assert not (render_project(get_board("qemu-mps2-an386"), fake_model(), tmp_path / "q").dir / "renode").exists()


def test_hil_renode_without_renode_exits_6_with_install_hint(tmp_path: Path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "tinysplit", "hil", "--tflite", str(tmp_path / "m.tflite"),
                        "--board", "nrf52840-dk", "--emulator", "renode"], capture_output=True, text=True, env=env)
    assert r.returncode == 6 and "renode" in r.stderr and "install Renode" in r.stderr


def _probes() -> list[str]:
    try:
        from pyocd.core.helpers import ConnectHelper
    except ImportError:
        return []
    return [p.unique_id for p in ConnectHelper.get_all_connected_probes(blocking=False)]


@pytest.mark.hardware
def test_flash_a_real_board(tmp_path: Path):
    probes = _probes()
    if not probes:
        pytest.skip("no debug probe attached (pyOCD lists none): the hardware flash test needs a board")
    from firmware_support import built

    for board in ("nucleo-f446re", "nrf52840-dk"):
        project, _ = built(board)
        plan = flash_plan(project.dir, probes[0])
        r = subprocess.run(plan.argv, cwd=plan.cwd, capture_output=True, text=True, timeout=120)
        if "target" in r.stderr.lower() and r.returncode != 0:
            continue  # this probe is on the other board
        assert r.returncode == 0, r.stderr
