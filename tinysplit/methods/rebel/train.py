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


@torch.no_grad()
def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, size: int = 1000,
            device: str | None = None) -> torch.Tensor:
    """fn over x in batches of ``size`` (no gradients), concatenated: the whole training set at once
    (50,000 CIFAR images) would hold every activation in memory. With ``device``, each batch runs
    there and the result stays there."""
    move = (lambda t: t.to(device)) if device else (lambda t: t)
    return torch.cat([fn(move(x[i:i + size])) for i in range(0, len(x), size)]) if len(x) else fn(move(x))


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
        return batched(lambda b: self.head1.posterior(b)[0], torch.from_numpy(x)).numpy()

    @torch.no_grad()
    def remote_logits(self, z: np.ndarray) -> np.ndarray:
        self.eval()
        return batched(RemoteModel(self.head2, self.tail), torch.from_numpy(np.asarray(z, np.float32))).numpy()

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


Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def train_rebel(teacher_head: nn.Module, tail: nn.Module, head1: Head1, head2: Head2, x: np.ndarray, y: np.ndarray,
                classes: int, config: RebelConfig = RebelConfig(),
                log: Callable[[str], None] | None = None, augment: Augment | None = None,
                device: str | None = None) -> RebelModel:
    """Train on copies of ``tail`` (the heads are trained in place). ``teacher_head`` is H, frozen.

    ``augment(batch, generator)``, if given, transforms every training batch (random crops and flips for
    CIFAR); the teacher then runs on each augmented batch instead of once on the data. ``device``
    ("cuda") trains there (random draws stay on the CPU's generator); the model comes back on the CPU."""
    torch.manual_seed(config.seed)
    g = torch.Generator().manual_seed(config.seed)
    tail = copy.deepcopy(tail)
    dev = torch.device(device or "cpu")
    teacher = copy.deepcopy(teacher_head).to(dev).eval() if device else teacher_head.eval()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    clf = make_classifier(config, head1.latent, classes)
    for m in (head1, head2, tail):
        m.to(dev)
    target = None if augment else batched(teacher, xt, device=device)
    if clf is not None:
        head1.eval()
        clf.init_means(batched(lambda b: head1.posterior(b)[0], xt, device=device).cpu(), yt, g)
        clf.to(dev)
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
            xb, yb = xt[bi], yt[bi].to(dev)
            if augment:
                xb = augment(xb, g).to(dev)
                with torch.no_grad():
                    tb = teacher(xb)
            else:
                xb, tb = xb.to(dev), target[bi.to(target.device)]
            mu, logvar = head1.posterior(xb)
            z = reparameterize(mu, logvar, g)
            lm = mimic_loss(head2(z), tb, config.mimic)
            zero = torch.zeros((), dtype=lm.dtype, device=lm.device)
            lr_ = clf.kl_closest(mu, torch.exp(logvar), yb).mean() if clf is not None and config.beta else zero
            lc = -clf.log_gamma(z)[torch.arange(len(yb), device=yb.device), yb].mean() if clf is not None and config.gamma else zero
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
    finetune_remote(model, x, y, g, log, augment, device)
    for m in (head1, head2, tail, clf):
        if m is not None:
            m.cpu()
    return model.eval()


def finetune_remote(model: RebelModel, x: np.ndarray, y: np.ndarray, g: torch.Generator,
                    log: Callable[[str], None] | None = None, augment: Augment | None = None,
                    device: str | None = None) -> None:
    """Head2 + Tail on z = mu (Head1 and the classifier frozen), cross-entropy; with ``augment``, z of
    each augmented batch. The modules must already be on ``device``."""
    cfg = model.config
    if cfg.finetune_epochs < 1:
        return
    model.head1.eval()
    xt = torch.from_numpy(x)
    encode = lambda b: model.head1.posterior(b)[0]
    z = xt if augment else batched(encode, xt, device=device)
    yt = torch.from_numpy(y).to(z.device if not augment else torch.device(device or "cpu"))
    remote = RemoteModel(model.head2, model.tail)
    opt = torch.optim.Adam(remote.parameters(), lr=cfg.finetune_lr)
    for epoch in range(cfg.finetune_epochs):
        remote.train()
        perm = torch.randperm(len(z), generator=g)
        total, nb = 0.0, 0
        for i in range(0, len(z), cfg.batch_size):
            bi = perm[i:i + cfg.batch_size]
            zb = batched(encode, augment(z[bi], g), device=device) if augment else z[bi.to(z.device)]
            loss = nn.functional.cross_entropy(remote(zb), yt[bi.to(yt.device)])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach())
            nb += 1
        model.history["finetune_ce"].append(round(total / max(nb, 1), 5))
        if log:
            log(f"fine-tune epoch {epoch + 1}/{cfg.finetune_epochs}: ce {model.history['finetune_ce'][-1]:.4f}")
    remote.eval()
