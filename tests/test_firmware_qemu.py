"""Firmware in QEMU: exit status, hard timeout, the HIL round trip and the instruction counter."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from firmware_support import EXIT_CODE, IN_BYTES, OUT_BYTES, built, fake_expected, write_fake_model
from tinysplit import cli
from tinysplit.boards import get_board, list_boards
from tinysplit.errors import InputError, ToolchainError
from tinysplit.firmware.build import build_project
from tinysplit.firmware.hil import HilProtocolError, HilSession
from tinysplit.firmware.project import EXIT_FAULT, render_project
from tinysplit.firmware.qemu import EmulatorTimeoutError, qemu_command, run_elf

pytestmark = pytest.mark.emulator
EMULATED = [b.name for b in list_boards(emulated_only=True)]


@pytest.mark.parametrize("board_name", EMULATED)
def test_firmware_exit_status_comes_back(board_name: str):
    _, r = built(board_name, "exit")
    res = run_elf(get_board(board_name), r.elf, timeout=20)
    assert res.exit_code == EXIT_CODE
    assert res.uart == f"TSEXIT {board_name} code={EXIT_CODE}\n".encode()


@pytest.mark.parametrize("board_name", EMULATED)
def test_hil_round_trip_exact_and_deterministic(board_name: str):
    board = get_board(board_name)
    _, r = built(board_name, "hil")
    rng = np.random.default_rng(1234)
    inputs = [rng.integers(-128, 128, IN_BYTES, dtype=np.int8) for _ in range(3)]
    inputs.append(np.full(IN_BYTES, -128, dtype=np.int8))
    counts = []
    for _run in range(2):
        with HilSession(board, r.elf) as s:
            assert (s.input_bytes, s.output_bytes) == (IN_BYTES, OUT_BYTES)
            run_counts = []
            for x in inputs:
                y, n = s.infer(x)
                assert y.dtype == np.int8 and np.array_equal(y, fake_expected(x, OUT_BYTES))
                assert n > 0
                run_counts.append(n)
            assert s.close() == 0  # 'Q' -> exit status 0
        counts.append(run_counts)
    assert counts[0] == counts[1]
    assert len(set(counts[0])) == 1  # the fake model's work does not depend on the values


@pytest.mark.parametrize("board_name", EMULATED)
def test_instruction_counter_matches_a_known_loop(board_name: str):
    _, r = built(board_name, "hil")
    with HilSession(get_board(board_name), r.elf) as s:
        small, big = s.loop_instructions(1000), s.loop_instructions(101000)
        huge = s.loop_instructions(3_000_000)  # 6 M instructions: SysTick wraps several times
    assert big - small == 2 * 100000  # the loop is exactly 2 instructions per iteration
    assert 0 <= small - 2000 <= 40  # call and counter overhead
    assert 0 <= huge - 6_000_000 - (small - 2000) <= 80  # plus the SysTick wrap handler's instructions


def test_hanging_firmware_is_stopped_at_the_timeout():
    board = get_board("qemu-mps2-an386")
    _, r = built(board.name, "hil")  # waits for commands forever
    t0 = time.monotonic()
    with pytest.raises(EmulatorTimeoutError, match=r"did not exit within 1\.5 s"):
        run_elf(board, r.elf, timeout=1.5)
    assert time.monotonic() - t0 < 4.0


def test_wrong_banner_is_a_protocol_error():
    board = get_board("qemu-lm3s6965evb")
    _, r = built(board.name, "exit")  # prints a line that is not a TSHIL1 banner, then exits
    with pytest.raises(HilProtocolError, match="expected 'TSHIL1 in=N out=M', got b'TSEXIT"):
        HilSession(board, r.elf, timeout=5)


def test_model_that_never_returns_times_out_on_read(tmp_path: Path):
    board = get_board("qemu-mps3-an547")
    model = write_fake_model(tmp_path / "m", in_bytes=IN_BYTES, out_bytes=OUT_BYTES, hang=True)
    elf = build_project(render_project(board, model, tmp_path / "p").dir).elf
    with HilSession(board, elf, timeout=1.0) as s:
        t0 = time.monotonic()
        with pytest.raises(EmulatorTimeoutError, match=r"no complete an output within 1\.0 s"):
            s.infer(np.zeros(IN_BYTES, dtype=np.int8))
        assert time.monotonic() - t0 < 2.5
        s.qemu.close()
    assert s.qemu.poll() is not None  # QEMU stopped


@pytest.mark.parametrize("board_name", EMULATED)
def test_a_fault_exits_with_the_fault_status(board_name: str, tmp_path: Path):
    board = get_board(board_name)
    model = write_fake_model(tmp_path / "m", in_bytes=IN_BYTES, out_bytes=OUT_BYTES, fault=True)
    elf = build_project(render_project(board, model, tmp_path / "p").dir).elf
    with HilSession(board, elf, timeout=5) as s:
        with pytest.raises(HilProtocolError, match=f"exited with status {EXIT_FAULT}"):
            s.infer(np.zeros(IN_BYTES, dtype=np.int8))


def test_cli_run_exits_with_the_firmware_status(capsysbinary):
    project, _ = built("qemu-riscv32-virt", "exit")
    assert cli.main(["run", str(project.dir), "--emulator", "qemu", "--timeout", "20"]) == EXIT_CODE
    assert b"TSEXIT qemu-riscv32-virt code=42" in capsysbinary.readouterr().out


def test_cli_run_timeout_exit_code(capsys):
    project, _ = built("qemu-netduinoplus2", "hil")
    assert cli.main(["run", str(project.dir), "--timeout", "1"]) == EmulatorTimeoutError.exit_code
    assert "did not exit within 1.0 s" in capsys.readouterr().err


def test_missing_qemu_is_a_toolchain_error(tmp_path: Path, monkeypatch):
    _, r = built("qemu-mps2-an386", "exit")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolchainError, match=r"qemu-system-arm.*\./setup\.sh"):
        run_elf(get_board("qemu-mps2-an386"), r.elf, timeout=5)


def test_images_qemu_cannot_run_are_refused_before_starting_it(tmp_path: Path):
    bad = tmp_path / "firmware.elf"
    bad.write_text("not an ELF at all")
    with pytest.raises(InputError, match="not a 32-bit little-endian ELF"):
        run_elf(get_board("qemu-mps2-an386"), bad, timeout=10)
    _, riscv = built("qemu-riscv32-virt", "exit")
    with pytest.raises(InputError, match="not for qemu-mps2-an386"):
        run_elf(get_board("qemu-mps2-an386"), riscv.elf, timeout=10)


def test_qemu_that_exits_early_is_a_toolchain_error(tmp_path: Path, monkeypatch):
    """A QEMU that dies before opening its serial port (here: a stand-in that prints and exits 1)."""
    fake = tmp_path / "bin" / "qemu-system-arm"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'qemu-system-arm: no such machine' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    _, r = built("qemu-mps2-an386", "exit")
    with pytest.raises(ToolchainError, match="exited with status 1 before the firmware started.*no such machine"):
        run_elf(get_board("qemu-mps2-an386"), r.elf, timeout=10)


def test_qemu_command_line():
    cmd = qemu_command(get_board("qemu-riscv32-virt"), Path("fw.elf"), 5555)
    joined = " ".join(cmd)
    assert cmd[0] == "qemu-system-riscv32" and "-M virt -bios none" in joined
    assert "-icount shift=7,sleep=off" in joined and "enable=on,target=native" in joined
    assert "host=127.0.0.1,port=5555,server=on,wait=on" in joined


def test_xtensa_qemu_command_line():
    cmd = qemu_command(get_board("qemu-xtensa-lx106"), Path("fw.elf"), 5555)
    joined = " ".join(cmd)
    # the SIMCALL console on QEMU's stdin/stdout, served on the port by the relay
    assert cmd[1:6] == ["-m", "tinysplit.firmware.stdio_relay", "--port", "5555", "--"]
    assert cmd[6] == "qemu-system-xtensa" and "-M sim -cpu lx106" in joined
    assert "enable=on,target=native" in joined and cmd[-2:] == ["-serial", "none"] and "chardev" not in joined


def test_xtensa_image_runs_on_the_plain_sim_command_line():
    """The sim machine starts the core at its reset vector, not at the ELF entry: the image's jump
    there lets it boot with QEMU's own command line; its console is QEMU's stdout."""
    _, r = built("qemu-xtensa-lx106", "exit")
    proc = subprocess.run(["qemu-system-xtensa", "-M", "sim", "-cpu", "lx106", "-semihosting", "-nographic",
                           "-monitor", "none", "-kernel", str(r.elf)], capture_output=True, timeout=20)
    assert proc.returncode == EXIT_CODE
    assert f"TSEXIT qemu-xtensa-lx106 code={EXIT_CODE}".encode() in proc.stdout


def test_no_qemu_left_running():
    """Every test above must have stopped its QEMU (pgrep for our own children only)."""
    out = subprocess.run(["pgrep", "-P", str(os.getpid())], capture_output=True, text=True).stdout.split()
    names = [Path(f"/proc/{p}/comm").read_text().strip() for p in out if Path(f"/proc/{p}").exists()]
    assert not [n for n in names if n.startswith("qemu")], names
