"""Geodesics by a neural ODE (Fasina et al., ICML 2023, Sec. 3.2, Eq. 9; pure torch).

A curve from ``x0`` is the solution of ``dx/dτ = f_θ(x, τ)``, ``τ ∈ [0, 1]``, integrated
with the fixed-step Runge–Kutta-4 solver of :mod:`torchdiffeq`. The parameters θ minimise

    L(θ) = Σ_i sqrt(Δx_iᵀ G(m_i) Δx_i)  +  λ ‖x(1) − x1‖²            (Eq. 9)

where the sum runs over the segments of the RK4 grid (``m_i`` the segment midpoints, the
same quadrature as :meth:`~scfim.geometry.metric.Metric.curve_length`), the metric is
differentiated along the path (not detached) and the square root is clamped away from 0.

**Batching.** Every (x0, x1) pair gets its own small MLP (three layers of width 64 with
SELU activations, as in the paper); the B networks are evaluated together with batched
matrix products, so B pairs cost one optimisation, and since the loss is a sum of per-pair
terms and Adam is element-wise, a pair's result does not depend on the other pairs in the
batch (all pairs start from the same initial weights, drawn from ``random_state``).

**Parametrisation.** ``f_θ(x, τ) = (x1 − x0) + s · MLP((x − c)/s, τ)`` with ``c`` the
midpoint and ``s = ‖x1 − x0‖`` (floored) of the pair, and the MLP's last layer initialised
to zero: training starts from the straight line, which meets the end point exactly, and
the inputs of the MLP are of order 1 whatever the scale of the coordinates. Each pair's
loss is its length divided by the length of the straight line plus
``λ ‖r‖²``, ``r = (x(1) − x1)/s``: Eq. 9 with a per-pair, scale-free weighting. With
``init`` curves (e.g. kNN-graph shortest paths; not in the paper) the base velocity is that
of the initial curve instead of ``x1 − x0``, so training starts along it.

**Departure: augmented Lagrangian.** A penalty λ large enough to meet the end point makes
the loss ill-conditioned for Adam (measured on the sphere: with λ = 1000 the length barely
moved in 400 steps), while a small λ leaves the end point off by ~1/λ. We add a multiplier
term ``μᵀr`` and update ``μ ← μ + 2λ r`` every ``multiplier_every`` steps, so a moderate
λ (10) meets the end point to ~1e-4·s; ``multiplier_every=0`` is plain Eq. 9.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .._threads import torch_threads
from .geodesic import GeodesicResult, end_points
from .metric import Metric

__all__ = ["ode_geodesic", "BatchedMLPField"]


class BatchedMLPField(nn.Module):
    """``B`` independent MLP vector fields ``f_b(x, τ)``, evaluated with batched matmuls.

    Parameters
    ----------
    start, end
        ``(B, d)`` end points of the pairs (they set the base velocity, the centre and the
        scale of each field).
    hidden
        Hidden widths.
    generator
        Torch generator for the (shared) initial weights.
    init
        Optional ``(B, m, d)`` initial curves (a hot start): the base velocity is then the
        velocity of the polyline, linearly interpolated in τ between interval midpoints,
        instead of the constant ``end − start``.
    """

    def __init__(
        self,
        start: torch.Tensor,
        end: torch.Tensor,
        hidden: tuple[int, ...] = (64, 64, 64),
        generator: torch.Generator | None = None,
        init: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        B, d = start.shape
        dtype = start.dtype
        self.register_buffer("velocity", end - start)
        self.n_intervals = None
        if init is not None:  # velocities of the initial polyline at its interval midpoints
            m = init.shape[1]
            self.register_buffer("knot_v", (m - 1) * (init[:, 1:] - init[:, :-1]))
            self.n_intervals = m - 1  # knots at the interval midpoints (i + ½)/(m − 1)
        self.register_buffer("centre", 0.5 * (start + end))
        span = (end - start).norm(dim=1, keepdim=True)
        floor = 1e-6 * torch.clamp(self.centre.norm(dim=1, keepdim=True), min=1.0)
        self.register_buffer("scale", torch.maximum(span, floor))
        widths = [d + 1, *[int(h) for h in hidden], d]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for k, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            if k == len(widths) - 2:  # last layer: zero, the field starts as the line
                W = torch.zeros(w_in, w_out, dtype=dtype)
            else:  # LeCun normal, the initialisation that suits SELU
                W = torch.randn(w_in, w_out, generator=generator, dtype=dtype) / math.sqrt(w_in)
            W = W.to(start.device)  # drawn on the host: the same weights on every device
            self.weights.append(nn.Parameter(W.expand(B, -1, -1).clone()))
            self.biases.append(
                nn.Parameter(torch.zeros(B, 1, w_out, dtype=dtype, device=start.device))
            )

    def forward(self, tau: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Velocities ``(B, d)`` at points ``x (B, d)`` and time ``tau`` (a scalar)."""
        h = (x - self.centre) / self.scale
        h = torch.cat([h, tau.expand(x.shape[0], 1).to(x.dtype)], 1)[:, None, :]
        n = len(self.weights)
        for k in range(n):
            h = torch.baddbmm(self.biases[k], h, self.weights[k])
            if k < n - 1:
                h = torch.selu(h)
        return self._base(tau) + self.scale * h[:, 0, :]

    def _base(self, tau: torch.Tensor) -> torch.Tensor:
        """Base velocity at time ``tau``: constant, or the initial polyline's, interpolated.

        Tensor operations only (no host synchronisation): the knots are equally spaced, so
        the interval of ``tau`` is an integer part, not a search.
        """
        if self.n_intervals is None:
            return self.velocity
        m1 = self.n_intervals  # m − 1 intervals, knots at (i + ½)/(m − 1), i = 0 … m − 2
        u = (tau.to(self.knot_v.dtype) * m1 - 0.5).clamp(0.0, m1 - 1.0)
        i = u.floor().clamp(max=max(m1 - 2, 0)).long().reshape(1)
        w = u - i.to(u.dtype)
        lo = self.knot_v.index_select(1, i)[:, 0]
        hi = self.knot_v.index_select(1, (i + 1).clamp(max=m1 - 1))[:, 0]
        return (1 - w) * lo + w * hi


def ode_geodesic(
    metric: Metric,
    start,
    end,
    *,
    n_points: int = 17,
    init: np.ndarray | None = None,
    hidden: tuple[int, ...] = (64, 64, 64),
    n_steps: int = 300,
    lr: float = 1e-2,
    lam: float = 10.0,
    multiplier_every: int = 20,
    eps: float = 1e-12,
    random_state: int | None = 0,
    dtype: torch.dtype = torch.float64,
    num_threads: int | None = 1,
    progress: bool = False,
) -> GeodesicResult:
    """Geodesics from ``start[i]`` towards ``end[i]`` by the neural ODE of Eq. 9 (batched).

    Parameters
    ----------
    metric
        A :class:`~scfim.geometry.metric.Metric`.
    start, end
        ``(B, d)`` (or ``(d,)``) end points; ``end`` goes through
        :meth:`Metric.canonical_end` as in :func:`~scfim.geometry.geodesic.energy_geodesic`.
    n_points
        Points of the RK4 grid on ``τ ∈ [0, 1]`` (one RK4 step between grid points), at
        which the length is evaluated and the curve returned.
    init
        Optional ``(B, m, d)`` initial curves (m ≥ 3; e.g. kNN-graph shortest paths): a hot
        start, not in the paper. The field's base velocity follows them, so training starts
        near that curve instead of the straight line (its end point is then met only up to
        the integration error, which the end-point term removes).
    hidden
        Hidden widths of each pair's vector field (SELU activations).
    n_steps
        Adam steps.
    lr
        Adam learning rate (cosine-decayed to a tenth over the steps).
    lam
        Weight λ of the end-point penalty ``‖(x(1) − x1)/s‖²`` (``s`` the pair's Euclidean
        distance), relative to the length divided by the straight line's length.
    multiplier_every
        Every this many steps, update a Lagrange multiplier ``μ ← μ + 2λ r`` of the
        end-point residual ``r = (x(1) − x1)/s`` whose term ``μᵀr`` is added to the loss
        (an augmented Lagrangian: the end point is met without a huge λ, which would make
        the loss ill-conditioned); 0 keeps the plain penalty of Eq. 9.
    eps
        Floor of ``Δxᵀ G Δx`` under the square root (its gradient is infinite at 0).
    random_state
        Seed of the initial weights (the same for every pair).
    dtype
        Torch dtype.
    num_threads
        Torch intra-op threads while training (restored afterwards). The operations are
        tiny, so one thread is fastest: measured 0.04 s per step with 1 thread against
        0.4 s with 2 on a busy 2-core machine. None keeps torch's setting.
    progress
        Show a tqdm progress bar.

    Returns
    -------
    :class:`~scfim.geometry.geodesic.GeodesicResult` with ``paths`` the ODE trajectories
    (the last point is ``x(1)``, not ``end``), their lengths and discrete energies, ``n_iter``
    the Adam steps, ``endpoint_error = ‖x(1) − end‖`` and ``method = "ode"``.
    """
    from torchdiffeq import odeint

    from .._progress import progress_bar

    a, b = end_points(metric, start, end, dtype)
    if n_points < 3:
        raise ValueError("n_points must be at least 3")
    if n_steps < 0 or multiplier_every < 0 or lr <= 0 or lam <= 0 or eps <= 0:
        raise ValueError("need n_steps, multiplier_every ≥ 0 and lr, lam, eps > 0")
    gen = torch.Generator().manual_seed(int(np.random.default_rng(random_state).integers(2**62)))
    c0 = None
    if init is not None:
        c0 = torch.as_tensor(np.asarray(init, dtype=np.float64), dtype=dtype, device=a.device)
        if c0.ndim != 3 or c0.shape[0] != a.shape[0] or c0.shape[2] != a.shape[1]:
            raise ValueError(f"init must have shape ({a.shape[0]}, m, {a.shape[1]})")
        if c0.shape[1] < 3:
            raise ValueError("init curves need at least 3 points")
        c0 = c0.clone()
        c0[:, 0], c0[:, -1] = a, b
    field = BatchedMLPField(a, b, tuple(hidden), generator=gen, init=c0)
    tau = torch.linspace(0.0, 1.0, int(n_points), dtype=dtype, device=a.device)
    with torch.no_grad():
        ref = metric.curve_length(torch.stack([a, b], 1)).clamp_min(1e-12)

    def trajectory():
        return odeint(field, a, tau, method="rk4").transpose(0, 1)  # (B, n, d)

    mult = torch.zeros_like(a)  # Lagrange multipliers of the end-point constraint

    def losses(c):
        length = torch.sqrt(metric.segment_norms2(c).clamp_min(eps)).sum(1)
        r = (c[:, -1] - b) / field.scale
        return length / ref + lam * (r * r).sum(1) + (mult * r).sum(1), r

    with torch_threads(num_threads):
        opt = torch.optim.Adam(field.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, n_steps), eta_min=0.1 * lr)
        for k in progress_bar(range(int(n_steps)), desc="neural ODE geodesic", progress=progress):
            opt.zero_grad()
            loss, r = losses(trajectory())
            loss.sum().backward()
            if multiplier_every and (k + 1) % multiplier_every == 0:
                mult = mult + 2 * lam * r.detach()
            opt.step()
            sched.step()
        with torch.no_grad():
            c = trajectory()
            lengths = metric.curve_length(c)
            energies = metric.curve_energy(c)
            err = (c[:, -1] - b).norm(dim=1)
    return GeodesicResult(
        c.cpu().numpy(),
        lengths.cpu().numpy(),
        energies.cpu().numpy(),
        int(n_steps),
        err.cpu().numpy(),
        "ode",
    )
