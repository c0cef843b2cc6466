"""ReBEL: the GMC and its KL against references, the random projection, coverage mechanics, the device
rule, the int8-friendly formulation (float equality), a short training on digits and its int8 export."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from torch.distributions import MultivariateNormal, kl_divergence

from tinysplit.methods.rebel.classifiers import KMeansClassifier, KnnClassifier, LinearClassifier
from tinysplit.methods.rebel.coverage import (coverage_curve, local_accuracy_at_coverage, max_coverage_within,
                                              overall_at_coverage)
from tinysplit.methods.rebel.decision import decide, threshold_q
from tinysplit.methods.rebel.devicemodel import DeviceLayout, GmcLayers
from tinysplit.methods.rebel.gmc import GaussianMixtureClassifier, achlioptas_projection
from tinysplit.methods.rebel.model import reparameterize
from tinysplit.methods.rebel.train import mimic_loss


def random_gmc(covariance: str, proj_dim: int | None = None, seed: int = 0, in_dim: int = 5, classes: int = 3,
               components: int = 2) -> GaussianMixtureClassifier:
    torch.manual_seed(seed)
    g = GaussianMixtureClassifier(in_dim, classes, components, covariance, proj_dim, proj_seed=seed).double()
    with torch.no_grad():
        g.L.normal_(0, 0.7)
        g.pi_logits.normal_()
        g.means.normal_(0, 2)
    return g.eval()


def scipy_log_densities(g: GaussianMixtureClassifier, z: np.ndarray) -> np.ndarray:
    """(N, C, K) log N(P z; mu_ck, Sigma_ck) with scipy, Sigma built from the raw parameters here."""
    pz = z if g.projection is None else z @ g.projection.double().numpy().T
    L = g.L.detach().numpy()
    out = np.zeros((len(z), g.classes, g.components))
    for c in range(g.classes):
        for k in range(g.components):
            if g.covariance == "full":
                low = np.tril(L[c, k])
                cov = low @ low.T + np.eye(g.dim)
            else:
                cov = np.diag(L[c, k] ** 2 + 1.0)
            out[:, c, k] = multivariate_normal(g.means[c, k].detach().numpy(), cov).logpdf(pz)
    return out


@pytest.mark.parametrize("covariance,proj", [("full", None), ("diag", None), ("full", 3), ("diag", 3)])
def test_gmc_log_densities_and_gamma_match_scipy(covariance, proj):
    g = random_gmc(covariance, proj)
    z = np.random.default_rng(1).normal(0, 2, (40, 5))
    ref = scipy_log_densities(g, z)
    with torch.no_grad():
        got = g.component_log_density(torch.from_numpy(z)).numpy()
        gamma = g(torch.from_numpy(z)).numpy()
        pi = torch.softmax(g.pi_logits.reshape(-1), 0).reshape(g.classes, g.components).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)
    weighted = pi[None] * np.exp(ref)
    want = weighted.sum(2) / weighted.sum((1, 2))[:, None]
    np.testing.assert_allclose(gamma, want, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(gamma.sum(1), 1.0, atol=1e-12)
    assert np.abs(pi.sum() - 1) < 1e-12  # pi is a softmax over all (c, k), not per class


def test_gmc_covariances_are_the_parameterization():
    g = random_gmc("full", seed=3)
    low = torch.tril(g.L)
    torch.testing.assert_close(g.covariances(), low @ low.transpose(-1, -2) + torch.eye(5, dtype=torch.float64))
    assert bool((torch.linalg.eigvalsh(g.covariances()) >= 1 - 1e-9).all())  # L L^T + I >= I
    d = random_gmc("diag", seed=3)
    torch.testing.assert_close(torch.diagonal(d.covariances(), dim1=-2, dim2=-1), d.L ** 2 + 1)


@pytest.mark.parametrize("covariance,proj", [("full", None), ("diag", None), ("full", 3)])
def test_kl_matches_torch_distributions(covariance, proj):
    g = random_gmc(covariance, proj, seed=5)
    rng = np.random.default_rng(2)
    mu = torch.from_numpy(rng.normal(0, 2, (6, 5)))
    var = torch.from_numpy(rng.uniform(0.1, 2.0, (6, 5)))
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    with torch.no_grad():
        kl = g.kl_to_components(mu, var, labels)
        closest = g.kl_closest(mu, var, labels)
    p = torch.eye(5, dtype=torch.float64) if g.projection is None else g.projection.double()
    sig = g.covariances().detach()
    for n in range(6):
        post = MultivariateNormal(p @ mu[n], p @ torch.diag(var[n]) @ p.T)
        want = torch.stack([kl_divergence(post, MultivariateNormal(g.means[labels[n], k].detach(), sig[labels[n], k]))
                            for k in range(g.components)])
        torch.testing.assert_close(kl[n], want, rtol=1e-7, atol=1e-8)
        assert float(closest[n]) == pytest.approx(float(want.min()), rel=1e-9)
    assert bool((kl >= -1e-9).all())


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_the_covariances_learn_from_their_start(covariance):
    # L L^T (and l^2) have zero gradient at L = 0: a zero start would freeze Sigma at I forever
    torch.manual_seed(0)
    g = GaussianMixtureClassifier(4, 3, 2, covariance)
    z, y = torch.randn(64, 4) * 3, torch.randint(0, 3, (64,))
    start = g.covariances().detach().clone()
    opt = torch.optim.SGD(g.parameters(), lr=0.05)
    for _ in range(5):
        opt.zero_grad()
        (-g.log_gamma(z)[torch.arange(64), y].mean() + g.kl_closest(z, torch.ones(64, 4), y).mean()).backward()
        assert g.L.grad.abs().max() > 1e-4
        opt.step()
    moved = (g.covariances().detach() - start).abs()
    assert moved.max() > 1e-3
    if covariance == "full":  # off-diagonal terms too
        assert (moved * (1 - torch.eye(4))).max() > 1e-4


def test_kl_is_zero_when_the_posterior_is_the_component():
    g = random_gmc("diag", seed=7)
    with torch.no_grad():
        mu = g.means[1, 0][None].clone()
        var = (g.L[1, 0] ** 2 + 1)[None].clone()
        assert float(g.kl_to_components(mu, var, torch.tensor([1]))[0, 0]) == pytest.approx(0.0, abs=1e-10)


def test_linear_prior_kl_matches_torch_distributions():
    torch.manual_seed(0)
    lin = LinearClassifier(4, 3).double()
    mu, var = torch.randn(5, 4, dtype=torch.float64), torch.rand(5, 4, dtype=torch.float64) + 0.2
    y = torch.tensor([0, 1, 2, 1, 0])
    with torch.no_grad():
        got = lin.kl_closest(mu, var, y)
    for n in range(5):
        want = kl_divergence(MultivariateNormal(mu[n], torch.diag(var[n])),
                             MultivariateNormal(lin.linear.weight[y[n]].detach(), torch.eye(4, dtype=torch.float64)))
        assert float(got[n]) == pytest.approx(float(want), rel=1e-9)


def test_achlioptas_projection_statistics():
    d, D = 40, 300
    p = achlioptas_projection(D, d, seed=11)
    assert p.shape == (d, D) and p.dtype == np.float32
    np.testing.assert_array_equal(p, achlioptas_projection(D, d, seed=11))  # seeded
    assert not np.array_equal(p, achlioptas_projection(D, d, seed=12))
    a = math.sqrt(3 / d)
    vals, counts = np.unique(np.round(p / a).astype(int), return_counts=True)
    assert list(vals) == [-1, 0, 1]
    np.testing.assert_array_equal(np.sort(np.unique(np.abs(p))), np.array([0, a], np.float32))
    freq = counts / p.size  # 12,000 entries: the binomial standard deviation is <= 0.0043
    np.testing.assert_allclose(freq, [1 / 6, 2 / 3, 1 / 6], atol=0.02)
    # E[P^T P] = I: columns have squared norm ~1 and are nearly orthogonal
    ptp = p.T.astype(np.float64) @ p
    assert abs(np.diag(ptp).mean() - 1) < 0.03
    off = ptp[~np.eye(D, dtype=bool)]
    assert abs(off.mean()) < 0.01 and off.std() < 0.25
    # norms are preserved on average (Johnson-Lindenstrauss)
    x = np.random.default_rng(0).normal(size=(200, D))
    ratio = (np.linalg.norm(x @ p.T, axis=1) / np.linalg.norm(x, axis=1)) ** 2
    assert abs(ratio.mean() - 1) < 0.05
    with pytest.raises(ValueError):
        achlioptas_projection(5, 0)
    with pytest.raises(ValueError, match="must reduce"):
        GaussianMixtureClassifier(4, 3, 2, proj_dim=8)


def test_reparameterization_samples_the_posterior():
    mu = torch.tensor([[1.0, -2.0, 0.5]]).expand(20000, 3)
    logvar = torch.log(torch.tensor([[0.25, 1.0, 4.0]])).expand(20000, 3)
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    torch.testing.assert_close(z.mean(0), mu[0], atol=0.05, rtol=0)
    torch.testing.assert_close(z.var(0), torch.tensor([0.25, 1.0, 4.0]), atol=0.1, rtol=0.03)


def test_mimic_loss_mean_and_sum():
    out, target = torch.zeros(2, 3, 2, 2), torch.ones(2, 3, 2, 2)
    assert float(mimic_loss(out, target, "mean")) == 1.0
    assert float(mimic_loss(out, target, "sum")) == 12.0
    with pytest.raises(ValueError):
        mimic_loss(out, target, "max")


# --- coverage and the device rule ---------------------------------------------------------------------

def test_coverage_curve_mechanics():
    rng = np.random.default_rng(0)
    n = 500
    y = rng.integers(0, 5, n)
    conf = rng.uniform(0, 1, n)
    local = np.where(rng.uniform(size=n) < conf, y, (y + 1) % 5)  # confident samples are more often right
    remote = np.where(rng.uniform(size=n) < 0.9, y, (y + 2) % 5)
    th = np.linspace(0, 1, 11)
    c = coverage_curve(conf, local, remote, y, th)
    assert c["coverage"][0] == 1.0 and c["remote_accuracy"][0] is None
    assert all(a >= b for a, b in zip(c["coverage"], c["coverage"][1:]))  # monotone in the threshold
    assert c["overall_accuracy"][0] == pytest.approx(float((local == y).mean()))
    for i, t in enumerate(th):
        cov = c["coverage"][i]
        la, ra = c["local_accuracy"][i], c["remote_accuracy"][i]
        mix = (cov * (la or 0)) + ((1 - cov) * (ra or 0))
        assert c["overall_accuracy"][i] == pytest.approx(mix)  # overall = mix of local and remote
    # local accuracy rises with the threshold here (confidence is informative)
    la = [v for v in c["local_accuracy"] if v is not None]
    assert la[-1] > la[0] + 0.2
    assert coverage_curve(conf, local, remote, y, [1.0])["coverage"][0] == float((conf >= 1).mean())
    with pytest.raises(ValueError, match="thresholds"):
        coverage_curve(conf, local, remote, y, [-0.1, 0.5])
    with pytest.raises(ValueError, match="same length"):
        coverage_curve(conf[:-1], local, remote, y)


def test_accuracy_at_coverage_ranks_by_confidence_and_shares_ties():
    conf = np.array([0.9, 0.8, 0.8, 0.8, 0.1])
    correct = np.array([1, 1, 0, 0, 1])
    got = local_accuracy_at_coverage(conf, correct, [0.2, 0.4, 0.8, 1.0, 0.0])
    assert got[0] == 1.0
    assert got[1] == pytest.approx((1 + 1 / 3) / 2)  # one of the three tied samples, expected 1/3 correct
    assert got[2] == pytest.approx(2 / 4) and got[3] == pytest.approx(3 / 5) and got[4] is None
    remote = np.array([0, 0, 1, 1, 1])
    ov = overall_at_coverage(conf, correct, remote, [0.0, 0.2, 1.0])
    assert ov[0] == pytest.approx(remote.mean()) and ov[2] == pytest.approx(correct.mean())
    assert ov[1] == pytest.approx((1 + 0 + 1 + 1 + 1) / 5)


def test_max_coverage_within_points_of_remote_only():
    # remote-only: 6/10 correct. Served locally in confidence order; ties (0.8) move together.
    conf = np.array([0.99, 0.95, 0.9, 0.8, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    local = np.array([1, 1, 1, 0, 1, 0, 0, 0, 0, 0], bool)
    remote = np.array([1, 1, 0, 1, 1, 0, 1, 1, 0, 0], bool)
    # overall per threshold group: 0.6, 0.6, 0.7, 0.6 (both 0.8s), 0.6, 0.5, 0.4, 0.4, 0.4
    w = max_coverage_within(conf, local, remote, 0.0)
    assert w == {"coverage": 0.6, "threshold": 0.7, "overall_accuracy": pytest.approx(0.6), "remote_accuracy": 0.6}
    assert max_coverage_within(conf, local, remote, 0.1)["coverage"] == 0.7
    assert max_coverage_within(conf, local, remote, 0.3)["coverage"] == 1.0
    # nothing served locally is within: coverage 0, no threshold
    bad = max_coverage_within(conf, np.zeros(10, bool), np.ones(10, bool), 0.05)
    assert bad["coverage"] == 0.0 and bad["threshold"] is None and bad["overall_accuracy"] == 1.0
    # at equal confidences only the whole tie group can move (overall 0.4 with all of them local)
    tie = max_coverage_within(np.ones(10), local, remote, 0.0)
    assert tie["coverage"] == 0.0
    with pytest.raises(ValueError, match="same length"):
        max_coverage_within(conf[:3], local, remote, 0.02)


def test_fleet_table_reproduces_the_papers_figures():
    from tinysplit.methods.rebel.costs import fleet_rows

    # paper sec. VI-D: 100 devices x 25 frames/s, 3x32x32 images, D = 867, labels free, coverage 0.23 / 0.49
    rows = fleet_rows(3072, 867, (0.23, 0.49), 100, 25, label_payload=0)
    assert [r["name"] for r in rows] == ["raw images", "bottleneck only (HND)", "ReBEL, coverage 0.23",
                                         "ReBEL, coverage 0.49"]
    assert [round(r["payload_mbps"], 2) for r in rows] == [61.44, 17.34, 13.35, 8.84]
    # on tinysplit's wire: 24 bytes of header + CRC per frame, an image in three frames, a label in 3 bytes
    rows = fleet_rows(3072, 64, (0.5,), 100, 25)
    assert [r["wire_bytes"] for r in rows] == [3072 + 3 * 24, 64 + 24, 0.5 * (64 + 24) + 0.5 * (3 + 24)]
    assert rows[2]["payload_bytes"] == 0.5 * 64 + 0.5 * 3
    assert rows[0]["wire_mbps"] == pytest.approx(100 * 25 * 3144 * 8 / 1e6)
    with pytest.raises(ValueError, match="coverage"):
        fleet_rows(3072, 64, (1.5,))


def test_latency_adds_device_link_and_host():
    from tinysplit.link import LinkModel
    from tinysplit.methods.rebel.costs import device_seconds, latency

    link = LinkModel(250_000, 0.010)
    dev = device_seconds(6_400_000, 64e6)
    assert dev == pytest.approx(0.1)
    r = latency(0.25, 64, dev, 0.002, link)
    early = 0.1 + 27 * 8 / 250_000 + 0.010
    remote = 0.1 + 88 * 8 / 250_000 + 0.010 + 0.002
    assert r["early_ms"] == pytest.approx(1000 * early) and r["remote_ms"] == pytest.approx(1000 * remote)
    assert r["mean_ms"] == pytest.approx(1000 * (0.25 * early + 0.75 * remote))
    with pytest.raises(ValueError, match="rate"):
        LinkModel(0)
    with pytest.raises(ValueError, match="clock"):
        device_seconds(1, 0)


def test_threshold_q_and_decide_follow_the_float_rule():
    s, scale, zp, D, C = 4.0, 8.0 / 255, -3, 3, 4
    rng = np.random.default_rng(0)
    q = rng.integers(-128, 128, (300, D + C)).astype(np.int8)
    q[:, D:] = np.maximum(q[:, D:], zp)  # confidences are >= 0
    gamma = (q[:, D:].astype(np.int64) - zp) * scale / s
    for t in (0.0, 0.1, 0.5, 0.77, 0.9, 0.99, 1.0):
        d = decide(q, D, C, t, s, scale, zp)
        np.testing.assert_array_equal(d.early, gamma.max(1) >= t - 1e-12)
        np.testing.assert_array_equal(d.label, gamma.argmax(1))
    assert decide(q, D, C, 0.0, s, scale, zp).early.all()  # threshold 0: everything on the device
    assert threshold_q(1.0, 1.0, 1 / 256, -128) == 128  # above int8: never early
    for bad in (-0.01, 1.01, float("nan")):
        with pytest.raises(ValueError, match="threshold"):
            threshold_q(bad, s, scale, zp)
    with pytest.raises(ValueError, match="expected 3 \\+ 4"):
        decide(q[:, :5], D, C, 0.5, s, scale, zp)


# --- the int8-friendly formulation --------------------------------------------------------------------

@pytest.mark.parametrize("covariance,proj", [("full", None), ("diag", None), ("full", 3)])
def test_gmc_layers_equal_the_gmc_in_float(covariance, proj):
    g = random_gmc(covariance, proj, seed=9).float()
    z = torch.from_numpy(np.random.default_rng(3).normal(0, 2, (64, 5)).astype(np.float32))
    with torch.no_grad():
        want = g(z)
        # no clipping in reach, floor far below: the same function
        exact = GmcLayers(g, clip=200.0, floor=-200.0, confidence_scale=2.5)(z[:, :, None, None]).flatten(1)
        torch.testing.assert_close(exact / 2.5, want, atol=2e-4, rtol=0)
        # the joint log-density before the floor is the GMC's
        torch.testing.assert_close(GmcLayers(g, clip=200.0).joint_log(z[:, :, None, None]),
                                   g.joint_log(z).flatten(1), atol=2e-3, rtol=1e-5)
        # clipping |u| only changes terms beyond R; with R at the data's largest |u| nothing changes
        a, b, _ = g.whitening()
        r = float((torch.einsum("ckdj,nj->nckd", a, z) - b).abs().max()) + 1e-3
        clipped = GmcLayers(g, clip=r, floor=-200.0)(z[:, :, None, None]).flatten(1)
        torch.testing.assert_close(clipped, want, atol=2e-4, rtol=0)
        # a floor 12 nats below every sample's best component moves gamma by < C*K*e^-12
        floor = float(g.joint_log(z).flatten(1).max(1).values.min()) - 12
        floored = GmcLayers(g, clip=r, floor=floor)(z[:, :, None, None]).flatten(1)
        assert float((floored - want).abs().max()) < g.classes * g.components * math.exp(-12) + 2e-4
        # a floor above some samples' best component flattens them: lower confidence, never higher
        high = GmcLayers(g, clip=r, floor=floor + 40)(z[:, :, None, None]).flatten(1)
        assert float((high.max(1).values - want.max(1).values).max()) < 2e-4
        assert float((high.max(1).values - want.max(1).values).min()) < -0.05


def test_device_layout_splits_the_output():
    lay = DeviceLayout(latent=3, classes=2, confidence_scale=4.0)
    z, g = lay.split(np.array([[[[1.0, 2.0, 3.0, 2.0, 4.0]]]]))
    np.testing.assert_array_equal(z, [[1, 2, 3]])
    np.testing.assert_array_equal(g, [[0.5, 1.0]])
    with pytest.raises(ValueError, match="3 \\+ 2"):
        lay.split(np.zeros((1, 6)))


def test_kmeans_and_knn_on_separated_blobs():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [4, 0], [0, 4]], float)
    y = np.repeat(np.arange(3), 60)
    z = centers[y] + rng.normal(0, 0.8, (180, 2))
    zt = centers[np.repeat(np.arange(3), 20)] + rng.normal(0, 0.8, (60, 2))
    yt = np.repeat(np.arange(3), 20)
    km = KMeansClassifier(3, 2, seed=0).fit(z, y)
    p = km.predict_proba(zt)
    np.testing.assert_allclose(p.sum(1), 1)
    assert (p.argmax(1) == yt).mean() >= 0.95
    assert 0.3 < p.max(1).min() and np.ptp(p.max(1)) > 0.05  # confidences are graded, not all 1
    # a point half-way between two classes is less confident than one at a center
    mid, ctr = km.predict_proba(np.array([[2.0, 0.0], [4.0, 0.0]])).max(1)
    assert mid < ctr
    kn = KnnClassifier(3, k=10).fit(z, y)
    q = kn.predict_proba(zt)
    np.testing.assert_allclose(q.sum(1), 1)
    np.testing.assert_allclose(q * 10, np.round(q * 10))  # fractions of the k neighbours
    assert (q.argmax(1) == yt).mean() >= 0.95


# --- digits: a short training and the int8 export -----------------------------------------------------

@pytest.fixture(scope="module")
def short_rebel():
    """Digits base model (12 epochs) and ReBEL models trained briefly on it (seeded): regularized
    (beta 0.001) and not (beta 0)."""
    from tinysplit.examples.digits import train_digits
    from tinysplit.methods.rebel.model import digits_rebel_modules
    from tinysplit.methods.rebel.train import RebelConfig, train_rebel

    torch.set_num_threads(1)
    t = train_digits(epochs=12)
    h1, h2 = digits_rebel_modules(16)
    cfg = RebelConfig(epochs=8, finetune_epochs=3, components=2)
    reg = train_rebel(t.model.head, t.model.tail, h1, h2, t.x_train, t.y_train, 10, cfg)
    h1, h2 = digits_rebel_modules(16)
    noreg = train_rebel(t.model.head, t.model.tail, h1, h2, t.x_train, t.y_train, 10,
                        RebelConfig(epochs=8, finetune_epochs=3, components=2, beta=0.0))
    return t, reg, noreg


def test_training_lowers_the_losses_and_learns(short_rebel):
    t, m, noreg = short_rebel
    h = m.history
    assert h["mimic"][-1] < 0.7 * h["mimic"][0]
    assert h["nll"][-1] < 0.5 * h["nll"][0]
    assert h["finetune_ce"][-1] < h["finetune_ce"][0]
    # the KL term regularizes: without it the posteriors drift far from the class components
    # (measured 30 vs 192 nats); with it the KL is still not small (the posterior variance is
    # below the prior's floor I, about 1.1 nats per dimension)
    assert h["kl"][-1] > 0 and noreg.history["kl"] == [0.0] * 8
    assert m.mean_kl(t.x_train, t.y_train) < 0.5 * noreg.mean_kl(t.x_train, t.y_train)
    z = m.latents(t.x_heldout)
    assert z.shape == (len(t.x_heldout), 16)
    assert (m.remote_logits(z).argmax(1) == t.y_heldout).mean() > 0.85
    p = m.early_probs(z)
    assert (p.argmax(1) == t.y_heldout).mean() > 0.8
    # the tail was trained on a copy: the original model still gives its own accuracy
    with torch.no_grad():
        base = t.model(torch.from_numpy(t.x_heldout)).argmax(1).numpy()
    assert (base == t.y_heldout).mean() == pytest.approx(t.heldout_accuracy)


def test_int8_device_model_decides_like_the_float_pipeline(short_rebel, tmp_path):
    from tinysplit.exporter.ops import SUPPORTED_OPS
    from tinysplit.manifest import load_manifest
    from tinysplit.methods.rebel.export import export_rebel, int8_pipeline

    t, m, _ = short_rebel
    calib = t.x_train[:200]
    ex = export_rebel(m, calib, t.x_heldout, t.y_heldout, tmp_path / "rebel", "rebel_test")
    man = load_manifest(ex.bundle)
    dm = man.device_models[0]
    assert set(dm.ops) <= SUPPORTED_OPS and {"SOFTMAX", "MUL", "CONCATENATION"} <= set(dm.ops)
    assert len(dm.outputs) == 1 and dm.outputs[0].shape == (1, 1, 1, 16 + 10)
    assert ex.report["device_models"]["head1"]["tflm"]["identical_fraction"] == 1.0
    pipe = int8_pipeline(ex)
    z_f = m.latents(t.x_heldout)
    p_f = m.early_probs(z_f)
    remote_f = m.remote_logits(z_f).argmax(1)
    assert (pipe.early_label == p_f.argmax(1)).mean() >= 0.97
    assert (pipe.remote_label == remote_f).mean() >= 0.97  # the host slices z out of the shared output
    assert np.abs(pipe.gamma.max(1) - p_f.max(1)).mean() < 0.02
    for th in (0.5, 0.8, 0.9):
        d = pipe.decisions(th, ex.layout)
        assert (d.early == (p_f.max(1) >= th)).mean() >= 0.95, th
    assert pipe.decisions(0.0, ex.layout).early.all()
    # the shared output: z's scale is not widened by the confidences (s = max |z|)
    assert ex.layout.confidence_scale == pytest.approx(float(np.abs(m.latents(calib)).max()), rel=1e-5)
    # tinysplit's generated C computes exactly what TFLite Micro computes on every held-out sample
    import shutil

    if shutil.which("gcc"):
        from codegen_support import build_harness
        from tinysplit.reference import quantized_inputs

        tfl = (ex.bundle / dm.file).read_bytes()
        out_c, _ = build_harness([tfl], tmp_path / "c", ["rebel"]).run(0, quantized_inputs(man, t.x_heldout))
        np.testing.assert_array_equal(out_c.reshape(pipe.out_q.shape), pipe.out_q)


def test_gdn_does_not_export_to_the_code_generator(tmp_path):
    """The reason docs/rebel.md gives for BatchNorm + ReLU: int8 GDN needs RSQRT, which the code
    generator lacks (TFLite itself converts it)."""
    from tinysplit.methods.rebel.gdn import GDN, gdn_export_probe

    g = GDN(3).double()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        g.gamma.normal_()
        want = x / torch.sqrt(g.beta[None, :, None, None] ** 2 + g.beta_min
                              + torch.einsum("ij,njhw->nihw", g.gamma ** 2, x * x))
        torch.testing.assert_close(g(x), want)
        torch.testing.assert_close(g.frozen().double()(x), want)
    r = gdn_export_probe(tmp_path / "gdn")
    assert not r["exported"] and r["error"] == "UnsupportedModelError" and "RSQRT" in r["message"]
