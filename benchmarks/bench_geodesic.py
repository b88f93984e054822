"""Geodesic solvers side by side: sphere (vs stochman 0.3.0) and swiss roll (vs kNN Dijkstra).

(a) Sphere, ds² = dθ² + sin²θ dψ²: the pole test (π/4, 0) → (π/4, π) (exact length π/2)
    with our batched energy solver at its defaults, our neural-ODE solver (Eq. 9) and
    ``stochman.manifold.Manifold.connecting_geodesic`` at its defaults (a CubicSpline with
    Adam); then many random pairs in one batched call (exact: great-circle distances).
    Lengths are those of the returned curves: ours as reported (midpoint rule on the
    polyline) and on an 8× finer linear resampling of it; stochman's spline evaluated at
    2001 points.
(b) Swiss roll (``scfim.datasets.swiss_roll``; exact geodesic distance = Euclidean distance
    in the isometric coordinates (arc length s(t) = ½(t√(t²+1) + asinh t), height)): a
    neural FIM is trained on the roll, then FIM geodesic distances between random pairs of
    cells (energy solver, kNN-graph hot start, small density term), against the
    shortest-path distances of a kNN graph (scipy.sparse.csgraph.dijkstra). Fisher–Rao
    lengths are in information units, not in the roll's units, so they are compared after
    one least-squares scale factor (α = Σ d·g / Σ d²); Dijkstra distances are in the
    roll's units and are shown both raw and with the same kind of fitted scale. Spearman
    correlation needs no scale.

Timings are wall-clock on whatever machine runs this (the development machine had 2 busy
cores shared with other jobs); torch runs with one thread in our solvers.

Usage::

    python benchmarks/bench_geodesic.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import fmt, table

from scfim.geometry.geodesic import energy_geodesic
from scfim.geometry.geodesic_ode import ode_geodesic
from scfim.geometry.metric import SphereMetric

POLE_A = np.array([np.pi / 4, 0.0])
POLE_B = np.array([np.pi / 4, np.pi])


def _fine_length(metric, paths: np.ndarray, factor: int = 8) -> np.ndarray:
    n = paths.shape[1]
    src = np.linspace(0, 1, n)
    dst = np.linspace(0, 1, factor * (n - 1) + 1)
    fine = np.stack(
        [np.column_stack([np.interp(dst, src, p[:, j]) for j in range(p.shape[1])]) for p in paths]
    )
    return metric.curve_length(torch.as_tensor(fine)).numpy()


def _stochman():
    try:
        from stochman.curves import CubicSpline  # noqa: F401
        from stochman.manifold import Manifold
    except ImportError:
        return None

    class StochmanSphere(Manifold):
        def metric(self, p):  # diagonal metric, (N, d)
            return torch.stack([torch.ones_like(p[:, 0]), torch.sin(p[:, 0]) ** 2], 1)

    return StochmanSphere()


def _stochman_solve(man, A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, float]:
    """Stochman defaults (float32 CubicSpline, Adam); lengths on 2001 points, seconds."""
    p0 = torch.as_tensor(A, dtype=torch.float32)
    # the same copy of the end point as ours (ψ shifted by 2πk to within π of the start)
    B = SphereMetric().canonical_end(torch.as_tensor(A), torch.as_tensor(B)).numpy()
    p1 = torch.as_tensor(B, dtype=torch.float32)
    t0 = time.perf_counter()
    curve, _ = man.connecting_geodesic(p0, p1)
    sec = time.perf_counter() - t0
    with torch.no_grad():
        pts = curve(torch.linspace(0, 1, 2001)).double()
        if pts.ndim == 2:
            pts = pts[None]
        L = SphereMetric().curve_length(pts).numpy()
    return L, sec


def sphere(quick: bool) -> None:
    """Sphere geodesics against the exact great-circle distance."""
    m = SphereMetric()
    exact = np.pi / 2

    def row(label: str, r, sec: float) -> list[str]:
        """Reported and finely resampled errors (%) of a pole-test result, and its time."""
        return [
            label,
            fmt(100 * abs(r.lengths[0] / exact - 1), ".3f"),
            fmt(100 * abs(_fine_length(m, r.paths)[0] / exact - 1), ".3f"),
            fmt(sec, ".3f"),
        ]

    rows = []
    energy_geodesic(m, POLE_A, POLE_B, n_points=17)  # warm-up
    t0 = time.perf_counter()
    r = energy_geodesic(m, POLE_A, POLE_B)
    rows.append(row("scfim energy (97 pts, coarse-to-fine)", r, time.perf_counter() - t0))
    for n in (33, 65):
        t0 = time.perf_counter()
        r = energy_geodesic(m, POLE_A, POLE_B, n_points=n, refine=False, max_iter=500)
        rows.append(row(f"scfim energy ({n} pts, one level)", r, time.perf_counter() - t0))
    steps = 300 if quick else 1000
    t0 = time.perf_counter()
    r = ode_geodesic(m, POLE_A, POLE_B, n_steps=steps)
    sec = time.perf_counter() - t0
    label = f"scfim neural ODE (17 pts, {steps} Adam steps; end miss {r.endpoint_error[0]:.1e})"
    rows.append(row(label, r, sec))
    man = _stochman()
    if man is not None:
        L, sec = _stochman_solve(man, POLE_A[None], POLE_B[None])
        rows.append(
            [
                "stochman 0.3.0 defaults",
                "—",
                fmt(100 * abs(L[0] / exact - 1), ".3f"),
                fmt(sec, ".3f"),
            ]
        )
    else:
        rows.append(["stochman (not installed)", "—", "—", "—"])
    print("\n(a) sphere pole test (π/4,0) → (π/4,π), exact length π/2")
    print(table(rows, ["solver", "error % (reported)", "error % (curve, fine)", "s per pair"]))

    n = 200 if quick else 1000
    rng = np.random.default_rng(0)
    A = np.column_stack([rng.uniform(0.3, np.pi - 0.3, n), rng.uniform(0, 2 * np.pi, n)])
    B = np.column_stack([rng.uniform(0.3, np.pi - 0.3, n), rng.uniform(0, 2 * np.pi, n)])
    d = m.distance(A, B)
    rows = []
    t0 = time.perf_counter()
    r = energy_geodesic(m, A, B)
    sec = time.perf_counter() - t0
    rel = np.abs(r.lengths / d - 1) * 100
    rows.append(
        [
            f"scfim energy, {n} pairs in one call",
            fmt(np.median(rel), ".4f"),
            fmt(rel.max(), ".3f"),
            fmt(sec, ".2f"),
            fmt(sec / n, ".4f"),
        ]
    )
    k = 20 if quick else 50
    t0 = time.perf_counter()
    r = ode_geodesic(m, A[:k], B[:k])
    sec = time.perf_counter() - t0
    rel = np.abs(r.lengths / d[:k] - 1) * 100
    rows.append(
        [
            f"scfim neural ODE, {k} pairs in one call",
            fmt(np.median(rel), ".4f"),
            fmt(rel.max(), ".3f"),
            fmt(sec, ".2f"),
            fmt(sec / k, ".4f"),
        ]
    )
    if man is not None:
        k = 10 if quick else 20
        Ls, secs = [], 0.0
        for i in range(k):  # one by one: its default energy is averaged over the batch
            L, s = _stochman_solve(man, A[i : i + 1], B[i : i + 1])
            Ls.append(L[0])
            secs += s
        rel = np.abs(np.array(Ls) / d[:k] - 1) * 100
        rows.append(
            [
                f"stochman 0.3.0 defaults, {k} pairs one by one",
                fmt(np.median(rel), ".4f"),
                fmt(rel.max(), ".3f"),
                fmt(secs, ".2f"),
                fmt(secs / k, ".4f"),
            ]
        )
    print("\n    random pairs (θ ∈ [0.3, π−0.3], ψ ∈ [0, 2π); exact: great circles)")
    print(table(rows, ["solver", "median error %", "max error %", "total s", "s per pair"]))


def swiss_roll(quick: bool) -> None:
    """Swiss-roll geodesics against the true (unrolled) distances."""
    import scipy.sparse.csgraph as csgraph
    from scipy.stats import spearmanr

    import scfim
    from scfim.datasets import swiss_roll as make_roll
    from scfim.geometry.graph import knn_graph

    n_obs, n_pairs = (800, 20) if quick else (1500, 60)
    a = make_roll(n_obs=n_obs, sampling="arclength", random_state=0)
    X = np.asarray(a.X, dtype=np.float64)
    truth_coords = np.asarray(a.obsm["intrinsic"], dtype=np.float64)
    rng = np.random.default_rng(1)
    pairs = rng.choice(n_obs, size=(n_pairs, 2), replace=True)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    truth = np.linalg.norm(truth_coords[pairs[:, 0]] - truth_coords[pairs[:, 1]], axis=1)

    t0 = time.perf_counter()
    scfim.tl.diffusion(a, use_rep="X", random_state=0)
    scfim.tl.neural_fim(a, epochs=60 if quick else 150, random_state=0, progress=False)
    train_s = time.perf_counter() - t0

    rows = []

    def add(name, est, sec, scaled):
        if scaled:
            alpha = float((est * truth).sum() / (est * est).sum())
            est = alpha * est
        rel = np.abs(est - truth) / truth
        rho = spearmanr(est, truth).statistic
        rows.append([name, fmt(100 * rel.mean(), ".1f"), fmt(rho, ".3f"), fmt(sec, ".2f")])

    t0 = time.perf_counter()
    scfim.tl.geodesic(a, pairs[:, 0], pairs[:, 1], method="energy", energy="metric", n_points=32)
    sec = time.perf_counter() - t0
    fim = np.asarray(a.uns["geodesic"]["lengths"])
    add("scfim FIM geodesic, energy (scaled)", fim, sec, True)
    k = min(len(pairs), 10 if quick else 20)
    t0 = time.perf_counter()
    scfim.tl.geodesic(a, pairs[:k, 0], pairs[:k, 1], method="ode", key_added="g_ode")
    sec = time.perf_counter() - t0
    ode = np.asarray(a.uns["g_ode"]["lengths"])
    rho_ode = spearmanr(ode, truth[:k]).statistic
    rho_en = spearmanr(fim[:k], truth[:k]).statistic
    for kk in (10, 15):
        t0 = time.perf_counter()
        G = knn_graph(X, kk)
        G = G.maximum(G.T)
        D = csgraph.dijkstra(G, directed=False, indices=np.unique(pairs[:, 0]))
        sec = time.perf_counter() - t0
        row = {v: i for i, v in enumerate(np.unique(pairs[:, 0]))}
        dj = np.array([D[row[i], j] for i, j in pairs])
        add(f"kNN-graph Dijkstra k={kk} (raw)", dj, sec, False)
        add(f"kNN-graph Dijkstra k={kk} (scaled)", dj, sec, True)
    print(
        f"\n(b) swiss roll, {n_obs} cells (arc-length sampling), {len(pairs)} random pairs; "
        f"neural FIM training {train_s:.1f} s"
    )
    print(table(rows, ["method", "mean rel. error %", "Spearman", "s"]))
    prox_en = np.median(a.uns["geodesic"]["proximity"][:k])
    prox_ode = np.median(a.uns["g_ode"]["proximity"])
    nn = np.median(knn_graph(X, 1).data)
    print(
        f"    neural-ODE FIM geodesics (kNN-graph hot start) on the first {k} pairs: "
        f"Spearman {rho_ode:.3f} "
        f"(energy solver on the same pairs {rho_en:.3f}); ODE vs energy length ratio "
        f"median {np.median(ode / fim[:k]):.3f}; median proximity (max distance of a curve "
        f"point to the nearest cell) ODE {prox_ode:.2f}, energy {prox_en:.2f} "
        f"(median nearest-neighbour distance {nn:.2f})"
    )


def main() -> None:
    """Run the benchmark and print its table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer pairs, cells and steps")
    args = ap.parse_args()
    torch.set_num_threads(1)
    sphere(args.quick)
    swiss_roll(args.quick)


if __name__ == "__main__":
    main()
