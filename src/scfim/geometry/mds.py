"""Classical and metric multidimensional scaling (pure NumPy/SciPy/torch)."""

from __future__ import annotations

import numba
import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg

from .diffusion import symmetrize_inplace

__all__ = ["classical_mds", "metric_mds", "stress", "interpolate", "place_points"]


def _fix_signs(Y: np.ndarray) -> np.ndarray:
    """Make each axis' largest-magnitude coordinate positive (deterministic output)."""
    j = np.argmax(np.abs(Y), axis=0)
    s = np.sign(Y[j, np.arange(Y.shape[1])])
    s[s == 0] = 1.0
    return Y * s


def classical_mds(D: np.ndarray, n_components: int = 2) -> np.ndarray:
    """Classical (Torgerson) MDS of a distance matrix.

    Parameters
    ----------
    D
        ``(n, n)`` symmetric matrix of distances.
    n_components
        Output dimension.

    Returns
    -------
    ``(n, n_components)`` coordinates; axes with non-positive eigenvalues are zero.
    """
    D = np.asarray(D, dtype=np.float64)
    n = D.shape[0]
    if n_components >= n:
        raise ValueError(f"n_components={n_components} must be smaller than the {n} points")
    # the double centring -0.5 (D² - r 1ᵀ - 1 rᵀ + mean r) and its symmetrisation, in place
    # in one n × n array (the same operations in the same order as the expression)
    B = D**2
    rm = B.mean(1)
    B -= rm[:, None]
    B -= rm[None, :]
    B += rm.mean()
    B *= -0.5
    symmetrize_inplace(B)
    if n_components < n - 1 and n > 50:
        # Lanczos for the leading eigenpairs (LAPACK's subset driver can be very slow on the
        # clustered spectra that saturated JS distances produce); fixed start vector so the
        # result is deterministic
        w, V = scipy.sparse.linalg.eigsh(B, k=n_components, which="LA", v0=np.ones(n))
    else:
        w, V = scipy.linalg.eigh(B, subset_by_index=[n - n_components, n - 1])
    order = np.argsort(w)[::-1]
    w, V = w[order], V[:, order]
    Y = V * np.sqrt(np.clip(w, 0.0, None))
    return _fix_signs(Y)


def stress(D: np.ndarray, Y: np.ndarray) -> float:
    """Kruskal's normalised stress-1 ``sqrt(Σ (d_ij − ‖y_i − y_j‖)² / Σ d_ij²)`` (float64)."""
    D = np.ascontiguousarray(D, dtype=np.float64)
    Yt = np.ascontiguousarray(np.asarray(Y, dtype=np.float64).T)
    raw = 2.0 * _guttman_step(D, Yt, np.empty_like(Yt))
    return float(np.sqrt(raw / max(np.einsum("ij,ij->", D, D), 1e-300)))  # no n × n temporary


@numba.njit(parallel=True, fastmath=True, cache=True)
def _guttman_step(D, Yt, Ynew_t):  # pragma: no cover - compiled
    """One SMACOF (Guttman) update, fused: returns the raw stress at ``Y``.

    Coordinates are stored axis-major (``Yt`` is ``(k, n)``) and the ratio is branch-free,
    so that every inner loop runs over contiguous memory and vectorises (about 2× faster
    than a loop over the pairs with the coordinates innermost).
    """
    k, n = Yt.shape
    row_stress = np.zeros(n)
    for i in numba.prange(n):
        e2 = np.zeros(n)
        for c in range(k):
            yc = Yt[c, i]
            row = Yt[c]
            for j in range(n):
                t = yc - row[j]
                e2[j] += t * t
        Di = D[i]
        r = np.empty(n)
        bsum = 0.0
        st = 0.0
        for j in range(n):
            e = np.sqrt(e2[j])
            # the ratio d_ij / e_ij, 0 for coincident points (and for j = i)
            rj = Di[j] / max(e, 1e-12) * (e > 1e-12)
            r[j] = rj
            bsum += rj
            st += (e - Di[j]) ** 2
        for c in range(k):
            row = Yt[c]
            acc = 0.0
            for j in range(n):
                acc += r[j] * row[j]
            Ynew_t[c, i] = (bsum * Yt[c, i] - acc) / n
        row_stress[i] = st
    return 0.5 * row_stress.sum()


def metric_mds(
    D: np.ndarray,
    n_components: int = 2,
    *,
    init: np.ndarray | None = None,
    max_iter: int = 300,
    tol: float = 1e-5,
) -> tuple[np.ndarray, float]:
    """Metric MDS by SMACOF (Guttman transform), started from classical MDS.

    Minimises the raw stress ``Σ_{i<j} (d_ij − ‖y_i − y_j‖)²`` (de Leeuw 1977); stops when
    the relative decrease of the stress between iterations falls below ``tol``. Each
    iteration is one fused, parallel pass over the pairs (no ``n × n`` temporaries).

    Parameters
    ----------
    D
        ``(n, n)`` symmetric distance matrix.
    n_components
        Output dimension.
    init
        Starting coordinates; classical MDS when None.
    max_iter, tol
        Iteration limit and relative tolerance.

    Returns
    -------
    Y, stress1
        Coordinates ``(n, n_components)`` and the final normalised stress-1.
    """
    D = np.ascontiguousarray(D, dtype=np.float64)
    if D.ndim != 2 or D.shape[0] != D.shape[1]:
        raise ValueError("D must be a square matrix")
    if not np.all(np.isfinite(D)):
        raise ValueError("D contains NaN or infinite values")
    Y = classical_mds(D, n_components) if init is None else np.array(init, dtype=np.float64)
    Yt = np.ascontiguousarray(Y.T)
    Ynew_t = np.empty_like(Yt)
    prev = np.inf
    for _ in range(max_iter):
        cur = _guttman_step(D, Yt, Ynew_t)
        if np.isfinite(prev) and prev - cur <= tol * prev:
            break
        prev = cur
        Yt, Ynew_t = Ynew_t, Yt
    Y = np.ascontiguousarray(Yt.T)
    return _fix_signs(Y), stress(D, Y)


def interpolate(transitions: sp.spmatrix, Y_landmarks: np.ndarray) -> np.ndarray:
    """Place cells by the transition-weighted average of landmark coordinates (PHATE)."""
    T = sp.csr_matrix(transitions)
    rs = np.asarray(T.sum(1)).ravel()
    rs[rs == 0] = 1.0
    return np.asarray(sp.diags(1.0 / rs) @ T @ Y_landmarks)


def place_points(
    D_new: np.ndarray,
    Y_ref: np.ndarray,
    *,
    init: np.ndarray | None = None,
    max_iter: int = 300,
    tol: float = 1e-7,
    batch_size: int = 256,
) -> np.ndarray:
    """Out-of-sample metric MDS: place new points against fixed reference coordinates.

    Each new point y independently minimises its stress ``Σ_j (d_j − ‖y − y_j‖)²`` to the
    reference points by the single-point Guttman (SMACOF) update
    ``y ← (1/n) Σ_j [y_j + d_j (y − y_j) / ‖y − y_j‖]``, which never increases that stress.
    A fixed point of the full SMACOF iteration is also a fixed point of this update, so a
    reference point placed against the others returns (to the accuracy the reference fit
    converged to) its own coordinates.

    Parameters
    ----------
    D_new
        ``(m, n)`` target distances from the new points to the reference points.
    Y_ref
        ``(n, k)`` reference coordinates.
    init
        ``(m, k)`` starting positions (e.g. :func:`interpolate`); the reference centroid
        when None.
    max_iter, tol
        Iteration limit and relative tolerance on the stress of each batch.
    batch_size
        New points updated together (memory ``batch_size × n × k``).

    Returns
    -------
    ``(m, k)`` coordinates.
    """
    D_new = np.asarray(D_new, dtype=np.float64)
    Y_ref = np.asarray(Y_ref, dtype=np.float64)
    m, n = D_new.shape
    if Y_ref.ndim != 2 or Y_ref.shape[0] != n:
        raise ValueError(f"Y_ref must have {n} rows (one per column of D_new)")
    if not np.all(np.isfinite(D_new)):
        raise ValueError("D_new contains NaN or infinite values")
    Y = (
        np.repeat(Y_ref.mean(0, keepdims=True), m, axis=0)
        if init is None
        else np.array(init, dtype=np.float64)
    )
    if Y.shape != (m, Y_ref.shape[1]):
        raise ValueError(f"init must have shape {(m, Y_ref.shape[1])}, got {Y.shape}")
    for s in range(0, m, batch_size):
        y, d = Y[s : s + batch_size], D_new[s : s + batch_size]
        prev = np.inf
        for _ in range(max_iter):
            diff = y[:, None, :] - Y_ref[None]
            e = np.sqrt((diff * diff).sum(-1))
            cur = float(((e - d) ** 2).sum())
            if np.isfinite(prev) and prev - cur <= tol * prev:
                break
            prev = cur
            r = np.where(e > 1e-12, d / np.maximum(e, 1e-12), 0.0)
            y = Y_ref.mean(0) + (r[:, :, None] * diff).mean(1)
        Y[s : s + batch_size] = y
    return Y
