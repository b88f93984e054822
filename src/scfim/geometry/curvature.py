"""Pointwise diffusion curvature (Bhaskar et al., NeurIPS 2022).

The diffusion curvature of a point x compares how lazy a t-step random walk started at x
is, against the same walk in flat space::

    C(x) = Σ_{y ∈ B(x)} Pᵗ(x, y) / |B(x)|,        curvature(x) = C(x) − C_flat(x)

Walks stay closer to their start on positively curved manifolds (geodesic balls hold less
volume than flat ones) and spread faster on negatively curved ones, so ``C − C_flat > 0``
means positive and ``< 0`` negative (scalar) curvature.

**The flat reference is built from the same cells.** C alone depends on the intrinsic
dimension, the sampling density, the kernel and the boundary of the data as much as on the
curvature, and its sample-to-sample noise (5–10 % for one cell of a 2000-point disc) is
larger than the curvature signal of a 2-sphere at any scale a walk can reach without
leaving it. A flat reference sampled independently (a synthetic flat ball of matched
density) adds its own noise and never matches the data's boundary or density profile.
Here each cell's walk runs on its *patch* — the cell and its ``patch_size − 1`` nearest
neighbours — twice:

* on the data: Gaussian kernel on the patch's Euclidean (chord) distances;
* on the *flattened* patch: the same cells mapped to the cell's tangent space (local PCA
  of its ``ball_neighbors`` nearest neighbours, ``dim`` components), each cell rescaled
  along its tangent direction to keep its distance from x (radial normal coordinates).

Both walks use the same cells, bandwidth, anisotropy (α = 1), number of steps and ball;
they differ only by the geometry, so the sampling irregularities, the density profile and
the patch's boundary are common to both and cancel in the difference. On flat data the
flattening is an isometry and the curvature is exactly 0. Keeping each cell's distance
from x (rather than projecting orthogonally, which shrinks a sphere cap's radius from θ to
sin θ) gives the flat patch the same geodesic extent as the data's, so the walk meets the
same boundary in both.

**Cost.** Everything is local: per cell, two dense ``patch_size × patch_size`` kernels and
``2t`` matrix–vector products, vectorised over batches of cells. The only global steps are
one kNN graph (``patch_size − 1`` neighbours) and the bandwidth. Chosen cells
(``cells=``) cost the kNN graph plus their own patches, and give exactly the values of a
full run.

Choices (measured on spheres, sphere caps, saddles and planes of dimension 2–6 under four
sampling schemes, see ``benchmarks/bench_curvature.py``):

* **Kernel**: ``exp(−d² / σ)`` with one fixed bandwidth σ, the squared median distance of
  the cells to their ``n_neighbors``-th neighbour; anisotropy α = 1 (removes the sampling
  density to first order).
* **Ball** ``B(x)``: x and its ``ball_neighbors`` nearest neighbours.
* **Steps** t = 8 and patches of 128 cells by default.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from .._progress import progress_bar
from .graph import knn_graph

_EXACT_PATCHES = 50_000  # largest data set whose patches are exact nearest neighbours

__all__ = [
    "CurvatureResult",
    "neighbor_graph",
    "nearest_cells",
    "patch_neighbors",
    "estimate_dimension",
    "patch_curvature",
    "diffusion_curvature",
]


@dataclass
class CurvatureResult:
    """Output of :func:`diffusion_curvature` for the cells ``idx``.

    Attributes
    ----------
    idx
        Indices of the cells the values belong to.
    raw
        ``C(x)`` of the data walk.
    flat
        ``C_flat(x)`` of the walk on the flattened patch.
    curvature
        ``raw − flat``.
    dim
        Intrinsic dimension of the flattening.
    sigma
        Bandwidth of the Gaussian kernel (scales squared distances).
    patch_size
        Cells per patch (the cell included).
    """

    idx: np.ndarray
    raw: np.ndarray
    flat: np.ndarray
    curvature: np.ndarray
    dim: int
    sigma: float
    patch_size: int


# --------------------------------------------------------------------------- neighbours
def neighbor_graph(
    X: np.ndarray, n_neighbors: int, *, random_state: int | None = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(n, n_neighbors + 1)`` indices and distances of each cell and its nearest neighbours.

    Column 0 is the cell itself (distance 0), the others are sorted by distance. Uses
    :func:`~scfim.geometry.graph.knn_graph` (exact up to 50 000 cells).
    """
    n = X.shape[0]
    k = int(n_neighbors)
    D = knn_graph(X, k, random_state=random_state)
    idx = np.column_stack([np.arange(n), D.indices.reshape(n, k)])
    return idx, np.column_stack([np.zeros(n), D.data.reshape(n, k)])


def nearest_cells(X: np.ndarray, cells: np.ndarray, k: int) -> np.ndarray:
    """``(B, k)`` exact nearest cells of ``cells`` (itself first, then by distance).

    A query of chosen rows against all cells (float64), so that a patch depends only on
    its cell and the data: chosen-cell runs give the values of a full run. Candidates are
    ranked by the Gram expansion, then re-sorted by directly computed distances.
    """
    cells = np.asarray(cells, dtype=np.int64)
    n = X.shape[0]
    m = min(n, k + 8)  # margin against rounding of the Gram expansion at the cut
    with torch.no_grad(), _one_thread():
        Xt = torch.from_numpy(X)
        sq = (Xt * Xt).sum(1)
        q = Xt[torch.from_numpy(cells)]
        d2 = sq[cells][:, None] - 2.0 * (q @ Xt.T) + sq[None, :]
        d2[torch.arange(cells.size), torch.from_numpy(cells)] = -1.0  # the cell first
        cand = torch.topk(d2, m, dim=1, largest=False, sorted=True)[1].numpy()
    exact = np.sqrt(((X[cand] - X[cells][:, None, :]) ** 2).sum(-1))
    exact[:, 0] = -1.0
    order = np.argsort(exact, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(cand, order, 1)


def patch_neighbors(
    neighbors: np.ndarray, distances: np.ndarray, cells: np.ndarray, patch_size: int
) -> np.ndarray:
    """Patches of ``patch_size`` cells around ``cells``, from a kNN graph, without search.

    A patch holds the cell, its k graph neighbours (in order of distance), then the
    neighbours of those neighbours ranked by the path length ``d(x, j) + d(j, c)`` (an upper
    bound of the distance), each cell once. Entries are ``-1`` where the two-step
    neighbourhood holds fewer than ``patch_size`` cells.

    Parameters
    ----------
    neighbors, distances
        Output of :func:`neighbor_graph` (all cells).
    cells
        Centre cells, ``(B,)``.
    patch_size
        Cells per patch, ``≥ k + 1``.

    Returns
    -------
    ``(B, patch_size)`` indices.
    """
    cells = np.asarray(cells, dtype=np.int64)
    B, k1 = cells.size, neighbors.shape[1]
    first = neighbors[cells]  # (B, k+1): the cell, then its neighbours
    if patch_size <= k1:
        return first[:, :patch_size].copy()
    second = neighbors[first[:, 1:], 1:].reshape(B, -1)  # (B, k²)
    bound = (distances[cells, 1:, None] + distances[first[:, 1:], 1:]).reshape(B, -1)
    # the first-hop cells come first (bound −1), so a second-hop copy of them is dropped
    ids = np.concatenate([first, second], axis=1)
    val = np.concatenate([np.full(first.shape, -1.0), bound], axis=1)
    row = np.repeat(np.arange(B), ids.shape[1])
    ids, val = ids.ravel(), val.ravel()
    order = np.lexsort((val, ids, row))
    ids, val, row = ids[order], val[order], row[order]
    keep = np.ones(ids.size, dtype=bool)
    keep[1:] = (ids[1:] != ids[:-1]) | (row[1:] != row[:-1])
    ids, val, row = ids[keep], val[keep], row[keep]
    order = np.lexsort((val, row))  # within each row: first hop in order, then by bound
    ids, row = ids[order], row[order]
    start = np.searchsorted(row, np.arange(B))
    rank = np.arange(ids.size) - start[row]
    out = np.full((B, patch_size), -1, dtype=np.int64)
    sel = rank < patch_size
    out[row[sel], rank[sel]] = ids[sel]
    # the first hop keeps its distance order (a stable sort on bound −1 keeps id order)
    out[:, :k1] = first
    return out


# --------------------------------------------------------------------------- dimension
def estimate_dimension(distances: np.ndarray, *, k: int = 10) -> int:
    """Intrinsic dimension by the maximum-likelihood estimator of Levina & Bickel (2004).

    Per cell ``m(x) = (k − 1) / Σ_{j<k} log(T_k(x) / T_j(x))`` with ``T_j`` the distance
    to the j-th neighbour; the median over cells, rounded, is returned. (A local-PCA count
    of components explaining 90 % of the variance underestimated d = 5 and 6 on
    2000-point spheres and saddles; this estimator recovers d = 2–6 there.)

    Parameters
    ----------
    distances
        ``(n, ≥ k + 1)`` sorted neighbour distances, column 0 the cell itself (0), as
        returned by :func:`patch_neighbors`.
    k
        Neighbours used per cell.
    """
    T = np.asarray(distances, dtype=np.float64)[:, 1 : k + 1]
    logs = np.log(T[:, -1:] / np.maximum(T[:, :-1], 1e-300)).sum(1)
    m = (k - 1) / np.maximum(logs, 1e-300)
    return int(max(1, round(float(np.median(m)))))


# --------------------------------------------------------------------------- per patch
@contextmanager
def _one_thread():
    """Run torch on one thread.

    The batched kernels are small, and two threads were up to 25× slower on a busy 2-core
    machine.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _walk_mass(sq, sigma: float, t: int, ball: int, pad=None):
    """Ball mass ``C`` of a t-step α = 1 Gaussian walk from patch member 0, per patch.

    ``sq`` is a ``(B, M, M)`` tensor of squared distances (overwritten); ``pad`` an
    optional ``(B, M)`` boolean tensor of padding entries (isolated from the walk).
    """
    K = sq.mul_(-1.0 / sigma).exp_()
    if pad is not None:
        K.masked_fill_(pad[:, :, None] | pad[:, None, :], 0.0)
        K.diagonal(dim1=1, dim2=2).masked_fill_(pad, 1.0)
    q = K.sum(2)
    K.div_(q[:, :, None]).div_(q[:, None, :])
    K.div_(K.sum(2, keepdim=True))  # row-stochastic P on each patch
    r = K[:, :1, :]  # one step from member 0
    for _ in range(int(t) - 1):
        r = torch.bmm(r, K)
    return r[:, 0, : ball + 1].mean(1)


def _off_surface(Y, T, V):
    """Scatter of the patch's cells off a quadratic surface fitted over the tangent space.

    The normal part ``N = Y − T Vᵀ`` of each cell is regressed (least squares over the
    patch) on ``[1, T, T_i T_j]``; the residual estimates the noise, the fit the curvature.
    Returns ``(residual, fit)``, or None when the patch is too small for the fit
    (``4p > M``, p regressors).
    """
    B, M, dim = T.shape
    if 4 * (1 + dim + dim * (dim + 1) // 2) > M:
        return None
    iu = torch.triu_indices(dim, dim)
    quad = (T[:, :, :, None] * T[:, :, None, :])[:, :, iu[0], iu[1]]
    Phi = torch.cat([torch.ones(B, M, 1, dtype=T.dtype), T, quad], dim=2)
    N = Y - torch.bmm(T, V.transpose(1, 2))
    G = torch.bmm(Phi.transpose(1, 2), Phi)
    G.diagonal(dim1=1, dim2=2).add_(1e-10 * G.diagonal(dim1=1, dim2=2).mean(1, keepdim=True))
    coef = torch.linalg.solve(G, torch.bmm(Phi.transpose(1, 2), N))
    fit = torch.bmm(Phi, coef)
    quad = torch.bmm(Phi[:, :, 1 + dim :], coef[:, 1 + dim :, :])
    return N - fit, fit, quad


def _squared_distances(Y):
    g = (Y * Y).sum(2)
    sq = torch.bmm(Y, Y.transpose(1, 2)).mul_(-2.0)
    sq.add_(g[:, :, None]).add_(g[:, None, :])
    return sq.clamp_(min=0.0)


def patch_curvature(
    X: np.ndarray,
    patches: np.ndarray,
    *,
    dim: int,
    sigma: float,
    t: int,
    ball_neighbors: int,
    noise_aware: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """``(C, C_flat)`` for a batch of patches.

    Parameters
    ----------
    X
        ``(n, D)`` points.
    patches
        ``(B, M)`` indices from :func:`patch_neighbors`: column 0 the cell, then its
        ``≥ ball_neighbors`` nearest neighbours in order of distance, then further cells;
        ``-1`` marks padding.
    dim
        Dimension of the tangent space the patch is flattened to.
    sigma
        Gaussian bandwidth (scales squared distances).
    t
        Number of steps.
    ball_neighbors
        The ball is the cell and its ``ball_neighbors`` nearest neighbours; the tangent
        space is fitted to the same cells.
    noise_aware
        Keep each cell's scatter off a quadratic surface fitted to the patch (its noise)
        in the flattened patch, so that noise thickens both walks alike.

    Returns
    -------
    C, C_flat
        ``(B,)`` ball masses of the data walk and of the walk on the flattened patch.
    """
    patches = np.asarray(patches)
    missing = patches < 0
    with torch.no_grad(), _one_thread():
        pad = torch.from_numpy(missing) if missing.any() else None
        Y = torch.from_numpy(X[np.where(missing, patches[:, :1], patches)])  # (B, M, D)
        Y -= Y[:, :1, :].clone()
        # tangent space: top `dim` principal directions of the cell's ball, from the
        # smaller of its two Gram forms (float64 eigh; LAPACK's batched SVD is slower)
        nb = Y[:, : ball_neighbors + 1, :]
        nb = nb - nb.mean(1, keepdim=True)
        if nb.shape[2] <= nb.shape[1]:
            V = torch.linalg.eigh(torch.bmm(nb.transpose(1, 2), nb))[1][:, :, -dim:]
        else:
            w, A = torch.linalg.eigh(torch.bmm(nb, nb.transpose(1, 2)))
            V = torch.bmm(nb.transpose(1, 2), A[:, :, -dim:])  # (B, D, dim), unnormalised
            V /= torch.linalg.vector_norm(V, dim=1, keepdim=True).clamp_(min=1e-300)
        T = torch.bmm(Y, V)  # (B, M, dim) tangent coordinates
        ny2 = (Y * Y).sum(2)
        fitted = _off_surface(Y, T, V) if noise_aware else None
        # radial normal coordinates: each cell keeps its distance from the centre, measured
        # on the fitted surface when the scatter E off it is kept (E then enters separately)
        if fitted is None:
            E, target = None, ny2
        else:
            E, fit, _ = fitted
            target = (T * T).sum(2) + ((fit - fit[:, :1, :]) ** 2).sum(2)
        nt2 = (T * T).sum(2)
        ok = nt2 > 1e-24 * ny2
        scale = torch.where(ok, (target / torch.where(ok, nt2, torch.ones_like(nt2))).sqrt(), 1.0)
        Z = T * scale[:, :, None]
        if E is not None:
            Z = torch.cat([Z, E], dim=2)
        C = _walk_mass(_squared_distances(Y), sigma, t, ball_neighbors, pad)
        C_flat = _walk_mass(_squared_distances(Z), sigma, t, ball_neighbors, pad)
    return C.numpy(), C_flat.numpy()


def _batch_size(patch_size: int, D: int) -> int:
    """Cells per batch: about 2¹⁹ entries (4 MiB) per ``(B, M, M)`` or ``(B, M, D)`` array.

    Small enough that the t steps of the walk reuse a kernel from cache.
    """
    return int(max(1, min(4096, 2**19 // max(patch_size * max(patch_size, D), 1))))


# --------------------------------------------------------------------------- main entry
def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be ≥ {minimum}, got {value}")
    return int(value)


def diffusion_curvature(
    X: np.ndarray,
    *,
    t: int = 8,
    n_neighbors: int = 15,
    ball_neighbors: int = 30,
    patch_size: int = 128,
    cells: np.ndarray | None = None,
    dim: int | None = None,
    sigma: float | None = None,
    smooth: int = 0,
    noise_aware: bool = True,
    progress: bool = False,
    random_state: int | None = 0,
) -> CurvatureResult:
    """Pointwise diffusion curvature of the cells ``cells`` (all cells by default).

    Parameters
    ----------
    X
        ``(n, D)`` input representation.
    t
        Number of diffusion steps (integer ≥ 1).
    n_neighbors
        k of the bandwidth ``σ = median_x d_k(x)²``.
    ball_neighbors
        The ball ``B(x)`` is x and its ``ball_neighbors`` nearest neighbours; the tangent
        space of the flat reference is fitted to the same cells.
    patch_size
        Cells in each walk's patch (the cell and its nearest neighbours). Larger patches
        reach further (larger scale, fewer boundary effects) at quadratic cost.
    cells
        Integer indices of the cells to evaluate; default all. The values equal those of a
        full run at the same cells.
    dim
        Intrinsic dimension of the flat reference; estimated from the neighbour distances
        (:func:`estimate_dimension`) when None.
    sigma
        Gaussian bandwidth; default from the data (see ``n_neighbors``).
    smooth
        Average C and C_flat over each cell and its ``smooth`` nearest neighbours (0: no
        averaging).
    noise_aware
        Keep the cells' scatter off a quadratic surface fitted to each patch (their noise)
        in the flat reference (see :func:`patch_curvature`); without it, noise of a tenth of
        the kernel width already reads as negative curvature.
    progress
        Show a progress bar over batches of cells.
    random_state
        Seed of approximate kNN searches (more than 50 000 cells).

    Returns
    -------
    :class:`CurvatureResult`

    Raises
    ------
    TypeError, ValueError
        On non-integer or out-of-range arguments, too few cells, or cell indices out of
        range.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (cells × features), got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinite values")
    n = X.shape[0]
    t = _check_int("t", t, 1)
    n_neighbors = _check_int("n_neighbors", n_neighbors, 1)
    ball_neighbors = _check_int("ball_neighbors", ball_neighbors, 1)
    patch_size = _check_int("patch_size", patch_size, 2)
    smooth = _check_int("smooth", smooth, 0)
    need = max(n_neighbors, ball_neighbors, smooth) + 1
    if patch_size < need:
        raise ValueError(
            f"patch_size must exceed max(n_neighbors, ball_neighbors, smooth) = {need - 1}, "
            f"got {patch_size}"
        )
    if n < need + 1:
        raise ValueError(
            f"need at least max(n_neighbors, ball_neighbors, smooth) + 2 = {need + 1} cells, "
            f"got {n}"
        )
    if dim is not None:
        dim = _check_int("dim", dim, 1)
        if dim > X.shape[1]:
            raise ValueError(f"dim={dim} exceeds the {X.shape[1]} features")
    if sigma is not None and (not np.isfinite(sigma) or sigma <= 0):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    if cells is None:
        idx = np.arange(n)
    else:
        idx = np.asarray(cells)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise TypeError("cells must be a non-empty 1-D array of integer indices")
        if idx.min() < -n or idx.max() >= n:
            raise ValueError(f"cell indices must lie in [-{n}, {n}), got {idx.min()}..{idx.max()}")
        idx = np.where(idx < 0, idx + n, idx).astype(np.int64)

    # patches: the exact patch_size − 1 nearest neighbours of the evaluated cells up to
    # 50 000 cells; beyond, the two-step neighbourhood of a kNN graph ranked by path length
    small = n <= _EXACT_PATCHES
    k_graph = max(n_neighbors, smooth, 10) if small else max(n_neighbors, ball_neighbors, smooth)
    nbrs, dist = neighbor_graph(X, min(n - 1, k_graph), random_state=random_state)
    if sigma is None:
        sigma = float(np.median(dist[:, n_neighbors]) ** 2)
    d = dim if dim is not None else estimate_dimension(dist, k=min(10, n - 1))
    d = min(d, X.shape[1])

    # cells whose values are needed: the chosen ones, and their neighbours when smoothing
    need_cells = np.unique(nbrs[idx, : smooth + 1]) if smooth else np.unique(idx)
    raw = np.empty(need_cells.size)
    flat = np.empty(need_cells.size)
    size = _batch_size(patch_size, X.shape[1])
    starts = range(0, need_cells.size, size)
    for s in progress_bar(starts, desc="diffusion curvature", unit="batch", progress=progress):
        b = need_cells[s : s + size]
        if small:
            patches = nearest_cells(X, b, min(n, patch_size))
        else:
            patches = patch_neighbors(nbrs, dist, b, patch_size)
        raw[s : s + b.size], flat[s : s + b.size] = patch_curvature(
            X,
            patches,
            dim=d,
            sigma=sigma,
            t=t,
            ball_neighbors=ball_neighbors,
            noise_aware=noise_aware,
        )
    pos = np.searchsorted(need_cells, nbrs[idx, : smooth + 1])
    raw_i, flat_i = raw[pos].mean(1), flat[pos].mean(1)
    return CurvatureResult(idx, raw_i, flat_i, raw_i - flat_i, int(d), float(sigma), patch_size)
