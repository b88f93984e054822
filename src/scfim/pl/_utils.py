"""Conventions shared by every plot (see :mod:`scfim.pl`): figure arguments, colour bars."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # matplotlib is imported when something is drawn, not with scfim.pl
    from anndata import AnnData
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "PLOT_ARGS_DOC",
    "SCANPY_MARKER",
    "check_plot_args",
    "contrasting_colour",
    "embedding_key",
    "finish",
    "label_colorbar",
    "legend_off",
    "marker_size",
    "place_in_embedding",
    "quantity_label",
    "robust_limits",
    "style_panel",
]

PLOT_ARGS_DOC = """\
ax
    Axes to draw into; a new figure when omitted.
show
    ``True``: call :func:`matplotlib.pyplot.show` and return None (as in scanpy).
    ``None``/``False``: return the Axes without showing them.
save
    ``True``: write ``{scanpy.settings.figdir}/{writekey}.{file_format_figs}``; a string
    is appended to the write key as in :func:`scanpy.pl.embedding` (its extension, if any,
    sets the format); a :class:`pathlib.Path` is the exact file. Written after everything
    is drawn.
return_fig
    Return the Figure instead of the Axes."""

SaveArg = bool | str | os.PathLike | None

# scanpy's scatter marker: sizes of scfim's own scatter plots match scfim.pl.embedding's
SCANPY_MARKER = "."

# readable colour-bar labels of the per-cell quantities that scfim writes to ``obs``
_QUANTITY_LABELS = {
    "fim_log_volume": "log relative FIM volume (0 = median cell)",
    "fim_log_volume_std": "log relative FIM volume, ensemble std",
    "fim_volume": "relative FIM volume (1 = median cell)",
    "fim_trace": "FIM trace (tr g)",
    "fim_trace_std": "FIM trace, ensemble std",
    "diffusion_curvature": "diffusion curvature (signed)",
    "diffusion_curvature_raw": "diffusion curvature C(x) (raw)",
    "land_log_likelihood": "LAND log-likelihood",
    "fisher_rao_pseudotime": "Fisher–Rao pseudotime",
}


def quantity_label(key: str) -> str:
    """Colour-bar label of an ``obs`` column: the quantity's name in words."""
    return _QUANTITY_LABELS.get(key, key.replace("_", " "))


def check_plot_args(show: bool | None, save: SaveArg, return_fig: bool) -> None:
    """Validate the figure arguments before anything is drawn."""
    if show is not None and not isinstance(show, bool | np.bool_):
        raise TypeError(f"show must be True, False or None, got {show!r}")
    if save is not None and not isinstance(save, bool | str | os.PathLike):
        raise TypeError(f"save must be True, False, None, a string or a path, got {save!r}")
    if isinstance(save, str) and not save:
        raise ValueError("save='' names no file; use save=True or a suffix such as '_x.png'")
    if not isinstance(return_fig, bool | np.bool_):
        raise TypeError(f"return_fig must be True or False, got {return_fig!r}")


def _save_path(writekey: str, save: str | os.PathLike | bool) -> Path:
    import scanpy as sc

    if isinstance(save, os.PathLike):
        path = Path(save)
        return path if path.suffix else path.with_suffix(f".{sc.settings.file_format_figs}")
    ext = sc.settings.file_format_figs
    suffix = "" if save is True else str(save)
    for candidate in (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".tif", ".tiff", ".eps"):
        if suffix.lower().endswith(candidate):
            ext, suffix = candidate[1:], suffix[: -len(candidate)]
            break
    return Path(sc.settings.figdir) / f"{writekey}{suffix}.{ext}"


def finish(
    axes: Axes | Sequence[Axes] | Figure,
    *,
    writekey: str,
    show: bool | None,
    save: SaveArg,
    return_fig: bool,
) -> Axes | Sequence[Axes] | Figure | None:
    """Save, show and return the way :func:`scanpy.pl.embedding` does (see module doc)."""
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    if isinstance(axes, Figure):
        fig = axes
    else:
        first = axes if isinstance(axes, Axes) else next(iter(axes))
        fig = first.figure
    if save:
        path = _save_path(writekey, save)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, bbox_inches="tight")
    if show:
        plt.show()
    if return_fig:
        return fig
    if show:
        return None
    return axes


def place_in_embedding(
    X: np.ndarray, Y: np.ndarray, pts: np.ndarray, k: int = 5, *, return_distance: bool = False
):
    """Positions in the embedding ``Y`` of points given in the cells' space ``X``.

    Each point goes to the inverse-distance-weighted average of the embedding positions
    of its ``k`` nearest cells (a point on a cell lands on that cell). Used to draw
    geodesic curves and LAND means, which live in the input representation. With
    ``return_distance``, also the distance of each point to its nearest cell in ``X``.
    """
    from scipy.spatial import cKDTree

    pts = np.atleast_2d(np.asarray(pts, dtype=np.float64))
    d, i = cKDTree(X).query(pts, k=min(k, len(X)))
    d, i = d.reshape(len(pts), -1), i.reshape(len(pts), -1)
    w = 1.0 / np.maximum(d, 1e-12)
    w /= w.sum(1, keepdims=True)
    placed = np.einsum("pk,pkc->pc", w, Y[i])
    return (placed, d[:, 0]) if return_distance else placed


def marker_size(n_obs: int, size: float | None = None, s: float | None = None) -> float:
    """Marker size of a scatter plot of ``n_obs`` cells, the way scanpy chooses it.

    ``size`` (scanpy's name) or ``s`` (matplotlib's, kept as an alias); by default
    ``120000 / n_obs`` as in :func:`scanpy.pl.embedding`, so that every scfim panel draws
    the cells at the same size as ``pl.embedding`` does.
    """
    if size is not None and s is not None and size != s:
        raise TypeError(f"give the marker size once, as size= (got size={size!r} and s={s!r})")
    value = size if size is not None else s
    if value is None:
        return 120000.0 / max(int(n_obs), 1)
    if not np.isscalar(value) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"size must be a positive number, got {value!r}")
    return float(value)


def legend_off(legend_loc: str | None) -> bool:
    """Whether ``legend_loc`` asks for no legend (``None`` or ``"none"``, as in scanpy)."""
    return legend_loc is None or legend_loc == "none"


def style_panel(
    ax: Axes,
    *,
    title: str | None,
    frameon: bool = False,
    basis: str | None = None,
    components: tuple[int, int] = (0, 1),
) -> None:
    """The look of :func:`scfim.pl.embedding` (that of scanpy) for a scatter panel.

    ``frameon=False`` (scfim's default): no frame, ticks or axis labels. ``frameon=True``:
    a frame without ticks, the axes named after ``basis`` as :func:`scfim.pl.embedding`
    names them (``"X_jsd_phate1"``, ``"X_jsd_phate2"``). ``title`` becomes the Axes title
    (an empty string for none).
    """
    if frameon:
        ax.set_xticks([])
        ax.set_yticks([])
        if basis is not None:
            ax.set_xlabel(f"{basis}{components[0] + 1}")
            ax.set_ylabel(f"{basis}{components[1] + 1}")
    else:
        ax.axis("off")
    if title is not None:
        ax.set_title(title)


def embedding_key(adata: AnnData, basis: str, *, min_dim: int = 2) -> str:
    """The ``obsm`` key of ``basis`` (with or without the ``X_`` prefix), checked."""
    key = basis if basis in adata.obsm else f"X_{basis}"
    if key not in adata.obsm:
        raise KeyError(f"basis {basis!r} not in adata.obsm (available: {list(adata.obsm.keys())})")
    shape = np.shape(adata.obsm[key])
    if len(shape) != 2 or shape[1] < min_dim:
        raise ValueError(f"adata.obsm[{key!r}] has shape {shape}; need {min_dim} columns or more")
    return key


def robust_limits(values: np.ndarray, lower: float = 1.0, upper: float = 99.0):
    """Colour limits at the ``lower``/``upper`` percentiles of the finite values.

    One extreme cell no longer stretches the colour map over everything else. Returns
    ``(None, None)`` without finite values.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None, None
    lo, hi = np.percentile(v, [lower, upper])
    if hi <= lo:  # (nearly) constant values
        lo, hi = float(v.min()), float(v.max())
    return float(lo), float(hi)


def label_colorbar(ax: Axes, label: str) -> bool:
    """Label the colour bar drawn for a scatter plot of ``ax`` (False when there is none)."""
    for artist in ax.collections:
        cb = getattr(artist, "colorbar", None)
        if cb is not None:
            cb.set_label(label)
            return True
    return False


# candidate path colours: dark and saturated, readable on a white background
_PATH_CANDIDATES = ("black", "#ff00ff", "#00e5ff", "#7fff00", "darkblue", "saddlebrown")


def contrasting_colour(
    colours: Sequence, candidates: Sequence = _PATH_CANDIDATES, enough: float = 0.45
) -> str:
    """A path colour that stands out against every colour of ``colours``.

    The first candidate (black, the most readable on white) whose RGB distance to every
    colour of ``colours`` is at least ``enough``; else the candidate farthest from them.
    Used for geodesic paths over a categorical palette: fixed red is invisible over a red
    group, black over a black one.
    """
    from matplotlib.colors import to_rgb

    pal = np.array([to_rgb(c) for c in colours], dtype=np.float64).reshape(-1, 3)
    if pal.size == 0:
        return str(candidates[0])
    dist = [float(np.min(np.linalg.norm(pal - np.asarray(to_rgb(c)), axis=1))) for c in candidates]
    for c, d in zip(candidates, dist, strict=True):
        if d >= enough:
            return str(c)
    return str(candidates[int(np.argmax(dist))])
