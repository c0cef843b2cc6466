"""The Gaussian Mixture Classifier (paper sec. V) and the KL regularization (eq. 3).

K components per class; for class c and component k:
  pi_ck = softmax over all (c, k) of free parameters,
  Sigma_ck = L L^T + I with L lower-triangular ("full"), or diag(l^2) + I ("diag": L diagonal),
  mu_ck free.
gamma_c(z) = sum_k pi_ck N(z; mu_ck, Sigma_ck) / sum_{c',k'} pi_c'k' N(z; mu_c'k', Sigma_c'k'); the
confidence is max_c gamma_c. Everything runs in the log domain.

An optional Achlioptas random projection P (d x D, entries sqrt(3/d) * {+1, 0, -1} with
probabilities 1/6, 2/3, 1/6, seeded) maps z in R^D to P z in R^d first; the posterior N(mu, diag v)
is projected the same way (N(P mu, P diag(v) P^T)) before the KL (paper footnote 2).

For the device, the whitening form: with Sigma = U U^T (Cholesky) and A = U^-1 (lower-triangular),
log N(z; m, Sigma) = -0.5 ||A z - A m||^2 - sum log diag(U) - d/2 log(2 pi); ``whitening()`` gives
A (with the projection folded in: A P) and A m for every component.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

LOG_2PI = math.log(2 * math.pi)
L0 = 0.5  # the covariance factor's start: Sigma_ck = 1.25 I


def achlioptas_projection(in_dim: int, out_dim: int, seed: int = 0) -> np.ndarray:
    """(out_dim, in_dim) float32: sqrt(3/out_dim) * {+1, 0, -1} with probabilities 1/6, 2/3, 1/6.

    E[P^T P] = I, so E ||P z||^2 = ||z||^2 (Achlioptas 2001, "database-friendly" projections)."""
    if not (1 <= out_dim and 1 <= in_dim):
        raise ValueError(f"projection dimensions must be positive, got {in_dim} -> {out_dim}")
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([1.0, 0.0, -1.0]), size=(out_dim, in_dim), p=[1 / 6, 2 / 3, 1 / 6])
    return (math.sqrt(3.0 / out_dim) * signs).astype(np.float32)


class GaussianMixtureClassifier(nn.Module):
    """GMC over z in R^in_dim (projected to R^proj_dim if proj_dim is given)."""

    def __init__(self, in_dim: int, classes: int, components: int = 4, covariance: str = "full",
                 proj_dim: int | None = None, proj_seed: int = 0) -> None:
        super().__init__()
        if covariance not in ("full", "diag"):
            raise ValueError(f"covariance must be 'full' or 'diag', got {covariance!r}")
        if proj_dim is not None and not 1 <= proj_dim <= in_dim:
            raise ValueError(f"the projection must reduce z: proj_dim {proj_dim} is not in [1, {in_dim}] (a larger "
                             "one makes the projected posterior P diag(v) P^T singular)")
        self.in_dim, self.classes, self.components, self.covariance = in_dim, classes, components, covariance
        self.dim = proj_dim or in_dim
        if proj_dim:
            self.register_buffer("projection", torch.from_numpy(achlioptas_projection(in_dim, proj_dim, proj_seed)))
        else:
            self.projection = None
        self.pi_logits = nn.Parameter(torch.zeros(classes, components))
        self.means = nn.Parameter(torch.randn(classes, components, self.dim))
        # L starts at L0 * I (Sigma = (1 + L0^2) I), not at 0: the gradient of L L^T (or l^2) vanishes at
        # L = 0, so a zero start is a stationary point and the covariances would never be learned
        if covariance == "full":
            self.L = nn.Parameter(L0 * torch.eye(self.dim).expand(classes, components, self.dim, self.dim).clone())
        else:
            self.L = nn.Parameter(torch.full((classes, components, self.dim), L0))

    # --- the mixture's parameters -------------------------------------------------------------------

    def project(self, z: torch.Tensor) -> torch.Tensor:
        return z if self.projection is None else z @ self.projection.T

    def log_pi(self) -> torch.Tensor:
        """(C, K) log mixture weights, normalized over all (c, k)."""
        return torch.log_softmax(self.pi_logits.reshape(-1), 0).reshape(self.classes, self.components)

    def covariances(self) -> torch.Tensor:
        """(C, K, d, d) Sigma_ck."""
        eye = torch.eye(self.dim, dtype=self.L.dtype, device=self.L.device)
        if self.covariance == "diag":
            return torch.diag_embed(self.L ** 2 + 1.0)
        low = torch.tril(self.L)
        return low @ low.transpose(-1, -2) + eye

    def cholesky(self) -> torch.Tensor:
        """(C, K, d, d) lower-triangular U with Sigma = U U^T."""
        if self.covariance == "diag":
            return torch.diag_embed(torch.sqrt(self.L ** 2 + 1.0))
        return torch.linalg.cholesky(self.covariances())

    def whitening(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(A, b, log_det_half): A (C, K, d, D) = U^-1 P, b (C, K, d) = U^-1 mu_ck, and
        sum log diag(U) (C, K), so that log N(P z; mu_ck, Sigma_ck) = -0.5 ||A z - b||^2 - that
        - d/2 log 2 pi."""
        if self.covariance == "diag":
            sd = torch.sqrt(self.L ** 2 + 1.0)
            a = torch.diag_embed(1.0 / sd)
            log_det_half = torch.log(sd).sum(-1)
        else:
            u = self.cholesky()
            eye = torch.eye(self.dim, dtype=u.dtype, device=u.device).expand_as(u)
            a = torch.linalg.solve_triangular(u, eye, upper=False)
            log_det_half = torch.log(torch.diagonal(u, dim1=-2, dim2=-1)).sum(-1)
        b = (a @ self.means[..., None])[..., 0]
        if self.projection is not None:
            a = a @ self.projection
        return a, b, log_det_half

    # --- classification -------------------------------------------------------------------------------

    def component_log_density(self, z: torch.Tensor) -> torch.Tensor:
        """(N, C, K) log N(P z; mu_ck, Sigma_ck)."""
        a, b, log_det_half = self.whitening()
        y = torch.einsum("ckdj,nj->nckd", a, z) - b
        return -0.5 * (y * y).sum(-1) - log_det_half - 0.5 * self.dim * LOG_2PI

    def joint_log(self, z: torch.Tensor) -> torch.Tensor:
        """(N, C, K) log pi_ck + log N(P z; mu_ck, Sigma_ck)."""
        return self.log_pi() + self.component_log_density(z)

    def log_gamma(self, z: torch.Tensor) -> torch.Tensor:
        """(N, C) log gamma_c(z)."""
        j = self.joint_log(z)
        per_class = torch.logsumexp(j, dim=2)
        return per_class - torch.logsumexp(per_class, dim=1, keepdim=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(N, C) gamma_c(z); the confidence is its maximum."""
        return torch.exp(self.log_gamma(z))

    # --- regularization (eq. 3) -----------------------------------------------------------------------

    def kl_to_components(self, mu: torch.Tensor, var: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N, K) KL(N(P mu, P diag(var) P^T) || N(mu_ck, Sigma_ck)) for c = each sample's label."""
        a, b, log_det_half = self.whitening()  # a already includes P
        a_c, b_c, ld_c = a[labels], b[labels], log_det_half[labels]  # (N, K, d, D), (N, K, d), (N, K)
        y = torch.einsum("nkdj,nj->nkd", a_c, mu) - b_c  # U^-1 (P mu - mu_ck)
        maha = (y * y).sum(-1)
        trace = (a_c * a_c * var[:, None, None, :]).sum((-1, -2))  # tr(Sigma^-1 P diag(v) P^T)
        if self.projection is None:
            log_det_post = torch.log(var).sum(-1)
        else:
            p = self.projection
            post = (p * var[:, None, :]) @ p.T  # (N, d, d)
            log_det_post = torch.logdet(post)
        log_det_prior = 2.0 * ld_c
        return 0.5 * (log_det_prior - log_det_post[:, None] - self.dim + maha + trace)

    def kl_closest(self, mu: torch.Tensor, var: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N,) L_R per sample: the KL to the closest component of the true class."""
        return self.kl_to_components(mu, var, labels).min(dim=1).values

    @torch.no_grad()
    def init_means(self, z: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Put each class's K means on K random samples of that class (projected)."""
        pz = self.project(z)
        for c in range(self.classes):
            idx = torch.nonzero(labels == c)[:, 0]
            if len(idx) == 0:
                continue
            pick = idx[torch.randint(len(idx), (self.components,), generator=generator)]
            self.means[c].copy_(pz[pick])
