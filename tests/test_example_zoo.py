"""The example heads that need the ops beyond convolutions (tinysplit.examples.zoo): exported from
PyTorch through the real exporter, their int8 models use the ops they were built for, and each runs
bit-exact with TFLite Micro in QEMU on every emulated board (``tinysplit hil``); each fits them all."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinysplit.boards import list_boards
from tinysplit.errors import InputError
from tinysplit.examples.zoo import HEADS, zoo_spec
from tinysplit.exporter import export_bundle
from tinysplit.firmware.hilcheck import run_hil_check
from tinysplit.manifest import load_manifest

pytestmark = [pytest.mark.slow, pytest.mark.emulator]
EMULATED = [b.name for b in list_boards(emulated_only=True)]
SAMPLES = 3
# the ops each example is there to exercise (beyond convolutions, ADD, MUL, PAD, MEAN)
USES = {
    "mobilenetv3": {"HARD_SWISH", "MEAN", "MUL"},
    "encoder-decoder": {"TRANSPOSE_CONV", "RESIZE_BILINEAR"},
    "detector": {"LEAKY_RELU", "RESIZE_NEAREST_NEIGHBOR", "CONCATENATION"},
}


@pytest.fixture(scope="module", params=list(HEADS))
def bundle(request, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    name = request.param
    spec, _ = zoo_spec(name)
    out = tmp_path_factory.mktemp(f"zoo-{name}") / "bundle"
    export_bundle(spec, out)
    return name, out


def test_example_exports_with_its_ops_and_runs_bit_exact_on_every_board_it_fits(bundle, tmp_path: Path) -> None:
    name, path = bundle
    ops = set(load_manifest(path).device_models[0].ops)
    assert USES[name] <= ops, f"{name}: its int8 model uses {sorted(ops)}"
    ran, refused = {}, {}
    for board in EMULATED:
        try:
            r = run_hil_check(path, board, SAMPLES, workdir=tmp_path / board)
        except InputError as e:
            assert "does not fit" in str(e), (board, str(e))
            refused[board] = str(e)
            continue
        assert r.identical_fraction == 1.0 and r.max_lsb_diff == 0, (board, r)
        assert r.instructions_min > 10_000, (board, r)
        ran[board] = r.instructions_per_inference
    print(f"{name}: instructions per inference {ran}; refused {refused}")
    # measured: each of the three fits every emulated board, the 64 KiB Cortex-M3 and the LX106 included
    assert set(ran) == set(EMULATED), f"{name}: ran on {sorted(ran)}; refused: {refused}"
