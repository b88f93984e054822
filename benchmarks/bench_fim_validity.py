"""Validity of the per-cell neural FIM: reproducibility, faithfulness, branch points, time.

One table per data set: the toy tree (two data seeds), scanpy's pbmc68k_reduced and uniform
points on the unit sphere S² in R³. The diffusion operator is built once per data set (t
fixed), then neural FIM is trained with three training seeds.

a. Reproducibility: *aligned* (cell by cell) Pearson and Spearman correlations of the per-cell
   trace and log-volume between the three seeds, for a single model and for an ensemble
   (members ``Es … Es+E−1`` for ensemble seed s, E = ``--ensemble``, trained jointly as
   :func:`scfim.tl.neural_fim` does; the single model is member 0 of each ensemble, which
   is the single fit with its seed).
b. The sensitivity protocol of Fasina et al. (2023), Table 1 (tree only, ``--table1``): kNN
   5/10/15, input noise 5e-4/1e-3/1.5e-3 (relative to the data's standard deviation),
   encoder widths 100-100-50 / 100-80-30 / 100-70-20 (hidden layers → simplex size). Both
   the aligned correlation and the *sorted* one of the authors' public code (each trace
   vector sorted on its own before the Pearson correlation, which compares distributions,
   not cells) are printed, labelled as such; each setting is one ensemble (the default).
c. Faithfulness to the operator: per cell x, a nonparametric metric G is fitted from the
   operator alone — least squares of ``⅛ uᵀ G u ≈ JS(Pᵗ(x,·), Pᵗ(y,·))`` over x's nearest
   cells y, u the coordinates of ``y − x`` in the local tangent space (local PCA of the
   neighbourhood, dimension k = the data's intrinsic dimension) — and compared with the
   learned g restricted to the same space, ``Uᵀ g U``: Spearman over cells of the traces and
   of the log-determinants.
d. Branch points vs tips (tree): AUROC of trace and log-volume, per seed.
e. Wall time of each fit (training + per-cell FIM).

For the sphere, the coefficient of variation over cells of the volume element
``exp(log-volume)`` is reported (constant curvature and uniform sampling: it should be flat).

Usage::

    python benchmarks/bench_fim_validity.py --quick          # 1500-cell trees, 1000-pt sphere
    python benchmarks/bench_fim_validity.py                  # 3000-cell trees, 2000-pt sphere
    python benchmarks/bench_fim_validity.py --table1         # add the paper's Table 1
    python benchmarks/bench_fim_validity.py --model '{"activation": "relu"}'   # a variant
    python benchmarks/bench_fim_validity.py --data tree0 --n-obs 20000         # large data
    python benchmarks/bench_fim_validity.py --data tree0 --n-obs 20000 --fit-cells 0
    python benchmarks/bench_fim_validity.py --data sphere --diffusion '{"n_neighbors": 30}'

Above ``--fit-cells`` cells (default: that of :func:`scfim.tl.neural_fim`) the networks are
trained as ``tl.neural_fim`` trains them, on a subsample with its own diffusion operator,
and evaluated on all cells; the faithfulness reference G is always the operator of all
cells. ``--fit-cells 0`` trains on all cells.

``--model`` passes keyword arguments to :class:`scfim.models.neural_fim.NeuralFIM` (the
ablation of ``docs/design.md`` was run this way); without it the package defaults are used.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from functools import partial

import anndata as ad
import numpy as np
from _common import gaussian_sigma, table
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import roc_auc_score

import scfim
from scfim.geometry.divergences import js
from scfim.models.neural_fim import NeuralFIM, fit_ensemble, neighbors_from_transitions
from scfim.tl._store import read_operator as operator_from_adata
from scfim.tl.neural_fim import FIT_CELLS, training_subsample

QUANTITIES = ("trace", "log_volume", "log_pdet", "tangent trace", "tangent log-det")
LABELS = {
    "trace": "trace",
    "log_volume": "log-volume (top {k})",
    "log_pdet": "log pseudo-det (all)",
    "tangent trace": "tangent trace",
    "tangent log-det": "tangent log-det",
}


# ---------------------------------------------------------------------- data
def datasets(
    quick: bool, names: list[str], n_obs: int = 0, diffusion_kw: dict | None = None
) -> dict[str, ad.AnnData]:
    """The data sets with their diffusion operator (``tree<seed>``, ``pbmc``, ``sphere``).

    ``diffusion_kw`` goes to :func:`scfim.tl.diffusion`; a Gaussian kernel without a
    ``sigma`` gets the benchmarks' bandwidth (``_common.gaussian_sigma``).
    """
    n_tree, n_sphere = (1500, 1000) if quick else (3000, 2000)
    if n_obs:
        n_tree = n_sphere = n_obs
    diffusion_kw = dict(diffusion_kw or {})

    def diffuse(a: ad.AnnData, use_rep: str) -> None:
        kw = dict(diffusion_kw)
        if kw.get("kernel") == "gaussian" and "sigma" not in kw:
            kw["sigma"] = gaussian_sigma(a.X if use_rep == "X" else a.obsm[use_rep])
        scfim.tl.diffusion(a, use_rep=use_rep, random_state=0, **kw)

    out = {}
    for name in names:
        if name.startswith("tree"):
            a = scfim.datasets.tree(n_obs=n_tree, n_dim=100, random_state=int(name[4:]))
            diffuse(a, "X")
        elif name == "pbmc":
            a = scfim.datasets.pbmc68k_reduced()
            diffuse(a, "X_pca")
        elif name == "sphere":
            a = scfim.datasets.sphere(n_obs=n_sphere, n_dim=2, random_state=0)
            diffuse(a, "X")
        else:
            raise ValueError(f"unknown data set {name!r}")
        out[name] = a
    return out


def rep(a: ad.AnnData) -> np.ndarray:
    """The input representation the operator was built on."""
    key = str(a.uns["diffusion"]["params"]["use_rep"])
    return np.asarray(a.X if key == "X" else a.obsm[key], dtype=np.float64)


# ---------------------------------------------------------------------- geometry of the data
def local_frames(X: np.ndarray, k_dim: int, n_nb: int) -> tuple[np.ndarray, np.ndarray]:
    """Nearest cells (self excluded) and local-PCA tangent bases ``(n, d, k_dim)``."""
    from sklearn.neighbors import NearestNeighbors

    idx = NearestNeighbors(n_neighbors=n_nb + 1).fit(X).kneighbors(X)[1][:, 1:]
    D = X[idx] - X[:, None, :]  # (n, K, d) displacements
    Dc = D - D.mean(1, keepdims=True)
    _, _, Vt = np.linalg.svd(Dc, full_matrices=False)
    return idx, np.ascontiguousarray(np.transpose(Vt[:, :k_dim, :], (0, 2, 1)))


def intrinsic_dimension(X: np.ndarray, n_nb: int = 20, max_dim: int = 10) -> int:
    """Median over cells of the largest gap in the local-PCA spectrum (log scale)."""
    from sklearn.neighbors import NearestNeighbors

    idx = NearestNeighbors(n_neighbors=n_nb + 1).fit(X).kneighbors(X)[1][:, 1:]
    D = X[idx] - X[idx].mean(1, keepdims=True)
    s = np.linalg.svd(D, compute_uv=False)[:, : max_dim + 1] ** 2
    gaps = np.log(s[:, :-1] + 1e-300) - np.log(s[:, 1:] + 1e-300)
    return int(np.median(np.argmax(gaps, 1) + 1))


def operator_metric(a: ad.AnnData, X: np.ndarray, idx: np.ndarray, U: np.ndarray) -> dict:
    """Per-cell G fitted from the operator: ⅛ uᵀGu ≈ JS(Pᵗ(x,·), Pᵗ(y,·)) (least squares).

    Also fitted on the odd and on the even neighbours separately: the Spearman correlation
    of those two halves is the reliability of G itself, the ceiling of any faithfulness.
    """
    op = operator_from_adata(a)
    n, K = idx.shape
    k = U.shape[2]
    tri = [(i, j) for i in range(k) for j in range(i, k)]
    J, F = np.empty((n, K)), np.empty((n, K, len(tri)))
    for s in range(0, n, 256):
        cells = np.arange(s, min(n, s + 256))
        R = op.rows(cells)
        Rn = op.rows(idx[cells].ravel()).reshape(len(cells), K, -1)
        J[cells] = js(np.repeat(R[:, None], K, 1), Rn)  # (b, K) divergences
        u = np.einsum("bkd,bdj->bkj", X[idx[cells]] - X[cells, None], U[cells])
        F[cells] = np.stack([u[..., i] * u[..., j] * (1 if i == j else 2) for i, j in tri], -1) / 8

    def fit_on(cols):
        tr, logdet = np.empty(n), np.empty(n)
        for c in range(n):
            coef = np.linalg.lstsq(F[c, cols], J[c, cols], rcond=None)[0]
            G = np.zeros((k, k))
            for (i, j), v in zip(tri, coef, strict=True):
                G[i, j] = G[j, i] = v
            lam = np.linalg.eigvalsh(G)
            tr[c] = lam.sum()
            logdet[c] = np.log(np.clip(lam, 1e-12 * max(lam.max(), 1e-300), None)).sum()
        return tr, logdet

    tr, logdet = fit_on(np.arange(K))
    tr_a, ld_a = fit_on(np.arange(0, K, 2))
    tr_b, ld_b = fit_on(np.arange(1, K, 2))
    return {
        "trace": tr,
        "logdet": logdet,
        "reliability_trace": spearmanr(tr_a, tr_b)[0],
        "reliability_logdet": spearmanr(ld_a, ld_b)[0],
    }


# ---------------------------------------------------------------------- models
def fit_group(a, X, seeds, model_kw, fit_cells: int | None = None) -> list[dict]:
    """Models trained jointly (one batched fit): per-member summaries, the joint wall time.

    Above ``fit_cells`` cells they are trained as :func:`scfim.tl.neural_fim` trains them:
    on a random subsample (the same for every seed: drawn with the operator's seed) with its
    own diffusion operator; the summaries are of all cells.
    """
    t0 = time.perf_counter()
    op = operator_from_adata(a)
    X_fit = X
    if fit_cells and a.n_obs > fit_cells:
        fit_obs, op = training_subsample(X, fit_cells, dict(a.uns["diffusion"]["params"]))
        X_fit = X[fit_obs]
    nbrs = neighbors_from_transitions(op.transitions, 15)
    models = [NeuralFIM(**{"random_state": s, "progress": False, **model_kw}) for s in seeds]
    fit_ensemble(models, X_fit, partial(op.rows, dtype=np.float32), nbrs)
    out = []
    for m in models:
        s = m.summary(X)
        out.append(
            {
                "model": m,
                "trace": s["trace"],
                "eig": s["eigenvalues"],
                "epochs": m.history_["val_loss"].size,
                "val": float(m.history_["best_val_loss"]),
            }
        )
    for o in out:
        o["seconds"] = (time.perf_counter() - t0) / len(out)
    return out


def combine(members: list[dict], X, U, k: int) -> dict:
    """Ensemble mean (as tl.neural_fim): trace, log-volume of each member, tangent metric."""
    tan = [m["model"].summary(X, basis=U) for m in members]
    return {
        "trace": np.mean([m["trace"] for m in members], 0),
        "log_volume": np.mean([log_volume(m["eig"], k) for m in members], 0),
        "log_pdet": np.mean([log_volume(m["eig"], m["eig"].shape[1]) for m in members], 0),
        "tangent trace": np.mean([t["trace"] for t in tan], 0),
        "tangent log-det": np.mean([2 * log_volume(t["eigenvalues"], k) for t in tan], 0),
        "seconds": sum(m["seconds"] for m in members),
        "epochs": float(np.mean([m["epochs"] for m in members])),
        "val": float(np.mean([m["val"] for m in members])),
    }


def log_volume(eig: np.ndarray, k: int) -> np.ndarray:
    """½ Σ log λ over the k leading eigenvalues (descending), clamped as the package does."""
    from scfim.models.neural_fim import EIG_RTOL

    lam = np.maximum(eig[:, :k], EIG_RTOL * eig[:, :1])
    return 0.5 * np.log(np.clip(lam, 1e-300, None)).sum(1)


# ---------------------------------------------------------------------- tables
def pairwise(vectors: list[np.ndarray], sort: bool = False) -> tuple[str, str]:
    """min–max of Pearson and of Spearman over pairs (aligned, or each vector sorted)."""
    ps, ss = [], []
    for u, v in itertools.combinations(vectors, 2):
        if sort:
            u, v = np.sort(u), np.sort(v)
        ps.append(pearsonr(u, v)[0])
        ss.append(spearmanr(u, v)[0])
    return f"{min(ps):.3f}–{max(ps):.3f}", f"{min(ss):.3f}–{max(ss):.3f}"


def run_dataset(name, a, args, model_kw) -> None:
    """Print the table of one data set (sections a, c, d, e)."""
    X = rep(a)
    k_dim = args.k if args.k else intrinsic_dimension(X)
    n_nb = max(15, 3 * k_dim * (k_dim + 1) // 2)
    idx, U = local_frames(X, k_dim, n_nb)
    G = operator_metric(a, X, idx, U)
    t = int(a.uns["diffusion"]["t"])
    v_op = np.exp(0.5 * (G["logdet"] - np.median(G["logdet"])))
    print(
        f"\n## {name}: {a.n_obs} cells, {X.shape[1]}-D, t = {t}, intrinsic dimension k = {k_dim}; "
        f"operator metric G from {n_nb} neighbours: split-half reliability (Spearman) trace "
        f"{G['reliability_trace']:.2f}, log-det {G['reliability_logdet']:.2f} (the ceiling of "
        f"faithfulness); CV of its volume {100 * v_op.std() / v_op.mean():.1f} %"
    )
    rows = []
    # 3·E models (seeds 0 … 3E−1): single models are seeds 0, E, 2E (independent), the
    # ensembles are the groups {0..E−1}, {E..2E−1}, {2E..3E−1}
    E = max(1, args.ensemble)
    fits = [
        f
        for g in range(3)
        for f in fit_group(a, X, list(range(E * g, E * (g + 1))), model_kw, args.fit_cells)
    ]
    variants = [("single model", [[fits[E * g]] for g in range(3)])]
    if E > 3:  # the first three members of each ensemble: the smaller ensemble, same fits
        variants.append(
            ("ensemble of 3 (first members)", [fits[E * g : E * g + 3] for g in range(3)])
        )
    if E > 1:
        variants.append((f"ensemble of {E}", [fits[E * g : E * (g + 1)] for g in range(3)]))
    for label, groups in variants:
        res = [combine(grp, X, U, k_dim) for grp in groups]
        if args.save:
            np.savez(
                f"{args.save}_{name}_{len(groups[0])}.npz",
                **{q.replace(" ", "_"): np.stack([r[q] for r in res]) for q in QUANTITIES},
                G_trace=G["trace"],
                G_logdet=G["logdet"],
            )
        for q in QUANTITIES:
            vecs = [r[q] for r in res]
            p, sp_ = pairwise(vecs)
            faith = ""
            if "trace" in q:
                faith = ", ".join(f"{spearmanr(v, G['trace'])[0]:.2f}" for v in vecs)
            elif q in ("tangent log-det", "log_volume"):
                faith = ", ".join(f"{spearmanr(v, G['logdet'])[0]:.2f}" for v in vecs)
            auc = ""
            if "is_branch_point" in a.obs:
                bp = a.obs["is_branch_point"].to_numpy()
                sel = bp | a.obs["is_branch_tip"].to_numpy()
                auc = ", ".join(f"{roc_auc_score(bp[sel], v[sel]):.2f}" for v in vecs)
            cv = ""
            if name == "sphere" and q != "trace" and "trace" not in q:
                half = 0.5 if "det" in q else 1.0  # volume element = exp(½ log det)
                vol = [np.exp(half * (v - np.median(v))) for v in vecs]
                cv = ", ".join(f"{100 * v.std() / v.mean():.1f} %" for v in vol)
            rows.append([label, LABELS[q].format(k=k_dim), p, sp_, faith, auc, cv])
        secs = ", ".join(f"{r['seconds']:.1f}" for r in res)
        ep = ", ".join(f"{r['epochs']:.0f}" for r in res)
        val = ", ".join(f"{r['val']:.2g}" for r in res)
        rows.append([label, f"time s (epochs; held-out loss): {secs} ({ep}; {val})"] + [""] * 5)
    print(
        table(
            rows,
            [
                "model",
                "per-cell quantity",
                "aligned Pearson",
                "aligned Spearman",
                "faithfulness Spearman (seeds)",
                "AUROC bp vs tip (seeds)",
                "volume CV (seeds)",
            ],
        ),
        flush=True,
    )


def table1(args, model_kw) -> None:
    """The paper's sensitivity protocol on the tree, aligned and sorted."""
    n = 1500 if args.quick else 3000
    base = scfim.datasets.tree(n_obs=n, n_dim=100, random_state=0)
    X = np.asarray(base.X, dtype=np.float64)
    probe = base.copy()
    scfim.tl.diffusion(probe, use_rep="X", random_state=0)
    t = int(probe.uns["diffusion"]["t"])

    def trace(Xin, knn=15, hidden=None, m=None):
        a = ad.AnnData(Xin.astype(np.float32))
        scfim.tl.diffusion(a, use_rep="X", n_neighbors=knn, t=t, random_state=0)
        kw = dict(model_kw)
        if hidden is not None:
            kw.update(hidden=hidden, n_components=m)
        members = fit_group(a, Xin, range(args.ensemble if args.ensemble > 1 else 1), kw)
        return np.mean([f["trace"] for f in members], 0)

    rng = np.random.default_rng(1)
    settings = {
        "kNN": [(str(k), trace(X, knn=k)) for k in (5, 10, 15)],
        "noise": [
            (str(s), trace(X + rng.normal(scale=s * X.std(), size=X.shape)))
            for s in (5e-4, 1e-3, 1.5e-3)
        ],
        "encoder": [
            (f"{h[0]}-{h[1]}-{m}", trace(X, hidden=h, m=m))
            for h, m in (((100, 100), 50), ((100, 80), 30), ((100, 70), 20))
        ],
    }
    rows = []
    for name, runs in settings.items():
        vecs = [v for _, v in runs]
        al, al_s = pairwise(vecs)
        so, so_s = pairwise(vecs, sort=True)
        rows.append([name, " / ".join(lab for lab, _ in runs), al, al_s, so])
    E = max(1, args.ensemble)
    print(
        f"\n## Table 1 protocol (tree, {n} cells, t = {t}, training seeds 0–{E - 1}, "
        f"{'ensemble mean' if E > 1 else 'single model'}), trace"
    )
    print(
        table(
            rows,
            [
                "varied",
                "settings",
                "aligned Pearson",
                "aligned Spearman",
                "sorted Pearson (paper's code)",
            ],
        ),
        flush=True,
    )


def main() -> None:
    """Parse the arguments and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for iteration")
    parser.add_argument("--data", nargs="*", default=["tree0", "tree1", "pbmc", "sphere"])
    parser.add_argument("--ensemble", type=int, default=5, help="ensemble size (≤ 1: none)")
    parser.add_argument("--table1", action="store_true", help="also the paper's Table 1")
    parser.add_argument("--k", type=int, default=0, help="intrinsic dimension (0: estimate)")
    parser.add_argument("--model", default="{}", help="JSON NeuralFIM keyword arguments")
    parser.add_argument("--n-obs", type=int, default=0, help="override tree/sphere sizes")
    parser.add_argument(
        "--diffusion", default="{}", help="JSON scfim.tl.diffusion keyword arguments"
    )
    parser.add_argument(
        "--fit-cells",
        type=int,
        default=FIT_CELLS,
        help=f"train on a subsample above this many cells, as tl.neural_fim (default {FIT_CELLS}; 0: all cells)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--save", default="", help="prefix of .npz files with per-cell values")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    model_kw = json.loads(args.model)
    diffusion_kw = json.loads(args.diffusion)
    t0 = time.perf_counter()
    print(
        f"# bench_fim_validity  model={model_kw or 'defaults'}  "
        f"diffusion={diffusion_kw or 'defaults'}  quick={args.quick}  "
        f"load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    for name, a in datasets(args.quick, args.data, args.n_obs, diffusion_kw).items():
        run_dataset(name, a, args, model_kw)
    if args.table1:
        table1(args, model_kw)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
