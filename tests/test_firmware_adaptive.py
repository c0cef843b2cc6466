"""The adaptive_resnet app in QEMU: the digits head generated with skippable blocks, every skip mask set
by a CONTROL frame, labels equal to the reference (TFLite Micro on the head with those blocks removed,
then the tail) for every sample, the mask each sample ran with in its frames, and instruction counts
that fall with each skipped block as the per-block costs predict; a mask with bits beyond the block
count is refused by the device (its mask stays, STATS last error 0x300 | 4)."""

from __future__ import annotations

import pytest

from codegen_support import have
from tinysplit.errors import InputError
from tinysplit.firmware.apps.adaptive_resnet import (ERROR_CONTROL, PREDICTION_TOLERANCE, config_from_manifest,
                                                     default_masks, parse_masks, predicted_instructions, run_e2e)

pytestmark = [pytest.mark.slow, pytest.mark.emulator,
              pytest.mark.skipif(not have("qemu-system-arm") or not have("arm-none-eabi-gcc"),
                                 reason="needs qemu-system-arm and arm-none-eabi-gcc")]


def test_every_mask_on_the_cortex_m4(adaptive_bundle) -> None:
    r = run_e2e(adaptive_bundle, "qemu-mps2-an386", 3, "uart", list(range(16)))
    assert r["ok"], r["masks"]
    rows = {int(k): v for k, v in r["masks"].items()}
    for m, row in rows.items():
        assert row["labels_equal_reference"] == 1.0 and row["mask_used"] == 1.0, m
        assert row["prediction_error"] <= PREDICTION_TOLERANCE, (m, row)
        for i in range(4):  # skipping one more block always saves instructions
            if not m >> i & 1:
                assert rows[m | 1 << i]["instructions"] < row["instructions"], (m, i)
    full, none = rows[0]["instructions"], rows[15]["instructions"]
    assert none < 0.2 * full  # the four blocks are most of this head
    assert r["device_stats"]["drops"] == 0 and r["server"]["drops"] == {}


@pytest.mark.parametrize("board,transport", [("qemu-mps3-an547", "udp"), ("qemu-riscv32-virt", "uart")])
def test_masks_on_other_boards(adaptive_bundle, board: str, transport: str) -> None:
    if board.startswith("qemu-riscv") and not have("qemu-system-riscv32"):
        pytest.skip("needs qemu-system-riscv32")
    r = run_e2e(adaptive_bundle, board, 2, transport, [0, 1, 2, 4, 8, 5, 15])
    assert r["ok"], r["masks"]
    assert r["transport"] == transport


def test_a_bad_mask_is_refused_by_the_device(adaptive_bundle) -> None:
    """CONTROL key 4 with bit 4 set on a 4-block head: the samples after it still run with the old mask."""
    from tinysplit.firmware.apps.adaptive_resnet import frame_fields
    from tinysplit.firmware.e2e import Setting, prepare, run_app

    p = prepare(adaptive_bundle, "qemu-mps2-an386", 2, "uart", None)
    cfg = config_from_manifest(p.manifest)
    seen: dict[str, set[int]] = {}

    def row(s, run):
        seen[s.key] = set().union(*(frame_fields(f)[0] for f in run.frames))
        return {}

    settings = [Setting("good", "mask 0x3", ((4, 3),)), Setting("bad", "mask 0x13", ((4, 0x13),))]
    report = run_app(p, "adaptive_resnet", cfg, settings, row, lambda h: None)
    assert seen == {"good": {3}, "bad": {3}}
    assert report["device_stats"]["last_error"] == ERROR_CONTROL | 4


def test_mask_options() -> None:
    assert parse_masks("0,1,0x3", 4) == (0, 1, 3)
    assert parse_masks("all", 2) == (0, 1, 2, 3)
    assert default_masks(3) == (0, 1, 2, 4, 7)
    with pytest.raises(InputError, match="bits at or above bit 4"):
        parse_masks("16", 4)
    with pytest.raises(InputError, match="comma-separated"):
        parse_masks("a,b", 4)
    assert predicted_instructions({0: 100, 1: 70, 2: 80}, 2) == {0: 100, 1: 70, 2: 80}
    assert predicted_instructions({0: 100, 1: 70, 2: 80, 3: 49}, 2)[3] == 50
    assert predicted_instructions({0: 100, 1: 70}, 2) == {}
