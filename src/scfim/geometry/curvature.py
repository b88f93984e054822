"""Pointwise diffusion curvature (Bhaskar et al., NeurIPS 2022), pure NumPy/SciPy.

The diffusion curvature of a point x is the average probability that a t-step random walk
started at x ends inside a small ball around x::

    C(x) = Σ_{y ∈ B(x)} Pᵗ(x, y) / |B(x)|

Walks stay closer to their start on positively curved manifolds (the volume of a geodesic
ball grows more slowly than in flat space), so C is larger there and smaller where the
curvature is negative. Its raw value also depends on the intrinsic dimension, the
sampling density and the kernel; :func:`diffusion_curvature` therefore optionally subtracts
the same quantity computed at the centre of a *flat reference*: a uniformly sampled
d-dimensional ball with the data's local density and the same kernel, so that
``C(x) − C_flat(x) > 0`` means positive and ``< 0`` negative curvature.

Choices (measured on 2000-point spheres, planes and saddles of dimension 2–6, see
``benchmarks/bench_curvature.py``):

* **Ball** ``B(x)``: x and its ``ball_neighbors`` nearest neighbours in the input space.
  A kNN ball always holds the same number of cells (so ``|B|`` is fixed and the flat
  reference is easy to match), costs nothing beyond the kNN graph, and is local by
  construction. The paper's diffusion-distance ball would need the rows of Pᵗ of all
  candidate neighbours (or a diffusion map) for every cell, and its radius r is a further
  scale to choose.
* **Kernel**: a Gaussian ``exp(-d² / σ)`` with one *fixed* bandwidth σ (the squared median
  distance of the cells to their ``n_neighbors``-th neighbour), anisotropy α = 1, on a
  kNN graph of ``4 · n_neighbors`` neighbours. With a fixed bandwidth the walk approximates
  the heat flow at one scale everywhere, and a flat reference with the same σ and the
  same local density is a well-defined comparison. (PHATE's adaptive alpha-decay kernel
  was only tried before the flat reference existed; it is not compared here.)
* **Rows of Pᵗ** are computed for batches of cells by repeated sparse products
  ``R ← R P`` starting from the cells' rows of P; no ``n × n`` dense matrix is formed.
* **Smoothing** (``smooth``): C is averaged over the cell and its ``smooth`` nearest
  neighbours, and C_flat likewise over the flat centre and its neighbours. On 2000-point
  discs C of a single point varies by ~13 % between samples, more than the curvature
  signal of a 2-D sphere or saddle; the average over 16 neighbouring starts halves that.
* **Flat reference**: from the walk of x, the radius ``R`` holding 99 % of its mass, the
  number ``N`` of walk-reached cells within ``1.5 R`` and the local density ``ρ`` (k-NN
  estimator ``(k − 1) / (V_d r^d)`` with r the radius holding half of the walk's mass).
  The reference is a uniformly sampled flat d-ball at density ρ with
  ``min(ρ V_d (1.5 R)^d, N, max_flat_points)`` points: large enough to hold the walk, but
  no larger than the data there, so that a finite sample that ends inside the walk's
  reach (saddle patches in dimension ≥ 4) is compared with a flat ball that ends at about
  the same place. The same σ, α, t, ball size and smoothing are used, and C_flat is
  averaged over ``n_flat_samples`` samples. References are shared by cells whose N and
  radius agree within ~5 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .diffusion import affinity_kernel, knn_graph, markov_operator

_DENSITY_MASS = 0.5  # the local density is measured within the walk's half-mass radius

__all__ = [
    "CurvatureResult",
    "gaussian_operator",
    "ball_indices",
    "walk_rows",
    "pointwise_curvature",
    "estimate_dimension",
    "flat_curvature",
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
        ``C(x)`` for those cells.
    flat
        ``C_flat`` of each cell's flat reference (None without a reference).
    curvature
        ``raw − flat`` with a reference, else ``raw``.
    dim
        Intrinsic dimension used for each cell's reference (None without a reference).
    n_flat
        Number of points of each cell's flat reference (None without a reference).
    sigma
        Bandwidth of the Gaussian kernel (scales squared distances).
    """

    idx: np.ndarray
    raw: np.ndarray
    flat: np.ndarray | None
    curvature: np.ndarray
    dim: np.ndarray | None
    n_flat: np.ndarray | None
    sigma: float


# --------------------------------------------------------------------------- operator
def gaussian_operator(
    X: np.ndarray,
    *,
    n_neighbors: int = 15,
    n_search: int | None = None,
    sigma: float | None = None,
    alpha: float = 1.0,
    random_state: int | None = 0,
) -> tuple[sp.csr_matrix, sp.csr_matrix, float]:
    """Markov matrix of a fixed-bandwidth Gaussian kernel on a kNN graph.

    Parameters
    ----------
    X
        ``(n, D)`` points.
    n_neighbors
        k whose median neighbour distance sets the bandwidth.
    n_search
        Neighbours stored in the graph (default ``4 · n_neighbors``, at most ``n − 1``).
    sigma
        Bandwidth (scales squared distances); default ``median_x d_k(x)²``.
    alpha
        Anisotropy of :func:`~scfim.geometry.diffusion.markov_operator`.
    random_state
        Seed of the kNN search (approximate searches only).

    Returns
    -------
    P, distances, sigma
        Row-stochastic CSR matrix, the kNN distance graph (rows sorted by distance) and σ.
    """
    n = X.shape[0]
    k_search = min(n - 1, int(n_search) if n_search is not None else 4 * int(n_neighbors))
    D = knn_graph(X, k_search, random_state=random_state)
    if sigma is None:
        dk = D.data.reshape(n, k_search)[:, min(n_neighbors, k_search) - 1]
        sigma = float(np.median(dk) ** 2)
    K = affinity_kernel(D, kernel="gaussian", sigma=sigma)  # leaves D's row order intact
    P, _ = markov_operator(K, alpha)
    return P, D, float(sigma)


def ball_indices(distances: sp.csr_matrix, ball_neighbors: int) -> np.ndarray:
    """``(n, ball_neighbors + 1)`` indices of each cell and its nearest neighbours.

    ``distances`` must store at least ``ball_neighbors`` neighbours per row, sorted by
    distance (as :func:`~scfim.geometry.diffusion.knn_graph` returns them).
    """
    n = distances.shape[0]
    k = np.diff(distances.indptr)
    if np.any(k < ball_neighbors):
        raise ValueError("the kNN graph stores fewer neighbours than ball_neighbors")
    nb = distances.indices.reshape(n, -1)[:, :ball_neighbors] if np.all(k == k[0]) else None
    if nb is None:
        nb = np.stack([distances.indices[distances.indptr[i] :][:ball_neighbors] for i in range(n)])
    return np.column_stack([np.arange(n), nb])


def walk_rows(P: sp.csr_matrix, idx: np.ndarray, t: int) -> sp.csr_matrix:
    """Rows ``idx`` of Pᵗ as a sparse matrix, by ``t − 1`` sparse products ``R ← R P``."""
    R = sp.csr_matrix(P[idx])
    for _ in range(int(t) - 1):
        R = sp.csr_matrix(R @ P)
    return R


def _batch_size(n: int) -> int:
    """Cells per batch: a batch's rows of Pᵗ hold at most 2²³ entries."""
    return int(max(1, min(512, 2**23 // max(n, 1))))


def pointwise_curvature(
    P: sp.csr_matrix,
    balls: np.ndarray,
    idx: np.ndarray,
    t: int,
    *,
    X: np.ndarray | None = None,
    mass: float = 0.99,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``C(x) = mean_{y ∈ B(x)} Pᵗ(x, y)`` for the cells ``idx``, in batches.

    Parameters
    ----------
    P
        Row-stochastic sparse matrix.
    balls
        Output of :func:`ball_indices` (all cells).
    idx
        Cells to evaluate.
    t
        Number of steps.
    X
        When given, also measure the reach of each cell's walk (used to size and to
        match the density of the flat reference).
    mass
        Fraction of the walk's probability defining its reach.

    Returns
    -------
    C, reach
        ``reach`` is None when ``X`` is None, else ``(len(idx), 4)``: the radius ``R``
        holding ``mass`` of the walk's probability, the number of walk-reached cells within
        ``1.5 R``, the radius ``r½`` holding half of it and the number of cells within
        ``r½`` (all Euclidean, in the input space, counting the cell itself).
    """
    idx = np.asarray(idx, dtype=np.int64)
    n = P.shape[0]
    C = np.empty(idx.size)
    reach = np.empty((idx.size, 4)) if X is not None else None
    size = _batch_size(n)
    for s in range(0, idx.size, size):
        b = idx[s : s + size]
        R = walk_rows(P, b, t)
        C[s : s + b.size] = np.asarray(R[np.arange(b.size)[:, None], balls[b]].todense()).mean(1)
        if X is None:
            continue
        for j in range(b.size):
            lo, hi = R.indptr[j], R.indptr[j + 1]
            cols, w = R.indices[lo:hi], R.data[lo:hi]
            dist = np.linalg.norm(X[cols] - X[b[j]], axis=1)
            order = np.argsort(dist)
            dist, cw = dist[order], np.cumsum(w[order])
            last = cols.size - 1
            # a walk that keeps most of its mass on its own cell has a radius of 0: floor
            # both radii at the nearest other cell reached, so the density stays finite
            pos = dist[dist > 0]
            floor = pos[0] if pos.size else 1.0
            r_hi = max(dist[min(int(np.searchsorted(cw, mass * cw[-1])), last)], floor)
            r_half = max(dist[min(int(np.searchsorted(cw, _DENSITY_MASS * cw[-1])), last)], floor)
            reach[s + j] = (
                r_hi,
                np.searchsorted(dist, 1.5 * r_hi, side="right"),
                r_half,
                np.searchsorted(dist, r_half, side="right"),
            )
    return C, reach


# --------------------------------------------------------------------------- dimension
def estimate_dimension(
    X: np.ndarray,
    distances: sp.csr_matrix,
    *,
    n_cells: int = 200,
    variance: float = 0.9,
    random_state: int | None = 0,
) -> int:
    """Intrinsic dimension: median over cells of the local PCA dimension.

    For up to ``n_cells`` random cells, the neighbourhood stored in ``distances`` (cell and
    neighbours) is centred and the number of principal components explaining ``variance``
    of its variance is counted; the median is returned.
    """
    n = X.shape[0]
    rng = np.random.default_rng(random_state)
    cells = rng.choice(n, size=min(n, n_cells), replace=False)
    dims = []
    for i in cells:
        nb = distances.indices[distances.indptr[i] : distances.indptr[i + 1]]
        Y = X[np.concatenate([[i], nb])]
        Y = Y - Y.mean(0)
        ev = np.linalg.svd(Y, compute_uv=False) ** 2
        frac = np.cumsum(ev) / max(ev.sum(), 1e-300)
        dims.append(int(np.searchsorted(frac, variance)) + 1)
    return int(max(1, round(float(np.median(dims)))))


# --------------------------------------------------------------------------- flat reference
def _uniform_ball(n: int, dim: int, radius: float, rng: np.random.Generator) -> np.ndarray:
    u = np.zeros((n, dim))
    v = rng.normal(size=(n - 1, dim))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    u[1:] = v * radius * rng.uniform(size=(n - 1, 1)) ** (1.0 / dim)
    return u


def flat_curvature(
    dim: int,
    n_points: int,
    radius: float,
    *,
    sigma: float,
    t: int,
    n_neighbors: int,
    ball_neighbors: int,
    n_search: int | None = None,
    alpha: float = 1.0,
    n_samples: int = 3,
    smooth: int = 0,
    random_state: int | None = 0,
) -> float:
    """``C`` at the centre of uniformly sampled flat ``dim``-balls, averaged over samples.

    Each sample has ``n_points`` points (the first is the centre) uniform in a ball of
    ``radius``; the Gaussian kernel uses the given (absolute) ``sigma`` so that the
    reference sees the same density and scale as the data. With ``smooth > 0``, C is
    averaged over the centre and its ``smooth`` nearest neighbours, as for the data.
    """
    rng = np.random.default_rng(random_state)
    n_points = max(int(n_points), ball_neighbors + 2, n_neighbors + 2, smooth + 2)
    k_search = min(n_points - 1, max(ball_neighbors, smooth, n_search or 4 * n_neighbors))
    vals = []
    for _ in range(int(n_samples)):
        Y = _uniform_ball(n_points, int(dim), float(radius), rng)
        P, D, _ = gaussian_operator(
            Y, n_neighbors=n_neighbors, n_search=k_search, sigma=sigma, alpha=alpha
        )
        balls = ball_indices(D, ball_neighbors)
        centre = ball_indices(D, smooth)[0] if smooth > 0 else np.array([0])
        C, _ = pointwise_curvature(P, balls, centre, t)
        vals.append(C.mean())
    return float(np.mean(vals))


# --------------------------------------------------------------------------- main entry
def diffusion_curvature(
    X: np.ndarray,
    *,
    t: int = 16,
    n_neighbors: int = 15,
    ball_neighbors: int = 30,
    idx: np.ndarray | None = None,
    flat_reference: bool = True,
    dim: int | None = None,
    alpha: float = 1.0,
    sigma: float | None = None,
    n_flat_samples: int = 3,
    max_flat_points: int = 10_000,
    smooth: int = 15,
    random_state: int | None = 0,
) -> CurvatureResult:
    """Pointwise diffusion curvature of the cells ``idx`` (all cells by default).

    Parameters
    ----------
    X
        ``(n, D)`` input representation.
    t
        Number of diffusion steps (integer ≥ 1). The default 16 is the benchmarked value
        (sign accuracy 0.955 in ``benchmarks/bench_curvature.py``; t = 8: 0.920) and the
        default of :func:`scfim.tl.diffusion_curvature`.
    n_neighbors
        k of the bandwidth ``σ = median d_k²``; the graph stores ``4k`` neighbours.
    ball_neighbors
        The ball ``B(x)`` is x and its ``ball_neighbors`` nearest neighbours.
    idx
        Cells to evaluate (integer indices); default all.
    flat_reference
        Subtract ``C_flat`` of a flat ball of the same dimension and density.
    dim
        Intrinsic dimension of the flat reference; estimated by local PCA when None.
    alpha
        Anisotropy of the Markov normalisation (1 removes the sampling density).
    sigma
        Gaussian bandwidth; default from the data (see ``n_neighbors``).
    n_flat_samples
        Flat samples averaged per reference.
    max_flat_points
        Largest flat reference (its radius shrinks at constant density beyond that).
    smooth
        Average C over each cell and its ``smooth`` nearest neighbours (and likewise
        over the centre of the flat reference and its neighbours). A variance reduction:
        at 2000 points C of a single cell varies by ~13 % between samples of a plane.
    random_state
        Seed of the flat samples and of the dimension estimate.

    Returns
    -------
    :class:`CurvatureResult`

    Raises
    ------
    TypeError, ValueError
        On non-integer or out-of-range t, n_neighbors, ball_neighbors or smooth, and when
        there are fewer than ``max(n_neighbors, ball_neighbors, smooth) + 2`` cells.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (cells × features), got shape {X.shape}")
    n = X.shape[0]
    for name, value, minimum in (
        ("t", t, 1),
        ("n_neighbors", n_neighbors, 1),
        ("ball_neighbors", ball_neighbors, 1),
        ("smooth", smooth, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an integer, got {value!r}")
        if value < minimum:
            raise ValueError(f"{name} must be ≥ {minimum}, got {value}")
    smooth = int(smooth)
    n_search = min(n - 1, max(4 * n_neighbors, ball_neighbors, smooth))
    if n < max(n_neighbors, ball_neighbors, smooth) + 2:
        raise ValueError(
            f"need at least max(n_neighbors, ball_neighbors, smooth) + 2 cells, got {n}"
        )
    idx = np.arange(n) if idx is None else np.asarray(idx, dtype=np.int64)
    P, D, sigma = gaussian_operator(
        X,
        n_neighbors=n_neighbors,
        n_search=n_search,
        sigma=sigma,
        alpha=alpha,
        random_state=random_state,
    )
    balls = ball_indices(D, ball_neighbors)
    if smooth > 0:
        groups = ball_indices(D, smooth)[idx]
        cells, inverse = np.unique(groups, return_inverse=True)
        # one pass over the union of the groups (it contains idx: every group starts with
        # its own cell); the reach is needed for idx only but is cheap next to the walks
        C, reach_all = pointwise_curvature(P, balls, cells, t, X=X if flat_reference else None)
        raw = C[inverse.reshape(groups.shape)].mean(1)
        reach = None if reach_all is None else reach_all[np.searchsorted(cells, idx)]
    else:
        raw, reach = pointwise_curvature(P, balls, idx, t, X=X if flat_reference else None)
    if not flat_reference:
        return CurvatureResult(idx, raw, None, raw.copy(), None, None, sigma)
    d = int(dim) if dim is not None else estimate_dimension(X, D, random_state=random_state)
    flat = np.empty(idx.size)
    n_flat = np.empty(idx.size, dtype=np.int64)
    cache: dict[tuple[int, int], float] = {}
    for j in range(idx.size):
        r_hi, n_hi, r_half, n_half = reach[j]
        # local density: the k-NN estimator ρ = (k − 1) / (V_d r_k^d), unbiased for uniform
        # data, with k the number of cells other than x within r½; everything below uses
        # ρ·V_d only through ratios of radii, so r^d cannot underflow in high d
        k_half = max(n_half - 2.0, 1.0)
        # the flat ball covers the walk's reach (1.5 R) at the data's local density, but
        # holds no more points than the data there (finite samples end, and so does the
        # reference) and at most max_flat_points
        log_n = math.log(k_half) + d * math.log(1.5 * r_hi / r_half)
        N = int(min(math.exp(min(log_n, 50.0)), n_hi, max_flat_points))
        N = max(N, ball_neighbors + 2, n_neighbors + 2)
        R = r_half * (N / k_half) ** (1.0 / d)
        # quantise (≈ 5 % steps of N and R) so that cells share references
        key = (int(round(20 * math.log(N))), int(round(20 * math.log(max(R, 1e-300)))))
        if key not in cache:
            cache[key] = flat_curvature(
                d,
                N,
                R,
                sigma=sigma,
                t=t,
                n_neighbors=n_neighbors,
                ball_neighbors=ball_neighbors,
                n_search=n_search,
                alpha=alpha,
                n_samples=n_flat_samples,
                smooth=smooth,
                random_state=random_state,
            )
        flat[j] = cache[key]
        n_flat[j] = N
    return CurvatureResult(
        idx, raw, flat, raw - flat, np.full(idx.size, d, dtype=np.int64), n_flat, sigma
    )
