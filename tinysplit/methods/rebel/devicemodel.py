"""Head1 + GMC as one int8-friendly device model: the device decides early vs remote.

The GMC becomes layers that TFLite int8 and tinysplit's code generator support (CONV_2D 1x1 on a 1x1
map, MUL, SOFTMAX, CONCATENATION), on z = mu (N, D, 1, 1):

  u_ck   = A_ck z - b_ck                     whitened coordinates, A_ck = U_ck^-1 P (gmc.whitening)
  v      = clamp(u / R, -1, 1)               1x1 conv D -> C*K*d, fused RELU_N1_TO_1: |u| clipped at R
  q      = v * v                             MUL (square), in [0, 1]
  l'_ck  = relu(c_ck - R^2/2 sum_d q - f)    1x1 conv -> C*K (weights -R^2/2, bias c_ck - f), fused RELU
           with c_ck = log pi_ck - sum log diag U_ck - d/2 log 2 pi: the joint log-density, floored at f
  w      = softmax(l')                       over the C*K components
  s*gamma_c = sum_k s * w_ck                 1x1 conv C*K -> C with 0/s weights
  out    = concat(z, s * gamma)              one output tensor (N, D + C, 1, 1), one quantization

Why the two clips. int8 tensors have one scale each: far components have squared distances in the
hundreds, which would set the scale and erase the near ones. Clipping |u| at R (the largest |u| on
the calibration latents, at most 8 whitened standard deviations) bounds the squares; flooring the joint log-density at f (set from the
calibration latents: ``floor_margin`` nats below the lowest per-sample maximum) bounds the softmax
input. Where the best component is within R of z in every direction and the others' terms fall
below the floor, nothing changes: int8 SOFTMAX resolves 1/256, i.e. entries ~5.5 nats below the
maximum vanish anyway. A latent far from every component gets a flattened, lower confidence: it
goes to the host.

Why one output. The generated C model API has one output tensor (modelsrc.p_output()) and the
code generator refuses models with more (lower_model); the exporter also takes one output per device
piece (spec.validate_spec, bundle.run_device_model). So z and the confidences share one tensor and
one int8 scale; the confidences are multiplied by s = max |z| over the calibration latents so they
use the same range as z instead of widening it (docs/rebel.md measures the cost). The device reads
gamma_c = (q[D + c] - zero_point) * scale / s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tinysplit.methods.rebel.gmc import LOG_2PI, GaussianMixtureClassifier
from tinysplit.methods.rebel.model import Head1


@dataclass(frozen=True)
class DeviceLayout:
    """Where z and the class confidences are in the device model's one output, and how to read them."""

    latent: int  # D: output channels [0, D) are z
    classes: int  # C: output channels [D, D + C) are s * gamma_c
    confidence_scale: float  # s

    def split(self, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(z, gamma) from float (dequantized) outputs of shape (N, ..., D + C)."""
        flat = np.asarray(out).reshape(len(out), -1)
        if flat.shape[1] != self.latent + self.classes:
            raise ValueError(f"device output has {flat.shape[1]} values per sample; the layout expects "
                             f"{self.latent} + {self.classes}")
        return flat[:, :self.latent], flat[:, self.latent:] / self.confidence_scale

    def to_json(self) -> dict:
        return {"latent": self.latent, "classes": self.classes, "confidence_scale": self.confidence_scale}


class GmcLayers(nn.Module):
    """The GMC of ``gmc`` as 1x1 convolutions, MUL and SOFTMAX on (N, D, 1, 1); returns (N, C, 1, 1) s * gamma."""

    def __init__(self, gmc: GaussianMixtureClassifier, clip: float = 4.0, floor: float = -1e4,
                 confidence_scale: float = 1.0) -> None:
        super().__init__()
        if clip <= 0:
            raise ValueError(f"clip radius must be positive, got {clip}")
        with torch.no_grad():
            a, b, log_det_half = gmc.whitening()
            c, k, d, din = a.shape
            m = c * k * d
            self.whiten = nn.Conv2d(din, m, 1)
            self.whiten.weight.copy_(a.reshape(m, din)[:, :, None, None] / clip)
            self.whiten.bias.copy_(-b.reshape(m) / clip)
            self.density = nn.Conv2d(m, c * k, 1)
            w = torch.zeros(c * k, m)
            for j in range(c * k):
                w[j, j * d:(j + 1) * d] = -clip ** 2 / 2.0
            self.density.weight.copy_(w[:, :, None, None])
            const = gmc.log_pi() - log_det_half - 0.5 * d * LOG_2PI
            self.density.bias.copy_(const.reshape(-1) - floor)
            self.floor_relu = nn.ReLU()
            self.per_class = nn.Conv2d(c * k, c, 1, bias=False)
            w3 = torch.zeros(c, c * k)
            for ci in range(c):
                w3[ci, ci * k:(ci + 1) * k] = confidence_scale
            self.per_class.weight.copy_(w3[:, :, None, None])
        self.clip, self.floor, self.confidence_scale = clip, floor, confidence_scale

    def clipped(self, z: torch.Tensor) -> torch.Tensor:
        """u / R clamped to [-1, 1] (Clip(-1, 1) fuses into the conv as RELU_N1_TO_1)."""
        return torch.clamp(self.whiten(z), -1.0, 1.0)

    def joint_log(self, z: torch.Tensor) -> torch.Tensor:
        """(N, C*K) the clipped joint log-density before the floor (for calibration and tests)."""
        v = self.clipped(z)
        return self.density(v * v).flatten(1) + self.floor

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        v = self.clipped(z)
        logits = self.floor_relu(self.density(v * v))
        return self.per_class(torch.softmax(logits, dim=1))


class DeviceEarlyExit(nn.Module):
    """Head1's trunk and mu branch, then the GMC layers; output (N, D + C, 1, 1) = [z, s * gamma]."""

    def __init__(self, head1: Head1, layers: GmcLayers) -> None:
        super().__init__()
        self.trunk = head1.trunk
        self.mu = head1.mu
        self.gmc = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.mu(self.trunk(x))
        return torch.cat([z, self.gmc(z)], dim=1)


class RemoteFromDevice(nn.Module):
    """The host's model on the device output: takes channels [0, D) (z) and runs Head2 + Tail."""

    def __init__(self, remote: nn.Module, latent: int) -> None:
        super().__init__()
        self.remote = remote
        self.latent = latent

    def forward(self, out: torch.Tensor) -> torch.Tensor:
        return self.remote(out[:, :self.latent])


@torch.no_grad()
def build_device_model(head1: Head1, gmc: GaussianMixtureClassifier, calibration: np.ndarray,
                       clip_max: float = 8.0, floor_margin: float = 8.0) -> tuple[DeviceEarlyExit, DeviceLayout, dict]:
    """The device model for ``head1`` + ``gmc`` with its constants set from ``calibration`` inputs:
    s = max |z|; the clip radius R = the largest whitened coordinate |u| of any component on the
    calibration latents, at most ``clip_max`` (so calibration data is not clipped unless components
    are farther than that); the floor ``floor_margin`` nats below the lowest per-sample maximum of
    the joint log-density. Returns (model, layout, constants)."""
    head1.eval()
    gmc.eval()
    z = head1(torch.from_numpy(calibration))
    s = float(z.abs().max())
    a, b, _ = gmc.whitening()
    u_max = float((torch.einsum("ckdj,nj->nckd", a, z.flatten(1)) - b).abs().max())
    clip = min(u_max, clip_max)
    probe = GmcLayers(gmc, clip=clip, floor=0.0)
    top = probe.joint_log(z).max(dim=1).values
    floor = float(top.min()) - floor_margin
    layers = GmcLayers(gmc, clip=clip, floor=floor, confidence_scale=s)
    model = DeviceEarlyExit(head1, layers).eval()
    layout = DeviceLayout(head1.latent, gmc.classes, s)
    consts = {"clip": clip, "whitened_max": u_max, "floor": floor, "floor_margin": floor_margin, "confidence_scale": s,
              "joint_log_max": [float(top.min()), float(top.max())]}
    return model, layout, consts
