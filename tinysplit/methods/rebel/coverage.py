"""Coverage and accuracy of an early-exit split model (numpy only).

A sample is served on the device when its early confidence is >= the threshold (the device's rule);
otherwise the host's prediction counts. For a threshold t:
  coverage = fraction served locally, local accuracy = accuracy over those, remote accuracy =
  accuracy of the host's predictions over the others, overall = (local correct + remote correct) / N.
Comparisons between early classifiers are made at equal coverage (their confidences are on
different scales): ``at_coverage`` serves the top fraction by confidence, ties shared fairly (the
expected accuracy under a random order among equal confidences).
"""

from __future__ import annotations

import numpy as np


def thresholds_default(n: int = 21) -> np.ndarray:
    return np.linspace(0.0, 1.0, n)


def coverage_curve(confidence: np.ndarray, local_pred: np.ndarray, remote_pred: np.ndarray, labels: np.ndarray,
                   thresholds=None) -> dict[str, list]:
    """For each threshold: coverage, local/remote/overall accuracy (None where a path serves nothing)."""
    conf = np.asarray(confidence, np.float64)
    labels = np.asarray(labels)
    if not (len(conf) == len(local_pred) == len(remote_pred) == len(labels)):
        raise ValueError("confidence, predictions and labels must have the same length")
    th = thresholds_default() if thresholds is None else np.asarray(thresholds, np.float64)
    if np.any(th < 0) or np.any(th > 1):
        raise ValueError(f"thresholds must lie in [0, 1], got {th.min()}..{th.max()}")
    lc = np.asarray(local_pred) == labels
    rc = np.asarray(remote_pred) == labels
    n = len(labels)
    out = {"threshold": [], "coverage": [], "local_accuracy": [], "remote_accuracy": [], "overall_accuracy": []}
    for t in th:
        local = conf >= t
        nl = int(local.sum())
        out["threshold"].append(float(t))
        out["coverage"].append(nl / n)
        out["local_accuracy"].append(float(lc[local].mean()) if nl else None)
        out["remote_accuracy"].append(float(rc[~local].mean()) if nl < n else None)
        out["overall_accuracy"].append(float((lc[local].sum() + rc[~local].sum()) / n))
    return out


def local_accuracy_at_coverage(confidence: np.ndarray, correct: np.ndarray, coverages) -> list[float | None]:
    """Accuracy over the round(c * N) most confident samples, for each coverage c in (0, 1]."""
    conf = np.asarray(confidence, np.float64)
    correct = np.asarray(correct, np.float64)
    n = len(conf)
    order = np.argsort(-conf, kind="stable")
    cs, cc = conf[order], correct[order]
    out: list[float | None] = []
    for c in coverages:
        m = int(round(float(c) * n))
        if m <= 0:
            out.append(None)
            continue
        edge = cs[m - 1]
        above = cs > edge
        tied = cs == edge
        need = m - int(above.sum())
        val = cc[above].sum() + need * cc[tied].mean()
        out.append(float(val / m))
    return out


def overall_at_coverage(confidence: np.ndarray, local_correct: np.ndarray, remote_correct: np.ndarray,
                        coverages) -> list[float]:
    """Overall accuracy when the round(c * N) most confident samples are served locally (ties shared)."""
    conf = np.asarray(confidence, np.float64)
    gain = np.asarray(local_correct, np.float64) - np.asarray(remote_correct, np.float64)
    base = float(np.mean(remote_correct))
    n = len(conf)
    order = np.argsort(-conf, kind="stable")
    cs, cg = conf[order], gain[order]
    out = []
    for c in coverages:
        m = int(round(float(c) * n))
        if m <= 0:
            out.append(base)
            continue
        edge = cs[m - 1]
        above, tied = cs > edge, cs == edge
        need = m - int(above.sum())
        out.append(base + float(cg[above].sum() + need * cg[tied].mean()) / n)
    return out


def max_coverage_within(confidence: np.ndarray, local_correct: np.ndarray, remote_correct: np.ndarray,
                        points: float) -> dict[str, float | None]:
    """The largest coverage a threshold reaches (served locally: confidence >= t) whose overall accuracy
    is at least the remote-only accuracy minus ``points`` (a fraction: 0.02 for 2 points).

    Only coverages a threshold can give are candidates (ties move together). Returns coverage, the
    threshold (the lowest confidence served locally; None for coverage 0), overall and remote-only
    accuracy."""
    conf = np.asarray(confidence, np.float64)
    gain = np.asarray(local_correct, np.float64) - np.asarray(remote_correct, np.float64)
    n = len(conf)
    if not (n == len(gain) == len(remote_correct)):
        raise ValueError("confidence and the correctness arrays must have the same length")
    remote = float(np.mean(remote_correct)) if n else 0.0
    best: dict[str, float | None] = {"coverage": 0.0, "threshold": None, "overall_accuracy": remote,
                                     "remote_accuracy": remote}
    if n == 0:
        return best
    order = np.argsort(-conf, kind="stable")
    cs, cum = conf[order], np.cumsum(gain[order])
    ends = np.flatnonzero(np.append(cs[1:] != cs[:-1], True))  # last index of each group of equal confidence
    overall = remote + cum[ends] / n
    ok = ends[overall >= remote - points - 1e-12]
    if len(ok):
        m = int(ok.max())
        best.update(coverage=(m + 1) / n, threshold=float(cs[m]), overall_accuracy=float(remote + cum[m] / n))
    return best
