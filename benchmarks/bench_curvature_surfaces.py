"""Sign of diffusion curvature on random smooth surfaces, per dimension and noise level.

Setting (after the random-surface battery of the diffusion-curvature authors' public
repository): for intrinsic dimension d = 2 … 6 and codimension ``--codim``, each normal
coordinate is a random quadratic form ``Σ_{i≤j} c_ij u_i u_j`` (``c_ij ~ N(0, 1)``) over
the chart ``[-1, 1]^d``; points are uniform on the surface (rejection sampling), the
origin is observation 0 and Gaussian noise of sd 0 … 0.2 is added to every coordinate.
The truth is the sign of the scalar curvature at the origin (Gauss's equation; twice the
Gaussian curvature at d = 2). ``--surfaces`` surfaces per (d, noise), seeds 20 000 + … ,
disjoint from the tuning clouds. Points per cloud: 2000, 3000, 4000, 6000, 8000 at
d = 2 … 6 (``--n-obs`` scales them; the authors' battery used 5000 at d ≤ 3 and 1000·2^d
beyond).

For context, the authors' current diffusion curvature scores 0.52–0.93 sign accuracy on
their battery depending on dimension and noise (reported in their repository; a
different draw of surfaces, so not a side-by-side comparison).

Full protocol (what the defaults run; about 10 minutes on a busy 2-core machine)::

    .venv/bin/python benchmarks/bench_curvature_surfaces.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from scfim.geometry.curvature import diffusion_curvature

try:
    import _curvature_shapes as shapes
    from _common import table
except ImportError:  # run from another directory
    from benchmarks import _curvature_shapes as shapes
    from benchmarks._common import table

SEED0 = 20_000
SIZES = {2: 2000, 3: 3000, 4: 4000, 5: 6000, 6: 8000}


def main() -> None:
    """Run the random-surface table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--surfaces", type=int, default=6)
    p.add_argument("--n-obs", type=float, default=1.0, help="scale of the cloud sizes")
    p.add_argument("--dims", type=int, nargs="+", default=[2, 3, 4, 5, 6])
    p.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.01, 0.05, 0.1, 0.2])
    p.add_argument("--codim", type=int, default=1)
    p.add_argument("--t", type=int, default=8)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--true-dim", action="store_true", help="flatten to the true d (no estimate)")
    args = p.parse_args()
    print(
        f"surfaces={args.surfaces} size scale={args.n_obs} codim={args.codim} "
        f"t={args.t} patch={args.patch} dim={'true' if args.true_dim else 'estimated'} "
        f"seeds {SEED0}+"
    )
    rows, allok = [], []
    t0 = time.perf_counter()
    for d in args.dims:
        n = int(args.n_obs * SIZES.get(d, 8000))
        row = [str(d), str(n)]
        for j, noise in enumerate(args.noise):
            ok, dims = [], []
            for s in range(args.surfaces):
                seed = SEED0 + 1000 * d + 100 * j + s
                rng = np.random.default_rng(seed)
                X, S = shapes.random_surface(n, d, args.codim, rng, noise=noise)
                res = diffusion_curvature(
                    X,
                    cells=np.array([0]),
                    t=args.t,
                    patch_size=args.patch,
                    dim=d if args.true_dim else None,
                    random_state=seed,
                )
                dims.append(res.dim)
                ok.append(bool(np.sign(res.curvature[0]) == np.sign(S)))
            allok.extend(ok)
            row.append(f"{np.mean(ok):.2f} (d̂ {np.median(dims):g})")
            print(f"d={d} noise={noise} done ({time.perf_counter() - t0:.0f} s)", flush=True)
        rows.append(row)
    print(table(rows, ["d", "points"] + [f"noise {x:g}" for x in args.noise]))
    print(
        f"overall {np.mean(allok):.3f} over {len(allok)} surfaces; the authors' method: "
        f"0.52–0.93 on their battery; total {time.perf_counter() - t0:.0f} s"
    )


if __name__ == "__main__":
    main()
