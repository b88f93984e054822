import numpy as np
import pytest
import scipy.sparse as sp
from anndata import AnnData, read_h5ad
from conftest import assert_unchanged, snapshot

import scfim
from scfim import datasets
from scfim.geometry.curvature import (
    ball_indices,
    diffusion_curvature,
    gaussian_operator,
    pointwise_curvature,
    walk_rows,
)

# the benchmark's setting (benchmarks/bench_curvature.py), on smaller clouds
KW = {"t": 16, "ball_neighbors": 30, "smooth": 15, "dim": 2}
SHAPES = {"sphere": datasets.sphere, "plane": datasets.plane, "saddle": datasets.saddle}


def _centre(shape: str, seed: int, n_obs: int = 1500):
    X = np.asarray(SHAPES[shape](n_obs=n_obs, n_dim=2, random_state=seed).X, dtype=np.float64)
    return diffusion_curvature(X, idx=np.array([0]), random_state=seed, **KW)


def test_rows_of_pt_match_dense_powers():
    X = np.asarray(datasets.plane(n_obs=300, random_state=0).X, dtype=np.float64)
    P, D, sigma = gaussian_operator(X, n_neighbors=10)
    assert sigma > 0
    # rows of D stay sorted by distance (affinity_kernel must not reorder them)
    assert np.all(np.diff(D.data.reshape(300, -1), axis=1) >= 0)
    idx = np.array([0, 7, 299])
    R = walk_rows(P, idx, 5).toarray()
    Pd = P.toarray()
    np.testing.assert_allclose(R, np.linalg.matrix_power(Pd, 5)[idx], atol=1e-12)
    balls = ball_indices(D, 12)
    assert balls.shape == (300, 13) and np.all(balls[:, 0] == np.arange(300))
    C, _ = pointwise_curvature(P, balls, idx, 5)
    Pt = np.linalg.matrix_power(Pd, 5)
    np.testing.assert_allclose(C, [Pt[i, balls[i]].mean() for i in idx], atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_sphere_plane_saddle_order_and_sign(seed):
    r = {s: _centre(s, seed) for s in SHAPES}
    rel = {s: float(v.curvature[0] / v.flat[0]) for s, v in r.items()}
    assert rel["sphere"] > rel["plane"] > rel["saddle"], rel
    assert r["sphere"].curvature[0] > 0, rel
    assert r["saddle"].curvature[0] < 0, rel


def test_without_reference_is_raw():
    X = np.asarray(datasets.sphere(n_obs=400, random_state=0).X, dtype=np.float64)
    res = diffusion_curvature(X, idx=np.array([0, 1]), flat_reference=False, t=4)
    assert res.flat is None and res.dim is None
    np.testing.assert_array_equal(res.curvature, res.raw)
    assert np.all((res.raw > 0) & (res.raw < 1))


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
    dup = AnnData(np.vstack([X[:50], X[:1]]).astype(np.float64))
    dup.X[5, 1] = 0.0
    snap = snapshot(dup)
    with pytest.raises(ValueError, match="duplicate"):
        scfim.tl.diffusion_curvature(dup)
    assert_unchanged(dup, snap)


def test_sparse_input_matches_dense():
    X = np.asarray(datasets.saddle(n_obs=100, random_state=1).X, dtype=np.float64)
    a, b = AnnData(X), AnnData(sp.csr_matrix(X))
    for ad in (a, b):
        scfim.tl.diffusion_curvature(ad, t=3, dim=2, smooth=5, ball_neighbors=10)
    np.testing.assert_allclose(
        a.obs["diffusion_curvature"].to_numpy(), b.obs["diffusion_curvature"].to_numpy()
    )


# --------------------------------------------------------------------------- defaults, input
def test_default_t_is_shared_with_the_tool():
    import inspect

    t_geo = inspect.signature(diffusion_curvature).parameters["t"].default
    t_tl = inspect.signature(scfim.tl.diffusion_curvature).parameters["t"].default
    assert t_geo == t_tl == 16


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
