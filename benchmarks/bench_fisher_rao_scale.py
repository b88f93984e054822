"""Fisher–Rao distances and pseudotime at 10k cells: time, and what each shortcut costs.

Data: the toy tree of the other benchmarks (``scfim.datasets.tree``, 100-D, 20 branches),
10 000 cells; a neural FIM trained with ``epochs`` (30 by default: the time of the geodesic
tools does not depend on how well the network is trained).

(a) All-pairs distances among 100 evenly spaced cells (4,950 pairs):

- ours, graph (``tl.fisher_rao_distances`` default): kNN graph with Fisher–Rao edge
  lengths, one Dijkstra run per cell;
- ours, energy (``method="energy"``): graph paths refined by the energy solver, timed on
  the pairs among 10 cells and extrapolated per pair;
- the previous implementation: one energy solve per pair started from the Euclidean
  kNN-graph path, with the density term summed over all (up to 5000) mixture components
  at every curve point (``DensityMetric(n_nearest=None)``), timed on the same pairs and
  extrapolated (with the same Fisher–Rao energy as ours, so that only the density term
  differs);
- peer: Dijkstra on the Euclidean kNN graph (k = 15).

(b) Shortcut costs, as relative differences of the distances: the kNN-restricted density
term (32 nearest components) against the full mixture sum, for the graph distances
(4,950 pairs) and for the energy-refined ones (45 pairs); and graph against refined.

(c) Pseudotime from one root to all 10 000 cells: ``tl.fisher_rao_pseudotime`` against
scanpy's ``sc.pp.neighbors`` + ``sc.tl.diffmap`` + ``sc.tl.dpt``.

Usage::

    python benchmarks/bench_fisher_rao_scale.py [--n-obs 10000] [--epochs 30]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import fmt, table


def main() -> None:
    """Run (a)–(c) and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-obs", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(1)

    import anndata as ad
    import scanpy as sc

    import scfim
    from scfim.datasets import tree
    from scfim.geometry.distances import geodesic_distances, metric_graph
    from scfim.geometry.geodesic import energy_geodesic
    from scfim.geometry.graph import graph_paths, knn_graph, shortest_paths, symmetrize
    from scfim.geometry.metric import NeuralFIMMetric, with_density
    from scfim.models.neural_fim import NeuralFIM

    n = args.n_obs
    a = ad.AnnData(tree(n_obs=n, n_dim=100, n_branches=20, random_state=0).X.astype(np.float32))
    t0 = time.perf_counter()
    scfim.tl.diffusion(a, use_rep="X", random_state=0)
    scfim.tl.neural_fim(a, epochs=args.epochs, random_state=0, progress=False)
    print(
        f"{n} cells, 100-D; diffusion + neural FIM ({args.epochs} epochs) "
        f"{time.perf_counter() - t0:.0f} s"
    )
    X = np.asarray(a.X, dtype=np.float64)
    cells = np.linspace(0, n - 1, 100).astype(int)
    few = cells[::10]  # 10 cells, 45 pairs
    iu100, iu10 = np.triu_indices(100, 1), np.triu_indices(10, 1)

    rows = []
    t0 = time.perf_counter()
    scfim.tl.fisher_rao_distances(a, cells)
    t_graph = time.perf_counter() - t0
    D_graph = a.uns["fisher_rao_distances"]["distances"]
    rows.append(["ours, graph (default)", "4950", fmt(t_graph), fmt(t_graph), "measured"])

    t0 = time.perf_counter()
    scfim.tl.fisher_rao_distances(a, few, method="energy", key_added="e")
    t_en = time.perf_counter() - t0
    D_en = a.uns["e"]["distances"]
    rows.append(
        [
            "ours, energy (graph paths refined)",
            "45",
            fmt(t_en),
            fmt(t_en / 45 * 4950, ".0f"),
            "extrapolated per pair",
        ]
    )

    info = a.uns["neural_fim"]
    models = [NeuralFIM.from_dict(info["models"][k]) for k in sorted(info["models"], key=int)]
    fim = NeuralFIMMetric(models)
    full, _ = with_density(fim, X, 1e-3)  # density over all (≤ 5000) components
    t0 = time.perf_counter()
    s, e = few[iu10[0]], few[iu10[1]]
    init, _ = graph_paths(symmetrize(knn_graph(X, 15)), X, s, e, 24)
    old = energy_geodesic(  # the same Fisher–Rao energy: only the density term differs
        full, X[s], X[e], n_points=24, init=init, energy=full.divergence_energy, max_iter=300
    )
    t_old = time.perf_counter() - t0
    rows.append(
        [
            "previous: energy per pair, full density",
            "45",
            fmt(t_old),
            fmt(t_old / 45 * 4950, ".0f"),
            "extrapolated per pair",
        ]
    )

    t0 = time.perf_counter()
    Dk = shortest_paths(symmetrize(knn_graph(X, 15)), cells)[:, cells]
    t_dj = time.perf_counter() - t0
    rows.append(["peer: Euclidean kNN Dijkstra (k=15)", "4950", fmt(t_dj), fmt(t_dj), "measured"])
    print("\n(a) distances among 100 cells of", n)
    print(table(rows, ["method", "pairs run", "s", "s for 4950 pairs", "note"]))
    print(
        f"    ours graph / peer time ratio {t_graph / t_dj:.1f}; "
        f"Spearman(ours graph, Euclidean Dijkstra) "
        f"{__import__('scipy.stats').stats.spearmanr(D_graph[iu100], Dk[iu100]).statistic:.3f}"
    )

    # (b) shortcut costs
    rows = []
    t0 = time.perf_counter()
    G_full = metric_graph(X, full)
    r_full = geodesic_distances(full, X, cells, graph=G_full)
    t_full = time.perf_counter() - t0

    def rel(u, v):
        r = np.abs(u - v) / np.maximum(np.abs(v), 1e-300)
        return fmt(100 * np.median(r), ".3f"), fmt(100 * r.max(), ".3f")

    rows.append(
        [
            "graph: 32 nearest components vs all",
            *rel(D_graph[iu100], r_full.distances[iu100]),
            f"{fmt(t_graph)} vs {fmt(t_full)}",
        ]
    )
    rows.append(
        [
            "energy: 32 nearest components vs all (previous)",
            *rel(D_en[iu10], old.lengths),
            f"{fmt(t_en)} vs {fmt(t_old)}",
        ]
    )
    rows.append(
        ["graph vs energy-refined (45 pairs)", *rel(D_graph[::10, ::10][iu10], D_en[iu10]), ""]
    )
    print("\n(b) cost of the shortcuts (relative difference of the distances)")
    print(table(rows, ["shortcut", "median %", "max %", "s (shortcut vs reference)"]))

    # (c) pseudotime
    rows = []
    t0 = time.perf_counter()
    scfim.tl.fisher_rao_pseudotime(a, root=0)
    t_pt = time.perf_counter() - t0
    dpt = t_dpt = None
    peer = "scanpy neighbors+diffmap+dpt s"
    # scanpy's default approximate kNN (above 4096 cells) fails on some scipy/scanpy
    # combinations (sparse array API: scanpy 1.11.5 with scipy 1.17); its exact sklearn
    # search is then the peer's graph, and the table says so
    for transformer in (None, "sklearn"):
        b = a.copy()
        t0 = time.perf_counter()
        try:
            sc.pp.neighbors(b, use_rep="X", random_state=0, transformer=transformer)
            sc.tl.diffmap(b)
            b.uns["iroot"] = 0
            sc.tl.dpt(b)
        except AttributeError as err:
            print(f"    scanpy neighbors/DPT failed (transformer={transformer}): {err}")
            continue
        dpt, t_dpt = b.obs["dpt_pseudotime"].to_numpy(), time.perf_counter() - t0
        if transformer is not None:
            peer = f"scanpy neighbors (transformer={transformer!r})+diffmap+dpt s"
        break
    from scipy.stats import spearmanr

    rho = spearmanr(a.obs["fisher_rao_pseudotime"], dpt).statistic if dpt is not None else None
    rows.append(
        [
            f"{n} cells, root 0",
            fmt(t_pt),
            fmt(t_dpt),
            fmt(t_pt / t_dpt if t_dpt else None, ".2f"),
            fmt(rho, ".3f"),
        ]
    )
    print("\n(c) pseudotime from one root to every cell")
    print(table(rows, ["data", "ours s", peer, "ratio", "Spearman with dpt"]))


if __name__ == "__main__":
    main()
