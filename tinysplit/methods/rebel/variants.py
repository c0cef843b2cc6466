"""ReBEL variant names and their changes to the base RebelConfig (light: the CLI lists them without
importing torch)."""

from __future__ import annotations

from typing import Any

VARIANTS: dict[str, dict[str, Any]] = {
    "gmc": {},
    "gmc_noreg": {"beta": 0.0},
    "gmc_diag": {"covariance": "diag"},
    "gmc_proj": {"proj_dim": 8},
    "linear": {"classifier": "linear"},
    "linear_noreg": {"classifier": "linear", "beta": 0.0},
    "hnd": {"classifier": "none", "beta": 0.0, "gamma": 0.0},
}
