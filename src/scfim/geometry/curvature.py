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
``2t`` matrix–vector products, vectorised over batches of cells. The only global step is
the search for the patches, an exact query of each evaluated cell against all cells (for
every cell, the patches also give the neighbour distances of the dimension estimate).
Chosen cells (``cells=``) cost a 10-neighbour query of every cell (for the dimension) plus
their own patches, and give exactly the values of a full run.

Choices (measured on spheres, sphere caps, saddles and planes of dimension 2–6 under four
sampling schemes, see ``benchmarks/bench_curvature.py``):

* **Kernel**: ``exp(−d² / σ_x)`` with a bandwidth tied to the patch, ``σ_x = 0.25 R_x²``
  (``R_x`` the distance from x to the farthest cell of its patch); anisotropy α = 1
  (removes the sampling density to first order). With one global bandwidth (the squared
  median distance to the 15th neighbour) the walk outgrew its 128-cell patch at d ≥ 4:
  σ was 0.6–0.8 R_x², t steps mixed the walk over the whole patch, both walks reached
  nearly the same stationary ball mass and the difference (relative 10⁻⁴) lost its
  sign, worst where the sampling is densest around x (Gaussian sampling: saddles 0.5–0.75
  correct at d = 4–6). Relative to the patch the walk reaches the same fraction of it in
  every dimension and at every local density; 0.2–0.3 gave the right sign on every cap,
  sphere and saddle of the tuning clouds at d = 2–6, 0.1 and 0.5 did not.
* **Duplicates**: exact copies of a cell are one state carrying its multiplicity; the walk
  is the exact lumping of the walk with every copy present, patches and balls count
  distinct cells, and copies get identical values.
* **Ball** ``B(x)``: x and its ``ball_neighbors`` nearest neighbours.
* **Steps** t = 8 and patches of 128 cells by default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._progress import progress_bar
from .._threads import torch_threads
from .diffusion import distinct_states
from .graph import knn_graph, nearest_cells

_EXACT_PATCHES = 50_000  # largest data set whose patches are exact nearest neighbours

__all__ = [
    "CurvatureResult",
    "neighbor_graph",
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
        Bandwidth of the Gaussian kernel (scales squared distances) of each cell's patch.
    patch_size
        Cells per patch (the cell included).
    """

    idx: np.ndarray
    raw: np.ndarray
    flat: np.ndarray
    curvature: np.ndarray
    dim: int
    sigma: np.ndarray
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
    # the first-hop cells come first (bound −1), so a second-hop copy of them is dropped;
    # three stable sorts along each row (B × (k + 1 + k²)), not a global lexsort
    ids = np.concatenate([first, second], axis=1)
    val = np.concatenate([np.full(first.shape, -1.0), bound], axis=1)
    o = np.argsort(val, axis=1, kind="stable")
    ids, val = np.take_along_axis(ids, o, 1), np.take_along_axis(val, o, 1)
    o = np.argsort(ids, axis=1, kind="stable")  # by id, each id's smallest bound first
    ids, val = np.take_along_axis(ids, o, 1), np.take_along_axis(val, o, 1)
    dup = np.zeros(ids.shape, dtype=bool)
    dup[:, 1:] = ids[:, 1:] == ids[:, :-1]
    val[dup] = np.inf
    o = np.argsort(val, axis=1, kind="stable")[:, :patch_size]  # by bound, ties by id
    out = np.take_along_axis(ids, o, 1)
    out[~np.isfinite(np.take_along_axis(val, o, 1))] = -1
    if out.shape[1] < patch_size:
        out = np.pad(out, ((0, 0), (0, patch_size - out.shape[1])), constant_values=-1)
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
def _walk_mass(sq, sigma, t: int, ball: int, pad=None, w=None):
    """Ball mass ``C`` of a t-step α = 1 Gaussian walk from patch member 0, per patch.

    ``sq`` is a ``(B, M, M)`` tensor of squared distances (overwritten), ``sigma`` a
    ``(B,)`` tensor of bandwidths; ``pad`` an optional ``(B, M)`` boolean tensor of padding
    entries (isolated from the walk); ``w`` optional ``(B, M)`` multiplicities of the
    members: the walk is then the exact lumping of the walk on all copies, and C the mean
    over the ball's copies.
    """
    K = sq.div_(-sigma[:, None, None]).exp_()
    if pad is not None:
        K.masked_fill_(pad[:, :, None] | pad[:, None, :], 0.0)
        K.diagonal(dim1=1, dim2=2).masked_fill_(pad, 1.0)
    if w is None:
        q = K.sum(2)
        K.div_(q[:, :, None]).div_(q[:, None, :])
    else:
        q = torch.bmm(K, w[:, :, None])[:, :, 0]
        K.div_(q[:, :, None]).mul_((w / q)[:, None, :])
    K.div_(K.sum(2, keepdim=True))  # row-stochastic P on each patch
    r = K[:, :1, :]  # one step from member 0
    for _ in range(int(t) - 1):
        r = torch.bmm(r, K)
    if w is None:
        return r[:, 0, : ball + 1].mean(1)
    return r[:, 0, : ball + 1].sum(1) / w[:, : ball + 1].sum(1)


def _off_surface(Y, T, V, w=None):
    """Scatter of the patch's cells off a quadratic surface fitted over the tangent space.

    The normal part ``N = Y − T Vᵀ`` of each cell is regressed (least squares over the
    patch) on ``[1, T, T_i T_j]``; the residual estimates the noise, the fit the curvature.
    Returns ``(residual, fit)``, or None when the patch is too small for the fit
    (``4p > M``, p regressors). Optional ``(B, M)`` multiplicities ``w`` weight the fit.
    """
    B, M, dim = T.shape
    if 4 * (1 + dim + dim * (dim + 1) // 2) > M:
        return None
    iu = torch.triu_indices(dim, dim)
    quad = (T[:, :, :, None] * T[:, :, None, :])[:, :, iu[0], iu[1]]
    Phi = torch.cat([torch.ones(B, M, 1, dtype=T.dtype), T, quad], dim=2)
    N = Y - torch.bmm(T, V.transpose(1, 2))
    PhiT = Phi.transpose(1, 2) if w is None else (Phi * w[:, :, None]).transpose(1, 2)
    G = torch.bmm(PhiT, Phi)
    G.diagonal(dim1=1, dim2=2).add_(1e-10 * G.diagonal(dim1=1, dim2=2).mean(1, keepdim=True))
    coef = torch.linalg.solve(G, torch.bmm(PhiT, N))
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
    sigma=None,
    bandwidth: float = 0.25,
    t: int,
    ball_neighbors: int,
    noise_aware: bool = True,
    weights: np.ndarray | None = None,
    return_sigma: bool = False,
):
    """``(C, C_flat)`` for a batch of patches (and their bandwidths with ``return_sigma``).

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
        Gaussian bandwidth (scales squared distances): one for all patches, ``(B,)`` one
        per patch, or None: ``bandwidth · R_x²`` with ``R_x`` the distance from the cell x
        to the farthest cell of its patch.
    bandwidth
        Bandwidth relative to the patch when ``sigma`` is None.
    t
        Number of steps.
    ball_neighbors
        The ball is the cell and its ``ball_neighbors`` nearest neighbours; the tangent
        space is fitted to the same cells.
    noise_aware
        Keep each cell's scatter off a quadratic surface fitted to the patch (its noise)
        in the flattened patch, so that noise thickens both walks alike.
    weights
        Optional ``(n,)`` multiplicities of the rows of ``X`` (exact duplicate cells
        collapsed into one row): the walks, the tangent space and the surface fit are
        then those of the patch with every copy present, and C the mean over the copies
        in the ball. None is the same as all ones.
    return_sigma
        Also return the ``(B,)`` bandwidths used.

    Returns
    -------
    C, C_flat
        ``(B,)`` ball masses of the data walk and of the walk on the flattened patch.
    sigma
        ``(B,)`` bandwidths, with ``return_sigma``.
    """
    patches = np.asarray(patches)
    missing = patches < 0
    # one thread: the batched kernels are small, and two threads were up to 25× slower
    # on a busy 2-core machine
    with torch.no_grad(), torch_threads(1):
        pad = torch.from_numpy(missing) if missing.any() else None
        Y = torch.from_numpy(X[np.where(missing, patches[:, :1], patches)])  # (B, M, D)
        Y -= Y[:, :1, :].clone()
        # tangent space: top `dim` principal directions of the cell's ball, from the
        # smaller of its two Gram forms (float64 eigh; LAPACK's batched SVD is slower)
        nb = Y[:, : ball_neighbors + 1, :]
        if weights is None:
            w = None
            nb = nb - nb.mean(1, keepdim=True)
        else:
            w = torch.from_numpy(np.where(missing, 1.0, weights[patches]).astype(np.float64))
            wb = w[:, : ball_neighbors + 1, None]
            nb = (nb - (wb * nb).sum(1, keepdim=True) / wb.sum(1, keepdim=True)) * wb.sqrt()
        if nb.shape[2] <= nb.shape[1]:
            V = torch.linalg.eigh(torch.bmm(nb.transpose(1, 2), nb))[1][:, :, -dim:]
        else:
            A = torch.linalg.eigh(torch.bmm(nb, nb.transpose(1, 2)))[1]
            V = torch.bmm(nb.transpose(1, 2), A[:, :, -dim:])  # (B, D, dim), unnormalised
            V /= torch.linalg.vector_norm(V, dim=1, keepdim=True).clamp_(min=1e-300)
        T = torch.bmm(Y, V)  # (B, M, dim) tangent coordinates
        ny2 = (Y * Y).sum(2)
        fitted = _off_surface(Y, T, V, w) if noise_aware else None
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
        if sigma is None:  # tied to the patch: the walk reaches the same fraction of it
            sig = float(bandwidth) * ny2.max(1).values
        else:
            sig = torch.from_numpy(np.array(np.broadcast_to(sigma, missing.shape[:1]), np.float64))
        C = _walk_mass(_squared_distances(Y), sig, t, ball_neighbors, pad, w)
        C_flat = _walk_mass(_squared_distances(Z), sig, t, ball_neighbors, pad, w)
    if return_sigma:
        return C.numpy(), C_flat.numpy(), sig.numpy()
    return C.numpy(), C_flat.numpy()


def _query(X: np.ndarray, cells: np.ndarray, k: int, progress: bool) -> np.ndarray:
    """:func:`~scfim.geometry.graph.nearest_cells` in chunks of ≤ 32 MiB of distances."""
    chunk = int(max(32, 2**22 // max(X.shape[0], 1)))
    out = np.empty((cells.size, k), dtype=np.int64)
    starts = range(0, cells.size, chunk)
    for s in progress_bar(starts, desc="nearest cells", unit="batch", progress=progress):
        out[s : s + chunk] = nearest_cells(X, cells[s : s + chunk], k)
    return out


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
    bandwidth: float = 0.25,
    smooth: int = 0,
    noise_aware: bool = True,
    progress: bool = False,
    random_state: int | None = 0,
) -> CurvatureResult:
    """Pointwise diffusion curvature of the cells ``cells`` (all cells by default).

    Exact duplicate rows are collapsed into one cell with their multiplicity (see the
    module notes); every copy gets the value of its cell.

    Parameters
    ----------
    X
        ``(n, D)`` input representation.
    t
        Number of diffusion steps (integer ≥ 1).
    n_neighbors
        Neighbours per cell of the kNN graph whose two-step neighbourhoods give the
        patches of data sets with more than 50 000 distinct cells (smaller ones get
        exact patches).
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
        One Gaussian bandwidth for every patch; by default each patch gets its own
        (see ``bandwidth``).
    bandwidth
        Bandwidth of each patch relative to its size: ``σ_x = bandwidth · R_x²`` with
        ``R_x`` the distance from x to the farthest cell of its patch (ignored when
        ``sigma`` is given).
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
    if isinstance(bandwidth, bool) or not np.isfinite(bandwidth) or bandwidth <= 0:
        raise ValueError(f"bandwidth must be a positive number, got {bandwidth!r}")
    if cells is None:
        idx = np.arange(n)
    else:
        idx = np.asarray(cells)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise TypeError("cells must be a non-empty 1-D array of integer indices")
        if idx.min() < -n or idx.max() >= n:
            raise ValueError(f"cell indices must lie in [-{n}, {n}), got {idx.min()}..{idx.max()}")
        idx = np.where(idx < 0, idx + n, idx).astype(np.int64)

    # exact duplicates: one row per distinct cell, carrying its multiplicity (the walks are
    # then the exact lumping of the walks with every copy present); copies share a value
    states = distinct_states(X)
    weights = None if states is None else states.counts.astype(np.float64)
    Xs = X if states is None else X[states.first]
    ns = Xs.shape[0]
    if ns < need + 1:
        raise ValueError(
            f"need at least max(n_neighbors, ball_neighbors, smooth) + 2 = {need + 1} "
            f"distinct cells, got {ns}"
        )
    at = idx if states is None else states.labels[idx]

    # patches: the exact patch_size − 1 nearest neighbours of the evaluated cells up to
    # 50 000 cells (one query of each cell against all; when every cell is evaluated the
    # patches also give the neighbour distances of the dimension estimate); beyond, the
    # two-step neighbourhood of a kNN graph ranked by path length
    small = ns <= _EXACT_PATCHES
    M = min(ns, patch_size)
    every = small and np.unique(at).size == ns
    if small:
        k1 = min(ns, max(11, smooth + 1))  # the cell, 10 neighbours for the dimension
        rows = _query(Xs, np.arange(ns), M if every else k1, progress)
        nbrs = rows[:, :k1]
        dist = np.sqrt(((Xs[nbrs] - Xs[:, None, :]) ** 2).sum(-1))
    else:
        k_graph = max(n_neighbors, ball_neighbors, smooth)
        nbrs, dist = neighbor_graph(Xs, min(ns - 1, k_graph), random_state=random_state)
    d = dim if dim is not None else estimate_dimension(dist, k=min(10, ns - 1))
    d = min(d, X.shape[1])

    # cells whose values are needed: the chosen ones, and their neighbours when smoothing
    need_cells = np.unique(nbrs[at, : smooth + 1]) if smooth else np.unique(at)
    raw = np.empty(need_cells.size)
    flat = np.empty(need_cells.size)
    sig = np.empty(need_cells.size)
    size = _batch_size(patch_size, X.shape[1])
    starts = range(0, need_cells.size, size)
    for s in progress_bar(starts, desc="diffusion curvature", unit="batch", progress=progress):
        b = need_cells[s : s + size]
        if every:
            patches = rows[b]
        elif small:
            patches = nearest_cells(Xs, b, M)
        else:
            patches = patch_neighbors(nbrs, dist, b, patch_size)
        out = patch_curvature(
            Xs,
            patches,
            dim=d,
            sigma=sigma,
            bandwidth=bandwidth,
            t=t,
            ball_neighbors=ball_neighbors,
            noise_aware=noise_aware,
            weights=weights,
            return_sigma=True,
        )
        raw[s : s + b.size], flat[s : s + b.size], sig[s : s + b.size] = out
    pos = np.searchsorted(need_cells, nbrs[at, : smooth + 1])
    raw_i, flat_i = raw[pos].mean(1), flat[pos].mean(1)
    return CurvatureResult(idx, raw_i, flat_i, raw_i - flat_i, int(d), sig[pos[:, 0]], patch_size)
