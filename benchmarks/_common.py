"""Helpers shared by the benchmark scripts: run a job in a child process, measure it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# Child-process code shared by the benchmarks: the same toy tree for every contender, and
# the peer (PHATE). Format with n (cells) and threads.
DATA = """
import numpy as np
import time
from scfim.datasets import tree
X = tree(n_obs={n}, n_dim=100, n_branches=20, random_state=0).X
"""

# our diffusion + JSD-PHATE, timed (t0 → t1 → t2); the scripts append their RESULT line
OURS_JSD_PHATE = (
    DATA
    + """
import torch
torch.set_num_threads({threads})
import anndata as ad, scfim
a = ad.AnnData(X)
t0 = time.perf_counter()
scfim.tl.diffusion(a, use_rep="X", random_state=0)
t1 = time.perf_counter()
scfim.tl.jsd_phate(a)
t2 = time.perf_counter()
"""
)

PHATE = (
    DATA
    + """
import phate
t0 = time.perf_counter()
Y = phate.PHATE(n_jobs={threads}, verbose=0, random_state=0).fit_transform(X)
RESULT = {{"seconds": time.perf_counter() - t0}}
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


def side_by_side(ours_code: str, n: int, threads: int, with_peer: bool) -> tuple[dict, dict, list]:
    """Measure our pipeline then PHATE on ``n`` cells; return both results and the ratio cells.

    The returned list is ``[ours s, PHATE s, time ratio, ours MiB, PHATE MiB, memory ratio]``
    formatted for :func:`table`.
    """
    ours = measure(ours_code.format(n=n, threads=threads))
    if "error" in ours:
        raise SystemExit(f"our pipeline failed at n={n}: {ours['error']}")
    peer = measure(PHATE.format(n=n, threads=threads)) if with_peer else {}
    if "error" in peer:
        print(f"PHATE failed at n={n}: {peer['error']}")
    ts = ours["seconds"] / peer["seconds"] if "seconds" in peer else None
    ms = ours["peak_mib"] / peer["peak_mib"] if "peak_mib" in peer else None
    cells = [
        fmt(ours["seconds"]),
        fmt(peer.get("seconds")),
        fmt(ts, ".2f"),
        fmt(ours["peak_mib"], ".0f"),
        fmt(peer.get("peak_mib"), ".0f"),
        fmt(ms, ".2f"),
    ]
    return ours, peer, cells


def fmt(x: float | None, spec: str = ".1f") -> str:
    return "—" if x is None else format(x, spec)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "| " + " | ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *map(line, rows)])
