"""Kernel sets: the board's core picks one (Python), the compiler's target picks the same one (C),
a forced set the core cannot run is refused, and the choice reaches the kernel runtime's compile line."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tinysplit.boards import list_boards
from tinysplit.errors import InputError
from tinysplit.firmware.kernelsets import KERNEL_SETS, choose_kernel_set, kernel_flags, kernel_set_for

RUNTIME = Path(__file__).resolve().parents[1] / "firmware_templates" / "runtime"
ARM = [b for b in list_boards() if b.family == "cortex_m"]


def _c_choice(cc: str, cflags: tuple[str, ...], extra: tuple[str, ...] = ()) -> tuple[int, str]:
    """(TS_KERNELS as the preprocessor sees ts_kernels.h with these flags, stderr)."""
    src = '#include "ts_kernels.h"\nint ts_kernels_chosen = TS_KERNELS;\n'
    r = subprocess.run([cc, *cflags, *extra, "-I", str(RUNTIME), "-E", "-P", "-x", "c", "-"], input=src,
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"ts_kernels_chosen = (\d+);", r.stdout)
    return (int(m.group(1)) if m and r.returncode == 0 else -1), r.stderr


def test_registry_ids_and_names() -> None:
    assert {k.name for k in KERNEL_SETS.values()} == set(KERNEL_SETS)
    assert sorted(k.ident for k in KERNEL_SETS.values()) == list(range(len(KERNEL_SETS)))
    header = (RUNTIME / "ts_kernels.h").read_text()
    for ks in KERNEL_SETS.values():
        assert re.search(rf"#define TS_KERNELS_{ks.name.upper()} {ks.ident}\b", header), ks.name


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc is installed by setup.sh")
@pytest.mark.parametrize("board", ARM, ids=[b.name for b in ARM])
def test_the_compiler_chooses_what_the_board_core_chooses(board) -> None:
    got, err = _c_choice("arm-none-eabi-gcc", board.core.cflags)
    assert got == KERNEL_SETS[kernel_set_for(board)].ident, (board.name, err)


def test_defaults_by_core() -> None:
    by_name = {b.name: kernel_set_for(b) for b in list_boards()}
    assert by_name["qemu-mps2-an386"] == "dsp" and by_name["qemu-netduinoplus2"] == "dsp"
    assert by_name["qemu-mps3-an547"] == "mve"
    assert by_name["qemu-lm3s6965evb"] == "portable" and by_name["qemu-riscv32-virt"] == "portable"
    assert by_name["qemu-xtensa-lx106"] == "portable"


def test_forcing_a_set() -> None:
    boards = {b.name: b for b in list_boards()}
    m4, m3 = boards["qemu-mps2-an386"], boards["qemu-lm3s6965evb"]
    assert choose_kernel_set(m4, "portable").name == "portable"
    assert choose_kernel_set(m4, "auto").name == "dsp" and choose_kernel_set(m4, None).name == "dsp"
    assert kernel_flags(m4)[-1] == "-DTS_KERNELS=1" and kernel_flags(m4, "portable")[-1] == "-DTS_KERNELS=0"
    with pytest.raises(InputError, match=r"'qemu-lm3s6965evb' \(cortex-m3\) cannot run the 'dsp' kernels.*portable"):
        choose_kernel_set(m3, "dsp")
    with pytest.raises(InputError, match=r"cannot run the 'mve'"):
        choose_kernel_set(m4, "mve")
    with pytest.raises(InputError, match=r"unknown kernel set 'neon'"):
        choose_kernel_set(m4, "neon")


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc is installed by setup.sh")
def test_a_forced_set_the_target_lacks_does_not_compile() -> None:
    _, err = _c_choice("arm-none-eabi-gcc", ("-mcpu=cortex-m3", "-mthumb"), ("-DTS_KERNELS=1",))
    assert "needs a core with the DSP extension" in err
    _, err = _c_choice("arm-none-eabi-gcc", ("-mcpu=cortex-m4", "-mthumb"), ("-DTS_KERNELS=2",))
    assert "needs a core with Helium" in err


def test_the_choice_reaches_the_kernel_compile_line(tmp_path: Path) -> None:
    from tinysplit.boards import get_board
    from tinysplit.exporter.codegen import generate_model_sources
    from tinysplit.firmware.project import render_project

    from opcases import conv_case
    import numpy as np

    tfl = conv_case(np.random.default_rng(0), 0, False).tflite
    sources = generate_model_sources(tfl, "m", tmp_path / "gen")
    for kernels, want in ((None, "-DTS_KERNELS=1"), ("portable", "-DTS_KERNELS=0")):
        out = tmp_path / f"p-{kernels}"
        render_project(get_board("qemu-mps2-an386"), sources, out, kernels=kernels)
        cmake = (out / "CMakeLists.txt").read_text()
        assert want in cmake and "ts_kernels.c" in cmake, cmake


# --- `--kernels` on the command line ------------------------------------------------------------

def _conv_tflite(tmp_path: Path) -> Path:
    import numpy as np

    from opcases import conv_case

    p = tmp_path / "conv.tflite"
    p.write_bytes(conv_case(np.random.default_rng(0), 0, False).tflite)
    return p


@pytest.mark.parametrize("kernels, want", [("auto", "-DTS_KERNELS=1"), ("dsp", "-DTS_KERNELS=1"),
                                           ("portable", "-DTS_KERNELS=0")])
def test_firmware_kernels_flag_reaches_the_compile_line(tmp_path: Path, kernels: str, want: str) -> None:
    from tinysplit import cli

    out = tmp_path / "proj"
    assert cli.main(["firmware", "--tflite", str(_conv_tflite(tmp_path)), "--board", "qemu-mps2-an386",
                     "--out", str(out), "--kernels", kernels]) == 0
    cmake = (out / "CMakeLists.txt").read_text()
    assert want in cmake and "ts_kernels.c" in cmake, cmake


@pytest.mark.parametrize("command", ["firmware", "hil", "profile"])
@pytest.mark.parametrize("board, kernels", [("qemu-mps2-an386", "mve"), ("qemu-lm3s6965evb", "dsp")])
def test_a_kernel_set_the_board_cannot_run_is_exit_2(tmp_path: Path, capsys, command: str, board: str,
                                                     kernels: str) -> None:
    from tinysplit import cli

    args = [command, "--tflite", str(_conv_tflite(tmp_path)), "--board", board, "--kernels", kernels]
    if command == "firmware":
        args += ["--out", str(tmp_path / "proj")]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert f"cannot run the '{kernels}' kernels" in err and board in err, err
    assert not (tmp_path / "proj").exists()


def test_an_unknown_kernel_set_is_a_usage_error(tmp_path: Path, capsys) -> None:
    from tinysplit import cli

    with pytest.raises(SystemExit) as e:
        cli.main(["profile", "--tflite", str(_conv_tflite(tmp_path)), "--board", "qemu-mps2-an386",
                  "--kernels", "neon"])
    assert e.value.code == 2 and "portable" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["hil", "profile"])
def test_hil_and_profile_pass_the_kernel_set_on(tmp_path: Path, monkeypatch, command: str) -> None:
    """Unit check of the threading (the per-op QEMU suite runs each set for real)."""
    from tinysplit import cli
    from tinysplit.firmware import generate

    seen = []

    def fake_model_project(*a, **kw):
        seen.append(kw.get("kernels"))
        raise InputError("stop here")

    monkeypatch.setattr(generate, "model_project", fake_model_project)
    assert cli.main([command, "--tflite", str(_conv_tflite(tmp_path)), "--board", "qemu-mps2-an386",
                     "--kernels", "portable"]) == 2
    assert seen == ["portable"]
