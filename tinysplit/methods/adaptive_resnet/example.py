"""The digits example of Adaptive ResNet: an AdaptiveNet (config ``model.DIGITS``: a 16-channel stem,
two stages of two ResBlocks, 8x8 -> 4x4x32, 4 skippable blocks) trained on scikit-learn's 8x8 digits
with a drop policy, and its export. Data ships with scikit-learn: no download. Single-threaded
training, so that the weights (and the bundle) are the same on every run and machine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinysplit.methods.adaptive_resnet.model import DIGITS, AdaptiveNet
from tinysplit.methods.adaptive_resnet.train import TrainConfig, config_json, train_adaptive

CALIBRATION = 300


@dataclass
class DigitsAdaptive:
    model: AdaptiveNet
    train: TrainConfig
    x_train: np.ndarray
    y_train: np.ndarray
    x_heldout: np.ndarray
    y_heldout: np.ndarray


def train_digits_adaptive(epochs: int = 20, policy: str = "block_drop", say=None) -> DigitsAdaptive:
    import torch

    from tinysplit.examples.digits import load_digits_split

    x_tr, y_tr, x_te, y_te = load_digits_split()
    tc = TrainConfig(epochs=epochs, policy=policy)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = train_adaptive(DIGITS, x_tr, y_tr, tc, say=say)
    finally:
        torch.set_num_threads(threads)
    return DigitsAdaptive(model, tc, x_tr, y_tr, x_te, y_te)


def export_digits_adaptive(t: DigitsAdaptive, out_dir: str | Path, name: str = "digits_adaptive",
                           default_mask: int = 0, progress=None):
    from tinysplit.examples.digits import CLASSES, SEED
    from tinysplit.methods.adaptive_resnet.export import export_adaptive

    calib = t.x_train[np.random.default_rng(SEED).permutation(len(t.x_train))[:CALIBRATION]]
    return export_adaptive(t.model, calib, t.x_heldout, t.y_heldout, out_dir, name, CLASSES, default_mask,
                           train=config_json(t.train), progress=progress)
