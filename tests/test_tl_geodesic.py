import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from anndata import AnnData, read_h5ad  # noqa: E402
from conftest import assert_unchanged, branching, snapshot  # noqa: E402

import scfim  # noqa: E402


@pytest.fixture(scope="module")
def fitted():
    a = AnnData(branching(60, 5, 4).astype(np.float32))
    a.obs_names = [f"c{i}" for i in range(a.n_obs)]
    scfim.tl.diffusion(a, t=5)
    scfim.tl.jsd_phate(a)
    scfim.tl.neural_fim(a, epochs=15, hidden=(16, 16), n_components=6, verbose=False)
    return a


def test_geodesic_writes_paths_and_lengths(fitted, tmp_path):
    a = fitted.copy()
    scfim.tl.geodesic(a, ["c0", 5], ["c70", "c150"], n_points=12)
    g = a.uns["geodesic"]
    assert g["paths"].shape == (2, 12, 5)
    assert np.all(np.isfinite(g["lengths"])) and np.all(g["lengths"] > 0)
    assert list(g["start"]) == ["c0", "c5"] and list(g["end"]) == ["c70", "c150"]
    X = np.asarray(a.X, dtype=float)
    np.testing.assert_allclose(g["paths"][0, 0], X[0], atol=1e-6)
    np.testing.assert_allclose(g["paths"][1, -1], X[150], atol=1e-6)
    assert np.all(g["proximity"] >= 0)
    a.write_h5ad(tmp_path / "g.h5ad")
    assert read_h5ad(tmp_path / "g.h5ad").uns["geodesic"]["paths"].shape == (2, 12, 5)
    ax = scfim.pl.geodesic(a, "X_jsd_phate")
    assert len(ax.lines) >= 2


def test_same_cell_has_zero_length_and_positions_equal_names(fitted):
    a = fitted.copy()
    scfim.tl.geodesic(a, "c3", 3, n_points=8)
    assert a.uns["geodesic"]["lengths"][0] < 1e-8
    scfim.tl.fisher_rao_distances(a, ["c0", "c40", "c100", "c170"], n_points=10)
    D = a.uns["fisher_rao_distances"]["distances"]
    assert D.shape == (4, 4)
    np.testing.assert_array_equal(D, D.T)
    assert np.all(np.diag(D) == 0) and np.all(D[np.triu_indices(4, 1)] > 0)


@pytest.mark.parametrize(
    "args, kwargs, exc",
    [
        (("nope", "c1"), {}, KeyError),
        ((0, 10_000), {}, IndexError),
        (([0, 1], [2]), {}, ValueError),
        ((0, 1), {"method": "ode"}, ValueError),
        ((0, 1), {"n_points": 2}, ValueError),
        ((0, 1), {"density_weight": -1.0}, ValueError),
        ((0, 1), {"fim_key": "missing"}, KeyError),
        ((0.5, 1), {}, TypeError),
    ],
)
def test_bad_input_leaves_adata_unchanged(fitted, args, kwargs, exc):
    a = fitted.copy()
    snap = snapshot(a)
    with pytest.raises(exc):
        scfim.tl.geodesic(a, *args, **kwargs)
    assert_unchanged(a, snap)
