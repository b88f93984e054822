"""Command line: ``scfim demo`` and ``scfim run IN.h5ad``."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import _logging as logg

__all__ = ["main", "run_pipeline", "write_figures", "PipelineOptions"]

DESCRIPTION = """\
Learned Fisher information geometry of single-cell data.

scfim run IN.h5ad runs diffusion, JSD-PHATE, the neural Fisher information metric
(per-cell volume, trace, spectrum), diffusion curvature and a Fisher-Rao geodesic on an
AnnData file and writes the annotated data and figures. scfim demo does the same on
bundled data (offline).
"""

EPILOG = """\
examples:
  scfim demo --out scfim_output
  scfim run cells.h5ad --out results --color cell_type
  scfim run cells.h5ad --color cell_type --start-group HSC --end-group Monocyte
  scfim run cells.h5ad --start AAACCTGA-1 --end TTTGCATG-1 --no-curvature
"""


class UsageError(ValueError):
    """A problem with the command line or the input file, reported without a traceback."""


@dataclass
class PipelineOptions:
    """Parameters of the pipeline (the defaults of the ``tl`` functions)."""

    use_rep: str | None = None
    neighbors_key: str | None = "auto"
    n_neighbors: int | None = None  # None: scfim.tl.diffusion's default
    t: int | str = "auto"
    n_components: int = 2
    epochs: int | None = None  # None: scfim.tl.neural_fim's default
    n_ensemble: int | None = None
    random_state: int = 0
    curvature: bool = True


def _central_cell(adata, groupby: str, group: str, basis: str = "X_jsd_phate") -> int:
    """Index of the cell of ``group`` nearest to the group's mean in ``basis``."""
    idx = np.flatnonzero((adata.obs[groupby].astype(str) == group).to_numpy())
    Y = np.asarray(adata.obsm[basis])[idx]
    return int(idx[np.argmin(((Y - Y.mean(0)) ** 2).sum(1))])


def _geodesic_ends(adata, ends) -> tuple[int, int, str]:
    """The start and end cells of the geodesic and how they were chosen."""
    if ends is None:
        axis = np.asarray(adata.obsm["X_jsd_phate"])[:, 0]
        return int(np.argmin(axis)), int(np.argmax(axis)), "ends of JSD-PHATE axis 1"
    kind = ends[0]
    if kind == "cells":
        names = list(adata.obs_names)
        return names.index(ends[1]), names.index(ends[2]), "given cells"
    _, groupby, a, b = ends
    s, e = _central_cell(adata, groupby, a), _central_cell(adata, groupby, b)
    return s, e, f"central cells of {groupby} {a!r} and {b!r}"


def run_pipeline(
    adata,
    out: Path,
    name: str,
    *,
    color: str | None,
    options: PipelineOptions | None = None,
    ends: tuple | None = None,
    groupby: str | None = None,
    progress: bool = True,
    random_state: int | None = None,
    curvature: bool | None = None,
) -> None:
    """Run the pipeline on ``adata`` and write ``{name}.h5ad`` and figures into ``out``.

    Diffusion → JSD-PHATE → neural FIM (per-cell volume, trace, spectrum) → diffusion
    curvature (unless ``options.curvature`` is False; about 2–20 ms per cell) → a
    Fisher–Rao geodesic. Figures: ``{name}_jsd_phate.png``, ``{name}_fim.png`` and
    ``{name}_geometry.png`` (geodesic and curvature).

    Parameters
    ----------
    adata
        Annotated data (validated by the caller).
    out
        Output folder.
    name
        Stem of the output files.
    color
        ``obs`` column or gene to colour the embeddings by.
    options
        Pipeline parameters; :class:`PipelineOptions` defaults when omitted.
    ends
        Geodesic end points: None (the two cells at the ends of the first JSD-PHATE
        axis), ``("cells", start_name, end_name)`` or ``("groups", column, a, b)`` (the
        most central cell of each group in the JSD-PHATE embedding).
    groupby
        Categorical ``obs`` column for the eigenspectrum (default ``color`` when it is
        categorical).
    progress
        Show the training progress bar of the neural FIM.
    random_state, curvature
        Override ``options.random_state`` / ``options.curvature``.
    """
    from . import tl

    opt = options or PipelineOptions()
    if random_state is not None:
        opt.random_state = random_state
    if curvature is not None:
        opt.curvature = curvature
    t0 = time.perf_counter()
    tl.diffusion(
        adata,
        use_rep=opt.use_rep,
        neighbors_key=opt.neighbors_key,
        n_neighbors=opt.n_neighbors,
        t=opt.t,
        random_state=opt.random_state,
    )
    logg.info(
        f"[{name}] diffusion: t = {adata.uns['diffusion']['t']} "
        f"({adata.uns['diffusion']['n_states']} states) in {time.perf_counter() - t0:.1f} s"
    )
    t0 = time.perf_counter()
    tl.jsd_phate(adata, n_components=opt.n_components)
    logg.info(
        f"[{name}] JSD-PHATE: stress {adata.uns['jsd_phate']['stress']:.3f} "
        f"in {time.perf_counter() - t0:.1f} s"
    )

    t0 = time.perf_counter()
    given = {"epochs": opt.epochs, "n_ensemble": opt.n_ensemble}
    tl.neural_fim(
        adata,
        random_state=opt.random_state,
        progress=progress,
        **{k: v for k, v in given.items() if v is not None},
    )
    fim = adata.uns["neural_fim"]
    losses = [np.asarray(v) for v in fim["val_loss"].values()]
    rounds = sorted({v.size for v in losses})
    logg.info(
        f"[{name}] neural FIM: {len(losses)} network(s), "
        f"{'–'.join(map(str, rounds[:: max(1, len(rounds) - 1)]))} rounds, best held-out "
        f"loss {min(float(v.min()) for v in losses):.3g}, in {time.perf_counter() - t0:.1f} s"
    )

    if opt.curvature:
        t0 = time.perf_counter()
        tl.diffusion_curvature(adata, random_state=opt.random_state)
        logg.info(f"[{name}] diffusion curvature in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    start, end, how = _geodesic_ends(adata, ends)
    tl.geodesic(adata, start=start, end=end)
    geo = adata.uns["geodesic"]
    far = float(np.ravel(geo["proximity"])[0])
    logg.info(
        f"[{name}] geodesic {adata.obs_names[start]} → {adata.obs_names[end]} ({how}): "
        f"Fisher–Rao length {float(np.ravel(geo['lengths'])[0]):.3f}, farthest from a cell "
        f"{far:.3g} ({far / float(geo['nn_distance']):.2f} × the median distance between "
        f"neighbouring cells), in {time.perf_counter() - t0:.1f} s"
    )
    write_figures(adata, out, name, color=color, groupby=groupby)
    adata.write_h5ad(out / f"{name}.h5ad")
    logg.info(f"[{name}] wrote {name}.h5ad and {name}_{{jsd_phate,fim,geometry}}.png in {out}")


def write_figures(adata, out: Path, name: str, *, color: str | None, groupby=None) -> None:
    """Write ``{name}_jsd_phate.png``, ``{name}_fim.png`` and ``{name}_geometry.png``.

    Reads the results of :func:`run_pipeline` from ``adata``; the curvature panel is drawn
    when ``obs["diffusion_curvature"]`` exists.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from . import pl

    if groupby is None and color is not None and color in adata.obs:
        if not pd.api.types.is_numeric_dtype(adata.obs[color]):
            groupby = color
    # constrained layout keeps legends placed outside the Axes (scanpy's "right margin")
    # clear of the next panel
    layout = {"layout": "constrained", "dpi": 120}
    auto_t = "entropy" in adata.uns["diffusion"]  # t="auto": show how t was chosen
    fig, axes = plt.subplots(1, 2 if auto_t else 1, figsize=(13 if auto_t else 7.5, 4.8), **layout)
    axes = np.atleast_1d(axes)
    pl.embedding(adata, "X_jsd_phate", color=color, ax=axes[0], title=f"{name}: JSD-PHATE")
    if auto_t:
        pl.diffusion_entropy(adata, ax=axes[1])
    fig.savefig(out / f"{name}_jsd_phate.png")
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(19, 5), width_ratios=[1, 1, 1.2], **layout)
    pl.embedding(
        adata, "X_jsd_phate", color="fim_log_volume", ax=axes[0], title=f"{name}: FIM log-volume"
    )
    pl.embedding(adata, "X_jsd_phate", color="fim_trace", ax=axes[1], title=f"{name}: FIM trace")
    pl.eigenspectrum(adata, groupby=groupby, ax=axes[2])
    fig.savefig(out / f"{name}_fim.png")
    plt.close(fig)

    curvature = "diffusion_curvature" in adata.obs
    fig, axes = plt.subplots(
        1, 2 if curvature else 1, figsize=(16 if curvature else 8.5, 5.6), **layout
    )
    axes = np.atleast_1d(axes)
    pl.geodesic(adata, "X_jsd_phate", color=color, ax=axes[0], title=f"{name}: Fisher–Rao geodesic")
    if curvature:
        pl.curvature(adata, "X_jsd_phate", ax=axes[1])
        axes[1].set_title(f"{name}: diffusion curvature")
    fig.savefig(out / f"{name}_geometry.png")
    plt.close(fig)


# ------------------------------------------------------------------------------------------
# argument checks (all before any computation)
# ------------------------------------------------------------------------------------------


def _positive_int(minimum: int = 1):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _diffusion_time(text: str) -> int | str:
    if text == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'auto' or a positive integer, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 'auto' or at least 1, got {value}")
    return value


def _choices(values, limit: int = 12) -> str:
    values = [str(v) for v in values]
    shown = ", ".join(values[:limit])
    return shown + (f", … ({len(values)} in all)" if len(values) > limit else "")


def _read_input(path: Path):
    import anndata as ad

    if not path.exists():
        raise UsageError(f"{path} does not exist")
    if path.is_dir():
        raise UsageError(f"{path} is a folder, not an .h5ad file")
    try:
        return ad.read_h5ad(path)
    except Exception as err:  # noqa: BLE001 - h5py/anndata raise many types for a non-h5ad file
        raise UsageError(
            f"cannot read {path} as an .h5ad file ({type(err).__name__}: {err})"
        ) from None


def _validate(adata, args: argparse.Namespace) -> tuple | None:
    """Check every argument against the data; return the geodesic ends spec."""
    obs = list(adata.obs.columns)
    if adata.n_obs < 10:
        raise UsageError(f"{args.input} has {adata.n_obs} cells; the pipeline needs at least 10")
    if args.color is not None and args.color not in adata.obs and args.color not in adata.var_names:
        raise UsageError(
            f"--color {args.color!r} is neither an obs column nor a gene of {args.input} "
            f"(obs columns: {_choices(obs) or 'none'})"
        )
    if args.use_rep is not None and args.use_rep != "X" and args.use_rep not in adata.obsm:
        raise UsageError(
            f"--use-rep {args.use_rep!r} is not in obsm (available: "
            f"{_choices(adata.obsm.keys()) or 'none'}, or X)"
        )
    if args.n_neighbors is not None and args.n_neighbors >= adata.n_obs:
        raise UsageError(f"--n-neighbors {args.n_neighbors} must be below the {adata.n_obs} cells")
    by_cell = args.start is not None or args.end is not None
    by_group = args.start_group is not None or args.end_group is not None
    if by_cell and by_group:
        raise UsageError("give the geodesic ends either as cells (--start/--end) or as groups")
    if by_cell:
        if args.start is None or args.end is None:
            raise UsageError("--start and --end go together")
        missing = [c for c in (args.start, args.end) if c not in adata.obs_names]
        if missing:
            raise UsageError(
                f"cell(s) {', '.join(map(repr, missing))} not in obs_names "
                f"(e.g. {_choices(adata.obs_names[:3], 3)})"
            )
        return ("cells", args.start, args.end)
    if by_group:
        if args.start_group is None or args.end_group is None:
            raise UsageError("--start-group and --end-group go together")
        groupby = args.groupby or args.color
        if groupby is None:
            raise UsageError("--start-group/--end-group need --groupby (or --color) COLUMN")
        if groupby not in adata.obs:
            raise UsageError(
                f"--groupby {groupby!r} is not an obs column (obs columns: {_choices(obs)})"
            )
        present = set(adata.obs[groupby].astype(str))
        for g in (args.start_group, args.end_group):
            if g not in present:
                raise UsageError(
                    f"group {g!r} not in obs[{groupby!r}] (groups: {_choices(sorted(present))})"
                )
        return ("groups", groupby, args.start_group, args.end_group)
    if args.groupby is not None and args.groupby not in adata.obs:
        raise UsageError(f"--groupby {args.groupby!r} is not an obs column ({_choices(obs)})")
    return None


def _options(args: argparse.Namespace) -> PipelineOptions:
    return PipelineOptions(
        use_rep=getattr(args, "use_rep", None),
        n_neighbors=args.n_neighbors,
        t=args.t,
        n_components=args.n_components,
        epochs=args.epochs,
        n_ensemble=args.n_ensemble,
        random_state=args.random_state,
        curvature=not args.no_curvature,
    )


def _demo(args: argparse.Namespace) -> int:
    from . import datasets

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    pbmc = datasets.pbmc68k_reduced()
    # a geodesic along myeloid differentiation: progenitors to monocytes
    ends = ("groups", "bulk_labels", "CD34+", "CD14+ Monocyte")
    options = _options(args)
    stored = pbmc.uns.get("neighbors", {}).get("params", {}).get("n_neighbors")
    k_stored = int(np.ravel(stored)[0]) if stored is not None else None
    from .tl.diffusion import DEFAULT_N_NEIGHBORS

    k_used = options.n_neighbors or DEFAULT_N_NEIGHBORS
    if k_stored is not None and k_stored < k_used:
        # the bundled data carry scanpy's 10-NN graph; the demo uses the same graph size on
        # both data sets instead
        logg.info(
            f"[pbmc68k_reduced] the bundled {k_stored}-NN graph (uns['neighbors']) is not "
            f"used: building a {k_used}-NN graph, as for the tree data set"
        )
        options.neighbors_key = None
    progress = not args.quiet
    run_pipeline(
        pbmc,
        out,
        "pbmc68k_reduced",
        color="bulk_labels",
        options=options,
        ends=ends,
        progress=progress,
    )
    tree = datasets.tree(n_obs=args.n_tree, random_state=args.random_state)
    tree_options = _options(args)
    tree_options.use_rep = tree_options.use_rep or "X"  # the toy tree's X is its representation
    run_pipeline(tree, out, "tree", color="branch", options=tree_options, progress=progress)
    logg.info(f"done in {time.perf_counter() - t_start:.0f} s: results in {out.resolve()}")
    return 0


def _run(args: argparse.Namespace) -> int:
    src = Path(args.input)
    adata = _read_input(src)
    ends = _validate(adata, args)
    out = Path(args.out)
    target = out / f"{src.stem}.h5ad"
    if target.exists() and target.resolve() == src.resolve():
        raise UsageError(
            f"--out {out} would overwrite the input file {src} with the results; "
            "choose another output folder"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create the output folder {out}: {err}") from None
    run_pipeline(
        adata,
        out,
        src.stem,
        color=args.color,
        options=_options(args),
        ends=ends,
        groupby=args.groupby,
        progress=not args.quiet,
    )
    return 0


def _api_default(name: str):
    """Default of a :func:`scfim.tl.neural_fim` argument (the CLI uses the same).

    Read from the function's source with :mod:`ast`, so that ``scfim --help`` does not
    import PyTorch; falls back to :func:`inspect.signature` when the source cannot be read.
    """
    import ast

    source = Path(__file__).with_name("tl") / "neural_fim.py"
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"))
        func = next(
            node
            for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name == "neural_fim"
        )
        args = func.args
        positional = args.posonlyargs + args.args
        pairs = list(
            zip(positional[len(positional) - len(args.defaults) :], args.defaults, strict=True)
        )
        pairs += [
            (a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None
        ]
        return next(ast.literal_eval(d) for a, d in pairs if a.arg == name)
    except (OSError, SyntaxError, StopIteration, ValueError):
        import inspect

        from .tl import neural_fim

        return inspect.signature(neural_fim).parameters[name].default


def _add_pipeline_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pipeline parameters")
    g.add_argument(
        "--n-neighbors",
        type=_positive_int(2),
        default=None,
        metavar="K",
        help="nearest neighbours of the diffusion kernel (default: scfim.tl.diffusion's, "
        "30, at most the number of distinct cells minus one)",
    )
    g.add_argument(
        "--t",
        type=_diffusion_time,
        default="auto",
        metavar="T",
        help="diffusion time: 'auto' (knee of the von Neumann entropy) or a number of "
        "steps (default: %(default)s)",
    )
    g.add_argument(
        "--n-components",
        type=_positive_int(2),
        default=2,
        metavar="D",
        help="dimensions of the JSD-PHATE embedding; figures show the first two "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--epochs",
        type=_positive_int(1),
        default=None,
        metavar="N",
        help="maximal training epochs of each neural FIM network (default: "
        f"{_api_default('epochs')}, as scfim.tl.neural_fim)",
    )
    g.add_argument(
        "--n-ensemble",
        type=_positive_int(1),
        default=None,
        metavar="M",
        help="neural FIM networks averaged; more are steadier between seeds and slower "
        f"(default: {_api_default('n_ensemble')}, as scfim.tl.neural_fim)",
    )
    g.add_argument(
        "--random-state",
        type=int,
        default=0,
        metavar="SEED",
        help="seed of every random step, for reproducible results (default: %(default)s)",
    )
    g.add_argument(
        "--no-curvature",
        action="store_true",
        help="skip diffusion curvature (about 2-20 ms per cell)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``scfim`` argument parser."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("scfim")
    except PackageNotFoundError:  # pragma: no cover - source tree without install
        v = "unknown"
    parser = argparse.ArgumentParser(
        prog="scfim",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"scfim {v}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = sub.add_parser(
        "demo",
        help="run the pipeline on bundled data (PBMC and a toy tree, offline)",
        description="Run the pipeline on scanpy's pbmc68k_reduced and on a generated "
        "branching tree; write figures and .h5ad files into --out.",
    )
    d.add_argument(
        "--out", default="scfim_output", metavar="DIR", help="output folder (default: %(default)s)"
    )
    d.add_argument(
        "--n-tree",
        type=_positive_int(50),
        default=3000,
        metavar="N",
        help="cells of the toy tree (default: %(default)s)",
    )
    _add_pipeline_arguments(d)
    r = sub.add_parser(
        "run",
        help="run the pipeline on an .h5ad file",
        description="Run the pipeline on an AnnData .h5ad file and write IN.h5ad (with\n"
        "the results) and IN_{jsd_phate,fim,geometry}.png into --out. All arguments are\n"
        "checked against the file before anything is computed.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("input", metavar="IN.h5ad", help="AnnData file (uses obsm['X_pca'] if present)")
    r.add_argument(
        "--out", default="scfim_output", metavar="DIR", help="output folder (default: %(default)s)"
    )
    r.add_argument(
        "--color", default=None, metavar="COLUMN", help="obs column or gene to colour figures by"
    )
    r.add_argument(
        "--use-rep",
        default=None,
        metavar="KEY",
        help="obsm key of the cell representation (default: X_pca if present, else X)",
    )
    r.add_argument(
        "--groupby",
        default=None,
        metavar="COLUMN",
        help="categorical obs column of the groups (eigenspectrum lines, --start-group); "
        "default --color",
    )
    _add_pipeline_arguments(r)
    g = r.add_argument_group(
        "geodesic end points",
        "by default the two cells at the ends of the first JSD-PHATE axis",
    )
    g.add_argument("--start", metavar="CELL", help="obs name of the start cell")
    g.add_argument("--end", metavar="CELL", help="obs name of the end cell")
    g.add_argument(
        "--start-group", metavar="GROUP", help="start at the most central cell of this group"
    )
    g.add_argument(
        "--end-group", metavar="GROUP", help="end at the most central cell of this group"
    )
    for p in (d, r):
        p.add_argument("--quiet", action="store_true", help="no training progress output")
        p.add_argument(
            "--traceback", action="store_true", help="show the full traceback of an error"
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``scfim`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command = {"demo": _demo, "run": _run}[args.command]
    try:
        return command(args)
    except UsageError as err:
        print(f"scfim {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, TypeError) as err:
        # raised by the tools' input checks (a user error, e.g. data with NaN)
        if args.traceback:
            traceback.print_exc()
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"scfim {args.command}: error: {msg}", file=sys.stderr)
        if not args.traceback:
            print("(rerun with --traceback for the details)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
