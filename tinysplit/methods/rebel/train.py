"""ReBEL training (paper sec. IV): Head1, Head2 and the early classifier jointly, then Head2 + Tail.

L = alpha * L_M + beta * L_R + gamma * L_C (eq. 5), per batch:
  L_M = ||Head2(z) - H(x)||^2 with z ~ N(mu(x), sigma^2(x)) (mimic; ``mimic="mean"`` averages over
        the elements of H(x), ``"sum"`` sums them as eq. 1 is written: see docs/rebel.md),
  L_R = KL(N(mu, sigma^2) || the closest component of the true class) (eq. 3),
  L_C = -log gamma_label(z) (eq. 4),
each averaged over the batch. The original head H is the frozen teacher; the tail is untouched.
Then (``finetune_epochs``) Head1 and the classifier are frozen and Head2 + Tail minimize the
cross-entropy on z = mu, the latent the device sends.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from tinysplit.methods.rebel.model import Head1, Head2, RemoteModel, reparameterize


@dataclass(frozen=True)
class RebelConfig:
    classifier: str = "gmc"  # "gmc", "linear" or "none" (bottleneck only: the HND baseline)
    covariance: str = "full"  # GMC: "full" or "diag"
    components: int = 4  # GMC: K per class
    proj_dim: int | None = None  # GMC: Achlioptas projection of z to this many dimensions
    alpha: float = 1.0
    beta: float = 0.001
    gamma: float = 0.1
    mimic: str = "mean"
    epochs: int = 40
    finetune_epochs: int = 10
    lr: float = 3e-3
    finetune_lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0


@dataclass
class RebelModel:
    head1: Head1
    head2: Head2
    tail: nn.Module
    classifier: nn.Module | None
    config: RebelConfig
    history: dict[str, list[float]] = field(default_factory=dict)

    def eval(self) -> "RebelModel":
        for m in (self.head1, self.head2, self.tail, self.classifier):
            if m is not None:
                m.eval()
        return self

    @torch.no_grad()
    def latents(self, x: np.ndarray) -> np.ndarray:
        """(N, D) z = mu(x), the device's latent."""
        self.eval()
        return self.head1.posterior(torch.from_numpy(x))[0].numpy()

    @torch.no_grad()
    def remote_logits(self, z: np.ndarray) -> np.ndarray:
        self.eval()
        return RemoteModel(self.head2, self.tail)(torch.from_numpy(np.asarray(z, np.float32))).numpy()

    @torch.no_grad()
    def early_probs(self, z: np.ndarray) -> np.ndarray:
        """(N, C) the early classifier's class probabilities on z (gamma_c for the GMC), computed in
        float64 so that confidences near 1 still rank (float32 rounds 1 - 1e-8 to 1)."""
        if self.classifier is None:
            raise ValueError("this model was trained without an early classifier")
        self.eval()
        clf = copy.deepcopy(self.classifier).double()
        return clf(torch.from_numpy(np.asarray(z, np.float64))).numpy()

    @torch.no_grad()
    def mean_kl(self, x: np.ndarray, y: np.ndarray) -> float:
        """The mean L_R (KL of the posterior to the closest component of the true class) on (x, y)."""
        if self.classifier is None:
            raise ValueError("this model was trained without an early classifier")
        self.eval()
        mu, logvar = self.head1.posterior(torch.from_numpy(x))
        return float(self.classifier.kl_closest(mu, torch.exp(logvar), torch.from_numpy(y)).mean())

    def info(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "history": self.history}


def make_classifier(config: RebelConfig, latent: int, classes: int) -> nn.Module | None:
    from tinysplit.methods.rebel.classifiers import LinearClassifier
    from tinysplit.methods.rebel.gmc import GaussianMixtureClassifier

    if config.classifier == "gmc":
        return GaussianMixtureClassifier(latent, classes, config.components, config.covariance, config.proj_dim,
                                         proj_seed=config.seed)
    if config.classifier == "linear":
        return LinearClassifier(latent, classes)
    if config.classifier == "none":
        return None
    raise ValueError(f"unknown early classifier {config.classifier!r}; choose gmc, linear or none")


def mimic_loss(out: torch.Tensor, target: torch.Tensor, how: str) -> torch.Tensor:
    se = ((out - target) ** 2).flatten(1)
    if how == "mean":
        return se.mean()
    if how == "sum":
        return se.sum(1).mean()
    raise ValueError(f"mimic must be 'mean' or 'sum', got {how!r}")


def train_rebel(teacher_head: nn.Module, tail: nn.Module, head1: Head1, head2: Head2, x: np.ndarray, y: np.ndarray,
                classes: int, config: RebelConfig = RebelConfig(),
                log: Callable[[str], None] | None = None) -> RebelModel:
    """Train on copies of ``tail`` (the heads are trained in place). ``teacher_head`` is H, frozen."""
    torch.manual_seed(config.seed)
    g = torch.Generator().manual_seed(config.seed)
    tail = copy.deepcopy(tail)
    teacher_head.eval()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    with torch.no_grad():
        target = teacher_head(xt)
    clf = make_classifier(config, head1.latent, classes)
    if clf is not None:
        head1.eval()
        with torch.no_grad():
            mu0, _ = head1.posterior(xt)
        clf.init_means(mu0, yt, g)
    params = list(head1.parameters()) + list(head2.parameters()) + (list(clf.parameters()) if clf else [])
    opt = torch.optim.Adam(params, lr=config.lr)
    steps = config.epochs * -(-len(xt) // config.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    hist: dict[str, list[float]] = {"loss": [], "mimic": [], "kl": [], "nll": [], "finetune_ce": []}
    for epoch in range(config.epochs):
        for m in (head1, head2, clf):
            if m is not None:
                m.train()
        perm = torch.randperm(len(xt), generator=g)
        sums = np.zeros(4)
        nb = 0
        for i in range(0, len(xt), config.batch_size):
            bi = perm[i:i + config.batch_size]
            xb, yb = xt[bi], yt[bi]
            mu, logvar = head1.posterior(xb)
            z = reparameterize(mu, logvar, g)
            lm = mimic_loss(head2(z), target[bi], config.mimic)
            zero = torch.zeros((), dtype=lm.dtype)
            lr_ = clf.kl_closest(mu, torch.exp(logvar), yb).mean() if clf is not None and config.beta else zero
            lc = -clf.log_gamma(z)[torch.arange(len(yb)), yb].mean() if clf is not None and config.gamma else zero
            loss = config.alpha * lm + config.beta * lr_ + config.gamma * lc
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            sums += [float(v.detach()) for v in (loss, lm, lr_, lc)]
            nb += 1
        for k, v in zip(("loss", "mimic", "kl", "nll"), sums / max(nb, 1)):
            hist[k].append(round(float(v), 5))
        if log:
            log(f"joint epoch {epoch + 1}/{config.epochs}: loss {hist['loss'][-1]:.4f} mimic {hist['mimic'][-1]:.4f} "
                f"kl {hist['kl'][-1]:.2f} nll {hist['nll'][-1]:.3f}")
    model = RebelModel(head1, head2, tail, clf, config, hist)
    finetune_remote(model, x, y, g, log)
    return model.eval()


def finetune_remote(model: RebelModel, x: np.ndarray, y: np.ndarray, g: torch.Generator,
                    log: Callable[[str], None] | None = None) -> None:
    """Head2 + Tail on z = mu (Head1 and the classifier frozen), cross-entropy."""
    cfg = model.config
    if cfg.finetune_epochs < 1:
        return
    model.head1.eval()
    with torch.no_grad():
        z = model.head1.posterior(torch.from_numpy(x))[0]
    yt = torch.from_numpy(y)
    remote = RemoteModel(model.head2, model.tail)
    opt = torch.optim.Adam(remote.parameters(), lr=cfg.finetune_lr)
    for epoch in range(cfg.finetune_epochs):
        remote.train()
        perm = torch.randperm(len(z), generator=g)
        total, nb = 0.0, 0
        for i in range(0, len(z), cfg.batch_size):
            bi = perm[i:i + cfg.batch_size]
            loss = nn.functional.cross_entropy(remote(z[bi]), yt[bi])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach())
            nb += 1
        model.history["finetune_ce"].append(round(total / max(nb, 1), 5))
        if log:
            log(f"fine-tune epoch {epoch + 1}/{cfg.finetune_epochs}: ce {model.history['finetune_ce'][-1]:.4f}")
    remote.eval()
