"""NAIR's reference pipeline: the TFLite Micro head, the host zero-filling the units that were not
sent, and the ONNX tail (one for every budget, or one per width for CLIO-style bundles)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinysplit.manifest import Manifest, ManifestError, load_manifest
from tinysplit.methods.nair.slices import plan_for, zero_filled
from tinysplit.reference import device_outputs, heldout, quantized_inputs, tail_logits, tail_session


def tail_per_units(manifest: Manifest) -> list[str] | None:
    """Host tail names by units received (method_data.nair.tail_per_units: entry j-1 serves j units),
    for bundles with one tail per width (CLIO-style); None when one tail serves every budget."""
    names = manifest.method_data.get("nair", {}).get("tail_per_units")
    if names is None:
        return None
    have = {t.name for t in manifest.host_tails}
    units = plan_for(manifest).units_total
    if (not isinstance(names, list) or len(names) != units
            or any(not isinstance(n, str) or n not in have for n in names)):
        raise ManifestError(f"field 'method_data.nair.tail_per_units': must list {units} host tail names "
                            f"(one per number of units) out of {', '.join(sorted(have))}")
    return names



def labels_at_budgets(bundle: str | Path, budgets: list[int], n: int | None = None,
                      features_q: np.ndarray | None = None) -> dict[int, np.ndarray]:
    """Reference labels for the held-out inputs when only the first ``b`` units reach the host (with
    the tail for ``b`` units where the bundle has one per width)."""
    m = load_manifest(bundle)
    if features_q is None:
        x, _ = heldout(bundle, m)
        x = x[:n] if n else x
        features_q = device_outputs(bundle, m, quantized_inputs(m, x))
    plan = plan_for(m)
    per_units = tail_per_units(m)
    shared = tail_session(bundle, m) if per_units is None else None
    return {b: tail_logits(bundle, m, np.stack([zero_filled(plan, f, b) for f in features_q]),
                           shared or tail_session(bundle, m, per_units[b - 1])).argmax(1)
            for b in budgets}
