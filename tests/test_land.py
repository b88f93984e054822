import matplotlib

matplotlib.use("Agg")

import warnings

import numpy as np
import pytest
import torch
from anndata import AnnData, read_h5ad
from conftest import assert_unchanged, snapshot
from sklearn.metrics import adjusted_rand_score

import scfim
from scfim import datasets
from scfim.geometry.exp_log import MetricManifold, exp_map, log_map
from scfim.geometry.known_manifolds import SphereManifold, sphere_frame
from scfim.geometry.land import LANDMetric, LocalCovarianceMetric, choose_sigma, select_sigma
from scfim.geometry.metric import Metric, SphereMetric
from scfim.models.land import LAND, LANDMixture


def _arc(n=200, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, np.pi, n)
    return np.c_[np.cos(t), np.sin(t)] + 0.05 * rng.normal(size=(n, 2))


class _Generic(Metric):
    """Hides the closed forms of a metric, so that the autodiff path is used."""

    def __init__(self, m):
        self.m, self.dim = m, m.dim

    def metric(self, x):
        return self.m.metric(x)

    def inner(self, x, v):
        return self.m.inner(x, v)


# ------------------------------------------------------------------------- the metric
def test_land_metric_matches_its_definition():
    X = _arc(150)
    m = LANDMetric(X, sigma=0.2, rho=1e-2)
    x = np.array([[0.1, 0.9], [1.3, -0.2], [0.0, 0.0]])
    D = X[None] - x[:, None]
    w = np.exp(-(D**2).sum(-1) / (2 * 0.2**2))
    expected = 1.0 / ((w[..., None] * D**2).sum(1) + 1e-2)
    got = m.metric(torch.tensor(x)).numpy()
    np.testing.assert_allclose(np.diagonal(got, axis1=1, axis2=2), expected, rtol=1e-10)
    assert np.allclose(got, np.stack([np.diag(e) for e in expected]))
    v = torch.tensor([[1.0, 2.0], [0.3, -1.0], [0.0, 1.0]], dtype=torch.float64)
    np.testing.assert_allclose(
        m.inner(torch.tensor(x), v).numpy(), (expected * v.numpy() ** 2).sum(1), rtol=1e-10
    )
    lv = m.log_volume(torch.tensor(x)).numpy()
    np.testing.assert_allclose(lv, 0.5 * np.log(expected).sum(1), rtol=1e-10)


def test_land_metric_defaults_scale_with_data():
    X = _arc(300)
    m = LANDMetric(X)
    m2 = LANDMetric(3.0 * X)
    assert m.sigma > 0 and m.rho > 0
    np.testing.assert_allclose(m2.sigma, 3 * m.sigma, rtol=1e-10)
    np.testing.assert_allclose(m2.rho, 9 * m.rho, rtol=1e-8)
    with pytest.raises(ValueError):
        LANDMetric(X, sigma=-1.0)
    with pytest.raises(ValueError):
        LANDMetric(np.full((5, 2), np.nan))


def test_closed_form_christoffel_equals_autodiff():
    X = _arc(120)
    m = LANDMetric(X, sigma=0.25)
    rng = np.random.default_rng(1)
    x = torch.tensor(X[:10] + 0.05 * rng.normal(size=(10, 2)))
    v = torch.tensor(rng.normal(size=(10, 2)))
    a1 = m.acceleration(x, v)
    a2 = _Generic(m).acceleration(x, v)
    np.testing.assert_allclose(a1.numpy(), a2.numpy(), rtol=1e-8, atol=1e-10)


def test_local_covariance_metric_matches_its_definition():
    X = _arc(150)
    sigma, rho = 0.3, 1e-3
    m = LocalCovarianceMetric(X, sigma=sigma, rho=rho)
    x = np.array([[0.1, 0.9], [1.3, -0.2], [0.0, 0.0]])
    D2 = ((X[:, None] - X[None]) ** 2).sum(-1)
    q = np.exp(-D2 / (2 * sigma**2)).sum(1)  # density normalisation at the points
    W = np.exp(-((X[None] - x[:, None]) ** 2).sum(-1) / (2 * sigma**2)) / q[None]
    W /= W.sum(1, keepdims=True)
    mean = W @ X
    C = np.einsum("bn,bni,bnj->bij", W, X[None] - mean[:, None], X[None] - mean[:, None])
    expected = np.linalg.inv(C + rho * np.eye(2))
    np.testing.assert_allclose(m.metric(torch.tensor(x)).numpy(), expected, rtol=1e-9)
    v = np.array([[1.0, 2.0], [0.3, -1.0], [0.0, 1.0]])
    np.testing.assert_allclose(
        m.inner(torch.tensor(x), torch.tensor(v)).numpy(),
        np.einsum("bi,bij,bj->b", v, expected, v),
        rtol=1e-9,
    )
    np.testing.assert_allclose(
        m.log_volume(torch.tensor(x)).numpy(), 0.5 * np.linalg.slogdet(expected)[1], rtol=1e-9
    )


def test_local_covariance_christoffel_equals_autodiff():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 4)) * [1.0, 0.6, 0.2, 0.1]
    X[:, 3] += 0.3 * X[:, 0] ** 2  # curved, so that the metric varies
    m = LocalCovarianceMetric(X, sigma=0.7)
    x = torch.tensor(X[:8] + 0.1 * rng.normal(size=(8, 4)))
    v = torch.tensor(rng.normal(size=(8, 4)))
    np.testing.assert_allclose(
        m.acceleration(x, v).numpy(), _Generic(m).acceleration(x, v).numpy(), rtol=1e-7, atol=1e-9
    )


def test_local_covariance_metric_is_rotation_equivariant_unlike_the_diagonal_one():
    """M_RX(Rx) = R M_X(x) Rᵀ: the metric follows the data's directions, not the axes."""
    rng = np.random.default_rng(0)
    X = np.c_[rng.normal(size=(300, 2)), 0.05 * rng.normal(size=300)]
    R = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    x = X[:5]
    for cls, equivariant in ((LocalCovarianceMetric, True), (LANDMetric, False)):
        a = cls(X, sigma=0.5, rho=1e-3).metric(torch.tensor(x)).numpy()
        b = cls(X @ R.T, sigma=0.5, rho=1e-3).metric(torch.tensor(x @ R.T)).numpy()
        assert np.allclose(b, R @ a @ R.T, rtol=1e-8, atol=1e-8) == equivariant


def _cap(n=400, seed=0):
    rng = np.random.default_rng(seed)
    V = rng.normal(size=(n, 2)) * [0.5, 0.3]
    r = np.linalg.norm(V, axis=1, keepdims=True)
    return np.c_[np.sin(r) * V / r, np.cos(r)], V  # Exp at the north pole


def test_select_sigma_follows_the_sphere_and_backs_off_when_shooting_fails():
    X, _ = _cap(250)
    sigma, rep = select_sigma(X, ranks=(1 / 12, 1 / 6, 1 / 3), n_pilot=16, random_state=0)
    cands, failed = rep["candidates"], rep["failed_fraction"]
    assert np.all(np.diff(cands) > 0) and sigma == cands[rep["chosen"]]
    # the first candidate whose pilot Log maps converge, and none before it
    assert failed[rep["chosen"]] <= 0.02 and np.all(failed[: rep["chosen"]] > 0.02)
    # at the chosen width, geodesic lengths are arc lengths on the sphere
    m = LocalCovarianceMetric(X, sigma=sigma)
    M = MetricManifold(m, graph_data=X, n_steps=12, tol=1e-4)
    th = np.array([0.2, 0.4, 0.6, 0.8])
    T = np.c_[np.sin(th), np.zeros(4), np.cos(th)]
    r = M.log(np.array([0.0, 0.0, 1.0]), T)
    assert r.converged.all()
    np.testing.assert_allclose(np.linalg.norm(r.v, axis=1), th, rtol=0.05)
    # no candidate good enough: the one with the fewest failures (ties: the widest)
    sigma2, rep2 = select_sigma(
        X, ranks=(1 / 6, 1 / 3), n_pilot=8, max_failed=-1.0, n_steps=6, random_state=0
    )
    assert len(rep2["candidates"]) == 2
    best = np.flatnonzero(rep2["failed_fraction"] == rep2["failed_fraction"].min())[-1]
    assert rep2["chosen"] == best and sigma2 == rep2["candidates"][best]


def test_gaussian_normaliser_is_exact_and_volume_one_is_the_monte_carlo_estimate():
    X, M = _arc_manifold(60, seed=1)
    g = LANDMixture(M, 1, max_iter=1, n_samples=100, random_state=0).fit(X)
    A = g.precision_factors_[0]
    logZ = 0.5 * 2 * np.log(2 * np.pi) - np.linalg.slogdet(A)[1]
    # the wrapped Gaussian in orthonormal coordinates at μ: Z √det M(μ)
    log_m0 = M.log_volume(g.means_)[0]
    np.testing.assert_allclose(g.log_normalisers_[0], logZ + log_m0, rtol=1e-12)
    v = LANDMixture(M, 1, max_iter=1, n_samples=100, normaliser="volume", random_state=0).fit(X)
    assert not np.isclose(v.log_normalisers_[0], logZ)
    with pytest.raises(ValueError, match="normaliser"):
        LANDMixture(M, normaliser="exact")


# --------------------------------------------------------------------------- Exp / Log
def test_exp_on_the_round_sphere_autodiff_path():
    """Generic (autodiff) Christoffels: geodesics of the sphere in spherical coordinates."""
    g = SphereMetric()
    start = np.array([np.pi / 2, 0.0])
    V = np.array([[0.0, 0.8], [0.7, 0.0], [0.3, 0.4], [-0.5, 0.9]])
    Y = exp_map(g, start, V, n_steps=32)
    np.testing.assert_allclose(Y[0], [np.pi / 2, 0.8], atol=1e-8)  # along the equator
    np.testing.assert_allclose(Y[1], [np.pi / 2 + 0.7, 0.0], atol=1e-8)  # along a meridian
    # the end point lies at great-circle distance |v|_G from the start
    speed = np.sqrt(g.inner(torch.tensor(np.tile(start, (4, 1))), torch.tensor(V)).numpy())
    np.testing.assert_allclose(g.distance(np.tile(start, (4, 1)), Y), speed, rtol=1e-6)


def test_exp_then_log_round_trip_on_land_metric():
    X = _arc(200)
    m = LANDMetric(X)
    rng = np.random.default_rng(0)
    mu = X[np.argmin(np.abs(X[:, 0]))]
    V = 0.4 * rng.normal(size=(25, 2))
    Y = exp_map(m, mu, V, n_steps=16)
    r = log_map(m, mu, Y, tol=1e-8, n_steps=16)
    assert r.converged.all() and r.n_failed == 0
    np.testing.assert_allclose(r.v, V, atol=1e-5)
    # and Exp of the Log lands on the target
    np.testing.assert_allclose(exp_map(m, mu, r.v, n_steps=16), Y, atol=1e-6)


def test_log_map_failures_are_detected_and_reported():
    X = _arc(200)
    m = LANDMetric(X)
    mu = X[0]
    targets = X[1:6] + np.array([3.0, 3.0])  # far off the data
    with pytest.warns(RuntimeWarning, match="did not converge"):
        r = log_map(m, mu, targets, max_iter=1, tol=1e-12, energy_fallback=False)
    assert r.n_failed == 5 and not r.converged.any()
    assert np.all(r.residual > 1e-12)
    # the reported residual is the true one
    res = np.linalg.norm(exp_map(m, mu, r.v) - targets, axis=1)
    np.testing.assert_allclose(r.residual, res, rtol=1e-6)


def test_manifold_log_uses_graph_and_energy_restarts():
    X = _arc(60, seed=3)
    M = MetricManifold(LANDMetric(X), graph_data=X, n_steps=8, tol=1e-4)
    mu = X[0]
    r = M.log(mu, X[::5])
    assert r.converged.mean() >= 0.9
    ok = r.converged
    np.testing.assert_allclose(M.exp(mu, r.v[ok]), X[::5][ok], atol=1e-3)
    assert r.v.shape == (12, 2)
    # what is not flagged converged really misses its target
    res = np.linalg.norm(M.exp(mu, r.v) - X[::5], axis=1)
    assert np.all(res[~ok] > 1e-4 * np.maximum(np.linalg.norm(X[::5][~ok] - mu, axis=1), 1))


# -------------------------------------------------------------------------- known sphere
def test_sphere_manifold_exp_log_are_inverse():
    S = SphereManifold()
    rng = np.random.default_rng(0)
    mu = S.project(rng.normal(size=3))
    V = rng.normal(size=(50, 2))
    V *= np.linalg.norm(V, axis=1, keepdims=True) < 3.0
    Y = S.exp(mu, V)
    np.testing.assert_allclose(np.linalg.norm(Y, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(
        np.arccos(np.clip(Y @ mu, -1, 1)), np.linalg.norm(V, axis=1), atol=1e-10
    )
    r = S.log(mu, Y)
    assert r.converged.all()
    np.testing.assert_allclose(r.v, V, atol=1e-8)
    F = sphere_frame(mu)
    np.testing.assert_allclose(F.T @ F, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(F.T @ mu, 0, atol=1e-12)


@pytest.mark.parametrize("s", [0.1, 0.7])
def test_land_mle_recovers_sphere_mean_and_covariance(s):
    a = datasets.land_sphere(2000, cov=(s**2, s**2), random_state=1)
    X = SphereManifold.project(np.asarray(a.X, dtype=np.float64))
    truth = a.uns["land_truth"]
    m = LAND(SphereManifold(), max_iter=30, random_state=0).fit(X)
    err = np.arccos(np.clip(m.mean_ @ truth["mean"], -1, 1))
    assert err < 0.05
    F = sphere_frame(m.mean_)
    C = F @ m.covariance_ @ F.T
    rel = np.linalg.norm(C - truth["cov_ambient"]) / np.linalg.norm(truth["cov_ambient"])
    assert rel < 0.2
    ratio = np.linalg.eigvalsh(m.covariance_) / s**2
    assert np.all((ratio > 0.8) & (ratio < 1.2))
    # the fit beats the starting point (a data point near the Euclidean mean)
    assert m.history_["log_likelihood"][-1] >= m.history_["log_likelihood"][0] - 1e-6


def test_land_mle_fails_to_recover_a_wrong_covariance():
    """Negative control: the recovered covariance tracks the data, not the default start."""
    a = datasets.land_sphere(1000, cov=(0.3**2, 0.05**2), random_state=2)
    X = SphereManifold.project(np.asarray(a.X, dtype=np.float64))
    m = LAND(SphereManifold(), max_iter=30, random_state=0).fit(X)
    F = sphere_frame(m.mean_)
    C = F @ m.covariance_ @ F.T
    truth = a.uns["land_truth"]["cov_ambient"]
    assert np.linalg.norm(C - truth) / np.linalg.norm(truth) < 0.2
    np.testing.assert_allclose(
        np.sort(np.linalg.eigvalsh(m.covariance_)), [0.05**2, 0.3**2], rtol=0.2
    )


def test_em_separates_two_sphere_components():
    rng = np.random.default_rng(0)
    mu1 = np.array([1.0, 0.0, 0.0])
    mu2 = SphereManifold.project(np.array([0.2, 1.0, 0.3]))
    a1 = datasets.land_sphere(600, cov=(0.15**2, 0.25**2), mean=mu1, random_state=1)
    a2 = datasets.land_sphere(400, cov=(0.2**2, 0.2**2), mean=mu2, random_state=2)
    X = SphereManifold.project(np.vstack([a1.X, a2.X]).astype(np.float64))
    y = np.r_[np.zeros(600), np.ones(400)]
    perm = rng.permutation(len(X))
    X, y = X[perm], y[perm]
    f = LANDMixture(SphereManifold(), 2, max_iter=30, random_state=0).fit(X)
    assert adjusted_rand_score(y, f.labels_) > 0.95
    k1 = int(np.argmax(f.means_ @ mu1))
    assert np.arccos(min(1.0, f.means_[k1] @ mu1)) < 0.05
    assert np.arccos(min(1.0, f.means_[1 - k1] @ mu2)) < 0.05
    np.testing.assert_allclose(sorted(f.weights_), [0.4, 0.6], atol=0.03)
    np.testing.assert_allclose(f.responsibilities_.sum(1), 1.0, atol=1e-10)
    np.testing.assert_allclose(
        f.score_samples(X[:20]), f.log_likelihood_[:20], rtol=1e-6, atol=1e-6
    )


def test_fit_is_reproducible():
    a = datasets.land_sphere(300, cov=(0.2**2, 0.2**2), random_state=0)
    X = SphereManifold.project(np.asarray(a.X, dtype=np.float64))
    f1 = LANDMixture(SphereManifold(), 2, max_iter=5, random_state=3).fit(X)
    f2 = LANDMixture(SphereManifold(), 2, max_iter=5, random_state=3).fit(X)
    np.testing.assert_array_equal(f1.means_, f2.means_)
    np.testing.assert_array_equal(f1.covariances_, f2.covariances_)


# ----------------------------------------------------------------------------- datasets
def test_land_sphere_generator():
    a = datasets.land_sphere(500, cov=(0.7**2, 0.7**2), random_state=0)
    X = np.asarray(a.X, dtype=np.float64)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-6)
    V = a.obsm["tangent"]
    assert np.all(np.linalg.norm(V, axis=1) < np.pi)
    t = a.uns["land_truth"]
    np.testing.assert_allclose(t["frame"].T @ t["frame"], np.eye(2), atol=1e-12)
    np.testing.assert_allclose(t["frame"].T @ t["mean"], 0, atol=1e-12)
    # geodesic distance to the mean equals the tangent norm
    d = np.arccos(np.clip(X @ t["mean"], -1, 1))
    np.testing.assert_allclose(d, np.linalg.norm(V, axis=1), atol=1e-5)
    np.testing.assert_allclose(np.cov(V.T), t["cov"], rtol=0.15, atol=0.03)
    b = datasets.land_sphere(500, cov=(0.7**2, 0.7**2), random_state=0)
    np.testing.assert_array_equal(a.X, b.X)
    with pytest.raises(ValueError):
        datasets.land_sphere(10, cov=(-1.0, 1.0))


def test_two_moons_generator():
    a = datasets.two_moons(301, noise=0.0, random_state=0)
    assert a.shape == (301, 2)
    y = a.obs["cluster"].cat.codes.to_numpy()
    assert abs((y == 0).sum() - (y == 1).sum()) <= 1
    X = np.asarray(a.X, dtype=np.float64)
    np.testing.assert_allclose(np.linalg.norm(X[y == 0], axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(X[y == 1] - [1.0, 0.5], axis=1), 1.0, atol=1e-6)


# --------------------------------------------------------------------------- tl / pl
@pytest.fixture(scope="module")
def moons():
    a = datasets.two_moons(80, noise=0.06, random_state=0)
    return a


def test_tl_land_writes_documented_keys(moons, tmp_path):
    a = moons.copy()
    scfim.tl.land(
        a, n_components=2, use_rep="X", max_iter=2, n_samples=100, n_steps=6, progress=False
    )
    assert a.obs["land_log_likelihood"].dtype.kind == "f"
    assert np.isfinite(a.obs["land_log_likelihood"]).all()
    assert a.obs["land_component"].dtype == "category"
    assert set(a.obs["land_component"].cat.categories) == {"0", "1"}
    u = a.uns["land"]
    assert u["means"].shape == (2, 2) and u["covariances"].shape == (2, 2, 2)
    assert np.all(np.linalg.eigvalsh(u["covariances"]) > 0)
    np.testing.assert_allclose(u["weights"].sum(), 1.0)
    assert u["params"]["metric"] == "land" and u["params"]["use_rep"] == "X"
    d = u["diagnostics"]
    assert d["log_likelihood"].shape == (2,) and d["n_log_failures"].shape == (2,)
    assert d["n_log_failed_cells"] == int(a.obs["land_log_failed"].sum())
    assert a.obsm["land_responsibilities"].shape == (a.n_obs, 2)
    a.write_h5ad(tmp_path / "l.h5ad")
    b = read_h5ad(tmp_path / "l.h5ad")
    np.testing.assert_allclose(b.uns["land"]["means"], u["means"])
    ax = scfim.pl.land(a, basis="X", color="component")
    assert ax is not None and len(ax.collections) >= 2
    ax = scfim.pl.land(a, basis="X")
    assert ax.get_title().startswith("LAND")
    c = scfim.tl.land(
        moons, use_rep="X", max_iter=1, n_samples=20, n_steps=4, progress=False, copy=True
    )
    assert "land" in c.uns and "land" not in moons.uns


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        ({"n_components": 0}, ValueError),
        ({"n_components": 1.5}, TypeError),
        ({"n_components": 10_000}, ValueError),
        ({"metric": "euclid"}, ValueError),
        ({"metric": "neural_fim"}, KeyError),
        ({"use_rep": "X_missing"}, KeyError),
        ({"sigma": -1.0}, ValueError),
        ({"rho": 0.0}, ValueError),
        ({"max_iter": 0}, ValueError),
        ({"key_added": ""}, ValueError),
        ({"land_weight": -1.0}, ValueError),
        ({"device": "gpu"}, ValueError),
        ({"device": "cuda:99"}, ValueError),
    ],
)
def test_tl_land_bad_input_leaves_adata_unchanged(moons, kwargs, exc):
    a = moons.copy()
    snap = snapshot(a)
    with pytest.raises(exc):
        scfim.tl.land(a, progress=False, **kwargs)
    assert_unchanged(a, snap)


def test_tl_land_rejects_nan_and_pl_needs_fit(moons):
    a = moons.copy()
    a.X[3, 0] = np.nan
    snap = snapshot(a)
    with pytest.raises(ValueError):
        scfim.tl.land(a, use_rep="X", progress=False)
    assert_unchanged(a, snap)
    with pytest.raises(KeyError):
        scfim.pl.land(moons, basis="X")


def test_tl_land_with_neural_fim_metric():
    X = _arc(40, seed=5)
    a = AnnData(X.astype(np.float32))
    scfim.tl.diffusion(a, use_rep="X", t=5)
    scfim.tl.neural_fim(a, epochs=5, hidden=(8, 8), n_components=4, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scfim.tl.land(
            a,
            metric="neural_fim",
            max_iter=1,
            n_samples=20,
            n_steps=4,
            log_tol=1e-2,
            progress=False,
        )
    u = a.uns["land"]
    assert u["params"]["metric"] == "neural_fim"
    assert u["means"].shape == (1, 2) and np.isfinite(a.obs["land_log_likelihood"]).all()
    snap = snapshot(a)
    with pytest.raises(ValueError):
        scfim.tl.land(a, metric="neural_fim", use_rep="X_other", progress=False)
    assert_unchanged(a, snap)


# ------------------------------------------------------------------- EM step control
def _arc_manifold(n=80, seed=0):
    X = _arc(n, seed=seed)
    return X, MetricManifold(LANDMetric(X), graph_data=X, n_steps=8, tol=1e-3)


def test_em_likelihood_never_falls_on_a_curved_data_set():
    """Even with a reckless mean step, accepted iterates only go up and failures stay rare."""
    X, M = _arc_manifold()
    f = LANDMixture(M, 1, max_iter=4, n_samples=200, mean_step=3.0, random_state=0).fit(X)
    h = f.history_
    ll = np.r_[h["initial_log_likelihood"], h["log_likelihood"]]
    assert np.all(np.diff(ll) >= -1e-12)
    assert h["final_log_likelihood"] >= h["initial_log_likelihood"]
    assert not h["mean_accepted"].all()  # the 3x step overshoots and is rejected
    np.testing.assert_allclose(f.log_likelihood_.mean(), h["final_log_likelihood"])
    assert h["final_n_log_failures"] <= 0.05 * len(X)
    # the reported log-likelihood is the one of the returned parameters
    np.testing.assert_allclose(f.score_samples(X), f.log_likelihood_, rtol=1e-6, atol=1e-6)


def test_normaliser_uses_common_random_numbers():
    X, M = _arc_manifold(60, seed=1)
    f = LANDMixture(M, 1, max_iter=1, n_samples=100, normaliser="volume", random_state=0).fit(X)
    c1, _ = f._normalisers(f.means_)
    c2, _ = f._normalisers(f.means_)
    np.testing.assert_array_equal(c1, c2)


def test_broyden_warm_start_matches_cold_log():
    X = _arc(200)
    m = LANDMetric(X)
    mu = X[np.argmin(np.abs(X[:, 0]))]
    Y = exp_map(m, mu, 0.4 * np.random.default_rng(2).normal(size=(20, 2)), n_steps=16)
    cold = log_map(m, mu, Y, tol=1e-8, n_steps=16)
    assert cold.converged.all() and cold.jacobian.shape == (20, 2, 2)
    mu2 = mu + np.array([0.02, -0.01])
    ref = log_map(m, mu2, Y, tol=1e-8, n_steps=16)
    warm = log_map(
        m, mu2, Y, init=cold.v + (mu - mu2), jacobian=cold.jacobian, tol=1e-8, n_steps=16
    )
    assert warm.converged.all()
    np.testing.assert_allclose(warm.v, ref.v, atol=1e-6)
    with pytest.raises(ValueError, match="jacobian"):
        log_map(m, mu2, Y, jacobian=np.eye(2))


def test_metric_manifold_project_pulls_points_onto_the_data():
    t = np.linspace(0, np.pi, 300)
    X = np.c_[np.cos(t), np.sin(t)]
    M = MetricManifold(LANDMetric(X), graph_data=X, n_steps=4)
    P = M.project(np.array([[0.0, 0.9], [0.6, 0.85]]))
    np.testing.assert_allclose(np.linalg.norm(P, axis=1), 1.0, atol=5e-3)
    assert np.allclose(MetricManifold(LANDMetric(X)).project(X[:3]), X[:3])


def test_mean_moves_off_a_poor_start_and_likelihood_never_falls_with_defaults():
    """The default (local-covariance) metric on an arc, started near one end.

    The line search must carry the mean along the arc to the intrinsic mean of the
    points (the mean of their angles, up to the noise), every iterate must be at least as
    likely as the previous one, hardly any Log map may fail, and the mean stays on the
    arc (it is not projected onto the data).
    """
    rng = np.random.default_rng(1)
    t = np.pi * rng.beta(2.0, 3.0, 150)
    X = np.c_[np.cos(t), np.sin(t)] + 0.01 * rng.normal(size=(150, 2))
    start = X[np.argsort(t)[15]][None]  # 0.8 rad from the intrinsic mean
    G = LocalCovarianceMetric(X, choose_sigma(X, 15))
    M = MetricManifold(G, graph_data=X, n_steps=8, tol=1e-3)
    f = LAND(M, max_iter=8, init_means=start, random_state=0).fit(X)
    h = f.history_
    ll = np.r_[h["initial_log_likelihood"], h["log_likelihood"]]
    assert np.all(np.diff(ll) >= 0.0)
    assert ll[-1] > ll[0] + 0.3
    assert h["mean_accepted"][0]
    assert h["final_n_log_failures"] <= 0.05 * len(X)
    angle = np.arctan2(f.mean_[1], f.mean_[0])
    assert abs(angle - t.mean()) < 0.05
    assert abs(np.linalg.norm(f.mean_) - 1.0) < 0.03


# ------------------------------------------------------------------------------ devices
_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_shooting_makes_no_host_copies(monkeypatch):
    """The Newton/Broyden iterations stay on the metric's device: no .numpy()/.cpu()/.item()."""
    from scfim.geometry import exp_log

    X = _arc(120)
    G = LocalCovarianceMetric(X, choose_sigma(X, 15))
    mu = torch.as_tensor(X[np.argmin(np.abs(X[:, 0]))])
    T = torch.as_tensor(X[:20])
    expected = log_map(G, mu.numpy(), T.numpy(), n_steps=8, tol=1e-6, energy_fallback=False)

    def forbidden(*args, **kwargs):
        raise AssertionError("host copy inside the shooting iterations")

    for name in ("numpy", "cpu", "item", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    for broyden in (False, True):
        V, ok, res, J = exp_log._newton_shoot(
            G, mu, T, T - mu, n_steps=8, max_iter=10, tol=1e-6, fd_eps=1e-6, broyden=broyden
        )
        assert V.device == mu.device and J.shape == (20, 2, 2)
    monkeypatch.undo()
    np.testing.assert_allclose(V.numpy()[ok.numpy()], expected.v[ok.numpy()], atol=1e-5)


def test_land_metrics_live_on_their_device():
    X = _arc(60)
    for G in (LANDMetric(X, device="cpu"), LocalCovarianceMetric(X, device=torch.device("cpu"))):
        assert G.device == torch.device("cpu") and G.points.device == G.device
        M = MetricManifold(G, graph_data=X, n_steps=6)
        r = M.log(X[0], X[1:6])
        assert r.v.shape == (5, 2) and isinstance(r.v, np.ndarray)


@_CUDA
def test_exp_log_on_cuda_equal_the_cpu_ones():
    X = _arc(150)
    sigma = choose_sigma(X, 15)
    cpu = MetricManifold(LocalCovarianceMetric(X, sigma), graph_data=X, n_steps=8, tol=1e-6)
    gpu = MetricManifold(
        LocalCovarianceMetric(X, sigma, device="cuda"), graph_data=X, n_steps=8, tol=1e-6
    )
    assert gpu.metric.points.is_cuda
    V = 0.3 * np.random.default_rng(0).normal(size=(30, 2))
    np.testing.assert_allclose(gpu.exp(X[5], V), cpu.exp(X[5], V), atol=1e-9)
    a, b = cpu.log(X[5], X[10:40]), gpu.log(X[5], X[10:40])
    np.testing.assert_array_equal(a.converged, b.converged)
    np.testing.assert_allclose(b.v[b.converged], a.v[a.converged], atol=1e-6)
    np.testing.assert_allclose(gpu.log_volume(X[:5]), cpu.log_volume(X[:5]), atol=1e-9)


@_CUDA
def test_tl_land_on_cuda_matches_cpu(moons):
    kw = {"use_rep": "X", "max_iter": 3, "n_steps": 6, "progress": False, "copy": True}
    a = scfim.tl.land(moons, **kw)
    b = scfim.tl.land(moons, device="cuda", **kw)
    assert b.uns["land"]["params"]["device"] == "cuda"
    np.testing.assert_allclose(b.uns["land"]["means"], a.uns["land"]["means"], atol=1e-5)
    np.testing.assert_allclose(
        b.obs["land_log_likelihood"], a.obs["land_log_likelihood"], rtol=1e-5, atol=1e-5
    )
