"""Diffusion operators on point clouds (pure NumPy/SciPy; no AnnData in here).

The pipeline follows Algorithm 1 of the neural-FIM paper and PHATE:

1. a k-nearest-neighbour graph of the cells (:func:`scfim.geometry.graph.knn_graph`),
2. an affinity kernel on that graph, either PHATE's *alpha-decay* kernel
   ``exp(-(d / σ_k(x))^decay)`` (σ_k(x) the distance to the k-th neighbour, symmetrised by
   averaging) or a Gaussian kernel ``exp(-d² / σ)`` with a fixed bandwidth σ
   (:func:`affinity_kernel`),
3. the anisotropic normalisation ``K_α = Q^{-α} K Q^{-α}`` with ``Q = diag(K 1)``
   (α = 1 is Algorithm 1's ``Q⁻¹ A Q⁻¹``) and row normalisation to a Markov matrix P
   (:func:`markov_operator`),
4. a diffusion time t, given or chosen at the knee of the von Neumann entropy
   (:func:`von_neumann_entropy`, :func:`knee_point`),
5. for large data a *landmark* (lumped) operator: cells are grouped into ``L`` clusters,
   the chain is aggregated exactly on the clusters with its stationary weights, and rows of
   Pᵗ over the landmarks are produced on demand (:class:`DiffusionOperator`). No ``N × N``
   dense matrix is ever formed on that path.

Exact duplicate cells (identical rows of the input) are collapsed into one *state* that
carries its multiplicity m (:func:`distinct_states`). The kNN graph and the bandwidths are
those of the distinct cells, and the chain is the one on *all* cells whose kernel between two
cells is the kernel of their states (two copies have affinity 1, like a self-loop): with
``K`` the kernel of the distinct cells, ``q = K m``, ``K_α = Q^{-α} K Q^{-α}`` and
``d = K_α m``, a cell of state I moves to a given copy of state J with probability
``K_α(I, J) / d_I``. That chain is exactly lumpable onto the states (lumped chain
``diag(1/d) K_α diag(m)``, :func:`markov_operator` with ``weights``), so every copy has the
same row of Pᵗ. Data without duplicates take the unweighted path unchanged.

New cells are attached to a fitted chain by their one-step transitions to its cells
(:func:`extend_transitions`), which reproduce the training rows for the training cells.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .graph import knn_graph

__all__ = [
    "affinity_kernel",
    "markov_operator",
    "von_neumann_entropy",
    "knee_point",
    "select_t",
    "landmark_count",
    "assign_landmarks",
    "DistinctStates",
    "distinct_states",
    "kernel_bandwidths",
    "extend_transitions",
    "DiffusionOperator",
    "build_operator",
    "symmetrize_inplace",
    "matrix_power",
]

_MAX_EXPANDED_ENTRIES = 200_000_000  # cell-level transitions with collapsed duplicates

_KERNEL_THRESHOLD = 1e-4


# --------------------------------------------------------------------------- kernels
def affinity_kernel(
    distances: sp.csr_matrix,
    *,
    kernel: str = "alpha_decay",
    n_neighbors: int = 15,
    decay: float = 40.0,
    sigma: float | None = None,
    threshold: float = _KERNEL_THRESHOLD,
    bandwidths: np.ndarray | None = None,
    overwrite: bool = False,
) -> sp.csr_matrix:
    """Symmetric affinity matrix on a kNN distance graph, with self-loops of weight 1.

    Parameters
    ----------
    distances
        CSR matrix of neighbour distances (self excluded), e.g. from :func:`knn_graph`
        or scanpy's ``obsp["distances"]``.
    kernel
        ``"alpha_decay"``: ``exp(-(d / σ_k(x))^decay)`` with ``σ_k(x)`` the distance from x to
        its ``n_neighbors``-th neighbour (PHATE); ``"gaussian"``: ``exp(-d² / σ)`` with a fixed
        ``sigma`` (the convention of the neural-FIM paper, Sec. 2.1: σ scales *squared*
        distances).
    n_neighbors
        The k of the adaptive bandwidth (alpha-decay only).
    decay
        Exponent of the alpha-decay kernel.
    sigma
        Bandwidth of the Gaussian kernel (required for it, must be > 0).
    threshold
        Affinities below this are dropped to keep the matrix sparse.
    bandwidths
        The σ_k of :func:`kernel_bandwidths` when the caller has them already.
    overwrite
        Let the kernel take over ``distances`` (a float64 CSR matrix the caller will not use
        again) instead of copying it: its arrays become the kernel's.

    Returns
    -------
    Symmetric ``(n, n)`` CSR matrix ``K = (K₀ + K₀ᵀ) / 2`` with unit diagonal.
    """
    if kernel not in ("alpha_decay", "gaussian"):
        raise ValueError(f"unknown kernel {kernel!r}; use 'alpha_decay' or 'gaussian'")
    if kernel == "gaussian" and (sigma is None or not np.isfinite(sigma) or sigma <= 0):
        raise ValueError("the Gaussian kernel needs a bandwidth sigma > 0")
    # never mutate the caller's, unless it gave the matrix away
    D = sp.csr_matrix(distances, dtype=np.float64, copy=not overwrite)
    n = D.shape[0]
    counts = np.diff(D.indptr)
    if np.any(counts == 0):
        raise ValueError("every cell needs at least one neighbour in the distance graph")
    # the bandwidths before the columns are sorted: rows of knn_graph come sorted by
    # distance, which spares kernel_bandwidths a sort of all the entries
    sig = None
    if kernel == "alpha_decay":
        sig = kernel_bandwidths(D, n_neighbors) if bandwidths is None else bandwidths
    D.sort_indices()
    # the kernel values in one array, in place (the operations of
    # exp(-(d / σ)^decay) and exp(-d² / σ), without their temporaries)
    if kernel == "alpha_decay":
        per_entry = np.repeat(sig, counts)
        vals = D.data if overwrite else per_entry
        np.divide(D.data, per_entry, out=vals)
        del per_entry
        np.power(vals, decay, out=vals)
    else:
        vals = np.square(D.data, out=D.data if overwrite else None)
        vals /= float(sigma)
    np.negative(vals, out=vals)
    np.exp(vals, out=vals)
    # D is this function's copy (or was given away): its index arrays are reused
    K0 = sp.csr_matrix((vals, D.indices, D.indptr), shape=(n, n))
    del D, vals
    K0.data[K0.data < threshold] = 0.0
    K0.eliminate_zeros()
    K = K0 + K0.T
    del K0
    K.data *= 0.5
    # unit self-loops: any stored diagonal entry is dropped and the identity added, which
    # leaves every other entry as it is (a + 0) and needs no copy through COO, unlike setdiag
    rows = np.repeat(np.arange(n, dtype=K.indices.dtype), np.diff(K.indptr))
    on_diag = K.indices == rows
    del rows
    if on_diag.any():
        K.data[on_diag] = 0.0
        K.eliminate_zeros()
    del on_diag
    K = K + sp.identity(n, dtype=np.float64, format="csr")
    K.eliminate_zeros()
    K.sort_indices()
    return K


def kernel_bandwidths(distances: sp.csr_matrix, n_neighbors: int) -> np.ndarray:
    """Adaptive bandwidths σ_k(x): the distance to the k-th neighbour (or the farthest stored).

    Parameters
    ----------
    distances
        CSR kNN distance graph (self excluded); rows may be unsorted (e.g. scanpy's).
    n_neighbors
        k.

    Returns
    -------
    ``(n,)`` float64 bandwidths.
    """
    D = sp.csr_matrix(distances)
    n = D.shape[0]
    counts = np.diff(D.indptr)
    if np.any(counts == 0):
        raise ValueError("every cell needs at least one neighbour in the distance graph")
    data = D.data
    row_ids = np.repeat(np.arange(n), counts)
    ascending = data[1:] >= data[:-1]
    ascending[D.indptr[1:-1] - 1] = True  # row boundaries
    # rows of knn_graph are sorted by distance already; others (scanpy's) are sorted here
    sorted_d = data if ascending.all() else data[np.lexsort((data, row_ids))]
    kth = np.minimum(counts, n_neighbors) - 1
    sig = sorted_d[D.indptr[:-1] + kth]
    if np.any(sig <= 0):
        raise ValueError(
            "some cells have n_neighbors or more neighbours at distance 0 in the distance "
            "graph (zero bandwidth); let scfim build the graph, which collapses exact "
            "duplicates into one state"
        )
    return np.asarray(sig, dtype=np.float64)


def markov_operator(
    K: sp.csr_matrix,
    alpha: float = 1.0,
    *,
    weights: np.ndarray | None = None,
    overwrite: bool = False,
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Anisotropic normalisation and row normalisation of a symmetric kernel.

    ``K_α = Q^{-α} K Q^{-α}`` with ``Q = diag(K 1)``; ``P = diag(K_α 1)^{-1} K_α``.
    With multiplicities ``m`` (``weights``; state i stands for ``m_i`` identical cells):
    ``Q = diag(K m)``, ``d = K_α m`` and ``P = diag(d)^{-1} K_α diag(m)``, the exact
    lumping onto the states of the chain on all the cells.

    Parameters
    ----------
    K
        Symmetric non-negative sparse kernel.
    alpha
        Anisotropy in ``[0, 1]``: 0 keeps the density, 1 removes it (Algorithm 1).
    weights
        Optional positive multiplicities of the states (None: all 1, the unweighted chain).
    overwrite
        Scale ``K`` (a float64 CSR matrix the caller will not use again) in place into P
        instead of a copy of it: the same numbers, without a second kernel in memory.

    Returns
    -------
    P
        Row-stochastic CSR matrix.
    degrees
        ``d``, the row sums of ``K_α`` over all cells (per copy);
        ``m · degrees / (m · degrees).sum()`` is P's stationary distribution (P is
        reversible with respect to it).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if not (overwrite and sp.issparse(K) and K.format == "csr" and K.dtype == np.float64):
        K = sp.csr_matrix(K, dtype=np.float64, copy=True)  # never scale the caller's
    m = None if weights is None else _check_weights(weights, K.shape[0])

    def row_sums() -> np.ndarray:  # K 1, or K m over the copies of each state
        return np.asarray(K.sum(1)).ravel() if m is None else K @ m

    q = row_sums()
    if alpha > 0:
        s = np.power(q, -alpha)
        _scale_entries(K, s, s)  # K_α
    d = row_sums()
    _scale_entries(K, 1.0 / d, m)  # P = diag(d)^{-1} K_α (diag(m))
    return K, d


def _check_weights(weights: np.ndarray, n: int) -> np.ndarray:
    m = np.asarray(weights, dtype=np.float64).ravel()
    if m.shape != (n,) or not np.all(np.isfinite(m)) or np.any(m <= 0):
        raise ValueError("weights must be one positive multiplicity per state")
    return m


def _scale_entries(A: sp.csr_matrix, rows: np.ndarray | None, cols: np.ndarray | None) -> None:
    """``A ← diag(rows) A diag(cols)`` on A's stored entries, in place, in row blocks.

    Entry (i, j) becomes ``(A_ij · rows_i) · cols_j``: the order in which
    ``diags(rows) @ A @ diags(cols)`` multiplies, so the numbers are the same.
    """
    step = max(1, A.shape[0] // 64)
    for r0 in range(0, A.shape[0], step):
        r1 = min(r0 + step, A.shape[0])
        a, b = A.indptr[r0], A.indptr[r1]
        block = A.data[a:b]
        if rows is not None:
            block *= np.repeat(rows[r0:r1], np.diff(A.indptr[r0 : r1 + 1]))
        if cols is not None:
            block *= cols[A.indices[a:b]]


# --------------------------------------------------------------------------- duplicates
@dataclass(frozen=True)
class DistinctStates:
    """Exact duplicate cells grouped into states, numbered by first occurrence.

    Attributes
    ----------
    labels
        ``(n,)`` state of each cell.
    first
        ``(n_distinct,)`` index of the first cell of each state (increasing).
    counts
        ``(n_distinct,)`` multiplicity of each state.
    """

    labels: np.ndarray
    first: np.ndarray
    counts: np.ndarray

    @property
    def n_distinct(self) -> int:
        """Number of distinct cells (states)."""
        return int(self.first.size)

    def membership(self) -> sp.csr_matrix:
        """``n_distinct × n`` 0/1 matrix S with ``S[I, a] = 1`` when cell a is in state I."""
        n = self.labels.size
        return sp.csr_matrix((np.ones(n), (self.labels, np.arange(n))), shape=(self.n_distinct, n))


def distinct_states(X: np.ndarray) -> DistinctStates | None:
    """Group identical rows of ``X``; None when all rows are distinct.

    Rows are compared bit for bit (after mapping −0.0 to 0.0) through a 64-bit hash of
    their bytes; every group is then verified, so a hash collision can never merge two
    different cells (it falls back to an exact sort of the rows).

    Parameters
    ----------
    X
        ``(n, d)`` array (finite values).

    Returns
    -------
    :class:`DistinctStates` or None.
    """
    X = np.asarray(X)
    n = X.shape[0]
    X = X.reshape(n, -1)
    # blocks of rows (float64 temporaries of at most _DISTINCT_BLOCK_ENTRIES numbers), so that
    # no float64 copy of the whole input is made; each row's hash is the same either way
    rows = max(1, _DISTINCT_BLOCK_ENTRIES // max(1, X.shape[1]))
    mult = np.random.default_rng(0x5C1F).integers(1, 2**63, size=X.shape[1], dtype=np.uint64)
    mult |= np.uint64(1)
    h = np.empty(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for s in range(0, n, rows):
            bits = _canonical_float64(X[s : s + rows]).view(np.uint64)
            bits *= mult
            h[s : s + rows] = bits.sum(1, dtype=np.uint64)
        h ^= h >> np.uint64(29)
    _, first, inv, counts = np.unique(h, return_index=True, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    rep = first[inv]
    collision = any(
        not np.array_equal(
            _canonical_float64(X[s : s + rows]), _canonical_float64(X[rep[s : s + rows]])
        )
        for s in range(0, n, rows)
    )
    if collision:  # exact (slower) grouping
        _, first, inv, counts = np.unique(
            _canonical_float64(X),
            axis=0,
            return_index=True,
            return_inverse=True,
            return_counts=True,
        )
        inv = inv.ravel()
    if first.size == n:
        return None
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return DistinctStates(
        labels=rank[inv].astype(np.int64),
        first=first[order].astype(np.int64),
        counts=counts[order].astype(np.int64),
    )


#: Bound on the float64 numbers of one block of rows in :func:`distinct_states` (16 MiB).
_DISTINCT_BLOCK_ENTRIES = 2**21


def _canonical_float64(X: np.ndarray) -> np.ndarray:
    """C-contiguous float64 copy of ``X`` with −0.0 mapped to 0.0 (bit-comparable rows)."""
    out = np.array(X, dtype=np.float64, order="C")
    out += 0.0
    return out


# --------------------------------------------------------------------------- diffusion time
def von_neumann_entropy(eigenvalues: np.ndarray, t_max: int = 100) -> np.ndarray:
    """Von Neumann entropy of the diffused operator for ``t = 1 … t_max`` (PHATE).

    ``H(t) = −Σ pᵢ log pᵢ`` with ``pᵢ = |λᵢ|ᵗ / Σ|λⱼ|ᵗ``.
    """
    lam = np.abs(np.asarray(eigenvalues, dtype=np.float64))
    lam = lam[lam > 0]
    lam = lam / lam.max()
    out = np.empty(t_max)
    for t in range(1, t_max + 1):
        w = lam**t
        p = w / w.sum()
        p = p[p > 0]
        out[t - 1] = -np.sum(p * np.log(p))
    return out


def knee_point(y: np.ndarray, x: np.ndarray | None = None) -> int:
    """Index of the knee of a curve: the split that best fits two straight lines.

    For every split point the left and right parts are each fitted by least squares and
    the split with the smallest total squared error is returned.
    """
    y = np.asarray(y, dtype=np.float64)
    n = y.size
    if n < 5:
        raise ValueError("need at least 5 points to find a knee")
    x = np.arange(n, dtype=np.float64) if x is None else np.asarray(x, dtype=np.float64)

    def sse(xs, ys):
        A = np.column_stack([xs, np.ones_like(xs)])
        coef, *_ = np.linalg.lstsq(A, ys, rcond=None)
        r = ys - A @ coef
        return float(r @ r)

    errs = [sse(x[: i + 1], y[: i + 1]) + sse(x[i:], y[i:]) for i in range(2, n - 2)]
    return int(np.argmin(errs)) + 2


def select_t(symmetric_op, t_max: int = 100, n_eigen: int = 100) -> tuple[int, np.ndarray]:
    """Diffusion time at the knee of the von Neumann entropy curve.

    The entropy is taken over the ``n_eigen`` largest eigenvalues (the slowest diffusion
    modes). Those are what a landmark operator reproduces, so the chosen t barely depends
    on the number of landmarks, whereas the full spectrum's fast modes would shift the knee.

    Parameters
    ----------
    symmetric_op
        Dense symmetric matrix similar to the Markov operator
        (``D^{-1/2} K D^{-1/2}``), at most a few thousand rows.
    t_max
        Largest t considered.
    n_eigen
        Number of leading eigenvalues entering the entropy.

    Returns
    -------
    t, entropy
        The chosen t (≥ 1) and the entropy curve for t = 1 … t_max.
    """
    S = np.asarray(symmetric_op, dtype=np.float64)
    # all eigenvalues by divide and conquer: robust on the clustered spectra of diffusion
    # operators, where LAPACK's subset drivers can be very slow
    lam = np.linalg.eigvalsh(S)[::-1][: min(n_eigen, S.shape[0])]
    h = von_neumann_entropy(lam, t_max)
    t = knee_point(h, np.arange(1, t_max + 1)) + 1
    return int(t), h


#: Rows per block of :func:`symmetrize_inplace` (its temporary is ``rows × n``).
_SYM_BLOCK_ROWS = 256


def symmetrize_inplace(A: np.ndarray) -> np.ndarray:
    """Replace a square array by ``0.5 * (A + A.T)``, in place; returns ``A``.

    The same floating-point operations as the expression (so the same bits, and an exactly
    symmetric result), done by blocks of rows of the upper triangle: the temporary is a
    block of :data:`_SYM_BLOCK_ROWS` rows instead of two more ``n × n`` arrays.
    """
    n = A.shape[0]
    if A.ndim != 2 or A.shape[1] != n:
        raise ValueError("A must be a square matrix")
    for i0 in range(0, n, _SYM_BLOCK_ROWS):
        i1 = min(n, i0 + _SYM_BLOCK_ROWS)
        # rows i0:i1 and columns i0:i1 from i0 on are untouched by the previous blocks
        blk = A[i0:i1, i0:] + A[i0:, i0:i1].T
        blk *= 0.5
        A[i0:i1, i0:] = blk
        A[i0:, i0:i1] = blk.T
    return A


def matrix_power(a: np.ndarray, n: int, *, overwrite_a: bool = False) -> np.ndarray:
    """``a`` to the power ``n ≥ 0``, as :func:`numpy.linalg.matrix_power` computes it.

    The same products in the same order (binary decomposition of ``n``, so the same bits),
    written into reused buffers instead of a new array per product: at most three square
    arrays besides ``a`` are live, two when ``overwrite_a`` allows reusing ``a``'s buffer
    once it is no longer a factor (``a`` is then destroyed). As NumPy's, the result may be
    ``a`` itself (``n = 1``).
    """
    if n < 0:
        raise ValueError("the exponent must be non-negative")
    if n == 0:
        out = np.empty_like(a)
        out[...] = np.eye(a.shape[-1], dtype=a.dtype)
        return out
    if n == 1:
        return a
    if n == 2:
        return np.matmul(a, a)
    if n == 3:
        return np.matmul(np.matmul(a, a), a)
    spare: list[np.ndarray] = []

    def product(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.matmul(x, y, out=spare.pop() if spare else np.empty_like(a))

    def release(x: np.ndarray) -> None:
        if x is not a or overwrite_a:
            spare.append(x)

    z = result = None
    while n > 0:
        if z is None:
            z = a
        else:
            old, z = z, product(z, z)
            if old is not result:
                release(old)
        n, bit = divmod(n, 2)
        if bit:
            if result is None:
                result = z
            else:
                old, result = result, product(result, z)
                release(old)
    return result


# --------------------------------------------------------------------------- landmarks
#: ``n_landmarks="auto"``: at most this many landmarks ...
MAX_LANDMARKS = 2000
#: ... at least this many (below it, the exact operator) ...
MIN_LANDMARKS = 500
#: ... and otherwise one landmark per this many cells.
CELLS_PER_LANDMARK = 6
#: ``knn_method="auto"`` with landmarks: beyond this many distinct cells the landmark
#: clusters serve as the inverted-file index of the kNN search (``"ivf"``), below it the
#: search is exact.
EXACT_KNN_CELLS = 5000


def landmark_count(n: int, n_landmarks: int | str | None = "auto") -> int | None:
    """Number of landmarks for ``n`` cells, or None for the exact operator.

    ``"auto"``: ``L = min(2000, max(500, n // 6))``, and the exact operator when
    ``n ≤ L``. The costs of JSD-PHATE (Jensen–Shannon distances between all landmark rows,
    ``L²`` pairs over ``L`` states) and of the propagator ``P_Lᵗ⁻¹`` grow as ``L³``, so a
    fixed 2000 landmarks make 3000 cells slower than 20 000; with about six cells per
    landmark the embedding of the toy tree keeps its agreement with the true tree
    distances (Spearman 0.44 with 500 landmarks at 3000 cells, 0.44 with 2000, 0.43
    exact). An integer is used as is (landmarks when ``n`` exceeds it); None forces the
    exact operator.
    """
    if n_landmarks is None:
        return None
    if isinstance(n_landmarks, str):
        if n_landmarks != "auto":
            raise ValueError(f"n_landmarks must be an integer, 'auto' or None, got {n_landmarks!r}")
        n_landmarks = min(MAX_LANDMARKS, max(MIN_LANDMARKS, n // CELLS_PER_LANDMARK))
    return int(n_landmarks) if n > n_landmarks else None


def assign_landmarks(
    X: np.ndarray, n_landmarks: int, *, random_state: int | None = 0
) -> np.ndarray:
    """Group cells into ``n_landmarks`` clusters with mini-batch k-means.

    Returns consecutive integer labels ``0 … L-1`` (empty clusters removed).
    """
    from sklearn.cluster import MiniBatchKMeans

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        km = MiniBatchKMeans(
            n_clusters=int(n_landmarks),
            batch_size=max(4096, 3 * int(n_landmarks)),
            n_init=1,
            init="random",
            max_iter=20,
            random_state=random_state,
        ).fit(np.asarray(X, dtype=np.float32))
    _, labels = np.unique(km.labels_, return_inverse=True)
    return labels.astype(np.int64)


# --------------------------------------------------------------------------- operator
@dataclass
class DiffusionOperator:
    """Diffusion operator with rows of Pᵗ available on demand.

    Two modes share one interface. *Exact*: the states are the cells and rows of Pᵗ are
    taken from the sparse one-step matrix. *Landmark*: cells are lumped into ``L``
    clusters; with ``W`` the ``n × L`` membership matrix, the cell-to-landmark transitions
    are ``P W`` and the landmark chain is ``rownorm(Wᵀ diag(π) P W)`` (the exact lumping of
    P with its stationary weights π). A row of Pᵗ over the landmarks is
    ``(P W)[i] · P_L^{t-1}``; when every cell is its own landmark this *is* Pᵗ.

    Attributes
    ----------
    transitions
        Sparse one-step Markov matrix P (n × n).
    degrees
        Stationary weights of P (row sums of the anisotropic kernel).
    t
        Diffusion time.
    landmark_labels
        ``(n,)`` cluster of each cell, or None for the exact operator.
    duplicates_collapsed
        True when the landmarks are the groups of identical cells (see
        :func:`distinct_states`): the lumping is then exact and each cell *is* its state.
    """

    transitions: sp.csr_matrix
    degrees: np.ndarray
    t: int
    landmark_labels: np.ndarray | None = None
    duplicates_collapsed: bool = False
    _cache: dict = field(default_factory=dict, repr=False)

    # ---- structure
    @property
    def n_obs(self) -> int:
        """Number of cells."""
        return self.transitions.shape[0]

    @property
    def is_landmark(self) -> bool:
        """Whether the states are landmarks (else the cells themselves)."""
        return self.landmark_labels is not None

    @property
    def n_states(self) -> int:
        """Length of a row of Pᵗ: the number of landmarks (or cells)."""
        if self.landmark_labels is None:
            return self.n_obs
        return int(self.landmark_labels.max()) + 1

    def membership(self) -> sp.csr_matrix:
        """``n × L`` 0/1 membership matrix of the landmarks."""
        lab = self.landmark_labels
        n = self.n_obs
        return sp.csr_matrix((np.ones(n), (np.arange(n), lab)), shape=(n, self.n_states))

    def cell_to_landmark(self) -> sp.csr_matrix:
        """One-step transitions from cells to landmarks, ``P W`` (n × L)."""
        if "pnm" not in self._cache:
            self._cache["pnm"] = sp.csr_matrix(self.transitions @ self.membership())
        return self._cache["pnm"]

    def _landmark_kernel(self) -> np.ndarray:
        """Dense symmetric lumped kernel ``Wᵀ diag(π) P W`` (L × L, the flow between landmarks)."""
        if "pl_sym_kernel" not in self._cache:
            W = self.membership()
            flow = (W.T @ sp.diags(self.degrees) @ self.cell_to_landmark()).toarray()
            symmetrize_inplace(flow)  # exact symmetry (reversibility) against round-off
            self._cache["pl_sym_kernel"] = flow
        return self._cache["pl_sym_kernel"]

    def landmark_operator(self) -> np.ndarray:
        """Dense one-step lumped chain on the landmarks (L × L, row-stochastic)."""
        if "pl" not in self._cache:
            flow = self._landmark_kernel()
            self._cache["pl"] = flow / flow.sum(1, keepdims=True)
        return self._cache["pl"]

    @contextmanager
    def _scratch(self) -> Iterator[None]:
        """Release, when the block ends, the dense float64 caches built inside it.

        The ``L × L`` matrices (lumped kernel, chain, propagator; ``n × n`` in exact mode)
        are intermediates of one result (the spectrum for t, the float32 propagator of the
        training rows, the landmark rows of JSD-PHATE): a block that builds them frees them
        once its result is made, so that they do not stay resident for the life of the
        operator. What was cached before the block is kept.
        """
        before = set(self._cache)
        try:
            yield
        finally:
            for key in set(self._cache) - before:
                if key in ("pl", "pl_sym_kernel") or (isinstance(key, tuple) and key[0] == "prop"):
                    del self._cache[key]

    def symmetric_form(self) -> np.ndarray:
        """Dense symmetric matrix with the spectrum of the (landmark) operator."""
        if self.is_landmark:
            F = self._landmark_kernel()
            s = 1.0 / np.sqrt(F.sum(1))
            S = F * s[:, None]
        else:
            if self.n_obs > 10_000:
                raise ValueError("refusing to densify an exact operator with > 10 000 cells")
            S = (sp.diags(self.degrees) @ self.transitions).toarray()
            symmetrize_inplace(S)
            s = 1.0 / np.sqrt(S.sum(1))
            S *= s[:, None]
        S *= s[None, :]  # s[:, None] * F * s[None, :], in one array
        return S

    def _propagator(self, keep_chain: bool = True) -> np.ndarray:
        """``P_L^{t-1}`` (landmark mode) or dense ``P^{t-1}`` (exact mode, small n).

        With ``keep_chain=False`` a chain that is not cached yet is built only as the first
        factor of the power and its buffer is reused by the products (one ``L × L`` array
        less at the peak); the power is the same.
        """
        key = ("prop", self.t)
        if key not in self._cache:
            if self.is_landmark and (keep_chain or "pl" in self._cache):
                M, own = self.landmark_operator(), False
            elif self.is_landmark:
                had_kernel = "pl_sym_kernel" in self._cache
                flow = self._landmark_kernel()
                M, own = flow / flow.sum(1, keepdims=True), True  # as in landmark_operator
                del flow
                if not had_kernel:  # not needed past the chain: freed before the products
                    del self._cache["pl_sym_kernel"]
            else:
                if self.n_obs > 10_000:
                    raise ValueError("refusing to densify an exact operator with > 10 000 cells")
                M, own = self.transitions.toarray(), True
            self._cache[key] = matrix_power(M, max(self.t - 1, 0), overwrite_a=own)
        return self._cache[key]

    # ---- rows of P^t
    def rows(self, idx, dtype=np.float64) -> np.ndarray:
        """Rows of Pᵗ for the cells ``idx`` as probability vectors over the states.

        Parameters
        ----------
        idx
            Integer indices (or a boolean mask) of cells.
        dtype
            ``np.float64`` (default) or ``np.float32``. In float32 the product runs as a
            torch CSR × dense product (about 4× faster than scipy's float64 one on 20 000
            cells and 2000 states; relative error ~1e-7), which is what neural-FIM
            training uses for its pools of rows.

        Returns
        -------
        ``(len(idx), n_states)`` array of ``dtype`` whose rows sum to 1.
        """
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        first = self.cell_to_landmark() if self.is_landmark else self.transitions
        if np.dtype(dtype) == np.float32:
            R = self._rows_float32(first[idx])
        else:
            R = np.asarray(first[idx] @ self._propagator())  # sparse @ dense: nnz·L, not b·n·L
        np.clip(R, 0.0, None, out=R)
        R /= R.sum(1, keepdims=True)
        return R

    def _rows_float32(self, first: sp.csr_matrix) -> np.ndarray:
        """``first @ propagator`` in float32, as a torch CSR × dense product."""
        import torch

        if "prop32" not in self._cache or self._cache["prop32"][0] != self.t:
            with self._scratch():  # only the float32 copy stays (training holds it for long)
                P64 = self._propagator(keep_chain=False)
                P = torch.from_numpy(np.ascontiguousarray(P64, dtype=np.float32))
                del P64
            self._cache["prop32"] = (self.t, P)
        P = self._cache["prop32"][1]
        F = sp.csr_matrix(first, dtype=np.float32)
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            Ft = torch.sparse_csr_tensor(
                torch.from_numpy(F.indptr.astype(np.int64)),
                torch.from_numpy(F.indices.astype(np.int64)),
                torch.from_numpy(F.data),
                size=F.shape,
                check_invariants=False,
            )
            return (Ft @ P).numpy()

    def rows_from(self, first_step: sp.spmatrix) -> np.ndarray:
        """Rows of Pᵗ for points outside the chain, from their one-step transitions.

        Parameters
        ----------
        first_step
            ``(m, n_obs)`` row-stochastic transitions from the points to the cells, e.g.
            from :func:`extend_transitions`; for a cell of the chain its row of P.

        Returns
        -------
        ``(m, n_states)`` float64 array whose rows sum to 1.
        """
        T = sp.csr_matrix(first_step, dtype=np.float64)
        if T.shape[1] != self.n_obs:
            raise ValueError(f"first_step has {T.shape[1]} columns, the chain {self.n_obs} cells")
        if self.is_landmark:
            T = sp.csr_matrix(T @ self.membership())
        R = np.asarray(T @ self._propagator())
        np.clip(R, 0.0, None, out=R)
        R /= R.sum(1, keepdims=True)
        return R

    def landmark_rows(self) -> np.ndarray:
        """Rows of Pᵗ of the states themselves (``P_L^t``, or Pᵗ in exact mode).

        The dense intermediates this builds are released afterwards (they are kept when
        they were already cached, e.g. by :meth:`rows_from`).
        """
        with self._scratch():
            if not self.is_landmark:
                return self.rows(np.arange(self.n_obs))
            had_kernel = "pl_sym_kernel" in self._cache
            M = self.landmark_operator()
            if not had_kernel:  # not needed past the chain: freed before the products
                del self._cache["pl_sym_kernel"]
            R = M @ self._propagator()
        np.clip(R, 0.0, None, out=R)
        R /= R.sum(1, keepdims=True)
        return R

    def select_t(self, t_max: int = 100) -> tuple[int, np.ndarray]:
        """Knee of the von Neumann entropy of this operator (see :func:`select_t`)."""
        with self._scratch():  # the lumped kernel is freed before the eigenvalues are taken
            S = self.symmetric_form()
        return select_t(S, t_max)


def build_operator(
    X: np.ndarray | None = None,
    *,
    distances: sp.csr_matrix | None = None,
    n_neighbors: int = 15,
    kernel: str = "alpha_decay",
    decay: float = 40.0,
    sigma: float | None = None,
    alpha: float = 1.0,
    t: int | str = "auto",
    n_landmarks: int | str | None = "auto",
    knn_method: str = "auto",
    t_max: int = 100,
    random_state: int | None = 0,
) -> tuple[DiffusionOperator, dict]:
    """Build a :class:`DiffusionOperator` from data or from a precomputed kNN graph.

    Parameters
    ----------
    X
        ``(n, d)`` input representation (needed for the kNN search unless ``distances`` is
        given, and for landmark clustering).
    distances
        Optional precomputed kNN distance graph (e.g. scanpy's).
    n_neighbors, kernel, decay, sigma
        See :func:`affinity_kernel`.
    alpha
        Anisotropy, see :func:`markov_operator`.
    t
        Diffusion time (int ≥ 1) or ``"auto"``.
    n_landmarks
        ``"auto"`` (see :func:`landmark_count`: 500 to 2000 landmarks, about one per six
        cells), or use a landmark operator with this many clusters when ``n > n_landmarks``;
        None forces the exact operator.
    knn_method
        See :func:`~scfim.geometry.graph.knn_graph`. ``"auto"`` with landmarks and more than
        5000 distinct cells reuses the landmark clusters as the index of an ``"ivf"`` search
        (recall of the 45 nearest neighbours 0.999 on the 20 000-cell toy tree, about 5×
        faster than the exact search and without its blocks of distances); otherwise
        ``knn_graph``'s own ``"auto"``.
    t_max
        Largest t considered by ``"auto"``.
    random_state
        Seed for the kNN search and the landmark clustering.

    Returns
    -------
    operator, info
        ``info`` holds the von Neumann entropy curve (``"entropy"``) when t was automatic,
        ``"n_distinct"`` (number of distinct cells) and, per cell, what
        :func:`extend_transitions` needs: ``"bandwidths"`` (σ_k, alpha-decay kernel),
        ``"radii"`` (distance to the farthest neighbour searched) and ``"kernel_degrees"``
        (``Q``, the kernel's row sums over all cells).

    Notes
    -----
    Without a precomputed graph, exact duplicates in ``X`` are collapsed (see the module
    notes); the landmark mode is used when the *distinct* cells outnumber
    ``n_landmarks``.
    """
    n = X.shape[0] if X is not None else distances.shape[0]
    states = distinct_states(X) if distances is None and X is not None else None
    n_distinct = n if states is None else states.n_distinct
    labels = None
    n_landmarks = landmark_count(n_distinct, n_landmarks)
    if n_landmarks is not None:
        if X is None:
            raise ValueError("landmark clustering needs the input representation X")
        labels = assign_landmarks(X, n_landmarks, random_state=random_state)
    built_here = distances is None
    if distances is None:
        if X is None:
            raise ValueError("need X or a precomputed distance graph")
        Xd = X if states is None else X[states.first]
        k_search = min(n_distinct - 1, (3 if kernel == "alpha_decay" else 4) * n_neighbors)
        if knn_method == "auto" and labels is not None and n_distinct > EXACT_KNN_CELLS:
            # the landmark k-means is already paid for: it is the inverted-file index
            knn_method = "ivf"
        distances = knn_graph(
            Xd,
            k_search,
            method=knn_method,
            clusters=labels if labels is None or states is None else labels[states.first],
            random_state=random_state,
        )
    info: dict = {"n_distinct": n_distinct}
    per_state = {
        "radii": _row_max(distances),
        "bandwidths": kernel_bandwidths(distances, n_neighbors)
        if kernel == "alpha_decay"
        else None,
    }
    # a graph searched here is handed over to the kernel, and the kernel to P: neither is
    # needed after, and the copies would be the peak of the memory (three kernels' worth)
    K = affinity_kernel(
        distances,
        kernel=kernel,
        n_neighbors=n_neighbors,
        decay=decay,
        sigma=sigma,
        bandwidths=per_state["bandwidths"],
        overwrite=built_here,
    )
    del distances
    if states is None:
        per_state["kernel_degrees"] = np.asarray(K.sum(1)).ravel()
        P, deg = markov_operator(K, alpha, overwrite=True)
        del K
        op = DiffusionOperator(P, deg, 1, labels)
    else:
        m = states.counts.astype(np.float64)
        per_state["kernel_degrees"] = K @ m
        P_states, deg_states = markov_operator(K, alpha, weights=m, overwrite=True)
        del K
        P = _expand_to_cells(P_states, states)
        deg = deg_states[states.labels]
        if labels is None:
            op = DiffusionOperator(P, deg, 1, states.labels.copy(), duplicates_collapsed=True)
        else:
            op = DiffusionOperator(P, deg, 1, labels)
    for k, v in per_state.items():
        if v is not None:
            info[k] = v if states is None else v[states.labels]
    if isinstance(t, str):
        if t != "auto":
            raise ValueError(f"t must be a positive integer or 'auto', got {t!r}")
        t_sel, h = op.select_t(t_max)
        op.t = t_sel
        info["entropy"] = h
    else:
        op.t = int(t)
    return op, info


def _row_max(distances: sp.csr_matrix) -> np.ndarray:
    D = sp.csr_matrix(distances)
    return np.maximum.reduceat(D.data, D.indptr[:-1]).astype(np.float64)


def _expand_to_cells(P_states: sp.csr_matrix, states: DistinctStates) -> sp.csr_matrix:
    """Cell-level chain of the lumped one.

    A cell of state I moves to each copy of state J with probability ``P_states[I, J] / m_J``.
    """
    S = states.membership()
    pattern = sp.csr_matrix(P_states, copy=True)
    pattern.data[:] = 1.0
    m = states.counts.astype(np.float64)
    n_entries = float(m @ (pattern @ m))
    if n_entries > _MAX_EXPANDED_ENTRIES:
        raise ValueError(
            f"the cell-level transition matrix of these duplicates would hold {n_entries:.3g} "
            f"entries (limit {_MAX_EXPANDED_ENTRIES:.0e}): some cells have very many identical "
            "copies; aggregate them first"
        )
    P = S.T @ (sp.csr_matrix(P_states) @ sp.diags(1.0 / m)) @ S
    P = sp.csr_matrix(P)
    P.sort_indices()
    return P


def extend_transitions(
    X: np.ndarray,
    X_new: np.ndarray,
    *,
    kernel_degrees: np.ndarray,
    radii: np.ndarray,
    bandwidths: np.ndarray | None = None,
    kernel: str = "alpha_decay",
    n_neighbors: int = 15,
    decay: float = 40.0,
    sigma: float | None = None,
    alpha: float = 1.0,
    threshold: float = _KERNEL_THRESHOLD,
    return_matches: bool = False,
) -> sp.csr_matrix | tuple[sp.csr_matrix, np.ndarray]:
    """One-step transitions from new points to the cells of a fitted chain.

    A new point x is connected as if it had been one more cell: its kernel to a cell j is
    ``½ [k_x(x, j) + k_j(x, j)]``, with ``k_x`` its own alpha-decay bandwidth (distance to
    its k-th nearest distinct cell) applied to its nearest cells and ``k_j`` cell j's
    bandwidth when x lies within j's searched neighbourhood (``radii``), each below
    ``threshold`` dropped, exactly as :func:`affinity_kernel` symmetrises (Gaussian:
    ``exp(-d² / σ)`` on the same edges). A point at distance 0 from a cell is that cell's
    state (affinity 1, the self-loop). The anisotropic weights use the fitted
    ``kernel_degrees`` ``Q``; ``x``'s own ``Q^{-α}`` cancels in the row normalisation. For
    a cell of the chain the result is its row of P (up to neighbours found only from the
    other side beyond twice the searched neighbourhood).

    Parameters
    ----------
    X
        ``(n, d)`` input representation of the fitted chain's cells.
    X_new
        ``(m, d)`` new points in the same representation.
    kernel_degrees, radii, bandwidths
        Per-cell values returned by :func:`build_operator` in ``info``.
    kernel, n_neighbors, decay, sigma, alpha, threshold
        The fitted chain's kernel parameters.
    return_matches
        Also return, for each new point, the first fitted cell identical to it (-1: none).

    Returns
    -------
    ``(m, n)`` row-stochastic CSR matrix (and the ``(m,)`` matches).
    """
    X = np.asarray(X, dtype=np.float64)
    X_new = np.asarray(X_new, dtype=np.float64)
    if X_new.ndim != 2 or X_new.shape[1] != X.shape[1]:
        raise ValueError(f"X_new must have {X.shape[1]} columns, got shape {X_new.shape}")
    states = distinct_states(X)
    first = np.arange(X.shape[0]) if states is None else states.first
    m_states = np.ones(first.size) if states is None else states.counts.astype(np.float64)
    Xd = X[first]
    n_d = Xd.shape[0]
    k_search = min(n_d - 1, (3 if kernel == "alpha_decay" else 4) * n_neighbors)
    n_cand = min(n_d, 2 * k_search + 1)
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=n_cand).fit(Xd).kneighbors(X_new)
    dist = _exact_distances(X_new, Xd, idx)
    order = np.argsort(dist, axis=1, kind="stable")
    dist, idx = np.take_along_axis(dist, order, 1), np.take_along_axis(idx, order, 1)
    same = dist <= 0.0
    # own neighbourhood: the k_search nearest cells other than its own state
    rank = np.cumsum(~same, axis=1)
    own = ~same & (rank <= k_search)
    theirs = ~same & (dist <= np.asarray(radii, dtype=np.float64)[first][idx])
    if kernel == "alpha_decay":
        pos = np.where(own, dist, np.inf)
        kth = min(n_neighbors, k_search)
        sig_x = np.sort(pos, axis=1)[:, kth - 1]
        sig_j = np.asarray(bandwidths, dtype=np.float64)[first][idx]
        k_own = np.exp(-np.power(dist / sig_x[:, None], decay))
        k_theirs = np.exp(-np.power(dist / sig_j, decay))
    elif kernel == "gaussian":
        k_own = k_theirs = np.exp(-(dist**2) / float(sigma))
    else:
        raise ValueError(f"unknown kernel {kernel!r}; use 'alpha_decay' or 'gaussian'")
    k_own = np.where(own & (k_own >= threshold), k_own, 0.0)
    k_theirs = np.where(theirs & (k_theirs >= threshold), k_theirs, 0.0)
    Kx = np.where(same, 1.0, 0.5 * (k_own + k_theirs))
    q = np.asarray(kernel_degrees, dtype=np.float64)[first][idx]
    W = Kx * np.power(q, -alpha) if alpha > 0 else Kx
    W = W * m_states[idx]
    rs = W.sum(1)
    if np.any(rs <= 0):
        bad = int(np.sum(rs <= 0))
        raise ValueError(
            f"{bad} new points have no affinity to any fitted cell (too far from the data "
            "for this kernel)"
        )
    W /= rs[:, None]
    m = X_new.shape[0]
    T_states = sp.csr_matrix(
        (W.ravel(), idx.ravel(), np.arange(0, m * n_cand + 1, n_cand)), shape=(m, n_d)
    )
    T_states.eliminate_zeros()
    if states is None:
        T_states.sort_indices()
        T = T_states
    else:
        T = sp.csr_matrix(T_states @ sp.diags(1.0 / m_states) @ states.membership())
    if not return_matches:
        return T
    matches = np.where(same[:, 0], first[idx[:, 0]], -1)
    return T, matches


def _exact_distances(A: np.ndarray, B: np.ndarray, idx: np.ndarray) -> np.ndarray:
    out = np.empty(idx.shape)
    for s in range(0, A.shape[0], 4096):
        diff = A[s : s + 4096, None, :] - B[idx[s : s + 4096]]
        out[s : s + 4096] = np.sqrt((diff * diff).sum(-1))
    return out
