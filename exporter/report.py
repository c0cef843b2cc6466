"""report.json (machine-readable) and report.txt (a short summary a person reads)."""

from __future__ import annotations

from typing import Any


def aggregate(device: dict[str, dict], tails: dict[str, dict], heldout: int, timings: dict[str, float],
              version: str) -> dict[str, Any]:
    """Top-level keys summarize the worst case over all device models and pipelines, so a script can
    check one number; per-model details stay under ``device_models`` and ``host_tails``."""
    int8: dict[str, float] = {}
    top1 = [d["int8"]["top1_agreement"] for d in device.values() if "top1_agreement" in d["int8"]]
    top1 += [t["top1_agreement"] for t in tails.values()]
    if top1:
        int8["top1_agreement"] = min(top1)
    cos = [d["int8"]["cosine_min"] for d in device.values() if d["kind"] == "features"]
    if cos:
        int8["cosine_min"] = min(cos)
    int8["max_abs_error"] = max(d["int8"]["max_abs_error"] for d in device.values())
    acc = [t for t in tails.values() if "accuracy_int8" in t]
    if acc:
        int8["accuracy_float"] = min(t["accuracy_float"] for t in acc)
        int8["accuracy_int8"] = min(t["accuracy_int8"] for t in acc)
    return {
        "tinysplit_version": version,
        "heldout_samples": heldout,
        "int8": int8,
        "tflm": {
            "identical_fraction": min(d["tflm"]["identical_fraction"] for d in device.values()),
            "max_lsb_diff": max(d["tflm"]["max_lsb_diff"] for d in device.values()),
            "arena_bytes": max(d["tflm"]["arena_bytes"] for d in device.values()),
        },
        "model": {"flash_bytes": max(d["model"]["flash_bytes"] for d in device.values())},
        "ops": sorted({op for d in device.values() for op in d["ops"]}),
        "device_models": device,
        "host_tails": tails,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def summary_text(report: dict[str, Any], bundle_name: str) -> str:
    lines = [f"tinysplit export report: {bundle_name} ({report['heldout_samples']} held-out samples)"]
    for name, d in report["device_models"].items():
        i, t, m = d["int8"], d["tflm"], d["model"]
        lines.append(f"  device model '{name}' ({d['kind']}): {m['flash_bytes']:,} B flash (.tflite), "
                     f"TFLite Micro arena {t['arena_bytes']:,} B, ops {' '.join(d['ops'])}")
        q = f"cosine min {i['cosine_min']:.4f}, max abs error {i['max_abs_error']:.4g}"
        if "top1_agreement" in i:
            q = f"top-1 agreement {_pct(i['top1_agreement'])}, " + q
        lines.append(f"    int8 vs float: {q}")
        lines.append(f"    TFLite Micro vs TFLite reference: {_pct(t['identical_fraction'])} identical of "
                     f"{t['values_compared']:,} values, max diff {t['max_lsb_diff']} LSB")
    for name, t in report["host_tails"].items():
        s = f"  pipeline -> host tail '{name}': int8 vs float top-1 agreement {_pct(t['top1_agreement'])}"
        if "accuracy_int8" in t:
            s += f", accuracy float {_pct(t['accuracy_float'])} / int8 {_pct(t['accuracy_int8'])}"
        lines.append(s + f"; ONNX vs PyTorch max diff {t['onnx_max_abs_diff']:.2g}")
    return "\n".join(lines) + "\n"
