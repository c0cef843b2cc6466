"""RoCoIn's reference pipeline, what the deployed system must give for every sample: each student's
int8 output from TFLite Micro on the held-out inputs, the partitions that did not arrive zero-filled
(0.0 after dequantization, as the host does), the ONNX aggregator -> the label. ``arrived`` all True
is the full system."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from tinysplit.errors import InputError
from tinysplit.manifest import Manifest, load_manifest
from tinysplit.methods.rocoin.bundle import RocoinPlan, plan_for
from tinysplit.reference import device_outputs, heldout, quantized_inputs, tail_session


def student_outputs(bundle: str | Path, n: int | None = None, x: np.ndarray | None = None,
                    manifest: Manifest | None = None) -> list[np.ndarray]:
    """Every student's int8 output (TFLite Micro) on the held-out inputs (the first ``n``) or on
    float NCHW ``x``: K arrays (N, n_k), partition order."""
    m = manifest or load_manifest(bundle)
    plan = plan_for(m)
    if x is None:
        x, _ = heldout(bundle, m)
        x = x[:n] if n else x
    out = []
    for s in plan.students:
        q = device_outputs(bundle, m, quantized_inputs(m, x, s.name), s.name)
        out.append(q.reshape(len(x), -1))
    return out


def aggregator_logits(bundle: str | Path, plan: RocoinPlan, outputs_q: Sequence[np.ndarray], arrived: np.ndarray,
                      manifest: Manifest | None = None, session=None) -> np.ndarray:
    """The ONNX aggregator's logits on int8 portions (K arrays (N, n_k)), dequantized, 0.0 where
    ``arrived`` (N, K) is False."""
    m = manifest or load_manifest(bundle)
    sess = session or tail_session(bundle, m, plan.tail)
    n = len(outputs_q[0])
    feed = {}
    names = [i.name for i in sess.get_inputs()]
    for k, st in enumerate(plan.students):
        x = plan.dequantize(k, np.asarray(outputs_q[k], np.int8).reshape(n, *st.output_shape))
        x = np.where(arrived[:, k].reshape(n, 1, 1, 1), x, np.float32(0.0)).astype(np.float32)
        feed[names[k] if st.name not in names else st.name] = x
    return sess.run(None, feed)[0]


def labels_with_partitions(bundle: str | Path, arrived: np.ndarray, n: int | None = None,
                           outputs_q: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """The label of each held-out input (the first ``n``), or of the given int8 student outputs
    (K arrays (N, n_k)), when only the partitions ``arrived`` (N, K) bool (or (K,), the same for every
    sample) reached the host."""
    m = load_manifest(bundle)
    plan = plan_for(m)
    k_total = plan.partitions_total
    if outputs_q is None:
        outputs_q = student_outputs(bundle, n, manifest=m)
    if len(outputs_q) != k_total:
        raise InputError(f"{len(outputs_q)} student outputs for {k_total} partitions")
    rows = len(outputs_q[0])
    for k, o in enumerate(outputs_q):
        if len(o) != rows or np.asarray(o).reshape(rows, -1).shape[1] != plan.students[k].values:
            raise InputError(f"student {k}'s outputs must be ({rows}, {plan.students[k].values}) int8")
    a = np.asarray(arrived, dtype=bool)
    if a.ndim == 1:
        a = np.broadcast_to(a, (rows, len(a)))
    if a.shape != (rows, k_total):
        raise InputError(f"arrived must be (N, K) = ({rows}, {k_total}) or ({k_total},) booleans, got {a.shape}")
    if rows == 0:
        return np.zeros(0, dtype=np.int64)
    return aggregator_logits(bundle, plan, outputs_q, a, m).argmax(1)
