"""The variational bottleneck injected into a trained split model (paper sec. III-A, Fig. 2-3).

The original head H (device) + tail T (host) becomes Head1 (device) -> z -> Head2 (host) -> T:
- ``Head1``: a few conv + BatchNorm + ReLU layers, then two convolutions over the whole remaining
  feature map: mu(x) and log sigma^2(x), each (N, D, 1, 1). In training z ~ N(mu, diag sigma^2)
  (reparameterization); on the device z = mu (the log-variance branch is not exported).
  BatchNorm + ReLU instead of the paper's GDN: docs/rebel.md (GDN needs RSQRT in int8).
  A 1x1 spatial latent keeps the int8 export free of TRANSPOSE ops (no NCHW flatten on the device).
- ``Head2``: a transposed conv back to H's output shape, then convs; it ends like H (BN + ReLU).
- the tail is the original one (fine-tuned with cross-entropy at the end).

``digits_rebel_modules`` builds both heads for the digits example, cut where NAIR cuts it (after
conv2: H(x) is 32 x 4 x 4): Head1 is 8 -> 16 channels (about a third of H's MACs) and z has D = 16
values, a quarter of the 8x8 input.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Head1(nn.Module):
    """trunk -> (mu, logvar), each (N, D, 1, 1). forward() returns mu (the device's z)."""

    def __init__(self, trunk: nn.Module, trunk_channels: int, trunk_hw: tuple[int, int], latent: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.latent = latent
        self.mu = nn.Conv2d(trunk_channels, latent, trunk_hw)
        self.logvar = nn.Conv2d(trunk_channels, latent, trunk_hw)
        with torch.no_grad():  # start with a small posterior variance
            self.logvar.weight.mul_(0.1)
            self.logvar.bias.fill_(-2.0)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar), each (N, D)."""
        h = self.trunk(x)
        return torch.flatten(self.mu(h), 1), torch.flatten(self.logvar(h), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mu(self.trunk(x))


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + sigma * eps, eps ~ N(0, I)."""
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)  # the CPU generator's draws
    return mu + torch.exp(0.5 * logvar) * eps


class Head2(nn.Module):
    """(N, D) or (N, D, 1, 1) -> the original head's output shape (N, C_out, H, W)."""

    def __init__(self, latent: int, out_channels: int, out_hw: tuple[int, int], width: int = 32,
                 out_relu: bool = True) -> None:
        """``out_relu=False`` for an H that ends linearly (a MobileNetV2 projection: negative values)."""
        super().__init__()
        self.latent = latent
        self.up = nn.Sequential(nn.ConvTranspose2d(latent, width, out_hw, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.body = conv_bn_relu(width, width)
        self.out = (conv_bn_relu(width, out_channels) if out_relu else
                    nn.Sequential(nn.Conv2d(width, out_channels, 3, 1, 1, bias=False), nn.BatchNorm2d(out_channels)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        return self.out(self.body(self.up(z)))


class RemoteModel(nn.Module):
    """Head2 + Tail: the host's model on z."""

    def __init__(self, head2: nn.Module, tail: nn.Module) -> None:
        super().__init__()
        self.head2 = head2
        self.tail = tail

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.tail(self.head2(z))


def digits_rebel_modules(latent: int = 16, seed: int = 0) -> tuple[Head1, Head2]:
    """Head1 and Head2 for the digits example (H: 1x8x8 -> 32x4x4)."""
    torch.manual_seed(seed)
    trunk = nn.Sequential(conv_bn_relu(1, 8), conv_bn_relu(8, 16, stride=2))
    return Head1(trunk, 16, (4, 4), latent), Head2(latent, 32, (4, 4))
