import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from anndata import AnnData, read_h5ad
from conftest import assert_unchanged, branching, snapshot
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import scfim
from scfim.geometry import parameter_fim as pf


def _cloud(n=40, d=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def _dense_markov(X, sigma, alpha):
    """Independent NumPy construction of P (Gaussian kernel on all pairs, anisotropy α)."""
    D2 = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    K = np.exp(-D2 / sigma)
    q = K.sum(1)
    Ka = K / np.outer(q, q) ** alpha
    return Ka / Ka.sum(1, keepdims=True)


# --------------------------------------------------------------------------- operator
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_integer_t_matches_matrix_power(alpha):
    X = _cloud()
    P = _dense_markov(X, 2.0, alpha)
    D2 = pf.squared_distances(X)
    for t in (1, 3):
        rows = pf.diffusion_rows(D2, 2.0, float(t), alpha).numpy()
        np.testing.assert_allclose(rows, np.linalg.matrix_power(P, t), atol=1e-12)
    # continuous t interpolates the semigroup: P^1.5 P^1.5 = P^3
    h = pf.diffusion_rows(D2, 2.0, 1.5, alpha).numpy()
    np.testing.assert_allclose(h @ h, np.linalg.matrix_power(P, 3), atol=1e-12)


def test_symmetric_power_derivative_matches_eigh_autograd():
    """On a well-separated spectrum torch's own eigh derivative is reliable: compare."""
    rng = np.random.default_rng(1)
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    lam0 = np.array([0.05, 0.2, 0.35, 0.5, 0.7, 0.95])
    A0 = torch.tensor(Q @ np.diag(lam0) @ Q.T)
    G = torch.tensor(rng.normal(size=(6, 6)))
    # reference: autograd through torch.linalg.eigh
    A = A0.clone().requires_grad_(True)
    t = torch.tensor(2.7, dtype=torch.float64, requires_grad=True)
    lam, U = torch.linalg.eigh(0.5 * (A + A.T))
    ((U * lam**t) @ U.T * G).sum().backward()
    # ours
    A2 = A0.clone().requires_grad_(True)
    t2 = torch.tensor(2.7, dtype=torch.float64, requires_grad=True)
    lam2, U2 = torch.linalg.eigh(A0)
    S = 0.5 * (A2 + A2.T)
    (pf.SymmetricPower.apply(S, t2, U2, lam2, 1e-14) * G).sum().backward()
    np.testing.assert_allclose(A2.grad.numpy(), A.grad.numpy(), rtol=1e-9, atol=1e-12)
    assert float(t2.grad) == pytest.approx(float(t.grad), rel=1e-10)


@pytest.mark.parametrize("sigma, t", [(2.0, 1.0), (0.7, 3.5), (6.0, 2.2)])
def test_jacobian_matches_central_differences(sigma, t):
    X = _cloud(seed=2)
    D2 = pf.squared_distances(X)
    p, Js, Jt = pf.rows_jacobian(D2, sigma, t)
    hs, ht = 1e-5 * sigma, 1e-5
    Js_fd = (pf.diffusion_rows(D2, sigma + hs, t) - pf.diffusion_rows(D2, sigma - hs, t)) / (2 * hs)
    Jt_fd = (pf.diffusion_rows(D2, sigma, t + ht) - pf.diffusion_rows(D2, sigma, t - ht)) / (2 * ht)
    for J, Jfd in ((Js, Js_fd), (Jt, Jt_fd)):
        err = float((J - Jfd).abs().max() / J.abs().max())
        assert err < 1e-7, err
    g = pf.parameter_fim(D2, sigma, t)
    g_fd = pf.fisher_from_jacobian(p, [Js_fd, Jt_fd])
    np.testing.assert_allclose(g, g_fd, rtol=1e-6)
    assert np.all(np.isfinite(g))


def test_reverse_mode_matches_forward_mode():
    X = _cloud(seed=3)
    D2 = pf.squared_distances(X)
    p, Js, Jt = pf.rows_jacobian(D2, 1.3, 2.4)
    s = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(2.4, dtype=torch.float64, requires_grad=True)
    W = torch.tensor(np.random.default_rng(0).normal(size=p.shape))
    (pf.diffusion_rows(D2, s, t) * W).sum().backward()
    assert float(s.grad) == pytest.approx(float((Js * W).sum()), rel=1e-9)
    assert float(t.grad) == pytest.approx(float((Jt * W).sum()), rel=1e-9)


# --------------------------------------------------------------------------- Fisher information
def _simplex_fim(n, d, sigma, t):
    """Closed form for n equidistant points (complete graph, all distances d)."""
    k = np.exp(-(d**2) / sigma)
    q = 1 + (n - 1) * k
    mu = (1 - k) / q
    theta = mu**t
    info = (n - 1) ** 2 / (n * (1 + (n - 1) * theta)) + (n - 1) / (n * (1 - theta))
    dmu_dsigma = -n / q**2 * k * d**2 / sigma**2
    grad = np.array([t * mu ** (t - 1) * dmu_dsigma, theta * np.log(mu)])
    return info * np.outer(grad, grad)


@pytest.mark.parametrize(
    "n, sigma, t", [(2, 1.0, 1.0), (2, 3.0, 2.5), (6, 1.5, 2.5), (6, 0.8, 1.3)]
)
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_complete_graph_closed_form(n, sigma, t, alpha):
    """Equidistant points: P has a (n−1)-fold degenerate eigenvalue μ and p depends on
    (σ, t) only through θ = μᵗ, so g is the rank-one I(θ) ∇θ ∇θᵀ (det g = 0)."""
    d = 1.0
    X = np.eye(n) * d / np.sqrt(2.0)
    g = pf.parameter_fim(pf.squared_distances(X), sigma, t, alpha=alpha)
    ref = _simplex_fim(n, d, sigma, t)
    np.testing.assert_allclose(g, ref, rtol=1e-8, atol=1e-14)
    assert pf.fim_volume(g) < 1e-6 * np.trace(g)


def test_fim_symmetric_psd_and_large_t_limit():
    X = _cloud(n=30, seed=4)
    D2 = pf.squared_distances(X)
    sigma = float(np.median(D2.numpy()))
    for t in (1.0, 2.5, 7.0):
        g = pf.parameter_fim(D2, sigma, t)
        np.testing.assert_array_equal(g, g.T)
        assert np.linalg.eigvalsh(g).min() > 0  # full rank for a generic cloud
    # t → ∞: every row tends to the stationary π(σ) = d / Σd, so g_tt → 0 and g_σσ tends
    # to the Fisher information of π(σ) (finite differences of π)
    p, Js, Jt = pf.rows_jacobian(D2, sigma, 300.0)

    def pi(s):
        _, deg = pf.symmetric_operator(D2, s)
        return deg / deg.sum()

    np.testing.assert_allclose(p.numpy(), np.tile(pi(sigma).numpy(), (30, 1)), atol=1e-12)
    h = 1e-5 * sigma
    dpi = (pi(sigma + h) - pi(sigma - h)) / (2 * h)
    g_inf = float((dpi**2 / pi(sigma)).sum())
    g = pf.parameter_fim(D2, sigma, 300.0)
    assert g[0, 0] == pytest.approx(g_inf, rel=1e-6)
    assert g[1, 1] < 1e-12 * pf.parameter_fim(D2, sigma, 2.0)[1, 1]


def test_large_sigma_degenerate_spectrum_is_finite():
    """Nearly constant kernel: most eigenvalues of A are round-off (≤ 0 included)."""
    X = _cloud(n=50, seed=5)
    D2 = pf.squared_distances(X)
    s = 1e4 * float(D2.max())
    A, _ = pf.symmetric_operator(D2, s)
    assert float(torch.linalg.eigvalsh(A).min()) < pf.eig_tolerance(50)
    for t in (1.0, 2.5):
        g = pf.parameter_fim(D2, s, t)
        assert np.all(np.isfinite(g))
        assert np.linalg.eigvalsh(g).min() >= -1e-12 * abs(g).max()


def test_grid_and_selection():
    X = _cloud(n=40, seed=6)
    ts, ss = np.array([1.0, 2.0, 4.0]), np.array([0.5, 2.0, 8.0, 32.0])
    grid = pf.parameter_fim_grid(X, ts, ss)
    assert grid.fim.shape == (3, 4, 2, 2) and grid.volume.shape == (3, 4)
    D2 = pf.squared_distances(X)
    np.testing.assert_allclose(grid.fim[1, 2], pf.parameter_fim(D2, 8.0, 2.0), rtol=1e-10)
    det = np.linalg.det(grid.fim)
    np.testing.assert_allclose(grid.volume, np.sqrt(det), rtol=1e-8)
    np.testing.assert_allclose(grid.log_volume, 0.5 * np.log(det), rtol=1e-8)
    t, s, i, j = pf.select_parameters(grid)
    assert grid.volume[i, j] == grid.volume.max() and (t, s) == (ts[i], ss[j])


def test_default_sigma_grid_scale():
    X = _cloud(n=60, seed=7)
    D2 = pf.squared_distances(X).numpy()
    values, s0 = pf.default_sigma_values(D2, n_neighbors=5, n_values=5, low=0.25, high=4.0)
    assert s0 == pytest.approx(np.median(np.sort(D2, 1)[:, 5]))
    np.testing.assert_allclose(values, s0 * np.array([0.25, 0.5, 1, 2, 4]), rtol=1e-12)


def test_log_sigma_coordinates():
    """g in (log σ, t) is the chain rule of g in (σ, t): ∂/∂log σ = σ ∂/∂σ."""
    X = _cloud(n=30, seed=8)
    ts, ss = [1.0, 3.0], [0.5, 2.0, 6.0]
    g = pf.parameter_fim_grid(X, ts, ss)
    h = pf.parameter_fim_grid(X, ts, ss, coordinates="log_sigma")
    D2 = pf.squared_distances(X)
    # independent check: finite differences in log σ of the rows
    p, _, Jt = pf.rows_jacobian(D2, 2.0, 3.0)
    e = 1e-5
    J_log = (
        pf.diffusion_rows(D2, 2.0 * np.exp(e), 3.0) - pf.diffusion_rows(D2, 2.0 * np.exp(-e), 3.0)
    ) / (2 * e)
    np.testing.assert_allclose(h.fim[1, 1], pf.fisher_from_jacobian(p, [J_log, Jt]), rtol=1e-6)
    np.testing.assert_allclose(h.volume, g.volume * np.asarray(ss)[None, :], rtol=1e-10)
    with pytest.raises(ValueError):
        pf.parameter_fim_grid(X, ts, ss, coordinates="log")


# --------------------------------------------------------------------------- AnnData
@pytest.fixture
def tree_adata() -> AnnData:
    a = AnnData(branching(n_per_branch=40, n_dim=5, seed=1))
    a.obs_names = [f"c{i}" for i in range(a.n_obs)]
    a.obs["branch"] = np.repeat(["a", "b", "c"], 40)
    a.obs["branch"] = a.obs["branch"].astype("category")
    return a


def test_tl_parameter_fim_writes(tree_adata, tmp_path):
    out = scfim.tl.parameter_fim(
        tree_adata, t_values=[4, 1, 2], sigma_values=[0.3, 1.0, 3.0], n_cells=80, progress=False
    )
    assert out is None
    res = tree_adata.uns["parameter_fim"]
    np.testing.assert_array_equal(res["t_values"], [1.0, 2.0, 4.0])  # sorted
    assert res["fim"].shape == (3, 3, 2, 2) and res["volume"].shape == (3, 3)
    sub = res["subsample"]
    assert sub.size == 80 and np.all(np.diff(sub) > 0) and sub.max() < tree_adata.n_obs
    # the stored FIM is the geometry function's on the subsample
    D2 = pf.squared_distances(tree_adata.X[sub])
    np.testing.assert_allclose(res["fim"][2, 1], pf.parameter_fim(D2, 1.0, 4.0), rtol=1e-10)
    b = res["best"]
    i, j = np.unravel_index(np.argmax(res["volume"]), res["volume"].shape)
    assert (b["t_index"], b["sigma_index"]) == (i, j)
    assert b["t"] == res["t_values"][i] and b["sigma"] == res["sigma_values"][j]
    assert res["params"]["use_rep"] == "X" and res["params"]["n_cells"] == 80
    path = tmp_path / "pf.h5ad"
    tree_adata.write_h5ad(path)
    back = read_h5ad(path).uns["parameter_fim"]
    np.testing.assert_array_equal(back["fim"], res["fim"])
    assert back["best"]["sigma"] == b["sigma"]


def test_tl_default_grid_reproducible_and_copy(tree_adata):
    a = scfim.tl.parameter_fim(
        tree_adata, t_values=[1, 3], n_cells=50, random_state=3, copy=True, progress=False
    )
    b = scfim.tl.parameter_fim(
        tree_adata, t_values=[1, 3], n_cells=50, random_state=3, copy=True, progress=False
    )
    assert "parameter_fim" not in tree_adata.uns
    ra, rb = a.uns["parameter_fim"], b.uns["parameter_fim"]
    np.testing.assert_array_equal(ra["subsample"], rb["subsample"])
    np.testing.assert_array_equal(ra["fim"], rb["fim"])
    assert ra["sigma_values"].size == 9 and ra["params"]["sigma0"] > 0
    np.testing.assert_allclose(
        ra["sigma_values"][[0, 4, 8]] / ra["params"]["sigma0"], [1 / 16, 0.5, 4]
    )


@pytest.mark.parametrize(
    "kwargs, err",
    [
        ({"sigma_values": [-1.0, 2.0]}, ValueError),
        ({"sigma_values": [0.0]}, ValueError),
        ({"t_values": [0, 1]}, ValueError),
        ({"t_values": [-2.0]}, ValueError),
        ({"t_values": []}, ValueError),
        ({"sigma_values": [1.0, np.nan]}, ValueError),
        ({"t_values": [1.0, np.inf]}, ValueError),
        ({"t_values": [1, 2, 2]}, ValueError),
        ({"t_values": [[1, 2], [3, 4]]}, ValueError),
        ({"sigma_values": "1,2"}, TypeError),
        ({"sigma_values": ["a", "b"]}, TypeError),
        ({"n_cells": 5}, ValueError),
        ({"n_cells": 10_000}, ValueError),
        ({"n_cells": 50.5}, TypeError),
        ({"alpha": 1.5}, ValueError),
        ({"alpha": "1"}, TypeError),
        ({"coordinates": "log"}, ValueError),
        ({"use_rep": "X_missing"}, KeyError),
        ({"key_added": ""}, ValueError),
        ({"random_state": -1}, ValueError),
    ],
)
def test_tl_bad_input_leaves_adata_unchanged(tree_adata, kwargs, err):
    snap = snapshot(tree_adata)
    with pytest.raises(err):
        scfim.tl.parameter_fim(tree_adata, **{"n_cells": 30, "progress": False, **kwargs})
    assert_unchanged(tree_adata, snap)


def test_tl_too_few_cells_and_bad_data():
    few = AnnData(_cloud(n=8))
    snap = snapshot(few)
    with pytest.raises(ValueError, match="cells"):
        scfim.tl.parameter_fim(few, t_values=[1], sigma_values=[1.0], progress=False)
    assert_unchanged(few, snap)
    X = _cloud(n=30)
    X[3, 0] = np.nan
    bad = AnnData(X)
    snap = snapshot(bad)
    with pytest.raises(ValueError, match="NaN"):
        scfim.tl.parameter_fim(bad, t_values=[1], sigma_values=[1.0], progress=False)
    assert_unchanged(bad, snap)


# --------------------------------------------------------------------------- plotting
def test_pl_parameter_landscape(tree_adata):
    scfim.tl.parameter_fim(
        tree_adata, t_values=[1, 2, 4], sigma_values=[0.3, 1.0, 3.0], n_cells=60, progress=False
    )
    ax = scfim.pl.parameter_landscape(tree_adata)
    assert isinstance(ax, Axes)
    assert "σ" in ax.get_xlabel() and "t" in ax.get_ylabel()
    plt.close("all")
    with pytest.raises(KeyError, match="parameter_embeddings"):
        scfim.pl.parameter_landscape(tree_adata, embeddings_at="best")
    scfim.tl.parameter_embeddings(tree_adata, [(1.0, 1.0), (4.0, 3.0)])
    fig = scfim.pl.parameter_landscape(
        tree_adata, embeddings_at=[(1.0, 1.0), (4.0, 3.0)], color="branch", log=False
    )
    assert isinstance(fig, Figure)
    scatters = [a for a in fig.axes if a.collections and a.get_title().startswith(("1:", "2:"))]
    assert len(scatters) == 2 and scatters[0].collections[0].get_offsets().shape == (60, 2)
    plt.close("all")
    scfim.tl.parameter_embeddings(tree_adata, "best")
    assert tree_adata.uns["parameter_fim"]["embeddings"]["coordinates"].shape[1:] == (60, 2)
    fig = scfim.pl.parameter_landscape(tree_adata, embeddings_at="best")
    assert isinstance(fig, Figure)
    plt.close("all")
    with pytest.raises(ValueError):
        scfim.pl.parameter_landscape(tree_adata, embeddings_at=[(0.0, 1.0)])
    with pytest.raises(KeyError):
        scfim.pl.parameter_landscape(tree_adata, key="nothing")
    plt.close("all")


def test_jsd_phate_at_separates_branches(tree_adata):
    """The embedding helper reproduces the tree: cells of one branch stay together."""
    X = np.asarray(tree_adata.X, dtype=np.float64)
    Y = pf.jsd_phate_at(X, 2.0, 1.0)
    lab = tree_adata.obs["branch"].cat.codes.to_numpy()
    tips = [np.argmax(np.linalg.norm(X[lab == b], axis=1)) for b in range(3)]
    centres = [Y[lab == b][i] for b, i in enumerate(tips)]
    spread = np.linalg.norm(Y - Y.mean(0), axis=1).mean()
    gaps = [np.linalg.norm(centres[a] - centres[b]) for a, b in ((0, 1), (0, 2), (1, 2))]
    assert min(gaps) > spread  # the three branch tips are far apart in the embedding
