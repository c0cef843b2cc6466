"""The firmware half of ReBEL: the ``rebel`` app's configuration from a bundle (``method_data.rebel``:
latent size D, classes C, the default threshold as an int8 q_t), the checks against the model and
board, the values its template reads (``firmware_templates/app/rebel/``), and the end-to-end check in
QEMU against the reference pipeline (``tinysplit hil --e2e --thresholds ...``).

The device rule (``tinysplit.methods.rebel.decision``): the model's one int8 output is [z (D),
confidences (C)]; c* is the first index of the largest confidence q; the sample is served on the
device (EARLY_LABEL c*, q + 128) iff q >= q_t, otherwise z goes to the host (one LATENT frame).
CONTROL key 3 sets q_t = value - 128 (value 0..256, 256: never early)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tinysplit.boards import Board
from tinysplit.errors import InputError, ManifestError
from tinysplit.manifest import Manifest
from tinysplit.modelsrc import ModelSources

CONTROL_THRESHOLD = 3  # CONTROL key: value = q_t + 128 (0..256)
QT_OFFSET = 128
QT_NEVER = 128  # q_t above every int8 confidence: nothing is served on the device
MAX_LATENT = 1018  # D: z fits one LATENT frame (the contract's bound)
EARLY_LABEL_BYTES = 3  # u16 label, u8 confidence + 128


@dataclass(frozen=True)
class RebelContext:
    """The rebel app's values as the template reads them (numbers and C literals, no logic)."""

    bundle_id: str  # "0x1234ABCDu"
    device_id: int
    latent_dim: int
    classes: int
    default_q_t: int
    max_latent: int
    udp: int  # 1: frames leave by UDP
    udp_port: int
    hello_name: str


@dataclass(frozen=True)
class RebelAppConfig:
    """What the rebel app needs besides the model: the bundle's identity, the output layout [z (D),
    confidences (C)], the default int8 threshold q_t (-128..128; 128: never early), the device id and
    the transport its frames leave by (see ``config_from_manifest``)."""

    bundle_id: int
    device_id: int
    latent_dim: int
    classes: int
    default_q_t: int
    transport: str = "uart"  # "uart" | "udp"
    udp_port: int = 5600  # host port the board sends datagrams to (10.0.2.2 under QEMU user-net)
    board_name: str = ""  # name sent in HELLO (default: the board's)

    @property
    def output_bytes(self) -> int:
        return self.latent_dim + self.classes

    def check(self, board: Board, model: ModelSources) -> None:
        """InputError unless the config matches the model and the HELLO name is sendable."""
        d, c = self.latent_dim, self.classes
        if d < 1 or c < 1:
            raise InputError(f"rebel: latent_dim ({d}) and classes ({c}) must be >= 1")
        if d + c != model.output.bytes:
            raise InputError(f"rebel: latent_dim {d} + classes {c} = {d + c} does not match the model's "
                             f"{model.output.bytes} output bytes (the output must be [z, confidences])")
        if d > MAX_LATENT:
            raise InputError(f"rebel: latent_dim {d} is too large: z must fit one LATENT frame "
                             f"(at most {MAX_LATENT} bytes)")
        if c > 0x10000:
            raise InputError(f"rebel: {c} classes; an early label is a u16 (at most 65,536 classes)")
        if not -QT_OFFSET <= self.default_q_t <= QT_NEVER:
            raise InputError(f"rebel: default q_t {self.default_q_t} is not in -128..128")
        name = self.board_name or board.name
        if len(name) > 64 or not name.isascii():
            raise InputError(f"rebel: HELLO board name '{name}' must be ASCII, at most 64 characters")

    def context(self, board: Board) -> RebelContext:
        return RebelContext(
            bundle_id=f"0x{self.bundle_id:08X}u", device_id=self.device_id, latent_dim=self.latent_dim,
            classes=self.classes, default_q_t=self.default_q_t, max_latent=MAX_LATENT,
            udp=int(self.transport == "udp"), udp_port=self.udp_port,
            hello_name=(self.board_name or board.name).replace("\\", "_").replace('"', "_"))

    def meta(self) -> dict[str, Any]:
        return {"bundle_id": f"{self.bundle_id:08x}", "device_id": self.device_id, "transport": self.transport,
                "udp_port": self.udp_port, "latent_dim": self.latent_dim, "classes": self.classes,
                "default_q_t": self.default_q_t}


def control_value(q_t: int) -> int:
    """The CONTROL key 3 value for an int8 threshold q_t (-128..128)."""
    if not -QT_OFFSET <= q_t <= QT_NEVER:
        raise InputError(f"q_t {q_t} is not in -128..128")
    return q_t + QT_OFFSET


@dataclass(frozen=True)
class RebelLayout:
    """A rebel bundle's device output as the app reads it: D, C, s and the output's quantization."""

    latent_dim: int
    classes: int
    confidence_scale: float
    default_threshold: float
    scale: float
    zero_point: int

    def q_t(self, threshold: float) -> int:
        from tinysplit.methods.rebel.decision import threshold_q

        try:
            return threshold_q(threshold, self.confidence_scale, self.scale, self.zero_point)
        except ValueError as e:
            raise InputError(f"rebel: {e}") from None


def layout_for(manifest: Manifest, model: str | None = None) -> RebelLayout:
    """method_data.rebel and the device model's output quantization, checked against each other."""
    if manifest.method != "rebel" or "rebel" not in manifest.method_data:
        raise ManifestError(f"bundle '{manifest.name}' is a '{manifest.method}' bundle without ReBEL's layout "
                            "(field 'method_data.rebel'); export it with tinysplit.methods.rebel.export")
    dm = manifest.device_model(model) if model else manifest.device_models[0]
    if len(dm.outputs) != 1:
        raise ManifestError(f"device model '{dm.name}' has {len(dm.outputs)} outputs; ReBEL's has one, "
                            "[z, confidences]")
    out = dm.outputs[0]
    size = math.prod(out.shape[1:])
    r = manifest.method_data["rebel"]
    d, c = int(r["latent_dim"]), int(r["classes"])
    if d + c != size:
        raise ManifestError(f"field 'method_data.rebel': latent_dim {d} + classes {c} = {d + c}, but device model "
                            f"'{dm.name}' has {size} output values")
    if d > MAX_LATENT:
        raise ManifestError(f"field 'method_data.rebel.latent_dim': {d} > {MAX_LATENT} (z must fit one LATENT frame)")
    return RebelLayout(d, c, float(r["confidence_scale"]), float(r["default_threshold"]), out.scale,
                       out.zero_point)


def config_from_manifest(manifest: Manifest, device_id: int = 1, transport: str = "uart", udp_port: int = 5600,
                         model: str | None = None) -> RebelAppConfig:
    """The rebel app's config from a bundle manifest (method_data.rebel; q_t from default_threshold
    with the device output's scale and zero point, as decision.threshold_q)."""
    lay = layout_for(manifest, model)
    return RebelAppConfig(int(manifest.bundle_id, 16), device_id, lay.latent_dim, lay.classes,
                          lay.q_t(lay.default_threshold), transport, udp_port)


# --- end to end ---------------------------------------------------------------------------------

def add_e2e_arguments(p: Any) -> None:
    """ReBEL's options of ``tinysplit hil --e2e``."""
    p.add_argument("--thresholds", default=None, metavar="T1,T2,...",
                   help="rebel bundles: confidence thresholds in [0, 1] for --e2e (default: 0,the bundle's "
                        "default,1)")


def parse_thresholds(text: str) -> tuple[float, ...]:
    """'0,0.5,1' -> (0.0, 0.5, 1.0); InputError for anything else."""
    try:
        ts = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise InputError(f"--thresholds must be comma-separated numbers like 0,0.5,1, got '{text}'") from None
    if not ts or any(not 0.0 <= t <= 1.0 for t in ts):  # also refuses NaN
        raise InputError(f"--thresholds must list numbers in [0, 1], got '{text}'")
    return ts


def e2e_from_args(bundle: Path, board: str, samples: int, transport: str, args: Any, **kw: Any) -> dict[str, Any]:
    thresholds = parse_thresholds(args.thresholds) if getattr(args, "thresholds", None) else ()
    return run_e2e(bundle, board, samples, transport, thresholds, **kw)


def format_e2e(r: dict[str, Any]) -> str:
    t = r["throughput"]
    return "\n".join([
        f"{r['board']} over {r['transport']}: {r['samples']} samples per threshold; firmware flash "
        f"{r['firmware']['flash_bytes']:,} B, RAM {r['firmware']['ram_bytes']:,} B",
        *(f"  threshold {row['threshold']:.3f} (q_t {row['q_t']:4}): labels equal to the reference "
          f"{100 * row['labels_equal_reference']:6.2f}%, paths {100 * row['paths_equal_reference']:6.2f}%, "
          f"early {100 * row['early_fraction']:5.1f}%, {row['bytes_per_sample']:.0f} B/sample, "
          f"{row['samples_per_s']:.1f} samples/s"
          for row in r["thresholds"].values()),
        f"  device -> host: {t['frames_per_s']:.0f} frames/s, {t['bytes_per_s'] / 1000:.1f} kB/s; "
        f"device drops {r['device_stats']['drops']}, server drops {r['server']['drops']}"])


# (bundle, thresholds, n, outputs_q) -> {threshold: (labels (N,), early (N,) bool)}
Reference = Callable[[Path, list[float], int, "np.ndarray | None"], dict[float, tuple[np.ndarray, np.ndarray]]]


def _reference(bundle: Path, thresholds: list[float], n: int, outputs_q: np.ndarray | None
               ) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """The reference labels and paths (tinysplit.methods.rebel.reference), imported here only."""
    from tinysplit.methods.rebel.reference import labels_at_thresholds

    got = labels_at_thresholds(bundle, list(thresholds), n=n, outputs_q=outputs_q)
    return {t: (got[t].labels, got[t].early) for t in thresholds}


def run_e2e(bundle: str | Path, board_name: str, samples: int = 20, transport: str = "uart",
            thresholds: tuple[float, ...] | list[float] = (), *, device_id: int = 1,
            workdir: str | Path | None = None, model: str | None = None, sources: ModelSources | None = None,
            reference_features: np.ndarray | None = None, reference: Reference | None = None,
            timeout: float = 30.0, device_key: bytes | None = None) -> dict[str, Any]:
    """ReBEL end to end: the rebel app in QEMU -> wire protocol -> TailServer -> labels, checked against
    the reference pipeline (``tinysplit.methods.rebel.reference``) at every threshold.

    Renders and builds the rebel app for the board (generating the device model's C, or taking
    ``sources``), starts it in QEMU with a ``DeviceLink`` and an in-process ``TailServer`` on the
    link's data transport, and for each threshold sends CONTROL key 3 (q_t + 128, q_t from
    decision.threshold_q) and the held-out samples as INPUT frames, then collects the server's
    predictions. The report gives per threshold: q_t, the fraction of labels and of paths (early on
    the device / remote) equal to the reference (both must be 1.0), the early fraction, bytes per
    sample, the server's counters; plus the firmware's flash/RAM, the device's STATS and the device ->
    host throughput. ``sources`` and ``reference_features`` (the device model's int8 outputs for the
    samples) replace the code generator and TFLite Micro (tests with a fake model); ``reference``
    replaces the reference pipeline."""
    from tinysplit.firmware.devicelink import free_udp_port
    from tinysplit.firmware.e2e import Setting, prepare, run_app
    from tinysplit.wire import FrameType, decode_frame

    p = prepare(bundle, board_name, samples, transport, model)
    lay = layout_for(p.manifest)
    thresholds = tuple(float(t) for t in thresholds) or tuple(sorted({0.0, lay.default_threshold, 1.0}))
    parse_thresholds(",".join(repr(t) for t in thresholds))  # each in [0, 1]
    cfg = config_from_manifest(p.manifest, device_id=device_id, transport=transport,
                               udp_port=free_udp_port() if transport == "udp" else 5600)
    ref = (reference or _reference)(p.bundle, list(thresholds), samples, reference_features)

    def hello_problem(h: Any) -> str | None:
        if h.output_bytes != cfg.output_bytes or h.units_total != 0:
            return (f"HELLO says {h.output_bytes} output bytes and {h.units_total} units, the bundle "
                    f"{cfg.output_bytes} and none")
        return None

    def row(s: Setting, run: Any) -> dict[str, Any]:
        t = float(s.key)
        early = np.array([bool(f) and decode_frame(f[0]).type == FrameType.EARLY_LABEL for f in run.frames])
        served_early = np.array([run.records.get(q, {}).get("path") == "device" for q in run.seqs])
        ref_labels, ref_early = ref[t]
        return {"threshold": t, "q_t": lay.q_t(t),
                "labels_equal_reference": float(np.mean(run.labels == ref_labels)),
                "paths_equal_reference": float(np.mean((early == ref_early) & (served_early == ref_early))),
                "early": early.tolist(),
                "mismatches": [int(q) for q, lab, r, e, re in zip(run.seqs, run.labels, ref_labels, early, ref_early)
                               if lab != r or e != re],
                "early_fraction": float(np.mean(early))}

    settings = [Setting(repr(t), f"threshold {t}", ((CONTROL_THRESHOLD, control_value(lay.q_t(t))),))
                for t in thresholds]
    report = run_app(p, "rebel", cfg, settings, row, hello_problem, sources=sources, model=model, workdir=workdir,
                     timeout=timeout, device_key=device_key)
    report["thresholds"] = report.pop("settings")
    report["ok"] = all(r["labels_equal_reference"] == 1.0 and r["paths_equal_reference"] == 1.0
                       for r in report["thresholds"].values())
    return report
