"""Out of core: fit neural FIM on a subsample, transform millions of cells from disk.

The workflow for atlases that do not fit in memory:

1. **fit** ``diffusion → neural_fim`` on a subsample (here the 50-D toy tree,
   ``--fit-cells`` cells, in memory);
2. **write** a synthetic ``--cells × 50`` float32 matrix to a zarr AnnData store, chunk by
   chunk (cells resampled from the fitted ones plus noise), never held in memory whole;
3. **transform** all cells with ``neural_fim_transform`` on the matrix read lazily as a
   dask array (``anndata.experimental.read_elem_lazy``): per-cell FIM chunk by chunk,
   ``obsm`` results written to a zarr store, ``obs`` columns in memory.

Every step runs in its own child process; peak memory is the child's maximum RSS
(imports, the AnnData and its obs names included). The transform step also reads the
per-cell fields back for the first ``--check`` cells and compares them with the
in-memory transform of the same cells (max relative difference).

Usage::

    python benchmarks/bench_out_of_core.py --cells 10000000 --dir /tmp/ooc
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from _common import fmt, measure, table

FIT = """
import time
import torch
torch.set_num_threads({threads})
import scfim
from scfim.datasets import tree
t0 = time.perf_counter()
a = tree(n_obs={fit_cells}, n_dim=50, n_branches=20, random_state=0)
scfim.tl.diffusion(a, use_rep="X", random_state=0)
scfim.tl.neural_fim(a, random_state=0, progress=False)
a.write_h5ad({fit_path!r})
RESULT = {{"seconds": time.perf_counter() - t0}}
"""

WRITE = """
import time
import anndata as ad
import dask.array as da
import numpy as np
import zarr
t0 = time.perf_counter()
fit = ad.read_h5ad({fit_path!r})
base = np.asarray(fit.X, dtype=np.float32)
noise = 0.05 * float(base.std())
n, chunk = {cells}, {chunk}

def block(i):
    rng = np.random.default_rng(1000 + i)
    m = min(chunk, n - i * chunk)
    pick = rng.integers(0, base.shape[0], m)
    return base[pick] + noise * rng.standard_normal((m, base.shape[1]), dtype=np.float32)

import dask
blocks = [da.from_delayed(dask.delayed(block)(i), (min(chunk, n - i * chunk), base.shape[1]),
                          np.float32) for i in range(-(-n // chunk))]
X = da.concatenate(blocks)
g = zarr.open_group({data_path!r}, mode="w")
ad.io.write_elem(g, "obsm/X_in", X)
RESULT = {{"seconds": time.perf_counter() - t0, "gib": X.nbytes / 2**30}}
"""

TRANSFORM = """
import time
import torch
torch.set_num_threads({threads})
import anndata as ad
import dask
import numpy as np
import zarr
from anndata.experimental import read_elem_lazy
import scfim
dask.config.set(scheduler="threads", num_workers={threads})
fit = ad.read_h5ad({fit_path!r})
t0 = time.perf_counter()
lazy = read_elem_lazy(zarr.open_group({data_path!r}, mode="r")["obsm/X_in"])
big = ad.AnnData(obsm={{"X_in": lazy}})
scfim.tl.neural_fim_transform(big, fit, use_rep="X_in", chunk_size={chunk},
                              store={store_path!r})
seconds = time.perf_counter() - t0
# the first cells again, in memory, against the out-of-core result (cell by cell)
k = {check}
small = ad.AnnData(obsm={{"X_in": np.asarray(lazy[:k])}})
scfim.tl.neural_fim_transform(small, fit, use_rep="X_in")
diff = max(
    float(np.max(np.abs(big.obs[c].to_numpy()[:k] - small.obs[c].to_numpy())
                 / np.maximum(np.abs(small.obs[c].to_numpy()), 1e-300)))
    for c in ("fim_trace", "fim_log_volume")
)
ev = np.asarray(big.obsm["fim_eigenvalues"][:k])
diff = max(diff, float(np.max(np.abs(ev - small.obsm["fim_eigenvalues"]))
                       / small.obsm["fim_eigenvalues"].max()))
RESULT = {{"seconds": seconds, "cells": big.n_obs, "max_rel_diff": diff,
          "finite": bool(np.isfinite(big.obs["fim_trace"]).all())}}
"""


def main() -> None:
    """Run the three steps, each in a child process, and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=10_000_000)
    parser.add_argument("--fit-cells", type=int, default=20_000)
    parser.add_argument("--chunk", type=int, default=65536)
    parser.add_argument("--check", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=Path("ooc_bench"))
    parser.add_argument("--keep", action="store_true", help="keep the stores on disk")
    parser.add_argument("--reuse", action="store_true", help="reuse the fit already in --dir")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    args.dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "fit_path": str(args.dir / "fit.h5ad"),
        "data_path": str(args.dir / "cells.zarr"),
        "store_path": str(args.dir / "fim.zarr"),
    }
    kw = {"threads": args.threads, "cells": args.cells, "chunk": args.chunk}
    kw.update(check=args.check, fit_cells=args.fit_cells, **paths)
    header = ["step", "cells", "time (s)", "peak MiB", "note"]
    rows = []
    for step, code, n in [
        ("fit (diffusion + neural FIM)", FIT, args.fit_cells),
        ("write 50-D float32 matrix", WRITE, args.cells),
        ("neural_fim_transform (dask)", TRANSFORM, args.cells),
    ]:
        if args.reuse and code is FIT and Path(paths["fit_path"]).exists():
            continue
        res = measure(code.format(**kw))
        if "error" in res:
            raise SystemExit(f"{step} failed: {res['error']}")
        note = ""
        if "gib" in res:
            note = f"{res['gib']:.2f} GiB on disk (uncompressed)"
        if "cells" in res and res["cells"] != n:
            raise SystemExit(f"{step}: transformed {res['cells']} cells, expected {n}")
        if "max_rel_diff" in res:
            note = (
                f"{1e6 * res['seconds'] / n:.1f} µs/cell; first {args.check:,} cells vs "
                f"in memory: max rel. diff {res['max_rel_diff']:.1e}; finite {res['finite']}"
            )
        rows.append([step, f"{n:,}", fmt(res["seconds"]), fmt(res["peak_mib"], ".0f"), note])
        print(table(rows, header), flush=True)
    if not args.keep:
        for p in ("data_path", "store_path"):
            shutil.rmtree(paths[p], ignore_errors=True)


if __name__ == "__main__":
    main()
