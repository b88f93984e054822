"""Divergences between discrete probability distributions (rows of a Markov operator).

All functions are batched over leading dimensions, accept NumPy arrays or torch
tensors, and are safe at the boundary of the simplex: ``0 log 0`` is taken as 0 and
no ``log(0)`` is ever evaluated.  The square root of a divergence is clamped away from 0
before it is taken, so its gradient stays finite when two distributions coincide.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import scipy.sparse as sp
import torch

__all__ = [
    "LOG2",
    "kl",
    "js",
    "sqrt_js",
    "fisher_rao",
    "pairwise_js",
]

LOG2 = math.log(2.0)
_SQRT_EPS = 1e-12


def _as_tensor(x):
    if isinstance(x, torch.Tensor):
        return x, False
    return torch.as_tensor(np.asarray(x, dtype=np.float64)), True


def _xlogy(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``x * log(y)`` with ``0 * log(anything) = 0`` and no evaluation of ``log(0)``.

    ``torch.xlogy`` already returns 0 where ``x == 0``, but its gradient w.r.t. ``y`` is
    ``x / y``, which is NaN at ``x = y = 0``; masking ``y`` keeps every gradient finite.
    """
    safe_y = torch.where(x > 0, y, torch.ones_like(y))
    return torch.xlogy(x, safe_y)


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -_xlogy(p, p).sum(-1)


def kl(p, q):
    """Kullback–Leibler divergence ``KL(p || q) = Σ p log(p / q)`` along the last axis.

    Entries with ``p = 0`` contribute 0.  Where ``p > 0`` and ``q = 0`` the divergence is
    ``+inf`` (that is what it is); use :func:`js` for a bounded symmetric divergence.

    Parameters
    ----------
    p, q
        Arrays or tensors of probabilities of the same (broadcastable) shape ``(..., k)``.

    Returns
    -------
    Array or tensor of shape ``(...)`` (same type as ``p``).
    """
    pt, was_np = _as_tensor(p)
    qt, _ = _as_tensor(q)
    qt = qt.to(pt.dtype)
    out = (_xlogy(pt, pt) - _xlogy(pt, qt)).sum(-1)
    return out.numpy() if was_np else out


def js(p, q):
    """Jensen–Shannon divergence ``½ KL(p‖m) + ½ KL(q‖m)``, ``m = (p + q) / 2`` (natural log).

    Symmetric, zero iff ``p == q`` and bounded by ``log 2``.  Computed as
    ``H(m) − (H(p) + H(q)) / 2`` with guarded logarithms and clipped to ``[0, log 2]``
    against round-off.
    """
    pt, was_np = _as_tensor(p)
    qt, _ = _as_tensor(q)
    qt = qt.to(pt.dtype)
    m = 0.5 * (pt + qt)
    out = _entropy(m) - 0.5 * (_entropy(pt) + _entropy(qt))
    out = out.clamp(0.0, LOG2)
    return out.numpy() if was_np else out


def sqrt_js(p, q, eps: float = _SQRT_EPS):
    """Jensen–Shannon *distance* ``sqrt(JS(p, q))`` with a gradient-safe square root.

    The divergence is clamped to at least ``eps`` before the square root, so the value at
    ``p == q`` is ``sqrt(eps)`` (1e-6 by default) and the gradient is finite everywhere.
    """
    pt, was_np = _as_tensor(p)
    qt, _ = _as_tensor(q)
    out = torch.sqrt(js(pt, qt).clamp_min(eps))
    return out.numpy() if was_np else out


def fisher_rao(p, q):
    """Fisher–Rao geodesic distance on the probability simplex.

    With the Fisher information metric ``Σ dp_k² / p_k`` the simplex is isometric to a
    piece of the sphere of radius 2, so ``d(p, q) = 2 arccos(Σ sqrt(p_k q_k))``.
    """
    pt, was_np = _as_tensor(p)
    qt, _ = _as_tensor(q)
    qt = qt.to(pt.dtype)
    bc = torch.sqrt((pt * qt).clamp_min(0.0)).sum(-1).clamp(-1.0, 1.0 - 1e-15)
    out = 2.0 * torch.arccos(bc)
    return out.numpy() if was_np else out


@numba.njit(cache=True)
def _overlap_correction(indptr, indices, values, dense, a, b):  # pragma: no cover
    """Σ over supp(a) ∩ supp(b) of f(m) − f(p/2) − f(q/2), f(x) = x log x."""
    corr = 0.0
    for pos in range(indptr[a], indptr[a + 1]):
        q = dense[b, indices[pos]]
        if q > 0.0:
            p = values[pos]
            m = 0.5 * (p + q)
            corr += m * np.log(m) - 0.5 * p * np.log(0.5 * p) - 0.5 * q * np.log(0.5 * q)
    return corr


@numba.njit(parallel=True, cache=True)
def _pairwise_js_sparse(indptr, indices, values, dense, mass, out):  # pragma: no cover
    """Upper triangle of the JS matrix of sparse rows (CSR) with a dense copy for lookups.

    ``JS = ½Σf(p) + ½Σf(q) − Σf(m)``, f(x) = x log x. Writing ``Σf(m)`` as the sum of
    ``f(p/2) + f(q/2)`` over both supports plus a correction on their intersection, only the
    intersection needs logarithms: disjoint rows cost no log at all.
    """
    n = indptr.size - 1
    half_log2 = 0.5 * np.log(2.0)
    for i in numba.prange(n):
        len_i = indptr[i + 1] - indptr[i]
        for j in range(i + 1, n):
            # iterate over the shorter support, look the other row up densely
            if indptr[j + 1] - indptr[j] < len_i:
                corr = _overlap_correction(indptr, indices, values, dense, j, i)
            else:
                corr = _overlap_correction(indptr, indices, values, dense, i, j)
            # Σ f(x/2) over a row = ½ h − ½ log 2 · mass, so
            # JS = ½(h_i + h_j) − Σ f(m) = ½ log 2 · (mass_i + mass_j) − corr
            v = half_log2 * (mass[i] + mass[j]) - corr
            out[i, j] = v
            out[j, i] = v


def pairwise_js(P, Q=None, *, threshold: float = 1e-11) -> np.ndarray:
    """Matrix of Jensen–Shannon divergences between the rows of ``P`` (and of ``Q``).

    Rows of Pᵗ are concentrated: most of their entries are negligible and distant cells
    share almost no support. Entries below ``threshold`` are dropped (which changes a
    divergence by at most ``k · threshold · log(1/threshold)``, k the row length: 5e-7 for
    k = 2000), and the mixture term is evaluated only where two rows overlap, in float64
    and in parallel.

    Parameters
    ----------
    P
        ``(n, k)`` array of probability rows.
    Q
        ``(m, k)`` array of probability rows; ``P`` itself when omitted (the result is then
        exactly symmetric with a zero diagonal).
    threshold
        Entries below it are treated as 0 (0 keeps every entry).

    Returns
    -------
    ``(n, m)`` float64 NumPy array of divergences in ``[0, log 2]``.
    """
    P = np.asarray(P, dtype=np.float64)
    symmetric = Q is None
    Q = P if symmetric else np.asarray(Q, dtype=np.float64)
    if P.ndim != 2 or Q.ndim != 2 or P.shape[1] != Q.shape[1]:
        raise ValueError("P and Q must be 2-D with the same number of columns")
    A = np.vstack([P, Q]) if not symmetric else P
    A = np.where(A >= threshold, A, 0.0) if threshold > 0 else A.copy()
    mass = A.sum(1)
    S = sp.csr_matrix(A)
    out = np.zeros((A.shape[0], A.shape[0]))
    _pairwise_js_sparse(S.indptr.astype(np.int64), S.indices.astype(np.int64), S.data, A, mass, out)
    np.clip(out, 0.0, LOG2, out=out)
    if symmetric:
        np.fill_diagonal(out, 0.0)
        return out
    return np.ascontiguousarray(out[: P.shape[0], P.shape[0] :])
