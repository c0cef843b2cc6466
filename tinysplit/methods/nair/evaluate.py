"""NAIR accuracy vs bandwidth: every variant exported to int8 and evaluated as deployed (TFLite Micro
head, zero-filled missing units, ONNX tail), against units sent and against link latency."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch import nn

from tinysplit.errors import InputError
from tinysplit.files import write_atomic
from tinysplit.link import LinkModel
from tinysplit.methods.nair.clio import tail_parameters
from tinysplit.methods.nair.order import RetuneConfig, prepare_variant
from tinysplit.methods.nair.variants import ALL_VARIANTS, VARIANT_HELP, VARIANTS


@dataclass
class NairSpec:
    """A trained split model for NAIR: head and tail modules, the head's last conv (split layer) and
    the tail's first conv, and data (float32 NCHW inputs, int64 labels)."""

    name: str
    head: nn.Module
    tail: nn.Module
    split_layer: str
    tail_first_layer: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_heldout: np.ndarray
    y_heldout: np.ndarray
    calibration: np.ndarray
    classes: tuple[str, ...] = ()
    unit_channels: int = 2


def split_sequential(model: nn.Sequential, after: str) -> tuple[nn.Sequential, nn.Sequential, str, str]:
    """Cut an nn.Sequential after its child ``after``: (head, tail, split layer, tail's first conv).
    The split layer is the head's last Conv2d, the tail's first layer its first Conv2d."""
    if not isinstance(model, nn.Sequential):
        raise InputError("split_sequential needs an nn.Sequential; for other models give head, tail and the "
                         "layer names to NairSpec yourself")
    names = list(model._modules)
    if after not in names:
        raise InputError(f"'{after}' is not a child of the model; its children are {', '.join(names)}")
    k = names.index(after) + 1
    head = nn.Sequential(*[model._modules[n] for n in names[:k]])
    tail = nn.Sequential(*[model._modules[n] for n in names[k:]])
    convs_h = [n for n, m in head.named_modules() if isinstance(m, nn.Conv2d)]
    convs_t = [n for n, m in tail.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs_h:
        raise InputError(f"no Conv2d before '{after}': NAIR ranks the filters of the head's last convolution, so "
                         "split after one")
    if not convs_t:
        raise InputError(f"no Conv2d after '{after}': the tail must start with a convolution whose input "
                         "channels NAIR can permute")
    c_out = head.get_submodule(convs_h[-1]).out_channels
    c_in = tail.get_submodule(convs_t[0]).in_channels
    if c_out != c_in:
        raise InputError(f"the head's last conv '{convs_h[-1]}' has {c_out} output channels but the tail's first "
                         f"conv '{convs_t[0]}' takes {c_in}: the split is not between them")
    return head, tail, convs_h[-1], convs_t[0]


@dataclass
class VariantResult:
    variant: str
    accuracy: list[float]
    bundle: str
    info: dict[str, Any] = field(default_factory=dict)


def wire_bytes_per_budget(plan, bundle_id: int) -> list[int]:
    """Bytes on the wire per sample (frames incl. header and CRC) for 1..J units."""
    from tinysplit.methods.nair.devicesim import slice_frames

    zeros = np.zeros((plan.height, plan.width, plan.channels), np.int8)
    return [sum(len(f) for f in slice_frames(plan, zeros, b, 0, bundle_id, 0)) for b in range(1, plan.units_total + 1)]


def evaluate(spec: NairSpec, out_dir: Path, variants: tuple[str, ...] = VARIANTS,
             config: RetuneConfig = RetuneConfig(), link: LinkModel = LinkModel(),
             progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    from tinysplit.exporter import DevicePiece, ExportSpec, TailPiece, export_bundle
    from tinysplit.manifest import load_manifest
    from tinysplit.methods.nair.reference import labels_at_budgets
    from tinysplit.methods.nair.slices import plan_for

    say = progress or (lambda m: None)
    bad = [v for v in variants if v not in ALL_VARIANTS]
    if bad:
        raise InputError(f"unknown variant(s) {', '.join(bad)}; choose from {', '.join(ALL_VARIANTS)}")
    out_dir = Path(out_dir)
    (out_dir / "bundles").mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    bytes_per_budget: list[int] = []
    units_total = 0
    for v in variants:
        head, tail = copy.deepcopy(spec.head), copy.deepcopy(spec.tail)
        say(f"{v}: {VARIANT_HELP[v]}")
        if v == "clio":
            from tinysplit.methods.nair.clio import progressive_tails

            order, tails, info = progressive_tails(head, tail, spec.split_layer, spec.tail_first_layer, spec.x_train,
                                                   spec.y_train, spec.unit_channels, config, log=say)
            pieces = [TailPiece(f"tail_{j}", t, ("head",)) for j, t in enumerate(tails, 1)]
            method_data = order.method_data()
            method_data["nair"]["tail_per_units"] = [p.name for p in pieces]
        else:
            order, info = prepare_variant(head, tail, spec.split_layer, spec.tail_first_layer, v, spec.x_train,
                                          spec.y_train, spec.unit_channels, config, log=say)
            pieces, method_data = [TailPiece("tail", tail, ("head",))], order.method_data()
            info = {**info, "tail_parameters": tail_parameters([tail])}
        es = ExportSpec(name=f"{spec.name}_{v}", device=[DevicePiece("head", head, "features")],
                        tails=pieces, calibration=spec.calibration,
                        heldout=spec.x_heldout, heldout_labels=spec.y_heldout, classes=spec.classes,
                        method="nair", method_data={**method_data, "variant": info})
        bundle = out_dir / "bundles" / v
        say(f"{v}: exporting to int8")
        export_bundle(es, bundle, force=True)
        m = load_manifest(bundle)
        plan = plan_for(m)
        units_total = plan.units_total
        budgets = list(range(1, units_total + 1))
        say(f"{v}: accuracy at {units_total} budgets (TFLite Micro head, zero-filled units, ONNX tail)")
        labels = labels_at_budgets(bundle, budgets)
        acc = [float((labels[b] == spec.y_heldout).mean()) for b in budgets]
        bytes_per_budget = wire_bytes_per_budget(plan, int(m.bundle_id, 16))
        results[v] = {"accuracy": [round(a, 5) for a in acc], "bundle": str(bundle), "retune": info}
    budgets = list(range(1, units_total + 1))
    report = {
        "name": spec.name, "heldout_samples": int(len(spec.y_heldout)), "unit_channels": spec.unit_channels,
        "units_total": units_total, "budgets_units": budgets, "bytes_per_sample": bytes_per_budget,
        "link": {"rate_bps": link.rate_bps, "overhead_ms": link.overhead_s * 1000},
        "latency_ms": [round(link.latency_s(b) * 1000, 3) for b in bytes_per_budget],
        "epochs": config.epochs, "variants": results}
    write_atomic(out_dir / "nair_eval.json", (json.dumps(report, indent=2) + "\n").encode())
    write_atomic(out_dir / "nair_eval.png", plot(report))
    return report


def plot(report: dict[str, Any]) -> bytes:
    """PNG: accuracy vs units sent, and vs latency on the link."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for v, r in report["variants"].items():
        acc = [100 * x for x in r["accuracy"]]
        a.plot(report["budgets_units"], acc, marker="o", ms=3, label=v)
        b.plot(report["latency_ms"], acc, marker="o", ms=3, label=v)
    a.set_xlabel(f"units sent (of {report['units_total']}, {report['unit_channels']} channels each)")
    b.set_xlabel(f"latency on a {report['link']['rate_bps'] / 1000:g} kbps link (ms)")
    for ax in (a, b):
        ax.set_ylabel("top-1 accuracy (%), int8 head + host tail")
        ax.grid(alpha=0.3)
        ax.set_ylim(0, 100)
    a.legend(loc="lower right")
    fig.suptitle(f"NAIR accuracy vs bandwidth: {report['name']} ({report['heldout_samples']} held-out samples)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def digits_nair_spec(epochs: int = 30, log=None, trained=None) -> NairSpec:
    """The digits example as a NairSpec; ``trained`` (a TrainedDigits) skips the training."""
    from tinysplit.examples.digits import (CLASSES, SEED, SPLIT_LAYER, TAIL_FIRST_LAYER, UNIT_CHANNELS,
                                           train_digits)

    t = trained or train_digits(epochs=epochs, log=log)
    calib = t.x_train[np.random.default_rng(SEED).permutation(len(t.x_train))[:300]]
    return NairSpec("digits", t.model.head, t.model.tail, SPLIT_LAYER, TAIL_FIRST_LAYER, t.x_train, t.y_train,
                    t.x_heldout, t.y_heldout, calib, CLASSES, UNIT_CHANNELS)
