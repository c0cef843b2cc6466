"""Knowledge partition (papers/rocoin.md sec. IV-B.2): the teacher's final-conv filters split into
K parts by normalized cut of their co-activation graph.

- ``filter_activations``: a_im, the average activity of filter m on validation image i: the mean
  of the filter's output map (the teacher's final conv layer, after its activation);
- ``affinity``: A_mm' = sum_i a_im a_im' |a_im - a_im'| (the diagonal is 0). With ``normalize``,
  each image's activations are first divided by their maximum; with ``top``, only each image's
  ``top`` most active filters keep their value (the others count 0): NoNN's public code does both
  (top 50). The rule links very active filters with less active ones, so that each part gets
  some of both;
- ``partition_filters``: normalized cut by scikit-learn's spectral clustering on the precomputed
  affinity (the K eigenvectors of the normalized Laplacian, then k-means on their rows, as the
  paper's Algorithm 1; or ``cluster_qr``, which needs no random start). The parts come back as
  sorted filter indices, ordered by their smallest filter, so the same affinity and seed always
  give the same list;
- ``ncut``: the normalized-cut value (eq. 3) of any partition, 1/2 sum_k W(P_k, rest) / vol(P_k).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from tinysplit.errors import InputError

log = logging.getLogger(__name__)

ASSIGN_LABELS = ("kmeans", "cluster_qr")
_CHUNK_VALUES = 1 << 22  # floats per step of the affinity sum (images x M x M): 32 MiB


def filter_activations(outputs: np.ndarray, channels_last: bool = False) -> np.ndarray:
    """(N images, M filters) mean activations from the final conv layer's outputs: (N, M, H, W)
    (PyTorch's NCHW; (N, H, W, M) with ``channels_last``), or (N, M) already averaged."""
    a = np.asarray(outputs)
    if not np.issubdtype(a.dtype, np.number):
        raise InputError(f"activations must be numbers, got {a.dtype}")
    if a.ndim == 4:
        a = a.mean(axis=(1, 2)) if channels_last else a.mean(axis=(2, 3))
    elif a.ndim != 2:
        raise InputError(f"activations must be (N, M) means or (N, M, H, W) final-conv outputs, got shape {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise InputError(f"activations need at least one image and one filter, got shape {a.shape}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise InputError("activations hold NaN or infinite values")
    return a


def affinity(a: np.ndarray, normalize: bool = False, top: int | None = None) -> np.ndarray:
    """The filter graph's weights A (M x M, symmetric, zero diagonal) from (N, M) activations."""
    a = filter_activations(a)
    if np.any(a < 0):
        raise InputError(f"activations must be non-negative (take the final conv layer's output after its ReLU); "
                         f"the smallest is {a.min():g}")
    if normalize:
        peak = a.max(axis=1, keepdims=True)
        a = np.divide(a, peak, out=np.zeros_like(a), where=peak > 0)
    if top is not None:
        if top < 1:
            raise InputError(f"top must be at least 1, got {top}")
        if top < a.shape[1]:
            keep = np.argsort(-a, axis=1, kind="stable")[:, :top]
            mask = np.zeros_like(a, dtype=bool)
            np.put_along_axis(mask, keep, True, axis=1)
            a = np.where(mask, a, 0.0)
    m = a.shape[1]
    A = np.zeros((m, m))
    step = max(1, _CHUNK_VALUES // (m * m))
    for s in range(0, len(a), step):
        x = a[s:s + step]
        A += np.einsum("im,in,imn->mn", x, x, np.abs(x[:, :, None] - x[:, None, :]))
    return A


def _check_affinity(A: np.ndarray) -> np.ndarray:
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] < 1:
        raise InputError(f"the affinity must be a square M x M matrix, got shape {A.shape}")
    if not np.all(np.isfinite(A)):
        raise InputError("the affinity holds NaN or infinite values")
    if np.any(A < 0):
        raise InputError(f"the affinity must be non-negative, its smallest entry is {A.min():g}")
    if not np.allclose(A, A.T, rtol=1e-9, atol=1e-12 * max(1.0, float(np.abs(A).max()))):
        i, j = np.unravel_index(np.argmax(np.abs(A - A.T)), A.shape)
        raise InputError(f"the affinity must be symmetric: A[{i}, {j}] = {A[i, j]:g} but A[{j}, {i}] = {A[j, i]:g}")
    return A


def partition_filters(A: np.ndarray, k: int, seed: int = 0,
                      assign_labels: str = "kmeans") -> tuple[tuple[int, ...], ...]:
    """Split the M filters into ``k`` parts by normalized cut of the affinity ``A``: sorted filter
    indices per part, parts ordered by their smallest filter."""
    from sklearn.cluster import SpectralClustering

    A = _check_affinity(A)
    m = A.shape[0]
    if not 1 <= k <= m:
        raise InputError(f"cannot split {m} filters into {k} parts: the number of parts must be in 1..{m}")
    if assign_labels not in ASSIGN_LABELS:
        raise InputError(f"assign_labels must be one of {', '.join(ASSIGN_LABELS)}, got '{assign_labels}'")
    if k == 1:
        return (tuple(range(m)),)
    if not A.any():
        raise InputError("the affinity is all zeros (no filter was ever active with another); check the activations")
    isolated = np.flatnonzero(A.sum(axis=1) == 0)
    if len(isolated):
        log.warning("filters %s have no edges (never active with another filter); they carry no knowledge and "
                    "land in any part", isolated.tolist())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        labels = SpectralClustering(n_clusters=k, affinity="precomputed", assign_labels=assign_labels,
                                    random_state=seed).fit_predict(A)
    for w in caught:
        log.info("spectral clustering: %s", w.message)
    parts = [tuple(int(i) for i in np.flatnonzero(labels == c)) for c in np.unique(labels)]
    if len(parts) < k:
        raise InputError(f"normalized cut found only {len(parts)} non-empty parts of {m} filters, not {k}; ask for "
                         "fewer parts")
    return tuple(sorted(parts, key=lambda p: p[0]))


def check_parts(parts: tuple[tuple[int, ...], ...] | list, m: int) -> None:
    """InputError unless ``parts`` are non-empty and hold every filter 0..m-1 exactly once."""
    flat = [int(i) for p in parts for i in p]
    if any(len(p) == 0 for p in parts):
        raise InputError("every part must hold at least one filter")
    if sorted(flat) != list(range(m)):
        missing = sorted(set(range(m)) - set(flat))
        twice = sorted({i for i in flat if flat.count(i) > 1})
        extra = sorted(set(flat) - set(range(m)))
        raise InputError(f"the parts must hold each of the {m} filters exactly once (missing {missing}, "
                         f"repeated {twice}, out of range {extra})")


def ncut(A: np.ndarray, parts: tuple[tuple[int, ...], ...] | list) -> float:
    """Normalized cut of a partition (eq. 3): 1/2 sum_k W(P_k, F - P_k) / vol(P_k), where
    vol(P_k) is the sum of its filters' degrees. A part with no edges at all adds 0."""
    A = _check_affinity(A)
    check_parts(parts, A.shape[0])
    degree = A.sum(axis=1)
    total = 0.0
    for p in parts:
        idx = np.asarray(p, dtype=int)
        vol = float(degree[idx].sum())
        if vol > 0:
            inside = float(A[np.ix_(idx, idx)].sum())
            total += (vol - inside) / vol
    return 0.5 * total
