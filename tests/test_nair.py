"""NAIR: importance order, slice weights, penalty, baking, re-tuning, and the evaluation as deployed."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from tinysplit.errors import InputError
from tinysplit.methods.nair.order import (bake_order, compute_order, fold_batchnorm, penalty, sampled_slice_loss,
                                    slice_losses, slice_masks, slice_weights)
from tinysplit.methods.nair.evaluate import split_sequential


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


def test_sampled_slice_loss_is_an_unbiased_estimate_of_the_weighted_sum():
    head, tail = small_split()
    x, y = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    w = torch.tensor([0.9, 0.3, 1.0, 1.0])
    with torch.no_grad():
        f = head(x)
        exact = float((w * slice_losses(f, tail, y, 2)).sum())
        g = torch.Generator().manual_seed(0)
        draws = np.array([float(sampled_slice_loss(f, tail, y, 2, w, 1, g)) for _ in range(3000)])
        # a zero weight is never drawn: with all weight on the full width, the estimate is exact
        only_full = sampled_slice_loss(f, tail, y, 2, torch.tensor([0.0, 0.0, 0.0, 1.0]), 3, g)
        k3 = sampled_slice_loss(f, tail, y, 2, w, 3, torch.Generator().manual_seed(1))
    stderr = draws.std() / np.sqrt(len(draws))
    assert draws.std() > 0  # the draws do vary
    assert abs(draws.mean() - exact) < 4 * stderr, (draws.mean(), exact, stderr)
    torch.testing.assert_close(only_full, nn.functional.cross_entropy(tail(f), y))
    assert torch.isfinite(k3)
    with pytest.raises(InputError, match="3 slice weights for 4 units"):
        sampled_slice_loss(f, tail, y, 2, w[:3], 1, g)


def test_sampled_retuning_with_cosine_schedule_learns_small_budgets(digits_nair):
    """The cheap estimator trains the same objective: after re-tuning on digits with 2 slice counts
    per image and a cosine schedule, 1-unit float accuracy is far above the untuned L1 order's."""
    from tinysplit.methods.nair.order import RetuneConfig, prepare_variant

    t = digits_nair
    x, y = torch.from_numpy(t.x_heldout), torch.from_numpy(t.y_heldout)

    def one_unit_accuracy(head, tail):
        with torch.no_grad():
            f = head(x)
            f[:, t.unit_channels:] = 0
            return float((tail(f).argmax(1) == y).float().mean())

    accs = {}
    for v in ("l1_order", "nair"):
        head, tail = [copy.deepcopy(m) for m in (t.head, t.tail)]
        cfg = RetuneConfig(epochs=2, slice_samples=2, cosine=True)
        _, info = prepare_variant(head, tail, t.split_layer, t.tail_first_layer, v, t.x_train, t.y_train,
                                  t.unit_channels, cfg)
        accs[v] = one_unit_accuracy(head, tail)
    assert info["slice_samples"] == 2 and info["cosine"] is True
    assert accs["nair"] > accs["l1_order"] + 0.15, accs  # measured: 0.32 vs 0.09
    with pytest.raises(InputError, match="slice_samples must be at least 1"):
        prepare_variant(head, tail, t.split_layer, t.tail_first_layer, "nair", t.x_train, t.y_train, t.unit_channels,
                        RetuneConfig(epochs=1, slice_samples=0))


def test_retuning_freezes_batchnorm_statistics_only_when_asked():
    """freeze_bn_stats=True: every BatchNorm normalizes with its trained statistics during re-tuning
    and never updates them, while the affine parameters still learn. By default (False) the
    statistics follow the batches, as in training."""
    from tinysplit.methods.nair.order import RetuneConfig, prepare_variant

    torch.manual_seed(0)
    head = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 8, 3, padding=1))
    tail = nn.Sequential(nn.Conv2d(8, 6, 1, bias=False), nn.BatchNorm2d(6), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(6, 3))
    x = np.random.default_rng(0).normal(size=(64, 1, 6, 6)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 3, 64)
    bns = lambda h, t: [m for m in (*h.modules(), *t.modules()) if isinstance(m, nn.BatchNorm2d)]
    for freeze in (True, False):
        h, t = copy.deepcopy(head).eval(), copy.deepcopy(tail).eval()
        before = [(m.running_mean.clone(), m.running_var.clone(), m.weight.detach().clone()) for m in bns(h, t)]
        _, info = prepare_variant(h, t, "3", "0", "nair", x, y, 2, RetuneConfig(epochs=1, freeze_bn_stats=freeze))
        assert info["freeze_bn_stats"] is freeze and not h.training and not t.training
        for (mean, var, gamma), m in zip(before, bns(h, t)):
            assert torch.equal(mean, m.running_mean) is freeze and torch.equal(var, m.running_var) is freeze
            assert not torch.equal(gamma, m.weight)  # the affine parameters learn either way


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


def test_retuning_improves_low_budget_accuracy_on_the_int8_path(tmp_path, digits_nair):
    """A short re-tuning run: NAIR beats the original order at small budgets, measured with the
    exported int8 head (TFLite Micro), zero-filled units and the ONNX tail."""
    from tinysplit.methods.nair.order import RetuneConfig
    from tinysplit.methods.nair.evaluate import evaluate

    report = evaluate(digits_nair, tmp_path, ("original", "nair"), RetuneConfig(epochs=2))
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


def test_nair_eval_command_with_sampled_slices_and_its_bad_numbers(tmp_path):
    from conftest import run_cli

    for bad in (("--epochs", "0"), ("--slice-samples", "0"), ("--lr", "0")):
        r = run_cli("nair-eval", "--example", "digits", "--out", str(tmp_path / "bad"), *bad)
        assert r.returncode == 2, r.stderr
        assert "--slice-samples must be >= 1" in r.stderr and not (tmp_path / "bad").exists()
    r = run_cli("nair-eval", "--example", "digits", "--out", str(tmp_path / "out"), "--variants", "original,nair",
                "--epochs", "1", "--train-epochs", "10", "--slice-samples", "2", "--cosine", "--lr", "2e-3",
                "--freeze-bn-stats", "--json", "-q")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    info = report["variants"]["nair"]["retune"]
    assert (info["slice_samples"], info["cosine"], info["epochs"], info["freeze_bn_stats"]) == (2, True, 1, True)
    assert len(report["variants"]["nair"]["accuracy"]) == 16
    assert report == json.loads((tmp_path / "out" / "nair_eval.json").read_text())
