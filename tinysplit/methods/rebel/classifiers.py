"""The comparison early classifiers (paper sec. VI-A): linear + softmax, k-means, k-NN.

- ``LinearClassifier`` (torch, trained jointly like the GMC): softmax(W z + b). It is a unimodal
  Gaussian mixture with one shared covariance (paper, via Hayashi et al. App. A): with Sigma = I,
  log p(c | z) = m_c . z - |m_c|^2 / 2 + log pi_c + const, so m_c = w_c; its regularization prior is
  N(w_c, I) (the same unit floor as the GMC's Sigma = L L^T + I), and L_R is the KL to it.
- ``KMeansClassifier`` (numpy/scikit-learn, fitted on the latents after training): K centroids per
  class; confidence = softmax over classes of -min_k |z - c_ck|^2 / T with T = 2 sigma^2, sigma^2
  the shared isotropic variance around the centroids (ML estimate on the training latents). It is
  fitted after training, so the KL regularization does not apply to it (only to the latent).
- ``KnnClassifier`` (scikit-learn): the fraction of the k nearest training latents with each label;
  off-device (it stores the training set), a reference only.

Every classifier gives (N, C) class probabilities; the confidence is their maximum.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class LinearClassifier(nn.Module):
    def __init__(self, in_dim: int, classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, classes)

    def log_gamma(self, z: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.linear(z), dim=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.linear(z), dim=1)

    def kl_closest(self, mu: torch.Tensor, var: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N,) KL(N(mu, diag var) || N(w_label, I))."""
        m = self.linear.weight[labels]
        return 0.5 * (((mu - m) ** 2).sum(1) + var.sum(1) - torch.log(var).sum(1) - mu.shape[1])

    @torch.no_grad()
    def init_means(self, z: torch.Tensor, labels: torch.Tensor, generator=None) -> None:
        pass


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class KMeansClassifier:
    def __init__(self, classes: int, clusters_per_class: int = 4, seed: int = 0) -> None:
        self.classes, self.k, self.seed = classes, clusters_per_class, seed
        self.centroids: np.ndarray | None = None  # (C, K, D)
        self.temperature = 1.0

    def fit(self, z: np.ndarray, labels: np.ndarray) -> "KMeansClassifier":
        from sklearn.cluster import KMeans

        z = np.asarray(z, np.float64)
        cents = []
        for c in range(self.classes):
            zc = z[labels == c]
            k = min(self.k, len(zc))
            km = KMeans(n_clusters=k, n_init=4, random_state=self.seed).fit(zc)
            cc = km.cluster_centers_
            cents.append(np.concatenate([cc, np.repeat(cc[:1], self.k - k, 0)]))  # pad with duplicates
        self.centroids = np.stack(cents)
        # A mixture of isotropic Gaussians N(c_ck, sigma^2 I) with the ML estimate of one shared
        # sigma^2 (mean squared distance to the own class's nearest centroid, per dimension):
        # confidence = softmax_c(-d_c^2 / (2 sigma^2)). Not fitted to the labels' likelihood: on
        # separable training latents that fit drives T to 0 and every confidence to 1.
        d = self._dist(z)
        sigma2 = float(d[np.arange(len(z)), labels].mean()) / z.shape[1]
        self.temperature = 2.0 * max(sigma2, 1e-12)
        return self

    def _dist(self, z: np.ndarray) -> np.ndarray:
        """(N, C) squared distance to each class's nearest centroid."""
        diff = np.asarray(z, np.float64)[:, None, None, :] - self.centroids[None]
        return (diff ** 2).sum(-1).min(-1)

    def predict_proba(self, z: np.ndarray) -> np.ndarray:
        return _softmax(-self._dist(z) / self.temperature)


class KnnClassifier:
    def __init__(self, classes: int, k: int = 10) -> None:
        self.classes, self.k = classes, k

    def fit(self, z: np.ndarray, labels: np.ndarray) -> "KnnClassifier":
        from sklearn.neighbors import KNeighborsClassifier

        self.model = KNeighborsClassifier(n_neighbors=self.k).fit(np.asarray(z, np.float64), labels)
        return self

    def predict_proba(self, z: np.ndarray) -> np.ndarray:
        p = self.model.predict_proba(np.asarray(z, np.float64))
        out = np.zeros((len(z), self.classes))
        out[:, self.model.classes_] = p
        return out
