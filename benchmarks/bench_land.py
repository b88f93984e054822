"""LAND: parameter recovery, mixture separation and speed.

0. Sphere, side by side (the main table): 1500 points ``Exp_μ(v)`` of anisotropic tangent
   Gaussians on the unit sphere (narrow: standard deviations 0.3 / 0.15 rad; wide:
   0.9 / 0.45 rad, where straight lines cut far inside the sphere), several seeds.
   ``scfim.tl.land`` with its defaults on the 3-D coordinates, against the Euclidean
   estimate (normalised mean; sample covariance projected on the tangent plane there) and
   the LAND with the closed-form sphere maps (the best a metric learned from the points
   could give). Errors: angle of the mean (rad) and relative Frobenius error of the
   tangent covariance. Both spreads are symmetric about μ, so the normalised Euclidean
   mean is unbiased there and only its variance can be beaten (the closed-form LAND is
   the ceiling); ``skewed`` draws a tangent law with a long tail to one side
   (:func:`skewed_sphere`, ``E[v] = 0``), where the Euclidean mean is biased and the
   Fréchet mean is the truth. ``--paper`` adds the LAND paper's set-up (diagonal metric, σ at
   the N/6-th neighbour, Monte Carlo normaliser with the volume factor).
1. Known sphere: data as in the LAND seed (mean on the unit sphere, tangent covariance
   diag(0.1²) and diag(0.7²), Exp of tangent Gaussians); the MLE with the closed-form
   sphere Exp/Log. Reports the mean error (rad) and the relative Frobenius error of the
   covariance (ambient, frame-free) and the eigenvalue ratios.
2. Learned LAND metric on the same sphere data (R³ with M(x) from the points): mean error
   (angle of the fitted mean, projected to the sphere) and the relative error of the
   tangential part of the covariance, and the time. The learned Σ lives in the Euclidean
   coordinates of the initial velocities under M, so only approximate agreement is
   expected.
3. Two-component mixture on curved clusters (two interleaved moons, 2-D): adjusted Rand
   index of the LAND mixture (learned LAND metric, EM) and of scikit-learn's
   GaussianMixture (full covariances, 5 initialisations).
4. Speed: 2 000 points × 20 EM iterations of (3) with the learned LAND metric, and the
   number of Log-map failures. Sections 2–4 use the diagonal LAND metric.
5. ``scfim.tl.land(adata)`` with its defaults on pbmc68k_reduced and krumsiek11: time,
   Log-map failures, log-likelihood at the start and the end, and the chosen σ.

Usage::

    .venv/bin/python benchmarks/bench_land.py            # full protocol
    .venv/bin/python benchmarks/bench_land.py --quick    # small sizes, a few minutes
    .venv/bin/python benchmarks/bench_land.py --sections 0 --seeds 0,1,2 --paper

Timings are wall-clock on the machine at hand (2 CPU cores in the project's set-up).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

from scfim import datasets
from scfim.geometry.exp_log import MetricManifold
from scfim.geometry.known_manifolds import SphereManifold, sphere_frame
from scfim.geometry.land import LANDMetric
from scfim.models.land import LAND, LANDMixture


def _angle(a, b) -> float:
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    return float(np.arccos(np.clip(a @ b, -1.0, 1.0)))


def known_sphere(n: int, s: float, seed: int) -> dict:
    """LAND on the known sphere manifold: fitted against true parameters."""
    a = datasets.land_sphere(n, cov=(s**2, s**2), random_state=seed)
    X = SphereManifold.project(np.asarray(a.X, dtype=np.float64))
    tr = a.uns["land_truth"]
    t0 = time.perf_counter()
    m = LAND(SphereManifold(), max_iter=30, random_state=seed).fit(X)
    sec = time.perf_counter() - t0
    F = sphere_frame(m.mean_)
    C = F @ m.covariance_ @ F.T
    rel = np.linalg.norm(C - tr["cov_ambient"]) / np.linalg.norm(tr["cov_ambient"])
    ratios = np.linalg.eigvalsh(m.covariance_) / s**2
    return {"mean_err": _angle(m.mean_, tr["mean"]), "cov_rel": rel, "ratios": ratios, "s": sec}


def learned_sphere(n: int, s: float, seed: int, iters: int, tol: float) -> dict:
    """LAND with the learned LAND metric on sphere samples."""
    a = datasets.land_sphere(n, cov=(s**2, s**2), random_state=seed)
    X = np.asarray(a.X, dtype=np.float64)
    tr = a.uns["land_truth"]
    t0 = time.perf_counter()
    M = MetricManifold(LANDMetric(X), graph_data=X, n_steps=12, tol=tol)
    m = LAND(M, max_iter=iters, random_state=seed).fit(X)
    sec = time.perf_counter() - t0
    mu = m.mean_ / np.linalg.norm(m.mean_)
    P = np.eye(3) - np.outer(tr["mean"], tr["mean"])
    C = P @ m.covariance_ @ P
    rel = np.linalg.norm(C - tr["cov_ambient"]) / np.linalg.norm(tr["cov_ambient"])
    return {
        "mean_err": _angle(mu, tr["mean"]),
        "radius": float(np.linalg.norm(m.mean_)),
        "cov_rel": rel,
        "tangent_eigs": np.sort(np.linalg.eigvalsh(C))[-2:] / s**2,
        "failures": int(m.history_["final_n_log_failures"]),
        "s": sec,
    }


def _rel(C, truth) -> float:
    return float(np.linalg.norm(C - truth) / np.linalg.norm(truth))


def sphere_side_by_side(n: int, cov, seed: int, paper: bool = False) -> dict:
    """``tl.land`` with its defaults vs the Euclidean estimate vs the known-sphere LAND.

    Errors against the generating parameters: the angle of the (normalised) mean, and the
    relative Frobenius error of the ambient tangent covariance ``F Σ Fᵀ``. ``tl.land`` is
    called as a user would, on the 3-D coordinates (``use_rep="X"``, one component); its
    Σ is projected on the tangent plane of the sphere at its (normalised) mean. With
    ``paper`` the LAND paper's set-up is fitted too (diagonal metric, σ the distance to
    the N/6-th neighbour, Monte Carlo normaliser with the volume factor).
    """
    import anndata as ad

    import scfim

    if cov == "skewed":
        X, tr = skewed_sphere(n, seed)
    else:
        a = datasets.land_sphere(n, cov=cov, random_state=seed)
        X = np.asarray(a.X, dtype=np.float64)
        tr = a.uns["land_truth"]
    T = tr["cov_ambient"]
    S = SphereManifold()
    out = {}
    # Euclidean: normalised mean, sample covariance projected on the tangent plane there
    me = S.project(X.mean(0))
    P = np.eye(3) - np.outer(me, me)
    out["euclid"] = {"mean_err": _angle(me, tr["mean"]), "cov_rel": _rel(P @ np.cov(X.T) @ P, T)}
    # LAND with the closed-form sphere maps (the oracle geometry)
    k = LAND(S, max_iter=30, random_state=seed).fit(S.project(X))
    F = sphere_frame(k.mean_)
    out["known"] = {
        "mean_err": _angle(k.mean_, tr["mean"]),
        "cov_rel": _rel(F @ k.covariance_ @ F.T, T),
    }
    runs = {"learned": {}}
    if paper:
        runs["paper"] = {"metric": "land_diagonal", "normaliser": "volume"}
    for name, kw in runs.items():
        b = ad.AnnData(X.astype(np.float32))
        t0, c0 = time.perf_counter(), time.process_time()
        scfim.tl.land(b, use_rep="X", random_state=seed, progress=False, **kw)
        sec, cpu = time.perf_counter() - t0, time.process_time() - c0
        u = b.uns["land"]
        mu = S.project(np.asarray(u["means"][0], dtype=np.float64))
        P = np.eye(3) - np.outer(mu, mu)
        h = u["diagnostics"]
        out[name] = {
            "radius": float(np.linalg.norm(np.asarray(u["means"][0], dtype=np.float64))),
            "mean_err": _angle(mu, tr["mean"]),
            "cov_rel": _rel(P @ np.asarray(u["covariances"][0]) @ P, T),
            "failures": int(h["n_log_failed_cells"]),
            "ll": (float(h["initial_log_likelihood"]), float(h["final_log_likelihood"])),
            "n_iter": int(u["n_iter"]),
            "sigma": float(u["params"]["sigma"]),
            "s": sec,
            "cpu": cpu,
        }
    return out


def skewed_sphere(n: int, seed: int, s1: float = 0.6, s2: float = 0.3):
    """Points ``Exp_μ(v)`` on the unit sphere from a skewed tangent law with ``E[v] = 0``.

    ``v₁ = s₁ (G − 2)/√2`` with ``G ~ Gamma(2)`` (a long tail to one side, out to about
    a radian and a half), ``v₂ ~ N(0, s₂²)``; redrawn when ``‖v‖ ≥ π − 0.1`` (a few in
    10⁴). ``E[Log_μ x] = 0``, so μ is the Fréchet (intrinsic) mean — the LAND mean — and
    the tangent covariance is ``diag(s₁², s₂²)``; the normalised Euclidean mean is pulled
    towards the short side, because the long tail bends towards the centre of the sphere.
    """
    rng = np.random.default_rng(10_000 + seed)
    mu = rng.normal(size=3)
    mu /= np.linalg.norm(mu)
    F = sphere_frame(mu)
    V = np.empty((0, 2))
    while len(V) < n:
        g = rng.gamma(2.0, 1.0, n)
        W = np.c_[s1 * (g - 2.0) / np.sqrt(2.0), s2 * rng.normal(size=n)]
        V = np.vstack([V, W[np.linalg.norm(W, axis=1) < np.pi - 0.1]])
    X = SphereManifold().exp(mu, V[:n])
    cov = np.diag([s1**2, s2**2])
    return X, {"mean": mu, "cov_ambient": F @ cov @ F.T}


def moons(n: int, iters: int, seed: int, tol: float) -> dict:
    """Two-moons LAND mixture: clustering accuracy and log-likelihood."""
    a = datasets.two_moons(n, noise=0.08, random_state=seed)
    X = np.asarray(a.X, dtype=np.float64)
    y = a.obs["cluster"].cat.codes.to_numpy()
    gmm = GaussianMixture(2, covariance_type="full", n_init=5, random_state=seed).fit(X)
    ari_gmm = adjusted_rand_score(y, gmm.predict(X))
    t0 = time.perf_counter()
    M = MetricManifold(LANDMetric(X, max_points=1000), graph_data=X, n_steps=12, tol=tol)
    f = LANDMixture(M, 2, max_iter=iters, random_state=seed, progress=True).fit(X)
    sec = time.perf_counter() - t0
    return {
        "ari_land": adjusted_rand_score(y, f.labels_),
        "ari_gmm": ari_gmm,
        "s": sec,
        "failures": f.history_["n_log_failures"],
        "final_failures": int(f.history_["final_n_log_failures"]),
        "loglik": f.history_["log_likelihood"],
    }


def main() -> None:
    """Run the benchmark and print its table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-tol", type=float, default=2e-3)
    p.add_argument("--sections", default="0,1,2,3,5", help="comma-separated subset of 0,1,2,3,5")
    p.add_argument("--n-sphere", type=int, default=1500, help="points of section 0")
    p.add_argument("--seeds", default="0,1,2", help="seeds of section 0")
    p.add_argument("--spreads", default="narrow,wide,skewed", help="of narrow,medium,wide,skewed")
    p.add_argument("--paper", action="store_true", help="also the LAND paper's set-up")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    q = args.quick
    n_sphere, n_learned, it_learned = (1000, 300, 10) if q else (2000, 1000, 20)
    n_moons, it_moons = (600, 10) if q else (2000, 20)

    sections = {int(v) for v in args.sections.split(",")}
    if 0 in sections:
        _sphere_table(args.n_sphere, args)
    if 1 in sections:
        _known(n_sphere, args)
    if 2 in sections:
        _learned(n_learned, it_learned, args)
    if 3 in sections:
        _moons(n_moons, it_moons, args)
    if 5 in sections:
        _real_table(args)


def _known(n_sphere, args) -> None:
    print("== 1. known sphere (closed-form Exp/Log), LAND MLE")
    head = ("Σ", "n", "mean err (rad)", "Σ rel err", "eig ratios", "s")
    print("{:>10} {:>6} {:>15} {:>10} {:>16} {:>7}".format(*head))
    for s in (0.1, 0.7):
        r = known_sphere(n_sphere, s, args.seed)
        rat = " ".join(f"{v:.3f}" for v in r["ratios"])
        print(
            f"{'diag(' + str(s) + '²)':>10} {n_sphere:>6} {r['mean_err']:>15.4f} "
            f"{r['cov_rel']:>10.3f} {rat:>16} {r['s']:>7.2f}"
        )


def _learned(n_learned, it_learned, args) -> None:
    print(f"\n== 2. learned LAND metric on the sphere data ({n_learned} points, {it_learned} it.)")
    for s in (0.1, 0.7):
        r = learned_sphere(n_learned, s, args.seed, it_learned, args.log_tol)
        eig = " ".join(f"{v:.3f}" for v in r["tangent_eigs"])
        print(
            f"Σ=diag({s}²): mean err {r['mean_err']:.4f} rad (|μ| = {r['radius']:.3f}), "
            f"tangential Σ rel err {r['cov_rel']:.3f}, tangential eig/σ² {eig}, "
            f"Log failures {r['failures']}, {r['s']:.1f} s"
        )


_SPREADS = {
    "narrow": (0.3**2, 0.15**2),
    "medium": (0.6**2, 0.3**2),
    "wide": (0.9**2, 0.45**2),
    "skewed": "skewed",
}


def _sphere_table(n, args) -> None:
    seeds = [int(v) for v in args.seeds.split(",")]
    print(
        f"\n== 0. sphere, {n} points, seeds {seeds}: tl.land defaults vs Euclidean estimate "
        "(vs the LAND with the closed-form sphere maps)"
    )
    cols = ["learned", "euclid", "known"] + (["paper"] if args.paper else [])
    print(
        "spread | seed | mean err (rad): "
        + " / ".join(cols)
        + " | Σ err: "
        + " / ".join(cols)
        + " | fail | loglik start→end (it) | σ | |μ| | wall / CPU s"
    )
    for name in args.spreads.split(","):
        cov = _SPREADS[name]
        scale = "Gamma(2) 0.6 / 0.3" if cov == "skewed" else np.sqrt(cov).round(2).tolist()
        rows = []
        for seed in seeds:
            r = sphere_side_by_side(n, cov, seed, args.paper)
            rows.append(r)
            L = r["learned"]
            print(
                f"{name} {scale} | {seed} | "
                + " / ".join(f"{r[c]['mean_err']:.4f}" for c in cols)
                + " | "
                + " / ".join(f"{r[c]['cov_rel']:.3f}" for c in cols)
                + f" | {L['failures']} | {L['ll'][0]:.3f}→{L['ll'][1]:.3f} ({L['n_iter']}) | "
                f"{L['sigma']:.3f} | {L['radius']:.3f} | {L['s']:.0f} / {L['cpu']:.0f}",
                flush=True,
            )
        for key, lab in (("mean_err", "mean err"), ("cov_rel", "Σ err")):
            cells = []
            for c in cols:
                v = np.array([r[c][key] for r in rows])
                cells.append(f"{c} {v.mean():.4f} [{v.min():.4f}, {v.max():.4f}]")
            print(f"{name} | mean [range] of {lab}: " + " / ".join(cells))
        wins = sum(r["learned"]["cov_rel"] <= r["euclid"]["cov_rel"] for r in rows)
        winm = sum(r["learned"]["mean_err"] <= r["euclid"]["mean_err"] for r in rows)
        print(
            f"{name} | LAND ≤ Euclidean in {winm}/{len(rows)} seeds (mean), {wins}/{len(rows)} (Σ)"
        )


def real_data(name: str) -> dict:
    """``scfim.tl.land(adata)`` with its defaults, as a new user would call it."""
    import scanpy as sc

    import scfim

    if name == "pbmc68k_reduced":
        a = sc.datasets.pbmc68k_reduced()
    else:
        a = sc.datasets.krumsiek11()
        sc.pp.neighbors(a)
        scfim.tl.diffusion(a)
    t0, c0 = time.perf_counter(), time.process_time()
    scfim.tl.land(a)
    sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    u = a.uns["land"]
    d = u["diagnostics"]
    return {
        "n": a.n_obs,
        "dims": int(np.asarray(u["means"]).shape[1]),
        "s": sec,
        "cpu": cpu,
        "fail": int(d["n_log_failed_cells"]),
        "ll0": float(d["initial_log_likelihood"]),
        "ll1": float(d["final_log_likelihood"]),
        "ll_min": float(np.min(np.r_[d["initial_log_likelihood"], d["log_likelihood"]])),
        "n_iter": int(u["n_iter"]),
        "sigma": float(u["params"]["sigma"]),
    }


def _real_table(args) -> None:
    print("\n== 5. tl.land(adata) with defaults (target: ≤ 120 s, failures ≤ 5 %, no fall)")
    print("data | cells × dims | wall s | CPU s | Log failures | loglik start → end (min) | it | σ")
    for name in ("pbmc68k_reduced", "krumsiek11"):
        r = real_data(name)
        print(
            f"{name} | {r['n']} × {r['dims']} | {r['s']:.0f} | {r['cpu']:.0f} | {r['fail']} "
            f"({100 * r['fail'] / r['n']:.1f} %) | {r['ll0']:.3f} → {r['ll1']:.3f} "
            f"({r['ll_min']:.3f}) | {r['n_iter']} | {r['sigma']:.3g}",
            flush=True,
        )


def _moons(n_moons, it_moons, args) -> None:
    print(f"\n== 3./4. two moons, {n_moons} points, {it_moons} EM iterations, learned LAND metric")
    r = moons(n_moons, it_moons, args.seed, args.log_tol)
    print(f"ARI  LAND mixture {r['ari_land']:.3f}   sklearn GaussianMixture {r['ari_gmm']:.3f}")
    print(
        f"time {r['s']:.1f} s ({args.threads} threads); Log failures per iteration "
        f"{list(map(int, r['failures']))}, final {r['final_failures']}"
    )
    print("mean log-likelihood per iteration", np.round(r["loglik"], 4).tolist())


if __name__ == "__main__":
    main()
