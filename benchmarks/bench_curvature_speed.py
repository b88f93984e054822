"""Wall time of diffusion curvature on all cells, side by side with PHATE on the same data.

Data: the 100-D toy tree of the other benchmarks (20 branches), ``--sizes`` cells. Ours:
``scfim.tl.diffusion_curvature(adata, use_rep="X")`` with its defaults (every cell); the
peer: ``phate.PHATE().fit_transform`` on the same matrix. Each runs in a fresh process
(peak memory includes imports and data generation for both).

Full protocol::

    .venv/bin/python benchmarks/bench_curvature_speed.py --sizes 3000 20000 100000
"""

from __future__ import annotations

import argparse
import os

try:
    from _common import DATA, side_by_side, table
except ImportError:  # run from another directory
    from benchmarks._common import DATA, side_by_side, table

OURS = (
    DATA
    + """
import torch
torch.set_num_threads({threads})
import anndata as ad, scfim
a = ad.AnnData(X)
t0 = time.perf_counter()
scfim.tl.diffusion_curvature(a, use_rep="X")
RESULT = {{"seconds": time.perf_counter() - t0, "dim": int(a.uns["diffusion_curvature"]["dim"])}}
"""
)


def main() -> None:
    """Run the timing table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[3000, 20000])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-peer", action="store_true", help="skip PHATE")
    args = p.parse_args()
    print(f"threads={args.threads}, load {os.getloadavg()[0]:.1f} at start")
    rows = []
    for n in args.sizes:
        ours, _, cells = side_by_side(OURS, n, args.threads, not args.no_peer)
        rows.append([f"{n:,}", str(ours.get("dim")), *cells])
        print(f"n={n} done (load {os.getloadavg()[0]:.1f})", flush=True)
    header = [
        "cells",
        "dim",
        "ours s",
        "PHATE s",
        "time ratio",
        "ours MiB",
        "PHATE MiB",
        "mem ratio",
    ]
    print(table(rows, header))


if __name__ == "__main__":
    main()
