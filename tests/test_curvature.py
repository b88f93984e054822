import numpy as np
import pytest
import scipy.sparse as sp
from anndata import AnnData, read_h5ad
from conftest import assert_unchanged, snapshot

import scfim
from scfim import datasets
from scfim.geometry.curvature import (
    diffusion_curvature,
    estimate_dimension,
    neighbor_graph,
    patch_curvature,
    patch_neighbors,
)
from scfim.geometry.graph import nearest_cells


def _cloud(shape: str, n_obs: int = 800, n_dim: int = 2, seed: int = 0) -> np.ndarray:
    gen = {"sphere": datasets.sphere, "plane": datasets.plane, "saddle": datasets.saddle}[shape]
    return np.asarray(gen(n_obs=n_obs, n_dim=n_dim, random_state=seed).X, dtype=np.float64)


@pytest.mark.parametrize("n_dim", [2, 3])
def test_sign_on_sphere_saddle_and_plane(n_dim):
    """Whole sphere: every scored cell positive; saddle centre negative; disc exactly 0."""
    sphere = diffusion_curvature(_cloud("sphere", n_dim=n_dim), cells=np.arange(0, 800, 40))
    assert sphere.dim == n_dim
    assert np.all(sphere.curvature > 0), sphere.curvature
    saddle = diffusion_curvature(_cloud("saddle", n_dim=n_dim), cells=np.array([0]))
    assert saddle.curvature[0] < 0, saddle.curvature
    plane = diffusion_curvature(_cloud("plane", n_dim=n_dim), cells=np.array([0, 7]))
    # the flattening of a flat patch is an isometry: the two walks coincide
    assert np.all(np.abs(plane.curvature) <= 1e-9 * plane.raw)
    assert np.all(np.abs(plane.curvature) < 1e-3 * np.abs(saddle.curvature[0]))


def _gaussian_chart(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """n chart points, the first the origin, Gaussian (sd 0.5) truncated to the unit ball."""
    u = rng.normal(scale=0.5, size=(3 * n, d))
    return np.vstack([np.zeros((1, d)), u[np.linalg.norm(u, axis=1) < 1][: n - 1]])


@pytest.mark.parametrize("d", [4, 5, 6])
def test_sign_in_higher_dimensions_under_dense_centre_sampling(d):
    """Saddles z = Σ (−1)^j u_j² (negative scalar curvature) and unit-sphere caps sampled
    densest at the scored centre. With one global kernel bandwidth the walk outgrew its
    patch there and the sign was a coin flip."""
    sgn = (-1.0) ** np.arange(d)
    for seed in range(3):
        u = _gaussian_chart(2000, d, np.random.default_rng(100 * d + seed))
        saddle = np.column_stack([u, (u**2 * sgn).sum(1)])
        assert diffusion_curvature(saddle, cells=np.array([0])).curvature[0] < 0
        u = 0.8 * u  # the cap within ≈ 53° of the pole
        cap = np.column_stack([u, np.sqrt(1 - (u**2).sum(1))])
        assert diffusion_curvature(cap, cells=np.array([0])).curvature[0] > 0


def test_chosen_cells_equal_full_run():
    X = _cloud("sphere", n_obs=400, seed=3)
    full = diffusion_curvature(X, t=5, patch_size=64, smooth=3)
    cells = np.array([250, 3, 17, 3, -1])
    part = diffusion_curvature(X, t=5, patch_size=64, smooth=3, cells=cells)
    np.testing.assert_array_equal(part.idx, [250, 3, 17, 3, 399])
    np.testing.assert_allclose(part.curvature, full.curvature[part.idx], rtol=1e-9, atol=0)
    np.testing.assert_allclose(part.raw, full.raw[part.idx], rtol=1e-9, atol=0)
    np.testing.assert_array_equal(part.sigma, full.sigma[part.idx])
    assert part.dim == full.dim


def test_patch_walk_matches_dense_reference():
    """C and C_flat of one patch against a direct NumPy evaluation of the definition."""
    X = _cloud("saddle", n_obs=300, seed=1)
    nbrs, dist = neighbor_graph(X, 39)
    patch = patch_neighbors(nbrs, dist, np.array([0]), 40)
    sigma, t, ball = float(np.median(dist[:, 10]) ** 2), 4, 12
    C, C_flat = patch_curvature(
        X, patch, dim=2, sigma=sigma, t=t, ball_neighbors=ball, noise_aware=False
    )

    def mass(Y):
        K = np.exp(-((Y[:, None] - Y[None]) ** 2).sum(-1) / sigma)
        q = K.sum(1)
        K = K / np.outer(q, q)
        P = K / K.sum(1, keepdims=True)
        return np.linalg.matrix_power(P, t)[0, : ball + 1].mean()

    Y = X[patch[0]] - X[patch[0, 0]]
    nb = Y[: ball + 1] - Y[: ball + 1].mean(0)
    V = np.linalg.svd(nb, full_matrices=False)[2][:2].T
    Z = Y @ V
    r = np.linalg.norm(Z, axis=1)
    Z[r > 0] *= (np.linalg.norm(Y, axis=1)[r > 0] / r[r > 0])[:, None]
    np.testing.assert_allclose(C, [mass(Y)], rtol=1e-10)
    np.testing.assert_allclose(C_flat, [mass(Z)], rtol=1e-10)


def test_two_step_patches():
    X = _cloud("sphere", n_obs=200, seed=0)
    nbrs, dist = neighbor_graph(X, 6)
    cells = np.array([0, 5, 199])
    P = patch_neighbors(nbrs, dist, cells, 30)
    np.testing.assert_array_equal(P[:, :7], nbrs[cells])  # the cell, then its kNN in order
    for row, c in zip(P, cells, strict=True):
        kept = row[row >= 0]
        assert kept.size == np.unique(kept).size  # each cell once
        two_step = set(nbrs[nbrs[c]].ravel())
        assert set(kept) <= two_step
    # fewer two-step cells than asked: padded with -1
    P = patch_neighbors(nbrs, dist, cells, 60)
    assert np.any(P < 0) and np.all(P[:, :7] >= 0)


def test_dimension_estimate():
    for d in (2, 3, 4):
        _, dist = neighbor_graph(_cloud("sphere", n_obs=1000, n_dim=d), 10)
        assert estimate_dimension(dist) == d


def test_noise_aware_flat_reference_reduces_noise_bias():
    """Noise thickens the data's walk; keeping the scatter off the fitted surface in the
    flat reference removes most of the spurious negative curvature of a noisy disc."""
    rng = np.random.default_rng(0)
    X = _cloud("plane", n_obs=800) + 0.01 * rng.normal(size=(800, 3))
    kw = {"cells": np.arange(0, 800, 80), "dim": 2}
    aware = diffusion_curvature(X, **kw)
    naive = diffusion_curvature(X, noise_aware=False, **kw)
    rel_a = np.abs(aware.curvature / aware.flat).mean()
    rel_n = np.abs(naive.curvature / naive.flat).mean()
    assert rel_a < 0.5 * rel_n, (rel_a, rel_n)


# --------------------------------------------------------------------------- AnnData
@pytest.fixture
def sphere_adata() -> AnnData:
    return datasets.sphere(n_obs=300, random_state=3)


def test_tl_writes_and_round_trips(sphere_adata, tmp_path):
    scfim.tl.diffusion_curvature(sphere_adata, t=4, dim=2)
    c = sphere_adata.obs["diffusion_curvature"].to_numpy()
    raw = sphere_adata.obs["diffusion_curvature_raw"].to_numpy()
    assert c.shape == (300,) and np.all(np.isfinite(c)) and np.all(raw > 0)
    info = sphere_adata.uns["diffusion_curvature"]
    assert info["params"]["t"] == 4 and info["params"]["use_rep"] == "X"
    assert info["dim"] == 2 and info["sigma"] > 0
    path = tmp_path / "curv.h5ad"
    sphere_adata.write_h5ad(path)
    back = read_h5ad(path)
    np.testing.assert_array_equal(back.obs["diffusion_curvature"].to_numpy(), c)
    assert back.uns["diffusion_curvature"]["params"]["ball_neighbors"] == 30
    assert back.uns["diffusion_curvature"]["params"]["flat_reference"]


def test_tl_copy_key_and_estimated_dim(sphere_adata):
    out = scfim.tl.diffusion_curvature(
        sphere_adata, t=3, key_added="curv", flat_reference=False, copy=True
    )
    assert "curv" not in sphere_adata.obs and "curv" not in sphere_adata.uns
    assert "curv" in out.obs and "curv_raw" not in out.obs
    a = datasets.saddle(n_obs=150, random_state=0)
    scfim.tl.diffusion_curvature(a, t=3, n_neighbors=8, ball_neighbors=10, smooth=5)
    # dim estimated by local PCA
    assert a.uns["diffusion_curvature"]["dim"] == 2


@pytest.mark.parametrize(
    "kwargs, err",
    [
        ({"t": 0}, ValueError),
        ({"t": -3}, ValueError),
        ({"t": 2.5}, TypeError),
        ({"n_neighbors": "15"}, TypeError),
        ({"ball_neighbors": 0}, ValueError),
        ({"smooth": -1}, ValueError),
        ({"dim": 0}, ValueError),
        ({"dim": 7}, ValueError),
        ({"flat_reference": "yes"}, TypeError),
        ({"use_rep": "X_missing"}, KeyError),
        ({"key_added": 3}, TypeError),
        ({"random_state": "a"}, TypeError),
        ({"patch_size": 20}, ValueError),  # smaller than the ball
        ({"patch_size": 1.5}, TypeError),
        ({"noise_aware": 1}, TypeError),
        ({"bandwidth": 0.0}, ValueError),
        ({"bandwidth": "0.2"}, TypeError),
        ({"bandwidth": float("nan")}, ValueError),
        ({"progress": "no"}, TypeError),
        ({"cells": [0, 300]}, IndexError),
        ({"cells": ["nope"]}, KeyError),
        ({"cells": [0.5]}, TypeError),
        ({"cells": []}, ValueError),
    ],
)
def test_bad_input_leaves_adata_unchanged(sphere_adata, kwargs, err):
    snap = snapshot(sphere_adata)
    with pytest.raises(err):
        scfim.tl.diffusion_curvature(sphere_adata, **kwargs)
    assert_unchanged(sphere_adata, snap)


def test_bad_data_leaves_adata_unchanged():
    X = np.asarray(datasets.sphere(n_obs=100, random_state=0).X)
    X[5, 1] = np.nan
    a = AnnData(X)
    snap = snapshot(a)
    with pytest.raises(ValueError, match="NaN"):
        scfim.tl.diffusion_curvature(a)
    assert_unchanged(a, snap)
    few = AnnData(np.asarray(datasets.sphere(n_obs=20, random_state=0).X))
    snap = snapshot(few)
    with pytest.raises(ValueError, match="cells"):
        scfim.tl.diffusion_curvature(few)
    assert_unchanged(few, snap)
    few_distinct = AnnData(np.vstack([X[10:35]] * 3))  # 75 rows, 25 distinct cells
    snap = snapshot(few_distinct)
    with pytest.raises(ValueError, match="distinct cells"):
        scfim.tl.diffusion_curvature(few_distinct)
    assert_unchanged(few_distinct, snap)


def test_sparse_input_matches_dense():
    X = np.asarray(datasets.saddle(n_obs=100, random_state=1).X, dtype=np.float64)
    a, b = AnnData(X), AnnData(sp.csr_matrix(X))
    for ad in (a, b):
        scfim.tl.diffusion_curvature(ad, t=3, dim=2, smooth=5, ball_neighbors=10)
    np.testing.assert_allclose(
        a.obs["diffusion_curvature"].to_numpy(), b.obs["diffusion_curvature"].to_numpy()
    )


# --------------------------------------------------------------------------- defaults, input
def test_defaults_are_shared_with_the_tool():
    import inspect

    geo = inspect.signature(diffusion_curvature).parameters
    tool = inspect.signature(scfim.tl.diffusion_curvature).parameters
    names = ("t", "n_neighbors", "ball_neighbors", "patch_size", "smooth", "noise_aware")
    for name in (*names, "bandwidth"):
        assert geo[name].default == tool[name].default, name
    assert tool["t"].default == 8 and tool["patch_size"].default == 128


def test_tl_chosen_cells(sphere_adata):
    full = scfim.tl.diffusion_curvature(sphere_adata, t=4, patch_size=64, copy=True)
    names = [sphere_adata.obs_names[7], 250]
    part = scfim.tl.diffusion_curvature(
        sphere_adata, t=4, patch_size=64, cells=names, copy=True, progress=True
    )
    c_full = full.obs["diffusion_curvature"].to_numpy()
    c_part = part.obs["diffusion_curvature"].to_numpy()
    assert np.isnan(c_part).sum() == 298
    np.testing.assert_allclose(c_part[[7, 250]], c_full[[7, 250]], rtol=1e-9)
    assert part.uns["diffusion_curvature"]["n_cells"] == 2
    assert full.uns["diffusion_curvature"]["n_cells"] == 300


@pytest.mark.parametrize(
    "kwargs, err",
    [
        ({"t": 0}, ValueError),
        ({"t": 2.5}, TypeError),
        ({"t": True}, TypeError),
        ({"ball_neighbors": 0}, ValueError),
        ({"ball_neighbors": 100}, ValueError),  # ball larger than the data
        ({"n_neighbors": 0}, ValueError),
        ({"smooth": -2}, ValueError),
    ],
)
def test_geometry_bad_input(kwargs, err):
    X = np.asarray(datasets.plane(n_obs=60, random_state=0).X, dtype=np.float64)
    with pytest.raises(err):
        diffusion_curvature(X, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{"ball_neighbors": 299}, {"ball_neighbors": 1000}, {"smooth": 400}, {"n_neighbors": 299}],
)
def test_tl_ball_or_neighbourhood_larger_than_data(sphere_adata, kwargs):
    snap = snapshot(sphere_adata)
    with pytest.raises(ValueError, match="cells"):
        scfim.tl.diffusion_curvature(sphere_adata, **kwargs)
    assert_unchanged(sphere_adata, snap)


def test_pl_curvature_diverging_and_centred(sphere_adata):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes

    scfim.tl.diffusion_curvature(sphere_adata, t=3, dim=2, smooth=5, ball_neighbors=10)
    sphere_adata.obsm["X_emb"] = np.asarray(sphere_adata.X)[:, :2]
    ax = scfim.pl.curvature(sphere_adata, basis="emb")
    assert isinstance(ax, Axes)
    coll = ax.collections[0]
    assert coll.norm.vmin == -coll.norm.vmax  # centred on 0
    c = sphere_adata.obs["diffusion_curvature"].to_numpy()
    assert coll.norm.vmax == pytest.approx(np.percentile(np.abs(c), 99))
    # a zero value maps to the middle of the diverging map
    assert coll.norm(0.0) == pytest.approx(0.5)
    assert coll.get_offsets().shape == (300, 2)
    ax2 = scfim.pl.curvature(sphere_adata, basis="X_emb", vmax=1.0, colorbar=False)
    assert ax2.collections[0].norm.vmax == 1.0
    with pytest.raises(KeyError):
        scfim.pl.curvature(sphere_adata, basis="emb", key="missing")
    with pytest.raises(KeyError):
        scfim.pl.curvature(sphere_adata, basis="nope")
    plt.close("all")


def test_walk_that_stays_home_gives_finite_curvature():
    """Regression: on pbmc68k_reduced (50-D PCA, estimated d ≈ 10) some walks keep half
    their mass on their own cell; the density radius was 0 and r^d underflowed
    (ZeroDivisionError). Radii are now floored at the nearest cell reached."""
    sc = pytest.importorskip("scanpy")
    adata = sc.datasets.pbmc68k_reduced()
    scfim.tl.diffusion_curvature(adata, random_state=0)
    c = adata.obs["diffusion_curvature"].to_numpy(dtype=float)
    assert np.isfinite(c).all() and c.std() > 0


# --------------------------------------------------------------------------- duplicates
def _with_copies(X: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """X plus 1–3 extra copies of 30 of its cells, shuffled; also each row's original."""
    rng = np.random.default_rng(seed)
    src = rng.choice(len(X), 30, replace=False)
    origin = np.concatenate([np.arange(len(X)), np.repeat(src, rng.integers(1, 4, size=30))])
    origin = origin[rng.permutation(origin.size)]
    return X[origin], origin


def test_copies_get_identical_values_and_tool_accepts_duplicates():
    X, origin = _with_copies(_cloud("saddle", n_obs=400, seed=2))
    res = diffusion_curvature(X, t=5, patch_size=64, smooth=3)
    for o in np.unique(origin):
        g = np.flatnonzero(origin == o)
        if g.size > 1:
            assert np.all(res.curvature[g] == res.curvature[g[0]])
            assert np.all(res.raw[g] == res.raw[g[0]])
    part = diffusion_curvature(X, t=5, patch_size=64, smooth=3, cells=np.array([7, 0, 7]))
    np.testing.assert_array_equal(part.curvature, res.curvature[[7, 0, 7]])
    a = AnnData(X)
    scfim.tl.diffusion_curvature(a, t=5, patch_size=64, smooth=3)
    np.testing.assert_array_equal(a.obs["diffusion_curvature"].to_numpy(), res.curvature)


def test_collapsed_copies_are_the_walk_with_every_copy_present():
    """One patch of distinct cells with multiplicities against the same patch written out
    copy by copy (the ball then holds every copy of its cells): equal to rounding."""
    X = _cloud("saddle", n_obs=300, seed=1)
    m = np.random.default_rng(4).integers(1, 4, size=len(X)).astype(np.float64)
    order = np.argsort(np.linalg.norm(X - X[0], axis=1), kind="stable")
    patch = order[:60][None]
    ball, sigma = 12, 0.05
    kw = {"dim": 2, "sigma": sigma, "t": 4}
    C_w, F_w = patch_curvature(X, patch, ball_neighbors=ball, weights=m, **kw)
    expanded = np.repeat(patch[0], m[patch[0]].astype(int))
    in_ball = int(m[patch[0, : ball + 1]].sum())
    C_e, F_e = patch_curvature(X, expanded[None], ball_neighbors=in_ball - 1, **kw)
    np.testing.assert_allclose(C_w, C_e, rtol=1e-10)
    np.testing.assert_allclose(F_w, F_e, rtol=1e-10)
    assert abs(C_w[0] - F_w[0]) > 1e-4 * C_w[0]  # a curved patch: the check is not vacuous
    # multiplicities of one are the unweighted walk
    C_1, F_1 = patch_curvature(X, patch, ball_neighbors=ball, weights=np.ones(len(X)), **kw)
    C_0, F_0 = patch_curvature(X, patch, ball_neighbors=ball, **kw)
    np.testing.assert_allclose([C_1, F_1], [C_0, F_0], rtol=1e-12)


def test_exact_patch_query_is_exact_and_independent_of_the_batch():
    """Against brute force (float64 distances, ties by index), on data far from the origin
    and on a grid full of ties; the answer for a cell does not depend on the others."""
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(np.arange(30.0), np.arange(30.0)), -1).reshape(-1, 2)
    for X in (rng.normal(size=(1500, 6)) + 1e3, grid):
        n, cells = len(X), np.arange(0, len(X), 7)
        got = nearest_cells(X, cells, 40)
        d2 = ((X[cells][:, None] - X[None]) ** 2).sum(-1)
        d2[np.arange(cells.size), cells] = -1.0
        ref = np.lexsort((np.broadcast_to(np.arange(n), d2.shape), d2), axis=-1)[:, :40]
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(nearest_cells(X, cells[::-1], 40)[::-1], got)
