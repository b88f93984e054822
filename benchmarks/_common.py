"""Helpers shared by the benchmark scripts: run a job in a child process, measure it."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

# Child-process code shared by the benchmarks: the same toy tree for every contender, and
# the peer (PHATE). Format with n (cells) and threads.
DATA = """
import numpy as np
import time
from scfim.datasets import tree
X = tree(n_obs={n}, n_dim=100, n_branches=20, random_state=0).X
"""

# The same toy tree, generated once by the parent and read from a .npy file, so that a
# contender's process holds only what that contender imports (generating the data in the
# child would load scfim, and with it torch, into the peer's process too). Format with
# path (from :func:`tree_file`) and threads.
DATA_FILE = """
import numpy as np
import time
X = np.load({path!r})
"""

# Both contenders are timed from just before their own imports (the cost a user pays in a
# fresh session: imports, lazily imported dependencies, JIT caches) to the end of the fit,
# in wall time (t0 → …) and in CPU time of all threads (c0 → …); the data are generated
# before, identically for both.
# our diffusion + JSD-PHATE, timed (t0 → t_import → t1 → t2); the scripts append their
# RESULT line. ``diffusion_kw``: further keyword arguments of our tl.diffusion as source
# text (e.g. ", n_neighbors=30"; empty: the defaults), filled by side_by_side
OURS_JSD_PHATE = (
    DATA_FILE
    + """
t0, c0 = time.perf_counter(), time.process_time()
import torch
torch.set_num_threads({threads})
import anndata as ad, scfim
a = ad.AnnData(X)
t_import = time.perf_counter()
scfim.tl.diffusion(a, use_rep="X", random_state=0{diffusion_kw})
t1 = time.perf_counter()
scfim.tl.jsd_phate(a)
t2 = time.perf_counter()
"""
)

PHATE = (
    DATA_FILE
    + """
t0, c0 = time.perf_counter(), time.process_time()
import phate
t_import = time.perf_counter()
Y = phate.PHATE(n_jobs={threads}, verbose=0, random_state=0).fit_transform(X)
RESULT = {{"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0,
          "import_s": t_import - t0}}
"""
)


def measure(code: str, timeout: float | None = None) -> dict:
    """Run ``code`` in a fresh Python process; return its JSON result plus peak RSS (MiB).

    ``code`` must print one JSON object on its last stdout line (with the wall time of the
    measured step under ``"seconds"``). Peak memory is the child's maximum resident set
    size, so imports and data generation are included for every contender alike.
    """
    wrapper = textwrap.dedent(
        """
        import json, resource, sys
        ns = {}
        exec(compile(sys.stdin.read(), "<bench>", "exec"), ns)
        res = ns["RESULT"]
        res["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(res))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", wrapper],
        input=textwrap.dedent(code),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def gaussian_sigma(X: np.ndarray, k: int = 15) -> float:
    """Bandwidth of the benchmarks' ``tl.diffusion(kernel="gaussian")``.

    The median distance to the k-th neighbour (the kernel is ``exp(-d² / σ)``).
    """
    from scfim.geometry.graph import knn_graph

    return float(np.median(np.asarray(knn_graph(np.asarray(X), k).max(1).todense())))


def tree_file(n: int) -> str:
    """Path of a ``.npy`` file with the ``n``-cell, 100-D toy tree (written on first use)."""
    path = Path(tempfile.gettempdir()) / f"scfim_bench_tree_{n}.npy"
    if not path.exists():
        from scfim.datasets import tree

        X = tree(n_obs=n, n_dim=100, n_branches=20, random_state=0).X
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, X)
        tmp.replace(path)
    return str(path)


def side_by_side(
    ours_code: str, n: int, threads: int, with_peer: bool, diffusion_kw: str = ""
) -> tuple[dict, dict, list]:
    """Measure our pipeline then PHATE on ``n`` cells; return both results and the ratio cells.

    Both read the same data from :func:`tree_file`; the templates are formatted with
    ``path`` and ``threads`` (ours also with ``diffusion_kw``, see :data:`OURS_JSD_PHATE`).

    The returned list is ``[ours s, PHATE s, time ratio, ours CPU s, PHATE CPU s, CPU ratio,
    ours MiB, PHATE MiB, memory ratio]`` formatted for :func:`table` (:data:`RATIO_HEADER`).
    """
    path = tree_file(n)
    ours = measure(ours_code.format(path=path, threads=threads, diffusion_kw=diffusion_kw))
    if "error" in ours:
        raise SystemExit(f"our pipeline failed at n={n}: {ours['error']}")
    peer = measure(PHATE.format(path=path, threads=threads)) if with_peer else {}
    if "error" in peer:
        print(f"PHATE failed at n={n}: {peer['error']}")

    def ratio(key: str) -> float | None:
        return ours[key] / peer[key] if key in peer and key in ours else None

    cells = [
        fmt(ours["seconds"]),
        fmt(peer.get("seconds")),
        fmt(ratio("seconds"), ".2f"),
        fmt(ours.get("cpu")),
        fmt(peer.get("cpu")),
        fmt(ratio("cpu"), ".2f"),
        fmt(ours["peak_mib"], ".0f"),
        fmt(peer.get("peak_mib"), ".0f"),
        fmt(ratio("peak_mib"), ".2f"),
    ]
    return ours, peer, cells


#: Column names of the cells returned by :func:`side_by_side`.
RATIO_HEADER = [
    "ours (s)",
    "PHATE (s)",
    "time ratio",
    "ours CPU s",
    "PHATE CPU s",
    "CPU ratio",
    "ours MiB",
    "PHATE MiB",
    "mem ratio",
]


def fmt(x: float | None, spec: str = ".1f") -> str:
    return "—" if x is None else format(x, spec)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "| " + " | ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *map(line, rows)])
