"""Fisher information over the diffusion parameters (σ, t) (neural-FIM paper, Sec. 4.1).

Pure torch/NumPy; no AnnData in here.

The statistical manifold
------------------------
For a point cloud ``X`` of ``n`` cells (a subsample: every matrix here is dense ``n × n``,
so ``n`` should stay below a few thousand) and parameters θ = (σ, t):

1. **Kernel** (as in the paper, Sec. 2.1): a Gaussian on *all* pairs,
   ``K_σ(x, y) = exp(−‖x − y‖² / σ)``; σ scales *squared* distances. No kNN truncation and
   no thresholding, so that every entry is a smooth function of σ.
2. **Anisotropy** α ∈ [0, 1]: ``K_α = Q^{-α} K_σ Q^{-α}`` with ``Q = diag(K_σ 1)``; α = 1
   (the default) is Algorithm 1's ``Q⁻¹ A Q⁻¹`` and removes the sampling density, α = 0
   keeps the plain Gaussian kernel. Q depends on σ and is differentiated through.
3. **Markov operator** ``P = D⁻¹ K_α`` with ``D = diag(K_α 1)``.
4. **Continuous diffusion time** through the symmetric form ``A = D^{-1/2} K_α D^{-1/2}``
   (similar to P, with the same eigenvalues): ``A = U Λ Uᵀ`` (float64 ``eigh``) and
   ``Pᵗ = D^{-1/2} U Λᵗ Uᵀ D^{1/2}`` for any real t > 0.
5. **Distributions**: the rows ``p_x(·; σ, t) = Pᵗ(x, ·)``, one per cell.

*Eigenvalues.* The Gaussian kernel is strictly positive definite for distinct points and
the normalisations are congruences, so A is positive definite with eigenvalues in (0, 1]
in exact arithmetic. In floating point the smallest eigenvalues are round-off (of order
``n·ε``) and can be zero or slightly negative, where ``λᵗ`` is undefined for non-integer
t and ``d/dt λᵗ = λᵗ log λ`` is not finite. Eigenvalues are therefore clamped from below
at ``eig_tol = 10 · n · ε`` (ε the float64 machine epsilon) before the power is taken:
the clamped modes contribute at most ``eig_tol^t`` (≤ 2·10⁻¹² at n = 1000 for t ≥ 1).
For t < 1 such modes are magnified (``eig_tol^t``) and results are less accurate; t ≥ 1
is the meaningful range (the paper uses t ∈ [1, 15]).

*Derivatives.* Derivatives are obtained by automatic differentiation (torch forward mode,
``torch.autograd.forward_ad``) through the whole chain σ → K → K_α → D → A → Aᵗ → rows, in
float64. The one step with its own rule is the matrix power ``A ↦ Aᵗ``
(:class:`SymmetricPower`): torch's built-in derivative of ``eigh`` divides by eigenvalue
gaps ``1/(λ_i − λ_j)`` and is unusable on diffusion spectra, whose many tiny eigenvalues
are (nearly) degenerate. The spectral function ``f(A) = U f(Λ) Uᵀ`` instead has the
Daleckii–Krein derivative ``df = U (F ∘ (Uᵀ dA U)) Uᵀ`` with the divided differences
``F_ij = (λ_iᵗ − λ_jᵗ) / (λ_i − λ_j)`` (``t λ^{t−1}`` on the diagonal), evaluated stably as
``λ_i^{t−1} expm1(−tδ) / expm1(−δ)``, ``δ = log λ_i − log λ_j ≥ 0`` (λ_i the larger);
it is bounded for degenerate eigenvalues and cannot overflow. ``∂_t Aᵗ = U (Λᵗ log Λ) Uᵀ``.
Both forward (jvp) and reverse (vjp) rules are implemented; tests check them against
central finite differences.

Fisher information
------------------
For one cell ``g_x(θ) = Σ_j ∂_θ p_xj ∂_θ p_xjᵀ / p_xj`` (Eq. 2 for a discrete
distribution). Entries with ``p_xj ≤ p_min`` (default 1e-10, above the round-off of the
spectral reconstruction; negative round-off values included) are left out: no division by
0, and the omitted mass contributes at most ``n · p_min · max (∂ log p)²`` per row.

Aggregation over cells: the **mean** ``g(θ) = (1/n) Σ_x g_x(θ)``, as in the paper, where
the whole diffusion operator is one point of the statistical manifold. It is exactly the
Fisher information of the joint distribution ``q(x, j) = p_x(j) / n`` of a uniformly
chosen start cell and its t-step destination (the start's marginal does not depend on θ).
Each ``g_x`` has rank ≤ 2; the mean is generically positive definite.

Coordinates are ordered **(σ, t)**: ``g[0, 0] = g_σσ``, ``g[1, 1] = g_tt``. The volume
element is ``√det g`` and the log-volume ``½ log det g`` (``-inf`` where ``det g ≤ 0``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.autograd import forward_ad as fwAD

__all__ = [
    "SymmetricPower",
    "squared_distances",
    "symmetric_operator",
    "eig_tolerance",
    "diffusion_rows",
    "rows_jacobian",
    "fisher_from_jacobian",
    "parameter_fim",
    "ParameterFIMGrid",
    "parameter_fim_grid",
    "default_sigma_values",
    "to_log_sigma",
    "fim_volume",
    "fim_log_volume",
    "select_parameters",
    "jsd_phate_at",
]

_DTYPE = torch.float64
P_MIN = 1e-10


# --------------------------------------------------------------------------- spectral power
def eig_tolerance(n: int) -> float:
    """Clamp level of the eigenvalues of A: ``10 · n · ε`` (their round-off level)."""
    return 10.0 * n * float(np.finfo(np.float64).eps)


def _power_parts(
    lam: torch.Tensor, t: torch.Tensor, tol: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``λᵗ``, ``λᵗ log λ`` and the divided-difference matrix F of ``λ ↦ λᵗ``.

    Eigenvalues are clamped at ``tol`` first. ``F_ij = (λ_iᵗ − λ_jᵗ)/(λ_i − λ_j)`` is
    evaluated as ``λ_i^{t−1} expm1(−tδ)/expm1(−δ)`` with λ_i the larger eigenvalue and
    ``δ = log λ_i − log λ_j ≥ 0`` (``t λ^{t−1}`` where δ = 0): symmetric and bounded.
    """
    lt = lam.clamp_min(tol)
    L = torch.log(lt)
    f = torch.exp(t * L)
    ft = f * L
    # F_ij = λ_i^{t−1} (1 − e^{−tδ}) / (1 − e^{−δ}) with λ_i the larger eigenvalue and
    # δ = log λ_i − log λ_j ≥ 0: symmetric, no overflow for any t, no cancellation
    base = torch.maximum(L[:, None], L[None, :])
    d_abs = (L[:, None] - L[None, :]).abs()
    zero = d_abs == 0
    safe = torch.where(zero, torch.ones_like(d_abs), d_abs)
    ratio = torch.special.expm1(-t * safe) / torch.special.expm1(-safe)
    ratio = torch.where(zero, t * torch.ones_like(d_abs), ratio)
    F = torch.exp((t - 1.0) * base) * ratio
    return f, ft, F


class SymmetricPower(torch.autograd.Function):
    """``Aᵗ = U max(Λ, tol)ᵗ Uᵀ`` for a symmetric A with a given eigendecomposition.

    ``apply(A, t, U, lam, tol, cache=None)``: ``U, lam`` must be the eigendecomposition of
    A's primal value (passed in so that it is computed once per σ and reused across all
    t). A and t (a 0-d tensor) are differentiable; the derivative uses the Daleckii–Krein
    formula (see the module docstring), in forward (jvp) and reverse (vjp) mode. Zero
    tangents are skipped. ``cache`` (a dict, private use) keeps ``Uᵀ dA U`` between calls
    that share U and the *same* tangent dA (the σ-direction on a grid: it does not
    depend on t).
    """

    @staticmethod
    def forward(ctx, A, t, U, lam, tol, cache=None):  # noqa: D102
        f, ft, F = _power_parts(lam, t, tol)
        ctx.save_for_backward(U, ft, F)
        ctx.save_for_forward(U, ft, F)
        ctx.cache = cache
        return (U * f) @ U.T

    @staticmethod
    def jvp(ctx, dA, dt, dU, dlam, dtol, dcache):  # noqa: D102
        U, ft, F = ctx.saved_tensors
        out = torch.zeros(U.shape[0], U.shape[0], dtype=U.dtype)
        if dA is not None and bool(torch.any(dA != 0)):
            cache = ctx.cache
            if cache is not None and "B" in cache:
                B = cache["B"]
            else:
                B = U.T @ dA @ U
                if cache is not None:
                    cache["B"] = B
            out = out + U @ (F * B) @ U.T
        if dt is not None and bool(dt != 0):
            out = out + (U * (ft * dt)) @ U.T
        return out

    @staticmethod
    def backward(ctx, G):  # noqa: D102
        U, ft, F = ctx.saved_tensors
        gA = gt = None
        UGU = U.T @ G @ U
        if ctx.needs_input_grad[0]:
            gA = U @ (F * UGU) @ U.T
        if ctx.needs_input_grad[1]:
            gt = (UGU.diagonal() * ft).sum()
        return gA, gt, None, None, None, None


# --------------------------------------------------------------------------- operator
def squared_distances(X: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(n, n)`` float64 matrix of squared Euclidean distances (zero diagonal, ≥ 0)."""
    Xt = torch.as_tensor(np.asarray(X, dtype=np.float64))
    Xt = Xt - Xt.mean(0)  # centring reduces cancellation in the expansion
    sq = (Xt * Xt).sum(1)
    D2 = (sq[:, None] + sq[None, :] - 2.0 * (Xt @ Xt.T)).clamp_min(0.0)
    D2.fill_diagonal_(0.0)
    return 0.5 * (D2 + D2.T)


def symmetric_operator(
    D2: torch.Tensor, sigma: torch.Tensor | float, alpha: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric form ``A = D^{-1/2} K_α D^{-1/2}`` and the degrees ``d = K_α 1``.

    Plain torch operations, so forward/reverse automatic differentiation w.r.t. ``sigma``
    goes through them (kernel ``exp(−d²/σ)``, anisotropy α, degrees).
    """
    sigma = torch.as_tensor(sigma, dtype=_DTYPE)
    K = torch.exp(-D2 / sigma)
    if alpha > 0:
        q = K.sum(1)
        s = q ** (-alpha)
        K = s[:, None] * K * s[None, :]
    d = K.sum(1)
    r = torch.rsqrt(d)
    A = r[:, None] * K * r[None, :]
    return 0.5 * (A + A.T), d


def _rows_from(A, d, t, U, lam, tol, cache=None) -> torch.Tensor:
    At = SymmetricPower.apply(A, t, U, lam, tol, cache)
    return torch.rsqrt(d)[:, None] * At * torch.sqrt(d)[None, :]


def diffusion_rows(
    D2: torch.Tensor | np.ndarray,
    sigma: torch.Tensor | float,
    t: torch.Tensor | float,
    alpha: float = 1.0,
) -> torch.Tensor:
    """Rows of Pᵗ, ``(n, n)`` float64, differentiable w.r.t. ``sigma`` and ``t``.

    Parameters
    ----------
    D2
        Squared distances (:func:`squared_distances`).
    sigma
        Kernel bandwidth (> 0; scales squared distances).
    t
        Diffusion time (> 0, real).
    alpha
        Anisotropy in [0, 1].

    Returns
    -------
    ``Pᵗ`` (rows sum to 1 up to round-off; tiny entries may be slightly negative).
    """
    D2 = torch.as_tensor(D2, dtype=_DTYPE)
    t = torch.as_tensor(t, dtype=_DTYPE)
    A, d = symmetric_operator(D2, sigma, alpha)
    lam, U = torch.linalg.eigh(A.detach())
    return _rows_from(A, d, t, U, lam, eig_tolerance(A.shape[0]))


# --------------------------------------------------------------------------- Fisher information
def fisher_from_jacobian(
    p: torch.Tensor, J: list[torch.Tensor], p_min: float = P_MIN
) -> np.ndarray:
    """Mean over rows of ``Σ_j ∂_a p_j ∂_b p_j / p_j`` (entries with ``p ≤ p_min`` left out).

    Parameters
    ----------
    p
        ``(n, m)`` probability rows.
    J
        Derivatives of ``p`` along each coordinate (same shape as ``p`` each).
    p_min
        Entries at or below it contribute nothing (guards the division).

    Returns
    -------
    ``(k, k)`` symmetric NumPy array, k = ``len(J)``.
    """
    keep = p > p_min
    w = torch.where(keep, 1.0 / torch.where(keep, p, torch.ones_like(p)), torch.zeros_like(p))
    k = len(J)
    g = np.empty((k, k))
    n = p.shape[0]
    for a in range(k):
        wa = w * J[a]
        for b in range(a, k):
            g[a, b] = g[b, a] = float((wa * J[b]).sum()) / n
    return g


def _rows_jacobian(D2, sigma, t, alpha, U, lam, tol, cache=None):
    s0 = torch.as_tensor(float(sigma), dtype=_DTYPE)
    t0 = torch.as_tensor(float(t), dtype=_DTYPE)
    one = torch.ones((), dtype=_DTYPE)
    with fwAD.dual_level():  # ∂/∂σ
        A, d = symmetric_operator(D2, fwAD.make_dual(s0, one), alpha)
        p, Js = fwAD.unpack_dual(_rows_from(A, d, t0, U, lam, tol, cache))
    with fwAD.dual_level():  # ∂/∂t
        A, d = symmetric_operator(D2, s0, alpha)
        _, Jt = fwAD.unpack_dual(_rows_from(A, d, fwAD.make_dual(t0, one), U, lam, tol))
    return p, Js, Jt


def rows_jacobian(
    D2: torch.Tensor | np.ndarray, sigma: float, t: float, *, alpha: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows of Pᵗ and their derivatives w.r.t. σ and t (forward-mode autodiff).

    Parameters
    ----------
    D2
        Squared distances (:func:`squared_distances`).
    sigma, t
        The point of the parameter space (> 0).
    alpha
        Anisotropy in [0, 1].

    Returns
    -------
    p, dp_dsigma, dp_dt
        Three ``(n, n)`` float64 tensors.
    """
    D2 = torch.as_tensor(D2, dtype=_DTYPE)
    A, _ = symmetric_operator(D2, float(sigma), alpha)
    lam, U = torch.linalg.eigh(A)
    return _rows_jacobian(D2, sigma, t, alpha, U, lam, eig_tolerance(A.shape[0]))


def _fim_at(D2, sigma, t, alpha, U, lam, tol, p_min, cache=None) -> np.ndarray:
    p, Js, Jt = _rows_jacobian(D2, sigma, t, alpha, U, lam, tol, cache)
    return fisher_from_jacobian(p, [Js, Jt], p_min)


def parameter_fim(
    D2: torch.Tensor | np.ndarray,
    sigma: float,
    t: float,
    *,
    alpha: float = 1.0,
    p_min: float = P_MIN,
) -> np.ndarray:
    """The 2 × 2 Fisher information ``g(σ, t)`` (coordinates ordered (σ, t)).

    Derivatives of all rows of Pᵗ by forward-mode automatic differentiation; mean over
    cells of the per-cell Fisher information (see the module docstring).

    Parameters
    ----------
    D2
        Squared distances of the cells (:func:`squared_distances`).
    sigma, t
        The point of the parameter space (σ > 0, t > 0).
    alpha
        Anisotropy in [0, 1].
    p_min
        Probabilities at or below it are left out of the sum.

    Returns
    -------
    ``(2, 2)`` symmetric positive semi-definite NumPy array.
    """
    p, Js, Jt = rows_jacobian(D2, sigma, t, alpha=alpha)
    return fisher_from_jacobian(p, [Js, Jt], p_min)


def fim_volume(fim: np.ndarray) -> np.ndarray:
    """``√det g`` of ``(..., 2, 2)`` matrices (0 where the determinant is ≤ 0)."""
    g = np.asarray(fim, dtype=np.float64)
    det = g[..., 0, 0] * g[..., 1, 1] - g[..., 0, 1] * g[..., 1, 0]
    return np.sqrt(np.clip(det, 0.0, None))


def fim_log_volume(fim: np.ndarray) -> np.ndarray:
    """``½ log det g`` of ``(..., 2, 2)`` matrices (``-inf`` where the determinant is ≤ 0).

    Computed from the eigenvalues (float64), which is accurate when the two diagonal
    entries differ by many orders of magnitude.
    """
    g = np.asarray(fim, dtype=np.float64)
    ev = np.linalg.eigvalsh(0.5 * (g + np.swapaxes(g, -1, -2)))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 0.5 * np.log(np.clip(ev, 0.0, None)).sum(-1)
    return np.where(np.all(ev > 0, axis=-1), out, -np.inf)


# --------------------------------------------------------------------------- grid
def default_sigma_values(
    D2: torch.Tensor | np.ndarray,
    *,
    n_neighbors: int = 15,
    n_values: int = 9,
    low: float = 1.0 / 16.0,
    high: float = 4.0,
) -> tuple[np.ndarray, float]:
    """Geometric σ grid around the data's kNN scale.

    ``σ₀`` is the median over cells of the squared distance to the ``n_neighbors``-th
    nearest neighbour (the scale at which a kNN kernel sees its neighbours); the grid has
    ``n_values`` geometric steps from ``low · σ₀`` to ``high · σ₀``. The default range
    (σ₀/16 … 4σ₀) contains the volume maximum on the toy trees measured in
    ``benchmarks/bench_parameter_fim.py`` (near σ₀/4 at t = 1).

    Returns
    -------
    sigma_values, sigma0
    """
    D2 = np.asarray(D2, dtype=np.float64)
    n = D2.shape[0]
    k = int(min(max(n_neighbors, 1), n - 1))
    kth = np.partition(D2, k, axis=1)[:, k]  # column 0 is the cell itself (distance 0)
    sigma0 = float(np.median(kth))
    if not sigma0 > 0:
        sigma0 = float(np.median(D2[D2 > 0])) if np.any(D2 > 0) else 1.0
    grid = np.exp(np.linspace(math.log(low), math.log(high), int(n_values)))
    return sigma0 * grid, sigma0


def to_log_sigma(fim: np.ndarray, sigma_values: np.ndarray) -> np.ndarray:
    """FIM in coordinates (log σ, t) from ``(..., S, 2, 2)`` in (σ, t).

    ``g' = J g J`` with ``J = diag(σ, 1)`` (``∂/∂log σ = σ ∂/∂σ``); the volume element
    becomes ``σ √det g``.
    """
    g = np.array(fim, dtype=np.float64, copy=True)
    s = np.asarray(sigma_values, dtype=np.float64)
    g[..., 0, :] *= s[:, None]
    g[..., :, 0] *= s[:, None]
    return g


@dataclass
class ParameterFIMGrid:
    """FIM on a grid of (t, σ) values.

    Attributes
    ----------
    t_values, sigma_values
        The grid axes (ascending).
    fim
        ``(T, S, 2, 2)``: ``fim[i, j]`` is g at ``(t_values[i], sigma_values[j])``,
        coordinates ordered (σ, t) (or (log σ, t), see :func:`parameter_fim_grid`).
    volume, log_volume
        ``(T, S)``: ``√det g`` and ``½ log det g``.
    """

    t_values: np.ndarray
    sigma_values: np.ndarray
    fim: np.ndarray
    volume: np.ndarray
    log_volume: np.ndarray


def parameter_fim_grid(
    X: np.ndarray,
    t_values,
    sigma_values,
    *,
    alpha: float = 1.0,
    p_min: float = P_MIN,
    coordinates: str = "sigma",
    progress: bool = False,
) -> ParameterFIMGrid:
    """The 2 × 2 FIM at every point of a (t, σ) grid.

    One eigendecomposition per σ (shared by all t); per grid point two forward-mode
    passes (∂/∂σ and ∂/∂t), each a few ``n × n`` matrix products.

    Parameters
    ----------
    X
        ``(n, D)`` cells (a subsample: dense ``n × n`` matrices are formed).
    t_values, sigma_values
        Positive grid values (used in the given order).
    alpha
        Anisotropy in [0, 1].
    p_min
        Probabilities at or below it are left out of the Fisher sum.
    coordinates
        ``"sigma"``: g and the volume in the coordinates (σ, t) as in the paper;
        ``"log_sigma"``: in (log σ, t) (:func:`to_log_sigma`), where the volume does not
        depend on the unit of σ and a geometric σ grid has equal cells.
    progress
        Show a tqdm progress bar over σ.

    Returns
    -------
    :class:`ParameterFIMGrid`
    """
    from .._progress import progress_bar

    if coordinates not in ("sigma", "log_sigma"):
        raise ValueError(f"coordinates must be 'sigma' or 'log_sigma', got {coordinates!r}")
    t_values = np.asarray(t_values, dtype=np.float64)
    sigma_values = np.asarray(sigma_values, dtype=np.float64)
    D2 = squared_distances(X)
    n = D2.shape[0]
    tol = eig_tolerance(n)
    fim = np.empty((t_values.size, sigma_values.size, 2, 2))
    for j, s in enumerate(progress_bar(sigma_values, desc="parameter FIM (σ)", progress=progress)):
        A, _ = symmetric_operator(D2, float(s), alpha)
        lam, U = torch.linalg.eigh(A)
        cache: dict = {}  # Uᵀ (∂A/∂σ) U, shared by all t at this σ
        for i, t in enumerate(t_values):
            fim[i, j] = _fim_at(D2, s, t, alpha, U, lam, tol, p_min, cache)
    if coordinates == "log_sigma":
        fim = to_log_sigma(fim, sigma_values)
    return ParameterFIMGrid(t_values, sigma_values, fim, fim_volume(fim), fim_log_volume(fim))


def select_parameters(grid: ParameterFIMGrid) -> tuple[float, float, int, int]:
    """The grid point of largest FIM volume (the paper's reading of Fig. 2B).

    Sec. 4.1: bright (high-volume) regions are the (σ, t) combinations under which the
    diffusion probabilities change most, i.e. where the trade-off between local and
    global structure is most sensitive; the selection is the maximum of ``√det g`` over
    the grid (equivalently of the log-volume; ties go to the first in row-major order).

    Returns
    -------
    t, sigma, i, j
        The chosen values and their indices in ``t_values`` and ``sigma_values``.
    """
    lv = np.asarray(grid.log_volume, dtype=np.float64)
    if not np.any(np.isfinite(lv)):
        raise ValueError("the FIM is singular at every grid point; no volume to maximise")
    flat = int(np.argmax(np.where(np.isfinite(lv), lv, -np.inf)))
    i, j = np.unravel_index(flat, lv.shape)
    return float(grid.t_values[i]), float(grid.sigma_values[j]), int(i), int(j)


def jsd_phate_at(
    X: np.ndarray,
    t: float,
    sigma: float,
    *,
    alpha: float = 1.0,
    n_components: int = 2,
    max_iter: int = 300,
) -> np.ndarray:
    """JSD-PHATE embedding of a (small) point cloud for given (t, σ).

    Rows of Pᵗ of the dense Gaussian operator (:func:`diffusion_rows`; round-off negatives
    set to 0 and rows renormalised), distances ``sqrt(JS(Pᵗ(i,·), Pᵗ(j,·)))``, metric MDS
    (SMACOF from classical MDS).

    Returns
    -------
    numpy.ndarray
        ``(n, n_components)`` coordinates.
    """
    from .divergences import pairwise_js
    from .mds import metric_mds

    P = diffusion_rows(squared_distances(X), float(sigma), float(t), alpha).numpy()
    P = np.clip(P, 0.0, None)
    P /= P.sum(1, keepdims=True)
    Y, _ = metric_mds(np.sqrt(pairwise_js(P)), n_components, max_iter=max_iter)
    return Y
