"""Tests for :mod:`scfim.datasets`."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
from scipy import integrate
from scipy.spatial.distance import cdist

from scfim import datasets

# small sizes keep the whole module fast
GENERATORS = {
    "tree": lambda rs: datasets.tree(n_obs=300, n_dim=10, n_branches=3, random_state=rs),
    "sphere": lambda rs: datasets.sphere(n_obs=200, noise=0.01, random_state=rs),
    "swiss_roll": lambda rs: datasets.swiss_roll(n_obs=200, noise=0.01, random_state=rs),
    "swiss_roll_arclength": lambda rs: datasets.swiss_roll(
        n_obs=200, sampling="arclength", random_state=rs
    ),
    "plane": lambda rs: datasets.plane(n_obs=200, noise=0.01, random_state=rs),
    "saddle": lambda rs: datasets.saddle(n_obs=200, random_state=rs),
    "torus": lambda rs: datasets.torus(n_obs=200, random_state=rs),
    "torus_full": lambda rs: datasets.torus(n_obs=200, radius=None, random_state=rs),
}


def test_all_exported():
    for name in [
        "tree",
        "sphere",
        "swiss_roll",
        "swiss_roll_arclength",
        "plane",
        "saddle",
        "torus",
        "pbmc68k_reduced",
    ]:
        assert name in datasets.__all__
        assert callable(getattr(datasets, name))


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_anndata_conventions(name):
    adata = GENERATORS[name](0)
    assert isinstance(adata, ad.AnnData)
    assert adata.X.dtype == np.float32
    assert np.all(np.isfinite(adata.X))
    assert list(adata.obs_names[:2]) == ["cell_0", "cell_1"]
    assert adata.obs_names.is_unique
    assert all(isinstance(n, str) for n in adata.obs_names)


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_determinism(name):
    make = GENERATORS[name]
    a, b, c = make(0), make(0), make(1)
    np.testing.assert_array_equal(a.X, b.X)
    for key in a.obs:
        np.testing.assert_array_equal(np.asarray(a.obs[key]), np.asarray(b.obs[key]))
    assert not np.array_equal(a.X, c.X)


def test_shapes():
    assert datasets.tree(n_obs=301, n_dim=7, n_branches=4).shape == (301, 7)
    assert datasets.sphere(n_obs=50).shape == (50, 3)
    assert datasets.sphere(n_obs=50, n_dim=4).shape == (50, 5)
    assert datasets.swiss_roll(n_obs=50).shape == (50, 3)
    assert datasets.plane(n_obs=50).shape == (50, 3)
    assert datasets.plane(n_obs=50, n_dim=3).shape == (50, 4)
    assert datasets.saddle(n_obs=50, n_dim=4).shape == (50, 5)
    assert datasets.torus(n_obs=50).shape == (50, 3)


def test_defaults_shapes():
    assert datasets.tree().shape == (3000, 100)
    assert datasets.sphere().shape == (2000, 3)
    assert datasets.swiss_roll().shape == (2000, 3)


# --------------------------------------------------------------------------------------
# sphere
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_dim", [1, 2, 5])
def test_sphere_on_sphere(n_dim):
    X = datasets.sphere(n_obs=500, n_dim=n_dim).X
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-6)
    X = datasets.sphere(n_obs=100, n_dim=n_dim, radius=3.0).X
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 3.0, rtol=1e-6)


def test_sphere_uniform_and_angles():
    adata = datasets.sphere(n_obs=4000)
    X = adata.X.astype(np.float64)
    # uniform on the sphere: mean ~ 0, second moment ~ I / 3, and z uniform on [-1, 1]
    np.testing.assert_allclose(X.mean(0), 0.0, atol=0.05)
    np.testing.assert_allclose(X.T @ X / len(X), np.eye(3) / 3, atol=0.03)
    counts, _ = np.histogram(X[:, 2], bins=4, range=(-1, 1))
    assert np.all(np.abs(counts / len(X) - 0.25) < 0.03)
    theta, psi = adata.obs["theta"].to_numpy(), adata.obs["psi"].to_numpy()
    assert theta.min() >= 0 and theta.max() <= np.pi
    assert psi.min() >= 0 and psi.max() < 2 * np.pi
    recon = np.column_stack(
        [np.sin(theta) * np.cos(psi), np.sin(theta) * np.sin(psi), np.cos(theta)]
    )
    np.testing.assert_allclose(recon, X, atol=1e-5)


# --------------------------------------------------------------------------------------
# swiss roll
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0, 1.5 * np.pi, 4.5 * np.pi, 20.0])
def test_swiss_roll_arclength_vs_quad(t):
    expected, _ = integrate.quad(lambda u: np.hypot(1.0, u), 0.0, t)
    assert datasets.swiss_roll_arclength(t) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_swiss_roll_arclength_of_curve():
    # numerical arc length of the spiral (t cos t, t sin t) itself, between two values
    t = np.linspace(1.5 * np.pi, 4.5 * np.pi, 200_001)
    xz = np.column_stack([t * np.cos(t), t * np.sin(t)])
    polyline = np.linalg.norm(np.diff(xz, axis=0), axis=1).sum()
    s = datasets.swiss_roll_arclength(np.array([t[0], t[-1]]))
    assert isinstance(s, np.ndarray) and s.shape == (2,)
    assert s[1] - s[0] == pytest.approx(polyline, rel=1e-6)
    assert isinstance(datasets.swiss_roll_arclength(2.0), float)
    # odd function: signed arc length for negative t
    assert datasets.swiss_roll_arclength(-2.0) == pytest.approx(-datasets.swiss_roll_arclength(2.0))


def test_swiss_roll_coordinates():
    adata = datasets.swiss_roll(n_obs=300)
    t, h = adata.obs["t"].to_numpy(), adata.obs["height"].to_numpy()
    X = np.column_stack([t * np.cos(t), h, t * np.sin(t)])
    np.testing.assert_allclose(adata.X, X, rtol=1e-5, atol=1e-5)
    assert t.min() >= 1.5 * np.pi and t.max() <= 4.5 * np.pi
    np.testing.assert_allclose(adata.obs["arclength"], datasets.swiss_roll_arclength(t))
    np.testing.assert_allclose(adata.obsm["intrinsic"][:, 1], h)


def test_swiss_roll_arclength_sampling_is_uniform_in_arclength():
    adata = datasets.swiss_roll(n_obs=4000, sampling="arclength")
    s = adata.obs["arclength"].to_numpy()
    s0, s1 = datasets.swiss_roll_arclength(np.array([1.5 * np.pi, 4.5 * np.pi]))
    counts, _ = np.histogram(s, bins=4, range=(s0, s1))
    assert np.all(np.abs(counts / len(s) - 0.25) < 0.03)
    # t = uniform sampling puts more points on the inner turns
    s_t = datasets.swiss_roll(n_obs=4000, sampling="t").obs["arclength"].to_numpy()
    assert np.median(s_t) < np.median(s)
    with pytest.raises(ValueError):
        datasets.swiss_roll(n_obs=10, sampling="nope")


# --------------------------------------------------------------------------------------
# plane / saddle / torus
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_dim", [1, 2, 3])
def test_plane_and_saddle_centre(n_dim):
    for make in (datasets.plane, datasets.saddle):
        adata = make(n_obs=300, n_dim=n_dim, random_state=3)
        u = adata.obsm["intrinsic"]
        assert u.shape == (300, n_dim)
        np.testing.assert_array_equal(u[0], 0.0)
        np.testing.assert_array_equal(adata.X[0], 0.0)
        r = np.linalg.norm(u, axis=1)
        assert r.max() <= 1.0 + 1e-12
        assert r[1:].min() > 0
        # the centre is the point closest to the origin of intrinsic coordinates
        assert np.argmin(adata.obs["r"].to_numpy()) == 0


def test_plane_and_saddle_geometry():
    plane = datasets.plane(n_obs=200, radius=2.0)
    np.testing.assert_array_equal(plane.X[:, -1], 0.0)
    np.testing.assert_allclose(plane.X[:, :2], plane.obsm["intrinsic"], rtol=1e-6)
    assert np.linalg.norm(plane.obsm["intrinsic"], axis=1).max() > 1.5
    saddle = datasets.saddle(n_obs=200, n_dim=3, scale=0.5)
    u = saddle.obsm["intrinsic"]
    z = 0.5 * (u[:, 0] ** 2 - u[:, 1] ** 2 + u[:, 2] ** 2)
    np.testing.assert_allclose(saddle.X[:, 3], z, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("radius", [1.0, None])
def test_torus(radius):
    R, r = 2.0, 1.0
    adata = datasets.torus(n_obs=400, R=R, r=r, radius=radius)
    X = adata.X.astype(np.float64)
    np.testing.assert_allclose(X[0], [R + r, 0.0, 0.0])
    np.testing.assert_array_equal(adata.obsm["intrinsic"][0], 0.0)
    # on the torus: (sqrt(x^2 + y^2) - R)^2 + z^2 = r^2
    ring = np.hypot(X[:, 0], X[:, 1])
    np.testing.assert_allclose((ring - R) ** 2 + X[:, 2] ** 2, r**2, atol=1e-5)
    phi, theta = adata.obs["phi"].to_numpy(), adata.obs["theta"].to_numpy()
    np.testing.assert_allclose(adata.obsm["intrinsic"], np.column_stack([(R + r) * phi, r * theta]))
    if radius is not None:
        assert np.linalg.norm(adata.obsm["intrinsic"], axis=1).max() <= radius + 1e-12
    else:  # the whole torus, outer side denser than inner side
        assert phi.min() < -3 and phi.max() > 3
        assert np.mean(np.cos(theta) > 0) > 0.55


def test_invalid_arguments():
    with pytest.raises(ValueError):
        datasets.torus(R=1.0, r=2.0)
    with pytest.raises(ValueError):
        datasets.torus(radius=10.0)
    with pytest.raises(ValueError):
        datasets.sphere(radius=0.0)
    with pytest.raises(ValueError):
        datasets.plane(noise=-1.0)
    with pytest.raises(ValueError):
        datasets.tree(n_obs=5, n_branches=5)
    with pytest.raises(ValueError):
        datasets.tree(n_obs=100, tip_window=0.3)


# --------------------------------------------------------------------------------------
# tree
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_tree():
    return datasets.tree(n_obs=1000, n_dim=50, n_branches=5, random_state=0)


def test_tree_obs(small_tree):
    obs = small_tree.obs
    assert obs["branch"].dtype == "category"
    assert list(obs["branch"].cat.categories) == ["0", "1", "2", "3", "4"]
    assert (obs["branch"].value_counts() == 200).all()
    pos = obs["branch_position"].to_numpy()
    assert pos.min() == 0.0 and pos.max() == 1.0
    for _, group in obs.groupby("branch", observed=True):
        p = group["branch_position"].to_numpy()
        assert p[0] == 0.0 and p[-1] == 1.0 and np.all(np.diff(p) > 0)
    assert obs["is_branch_point"].dtype == bool and obs["is_branch_tip"].dtype == bool
    assert not np.any(obs["is_branch_point"] & obs["is_branch_tip"])


def test_tree_structure(small_tree):
    parent = small_tree.uns["tree"]["parent"]
    attach = small_tree.uns["tree"]["attach_position"]
    assert parent[0] == -1 and np.isnan(attach[0])
    assert all(0 <= parent[b] < b for b in range(1, 5))
    assert np.all((attach[1:] >= 0.2) & (attach[1:] <= 0.8))
    X = small_tree.X
    # branch 0 starts near the origin (one step + noise away)
    assert np.linalg.norm(X[0]) < 5 * 0.2 * np.sqrt(50)


def test_tree_branch_points_and_tips(small_tree):
    obs = small_tree.obs
    branch = obs["branch"].cat.codes.to_numpy()
    pos = obs["branch_position"].to_numpy()
    bp = obs["is_branch_point"].to_numpy()
    tip = obs["is_branch_tip"].to_numpy()
    parent = small_tree.uns["tree"]["parent"]
    attach = small_tree.uns["tree"]["attach_position"]

    # every branch but the first starts at a branch point ...
    for b in range(1, 5):
        assert bp[(branch == b) & (pos == 0)].all()
        assert bp[branch == b].sum() >= 2
        # ... and the parent has branch-point cells centred on the attachment
        on_parent = bp & (branch == parent[b]) & (np.abs(pos - attach[b]) <= 0.01 + 1e-9)
        assert on_parent.sum() >= 3
    assert not bp[branch == 0][:10].any()  # the root's start is a tip, not a branch point
    # the definition exactly
    expected = np.zeros_like(bp)
    for c in range(1, 5):
        expected |= (branch == c) & (pos <= 0.01 + 1e-9)
        expected |= (branch == parent[c]) & (np.abs(pos - attach[c]) <= 0.01 + 1e-9)
    np.testing.assert_array_equal(bp, expected)

    # every branch has a tip at its end; the root also at its start
    for b in range(5):
        assert tip[(branch == b) & (pos == 1)].all()
        n_ends = 2 if b == 0 else 1
        assert tip[(branch == b)].sum() == pytest.approx(n_ends * 0.05 * 200, abs=2)
    assert tip[(branch == 0) & (pos == 0)].all()
    assert tip.sum() == pytest.approx(6 * 0.05 * 200, abs=12)


def test_tree_branch_points_touch_two_branches(small_tree):
    X = small_tree.X.astype(np.float64)
    branch = small_tree.obs["branch"].cat.codes.to_numpy()
    bp = small_tree.obs["is_branch_point"].to_numpy()
    tip = small_tree.obs["is_branch_tip"].to_numpy()
    D = cdist(X, X)
    np.fill_diagonal(D, np.inf)
    nn = np.median(D.min(1))  # typical nearest-neighbour distance
    d_other = np.where(branch[:, None] == branch[None, :], np.inf, D).min(1)
    # every branch-point cell has a cell of another branch about one neighbour away
    assert np.all(d_other[bp] < 1.5 * nn)
    # tips are far from every other branch
    assert np.median(d_other[tip]) > 2 * np.median(d_other[bp])
    assert d_other[tip].min() > d_other[bp].max()


def test_tree_branches_separated_relative_to_noise():
    adata = datasets.tree(n_obs=600, n_dim=100, n_branches=3, random_state=1)
    X = adata.X.astype(np.float64)
    branch = adata.obs["branch"].cat.codes.to_numpy()
    pos = adata.obs["branch_position"].to_numpy()
    noise_norm = 0.2 * np.sqrt(100)
    # the ends of two branches are many noise widths apart
    ends = [X[(branch == b) & (pos > 0.95)].mean(0) for b in range(3)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.linalg.norm(ends[i] - ends[j]) > 2 * noise_norm


def test_tree_branch_length_scales_geometry():
    a = datasets.tree(n_obs=500, n_dim=20, noise=0.0, random_state=0)
    b = datasets.tree(n_obs=500, n_dim=20, noise=0.0, branch_length=2 * np.sqrt(20), random_state=0)
    np.testing.assert_allclose(b.X, 2 * a.X, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------
# pbmc
# --------------------------------------------------------------------------------------


def test_pbmc68k_reduced():
    adata = datasets.pbmc68k_reduced()
    assert isinstance(adata, ad.AnnData)
    assert "X_pca" in adata.obsm
    assert adata.n_obs == adata.obsm["X_pca"].shape[0] > 0
    # a copy: modifying it does not change the next call
    adata.obs["foo"] = 1
    assert "foo" not in datasets.pbmc68k_reduced().obs
