import numpy as np
import pytest
import torch

from scfim.geometry.distances import geodesic_distances, geodesic_pseudotime, metric_graph
from scfim.geometry.metric import EuclideanMetric, Metric


def _square(n=400, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, size=(n, 2))


def _sphere(n=1500, seed=0):
    U = np.random.default_rng(seed).normal(size=(n, 3))
    return U / np.linalg.norm(U, axis=1, keepdims=True)


def test_graph_distances_on_the_sphere_approach_great_circles():
    """Chord-length edges of a dense sphere sample: shortest paths ≈ arc lengths."""
    U = _sphere()
    d, nearest = geodesic_pseudotime(EuclideanMetric(3), U, [0])
    truth = np.arccos(np.clip(U @ U[0], -1, 1))
    far = truth > 0.5
    rel = np.abs(d[far] - truth[far]) / truth[far]
    assert np.median(rel) < 0.08
    assert np.all(d[far] >= 0.98 * truth[far])  # a path on the sphere is never shorter
    assert d[0] == 0 and np.all(nearest == 0)


def test_refined_distances_are_straight_lines_in_the_plane():
    X = _square()
    m = EuclideanMetric(2)
    idx = np.arange(0, 400, 40)
    G = metric_graph(X, m, n_neighbors=10)
    r = geodesic_distances(m, X, idx, graph=G, refine="energy", n_points=12, batch_size=7)
    truth = np.linalg.norm(X[idx, None] - X[None, idx], axis=-1)
    np.testing.assert_allclose(r.distances, truth, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(r.distances, r.distances.T)
    off = ~np.eye(idx.size, dtype=bool)
    assert np.all(r.graph_distances[off] >= truth[off] - 1e-12)  # graph paths zigzag
    assert r.refined[off].all() and not r.refined.diagonal().any()
    # without refinement: graph distances, with targets
    g = geodesic_distances(m, X, idx[:3], idx, graph=G)
    np.testing.assert_allclose(g.distances, r.graph_distances[:3])
    with pytest.raises(ValueError):
        geodesic_distances(m, X, idx, graph=G, refine="spline")


def test_landmarks_shorten_pseudotime_towards_the_truth():
    X = _square(600, seed=1)
    m = EuclideanMetric(2)
    root = int(np.argmin(X.sum(1)))
    truth = np.linalg.norm(X - X[root], axis=1)
    G = metric_graph(X, m, n_neighbors=8)
    d0, _ = geodesic_pseudotime(m, X, [root], graph=G)
    d1, _ = geodesic_pseudotime(m, X, [root], graph=G, n_landmarks=20, n_points=8)
    assert np.all(d1 <= d0 + 1e-12) and np.all(d1 >= truth - 1e-9)
    far = truth > 0.3
    err0 = np.mean((d0[far] - truth[far]) / truth[far])
    err1 = np.mean((d1[far] - truth[far]) / truth[far])
    assert err1 < 0.7 * err0


def test_several_roots_take_the_nearest():
    x = np.linspace(0, 1, 101)[:, None]
    d, nearest = geodesic_pseudotime(EuclideanMetric(1), x, [0, 100], n_neighbors=2)
    np.testing.assert_allclose(d, np.minimum(x[:, 0], 1 - x[:, 0]), atol=1e-12)
    assert np.all(nearest[:50] == 0) and np.all(nearest[51:] == 1)


class _GapMetric(Metric):
    """Conformal metric ``(1 + 24 exp(−(y − ¼)² / 0.02)) I``: dearer between two lines."""

    dim = 2

    def inner(self, x, v):
        return (1 + 24 * torch.exp(-((x[:, 1] - 0.25) ** 2) / 0.02)) * (v * v).sum(-1)


def _hairpin():
    """Lines y = 0 and y = ½ for x in [0, 10] (spacing 0.1) joined by a half circle at x = 10."""
    x = np.linspace(0, 10, 101)
    a = np.linspace(-np.pi / 2, np.pi / 2, 17)[1:-1]
    bend = np.c_[10 + 0.25 * np.cos(a), 0.25 + 0.25 * np.sin(a)]
    return np.r_[np.c_[x, 0 * x], bend, np.c_[x[::-1], 0 * x + 0.5]]


def test_stretched_shortcuts_are_removed():
    """k = 15 links the two lines of a hairpin; the metric stretches those edges about 2.5
    times as much as the edges along the lines. Removing them leaves the way round the bend
    (≈ 20.8 long, times the metric's factor 1.4 on the lines), the only one on the data."""
    X = _hairpin()
    tips = [0, len(X) - 1]
    m = _GapMetric()
    kept = metric_graph(X, m, n_neighbors=15)
    every = metric_graph(X, m, n_neighbors=15, max_stretch=None)
    assert every.nnz > kept.nnz
    d_kept = geodesic_distances(m, X, tips, graph=kept).distances[0, 1]
    d_every = geodesic_distances(m, X, tips, graph=every).distances[0, 1]
    assert d_every < 3 and d_kept > 20.8
    # no edge across the gap survives (both ends on the lines, one on each)
    c = kept.tocoo()
    lines = (X[c.row, 0] < 9.9) & (X[c.col, 0] < 9.9)
    assert not np.any(lines & (np.abs(X[c.row, 1] - X[c.col, 1]) > 0.25))
    # where the metric is uniform, nothing is removed
    flat = metric_graph(X, EuclideanMetric(2), n_neighbors=15)
    assert flat.nnz == metric_graph(X, EuclideanMetric(2), n_neighbors=15, max_stretch=None).nnz
    with pytest.raises(ValueError, match="max_stretch"):
        metric_graph(X, m, max_stretch=0.5)


def test_removing_stretched_edges_keeps_the_graph_connected():
    """The hairpin without its bend: the two lines are joined only by stretched edges, and
    the shortest of them is kept as the one bridge."""
    from scipy.sparse.csgraph import connected_components

    x = np.linspace(0, 10, 101)
    X = np.r_[np.c_[x, 0 * x], np.c_[x, 0 * x + 0.5]]
    m = _GapMetric()
    every = metric_graph(X, m, n_neighbors=15, max_stretch=None)
    kept = metric_graph(X, m, n_neighbors=15)
    assert connected_components(kept, directed=False)[0] == 1
    c, e = kept.tocoo(), every.tocoo()
    across = X[c.row, 1] != X[c.col, 1]
    e_across = X[e.row, 1] != X[e.col, 1]
    assert across.sum() == 2 and e_across.sum() > 2  # one bridge (both directions) of many
    assert c.data[across][0] == pytest.approx(e.data[e_across].min())


def test_refinement_uses_the_fisher_rao_energy_by_default(monkeypatch):
    """Refined distances and landmark geodesics minimise the divergence energy by default."""
    from scfim.geometry import distances

    seen = []
    original = distances.solve_geodesics

    def spy(*args, **kwargs):
        seen.append(kwargs.get("energy"))
        return original(*args, **kwargs)

    monkeypatch.setattr(distances, "solve_geodesics", spy)
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(120, 2))
    metric = EuclideanMetric(2)
    distances.geodesic_distances(metric, X, [0, 1, 2], refine="energy", n_points=8)
    distances.geodesic_pseudotime(metric, X, [0], n_landmarks=2, n_points=8)
    distances.geodesic_distances(metric, X, [0, 1], refine="energy", energy="metric", n_points=8)
    assert seen == ["fisher_rao", "fisher_rao", "metric"]
