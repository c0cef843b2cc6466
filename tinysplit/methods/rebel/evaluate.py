"""ReBEL on a trained split model: the variants, the early classifiers at equal coverage, and the int8
device model's agreement with the float pipeline.

``evaluate`` trains every variant (a config of ``train.RebelConfig``) from the same trained head and
tail, fits k-means and k-NN on the latents of some of them, and measures on the held-out data:
the remote (Head2 + Tail) accuracy, each early classifier's local accuracy and the overall accuracy at
equal coverage, and the curves over thresholds. With ``export=True`` the regularized GMC model is
exported to int8 (one device model, output [z, s * gamma]) and compared with the float pipeline;
``one_output_cost=True`` also exports z alone and the confidences alone, to measure what sharing one
quantization costs.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch import nn

from tinysplit.files import write_atomic
from tinysplit.methods.rebel.classifiers import KMeansClassifier, KnnClassifier
from tinysplit.methods.rebel.costs import CostConfig
from tinysplit.methods.rebel.coverage import (coverage_curve, local_accuracy_at_coverage, max_coverage_within,
                                              overall_at_coverage)
from tinysplit.methods.rebel.model import Head1, Head2
from tinysplit.methods.rebel.train import RebelConfig, RebelModel, train_rebel
from tinysplit.methods.rebel.variants import VARIANTS

COVERAGES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
THRESHOLDS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99)


@dataclass
class RebelSpec:
    """A trained split model for ReBEL: the original head H (the mimic teacher), the tail, a factory of
    fresh (Head1, Head2) pairs, and data (float32 NCHW inputs, int64 labels)."""

    name: str
    head: nn.Module
    tail: nn.Module
    make_heads: Callable[[], tuple[Head1, Head2]]
    x_train: np.ndarray
    y_train: np.ndarray
    x_heldout: np.ndarray
    y_heldout: np.ndarray
    calibration: np.ndarray
    classes: tuple[str, ...]
    base_accuracy: float | None = None
    augment: Callable | None = None  # train_rebel's augment (random crops and flips for CIFAR), or None
    device: str | None = None  # train_rebel's device ("cuda"), or None for the CPU


# VARIANTS (variants.py): name -> config changes from the defaults (alpha 1, beta 0.001, gamma 0.1, K 4, full
# covariance)
# post-hoc classifiers: name -> (kind, variant whose latent they are fitted on)
POSTHOC: dict[str, tuple[str, str]] = {
    "kmeans_hnd": ("kmeans", "hnd"), "kmeans_noreg": ("kmeans", "gmc_noreg"), "kmeans_reg": ("kmeans", "gmc"),
    "knn_hnd": ("knn", "hnd"), "knn_noreg": ("knn", "gmc_noreg"), "knn_reg": ("knn", "gmc"),
}


def _r(v):
    return None if v is None else round(float(v), 5)


def classifier_result(conf: np.ndarray, early: np.ndarray, remote: np.ndarray, y: np.ndarray,
                      coverages=COVERAGES, thresholds=THRESHOLDS) -> dict[str, Any]:
    lc, rc = early == y, remote == y
    curve = coverage_curve(conf, early, remote, y, thresholds)
    within = max_coverage_within(conf, lc, rc, 0.02)
    return {"coverage_within_2_points": {k: _r(v) for k, v in within.items()},
        "early_accuracy": _r(lc.mean()), "remote_accuracy": _r(rc.mean()),
        "local_accuracy_at_coverage": [_r(v) for v in local_accuracy_at_coverage(conf, lc, coverages)],
        "overall_accuracy_at_coverage": [_r(v) for v in overall_at_coverage(conf, lc, rc, coverages)],
        "by_threshold": {k: [_r(v) for v in vals] for k, vals in curve.items()},
    }


def evaluate(spec: RebelSpec, out_dir: Path | None = None, variants: dict[str, dict] | None = None,
             base: RebelConfig = RebelConfig(), posthoc: dict[str, tuple[str, str]] | None = None,
             export: bool = True, one_output_cost: bool = True, components: int | None = None,
             progress: Callable[[str], None] | None = None, log: Callable[[str], None] | None = None,
             costs: CostConfig | None = None) -> dict[str, Any]:
    """``progress`` gets a line per step, ``log`` a line per training epoch. With ``export`` and
    ``costs``, the exported model's device, latency and fleet figures too (``deployment_costs``)."""
    say = progress or (lambda m: None)
    variants = VARIANTS if variants is None else variants
    posthoc = POSTHOC if posthoc is None else posthoc
    if components is not None:
        base = RebelConfig(**{**asdict(base), "components": components})
    c = len(spec.classes)
    y = spec.y_heldout
    models: dict[str, RebelModel] = {}
    results: dict[str, Any] = {}
    latents: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for name, changes in variants.items():
        cfg = RebelConfig(**{**asdict(base), **changes})
        say(f"{name}: training ({cfg.epochs} joint + {cfg.finetune_epochs} fine-tune epochs)")
        t0 = time.perf_counter()
        h1, h2 = spec.make_heads()
        m = train_rebel(spec.head, spec.tail, h1, h2, spec.x_train, spec.y_train, c, cfg, log=log,
                        augment=spec.augment, device=spec.device)
        models[name] = m
        z_tr, z_te = m.latents(spec.x_train), m.latents(spec.x_heldout)
        remote = m.remote_logits(z_te).argmax(1)
        latents[name] = (z_tr, z_te, remote)
        entry: dict[str, Any] = {"config": asdict(cfg), "train_seconds": round(time.perf_counter() - t0, 1),
                                 "final_losses": {k: v[-1] for k, v in m.history.items() if v}}
        if m.classifier is not None:
            p = m.early_probs(z_te)
            entry.update(classifier_result(p.max(1), p.argmax(1), remote, y))
        else:
            entry["remote_accuracy"] = _r((remote == y).mean())
        results[name] = entry
    for name, (kind, on) in posthoc.items():
        if on not in latents:
            continue
        z_tr, z_te, remote = latents[on]
        say(f"{name}: fitting {kind} on the {on} latents")
        clf = (KMeansClassifier(c, base.components, seed=base.seed) if kind == "kmeans" else KnnClassifier(c))
        p = clf.fit(z_tr, spec.y_train).predict_proba(z_te)
        results[name] = {"kind": kind, "latent_of": on, **classifier_result(p.max(1), p.argmax(1), remote, y)}
    report: dict[str, Any] = {
        "name": spec.name, "heldout_samples": int(len(y)), "base_accuracy": _r(spec.base_accuracy),
        "latent": int(latents[next(iter(latents))][1].shape[1]), "input_values": int(np.prod(spec.x_train.shape[1:])),
        "coverages": list(COVERAGES), "thresholds": list(THRESHOLDS), "classifiers": results}
    if export and "gmc" in models:
        report["int8"] = int8_report(spec, models["gmc"], out_dir, one_output_cost, say)
        if costs is not None:
            report["int8"]["costs"] = deployment_costs(
                Path(report["int8"]["bundle"]), report["int8"]["deployed"], report["input_values"], costs,
                None if out_dir is None else Path(out_dir) / "firmware", say)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(out_dir / "rebel_eval.json", (json.dumps(report, indent=2) + "\n").encode())
        write_atomic(out_dir / "rebel_eval.png", plot(report))
    return report


def int8_report(spec: RebelSpec, model: RebelModel, out_dir: Path | None, one_output_cost: bool,
                say: Callable[[str], None]) -> dict[str, Any]:
    """Export the GMC model to int8 and compare the deployed pipeline with the float one."""
    from tinysplit.methods.rebel.export import export_rebel, int8_pipeline

    work = Path(out_dir) / "bundles" if out_dir is not None else Path(tempfile.mkdtemp(prefix="rebel-eval-"))
    work.mkdir(parents=True, exist_ok=True)
    say("gmc: exporting Head1 + GMC to one int8 device model ([z, s * gamma])")
    ex = export_rebel(model, spec.calibration, spec.x_heldout, spec.y_heldout, work / "gmc", f"{spec.name}_rebel",
                      spec.classes)
    pipe = int8_pipeline(ex)
    y = spec.y_heldout
    z_f = model.latents(spec.x_heldout)
    p_f = model.early_probs(z_f)
    remote_f = model.remote_logits(z_f).argmax(1)
    dm = ex.report["device_models"]["head1"]
    rep: dict[str, Any] = {
        "bundle": str(ex.bundle), "layout": ex.layout.to_json(), "constants": ex.constants,
        "output_scale": pipe.scale, "output_zero_point": pipe.zero_point,
        "flash_bytes": dm["model"]["flash_bytes"], "weights_bytes": dm["model"]["weights_bytes"],
        "arena_bytes": dm["tflm"]["arena_bytes"], "ops": dm["ops"],
        "tflm_vs_reference_identical": dm["tflm"]["identical_fraction"],
        "z_max_abs_error": _r(np.abs(pipe.z - z_f).max()),
        "confidence_max_abs_error": _r(np.abs(pipe.gamma.max(1) - p_f.max(1)).max()),
        "early_label_agreement": _r((pipe.early_label == p_f.argmax(1)).mean()),
        "remote_label_agreement": _r((pipe.remote_label == remote_f).mean()),
        "remote_accuracy_float": _r((remote_f == y).mean()), "remote_accuracy_int8": _r((pipe.remote_label == y).mean()),
        "early_accuracy_float": _r((p_f.argmax(1) == y).mean()), "early_accuracy_int8": _r((pipe.early_label == y).mean()),
        "thresholds": {}}
    for t in THRESHOLDS + (0.6, 0.7, 0.98):
        d = pipe.decisions(t, ex.layout)
        early_f = p_f.max(1) >= t
        final_q = np.where(d.early, d.label, pipe.remote_label)
        final_f = np.where(early_f, p_f.argmax(1), remote_f)
        rep["thresholds"][f"{t:g}"] = {
            "path_agreement": _r((d.early == early_f).mean()), "final_label_agreement": _r((final_q == final_f).mean()),
            "coverage_int8": _r(d.early.mean()), "coverage_float": _r(early_f.mean()),
            "overall_accuracy_int8": _r((final_q == y).mean()), "overall_accuracy_float": _r((final_f == y).mean()),
            "local_accuracy_int8": _r((d.label[d.early] == y[d.early]).mean()) if d.early.any() else None}
    rep["int8_curve"] = classifier_result(pipe.gamma.max(1), pipe.early_label, pipe.remote_label, y)
    rep["deployed"] = deployed_report(ex.bundle, sorted(set(THRESHOLDS + (0.6, 0.7, 0.98))), y, pipe)
    if one_output_cost:
        rep["one_output_cost"] = one_output_cost_report(spec, model, ex, pipe, work, say)
    return rep


def deployed_report(bundle: Path, thresholds: list[float], y: np.ndarray, pipe=None) -> dict[str, Any]:
    """What the deployed system gives (tinysplit.methods.rebel.reference: the device rule on the TFLite
    Micro output, the host tail on z with zero-filled confidences), per threshold: q_t, coverage,
    local / remote / overall accuracy, and the mean bytes per sample on the wire (one frame: 24 bytes
    of header and CRC + 3 for an EARLY_LABEL or D for a LATENT)."""
    from tinysplit.manifest import load_manifest
    from tinysplit.methods.rebel.plan import plan_for
    from tinysplit.methods.rebel.reference import labels_at_thresholds
    from tinysplit.wire.frame import HEADER_SIZE, TRAILER_SIZE

    plan = plan_for(load_manifest(bundle))
    refs = labels_at_thresholds(bundle, thresholds, outputs_q=None if pipe is None else pipe.out_q)
    out: dict[str, Any] = {}
    for t, r in refs.items():
        e = r.early
        out[f"{t:g}"] = {
            "threshold_q": r.threshold_q, "control_value": r.threshold_q + 128, "coverage": _r(e.mean()),
            "local_accuracy": _r((r.labels[e] == y[e]).mean()) if e.any() else None,
            "remote_accuracy": _r((r.labels[~e] == y[~e]).mean()) if (~e).any() else None,
            "overall_accuracy": _r((r.labels == y).mean()),
            "bytes_per_sample": _r(HEADER_SIZE + TRAILER_SIZE + np.where(e, 3, plan.latent).mean()),
            **({} if pipe is None else {"labels_equal_int8_pipeline": _r(
                (r.labels == np.where(e, pipe.early_label, pipe.remote_label)).mean())})}
    return out


def one_output_cost_report(spec, model, ex, pipe, work: Path, say) -> dict[str, Any]:
    """Export z alone and the confidences alone (each with its own int8 scale: the two-model
    alternative) and compare with the shared output."""
    from tinysplit.exporter import DevicePiece, ExportSpec, export_bundle
    from tinysplit.manifest import load_manifest
    from tinysplit.methods.rebel.devicemodel import GmcLayers
    from tinysplit.quant import dequantize
    from tinysplit.reference import device_outputs, quantized_inputs

    class ZOnly(nn.Module):
        def __init__(self, h1):
            super().__init__()
            self.trunk, self.mu = h1.trunk, h1.mu

        def forward(self, x):
            return self.mu(self.trunk(x))

    class ConfOnly(nn.Module):
        def __init__(self, h1, layers):
            super().__init__()
            self.trunk, self.mu, self.gmc = h1.trunk, h1.mu, layers

        def forward(self, x):
            return self.gmc(self.mu(self.trunk(x)))

    k = ex.constants
    layers = GmcLayers(model.classifier, clip=k["clip"], floor=k["floor"], confidence_scale=1.0)
    outs = {}
    for name, mod in (("z_only", ZOnly(model.head1)), ("conf_only", ConfOnly(model.head1, layers))):
        say(f"gmc: exporting {name} (its own int8 scale) to measure the cost of one shared output")
        es = ExportSpec(name=name, device=[DevicePiece("device", mod.eval(), "features")],
                        calibration=spec.calibration, heldout=spec.x_heldout)
        b = work / name
        export_bundle(es, b, force=True)
        m = load_manifest(b)
        o = m.device_models[0].outputs[0]
        q = device_outputs(b, m, quantized_inputs(m, spec.x_heldout)).reshape(len(spec.x_heldout), -1)
        outs[name] = (dequantize(q, o.scale, o.zero_point), q, o.scale, o.zero_point)
    z_f = model.latents(spec.x_heldout)
    p_f = model.early_probs(z_f)
    z_sep = outs["z_only"][0]
    conf_sep, _, c_scale, _ = outs["conf_only"]
    remote_sep = model.remote_logits(z_sep).argmax(1)
    remote_f = model.remote_logits(z_f).argmax(1)
    y = spec.y_heldout
    rep: dict[str, Any] = {
        "shared": {"z_scale": pipe.scale, "confidence_step": pipe.scale / ex.layout.confidence_scale,
                   "z_max_abs_error": _r(np.abs(pipe.z - z_f).max()),
                   "confidence_max_abs_error": _r(np.abs(pipe.gamma.max(1) - p_f.max(1)).max()),
                   "remote_accuracy": _r((pipe.remote_label == y).mean()),
                   "remote_label_agreement": _r((pipe.remote_label == remote_f).mean()),
                   "early_label_agreement": _r((pipe.early_label == p_f.argmax(1)).mean())},
        "separate": {"z_scale": outs["z_only"][2], "confidence_step": c_scale,
                     "z_max_abs_error": _r(np.abs(z_sep - z_f).max()),
                     "confidence_max_abs_error": _r(np.abs(conf_sep.max(1) - p_f.max(1)).max()),
                     "remote_accuracy": _r((remote_sep == y).mean()),
                     "remote_label_agreement": _r((remote_sep == remote_f).mean()),
                     "early_label_agreement": _r((conf_sep.argmax(1) == p_f.argmax(1)).mean())},
        "path_agreement": {}}
    for t in THRESHOLDS + (0.6, 0.7, 0.98):
        early_f = p_f.max(1) >= t
        shared = pipe.decisions(t, ex.layout).early
        sep = conf_sep.max(1) >= t - 1e-12
        rep["path_agreement"][f"{t:g}"] = {"shared": _r((shared == early_f).mean()), "separate": _r((sep == early_f).mean())}
    return rep


def plot(report: dict[str, Any]) -> bytes:
    """PNG: local accuracy vs coverage for every early classifier; local, remote and overall accuracy
    vs coverage for the regularized GMC (float, and int8 where exported)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cov = [100 * c for c in report["coverages"]]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.6))
    for name, r in report["classifiers"].items():
        if "local_accuracy_at_coverage" not in r:
            continue
        style = "-" if not name.endswith(("noreg", "hnd")) else "--"
        a.plot(cov, [100 * v if v is not None else np.nan for v in r["local_accuracy_at_coverage"]], style,
               marker="o", ms=3, label=name)
    a.set_xlabel("coverage: samples served on the device (%)")
    a.set_ylabel("local (early) accuracy (%)")
    a.set_title("early classifiers at equal coverage (float)")
    a.legend(fontsize=7, ncol=2)
    g = report["classifiers"].get("gmc")
    if g:
        bt = g["by_threshold"]
        for key, lab in (("local_accuracy", "local"), ("remote_accuracy", "remote"), ("overall_accuracy", "overall")):
            b.plot([100 * c for c in bt["coverage"]], [100 * v if v is not None else np.nan for v in bt[key]],
                   marker="o", ms=3, label=f"{lab} (float)")
        q = report.get("int8", {}).get("int8_curve")
        if q:
            qt = q["by_threshold"]
            b.plot([100 * c for c in qt["coverage"]], [100 * v if v is not None else np.nan for v in qt["overall_accuracy"]],
                   "k--", marker="x", ms=4, label="overall (int8 device + host)")
        b.set_xlabel("coverage (%), thresholds " + ", ".join(f"{t:g}" for t in bt["threshold"]))
        b.set_ylabel("accuracy (%)")
        b.set_title("regularized GMC: local, remote, overall")
        b.legend(fontsize=8)
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.suptitle(f"ReBEL on {report['name']} ({report['heldout_samples']} held-out samples, latent "
                 f"{report['latent']} values for {report['input_values']} input values)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def digits_rebel_spec(epochs: int = 30, latent: int = 16, log=None, trained=None) -> RebelSpec:
    """The digits example's trained model (H = conv1 + conv2, cut where NAIR cuts it) as a RebelSpec;
    ``trained`` (a TrainedDigits) skips the training."""
    from tinysplit.examples.digits import CLASSES, SEED, train_digits
    from tinysplit.methods.rebel.model import digits_rebel_modules

    t = trained or train_digits(epochs=epochs, log=log)
    calib = t.x_train[np.random.default_rng(SEED).permutation(len(t.x_train))[:300]]
    return RebelSpec("digits", t.model.head, t.model.tail, lambda: digits_rebel_modules(latent), t.x_train,
                     t.y_train, t.x_heldout, t.y_heldout, calib, CLASSES, t.heldout_accuracy)


def host_seconds_per_sample(bundle: Path, latent_q: np.ndarray, repeats: int = 30) -> float:
    """The host's Head2 + Tail (ONNX Runtime, this machine) on one latent: the median of ``repeats``
    timed runs after two warm-ups."""
    from tinysplit.manifest import load_manifest
    from tinysplit.methods.rebel.plan import plan_for
    from tinysplit.reference import tail_logits, tail_session

    m = load_manifest(bundle)
    plan = plan_for(m)
    sess = tail_session(bundle, m, plan.tail)
    x = plan.host_view(np.asarray(latent_q, np.int8).reshape(1, -1)[:, :plan.latent])
    times = []
    for i in range(repeats + 2):
        t0 = time.perf_counter()
        tail_logits(bundle, m, x, sess)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def deployment_costs(bundle: Path, deployed: dict[str, Any], input_values: int, costs: CostConfig = CostConfig(),
                     workdir: Path | None = None, say: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """The device model as generated C on ``costs.board`` (QEMU: instructions per inference, flash,
    arena, and its outputs against TFLite Micro's), the host's time per latent, the end-to-end latency
    per threshold of ``deployed`` (``deployed_report``) on the link, and the fleet table."""
    from tinysplit.manifest import load_manifest
    from tinysplit.methods.rebel.costs import device_seconds, fleet_rows, latency
    from tinysplit.methods.rebel.plan import plan_for
    from tinysplit.reference import device_outputs, heldout, quantized_inputs

    m = load_manifest(bundle)
    plan = plan_for(m)
    out: dict[str, Any] = {"clock_hz": costs.clock_hz, "link": {"rate_bps": costs.link.rate_bps,
                                                                "overhead_ms": 1000 * costs.link.overhead_s}}
    device_s = 0.0
    if costs.board:
        from tinysplit.firmware.hilcheck import run_hil_check

        say(f"device model as generated C on {costs.board} (QEMU, {costs.hil_samples} samples): instructions, "
            "flash, arena")
        hil = run_hil_check(bundle, costs.board, costs.hil_samples, workdir=workdir)
        device_s = device_seconds(hil.instructions_per_inference, costs.clock_hz)
        out["device"] = {"board": costs.board, **{k: v for k, v in hil.to_json().items() if k not in ("board",)},
                         "ms_at_clock": round(1000 * device_s, 3)}
    x, _ = heldout(bundle, m)
    z_q = device_outputs(bundle, m, quantized_inputs(m, x[:1], plan.device_model), plan.device_model)
    host_s = host_seconds_per_sample(bundle, z_q)
    out["host_ms_per_latent"] = round(1000 * host_s, 4)
    out["latency"] = {t: {"coverage": r["coverage"], **latency(r["coverage"], plan.latent, device_s, host_s, costs.link)}
                      for t, r in deployed.items()}
    out["fleet"] = {"devices": costs.devices, "samples_per_s": costs.samples_per_s,
                    "rows": fleet_rows(input_values, plan.latent, costs.fleet_coverages, costs.devices,
                                       costs.samples_per_s)}
    return out
