"""Geodesics as minimum-energy curves with fixed end points (pure torch; no AnnData).

A discrete curve ``c_0 = a, c_1, …, c_{n-1} = b`` has energy
``E = (n − 1) Σ_i Δc_iᵀ G(m_i) Δc_i`` with ``Δc_i = c_{i+1} − c_i`` and ``m_i`` the segment
midpoint; its length is ``L = Σ_i sqrt(Δc_iᵀ G(m_i) Δc_i)``. By Cauchy–Schwarz
``L² ≤ E / (n−1) · (n−1)`` with equality for constant speed, so minimising the energy
yields a constant-speed shortest curve. Many (a, b) pairs are solved at once: the total
energy is a sum of independent terms, minimised by L-BFGS with a strong-Wolfe line search.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .metric import Metric

__all__ = [
    "GeodesicResult",
    "curve_length",
    "curve_energy",
    "fisher_rao_energy",
    "energy_geodesic",
]


@dataclass
class GeodesicResult:
    """Output of :func:`energy_geodesic`.

    Attributes
    ----------
    paths
        ``(B, n_points, d)`` curves, end points included.
    lengths
        ``(B,)`` Riemannian lengths ``Σ sqrt(Δcᵀ G Δc)``.
    energies
        ``(B,)`` discrete energies.
    n_iter
        L-BFGS iterations used.
    """

    paths: np.ndarray
    lengths: np.ndarray
    energies: np.ndarray
    n_iter: int


def _segment_norms2(metric: Metric, c: torch.Tensor) -> torch.Tensor:
    """``Δc_iᵀ G(m_i) Δc_i`` for curves ``c`` of shape ``(B, n, d)`` → ``(B, n − 1)``."""
    B, n, d = c.shape
    dc = (c[:, 1:] - c[:, :-1]).reshape(-1, d)
    mid = (0.5 * (c[:, 1:] + c[:, :-1])).reshape(-1, d)
    return metric.inner(mid, dc).reshape(B, n - 1)


def curve_length(metric: Metric, c: torch.Tensor) -> torch.Tensor:
    """Riemannian length of discrete curves ``(B, n, d)`` → ``(B,)``."""
    return torch.sqrt(_segment_norms2(metric, c).clamp_min(0.0)).sum(1)


def curve_energy(metric: Metric, c: torch.Tensor) -> torch.Tensor:
    """Discrete energy ``(n − 1) Σ Δcᵀ G Δc`` of curves ``(B, n, d)`` → ``(B,)``."""
    return (c.shape[1] - 1) * _segment_norms2(metric, c).sum(1)


def fisher_rao_energy(nets, c: torch.Tensor) -> torch.Tensor:
    """Fisher–Rao discrete energy ``2(n − 1) Σ_i KL(φ(c_i) ‖ φ(c_{i+1}))`` of curves.

    Needs no Jacobian: since ``KL(φ(x) ‖ φ(x + dx)) ≈ ½ dxᵀ g dx`` it converges to the
    metric energy of the pull-back Fisher metric as the curve is refined. With several
    networks (an ensemble) the KL is averaged over the members, each member with itself:
    unlike the decoders of seed 002 (Part B), independently trained neural-FIM networks do
    not share output coordinates, so a cross-member KL would not vanish along the curve.

    Parameters
    ----------
    nets
        Torch modules returning logits (e.g. ``NeuralFIMMetric(...).nets``).
    c
        ``(B, n, d)`` curves.

    Returns
    -------
    ``(B,)`` energies.
    """
    B, n, d = c.shape
    flat = c.reshape(-1, d).double()
    logp = [torch.log_softmax(net(flat), -1).reshape(B, n, -1) for net in nets]
    total = torch.zeros(B, dtype=torch.float64)
    for lp in logp:
        total = total + (lp[:, :-1].exp() * (lp[:, :-1] - lp[:, 1:])).sum((-1, -2))
    return 2.0 * (n - 1) * total / len(logp)


def energy_geodesic(
    metric: Metric,
    start,
    end,
    *,
    n_points: int = 32,
    init: np.ndarray | None = None,
    energy=None,
    max_iter: int = 500,
    tol: float = 1e-10,
    dtype: torch.dtype = torch.float64,
) -> GeodesicResult:
    """Minimum-energy discrete curves between ``start[i]`` and ``end[i]`` (batched).

    Parameters
    ----------
    metric
        A :class:`~scfim.geometry.metric.Metric`.
    start, end
        ``(B, d)`` (or ``(d,)``) end points.
    n_points
        Points per curve, end points included (≥ 3).
    init
        Optional ``(B, n_points, d)`` starting curves (e.g. a graph shortest path or a
        density-metric solution, a "hot start"); straight lines otherwise. Their end points
        are replaced by ``start``/``end``.
    energy
        Optional callable ``curves (B, n, d) → (B,)`` energies to minimise instead of the
        metric energy, e.g. ``lambda c: fisher_rao_energy(nets, c)``. Lengths are always
        reported with ``metric``.
    max_iter
        L-BFGS iteration limit.
    tol
        Tolerance on the change of the energy / gradient.
    dtype
        Torch dtype of the optimisation.

    Returns
    -------
    :class:`GeodesicResult`.
    """
    a = torch.as_tensor(np.atleast_2d(np.asarray(start, dtype=np.float64)), dtype=dtype)
    b = torch.as_tensor(np.atleast_2d(np.asarray(end, dtype=np.float64)), dtype=dtype)
    if a.shape != b.shape:
        raise ValueError(f"start {tuple(a.shape)} and end {tuple(b.shape)} differ in shape")
    if n_points < 3:
        raise ValueError("n_points must be at least 3")
    ts = torch.linspace(0.0, 1.0, n_points, dtype=dtype)[None, :, None]
    line = (1 - ts) * a[:, None, :] + ts * b[:, None, :]
    if init is None:
        z0 = torch.zeros_like(line[:, 1:-1])
    else:
        c0 = torch.as_tensor(np.asarray(init, dtype=np.float64), dtype=dtype)
        if c0.shape != line.shape:
            raise ValueError(f"init must have shape {tuple(line.shape)}")
        z0 = c0[:, 1:-1] - line[:, 1:-1]
    z = z0.clone().requires_grad_(True)

    def curve(zz):
        return torch.cat([a[:, None], line[:, 1:-1] + zz, b[:, None]], dim=1)

    opt = torch.optim.LBFGS(
        [z],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=tol,
        tolerance_change=tol,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        c = curve(z)
        e = (curve_energy(metric, c) if energy is None else energy(c)).sum()
        e.backward()
        return e

    opt.step(closure)
    n_iter = int(opt.state[opt._params[0]].get("n_iter", 0))
    with torch.no_grad():
        c = curve(z)
        lengths = curve_length(metric, c)
        energies = curve_energy(metric, c) if energy is None else energy(c)
    return GeodesicResult(c.numpy(), lengths.numpy(), energies.numpy(), n_iter)
