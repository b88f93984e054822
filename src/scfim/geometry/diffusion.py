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
"""

from __future__ import annotations

import warnings
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
    "assign_landmarks",
    "DiffusionOperator",
    "build_operator",
]

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

    Returns
    -------
    Symmetric ``(n, n)`` CSR matrix ``K = (K₀ + K₀ᵀ) / 2`` with unit diagonal.
    """
    D = sp.csr_matrix(distances, dtype=np.float64, copy=True)  # never mutate the caller's
    D.sort_indices()
    n = D.shape[0]
    counts = np.diff(D.indptr)
    if np.any(counts == 0):
        raise ValueError("every cell needs at least one neighbour in the distance graph")
    data = D.data
    if kernel == "alpha_decay":
        # σ_k(x) = distance to the k-th nearest neighbour (or the farthest stored one)
        # rows may be unsorted by distance (e.g. scanpy's graph): sort within each row
        row_ids = np.repeat(np.arange(n), counts)
        sorted_d = data[np.lexsort((data, row_ids))]
        kth = np.minimum(counts, n_neighbors) - 1
        sig = sorted_d[D.indptr[:-1] + kth]
        if np.any(sig <= 0):
            raise ValueError(
                "some cells have n_neighbors or more exact duplicates (zero bandwidth); "
                "remove duplicated cells first"
            )
        vals = np.exp(-np.power(data / sig[row_ids], decay))
    elif kernel == "gaussian":
        if sigma is None or not np.isfinite(sigma) or sigma <= 0:
            raise ValueError("the Gaussian kernel needs a bandwidth sigma > 0")
        vals = np.exp(-(data**2) / float(sigma))
    else:
        raise ValueError(f"unknown kernel {kernel!r}; use 'alpha_decay' or 'gaussian'")
    K0 = sp.csr_matrix((vals, D.indices.copy(), D.indptr.copy()), shape=(n, n))
    K0.data[K0.data < threshold] = 0.0
    K0.eliminate_zeros()
    K = ((K0 + K0.T) * 0.5).tocsr()
    K.setdiag(1.0)
    K.eliminate_zeros()
    K.sort_indices()
    return K


def markov_operator(K: sp.csr_matrix, alpha: float = 1.0) -> tuple[sp.csr_matrix, np.ndarray]:
    """Anisotropic normalisation and row normalisation of a symmetric kernel.

    ``K_α = Q^{-α} K Q^{-α}`` with ``Q = diag(K 1)``; ``P = diag(K_α 1)^{-1} K_α``.

    Parameters
    ----------
    K
        Symmetric non-negative sparse kernel.
    alpha
        Anisotropy in ``[0, 1]``: 0 keeps the density, 1 removes it (Algorithm 1).

    Returns
    -------
    P
        Row-stochastic CSR matrix.
    degrees
        Row sums of ``K_α``; ``degrees / degrees.sum()`` is P's stationary distribution
        (P is reversible with respect to it).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    K = sp.csr_matrix(K, dtype=np.float64)
    q = np.asarray(K.sum(1)).ravel()
    if alpha > 0:
        s = np.power(q, -alpha)
        Ka = sp.diags(s) @ K @ sp.diags(s)
    else:
        Ka = K
    Ka = sp.csr_matrix(Ka)
    d = np.asarray(Ka.sum(1)).ravel()
    P = sp.diags(1.0 / d) @ Ka
    return sp.csr_matrix(P), d


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


# --------------------------------------------------------------------------- landmarks
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
    """

    transitions: sp.csr_matrix
    degrees: np.ndarray
    t: int
    landmark_labels: np.ndarray | None = None
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

    def landmark_operator(self) -> np.ndarray:
        """Dense one-step lumped chain on the landmarks (L × L, row-stochastic)."""
        if "pl" not in self._cache:
            W = self.membership()
            flow = W.T @ sp.diags(self.degrees) @ self.cell_to_landmark()
            flow = np.asarray(flow.todense())
            flow = 0.5 * (flow + flow.T)  # exact symmetry (reversibility) against round-off
            self._cache["pl_sym_kernel"] = flow
            self._cache["pl"] = flow / flow.sum(1, keepdims=True)
        return self._cache["pl"]

    def symmetric_form(self) -> np.ndarray:
        """Dense symmetric matrix with the spectrum of the (landmark) operator."""
        if self.is_landmark:
            self.landmark_operator()
            F = self._cache["pl_sym_kernel"]
        else:
            if self.n_obs > 10_000:
                raise ValueError("refusing to densify an exact operator with > 10 000 cells")
            F = np.asarray((sp.diags(self.degrees) @ self.transitions).todense())
            F = 0.5 * (F + F.T)
        d = F.sum(1)
        s = 1.0 / np.sqrt(d)
        return s[:, None] * F * s[None, :]

    def _propagator(self) -> np.ndarray:
        """``P_L^{t-1}`` (landmark mode) or dense ``P^{t-1}`` (exact mode, small n)."""
        key = ("prop", self.t)
        if key not in self._cache:
            if self.is_landmark:
                M = self.landmark_operator()
            else:
                if self.n_obs > 10_000:
                    raise ValueError("refusing to densify an exact operator with > 10 000 cells")
                M = np.asarray(self.transitions.todense())
            self._cache[key] = np.linalg.matrix_power(M, max(self.t - 1, 0))
        return self._cache[key]

    # ---- rows of P^t
    def rows(self, idx) -> np.ndarray:
        """Rows of Pᵗ for the cells ``idx`` as probability vectors over the states.

        Parameters
        ----------
        idx
            Integer indices (or a boolean mask) of cells.

        Returns
        -------
        ``(len(idx), n_states)`` float64 array whose rows sum to 1.
        """
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        first = self.cell_to_landmark() if self.is_landmark else self.transitions
        R = np.asarray(first[idx] @ self._propagator())  # sparse @ dense: nnz·L, not b·n·L
        np.clip(R, 0.0, None, out=R)
        R /= R.sum(1, keepdims=True)
        return R

    def landmark_rows(self) -> np.ndarray:
        """Rows of Pᵗ of the states themselves (``P_L^t``, or Pᵗ in exact mode)."""
        if not self.is_landmark:
            return self.rows(np.arange(self.n_obs))
        R = self.landmark_operator() @ self._propagator()
        np.clip(R, 0.0, None, out=R)
        return R / R.sum(1, keepdims=True)

    def select_t(self, t_max: int = 100) -> tuple[int, np.ndarray]:
        """Knee of the von Neumann entropy of this operator (see :func:`select_t`)."""
        return select_t(self.symmetric_form(), t_max)


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
    n_landmarks: int | None = 2000,
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
        Use a landmark operator with this many clusters when ``n > n_landmarks``; None
        forces the exact operator.
    knn_method
        See :func:`knn_graph`.
    t_max
        Largest t considered by ``"auto"``.
    random_state
        Seed for the kNN search and the landmark clustering.

    Returns
    -------
    operator, info
        ``info`` holds the von Neumann entropy curve (``"entropy"``) when t was automatic.
    """
    n = X.shape[0] if X is not None else distances.shape[0]
    labels = None
    if n_landmarks is not None and n > n_landmarks:
        if X is None:
            raise ValueError("landmark clustering needs the input representation X")
        labels = assign_landmarks(X, n_landmarks, random_state=random_state)
    if distances is None:
        if X is None:
            raise ValueError("need X or a precomputed distance graph")
        k_search = min(n - 1, (3 if kernel == "alpha_decay" else 4) * n_neighbors)
        distances = knn_graph(
            X, k_search, method=knn_method, clusters=labels, random_state=random_state
        )
    K = affinity_kernel(distances, kernel=kernel, n_neighbors=n_neighbors, decay=decay, sigma=sigma)
    P, deg = markov_operator(K, alpha)
    op = DiffusionOperator(P, deg, 1, labels)
    info: dict = {}
    if isinstance(t, str):
        if t != "auto":
            raise ValueError(f"t must be a positive integer or 'auto', got {t!r}")
        t_sel, h = op.select_t(t_max)
        op.t = t_sel
        info["entropy"] = h
    else:
        op.t = int(t)
    return op, info
