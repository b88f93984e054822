"""Full pipeline (diffusion → JSD-PHATE → neural FIM) vs ``phate.PHATE().fit_transform``.

Both sides run on the same 100-D toy tree (``scfim.datasets.tree``), each in its own child
process (peak memory = the child's max RSS, data generation included on both sides), one
after the other in this run. Prints a table of wall times, peak memories and the ratios
ours / PHATE, then the time of the per-cell FIM (trace, log-volume, eigenvalues) of a
model with ``d = 50`` inputs on many cells, extrapolated linearly to 1M cells.

Budgets: at 3k, 20k and 100k cells the full pipeline no slower than PHATE and peak
memory no higher; 1M cells (``--million``, ours only) under 8 GiB; per-cell FIM of 1M
cells under 60 s on 2 cores. Timings on a shared machine depend on its load: the 1-minute
load average before each measurement is printed with every row.

phate is optional (``pip install phate``); without it only our side is measured.

Usage::

    python benchmarks/bench_neural_fim.py [--sizes 3000 20000 100000] [--million]
        [--fim-cells 200000]
"""

from __future__ import annotations

import argparse
import importlib.util
import os

from _common import OURS_JSD_PHATE, fmt, measure, side_by_side, table

OURS = (
    OURS_JSD_PHATE
    + """
scfim.tl.neural_fim(a, random_state=0, progress=False)
t3 = time.perf_counter()
fim = a.uns["neural_fim"]
RESULT = {{"seconds": t3 - t0, "diffusion_s": t1 - t0, "jsd_phate_s": t2 - t1,
          "neural_fim_s": t3 - t2, "states": int(a.uns["diffusion"]["n_states"]),
          "members": len(fim["val_loss"]),
          "epochs": "/".join(str(int(v.size)) for v in fim["val_loss"].values())}}
"""
)


FIM = """
import time
import numpy as np
import torch
torch.set_num_threads({threads})
from scfim.models.neural_fim import NeuralFIM
d, n = 50, {n}
model = NeuralFIM(20, (100, 100), random_state=0, verbose=False)
model.net_ = model._init_net(d).eval()
model.n_features_ = d
X = np.random.default_rng(0).normal(size=(n, d))
model.summary(X[:4096])  # warm-up
t0 = time.perf_counter()
s = model.summary(X)
RESULT = {{"seconds": time.perf_counter() - t0, "finite": bool(np.isfinite(s["trace"]).all())}}
"""


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3000, 20000, 100000])
    parser.add_argument("--million", action="store_true", help="also run ours on 1M cells")
    parser.add_argument("--fim-cells", type=int, default=200_000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    have_phate = importlib.util.find_spec("phate") is not None
    if not have_phate:
        print("phate is not installed (pip install phate): only our side is measured")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    header = [
        "cells",
        "P (s)",
        "MDS (s)",
        "nFIM (s)",
        "ours (s)",
        "PHATE (s)",
        "time ratio",
        "ours MiB",
        "PHATE MiB",
        "mem ratio",
        "states",
        "members",
        "epochs",
        "load",
    ]
    rows = []
    for n in args.sizes + ([1_000_000] if args.million else []):
        load = os.getloadavg()[0]
        ours, _, cells = side_by_side(OURS, n, args.threads, have_phate and n < 1_000_000)
        rows.append(
            [
                f"{n:,}",
                fmt(ours["diffusion_s"]),
                fmt(ours["jsd_phate_s"]),
                fmt(ours["neural_fim_s"]),
                *cells,
                str(ours["states"]),
                str(ours["members"]),
                str(ours["epochs"]),
                f"{load:.1f}",
            ]
        )
        print(table(rows, header), flush=True)

    n = args.fim_cells
    res = measure(FIM.format(n=n, threads=args.threads))
    if "error" in res:
        raise SystemExit(f"per-cell FIM failed: {res['error']}")
    per_cell = res["seconds"] / n
    print(
        f"\nper-cell FIM (d=50, m=20, hidden 100-100, {args.threads} threads): {n:,} cells in "
        f"{res['seconds']:.1f} s = {1e6 * per_cell:.1f} µs/cell → 1M cells ≈ "
        f"{1e6 * per_cell:.0f} s (budget 60 s), peak {res['peak_mib']:.0f} MiB"
    )


if __name__ == "__main__":
    main()
