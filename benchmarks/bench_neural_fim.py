"""Full pipeline (diffusion → JSD-PHATE → neural FIM) vs ``phate.PHATE().fit_transform``.

Both sides run on the same 100-D toy tree (``scfim.datasets.tree``), each in its own child
process, one after the other in this run. Each side is timed from just before its own
imports to the end of its fit (wall time and CPU time of all threads); peak memory is the
child's max RSS, data generation included on both sides. Our side runs the defaults of
``scfim.tl.diffusion``, ``scfim.tl.jsd_phate`` and ``scfim.tl.neural_fim`` (which
trains the ensemble and writes the per-cell FIM of every cell); the columns split it into
imports, operator (P), JSD-PHATE (MDS), training and per-cell FIM. Prints a table with
the ratios ours / PHATE, then the time of the per-cell FIM (trace, log-volume,
eigenvalues) of a network with ``d = 50`` inputs on ``--fim-cells`` cells, for one
network and for an ensemble of ``--fim-members``, extrapolated linearly to 1M cells.

Budgets: at 3k, 20k and 100k cells the full pipeline no slower than PHATE and peak
memory no higher; 1M cells (``--million``, ours only) under 8 GiB; per-cell FIM of 1M
cells under 60 s on 2 cores. Timings on a shared machine depend on its load: the 1-minute
load average before each measurement is printed with every row.

phate is optional (``pip install phate``); without it only our side is measured.

Usage::

    python benchmarks/bench_neural_fim.py [--sizes 3000 20000 100000] [--million]
        [--fim-cells 1000000] [--fim-members 3] [--no-fim] [--train-threads 1]
        [--n-neighbors 30]
"""

from __future__ import annotations

import argparse
import importlib.util
import os

from _common import OURS_JSD_PHATE, RATIO_HEADER, fmt, measure, side_by_side, table

OURS = (
    OURS_JSD_PHATE
    + """
scfim.tl.neural_fim(a, random_state=0, progress=False, num_threads=TRAIN_THREADS)
t3 = time.perf_counter()
fim = a.uns["neural_fim"]
fit = float(np.sum(fim["fit_seconds"]))
RESULT = {{"seconds": t3 - t0, "cpu": time.process_time() - c0, "import_s": t_import - t0,
          "diffusion_s": t1 - t_import, "jsd_phate_s": t2 - t1, "train_s": fit,
          "per_cell_s": t3 - t2 - fit, "states": int(a.uns["diffusion"]["n_states"]),
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
models = []
for i in range({members}):
    model = NeuralFIM(20, (100, 100), random_state=i, progress=False)
    model.net_ = model._init_net(d).eval()
    model.n_features_ = d
    models.append(model)
X = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
models[0].summary(X[:4096])  # warm-up
t0, c0 = time.perf_counter(), time.process_time()
s = models[0].summary(X)
t1, c1 = time.perf_counter(), time.process_time()
rest = [m.summary(X) for m in models[1:]]
t2, c2 = time.perf_counter(), time.process_time()
RESULT = {{"one_s": t1 - t0, "one_cpu": c1 - c0, "all_s": t2 - t0, "all_cpu": c2 - c0,
          "finite": bool(np.isfinite(s["trace"]).all())}}
"""


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[3000, 20000, 100000])
    parser.add_argument("--million", action="store_true", help="also run ours on 1M cells")
    parser.add_argument("--fim-cells", type=int, default=1_000_000)
    parser.add_argument("--fim-members", type=int, default=3)
    parser.add_argument("--no-fim", action="store_true", help="skip the per-cell FIM timing")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--train-threads",
        type=int,
        default=1,
        help="torch threads of the neural FIM training (tl.neural_fim's num_threads; default 1)",
    )
    parser.add_argument(
        "--n-neighbors",
        type=int,
        default=0,
        help="n_neighbors of our tl.diffusion (default 0: its default; PHATE keeps its own)",
    )
    args = parser.parse_args()
    have_phate = importlib.util.find_spec("phate") is not None
    if not have_phate:
        print("phate is not installed (pip install phate): only our side is measured")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    header = [
        "cells",
        "import (s)",
        "P (s)",
        "MDS (s)",
        "train (s)",
        "per-cell (s)",
        *RATIO_HEADER,
        "states",
        "members",
        "epochs",
        "load",
    ]
    rows = []
    for n in args.sizes + ([1_000_000] if args.million else []):
        load = os.getloadavg()[0]
        code = OURS.replace("TRAIN_THREADS", str(args.train_threads))
        kernel = f", n_neighbors={args.n_neighbors}" if args.n_neighbors else ""
        ours, _, cells = side_by_side(
            code, n, args.threads, have_phate and n < 1_000_000, diffusion_kw=kernel
        )
        rows.append(
            [
                f"{n:,}",
                fmt(ours["import_s"]),
                fmt(ours["diffusion_s"]),
                fmt(ours["jsd_phate_s"]),
                fmt(ours["train_s"]),
                fmt(ours["per_cell_s"]),
                *cells,
                str(ours["states"]),
                str(ours["members"]),
                str(ours["epochs"]),
                f"{load:.1f}",
            ]
        )
        print(table(rows, header), flush=True)
    if args.no_fim:
        return

    n, k = args.fim_cells, max(1, args.fim_members)
    load = os.getloadavg()[0]
    res = measure(FIM.format(n=n, threads=args.threads, members=k))
    if "error" in res:
        raise SystemExit(f"per-cell FIM failed: {res['error']}")
    for label, key, members in (("1 network", "one", 1), (f"{k} networks", "all", k)):
        if members == 1 and k == 1 and key == "all":
            continue
        wall, cpu = res[f"{key}_s"], res[f"{key}_cpu"]
        print(
            f"\nper-cell FIM, {label} (d=50, m=20, hidden 100-100, {args.threads} threads, "
            f"load {load:.1f}): {n:,} cells in {wall:.1f} s wall, {cpu:.1f} s CPU = "
            f"{1e6 * wall / n:.1f} µs/cell → 1M cells ≈ {1e6 * wall / n:.0f} s "
            f"(budget 60 s), peak {res['peak_mib']:.0f} MiB"
        )


if __name__ == "__main__":
    main()
