"""The locally adaptive metric of LAND (pure torch, no AnnData).

The LAND metric (Arvanitidis, Hansen & Hauberg 2016) is the inverse of a local diagonal
covariance of the data,

``M(x) = diag(Σ_n w_n(x) (x_nd − x_d)² + ρ)⁻¹``,  ``w_n(x) = exp(−‖x_n − x‖² / 2σ²)``.

:class:`LANDMetric` evaluates it, its log-volume and its geodesic acceleration
``−Γ(x)[v, v]`` in closed form, from a few kernel-weighted moments of the reference
points. Exp and Log maps under any metric are in :mod:`scfim.geometry.exp_log`; the LAND
distribution itself is fitted by :mod:`scfim.models.land`.
"""

from __future__ import annotations

import numpy as np
import torch

from .metric import Metric

__all__ = ["LANDMetric", "LocalCovarianceMetric", "choose_sigma", "select_sigma"]

_DT = torch.float64


def _reference_points(data, max_points: int, random_state) -> np.ndarray:
    """Validated ``(N, d)`` float64 reference points, subsampled to ``max_points``."""
    X = np.asarray(data, dtype=np.float64)
    if X.ndim != 2 or len(X) < 2:
        raise ValueError("data must be a (N ≥ 2, d) array")
    if not np.isfinite(X).all():
        raise ValueError("data contain NaN or infinite values")
    if len(X) > max_points:
        rng = np.random.default_rng(random_state)
        X = X[rng.choice(len(X), max_points, replace=False)]
    return X


def choose_sigma(X: np.ndarray, k: int | None = None) -> float:
    """Median distance of the points to their ``k``-th nearest neighbour (default N/6)."""
    from scipy.spatial import cKDTree

    k = int(np.clip(len(X) // 6, 10, 200)) if k is None else int(k)
    k = min(k, len(X) - 1)
    d, _ = cKDTree(X).query(X, k=k + 1)
    return float(np.median(d[:, k]))


class _KernelMetric(Metric):
    """Shared part of the LAND metrics: centred reference points and their Gaussian kernel."""

    def _set_reference(self, data, sigma, k_sigma, max_points, chunk_size, random_state, device):
        """Validate and subsample ``data``, choose ``σ``, centre the points; return them.

        The reference points and everything derived from them live on ``device``.
        """
        self.device = torch.device(device)
        X = _reference_points(data, max_points, random_state)
        if sigma is None:
            sigma = choose_sigma(X, k_sigma)
        if not (np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.dim = X.shape[1]
        self.sigma = float(sigma)
        self.chunk_size = int(chunk_size)
        # centred reference points (the metrics are translation-equivariant)
        self.center = X.mean(0)
        self._center_t = torch.as_tensor(self.center, device=self.device)
        P = torch.as_tensor(X - self.center, device=self.device)
        self.points = P
        self._sqnorm = (P * P).sum(1)
        return X

    def _set_rho(self, rho, rho_rel, data_scale) -> None:
        """Set the regulariser: ``rho``, or ``rho_rel · data_scale()`` when it is None.

        ``data_scale`` measures the metric's local scale on the data; it is evaluated with
        the regulariser at 0.
        """
        self.rho = 0.0
        if rho is None:
            rho = float(rho_rel) * float(data_scale())
        if not (np.isfinite(rho) and rho > 0):
            raise ValueError(f"rho must be > 0, got {rho}")
        self.rho = float(rho)

    def _log_kernel(self, xb: torch.Tensor) -> torch.Tensor:
        """``−‖x_n − x‖² / 2σ²``, shape ``(b, N)``, for centred points ``xb``."""
        K = torch.addmm(self._sqnorm[None, :], xb, self.points.T, alpha=-2.0)
        return K.add_((xb * xb).sum(1, keepdim=True)).clamp_(min=0.0).mul_(-0.5 / self.sigma**2)


class LANDMetric(_KernelMetric):
    """Diagonal locally adaptive metric of LAND.

    ``M(x) = diag(S(x) + ρ)⁻¹`` with ``S_d(x) = Σ_n w_n(x) (x_nd − x_d)²`` and
    ``w_n(x) = exp(−‖x_n − x‖² / 2σ²)``.

    Parameters
    ----------
    data
        ``(N, d)`` reference points.
    sigma
        Kernel width; default the median distance of the points to their
        ``k_sigma``-th nearest neighbour (the local covariance then pools about
        ``k_sigma`` points, enough to see the tangent directions through the noise).
    rho
        Regulariser; default ``rho_rel`` times the median (over points and dimensions) of
        ``S`` at the reference points, so that the metric far from the data is about
        ``1 / rho_rel`` times the metric on the data, whatever the number of points.
    rho_rel
        See ``rho``.
    k_sigma
        Neighbour rank of the default ``sigma``; default ``N / 6`` clipped to [10, 200]
        (a kernel over a sixth of the points: smaller widths make the metric vary on the
        scale of the sampling, and the Log-map shooting problems ill-conditioned — on
        1-D trajectories in 11 dimensions, 52 % of them failed with ``N / 20``).
    max_points
        Subsample the reference points to this many (each evaluation costs ``B × N``).
    chunk_size
        Points per block of ``B × N`` kernel evaluations.
    random_state
        Seed of the subsampling.
    device
        Torch device of the reference points and of every evaluation (inputs must be
        there too).
    """

    def __init__(
        self,
        data: np.ndarray,
        sigma: float | None = None,
        rho: float | None = None,
        *,
        rho_rel: float = 0.1,
        k_sigma: int | None = None,
        max_points: int = 2000,
        chunk_size: int = 2048,
        random_state: int | None = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        X = self._set_reference(data, sigma, k_sigma, max_points, chunk_size, random_state, device)
        P = self.points
        N, d = P.shape
        P2 = (P[:, :, None] * P[:, None, :]).reshape(N, d * d)
        P3 = (P[:, :, None] * (P * P)[:, None, :]).reshape(N, d * d)
        ones = torch.ones(N, 1, dtype=_DT, device=self.device)
        self._features = torch.cat([ones, P, P2, P3], 1)

        def median_moment():
            S = self._moments(torch.as_tensor(X, device=self.device), derivatives=False)[0]
            return torch.quantile(S.flatten(), 0.5)

        self._set_rho(rho, rho_rel, median_moment)

    def _moments(self, x: torch.Tensor, derivatives: bool = True):
        """``S(x)`` (B, d) and, if asked, ``∂S_d/∂x_k`` (B, d, d), in blocks over x.

        The kernel sums are moments ``Σ_n w_n f(x_n)`` of a few monomials of the (centred)
        reference points, obtained by one matrix product per block; only the ``B × N``
        kernel matrix is formed. With ``Δ_n = x_n − x``:
        ``S_d = Σ w Δ_d²`` and ``∂S_d/∂x_k = Σ w Δ_k Δ_d² / σ² − 2 δ_dk Σ w Δ_d``.
        """
        xc = x.to(_DT) - self._center_t
        F, d = self._features, self.dim
        S_out, dS_out = [], []
        for i in range(0, xc.shape[0], self.chunk_size):
            xb = xc[i : i + self.chunk_size]
            b = xb.shape[0]
            K = self._log_kernel(xb).exp_()
            Mo = K @ F  # (b, 1 + d + d² [+ d²])
            m0 = Mo[:, :1]
            m1 = Mo[:, 1 : 1 + d]
            m2 = Mo[:, 1 + d : 1 + d + d * d].reshape(b, d, d)  # [k, j] = Σ w X_k X_j
            m2d = torch.diagonal(m2, dim1=1, dim2=2)
            S = m2d - 2.0 * xb * m1 + xb * xb * m0
            S_out.append(S.clamp_min(0.0))
            if derivatives:
                m3 = Mo[:, 1 + d + d * d :].reshape(b, d, d)  # [k, j] = Σ w X_k X_j²
                T1 = (
                    m3.transpose(1, 2)
                    - 2.0 * xb[:, :, None] * m2.transpose(1, 2)
                    + (xb * xb)[:, :, None] * m1[:, None, :]
                    - S[:, :, None] * xb[:, None, :]
                )  # [d, k] = Σ w Δ_k Δ_d²
                T2 = m1 - xb * m0  # Σ w Δ_d
                dS_out.append(T1 / self.sigma**2 - 2.0 * torch.diag_embed(T2))
        S = torch.cat(S_out) if S_out else xc.new_zeros((0, d))
        dS = torch.cat(dS_out) if derivatives and dS_out else None
        return S, dS

    def diagonal(self, x: torch.Tensor) -> torch.Tensor:
        """Diagonal of ``M(x)``, shape ``(B, d)``."""
        S, _ = self._moments(x, derivatives=False)
        return (1.0 / (S + self.rho)).to(x.dtype)

    def metric(self, x: torch.Tensor) -> torch.Tensor:
        """Metric tensors ``(B, D, D)``: the diagonal ``M(x)`` as a matrix."""
        return torch.diag_embed(self.diagonal(x))

    def inner(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Squared norms ``vᵀ M(x) v`` ``(B,)`` from the diagonal."""
        return (self.diagonal(x) * v * v).sum(-1)

    def log_volume(self, x: torch.Tensor) -> torch.Tensor:
        """``log √det M(x) = −½ Σ_d log(S_d + ρ)``, shape ``(B,)``."""
        S, _ = self._moments(x, derivatives=False)
        return -0.5 * torch.log(S + self.rho).sum(-1)

    def acceleration(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Closed-form geodesic acceleration ``−Γ(x)[v, v]`` of the diagonal metric.

        With ``J_ik = ∂M_i/∂x_k``:
        ``c''_i = −(2 v_i (J v)_i − (Jᵀ v²)_i) / (2 M_i)``.
        """
        S, dS = self._moments(x, derivatives=True)
        M = 1.0 / (S + self.rho)
        J = -(M * M)[..., None] * dS  # (B, d, d)
        Jv = torch.einsum("bik,bk->bi", J, v)
        Jtv2 = torch.einsum("bki,bk->bi", J, v * v)
        return -(2.0 * v * Jv - Jtv2) / (2.0 * M)


class LocalCovarianceMetric(_KernelMetric):
    """Inverse local covariance of the data: a full, rotation-equivariant LAND metric.

    ``M(x) = (C(x) + ρ I)⁻¹`` with the kernel-weighted covariance of the reference points
    about their local mean,

    ``C(x) = Σ_n ŵ_n(x) (x_n − m(x))(x_n − m(x))ᵀ``,  ``m(x) = Σ_n ŵ_n(x) x_n``,
    ``ŵ_n(x) ∝ exp(−‖x_n − x‖² / 2σ²)``,  ``Σ_n ŵ_n = 1``.

    This is the locally adaptive metric of Arvanitidis, Hansen & Hauberg (2016) with
    two changes that make it a property of the data's shape rather than of their
    coordinates and density: the covariance is full (its principal axes follow the
    tangent directions of the data wherever these lie, where the diagonal
    :class:`LANDMetric` sees only the ambient axes), and the weights are normalised and
    centred (the metric does not grow as the density falls). On samples of a Gaussian on
    a flat subspace ``C`` is then the same everywhere, so geodesic lengths are the
    subspace's own distances up to one scale, and the LAND parameters are those of the
    data's tangent distribution; off the data the nearest points dominate the weights,
    ``C → 0`` and the metric grows to ``1/ρ``.

    The derivatives are closed form: ``∂_k ŵ_n = ŵ_n (x_nk − m_k)/σ²``, so
    ``∂_k C_ij = T_ijk / σ²`` with ``T`` the third central moment of the weighted points,
    and the geodesic acceleration is ``−Γ(x)[v, v] = (T[v] u − ½ (C + ρI) T[u, u]) / σ²``
    with ``u = M v``. Only the contractions ``T[v]`` and ``T[u, u]`` are formed (moments
    of monomials of degree ≤ 2, one matrix product per block).

    Parameters
    ----------
    data
        ``(N, d)`` reference points.
    sigma
        Kernel width (see :func:`~scfim.geometry.land.choose_sigma` for the default).
    rho
        Regulariser; default ``rho_rel`` times the median over the reference points of
        ``tr C / d``.
    rho_rel
        See ``rho``.
    max_points
        Subsample the reference points to this many (each evaluation costs ``B × N``).
    chunk_size
        Points per block of ``B × N`` kernel evaluations.
    random_state
        Seed of the subsampling.
    device
        Torch device of the reference points and of every evaluation (inputs must be
        there too).
    """

    def __init__(
        self,
        data: np.ndarray,
        sigma: float | None = None,
        rho: float | None = None,
        *,
        rho_rel: float = 0.1,
        alpha: float = 1.0,
        max_points: int = 1000,
        chunk_size: int = 2048,
        random_state: int | None = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        X = self._set_reference(data, sigma, None, max_points, chunk_size, random_state, device)
        P = self.points
        N, d = P.shape
        P2 = (P[:, :, None] * P[:, None, :]).reshape(N, d * d)
        self._features = torch.cat([P, P2], 1)
        # density normalisation: weights K(x, x_n) / q(x_n)^α with q the kernel sums at
        # the reference points (Coifman & Lafon 2006)
        self.alpha = float(alpha)
        self._log_c = None
        if self.alpha != 0.0:
            q = torch.zeros(N, dtype=_DT, device=self.device)
            for i in range(0, N, self.chunk_size):
                q[i : i + self.chunk_size] = (
                    self._log_kernel(P[i : i + self.chunk_size]).exp_().sum(1)
                )
            self._log_c = -self.alpha * torch.log(q)

        def median_trace():
            C = self.local_covariance(torch.as_tensor(X, device=self.device))
            return torch.median(torch.diagonal(C, dim1=1, dim2=2).sum(-1) / d)

        self._set_rho(rho, rho_rel, median_trace)

    def _kernel(self, xb: torch.Tensor):
        """Kernel ``(b, N)`` of centred points ``xb`` and its row sums ``(b, 1)``.

        Each row is scaled so that its largest entry is 1 (no underflow far from the data).
        """
        K = self._log_kernel(xb)
        if self._log_c is not None:
            K.add_(self._log_c[None, :])
        K.sub_(K.max(1, keepdim=True).values).exp_()
        return K, K.sum(1, keepdim=True)

    def _blocks(self, x: torch.Tensor):
        xc = x.to(_DT) - self._center_t
        for i in range(0, xc.shape[0], self.chunk_size):
            yield i, xc[i : i + self.chunk_size]

    def _mean_cov(self, K: torch.Tensor, Z: torch.Tensor):
        d = self.dim
        Mo = (K @ self._features) / Z
        m = Mo[:, :d]
        C = Mo[:, d:].reshape(-1, d, d) - m[:, :, None] * m[:, None, :]
        return m, 0.5 * (C + C.transpose(1, 2))

    def local_covariance(self, x: torch.Tensor) -> torch.Tensor:
        """``C(x)``, shape ``(B, d, d)`` (differentiable in ``x``)."""
        out = [self._mean_cov(*self._kernel(xb))[1] for _, xb in self._blocks(x)]
        return torch.cat(out) if out else x.new_zeros((0, self.dim, self.dim), dtype=_DT)

    def _regularised(self, x: torch.Tensor) -> torch.Tensor:
        eye = torch.eye(self.dim, dtype=_DT, device=self.device)
        return self.local_covariance(x) + self.rho * eye

    def metric(self, x: torch.Tensor) -> torch.Tensor:
        """Metric tensors ``(C(x) + ρI)⁻¹``, shape ``(B, d, d)``."""
        return torch.cholesky_inverse(torch.linalg.cholesky(self._regularised(x))).to(x.dtype)

    def inner(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Squared norms ``vᵀ (C + ρI)⁻¹ v`` ``(B,)`` by a Cholesky solve."""
        L = torch.linalg.cholesky(self._regularised(x))
        z = torch.linalg.solve_triangular(L, v.to(_DT).unsqueeze(-1), upper=False)
        return (z * z).sum((-1, -2)).to(v.dtype)

    def log_volume(self, x: torch.Tensor) -> torch.Tensor:
        """``log √det M(x) = −½ log det(C + ρI)``, shape ``(B,)``."""
        L, info = torch.linalg.cholesky_ex(self._regularised(x))
        lv = -torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
        return torch.where(info > 0, torch.full_like(lv, torch.nan), lv)

    def acceleration(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Closed-form geodesic acceleration ``(T[v] u − ½ (C + ρI) T[u, u]) / σ²``."""
        d, P, F = self.dim, self.points, self._features
        v = v.to(_DT)
        eye = torch.eye(d, dtype=_DT, device=self.device)
        out = []
        with torch.no_grad():
            for i, xb in self._blocks(x):
                vb = v[i : i + xb.shape[0]]
                K, Z = self._kernel(xb)
                m, C = self._mean_cov(K, Z)
                A = C + self.rho * eye
                L, info = torch.linalg.cholesky_ex(A)  # info > 0: a diverged (non-finite) x
                u = torch.cholesky_solve(vb.unsqueeze(-1), L)[..., 0]
                u[info > 0] = torch.nan
                b = xb.shape[0]
                SR = torch.cat([vb, u]) @ P.T  # (2b, N): a·v and a·u
                # T[v] = E[ΔΔᵀ (a·v)] − (m·v) C, from moments weighted by s = a·v
                Mo = (K * SR[:b]) @ F / Z
                Eas, Eaas = Mo[:, :d], Mo[:, d:].reshape(-1, d, d)
                mv = (m * vb).sum(1)
                mm = m[:, :, None] * m[:, None, :]
                Tv = (
                    Eaas
                    - m[:, :, None] * Eas[:, None, :]
                    - Eas[:, :, None] * m[:, None, :]
                    + mv[:, None, None] * (mm - C)
                )
                # T[u, u] = E[(Δ·u)² Δ]
                R = SR[b:].sub_((m * u).sum(1, keepdim=True)).square_().mul_(K)
                Tuu = (R @ P) / Z - m * (R.sum(1, keepdim=True) / Z)
                acc = torch.einsum("bij,bj->bi", Tv, u) - 0.5 * torch.einsum("bij,bj->bi", A, Tuu)
                out.append(acc / self.sigma**2)
        return torch.cat(out).to(x.dtype) if out else x.new_zeros((0, d))


def select_sigma(
    data: np.ndarray,
    *,
    rho_rel: float = 0.1,
    ranks=(1 / 24, 1 / 12, 1 / 6, 1 / 3),
    n_pilot: int = 64,
    max_failed: float = 0.02,
    max_iter: int = 30,
    n_steps: int = 12,
    tol: float = 1e-3,
    max_points: int = 1000,
    random_state: int | None = 0,
    progress: bool = False,
    device: str | torch.device = "cpu",
) -> tuple[float, dict]:
    """Kernel width of :class:`LocalCovarianceMetric` for one data set.

    The smallest width on a ladder of local sampling scales whose geodesic
    boundary-value problems are well posed. The candidates are the median distances of
    the points to their ``k``-th nearest neighbour for ``k = rank · N`` (``N`` reference
    points; by default ``N/24 … N/3``, each at least 10 points). The smallest kernel is
    the most local one (it follows the curvature of the data most closely; on a
    Gaussian on the unit sphere the lengths of its geodesics match the arc lengths
    within 1–2 % out to one radian at ``N/24``, against 5–15 % short at ``N/6``), but on
    data that are sparse or nearly discrete at that scale the metric varies between
    neighbouring points and shooting stops converging. So each candidate is tried in
    turn: cold Log maps (:class:`~scfim.geometry.exp_log.MetricManifold`, shooting from
    the graph paths, as the first Log maps of the fit but without their energy-solver
    restart) from the point nearest the mean to
    ``n_pilot`` random points, and the first candidate with at most ``max_failed`` of them
    unsolved is taken (else the one with the fewest failures).

    Parameters
    ----------
    data
        ``(N, d)`` points.
    rho_rel
        Regulariser of the metric (see :class:`LocalCovarianceMetric`).
    ranks
        Increasing neighbour ranks, as fractions of the number of reference points.
    n_pilot
        Pilot Log maps per candidate.
    max_iter
        Broyden iterations of each pilot Log map.
    max_failed
        Largest accepted fraction of unsolved pilot Log maps.
    n_steps, tol
        RK4 steps per geodesic and relative tolerance of the Log maps.
    max_points
        Reference points of the metric (subsampled as in :class:`LocalCovarianceMetric`).
    random_state
        Seed of the subsampling and of the pilot points.
    progress
        Progress bar over the pilot Log maps of the candidates (updated as they are
        solved).
    device
        Torch device of the candidate metrics and their pilot Log maps.

    Returns
    -------
    sigma
        The chosen width.
    report
        ``candidates`` (the widths tried, in order), ``failed_fraction`` (their pilot
        failure fractions) and ``chosen`` (index of the chosen one).
    """
    from .._progress import progress_bar
    from .exp_log import MetricManifold

    X = np.asarray(data, dtype=np.float64)
    R = _reference_points(X, max_points, random_state)
    rng = np.random.default_rng(random_state)
    targets = X[rng.choice(len(X), min(int(n_pilot), len(X)), replace=False)]
    base = X[int(np.argmin(((X - X.mean(0)) ** 2).sum(1)))]
    ks = sorted({int(np.clip(round(r * len(R)), 10, len(R) - 1)) for r in ranks})
    cands, fails = [], []
    bar = progress_bar(
        total=len(ks) * len(targets), desc="LAND kernel width (pilot Log maps)", progress=progress
    )
    try:
        for j, k in enumerate(ks):
            sigma = choose_sigma(R, k)
            G = LocalCovarianceMetric(R, sigma, rho_rel=rho_rel, max_points=len(R), device=device)
            M = MetricManifold(
                G, graph_data=X, n_steps=n_steps, tol=tol, energy_fallback=False, max_iter=max_iter
            )
            frac = float(M.log(base, targets, progress=bar.update).n_failed) / len(targets)
            cands.append(sigma)
            fails.append(frac)
            bar.n = (j + 1) * len(targets)
            bar.set_postfix(sigma=f"{sigma:.3g}", failed=f"{frac:.0%}", refresh=True)
            if frac <= max_failed:
                break
    finally:
        bar.close()
    ok = [i for i, f in enumerate(fails) if f <= max_failed]
    chosen = ok[0] if ok else min(range(len(fails)), key=lambda i: (fails[i], -i))
    return cands[chosen], {
        "candidates": np.asarray(cands),
        "failed_fraction": np.asarray(fails),
        "chosen": chosen,
    }
