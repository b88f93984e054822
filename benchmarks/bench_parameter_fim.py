"""FIM over the diffusion parameters (σ, t) on the toy tree: timing, landscape, selection.

Reproduces the setting of Fig. 2B of the neural-FIM paper (Sec. 4.1) with scfim's own
toy tree: ``scfim.tl.parameter_fim`` on a 1000-cell tree (all cells, no subsampling) over
t = 1 … 15 and the default 9-point σ grid (σ₀/16 … 4σ₀, σ₀ the median squared distance to
the 15th neighbour). Prints the time of the grid, the log10-volume table, the selected
(σ, t), and the agreement of the automatic-differentiation FIM with central finite
differences at the selected point.

Run::

    python benchmarks/bench_parameter_fim.py            # 1000 cells, 15 × 9 grid
    python benchmarks/bench_parameter_fim.py --quick    # 300 cells, 6 × 5 grid
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import scfim
from scfim.datasets import tree
from scfim.geometry import parameter_fim as pf


def fd_agreement(X: np.ndarray, sigma: float, t: float) -> float:
    """Largest relative deviation of the autodiff FIM from a central-difference FIM."""
    D2 = pf.squared_distances(X)
    p, _, _ = pf.rows_jacobian(D2, sigma, t)
    hs, ht = 1e-5 * sigma, 1e-5 * t
    Js = (pf.diffusion_rows(D2, sigma + hs, t) - pf.diffusion_rows(D2, sigma - hs, t)) / (2 * hs)
    Jt = (pf.diffusion_rows(D2, sigma, t + ht) - pf.diffusion_rows(D2, sigma, t - ht)) / (2 * ht)
    g_fd = pf.fisher_from_jacobian(p, [Js, Jt])
    g = pf.parameter_fim(D2, sigma, t)
    return float(np.abs(g - g_fd).max() / np.abs(g).max())


def main() -> None:
    """Run the benchmark and print its table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-obs", type=int, default=1000)
    p.add_argument("--branches", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="300 cells, 6 × 5 grid")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    n = 300 if args.quick else args.n_obs
    t_values = [1, 2, 3, 5, 8, 12] if args.quick else list(range(1, 16))
    adata = tree(n_obs=n, n_dim=100, n_branches=args.branches, random_state=0)
    kw = {"n_values": 5} if args.quick else {}
    D2 = pf.squared_distances(np.asarray(adata.X, dtype=np.float64))
    sigma_values, sigma0 = pf.default_sigma_values(D2, n_neighbors=15, **kw)

    t0 = time.perf_counter()
    scfim.tl.parameter_fim(
        adata, t_values=t_values, sigma_values=sigma_values, n_cells=n, progress=False
    )
    seconds = time.perf_counter() - t0
    res = adata.uns["parameter_fim"]
    T, S = res["volume"].shape
    print(f"toy tree: {n} cells, {args.branches} branches, 100 dims; {args.threads} threads")
    print(f"grid {T} t × {S} σ = {T * S} points: {seconds:.1f} s ({seconds / (T * S):.2f} s/point)")
    print(f"σ₀ (median squared distance to the 15th neighbour) = {sigma0:.4g}")
    print()
    header = "t \\ σ/σ₀ " + " ".join(f"{s / sigma0:7.3g}" for s in res["sigma_values"])
    print("log10 √det g")
    print(header)
    lv = np.log10(np.where(res["volume"] > 0, res["volume"], np.nan))
    for i, t in enumerate(res["t_values"]):
        print(f"{t:8.3g} " + " ".join(f"{v:7.2f}" for v in lv[i]))
    b = res["best"]
    print()
    print(
        f"selected (largest volume): t = {b['t']:g}, σ = {b['sigma']:.4g} "
        f"(= {b['sigma'] / sigma0:.3g} σ₀), on the grid's edge: {b['on_boundary']}"
    )
    lv_log = pf.fim_log_volume(pf.to_log_sigma(res["fim"], res["sigma_values"]))
    i, j = np.unravel_index(np.argmax(lv_log), lv_log.shape)
    print(
        f"in coordinates (log σ, t) the largest volume is at t = {res['t_values'][i]:g}, "
        f"σ = {res['sigma_values'][j]:.4g} (= {res['sigma_values'][j] / sigma0:.3g} σ₀)"
    )
    err = fd_agreement(np.asarray(adata.X, dtype=np.float64), b["sigma"], b["t"])
    print(f"autodiff vs central differences at the selected point: max rel. deviation {err:.2e}")


if __name__ == "__main__":
    main()
