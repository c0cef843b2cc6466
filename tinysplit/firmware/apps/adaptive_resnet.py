"""The firmware half of Adaptive ResNet: the ``adaptive_resnet`` app's configuration from a bundle
(``method_data.adaptive_resnet``: the block count B and the default skip mask), the checks against the
generated model (which must have exactly B skippable blocks: ``ModelSources.skip_blocks``) and the
board, the values its template reads (``firmware_templates/app/adaptive_resnet/``), and the
end-to-end check in QEMU against the reference pipeline (``tinysplit hil --e2e --masks ...``).

The device: CONTROL key 4 sets the skip mask (bits at or above B are refused: the mask stays and STATS
last error becomes 0x300 | 4); each INPUT runs the head with that mask and goes out as ADAPTIVE_OUTPUT
frames carrying the mask and the inference's instruction count (docs/wire-protocol.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tinysplit.boards import Board
from tinysplit.errors import InputError
from tinysplit.manifest import Manifest
from tinysplit.modelsrc import ModelSources

CONTROL_SKIP_MASK = 4
# Instruction counts are exact in QEMU but depend a little on the data (clamps, rounding branches), and a
# block's input changes with the blocks skipped before it: the additive prediction from the mean counts of
# mask 0 and the single-block masks must hold to this fraction of the full head's count (mask 0).
PREDICTION_TOLERANCE = 0.001
ERROR_CONTROL = 0x300  # STATS last error 0x300 | key: the app refused that CONTROL value


@dataclass(frozen=True)
class AdaptiveContext:
    """The app's values as the template reads them (numbers and C literals, no logic)."""

    bundle_id: str
    device_id: int
    blocks: int
    default_mask: str
    udp: int
    udp_port: int
    hello_name: str


@dataclass(frozen=True)
class AdaptiveAppConfig:
    bundle_id: int
    device_id: int
    blocks: int
    default_mask: int
    output_bytes: int
    transport: str = "uart"
    udp_port: int = 5600
    board_name: str = ""

    def check(self, board: Board, model: ModelSources) -> None:
        if model.skip_blocks != self.blocks:
            raise InputError(f"adaptive_resnet: the generated model has {model.skip_blocks} skippable blocks, the "
                             f"bundle says {self.blocks}; generate the model with skippable blocks from the bundle's "
                             "own head")
        if self.default_mask >> self.blocks:
            raise InputError(f"adaptive_resnet: default mask 0x{self.default_mask:x} has bits at or above bit "
                             f"{self.blocks}")
        if model.output.bytes != self.output_bytes:
            raise InputError(f"adaptive_resnet: the model outputs {model.output.bytes} bytes, the bundle's head "
                             f"{self.output_bytes}")
        if not 1 <= self.device_id < 0xFFFF:
            raise InputError(f"adaptive_resnet: device id {self.device_id} must be in 1..65534")
        name = self.board_name or board.name
        if len(name) > 64 or not name.isascii():
            raise InputError(f"adaptive_resnet: HELLO board name '{name}' must be ASCII, at most 64 characters")

    def context(self, board: Board) -> AdaptiveContext:
        return AdaptiveContext(
            bundle_id=f"0x{self.bundle_id:08X}u", device_id=self.device_id, blocks=self.blocks,
            default_mask=f"0x{self.default_mask:X}", udp=int(self.transport == "udp"), udp_port=self.udp_port,
            hello_name=(self.board_name or board.name).replace("\\", "_").replace('"', "_"))

    def meta(self) -> dict[str, Any]:
        return {"bundle_id": f"{self.bundle_id:08x}", "device_id": self.device_id, "transport": self.transport,
                "udp_port": self.udp_port, "blocks": self.blocks, "default_mask": self.default_mask}


def config_from_manifest(manifest: Manifest, device_id: int = 1, transport: str = "uart", udp_port: int = 5600,
                         model: str | None = None) -> AdaptiveAppConfig:
    from tinysplit.methods.adaptive_resnet.bundle import layout_for

    lay = layout_for(manifest)
    if model is not None and model != lay.device_model:
        raise InputError(f"adaptive_resnet: the app runs device model '{lay.device_model}', not '{model}'")
    return AdaptiveAppConfig(int(manifest.bundle_id, 16), device_id, lay.blocks, lay.default_mask, lay.output_bytes,
                             transport, udp_port)


# --- end to end ---------------------------------------------------------------------------------

def add_e2e_arguments(p: Any) -> None:
    p.add_argument("--masks", default=None, metavar="M1,M2,...|all",
                   help="adaptive_resnet bundles: skip masks for --e2e (integers, 0x.. allowed; 'all': every mask; "
                        "default: 0, each block alone, all blocks)")


def parse_masks(text: str, blocks: int) -> tuple[int, ...]:
    """'0,1,0x3' or 'all' -> masks, each checked against the block count (InputError)."""
    from tinysplit.exporter.codegen.blocks import check_mask

    if text.strip() == "all":
        return tuple(range(1 << blocks))
    try:
        masks = tuple(int(t.strip(), 0) for t in text.split(",") if t.strip())
    except ValueError:
        raise InputError(f"--masks must be comma-separated integers like 0,1,0x5 (or 'all'), got '{text}'") from None
    if not masks:
        raise InputError("--masks is empty")
    return tuple(check_mask(m, blocks) for m in masks)


def default_masks(blocks: int) -> tuple[int, ...]:
    return tuple(dict.fromkeys([0, *(1 << i for i in range(blocks)), (1 << blocks) - 1]))


def e2e_from_args(bundle: Path, board: str, samples: int, transport: str, args: Any, **kw: Any) -> dict[str, Any]:
    text = getattr(args, "masks", None)
    return run_e2e(bundle, board, samples, transport, masks_text=text, **kw)


def format_e2e(r: dict[str, Any]) -> str:
    t = r["throughput"]
    return "\n".join([
        f"{r['board']} over {r['transport']}: {r['samples']} samples per mask; firmware flash "
        f"{r['firmware']['flash_bytes']:,} B, RAM {r['firmware']['ram_bytes']:,} B",
        *(f"  mask 0x{row['mask']:0{max(1, (r['blocks'] + 3) // 4)}x}: labels equal to the reference "
          f"{100 * row['labels_equal_reference']:6.2f}%, device used the mask {100 * row['mask_used']:6.2f}%, "
          f"{row['instructions']:,} instructions"
          + (f" (predicted {row['predicted_instructions']:,})" if row.get("predicted_instructions") is not None else "")
          for row in r["masks"].values()),
        f"  device -> host: {t['frames_per_s']:.0f} frames/s, {t['bytes_per_s'] / 1000:.1f} kB/s; "
        f"device drops {r['device_stats']['drops']}, server drops {r['server']['drops']}"])


# (bundle, masks, n, outputs_q) -> {mask: labels (N,)}
Reference = Callable[[Path, list[int], int], dict[int, np.ndarray]]


def _reference(bundle: Path, masks: list[int], n: int) -> dict[int, np.ndarray]:
    from tinysplit.methods.adaptive_resnet.reference import labels_for_masks

    return labels_for_masks(bundle, masks, n=n)


def frame_fields(frames: list[bytes]) -> tuple[set[int], set[int]]:
    """The skip masks and instruction counts the ADAPTIVE_OUTPUT frames of one sample carry."""
    from tinysplit.wire import decode_frame
    from tinysplit.wire.payloads import decode_payload

    masks, instr = set(), set()
    for raw in frames:
        p = decode_payload(decode_frame(raw))
        masks.add(p.skip_mask)
        instr.add(p.instructions)
    return masks, instr


def predicted_instructions(measured: dict[int, int], blocks: int) -> dict[int, int]:
    """Per mask, the count the per-block costs predict: I(0) - sum over skipped blocks of
    (I(0) - I(block alone)); empty where mask 0 or a single-block mask was not measured."""
    full = measured.get(0)
    if full is None or any((1 << i) not in measured for i in range(blocks)):
        return {}
    cost = [full - measured[1 << i] for i in range(blocks)]
    return {m: full - sum(cost[i] for i in range(blocks) if m >> i & 1) for m in measured}


def run_e2e(bundle: str | Path, board_name: str, samples: int = 20, transport: str = "uart",
            masks: tuple[int, ...] | list[int] = (), *, masks_text: str | None = None, device_id: int = 1,
            workdir: str | Path | None = None, model: str | None = None, sources: ModelSources | None = None,
            reference: Reference | None = None, timeout: float = 30.0, device_key: bytes | None = None) -> dict[str, Any]:
    """Adaptive ResNet end to end: the app in QEMU -> wire protocol -> TailServer -> labels, per skip mask
    (each sent as CONTROL key 4), checked against the reference pipeline (TFLite Micro on the head with
    those blocks removed, then the tail). Each mask's row: labels equal to the reference, the fraction of
    samples whose frames say they ran with that mask, the instruction count the device measured (one
    value per mask: counts are exact in QEMU) and, when mask 0 and every single-block mask were run,
    the count the per-block costs predict."""
    from tinysplit.firmware.devicelink import free_udp_port
    from tinysplit.firmware.e2e import Setting, prepare, run_app
    from tinysplit.methods.adaptive_resnet.bundle import layout_for

    p = prepare(bundle, board_name, samples, transport, model)
    lay = layout_for(p.manifest)
    if masks_text:
        masks = parse_masks(masks_text, lay.blocks)
    masks = tuple(lay.check_mask(m) for m in masks) or default_masks(lay.blocks)
    cfg = config_from_manifest(p.manifest, device_id=device_id, transport=transport,
                               udp_port=free_udp_port() if transport == "udp" else 5600)
    ref = (reference or _reference)(p.bundle, list(masks), samples)

    def hello_problem(h: Any) -> str | None:
        if h.output_bytes != lay.output_bytes or h.units_total != lay.blocks:
            return (f"HELLO says {h.output_bytes} output bytes and {h.units_total} blocks, the bundle "
                    f"{lay.output_bytes} and {lay.blocks}")
        return None

    def row(s: Setting, run: Any) -> dict[str, Any]:
        mask = int(s.key)
        fields = [frame_fields(f) if f else (set(), set()) for f in run.frames]
        used = [ms == {mask} for ms, _ in fields]
        counts = [c for _, cs in fields for c in cs]  # one count per sample (every part carries it)
        return {"mask": mask, "labels_equal_reference": float(np.mean(run.labels == ref[mask])),
                "mask_used": float(np.mean(used)),
                "instructions": int(round(float(np.mean(counts)))) if len(counts) == len(fields) else None,
                "instructions_min": min(counts, default=None), "instructions_max": max(counts, default=None),
                "mismatches": [int(q) for q, lab, r in zip(run.seqs, run.labels, ref[mask]) if lab != r]}

    settings = [Setting(str(m), f"mask 0x{m:x}", ((CONTROL_SKIP_MASK, m),)) for m in masks]
    report = run_app(p, "adaptive_resnet", cfg, settings, row, hello_problem, sources=sources, model=model,
                     workdir=workdir, timeout=timeout, device_key=device_key)
    rows = report.pop("settings")
    measured = {r["mask"]: r["instructions"] for r in rows.values() if r["instructions"] is not None}
    predicted = predicted_instructions(measured, lay.blocks)
    for r in rows.values():
        pred = predicted.get(r["mask"])
        r["predicted_instructions"] = pred
        r["prediction_error"] = None if pred is None else abs(pred - r["instructions"]) / measured[0]
    report["masks"] = rows
    report["blocks"] = lay.blocks
    report["ok"] = all(r["labels_equal_reference"] == 1.0 and r["mask_used"] == 1.0 and r["instructions"] is not None
                       and (r["prediction_error"] is None or r["prediction_error"] <= PREDICTION_TOLERANCE)
                       for r in rows.values())
    return report
