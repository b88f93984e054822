"""How close the diffusion operator's own Fisher–Rao geometry comes to the true distances.

``tl.fisher_rao_distances`` integrates the neural FIM, which learns the Fisher information
of the rows of Pᵗ. Whatever the network, solver or density term, its distances can only
be as right as the statistical manifold of the operator itself. This benchmark measures
that manifold directly, with no network: every edge of the Euclidean k = 15 graph gets
the exact Fisher–Rao distance ``2 arccos Σ √(p q)`` between its two cells' rows of Pᵗ (the
operator without landmarks), and Dijkstra on that graph gives the distances among 20
evenly spaced cells (190 pairs). Side by side, in the same run: Dijkstra on the Euclidean
kNN graph (k = 10 and 15), the peer of ``bench_geodesic_accuracy.py``.

Operators: PHATE's adaptive alpha-decay kernel (the default) with k = 10, 15 and 30, and a
fixed Gaussian kernel ``exp(-d² / σ)`` on the 30-NN graph with σ = 0.5, 1 and 2 times the
median distance to the 15th neighbour, each at t = 1, 4 and the automatic t. Data: the
same sphere and swiss roll (1500 points, clean and with noise 0.05) as
``bench_geodesic_accuracy.py``. Scores: Spearman's ρ with the truth, pair by pair.

On clean data the table is the ceiling of any Fisher–Rao distance built on these
operators. On the noisy roll it is not: the graph here keeps its fold-crossing edges,
which ``tl.fisher_rao_distances`` removes where its metric stretches them.

Usage::

    python benchmarks/bench_operator_ceiling.py [--seed S]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import fmt, gaussian_sigma, table
from bench_geodesic_accuracy import fisher_rao_edges, make
from scipy.stats import spearmanr

DATA = [("sphere", 0.0), ("sphere", 0.05), ("roll", 0.0), ("roll", 0.05)]
KERNELS = [("alpha_decay", k, None) for k in (10, 15, 30)] + [
    ("gaussian", 30, f) for f in (0.5, 1.0, 2.0)
]
TIMES = (1, 4, "auto")


def main() -> None:
    """Measure every operator on every data set and print the table."""
    from scfim.geometry.diffusion import build_operator
    from scfim.geometry.graph import knn_graph, shortest_paths, symmetrize

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="data seed")
    args = ap.parse_args()
    n, n_cells = 1500, 20
    cells = np.linspace(0, n - 1, n_cells).astype(int)
    iu = np.triu_indices(n_cells, 1)
    scores: dict[tuple, dict[tuple, float]] = {}
    t_used: dict[tuple, list] = {}
    t0 = time.perf_counter()
    for kind, noise in DATA:
        X, truth = make(kind, n, noise, 3, args.seed)
        tru = truth(cells[iu[0]], cells[iu[1]])
        graph = symmetrize(knn_graph(X, 15))

        def rho(D, tru=tru):
            D = np.minimum(D, D.T)
            return float(spearmanr(D[iu], tru)[0])

        for k in (10, 15):
            scores.setdefault(("Dijkstra", k), {})[kind, noise] = rho(
                shortest_paths(symmetrize(knn_graph(X, k)), cells)[:, cells]
            )
        sigma = gaussian_sigma(X)
        for kernel, k, factor in KERNELS:
            for t in TIMES:
                op, _ = build_operator(
                    X,
                    n_neighbors=k,
                    kernel=kernel,
                    sigma=None if factor is None else factor * sigma,
                    t=t,
                    n_landmarks=None,
                    random_state=0,
                )
                key = (kernel, k, factor, t)
                D = shortest_paths(fisher_rao_edges(op, graph), cells)[:, cells]
                scores.setdefault(key, {})[kind, noise] = rho(D)
                t_used.setdefault(key, []).append(op.t)
        print(f"{kind}, noise {noise:g} done ({time.perf_counter() - t0:.0f} s)", flush=True)

    head = ["operator", "t", *[f"{kind}, noise {noise:g}" for kind, noise in DATA]]
    rows = []
    for k in (10, 15):
        rows.append(
            [
                f"peer: Dijkstra k={k}",
                "",
                *[fmt(scores["Dijkstra", k][d], ".4f") for d in DATA],
            ]
        )
    for kernel, k, factor in KERNELS:
        for t in TIMES:
            key = (kernel, k, factor, t)
            name = f"alpha-decay k={k}" if factor is None else f"Gaussian σ×{factor:g}"
            t_txt = str(t) if t != "auto" else "auto (" + "/".join(map(str, t_used[key])) + ")"
            rows.append([name, t_txt, *[fmt(scores[key][d], ".4f") for d in DATA]])
    print(f"\nexact Fisher–Rao edges of Pᵗ, data seed {args.seed} (Spearman with the truth)")
    print(table(rows, head))
    best = {
        d: max(scores[key][d] for key in [(*kk, t) for kk in KERNELS for t in TIMES]) for d in DATA
    }
    peer = {d: max(scores["Dijkstra", k][d] for k in (10, 15)) for d in DATA}
    print(
        "\nbest operator vs best graph: "
        + "; ".join(
            f"{kind} {noise:g}: {best[kind, noise]:.4f} vs {peer[kind, noise]:.4f}"
            for kind, noise in DATA
        )
    )


if __name__ == "__main__":
    main()
