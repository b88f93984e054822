"""Graphs on point clouds: kNN search, shortest paths, curve resampling (NumPy/SciPy/torch).

- :func:`knn_graph`: k-nearest-neighbour distances with three back ends (exact blocked
  brute force, an inverted-file index over k-means clusters, pynndescent).
- :func:`symmetrize`, :func:`connect_components`, :func:`metric_edge_lengths`: the
  undirected graph, joined into one component, with edges re-weighted by the Riemannian
  length of the straight segment under a :class:`~scfim.geometry.metric.Metric` (short
  edges are nearly geodesic, so graph paths approximate geodesics, Tenenbaum et al. 2000;
  :func:`segment_lengths`); :func:`edge_stretch` finds the edges a metric stretches far
  more than their neighbours (shortcuts).
- :func:`shortest_paths` / :func:`path_nodes` / :func:`graph_paths`: Dijkstra distances
  and predecessor trees, the vertex sequences of paths, and paths as resampled polylines.
- :func:`resample_polyline` (arc length) and :func:`interpolate_curves` (batched, on
  given parameter grids).
- :class:`KernelSupport`: the region a k-NN kernel on reference cells reaches, to tell
  which points a model trained on those cells extrapolates to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .._threads import torch_threads

__all__ = [
    "knn_graph",
    "symmetrize",
    "connect_components",
    "metric_edge_lengths",
    "segment_lengths",
    "edge_stretch",
    "shortest_paths",
    "path_nodes",
    "graph_paths",
    "resample_polyline",
    "interpolate_curves",
    "KernelSupport",
]


# --------------------------------------------------------------------------- kNN search
def knn_graph(
    X: np.ndarray,
    n_neighbors: int,
    *,
    method: str = "auto",
    clusters: np.ndarray | None = None,
    random_state: int | None = 0,
) -> sp.csr_matrix:
    """k-nearest-neighbour distance graph (self excluded) as a CSR matrix.

    Parameters
    ----------
    X
        ``(n, d)`` float array.
    n_neighbors
        Neighbours per cell (not counting the cell itself).
    method
        ``"exact"`` (brute force in float32 blocks, distances refined in float64),
        ``"ivf"`` (approximate: each cell's neighbours are searched among the cells of the
        k-means clusters nearest to its own, an inverted-file index), ``"pynndescent"``
        (approximate; its JIT compilation costs about 30 s per process) or ``"auto"``
        (exact up to 50 000 cells, ivf beyond).
    clusters
        ``(n,)`` k-means labels to reuse for ``"ivf"`` (e.g. the landmarks); computed when
        omitted.
    random_state
        Seed of the approximate searches.

    Returns
    -------
    ``(n, n)`` CSR matrix whose row i stores the distances to i's neighbours.

    Raises
    ------
    ValueError
        If some cell has an exact duplicate (distance 0 to another cell).
    """
    n = X.shape[0]
    k = int(n_neighbors)
    if method == "auto":
        method = "exact" if n <= 50_000 else "ivf"
    if method == "exact":
        idx, dist = _knn_exact(X, k)
    elif method == "ivf":
        if clusters is None:
            from .diffusion import assign_landmarks  # k-means labels of the landmark step

            n_lists = int(np.clip(2 * np.sqrt(n), 2, 4000))
            clusters = assign_landmarks(X, n_lists, random_state=random_state)
        idx, dist = _knn_ivf(X, k, np.asarray(clusters))
    elif method == "pynndescent":
        idx, dist = _knn_pynndescent(X, k, random_state)
    else:
        raise ValueError(
            f"unknown kNN method {method!r}; use 'auto', 'exact', 'ivf' or 'pynndescent'"
        )
    n_dup = int(np.sum(dist[:, 0] <= 0.0))
    if n_dup:
        raise ValueError(
            f"{n_dup} cells have an exact duplicate in the input representation; the "
            "diffusion kernel is undefined for zero distances. Remove duplicated cells "
            "first, e.g. `adata = adata[~pd.DataFrame(adata.obsm[use_rep]).duplicated().values]`."
        )
    indptr = np.arange(0, n * k + 1, k)
    return sp.csr_matrix(
        (dist.ravel().astype(np.float64, copy=False), idx.ravel(), indptr), shape=(n, n)
    )


#: Bound on the float64 numbers of one temporary in :func:`_pair_distances` (16 MiB).
_PAIR_BLOCK_ENTRIES = 2**21

#: Bound on the float32 squared distances of one block of the exact search (16 MiB).
_KNN_BLOCK_ENTRIES = 2**22


def _pair_distances(X: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Euclidean distances ``‖X[i] − X[idx[i, j]]‖`` in float64, ``(n, k)``.

    Evaluated as differences (exact for close points, unlike the expansion
    ``‖x‖² + ‖y‖² − 2 x·y``) in blocks of rows whose ``(rows, k, d)`` temporaries hold at
    most :data:`_PAIR_BLOCK_ENTRIES` numbers, so that memory stays bounded at any size.
    """
    n, k = idx.shape
    rows = max(1, _PAIR_BLOCK_ENTRIES // max(1, k * X.shape[1]))
    dist = np.empty((n, k), dtype=np.float64)
    for s in range(0, n, rows):
        diff = X[s : s + rows, None, :].astype(np.float64) - X[idx[s : s + rows]]
        np.multiply(diff, diff, out=diff)
        dist[s : s + rows] = np.sqrt(diff.sum(-1))
    return dist


def _knn_exact(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import torch

    # one block of squared distances at a time, at most _KNN_BLOCK_ENTRIES float32 numbers
    block = int(max(64, min(2048, _KNN_BLOCK_ENTRIES // max(1, X.shape[0]))))
    Xt = torch.as_tensor(np.ascontiguousarray(X, dtype=np.float32))
    sq = (Xt * Xt).sum(1)
    n = Xt.shape[0]
    idx = np.empty((n, k), dtype=np.int64)
    with torch.no_grad():
        for s in range(0, n, block):
            q = Xt[s : s + block]
            # ‖q‖² − 2 q·x + ‖x‖² in the Gram product's own buffer (the same operations as
            # the expression, without its two temporaries of the block's size)
            d2 = q @ Xt.T
            d2.mul_(-2.0).add_(sq[s : s + block, None]).add_(sq[None, :])
            rows = torch.arange(q.shape[0])
            d2[rows, rows + s] = float("inf")  # exclude self
            vals, nn = torch.topk(d2, k, dim=1, largest=False, sorted=True)
            idx[s : s + block] = nn.numpy()
    # recompute exactly in float64 for the chosen pairs (float32 expansion loses precision
    # for close points, and zero distances must be detected reliably)
    dist = _pair_distances(X, idx)
    return _by_distance(idx, dist)


def _by_distance(idx: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's neighbours in increasing distance (ties in index order), as a stable sort.

    The distances are sorted in place (equal distances are equal numbers, so that is the
    stable order's values); only the indices are gathered through the permutation.
    """
    idx = np.take_along_axis(idx, np.argsort(dist, axis=1, kind="stable"), 1)
    dist.sort(axis=1)
    return idx, dist


def _knn_ivf(
    X: np.ndarray, k: int, labels: np.ndarray, n_probe: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate kNN: search each cluster's cells among the nearest clusters.

    Clusters are probed in order of centroid distance until at least ``n_probe`` clusters
    and ``4k`` candidates are covered. The recall against the exact search is tested.
    """
    import torch

    n = X.shape[0]
    Xf = np.ascontiguousarray(X, dtype=np.float32)
    Xt = torch.as_tensor(Xf)
    sq = (Xt * Xt).sum(1)
    L = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=L)
    W = sp.csr_matrix((np.ones(n, dtype=np.float32), (labels, np.arange(n))), shape=(L, n))
    C = np.asarray(W @ Xf) / np.maximum(counts, 1)[:, None]
    n_look = min(L, max(4 * n_probe, 64))
    with torch.no_grad():
        Ct = torch.as_tensor(C, dtype=torch.float32)
        dC = torch.cdist(Ct, Ct)
        dC[:, torch.as_tensor(counts == 0)] = float("inf")
        probe = torch.topk(dC, n_look, dim=1, largest=False).indices.numpy()
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    idx = np.empty((n, k), dtype=np.int64)
    for c in range(L):
        q = order[starts[c] : starts[c + 1]]
        if q.size == 0:
            continue
        cum = np.cumsum(counts[probe[c]])
        m = max(n_probe, int(np.searchsorted(cum, 4 * k + 1)) + 1)
        if m > n_look or cum[m - 1] <= k:
            cand = np.arange(n)  # tiny data or tiny clusters: search everything
        else:
            cand = np.concatenate([order[starts[j] : starts[j + 1]] for j in probe[c, :m]])
        with torch.no_grad():
            qt, ct = torch.as_tensor(q), torch.as_tensor(cand)
            d2 = sq[qt, None] - 2.0 * (Xt[qt] @ Xt[ct].T) + sq[None, ct]
            d2[qt[:, None] == ct[None, :]] = float("inf")  # exclude self
            nn = torch.topk(d2, k, dim=1, largest=False).indices.numpy()
        idx[q] = cand[nn]
    dist = _pair_distances(X, idx)
    return _by_distance(idx, dist)


def _knn_pynndescent(X: np.ndarray, k: int, random_state) -> tuple[np.ndarray, np.ndarray]:
    from pynndescent import NNDescent

    index = NNDescent(
        np.asarray(X, dtype=np.float32),
        n_neighbors=k + 1,
        random_state=random_state,
        low_memory=True,
        n_jobs=-1,
    )
    idx, dist = index.neighbor_graph
    n = X.shape[0]
    # drop self (normally column 0; fall back to the last column when self is missing)
    is_self = idx == np.arange(n)[:, None]
    has_self = is_self.any(1)
    keep = ~is_self
    keep[~has_self, -1] = False
    idx = idx[keep].reshape(n, k)
    dist = dist[keep].reshape(n, k).astype(np.float64)
    return _by_distance(idx, dist)


# --------------------------------------------------------------------------- graph edges
def symmetrize(G: sp.spmatrix) -> sp.csr_matrix:
    """Undirected version of a kNN distance graph: ``max(G, Gᵀ)`` (an edge if either way)."""
    G = sp.csr_matrix(G)
    return G.maximum(G.T).tocsr()


def connect_components(G: sp.spmatrix, X: np.ndarray, weight=None) -> sp.csr_matrix:
    """Join the connected components of an undirected graph by their closest vertex pairs.

    Repeatedly links the component of vertex 0 to the nearest vertex outside it (Euclidean
    distance in ``X``) until the graph is connected, so that every pair has a path.

    Parameters
    ----------
    G
        ``(n, n)`` symmetric sparse graph with positive edge weights.
    X
        ``(n, d)`` vertex coordinates.
    weight
        Optional callable ``(A, B) → (m,)`` giving the weights of new edges between the
        rows of ``A`` and ``B`` (e.g. their metric lengths); Euclidean lengths otherwise.

    Returns
    -------
    The symmetric graph with the added edges.
    """
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    G = sp.csr_matrix(G)
    n_comp, comp = connected_components(G, directed=False)
    if n_comp == 1:
        return G
    main = comp == comp[0]
    rows, cols = [], []
    while not main.all():
        rest = np.flatnonzero(~main)
        d, j = cKDTree(X[rest]).query(X[main])
        a = int(np.argmin(d))
        u, v = int(np.flatnonzero(main)[a]), int(rest[j[a]])
        rows.append(u)
        cols.append(v)
        main |= comp == comp[v]
    rows, cols = np.asarray(rows), np.asarray(cols)
    if weight is None:
        w = np.linalg.norm(X[rows] - X[cols], axis=1)
    else:
        w = np.asarray(weight(X[rows], X[cols]), dtype=np.float64)
    w = np.maximum(w, 1e-12)
    extra = sp.csr_matrix((w, (rows, cols)), shape=G.shape)
    return (G + extra + extra.T).tocsr()


def segment_lengths(
    metric, A, B, *, n_quad: int = 1, batch_size: int = 65536, dtype=None
) -> np.ndarray:
    """Riemannian lengths of the straight segments ``A[i] → B[i]`` under ``metric``.

    ``Σ_q sqrt(Δ_qᵀ G(m_q) Δ_q)`` over ``n_quad`` equal pieces (midpoint rule).

    Parameters
    ----------
    metric
        A :class:`~scfim.geometry.metric.Metric`.
    A, B
        ``(m, d)`` end points.
    n_quad
        Pieces per segment.
    batch_size
        Segments per metric evaluation.
    dtype
        Torch dtype of the evaluation (default float64); the lengths are float64.

    Returns
    -------
    ``(m,)`` lengths, evaluated on the metric's device (``metric.device``, default the CPU).
    """
    import torch

    dt = torch.float64 if dtype is None else dtype
    dev = getattr(metric, "device", torch.device("cpu"))
    At = torch.as_tensor(np.asarray(A, dtype=np.float64), device=dev).to(dt)
    Bt = torch.as_tensor(np.asarray(B, dtype=np.float64), device=dev).to(dt)
    s = torch.linspace(0.0, 1.0, max(1, int(n_quad)) + 1, dtype=dt, device=dev)[:, None, None]
    out = []
    with torch.no_grad():  # gathered on the metric's device, copied to the host once
        for i in range(0, At.shape[0], batch_size):
            a, b = At[i : i + batch_size], Bt[i : i + batch_size]
            curves = ((1 - s) * a[None] + s * b[None]).transpose(0, 1)  # (m, n_quad + 1, d)
            out.append(metric.curve_length(curves).double())
    if not out:
        return np.empty(0)
    return torch.cat(out).cpu().numpy()


def metric_edge_lengths(
    G: sp.spmatrix,
    X: np.ndarray,
    metric,
    *,
    n_quad: int = 1,
    batch_size: int = 65536,
    dtype=None,
) -> sp.csr_matrix:
    """Re-weight the edges of ``G`` by their Riemannian lengths under ``metric``.

    The length of the straight segment ``x_i → x_j`` is
    ``Σ_q sqrt(Δ_qᵀ G(m_q) Δ_q)`` over ``n_quad`` equal pieces (midpoint rule,
    :func:`segment_lengths`); with one piece it is ``sqrt(Δᵀ G((x_i + x_j)/2) Δ)``. Short
    edges are nearly geodesic, so shortest paths of the re-weighted graph approximate
    geodesic distances.

    Parameters
    ----------
    G
        ``(n, n)`` sparse graph (only its pattern is used; symmetric for undirected use).
    X
        ``(n, d)`` vertex coordinates.
    metric
        A :class:`~scfim.geometry.metric.Metric`.
    n_quad
        Pieces per segment.
    batch_size
        Segments per metric evaluation.
    dtype
        Torch dtype of the evaluation (:func:`segment_lengths`).

    Returns
    -------
    CSR matrix of the same pattern with the metric lengths (floored at 1e-12).
    """
    coo = sp.csr_matrix(G).tocoo()
    keep = coo.row <= coo.col  # evaluate each undirected edge once
    rr, cc = coo.row[keep], coo.col[keep]
    X = np.asarray(X, dtype=np.float64)
    w = segment_lengths(metric, X[rr], X[cc], n_quad=n_quad, batch_size=batch_size, dtype=dtype)
    H = sp.csr_matrix((np.maximum(w, 1e-12), (rr, cc)), shape=G.shape)
    return H.maximum(H.T).tocsr()


def edge_stretch(G: sp.spmatrix, H: sp.spmatrix) -> sp.csr_matrix:
    """How much more an edge is stretched by a metric than the other edges at its ends.

    With ``ρ_ij = H_ij / G_ij`` (e.g. Fisher–Rao over Euclidean length) and ``m_i`` the
    median of ``ρ`` over the edges of vertex ``i``, the stretch is
    ``ρ_ij / sqrt(m_i m_j)``: about 1 for an edge along the data, large for an edge whose
    straight segment crosses a gap that the metric sees (a shortcut between two sheets of
    a folded manifold, which a kNN graph of noisy data picks up).

    Parameters
    ----------
    G, H
        Symmetric sparse graphs of the same pattern: reference and metric lengths.

    Returns
    -------
    CSR matrix of the same pattern with the stretches.
    """
    G, H = sp.csr_matrix(G), sp.csr_matrix(H)
    G.sort_indices()
    H.sort_indices()
    if G.nnz != H.nnz or not np.array_equal(G.indices, H.indices):
        raise ValueError("G and H must have the same sparsity pattern")
    rho = H.data / np.maximum(G.data, 1e-300)
    rows = np.repeat(np.arange(G.shape[0]), np.diff(G.indptr))
    order = np.lexsort((rho, rows))  # by row, then ratio: each row's ratios sorted
    count = np.diff(G.indptr)
    lo = G.indptr[:-1] + np.maximum(count - 1, 0) // 2
    hi = G.indptr[:-1] + count // 2
    sr = rho[order]
    med = np.ones(G.shape[0])
    has = count > 0
    med[has] = 0.5 * (sr[np.minimum(lo[has], sr.size - 1)] + sr[np.minimum(hi[has], sr.size - 1)])
    out = rho / np.sqrt(med[rows] * med[G.indices])
    return sp.csr_matrix((out, G.indices.copy(), G.indptr.copy()), shape=G.shape)


# --------------------------------------------------------------------------- shortest paths
def shortest_paths(
    G: sp.spmatrix, sources, *, return_predecessors: bool = False, limit: float = np.inf
):
    """Dijkstra distances (and predecessor trees) from ``sources`` on an undirected graph.

    Parameters
    ----------
    G
        ``(n, n)`` sparse graph with non-negative weights.
    sources
        Vertex index or indices.
    return_predecessors
        Also return the ``(len(sources), n)`` predecessor matrix (−9999 where none).
    limit
        Stop at this distance (scipy's ``limit``).

    Returns
    -------
    ``(len(sources), n)`` distances (inf where unreachable), and the predecessors if asked.
    """
    import scipy.sparse.csgraph as csgraph

    idx = np.atleast_1d(np.asarray(sources, dtype=np.int64))
    return csgraph.dijkstra(
        G, directed=False, indices=idx, return_predecessors=return_predecessors, limit=limit
    )


def path_nodes(pred: np.ndarray, source: int, target: int) -> np.ndarray | None:
    """Vertices of the path ``source → target`` in a predecessor row (None if unreachable)."""
    nodes = [int(target)]
    while nodes[-1] != source and pred[nodes[-1]] >= 0:
        nodes.append(int(pred[nodes[-1]]))
    if nodes[-1] != source:
        return None
    return np.asarray(nodes[::-1], dtype=np.int64)


def graph_paths(
    G: sp.spmatrix, X: np.ndarray, s, e, n_points: int
) -> tuple[np.ndarray, np.ndarray]:
    """Shortest paths from ``s[i]`` to ``e[i]`` as polylines resampled to ``n_points``.

    Parameters
    ----------
    G
        ``(n, n)`` undirected weighted graph on the rows of ``X``.
    X
        ``(n, d)`` vertex coordinates.
    s, e
        Equally long arrays of start and end vertices.
    n_points
        Points per returned polyline (by arc length, :func:`resample_polyline`).

    Returns
    -------
    paths, distances
        ``(B, n_points, d)`` polylines (the straight line where no path exists) and the
        ``(B,)`` graph distances (inf where unreachable).
    """
    s = np.asarray(s, dtype=np.int64)
    e = np.asarray(e, dtype=np.int64)
    us, inv = np.unique(s, return_inverse=True)
    dist, pred = shortest_paths(G, us, return_predecessors=True)
    paths = np.empty((len(s), int(n_points), X.shape[1]))
    for i, (a, b) in enumerate(zip(s, e, strict=True)):
        nodes = path_nodes(pred[inv[i]], a, b)
        if nodes is None:  # disconnected graph: straight line
            nodes = np.array([a, b])
        paths[i] = resample_polyline(X[nodes], n_points)
    return paths, dist[inv, e]


# --------------------------------------------------------------------------- resampling
def resample_polyline(P: np.ndarray, n: int) -> np.ndarray:
    """``n`` points equally spaced by Euclidean arc length along the polyline ``P (m, d)``.

    The end points are kept; a polyline of zero length gives ``n`` copies of its start.
    """
    P = np.asarray(P, dtype=np.float64)
    seg = np.linalg.norm(np.diff(P, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    if cum[-1] <= 0:
        return np.repeat(P[:1], n, 0)
    ts = np.linspace(0.0, cum[-1], n)
    return np.column_stack([np.interp(ts, cum, P[:, j]) for j in range(P.shape[1])])


def interpolate_curves(c, t_old, t_new):
    """Piecewise-linear resampling of batched curves (torch).

    Parameters
    ----------
    c
        ``(B, m, d)`` curves sampled at the increasing parameters ``t_old (B, m)``.
    t_old, t_new
        ``(B, m)`` and ``(B, n)`` parameter grids.

    Returns
    -------
    ``(B, n, d)`` curves at ``t_new`` (clamped to the ends).
    """
    import torch

    m = c.shape[1]
    idx = torch.searchsorted(t_old.contiguous(), t_new.contiguous(), right=True) - 1
    idx = idx.clamp(0, m - 2)
    t0 = torch.gather(t_old, 1, idx)
    t1 = torch.gather(t_old, 1, idx + 1)
    w = ((t_new - t0) / (t1 - t0).clamp_min(1e-300)).clamp(0, 1)[..., None]
    gi = idx[..., None].expand(-1, -1, c.shape[2])
    return (1 - w) * torch.gather(c, 1, gi) + w * torch.gather(c, 1, gi + 1)


def nearest_cells(X: np.ndarray, cells: np.ndarray, k: int) -> np.ndarray:
    """``(B, k)`` exact nearest cells of ``cells`` (itself first, then by distance).

    A query of chosen rows against all cells whose answer depends only on the cell and
    the data, never on the other cells of the query: the k nearest cells by float64
    distance, ties broken by index. Candidates come from a float32 Gram expansion of the
    centred data (one torch thread), with a margin of 8; a row is accepted only when its
    k-th exact distance lies below the margin candidate's float32 value minus a bound on
    the float32 rounding (so no cell outside the candidates can be nearer), and is
    otherwise searched exactly against all cells.

    Parameters
    ----------
    X
        ``(n, d)`` float64 array.
    cells
        ``(B,)`` row indices to query.
    k
        Cells returned per query, the cell itself included (``≤ n``).
    """
    import torch

    cells = np.ascontiguousarray(cells, dtype=np.int64)
    n, D = X.shape
    Xc = X - X.mean(0)
    sq = np.einsum("ij,ij->i", Xc, Xc)
    m = min(n, k + 8)  # margin against rounding at the cut
    with torch_threads(1), torch.no_grad():
        X32 = torch.from_numpy(Xc.astype(np.float32))
        sq32 = torch.from_numpy(sq.astype(np.float32))
        c = torch.from_numpy(cells)
        d2 = torch.addmm(sq32[None, :], X32[c], X32.T, alpha=-2.0).add_(sq32[c][:, None])
        d2[torch.arange(cells.size), c] = -float("inf")  # the cell first
        vals, cand = torch.topk(d2, m, dim=1, largest=False, sorted=True)
        vals, cand = vals.numpy().astype(np.float64), cand.numpy()

    def ranked(cand, q):
        e = np.einsum("bmd,bmd->bm", Xc[cand] - Xc[q][:, None, :], Xc[cand] - Xc[q][:, None, :])
        e[cand == q[:, None]] = -1.0
        order = np.lexsort((cand, e), axis=-1)
        return np.take_along_axis(cand, order, 1), np.take_along_axis(e, order, 1)

    out, e = ranked(cand, cells)
    if m < n:
        bound = (D + 8) * 2.0**-22 * (sq[cells] + sq.max())
        redo = np.flatnonzero(e[:, k - 1] >= vals[:, m - 1] - bound)
        for i in redo:  # exact search against all cells
            out[i] = ranked(np.arange(n)[None], cells[i : i + 1])[0][0, :m]
    return out[:, :k]


# --------------------------------------------------------------------------- kernel support
@dataclass(frozen=True)
class KernelSupport:
    """The region a k-NN diffusion kernel on reference cells reaches: a union of balls.

    The kernel row of a reference cell j is non-zero only on its k nearest reference cells,
    so the operator, and everything learned from its rows, is informed by data only within
    the ball around ``x_j`` whose radius is the distance to j's k-th nearest reference cell.
    A point outside every such ball is seen by no row of the operator: a model trained on
    the reference cells extrapolates there.

    Attributes
    ----------
    X
        ``(m, d)`` float64 reference cells.
    radii
        ``(m,)`` distance of each reference cell to its k-th nearest reference cell.
    """

    X: np.ndarray
    radii: np.ndarray

    @classmethod
    def of(cls, X: np.ndarray, n_neighbors: int) -> KernelSupport:
        """The support of the ``n_neighbors``-NN kernel on the cells ``X``.

        The radii come from :func:`knn_graph` (exact up to 50 000 cells, its inverted-file
        search beyond), so that a large reference costs a kNN search, not ``m²`` distances.
        """
        X = np.ascontiguousarray(X, dtype=np.float64)
        k = min(int(n_neighbors), X.shape[0] - 1)
        if k < 1:
            raise ValueError("a kernel support needs at least 2 reference cells")
        radii = np.asarray(knn_graph(X, k).max(1).toarray()).ravel()
        return cls(X, radii)

    def margin(self, X: np.ndarray, *, chunk: int = 4096) -> np.ndarray:
        """``min_j (‖x − x_j‖ − r_j)`` for each row x of ``X``: > 0 outside the support.

        In units of distance (how far outside the nearest ball a point lies). The ball that
        attains the minimum is found by brute force over the reference cells in float32
        blocks (``O(n m d)``); the margin to it is then computed in float64.
        """
        import torch

        out = np.empty(len(X))
        radii = torch.from_numpy(self.radii.astype(np.float32))
        for s, Q64, d2 in self._squared_distances(X, chunk):
            j = d2.clamp_min_(0.0).sqrt_().sub_(radii[None, :]).argmin(1).numpy()
            diff = Q64 - (self.X[j] - self.X.mean(0))
            out[s : s + len(Q64)] = np.sqrt(np.einsum("ij,ij->i", diff, diff)) - self.radii[j]
        return out

    def outside(self, X: np.ndarray, *, chunk: int = 2048) -> np.ndarray:
        """``(n,)`` bool: the rows of ``X`` that lie outside every reference cell's ball.

        ``min_j (‖x − x_j‖² − r_j²) > 0`` on float32 squared distances (about 1 s for
        100 000 points against 3000 reference cells in 100-D on two cores), so exact up to
        float32 rounding for points on a ball's surface.
        """
        import torch

        out = np.empty(len(X), dtype=bool)
        r2 = torch.from_numpy(self.radii.astype(np.float32)) ** 2
        for s, Q64, d2 in self._squared_distances(X, chunk):
            out[s : s + len(Q64)] = (d2.sub_(r2[None, :]).min(1).values > 0).numpy()
        return out

    def _squared_distances(self, X: np.ndarray, chunk: int):
        """Blocks ``(start, rows of X centred, float32 ‖x − x_j‖² to every reference cell)``."""
        import torch

        X = self._check(X)
        centre = self.X.mean(0)
        with torch.no_grad():
            R = torch.from_numpy((self.X - centre).astype(np.float32))
            sq_r = (R * R).sum(1)[None, :]
            for s in range(0, X.shape[0], chunk):
                Q64 = np.asarray(X[s : s + chunk], np.float64) - centre
                Q = torch.from_numpy(Q64.astype(np.float32))
                yield s, Q64, torch.addmm(sq_r, Q, R.T, alpha=-2.0).add_((Q * Q).sum(1)[:, None])

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.X.shape[1]:
            raise ValueError(f"expected points with {self.X.shape[1]} columns, got {X.shape}")
        return X
