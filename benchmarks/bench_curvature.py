"""Sign prediction of diffusion curvature at the centre of spheres and saddles.

Protocol (as in the diffusion-curvature literature, where the published code scores 0.945
and Ollivier–Ricci curvature 0.5): for intrinsic dimension d = 2 … 6, 20 clouds of 2000
points each of the round unit d-sphere (positive curvature) and of the saddle
``z = Σ_j (−1)^j u_j²`` over the unit d-ball (negative scalar curvature at the centre); the
sign of ``C − C_flat`` at the centre point (observation 0) is compared with the truth.
Flat d-discs (``z = 0``) are reported separately (their truth is 0: the table gives the
fraction called positive and the mean relative deviation).

Full protocol (what the defaults run)::

    .venv/bin/python benchmarks/bench_curvature.py

Options: ``--clouds 20 --n-obs 2000 --t 16 --ball 30 --smooth 15 --dims 2 3 4 5 6``;
``--estimate-dim`` estimates the dimension of the flat reference by local PCA instead of
giving the true d.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from scfim import datasets
from scfim.geometry.curvature import diffusion_curvature

try:
    from _common import table
except ImportError:  # run from another directory
    from benchmarks._common import table

SHAPES = {"sphere": datasets.sphere, "saddle": datasets.saddle, "plane": datasets.plane}


def centre_curvature(
    shape: str, d: int, seed: int, args: argparse.Namespace
) -> tuple[float, float]:
    """``(C − C_flat, C_flat)`` at observation 0 of one cloud."""
    X = np.asarray(SHAPES[shape](n_obs=args.n_obs, n_dim=d, random_state=seed).X, float)
    res = diffusion_curvature(
        X,
        idx=np.array([0]),
        t=args.t,
        n_neighbors=args.n_neighbors,
        ball_neighbors=args.ball,
        smooth=args.smooth,
        dim=None if args.estimate_dim else d,
        random_state=seed,
    )
    return float(res.curvature[0]), float(res.flat[0])


def main() -> None:
    """Run the benchmark and print its table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clouds", type=int, default=20)
    p.add_argument("--n-obs", type=int, default=2000)
    p.add_argument("--t", type=int, default=16)
    p.add_argument("--n-neighbors", type=int, default=15)
    p.add_argument("--ball", type=int, default=30)
    p.add_argument("--smooth", type=int, default=15)
    p.add_argument("--dims", type=int, nargs="+", default=[2, 3, 4, 5, 6])
    p.add_argument("--estimate-dim", action="store_true")
    args = p.parse_args()
    print(
        f"clouds={args.clouds} n_obs={args.n_obs} t={args.t} n_neighbors={args.n_neighbors} "
        f"ball={args.ball} smooth={args.smooth} dim={'estimated' if args.estimate_dim else 'true'}"
    )
    rows, plane_rows = [], []
    correct_all: list[bool] = []
    t0 = time.perf_counter()
    for d in args.dims:
        acc = {}
        for shape in ("sphere", "saddle", "plane"):
            # seeds 1000+ are disjoint from the seeds used in the tests
            vals = np.array(
                [centre_curvature(shape, d, 1000 + s, args) for s in range(args.clouds)]
            )
            c, flat = vals[:, 0], vals[:, 1]
            if shape == "plane":
                plane_rows.append(
                    [
                        str(d),
                        f"{np.mean(c > 0):.2f}",
                        f"{np.mean(c / flat):+.3f}",
                        f"{np.std(c / flat):.3f}",
                    ]
                )
                continue
            ok = c > 0 if shape == "sphere" else c < 0
            correct_all.extend(ok.tolist())
            acc[shape] = (float(np.mean(ok)), float(np.mean(c / flat)))
        both = (acc["sphere"][0] + acc["saddle"][0]) / 2
        rows.append(
            [
                str(d),
                f"{acc['sphere'][0]:.2f}",
                f"{acc['saddle'][0]:.2f}",
                f"{both:.3f}",
                f"{acc['sphere'][1]:+.3f}",
                f"{acc['saddle'][1]:+.3f}",
            ]
        )
        print(f"d={d} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    header = ["d", "sphere acc", "saddle acc", "sign acc", "sphere rel", "saddle rel"]
    print(table(rows, header))
    print(
        f"overall sign accuracy (sphere + saddle): {np.mean(correct_all):.3f} "
        f"over {len(correct_all)} clouds; published diffusion curvature 0.945, "
        "Ollivier-Ricci 0.5"
    )
    print("\nflat discs (truth 0): fraction called positive, mean and sd of (C - C_flat)/C_flat")
    print(table(plane_rows, ["d", "frac > 0", "mean rel", "sd rel"]))
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
