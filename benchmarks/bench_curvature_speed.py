"""Wall time of diffusion curvature on all cells, side by side with PHATE on the same data.

Data: the 100-D toy tree of the other benchmarks (20 branches), ``--sizes`` cells. Ours:
``scfim.tl.diffusion_curvature(adata, use_rep="X")`` with its defaults (every cell); the
peer: ``phate.PHATE().fit_transform`` on the same matrix. Each runs in a fresh process
(peak memory includes imports and data generation for both). Besides wall time the table
gives the CPU time of the measured step (all threads), which is the fairer comparison on
a machine shared with other jobs.

Full protocol::

    .venv/bin/python benchmarks/bench_curvature_speed.py --sizes 3000 20000 100000
"""

from __future__ import annotations

import argparse
import os

try:
    from _common import DATA, fmt, measure, table
except ImportError:  # run from another directory
    from benchmarks._common import DATA, fmt, measure, table

OURS = (
    DATA
    + """
import torch
torch.set_num_threads({threads})
import anndata as ad, scfim
a = ad.AnnData(X)
t0, c0 = time.perf_counter(), time.process_time()
scfim.tl.diffusion_curvature(a, use_rep="X")
RESULT = {{"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0,
          "dim": int(a.uns["diffusion_curvature"]["dim"])}}
"""
)

PEER = (
    DATA
    + """
import phate
t0, c0 = time.perf_counter(), time.process_time()
Y = phate.PHATE(n_jobs={threads}, verbose=0, random_state=0).fit_transform(X)
RESULT = {{"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0}}
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
    header = ["cells", "dim", "ours s", "PHATE s", "ratio", "ours CPU s", "PHATE CPU s"]
    header += ["CPU ratio", "ours MiB", "PHATE MiB", "load"]
    rows = []
    for n in args.sizes:
        ours = measure(OURS.format(n=n, threads=args.threads))
        if "error" in ours:
            raise SystemExit(f"ours failed at n={n}: {ours['error']}")
        peer = {} if args.no_peer else measure(PEER.format(n=n, threads=args.threads))
        if "error" in peer:
            print(f"PHATE failed at n={n}: {peer['error']}")

        def ratio(key, a=ours, b=peer):
            return fmt(a[key] / b[key], ".2f") if key in b else "—"

        rows.append(
            [
                f"{n:,}",
                str(ours["dim"]),
                fmt(ours["seconds"]),
                fmt(peer.get("seconds")),
                ratio("seconds"),
                fmt(ours["cpu"]),
                fmt(peer.get("cpu")),
                ratio("cpu"),
                fmt(ours["peak_mib"], ".0f"),
                fmt(peer.get("peak_mib"), ".0f"),
                f"{os.getloadavg()[0]:.1f}",
            ]
        )
        print(table(rows[-1:], header), flush=True)  # each row as soon as it is measured
    print(table(rows, header))


if __name__ == "__main__":
    main()
