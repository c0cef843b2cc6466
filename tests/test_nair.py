"""NAIR: importance order, slice weights, penalty, baking, re-tuning, and the evaluation as deployed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from tinysplit.errors import InputError
from tinysplit.methods.nair import (bake_order, compute_order, fold_batchnorm, penalty, slice_losses, slice_masks,
                                    slice_weights)
from tinysplit.methods.nair_eval import split_sequential


def small_split(seed=0):
    torch.manual_seed(seed)
    head = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1, bias=False),
                         nn.BatchNorm2d(8), nn.ReLU())
    tail = nn.Sequential(nn.Conv2d(8, 6, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))
    head[3].running_mean.uniform_(-1, 1)
    head[3].running_var.uniform_(0.5, 2)
    head[3].weight.data.uniform_(0.5, 2)
    return head.eval(), tail.eval()


def test_importance_is_l1_of_filters_and_units_sum_channels():
    conv = nn.Conv2d(2, 4, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -2, 0.5, 0.5, 3, 3, 0, -1]).reshape(4, 2, 1, 1))
    o = compute_order(conv, 2)
    assert o.channel_importance == (3.0, 1.0, 6.0, 1.0)
    assert o.unit_importance == (4.0, 7.0)
    assert o.unit_order == (1, 0) and o.channel_order == (2, 3, 0, 1)
    with pytest.raises(InputError, match="does not divide"):
        compute_order(conv, 3)


def test_slice_weights_follow_the_cumulative_importance():
    w = slice_weights(np.array([4.0, 3.0, 2.0, 1.0]), 2.0)
    np.testing.assert_allclose(w, [(1 - 0.4) ** 2, (1 - 0.7) ** 2, (1 - 0.9) ** 2, 1.0])
    assert list(slice_weights(np.array([1.0, 1.0]), 0.0)) == [1.0, 1.0]


def test_penalty_spares_the_most_important_unit():
    conv = nn.Conv2d(1, 4, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([10.0, -10, 1, -2]).reshape(4, 1, 1, 1))
    assert float(penalty(conv, 2).detach()) == 3.0


def test_fold_batchnorm_is_exact():
    head, _ = small_split()
    x = torch.randn(5, 4, 6, 6)
    fused = fold_batchnorm(head[2], head[3])
    with torch.no_grad():
        torch.testing.assert_close(fused(x), head[3](head[2](x)), atol=1e-5, rtol=1e-5)


def test_baked_permutation_leaves_the_float_model_unchanged():
    head, tail = small_split(3)
    x = torch.randn(7, 1, 8, 8)
    with torch.no_grad():
        before = tail(head(x))
    order = bake_order(head, "2", tail, "0", unit_channels=2)
    with torch.no_grad():
        after = tail(head(x))
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    assert isinstance(head[3], nn.Identity)  # BatchNorm folded into the split conv
    # after baking, importance is non-increasing across units
    imp = compute_order(head[2], 2).unit_importance
    assert all(a >= b - 1e-9 for a, b in zip(imp, imp[1:]))
    assert sorted(order.unit_order) == list(range(4))


def test_masks_and_slice_losses():
    m = slice_masks(6, 2)
    assert m.tolist() == [[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1] * 6]
    head, tail = small_split()
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        losses = slice_losses(head(x), tail, y, 2)
        f = head(x)
        want = nn.functional.cross_entropy(tail(f * m.new_tensor([1, 1, 0, 0, 0, 0, 0, 0])[None, :, None, None]), y)
    assert losses.shape == (4,)
    torch.testing.assert_close(losses[0], want)


def test_split_sequential_and_its_errors():
    head, tail = small_split()
    model = nn.Sequential(*head, *tail)
    h, t, split, first = split_sequential(model, "4")
    assert (split, first) == ("2", "0") and len(h) == 5
    with pytest.raises(InputError, match="no Conv2d before"):
        split_sequential(nn.Sequential(nn.ReLU(), nn.Conv2d(1, 2, 1)), "0")
    with pytest.raises(InputError, match="output channels but"):
        split_sequential(nn.Sequential(nn.Conv2d(1, 2, 1), nn.Conv2d(3, 2, 1)), "0")
    with pytest.raises(InputError, match="not a child"):
        split_sequential(model, "nope")
    with pytest.raises(InputError, match="must be a Conv2d"):
        bake_order(head, "2", tail, "4", 2)


def test_retuning_improves_low_budget_accuracy_on_the_int8_path(tmp_path):
    """A short re-tuning run: NAIR beats the original order at small budgets, measured with the
    exported int8 head (TFLite Micro), zero-filled units and the ONNX tail."""
    from tinysplit.methods.nair import RetuneConfig
    from tinysplit.methods.nair_eval import digits_nair_spec, evaluate

    spec = digits_nair_spec()
    report = evaluate(spec, tmp_path, ("original", "nair"), RetuneConfig(epochs=2))
    orig, nair = report["variants"]["original"]["accuracy"], report["variants"]["nair"]["accuracy"]
    assert len(orig) == len(nair) == 16
    for b in (1, 2, 4):
        assert nair[b - 1] > orig[b - 1] + 0.2, f"budget {b}: {nair[b - 1]} vs {orig[b - 1]}"
    assert nair[15] >= 0.9  # the full representation keeps its accuracy (2 epochs of re-tuning)
    saved = json.loads((tmp_path / "nair_eval.json").read_text())
    assert saved["variants"]["nair"]["retune"]["lambda"] > 0
    assert saved["bytes_per_sample"][0] < saved["bytes_per_sample"][-1]
    assert (tmp_path / "nair_eval.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "bundles" / "nair" / "manifest.json").is_file()
