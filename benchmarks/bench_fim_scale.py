"""Reproducibility of the per-cell FIM across data sizes, through ``scfim.tl.neural_fim``.

The 20-branch 100-D toy tree of ``bench_neural_fim.py`` at each size: one diffusion
operator (defaults), then two ``tl.neural_fim`` fits with different training seeds (five
networks each, the default), trained on a subsample above ``fit_cells`` cells or on all
cells (``--fit-cells 0``). Printed per size and setting: the aligned (cell by cell)
Pearson and Spearman correlations of the log-volume and the trace between the two fits
over all cells, the rounds of the schedule and the best held-out loss of the members, and
the wall time of each fit.

Usage::

    python benchmarks/bench_fim_scale.py                                  # 3000, 20000, 100000
    python benchmarks/bench_fim_scale.py --sizes 20000 --fit-cells 3000 0  # subsample vs all
    python benchmarks/bench_fim_scale.py --n-neighbors 30                  # another kernel scale
"""

from __future__ import annotations

import argparse
import os
import time

import anndata as ad
import numpy as np
from _common import table
from scipy.stats import pearsonr, spearmanr

import scfim
from scfim.tl.neural_fim import FIT_CELLS


def fit(a: ad.AnnData, seed: int, fit_cells: int | None) -> dict:
    """One default ``tl.neural_fim`` fit: its per-cell fields, rounds, held-out loss, time."""
    t0 = time.perf_counter()
    scfim.tl.neural_fim(a, random_state=seed, fit_cells=fit_cells, progress=False)
    info = a.uns["neural_fim"]
    losses = [np.asarray(v) for v in info["val_loss"].values()]
    return {
        "log_volume": a.obs["fim_log_volume"].to_numpy().copy(),
        "trace": a.obs["fim_trace"].to_numpy().copy(),
        "rounds": "/".join(str(v.size) for v in losses),
        "val": f"{min(float(v.min()) for v in losses):.2g}–{max(float(v.min()) for v in losses):.2g}",
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    """Parse the arguments and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[3000, 20000, 100000])
    parser.add_argument(
        "--fit-cells",
        type=int,
        nargs="*",
        default=[FIT_CELLS],
        help=f"training-subsample sizes to compare (default {FIT_CELLS}; 0: all cells)",
    )
    parser.add_argument("--seeds", type=int, nargs=2, default=[0, 10])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--n-neighbors", type=int, default=0, help="of tl.diffusion (default 0: its default)"
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    scfim.settings.verbosity = "warning"
    print(f"# bench_fim_scale  n_neighbors={args.n_neighbors or 'default'}", flush=True)
    header = ["cells", "training", "log-volume Pearson / Spearman", "trace Pearson / Spearman"]
    header += ["rounds (members)", "best held-out loss", "fit s", "load"]
    rows = []
    for n in args.sizes:
        a = ad.AnnData(scfim.datasets.tree(n_obs=n, n_dim=100, n_branches=20, random_state=0).X)
        kernel = {"n_neighbors": args.n_neighbors} if args.n_neighbors else {}
        scfim.tl.diffusion(a, use_rep="X", random_state=0, **kernel)
        for fc in args.fit_cells:
            fit_cells = fc if fc > 0 else None
            f0, f1 = (fit(a, s, fit_cells) for s in args.seeds)
            label = (
                "all cells"
                if fit_cells is None or n <= fit_cells
                else f"{fit_cells}-cell subsample"
            )

            def corr(key, f0=f0, f1=f1):
                return f"{pearsonr(f0[key], f1[key])[0]:.3f} / {spearmanr(f0[key], f1[key])[0]:.3f}"

            rows.append(
                [
                    f"{n:,}",
                    label,
                    corr("log_volume"),
                    corr("trace"),
                    f"{f0['rounds']}; {f1['rounds']}",
                    f"{f0['val']}; {f1['val']}",
                    f"{f0['seconds']:.0f}, {f1['seconds']:.0f}",
                    f"{os.getloadavg()[0]:.1f}",
                ]
            )
            print(table(rows, header), flush=True)


if __name__ == "__main__":
    main()
