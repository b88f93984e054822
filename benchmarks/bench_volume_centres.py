"""Is the FIM volume highest at the centres of the cell clusters? (pbmc68k_reduced)

Fasina et al. (2023) read the per-cell FIM volume of PBMCs as highest at the cluster
centres. This script measures that claim cluster by cluster: for each louvain cluster of
scanpy's ``pbmc68k_reduced``, the Spearman correlation over its cells between
``obs["fim_log_volume"]`` and the distance to the cluster's centroid in ``X_pca``
(negative: higher volume towards the centre), with its p-value, after ``tl.diffusion`` and
``tl.neural_fim`` with their defaults. One row per training seed and cluster, then the
count of clusters with a significant (p < 0.05) trend each way per seed, and the
cluster-by-cluster agreement of the correlations between seeds.

Usage::

    python benchmarks/bench_volume_centres.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import table
from scipy.stats import pearsonr, spearmanr


def cluster_trends(adata, groupby: str = "louvain", basis: str = "X_pca"):
    """Per cluster: (name, cells, Spearman ρ, p) of log-volume vs distance to the centroid."""
    X = np.asarray(adata.obsm[basis])
    lv = adata.obs["fim_log_volume"].to_numpy()
    labels = adata.obs[groupby].astype(str).to_numpy()
    out = []
    for name in sorted(set(labels), key=lambda s: (len(s), s)):
        idx = np.flatnonzero(labels == name)
        dist = np.linalg.norm(X[idx] - X[idx].mean(0), axis=1)
        rho, p = spearmanr(lv[idx], dist)
        out.append((name, idx.size, float(rho), float(p)))
    return out


def main() -> None:
    """Train with each seed and print the per-cluster table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()

    import scfim

    scfim.settings.verbosity = "warning"
    rows, per_seed = [], {}
    for seed in args.seeds:
        a = scfim.datasets.pbmc68k_reduced()
        t0 = time.perf_counter()
        scfim.tl.diffusion(a, random_state=0)
        scfim.tl.neural_fim(a, random_state=seed, progress=False)
        sec = time.perf_counter() - t0
        trends = cluster_trends(a)
        per_seed[seed] = np.array([r[2] for r in trends])
        towards = sum(r[2] < 0 and r[3] < 0.05 for r in trends)
        away = sum(r[2] > 0 and r[3] < 0.05 for r in trends)
        for name, n, rho, p in trends:
            rows.append([str(seed), name, str(n), f"{rho:+.2f}", f"{p:.3g}", ""])
        rows.append(
            [str(seed), "all", str(a.n_obs), "", "", f"{towards} towards, {away} away; {sec:.0f} s"]
        )
    print("## log-volume vs distance to the louvain cluster's centroid (X_pca), per cluster")
    print(table(rows, ["seed", "cluster", "cells", "Spearman ρ", "p", "significant (p < 0.05)"]))
    seeds = list(per_seed)
    for i, s in enumerate(seeds):
        for t in seeds[i + 1 :]:
            r = pearsonr(per_seed[s], per_seed[t])[0]
            print(f"seeds {s} vs {t}: Pearson of the per-cluster ρ {r:.2f}")


if __name__ == "__main__":
    main()
