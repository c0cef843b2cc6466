"""End to end with the real code generator: digits bundle -> C -> firmware -> QEMU, compared with
TFLite Micro byte for byte, through the CLI (firmware, build) and a HIL session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tinysplit import cli
from tinysplit.boards import get_board, list_boards
from tinysplit.firmware.hil import HilSession
from tinysplit.manifest import load_manifest

from conftest import min_plausible_instructions

pytestmark = [pytest.mark.slow, pytest.mark.emulator]
EMULATED = [b.name for b in list_boards(emulated_only=True)]
SAMPLES = 20


@pytest.fixture(scope="module")
def reference(digits_bundle: Path):
    from tflite_micro.python.tflite_micro import runtime

    m = load_manifest(digits_bundle)
    dm = m.device_models[0]
    x = np.load(digits_bundle / m.input.heldout_file)["x"][:SAMPLES].transpose(0, 2, 3, 1)
    q = dm.inputs[0]
    xq = np.clip(np.round(x / q.scale) + q.zero_point, -128, 127).astype(np.int8)
    interp = runtime.Interpreter.from_bytes((digits_bundle / dm.file).read_bytes(), arena_size=64 * 1024)
    ys = []
    for i in range(SAMPLES):
        interp.set_input(xq[i:i + 1], 0)
        interp.invoke()
        ys.append(interp.get_output(0).reshape(-1).copy())
    return xq, ys


@pytest.mark.parametrize("board_name", EMULATED)
def test_generated_model_on_qemu_is_bit_exact_with_tflm(board_name: str, digits_bundle: Path, reference,
                                                       tmp_path: Path):
    xq, ys = reference
    proj = tmp_path / "proj"
    assert cli.main(["firmware", "--bundle", str(digits_bundle), "--board", board_name, "--out", str(proj)]) == 0
    assert cli.main(["build", str(proj)]) == 0
    with HilSession(get_board(board_name), proj / "build" / "firmware.elf") as s:
        counts = []
        for i in range(SAMPLES):
            y, n = s.infer(xq[i])
            assert np.array_equal(y, ys[i]), f"sample {i} differs from TFLite Micro"
            counts.append(n)
        _, again = s.infer(xq[0])
    assert again == counts[0] and min(counts) > min_plausible_instructions(digits_bundle)
