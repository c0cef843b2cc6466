"""The firmware half of NAIR: the ``nair`` app's configuration from a bundle (its slice plan from
``method_data.nair``), the checks against the model and board, the values its templates read
(``firmware_templates/app/nair/``), and the end-to-end check in QEMU against the reference pipeline
(``tinysplit hil --e2e --budgets ...``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinysplit.boards import Board
from tinysplit.errors import InputError
from tinysplit.manifest import Manifest
from tinysplit.modelsrc import ModelSources
from tinysplit.wire.frame import MAX_PAYLOAD

NAIR_SLICE_HEADER = 6  # u16 unit_start, u16 unit_count, u16 units_total
CONTROL_BUDGET_UNITS = 1  # CONTROL key: the budget in units (2: in bytes)


@dataclass(frozen=True)
class NairContext:
    """The nair app's values as the templates read them (numbers and C literals, no logic)."""

    bundle_id: str  # "0x1234ABCDu"
    device_id: int
    positions: int
    channels: int
    unit_channels: int
    units_total: int
    unit_bytes: int
    units_per_frame: int
    default_budget_units: int
    udp: int  # 1: slices leave by UDP
    udp_port: int
    hello_name: str


@dataclass(frozen=True)
class NairAppConfig:
    """What the nair app needs besides the model: the bundle's identity and slice plan, the
    device id and the transport its frames leave by (see ``config_from_manifest``)."""

    bundle_id: int
    device_id: int
    height: int
    width: int
    channels: int
    unit_channels: int
    default_budget_units: int
    transport: str = "uart"  # "uart" | "udp"
    udp_port: int = 5600  # host port the board sends datagrams to (10.0.2.2 under QEMU user-net)
    board_name: str = ""  # name sent in HELLO (default: the board's)

    @property
    def units_total(self) -> int:
        return self.channels // self.unit_channels

    @property
    def unit_bytes(self) -> int:
        return self.height * self.width * self.unit_channels

    @property
    def units_per_frame(self) -> int:
        return max(1, (MAX_PAYLOAD - NAIR_SLICE_HEADER) // self.unit_bytes)

    def check(self, board: Board, model: ModelSources) -> None:
        """InputError unless the config matches the model and the HELLO name is sendable."""
        u, c = self.unit_channels, self.channels
        if min(self.height, self.width, c, u) < 1 or c % u:
            raise InputError(f"nair: unit_channels {u} must divide the {c} output channels")
        if self.height * self.width * c != model.output.bytes:
            raise InputError(f"nair: slice plan {self.height}x{self.width}x{c} does not match the model's "
                             f"{model.output.bytes} output bytes")
        if self.unit_bytes + NAIR_SLICE_HEADER > MAX_PAYLOAD:
            raise InputError(f"nair: one unit is {self.unit_bytes} bytes; a NAIR_SLICE frame holds at most "
                             f"{MAX_PAYLOAD - NAIR_SLICE_HEADER}: use fewer channels per unit")
        if not 1 <= self.default_budget_units <= self.units_total:
            raise InputError(f"nair: default budget {self.default_budget_units} is not in 1..{self.units_total}")
        name = self.board_name or board.name
        if len(name) > 64 or not name.isascii():
            raise InputError(f"nair: HELLO board name '{name}' must be ASCII, at most 64 characters")

    def context(self, board: Board) -> NairContext:
        return NairContext(
            bundle_id=f"0x{self.bundle_id:08X}u", device_id=self.device_id, positions=self.height * self.width,
            channels=self.channels, unit_channels=self.unit_channels, units_total=self.units_total,
            unit_bytes=self.unit_bytes, units_per_frame=self.units_per_frame,
            default_budget_units=self.default_budget_units, udp=int(self.transport == "udp"),
            udp_port=self.udp_port,
            hello_name=(self.board_name or board.name).replace("\\", "_").replace('"', "_"))

    def meta(self) -> dict[str, Any]:
        return {"bundle_id": f"{self.bundle_id:08x}", "device_id": self.device_id, "transport": self.transport,
                "udp_port": self.udp_port, "height": self.height, "width": self.width, "channels": self.channels,
                "unit_channels": self.unit_channels, "units_total": self.units_total,
                "default_budget_units": self.default_budget_units}


def config_from_manifest(manifest: Manifest, device_id: int = 1, transport: str = "uart", udp_port: int = 5600,
                         model: str | None = None) -> NairAppConfig:
    """The nair app's config from a bundle manifest (its slice plan from method_data.nair)."""
    from tinysplit.methods.nair.slices import plan_for

    plan = plan_for(manifest, model)
    return NairAppConfig(int(manifest.bundle_id, 16), device_id, plan.height, plan.width, plan.channels,
                         plan.unit_channels, plan.default_budget_units, transport, udp_port)


# --- end to end ---------------------------------------------------------------------------------

def add_e2e_arguments(p: Any) -> None:
    """NAIR's options of ``tinysplit hil --e2e``."""
    p.add_argument("--budgets", default=None, metavar="B1,B2,...",
                   help="nair bundles: slice budgets in units for --e2e (default: 1,4,...,units_total)")


def e2e_from_args(bundle: Path, board: str, samples: int, transport: str, args: Any, **kw: Any) -> dict[str, Any]:
    budgets = parse_budgets(args.budgets) if getattr(args, "budgets", None) else ()
    return run_e2e(bundle, board, samples, transport, budgets, **kw)


def format_e2e(r: dict[str, Any]) -> str:
    t = r["throughput"]
    return "\n".join([
        f"{r['board']} over {r['transport']}: {r['samples']} samples per budget; firmware flash "
        f"{r['firmware']['flash_bytes']:,} B, RAM {r['firmware']['ram_bytes']:,} B",
        *(f"  budget {int(b):3} units: labels equal to the reference {100 * row['labels_equal_reference']:6.2f}%"
          f", {row['bytes_per_sample']:.0f} B/sample, {row['samples_per_s']:.1f} samples/s"
          for b, row in r["budgets"].items()),
        f"  device -> host: {t['frames_per_s']:.0f} frames/s, {t['bytes_per_s'] / 1000:.1f} kB/s; "
        f"device drops {r['device_stats']['drops']}, server drops {r['server']['drops']}"])


def parse_budgets(text: str) -> tuple[int, ...]:
    """'1,4,16' -> (1, 4, 16); InputError for anything else."""
    try:
        budgets = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise InputError(f"--budgets must be comma-separated unit counts like 1,4,16, got '{text}'") from None
    if not budgets or min(budgets) < 1:
        raise InputError(f"--budgets must list unit counts >= 1, got '{text}'")
    return budgets


def run_e2e(bundle: str | Path, board_name: str, samples: int = 20, transport: str = "uart",
            budgets: tuple[int, ...] | list[int] = (), *, device_id: int = 1, workdir: str | Path | None = None,
            model: str | None = None,
            sources: ModelSources | None = None, reference_features: np.ndarray | None = None,
            timeout: float = 30.0, device_key: bytes | None = None) -> dict[str, Any]:
    """NAIR end to end: the nair app in QEMU -> wire protocol -> TailServer -> labels, checked against
    ``tinysplit.methods.nair.reference.labels_at_budgets`` at every budget.

    Renders and builds the nair app for the board (generating the device model's C, or taking
    ``sources``), starts it in QEMU with a ``DeviceLink`` and an in-process ``TailServer`` on the
    link's data transport, and for each budget sends a CONTROL budget frame and the held-out samples
    as INPUT frames over the UART, then collects the server's predictions. The report gives per
    budget: samples, the fraction of labels equal to the reference (must be 1.0), slice bytes per
    sample, the server's counters; plus the firmware's flash/RAM, the device's STATS and the device
    -> host throughput. ``sources`` and ``reference_features`` (the device model's int8 outputs for
    the samples) replace the code generator and the TFLite Micro reference (tests with a fake model)."""
    from tinysplit.firmware.devicelink import free_udp_port
    from tinysplit.firmware.e2e import Setting, prepare, run_app
    from tinysplit.methods.nair.reference import labels_at_budgets
    from tinysplit.methods.nair.slices import plan_for

    p = prepare(bundle, board_name, samples, transport, model)
    plan = plan_for(p.manifest)
    budgets = tuple(budgets) or tuple(sorted({1, *range(4, plan.units_total, 4), plan.units_total}))
    bad = [b for b in budgets if not 1 <= b <= plan.units_total]
    if bad:
        raise InputError(f"budgets {bad} are not in 1..{plan.units_total} (the bundle's units)")
    cfg = config_from_manifest(p.manifest, device_id=device_id, transport=transport,
                               udp_port=free_udp_port() if transport == "udp" else 5600)
    ref = labels_at_budgets(p.bundle, list(budgets), n=samples, features_q=reference_features)

    def hello_problem(h: Any) -> str | None:
        if h.units_total != cfg.units_total or h.unit_bytes != cfg.unit_bytes:
            return (f"HELLO says {h.units_total} units of {h.unit_bytes} bytes, the bundle {cfg.units_total} of "
                    f"{cfg.unit_bytes}")
        return None

    def row(s: Setting, run: Any) -> dict[str, Any]:
        b = int(s.key)
        got = run.records
        return {"budget_units": b,
                "labels_equal_reference": float(np.mean(run.labels == ref[b])),
                "mismatches": [int(q) for q, lab, r in zip(run.seqs, run.labels, ref[b]) if lab != r],
                "complete": sum(1 for q in run.seqs if got.get(q, {}).get("complete")),
                "units_received": sorted({int(got[q]["units_received"]) for q in run.seqs if q in got})}

    settings = [Setting(str(b), f"budget {b}", ((CONTROL_BUDGET_UNITS, b),)) for b in budgets]
    report = run_app(p, "nair", cfg, settings, row, hello_problem, sources=sources, model=model, workdir=workdir,
                     timeout=timeout, device_key=device_key)
    report["budgets"] = report.pop("settings")
    report["ok"] = all(r["labels_equal_reference"] == 1.0 for r in report["budgets"].values())
    return report
