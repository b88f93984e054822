"""Full pipeline and per-cell FIM on a CUDA device vs the CPU, at 100k and 1M cells.

A short script for a machine with a GPU (it refuses to run without one). Each measurement
runs in its own child process (:func:`_common.measure`):

- **pipeline**: ``tl.diffusion`` → ``tl.jsd_phate`` → ``tl.neural_fim`` (the defaults,
  ``device="cuda"`` or ``"cpu"``) on the 100-D toy tree; the operator and JSD-PHATE run on
  the CPU either way (NumPy/SciPy), training and the per-cell FIM on the device. The CPU
  pipeline is run only up to ``--cpu-max`` cells (1M cells on the CPU take many minutes);
- **per-cell FIM**: trace, log-volume and eigenvalues of ``--members`` random networks
  (``d = 50``, ``m = 20``, hidden 100-100) on ``--fim-cells`` cells, on the device and on
  the CPU, with the largest relative difference between the two.

Prints one table and writes it as JSON to ``$OUT/bench_gpu.json`` when ``OUT`` is set.

Usage::

    python benchmarks/bench_gpu.py [--sizes 100000 1000000] [--cpu-max 100000]
        [--fim-cells 1000000] [--members 3] [--threads 16] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from _common import DATA_FILE, fmt, measure, table, tree_file

PIPELINE = (
    DATA_FILE
    + """
import torch
torch.set_num_threads({threads})
import anndata as ad, scfim
dev = {device!r}
def sync():
    if dev.startswith("cuda"):
        torch.cuda.synchronize()
a = ad.AnnData(X)
t0 = time.perf_counter()
scfim.tl.diffusion(a, use_rep="X", random_state=0)
t1 = time.perf_counter()
scfim.tl.jsd_phate(a)
t2 = time.perf_counter()
scfim.tl.neural_fim(a, random_state=0, progress=False, device=dev)
sync()
t3 = time.perf_counter()
fit = float(np.sum(a.uns["neural_fim"]["fit_seconds"]))
gpu = torch.cuda.max_memory_allocated() / 2**20 if dev.startswith("cuda") else 0.0
RESULT = {{"seconds": t3 - t0, "diffusion_s": t1 - t0, "jsd_phate_s": t2 - t1,
          "train_s": fit, "per_cell_s": t3 - t2 - fit, "gpu_mib": gpu}}
"""
)

FIM = """
import time
import numpy as np
import torch
torch.set_num_threads({threads})
from scfim.models.neural_fim import NeuralFIM
d, n, dev = 50, {n}, {device!r}
models = []
for i in range({members}):
    m = NeuralFIM(20, (100, 100), random_state=i, progress=False)
    m.net_ = m._init_net(d).eval()
    m.n_features_ = d
    models.append(NeuralFIM.from_dict(m.to_dict(), device=dev))
X = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
models[0].summary(X[:65536])  # warm-up (CUDA context, kernels)
if dev.startswith("cuda"):
    torch.cuda.synchronize()
t0 = time.perf_counter()
out = [m.summary(X) for m in models]
t1 = time.perf_counter()
np.save({save!r}, out[0]["eigenvalues"][:20000])
gpu = torch.cuda.max_memory_allocated() / 2**20 if dev.startswith("cuda") else 0.0
RESULT = {{"seconds": t1 - t0, "gpu_mib": gpu}}
"""


def main() -> None:
    """Run the measurements and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--cpu-max", type=int, default=100_000)
    parser.add_argument("--fim-cells", type=int, default=1_000_000)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(
            "no CUDA device: this benchmark measures the GPU path (`--device cpu` runs the "
            "script itself on the CPU only, as a smoke test)"
        )
    out_dir = Path(os.environ.get("OUT", "."))
    header = ["what", "cells", "device", "P (s)", "MDS (s)", "train (s)", "per-cell (s)"]
    header += ["total (s)", "host MiB", "GPU MiB"]
    rows, records = [], []

    def record(what: str, n: int, device: str, res: dict) -> None:
        records.append({"what": what, "cells": n, "device": device, **res})
        if "error" in res:
            rows.append([what, f"{n:,}", device, "error: " + res["error"][:60], *[""] * 6])
        else:
            rows.append(
                [
                    what,
                    f"{n:,}",
                    device,
                    fmt(res.get("diffusion_s")),
                    fmt(res.get("jsd_phate_s")),
                    fmt(res.get("train_s")),
                    fmt(res.get("per_cell_s")),
                    fmt(res["seconds"]),
                    fmt(res["peak_mib"], ".0f"),
                    fmt(res["gpu_mib"], ".0f"),
                ]
            )
        print(table(rows, header), flush=True)

    for n in args.sizes:
        path = tree_file(n)
        for device in [args.device] + (["cpu"] if n <= args.cpu_max else []):
            code = PIPELINE.format(path=path, threads=args.threads, device=device)
            record("pipeline", n, device, measure(code))

    n = args.fim_cells
    saved = {}
    for device in (args.device, "cpu"):
        saved[device] = str(out_dir / f"fim_eigenvalues_{device.replace(':', '')}.npy")
        code = FIM.format(
            n=n, threads=args.threads, device=device, members=args.members, save=saved[device]
        )
        record(f"per-cell FIM x{args.members}", n, device, measure(code))
    import numpy as np

    try:
        a, b = (np.load(saved[d]) for d in (args.device, "cpu"))
        diff = float(np.max(np.abs(a - b) / np.maximum(b[:, :1], 1e-300)))
        print(f"\nper-cell FIM, {args.device} vs cpu: largest |Δλ| / λ₁ = {diff:.2e}")
        records.append({"what": "eigenvalue agreement", "max_rel_diff": diff})
    except OSError as err:
        print(f"could not compare the eigenvalues: {err}")
    (out_dir / "bench_gpu.json").write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
