import numpy as np
import pytest
import scipy.sparse as sp
import torch

from scfim.geometry.graph import (
    KernelSupport,
    connect_components,
    edge_stretch,
    graph_paths,
    interpolate_curves,
    knn_graph,
    metric_edge_lengths,
    path_nodes,
    resample_polyline,
    segment_lengths,
    shortest_paths,
    symmetrize,
)
from scfim.geometry.metric import EuclideanMetric, SphereMetric


def test_resample_polyline_is_equally_spaced_by_arc_length():
    P = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 3.0]])  # length 4
    Q = resample_polyline(P, 5)
    np.testing.assert_allclose(Q, [[0, 0], [1, 0], [1, 1], [1, 2], [1, 3]], atol=1e-12)
    np.testing.assert_allclose(resample_polyline(np.zeros((3, 2)), 4), np.zeros((4, 2)))


def test_interpolate_curves_reproduces_a_line():
    c = torch.tensor([[[0.0, 0.0], [2.0, 4.0]]], dtype=torch.float64)
    t_old = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    t_new = torch.linspace(0, 1, 5, dtype=torch.float64)[None]
    out = interpolate_curves(c, t_old, t_new)
    np.testing.assert_allclose(out[0].numpy(), np.linspace([0, 0], [2, 4], 5), atol=1e-12)


def test_shortest_paths_on_a_line_graph():
    x = np.arange(6, dtype=float)[:, None]
    G = symmetrize(knn_graph(x, 1))
    D, pred = shortest_paths(G, [0, 5], return_predecessors=True)
    np.testing.assert_allclose(D[0], np.arange(6))
    np.testing.assert_allclose(D[1], 5 - np.arange(6))
    np.testing.assert_array_equal(path_nodes(pred[0], 0, 4), [0, 1, 2, 3, 4])
    paths, dist = graph_paths(G, x, [0], [5], 11)
    np.testing.assert_allclose(paths[0, :, 0], np.linspace(0, 5, 11))
    assert dist[0] == 5.0


def test_connect_components_joins_two_clusters_by_their_closest_pair():
    X = np.array([[0.0, 0], [0.1, 0], [0.2, 0], [5.0, 0], [5.1, 0], [5.2, 0]])
    G = symmetrize(knn_graph(X, 2))
    assert np.isinf(shortest_paths(G, 0)[0, 3])
    H = connect_components(G, X)
    assert (H != H.T).nnz == 0
    assert shortest_paths(H, 0)[0, 3] == np.float64(0.2 + 4.8)
    assert path_nodes(shortest_paths(H, 0, return_predecessors=True)[1][0], 0, 5) is not None


def test_metric_edge_lengths_euclidean_and_sphere():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    G = symmetrize(knn_graph(X, 5))
    H = metric_edge_lengths(G, X, EuclideanMetric(3))
    np.testing.assert_allclose(H.toarray(), G.toarray(), rtol=1e-12)
    # on the sphere chart a short meridian step of Δθ has length Δθ; an azimuth step sinθ Δψ
    Y = np.array([[1.0, 0.0], [1.1, 0.0], [1.0, 0.1]])
    G2 = sp.csr_matrix(np.array([[0, 1, 1], [1, 0, 0], [1, 0, 0]], dtype=float))
    H2 = metric_edge_lengths(G2, Y, SphereMetric(), n_quad=8).toarray()
    assert abs(H2[0, 1] - 0.1) < 1e-12
    assert abs(H2[0, 2] - np.sin(1.0) * 0.1) < 1e-12


def test_edge_stretch_finds_the_one_stretched_edge():
    """A path graph whose edges all have ratio 2 except one with ratio 10: stretch 1
    everywhere else, 10/2 = 5 on that edge (its ends' median ratio is 2)."""
    n = 8
    G = sp.diags([np.ones(n - 1)], [1], shape=(n, n)).tocsr()
    G = symmetrize(G + sp.diags([np.ones(n - 2)], [2], shape=(n, n)))  # two neighbours a side
    H = 2.0 * G
    H[3, 4] = H[4, 3] = 10.0
    S = edge_stretch(G, H)
    assert S[3, 4] == pytest.approx(5.0) and S[4, 3] == pytest.approx(5.0)
    others = S.copy()
    others[3, 4] = others[4, 3] = 1.0
    np.testing.assert_allclose(others.data, 1.0)
    np.testing.assert_array_equal(S.indptr, sp.csr_matrix(G).indptr)
    with pytest.raises(ValueError, match="pattern"):
        edge_stretch(G, H[:, :].multiply(H > 3))


def test_segment_lengths_match_metric_edge_lengths():
    rng = np.random.default_rng(0)
    X = np.c_[rng.uniform(0.5, 2.5, 50), rng.uniform(0, 3, 50)]
    G = symmetrize(knn_graph(X, 5)).tocoo()
    H = metric_edge_lengths(G, X, SphereMetric(), n_quad=3)
    w = segment_lengths(SphereMetric(), X[G.row], X[G.col], n_quad=3)
    np.testing.assert_allclose(np.asarray(H[G.row, G.col]).ravel(), w)


def test_pair_distances_in_bounded_blocks_equal_one_block(monkeypatch):
    """The float64 refinement of the kNN distances is the same in blocks of any size."""
    from scfim.geometry import graph

    rng = np.random.default_rng(0)
    X = rng.normal(size=(57, 6)).astype(np.float32)
    idx = rng.integers(0, 57, size=(57, 4))
    direct = np.linalg.norm(X[:, None, :].astype(np.float64) - X[idx].astype(np.float64), axis=-1)
    monkeypatch.setattr(graph, "_PAIR_BLOCK_ENTRIES", 5 * 4 * 6)  # blocks of 5 rows
    np.testing.assert_allclose(graph._pair_distances(X, idx), direct, rtol=1e-14)
    monkeypatch.setattr(graph, "_PAIR_BLOCK_ENTRIES", 1)  # one row at a time
    np.testing.assert_allclose(graph._pair_distances(X, idx), direct, rtol=1e-14)


# ---------------------------------------------------------------------- kernel support
def test_kernel_support_is_the_union_of_the_knn_balls():
    """Reference cells 0, 1, …, 10 on a line (and 30, 32): each ball's radius is the
    distance to the k-th nearest reference cell, and the margin is exact."""
    ref = np.r_[np.arange(11.0), 30.0, 32.0][:, None] * np.array([[0.6, 0.8]])  # a line in 2-D
    S = KernelSupport.of(ref, 1)
    np.testing.assert_allclose(S.radii, np.r_[np.ones(11), 2.0, 2.0])
    t = np.array([5.0, 10.5, 11.5, 12.0, 20.0, 27.5, 28.5, 31.0, 35.0])
    q = t[:, None] * np.array([[0.6, 0.8]])
    # min over the balls of (distance to the centre - radius)
    expected = np.array([-1.0, -0.5, 0.5, 1.0, 8.0, 0.5, -0.5, -1.0, 1.0])
    np.testing.assert_allclose(S.margin(q, chunk=4), expected, atol=1e-12)
    np.testing.assert_array_equal(S.outside(q), expected > 0)
    assert not S.outside(ref).any()  # every reference cell lies in its own ball
    # k = 2: radii to the second nearest (the ends of the first run reach 2, 30 and 32 reach 10+)
    S2 = KernelSupport.of(ref, 2)
    np.testing.assert_allclose(S2.radii[[0, 5, 10, 11, 12]], [2.0, 1.0, 2.0, 20.0, 22.0])
    with pytest.raises(ValueError, match="columns"):
        S.margin(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="2 reference cells"):
        KernelSupport.of(ref[:1], 5)
