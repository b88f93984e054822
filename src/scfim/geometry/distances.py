"""Geodesic distances among many points and from roots to all points (pure math; no AnnData).

All-pairs distances among ``m`` cells need not be ``m(m − 1)/2`` independent boundary-value
problems. A kNN graph of the data whose edges carry their Riemannian lengths under the
metric (:func:`metric_graph`; short edges are nearly straight, so the length of the straight
segment is nearly the geodesic distance) turns every shortest path into an approximate
geodesic (the Isomap construction of Tenenbaum, de Silva & Langford 2000, with the
learned Fisher metric instead of the Euclidean one). One Dijkstra run per source then
gives its distances to *all* cells. Where more accuracy is wanted, the graph paths are
the hot starts of the energy solver (:func:`~scfim.geometry.geodesic.energy_geodesic`),
which shortens them into geodesics of the continuous metric, in memory-bounded batches.

:func:`geodesic_distances` returns the distance matrix between sources and targets,
:func:`geodesic_pseudotime` the distance of every cell from its nearest root, optionally
corrected through landmark cells whose distances from the roots are refined by the
energy solver (``d(c) = min(d_G(r, c), min_ℓ d_E(r, ℓ) + d_G(ℓ, c))``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .geodesic import solve_geodesics
from .graph import (
    connect_components,
    edge_stretch,
    knn_graph,
    metric_edge_lengths,
    shortest_paths,
    symmetrize,
)
from .metric import Metric

__all__ = ["metric_graph", "geodesic_distances", "geodesic_pseudotime", "DistanceResult"]


def metric_graph(
    X: np.ndarray,
    metric: Metric,
    *,
    n_neighbors: int = 15,
    n_quad: int = 2,
    max_stretch: float | None = 2.0,
    random_state: int | None = 0,
) -> sp.csr_matrix:
    """Symmetric, connected kNN graph of ``X`` with edges weighted by their metric lengths.

    Edges that the metric stretches more than ``max_stretch`` times as much as the other
    edges at their two ends (:func:`~scfim.geometry.graph.edge_stretch`, Fisher–Rao over
    Euclidean length) are removed: their straight segments leave the data (a kNN graph of
    a noisy folded sheet links the folds), so their metric length is no longer that of a
    geodesic, and one such shortcut puts two far points next to each other. Measured on a
    noisy swiss roll (noise 0.05 of its scale, k = 15): 0.04 % of the edges removed, and
    Spearman's ρ of the distances with the truth goes from 0.91 to 0.997; on clean data and
    on noisy spheres at most 0.15 % are removed and ρ changes by at most 1e-4.

    Parameters
    ----------
    X
        ``(n, d)`` points.
    metric
        A :class:`~scfim.geometry.metric.Metric` on ``R^d``.
    n_neighbors
        Neighbours per point (the graph is the union of both directions).
    n_quad
        Pieces of the midpoint rule per edge (:func:`~scfim.geometry.graph.metric_edge_lengths`).
    max_stretch
        Largest stretch kept; None keeps every edge. Where removing edges would split the
        graph, the fewest and shortest removed edges that join it again are kept.
    random_state
        Seed of the approximate kNN search (large data).

    Returns
    -------
    ``(n, n)`` CSR matrix of edge lengths.
    """
    X = np.asarray(X, dtype=np.float64)
    k = min(int(n_neighbors), X.shape[0] - 1)
    if k < 1:
        raise ValueError("need at least 2 points")
    if max_stretch is not None and not max_stretch >= 1:
        raise ValueError(f"max_stretch must be ≥ 1 or None, got {max_stretch}")
    G = connect_components(symmetrize(knn_graph(X, k, random_state=random_state)), X)
    # in the metric's edge dtype: float32 makes a neural Fisher metric's ~6× faster
    H = metric_edge_lengths(G, X, metric, n_quad=n_quad, dtype=metric.edge_dtype)
    if max_stretch is None:
        return H
    H.sort_indices()
    stretch = edge_stretch(G, H).data  # in the order of H's sorted entries
    return _without_stretched(H, stretch > max_stretch)


def _without_stretched(H: sp.csr_matrix, cut: np.ndarray) -> sp.csr_matrix:
    """``H`` without the edges ``cut`` (a mask of ``H.data``), bar those needed to connect it.

    The cut edges kept are those of a minimum spanning tree in which every cut edge costs
    more than all kept edges together: Kruskal then joins the pieces with as few and as
    short cut edges as possible, without any search in the coordinates.
    """
    from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

    K = H.copy()
    K.data[cut] = 0.0
    K.eliminate_zeros()
    if not cut.any() or connected_components(K, directed=False)[0] == 1:
        return K
    W = H.copy()
    W.data[cut] += H.data.sum()
    T = minimum_spanning_tree(W).tocoo()
    bridge = T.data > H.data.sum()
    r, c = T.row[bridge], T.col[bridge]
    w = np.asarray(H[r, c]).ravel()
    B = sp.csr_matrix((w, (r, c)), shape=H.shape)
    return K.maximum(B).maximum(B.T).tocsr()


@dataclass
class DistanceResult:
    """Output of :func:`geodesic_distances`.

    Attributes
    ----------
    distances
        ``(len(sources), len(targets))`` geodesic distances.
    graph_distances
        The same from the metric graph alone.
    endpoint_error
        Distances between the refined curves' ends and the targets (0 except for the
        ODE solver).
    refined
        True where a solver refined the pair.
    """

    distances: np.ndarray
    graph_distances: np.ndarray
    endpoint_error: np.ndarray
    refined: np.ndarray


_REFINE = (None, "energy", "ode")


def geodesic_distances(
    metric: Metric,
    X: np.ndarray,
    sources,
    targets=None,
    *,
    graph: sp.spmatrix | None = None,
    refine: str | None = None,
    energy: str = "fisher_rao",
    n_neighbors: int = 15,
    n_quad: int = 2,
    n_points: int = 24,
    max_iter: int = 300,
    n_steps: int = 300,
    batch_size: int = 256,
    random_state: int | None = 0,
    progress: bool = False,
) -> DistanceResult:
    """Geodesic distances from ``X[sources]`` to ``X[targets]`` under ``metric``.

    Distances are shortest paths of the metric graph (:func:`metric_graph`; Dijkstra from
    the sources in chunks, so at most about ``batch_size × 2¹⁴`` distances are held at
    once). With ``refine`` every pair is then solved by a curve solver started from its
    graph path, ``batch_size`` pairs at a time, so memory stays bounded whatever the
    number of pairs: ``"energy"``
    (:func:`~scfim.geometry.geodesic.energy_geodesic`) or ``"ode"``
    (:func:`~scfim.geometry.geodesic_ode.ode_geodesic`, whose curve ends near, not at,
    the target). A refined energy distance is the shorter of the solver's curve and the
    graph path (both are curves between the two points; the solver can end in a longer
    local minimum when the graph path, resampled to ``n_points``, cuts corners). Symmetric
    pairs (``targets`` None) are solved once.

    Parameters
    ----------
    metric
        A :class:`~scfim.geometry.metric.Metric` on ``R^d``.
    X
        ``(n, d)`` points (the graph's vertices).
    sources, targets
        Vertex indices; ``targets`` None means ``sources`` (a symmetric matrix).
    graph
        A precomputed :func:`metric_graph` (built otherwise).
    refine
        None (graph distances), ``"energy"`` or ``"ode"``.
    energy
        Energy of the ``"energy"`` solver (:func:`~scfim.geometry.geodesic.solve_geodesics`):
        ``"fisher_rao"`` (default, :meth:`~scfim.geometry.metric.Metric.divergence_energy`;
        for a neural Fisher metric the Jacobian-free KL energy, which the optimiser cannot
        fool) or ``"metric"`` (the midpoint rule, which a smooth network's metric lets
        the optimiser exploit: measured on the 10 000-cell toy tree, refined distances
        9–12× shorter than the graph's).
    n_neighbors, n_quad
        See :func:`metric_graph`.
    n_points, max_iter
        Points per curve and L-BFGS iterations (``"energy"``; ``n_points`` is the RK4 grid
        of ``"ode"``).
    n_steps, random_state
        Adam steps and seed of the ODE solver (``"ode"``).
    batch_size
        Pairs per solver batch.
    progress
        Show a progress bar over the batches.

    Returns
    -------
    :class:`DistanceResult`.
    """
    from .._progress import progress_bar

    if refine not in _REFINE:
        raise ValueError(f"refine must be one of {_REFINE}, got {refine!r}")
    X = np.asarray(X, dtype=np.float64)
    src = np.atleast_1d(np.asarray(sources, dtype=np.int64))
    symmetric = targets is None
    tgt = src if symmetric else np.atleast_1d(np.asarray(targets, dtype=np.int64))
    if graph is None:
        graph = metric_graph(
            X, metric, n_neighbors=n_neighbors, n_quad=n_quad, random_state=random_state
        )
    chunk = max(1, int(batch_size) * 2**14 // max(1, X.shape[0]))
    DG = np.empty((src.size, tgt.size))
    for b in range(0, src.size, chunk):
        DG[b : b + chunk] = shortest_paths(graph, src[b : b + chunk])[:, tgt]
    if symmetric:  # both directions are path lengths; they differ by rounding only
        DG = np.minimum(DG, DG.T)
    D = DG.copy()
    miss = np.zeros_like(D)
    refined = np.zeros(D.shape, dtype=bool)
    if refine is not None:
        if symmetric:
            ii, jj = np.triu_indices(len(src), 1)
        else:
            ii, jj = np.nonzero(np.ones(D.shape, dtype=bool))
        keep = (src[ii] != tgt[jj]) & np.isfinite(DG[ii, jj])
        ii, jj = ii[keep], jj[keep]
        per = int(batch_size)
        for b in progress_bar(
            range(0, ii.size, per), desc="geodesics", unit="batch", progress=progress
        ):
            bi, bj = ii[b : b + per], jj[b : b + per]
            res = solve_geodesics(
                metric,
                X,
                src[bi],
                tgt[bj],
                method=refine,
                graph=graph,
                energy=energy,
                n_points=n_points,
                max_iter=max_iter,
                n_steps=n_steps,
                random_state=random_state,
            )
            # a distance is an infimum over curves: the energy solver's curve or the graph
            # path, whichever is shorter (the ODE's curve misses the target: kept as is)
            L = res.lengths if refine == "ode" else np.minimum(res.lengths, DG[bi, bj])
            D[bi, bj] = L
            miss[bi, bj] = res.endpoint_error
            refined[bi, bj] = True
        if symmetric:
            D[jj, ii], miss[jj, ii], refined[jj, ii] = D[ii, jj], miss[ii, jj], True
    if symmetric:
        np.fill_diagonal(D, 0.0)
    return DistanceResult(D, DG, miss, refined)


def geodesic_pseudotime(
    metric: Metric,
    X: np.ndarray,
    roots,
    *,
    graph: sp.spmatrix | None = None,
    n_landmarks: int = 0,
    energy: str = "fisher_rao",
    n_neighbors: int = 15,
    n_quad: int = 2,
    n_points: int = 24,
    max_iter: int = 300,
    random_state: int | None = 0,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Geodesic distance of every point from its nearest root.

    Multi-source Dijkstra on the metric graph gives ``d_G(c) = min_r d_G(r, c)``. With
    ``n_landmarks > 0``, that many landmark points (farthest-point samples of the graph,
    started at the roots) are connected to their nearest root by the energy solver
    (hot-started from the graph path), and every distance becomes
    ``min(d_G(c), min_ℓ d_E(ℓ) + d_G(ℓ, c))``: long distances then follow the continuous
    geodesic for most of the way instead of summing the graph's zigzags.

    Parameters
    ----------
    metric
        A :class:`~scfim.geometry.metric.Metric` on ``R^d``.
    X
        ``(n, d)`` points.
    roots
        Indices of the root points.
    graph
        A precomputed :func:`metric_graph` (built otherwise).
    n_landmarks
        Landmarks refined by the energy solver (0: graph distances only).
    energy
        Energy of the landmark geodesics (as in :func:`geodesic_distances`).
    n_neighbors, n_quad
        See :func:`metric_graph`.
    n_points, max_iter
        Points per curve and L-BFGS iterations of the landmark geodesics.
    random_state
        Seed of the approximate kNN search (the landmark sampling is deterministic).
    progress
        Show a progress bar over the landmarks.

    Returns
    -------
    distances, nearest_root
        ``(n,)`` distances and the index (into ``roots``) of each point's nearest root.
    """
    X = np.asarray(X, dtype=np.float64)
    roots = np.unique(np.atleast_1d(np.asarray(roots, dtype=np.int64)))
    if graph is None:
        graph = metric_graph(
            X, metric, n_neighbors=n_neighbors, n_quad=n_quad, random_state=random_state
        )
    DR = shortest_paths(graph, roots)  # (R, n)
    nearest = np.argmin(DR, axis=0)
    d = DR[nearest, np.arange(X.shape[0])]
    L = int(min(n_landmarks, X.shape[0] - roots.size))
    if L <= 0:
        return d, nearest
    # farthest-point landmarks (graph distance), away from the roots and each other
    lm = np.empty(L, dtype=np.int64)
    gap = d.copy()
    DL = np.empty((L, X.shape[0]))
    from .._progress import progress_bar

    for i in progress_bar(range(L), desc="landmarks", progress=progress):
        lm[i] = int(np.argmax(np.where(np.isfinite(gap), gap, -1.0)))
        DL[i] = shortest_paths(graph, lm[i])[0]
        gap = np.minimum(gap, DL[i])
    r = roots[nearest[lm]]
    res = solve_geodesics(
        metric, X, r, lm, graph=graph, energy=energy, n_points=n_points, max_iter=max_iter
    )
    dE = np.minimum(res.lengths, d[lm])  # a refinement never lengthens the path
    via = dE[:, None] + DL  # (L, n)
    best = np.argmin(via, axis=0)
    better = via[best, np.arange(X.shape[0])] < d
    d = np.where(better, via[best, np.arange(X.shape[0])], d)
    nearest = np.where(better, nearest[lm[best]], nearest)
    return d, nearest
