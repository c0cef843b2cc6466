"""Generalized Divisive Normalization (Balle et al., the paper's normalization), for the comparison only.

    y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)

beta > 0 and gamma >= 0 are kept by reparameterization (squares of free parameters plus a floor).
docs/rebel.md records why Head1 uses BatchNorm + ReLU instead: GDN's int8 TFLite form needs
RSQRT/SQRT/DIV, which the code generator does not support (measured with ``gdn_export_probe``).
"""

from __future__ import annotations

import torch
from torch import nn


class GDN(nn.Module):
    def __init__(self, channels: int, beta_min: float = 1e-6, gamma_init: float = 0.1) -> None:
        super().__init__()
        self.beta_min = beta_min
        self.beta = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(gamma_init * torch.eye(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self.beta ** 2 + self.beta_min
        gamma = (self.gamma ** 2)[:, :, None, None]
        norm = nn.functional.conv2d(x * x, gamma, beta)
        return x / torch.sqrt(norm)

    def frozen(self) -> "FrozenGDN":
        """The same function with beta and gamma as a plain 1x1 convolution (what an exporter sees)."""
        f = FrozenGDN(len(self.beta))
        with torch.no_grad():
            f.norm.weight.copy_((self.gamma ** 2)[:, :, None, None])
            f.norm.bias.copy_(self.beta ** 2 + self.beta_min)
        return f


class FrozenGDN(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / torch.sqrt(self.norm(x * x))


def gdn_export_probe(out_dir, log=None) -> dict:
    """Export a small GDN head (conv -> GDN -> conv -> GDN) on digits with ``export_bundle`` and report
    what happens: the error (type and message) or the ops of the int8 model."""

    from tinysplit.errors import TinysplitError
    from tinysplit.examples.digits import load_digits_split
    from tinysplit.exporter import DevicePiece, ExportSpec, export_bundle

    torch.manual_seed(0)
    head = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), GDN(8).frozen(), nn.Conv2d(8, 16, 3, 2, 1),
                         GDN(16).frozen()).eval()
    x_tr, _, x_te, _ = load_digits_split()
    spec = ExportSpec(name="gdn_probe", device=[DevicePiece("head1", head, "features")],
                      calibration=x_tr[:200], heldout=x_te[:50])
    try:
        res = export_bundle(spec, out_dir, force=True, progress=log)
    except TinysplitError as e:
        return {"exported": False, "error": type(e).__name__, "message": str(e)}
    return {"exported": True, "ops": list(res.manifest.device_models[0].ops)}
