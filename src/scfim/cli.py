"""Command line: ``scfim demo`` and ``scfim run IN.h5ad``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from . import _logging as logg

__all__ = ["main", "run_pipeline"]


def run_pipeline(
    adata,
    out: Path,
    name: str,
    *,
    color: str | None,
    random_state: int = 0,
    progress: bool = True,
    curvature: bool = True,
) -> None:
    """Run the pipeline on ``adata`` and write ``{name}.h5ad`` and figures into ``out``.

    Diffusion → JSD-PHATE → neural FIM (per-cell volume, trace, spectrum) → diffusion
    curvature (unless ``curvature=False``; about 2–20 ms per cell) → the Fisher–Rao geodesic
    between the two cells at the ends of the first JSD-PHATE axis. Figures:
    ``{name}_jsd_phate.png``, ``{name}_fim.png`` and ``{name}_geometry.png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import pl, tl

    t0 = time.perf_counter()
    tl.diffusion(adata, random_state=random_state)
    logg.info(
        f"[{name}] diffusion: t = {adata.uns['diffusion']['t']} "
        f"({adata.uns['diffusion']['n_states']} states) in {time.perf_counter() - t0:.1f} s"
    )
    t0 = time.perf_counter()
    tl.jsd_phate(adata)
    logg.info(
        f"[{name}] JSD-PHATE: stress {adata.uns['jsd_phate']['stress']:.3f} "
        f"in {time.perf_counter() - t0:.1f} s"
    )

    t0 = time.perf_counter()
    tl.neural_fim(adata, random_state=random_state, progress=progress)
    fim = adata.uns["neural_fim"]
    logg.info(
        f"[{name}] neural FIM: {np.asarray(fim['val_loss']['0']).size} epochs, held-out loss "
        f"{np.min(fim['val_loss']['0']):.4f}, in {time.perf_counter() - t0:.1f} s"
    )

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    pl.embedding(adata, "X_jsd_phate", color=color, ax=axes[0], title=f"{name}: JSD-PHATE")
    pl.diffusion_entropy(adata, ax=axes[1])
    fig.tight_layout()
    fig.savefig(out / f"{name}_jsd_phate.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    pl.embedding(
        adata, "X_jsd_phate", color="fim_log_volume", ax=axes[0], title=f"{name}: FIM log-volume"
    )
    pl.embedding(adata, "X_jsd_phate", color="fim_trace", ax=axes[1], title=f"{name}: FIM trace")
    pl.eigenspectrum(adata, groupby=color, ax=axes[2])
    axes[2].legend(fontsize=6, frameon=False)
    fig.tight_layout()
    fig.savefig(out / f"{name}_fim.png", dpi=120)
    plt.close(fig)

    if curvature:
        t0 = time.perf_counter()
        tl.diffusion_curvature(adata, random_state=random_state)
        logg.info(f"[{name}] diffusion curvature in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    axis = np.asarray(adata.obsm["X_jsd_phate"])[:, 0]
    ends = int(np.argmin(axis)), int(np.argmax(axis))
    tl.geodesic(adata, start=ends[0], end=ends[1])
    geo = adata.uns["geodesic"]
    logg.info(
        f"[{name}] geodesic {adata.obs_names[ends[0]]} → {adata.obs_names[ends[1]]}: "
        f"Fisher–Rao length {float(np.ravel(geo['lengths'])[0]):.3f}, proximity "
        f"{float(np.ravel(geo['proximity'])[0]):.3g}, in {time.perf_counter() - t0:.1f} s"
    )
    fig, axes = plt.subplots(1, 2 if curvature else 1, figsize=(14 if curvature else 8, 4.6))
    axes = np.atleast_1d(axes)
    pl.geodesic(adata, "X_jsd_phate", color=color, ax=axes[0])
    axes[0].set_title(f"{name}: Fisher–Rao geodesic")
    if curvature:
        pl.curvature(adata, "X_jsd_phate", ax=axes[1])
        axes[1].set_title(f"{name}: diffusion curvature")
    fig.tight_layout()
    fig.savefig(out / f"{name}_geometry.png", dpi=120)
    plt.close(fig)

    adata.write_h5ad(out / f"{name}.h5ad")
    logg.info(f"[{name}] wrote {name}.h5ad and {name}_{{jsd_phate,fim,geometry}}.png in {out}")


def _demo(args: argparse.Namespace) -> int:
    from . import datasets

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pbmc = datasets.pbmc68k_reduced()
    run_pipeline(pbmc, out, "pbmc68k_reduced", color="bulk_labels", random_state=args.random_state)
    tree = datasets.tree(n_obs=args.n_tree, random_state=args.random_state)
    # curvature of the 100-D tree takes about a minute; its signal is the FIM at branch points
    run_pipeline(tree, out, "tree", color="branch", random_state=args.random_state, curvature=False)
    logg.info(f"done: results in {out.resolve()}")
    return 0


def _run(args: argparse.Namespace) -> int:
    import anndata as ad

    src = Path(args.input)
    if not src.exists():
        logg.error(f"{src} does not exist")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    adata = ad.read_h5ad(src)
    run_pipeline(
        adata,
        out,
        src.stem,
        color=args.color,
        random_state=args.random_state,
        curvature=not args.no_curvature,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``scfim`` command."""
    parser = argparse.ArgumentParser(prog="scfim", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the pipeline on bundled data (offline)")
    d.add_argument("--out", default="scfim_output", help="output folder")
    d.add_argument("--n-tree", type=int, default=3000, help="cells of the toy tree")
    d.add_argument("--random-state", type=int, default=0)
    r = sub.add_parser("run", help="run the pipeline on an .h5ad file")
    r.add_argument("input")
    r.add_argument("--out", default="scfim_output")
    r.add_argument("--color", default=None, help="obs column to colour figures by")
    r.add_argument("--random-state", type=int, default=0)
    r.add_argument(
        "--no-curvature", action="store_true", help="skip diffusion curvature (slow on big data)"
    )
    args = parser.parse_args(argv)
    return {"demo": _demo, "run": _run}[args.command](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
