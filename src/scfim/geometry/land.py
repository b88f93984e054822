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

__all__ = ["LANDMetric"]

_DT = torch.float64


class LANDMetric(Metric):
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
    ) -> None:
        X = np.asarray(data, dtype=np.float64)
        if X.ndim != 2 or len(X) < 2:
            raise ValueError("data must be a (N ≥ 2, d) array")
        if not np.isfinite(X).all():
            raise ValueError("data contain NaN or infinite values")
        if len(X) > max_points:
            rng = np.random.default_rng(random_state)
            X = X[rng.choice(len(X), max_points, replace=False)]
        if sigma is None:
            from scipy.spatial import cKDTree

            k = int(np.clip(len(X) // 6, 10, 200)) if k_sigma is None else int(k_sigma)
            k = min(k, len(X) - 1)
            d, _ = cKDTree(X).query(X, k=k + 1)
            sigma = float(np.median(d[:, k]))
        if not (np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.dim = X.shape[1]
        self.sigma = float(sigma)
        self.chunk_size = int(chunk_size)
        # centred reference points (the metric is translation-equivariant)
        self.center = X.mean(0)
        self._center_t = torch.as_tensor(self.center)
        P = torch.as_tensor(X - self.center)
        self.points = P
        self._sqnorm = (P * P).sum(1)
        N, d = P.shape
        P2 = (P[:, :, None] * P[:, None, :]).reshape(N, d * d)
        P3 = (P[:, :, None] * (P * P)[:, None, :]).reshape(N, d * d)
        self._features = torch.cat([torch.ones(N, 1, dtype=_DT), P, P2, P3], 1)
        self.rho = 0.0
        if rho is None:
            S = self._moments(torch.as_tensor(X), derivatives=False)[0]
            rho = float(rho_rel) * float(np.median(S.numpy()))
        if not (np.isfinite(rho) and rho > 0):
            raise ValueError(f"rho must be > 0, got {rho}")
        self.rho = float(rho)

    def _moments(self, x: torch.Tensor, derivatives: bool = True):
        """``S(x)`` (B, d) and, if asked, ``∂S_d/∂x_k`` (B, d, d), in blocks over x.

        The kernel sums are moments ``Σ_n w_n f(x_n)`` of a few monomials of the (centred)
        reference points, obtained by one matrix product per block; only the ``B × N``
        kernel matrix is formed. With ``Δ_n = x_n − x``:
        ``S_d = Σ w Δ_d²`` and ``∂S_d/∂x_k = Σ w Δ_k Δ_d² / σ² − 2 δ_dk Σ w Δ_d``.
        """
        xc = x.to(_DT) - self._center_t
        P, F, P2 = self.points, self._features, self._sqnorm
        d = self.dim
        S_out, dS_out = [], []
        for i in range(0, xc.shape[0], self.chunk_size):
            xb = xc[i : i + self.chunk_size]
            b = xb.shape[0]
            K = torch.addmm(P2[None, :], xb, P.T, alpha=-2.0)  # ‖x_n‖² − 2 x·x_n
            K.add_((xb * xb).sum(1, keepdim=True)).clamp_(min=0.0)
            K.mul_(-0.5 / self.sigma**2).exp_()
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
