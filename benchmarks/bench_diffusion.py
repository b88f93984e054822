"""Diffusion operator + JSD-PHATE vs ``phate.PHATE().fit_transform``, side by side.

Both run on the same 100-D toy tree (``scfim.datasets.tree``), each in its own child
process (peak memory = the child's max RSS), one after the other in this run. Prints a
table with wall times, peak memories and the ratios ours / PHATE.

Budget: at 100k cells, time ratio ≤ 0.5 and memory ratio ≤ 1.0;
1M cells (``--million``, ours only) must finish under 8 GiB.

Usage::

    python benchmarks/bench_diffusion.py --sizes 3000 20000 100000 [--million]
"""

from __future__ import annotations

import argparse
import importlib.util
import os

from _common import OURS_JSD_PHATE, RATIO_HEADER, fmt, measure, side_by_side, table, tree_file

OURS = (
    OURS_JSD_PHATE
    + """
RESULT = {{"seconds": t2 - t0, "cpu": time.process_time() - c0, "import_s": t_import - t0,
          "diffusion_s": t1 - t_import, "jsd_phate_s": t2 - t1,
          "t": int(a.uns["diffusion"]["t"]), "states": int(a.uns["diffusion"]["n_states"])}}
"""
)


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3000, 20000, 100000])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--million", action="store_true", help="also run ours on 1M cells")
    args = parser.parse_args()
    have_phate = importlib.util.find_spec("phate") is not None
    if not have_phate:
        print("phate is not installed (pip install phate): only our side is measured")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    rows = []
    for n in args.sizes:
        ours, _, cells = side_by_side(OURS, n, args.threads, have_phate)
        rows.append(
            [f"{n:,}", fmt(ours["diffusion_s"]), fmt(ours["jsd_phate_s"]), *cells, str(ours["t"])]
        )
        print(
            table(
                rows,
                ["cells", "ours: P (s)", "ours: MDS (s)", *RATIO_HEADER, "t"],
            ),
            flush=True,
        )
    if args.million:
        res = measure(OURS.format(path=tree_file(1_000_000), threads=args.threads, diffusion_kw=""))
        if "error" in res:
            print(f"1M cells: failed: {res['error']}")
        else:
            print(
                f"1M cells (ours): {res['seconds']:.0f} s, peak {res['peak_mib'] / 1024:.2f} GiB "
                f"(budget 8 GiB), t = {res['t']}, {res['states']} landmarks"
            )


if __name__ == "__main__":
    main()
