"""Reliability of geodesic energies across retrainings: single neural FIMs vs ensembles.

Seed 002 (Part A/B) measures how much the energy of the geodesic between the same pair of
points varies when the model is retrained: the coefficient of variation
CV = σ / μ over 5 retrainings (different seeds), for single models and for ensembles.
Here the model is the neural FIM on the toy tree (``scfim.datasets.tree``), the same fixed
cell pairs are connected under each retrained model, and CVs are reported per pair for

- the metric energy ``(n − 1) Σ Δcᵀ G Δc`` of the minimum-energy curve, where an
  ensemble's metric is the average of its members' pull-back Fisher metrics;
- the Jacobian-free Fisher–Rao energy ``2(n − 1) Σ KL(φ(c_i) ‖ φ(c_{i+1}))``. For an
  ensemble it is averaged over members *each with itself*: unlike the decoders of seed
  002, which share one output space, independently trained neural-FIM networks do not share
  output coordinates (their simplices are permuted/rotated relative to each other), so the
  seed's average over pairs of different members would not vanish along a curve. This is
  a documented departure from the seed.

Both energies start from the kNN-graph shortest path (hot start) with a small density term
(weight 1e-3) that keeps curves near the cells. Timings on a busy 2-core machine.

Usage::

    python benchmarks/bench_geodesic_ensemble.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import fmt, table

import scfim
from scfim.datasets import tree


def main() -> None:
    """Run the benchmark and print its table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller tree, fewer epochs")
    ap.add_argument("--members", type=int, default=5, help="ensemble size")
    ap.add_argument("--runs", type=int, default=5, help="retrainings (seeds)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    n_obs, epochs = (400, 30) if args.quick else (1000, 80)
    a0 = tree(n_obs=n_obs, n_dim=20, n_branches=5, random_state=0)
    scfim.tl.diffusion(a0, use_rep="X", random_state=0)
    rng = np.random.default_rng(0)
    pairs = rng.choice(n_obs, size=(6, 2), replace=False)
    branch = a0.obs["branch"].to_numpy() if "branch" in a0.obs else None

    energies = {}  # (kind, energy) -> (runs, pairs)
    t_start = time.perf_counter()
    for kind, n_ens in (("single", 1), (f"ensemble of {args.members}", args.members)):
        for en in ("metric", "fisher_rao"):
            energies[(kind, en)] = []
        for run in range(args.runs):
            a = a0.copy()
            scfim.tl.neural_fim(
                a,
                n_ensemble=n_ens,
                epochs=epochs,
                hidden=(64, 64),
                n_components=20,
                random_state=100 * run,  # members use seeds 100·run + i
                progress=False,
            )
            for en in ("metric", "fisher_rao"):
                scfim.tl.geodesic(
                    a, pairs[:, 0], pairs[:, 1], method="energy", n_points=24, energy=en
                )
                energies[(kind, en)].append(np.asarray(a.uns["geodesic"]["energies"]))
        print(f"  {kind}: {args.runs} trainings done ({time.perf_counter() - t_start:.0f} s)")

    rows = []
    for p, (i, j) in enumerate(pairs):
        label = f"{i}→{j}"
        if branch is not None:
            label += f" (br {branch[i]}→{branch[j]})"
        row = [label]
        for key in energies:
            E = np.array(energies[key])[:, p]
            row.append(fmt(E.std() / E.mean(), ".3f"))
        rows.append(row)
    mean_row = ["mean CV"]
    for key in energies:
        E = np.array(energies[key])
        mean_row.append(fmt(float(np.mean(E.std(0) / E.mean(0))), ".3f"))
    rows.append(mean_row)
    header = ["pair"] + [f"CV {kind}, {en}" for kind, en in energies]
    print(
        f"\nCV (σ/μ) of geodesic energies over {args.runs} retrainings, toy tree "
        f"({n_obs} cells, 20-D, {epochs} epochs)"
    )
    print(table(rows, header))


if __name__ == "__main__":
    main()
