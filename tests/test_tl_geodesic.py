import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from anndata import AnnData, read_h5ad
from conftest import assert_unchanged, branching, snapshot

import scfim


@pytest.fixture(scope="module")
def fitted():
    a = AnnData(branching(60, 5, 4).astype(np.float32))
    a.obs_names = [f"c{i}" for i in range(a.n_obs)]
    scfim.tl.diffusion(a, t=5)
    scfim.tl.jsd_phate(a)
    scfim.tl.neural_fim(a, epochs=15, hidden=(16, 16), n_components=6, progress=False)
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


def test_ode_method_and_fisher_rao_energy(fitted):
    a = fitted.copy()
    scfim.tl.geodesic(a, ["c0", "c10"], ["c70", "c10"], method="ode", n_points=9, n_steps=60)
    g = a.uns["geodesic"]
    X = np.asarray(a.X, dtype=float)
    assert g["paths"].shape == (2, 9, 5) and g["params"]["method"] == "ode"
    np.testing.assert_allclose(g["paths"][0, 0], X[0], atol=1e-6)
    span = np.linalg.norm(X[70] - X[0])
    assert g["endpoint_error"][0] < 0.1 * span  # x(1) lands near the end cell
    assert g["lengths"][0] > 0 and g["lengths"][1] < 1e-8  # same cell: length 0
    # the energy solver with the Jacobian-free Fisher–Rao energy
    kw = {"method": "energy", "n_points": 10}
    scfim.tl.geodesic(a, "c0", "c70", energy="fisher_rao", key_added="fr", **kw)
    scfim.tl.geodesic(a, "c0", "c70", energy="metric", key_added="quad", **kw)
    L_fr, L_q = a.uns["fr"]["lengths"][0], a.uns["quad"]["lengths"][0]
    assert L_fr == pytest.approx(L_q, rel=0.1)
    np.testing.assert_array_equal(a.uns["quad"]["endpoint_error"], 0.0)


def test_hot_starts_graph_density_none(fitted):
    """All three hot starts reach a geodesic; the density-metric start is the seed's
    Part C: it is itself a minimiser under I/(p+ε), so it should hug the cells more closely
    than the straight line between two branch ends does."""
    from scfim.geometry.geodesic import initial_curves
    from scfim.geometry.metric import DensityMetric

    a = fitted.copy()
    X = np.asarray(a.X, dtype=float)
    s, e = np.array([0]), np.array([150])
    dens = initial_curves(X, s, e, 12, "density")
    line = np.linspace(X[0], X[150], 12)[None]
    assert dens.shape == (1, 12, 5)
    np.testing.assert_allclose(dens[0, [0, -1]], X[[0, 150]], atol=1e-8)
    dm = DensityMetric(X, normalize=True)
    p = [dm.density(torch.as_tensor(c[0])).numpy().min() for c in (dens, line)]
    assert p[0] > p[1]  # the density start stays where the cells are
    lengths = {}
    for hs in ("graph", "density", "none", True, False):
        scfim.tl.geodesic(
            a, "c0", "c150", method="energy", n_points=12, hot_start=hs, key_added="h"
        )
        lengths[str(hs)] = a.uns["h"]["lengths"][0]
    assert a.uns["h"]["params"]["hot_start"] == "none"
    assert all(np.isfinite(v) and v > 0 for v in lengths.values())
    assert lengths["True"] == pytest.approx(lengths["graph"])


def _fisher_rao_bound(a, s, e):
    """2 arccos Σ√(φ(s)φ(e)) averaged over the ensemble: no curve is shorter."""
    from scfim.tl._store import read_fim_ensemble

    X = np.asarray(a.X, dtype=np.float64)
    models, _ = read_fim_ensemble(a, "neural_fim")
    bounds = []
    for m in models:
        with torch.no_grad():
            phi = torch.softmax(
                m.network(torch.as_tensor(X[[s, e]], dtype=torch.float32)).double(), -1
            ).numpy()
        bounds.append(2 * np.arccos(min(1.0, np.sqrt(phi[0] * phi[1]).sum())))
    return float(np.mean(bounds))


def test_default_graph_geodesic_follows_the_cells(fitted):
    """The default curve runs along kNN edges: every point lies on a segment between two
    neighbouring cells, its length is the distance fisher_rao_distances reports for the
    pair, and it is no shorter than the Fisher–Rao distance of the end distributions."""
    from scipy.spatial import cKDTree

    a = fitted.copy()
    scfim.tl.geodesic(a, "c0", "c150")
    g = a.uns["geodesic"]
    assert g["params"]["method"] == "graph" and g["paths"].shape == (1, 32, 5)
    X = np.asarray(a.X, dtype=float)
    d, _ = cKDTree(X).query(X, k=16)
    assert g["proximity"][0] <= 0.5 * d[:, 15].max() + 1e-6
    assert g["nn_distance"] == pytest.approx(np.median(d[:, 1]))
    np.testing.assert_array_equal(g["endpoint_error"], 0.0)
    scfim.tl.fisher_rao_distances(a, ["c0", "c150"])
    D = a.uns["fisher_rao_distances"]["distances"]
    assert g["lengths"][0] == pytest.approx(D[0, 1], rel=1e-9)
    assert g["lengths"][0] >= _fisher_rao_bound(a, 0, 150)
    for energy in ("fisher_rao", "metric"):
        scfim.tl.geodesic(a, "c0", "c150", method="energy", energy=energy, key_added="c")
        assert a.uns["c"]["lengths"][0] >= 0.9 * _fisher_rao_bound(a, 0, 150)


@pytest.mark.parametrize(
    "args, kwargs, exc",
    [
        (("nope", "c1"), {}, KeyError),
        ((0, 10_000), {}, IndexError),
        (([0, 1], [2]), {}, ValueError),
        ((0, 1), {"method": "shooting"}, ValueError),
        ((0, 1), {"method": "ode", "n_steps": 0}, ValueError),
        ((0, 1), {"method": "ode", "fim_key": "missing"}, KeyError),
        (("c0", "nope"), {"method": "ode"}, KeyError),
        ((0, 1), {"energy": "kl"}, ValueError),
        ((0, 1), {"n_points": 2}, ValueError),
        ((0, 1), {"density_weight": -1.0}, ValueError),
        ((0, 1), {"fim_key": "missing"}, KeyError),
        ((0.5, 1), {}, TypeError),
        ((0, 1), {"hot_start": "spline"}, ValueError),
        ((0, 1), {"n_neighbors": 0}, ValueError),
        ((0, 1), {"n_neighbors": 2.5}, TypeError),
    ],
)
def test_bad_input_leaves_adata_unchanged(fitted, args, kwargs, exc):
    a = fitted.copy()
    snap = snapshot(a)
    with pytest.raises(exc):
        scfim.tl.geodesic(a, *args, **kwargs)
    assert_unchanged(a, snap)


def test_fisher_rao_distances_graph_energy_ode(fitted):
    a = fitted.copy()
    cells = ["c0", "c40", "c100", "c170"]
    scfim.tl.fisher_rao_distances(a, cells)
    g = a.uns["fisher_rao_distances"]
    assert g["params"]["method"] == "graph"
    np.testing.assert_array_equal(g["distances"], g["graph_distances"])
    scfim.tl.fisher_rao_distances(a, cells, method="energy", n_points=10, key_added="e")
    e = a.uns["e"]
    assert e["params"]["energy"] == "fisher_rao"  # the energy the optimiser cannot fool
    np.testing.assert_allclose(e["graph_distances"], g["distances"])
    off = ~np.eye(4, dtype=bool)
    # the energy solver starts on the graph path; a distance is the shorter of both curves
    assert np.all(e["distances"][off] <= g["distances"][off])
    assert np.all(e["distances"][off] > 0)
    scfim.tl.fisher_rao_distances(a, cells[:2], method="ode", n_points=9, n_steps=20, key_added="o")
    assert a.uns["o"]["endpoint_error"][0, 1] >= 0 and a.uns["o"]["distances"][0, 1] > 0


def test_fisher_rao_distances_has_no_cell_cap(fitted):
    a = fitted.copy()
    scfim.tl.fisher_rao_distances(a, n_cells=150)
    assert a.uns["fisher_rao_distances"]["distances"].shape == (150, 150)


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        ({"cells": ["c0", "c0"]}, ValueError),
        ({"cells": ["c0"]}, ValueError),
        ({"method": "dijkstra"}, ValueError),
        ({"n_cells": 1}, ValueError),
        ({"n_neighbors": "5"}, TypeError),
        ({"batch_size": 0}, ValueError),
        ({"progress": 1}, TypeError),
        ({"key_added": ""}, ValueError),
        ({"fim_key": "missing"}, KeyError),
        ({"energy": "kl"}, ValueError),
    ],
)
def test_fisher_rao_distances_bad_input(fitted, kwargs, exc):
    a = fitted.copy()
    snap = snapshot(a)
    with pytest.raises(exc):
        scfim.tl.fisher_rao_distances(a, **kwargs)
    assert_unchanged(a, snap)


def test_resolve_cells_names_a_repeated_obs_name():
    from scfim.tl.geodesic import resolve_cells

    a = AnnData(np.zeros((4, 2), dtype=np.float32))
    a.obs_names = ["a", "b", "a", "c"]
    with pytest.raises(ValueError, match="occurs more than once"):
        resolve_cells(a, ["b", "a"])
    np.testing.assert_array_equal(resolve_cells(a, ["b", "c", 2]), [1, 3, 2])
